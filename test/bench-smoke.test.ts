/**
 * CI smoke of the benchmarks: every `bench/*.ts --quick` run completes and its results hold the
 * invariants that do not depend on the machine's speed (no errors on the happy path, no invalid
 * output accepted by our chain, the herd simulation reproducing the published figures, a flat heap).
 * Timing figures are not asserted here — they belong to the full runs in docs/benchmarks.md. The
 * package's own name resolves to the TypeScript sources here (`llmr-source` condition): the smoke
 * exercises the code under test, where the full runs measure the compiled build.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { postgresGate } from "./agent/backends.js"

const outDir = mkdtempSync(join(tmpdir(), "llmr-bench-smoke-"))
afterAll(() => rmSync(outDir, { recursive: true, force: true }))

/** Runs `bench/<name>.ts --quick` (with `args`) and returns its results JSON (`<results>-quick.json`). */
const runQuick = (name: string, args: ReadonlyArray<string> = [], results = name): Promise<{ readonly data: Record<string, unknown> }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--conditions=llmr-source", "--import", "tsx", join("bench", `${name}.ts`), "--quick", ...args], {
      env: { ...process.env, BENCH_RESULTS_DIR: outDir },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (d: Buffer) => (output += d.toString()))
    child.stderr.on("data", (d: Buffer) => (output += d.toString()))
    child.on("error", reject)
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`bench:${name} --quick exited with ${code}:\n${output.slice(-4000)}`))
      resolve(JSON.parse(readFileSync(join(outDir, `${results}-quick.json`), "utf8")) as { readonly data: Record<string, unknown> })
    })
  })

describe("bench --quick smoke", () => {
  it("throughput: every client completes requests without errors", async () => {
    const { data } = await runQuick("throughput")
    const rows = data["rows"] as ReadonlyArray<{ readonly name: string; readonly rps: number; readonly errors: number }>
    expect(rows.length).toBeGreaterThanOrEqual(6)
    for (const row of rows) {
      expect(row.errors, row.name).toBe(0)
      expect(row.rps, row.name).toBeGreaterThan(0)
    }
  }, 60_000)

  it("stream: every client consumes every chunk of every stream, at both concurrencies, without errors", async () => {
    const { data } = await runQuick("stream")
    const rows = data["rows"] as ReadonlyArray<{ readonly short: string; readonly streams: number; readonly chunksPerCpuSecond: number; readonly errors: number }>
    const clients = ["floor", "openai SDK", "Vercel ai", "@effect/ai", "ours bare", "ours default", "ours chain", "ours streamObject"]
    for (const streams of data["concurrencies"] as ReadonlyArray<number>) {
      expect(rows.filter((r) => r.streams === streams).map((r) => r.short)).toEqual(clients)
    }
    for (const row of rows) {
      expect(row.errors, `${row.short} @ ${row.streams}`).toBe(0)
      expect(row.chunksPerCpuSecond, `${row.short} @ ${row.streams}`).toBeGreaterThan(0)
    }
  }, 120_000)

  it("chaos: every peer runs, and our chain never accepts an invalid output", async () => {
    const { data } = await runQuick("chaos")
    expect(data["unavailable"]).toEqual([])
    const results = data["results"] as ReadonlyArray<{ readonly short: string; readonly calls: number; readonly invalidAccepted: number; readonly providerCalls: number }>
    expect(results.map((r) => r.short)).toContain("ours")
    for (const r of results) {
      expect(r.calls, r.short).toBeGreaterThan(0)
      expect(r.providerCalls, r.short).toBeGreaterThan(0)
      // Every row on our chain — ours, and the @effect/ai program over our layer — accepts no invalid output.
      if (r.short.startsWith("ours") || r.short === "@effect/ai + ours") expect(r.invalidAccepted, r.short).toBe(0)
    }
  }, 90_000)

  it("chaos --repeat=0.3: our chain with and without the response cache on the same prompts; only the cached row has hits", async () => {
    const { data } = await runQuick("chaos", ["--repeat=0.3"], "chaos-repeat")
    expect(data["unavailable"]).toEqual([])
    const results = data["results"] as ReadonlyArray<{
      readonly short: string
      readonly calls: number
      readonly invalidAccepted: number
      readonly repeatedCalls: number
      readonly cacheHits: number
      readonly costUsd: number
    }>
    expect(results.map((r) => r.short)).toEqual(["ours", "ours + cache"])
    const [plain, cached] = results
    expect(plain!.repeatedCalls).toBe(cached!.repeatedCalls) // one seeded schedule for both rows
    expect(plain!.repeatedCalls).toBeGreaterThan(0)
    expect(plain!.cacheHits).toBe(0)
    expect(cached!.cacheHits).toBeGreaterThan(0)
    expect(cached!.cacheHits).toBeLessThanOrEqual(cached!.repeatedCalls)
    for (const r of results) {
      expect(r.invalidAccepted, r.short).toBe(0)
      expect(r.costUsd, r.short).toBeGreaterThan(0)
    }
  }, 90_000)

  it("herd: reproduces the published 50-client figures; the budget bounds amplification", async () => {
    const { data } = await runQuick("herd")
    const part1 = data["part1"] as { readonly comparison: Record<string, { readonly ours: { readonly writes: number; readonly seconds: number } }> }
    const full = part1.comparison["full"]!.ours
    const exponential = part1.comparison["exponential"]!.ours
    expect(Math.abs(full.writes - 332) / 332).toBeLessThan(0.15)
    expect(Math.abs(exponential.writes - 628) / 628).toBeLessThan(0.15)
    expect(exponential.seconds / full.seconds).toBeGreaterThan(5)
    const cases = (data["part2"] as { readonly cases: ReadonlyArray<{ readonly name: string; readonly amplificationWhileFailing: number }> }).cases
    const of = (name: string) => cases.find((c) => c.name === name)!.amplificationWhileFailing
    expect(of("3 attempts + budget")).toBeLessThan(of("3 attempts, no budget"))
    expect(of("5 attempts + budget")).toBeLessThan(of("5 attempts, no budget"))
  }, 60_000)

  it("soak: heap flat, no fiber or handle left behind", async () => {
    const { data } = await runQuick("soak")
    expect(data["pass"]).toBe(true)
  }, 60_000)
})

const runPostgres = await postgresGate((name, fn) => describe("bench --quick smoke, Postgres", () => it(name, fn)))

describe.runIf(runPostgres)("bench --quick smoke, Postgres", () => {
  it("cluster: every engine runs every step of every run", async () => {
    const { data } = await runQuick("cluster")
    const rows = data["rows"] as ReadonlyArray<{ readonly engine: string; readonly runs: number; readonly steps: number; readonly stepsPerSecond: number }>
    expect(rows.map((r) => r.engine.split(",")[0])).toEqual(["single process", "single process", "cluster: 3 runner processes"])
    for (const row of rows) {
      expect(row.steps, row.engine).toBe(row.runs * 20)
      expect(row.stepsPerSecond, row.engine).toBeGreaterThan(0)
    }
  }, 120_000)
})

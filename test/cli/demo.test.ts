/**
 * `llm-resilience demo` end to end (what `npm start` runs): offline, exit 0, well under two minutes,
 * the scripted incident visible in the log, the summary, the report — and a secret scan: with fake
 * keys in the environment, no output (stdout, stderr, the HTML report, the SQLite checkpoint files,
 * the spans written to a file and the spans sent to an OTLP endpoint) contains a key value.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Run, runCli, tempDir } from "./helpers.js"

const OPENAI_KEY = "sk-proj-FAKEdemoKEY0123456789abcdefOPENAI"
const ANTHROPIC_KEY = "sk-ant-api03-FAKEdemoKEY9876543210zyxwANTHROPIC"
// Fragments too: a key cut in half (truncation) must not leak either.
const needles = [OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY.slice(8, 30), ANTHROPIC_KEY.slice(14, 36)]

let dir: string
let collector: http.Server
let otlpBodies: Array<{ readonly path: string; readonly body: Buffer }>
let run: Run
let elapsedMs: number

beforeAll(async () => {
  dir = tempDir("demo")
  otlpBodies = []
  collector = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      otlpBodies.push({ path: request.url ?? "", body: Buffer.concat(chunks) })
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve))
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
  const started = Date.now()
  run = await runCli([
    "demo",
    "--report",
    path.join(dir, "report.html"),
    "--store",
    path.join(dir, "checkpoints.sqlite"),
    "--otel-file",
    path.join(dir, "spans.jsonl"),
    "--otel-endpoint",
    endpoint
  ], { env: { OPENAI_API_KEY: OPENAI_KEY, ANTHROPIC_API_KEY: ANTHROPIC_KEY }, timeoutMs: 110_000 })
  elapsedMs = Date.now() - started
}, 120_000)

afterAll(async () => {
  await new Promise<void>((resolve) => collector.close(() => resolve()))
})

describe("demo", () => {
  it("completes offline with exit 0 in under two minutes", () => {
    expect(run.code, run.stderr).toBe(0)
    expect(elapsedMs).toBeLessThan(120_000)
    expect(run.stdout).toMatch(/demo complete in [\d.]+ s/)
  })

  it("plays the scripted incident, visible as plain log lines (stdout is not a TTY)", () => {
    const out = run.stdout
    expect(out).not.toContain("\x1b[")
    expect(out).toMatch(/primary#1 RateLimited 429/)
    expect(out).toMatch(/primary#3 success .* after waiting 1000 ms/)
    expect(out).toMatch(/breaker primary\/gpt-4o-mini closed → open/)
    expect(out).toMatch(/step refused post_draft/)
    expect(out).toMatch(/secondary#1 StreamInterrupted/)
    expect(out).toMatch(/call draft answered by tertiary \(degraded\)/)
    expect(out).toMatch(/tertiary#1 InvalidOutput 200/)
    expect(out).toMatch(/call extract-facts answered by tertiary \(degraded\) after a repair/)
    expect(out).toMatch(/crash the process died during "write-report"/)
    expect(out).toMatch(/resume run research-\S+ resumed from its checkpoint \(7 journaled steps/)
    expect(out).toMatch(/step replayed plan/)
    expect(out).toMatch(/♥ .* still running/)
    expect(out).toMatch(/step done publish_report/)
  })

  it("prints the summary table and writes the report", () => {
    expect(run.stdout).toMatch(/Summary\n {2}calls +\d+ \(\d+ answered, 0 failed\)/)
    expect(run.stdout).toMatch(/ {2}steps +\d+ \(\d+ done, 7 replayed, 1 refused, 1 failed or interrupted\)/)
    expect(run.stdout).toMatch(/draft post +refused while degraded/)
    expect(run.stdout).toMatch(/report published yes, after recovery/)
    const report = fs.readFileSync(path.join(dir, "report.html"), "utf8")
    expect(report).toContain('<svg id="timeline"')
    expect(report).toContain('data-state="open"')
  })

  it("exports GenAI spans", () => {
    const spans = fs.readFileSync(path.join(dir, "spans.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line) as {
      readonly name: string
      readonly attributes: Record<string, unknown>
    })
    const chat = spans.filter((s) => s.name === "chat gpt-4o-mini")
    expect(chat.length).toBeGreaterThan(0)
    expect(chat[0]!.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini" })
    expect(chat.some((s) => typeof s.attributes["gen_ai.usage.output_tokens"] === "number")).toBe(true)
    expect(spans.some((s) => s.name === "llm.attempt")).toBe(true)
    expect(otlpBodies.some((b) => b.path === "/v1/traces" && b.body.length > 0)).toBe(true)
  })

  it("secret scan: no key value in any output", () => {
    const outputs: Array<[string, Buffer]> = [
      ["stdout", Buffer.from(run.stdout)],
      ["stderr", Buffer.from(run.stderr)],
      ["report", fs.readFileSync(path.join(dir, "report.html"))],
      ["spans file", fs.readFileSync(path.join(dir, "spans.jsonl"))],
      ...otlpBodies.map((b, i): [string, Buffer] => [`OTLP request ${i} ${b.path}`, b.body])
    ]
    for (const name of fs.readdirSync(dir).filter((f) => f.startsWith("checkpoints.sqlite"))) {
      outputs.push([name, fs.readFileSync(path.join(dir, name))])
    }
    expect(outputs.some(([name]) => name === "checkpoints.sqlite")).toBe(true)
    // The scan can find what it looks for: the checkpoint DB holds the agent's journal.
    expect(outputs.find(([name]) => name === "checkpoints.sqlite")![1].includes("extract-facts")).toBe(true)
    const hits = outputs.flatMap(([name, bytes]) => needles.filter((needle) => bytes.includes(needle)).map((needle) => `${name}: ${needle}`))
    expect(hits).toEqual([])
  })
})

describe("demo --live", () => {
  it("is wired to the real APIs and says which keys it needs (exit 2 without them)", async () => {
    const live = await runCli(["demo", "--live", "--no-report"])
    expect(live.code).toBe(2)
    expect(live.stderr).toMatch(/--live needs OPENAI_API_KEY and ANTHROPIC_API_KEY/)
  })
})

/**
 * Issue 19's fleet check: 4 worker processes (fixtures/fleetWorker.ts), each with its own `Policy`
 * state shared through one Redis, calling the chaos server over real HTTP at a fixed pace.
 *
 * - **One breaker**: the provider is dead (every answer a 500 after 150 ms). Once every worker's
 *   breaker has opened and the calls it sent before have been answered (each worker says DRAINED),
 *   every request that reaches the server is a probe — and with `FleetBreaker` never two at once
 *   across the fleet (the claim is held until the probe's verdict). The control, opens shared but each
 *   process probing on its own (`gossip: { fleet: false }`), shows overlapping probes.
 * - **One budget**: the provider hard-fails at once; 150 calls per worker, retries (up to 3 per call)
 *   from the route's retry budget (ratio 0.2, a reserve of 2/s over a 2 s window). Shared, the provider
 *   sees the calls × 1.2 plus one reserve per window — ≤ 1.3× here; the control with a budget per
 *   process sees a reserve per process on top.
 *
 * Redis at 127.0.0.1:6379 (skipped with the reason when it is down, failing when CI=true). Real time:
 * the workers pace their calls on it and the server stamps arrivals on it; the assertions are on
 * counts and on the order of arrivals, never on a duration a loaded machine could stretch (the
 * breaker run lasts 3 s from the drain, however long that took; the budget run is a number of calls).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import type { WorkerConfig } from "./fixtures/fleetWorker.js"
import { cleanup, redisGate, redisUrl, uniquePrefix } from "./helpers.js"

const fixture = fileURLToPath(new URL("./fixtures/fleetWorker.ts", import.meta.url))
const WORKERS = 4
const LATENCY_MS = 150

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

interface WorkerReport {
  readonly origin: string
  readonly calls: number
  readonly outcomes: Readonly<Record<string, number>>
  readonly startedAt: number
  readonly endedAt: number
}

/**
 * Starts the workers, waits until every one is READY, says GO to all at once, and collects their
 * reports. `onDrained` runs once every worker has said DRAINED (its breaker is open and every call it
 * sent before has been answered).
 */
const runFleet = (
  config: Omit<WorkerConfig, "origin" | "prefix" | "redisUrl">,
  onDrained: () => Promise<void> = () => Promise.resolve()
): Promise<ReadonlyArray<WorkerReport>> => {
  const prefix = uniquePrefix(`fleet-${config.mode}-${config.sharing}`)
  prefixes.push(prefix)
  const children: Array<ChildProcess> = []
  const ready: Array<Promise<void>> = []
  const drained: Array<Promise<void>> = []
  const reports: Array<Promise<WorkerReport>> = []
  for (let i = 0; i < WORKERS; i++) {
    const child = spawn(process.execPath, ["--import", "tsx", fixture, JSON.stringify({ ...config, prefix, redisUrl, origin: `worker-${i}` })], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    children.push(child)
    const lines = readline.createInterface({ input: child.stdout! })
    let markReady: () => void = () => {}
    let markDrained: () => void = () => {}
    ready.push(new Promise((resolve) => (markReady = resolve)))
    drained.push(new Promise((resolve) => (markDrained = resolve)))
    reports.push(new Promise((resolve, reject) => {
      lines.on("line", (line) => {
        if (line === "READY") markReady()
        else if (line === "DRAINED") markDrained()
        else if (line.startsWith("{")) resolve(JSON.parse(line) as WorkerReport)
      })
      child.on("exit", (code) => reject(new Error(`worker ${i} exited with ${code} before reporting`)))
    }))
  }
  return Promise.all(ready).then(() => {
    for (const child of children) child.stdin!.write("GO\n")
    void Promise.all(drained).then(onDrained)
    return Promise.all(reports)
  }).finally(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
  })
}

/** Probes that were in flight at the same time as the one before them (each takes LATENCY_MS). */
const overlapping = (arrivals: ReadonlyArray<number>) =>
  arrivals.filter((at, i) => i > 0 && at - arrivals[i - 1]! < LATENCY_MS - 5).length

const serve = (route: Scenario.DefaultRoute) => ChaosServer.make({ scenario: { default: route }, logLimit: 100_000 })

const redisUp = await redisGate((name, fn) => describe("Fleet of 4 worker processes over Redis", () => it(name, fn)))

describe.runIf(redisUp)("Fleet of 4 worker processes over Redis", () => {
  it.scopedLive("one breaker for the fleet: while the provider is down only probes reach it, never two at once; opens-only gossip lets each process probe", () =>
    Effect.gen(function*() {
      const dead = { latency: { kind: "fixed", ms: LATENCY_MS }, mix: [{ fault: { kind: "http_error", status: 500 }, rate: 1 }] } as const
      const results: Record<"fleet" | "control", { total: number; probes: ReadonlyArray<number> }> = {
        fleet: { total: 0, probes: [] },
        control: { total: 0, probes: [] }
      }
      for (const sharing of ["fleet", "control"] as const) {
        const server = yield* serve(dead)
        // Requests the server had admitted when every worker had drained the calls it sent before its
        // breaker opened: every later one is a probe.
        let beforeProbes = Number.POSITIVE_INFINITY
        const reports = yield* Effect.promise(() =>
          runFleet(
            { baseUrl: server.openAiBaseUrl, mode: "breaker", sharing, durationMs: 3_000, calls: 0, intervalMs: 20 },
            () => Effect.runPromise(Effect.map(server.stats, (stats) => void (beforeProbes = stats.total)))
          ))
        expect(reports.reduce((n, r) => n + (r.outcomes["success"] ?? 0), 0)).toBe(0)
        const stats = yield* server.stats
        expect(stats.log.length).toBe(stats.total) // the whole log is kept
        results[sharing] = { total: stats.total, probes: stats.log.filter((entry) => entry.seq > beforeProbes).map((entry) => entry.at) }
      }
      const { control, fleet } = results
      console.log(`[fleet breaker] fleet: ${fleet.total} requests, ${fleet.probes.length} probes, ${overlapping(fleet.probes)} overlapping; opens-only gossip: ${control.total} requests, ${control.probes.length} probes, ${overlapping(control.probes)} overlapping`)
      // One probe at a time for the fleet (the next claim only after the last probe's verdict, ≥ 150 ms
      // after it arrived); each failed probe re-opens the fleet for 250 ms, so at most one per 400 ms.
      expect(overlapping(fleet.probes)).toBe(0)
      expect(fleet.probes.length).toBeGreaterThan(0)
      const span = fleet.probes.length > 1 ? fleet.probes.at(-1)! - fleet.probes[0]! : 0
      expect(fleet.probes.length).toBeLessThanOrEqual(Math.floor(span / (LATENCY_MS + 250)) + 1)
      // The control: each process probes on its own, so probes overlap and there are more of them.
      expect(overlapping(control.probes)).toBeGreaterThan(0)
      expect(control.probes.length).toBeGreaterThan(fleet.probes.length)
    }), 120_000)

  it.scopedLive("one retry budget for the fleet: a hard-failing provider sees ≤ 1.3× the calls; a budget per process lets more through", () =>
    Effect.gen(function*() {
      const failing = { mix: [{ fault: { kind: "http_error", status: 500 }, rate: 1 }] } as const
      const amplification: Record<"fleet" | "control", number> = { fleet: 0, control: 0 }
      const fromReserve: Record<"fleet" | "control", number> = { fleet: 0, control: 0 }
      for (const sharing of ["fleet", "control"] as const) {
        const server = yield* serve(failing)
        const reports = yield* Effect.promise(() =>
          runFleet({ baseUrl: server.openAiBaseUrl, mode: "budget", sharing, durationMs: 0, calls: 150, intervalMs: 20 }))
        const calls = reports.reduce((n, r) => n + r.calls, 0)
        expect(reports.reduce((n, r) => n + (r.outcomes["success"] ?? 0), 0)).toBe(0)
        const requests = (yield* server.stats).total
        const elapsed = Math.max(...reports.map((r) => r.endedAt)) - Math.min(...reports.map((r) => r.startedAt))
        amplification[sharing] = requests / calls
        // The retries beyond the budget's 20%: what the reserve paid for.
        fromReserve[sharing] = requests - 1.2 * calls
        console.log(`[fleet budget] ${sharing}: ${calls} calls in ${elapsed} ms, ${requests} requests, ${amplification[sharing].toFixed(3)}×, ${fromReserve[sharing].toFixed(1)} retries from the reserve`)
      }
      expect(amplification.fleet).toBeGreaterThan(1.1) // retries were made (the budget's 20%)…
      expect(amplification.fleet).toBeLessThanOrEqual(1.3) // …within one budget for the fleet…
      // …while a budget per process spends one reserve per process (4 here; 2 leaves room for noise).
      expect(fromReserve.control).toBeGreaterThan(2 * Math.max(1, fromReserve.fleet))
    }), 120_000)
})

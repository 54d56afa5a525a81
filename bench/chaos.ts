/**
 * bench:chaos — goodput under the same seeded chaos scenario, peer by peer.
 *
 * The ChaosServer runs in a child process with two routes, `primary-model` and `fallback-model`, both
 * answering valid JSON `{city, population}` after a lognormal latency (median 50 ms), with a seeded
 * fault mix per route: 30% 529 overloaded, 10% 429 with Retry-After (`retry-after-ms: 500`,
 * `retry-after: 1`), 5% hung responses (`stall_mid_stream`: headers and half the body, then silence),
 * 5% mid-body failures (`stream_cut` with abort: a 200 whose body breaks half-way), and on the
 * fallback another 10% schema-invalid JSON (`population` as a string). The primary has an outage
 * (503) from 15 s to 35 s of a 50 s run. Every peer gets the same run after a `/__chaos/reset` (which
 * restarts the seeded streams and the outage clock) and the same open-loop arrivals: 10 calls per
 * second on a fixed schedule, whatever earlier calls are doing, each bounded by a 15 s caller deadline.
 *
 * Metrics per peer: success rate (a value the contract accepts), invalid outputs accepted, provider
 * calls per success (from /__chaos/stats), p50/p99 latency of successes, success by phase, calls
 * sent to the primary during its outage, and time to recover: from the outage's end to the first
 * healthy answer served by the primary.
 *
 * Run: npm run bench:chaos            (~9 min: 9 clients × 50 s + drains)
 *      npm run bench:chaos -- --quick (1.5 s per peer, outage 0.5–1 s, 1 s deadline; a smoke run, not a measurement)
 *      npm run bench:chaos -- --only="ours,@effect/ai"  (only the peers with these short labels; results go to
 *        chaos-only.json so a partial re-run never replaces the full run's raw data)
 *      npm run bench:chaos -- --repeat=0.3  (the response-cache variant: our chain without and with a
 *        `ResponseCache`, on numbered prompts of which a seeded 30% repeat an earlier call's, at temperature 0;
 *        adds cache hits, spend at example prices (a `Spend` meter) and the latency of cache hits against
 *        provider-served answers; results in chaos-repeat.json)
 */
import { writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type * as Scenario from "../src/testing/Scenario.js"
import { startTs } from "./lib/child.js"
import { type Budget, EXAMPLE_PRICES, FALLBACK, isAnswer, type Peer, peers, PRIMARY, promptNumber, repeatPeers } from "./lib/chaos-peers.js"
import { banner, fmt, percentile, quick, table, writeResults } from "./lib/report.js"
import { lineChart } from "./lib/svg.js"

const T = quick
  ? { runMs: 1_500, outageFromMs: 500, outageToMs: 1_000, callsPerSecond: 20, attemptTimeoutMs: 300, deadlineMs: 1_000 }
  : { runMs: 50_000, outageFromMs: 15_000, outageToMs: 35_000, callsPerSecond: 10, attemptTimeoutMs: 2_000, deadlineMs: 15_000 }
const SEED = 42

/**
 * `--only=short,short`: a subset of peers, to repeat a few rows (e.g. the new ones) more often than a full
 * run allows; every peer still gets the same reset server and schedule, so rows stay comparable.
 */
const only = process.argv.find((arg) => arg.startsWith("--only="))?.slice("--only=".length).split(",").map((s) => s.trim())
/**
 * `--repeat=F`: the response-cache variant. Call i asks a numbered prompt; with probability F (seeded)
 * it repeats the prompt of a uniformly drawn earlier call instead of a new one. Rows: our chain without
 * and with a response cache (`--only` picks among those).
 */
const repeatArg = process.argv.find((arg) => arg.startsWith("--repeat="))?.slice("--repeat=".length)
const repeat = repeatArg === undefined ? undefined : Number(repeatArg)
if (repeat !== undefined && !(repeat >= 0 && repeat < 1)) throw new Error(`--repeat must be a fraction in [0, 1), got ${repeatArg}`)
const pool = repeat === undefined ? peers : repeatPeers
const selected = only === undefined ? pool : pool.filter((peer) => only.includes(peer.short))

/** Which numbered prompt each call asks (the same for every row): a fraction repeats an earlier call's. */
const promptSchedule = (total: number, fraction: number, seed: number): ReadonlyArray<number> => {
  let state = seed >>> 0
  const random = () => {
    // mulberry32: a small seeded PRNG, so every row and every run gets the same schedule.
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  const out: Array<number> = []
  let next = 0
  for (let i = 0; i < total; i++) out.push(i > 0 && random() < fraction ? out[Math.floor(random() * i)]! : next++)
  return out
}
const BUCKET_MS = quick ? 250 : 2_500

const valid = { city: "Paris", population: 2_100_000 }
const invalid = { city: "Paris", population: "about two million" }

const mix = (schemaInvalid: boolean): ReadonlyArray<typeof Scenario.MixEntry.Type> => [
  { fault: { kind: "overloaded" }, rate: 0.30 },
  { fault: { kind: "rate_limit", retryAfterMs: 500, retryAfterSeconds: 1 }, rate: 0.10 },
  { fault: { kind: "stall_mid_stream" }, rate: 0.05 },
  { fault: { kind: "stream_cut", abort: true }, rate: 0.05 },
  ...(schemaInvalid ? [{ fault: { kind: "schema_violation" as const, value: invalid }, rate: 0.10 }] : [])
]

const scenario: Scenario.Scenario = {
  description: "bench:chaos — per-route fault mix, schema-invalid fallback, primary outage",
  seed: SEED,
  routes: [
    {
      name: "primary",
      model: PRIMARY,
      content: { kind: "json", value: valid },
      latency: { kind: "lognormal", medianMs: 50, sigma: 0.5, maxMs: 1_000 },
      mix: mix(false),
      outage: { fromMs: T.outageFromMs, toMs: T.outageToMs }
    },
    {
      name: "fallback",
      model: FALLBACK,
      content: { kind: "json", value: valid },
      latency: { kind: "lognormal", medianMs: 50, sigma: 0.5, maxMs: 1_000 },
      mix: mix(true)
    }
  ]
}

interface Call {
  readonly startMs: number
  readonly endMs: number
  readonly outcome: "valid" | "invalid" | "error"
  readonly error?: string
  readonly message?: string
  /** `--repeat`: the prompt was asked by an earlier call; the answer came from the response cache. */
  readonly repeated?: boolean
  readonly cached?: boolean
}

interface LogEntry {
  readonly at: number
  readonly route: string
  readonly fault: string
}

interface Stats {
  readonly total: number
  readonly byRoute: Record<string, number>
  readonly byFault: Record<string, number>
  readonly log: ReadonlyArray<LogEntry>
  readonly logDropped: number
}

/** A short label for a failure: the error's class (or tag), and the HTTP status when it has one. */
const errorName = (error: unknown): string => {
  if (!(error instanceof Error)) return typeof error
  const name = error.name === "Error" ? error.constructor.name : error.name
  const status = (error as { readonly status?: unknown }).status
  return typeof status === "number" ? `${name} ${status}` : name
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * One peer, one run: reset the server, then start calls on a fixed schedule (open loop: arrivals do
 * not wait for earlier calls, exactly as independent requests to a service would not), each bounded by
 * the caller's deadline; collect the calls and the server's stats.
 */
const runPeer = async (peer: Peer, budget: Budget) => {
  const client = await peer.setup(budget)
  try {
    await fetch(`${budget.chaosUrl}/__chaos/reset`, { method: "POST" })
    const t0 = performance.now()
    const calls: Array<Call> = []
    const inFlight: Array<Promise<void>> = []
    const total = Math.floor((T.runMs / 1000) * T.callsPerSecond)
    const prompts = repeat === undefined ? undefined : promptSchedule(total, repeat, SEED)
    const asked = new Set<number>()
    for (let i = 0; i < total; i++) {
      const due = (i * 1000) / T.callsPerSecond
      const wait = due - (performance.now() - t0)
      if (wait > 0) await sleep(wait)
      const startMs = performance.now() - t0
      // The caller's deadline: peers that take a signal stop there; no call outlives it.
      const signal = AbortSignal.timeout(T.deadlineMs)
      const prompt = prompts?.[i]
      const repeated = prompt === undefined ? {} : { repeated: asked.has(prompt) }
      if (prompt !== undefined) asked.add(prompt)
      const answer = prompt === undefined
        ? client.call(signal).then((value) => ({ value, cached: undefined }))
        : client.ask === undefined
        ? Promise.reject(new Error(`${peer.name} cannot ask numbered prompts (--repeat)`))
        : client.ask(signal, promptNumber(prompt))
      inFlight.push(answer.then(
        ({ cached, value }) => {
          calls.push({
            startMs,
            endMs: performance.now() - t0,
            outcome: isAnswer(value) ? "valid" : "invalid",
            ...repeated,
            ...(cached === undefined ? {} : { cached })
          })
        },
        (error: unknown) => {
          calls.push({
            startMs,
            endMs: performance.now() - t0,
            outcome: "error",
            error: errorName(error),
            message: (error instanceof Error ? error.message : String(error)).slice(0, 240),
            ...repeated
          })
        }
      ))
    }
    await Promise.all(inFlight)
    const stats = (await (await fetch(`${budget.chaosUrl}/__chaos/stats`)).json()) as Stats
    const spent = client.spent === undefined ? undefined : await client.spent()
    return { calls, stats, spent, wallMs: performance.now() - t0 }
  } finally {
    await client.close()
  }
}

const summarise = (peer: Peer, budget: Budget, run: Awaited<ReturnType<typeof runPeer>>) => {
  const { calls, spent, stats } = run
  const ok = calls.filter((c) => c.outcome === "valid")
  const latencies = (subset: ReadonlyArray<Call>) => subset.map((c) => c.endMs - c.startMs)
  const hits = ok.filter((c) => c.cached === true)
  const served = ok.filter((c) => c.cached !== true)
  const phase = (from: number, to: number) => {
    const inPhase = calls.filter((c) => c.startMs >= from && c.startMs < to)
    return inPhase.length === 0 ? Number.NaN : inPhase.filter((c) => c.outcome === "valid").length / inPhase.length
  }
  const recoveredAt = stats.log.find((e) => e.route === "primary" && e.fault === "ok" && e.at >= T.outageToMs)?.at
  const errors: Record<string, number> = {}
  const errorSamples: Record<string, string> = {}
  for (const c of calls) {
    if (c.error === undefined) continue
    errors[c.error] = (errors[c.error] ?? 0) + 1
    errorSamples[c.error] ??= c.message ?? ""
  }
  const buckets = Math.ceil(T.runMs / BUCKET_MS)
  const perBucket = Array.from({ length: buckets }, () => 0)
  for (const c of ok) {
    const i = Math.min(buckets - 1, Math.floor(c.endMs / BUCKET_MS))
    perBucket[i]! += 1
  }
  return {
    peer: peer.name,
    short: peer.short,
    config: peer.config(budget),
    calls: calls.length,
    successes: ok.length,
    successRate: ok.length / Math.max(1, calls.length),
    invalidAccepted: calls.filter((c) => c.outcome === "invalid").length,
    providerCalls: stats.total,
    providerCallsPerSuccess: ok.length === 0 ? Number.NaN : stats.total / ok.length,
    p50Ms: percentile(ok.map((c) => c.endMs - c.startMs), 50),
    p99Ms: percentile(ok.map((c) => c.endMs - c.startMs), 99),
    failedP50Ms: percentile(calls.filter((c) => c.outcome === "error").map((c) => c.endMs - c.startMs), 50),
    // What a caller waits for an answer it can use: every call counts, and one that failed (or
    // answered off-contract) never answered. Percentiles of successes alone favour clients that give
    // up early — their slow calls are failures and drop out.
    answerP50Ms: percentile(calls.map(timeToAnswer), 50),
    answerP90Ms: percentile(calls.map(timeToAnswer), 90),
    successBefore: phase(0, T.outageFromMs),
    successDuring: phase(T.outageFromMs, T.outageToMs),
    successAfter: phase(T.outageToMs, T.runMs),
    primaryCallsDuringOutage: stats.log.filter((e) => e.route === "primary" && e.at >= T.outageFromMs && e.at < T.outageToMs).length,
    recoveryMs: recoveredAt === undefined ? null : recoveredAt - T.outageToMs,
    errors,
    errorSamples,
    byFault: stats.byFault,
    byRoute: stats.byRoute,
    logDropped: stats.logDropped,
    successesPerSecond: perBucket.map((n) => n / (BUCKET_MS / 1000)),
    /** `--repeat` only: the response cache's effect. */
    ...(repeat === undefined ? {} : {
      repeatedCalls: calls.filter((c) => c.repeated === true).length,
      cacheHits: hits.length,
      costUsd: spent?.costUsd ?? Number.NaN,
      costPerSuccessUsd: spent === undefined || ok.length === 0 ? Number.NaN : spent.costUsd / ok.length,
      tokens: spent?.tokens ?? Number.NaN,
      unreportedCalls: spent?.unreported ?? Number.NaN,
      /** Latency of successes answered from the cache, and of those a provider answered. */
      hitP50Ms: percentile(latencies(hits), 50),
      hitP99Ms: percentile(latencies(hits), 99),
      providerP50Ms: percentile(latencies(served), 50),
      providerP99Ms: percentile(latencies(served), 99)
    }),
    /** Every call as [start ms, end ms, outcome], for re-analysis. */
    timeline: calls.map((c) => [Math.round(c.startMs), Math.round(c.endMs), c.error ?? c.outcome] as const)
  }
}

const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "–")

/** A call's time to a valid answer; `Infinity` when it never got one. */
const timeToAnswer = (call: Call): number => (call.outcome === "valid" ? call.endMs - call.startMs : Number.POSITIVE_INFINITY)

/** A latency for the table: `never` for a percentile that falls among the calls without an answer. */
const fmtAnswer = (ms: number): string => (ms === Number.POSITIVE_INFINITY ? "never" : fmt(ms, 0))

const main = async () => {
  banner(
    repeat === undefined ? "chaos" : "chaos --repeat",
    repeat === undefined
      ? "goodput of each client under one seeded chaos scenario"
      : `the same chaos with ${(repeat * 100).toFixed(0)}% repeated prompts: our chain without and with a response cache`
  )
  const scenarioFile = join(tmpdir(), `llmr-bench-chaos-${process.pid}.json`)
  writeFileSync(scenarioFile, JSON.stringify(scenario))
  const server = await startTs("chaos-child.ts", [scenarioFile], { ready: /READY (\d+)/ })
  const budget: Budget = {
    chaosUrl: `http://127.0.0.1:${server.ready}`,
    attemptTimeoutMs: T.attemptTimeoutMs,
    deadlineMs: T.deadlineMs,
    ...(repeat === undefined ? {} : { spendMeter: true })
  }
  console.log(
    `chaos server on ${budget.chaosUrl}; ${T.callsPerSecond} calls/s for ${T.runMs / 1000} s per peer, primary outage ${T.outageFromMs / 1000}–${T.outageToMs / 1000} s\n`
  )
  const results: Array<ReturnType<typeof summarise>> = []
  const unavailable: Array<{ readonly peer: string; readonly reason: string }> = []
  try {
    if (selected.length === 0) throw new Error(`--only matched no peer; short labels: ${peers.map((p) => p.short).join(", ")}`)
    for (const peer of selected) {
      try {
        const run = await runPeer(peer, budget)
        const summary = summarise(peer, budget, run)
        results.push(summary)
        console.log(
          `${peer.name}: ${summary.calls} calls, success ${pct(summary.successRate)}, invalid accepted ${summary.invalidAccepted}, ` +
            `${fmt(summary.providerCallsPerSuccess, 2)} provider calls/success, errors ${JSON.stringify(summary.errors)}`
        )
      } catch (error) {
        const reason = error instanceof Error ? error.message.split("\n")[0]! : String(error)
        unavailable.push({ peer: peer.name, reason })
        console.log(`${peer.name}: COULD NOT RUN — ${reason}`)
      }
    }
  } finally {
    await server.stop()
  }

  console.log("")
  const ours = results.find((r) => r.short === "ours")
  const ratio = (mine: number | undefined, theirs: number) =>
    mine === undefined || !Number.isFinite(mine) || !Number.isFinite(theirs) || theirs === 0 ? "–" : `${(mine / theirs).toFixed(2)}×`
  table(
    [
      "peer",
      "calls",
      "success",
      "valid answers",
      "invalid accepted",
      "provider calls / success",
      "p50 ms",
      "p99 ms",
      "answer p50 / p90 ms (all calls)",
      "success before / during / after outage",
      "primary calls in outage",
      "recover s",
      "ours success ÷ peer"
    ],
    results.map((r) => [
      r.peer,
      String(r.calls),
      pct(r.successRate),
      String(r.successes),
      String(r.invalidAccepted),
      fmt(r.providerCallsPerSuccess, 2),
      fmt(r.p50Ms, 0),
      fmt(r.p99Ms, 0),
      `${fmtAnswer(r.answerP50Ms)} / ${fmtAnswer(r.answerP90Ms)}`,
      `${pct(r.successBefore)} / ${pct(r.successDuring)} / ${pct(r.successAfter)}`,
      String(r.primaryCallsDuringOutage),
      r.recoveryMs === null ? `> ${((T.runMs - T.outageToMs) / 1000).toFixed(1)}` : fmt(r.recoveryMs / 1000, 2),
      ratio(ours?.successRate, r.successRate)
    ])
  )
  for (const u of unavailable) console.log(`\n${u.peer} could not run: ${u.reason}`)
  if (repeat !== undefined) {
    console.log(`\nresponse cache (${(repeat * 100).toFixed(0)}% repeated prompts; cost at EXAMPLE prices of $${EXAMPLE_PRICES.inputPerMTok} / $${EXAMPLE_PRICES.outputPerMTok} per M input / output tokens, as a Spend meter counts it)\n`)
    table(
      [
        "peer",
        "calls",
        "repeated prompts",
        "success",
        "provider calls",
        "provider calls / success",
        "cache hits",
        "cost USD",
        "cost / success USD",
        "provider-served p50 / p99 ms",
        "cache-hit p50 / p99 ms"
      ],
      results.map((r) => [
        r.peer,
        String(r.calls),
        String(r.repeatedCalls),
        pct(r.successRate),
        String(r.providerCalls),
        fmt(r.providerCallsPerSuccess, 2),
        String(r.cacheHits),
        fmt(r.costUsd, 6),
        fmt(r.costPerSuccessUsd, 8),
        `${fmt(r.providerP50Ms, 0)} / ${fmt(r.providerP99Ms, 0)}`,
        `${fmt(r.hitP50Ms, 2)} / ${fmt(r.hitP99Ms, 2)}`
      ])
    )
  }

  const svg = lineChart({
    title: "bench:chaos — valid answers per second (higher is better)",
    subtitle: `${T.callsPerSecond} calls/s offered, ${BUCKET_MS / 1000} s buckets; per route 30% 529, 10% 429, 5% hung, 5% cut; fallback +10% invalid`,
    x: { label: "seconds since start", min: 0, max: T.runMs / 1000 },
    y: { label: "valid answers / s" },
    band: { from: T.outageFromMs / 1000, to: T.outageToMs / 1000, label: "primary outage" },
    series: results.map((r) => ({
      name: r.short,
      points: r.successesPerSecond.map((v, i) => [((i + 0.5) * BUCKET_MS) / 1000, v] as const)
    }))
  })
  if (repeat !== undefined) {
    writeResults(
      "chaos-repeat",
      { timing: T, seed: SEED, only, repeat, examplePrices: EXAMPLE_PRICES, scenario, results, unavailable },
      svg,
      `npm run bench:chaos -- --repeat=${repeat}${only === undefined ? "" : ` --only=${only.join(",")}`}${quick ? " --quick" : ""}`
    )
    return
  }
  writeResults(only === undefined ? "chaos" : "chaos-only", { timing: T, seed: SEED, only, scenario, results, unavailable }, svg)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

/**
 * bench:overhead — what the resilience layers cost per call on the success path, next to the peers,
 * in one run on one machine.
 *
 * Each family has its own bare call, and a layer's *overhead* is its per-call time minus that bare
 * call's, measured in the same round:
 *
 * - promise: a resolved `Promise` (the no-op "provider"); cockatiel `wrap(retry, circuitBreaker,
 *   timeout)` and opossum (breaker + timeout) around it.
 * - effect (sync): a provider whose `generate` is `Effect.succeed` — the policy's own bookkeeping;
 *   `Policy.default` (retry + budget + timeouts + breaker) and the full stack (+ rate limiter), with
 *   and without a deadline, with hedging on, and the full stack with the previous attempt-timeout
 *   design (`Effect.timeoutFail`) for before/after.
 * - effect (async): the same provider resolving through a Promise (one event-loop turn, like the
 *   promise family's bare call), where a preemptible attempt timeout needs its own fiber.
 * - primitives: `Effect.timeoutFail` against the attempt timer the policies use (`Timeouts.generate`).
 * - stream: a 100-chunk stream (each chunk one event-loop turn away, like network data) bare, through
 *   a `Stream.interruptWhen` watchdog (the previous phase-timeout design: `Channel.mergeWith` forks per
 *   pull), through `Timeouts.stream` (one producer fiber, one timer), through a route's
 *   `Policy.default` and through a two-route chain with a deadline.
 * - chain: what an application calls — a structured answer through a two-route fallback chain whose
 *   primary answers. Ours: `Fallback` (= `LlmClient`) `generateObject` with the quickstart's settings
 *   (a 30 s deadline, one repair), each route under `Policy.default`, over the async provider; it also
 *   keeps the attempt history and publishes `DegradedMode`. The peer: cockatiel's `fallback` over two
 *   routes, each `wrap(retry, circuitBreaker, timeout)`, then `JSON.parse` and the same Effect Schema
 *   decode (synchronous) — the same work a hand-rolled chain must do, with nothing recorded.
 *
 * Per case and round: mitata's median and p99 (wall clock), CPU time per call over a fixed loop
 * (`process.cpuUsage`, which a busy machine disturbs less than wall time), and bytes allocated per call
 * (heap growth over a window of calls right after a full GC, keeping only windows no GC ran in). Rounds are
 * interleaved (the order rotates); overheads and ratios are taken per round and their median is
 * reported.
 *
 * Targets (issue 4): full-stack overhead ≤ 0.5 × cockatiel's, and a full-stack median ≤ 25 µs.
 *
 * Run: npm run bench:overhead            (5 rounds, ~2 min; pinned to CPU 0 where taskset exists)
 *      npm run bench:overhead -- --quick (1 short round, a few seconds: a smoke, not a measurement)
 *      add `--no-pin` on a machine shared with other work
 */
import {
  circuitBreaker,
  ConsecutiveBreaker,
  ExponentialBackoff,
  fallback,
  handleAll,
  retry,
  timeout,
  TimeoutStrategy,
  wrap
} from "cockatiel"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { measure } from "mitata"
import { PerformanceObserver } from "node:perf_hooks"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import CircuitBreaker from "opossum"
// The library as it ships: the package's own name resolves to the compiled dist/ (the script builds it
// first). Under tsx the TypeScript sources would be measured with esbuild's keep-names helper wrapped
// around every closure the hot path creates, a cost no user of the package pays.
import * as DegradedMode from "effect-llm-resilience/DegradedMode"
import { Timeout } from "effect-llm-resilience/Errors"
import * as Fallback from "effect-llm-resilience/Fallback"
import * as Policy from "effect-llm-resilience/Policy"
import type { GenerateRequest, GenerateResponse, ProviderShape, StreamEvent } from "effect-llm-resilience/Provider"
import * as Timeouts from "effect-llm-resilience/Timeouts"
import { banner, fmt, median, pinSelf, quick, table, writeResults } from "./lib/report.js"

const ROUNDS = quick ? 1 : 5
const MIN_CPU_NS = quick ? 40e6 : 400e6
const CPU_BUDGET_MS = quick ? 30 : 300

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const response: GenerateResponse = {
  provider: "noop",
  model: "m",
  text: "ok",
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 }
}

// ---- the promise family ----

const bareAsync = () => Promise.resolve(response)
const cockatiel = wrap(
  retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
  circuitBreaker(handleAll, { halfOpenAfter: 5_000, breaker: new ConsecutiveBreaker(5) }),
  timeout(600_000, TimeoutStrategy.Aggressive)
)
const opossum = new CircuitBreaker(bareAsync, { timeout: 600_000, resetTimeout: 5_000, errorThresholdPercentage: 50 })

// ---- the chain family: a structured answer through a two-route fallback chain ----

const Triage = Schema.Struct({ severity: Schema.Literal("low", "high"), summary: Schema.String })
const triageJson = JSON.stringify({ severity: "high", summary: "checkout returns 502 for 3% of users" })
const chainRequest: Fallback.ChainRequest = { messages: [{ role: "user", content: "Triage: checkout returns 502." }], maxTokens: 300 }
const jsonResponse: GenerateResponse = { ...response, text: triageJson }
const decodeTriage = Schema.decodeUnknownSync(Triage)

const routePolicy = () =>
  wrap(
    retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
    circuitBreaker(handleAll, { halfOpenAfter: 5_000, breaker: new ConsecutiveBreaker(5) }),
    timeout(30_000, TimeoutStrategy.Aggressive)
  )
const cockatielPrimary = routePolicy()
const cockatielSecondary = routePolicy()
const jsonAnswer = () => Promise.resolve(jsonResponse)
const cockatielChain = fallback(handleAll, () => cockatielSecondary.execute(jsonAnswer))
const cockatielChainCall = async () => {
  const answer = await cockatielChain.execute(() => cockatielPrimary.execute(jsonAnswer))
  return decodeTriage(JSON.parse(answer.text))
}

// ---- the effect families ----

const syncProvider: ProviderShape = {
  name: "noop",
  generate: () => Effect.succeed(response),
  stream: () => Stream.succeed({ _tag: "Finish", response } as const)
}
const asyncProvider: ProviderShape = {
  ...syncProvider,
  generate: () => Effect.promise(() => Promise.resolve(response))
}
const jsonProvider: ProviderShape = {
  ...syncProvider,
  generate: () => Effect.promise(() => Promise.resolve(jsonResponse))
}
const attemptTimeout = (provider: ProviderShape) => () =>
  new Timeout({ provider: provider.name, model: "m", route: "bench", attempt: 1, phase: "attempt", timeoutMs: 600_000, message: "timeout" })
/** The previous design: every attempt raced against a sleep with `Effect.timeoutFail`. */
const withTimeoutFail = (provider: ProviderShape): ProviderShape => ({
  ...provider,
  generate: (req) => Effect.timeoutFail(provider.generate(req), { duration: 600_000, onTimeout: attemptTimeout(provider) })
})

const limiter = { requestsPerMinute: 1e9, tokensPerMinute: 1e12, maxConcurrency: 1e6 }
const policies = {
  default: Policy.make({}),
  full: Policy.make({ rateLimit: limiter }),
  fullDeadline: Policy.make({ rateLimit: limiter, deadline: "5 minutes" }),
  fullHedge: Policy.make({ rateLimit: limiter, hedge: { delay: "2 seconds" } }),
  before: Policy.make({ rateLimit: limiter, timeouts: false })
}

interface Case {
  readonly name: string
  readonly family: "promise" | "effect-sync" | "effect-async" | "primitive" | "stream" | "chain"
  /** The bare call this case's overhead is measured against. */
  readonly base: string
  readonly run: () => Promise<unknown>
}

interface Sample {
  readonly p50: number
  readonly p99: number
  readonly alloc: number | undefined
  readonly cpu: number
}

// A full GC on demand (to start allocation windows from a clean heap), and the times GCs ran.
v8.setFlagsFromString("--expose-gc")
const gc = vm.runInNewContext("gc") as () => void
const gcStarts: Array<number> = []
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcStarts.push(entry.startTime)
}).observe({ entryTypes: ["gc"] })
const nextTurn = (ms = 0) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Bytes allocated per call: heap growth over a window of calls in which no GC ran (median of windows). */
const allocPerCall = async (run: () => Promise<unknown>, calls: number): Promise<number | undefined> => {
  const perCall: Array<number> = []
  for (let window = 0; window < (quick ? 3 : 9); window++) {
    gc()
    await nextTurn()
    const t0 = performance.now()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < calls; i++) await run()
    const after = process.memoryUsage().heapUsed
    const t1 = performance.now()
    await nextTurn(2) // let the GC observer report
    if (!gcStarts.some((at) => at >= t0 && at <= t1)) perCall.push((after - before) / calls)
  }
  return perCall.length === 0 ? undefined : median(perCall)
}

/** Wall milliseconds per call, roughly (sizes the loops below). */
const calibrate = async (run: () => Promise<unknown>): Promise<number> => {
  const start = performance.now()
  for (let i = 0; i < 100; i++) await run()
  return Math.max((performance.now() - start) / 100, 1e-4)
}

/** CPU time per call over a loop sized to take about `CPU_BUDGET_MS`. */
const cpuPerCall = async (run: () => Promise<unknown>, perCallMs: number): Promise<number> => {
  const calls = Math.max(200, Math.min(50_000, Math.round(CPU_BUDGET_MS / perCallMs)))
  const start = process.cpuUsage()
  for (let i = 0; i < calls; i++) await run()
  const used = process.cpuUsage(start)
  return ((used.user + used.system) * 1000) / calls // ns
}

const sample = async (run: () => Promise<unknown>): Promise<Sample> => {
  const stats = await measure(run, { min_cpu_time: MIN_CPU_NS })
  const perCallMs = await calibrate(run)
  return {
    p50: stats.p50,
    p99: stats.p99,
    cpu: await cpuPerCall(run, perCallMs),
    // Windows of about 1 ms of calls: short enough for a young-generation GC to be unlikely.
    alloc: await allocPerCall(run, Math.max(2, Math.min(100, Math.round(1 / perCallMs))))
  }
}

const main = async () => {
  banner("overhead", "success-path cost per call of the policy stack vs bare calls, cockatiel and opossum")
  // Pinning steadies a quiet machine; on a shared one it only adds contention (`--no-pin`).
  const pinned = process.argv.includes("--no-pin") ? undefined : pinSelf(0)
  if (pinned !== undefined) console.log(`pinned to CPU ${pinned}\n`)

  const managed = ManagedRuntime.make(Layer.merge(Policy.layerState, DegradedMode.layer))
  const runtime = await managed.runtime()
  const run = Runtime.runPromise(runtime)
  const wrapped = async (policy: Policy.PolicyOptions, provider: ProviderShape, route: string) => {
    const p = await run(Policy.apply(policy, provider, route))
    return () => run(p.generate(request))
  }

  const sync = {
    default: await wrapped(policies.default, syncProvider, "sync-default"),
    full: await wrapped(policies.full, syncProvider, "sync-full"),
    fullDeadline: await wrapped(policies.fullDeadline, syncProvider, "sync-full-deadline"),
    fullHedge: await wrapped(policies.fullHedge, syncProvider, "sync-full-hedge"),
    before: await wrapped(policies.before, withTimeoutFail(syncProvider), "sync-before")
  }
  const async_ = {
    full: await wrapped(policies.full, asyncProvider, "async-full"),
    before: await wrapped(policies.before, withTimeoutFail(asyncProvider), "async-before")
  }
  const chain = await run(Fallback.make({
    deadline: "30 seconds",
    repairAttempts: 1,
    routes: [
      { name: "chain-primary", provider: jsonProvider, model: "primary" },
      { name: "chain-fallback", provider: jsonProvider, model: "fallback" }
    ]
  }))
  const site = { provider: "noop", model: "m", route: "bench", attempt: 1 }
  const syncCall = syncProvider.generate(request)
  const asyncCall = asyncProvider.generate(request)
  const onTimeout = attemptTimeout(syncProvider)
  // The attempt timer alone: what `Policy` arms around each attempt.
  const attemptOnly = Timeouts.make({ attempt: 600_000 })

  const chunks = () =>
    Stream.concat(
      Stream.concat(
        Stream.succeed<StreamEvent>({ _tag: "Metadata" }),
        Stream.mapEffect(Stream.range(1, 100), () => Effect.promise(() => Promise.resolve<StreamEvent>({ _tag: "TextDelta", text: "x" })))
      ),
      Stream.succeed<StreamEvent>({ _tag: "Finish", response })
    )
  const phaseTimeouts = Timeouts.make({})
  // The same 100 chunks served by a provider, through a route's policy and through a chain.
  const streamingProvider: ProviderShape = { ...syncProvider, stream: chunks }
  const streamingPolicy = await run(Policy.apply(policies.default, streamingProvider, "stream-default"))
  const streamingChain = await run(Fallback.make({
    deadline: "30 seconds",
    routes: [
      { name: "stream-primary", provider: streamingProvider, model: "primary" },
      { name: "stream-fallback", provider: streamingProvider, model: "fallback" }
    ]
  }))

  const cases: ReadonlyArray<Case> = [
    { name: "promise: bare call", family: "promise", base: "promise: bare call", run: bareAsync },
    { name: "promise: cockatiel wrap(retry, breaker, timeout)", family: "promise", base: "promise: bare call", run: () => cockatiel.execute(bareAsync) },
    { name: "promise: opossum (breaker + timeout)", family: "promise", base: "promise: bare call", run: () => opossum.fire() },
    { name: "effect sync: bare provider call", family: "effect-sync", base: "effect sync: bare provider call", run: () => run(syncCall) },
    { name: "effect sync: Policy.default (retry+budget+timeouts+breaker)", family: "effect-sync", base: "effect sync: bare provider call", run: sync.default },
    { name: "effect sync: full stack (+ rate limiter)", family: "effect-sync", base: "effect sync: bare provider call", run: sync.full },
    { name: "effect sync: full stack + deadline", family: "effect-sync", base: "effect sync: bare provider call", run: sync.fullDeadline },
    { name: "effect sync: full stack + hedging", family: "effect-sync", base: "effect sync: bare provider call", run: sync.fullHedge },
    { name: "effect sync: full stack, Effect.timeoutFail attempt timeout (before)", family: "effect-sync", base: "effect sync: bare provider call", run: sync.before },
    { name: "effect async: bare provider call", family: "effect-async", base: "effect async: bare provider call", run: () => run(asyncCall) },
    { name: "effect async: full stack (+ rate limiter)", family: "effect-async", base: "effect async: bare provider call", run: async_.full },
    { name: "effect async: full stack, Effect.timeoutFail attempt timeout (before)", family: "effect-async", base: "effect async: bare provider call", run: async_.before },
    { name: "timer: Effect.timeoutFail, sync effect", family: "primitive", base: "effect sync: bare provider call", run: () => run(Effect.timeoutFail(syncCall, { duration: 600_000, onTimeout })) },
    { name: "timer: attempt timer (Timeouts), sync effect", family: "primitive", base: "effect sync: bare provider call", run: () => run(attemptOnly.generate(syncCall, site)) },
    { name: "timer: Effect.timeoutFail, async effect", family: "primitive", base: "effect async: bare provider call", run: () => run(Effect.timeoutFail(asyncCall, { duration: 600_000, onTimeout })) },
    { name: "timer: attempt timer (Timeouts), async effect", family: "primitive", base: "effect async: bare provider call", run: () => run(attemptOnly.generate(asyncCall, site)) },
    { name: "chain: cockatiel fallback(2 × wrap(retry, breaker, timeout)) + JSON.parse + Schema decode", family: "chain", base: "promise: bare call", run: cockatielChainCall },
    { name: "chain: ours, generateObject over 2 routes (Policy.default each, 30 s deadline, schema gate)", family: "chain", base: "effect async: bare provider call", run: () => run(chain.generateObject(Triage, chainRequest)) },
    { name: "stream: 100 chunks, bare", family: "stream", base: "stream: 100 chunks, bare", run: () => run(Stream.runDrain(chunks())) },
    { name: "stream: 100 chunks, Stream.interruptWhen watchdog (before)", family: "stream", base: "stream: 100 chunks, bare", run: () => run(Stream.runDrain(Stream.interruptWhen(chunks(), Effect.never))) },
    { name: "stream: 100 chunks, Timeouts.stream (all phases)", family: "stream", base: "stream: 100 chunks, bare", run: () => run(Stream.runDrain(phaseTimeouts.stream(chunks(), site))) },
    { name: "stream: 100 chunks, Policy.default (retry + budget + timeouts + breaker)", family: "stream", base: "stream: 100 chunks, bare", run: () => run(Stream.runDrain(streamingPolicy.stream(request))) },
    { name: "stream: 100 chunks, chain over 2 routes (Policy.default each, 30 s deadline)", family: "stream", base: "stream: 100 chunks, bare", run: () => run(Stream.runDrain(streamingChain.stream(chainRequest))) }
  ]

  const samples = new Map<string, Array<Sample>>(cases.map((c) => [c.name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    const order = cases.map((_, i) => cases[(i + round * 3) % cases.length]!)
    for (const c of order) samples.get(c.name)!.push(await sample(c.run))
    console.log(`round ${round + 1}/${ROUNDS} done`)
  }

  /** Per-round values of `f`, then their median. */
  const perRound = (f: (round: number) => number) => median(Array.from({ length: ROUNDS }, (_, r) => f(r)))
  const at = (name: string, round: number) => samples.get(name)![round]!
  const overhead = (c: Case, metric: "p50" | "cpu", round: number) => at(c.name, round)[metric] - at(c.base, round)[metric]
  const byName = (name: string) => cases.find((c) => c.name === name)!

  const rows = cases.map((c) => ({
    name: c.name,
    family: c.family,
    p50Us: perRound((r) => at(c.name, r).p50) / 1000,
    p99Us: perRound((r) => at(c.name, r).p99) / 1000,
    overheadUs: perRound((r) => overhead(c, "p50", r)) / 1000,
    cpuUs: perRound((r) => at(c.name, r).cpu) / 1000,
    cpuOverheadUs: perRound((r) => overhead(c, "cpu", r)) / 1000,
    allocBytesPerCall: median(samples.get(c.name)!.flatMap((s) => (s.alloc === undefined ? [] : [s.alloc])))
  }))

  const cockatielCase = byName("promise: cockatiel wrap(retry, breaker, timeout)")
  const cockatielChainCase = byName("chain: cockatiel fallback(2 × wrap(retry, breaker, timeout)) + JSON.parse + Schema decode")
  const ratio = (name: string, metric: "p50" | "cpu", peer: Case = cockatielCase) =>
    perRound((r) => overhead(byName(name), metric, r) / overhead(peer, metric, r))
  const fullSync = "effect sync: full stack (+ rate limiter)"
  const fullAsync = "effect async: full stack (+ rate limiter)"
  const oursChain = "chain: ours, generateObject over 2 routes (Policy.default each, 30 s deadline, schema gate)"
  const row = (name: string) => rows.find((r) => r.name === name)!
  const figures = (name: string) => ({
    p50Us: row(name).p50Us,
    overheadUs: row(name).overheadUs,
    cpuOverheadUs: row(name).cpuOverheadUs,
    vsCockatiel: ratio(name, "p50"),
    vsCockatielCpu: ratio(name, "cpu")
  })
  const summary = {
    cockatielOverheadUs: row(cockatielCase.name).overheadUs,
    opossumOverheadUs: row("promise: opossum (breaker + timeout)").overheadUs,
    fullSync: figures(fullSync),
    fullAsync: figures(fullAsync),
    chain: {
      p50Us: row(oursChain).p50Us,
      overheadUs: row(oursChain).overheadUs,
      cpuOverheadUs: row(oursChain).cpuOverheadUs,
      cockatielChainOverheadUs: row(cockatielChainCase.name).overheadUs,
      vsCockatielChain: ratio(oursChain, "p50", cockatielChainCase),
      vsCockatielChainCpu: ratio(oursChain, "cpu", cockatielChainCase)
    },
    targets: {
      overheadAtMostHalfOfCockatiel: ratio(fullSync, "p50") <= 0.5,
      asyncOverheadAtMostHalfOfCockatiel: ratio(fullAsync, "p50") <= 0.5,
      medianAtMost25Us: row(fullSync).p50Us <= 25
    }
  }

  console.log("")
  table(
    ["case", "p50 µs", "p99 µs", "overhead p50 µs", "CPU µs/call", "CPU overhead µs", "alloc B/call"],
    rows.map((r) => {
      const isBase = byName(r.name).base === r.name
      return [
        r.name,
        fmt(r.p50Us, 2),
        fmt(r.p99Us, 2),
        isBase ? "–" : fmt(r.overheadUs, 2),
        fmt(r.cpuUs, 2),
        isBase ? "–" : fmt(r.cpuOverheadUs, 2),
        fmt(r.allocBytesPerCall, 0)
      ]
    })
  )
  console.log(
    `\nfull stack (sync provider): median ${fmt(summary.fullSync.p50Us, 2)} µs, overhead ${fmt(summary.fullSync.overheadUs, 2)} µs` +
      ` = ${fmt(summary.fullSync.vsCockatiel, 2)}× cockatiel's ${fmt(summary.cockatielOverheadUs, 2)} µs` +
      ` (CPU time: ${fmt(summary.fullSync.vsCockatielCpu, 2)}×)`
  )
  console.log(
    `full stack (async provider): overhead ${fmt(summary.fullAsync.overheadUs, 2)} µs = ${fmt(summary.fullAsync.vsCockatiel, 2)}× cockatiel's` +
      ` (CPU time: ${fmt(summary.fullAsync.vsCockatielCpu, 2)}×)`
  )
  console.log(
    `chain (generateObject, 2 routes): overhead ${fmt(summary.chain.overheadUs, 2)} µs = ${fmt(summary.chain.vsCockatielChain, 2)}×` +
      ` cockatiel's fallback chain + decode (${fmt(summary.chain.cockatielChainOverheadUs, 2)} µs; CPU time: ${fmt(summary.chain.vsCockatielChainCpu, 2)}×)`
  )
  console.log(
    `targets: overhead ≤ 0.5× cockatiel: sync ${summary.targets.overheadAtMostHalfOfCockatiel ? "met" : "NOT met"},` +
      ` async ${summary.targets.asyncOverheadAtMostHalfOfCockatiel ? "met" : "NOT met"};` +
      ` median ≤ 25 µs: ${summary.targets.medianAtMost25Us ? "met" : "NOT met"}`
  )

  writeResults("overhead", { rounds: ROUNDS, summary, rows }, {})
  opossum.shutdown()
  await managed.dispose()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

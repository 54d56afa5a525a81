/**
 * bench:herd — the thundering herd, in virtual time.
 *
 * Part 1 re-implements the model of the AWS Architecture Blog's backoff simulator ("Exponential
 * Backoff And Jitter"): N clients each update one row under optimistic concurrency control. A client
 * reads the row's version, then writes with it; the write succeeds only if no other write landed in
 * between (each network hop is |Normal(10 ms, 2 ms)|). A failed write sleeps for the backoff, then
 * reads again. The backoff delays come from our `Retry.backoffDelay` (base 5 ms, cap 2 s) drawn from a
 * seeded Effect `Random`; the loop is a discrete-event simulation (a priority queue of timestamped
 * messages), so a run takes microseconds of wall time per simulated second. Like the original, each
 * cell is the mean of many seeded runs, and the exponent after the n-th failed write is n (the first
 * sleep is up to 2·base). Strategies: none (retry at once), exponential (no jitter), full, equal and
 * decorrelated jitter. Measured: writes (total calls) and completion time.
 *
 * Part 2 drives our real `Policy` in virtual time (bench/lib/virtual-time.ts: a controlled scheduler
 * and a virtual Clock — TestClock's per-wake-up settling is too slow for thousands of calls): 100
 * calls per virtual second to a provider that
 * answers in 20 ms, hard-fails (500) from 10 s to 30 s, then recovers; attempts per second with and
 * without the retry budget (and with the whole default policy, breaker included).
 *
 * Run: npm run bench:herd            (N = 10…100 step 10, 100 runs per cell)
 *      npm run bench:herd -- --quick (N = 10, 50, 100, 10 runs per cell; shorter part 2)
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../src/Provider.js"
import * as Retry from "../src/Retry.js"
import * as Mock from "../src/testing/MockProvider.js"
import { banner, fmt, quick, table, writeResults } from "./lib/report.js"
import { lineChart } from "./lib/svg.js"
import { EventQueue, runVirtual } from "./lib/virtual-time.js"

// ---------------------------------------------------------------------------------------------------
// Part 1: the OCC contention simulation
// ---------------------------------------------------------------------------------------------------

type Strategy = "none" | "exponential" | "full" | "equal" | "decorrelated"
const strategies: ReadonlyArray<Strategy> = ["none", "exponential", "full", "equal", "decorrelated"]
const jitterOf: Record<Exclude<Strategy, "none">, Retry.Jitter> = {
  exponential: "none",
  full: "full",
  equal: "equal",
  decorrelated: "decorrelated"
}

const BASE_MS = 5
const CAP_MS = 2_000
const NET_MEAN_MS = 10
const NET_SD_MS = 2
const CLIENTS = quick ? [10, 50, 100] : [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
const RUNS = quick ? 10 : 100
const SEED = 2015

/** The published re-run figures (BRIEF): 50 clients. */
const published = { full: { writes: 332, seconds: 2.9 }, exponential: { writes: 628, seconds: 36.6 } }

/** A message on the simulated network, delivered at `at`. */
interface Message {
  readonly at: number
  readonly seq: number
  readonly kind: "read" | "readReply" | "write" | "writeReply"
  readonly client: number
  /** readReply/write: the version read; writeReply: 1 = success, 0 = conflict. */
  readonly value: number
}

/** |Normal(mean, sd)| by Box–Muller, from the seeded Random. */
const netDelay: Effect.Effect<number> = Effect.map(
  Effect.all([Random.next, Random.next]),
  ([u1, u2]) => Math.abs(NET_MEAN_MS + NET_SD_MS * Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2))
)

/** One simulation: `clients` clients, one successful write each. Returns writes and completion time. */
const simulate = (clients: number, strategy: Strategy) =>
  Effect.gen(function*() {
    const queue = new EventQueue<Message>()
    let seq = 0
    let version = 0
    let writes = 0
    let now = 0
    const failures = new Array<number>(clients).fill(0)
    const previousSleep = new Array<number>(clients).fill(BASE_MS)
    const send = (at: number, kind: Message["kind"], client: number, value: number) =>
      queue.push({ at, seq: seq++, kind, client, value })

    for (let c = 0; c < clients; c++) send(yield* netDelay, "read", c, 0)
    while (queue.size > 0) {
      const m = queue.pop()!
      now = m.at
      switch (m.kind) {
        case "read":
          send(now + (yield* netDelay), "readReply", m.client, version)
          break
        case "readReply":
          send(now + (yield* netDelay), "write", m.client, m.value)
          break
        case "write": {
          writes++
          const ok = m.value === version
          if (ok) version++
          send(now + (yield* netDelay), "writeReply", m.client, ok ? 1 : 0)
          break
        }
        case "writeReply": {
          if (m.value === 1) break
          const n = ++failures[m.client]!
          let sleep = 0
          if (strategy !== "none") {
            sleep = yield* Retry.backoffDelay(jitterOf[strategy], n, BASE_MS, CAP_MS, previousSleep[m.client]!)
            previousSleep[m.client] = sleep
          }
          send(now + (yield* netDelay) + sleep, "read", m.client, 0)
          break
        }
      }
    }
    return { writes, ms: now }
  })

interface Cell {
  readonly clients: number
  readonly strategy: Strategy
  readonly writes: number
  readonly seconds: number
}

const part1 = Effect.gen(function*() {
  const cells: Array<Cell> = []
  for (const clients of CLIENTS) {
    for (const strategy of strategies) {
      let writes = 0
      let ms = 0
      for (let run = 0; run < RUNS; run++) {
        const result = yield* Effect.withRandom(simulate(clients, strategy), Random.make(`${SEED}/${clients}/${strategy}/${run}`))
        writes += result.writes
        ms += result.ms
      }
      cells.push({ clients, strategy, writes: writes / RUNS, seconds: ms / RUNS / 1000 })
    }
  }
  return cells
})

// ---------------------------------------------------------------------------------------------------
// Part 2: the retry budget against a hard-failing provider, in virtual time
// ---------------------------------------------------------------------------------------------------

const P2 = quick
  ? { rate: 50, healthyUntilS: 4, failingUntilS: 10, endS: 14 }
  : { rate: 100, healthyUntilS: 10, failingUntilS: 30, endS: 40 }
const LATENCY_MS = 20

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const okResponse: GenerateResponse = {
  provider: "herd",
  model: "m",
  text: "ok",
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 }
}

/** A provider that answers in 20 ms and hard-fails (500) inside the failure window; counts attempts per second. */
const flakyProvider = (attemptsPerSecond: Array<number>): ProviderShape => {
  const serverError = Mock.errors.serverError(500)
  return {
    name: "herd",
    generate: (req) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const second = Math.floor(now / 1000)
        attemptsPerSecond[second] = (attemptsPerSecond[second] ?? 0) + 1
        const failing = now >= P2.healthyUntilS * 1000 && now < P2.failingUntilS * 1000
        return Effect.delay(
          failing
            ? Effect.fail(serverError({ provider: "herd", model: req.model, route: "herd", attempt: 1 }))
            : Effect.succeed(okResponse),
          Duration.millis(LATENCY_MS)
        )
      }),
    stream: () => Stream.dieMessage("bench:herd only calls generate")
  }
}

interface BudgetCase {
  readonly name: string
  readonly short: string
  readonly policy: Policy.PolicyOptions
}

const noBreaker = { breaker: false } as const
const budgetCases: ReadonlyArray<BudgetCase> = [
  { name: "no retries", short: "no retries", policy: { ...noBreaker, retry: false } },
  { name: "3 attempts, no budget", short: "3, no budget", policy: { ...noBreaker, retry: { maxAttempts: 3 }, budget: false } },
  { name: "3 attempts + budget", short: "3 + budget", policy: { ...noBreaker, retry: { maxAttempts: 3 } } },
  { name: "5 attempts, no budget", short: "5, no budget", policy: { ...noBreaker, retry: { maxAttempts: 5 }, budget: false } },
  { name: "5 attempts + budget", short: "5 + budget", policy: { ...noBreaker, retry: { maxAttempts: 5 } } },
  { name: "Policy.default (3 + budget + breaker)", short: "default (+ breaker)", policy: Policy.default },
  {
    name: "Policy.default, breaker open period doubling (5 s → 60 s)",
    short: "default, doubling open",
    policy: { breaker: { backoffFactor: 2 } }
  }
]

const runBudgetCase = (c: BudgetCase) =>
  Effect.gen(function*() {
    const attemptsPerSecond: Array<number> = []
    const provider = yield* Policy.apply(c.policy, flakyProvider(attemptsPerSecond), "herd")
    const fibers: Array<Fiber.RuntimeFiber<boolean>> = []
    const gapMs = 1000 / P2.rate
    const total = P2.rate * P2.endS
    for (let i = 0; i < total; i++) {
      fibers.push(yield* Effect.fork(Effect.match(provider.generate(request), { onFailure: () => false, onSuccess: () => true })))
      yield* Effect.sleep(Duration.millis(gapMs))
    }
    const outcomes = yield* Fiber.joinAll(fibers)
    const perSecond = Array.from({ length: P2.endS }, (_, s) => attemptsPerSecond[s] ?? 0)
    const window = perSecond.slice(P2.healthyUntilS, P2.failingUntilS)
    const windowCalls = P2.rate * (P2.failingUntilS - P2.healthyUntilS)
    const attempts = attemptsPerSecond.reduce((a, b) => a + (b ?? 0), 0)
    return {
      name: c.name,
      short: c.short,
      calls: total,
      attempts,
      succeeded: outcomes.filter(Boolean).length,
      amplification: attempts / total,
      amplificationWhileFailing: window.reduce((a, b) => a + b, 0) / windowCalls,
      peakPerSecond: Math.max(...perSecond),
      perSecond
    }
  }).pipe(Effect.provide(Policy.layerState), Effect.withRandom(Random.make(SEED)))

// ---------------------------------------------------------------------------------------------------

const main = async () => {
  banner("herd", "backoff under contention (AWS simulator model) and the retry budget, in virtual time")
  const t0 = performance.now()
  const cells = await Effect.runPromise(part1)
  const part1Seconds = (performance.now() - t0) / 1000
  console.log(`Part 1 — OCC contention, base ${BASE_MS} ms, cap ${CAP_MS} ms, net |N(${NET_MEAN_MS}, ${NET_SD_MS})| ms, mean of ${RUNS} runs (${part1Seconds.toFixed(1)} s wall)\n`)
  const cell = (clients: number, s: Strategy) => cells.find((c) => c.clients === clients && c.strategy === s)!
  table(
    ["clients", ...strategies.map((s) => `${s}: writes`), ...strategies.map((s) => `${s}: s`)],
    CLIENTS.map((n) => [
      String(n),
      ...strategies.map((s) => fmt(cell(n, s).writes, 0)),
      ...strategies.map((s) => fmt(cell(n, s).seconds, 2))
    ])
  )
  const at50 = (s: Strategy) => cell(50, s)
  const comparison = {
    full: { ours: at50("full"), published: published.full },
    exponential: { ours: at50("exponential"), published: published.exponential },
    speedupFullVsExponential: at50("exponential").seconds / at50("full").seconds,
    workSavedFullVsExponential: 1 - at50("full").writes / at50("exponential").writes
  }
  console.log("\n50 clients vs the published re-run:")
  table(
    ["strategy", "writes (ours)", "writes (published)", "completion s (ours)", "completion s (published)"],
    (["full", "exponential"] as const).map((s) => [
      s === "full" ? "full jitter" : "exponential, no jitter",
      fmt(at50(s).writes, 0),
      String(published[s].writes),
      fmt(at50(s).seconds, 2),
      String(published[s].seconds)
    ])
  )
  console.log(
    `full jitter finishes ${comparison.speedupFullVsExponential.toFixed(1)}× sooner than un-jittered exponential with ` +
      `${(comparison.workSavedFullVsExponential * 100).toFixed(0)}% fewer writes (published: ${(36.6 / 2.9).toFixed(1)}×, ${((1 - 332 / 628) * 100).toFixed(0)}%)`
  )

  console.log(`\nPart 2 — ${P2.rate} calls/s; the provider hard-fails (500) from ${P2.healthyUntilS} s to ${P2.failingUntilS} s; virtual time\n`)
  const budget = []
  for (const c of budgetCases) {
    const { exit } = runVirtual(runBudgetCase(c))
    if (exit._tag === "Failure") throw new Error(`part 2 (${c.name}) failed: ${String(exit.cause)}`)
    budget.push(exit.value)
  }
  table(
    ["policy", "calls", "attempts", "amplification (all)", "amplification while failing", "peak attempts/s", "calls succeeded"],
    budget.map((b) => [
      b.name,
      String(b.calls),
      String(b.attempts),
      `${fmt(b.amplification, 2)}×`,
      `${fmt(b.amplificationWhileFailing, 2)}×`,
      String(b.peakPerSecond),
      String(b.succeeded)
    ])
  )

  const herdSvg = lineChart({
    title: "bench:herd — total writes until every client succeeded (lower is better)",
    subtitle: `OCC contention, base ${BASE_MS} ms, cap ${CAP_MS} ms, mean of ${RUNS} seeded runs; dashed = published (50 clients)`,
    x: { label: "contending clients" },
    y: { label: "writes (log scale)", log: true },
    series: [
      ...strategies.map((s) => ({ name: s, points: CLIENTS.map((n) => [n, cell(n, s).writes] as const) })),
      { name: "published full", points: [[45, published.full.writes], [55, published.full.writes]] as const, dashed: true },
      { name: "published expo", points: [[45, published.exponential.writes], [55, published.exponential.writes]] as const, dashed: true }
    ]
  })
  const timeSvg = lineChart({
    title: "bench:herd — completion time (lower is better)",
    subtitle: `virtual time; mean of ${RUNS} seeded runs`,
    x: { label: "contending clients" },
    y: { label: "seconds (log scale)", log: true },
    series: strategies.map((s) => ({ name: s, points: CLIENTS.map((n) => [n, cell(n, s).seconds] as const) }))
  })
  const budgetSvg = lineChart({
    title: "bench:herd — provider attempts per second, provider hard-failing",
    subtitle: `${P2.rate} calls/s offered; failure window shaded; virtual time`,
    x: { label: "virtual seconds" },
    y: { label: "attempts / s" },
    band: { from: P2.healthyUntilS, to: P2.failingUntilS, label: "provider returns 500" },
    series: budget.map((b) => ({ name: b.short, points: b.perSecond.map((v, s) => [s + 0.5, v] as const) }))
  })
  writeResults("herd", {
    part1: { baseMs: BASE_MS, capMs: CAP_MS, net: { meanMs: NET_MEAN_MS, sdMs: NET_SD_MS }, runs: RUNS, seed: SEED, cells, comparison },
    part2: { ...P2, latencyMs: LATENCY_MS, seed: SEED, cases: budget }
  }, { "": herdSvg, time: timeSvg, budget: budgetSvg })
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

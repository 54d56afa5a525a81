/**
 * bench:soak — memory and resource hygiene of the full stack under sustained load.
 *
 * The stack: `LlmClient.generateObject` over two routes (schema gate, fallback chain, attempt history)
 * with `Policy.default` on each route (retry + budget + attempt timeout + breaker). Both routes answer
 * valid JSON; about a tenth of primary calls are 529 Overloaded, so that share of the traffic takes
 * the reroute path (typed error, attempt record, fallback route).
 *
 * 1. Rounds of 10 000 concurrent calls against the in-process `ChaosProvider` (the real OpenAI adapter
 *    decoding the chaos engine's bytes over an in-memory HttpClient), each answer after 5 ms, so all
 *    10 000 are in flight together.
 * 2. 1 000 000 sequential calls against a minimal in-process provider (a succeeded Effect; every 10th
 *    primary call fails): the policies and the chain, without the adapter. The ChaosProvider runs at
 *    1–3k calls/s on this machine, which would put a million calls past the 10-minute budget.
 * 3. 100 000 sequential calls against the ChaosProvider: the adapter path, sequentially.
 *
 * After each round / checkpoint the heap is measured after a full GC; it must stay flat (last vs first
 * measurement after warm-up, within ±10%). At the end of each phase no fiber forked under the calls
 * may still be alive (a tracking Supervisor), and the process's active handles (timers, sockets) must
 * be what they were before the load. Not `MockProvider`: it keeps a log of every call it served
 * (`calls`), which is exactly the unbounded growth a soak must not contain (ChaosProvider's log is
 * bounded by `logLimit`).
 *
 * Run: npm run bench:soak            (~3–5 min)
 *      npm run bench:soak -- --quick (3 × 500 concurrent, 5k + 1k sequential; a smoke run)
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import { Overloaded } from "../src/Errors.js"
import * as LlmClient from "../src/LlmClient.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../src/Provider.js"
import * as ChaosProvider from "../src/testing/ChaosProvider.js"
import type * as Scenario from "../src/testing/Scenario.js"
import { banner, fmt, quick, table, writeResults } from "./lib/report.js"
import { lineChart } from "./lib/svg.js"

const S = quick
  ? { concurrent: 500, rounds: 3, sequential: 5_000, checkpoint: 1_000, chaosSequential: 1_000, chaosCheckpoint: 500 }
  : { concurrent: 10_000, rounds: 5, sequential: 1_000_000, checkpoint: 100_000, chaosSequential: 100_000, chaosCheckpoint: 10_000 }
const CONCURRENT_LATENCY_MS = 5
const TOLERANCE = 0.1

// `--expose-gc` without the flag: the soak needs a full collection before each heap measurement.
const gc: () => void = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed !== undefined) return exposed
  setFlagsFromString("--expose-gc")
  return runInNewContext("gc") as () => void
})()

const heapAfterGc = (): number => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number })
const valid = { city: "Paris", population: 2_100_000 }
const PRIMARY = "primary-model"
const FALLBACK = "fallback-model"

/** The chaos scenario: both routes answer valid JSON; a seeded 10% of primary calls are 529 Overloaded. */
const scenario = (latencyMs: number): Scenario.Scenario => {
  const route = {
    content: { kind: "json" as const, value: valid },
    ...(latencyMs > 0 ? { latency: { kind: "fixed" as const, ms: latencyMs } } : {})
  }
  return {
    seed: 7,
    routes: [
      { name: "primary", model: PRIMARY, ...route, mix: [{ fault: { kind: "overloaded" }, rate: 0.1 }] },
      { name: "fallback", model: FALLBACK, ...route }
    ]
  }
}

/** The minimal provider: a succeeded Effect with valid JSON; every 10th primary call is Overloaded. */
const minimalProvider = (): ProviderShape => {
  let primaryCalls = 0
  const text = JSON.stringify(valid)
  const generate = (request: GenerateRequest): Effect.Effect<GenerateResponse, Overloaded> =>
    request.model === PRIMARY && ++primaryCalls % 10 === 0
      ? Effect.fail(new Overloaded({ provider: "soak", model: request.model, route: "soak", attempt: 1, status: 529, message: "overloaded" }))
      : Effect.succeed({
        provider: "soak",
        model: request.model,
        text,
        toolCalls: [],
        finishReason: "stop",
        usage: { inputTokens: 12, outputTokens: 9, totalTokens: 21 }
      })
  return { name: "soak", generate, stream: () => Stream.dieMessage("bench:soak only calls generate") }
}

type ProviderKind = { readonly _tag: "chaos"; readonly latencyMs: number } | { readonly _tag: "minimal" }

const clientLayer = (kind: ProviderKind) =>
  Layer.unwrapEffect(
    Effect.map(
      kind._tag === "minimal"
        ? Effect.succeed(minimalProvider())
        : Effect.orDie(ChaosProvider.make({ scenario: scenario(kind.latencyMs), logLimit: 1_000 })),
      (provider: ProviderShape) =>
        LlmClient.layerWithState({
          routes: [
            { name: "primary", provider, model: PRIMARY },
            { name: "fallback", provider, model: FALLBACK }
          ]
        })
    )
  )

const request = { messages: [{ role: "user" as const, content: "Largest city in France?" }], maxTokens: 64 }
const call = Effect.asVoid(LlmClient.generateObject(Answer, request))

/** Active handles by type (`Timeout`, `TCPSocketWrap`, …). */
const resources = (): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1
  return out
}

const sameResources = (a: Record<string, number>, b: Record<string, number>) =>
  [...new Set([...Object.keys(a), ...Object.keys(b)])].every((k) => (a[k] ?? 0) === (b[k] ?? 0))

const flat = (series: ReadonlyArray<number>) => {
  // The first measurement is taken after warm-up (JIT, caches, the runtime's own structures).
  const base = series[0]!
  const last = series[series.length - 1]!
  const max = Math.max(...series)
  return {
    baseMb: base / 2 ** 20,
    lastMb: last / 2 ** 20,
    maxMb: max / 2 ** 20,
    drift: (last - base) / base,
    within: Math.abs(last - base) / base <= TOLERANCE
  }
}

type Run = <X, E>(effect: Effect.Effect<X, E, LlmClient.LlmClient>) => Promise<X>

/**
 * One phase on a fresh client: warm up, record the handles, run `body` under a tracking supervisor,
 * then count live fibers and compare the handles.
 */
const phase = async (name: string, calls: number, kind: ProviderKind, body: (run: Run) => Promise<Array<number>>) => {
  const runtime = ManagedRuntime.make(clientLayer(kind))
  const supervisor = await Effect.runPromise(Supervisor.track)
  const run: Run = (effect) => runtime.runPromise(Effect.supervised(effect, supervisor))
  await run(call) // build the layer, warm the path
  await new Promise((resolve) => setTimeout(resolve, 20))
  const before = resources()
  const t0 = performance.now()
  const heaps = await body(run)
  const seconds = (performance.now() - t0) / 1000
  await new Promise((resolve) => setTimeout(resolve, 20))
  const liveFibers = (await Effect.runPromise(supervisor.value)).length
  const after = resources()
  await runtime.dispose()
  const heap = flat(heaps)
  console.log(`${name}: ${seconds.toFixed(1)} s, ${fmt(calls / seconds, 0)} calls/s; live fibers after: ${liveFibers}; handles before ${JSON.stringify(before)} after ${JSON.stringify(after)}`)
  return {
    name,
    provider: kind._tag,
    calls,
    seconds,
    heaps,
    heap,
    liveFibers,
    resourcesBefore: before,
    resourcesAfter: after,
    resourcesReturned: sameResources(before, after)
  }
}

/** `total` sequential calls, the heap after GC every `checkpoint` calls. */
const sequentially = (total: number, checkpoint: number) => async (run: Run) => {
  const heaps: Array<number> = []
  for (let done = 0; done < total; done += checkpoint) {
    await run(Effect.repeatN(call, checkpoint - 1))
    heaps.push(heapAfterGc())
  }
  return heaps
}

const main = async () => {
  banner("soak", "heap after GC and leaked fibers/handles under sustained load, full stack, in-process providers")

  const peaks: Array<number> = []
  const concurrent = await phase(`${S.rounds} rounds × ${S.concurrent} concurrent (ChaosProvider)`, S.rounds * S.concurrent, { _tag: "chaos", latencyMs: CONCURRENT_LATENCY_MS }, async (run) => {
    const heaps: Array<number> = []
    for (let round = 0; round < S.rounds; round++) {
      let peak = 0
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().heapUsed)
      }, 2)
      await run(Effect.forEach(Array.from({ length: S.concurrent }), () => call, { concurrency: "unbounded", discard: true }))
      clearInterval(sampler)
      peaks.push(peak)
      heaps.push(heapAfterGc())
    }
    return heaps
  })
  const sequential = await phase(`${S.sequential} sequential (minimal provider)`, S.sequential, { _tag: "minimal" }, sequentially(S.sequential, S.checkpoint))
  const chaosSequential = await phase(`${S.chaosSequential} sequential (ChaosProvider)`, S.chaosSequential, { _tag: "chaos", latencyMs: 0 }, sequentially(S.chaosSequential, S.chaosCheckpoint))
  const phases = [concurrent, sequential, chaosSequential]

  console.log("")
  table(
    ["phase", "calls", "wall s", "calls/s", "heap after GC, first → last (MB)", "max (MB)", "drift", `flat (±${TOLERANCE * 100}%)`, "live fibers", "handles back to baseline"],
    phases.map((p) => [
      p.name,
      String(p.calls),
      fmt(p.seconds, 1),
      fmt(p.calls / p.seconds, 0),
      `${fmt(p.heap.baseMb, 1)} → ${fmt(p.heap.lastMb, 1)}`,
      fmt(p.heap.maxMb, 1),
      `${(p.heap.drift * 100).toFixed(1)}%`,
      p.heap.within ? "yes" : "NO",
      String(p.liveFibers),
      p.resourcesReturned ? "yes" : "NO"
    ])
  )
  const peak = Math.max(...peaks)
  console.log(
    `\npeak heap while ${S.concurrent} calls were in flight: ${fmt(peak / 2 ** 20, 1)} MB ` +
      `(≈ ${fmt((peak - concurrent.heaps[0]!) / S.concurrent / 1024, 1)} KB per in-flight call, ChaosProvider included)`
  )
  const svg = lineChart({
    title: `bench:soak — heap after full GC during ${S.sequential.toLocaleString("en")} sequential calls`,
    subtitle: `full stack (chain + Policy.default × 2 routes), minimal in-process provider; flat = within ±${TOLERANCE * 100}% of the first checkpoint`,
    x: { label: "calls completed" },
    y: { label: "heap used after GC (MB)", min: 0 },
    series: [{ name: "heap after GC", points: sequential.heaps.map((h, i) => [(i + 1) * S.checkpoint, h / 2 ** 20] as const) }]
  })
  const pass = phases.every((p) => p.heap.within && p.liveFibers === 0 && p.resourcesReturned)
  writeResults("soak", { settings: { ...S, concurrentLatencyMs: CONCURRENT_LATENCY_MS, tolerance: TOLERANCE }, phases, peakInFlightHeapBytes: peak, pass }, svg)
  if (!pass) {
    console.error("\nsoak FAILED: heap not flat, or fibers/handles left behind")
    process.exitCode = 1
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

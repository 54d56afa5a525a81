/**
 * bench:soak — memory and resource hygiene of the full stack under sustained load.
 *
 * The stack: `LlmClient.generateObject` over two routes (schema gate, fallback chain, attempt history)
 * with `Policy.default` on each route (retry + budget + attempt timeout + breaker), against an
 * in-process provider. The provider answers valid JSON; every 10th primary call is a 529 Overloaded,
 * so a tenth of the traffic takes the reroute path (error, attempt record, fallback route).
 *
 * Phase 1: rounds of 10 000 concurrent calls (each provider answer waits 5 ms, so all are in flight
 * together). Phase 2: 1 000 000 sequential calls. After each round / every 100 000 calls the heap is
 * measured after a full GC; it must stay flat (last vs first measurement after warm-up, within ±10%).
 * At the end, no fiber forked under the calls may still be alive (a tracking Supervisor), and the
 * process's active handles (timers, sockets) must be what they were before the load.
 *
 * The provider is defined here, not `MockProvider`: MockProvider keeps a log of every call it served
 * (`calls`), which is exactly the unbounded growth a soak must not contain.
 *
 * Run: npm run bench:soak            (5 rounds × 10k concurrent, 1M sequential)
 *      npm run bench:soak -- --quick (3 rounds × 1k concurrent, 10k sequential)
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import { Overloaded } from "../src/Errors.js"
import * as LlmClient from "../src/LlmClient.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../src/Provider.js"
import { banner, fmt, quick, table, writeResults } from "./lib/report.js"
import { lineChart } from "./lib/svg.js"

const S = quick
  ? { concurrent: 1_000, rounds: 3, sequential: 10_000, checkpoint: 1_000 }
  : { concurrent: 10_000, rounds: 5, sequential: 1_000_000, checkpoint: 100_000 }
const CONCURRENT_LATENCY = Duration.millis(5)
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
const answer = JSON.stringify({ city: "Paris", population: 2_100_000 })

/** An in-process provider with no call log: valid JSON, every 10th primary call overloaded. */
const inProcessProvider = (latency: Duration.Duration | undefined): ProviderShape => {
  let primaryCalls = 0
  const respond = (request: GenerateRequest): Effect.Effect<GenerateResponse, Overloaded> => {
    if (request.model === "primary-model" && ++primaryCalls % 10 === 0) {
      return Effect.fail(
        new Overloaded({ provider: "soak", model: request.model, route: "soak", attempt: 1, status: 529, message: "overloaded" })
      )
    }
    return Effect.succeed({
      provider: "soak",
      model: request.model,
      text: answer,
      toolCalls: [],
      finishReason: "stop",
      usage: { inputTokens: 12, outputTokens: 9, totalTokens: 21 }
    })
  }
  return {
    name: "soak",
    generate: (request) => (latency === undefined ? respond(request) : Effect.delay(respond(request), latency)),
    stream: () => Stream.dieMessage("bench:soak only calls generate")
  }
}

const clientLayer = (latency: Duration.Duration | undefined) => {
  const provider = inProcessProvider(latency)
  return LlmClient.layerWithState({
    routes: [
      { name: "primary", provider, model: "primary-model" },
      { name: "fallback", provider, model: "fallback-model" }
    ]
  })
}

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
  return { baseMb: base / 2 ** 20, lastMb: last / 2 ** 20, maxMb: max / 2 ** 20, drift: (last - base) / base, within: Math.abs(last - base) / base <= TOLERANCE }
}

const row = (
  label: string,
  calls: number,
  p: { readonly seconds: number; readonly liveFibers: number; readonly resourcesReturned: boolean },
  heap: ReturnType<typeof flat>
) => [
  label,
  String(calls),
  fmt(p.seconds, 1),
  `${fmt(heap.baseMb, 1)} → ${fmt(heap.lastMb, 1)}`,
  fmt(heap.maxMb, 1),
  `${(heap.drift * 100).toFixed(1)}%`,
  heap.within ? "yes" : "NO",
  String(p.liveFibers),
  p.resourcesReturned ? "yes" : "NO"
]

const phase = async <A>(
  name: string,
  latency: Duration.Duration | undefined,
  body: (supervised: <X, E>(effect: Effect.Effect<X, E, LlmClient.LlmClient>) => Promise<X>) => Promise<A>
) => {
  const runtime = ManagedRuntime.make(clientLayer(latency))
  const supervisor = await Effect.runPromise(Supervisor.track)
  const supervised = <X, E>(effect: Effect.Effect<X, E, LlmClient.LlmClient>) => runtime.runPromise(Effect.supervised(effect, supervisor))
  await supervised(call) // build the layer, warm the path
  await new Promise((resolve) => setTimeout(resolve, 20))
  const before = resources()
  const t0 = performance.now()
  const result = await body(supervised)
  const seconds = (performance.now() - t0) / 1000
  await new Promise((resolve) => setTimeout(resolve, 20))
  const liveFibers = (await Effect.runPromise(supervisor.value)).length
  const after = resources()
  await runtime.dispose()
  console.log(`${name}: ${seconds.toFixed(1)} s; live fibers after: ${liveFibers}; active handles before ${JSON.stringify(before)} after ${JSON.stringify(after)}`)
  return { result, seconds, liveFibers, resourcesBefore: before, resourcesAfter: after, resourcesReturned: sameResources(before, after) }
}

const main = async () => {
  banner("soak", "heap after GC and leaked fibers/handles under sustained load, full stack, in-process provider")

  const concurrent = await phase(`${S.rounds} × ${S.concurrent} concurrent`, CONCURRENT_LATENCY, async (run) => {
    const heaps: Array<number> = []
    const peaks: Array<number> = []
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
    return { heaps, peaks }
  })

  const sequential = await phase(`${S.sequential} sequential`, undefined, async (run) => {
    const heaps: Array<number> = []
    const rates: Array<number> = []
    for (let done = 0; done < S.sequential; done += S.checkpoint) {
      const t0 = performance.now()
      await run(Effect.repeatN(call, S.checkpoint - 1))
      rates.push(S.checkpoint / ((performance.now() - t0) / 1000))
      heaps.push(heapAfterGc())
    }
    return { heaps, rates }
  })

  const concurrentHeap = flat(concurrent.result.heaps)
  const sequentialHeap = flat(sequential.result.heaps)
  console.log("")
  table(
    ["phase", "calls", "wall s", "heap after GC, first → last (MB)", "max (MB)", "drift", `flat (±${TOLERANCE * 100}%)`, "live fibers", "handles back to baseline"],
    [
      row(`${S.rounds} rounds × ${S.concurrent} concurrent`, S.rounds * S.concurrent, concurrent, concurrentHeap),
      row("sequential", S.sequential, sequential, sequentialHeap)
    ]
  )
  console.log(
    `\npeak heap while ${S.concurrent} calls were in flight: ${fmt(Math.max(...concurrent.result.peaks) / 2 ** 20, 1)} MB ` +
      `(≈ ${fmt((Math.max(...concurrent.result.peaks) - concurrent.result.heaps[0]!) / S.concurrent / 1024, 1)} KB per in-flight call); ` +
      `sequential rate ${fmt(Math.min(...sequential.result.rates), 0)}–${fmt(Math.max(...sequential.result.rates), 0)} calls/s`
  )
  const svg = lineChart({
    title: `bench:soak — heap after full GC during ${S.sequential.toLocaleString("en")} sequential calls`,
    subtitle: `full stack (chain + Policy.default × 2 routes), in-process provider; flat = within ±${TOLERANCE * 100}% of the first checkpoint`,
    x: { label: "calls completed" },
    y: { label: "heap used after GC (MB)", min: 0 },
    series: [{ name: "heap after GC", points: sequential.result.heaps.map((h, i) => [(i + 1) * S.checkpoint, h / 2 ** 20] as const) }]
  })
  const pass = concurrentHeap.within && sequentialHeap.within && concurrent.liveFibers === 0 && sequential.liveFibers === 0 &&
    concurrent.resourcesReturned && sequential.resourcesReturned
  writeResults("soak", {
    settings: { ...S, concurrentLatencyMs: Duration.toMillis(CONCURRENT_LATENCY), tolerance: TOLERANCE },
    concurrent: { ...concurrent, heap: concurrentHeap },
    sequential: { ...sequential, heap: sequentialHeap },
    pass
  }, svg)
  if (!pass) {
    console.error("\nsoak FAILED: heap not flat, or fibers/handles left behind")
    process.exitCode = 1
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

/**
 * bench/alloc-profile.ts — where the bytes of one non-streamed call go.
 *
 * Runs one of bench:overhead's success-path cases in-process many times against an in-memory provider
 * and reports (1) bytes allocated per call, measured like bench:overhead's alloc column (heap growth
 * over windows of calls that start after a forced full GC and in which no GC ran; median of windows),
 * and (2) with `--sites`, a sampling heap profile over many calls that keeps the objects GC already
 * collected, attributed per call to the allocating function and to the nearest frame of this library.
 *
 * Run (compiled package, as it ships — `npm run build` first):
 *   node --expose-gc --import tsx bench/alloc-profile.ts                      # every case, alloc/call
 *   node --expose-gc --import tsx bench/alloc-profile.ts --case chain --sites # + allocation sites
 *   ... --dist /some/other/build/dist                                          # A/B against another build
 * Not part of `npm test`; a diagnosis tool, not a benchmark with targets.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Session } from "node:inspector/promises"
import { dirname, join, resolve } from "node:path"
import { PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath, pathToFileURL } from "node:url"
import type * as DegradedModeModule from "effect-llm-resilience/DegradedMode"
import type * as FallbackModule from "effect-llm-resilience/Fallback"
import type * as PolicyModule from "effect-llm-resilience/Policy"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "effect-llm-resilience/Provider"

const arg = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
const dist = resolve(arg("dist") ?? join(dirname(fileURLToPath(import.meta.url)), "..", "dist"))
const onlyCase = arg("case")
const sites = process.argv.includes("--sites")
const top = Number(arg("top") ?? 25)
const profileCalls = Number(arg("calls") ?? 20_000)

const load = <M>(module: string): Promise<M> => import(pathToFileURL(join(dist, `${module}.js`)).href) as Promise<M>
const Policy = await load<typeof PolicyModule>("Policy")
const Fallback = await load<typeof FallbackModule>("Fallback")
const DegradedMode = await load<typeof DegradedModeModule>("DegradedMode")

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with node --expose-gc")

// ---- the cases: bench:overhead's, same settings ----

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const response: GenerateResponse = {
  provider: "noop",
  model: "m",
  text: "ok",
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 }
}
const Triage = Schema.Struct({ severity: Schema.Literal("low", "high"), summary: Schema.String })
const triageJson = JSON.stringify({ severity: "high", summary: "checkout returns 502 for 3% of users" })
const jsonResponse: GenerateResponse = { ...response, text: triageJson }
const chainRequest: FallbackModule.ChainRequest = { messages: [{ role: "user", content: "Triage: checkout returns 502." }], maxTokens: 300 }

const syncProvider: ProviderShape = {
  name: "noop",
  generate: () => Effect.succeed(response),
  stream: () => Stream.succeed({ _tag: "Finish", response } as const)
}
const asyncProvider: ProviderShape = { ...syncProvider, generate: () => Effect.promise(() => Promise.resolve(response)) }
const jsonProvider: ProviderShape = { ...syncProvider, generate: () => Effect.promise(() => Promise.resolve(jsonResponse)) }
const limiter = { requestsPerMinute: 1e9, tokensPerMinute: 1e12, maxConcurrency: 1e6 }

const managed = ManagedRuntime.make(Layer.merge(Policy.layerState, DegradedMode.layer))
const runtime = await managed.runtime()
const run = Runtime.runPromise(runtime)
const wrapped = async (policy: PolicyModule.PolicyOptions, provider: ProviderShape, route: string) => {
  const p = await run(Policy.apply(policy, provider, route))
  return () => run(p.generate(request))
}
const chainOf = async (repairAttempts: number, deadline: "30 seconds" | undefined) => {
  const chain = await run(Fallback.make({
    deadline,
    repairAttempts,
    routes: [
      { name: `primary-${repairAttempts}-${deadline}`, provider: jsonProvider, model: "primary" },
      { name: `fallback-${repairAttempts}-${deadline}`, provider: jsonProvider, model: "fallback" }
    ]
  }))
  return chain
}
const chain = await chainOf(1, "30 seconds")
const chainNoDeadline = await chainOf(0, undefined)
const asyncCall = asyncProvider.generate(request)

const cases: Record<string, () => Promise<unknown>> = {
  "bare-async": () => run(asyncCall),
  "default-sync": await wrapped({}, syncProvider, "sync-default"),
  "full-sync": await wrapped({ rateLimit: limiter }, syncProvider, "sync-full"),
  "full-async": await wrapped({ rateLimit: limiter }, asyncProvider, "async-full"),
  "default-async": await wrapped({}, asyncProvider, "async-default"),
  chain: () => run(chain.generateObject(Triage, chainRequest)),
  "chain-generate": () => run(chain.generate(chainRequest)),
  "chain-no-deadline": () => run(chainNoDeadline.generateObject(Triage, chainRequest))
}

// ---- alloc per call, as bench:overhead measures it ----

const gcStarts: Array<number> = []
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcStarts.push(entry.startTime)
}).observe({ entryTypes: ["gc"] })
const nextTurn = (ms = 0) => new Promise<void>((done) => setTimeout(done, ms))
const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const allocPerCall = async (call: () => Promise<unknown>, calls: number, windows: number) => {
  const perCall: Array<number> = []
  for (let window = 0; window < windows; window++) {
    gc()
    await nextTurn()
    const t0 = performance.now()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < calls; i++) await call()
    const after = process.memoryUsage().heapUsed
    const t1 = performance.now()
    await nextTurn(2)
    if (!gcStarts.some((at) => at >= t0 && at <= t1)) perCall.push((after - before) / calls)
  }
  return { median: median(perCall), windows: perCall.length }
}

// ---- allocation sites: V8's sampling heap profiler, collected objects included ----

interface ProfileNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber: number }
  readonly selfSize: number
  readonly children: ReadonlyArray<ProfileNode>
}

const shortUrl = (url: string) => url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "").replace(dist, "dist")
const frameName = (node: ProfileNode) =>
  `${node.callFrame.functionName || "(anonymous)"} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`
const ours = (node: ProfileNode) => node.callFrame.url.includes(dist)

const allocationSites = async (call: () => Promise<unknown>, calls: number) => {
  const session = new Session()
  session.connect()
  for (let i = 0; i < 2_000; i++) await call() // warm: JIT and lazily built state out of the picture
  gc()
  await session.post("HeapProfiler.startSampling", {
    samplingInterval: 64,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true
  })
  for (let i = 0; i < calls; i++) await call()
  const { profile } = await session.post("HeapProfiler.stopSampling") as { profile: { head: ProfileNode } }
  session.disconnect()
  const self = new Map<string, number>()
  const byOurFrame = new Map<string, number>()
  let total = 0
  const walk = (node: ProfileNode, nearestOurs: string | undefined) => {
    const here = ours(node) ? frameName(node) : nearestOurs
    if (node.selfSize > 0) {
      total += node.selfSize
      const name = frameName(node)
      self.set(name, (self.get(name) ?? 0) + node.selfSize)
      const key = here ?? "(not under our code)"
      byOurFrame.set(key, (byOurFrame.get(key) ?? 0) + node.selfSize)
    }
    for (const child of node.children) walk(child, here)
  }
  walk(profile.head, undefined)
  const print = (title: string, entries: Map<string, number>) => {
    console.log(`\n  ${title}`)
    for (const [name, bytes] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`    ${(bytes / calls).toFixed(0).padStart(7)} B/call  ${name}`)
    }
  }
  console.log(`  sampled total ≈ ${(total / calls).toFixed(0)} B/call over ${calls} calls`)
  print("by allocating function (self)", self)
  print("by the nearest frame of this library on the stack", byOurFrame)
}

console.log(`dist: ${dist}`)
for (const [name, call] of Object.entries(cases)) {
  if (onlyCase !== undefined && onlyCase !== name) continue
  for (let i = 0; i < 2_000; i++) await call()
  const alloc = await allocPerCall(call, 100, 31)
  console.log(`${name.padEnd(20)} ${alloc.median.toFixed(0).padStart(7)} B/call (median of ${alloc.windows} GC-free windows of 100 calls)`)
  if (sites) await allocationSites(call, profileCalls)
}
await managed.dispose()

/**
 * The response cache at the chain, over real HTTP: the OpenAI adapter under the default policy
 * against the ChaosServer, which counts every request it receives — so "answered from the cache" means
 * the server saw nothing. Time is TestClock (the cache's expiry follows it; the server answers at
 * once); sockets are real. Stores: the bounded memory store, and a directory of files through
 * `KeyValueStore` (a second layer over the same directory stands for a restarted process). The Redis
 * store is tested against a real Redis in test/redis/RedisResponseCache.test.ts; the property that a
 * hit never hands out a value the caller's schema rejects is test/ResponseCache.property.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Coalesce from "../src/Coalesce.js"
import * as DegradedMode from "../src/DegradedMode.js"
import * as Fallback from "../src/Fallback.js"
import * as Policy from "../src/Policy.js"
import * as OpenAi from "../src/providers/OpenAi.js"
import * as Report from "../src/Report.js"
import * as ResponseCache from "../src/ResponseCache.js"
import * as Spend from "../src/Spend.js"
import * as ChaosServer from "../src/testing/ChaosServer.js"
import type * as Scenario from "../src/testing/Scenario.js"
import * as Transport from "../src/Transport.js"
import { awaitSleepUntil, routesFailed, settle } from "./testing/helpers.js"

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)
/** A fresh memory store per test (each `Effect.provide` builds its own). */
const Memory = Layer.merge(Env, ResponseCache.layerMemory())

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number.pipe(Schema.positive()) })
const paris = { city: "Paris", population: 2_100_000 }
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Largest city in France, as JSON." }], maxTokens: 200, temperature: 0 }

let namespaces = 0
/** Metric series are process-wide: each test counts under a namespace of its own. */
const freshNamespace = () => `t${++namespaces}`

/** The value of `llm_cache_requests_total` / `llm_cache_writes_total` for a namespace and result. */
const counter = (name: string, namespace: string, result: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    for (const pair of pairs) {
      if (pair.metricKey.name !== name) continue
      const labels = new Map(pair.metricKey.tags.map((label) => [label.key, label.value]))
      if (labels.get("namespace") === namespace && labels.get("result") === result) return (pair.metricState as unknown as { readonly count: number }).count
    }
    return 0
  })
const lookups = (namespace: string, result: string) => counter("llm_cache_requests_total", namespace, result)
const writes = (namespace: string, result: string) => counter("llm_cache_writes_total", namespace, result)

const route = (name: string, extra: Partial<Scenario.Route> = {}): Scenario.Route => ({
  name,
  api: "openai",
  model: `${name}-model`,
  content: { kind: "json", value: paris },
  ...extra
})

/** A chaos server, and a chain with a cache over its routes (retries off: every request is one attempt). */
const setup = (
  options: {
    readonly routes?: ReadonlyArray<Scenario.Route>
    readonly cache?: ResponseCache.ResponseCacheOptions
    readonly chain?: Partial<Fallback.FallbackOptions>
    readonly routeOptions?: Partial<Fallback.Route>
  } = {}
) =>
  Effect.gen(function*() {
    const routes = options.routes ?? [route("primary")]
    // Models no route names (another chain's) get the same answer from the default route.
    const server = yield* ChaosServer.make({ scenario: { routes, default: { content: { kind: "json", value: paris } } } })
    const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-cache-test"), baseUrl: server.openAiBaseUrl })
    const namespace = options.cache?.namespace ?? freshNamespace()
    const cache = yield* ResponseCache.make({ ...options.cache, namespace })
    const chain = yield* Fallback.make({
      routes: routes.map((r) => ({ name: r.name!, provider, model: r.model!, policy: { retry: false }, ...options.routeOptions })),
      cache,
      ...options.chain
    })
    const requests = Effect.map(server.stats, (stats) => stats.total)
    return { server, provider, chain, cache, namespace, requests }
  })

describe("ResponseCache — hits over real HTTP", () => {
  it.scoped("a repeated call is answered from the cache: no request, `cached` in the result, the history and the metrics", () =>
    Effect.gen(function*() {
      const { chain, namespace, requests } = yield* setup()
      const first = yield* chain.generateObject(Answer, request)
      expect(first.cached).toBeUndefined()
      expect(yield* requests).toBe(1)

      const second = yield* chain.generateObject(Answer, { ...request, idempotencyKey: "another-attempt" })
      expect(yield* requests).toBe(1) // the server saw nothing
      expect(second.value).toEqual(paris)
      expect(second).toMatchObject({ cached: true, route: "primary", degraded: false, repaired: false, durationMs: 0 })
      expect(second.attempts).toEqual([
        expect.objectContaining({ route: "primary", attempt: 0, outcome: "cached", delayMs: 0, durationMs: 0 })
      ])
      expect(second.attempts[0]!.message).toMatch(/^answered from the response cache: stored 0 ms ago, served then by primary/)
      // What this call consumed is nothing; what the stored answer cost when it was made is kept.
      expect(second.usage).toEqual({ inputTokens: 0, outputTokens: 0, totalTokens: 0 })
      expect(second.response.usage).toEqual(second.usage)
      expect(second.cachedUsage).toEqual(first.usage)
      expect(first.usage.totalTokens).toBeGreaterThan(0)
      expect(second.cachedAt).toBe(0)
      expect(second.response.text).toBe(first.response.text)
      expect(second.response.raw).toBeUndefined() // the provider body is not stored

      expect(yield* lookups(namespace, "miss")).toBe(1)
      expect(yield* lookups(namespace, "hit")).toBe(1)
      expect(yield* writes(namespace, "stored")).toBe(1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("TTL on the Effect Clock: a hit until it passes, a miss after; a call's own ttl; ttl 0 reads but never writes", () =>
    Effect.gen(function*() {
      const { chain, namespace, requests } = yield* setup({ cache: { ttl: "10 minutes" } })
      yield* chain.generate(request)
      yield* TestClock.adjust("9 minutes")
      expect((yield* chain.generate(request)).cached).toBe(true)
      expect(yield* requests).toBe(1)
      yield* TestClock.adjust("61 seconds")
      expect((yield* chain.generate(request)).cached).toBeUndefined() // expired: asked again, stored again
      expect(yield* requests).toBe(2)
      expect((yield* chain.generate(request)).cached).toBe(true)
      expect(yield* lookups(namespace, "miss")).toBe(2)

      // This call's answer stays one minute, whatever the client's ttl.
      const short = { ...request, maxTokens: 201 }
      yield* chain.generate(short, { cache: { ttl: "1 minute" } })
      yield* TestClock.adjust("59 seconds")
      expect((yield* chain.generate(short)).cached).toBe(true)
      yield* TestClock.adjust("1 second")
      expect((yield* chain.generate(short)).cached).toBeUndefined()
      expect(yield* requests).toBe(4)

      // ttl 0: may be answered from the cache, never writes.
      const readOnly = { ...request, maxTokens: 202 }
      yield* chain.generate(readOnly, { cache: { ttl: 0 } })
      yield* chain.generate(readOnly, { cache: { ttl: 0 } })
      expect(yield* requests).toBe(6)
      expect((yield* chain.generate(short)).cached).toBe(true) // stored by the call before, without a ttl of its own
    }).pipe(Effect.provide(Memory)))

  it.scoped("per-call bypass (`cache: false`: no read, no write) and refresh (no read, a write)", () =>
    Effect.gen(function*() {
      const { chain, namespace, requests } = yield* setup()
      yield* chain.generate(request)
      const bypassed = yield* chain.generate(request, { cache: false })
      expect(bypassed.cached).toBeUndefined()
      expect(yield* requests).toBe(2)
      expect(yield* lookups(namespace, "bypass")).toBe(1)

      // A bypassed call stores nothing: the next call of another request is still a miss.
      const other = { ...request, maxTokens: 150 }
      yield* chain.generate(other, { cache: false })
      expect((yield* chain.generate(other)).cached).toBeUndefined()
      expect(yield* requests).toBe(4)

      // Refresh: asks the provider although an answer is stored, and stores the new one (stamped now).
      yield* TestClock.adjust("5 minutes")
      const refreshed = yield* chain.generate(request, { cache: { refresh: true } })
      expect(refreshed.cached).toBeUndefined()
      expect(yield* requests).toBe(5)
      const after = yield* chain.generate(request)
      expect(after).toMatchObject({ cached: true, cachedAt: 300_000 })
      expect(yield* lookups(namespace, "refresh")).toBe(1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("a request that samples (temperature unset or > 0) uses the cache only when asked — per call or per client", () =>
    Effect.gen(function*() {
      const { chain, namespace, requests } = yield* setup()
      const { temperature: _unset, ...unset } = request
      const warm = { ...request, temperature: 0.7 }
      for (const sampled of [unset, unset, warm, warm]) expect((yield* chain.generate(sampled)).cached).toBeUndefined()
      expect(yield* requests).toBe(4)
      expect(yield* lookups(namespace, "uncacheable")).toBe(4)

      yield* chain.generate(warm, { cache: { nondeterministic: true } })
      expect((yield* chain.generate(warm, { cache: { nondeterministic: true } })).cached).toBe(true)
      expect((yield* chain.generate(warm)).cached).toBeUndefined() // not asked this time: not read
      expect(yield* requests).toBe(6)

      const sampling = yield* setup({ cache: { nondeterministic: true } })
      yield* sampling.chain.generate(unset)
      expect((yield* sampling.chain.generate(unset)).cached).toBe(true)
      expect(yield* sampling.requests).toBe(1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("the key: the request, the schema's JSON Schema, the routes' models and the namespace — not the idempotency key", () =>
    Effect.gen(function*() {
      const { chain, provider, requests } = yield* setup({ cache: { namespace: "shared" } })
      yield* chain.generateObject(Answer, request)
      expect((yield* chain.generateObject(Answer, { ...request, idempotencyKey: "k2" })).cached).toBe(true)
      // A different schema is a different question (its JSON Schema is sent); so is text, and so is other metadata.
      const Loose = Schema.Struct({ city: Schema.String })
      expect((yield* chain.generateObject(Loose, request)).cached).toBeUndefined()
      expect((yield* chain.generate(request)).cached).toBeUndefined()
      expect((yield* chain.generateObject(Answer, { ...request, metadata: { tenant: "b" } })).cached).toBeUndefined()
      expect((yield* chain.generateObject(Answer, request, { name: "city" })).cached).toBeUndefined()
      expect(yield* requests).toBe(5)

      // Another client over the same models and namespace shares the entries; another model or namespace does not.
      const same = yield* Fallback.make({ routes: [{ name: "renamed", provider, model: "primary-model" }], cache: yield* ResponseCache.make({ namespace: "shared" }) })
      expect((yield* same.generateObject(Answer, request)).cached).toBe(true)
      const otherModel = yield* Fallback.make({ routes: [{ name: "primary", provider, model: "other-model" }], cache: yield* ResponseCache.make({ namespace: "shared" }) })
      expect((yield* otherModel.generateObject(Answer, request)).cached).toBeUndefined()
      const otherNamespace = yield* Fallback.make({ routes: [{ name: "primary", provider, model: "primary-model" }], cache: yield* ResponseCache.make({ namespace: "other" }) })
      expect((yield* otherNamespace.generateObject(Answer, request)).cached).toBeUndefined()
      expect(yield* requests).toBe(7)
    }).pipe(Effect.provide(Memory)))
})

describe("ResponseCache — only accepted answers are stored", () => {
  it.scoped("a failure and an InvalidOutput are never stored; the next good answer is", () =>
    Effect.gen(function*() {
      const { chain, namespace, requests } = yield* setup({
        routes: [route("primary", { script: [{ kind: "http_error", status: 500 }, { kind: "schema_violation", value: { city: "Paris", population: "lots" } }] })]
      })
      expect((yield* routesFailed(chain.generateObject(Answer, request))).lastError?._tag).toBe("ServerError")
      expect((yield* routesFailed(chain.generateObject(Answer, request))).lastError?._tag).toBe("InvalidOutput")
      expect(yield* writes(namespace, "stored")).toBe(0)
      const answered = yield* chain.generateObject(Answer, request)
      expect(answered.cached).toBeUndefined()
      expect((yield* chain.generateObject(Answer, request)).cached).toBe(true)
      expect(yield* requests).toBe(3)
      expect(yield* writes(namespace, "stored")).toBe(1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("a fallback's accepted answer is stored (degraded, as served); a route with `cache: false` is served but never stored", () =>
    Effect.gen(function*() {
      const script: ReadonlyArray<Scenario.Fault> = [{ kind: "overloaded" }, { kind: "overloaded" }]
      const { chain, requests } = yield* setup({ routes: [route("primary", { script }), route("fallback")] })
      const first = yield* chain.generateObject(Answer, request)
      expect(first).toMatchObject({ route: "fallback", degraded: true })
      const hit = yield* chain.generateObject(Answer, request)
      expect(hit).toMatchObject({ cached: true, route: "fallback", degraded: true })
      expect(hit.attempts.map((a) => [a.route, a.attempt, a.outcome])).toEqual([["fallback", 0, "cached"]])
      expect(yield* requests).toBe(2)

      // The same chain with its fallback kept out of the cache: answered, not stored.
      const server = yield* ChaosServer.make({ scenario: { routes: [route("primary", { script }), route("fallback")] } })
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-cache-test"), baseUrl: server.openAiBaseUrl })
      const guarded = yield* Fallback.make({
        routes: [
          { name: "primary", provider, model: "primary-model", policy: { retry: false } },
          { name: "fallback", provider, model: "fallback-model", policy: { retry: false }, cache: false }
        ],
        cache: yield* ResponseCache.make({ namespace: freshNamespace() })
      })
      expect((yield* guarded.generateObject(Answer, request)).route).toBe("fallback")
      const again = yield* guarded.generateObject(Answer, request)
      expect(again).toMatchObject({ route: "fallback" })
      expect(again.cached).toBeUndefined()
      expect((yield* guarded.generateObject(Answer, request))).toMatchObject({ route: "primary", degraded: false }) // the primary's answer is stored
      expect((yield* guarded.generateObject(Answer, request))).toMatchObject({ route: "primary", cached: true })
      expect((yield* server.stats).total).toBe(5)
    }).pipe(Effect.provide(Memory)))

  it.scoped("a stream cut after partial output, or abandoned by its consumer before `Completed`, is never stored", () =>
    Effect.gen(function*() {
      const { chain, namespace, requests } = yield* setup({
        routes: [route("primary", {
          content: { kind: "text", text: "Paris is the largest city of France." },
          script: [{ kind: "stream_cut", afterDeltas: 2 }, { kind: "stall_mid_stream", afterDeltas: 1, delayMs: 60_000 }]
        })]
      })
      // Two deltas reached the consumer, then the body ended without its terminator.
      const cut = yield* Effect.either(Stream.runCollect(chain.stream(request)))
      expect(cut._tag === "Left" && cut.left._tag === "AllRoutesFailed" ? cut.left.lastError?._tag : undefined).toBe("StreamInterrupted")
      expect(yield* writes(namespace, "stored")).toBe(0)

      // A consumer that stops after the first text delta (the rest is still on its way).
      const partial = yield* Stream.runCollect(chain.stream(request).pipe(Stream.takeUntil((event) => event._tag === "TextDelta")))
      expect(Chunk.toReadonlyArray(partial).map((event) => event._tag)).toEqual(["Metadata", "TextDelta"])
      expect(yield* writes(namespace, "stored")).toBe(0)

      // Completed: stored, and the next call of the same request is a hit.
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(chain.stream(request)))
      expect(events.at(-1)?._tag).toBe("Completed")
      expect(yield* writes(namespace, "stored")).toBe(1)
      expect((yield* chain.generate(request)).cached).toBe(true)
      expect(yield* requests).toBe(3)
    }).pipe(Effect.provide(Memory)))
})

describe("ResponseCache — streams replay a hit", () => {
  it.scoped("streamObject of a stored answer: the chain's events (metadata, text, preview, Finish, Completed), no request", () =>
    Effect.gen(function*() {
      const { chain, requests } = yield* setup()
      const live = Chunk.toReadonlyArray(yield* Stream.runCollect(chain.streamObject(Answer, request)))
      expect(yield* requests).toBe(1)
      const replayed = Chunk.toReadonlyArray(yield* Stream.runCollect(chain.streamObject(Answer, request)))
      expect(yield* requests).toBe(1)
      expect(replayed.map((event) => event._tag)).toEqual(["Metadata", "TextDelta", "PartialObject", "Finish", "Completed"])
      const text = (events: ReadonlyArray<Fallback.ObjectStreamEvent<unknown>>) =>
        events.flatMap((event) => (event._tag === "TextDelta" ? [event.text] : [])).join("")
      expect(text(replayed)).toBe(text(live))
      const completed = replayed.at(-1)
      if (completed?._tag !== "Completed") return expect.fail("no Completed event")
      expect(completed.result).toMatchObject({ cached: true, value: paris, route: "primary" })
      const preview = replayed[2]
      expect(preview).toEqual({ _tag: "PartialObject", value: paris })
    }).pipe(Effect.provide(Memory)))

  it.scoped("an answer stored by `generate` replays as `stream`, and one stored by `stream` answers `generate`", () =>
    Effect.gen(function*() {
      const { chain, requests } = yield* setup()
      const generated = yield* chain.generate(request)
      const replayed = Chunk.toReadonlyArray(yield* Stream.runCollect(chain.stream(request)))
      expect(replayed.map((event) => event._tag)).toEqual(["Metadata", "TextDelta", "Finish", "Completed"])
      const completed = replayed.at(-1)
      if (completed?._tag !== "Completed") return expect.fail("no Completed event")
      expect(completed.result.value).toBe(generated.value)
      expect(yield* requests).toBe(1)
    }).pipe(Effect.provide(Memory)))
})

describe("ResponseCache — what a hit does not touch", () => {
  it.scoped("a spend budget is not charged for a hit; its cost is 0 and the stored answer's cost is kept", () =>
    Effect.gen(function*() {
      const prices = yield* Spend.prices({ "primary-*": { inputPerMTok: 1, outputPerMTok: 2 } })
      const budget = yield* Spend.budget({ name: "run", maxCostUsd: 1, prices })
      const { chain, requests } = yield* setup({ chain: { spend: budget } })
      const first = yield* chain.generateObject(Answer, request)
      const spent = yield* Spend.snapshot(budget)
      expect(spent.calls).toBe(1)
      const hit = yield* chain.generateObject(Answer, request)
      expect(hit).toMatchObject({ cached: true, costUsd: 0, cachedCostUsd: first.costUsd })
      expect(first.costUsd).toBeGreaterThan(0)
      expect(yield* Spend.snapshot(budget)).toEqual(spent)
      expect(yield* requests).toBe(1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("DegradedMode is not changed by a hit (a stored answer says nothing about the providers now)", () =>
    Effect.gen(function*() {
      const { chain } = yield* setup({ routes: [route("primary", { script: [{ kind: "overloaded" }] }), route("fallback")] })
      const ref = yield* DegradedMode.DegradedMode
      yield* chain.generate(request) // the primary is overloaded: served by the fallback, degraded
      expect((yield* SubscriptionRef.get(ref)).degraded).toBe(true)
      yield* chain.generate({ ...request, maxTokens: 100 }) // the primary answers: healthy again
      expect(yield* SubscriptionRef.get(ref)).toMatchObject({ degraded: false, route: "primary" })
      const hit = yield* chain.generate(request)
      expect(hit).toMatchObject({ cached: true, degraded: true, route: "fallback" })
      expect(yield* SubscriptionRef.get(ref)).toMatchObject({ degraded: false, route: "primary" })
    }).pipe(Effect.provide(Memory)))

  it.scoped("cache first, then coalesce the misses: 10 identical cold calls → 1 request; the next one is a hit", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: { routes: [{ ...route("primary"), latency: { kind: "fixed", ms: 1_000 } }] } })
      const adapter = yield* OpenAi.make({ apiKey: Redacted.make("sk-cache-test"), baseUrl: server.openAiBaseUrl })
      const coalesced = Coalesce.provider(yield* Coalesce.make, adapter)
      const chain = yield* Fallback.make({
        routes: [{ name: "primary", provider: coalesced, model: "primary-model", policy: { retry: false } }],
        cache: yield* ResponseCache.make({ namespace: freshNamespace() })
      })
      const fibers = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.fork(chain.generate(request)))
      yield* awaitSleepUntil(1_000)
      yield* TestClock.adjust("1 second")
      const answers = yield* Effect.forEach(fibers, settle)
      expect(answers.every((a) => a.cached === undefined)).toBe(true)
      expect((yield* server.stats).total).toBe(1)
      const next = yield* Effect.fork(chain.generate(request))
      expect((yield* Fiber.join(next)).cached).toBe(true)
      expect((yield* server.stats).total).toBe(1)
    }).pipe(Effect.provide(Memory)))
})

describe("ResponseCache — the HTML report and the summary", () => {
  it.scoped("a hit is a call answered from the cache: its `cached` attempt, the summary's count, a badge on the page", () =>
    Effect.gen(function*() {
      const { cache, provider } = yield* setup()
      const recorder = yield* Report.makeRecorder({ title: "cache", routes: [{ name: "primary", provider: "chaos", model: "primary-model" }] })
      const chain = yield* Fallback.make({ routes: recorder.instrument([{ name: "primary", provider, model: "primary-model" }]), cache })
      yield* recorder.call("first", chain.generate(request))
      yield* recorder.call("second", chain.generate(request))
      const record = yield* recorder.record
      expect(record.calls.map((c) => [c.label, c.cached ?? false])).toEqual([["first", false], ["second", true]])
      expect(record.attempts.map((a) => [a.call, a.outcome, a.attempt])).toEqual([[1, "success", 1], [2, "cached", 0]])
      const summary = Report.summarize(record)
      expect(summary).toMatchObject({ calls: 2, succeeded: 2, cached: 1, attempts: 1 }) // a hit is not a provider attempt
      const page = Report.html(record)
      expect(page).toContain(`<tr data-metric="cached"><th>Answered from the cache (no provider call)</th><td>1</td></tr>`)
      expect(page).toContain(`<span class="badge badge-cached"`)
      expect(page).toContain(`data-outcome="cached"`)
      expect(page).toContain("(1 from the cache)")
    }).pipe(Effect.provide(Memory)))
})

describe("ResponseCache — stores", () => {
  const withDirectory = <A, E, R>(use: (directory: string) => Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "llmr-cache-"))),
      use,
      (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
    )

  it.scoped("a KeyValueStore directory: entries are files that survive a restart; expiry on the Clock; a corrupt or foreign file is a miss", () =>
    withDirectory((directory) =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({ scenario: { routes: [route("primary")] } })
        const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-cache-test"), baseUrl: server.openAiBaseUrl })
        const namespace = freshNamespace()
        /** One "process": its own store layer over the directory, its own cache and chain. */
        const process = Effect.gen(function*() {
          const cache = yield* ResponseCache.make({ namespace, ttl: "1 hour" })
          return yield* Fallback.make({ routes: [{ name: "primary", provider, model: "primary-model", policy: { retry: false } }], cache })
        }).pipe(Effect.provide(ResponseCache.layerFileSystem(directory)))
        const first = yield* process
        yield* first.generateObject(Answer, request)
        const files = fs.readdirSync(directory)
        expect(files).toHaveLength(1)
        expect(decodeURIComponent(files[0]!)).toMatch(new RegExp(`^cache:${namespace}[A-Za-z0-9_-]{43}$`))
        const stored = JSON.parse(fs.readFileSync(path.join(directory, files[0]!), "utf8")) as [unknown, number]
        expect(stored[1]).toBe(3_600_000) // expires at (TestClock) one hour
        expect(stored[0]).toMatchObject({ _tag: "Success", value: { v: 1, route: "primary", response: { text: JSON.stringify(paris) } } })

        const restarted = yield* process
        expect((yield* restarted.generateObject(Answer, request)).cached).toBe(true)
        expect((yield* server.stats).total).toBe(1)

        yield* TestClock.adjust("1 hour")
        expect((yield* restarted.generateObject(Answer, request)).cached).toBeUndefined()
        expect((yield* server.stats).total).toBe(2)

        // A torn write, or a file of another format: a miss (the call is answered), never a crash.
        const file = path.join(directory, fs.readdirSync(directory)[0]!)
        fs.writeFileSync(file, `[{"_tag":"Success","value":{"v":1,"resp`)
        expect((yield* restarted.generateObject(Answer, request)).cached).toBeUndefined()
        fs.writeFileSync(file, JSON.stringify([{ _tag: "Success", value: { v: 2, answer: 42 } }, null]))
        expect((yield* restarted.generateObject(Answer, request)).cached).toBeUndefined()
        expect(yield* lookups(namespace, "error")).toBe(2)
        expect((yield* server.stats).total).toBe(4)
        // The last answer replaced it.
        expect((yield* restarted.generateObject(Answer, request)).cached).toBe(true)
        expect((yield* server.stats).total).toBe(4)
      })
    ).pipe(Effect.provide(Env)))

  it.scoped("the memory store is bounded: the least recently used entry goes first", () =>
    Effect.gen(function*() {
      const { chain, requests } = yield* setup()
      const ask = (n: number) => chain.generate({ ...request, maxTokens: 100 + n })
      yield* ask(1)
      yield* ask(2)
      expect((yield* ask(1)).cached).toBe(true) // 1 is now the most recently used
      yield* ask(3) // evicts 2
      expect((yield* ask(1)).cached).toBe(true)
      expect((yield* ask(3)).cached).toBe(true)
      expect((yield* ask(2)).cached).toBeUndefined()
      expect(yield* requests).toBe(4)
    }).pipe(Effect.provide(Layer.merge(Env, ResponseCache.layerMemory({ capacity: 2 })))))
})

describe("ResponseCache — options are checked where the cache is built", () => {
  const cases: ReadonlyArray<{ readonly options: ResponseCache.ResponseCacheOptions; readonly option: string; readonly message: string }> = [
    { options: { ttl: 0 }, option: "ttl", message: "ttl must be positive, got 0" },
    { options: { ttl: "-5 seconds" as never }, option: "ttl", message: "ttl must be positive" },
    { options: { ttl: "1 hr" as never }, option: "ttl", message: `ttl is not a duration, got "1 hr"` },
    { options: { namespace: "" }, option: "namespace", message: "namespace must be 1–64 characters" },
    { options: { namespace: "a:b" }, option: "namespace", message: "namespace must be 1–64 characters" },
    { options: { namespace: "x".repeat(65) }, option: "namespace", message: "namespace must be 1–64 characters" },
    { options: { nondeterministic: "yes" as never }, option: "nondeterministic", message: `nondeterministic must be a boolean, got "yes"` }
  ]
  for (const { message, option, options } of cases) {
    it.scoped(`ResponseCache.make ${option}: ${message}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(ResponseCache.make(options))
        expect(error).toMatchObject({ _tag: "InvalidOptions", component: "ResponseCache.make", option })
        expect(error.message.startsWith(message)).toBe(true)
      }).pipe(Effect.provide(Memory)))
  }

  it.effect("ResponseCache.layerMemory capacity must be an integer ≥ 1", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(Layer.build(ResponseCache.layerMemory({ capacity: 0 }))))
      expect(error).toMatchObject({ _tag: "InvalidOptions", component: "ResponseCache.layerMemory", option: "capacity" })
    }))

  it.scoped("the defaults build a cache; Infinity is a valid ttl", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make({ ttl: Duration.infinity })
      expect(ResponseCache.isCache(cache)).toBe(true)
      expect(cache.settings).toEqual({ namespace: "default", ttlMs: Number.POSITIVE_INFINITY, nondeterministic: false })
      expect((yield* ResponseCache.make()).settings.ttlMs).toBe(3_600_000)
    }).pipe(Effect.provide(Memory)))
})

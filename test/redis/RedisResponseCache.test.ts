/**
 * The response cache in a real Redis (127.0.0.1:6379; skipped with the reason when it is down,
 * failing when CI=true): a chain's answer stored by one "process" (its own connection) is a hit for
 * another; the entry's key layout and Redis-side expiry (`PX`); a corrupt or foreign entry is a miss and
 * is replaced; Redis unreachable means every call asks the provider and none fails; and the same cache
 * over `@effect/experimental`'s own Redis layer. Every key is under a unique prefix, removed afterwards.
 * Expiry here is Redis' own clock (real time); the cache's TTL on the Effect clock is tested with
 * TestClock in test/ResponseCache.test.ts.
 */
import * as PersistenceRedis from "@effect/experimental/Persistence/Redis"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Persistence from "@effect/experimental/Persistence"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as RedisResponseCache from "../../src/redis/RedisResponseCache.js"
import * as ResponseCache from "../../src/ResponseCache.js"
import * as Mock from "../../src/testing/MockProvider.js"
import { cleanup, eventually, keysUnder, pttl, redisGate, redisUrl, uniquePrefix, unreachableUrl } from "./helpers.js"

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

const freshPrefix = () => {
  const prefix = uniquePrefix("cache")
  prefixes.push(prefix)
  return prefix
}

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number })
const paris = { city: "Paris", population: 2_100_000 }
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Largest city in France, as JSON." }], maxTokens: 200, temperature: 0 }
const State = Layer.merge(Policy.layerState, DegradedMode.layer)

/** A raw command on the test Redis (what another program, or a hand, would write). */
const raw = <A>(run: (client: Redis) => Promise<A>): Effect.Effect<A> =>
  Effect.promise(async () => {
    const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 })
    client.on("error", () => {})
    try {
      await client.connect()
      return await run(client)
    } finally {
      client.disconnect()
    }
  })

/** The package's own connection layer, as an application shares it with SharedState. */
const RedisClientLayer = () => RedisClient.layer({ url: redisUrl, connectTimeout: "1 second" })

/** One "process": its own store layer (connection), cache and chain over a mock provider. */
const worker = (store: Layer.Layer<Persistence.ResultPersistence>, options: ResponseCache.ResponseCacheOptions) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(store)
    const provider = Mock.make({ otherwise: Mock.succeed(JSON.stringify(paris)) })
    const cache = yield* ResponseCache.make(options).pipe(Effect.provide(context))
    const chain = yield* Fallback.make({ routes: [{ name: "primary", provider, model: "m", policy: { retry: false, breaker: false } }], cache })
    return { chain, provider }
  })

const redisUp = await redisGate((name, fn) => describe("RedisResponseCache", () => it(name, fn)))

describe.runIf(redisUp)("RedisResponseCache", () => {
  it.scopedLive("one process stores, another hits; the entry is `<prefix>cache:<namespace>:<hash>` with Redis' expiry", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const store = () => RedisResponseCache.layer({ url: redisUrl, prefix, connectTimeout: "1 second" })
      const a = yield* worker(store(), { namespace: "fleet", ttl: "10 minutes" })
      const first = yield* a.chain.generateObject(Answer, request)
      expect(first.cached).toBeUndefined()
      const keys = yield* keysUnder(prefix)
      expect(keys).toHaveLength(1)
      expect(keys[0]).toMatch(new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}cache:fleet:[A-Za-z0-9_-]{43}$`))
      const left = yield* pttl(keys[0]!)
      expect(left).toBeGreaterThan(590_000)
      expect(left).toBeLessThanOrEqual(600_000)
      const stored = JSON.parse((yield* raw((client) => client.get(keys[0]!)))!) as { readonly _tag: string; readonly value: { readonly v: number } }
      expect(stored).toMatchObject({ _tag: "Success", value: { v: 1, route: "primary" } })

      const b = yield* worker(store(), { namespace: "fleet", ttl: "10 minutes" })
      const hit = yield* b.chain.generateObject(Answer, request)
      expect(hit).toMatchObject({ cached: true, value: paris, route: "primary" })
      expect(b.provider.calls).toHaveLength(0)
      // Another namespace on the same Redis shares nothing.
      const c = yield* worker(store(), { namespace: "other" })
      expect((yield* c.chain.generateObject(Answer, request)).cached).toBeUndefined()
    }).pipe(Effect.provide(State)))

  it.scopedLive("Redis expires the entry (its clock): the next call is a miss and stores again", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const a = yield* worker(RedisResponseCache.layer({ url: redisUrl, prefix }), { namespace: "ttl", ttl: "150 millis" })
      yield* a.chain.generate(request)
      expect((yield* a.chain.generate(request)).cached).toBe(true)
      yield* eventually(Effect.map(keysUnder(prefix), (keys) => keys.length === 0))
      expect((yield* a.chain.generate(request)).cached).toBeUndefined()
      expect(a.provider.calls).toHaveLength(2)
    }).pipe(Effect.provide(State)))

  it.scopedLive("a corrupt or foreign entry is a miss (the call is answered) and is replaced by the next answer", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const a = yield* worker(RedisResponseCache.layerClient({ prefix }).pipe(Layer.provide(RedisClientLayer())), { namespace: "bad" })
      yield* a.chain.generateObject(Answer, request)
      const [key] = yield* keysUnder(prefix)
      for (const junk of ["{not json", JSON.stringify({ _tag: "Success", value: { v: 2, text: "from a future version" } }), JSON.stringify({ _tag: "Failure" })]) {
        yield* raw((client) => client.set(key!, junk))
        const answered = yield* a.chain.generateObject(Answer, request)
        expect(answered.value).toEqual(paris)
        expect(answered.cached).toBeUndefined()
        expect((yield* a.chain.generateObject(Answer, request)).cached).toBe(true) // replaced
      }
      expect(a.provider.calls).toHaveLength(4)
    }).pipe(Effect.provide(State)))

  it.scopedLive("Redis unreachable: every call asks the provider, none fails (a read is a miss, a write is skipped)", () =>
    Effect.gen(function*() {
      const a = yield* worker(RedisResponseCache.layer({ url: unreachableUrl, connectTimeout: "200 millis" }), { namespace: "down" })
      for (let i = 0; i < 3; i++) expect((yield* a.chain.generateObject(Answer, request)).value).toEqual(paris)
      expect(a.provider.calls).toHaveLength(3)
    }).pipe(Effect.provide(State)))

  it.scopedLive("@effect/experimental's own Redis layer works as the store too (ResponseCache.layerBacking)", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const url = new URL(redisUrl)
      const store = () =>
        ResponseCache.layerBacking.pipe(Layer.provide(PersistenceRedis.layer({
          host: url.hostname,
          port: Number(url.port || 6379),
          keyPrefix: prefix,
          // Recommended for a cache: a command while Redis is down fails at once (a miss) instead of queueing.
          enableOfflineQueue: false
        })))
      const a = yield* worker(store(), { namespace: "experimental" })
      // Its connection comes up in the background (a write before it is up is skipped): ask until one is stored.
      yield* eventually(Effect.zipRight(a.chain.generateObject(Answer, request), Effect.map(keysUnder(prefix), (keys) => keys.length === 1)))
      const b = yield* worker(store(), { namespace: "experimental" })
      yield* eventually(Effect.map(b.chain.generateObject(Answer, request), (result) => result.cached === true))
      expect((yield* keysUnder(prefix))[0]).toMatch(/cache:experimental:[A-Za-z0-9_-]{43}$/)
    }).pipe(Effect.provide(State)))
})

/**
 * The Redis-backed rate limiter over a real Redis (127.0.0.1:6379; skipped with the reason when it is
 * down, failing when CI=true). Two registries on two separate connections stand for two worker
 * processes; every test uses its own key prefix, deleted afterwards.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Stream from "effect/Stream"
import { CircuitOpen, RateLimited } from "../../src/Errors.js"
import type { GenerateRequest, GenerateResponse, StreamEvent } from "../../src/Provider.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import type { RateLimitSnapshot } from "../../src/RateLimitSnapshot.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as RedisRateLimiter from "../../src/redis/RedisRateLimiter.js"
import { cleanup, keysUnder, pttl, redisGate, redisUrl, uniquePrefix, unreachableUrl } from "./helpers.js"
import { response, usageOf } from "../utils/limiterFixtures.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 500 }
const site = { provider: "p", model: "m", route: "r", attempt: 1 }
const KEY = "r/m"

/** A provider call that counts how often it ran. */
const counted = (result: Effect.Effect<GenerateResponse, RateLimited> = Effect.succeed(response())) => {
  const counter = { n: 0 }
  return { counter, call: Effect.zipRight(Effect.sync(() => void counter.n++), result) }
}

const provider429 = (retryAfterMs: number) =>
  Effect.fail(new RateLimited({ ...site, status: 429, message: "rate limited", retryAfterMs }))

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

const prefixFor = (label: string) => {
  const prefix = uniquePrefix(label)
  prefixes.push(prefix)
  return prefix
}

/** Two "processes": two registries on two connections, sharing one prefix. */
const twoWorkers = (label: string, options: RedisRateLimiter.RedisRateLimiterOptions = {}) =>
  Effect.gen(function*() {
    const prefix = prefixFor(label)
    const a = yield* RedisRateLimiter.make(yield* RedisClient.make({ url: redisUrl }), { prefix, ...options })
    const b = yield* RedisRateLimiter.make(yield* RedisClient.make({ url: redisUrl }), { prefix, ...options })
    return { a, b, prefix }
  })

const limiterOf = (
  registry: Effect.Effect.Success<ReturnType<typeof RedisRateLimiter.make>>,
  options: RateLimiter.RateLimiterOptions
) => registry.get(KEY, options)

const redisUp = await redisGate((name, fn) => describe("RedisRateLimiter", () => it(name, fn)))

describe.runIf(redisUp)("RedisRateLimiter — one budget for every worker", () => {
  it.scopedLive("a call the breaker refused (CircuitOpen: nothing was sent) gives its request and tokens back to the shared buckets", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers("refund")
      const options = { requestsPerMinute: 2, tokensPerMinute: 100_000, maxWait: 0 }
      const [la, lb] = [yield* limiterOf(a, options), yield* limiterOf(b, options)]
      const refused = Effect.fail(new CircuitOpen({ ...site, message: "open" }))
      for (let i = 0; i < 4; i++) yield* Effect.either(la.generate(request, refused, site))
      // Both requests of the minute are still there, for either worker.
      const { call, counter } = counted()
      yield* la.generate(request, call, site)
      yield* lb.generate(request, call, site)
      const third = yield* Effect.either(lb.generate(request, call, site))
      expect(third._tag).toBe("Left")
      expect(counter.n).toBe(2)
    }))

  it.scopedLive("RPM 10 shared by two workers: 10 admitted in all, the 11th fails fast with RateLimited", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers("rpm")
      const options = { requestsPerMinute: 10, maxWait: 0 }
      const [la, lb] = [yield* limiterOf(a, options), yield* limiterOf(b, options)]
      const { call, counter } = counted()
      // 16 callers at once, 8 per worker: the script is atomic, so exactly 10 get through.
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? la : lb)),
        (limiter) => Effect.either(limiter.generate(request, call, site)),
        { concurrency: "unbounded" }
      )
      expect(outcomes.filter((o) => o._tag === "Right").length).toBe(10)
      expect(counter.n).toBe(10)

      const eleventh = yield* Effect.flip(lb.generate(request, call, site))
      expect(eleventh._tag).toBe("RateLimited")
      expect(eleventh.providerType).toBe("client_rate_limit")
      expect(eleventh.providerCode).toBeUndefined()
      expect(eleventh.retryAfterMs).toBeGreaterThan(5_000) // one request refills every 6 s
      expect(eleventh.retryAfterMs).toBeLessThanOrEqual(6_000)
      expect(counter.n).toBe(10)
      expect((yield* la.stats).requestTokens).toBeLessThan(1)
    }))

  it.scopedLive("TPM: the estimate charged and its correction with the real usage are seen by the other worker", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers("tpm")
      const options = { tokensPerMinute: 1_000, maxWait: 0 }
      const [la, lb] = [yield* limiterOf(a, options), yield* limiterOf(b, options)]
      const estimate = RateLimiter.estimatePromptTokens(request) + request.maxTokens

      // A call in flight on worker A: B sees its estimate charged.
      const started = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<GenerateResponse>()
      const inFlight = yield* Effect.fork(la.generate(request, Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(gate)), site))
      yield* Deferred.await(started)
      const charged = (yield* lb.stats).tokenTokens
      expect(charged).toBeGreaterThanOrEqual(1_000 - estimate)
      expect(charged).toBeLessThan(1_000 - estimate + 5)

      // It used 10 tokens: the refund is visible to B.
      yield* Deferred.succeed(gate, response({ usage: usageOf(10) }))
      yield* Fiber.join(inFlight)
      const corrected = (yield* lb.stats).tokenTokens
      expect(corrected).toBeGreaterThanOrEqual(990)
      expect(corrected).toBeLessThanOrEqual(1_000)

      // A stream on A that used 3,000 (more than the estimate): B's bucket is in debt, B must wait.
      const events: ReadonlyArray<StreamEvent> = [
        { _tag: "Metadata", id: "s" },
        { _tag: "TextDelta", text: "long" },
        { _tag: "Finish", response: response({ usage: usageOf(3_000) }) }
      ]
      yield* Stream.runDrain(la.stream(request, Stream.fromIterable(events), site))
      expect((yield* lb.stats).tokenTokens).toBeLessThan(-1_000)
      const { call, counter } = counted()
      const refused = yield* Effect.flip(lb.generate(request, call, site))
      expect(refused._tag === "RateLimited" && refused.providerType).toBe("client_rate_limit")
      expect(refused.retryAfterMs).toBeGreaterThan(60_000) // > 2,000 tokens of debt at 1,000 per minute
      expect(counter.n).toBe(0)
    }))

  it.scopedLive("a provider 429 seen by one worker holds back the other until its Retry-After", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers("cooldown")
      // Nothing configured: the cooldown applies even without buckets.
      const options: RateLimiter.RateLimiterOptions = { maxWait: "5 seconds" }
      const [la, lb] = [yield* limiterOf(a, options), yield* limiterOf(b, options)]
      const got429 = yield* Effect.flip(la.generate(request, provider429(20_000), site))
      expect(got429.status).toBe(429)

      const { call, counter } = counted()
      const refused = yield* Effect.flip(lb.generate(request, call, site))
      expect(refused._tag).toBe("RateLimited")
      expect(refused.providerType).toBe("client_rate_limit")
      expect(refused.retryAfterMs).toBeGreaterThan(19_000)
      expect(refused.retryAfterMs).toBeLessThanOrEqual(20_000)
      expect(refused.message).toContain("exceeds the maxWait")
      // …and worker A honours it too.
      expect((yield* Effect.flip(la.generate(request, call, site))).providerType).toBe("client_rate_limit")
      expect(counter.n).toBe(0)
    }))

  it.scopedLive("rate-limit headers (remaining 0) teach every worker; a short cooldown is waited out in FIFO order", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers("headers")
      const [la, lb] = [yield* limiterOf(a, {}), yield* limiterOf(b, { maxWait: "5 seconds" })]
      const observedAt = yield* Clock.currentTimeMillis
      const rateLimit: RateLimitSnapshot = { requests: { limit: 6_000, remaining: 0, resetAfterMs: 300 }, observedAt }
      yield* la.generate(request, Effect.succeed(response({ rateLimit })), site)

      // Worker B: three callers wait for the reset (≈ 300 ms), then go in the order they came.
      const order: Array<number> = []
      const startedAt = yield* Clock.currentTimeMillis
      yield* Effect.forEach([1, 2, 3], (n) => lb.generate(request, Effect.sync(() => (order.push(n), response())), site), {
        concurrency: "unbounded"
      })
      const waited = (yield* Clock.currentTimeMillis) - startedAt
      expect(order).toEqual([1, 2, 3])
      expect(waited).toBeGreaterThanOrEqual(200) // Redis' clock and ours may differ by a few ms; the wait is ≈ 300 ms
      // The learned bucket (6,000 per minute) is shared too: B configured none.
      const learned = (yield* lb.stats).requestTokens
      expect(Number.isFinite(learned) && learned <= 6_000).toBe(true)
    }))

  it.scopedLive("keys live under the prefix and expire once the buckets would be full again", () =>
    Effect.gen(function*() {
      const { a, prefix } = yield* twoWorkers("keys")
      const limiter = yield* limiterOf(a, { requestsPerMinute: 600 })
      yield* limiter.generate(request, Effect.succeed(response()), site)
      const keys = yield* keysUnder(prefix)
      expect(keys).toEqual([RedisRateLimiter.stateKey(prefix, KEY)])
      const ttl = yield* pttl(keys[0]!)
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(61_000)
    }))
})

describe.runIf(redisUp)("RedisRateLimiter — when Redis is unreachable", () => {
  it.scopedLive("fail-open (the default): calls still succeed, through a local limiter with the same limits; one warning", () => {
    const warnings: Array<string> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
    )
    return Effect.gen(function*() {
      const client = yield* RedisClient.make({ url: unreachableUrl, connectTimeout: "200 millis" })
      // retryRedisAfter 0: every call asks Redis again (and fails again); still one warning per outage.
      const registry = yield* RedisRateLimiter.make(client, { prefix: prefixFor("open"), retryRedisAfter: 0 })
      const limiter = yield* registry.get(KEY, { requestsPerMinute: 2, maxWait: 0 })
      const { call, counter } = counted()
      expect((yield* limiter.generate(request, call, site)).text).toBe("ok")
      expect((yield* limiter.generate(request, call, site)).text).toBe("ok")
      // The local fallback enforces the limit (2 per minute) in this process.
      const third = yield* Effect.flip(limiter.generate(request, call, site))
      expect(third._tag).toBe("RateLimited")
      expect(third.providerCode).toBeUndefined()
      expect(counter.n).toBe(2)
      expect((yield* limiter.stats).requestTokens).toBeLessThan(1)
      expect(warnings.filter((w) => w.includes("shared rate-limit state")).length).toBe(1)
      expect(warnings.filter((w) => w.includes("is not up")).length).toBe(1) // the connection at start
      expect(warnings.join("\n")).not.toContain("redis://") // never the URL (it may hold a password)
    }).pipe(Effect.provide(capture))
  })

  it.scopedLive("fail-closed: a typed RateLimited (shared_state_unavailable), the provider is not called", () =>
    Effect.gen(function*() {
      const client = yield* RedisClient.make({ url: unreachableUrl, connectTimeout: "200 millis" })
      const registry = yield* RedisRateLimiter.make(client, { prefix: prefixFor("closed"), onRedisError: "fail-closed" })
      const limiter = yield* registry.get(KEY, { requestsPerMinute: 100 })
      const { call, counter } = counted()
      const error = yield* Effect.flip(limiter.generate(request, call, site))
      expect(error).toBeInstanceOf(RateLimited)
      expect(error.providerType).toBe("client_rate_limit")
      expect(error.providerCode).toBe("shared_state_unavailable")
      expect(error.retryAfterMs).toBe(RedisRateLimiter.defaults.retryRedisAfterMs)
      // The stream path too.
      const streamError = yield* Effect.flip(Stream.runDrain(limiter.stream(request, Stream.empty, site)))
      expect(streamError.providerCode).toBe("shared_state_unavailable")
      expect(counter.n).toBe(0)
    }))

  it.scopedLive("Redis lost mid-way: the next calls fall back to the local limiter instead of failing", () =>
    Effect.gen(function*() {
      const client = yield* RedisClient.make({ url: redisUrl })
      const registry = yield* RedisRateLimiter.make(client, { prefix: prefixFor("lost") })
      const limiter = yield* registry.get(KEY, { requestsPerMinute: 100 })
      const { call, counter } = counted()
      yield* limiter.generate(request, call, site)
      yield* Effect.sync(() => client.disconnect()) // the connection is gone, for good
      yield* Effect.forEach([1, 2, 3], () => limiter.generate(request, call, site))
      expect(counter.n).toBe(4)
      // The local fallback's bucket: it started from what this worker left of the minute (99, not a full
      // 100) and took 3 (plus the refill of the few milliseconds this took).
      const left = (yield* limiter.stats).requestTokens
      expect(left).toBeGreaterThanOrEqual(96)
      expect(left).toBeLessThan(97)
    }))

  it.scopedLive("the layer builds with Redis down (fail-open)", () =>
    Effect.gen(function*() {
      const registry = yield* RateLimiter.RateLimiters
      const limiter = yield* registry.get(KEY, {})
      expect((yield* limiter.generate(request, Effect.succeed(response()), site)).text).toBe("ok")
    }).pipe(Effect.provide(RedisRateLimiter.layer({ url: unreachableUrl, connectTimeout: "200 millis", prefix: prefixFor("layer") }))))
})

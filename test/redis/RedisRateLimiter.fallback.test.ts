/**
 * Fail-open after an outage starts: the local fallback bucket starts from what this worker was already
 * granted (docs/policies/shared-state.md, "Failure modes"), never full. Real Redis behind a TCP proxy
 * the test cuts — the client sees its connection reset and every reconnect refused — and, except for
 * the last test, `TestClock` for the limiter's time (Redis' own clock barely moves meanwhile: the bursts
 * before a cut take a few real milliseconds).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { GenerateRequest, GenerateResponse, StreamEvent } from "../../src/Provider.js"
import type * as RateLimiter from "../../src/RateLimiter.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as RedisRateLimiter from "../../src/redis/RedisRateLimiter.js"
import { response, usageOf } from "../utils/limiterFixtures.js"
import { cleanup, redisGate, redisProxy, uniquePrefix, untilReal } from "./helpers.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 500 }
const site = { provider: "p", model: "m", route: "r", attempt: 1 }

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

/** One worker on a connection through a proxy the test can cut (and restore). */
const worker = (label: string, options: RedisRateLimiter.RedisRateLimiterOptions = {}) =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(label)
    prefixes.push(prefix)
    const proxy = yield* redisProxy
    const client = yield* RedisClient.make({ url: proxy.url })
    // Commands answer or fail in real milliseconds here; a command timeout on the test clock would
    // only leave a sleep behind per command for every `TestClock.adjust` to step through.
    const registry = yield* RedisRateLimiter.make(client, { prefix, commandTimeout: "1 hour", ...options })
    return {
      registry,
      /** Redis gone: the connection is reset and reconnects are refused; returns once the client knows. */
      cut: Effect.zipRight(proxy.cut, untilReal(() => client.status !== "ready")),
      /** Redis back: returns once the client has reconnected. */
      restore: Effect.zipRight(proxy.restore, untilReal(() => client.status === "ready"))
    }
  })

/** A provider call that counts how often it ran (= calls the limiter admitted). */
const counted = (result: GenerateResponse = response()) => {
  const counter = { n: 0 }
  return { counter, call: Effect.sync(() => (counter.n++, result)) }
}

/** `n` attempts, one after the other, at the current time; how many were admitted. */
const attempts = (limiter: RateLimiter.RateLimiter, n: number, result?: GenerateResponse) =>
  Effect.gen(function*() {
    const { call, counter } = counted(result)
    for (let i = 0; i < n; i++) yield* Effect.either(limiter.generate(request, call, site))
    return counter.n
  })

/** 50 attempts a second for `seconds` (25 every 500 ms, the clock advanced between them); how many were admitted. */
const fiftyPerSecond = (limiter: RateLimiter.RateLimiter, seconds: number) =>
  Effect.gen(function*() {
    let admitted = 0
    for (let step = 0; step <= seconds * 2; step++) {
      admitted += yield* attempts(limiter, 25)
      yield* TestClock.adjust("500 millis")
    }
    return admitted
  })

const redisUp = await redisGate((name, fn) => describe("RedisRateLimiter fail-open", () => it(name, fn)))

describe.runIf(redisUp)("RedisRateLimiter — the fail-open fallback starts from what this worker spent", () => {
  const rpm120 = { requestsPerMinute: 120, maxQueue: 0, maxWait: 0 }

  it.scoped("RPM 120: a worker that spent the minute's budget through Redis gets only the refill once Redis is gone", () =>
    Effect.gen(function*() {
      const { cut, registry } = yield* worker("spent")
      const limiter = yield* registry.get("r/m", rpm120)
      // Redis up: a burst takes the whole budget (120; 121 if Redis' clock refilled one meanwhile).
      const shared = yield* attempts(limiter, 130)
      expect(shared).toBeGreaterThanOrEqual(120)
      expect(shared).toBeLessThanOrEqual(121)

      yield* cut
      // The fallback's bucket is what the worker left of the minute (nothing), not a full one.
      expect((yield* limiter.stats).requestTokens).toBeLessThan(1)
      // 50 calls/s for 4 s of the outage: the refill (2/s), 8 — not another minute's budget.
      const local = yield* fiftyPerSecond(limiter, 4)
      expect(local).toBe(8)
    }))

  it.scoped("TPM (generate and stream, corrected by the real usage): the fallback starts from the tokens left", () =>
    Effect.gen(function*() {
      const { cut, registry } = yield* worker("tpm")
      // Each call is charged 2,000 tokens up front and uses 1,000: five fit in 6,000 per minute (1,000 left).
      const limiter = yield* registry.get("r/m", { tokensPerMinute: 6_000, estimateTokens: () => 2_000, maxQueue: 0, maxWait: 0 })
      const used = response({ usage: usageOf(1_000) })
      const events: ReadonlyArray<StreamEvent> = [{ _tag: "TextDelta", text: "ok" }, { _tag: "Finish", response: used }]
      const streams = { n: 0 }
      const streamCall = Stream.unwrap(Effect.sync(() => (streams.n++, Stream.fromIterable(events))))
      for (let i = 0; i < 3; i++) yield* Effect.either(Stream.runDrain(limiter.stream(request, streamCall, site)))
      expect(streams.n).toBe(3)
      expect(yield* attempts(limiter, 5, used)).toBe(2)

      yield* cut
      const left = (yield* limiter.stats).tokenTokens
      expect(left).toBeGreaterThanOrEqual(999)
      expect(left).toBeLessThanOrEqual(1_000)
      // 1,000 tokens left, 2,000 needed: nothing now; 10 s later (100 tokens/s) one call.
      expect(yield* attempts(limiter, 5, used)).toBe(0)
      yield* TestClock.adjust("10 seconds")
      expect(yield* attempts(limiter, 5, used)).toBe(1)
    }))

  it.scoped("fallbackShare 1/2: the share minus what this worker spent; after a full minute the whole share", () =>
    Effect.gen(function*() {
      const { cut, registry } = yield* worker("share", { fallbackShare: 0.5 })
      const [a, b, c] = yield* Effect.all([registry.get("r/a", rpm120), registry.get("r/b", rpm120), registry.get("r/c", rpm120)])
      // a spent a quarter of the key's limit (half its share of 60); b and c the whole limit (twice their share).
      expect(yield* attempts(a, 30)).toBe(30)
      expect(yield* attempts(b, 120)).toBe(120)
      expect(yield* attempts(c, 120)).toBe(120)
      yield* TestClock.adjust("15 seconds")

      yield* cut
      // a: 60 − 30, plus 15 s of refill at 60/min. b: spending beyond the share is not carried over as
      // debt: 0 + 15 s of refill.
      expect(yield* attempts(a, 100)).toBe(45)
      expect(yield* attempts(b, 100)).toBe(15)
      // c, a full minute after it last spent: the whole share.
      yield* TestClock.adjust("45 seconds")
      expect(yield* attempts(c, 100)).toBe(60)
    }))

  it.scoped("Redis flapping: what the fallback admitted counts too when the next outage starts", () =>
    Effect.gen(function*() {
      const { cut, registry, restore } = yield* worker("flap")
      const limiter = yield* registry.get("r/m", rpm120)
      yield* cut
      expect(yield* attempts(limiter, 60)).toBe(60) // outage 1: 60 through the fallback
      yield* restore
      yield* TestClock.adjust("1 second") // retryRedisAfter: Redis is asked again (2 requests refilled)
      expect(yield* attempts(limiter, 60)).toBe(60) // Redis, which never saw outage 1's calls, grants 60 more
      yield* cut
      // Outage 2: this worker spent 120 of the minute (+2 refilled), whichever way it was granted.
      expect(yield* attempts(limiter, 130)).toBe(2)
    }))

  it.scopedLive("real time: Redis cut mid-window — admissions in the next second are the refill, not a new budget", () =>
    Effect.gen(function*() {
      const { cut, registry } = yield* worker("live", { commandTimeout: "500 millis" })
      const limiter = yield* registry.get("r/m", rpm120)
      const start = yield* Clock.currentTimeMillis
      const shared = yield* attempts(limiter, 130)
      expect(shared).toBeGreaterThanOrEqual(120)
      expect(shared).toBeLessThanOrEqual(121)
      yield* cut
      // 50 calls/s for one second after the cut.
      const { call, counter } = counted()
      const cutAt = yield* Clock.currentTimeMillis
      while ((yield* Clock.currentTimeMillis) - cutAt < 1_000) {
        yield* Effect.either(limiter.generate(request, call, site))
        yield* Effect.sleep("20 millis")
      }
      // What refilled at 2/s since the burst began (≈ 1 s): 2, perhaps 3 — not a new minute's budget.
      const refilled = ((yield* Clock.currentTimeMillis) - start) * 2 / 1_000
      expect(counter.n).toBeLessThanOrEqual(Math.ceil(refilled))
      expect(counter.n).toBeGreaterThanOrEqual(1)
    }))
})

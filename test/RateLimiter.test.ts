import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import { CircuitOpen, isRetryable, RateLimited } from "../src/Errors.js"
import { estimatePromptTokens, estimateRequestTokens } from "../src/internal/estimateTokens.js"
import type { GenerateRequest, GenerateResponse, StreamEvent, Usage } from "../src/Provider.js"
import * as RateLimiter from "../src/RateLimiter.js"
import type { RateLimitSnapshot } from "../src/RateLimitSnapshot.js"
import * as Mock from "../src/testing/MockProvider.js"
import { response, usageOf } from "./utils/limiterFixtures.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const site = { provider: "p", model: "m", route: "r", attempt: 1 }

const ok = Effect.succeed(response())

/** Lets forked fibers run up to their next wait. */
const flush = Effect.forEach(Array.from({ length: 25 }, (_, i) => i), () => Effect.yieldNow(), { discard: true })

const now = TestClock.currentTimeMillis

/** A call that starts (counted) and finishes when `gate` is completed (or fails with its error). */
const gated = (gate: Deferred.Deferred<GenerateResponse, string>, started: { n: number }) =>
  Effect.zipRight(Effect.sync(() => started.n++), Deferred.await(gate))

/** Forks a call that records the clock time it started at. */
const timed = (limiter: RateLimiter.RateLimiter, req: GenerateRequest = request, result: GenerateResponse = response()) => {
  const startedAt: Array<number> = []
  return Effect.map(
    Effect.fork(
      limiter.generate(req, Effect.as(Effect.flatMap(now, (t) => Effect.sync(() => startedAt.push(t))), result), site)
    ),
    (fiber) => ({ fiber, startedAt })
  )
}

const clientRejection = (error: unknown): RateLimited => {
  expect(error).toBeInstanceOf(RateLimited)
  const rateLimited = error as RateLimited
  expect(rateLimited.providerType).toBe("client_rate_limit")
  expect(rateLimited.status).toBeUndefined()
  expect(rateLimited.message.startsWith("client-side rate limit: ")).toBe(true)
  return rateLimited
}

describe("RateLimiter — requests per minute", () => {
  it.effect("60 calls pass at t=0 without waiting; the 61st waits exactly 1 s, the 62nd 2 s (FIFO)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60 })
      for (let i = 0; i < 60; i++) yield* limiter.generate(request, ok, site)
      expect(yield* now).toBe(0)
      expect((yield* limiter.stats).requestTokens).toBe(0)

      const a = yield* timed(limiter)
      const b = yield* timed(limiter)
      yield* flush
      expect((yield* limiter.stats).queued).toBe(2)
      yield* TestClock.adjust("999 millis")
      expect(a.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(a.fiber)
      expect(a.startedAt).toEqual([1000])
      expect(b.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(b.fiber)
      expect(b.startedAt).toEqual([2000])
      expect((yield* limiter.stats).queued).toBe(0)
    }))

  it.effect("the bucket refills continuously: 30 s later 30 calls pass at once, the 31st waits", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60 })
      for (let i = 0; i < 60; i++) yield* limiter.generate(request, ok, site)
      yield* TestClock.adjust("30 seconds")
      for (let i = 0; i < 30; i++) yield* limiter.generate(request, ok, site)
      const next = yield* timed(limiter)
      yield* flush
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([31_000])
    }))
  it.effect("a call or stream the breaker below refused (CircuitOpen: nothing was sent) gives its request and tokens back", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 2, tokensPerMinute: 1_000 })
      const refused = Effect.fail(new CircuitOpen({ provider: "p", model: "m", route: "r", attempt: 1, message: "open" }))
      for (let i = 0; i < 5; i++) yield* Effect.either(limiter.generate(request, refused, site))
      const stats = yield* limiter.stats
      expect(stats.requestTokens).toBe(2)
      expect(stats.tokenTokens).toBe(1_000)
      // The same for a stream the breaker refused before its first event.
      yield* Effect.either(Stream.runDrain(limiter.stream(request, Stream.fail(new CircuitOpen({ ...site, message: "open" })), site)))
      expect((yield* limiter.stats).requestTokens).toBe(2)
      // A call that reached the provider and failed did spend its request.
      yield* Effect.either(limiter.generate(request, Effect.fail("boom"), site))
      expect((yield* limiter.stats).requestTokens).toBe(1)
    }))
})

describe("RateLimiter — tokens per minute", () => {
  it.effect("a known estimate waits for the deficit to refill", () =>
    Effect.gen(function*() {
      // 600 tokens/min = 10 tokens/s; each request is estimated at 400 tokens and really uses 400.
      const limiter = yield* RateLimiter.make("k", { tokensPerMinute: 600, estimateTokens: () => 400 })
      yield* limiter.generate(request, Effect.succeed(response({ usage: usageOf(400) })), site)
      expect((yield* limiter.stats).tokenTokens).toBe(200)
      const second = yield* timed(limiter)
      yield* TestClock.adjust("19999 millis")
      expect(second.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(second.fiber)
      expect(second.startedAt).toEqual([20_000])
    }))

  it.effect("real usage below the estimate refunds the bucket; above it puts the bucket in debt", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { tokensPerMinute: 600, estimateTokens: () => 400 })
      yield* limiter.generate(request, Effect.succeed(response({ usage: usageOf(100) })), site)
      // 600 − 400 + 300 refunded.
      expect((yield* limiter.stats).tokenTokens).toBe(500)
      // So the next one goes at once (it would wait 20 s without the refund).
      yield* limiter.generate(request, Effect.succeed(response({ usage: usageOf(700) })), site)
      expect(yield* now).toBe(0)
      // 500 − 400 − 300 of debt.
      expect((yield* limiter.stats).tokenTokens).toBe(-200)
      // 400 needed from −200: 60 s at 10/s.
      const third = yield* timed(limiter)
      yield* TestClock.adjust("59999 millis")
      expect(third.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(third.fiber)
      expect(third.startedAt).toEqual([60_000])
    }))

  it.effect("a refund wakes a queued caller at once instead of after its computed wait", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { tokensPerMinute: 600, estimateTokens: () => 400 })
      const gate = yield* Deferred.make<GenerateResponse, string>()
      const first = yield* Effect.fork(limiter.generate(request, gated(gate, { n: 0 }), site))
      const second = yield* timed(limiter) // needs 400, has 200: would wait 20 s
      yield* TestClock.adjust("5 seconds")
      expect(second.startedAt).toEqual([])
      yield* Deferred.succeed(gate, response({ usage: usageOf(100) })) // refunds 300
      yield* Fiber.join(first)
      yield* Fiber.join(second.fiber)
      expect(second.startedAt).toEqual([5000])
    }))

  it.effect("waiters are served in order: a small request does not overtake a large one", () =>
    Effect.gen(function*() {
      // 600 tokens/min = 10/s; the estimate is maxTokens.
      const limiter = yield* RateLimiter.make("k", { tokensPerMinute: 600, estimateTokens: (r) => r.maxTokens })
      yield* limiter.generate({ ...request, maxTokens: 400 }, Effect.succeed(response({ usage: usageOf(400) })), site)
      // Each uses what it was estimated at (no refund to blur the order).
      const large = yield* timed(limiter, { ...request, maxTokens: 500 }, response({ usage: usageOf(500) })) // 300 short: 30 s
      yield* flush
      // Would fit now, but queues behind the large one.
      const small = yield* timed(limiter, { ...request, maxTokens: 100 }, response({ usage: usageOf(100) }))
      yield* TestClock.adjust("40 seconds")
      yield* Fiber.join(large.fiber)
      yield* Fiber.join(small.fiber)
      expect([large.startedAt, small.startedAt]).toEqual([[30_000], [40_000]])
    }))

  it.effect("the default estimate is the prompt estimate plus maxTokens", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { tokensPerMinute: 10_000 })
      const big: GenerateRequest = { ...request, maxTokens: 1000 }
      const gate = yield* Deferred.make<GenerateResponse, string>()
      const fiber = yield* Effect.fork(limiter.generate(big, gated(gate, { n: 0 }), site))
      yield* flush
      expect((yield* limiter.stats).tokenTokens).toBe(10_000 - (estimatePromptTokens(big) + 1000))
      yield* Deferred.succeed(gate, response({ usage: usageOf(50) }))
      yield* Fiber.join(fiber)
      expect((yield* limiter.stats).tokenTokens).toBe(10_000 - 50)
    }))
})

describe("RateLimiter — concurrency", () => {
  it.effect("3 in flight at most; the 4th starts when one finishes", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxConcurrency: 3 })
      const started = { n: 0 }
      const gates = yield* Effect.all(Array.from({ length: 4 }, () => Deferred.make<GenerateResponse, string>()))
      const fibers = yield* Effect.forEach(gates, (gate) => Effect.fork(limiter.generate(request, gated(gate, started), site)))
      yield* flush
      expect(started.n).toBe(3)
      expect(yield* limiter.stats).toMatchObject({ inFlight: 3, queued: 1 })
      yield* Deferred.succeed(gates[1]!, response())
      yield* flush
      expect(started.n).toBe(4)
      expect(yield* limiter.stats).toMatchObject({ inFlight: 3, queued: 0 })
      for (const gate of gates) yield* Deferred.succeed(gate, response())
      yield* Effect.forEach(fibers, Fiber.join)
      expect(yield* limiter.stats).toMatchObject({ inFlight: 0, queued: 0 })
    }))

  it.effect("a slot is released when the call fails and when it is interrupted", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxConcurrency: 1 })
      const started = { n: 0 }
      const failing = yield* Deferred.make<GenerateResponse, string>()
      const hanging = yield* Deferred.make<GenerateResponse, string>()
      const last = yield* Deferred.make<GenerateResponse, string>()
      const f1 = yield* Effect.fork(limiter.generate(request, gated(failing, started), site))
      const f2 = yield* Effect.fork(limiter.generate(request, gated(hanging, started), site))
      const f3 = yield* Effect.fork(limiter.generate(request, gated(last, started), site))
      yield* flush
      expect(started.n).toBe(1)

      yield* Deferred.fail(failing, "boom")
      expect(yield* Effect.flip(Fiber.join(f1))).toBe("boom")
      yield* flush
      expect(started.n).toBe(2)

      yield* Fiber.interrupt(f2)
      yield* flush
      expect(started.n).toBe(3)
      expect((yield* limiter.stats).inFlight).toBe(1)
      yield* Deferred.succeed(last, response())
      yield* Fiber.join(f3)
      expect((yield* limiter.stats).inFlight).toBe(0)
    }))

  it.effect("a caller interrupted while queued leaves the queue and takes nothing", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxConcurrency: 1, requestsPerMinute: 60 })
      const gate = yield* Deferred.make<GenerateResponse, string>()
      const holder = yield* Effect.fork(limiter.generate(request, gated(gate, { n: 0 }), site))
      const waiter = yield* timed(limiter)
      yield* flush
      expect((yield* limiter.stats).queued).toBe(1)
      yield* Fiber.interrupt(waiter.fiber)
      expect(yield* limiter.stats).toMatchObject({ queued: 0, inFlight: 1, requestTokens: 59 })
      yield* Deferred.succeed(gate, response())
      yield* Fiber.join(holder)
      expect(waiter.startedAt).toEqual([])
      expect(yield* limiter.stats).toMatchObject({ queued: 0, inFlight: 0 })
    }))
})

describe("RateLimiter — the queue", () => {
  it.effect("when a block lifts, every queued caller that fits goes at once (calls still in flight)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 600 })
      yield* limiter.observe({ retryAfterMs: 2000, observedAt: 0 })
      const gate = yield* Deferred.make<GenerateResponse, string>()
      const started: Array<number> = []
      const call = Effect.zipRight(Effect.flatMap(now, (t) => Effect.sync(() => started.push(t))), Deferred.await(gate))
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(limiter.generate(request, call, site)))
      yield* flush
      expect((yield* limiter.stats).queued).toBe(3)
      yield* TestClock.adjust("2 seconds")
      yield* flush
      expect(started).toEqual([2000, 2000, 2000])
      expect(yield* limiter.stats).toMatchObject({ queued: 0, inFlight: 3 })
      yield* Deferred.succeed(gate, response())
      yield* Effect.forEach(fibers, Fiber.join)
    }))

  it.effect("when the head of the queue gives up, the next caller takes its place", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", {})
      yield* limiter.observe({ retryAfterMs: 2000, observedAt: 0 })
      const head = yield* timed(limiter)
      yield* flush
      const next = yield* timed(limiter)
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(head.fiber)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(next.fiber)
      expect(head.startedAt).toEqual([])
      expect(next.startedAt).toEqual([2000])
    }))
})

describe("RateLimiter — failing fast", () => {
  it.effect("a full queue fails at once with RateLimited carrying the estimated wait", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60, maxQueue: 2 })
      for (let i = 0; i < 60; i++) yield* limiter.generate(request, ok, site)
      const a = yield* timed(limiter)
      const b = yield* timed(limiter)
      yield* flush
      const error = clientRejection(yield* Effect.flip(limiter.generate(request, ok, { ...site, attempt: 2 })))
      expect(yield* now).toBe(0)
      // Two queued ahead at one request per second: this one would have gone at 3 s.
      expect(error.retryAfterMs).toBe(3000)
      expect(error.attempt).toBe(2)
      expect(error.route).toBe("r")
      expect(isRetryable(error)).toBe(true)
      // The queued ones were not disturbed.
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(a.fiber)
      yield* Fiber.join(b.fiber)
      expect([...a.startedAt, ...b.startedAt]).toEqual([1000, 2000])
    }))

  it.effect("maxQueue 0 never queues", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 1, maxQueue: 0 })
      yield* limiter.generate(request, ok, site)
      const error = clientRejection(yield* Effect.flip(limiter.generate(request, ok, site)))
      expect(error.retryAfterMs).toBe(60_000)
      expect((yield* limiter.stats).queued).toBe(0)
    }))

  it.effect("a wait longer than maxWait fails immediately; a shorter one waits", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60, maxWait: "1500 millis" })
      for (let i = 0; i < 60; i++) yield* limiter.generate(request, ok, site)
      const first = yield* timed(limiter) // 1 s: fits
      yield* flush
      const error = clientRejection(yield* Effect.flip(limiter.generate(request, ok, site))) // 2 s: does not
      expect(yield* now).toBe(0)
      expect(error.retryAfterMs).toBe(2000)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(first.fiber)
      expect(first.startedAt).toEqual([1000])
    }))

  it.effect("the call's Deadline bounds the wait too (RateLimited at once, not DeadlineExceeded later)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60 })
      for (let i = 0; i < 60; i++) yield* limiter.generate(request, ok, site)
      const error = yield* Effect.flip(Deadline.withDeadline(limiter.generate(request, ok, site), "500 millis"))
      expect(error._tag).toBe("RateLimited")
      clientRejection(error)
      expect(yield* now).toBe(0)
    }))

  it.effect("a slot that does not free within maxWait fails the waiter at maxWait", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxConcurrency: 1, maxWait: "5 seconds" })
      const gate = yield* Deferred.make<GenerateResponse, string>()
      const holder = yield* Effect.fork(limiter.generate(request, gated(gate, { n: 0 }), site))
      const waiter = yield* timed(limiter)
      yield* TestClock.adjust("4999 millis")
      expect(waiter.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const exit = yield* Fiber.await(waiter.fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = clientRejection(yield* Effect.flip(exit))
      expect(error.retryAfterMs).toBeUndefined()
      expect(yield* now).toBe(5000)
      expect(waiter.startedAt).toEqual([])
      yield* Deferred.succeed(gate, response())
      yield* Fiber.join(holder)
      expect(yield* limiter.stats).toMatchObject({ queued: 0, inFlight: 0 })
    }))
})

describe("RateLimiter — learning from headers", () => {
  it.effect("a response saying requests remaining 0, reset in 2 s, makes the next call wait 2 s", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", {})
      const snapshot: RateLimitSnapshot = { requests: { limit: 500, remaining: 0, resetAfterMs: 2000 }, observedAt: 0 }
      yield* limiter.generate(request, Effect.succeed(response({ rateLimit: snapshot })), site)
      const next = yield* timed(limiter)
      yield* TestClock.adjust("1999 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([2000])
    }))

  it.effect("the same holds with a configured RPM bucket that our own accounting says is full", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60 })
      const snapshot: RateLimitSnapshot = { requests: { remaining: 0, resetAfterMs: 2000 }, observedAt: 0 }
      yield* limiter.generate(request, Effect.succeed(response({ rateLimit: snapshot })), site)
      expect((yield* limiter.stats).requestTokens).toBe(0)
      const next = yield* timed(limiter)
      yield* TestClock.adjust("1999 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([2000])
    }))

  it.effect("remaining lowers a bucket but never raises it; learnFromHeaders: false ignores headers", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 60 })
      yield* limiter.generate(request, Effect.succeed(response({ rateLimit: { requests: { remaining: 5 }, observedAt: 0 } })), site)
      expect((yield* limiter.stats).requestTokens).toBe(5)
      yield* limiter.generate(request, Effect.succeed(response({ rateLimit: { requests: { remaining: 50 }, observedAt: 0 } })), site)
      expect((yield* limiter.stats).requestTokens).toBe(4)

      const deaf = yield* RateLimiter.make("k2", { requestsPerMinute: 60, learnFromHeaders: false })
      yield* deaf.generate(
        request,
        Effect.succeed(response({ rateLimit: { requests: { remaining: 0, resetAfterMs: 2000 }, observedAt: 0 } })),
        site
      )
      expect((yield* deaf.stats).requestTokens).toBe(59)
      yield* deaf.generate(request, ok, site)
      expect(yield* now).toBe(0)
    }))

  it.effect("an unconfigured tokens window becomes a learned bucket of `limit` per minute", () =>
    Effect.gen(function*() {
      // Provider: 6000 tokens/min (100/s), 50 left. Our next request is estimated at 110 → 600 ms.
      const limiter = yield* RateLimiter.make("k", { estimateTokens: () => 110 })
      const snapshot: RateLimitSnapshot = { tokens: { limit: 6000, remaining: 50, resetAfterMs: 59_500 }, observedAt: 0 }
      yield* limiter.generate(request, Effect.succeed(response({ rateLimit: snapshot, usage: usageOf(110) })), site)
      expect((yield* limiter.stats).tokenTokens).toBe(50)
      const next = yield* timed(limiter)
      yield* TestClock.adjust("599 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([600])
    }))

  it.effect("Anthropic's split windows: input charged up front, output when known; the combined window only blocks", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", {})
      const snapshot: RateLimitSnapshot = {
        requests: { limit: 50, remaining: 49, resetAfterMs: 1200 },
        tokens: { limit: 600, remaining: 100, resetAfterMs: 50_000 },
        inputTokens: { limit: 6000, remaining: 6000, resetAfterMs: 0 },
        outputTokens: { limit: 600, remaining: 100, resetAfterMs: 50_000 },
        observedAt: 0
      }
      yield* limiter.generate(request, Effect.succeed(response({ rateLimit: snapshot })), site)
      // The combined `tokens` window taught no bucket (it is not a total).
      expect((yield* limiter.stats).tokenTokens).toBe(Infinity)
      expect((yield* limiter.stats).requestTokens).toBe(49)
      // 100 output tokens left at 10/s; this call writes 300 → 200 in debt.
      const heavy = response({ usage: { inputTokens: estimatePromptTokens(request), outputTokens: 300, totalTokens: 308 } })
      yield* limiter.generate({ ...request, maxTokens: 4096 }, Effect.succeed(heavy), site)
      expect(yield* now).toBe(0)
      const next = yield* timed(limiter)
      yield* TestClock.adjust("19999 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([20_000])
    }))

  it.effect("observe(snapshot of a RateLimited error) blocks the route until its retry-after", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 1000 })
      const error = new RateLimited({
        ...site,
        status: 429,
        message: "rate limited",
        retryAfterMs: 3000,
        rateLimit: { retryAfterMs: 3000, observedAt: 0 }
      })
      yield* limiter.observe(error.rateLimit!)
      const next = yield* timed(limiter)
      yield* TestClock.adjust("2999 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([3000])
    }))

  it.effect("a provider 429 passing through the limiter teaches it (no snapshot: its retryAfterMs)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", {})
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(1500))] })
      const first = yield* Effect.flip(limiter.generate(request, mock.generate(request), site))
      expect(first._tag).toBe("RateLimited")
      const next = yield* timed(limiter)
      yield* TestClock.adjust("1499 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([1500])
    }))

  it.effect("a block beyond maxWait makes new callers fail fast with the remaining block as retryAfterMs", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxWait: "10 seconds" })
      yield* limiter.observe({ retryAfterMs: 120_000, observedAt: 0 })
      yield* TestClock.adjust("20 seconds")
      const error = clientRejection(yield* Effect.flip(limiter.generate(request, ok, site)))
      expect(error.retryAfterMs).toBe(100_000)
    }))
})

describe("RateLimiter — streams", () => {
  const events = (usage: Usage, rateLimit?: RateLimitSnapshot): Stream.Stream<StreamEvent> =>
    Stream.concat(
      Stream.make<Array<StreamEvent>>({ _tag: "Metadata", ...(rateLimit !== undefined ? { rateLimit } : {}) }),
      Stream.concat(
        Stream.fromEffect(Effect.as(Effect.sleep("1 second"), { _tag: "TextDelta", text: "a" } as const)),
        Stream.fromEffect(Effect.as(Effect.sleep("1 second"), { _tag: "Finish", response: response({ usage }) } as const))
      )
    )

  it.effect("a stream holds its concurrency slot until it ends", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxConcurrency: 1 })
      const streaming = yield* Effect.fork(Stream.runCollect(limiter.stream(request, events(usageOf(10)), site)))
      yield* flush
      expect((yield* limiter.stats).inFlight).toBe(1)
      const next = yield* timed(limiter)
      yield* TestClock.adjust("1999 millis")
      expect(next.startedAt).toEqual([])
      yield* TestClock.adjust("1 millis")
      const collected = yield* Fiber.join(streaming)
      expect(Chunk.size(collected)).toBe(3)
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([2000])
    }))

  it.effect("the slot is released when a stream fails, and when the consumer stops early", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { maxConcurrency: 1 })
      const mock = Mock.make({
        script: [Mock.stream([{ text: "a", delay: "1 second" }], { failWith: Mock.errors.overloaded() })]
      })
      const failed = yield* Effect.fork(Effect.flip(Stream.runCollect(limiter.stream(request, mock.stream(request), site))))
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(failed))._tag).toBe("Overloaded")
      expect((yield* limiter.stats).inFlight).toBe(0)

      const taken = yield* Effect.fork(Stream.runCollect(Stream.take(limiter.stream(request, events(usageOf(10)), site), 1)))
      yield* flush
      expect(Chunk.size(yield* Fiber.join(taken))).toBe(1)
      expect((yield* limiter.stats).inFlight).toBe(0)

      const interrupted = yield* Effect.fork(Stream.runCollect(limiter.stream(request, events(usageOf(10)), site)))
      yield* flush
      expect((yield* limiter.stats).inFlight).toBe(1)
      yield* Fiber.interrupt(interrupted)
      expect((yield* limiter.stats).inFlight).toBe(0)
    }))

  it.effect("capacity is taken before the first pull; usage is corrected from Finish; Metadata headers are learned", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { tokensPerMinute: 600, requestsPerMinute: 60, estimateTokens: () => 400 })
      const stream = limiter.stream(request, events(usageOf(100), { requests: { remaining: 3 }, observedAt: 0 }), site)
      // Building the stream takes nothing.
      expect(yield* limiter.stats).toMatchObject({ requestTokens: 60, tokenTokens: 600 })
      const fiber = yield* Effect.fork(Stream.runCollect(stream))
      yield* flush
      expect(yield* limiter.stats).toMatchObject({ inFlight: 1, requestTokens: 3, tokenTokens: 200 })
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(fiber)
      // 200 + 2 s × 10/s refill + 300 refunded; requests: 3 + 2 s × 1/s.
      expect(yield* limiter.stats).toMatchObject({ inFlight: 0, requestTokens: 5, tokenTokens: 520 })
    }))

  it.effect("a provider 429 ending a stream teaches the limiter too", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", {})
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(1500))] })
      const error = yield* Effect.flip(Stream.runDrain(limiter.stream(request, mock.stream(request), site)))
      expect(error._tag).toBe("RateLimited")
      const next = yield* timed(limiter)
      yield* TestClock.adjust("1499 millis")
      expect(next.fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(next.fiber)
      expect(next.startedAt).toEqual([1500])
    }))

  it.effect("a stream that must wait starts after the wait", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make("k", { requestsPerMinute: 1 })
      yield* limiter.generate(request, ok, site)
      const mock = Mock.make({ script: [Mock.stream(["x"])] })
      const fiber = yield* Effect.fork(Stream.runCollect(limiter.stream(request, mock.stream(request), site)))
      yield* TestClock.adjust("59 seconds")
      expect(mock.calls.length).toBe(0)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(mock.calls.map((call) => call.at)).toEqual([60_000])
    }))
})

describe("RateLimiter — registry", () => {
  it.effect("one limiter per key, shared; the first options win", () =>
    Effect.gen(function*() {
      const limiters = yield* RateLimiter.RateLimiters
      const a = yield* limiters.get("route/m", { requestsPerMinute: 1 })
      const b = yield* limiters.get("route/m", { requestsPerMinute: 1000 })
      const c = yield* limiters.get("route/other", { requestsPerMinute: 1 })
      expect(a).toBe(b)
      expect(a).not.toBe(c)
      yield* a.generate(request, ok, site)
      expect((yield* b.stats).requestTokens).toBe(0)
      expect((yield* c.stats).requestTokens).toBe(1)
    }).pipe(Effect.provide(RateLimiter.layer)))
})

describe("estimatePromptTokens", () => {
  it("counts characters / 4 plus framing, and grows with system, messages and tools", () => {
    const base: GenerateRequest = { model: "m", messages: [{ role: "user", content: "x".repeat(400) }], maxTokens: 10 }
    // 3 reply priming + 4 framing + 100 text.
    expect(estimatePromptTokens(base)).toBe(107)
    expect(estimateRequestTokens(base)).toBe(117)
    const withSystem = { ...base, system: "y".repeat(40) }
    expect(estimatePromptTokens(withSystem)).toBe(107 + 4 + 10)
    const withTools: GenerateRequest = {
      ...base,
      tools: [{ name: "search", description: "find things", parameters: { type: "object", properties: { q: { type: "string" } } } }]
    }
    const toolsJson = JSON.stringify(withTools.tools)
    expect(estimatePromptTokens(withTools)).toBe(107 + Math.ceil(toolsJson.length / 4))
    // Cached per tools array: the same answer twice.
    expect(estimatePromptTokens(withTools)).toBe(estimatePromptTokens(withTools))
    const twoMessages: GenerateRequest = { ...base, messages: [...base.messages, { role: "assistant", content: "" }] }
    expect(estimatePromptTokens(twoMessages)).toBe(111)
    expect(estimatePromptTokens({ model: "m", messages: [], maxTokens: 1 })).toBeGreaterThanOrEqual(1)
  })

  it("is within a factor of two of real usage for plain English", () => {
    // "The quick brown fox jumps over the lazy dog." is 10 tokens in cl100k/o200k; with chat framing ≈ 17.
    const text: GenerateRequest = {
      model: "m",
      messages: [{ role: "user", content: "The quick brown fox jumps over the lazy dog." }],
      maxTokens: 1
    }
    const estimate = estimatePromptTokens(text)
    expect(estimate).toBeGreaterThan(17 / 2)
    expect(estimate).toBeLessThan(17 * 2)
  })
})

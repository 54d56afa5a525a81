import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import type { AttemptRecord, ProviderError } from "../src/Errors.js"
import type { GenerateRequest, StreamEvent } from "../src/Provider.js"
import * as Retry from "../src/Retry.js"
import * as RetryBudget from "../src/RetryBudget.js"
import * as Mock from "../src/testing/MockProvider.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }

/** Runs one logical call through the retry policy against a scripted mock; returns the fiber. */
const start = (mock: Mock.MockProvider, options: Retry.RetryOptions = {}, records?: Array<AttemptRecord>) => {
  const retry = Retry.make(options, {
    route: "r",
    observe: records === undefined ? undefined : (record) => Effect.sync(() => records.push(record))
  })
  return Effect.fork(retry.generate(request, (req) => mock.generate(req)))
}

describe("Retry — actions", () => {
  it.effect("a 429 with retry-after 30 s waits exactly 30 s", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(30_000)), Mock.succeed("done")] })
      const fiber = yield* start(mock, { jitter: "none", base: "1 second" })
      yield* TestClock.adjust("29999 millis")
      expect(mock.calls.length).toBe(1)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const response = yield* Fiber.join(fiber)
      expect(response.text).toBe("done")
      expect(mock.calls.map((c) => c.at)).toEqual([0, 30_000])
    }))

  it.effect("a Retry-After above maxRetryAfter fails fast instead of sleeping", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(120_000)), Mock.succeed("late")] })
      const exit = yield* Effect.exit(Fiber.join(yield* start(mock)))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(mock.calls.length).toBe(1)
      const now = yield* TestClockNow
      expect(now).toBe(0)
    }))

  it.effect("a 529 is not retried when another route exists; one short retry when none does", () =>
    Effect.gen(function*() {
      const withAlternative = Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded()) })
      const error1 = yield* Effect.flip(Fiber.join(yield* start(withAlternative, { hasAlternative: true })))
      expect(error1._tag).toBe("Overloaded")
      expect(withAlternative.calls.length).toBe(1)

      const alone = Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded()) })
      const fiber = yield* start(alone, { maxAttempts: 5 })
      yield* TestClock.adjust("1 minute")
      const error2 = yield* Effect.flip(Fiber.join(fiber))
      expect(error2._tag).toBe("Overloaded")
      expect(error2.attempt).toBe(2)
      expect(alone.calls.length).toBe(2)
    }))

  it.effect.each([
    ["BadRequest", Mock.errors.badRequest()],
    ["ContextLengthExceeded", Mock.errors.contextLength()],
    ["QuotaExhausted", Mock.errors.quotaExhausted()],
    ["Unauthorized", Mock.errors.unauthorized()],
    ["NotFound", Mock.errors.notFound()]
  ] as const)("%s is attempted once", ([tag, error]) =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.fail(error) })
      const failure = yield* Effect.flip(Fiber.join(yield* start(mock, { maxAttempts: 5 })))
      expect(failure._tag).toBe(tag)
      expect(mock.calls.length).toBe(1)
    }))

  it.effect("server errors, timeouts and resets are retried up to maxAttempts, stamping the attempt", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.fail(Mock.errors.serverError(502)), Mock.fail(Mock.errors.timeout("headers")), Mock.fail(Mock.errors.connection())]
      })
      const records: Array<AttemptRecord> = []
      const fiber = yield* start(mock, { maxAttempts: 3 }, records)
      yield* TestClock.adjust("1 minute")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("ConnectionError")
      expect(error.attempt).toBe(3)
      expect(records.map((r) => [r.attempt, r.outcome])).toEqual([[1, "ServerError"], [2, "Timeout"], [3, "ConnectionError"]])
    }))
})

const TestClockNow = Effect.map(TestClock.currentTimeMillis, (n) => n)

describe("Retry — backoff", () => {
  it.effect("full-jitter delays stay within [0, min(cap, base·2^n)] and are reproducible with a seed", () =>
    Effect.gen(function*() {
      const delaysOf = (seed: number) =>
        Effect.gen(function*() {
          const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
          const records: Array<AttemptRecord> = []
          const fiber = yield* start(mock, { maxAttempts: 6, base: "100 millis", cap: "1 second" }, records)
          yield* TestClock.adjust("1 minute")
          yield* Effect.exit(Fiber.join(fiber))
          return records.map((r) => r.delayMs)
        }).pipe(Effect.withRandom(Random.make(seed)))
      const a = yield* delaysOf(42)
      const b = yield* delaysOf(42)
      const c = yield* delaysOf(7)
      expect(a).toEqual(b)
      expect(a).not.toEqual(c)
      expect(a[0]).toBe(0)
      a.slice(1).forEach((delay, retry) => {
        expect(delay).toBeGreaterThanOrEqual(0)
        expect(delay).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** retry))
      })
    }))

  it.effect.each(["full", "equal", "decorrelated", "none"] as const)("%s jitter respects the cap", (jitter) =>
    Effect.gen(function*() {
      for (let retry = 0; retry < 12; retry++) {
        const delay = yield* Retry.backoffDelay(jitter, retry, 100, 2000, 1500)
        expect(delay).toBeGreaterThanOrEqual(0)
        expect(delay).toBeLessThanOrEqual(2000)
        if (jitter === "equal") expect(delay).toBeGreaterThanOrEqual(Math.min(2000, 100 * 2 ** retry) / 2)
      }
    }).pipe(Effect.withRandom(Random.make(1))))

  it.effect("the Schedule form stops after maxAttempts - 1 recurrences", () =>
    Effect.gen(function*() {
      let runs = 0
      const fiber = yield* Effect.fork(Effect.retry(Effect.suspend(() => {
        runs++
        return Effect.fail("nope")
      }), Retry.schedule({ maxAttempts: 4, jitter: "none", base: "10 millis" })))
      yield* TestClock.adjust("1 second")
      yield* Effect.exit(Fiber.join(fiber))
      expect(runs).toBe(4)
    }))
})

describe("Retry — deadline", () => {
  it.effect("no sleep crosses the deadline: the failure surfaces while there is time to reroute", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
      const retry = Retry.make({ maxAttempts: 10, jitter: "none", base: "2 seconds", cap: "1 minute" })
      const fiber = yield* Effect.fork(Deadline.withDeadline(retry.generate(request, (req) => mock.generate(req)), "5 seconds"))
      yield* TestClock.adjust("10 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("ServerError")
      expect(mock.calls.map((c) => c.at)).toEqual([0, 2000])
    }))

  it.effect("a call still running at the deadline is interrupted with DeadlineExceeded", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.hang })
      const retry = Retry.make()
      const fiber = yield* Effect.fork(Deadline.withDeadline(retry.generate(request, (req) => mock.generate(req)), "3 seconds"))
      yield* TestClock.adjust("3 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("DeadlineExceeded")
    }))

  it.effect("a deadline passed per call bounds the sleeps like the fiber's; the tighter one wins", () =>
    Effect.gen(function*() {
      const failing = () => Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
      const retry = Retry.make({ maxAttempts: 5, jitter: "none", base: "2 seconds" })
      // Per call: 5 s from now. Attempt 1 at 0, sleep 2 s, attempt 2 at 2 s; the next sleep (4 s) would
      // end after the deadline, so the failure surfaces at 2 s.
      const perCall = failing()
      const first = yield* Effect.fork(retry.generate(request, (req) => perCall.generate(req), { deadline: 5_000 }))
      yield* TestClock.adjust("10 seconds")
      expect((yield* Effect.flip(Fiber.join(first)))._tag).toBe("ServerError")
      expect(perCall.calls.map((c) => c.at)).toEqual([0, 2_000])
      // The fiber's deadline (2 s from now) is tighter than the one passed (1 minute): no retry fits.
      const enclosed = failing()
      const now = yield* TestClock.currentTimeMillis
      const second = yield* Effect.fork(
        Deadline.withDeadline(retry.generate(request, (req) => enclosed.generate(req), { deadline: now + 60_000 }), "2 seconds")
      )
      yield* TestClock.adjust("10 seconds")
      expect((yield* Effect.flip(Fiber.join(second)))._tag).toBe("ServerError")
      expect(enclosed.calls.map((c) => c.at - now)).toEqual([0])
    }))

  it.effect("a per-call observer hears every attempt before the policy's own", () =>
    Effect.gen(function*() {
      const heard: Array<string> = []
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.serverError())], otherwise: Mock.succeed("ok") })
      const retry = Retry.make({ jitter: "none", base: "1 second" }, {
        observe: (record) => Effect.sync(() => heard.push(`policy:${record.attempt}:${record.outcome}`))
      })
      const fiber = yield* Effect.fork(retry.generate(request, (req) => mock.generate(req), {
        observe: (record) => Effect.sync(() => heard.push(`call:${record.attempt}:${record.outcome}`))
      }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(heard).toEqual(["call:1:ServerError", "policy:1:ServerError", "call:2:success", "policy:2:success"])
    }))

  it.effect("nested deadlines only tighten", () =>
    Effect.gen(function*() {
      const left = yield* Deadline.withDeadline(Deadline.withDeadline(Deadline.remaining, "10 seconds"), "2 seconds")
      expect(left).toBe(2000)
      expect(yield* Deadline.remaining).toBe(Number.POSITIVE_INFINITY)
    }))
})

describe("Retry — streams", () => {
  const finish: StreamEvent = {
    _tag: "Finish",
    response: { provider: "p", model: "m", text: "ok", toolCalls: [], finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } }
  }
  /** Attempt `n` of a scripted stream: a finalizer that logs, events, then a failure or the end. */
  const scripted = (log: Array<string>, script: ReadonlyArray<{ readonly events: ReadonlyArray<StreamEvent>; readonly fail?: boolean }>) =>
  (_request: GenerateRequest, n: number): Stream.Stream<StreamEvent, ProviderError> =>
    Stream.suspend(() => {
      log.push(`open ${n}`)
      const step = script[n - 1]!
      const events = Stream.fromIterable(step.events)
      return Stream.ensuring(
        step.fail === true ? Stream.concat(events, Stream.fail(Mock.errors.serverError()({ provider: "p", model: "m", route: "r", attempt: n }))) : events,
        Effect.sync(() => log.push(`closed ${n}`))
      )
    })

  it.effect("a failure before content closes that attempt before the backoff, then streams the next one", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const retry = Retry.make({ jitter: "none", base: "1 second" })
      const attempt = scripted(log, [{ events: [{ _tag: "Metadata" }], fail: true }, { events: [{ _tag: "TextDelta", text: "hi" }, finish] }])
      const fiber = yield* Effect.fork(Stream.runCollect(retry.stream(request, attempt)))
      yield* TestClock.adjust("999 millis")
      expect(log).toEqual(["open 1", "closed 1"])
      yield* TestClock.adjust("1 millis")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(events.map((e) => e._tag)).toEqual(["Metadata", "TextDelta", "Finish"])
      expect(log).toEqual(["open 1", "closed 1", "open 2", "closed 2"])
    }))

  it.effect("a failure after content is not retried: StreamInterrupted with the partial text", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const retry = Retry.make({ jitter: "none", base: "1 second" })
      const attempt = scripted(log, [{ events: [{ _tag: "TextDelta", text: "half an " }], fail: true }])
      const error = yield* Effect.flip(Stream.runDrain(retry.stream(request, attempt)))
      expect(error._tag).toBe("StreamInterrupted")
      expect(error._tag === "StreamInterrupted" && error.partialText).toBe("half an ")
      expect(log).toEqual(["open 1", "closed 1"])
    }))

  it.effect("a consumer that stops early closes the attempt", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const retry = Retry.make()
      const attempt = scripted(log, [{ events: [{ _tag: "TextDelta", text: "a" }, { _tag: "TextDelta", text: "b" }, finish] }])
      const first = yield* Stream.runCollect(Stream.take(retry.stream(request, attempt), 1))
      expect(Chunk.size(first)).toBe(1)
      expect(log).toEqual(["open 1", "closed 1"])
    }))
})

describe("Retry — idempotency", () => {
  it.effect("every attempt of one call carries the same key; a caller's key is kept", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.serverError()), Mock.succeed("ok")] })
      const fiber = yield* start(mock)
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      const keys = mock.calls.map((c) => c.request.idempotencyKey)
      expect(keys[0]).toMatch(/^llmr-[0-9a-f]{24}$/)
      expect(keys[1]).toBe(keys[0])

      const own = Mock.make()
      yield* Retry.make().generate({ ...request, idempotencyKey: "mine" }, (req) => own.generate(req))
      expect(own.calls[0]!.request.idempotencyKey).toBe("mine")
    }))
})

describe("RetryBudget", () => {
  it.effect("1,000 calls against a route that always fails make at most 1,000 + 20% + the reserve attempts", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
      const budget = RetryBudget.make()
      const retry = Retry.make({ maxAttempts: 3, base: "1 millis", cap: "1 millis" }, { budget })
      const fibers = yield* Effect.forEach(
        Array.from({ length: 1000 }),
        () => Effect.fork(retry.generate(request, (req) => mock.generate(req))),
        { concurrency: "unbounded" }
      )
      yield* TestClock.adjust("100 millis")
      const errors = yield* Effect.forEach(fibers, (fiber) => Effect.flip(Fiber.join(fiber)))
      // Without the budget: 3,000 attempts. With it: retries ≤ 0.2 · 1000 + 10/s · 10 s.
      expect(mock.calls.length).toBeLessThanOrEqual(1000 + 200 + 100)
      expect(mock.calls.length).toBeGreaterThanOrEqual(1000 + 200)
      const exhausted = errors.filter((e) => e._tag === "RetryBudgetExhausted")
      expect(exhausted.length).toBeGreaterThan(0)
      const first = exhausted[0]!
      if (first._tag === "RetryBudgetExhausted") expect(first.lastError._tag).toBe("ServerError")
    }))

  it.effect("old traffic stops counting after the window", () =>
    Effect.gen(function*() {
      const budget = RetryBudget.make({ ratio: 0.5, minPerSecond: 0, window: "10 seconds" })
      for (let i = 0; i < 10; i++) yield* budget.deposit
      expect(yield* budget.available).toBe(5)
      expect(yield* budget.withdraw).toBe(true)
      expect(yield* budget.available).toBe(4)
      yield* TestClock.adjust("11 seconds")
      expect(yield* budget.available).toBe(0)
      expect(yield* budget.withdraw).toBe(false)
    }))
})

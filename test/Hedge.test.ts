import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Hedge from "../src/Hedge.js"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest, StreamEvent } from "../src/Provider.js"
import * as RetryBudget from "../src/RetryBudget.js"
import * as Mock from "../src/testing/MockProvider.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }

/** A mock call that counts its interruptions. */
const watched = (mock: Mock.MockProvider, interrupted: { count: number }) =>
  Effect.onInterrupt(mock.generate(request), () => Effect.sync(() => void interrupted.count++))

const textOf = (events: ReadonlyArray<StreamEvent>) =>
  events.flatMap((event) => (event._tag === "TextDelta" ? [event.text] : [])).join("")

describe("Hedge — generate", () => {
  it.effect("starts a second attempt after the delay; the first success wins and the loser is interrupted", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.succeed("slow", { delay: "10 seconds" }), Mock.succeed("fast", { delay: "1 second" })] })
      const interrupted = { count: 0 }
      const hedge = Hedge.make({ delay: "2 seconds" })
      const fiber = yield* Effect.fork(hedge.generate(watched(mock, interrupted), watched(mock, interrupted)))
      yield* TestClock.adjust("1999 millis")
      expect(mock.calls.length).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(mock.calls.map((c) => c.at)).toEqual([0, 2000])
      yield* TestClock.adjust("999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const response = yield* Fiber.join(fiber)
      expect(response.text).toBe("fast")
      expect(interrupted.count).toBe(1)
      expect(yield* hedge.stats).toMatchObject({ started: 1, won: 1, skipped: 0 })
    }))

  it.effect("no second attempt when the first answers before the delay", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.succeed("ok", { delay: "1 second" }) })
      const hedge = Hedge.make({ delay: "2 seconds" })
      const fiber = yield* Effect.fork(hedge.generate(mock.generate(request), mock.generate(request)))
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(fiber)).text).toBe("ok")
      expect(mock.calls.length).toBe(1)
      expect((yield* hedge.stats).started).toBe(0)
    }))

  it.effect("a failure before the delay surfaces at once (the retry policy decides), without hedging", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.serverError(), { delay: "500 millis" })] })
      const hedge = Hedge.make({ delay: "2 seconds" })
      const fiber = yield* Effect.fork(hedge.generate(mock.generate(request), mock.generate(request)))
      yield* TestClock.adjust("500 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("ServerError")
      expect(mock.calls.length).toBe(1)
    }))

  it.effect("once both run, a failure waits for the other; when both fail, the first attempt's failure surfaces", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.fail(Mock.errors.overloaded(), { delay: "3 seconds" }), Mock.fail(Mock.errors.serverError(), { delay: "5 seconds" })]
      })
      const hedge = Hedge.make({ delay: "1 second" })
      const fiber = yield* Effect.fork(hedge.generate(mock.generate(request), mock.generate(request)))
      yield* TestClock.adjust("3 seconds")
      expect(fiber.unsafePoll()).toBeNull() // the first failed at 3 s; the second still runs
      yield* TestClock.adjust("3 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("Overloaded")
    }))

  it.effect("is paid from the retry budget: with the budget spent, the call keeps waiting for the first attempt", () =>
    Effect.gen(function*() {
      const budget = RetryBudget.make({ ratio: 0, minPerSecond: 0 })
      const mock = Mock.make({ otherwise: Mock.succeed("only", { delay: "5 seconds" }) })
      const hedge = Hedge.make({ delay: "1 second" }, { budget })
      const fiber = yield* Effect.fork(hedge.generate(mock.generate(request), mock.generate(request)))
      yield* TestClock.adjust("5 seconds")
      expect((yield* Fiber.join(fiber)).text).toBe("only")
      expect(mock.calls.length).toBe(1)
      expect(yield* hedge.stats).toMatchObject({ started: 0, skipped: 1 })
    }))

  it.effect("the adaptive delay is the p95 of observed latencies, within [minDelay, maxDelay], initialDelay before minSamples", () =>
    Effect.gen(function*() {
      const hedge = Hedge.make({ minSamples: 20, initialDelay: "3 seconds", minDelay: "100 millis", maxDelay: "10 seconds" })
      expect((yield* hedge.stats).delayMs).toBe(3000)
      // 100 latencies 10, 20, …, 1000 ms: the p95 is 950 ms.
      for (let i = 1; i <= 100; i++) yield* hedge.record(i * 10)
      expect((yield* hedge.stats).delayMs).toBe(950)
      for (let i = 0; i < 200; i++) yield* hedge.record(1)
      expect((yield* hedge.stats).delayMs).toBe(100)
      for (let i = 0; i < 200; i++) yield* hedge.record(60_000)
      expect((yield* hedge.stats).delayMs).toBe(10_000)
    }))

  it.effect("hedges with a different effect (a fallback chain's next route)", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ name: "primary", otherwise: Mock.succeed("primary", { delay: "30 seconds" }) })
      const secondary = Mock.make({ name: "secondary", otherwise: Mock.succeed("secondary", { delay: "1 second" }) })
      const hedge = Hedge.make({ delay: "2 seconds" })
      const fiber = yield* Effect.fork(hedge.generate(primary.generate(request), secondary.generate(request)))
      yield* TestClock.adjust("3 seconds")
      const response = yield* Fiber.join(fiber)
      expect([response.provider, response.text]).toEqual(["secondary", "secondary"])
    }))
})

describe("Hedge — stream", () => {
  it.effect("the first attempt to produce content wins; a metadata event does not count; the loser is discarded unseen", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [
          Mock.stream([{ text: "slow answer", delay: "10 seconds" }]), // metadata at once, content late
          Mock.stream(["fast ", "answer"], { headersDelay: "1 second" })
        ]
      })
      let firstFinalized = 0
      const primary = Stream.ensuring(mock.stream(request), Effect.sync(() => void firstFinalized++))
      const hedge = Hedge.make({ delay: "2 seconds" })
      const fiber = yield* Effect.fork(Stream.runCollect(hedge.stream(primary, mock.stream(request))))
      yield* TestClock.adjust("2 seconds")
      expect(mock.calls.map((c) => c.at)).toEqual([0, 2000])
      yield* TestClock.adjust("1 second")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(events.map((e) => e._tag)).toEqual(["Metadata", "TextDelta", "TextDelta", "Finish"])
      expect(textOf(events)).toBe("fast answer")
      expect(firstFinalized).toBe(1)
      expect((yield* hedge.stats).won).toBe(1)
    }))

  it.effect("no hedge when content arrives before the delay", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.stream([{ text: "a", delay: "1 second" }, { text: "b", delay: "5 seconds" }]) })
      const hedge = Hedge.make({ delay: "2 seconds" })
      const fiber = yield* Effect.fork(Stream.runCollect(hedge.stream(mock.stream(request), mock.stream(request))))
      yield* TestClock.adjust("10 seconds")
      expect(textOf(Chunk.toReadonlyArray(yield* Fiber.join(fiber)))).toBe("ab")
      expect(mock.calls.length).toBe(1)
    }))

  it.effect("a second attempt that fails leaves the first one running", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.stream([{ text: "late but fine", delay: "5 seconds" }]), Mock.fail(Mock.errors.serverError())]
      })
      const hedge = Hedge.make({ delay: "1 second" })
      const fiber = yield* Effect.fork(Stream.runCollect(hedge.stream(mock.stream(request), mock.stream(request))))
      yield* TestClock.adjust("5 seconds")
      expect(textOf(Chunk.toReadonlyArray(yield* Fiber.join(fiber)))).toBe("late but fine")
    }))
})

describe("Hedge — inside Policy", () => {
  const State = Layer.fresh(Policy.layerState)

  it.effect("off by default; with `hedge`, a slow attempt is hedged on the same route and the retry budget pays", () =>
    Effect.gen(function*() {
      const plain = Mock.make({ otherwise: Mock.succeed("slow", { delay: "10 seconds" }) })
      const unhedged = yield* Policy.apply(Policy.make({}), plain, "plain")
      const first = yield* Effect.fork(unhedged.generate(request))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(first)
      expect(plain.calls.length).toBe(1)

      const mock = Mock.make({ script: [Mock.succeed("slow", { delay: "10 seconds" }), Mock.succeed("hedged", { delay: "1 second" })] })
      const budget = yield* (yield* RetryBudget.RetryBudgets).get("hedged", { ratio: 0.2, minPerSecond: 1 })
      const before = yield* budget.available
      const provider = yield* Policy.apply(Policy.make({ hedge: { delay: "3 seconds" } }), mock, "hedged")
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("4 seconds")
      const response = yield* Fiber.join(fiber)
      expect(response.text).toBe("hedged")
      expect(mock.calls.map((c) => c.at)).toEqual([10_000, 13_000])
      // Both attempts carry the call's idempotency key (a duplicate the provider can recognise).
      expect(mock.calls[1]!.request.idempotencyKey).toBe(mock.calls[0]!.request.idempotencyKey)
      // One deposit (the call, +0.2) and one withdrawal (the hedge, −1).
      expect(yield* budget.available).toBe(Math.floor(before + 0.2 - 1))
    }).pipe(Effect.provide(State)))

  it.effect("streams are hedged on first content", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.stream([{ text: "slow", delay: "20 seconds" }]), Mock.stream(["quick"])]
      })
      const provider = yield* Policy.apply(Policy.make({ hedge: { delay: "2 seconds" } }), mock, "hedged-stream")
      const fiber = yield* Effect.fork(Stream.runCollect(provider.stream(request)))
      yield* TestClock.adjust("2 seconds")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(textOf(events)).toBe("quick")
      expect(mock.calls.length).toBe(2)
    }).pipe(Effect.provide(State)))
})

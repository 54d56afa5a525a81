import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import type { GenerateRequest } from "../src/Provider.js"
import * as Retry from "../src/Retry.js"
import * as Mock from "../src/testing/MockProvider.js"
import * as Timeouts from "../src/Timeouts.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const site = { provider: "mock", model: "m", route: "r", attempt: 1 }

const runStream = (mock: Mock.MockProvider, options: Timeouts.TimeoutOptions) =>
  Effect.fork(Stream.runCollect(Timeouts.make(options).stream(mock.stream(request), site)))

describe("Timeouts — streams", () => {
  it.effect("first-token fires when content is late even though a metadata event arrived", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream([{ text: "late", delay: "10 seconds" }])] })
      const fiber = yield* runStream(mock, { firstToken: "5 seconds" })
      yield* TestClock.adjust("4999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("Timeout")
      if (error._tag === "Timeout") {
        expect(error.phase).toBe("first-token")
        expect(error.timeoutMs).toBe(5000)
      }
    }))

  it.effect("idle fires on a mid-stream stall, measured from the last event", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.stream([{ text: "a", delay: "1 second" }, { text: "b", delay: "3 seconds" }, { text: "c", delay: "30 seconds" }])]
      })
      const fiber = yield* runStream(mock, { idle: "10 seconds" })
      yield* TestClock.adjust("13999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag === "Timeout" && error.phase).toBe("idle")
    }))

  it.effect("headers fires when the response does not start", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream(["x"], { headersDelay: "1 minute" })] })
      const fiber = yield* runStream(mock, { headers: "30 seconds" })
      yield* TestClock.adjust("30 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag === "Timeout" && error.phase).toBe("headers")
    }))

  it.effect("attempt bounds the whole stream even while events keep flowing", () =>
    Effect.gen(function*() {
      const chunks = Array.from({ length: 20 }, () => ({ text: "x", delay: "1 second" as const }))
      const mock = Mock.make({ script: [Mock.stream(chunks)] })
      const fiber = yield* runStream(mock, { attempt: "10500 millis", idle: "5 seconds" })
      yield* TestClock.adjust("30 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag === "Timeout" && error.phase).toBe("attempt")
    }))

  it.effect("a healthy stream passes every event through untouched", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream([{ text: "a", delay: "2 seconds" }, { text: "b", delay: "2 seconds" }])] })
      const fiber = yield* runStream(mock, { idle: "3 seconds", firstToken: "3 seconds" })
      yield* TestClock.adjust("10 seconds")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(events.map((e) => e._tag)).toEqual(["Metadata", "TextDelta", "TextDelta", "Finish"])
    }))
})

describe("Timeouts — slow consumers", () => {
  it.effect("a consumer slower than the provider does not make the provider look idle", () =>
    Effect.gen(function*() {
      const chunks = Array.from({ length: 40 }, () => ({ text: "x", delay: "100 millis" as const }))
      const mock = Mock.make({ script: [Mock.stream(chunks)] })
      const slowConsumer = Stream.mapEffect(
        Timeouts.make({ idle: "1 second" }).stream(mock.stream(request), site),
        (event) => Effect.as(Effect.sleep("2 seconds"), event)
      )
      const fiber = yield* Effect.fork(Stream.runCollect(slowConsumer))
      yield* TestClock.adjust("200 seconds")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(events.filter((e) => e._tag === "TextDelta").length).toBe(40)
    }))

  it.effect("while the provider itself stalls, idle still fires", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream(["a", { text: "b", delay: "10 seconds" }])] })
      const fiber = yield* Effect.fork(Stream.runCollect(Timeouts.make({ idle: "1 second" }).stream(mock.stream(request), site)))
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag === "Timeout" && error.phase).toBe("idle")
    }))
})

describe("Timeouts — non-streamed attempts", () => {
  it.effect("attempt fires on a call that takes too long", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.succeed("slow", { delay: "2 minutes" })] })
      const fiber = yield* Effect.fork(Timeouts.make({ attempt: "1 minute" }).generate(mock.generate(request), site))
      yield* TestClock.adjust("1 minute")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag === "Timeout" && error.phase).toBe("attempt")
    }))
})

describe("Timeouts with Retry on streams", () => {
  it.effect("a stream that fails before content is retried transparently", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.stream([{ text: "never", delay: "1 minute" }]), Mock.stream(["fresh ", "answer"])]
      })
      const timeouts = Timeouts.make({ firstToken: "5 seconds" })
      const retry = Retry.make({ jitter: "none", base: "1 second" })
      const fiber = yield* Effect.fork(Stream.runCollect(retry.stream(request, (req, attempt) => timeouts.stream(mock.stream(req), { ...site, attempt }))))
      yield* TestClock.adjust("1 minute")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      const finish = events[events.length - 1]!
      expect(finish._tag === "Finish" && finish.response.text).toBe("fresh answer")
      expect(mock.calls.map((c) => c.at)).toEqual([0, 6000])
    }))

  it.effect("a stream that stalls after partial output fails with StreamInterrupted carrying the partial text", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream(["Partial ", { text: "never", delay: "1 minute" }])] })
      const timeouts = Timeouts.make({ idle: "5 seconds" })
      const retry = Retry.make()
      const fiber = yield* Effect.fork(Stream.runCollect(retry.stream(request, (req, attempt) => timeouts.stream(mock.stream(req), { ...site, attempt }))))
      yield* TestClock.adjust("1 minute")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("StreamInterrupted")
      if (error._tag === "StreamInterrupted") {
        expect(error.partialText).toBe("Partial ")
        expect(error.receivedContent).toBe(true)
        expect(error.message).toContain("Timeout")
      }
      expect(mock.calls.length).toBe(1)
    }))

  it.effect("a stream deadline bounds consumption, not only creation", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream([{ text: "a", delay: "1 second" }, { text: "b", delay: "10 seconds" }])] })
      const fiber = yield* Effect.fork(Stream.runCollect(Deadline.withDeadlineStream(mock.stream(request), "5 seconds")))
      yield* TestClock.adjust("5 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("DeadlineExceeded")
    }))
})

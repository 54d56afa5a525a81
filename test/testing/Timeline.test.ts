/**
 * Timeline: exact attempt timelines (times, routes, outcomes) under TestClock, for pipelines built
 * from the library's own policies over MockProvider and ChaosProvider.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest } from "../../src/Provider.js"
import * as ChaosProvider from "../../src/testing/ChaosProvider.js"
import * as Mock from "../../src/testing/MockProvider.js"
import * as Timeline from "../../src/testing/Timeline.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 32 }
const Env = Layer.mergeAll(Policy.layerState, DegradedMode.layer)

describe("Timeline.run + recorder with the library's policies", () => {
  it.effect("a 429 with Retry-After 1.5 s behind 200 ms of latency: the retry starts at exactly 1 700 ms", () =>
    Effect.gen(function*() {
      const recorder = yield* Timeline.make
      const chaos = yield* ChaosProvider.make({
        api: "anthropic",
        scenario: {
          default: {
            latency: { kind: "fixed", ms: 200 },
            script: [{ kind: "rate_limit", retryAfterMs: 1_500 }]
          }
        }
      })
      const guarded = yield* Policy.apply(
        { retry: { maxAttempts: 3, jitter: "none" }, breaker: false },
        recorder.wrap("primary", chaos),
        "primary"
      )
      const run = yield* Timeline.run(guarded.generate({ ...request, model: "claude-haiku-4-5" }))
      expect(Exit.isSuccess(run.exit)).toBe(true)
      expect(run.elapsedMs).toBe(1_900)
      expect(Timeline.format(yield* recorder.entries, { durations: true, status: true })).toEqual([
        "0ms primary#1 RateLimited 429 (200ms)",
        "1700ms primary#2 success (200ms)"
      ])
    }).pipe(Effect.provide(Env)))

  it.effect("a stream that stalls after its first token is cut by the idle bound at 5 s and not retried", () =>
    Effect.gen(function*() {
      const recorder = yield* Timeline.make
      const chaos = yield* ChaosProvider.make({
        scenario: { default: { script: [{ kind: "stall_mid_stream", afterDeltas: 1 }], content: { kind: "text", text: "a b" } } }
      })
      const guarded = yield* Policy.apply(
        { retry: { maxAttempts: 2, jitter: "none", base: "1 second" }, breaker: false, timeouts: { idle: "5 seconds" } },
        recorder.wrap("primary", chaos),
        "primary"
      )
      const run = yield* Timeline.run(Stream.runDrain(guarded.stream({ ...request, model: "gpt-4o-mini" })))
      const entries = yield* recorder.entries
      const formatted = Timeline.format(entries)
      // The first attempt delivered a token, so it is not transparently retried: the idle bound cuts it at
      // exactly 5 s, the caller gets StreamInterrupted with the partial text, and no second attempt starts.
      expect(formatted[0]).toBe("0ms primary#1 interrupted")
      expect(entries[0]?.endAt).toBe(5_000)
      expect(Exit.isFailure(run.exit)).toBe(true)
      expect(formatted).toHaveLength(1)
      expect(run.elapsedMs).toBe(5_000)
      const failure = Exit.isFailure(run.exit) ? Cause.failureOption(run.exit.cause) : Option.none()
      expect(Option.isSome(failure) && failure.value._tag).toBe("StreamInterrupted")
      if (Option.isSome(failure) && failure.value._tag === "StreamInterrupted") {
        expect(failure.value.partialText).toBe("a")
        expect(failure.value.message).toContain("no stream event within 5000 ms")
      }
    }).pipe(Effect.provide(Env)))

  it.effect("a fallback chain: the overloaded primary is rerouted at once, the fallback answers", () =>
    Effect.gen(function*() {
      const recorder = yield* Timeline.make
      const primary = yield* ChaosProvider.make({
        api: "anthropic",
        scenario: { default: { latency: { kind: "fixed", ms: 50 }, script: [{ kind: "overloaded" }] } }
      })
      const fallback = Mock.make({ name: "fallback", script: [Mock.succeed("from the fallback", { delay: "300 millis" })] })
      const chain = yield* Fallback.make({
        routes: [
          { name: "primary", provider: recorder.wrap("primary", primary), model: "claude-haiku-4-5", policy: { breaker: false } },
          { name: "fallback", provider: recorder.wrap("fallback", fallback), model: "gpt-4o-mini", policy: { breaker: false } }
        ]
      })
      const run = yield* Timeline.run(chain.generate({ messages: request.messages, maxTokens: 32 }))
      expect(Exit.isSuccess(run.exit) && run.exit.value.value).toBe("from the fallback")
      if (Exit.isSuccess(run.exit)) expect(run.exit.value.attempts.map((a) => `${a.route}:${a.outcome}`)).toEqual(["primary:Overloaded", "fallback:success"])
      expect(run.elapsedMs).toBe(350)
      expect(Timeline.format(yield* recorder.entries, { durations: true })).toEqual([
        "0ms primary#1 Overloaded (50ms)",
        "50ms fallback#1 success (300ms)"
      ])
    }).pipe(Effect.provide(Env)))
})

describe("Timeline recorder", () => {
  it.effect("records details, stream outcomes, pending calls, and clears", () =>
    Effect.gen(function*() {
      const recorder = yield* Timeline.make
      const mock = recorder.wrap("r", Mock.make({
        script: [
          Mock.fail(Mock.errors.timeout("first-token"), { delay: "2 seconds" }),
          Mock.stream(["a", "b"]),
          Mock.stream(["a", { text: "b", delay: "1 second" }]),
          Mock.hang
        ]
      }))
      yield* Timeline.run(Effect.either(mock.generate(request)))
      yield* Timeline.run(Stream.runDrain(mock.stream(request)))
      // The consumer stops after the first text delta: the attempt was cut before its Finish.
      yield* Timeline.run(Stream.runDrain(Stream.take(Stream.filter(mock.stream(request), (e) => e._tag === "TextDelta"), 1)))
      const pending = yield* Effect.fork(mock.generate(request))
      yield* Effect.yieldNow()
      expect(Timeline.format(yield* recorder.entries)).toEqual([
        "0ms r#1 Timeout{first-token}",
        "2000ms r#2 success",
        "2000ms r#3 interrupted",
        "2000ms r#4 pending"
      ])
      const entries = yield* recorder.entries
      expect(entries.map((e) => e.kind)).toEqual(["generate", "stream", "stream", "generate"])
      expect(entries[0]?.endAt).toBe(2_000)
      expect(entries[3]?.endAt).toBeUndefined()
      yield* recorder.clear
      expect(yield* recorder.entries).toEqual([])
      void pending
    }))
})

describe("Timeline.run", () => {
  it.effect("drives every sleep to its exact instant and reports the virtual time", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      const program = Effect.all([
        Effect.delay(Effect.sync(() => order.push("b")), "2 seconds"),
        Effect.delay(Effect.sync(() => order.push("a")), "1 second"),
        Effect.delay(Effect.sync(() => order.push("c")), "1 hour")
      ], { concurrency: "unbounded" })
      const run = yield* Timeline.run(program)
      expect(Exit.isSuccess(run.exit)).toBe(true)
      expect(order).toEqual(["a", "b", "c"])
      expect(run.elapsedMs).toBe(3_600_000)
      expect(run.timedOut).toBe(false)
    }))

  it.effect("interrupts a program that outlives the limit", () =>
    Effect.gen(function*() {
      const run = yield* Timeline.run(Effect.sleep("2 hours"), { limit: "1 hour" })
      expect(run.timedOut).toBe(true)
      expect(Exit.isInterrupted(run.exit)).toBe(true)
      expect(run.elapsedMs).toBe(3_600_000)
    }))

  it.effect("reports a program blocked on something no clock can deliver", () =>
    Effect.gen(function*() {
      const run = yield* Timeline.run(Effect.never, { idleTurns: 3 })
      expect(run.blocked).toBe(true)
      expect(Exit.isInterrupted(run.exit)).toBe(true)
    }))

  it.live("needs the TestClock, and says so", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Timeline.run(Effect.void))
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("Timeline.run needs the TestClock")
    }))
})

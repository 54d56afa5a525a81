import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import * as Deadline from "../src/Deadline.js"
import type { AttemptRecord } from "../src/Errors.js"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest, ProviderShape } from "../src/Provider.js"
import * as Mock from "../src/testing/MockProvider.js"

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const State = Layer.fresh(Policy.layerState)

/** The value of a counter in the global registry, found by name and tags (0 when absent). */
const counter = (name: string, tags: Record<string, string>) =>
  Effect.map(Metric.snapshot, (pairs) => {
    for (const pair of pairs) {
      if (pair.metricKey.name !== name) continue
      const labels = new Map(pair.metricKey.tags.map((label) => [label.key, label.value]))
      if (!Object.entries(tags).every(([k, v]) => labels.get(k) === v)) continue
      if (labels.size !== Object.keys(tags).length) continue
      const state = pair.metricState as unknown as { readonly count: number }
      return state.count
    }
    return 0
  })

/** A tracer that keeps every span it starts (Effect's own spans, so attributes are inspectable). */
const recordingTracer = () => {
  const native = Effect.runSync(Effect.tracer)
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = native.span(name, parent, context, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  return { tracer, spans }
}

describe("Policy — deadline", () => {
  it.effect("fires exactly at the deadline through the attempt's own timer (no timer of its own)", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.hang })
      const provider = yield* Policy.apply(Policy.make({ deadline: "3 seconds" }), mock, "deadline")
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("2999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      // One sleeping timer: the attempt's, clipped to the deadline (not one for the deadline and one
      // for the 10-minute attempt timeout).
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([3000])
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("DeadlineExceeded")
    }).pipe(Effect.provide(State)))

  it.effect("is enforced even with phase timeouts off", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.hang })
      const provider = yield* Policy.apply(Policy.make({ deadline: "1 second", timeouts: false }), mock, "deadline-only")
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("1 second")
      expect((yield* Effect.flip(Fiber.join(fiber)))._tag).toBe("DeadlineExceeded")
    }).pipe(Effect.provide(State)))

  it.effect("a retry that could only start after the deadline is not attempted; the last failure surfaces", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(), { delay: "2 seconds" }) })
      const policy = Policy.make({ deadline: "5 seconds", retry: { maxAttempts: 5, jitter: "none", base: "2 seconds" } })
      const provider = yield* Policy.apply(policy, mock, "deadline-retry")
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("10 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      // Attempt 1: 0–2 s; sleep 2 s; attempt 2 from 4 s is cut by the deadline at 5 s.
      expect(mock.calls.map((c) => c.at)).toEqual([0, 4000])
      expect(error._tag).toBe("DeadlineExceeded")
    }).pipe(Effect.provide(State)))

  it.effect("the provider sees what is left of it; the caller's fiber is left as it was", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      const reading: ProviderShape = {
        name: "reading",
        generate: () =>
          Effect.zipRight(
            Effect.sleep("1 second"),
            Effect.map(Deadline.remaining, (left) => {
              seen.push(left)
              return { provider: "reading", model: "m", text: "ok", toolCalls: [], finishReason: "stop" as const, usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } }
            })
          ),
        stream: () => Stream.empty
      }
      const provider = yield* Policy.apply(Policy.make({ deadline: "3 seconds" }), reading, "deadline-visible")
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(seen).toEqual([2000])
      expect(yield* Deadline.remaining).toBe(Number.POSITIVE_INFINITY)
      // Inside a sooner enclosing deadline, the enclosing one is what the provider sees.
      const inner = yield* Effect.fork(Deadline.withDeadline(provider.generate(request), "2 seconds"))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(inner)
      expect(seen).toEqual([2000, 1000])
    }).pipe(Effect.provide(State)))

  it.effect("an enclosing deadline that is sooner wins", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.hang })
      const provider = yield* Policy.apply(Policy.make({ deadline: "10 seconds" }), mock, "deadline-nested")
      const fiber = yield* Effect.fork(Deadline.withDeadline(provider.generate(request), "2 seconds"))
      yield* TestClock.adjust("2 seconds")
      expect((yield* Effect.flip(Fiber.join(fiber)))._tag).toBe("DeadlineExceeded")
    }).pipe(Effect.provide(State)))
})

describe("Policy — state per model", () => {
  it.effect("an effect built before the model's first call, run again and again, keeps one state (the hedger learns)", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.succeed("a", { delay: "100 millis" }), Mock.succeed("b", { delay: "100 millis" }), Mock.hang],
        otherwise: Mock.succeed("hedge")
      })
      const hedge = { minSamples: 2, initialDelay: "10 seconds", minDelay: "50 millis" } as const
      const provider = yield* Policy.apply(Policy.make({ hedge }), mock, "stale-effect")
      // Built once, before any state exists for the model, then run three times.
      const call = provider.generate(request)
      for (let run = 0; run < 2; run++) {
        const fiber = yield* Effect.fork(call)
        yield* TestClock.adjust("100 millis")
        yield* Fiber.join(fiber)
      }
      const third = yield* Effect.fork(call)
      // Two latencies of 100 ms were observed: the third call's hedge starts at 100 ms, not at the
      // 10 s initial delay a fresh hedger would wait.
      yield* TestClock.adjust("100 millis")
      expect(mock.calls.map((c) => c.at)).toEqual([0, 100, 200, 300])
      expect((yield* Fiber.join(third)).text).toBe("hedge")
    }).pipe(Effect.provide(State)))
})

describe("Policy — cost", () => {
  it.effect("an attempt that completes synchronously arms no timer", () =>
    Effect.gen(function*() {
      const provider = yield* Policy.apply(Policy.make({ deadline: "1 minute" }), Mock.make(), "cost-sync")
      yield* provider.generate(request)
      expect(Chunk.isEmpty(yield* TestClock.sleeps())).toBe(true)
    }).pipe(Effect.provide(State)))

  it.effect("a streamed attempt keeps one timer, not one per event", () =>
    Effect.gen(function*() {
      const chunks = Array.from({ length: 20 }, () => ({ text: "x", delay: "1 second" as const }))
      const mock = Mock.make({ script: [Mock.stream(chunks)] })
      const provider = yield* Policy.apply(Policy.make({ timeouts: { idle: "5 seconds" } }), mock, "cost-stream")
      const fiber = yield* Effect.fork(Stream.runCollect(provider.stream(request)))
      const pending: Array<number> = []
      for (let second = 1; second <= 10; second++) {
        yield* TestClock.adjust("1 second")
        pending.push((yield* TestClock.sleeps()).length)
      }
      // The mock's sleep before its next chunk, the watchdog (re-armed only when it wakes, every idle
      // period), and the headers bound it replaced when content started (TestClock keeps a cancelled
      // sleep until its time passes). One timer per chunk would grow this by one a second.
      expect(pending).toEqual([3, 3, 3, 3, 3, 3, 3, 3, 3, 3])
      yield* TestClock.adjust("20 seconds")
      expect(Chunk.size(yield* Fiber.join(fiber))).toBe(22)
    }).pipe(Effect.provide(State)))
})

describe("Policy — streams", () => {
  it.effect("a first-token timeout is retried transparently (a metadata event is not content)", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.stream([{ text: "late", delay: "1 minute" }]), Mock.stream(["on ", "time"])] })
      const policy = Policy.make({ timeouts: { firstToken: "5 seconds" }, retry: { jitter: "none", base: "1 second" } })
      const provider = yield* Policy.apply(policy, mock, "stream-ttft")
      const fiber = yield* Effect.fork(Stream.runCollect(provider.stream(request)))
      yield* TestClock.adjust("1 minute")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))).toEqual(["on ", "time"])
      expect(mock.calls.map((c) => c.at)).toEqual([0, 6000])
    }).pipe(Effect.provide(State)))
})

describe("Policy — observability", () => {
  it.effect("counts attempts by outcome, retries, timeouts by phase, budget rejections and breaker transitions", () =>
    Effect.gen(function*() {
      const route = "obs-metrics"
      const mock = Mock.make({
        script: [Mock.fail(Mock.errors.serverError()), Mock.succeed("slow", { delay: "2 seconds" }), Mock.succeed("ok")]
      })
      const policy = Policy.make({
        retry: { jitter: "none", base: "100 millis" },
        timeouts: { attempt: "1 second" },
        breaker: { consecutiveFailures: 2, openDuration: "100 millis" }
      })
      const provider = yield* Policy.apply(policy, mock, route)
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("10 seconds")
      expect((yield* Fiber.join(fiber)).text).toBe("ok")
      // 0 s: 500; 0.1 s: times out at 1.1 s (the breaker opens for 100 ms); 1.3 s: the half-open probe succeeds.
      expect(mock.calls.map((c) => c.at)).toEqual([0, 100, 1300])
      expect(yield* counter("llm_attempts_total", { route, outcome: "ServerError" })).toBe(1)
      expect(yield* counter("llm_attempts_total", { route, outcome: "Timeout" })).toBe(1)
      expect(yield* counter("llm_attempts_total", { route, outcome: "success" })).toBe(1)
      expect(yield* counter("llm_retries_total", { route })).toBe(2)
      expect(yield* counter("llm_timeouts_total", { route, phase: "attempt" })).toBe(1)
      expect(yield* counter("llm_breaker_transitions_total", { key: `${route}/m`, to: "open" })).toBe(1)
      expect(yield* counter("llm_breaker_transitions_total", { key: `${route}/m`, to: "half-open" })).toBe(1)
      expect(yield* counter("llm_breaker_transitions_total", { key: `${route}/m`, to: "closed" })).toBe(1)

      const storm = "obs-budget"
      const failing = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
      const starved = yield* Policy.apply(Policy.make({ budget: { ratio: 0, minPerSecond: 0 }, breaker: false }), failing, storm)
      const error = yield* Effect.flip(starved.generate(request))
      expect(error._tag).toBe("RetryBudgetExhausted")
      expect(yield* counter("llm_retry_budget_rejections_total", { route: storm })).toBe(1)
    }).pipe(Effect.provide(State)))

  it.effect("one span per attempt with route, attempt, delay, breaker state and outcome (only when a tracer is installed)", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.serverError())], otherwise: Mock.succeed("ok") })
      const provider = yield* Policy.apply(Policy.make({ retry: { jitter: "none", base: "250 millis" } }), mock, "obs-spans")
      const { spans, tracer } = recordingTracer()
      const fiber = yield* Effect.fork(Effect.withTracer(provider.generate(request), tracer))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      const attempts = spans.filter((span) => span.name === "llm.attempt")
      expect(attempts.map((span) => Object.fromEntries(span.attributes))).toEqual([
        expect.objectContaining({
          "llm.route": "obs-spans",
          "llm.attempt": 1,
          "llm.retry.delay_ms": 0,
          "llm.breaker.state": "closed",
          "llm.hedge": false,
          "llm.outcome": "ServerError"
        }),
        expect.objectContaining({ "llm.attempt": 2, "llm.retry.delay_ms": 250, "llm.outcome": "success" })
      ])
      expect(attempts.every((span) => span.status._tag === "Ended")).toBe(true)

      // With Effect's default (exporting nothing) tracer, `tracing: "auto"` creates no span at all.
      const before = spans.length
      yield* provider.generate(request)
      expect(spans.length).toBe(before)
    }).pipe(Effect.provide(State)))

  it.effect("observe hears every attempt, with its delay", () =>
    Effect.gen(function*() {
      const records: Array<AttemptRecord> = []
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(1500))], otherwise: Mock.succeed("ok") })
      const policy = Policy.make({
        retry: { jitter: "none", base: "100 millis" },
        observe: (record) => Effect.sync(() => records.push(record))
      })
      const provider = yield* Policy.apply(policy, mock, "obs-observe")
      const fiber = yield* Effect.fork(provider.generate(request))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(fiber)
      expect(records.map((r) => [r.attempt, r.outcome, r.delayMs])).toEqual([[1, "RateLimited", 0], [2, "success", 1500]])
    }).pipe(Effect.provide(State)))

  it.effect("the breaker state is shared per route/model through the registry", () =>
    Effect.gen(function*() {
      const provider = yield* Policy.apply(Policy.make({}), Mock.make(), "obs-registry")
      yield* provider.generate(request)
      const breakers = yield* CircuitBreaker.CircuitBreakers
      expect(Option.isSome(yield* breakers.lookup("obs-registry/m"))).toBe(true)
    }).pipe(Effect.provide(State)))
})

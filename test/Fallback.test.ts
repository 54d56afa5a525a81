/**
 * The fallback chain without HTTP: MockProvider routes and TestClock, so every routing decision and
 * every wait is asserted exactly (the same decisions over real HTTP are in test/e2e/fallback.test.ts).
 */
import { routesFailed } from "./testing/helpers.js"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as fc from "fast-check"
import * as Deadline from "../src/Deadline.js"
import * as DegradedMode from "../src/DegradedMode.js"
import type { AllRoutesFailed } from "../src/Errors.js"
import * as Fallback from "../src/Fallback.js"
import * as LlmClient from "../src/LlmClient.js"
import * as Policy from "../src/Policy.js"
import type { ProviderShape } from "../src/Provider.js"
import * as Mock from "../src/testing/MockProvider.js"

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number.pipe(Schema.positive()) })
const valid = JSON.stringify({ city: "Paris", population: 2_100_000 })
const violating = JSON.stringify({ city: "Paris", population: "lots" })
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Largest city in France?" }], maxTokens: 200 }

const State = Layer.merge(Policy.layerState, DegradedMode.layer)
const route = (name: string, mock: Mock.MockProvider, extra: Partial<Fallback.Route> = {}): Fallback.Route => ({
  name,
  provider: mock,
  model: `${name}-model`,
  policy: { retry: { jitter: "none", base: "100 millis" } },
  ...extra
})

describe("Fallback — routing by action", () => {
  it.effect("primary 529 → secondary answers valid JSON → accepted, degraded, 2 attempts", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded()) })
      const secondary = Mock.make({ otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)] })
      const result = yield* chain.generateObject(Answer, request)
      expect(result.value).toEqual({ city: "Paris", population: 2_100_000 })
      expect(result.route).toBe("secondary")
      expect(result.degraded).toBe(true)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "Overloaded"], ["secondary", "success"]])
      const degraded = yield* SubscriptionRef.get(yield* DegradedMode.DegradedMode)
      expect(degraded).toMatchObject({ degraded: true, route: "secondary" })
      // generateObject asked for JSON the provider's way
      expect(secondary.calls[0]!.request.responseFormat?.type).toBe("json_schema")
    }).pipe(Effect.provide(State)))

  it.effect("schema-violating JSON is InvalidOutput and cascades; never accepted", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded()) })
      const secondary = Mock.make({ otherwise: Mock.succeed(violating) })
      const tertiary = Mock.make({ otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { retry: false } }), route("secondary", secondary), route("tertiary", tertiary)]
      })
      const result = yield* chain.generateObject(Answer, request)
      expect(result.route).toBe("tertiary")
      expect(result.attempts.map((a) => a.outcome)).toEqual(["Overloaded", "InvalidOutput", "success"])

      const lastResort = Mock.make({ otherwise: Mock.succeed("not json at all") })
      const failing = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { retry: false } }), route("secondary", secondary), route("last", lastResort)]
      })
      const error = yield* routesFailed(failing.generateObject(Answer, request))
      expect(error._tag).toBe("AllRoutesFailed")
      expect(error.reason).toBe("exhausted")
      expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["primary", "Overloaded"],
        ["secondary", "InvalidOutput"],
        ["last", "InvalidOutput"]
      ])
      expect(JSON.stringify(error)).not.toContain("\"population\":\"lots\"}")
    }).pipe(Effect.provide(State)))

  it.effect("400 on the primary stops the chain: no other route is called", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.badRequest()) })
      const secondary = Mock.make()
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)] })
      const error = yield* Effect.flip(chain.generate(request))
      expect(error.reason).toBe("stopped")
      expect(error.lastError?._tag).toBe("BadRequest")
      expect(secondary.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("429 with retry-after 2 s inside a 10 s deadline waits on the primary", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(2000)), Mock.succeed("from primary")] })
      const secondary = Mock.make({ otherwise: Mock.succeed("from secondary") })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)], deadline: "10 seconds" })
      const fiber = yield* Effect.fork(chain.generate(request))
      yield* TestClock.adjust("2 seconds")
      const result = yield* Fiber.join(fiber)
      expect(result.value).toBe("from primary")
      expect(result.degraded).toBe(false)
      expect(primary.calls.map((c) => c.at)).toEqual([0, 2000])
      expect(secondary.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("429 with retry-after 120 s moves on at once, without sleeping", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.rateLimited(120_000)) })
      const secondary = Mock.make({ otherwise: Mock.succeed("from secondary") })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)], deadline: "10 seconds" })
      const result = yield* chain.generate(request)
      expect(result.value).toBe("from secondary")
      expect(secondary.calls[0]!.at).toBe(0)
      expect(result.durationMs).toBe(0)
    }).pipe(Effect.provide(State)))
})

describe("Fallback — output gate and repair", () => {
  it.effect("a never-decodable answer costs each route its call and its repair, once per call (not once per pass)", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.succeed(violating) })
      const secondary = Mock.make({ otherwise: Mock.succeed(JSON.stringify({ town: "Paris" })) })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary), route("secondary", secondary)],
        repairAttempts: 1,
        deadline: "30 seconds" // three passes by default
      })
      const fiber = yield* Effect.fork(routesFailed(chain.generateObject(Answer, request)))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      // 2 routes × (call + repair) = 4 paid calls; before, 3 passes made it 12.
      expect(primary.calls.length + secondary.calls.length).toBe(4)
      expect(error.reason).toBe("exhausted")
      expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["primary", "InvalidOutput"],
        ["primary", "InvalidOutput"],
        ["secondary", "InvalidOutput"],
        ["secondary", "InvalidOutput"]
      ])
      // The message names every route's decode issues, briefly, not only "does not match the schema".
      expect(error.message).toContain("decode issues: primary:")
      expect(error.message).toContain("population")
      expect(error.message).toContain("secondary:")
      expect(error.message).toContain("city")
    }).pipe(Effect.provide(State)))

  it.effect("an invalid first answer repaired on the same route is accepted, marked repaired and degraded", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ script: [Mock.succeed(violating), Mock.succeed(valid)] })
      const chain = yield* Fallback.make({ routes: [route("primary", primary)], repairAttempts: 1 })
      const result = yield* chain.generateObject(Answer, request)
      expect(result.value.population).toBe(2_100_000)
      expect(result.repaired).toBe(true)
      expect(result.degraded).toBe(true)
      expect(result.attempts.map((a) => a.outcome)).toEqual(["InvalidOutput", "success"])
      const repairMessages = primary.calls[1]!.request.messages
      expect(repairMessages[repairMessages.length - 1]!.content).toContain("population")
    }).pipe(Effect.provide(State)))

  it.effect.each([
    ["empty", Mock.succeed("  ")],
    ["truncated", Mock.succeed("partial", { finishReason: "length" })]
  ] as const)("%s output is rejected by generate", ([reason, step]) =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: step })
      const chain = yield* Fallback.make({ routes: [route("primary", primary)] })
      const error = yield* Effect.flip(chain.generate(request))
      expect(error.lastError?._tag).toBe("InvalidOutput")
      if (error.lastError?._tag === "InvalidOutput") expect(error.lastError.reason).toBe(reason)
    }).pipe(Effect.provide(State)))

  it.effect("a refusal stops unless rerouteOnContentFilter", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.succeed("no", { finishReason: "refusal" }) })
      const secondary = Mock.make({ otherwise: Mock.succeed("yes") })
      const strict = yield* Fallback.make({ routes: [route("p", primary), route("s", secondary)] })
      expect((yield* Effect.flip(strict.generate(request))).lastError?._tag).toBe("ContentFiltered")
      const lenient = yield* Fallback.make({ routes: [route("p2", primary), route("s2", secondary)], rerouteOnContentFilter: true })
      expect((yield* lenient.generate(request)).value).toBe("yes")
    }).pipe(Effect.provide(State)))

  it.effect("a custom validator can reject a decoded value", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary)] })
      const error = yield* routesFailed(chain.generateObject(Answer, request, {
        validate: (answer) => answer.city === "Paris" ? Effect.fail("Paris is not allowed") : Effect.void
      }))
      expect(error.lastError?._tag === "InvalidOutput" && error.lastError.reason).toBe("validator")
    }).pipe(Effect.provide(State)))
})

describe("Fallback — context windows", () => {
  it.effect("routes that cannot hold the prompt are skipped without a call; overflow moves only to larger windows", () =>
    Effect.gen(function*() {
      const small = Mock.make()
      const overflowing = Mock.make({ otherwise: Mock.fail(Mock.errors.contextLength()) })
      const sameSize = Mock.make()
      const large = Mock.make({ otherwise: Mock.succeed("fits") })
      const big = { ...request, messages: [{ role: "user" as const, content: "x".repeat(40_000) }] }
      const chain = yield* Fallback.make({
        routes: [
          route("small", small, { contextWindow: 8_000 }),
          route("overflowing", overflowing, { contextWindow: 16_000 }),
          route("same", sameSize, { contextWindow: 16_000 }),
          route("large", large, { contextWindow: 200_000 })
        ]
      })
      const result = yield* chain.generate(big)
      expect(result.value).toBe("fits")
      expect(small.calls.length).toBe(0)
      expect(sameSize.calls.length).toBe(0)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["small", "Skipped"],
        ["overflowing", "ContextLengthExceeded"],
        ["same", "Skipped"],
        ["large", "success"]
      ])
    }).pipe(Effect.provide(State)))
})


describe("Fallback — action routing details", () => {
  it.effect("a Retry-After that does not fit the remaining deadline moves on at once, without sleeping", () =>
    Effect.gen(function*() {
      // 8 s is under the 60 s retry-after cap, but the chain has only 5 s.
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.rateLimited(8_000)) })
      const secondary = Mock.make({ otherwise: Mock.succeed("from secondary") })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)], deadline: "5 seconds" })
      const result = yield* chain.generate(request)
      expect(result.value).toBe("from secondary")
      expect(primary.calls.length).toBe(1)
      expect(secondary.calls.map((c) => c.at)).toEqual([0])
    }).pipe(Effect.provide(State)))

  it.effect("a spent retry budget moves on instead of waiting", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500)) })
      const secondary = Mock.make({ otherwise: Mock.succeed("from secondary") })
      const chain = yield* Fallback.make({
        routes: [
          route("primary", primary, { policy: { retry: { maxAttempts: 5 }, budget: { ratio: 0, minPerSecond: 0 } } }),
          route("secondary", secondary)
        ]
      })
      const result = yield* chain.generate(request)
      expect(result.value).toBe("from secondary")
      expect(primary.calls.length).toBe(1)
      expect(secondary.calls.map((c) => c.at)).toEqual([0])
    }).pipe(Effect.provide(State)))

  it.effect.each([
    ["QuotaExhausted", Mock.errors.quotaExhausted()],
    ["Unauthorized", Mock.errors.unauthorized()],
    ["NotFound", Mock.errors.notFound()],
    ["Overloaded", Mock.errors.overloaded(5_000)]
  ] as const)("%s reroutes at once: one call on the primary, no sleep, even with retries configured", ([tag, error]) =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(error) })
      const secondary = Mock.make({ otherwise: Mock.succeed("ok") })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { retry: { maxAttempts: 5 } } }), route("secondary", secondary)]
      })
      const result = yield* chain.generate(request)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", tag], ["secondary", "success"]])
      expect(primary.calls.length).toBe(1)
      expect(secondary.calls[0]!.at).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("when every route's breaker is open, one panic pass probes them instead of failing without asking anyone", () =>
    Effect.gen(function*() {
      const breaker = { consecutiveFailures: 1, openDuration: "1 minute" } as const
      const primary = Mock.make({ script: [Mock.fail(Mock.errors.serverError(500))], otherwise: Mock.succeed("primary is back") })
      const secondary = Mock.make({ script: [Mock.fail(Mock.errors.overloaded())], otherwise: Mock.succeed("secondary is back") })
      const routes = [
        route("primary", primary, { policy: { retry: { maxAttempts: 1 }, breaker } }),
        route("secondary", secondary, { policy: { retry: { maxAttempts: 1 }, breaker } })
      ]
      const chain = yield* Fallback.make({ routes })
      // Both routes fail once: both breakers open.
      const outage = yield* Effect.flip(chain.generate(request))
      expect(outage.attempts.map((a) => a.outcome)).toEqual(["ServerError", "Overloaded"])

      // Both refuse at their breaker; the panic pass asks the primary, which has recovered.
      const recovered = yield* chain.generate(request)
      expect(recovered.value).toBe("primary is back")
      expect(recovered.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["primary", "CircuitOpen"],
        ["secondary", "CircuitOpen"],
        ["primary", "success"]
      ])
      expect(secondary.calls.length).toBe(1)
      // The panic probe's success closed the primary's breaker: the next call goes straight there.
      const next = yield* chain.generate(request)
      expect(next.attempts.map((a) => a.outcome)).toEqual(["success"])

      // Opt out: a chain that fails fast when every breaker is open.
      const strict = yield* Fallback.make({
        routes: [
          route("p2", Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500)) }), { policy: { retry: { maxAttempts: 1 }, breaker } })
        ],
        panicWhenAllOpen: false
      })
      yield* Effect.flip(strict.generate(request))
      const refused = yield* Effect.flip(strict.generate(request))
      expect(refused.attempts.map((a) => a.outcome)).toEqual(["CircuitOpen"])
    }).pipe(Effect.provide(Layer.fresh(State))))

  it.effect("a route whose breaker is open is skipped without a provider call, and shows in the history", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500)) })
      const secondary = Mock.make({ otherwise: Mock.succeed("from secondary") })
      const chain = yield* Fallback.make({
        routes: [
          route("primary", primary, { policy: { retry: { maxAttempts: 1 }, breaker: { consecutiveFailures: 1, openDuration: "30 seconds" } } }),
          route("secondary", secondary)
        ]
      })
      const first = yield* chain.generate(request)
      expect(first.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "ServerError"], ["secondary", "success"]])
      // The breaker tripped on that failure: the next call does not reach the primary at all.
      const second = yield* chain.generate(request)
      expect(second.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "CircuitOpen"], ["secondary", "success"]])
      expect(primary.calls.length).toBe(1)
      expect(second.durationMs).toBe(0)
      // Once the open period is over, the primary is tried again (half-open probe).
      yield* TestClock.adjust("30 seconds")
      const third = yield* chain.generate(request)
      expect(third.attempts[0]).toMatchObject({ route: "primary", outcome: "ServerError" })
      expect(primary.calls.length).toBe(2)
    }).pipe(Effect.provide(State)))

  it.effect("a route's own policy deadline is a per-route bound: the chain moves on while it has time", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.hang })
      const secondary = Mock.make({ otherwise: Mock.succeed("from secondary") })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { deadline: "1 second" } }), route("secondary", secondary)],
        deadline: "10 seconds"
      })
      const fiber = yield* Effect.fork(chain.generate(request))
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)
      expect(result.value).toBe("from secondary")
      expect(secondary.calls.map((c) => c.at)).toEqual([1000])
    }).pipe(Effect.provide(State)))

  it.effect("the chain deadline reaches every route's provider with one timer per attempt, and stays off the caller's fiber", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      const reading = (name: string, fails: boolean): ProviderShape => ({
        name,
        generate: (routeRequest) =>
          Effect.zipRight(
            Effect.sleep("1 second"),
            Effect.flatMap(Deadline.remaining, (left) => {
              seen.push(left)
              return fails
                ? Effect.fail(Mock.errors.overloaded()({ provider: name, model: routeRequest.model, route: name, attempt: 1 }))
                : Effect.succeed({ provider: name, model: routeRequest.model, text: "ok", toolCalls: [], finishReason: "stop" as const, usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } })
            })
          ),
        stream: () => Stream.empty
      })
      const chain = yield* Fallback.make({
        routes: [
          { name: "primary", provider: reading("primary", true), model: "p" },
          { name: "secondary", provider: reading("secondary", false), model: "s" }
        ],
        deadline: "10 seconds"
      })
      const fiber = yield* Effect.fork(chain.generate(request))
      yield* TestClock.adjust("500 millis")
      // The provider's own sleep and the attempt's timer, clipped to the hand-over (half the deadline
      // while the secondary waits its turn): nothing for the chain.
      expect([...Chunk.toReadonlyArray(yield* TestClock.sleeps())].sort((a, b) => a - b)).toEqual([1000, 5_000])
      yield* TestClock.adjust("1500 millis")
      const result = yield* Fiber.join(fiber)
      expect(result.route).toBe("secondary")
      expect(seen).toEqual([9000, 8000])
      expect(yield* Deadline.remaining).toBe(Number.POSITIVE_INFINITY)
    }).pipe(Effect.provide(State)))

  it.effect("the chain deadline stops the chain with the history so far", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500), { delay: "2 seconds" }) })
      const secondary = Mock.make({ otherwise: Mock.hang })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { retry: { maxAttempts: 1 } } }), route("secondary", secondary)],
        deadline: "5 seconds"
      })
      const fiber = yield* Effect.fork(Effect.flip(chain.generate(request)))
      yield* TestClock.adjust("5 seconds")
      const error = yield* Fiber.join(fiber)
      expect(error.reason).toBe("deadline")
      expect(error.lastError?._tag).toBe("DeadlineExceeded")
      expect(error.attempts[0]).toMatchObject({ route: "primary", outcome: "ServerError" })
      // The secondary's attempt was cut short by the deadline (recorded as such, or not at all).
      expect(error.attempts.slice(1).map((a) => [a.route, a.outcome])).toEqual(
        error.attempts.length > 1 ? [["secondary", "DeadlineExceeded"]] : []
      )
      expect(secondary.calls.map((c) => c.at)).toEqual([2000])
      expect(yield* DegradedMode.isDegraded).toBe(true)
    }).pipe(Effect.provide(State)))

  it.effect("ContextLengthExceeded with no larger declared window stops the chain", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.contextLength()) })
      const sameSize = Mock.make()
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { contextWindow: 128_000 }), route("same", sameSize, { contextWindow: 128_000 })]
      })
      const error = yield* Effect.flip(chain.generate(request))
      expect(error.reason).toBe("stopped")
      expect(error.lastError?._tag).toBe("ContextLengthExceeded")
      expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "ContextLengthExceeded"], ["same", "Skipped"]])
      expect(sameSize.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("a custom estimateTokens drives the pre-flight", () =>
    Effect.gen(function*() {
      const small = Mock.make()
      const large = Mock.make({ otherwise: Mock.succeed("large") })
      const chain = yield* Fallback.make({
        routes: [route("small", small, { contextWindow: 1_000 }), route("large", large, { contextWindow: 100_000 })],
        estimateTokens: () => 5_000
      })
      const result = yield* chain.generate(request)
      expect(result.route).toBe("large")
      expect(result.attempts[0]).toMatchObject({ route: "small", outcome: "Skipped" })
      expect(result.attempts[0]!.message).toContain("5200")
      expect(small.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("weighted groups spread load by weight; serving from any member of the first group is not degraded", () =>
    Effect.gen(function*() {
      const keyA = Mock.make({ otherwise: Mock.succeed("a") })
      const keyB = Mock.make({ otherwise: Mock.succeed("b") })
      const chain = yield* Fallback.make({
        routes: [
          route("key-a", keyA, { group: "gpt", weight: 3 }),
          route("key-b", keyB, { group: "gpt", weight: 1 }),
          route("backup", Mock.make())
        ]
      })
      const results = yield* Effect.forEach(Array.from({ length: 400 }), () => chain.generate(request))
      expect(results.every((r) => !r.degraded)).toBe(true)
      const shareA = keyA.calls.length / 400
      expect(shareA).toBeGreaterThan(0.68)
      expect(shareA).toBeLessThan(0.82)
    }).pipe(Effect.provide(State)))
})

describe("Fallback — result metadata", () => {
  it.effect("every attempt carries its usage (rejected answers cost tokens too); the total sums them", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.succeed(violating) })
      const secondary = Mock.make({ otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)] })
      const result = yield* chain.generateObject(Answer, request)
      const [rejected, accepted] = result.attempts
      expect(rejected).toMatchObject({ route: "primary", outcome: "InvalidOutput", status: 200 })
      expect(rejected!.usage!.outputTokens).toBe(Math.ceil(violating.length / 4))
      expect(accepted!.usage!.outputTokens).toBe(Math.ceil(valid.length / 4))
      expect(result.usage.totalTokens).toBe(rejected!.usage!.totalTokens + accepted!.usage!.totalTokens)
      // A failure that never got a response has no usage.
      const down = Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded()) })
      const other = yield* Fallback.make({ routes: [route("down", down), route("up", secondary)] })
      const second = yield* other.generateObject(Answer, request)
      expect(second.attempts[0]!.usage).toBeUndefined()
      expect(second.usage).toEqual(second.attempts[1]!.usage)
    }).pipe(Effect.provide(State)))

  it.effect("repair attempts continue the route's attempt numbers and are labelled as repairs", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ script: [Mock.succeed("{not json"), Mock.succeed(violating), Mock.succeed(valid)] })
      const chain = yield* Fallback.make({ routes: [route("primary", primary)], repairAttempts: 2 })
      const result = yield* chain.generateObject(Answer, request)
      expect(result.attempts.map((a) => [a.attempt, a.outcome, a.message?.startsWith("repair") ? a.message.split(":")[0] : "first"])).toEqual([
        [1, "InvalidOutput", "first"],
        [2, "InvalidOutput", "repair 1/2"],
        [3, "success", "repair 2/2"]
      ])
      expect(result.repaired).toBe(true)
      // The second repair request carries the second rejection's decode errors.
      const last = primary.calls[2]!.request.messages
      expect(last[last.length - 2]!.content).toBe(violating)
    }).pipe(Effect.provide(State)))

  it.effect("repairs are bounded by the route's retry budget", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.succeed(violating) })
      const secondary = Mock.make({ otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { budget: { ratio: 0, minPerSecond: 0 } } }), route("secondary", secondary)],
        repairAttempts: 3
      })
      const result = yield* chain.generateObject(Answer, request)
      expect(primary.calls.length).toBe(1)
      expect(result.route).toBe("secondary")
      expect(result.repaired).toBe(false)
    }).pipe(Effect.provide(State)))

  it.effect("AllRoutesFailed never carries the rejected value", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.succeed(violating) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary)] })
      const error = yield* routesFailed(chain.generateObject(Answer, request))
      expect(error.lastError?._tag).toBe("InvalidOutput")
      expect(error.lastError?._tag === "InvalidOutput" && error.lastError.issues).toContain("population")
      expect(JSON.stringify(error)).not.toContain(violating)
      expect(JSON.stringify(error)).not.toContain("\"output\"")
    }).pipe(Effect.provide(State)))
})

describe("Fallback — properties", () => {
  const fenced = `\`\`\`json\n${valid}\n\`\`\``
  const outcome = fc.constantFrom(
    "valid",
    "fenced",
    "violating",
    "garbage",
    "empty",
    "truncated",
    "refusal",
    "malformed",
    "overloaded",
    "server",
    "rateLimited",
    "rateLimitedLong",
    "quota",
    "notFound",
    "timeout",
    "badRequest",
    "contextLength",
    "hang"
  )
  const stepOf = (o: string): Mock.Step => {
    switch (o) {
      case "valid":
        return Mock.succeed(valid, { delay: "300 millis" })
      case "fenced":
        return Mock.succeed(fenced)
      case "violating":
        return Mock.succeed(violating)
      case "garbage":
        return Mock.succeed("{oops")
      case "empty":
        return Mock.succeed("")
      case "truncated":
        // Valid JSON, but cut by the token limit: never accepted by generateObject.
        return Mock.succeed(valid, { finishReason: "length" })
      case "refusal":
        return Mock.succeed(valid, { finishReason: "refusal" })
      case "malformed":
        return Mock.fail(Mock.errors.malformed())
      case "overloaded":
        return Mock.fail(Mock.errors.overloaded())
      case "server":
        return Mock.fail(Mock.errors.serverError(), { delay: "1 second" })
      case "rateLimited":
        return Mock.fail(Mock.errors.rateLimited(1500))
      case "rateLimitedLong":
        return Mock.fail(Mock.errors.rateLimited(120_000))
      case "quota":
        return Mock.fail(Mock.errors.quotaExhausted())
      case "notFound":
        return Mock.fail(Mock.errors.notFound())
      case "timeout":
        return Mock.fail(Mock.errors.timeout("first-token"), { delay: "2 seconds" })
      case "badRequest":
        return Mock.fail(Mock.errors.badRequest())
      case "contextLength":
        return Mock.fail(Mock.errors.contextLength())
      default:
        return Mock.hang
    }
  }

  it.effect("whatever the routes do: an accepted value decodes, attempts stay within bounds, time stays within the deadline", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(outcome, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 0, max: 2 }),
          fc.constantFrom(4_000, 20_000),
          fc.boolean(),
          fc.integer({ min: 1, max: 3 }),
          async (scripts, maxAttempts, repairAttempts, deadlineMs, breaker, passes) => {
            const program = Effect.gen(function*() {
              const mocks = scripts.map((script) => Mock.make({ script: script.map(stepOf), otherwise: Mock.fail(Mock.errors.overloaded()) }))
              const chain = yield* Fallback.make({
                routes: mocks.map((mock, i) =>
                  route(`r${i}`, mock, {
                    policy: {
                      retry: { maxAttempts, jitter: "none", base: "200 millis" },
                      breaker: breaker ? { consecutiveFailures: 2 } : false
                    }
                  })
                ),
                deadline: `${deadlineMs} millis`,
                repairAttempts,
                passes
              })
              const fiber = yield* Effect.fork(Effect.zip(Effect.either(Effect.catchTag(chain.generateObject(Answer, request), "InvalidOptions", Effect.die)), Clock.currentTimeMillis))
              yield* TestClock.adjust("10 minutes")
              const [outcome, endedAt] = yield* Fiber.join(fiber)

              // Time: the call ends by the deadline, whatever happened.
              expect(endedAt).toBeLessThanOrEqual(deadlineMs)
              for (const mock of mocks) for (const call of mock.calls) expect(call.at).toBeLessThan(deadlineMs)

              // Bounds: per route and pass at most maxAttempts per provider call, and 1 + repairAttempts calls.
              const history = outcome._tag === "Right" ? outcome.right.attempts : outcome.left.attempts
              const bound = passes * maxAttempts * (1 + repairAttempts)
              mocks.forEach((mock, i) => {
                const records = history.filter((a) => a.route === `r${i}`)
                // Skipped and breaker-refused routes were never called; a deadline record may or may not be a call.
                const called = records.filter((a) => a.outcome !== "Skipped" && a.outcome !== "CircuitOpen" && a.outcome !== "DeadlineExceeded")
                expect(records.length).toBeLessThanOrEqual(bound)
                expect(mock.calls.length).toBeLessThanOrEqual(bound)
                // Every provider call is in the history; only one cut short by the deadline may be missing.
                const unrecorded = mock.calls.length - called.length
                expect(unrecorded).toBeGreaterThanOrEqual(0)
                expect(unrecorded).toBeLessThanOrEqual(outcome._tag === "Left" && outcome.left.reason === "deadline" ? 1 : 0)
              })

              if (outcome._tag === "Right") {
                // Acceptance: only a value that decodes, from a response that was a complete, valid answer.
                expect(Schema.is(Answer)(outcome.right.value)).toBe(true)
                expect(outcome.right.value).toEqual(JSON.parse(valid))
                expect(outcome.right.response.finishReason).toBe("stop")
                expect(outcome.right.durationMs).toBe(endedAt)
                expect(history[history.length - 1]).toMatchObject({ route: outcome.right.route, outcome: "success" })
              } else {
                expect(outcome.left._tag).toBe("AllRoutesFailed")
                expect(JSON.stringify(outcome.left)).not.toContain(violating)
              }
            })
            await Effect.runPromise(program.pipe(Effect.provide(State), Effect.provide(TestContext.TestContext)))
          }
        ),
        { numRuns: 150, seed: 20261122 }
      )
    ))
})

// ---------------------------------------------------------------------------------------------------
// Streams: transparent fall-over before the first content token, failure with the partial text after
// it (default), the opt-in restart mode and its `Restarted` event, and `Completed` / DegradedMode.
// ---------------------------------------------------------------------------------------------------

const storyRequest: Fallback.ChainRequest = { messages: [{ role: "user", content: "Tell me a story." }], maxTokens: 200 }

/** Runs a chain stream to its end: every event, then the failure if there was one. */
const collect = (stream: Stream.Stream<Fallback.ChainStreamEvent, AllRoutesFailed>) =>
  Effect.map(Stream.runCollect(Stream.either(stream)), (chunk) => {
    const all = Chunk.toReadonlyArray(chunk)
    const events = all.flatMap((e) => Either.isRight(e) ? [e.right] : [])
    const failure = all.flatMap((e) => Either.isLeft(e) ? [e.left] : [])[0]
    return { events, failure }
  })

const tags = (events: ReadonlyArray<Fallback.ChainStreamEvent>) => events.map((e) => e._tag)
const textOf = (events: ReadonlyArray<Fallback.ChainStreamEvent>) =>
  events.map((e) => e._tag === "TextDelta" ? e.text : "").join("")
const completed = (events: ReadonlyArray<Fallback.ChainStreamEvent>) => {
  const last = events[events.length - 1]
  if (last?._tag !== "Completed") throw new Error(`the stream did not complete: ${tags(events).join(",")}`)
  return last.result
}

describe("Fallback.stream — before the first content token", () => {
  it.effect("a failure before content falls over transparently: no trace of the failed route in the stream", () =>
    Effect.gen(function*() {
      // The primary sends its metadata (headers) and then fails before any content.
      const primary = Mock.make({ otherwise: Mock.stream([], { failWith: Mock.errors.overloaded() }) })
      const secondary = Mock.make({ otherwise: Mock.stream(["Once ", "upon ", "a time."]) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)] })
      const { events, failure } = yield* collect(chain.stream(storyRequest))
      expect(failure).toBeUndefined()
      expect(tags(events)).toEqual(["Metadata", "TextDelta", "TextDelta", "TextDelta", "Finish", "Completed"])
      expect(textOf(events)).toBe("Once upon a time.")
      const result = completed(events)
      expect(result.route).toBe("secondary")
      expect(result.value).toBe("Once upon a time.")
      expect(result.degraded).toBe(true)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "Overloaded"], ["secondary", "success"]])
      expect(result.attempts[1]!.usage).toEqual(result.usage)
      expect(result.usage.outputTokens).toBeGreaterThan(0)
      expect(yield* SubscriptionRef.get(yield* DegradedMode.DegradedMode)).toMatchObject({ degraded: true, route: "secondary" })
    }).pipe(Effect.provide(State)))

  it.effect("a first-token timeout on the primary moves to the secondary at the timeout, not later", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.stream([{ text: "late", delay: "30 seconds" }]) })
      const secondary = Mock.make({ otherwise: Mock.stream(["on time"]) })
      const chain = yield* Fallback.make({
        routes: [
          route("primary", primary, { policy: { retry: false, timeouts: { firstToken: "2 seconds" } } }),
          route("secondary", secondary)
        ]
      })
      const fiber = yield* Effect.fork(collect(chain.stream(storyRequest)))
      yield* TestClock.adjust("1999 millis")
      expect(secondary.calls.length).toBe(0)
      yield* TestClock.adjust("1 millis")
      const { events } = yield* Fiber.join(fiber)
      expect(textOf(events)).toBe("on time")
      expect(secondary.calls.map((c) => c.at)).toEqual([2000])
      expect(completed(events).attempts.map((a) => a.outcome)).toEqual(["Timeout", "success"])
    }).pipe(Effect.provide(State)))

  it.effect("the primary answering healthily is not degraded, and publishes a healthy state", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.stream(["fine"]) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", Mock.make())] })
      const result = completed((yield* collect(chain.stream(storyRequest))).events)
      expect(result.degraded).toBe(false)
      expect(yield* DegradedMode.isDegraded).toBe(false)
    }).pipe(Effect.provide(State)))

  it.effect("a 400 before content stops the stream chain: no other route is called", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.badRequest()) })
      const secondary = Mock.make()
      const chain = yield* Fallback.make({ routes: [route("primary", primary), route("secondary", secondary)] })
      const { events, failure } = yield* collect(chain.stream(storyRequest))
      expect(events).toEqual([])
      expect(failure?.reason).toBe("stopped")
      expect(failure?.lastError?._tag).toBe("BadRequest")
      expect(secondary.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("the chain deadline bounds a stream that never produces content", () =>
    Effect.gen(function*() {
      const chain = yield* Fallback.make({
        routes: [route("primary", Mock.make({ otherwise: Mock.hang })), route("secondary", Mock.make({ otherwise: Mock.hang }))],
        deadline: "3 seconds"
      })
      const fiber = yield* Effect.fork(collect(chain.stream(storyRequest)))
      yield* TestClock.adjust("3 seconds")
      const { events, failure } = yield* Fiber.join(fiber)
      expect(events).toEqual([])
      expect(failure?.reason).toBe("deadline")
      expect(failure?.lastError?._tag).toBe("DeadlineExceeded")
    }).pipe(Effect.provide(State)))
})

describe("Fallback.stream — the deadline", () => {
  it.effect("passing after partial output ends the chain with reason deadline, through the attempt's own timer", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.stream(["The quick ", { text: "brown ", delay: "100 seconds" }]) })
      const secondary = Mock.make({ otherwise: Mock.stream(["never"]) })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary), route("secondary", secondary)],
        deadline: "3 seconds"
      })
      const fiber = yield* Effect.fork(collect(chain.stream(storyRequest)))
      yield* TestClock.adjust("1 second")
      // The mock's pause before its next chunk and the attempt's watch, armed at the start for the
      // first-token hand-over (half the 3 s while the secondary waits); content came, so when it fires
      // it re-arms to the deadline. The chain keeps no watch of its own.
      expect([...Chunk.toReadonlyArray(yield* TestClock.sleeps())].sort((a, b) => a - b)).toEqual([1500, 100_000])
      yield* TestClock.adjust("1 second")
      expect([...Chunk.toReadonlyArray(yield* TestClock.sleeps())].sort((a, b) => a - b)).toEqual([3000, 100_000])
      yield* TestClock.adjust("1 second")
      const { events, failure } = yield* Fiber.join(fiber)
      expect(textOf(events)).toBe("The quick ")
      expect(failure?.reason).toBe("deadline")
      expect(secondary.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))
})

describe("Fallback.stream — after partial output", () => {
  const broken = () => Mock.make({ otherwise: Mock.stream(["The quick ", "brown "], { failWith: Mock.errors.overloaded() }) })

  it.effect("default: fails with StreamInterrupted carrying the partial text; the next route is never called", () =>
    Effect.gen(function*() {
      const secondary = Mock.make({ otherwise: Mock.stream(["Something else."]) })
      const chain = yield* Fallback.make({ routes: [route("primary", broken()), route("secondary", secondary)] })
      const { events, failure } = yield* collect(chain.stream(storyRequest))
      expect(tags(events)).toEqual(["Metadata", "TextDelta", "TextDelta"])
      expect(failure?._tag).toBe("AllRoutesFailed")
      expect(failure?.reason).toBe("stopped")
      const last = failure?.lastError
      expect(last?._tag).toBe("StreamInterrupted")
      if (last?._tag === "StreamInterrupted") {
        expect(last.receivedContent).toBe(true)
        expect(last.partialText).toBe("The quick brown ")
      }
      expect(failure?.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "StreamInterrupted"]])
      expect(secondary.calls.length).toBe(0)
    }).pipe(Effect.provide(State)))

  it.effect("restart: re-runs on the next route and tells the consumer with a Restarted event first", () =>
    Effect.gen(function*() {
      const secondary = Mock.make({ otherwise: Mock.stream(["A fresh ", "answer."]) })
      const chain = yield* Fallback.make({
        routes: [route("primary", broken()), route("secondary", secondary)],
        onPartialOutputFailure: "restart"
      })
      const { events, failure } = yield* collect(chain.stream(storyRequest))
      expect(failure).toBeUndefined()
      expect(tags(events)).toEqual([
        "Metadata",
        "TextDelta",
        "TextDelta",
        "Restarted",
        "Metadata",
        "TextDelta",
        "TextDelta",
        "Finish",
        "Completed"
      ])
      const restarted = events[3]
      expect(restarted?._tag === "Restarted" && restarted).toMatchObject({
        from: "primary",
        to: "secondary",
        discardedText: "The quick brown "
      })
      expect(restarted?._tag === "Restarted" && restarted.error._tag).toBe("StreamInterrupted")
      const result = completed(events)
      // The accepted value is the restarted route's own answer, never a splice of both.
      expect(result.value).toBe("A fresh answer.")
      expect(result.degraded).toBe(true)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "StreamInterrupted"], ["secondary", "success"]])
    }).pipe(Effect.provide(State)))

  it.effect("restart as a per-call option: a route failing before content after the restart adds no event of its own", () =>
    Effect.gen(function*() {
      const down = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(503)) })
      const tertiary = Mock.make({ otherwise: Mock.stream(["third"]) })
      const chain = yield* Fallback.make({
        routes: [route("primary", broken()), route("secondary", down, { policy: { retry: false } }), route("tertiary", tertiary)]
      })
      const { events } = yield* collect(chain.stream(storyRequest, { onPartialOutputFailure: "restart" }))
      const restarts = events.filter((e) => e._tag === "Restarted")
      expect(restarts).toHaveLength(1)
      expect(restarts[0]).toMatchObject({ from: "primary", to: "tertiary" })
      expect(textOf(events.slice(events.indexOf(restarts[0]!)))).toBe("third")
      expect(completed(events).attempts.map((a) => a.outcome)).toEqual(["StreamInterrupted", "ServerError", "success"])
    }).pipe(Effect.provide(State)))

  it.effect("restart with no route left fails without a Restarted event and keeps the whole history", () =>
    Effect.gen(function*() {
      const chain = yield* Fallback.make({ routes: [route("only", broken())], onPartialOutputFailure: "restart" })
      const { events, failure } = yield* collect(chain.stream(storyRequest))
      expect(events.some((e) => e._tag === "Restarted")).toBe(false)
      expect(failure?.reason).toBe("exhausted")
      expect(failure?.attempts.map((a) => a.outcome)).toEqual(["StreamInterrupted"])
      expect(yield* DegradedMode.isDegraded).toBe(true)
    }).pipe(Effect.provide(State)))
})

describe("LlmClient.stream", () => {
  it.effect("runs the client's chain", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: Mock.stream(["via ", "the client"]) })
      const { events } = yield* collect(
        LlmClient.stream(storyRequest).pipe(Stream.provideLayer(Layer.orDie(LlmClient.layerWithState({ routes: [route("primary", primary)] }))))
      )
      expect(textOf(events)).toBe("via the client")
      expect(completed(events).route).toBe("primary")
    }))
})

describe("Fallback — passes within the deadline", () => {
  const overloaded = Mock.fail(Mock.errors.overloaded())
  const noRetry = { policy: { retry: false as const } }

  it.effect("every route overloaded once: a second pass after a full-jitter pause answers, within the deadline", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ script: [overloaded], otherwise: Mock.succeed(valid) })
      const secondary = Mock.make({ script: [overloaded], otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, noRetry), route("secondary", secondary, noRetry)],
        deadline: "10 seconds"
      })
      const fiber = yield* Effect.fork(chain.generateObject(Answer, request))
      yield* TestClock.adjust("1 minute")
      const result = yield* Fiber.join(fiber)
      expect(result.route).toBe("primary")
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["primary", "Overloaded"],
        ["secondary", "Overloaded"],
        ["primary", "success"]
      ])
      // The pause is random(0, 500 ms) (first pass backoff, full jitter).
      const pause = primary.calls[1]!.at - secondary.calls[0]!.at
      expect(pause).toBeGreaterThanOrEqual(0)
      expect(pause).toBeLessThanOrEqual(500)
    }).pipe(Effect.provide(State)))

  it.effect("without a deadline the default is one pass: every route failing is final", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ script: [overloaded], otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({ routes: [route("primary", primary, noRetry)] })
      const error = yield* routesFailed(chain.generateObject(Answer, request))
      expect(error.reason).toBe("exhausted")
      expect(primary.calls).toHaveLength(1)
    }).pipe(Effect.provide(State)))

  it.effect("a passes value that is not an integer ≥ 1 is refused where the chain is built (never an endless loop)", () =>
    Effect.gen(function*() {
      for (const passes of [Number.NaN, 0, -3, 1.5, Number.POSITIVE_INFINITY]) {
        const primary = Mock.make({ otherwise: overloaded })
        const error = yield* Effect.flip(Fallback.make({ routes: [route("primary", primary, noRetry)], deadline: "10 seconds", passes }))
        expect(error).toMatchObject({ _tag: "InvalidOptions", component: "Fallback.make", option: "passes" })
        expect(error.message).toBe(`passes must be an integer ≥ 1, got ${String(passes)}`)
        expect(primary.calls).toHaveLength(0)
      }
    }).pipe(Effect.provide(State)))

  it.effect("the pause honours the shortest Retry-After, and a route that failed for good is not tried again", () =>
    Effect.gen(function*() {
      const quota = Mock.make({ otherwise: Mock.fail(Mock.errors.quotaExhausted()) })
      const limited = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(3_000))], otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({
        routes: [route("quota", quota, noRetry), route("limited", limited, noRetry)],
        deadline: "10 seconds"
      })
      const fiber = yield* Effect.fork(chain.generateObject(Answer, request))
      yield* TestClock.adjust("1 minute")
      const result = yield* Fiber.join(fiber)
      expect(result.route).toBe("limited")
      expect(limited.calls.map((c) => c.at)).toEqual([0, 3_000])
      expect(quota.calls).toHaveLength(1)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["quota", "QuotaExhausted"],
        ["limited", "RateLimited"],
        ["quota", "Skipped"],
        ["limited", "success"]
      ])
    }).pipe(Effect.provide(State)))

  it.effect("a pause that would cross the deadline is not taken: the call fails at once", () =>
    Effect.gen(function*() {
      const limited = Mock.make({ script: [Mock.fail(Mock.errors.rateLimited(8_000))], otherwise: Mock.succeed(valid) })
      const chain = yield* Fallback.make({ routes: [route("limited", limited, noRetry)], deadline: "5 seconds" })
      const fiber = yield* Effect.fork(Effect.zip(routesFailed(chain.generateObject(Answer, request)), Clock.currentTimeMillis))
      yield* TestClock.adjust("1 minute")
      const [error, endedAt] = yield* Fiber.join(fiber)
      expect(error.reason).toBe("exhausted")
      expect(endedAt).toBe(0)
      expect(limited.calls).toHaveLength(1)
    }).pipe(Effect.provide(State)))

  it.effect("later passes spend the route's retry budget: an empty budget ends the call", () =>
    Effect.gen(function*() {
      const primary = Mock.make({ otherwise: overloaded })
      const chain = yield* Fallback.make({
        routes: [route("primary", primary, { policy: { retry: { maxAttempts: 1 }, budget: { ratio: 0, minPerSecond: 0 } } })],
        deadline: "10 seconds",
        passes: 3
      })
      const fiber = yield* Effect.fork(routesFailed(chain.generateObject(Answer, request)))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error.reason).toBe("exhausted")
      expect(primary.calls).toHaveLength(1)
      expect(error.attempts.map((a) => a.outcome)).toEqual(["Overloaded", "Skipped"])
    }).pipe(Effect.provide(State)))
})

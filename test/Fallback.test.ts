import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as fc from "fast-check"
import * as DegradedMode from "../src/DegradedMode.js"
import * as Fallback from "../src/Fallback.js"
import * as Policy from "../src/Policy.js"
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
      const error = yield* Effect.flip(failing.generateObject(Answer, request))
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
      const error = yield* Effect.flip(chain.generateObject(Answer, request, {
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

describe("Fallback — properties", () => {
  const outcome = fc.constantFrom(
    "valid",
    "violating",
    "garbage",
    "overloaded",
    "server",
    "rateLimited",
    "timeout",
    "badRequest",
    "hang"
  )
  const stepOf = (o: string): Mock.Step => {
    switch (o) {
      case "valid":
        return Mock.succeed(valid, { delay: "300 millis" })
      case "violating":
        return Mock.succeed(violating)
      case "garbage":
        return Mock.succeed("{oops")
      case "overloaded":
        return Mock.fail(Mock.errors.overloaded())
      case "server":
        return Mock.fail(Mock.errors.serverError(), { delay: "1 second" })
      case "rateLimited":
        return Mock.fail(Mock.errors.rateLimited(1500))
      case "timeout":
        return Mock.fail(Mock.errors.timeout("first-token"), { delay: "2 seconds" })
      case "badRequest":
        return Mock.fail(Mock.errors.badRequest())
      default:
        return Mock.hang
    }
  }

  it.effect("whatever the routes do: an accepted value decodes, attempts stay bounded, time stays within the deadline", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(outcome, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 0, max: 1 }),
          async (scripts, maxAttempts, repairAttempts) => {
            const program = Effect.gen(function*() {
              const mocks = scripts.map((script) => Mock.make({ script: script.map(stepOf), otherwise: Mock.fail(Mock.errors.overloaded()) }))
              const chain = yield* Fallback.make({
                routes: mocks.map((mock, i) =>
                  route(`r${i}`, mock, { policy: { retry: { maxAttempts, jitter: "none", base: "200 millis" }, breaker: false } })
                ),
                deadline: "20 seconds",
                repairAttempts
              })
              const fiber = yield* Effect.fork(Effect.either(chain.generateObject(Answer, request)))
              yield* TestClock.adjust("1 minute")
              const outcome = yield* Fiber.join(fiber)
              const calls = mocks.reduce((n, m) => n + m.calls.length, 0)
              expect(calls).toBeLessThanOrEqual(mocks.length * (maxAttempts + repairAttempts))
              if (outcome._tag === "Right") {
                expect(Schema.is(Answer)(outcome.right.value)).toBe(true)
                expect(outcome.right.durationMs).toBeLessThanOrEqual(20_000)
              } else {
                expect(outcome.left._tag).toBe("AllRoutesFailed")
              }
              const lastCall = Math.max(0, ...mocks.flatMap((m) => m.calls.map((c) => c.at)))
              expect(lastCall).toBeLessThanOrEqual(20_000)
            })
            await Effect.runPromise(program.pipe(Effect.provide(State), Effect.provide(TestContext.TestContext)))
          }
        ),
        { numRuns: 60, seed: 20261122 }
      )
    ))
})

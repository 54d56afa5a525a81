/**
 * Each rule lives once, and these properties hold it to that:
 * - the chain's `generate` and `stream` are one walk: random outcome sequences on random chains give
 *   the same route decisions, the same attempt history, the same result and the same end time;
 * - `Policy`'s fast path and its layered path (taken when spans are on) are one semantics: the same
 *   random outcome sequences give the same results, histories and times, for generate and stream.
 * Time is TestClock; randomness (jitter, pass backoff) is Effect's seeded TestRandom.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as fc from "fast-check"
import * as DegradedMode from "../../src/DegradedMode.js"
import type { AllRoutesFailed, AttemptRecord } from "../../src/Errors.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest, StreamEvent } from "../../src/Provider.js"
import * as Mock from "../../src/testing/MockProvider.js"

const State = Layer.merge(Policy.layerState, DegradedMode.layer)
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Tell me." }], maxTokens: 100 }

/** What a provider may do with one call; answers come whole (their text and end in one chunk). */
const steps: ReadonlyArray<readonly [string, Mock.Step]> = [
  ["ok", Mock.succeed("a fine answer")],
  ["overloaded", Mock.fail(Mock.errors.overloaded())],
  ["overloaded-retry-after", Mock.fail(Mock.errors.overloaded(700))],
  ["server", Mock.fail(Mock.errors.serverError(503))],
  ["rate-limited", Mock.fail(Mock.errors.rateLimited(1_500))],
  ["quota", Mock.fail(Mock.errors.quotaExhausted())],
  ["bad-request", Mock.fail(Mock.errors.badRequest())],
  ["timeout", Mock.fail(Mock.errors.timeout("headers"))],
  ["connection", Mock.fail(Mock.errors.connection("reset"))],
  // Not a round number: an answer landing on the very instant a bound fires is a tie either may win.
  ["slow-ok", Mock.succeed("a slow answer", { delay: "2345 millis" })],
  ["empty", Mock.succeed("")],
  ["truncated", Mock.succeed("cut sh", { finishReason: "length" })],
  ["filtered", Mock.succeed("", { finishReason: "content_filter" })]
]
const arbStep = fc.constantFrom(...steps.map(([name]) => name))
const stepOf = (name: string): Mock.Step => steps.find(([n]) => n === name)![1]

const arbChain = fc.record({
  scripts: fc.array(fc.array(arbStep, { maxLength: 5 }), { minLength: 1, maxLength: 3 }),
  otherwise: arbStep,
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  passes: fc.integer({ min: 1, max: 3 }),
  deadlineSeconds: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
  rerouteOnContentFilter: fc.boolean()
})
type ChainCase = typeof arbChain extends fc.Arbitrary<infer A> ? A : never

/** What a call did, in the terms both drivers share. */
interface Observed {
  readonly outcome: unknown
  readonly calls: ReadonlyArray<number>
  readonly endedAt: number
}

const historyOf = (attempts: ReadonlyArray<AttemptRecord>) =>
  attempts.map((a) => [a.route, a.attempt, a.outcome, Math.round(a.delayMs)] as const)

/** A chain stream's result (its `Completed` event) or failure. */
const streamed = (events: Stream.Stream<Fallback.ChainStreamEvent, AllRoutesFailed>) =>
  Effect.either(Effect.flatMap(Stream.runCollect(events), (chunk) => {
    const last = Chunk.last(chunk)
    return last._tag === "Some" && last.value._tag === "Completed"
      ? Effect.succeed(last.value.result)
      : Effect.dieMessage("a chain stream ended without Completed")
  }))

const runChain = (c: ChainCase, mode: "generate" | "stream"): Promise<Observed> =>
  Effect.runPromise(Effect.gen(function*() {
    const mocks = c.scripts.map((script) => Mock.make({ script: script.map(stepOf), otherwise: stepOf(c.otherwise) }))
    const chain = yield* Fallback.make({
      routes: mocks.map((provider, i) => ({
        name: `r${i}`,
        provider,
        model: `m${i}`,
        policy: { retry: { maxAttempts: c.maxAttempts, jitter: "none", base: "100 millis" } }
      })),
      passes: c.passes,
      rerouteOnContentFilter: c.rerouteOnContentFilter,
      ...(c.deadlineSeconds !== undefined ? { deadline: `${c.deadlineSeconds} seconds` } : {})
    })
    const call = mode === "generate" ? Effect.either(chain.generate(request)) : streamed(chain.stream(request))
    // The same seed for both drivers: a pause between passes draws its full jitter from it.
    const fiber = yield* Effect.fork(Effect.withRandom(Effect.zip(call, Clock.currentTimeMillis), Random.make("one walk")))
    yield* TestClock.adjust("10 minutes")
    const [outcome, endedAt] = yield* Fiber.join(fiber)
    return {
      outcome: Either.match(outcome, {
        onRight: (result) => ({ route: result.route, value: result.value, degraded: result.degraded, history: historyOf(result.attempts) }),
        onLeft: (error) => ({ reason: error.reason, lastError: error.lastError?._tag, history: historyOf(error.attempts) })
      }),
      calls: mocks.map((mock) => mock.calls.length),
      endedAt
    }
  }).pipe(Effect.provide(State), Effect.provide(TestContext.TestContext)))

describe("the chain's drivers are one walk", () => {
  it("generate and stream: the same decisions, history, result and end time on random outcome sequences", async () => {
    await fc.assert(
      fc.asyncProperty(arbChain, async (c) => {
        expect(await runChain(c, "stream")).toEqual(await runChain(c, "generate"))
      }),
      { numRuns: 150, seed: 20261206 }
    )
  })
})

/** A policy-wrapped provider's observable behaviour on one call. */
const runPolicy = (script: ReadonlyArray<string>, otherwise: string, maxAttempts: number, tracing: "always" | "never", mode: "generate" | "stream") =>
  Effect.runPromise(Effect.gen(function*() {
    const mock = Mock.make({ script: script.map(stepOf), otherwise: stepOf(otherwise) })
    const records: Array<AttemptRecord> = []
    const route = yield* Policy.route({ tracing, retry: { maxAttempts, jitter: "none", base: "100 millis" } }, mock, "route")
    const context: Policy.CallContext = { observe: (record) => Effect.sync(() => void records.push(record)) }
    const routeRequest: GenerateRequest = { ...request, model: "m" }
    const call = mode === "generate"
      ? Effect.either(Effect.map(route.generate(routeRequest, context), (response) => response.text))
      : Effect.either(Effect.map(
        Stream.runCollect(route.stream(routeRequest, context)),
        (events) => Chunk.toReadonlyArray(events).flatMap((e: StreamEvent) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
      ))
    const fiber = yield* Effect.fork(Effect.zip(call, Clock.currentTimeMillis))
    yield* TestClock.adjust("10 minutes")
    const [outcome, endedAt] = yield* Fiber.join(fiber)
    return {
      outcome: Either.match(outcome, { onRight: (text) => ({ text }), onLeft: (error) => ({ error: error._tag }) }),
      history: historyOf(records),
      calls: mock.calls.length,
      endedAt
    }
  }).pipe(Effect.provide(State), Effect.provide(TestContext.TestContext)))

describe("Policy: the fast path and the layered path are one semantics", () => {
  for (const mode of ["generate", "stream"] as const) {
    it(`${mode}: the same results, histories and times with spans off (fast) and on (layered)`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(arbStep, { maxLength: 5 }), arbStep, fc.integer({ min: 1, max: 4 }), async (script, otherwise, maxAttempts) => {
          expect(await runPolicy(script, otherwise, maxAttempts, "always", mode)).toEqual(
            await runPolicy(script, otherwise, maxAttempts, "never", mode)
          )
        }),
        { numRuns: 100, seed: 20261206 }
      )
    })
  }
})

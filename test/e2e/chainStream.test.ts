/**
 * The one chain walker over real HTTP (ChaosServer, both wire formats, TestClock): a streamed answer
 * the gate rejects falls over like a generated one, the history records what the gate decided, a hung
 * primary hands over to the fallback inside the deadline, and `streamObject` streams a decoded value.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as DegradedMode from "../../src/DegradedMode.js"
import type { AllRoutesFailed, InvalidOptions } from "../../src/Errors.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { awaitSleepUntil, settle } from "../testing/helpers.js"

type Api = "openai" | "anthropic"
const apis: ReadonlyArray<Api> = ["openai", "anthropic"]

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Tell me a story." }], maxTokens: 200 }
const PRIMARY_TEXT = "Once upon a time the primary wrote this."
const SECONDARY_TEXT = "The secondary tells it instead."

const server = (api: Api, primary: Partial<Scenario.Route>, secondary: Partial<Scenario.Route> = {}) =>
  ChaosServer.make({
    scenario: {
      routes: [
        { name: "primary", api, model: "primary-model", content: { kind: "text", text: PRIMARY_TEXT }, ...primary },
        { name: "secondary", api, model: "secondary-model", content: { kind: "text", text: SECONDARY_TEXT }, ...secondary }
      ]
    }
  })

const chainRoute = (handle: ChaosServer.ChaosServerHandle, name: string, api: Api) =>
  Effect.map(
    api === "openai"
      ? OpenAi.make({ apiKey: Redacted.make("sk-e2e-chain-stream"), baseUrl: handle.openAiBaseUrl })
      : Anthropic.make({ apiKey: Redacted.make("sk-ant-e2e-chain-stream"), baseUrl: handle.anthropicBaseUrl }),
    (provider): Fallback.Route => ({ name, provider, model: `${name}-model`, policy: { retry: { jitter: "none", base: "100 millis" } } })
  )

const twoRoutes = (handle: ChaosServer.ChaosServerHandle, api: Api) =>
  Effect.all([chainRoute(handle, "primary", api), chainRoute(handle, "secondary", api)])

/** Runs a chain stream to its end: every event, and the failure if any. */
const collect = <E, A>(stream: Stream.Stream<E, A>) =>
  Effect.map(
    Effect.either(Stream.runCollect(Stream.either(stream).pipe(Stream.takeUntil((e) => e._tag === "Left")))),
    (outcome) => {
      const all = outcome._tag === "Right" ? Chunk.toReadonlyArray(outcome.right) : []
      const events = all.flatMap((e) => (e._tag === "Right" ? [e.right] : []))
      const failure = all.flatMap((e) => (e._tag === "Left" ? [e.left] : []))[0]
      return { events, failure }
    }
  )

/** Waits for the fiber, moving the clock 10 ms at a time while it is parked (the server's delta gaps). */
const settleAdvancing = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 2_000; i++) {
      const exit = yield* Fiber.poll(fiber)
      if (Option.isSome(exit)) return yield* exit.value
      yield* Effect.yieldNow()
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      yield* TestClock.adjust("10 millis")
    }
    return yield* Effect.dieMessage("the call did not finish")
  })

const textAfterLastRestart = (events: ReadonlyArray<Fallback.ChainStreamEvent<unknown> | Fallback.PartialObject>) => {
  const restart = events.map((e) => e._tag).lastIndexOf("Restarted")
  return events.slice(restart + 1).flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
}

/** Faults that end a primary stream without an answer the gate accepts, and what the history must say. */
const rejectedStreams: ReadonlyArray<{
  readonly name: string
  readonly fault: Scenario.Fault
  readonly outcome: string
  /** No content reaches the consumer before the failure, whatever the chunking. */
  readonly beforeContent: boolean
}> = [
  { name: "truncated (max length)", fault: { kind: "truncated" }, outcome: "InvalidOutput", beforeContent: false },
  { name: "truncated with no text", fault: { kind: "truncated", fraction: 0 }, outcome: "InvalidOutput", beforeContent: true },
  { name: "empty", fault: { kind: "empty_content" }, outcome: "InvalidOutput", beforeContent: true },
  { name: "content-filtered", fault: { kind: "content_filter" }, outcome: "ContentFiltered", beforeContent: true },
  { name: "content-filtered mid-answer", fault: { kind: "content_filter", fraction: 0.5 }, outcome: "ContentFiltered", beforeContent: false },
  { name: "in-stream error event before content", fault: { kind: "stream_error", afterDeltas: 0, error: "overloaded" }, outcome: "Overloaded", beforeContent: true },
  // Content reached the retry loop first, so the route's attempt is a cut stream carrying the partial text.
  { name: "in-stream error event after content", fault: { kind: "stream_error", afterDeltas: 1, error: "overloaded" }, outcome: "StreamInterrupted", beforeContent: false }
]

describe("Fallback.stream over HTTP: a rejected stream falls over", () => {
  for (const api of apis) {
    for (const { beforeContent, fault, name, outcome } of rejectedStreams) {
      it.scoped(`${api}: primary ${name} → the secondary's answer; the history records ${outcome}`, () =>
        Effect.gen(function*() {
          const handle = yield* server(api, { script: [fault] })
          // Content filters fall over only when asked to (a refusal is usually the prompt's fault).
          const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api), onPartialOutputFailure: "restart", rerouteOnContentFilter: true })
          const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
          expect(failure).toBeUndefined()
          expect(textAfterLastRestart(events)).toBe(SECONDARY_TEXT)
          const completed = events.at(-1)
          if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
          expect(completed.result.route).toBe("secondary")
          expect(completed.result.value).toBe(SECONDARY_TEXT)
          expect(completed.result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", outcome], ["secondary", "success"]])
          // Output of the primary that reached the consumer is announced as discarded, never spliced.
          const restarts = events.filter((e) => e._tag === "Restarted")
          if (beforeContent) expect(restarts).toEqual([])
          for (const restart of restarts) expect(restart).toMatchObject({ from: "primary", to: "secondary" })
          expect((yield* handle.stats).log.map((entry) => entry.route)).toEqual(["primary", "secondary"])
        }).pipe(Effect.provide(Env)))

      if (beforeContent) {
        it.scoped(`${api}: primary ${name} under the default mode → the secondary answers with nothing to discard`, () =>
          Effect.gen(function*() {
            const handle = yield* server(api, { script: [fault] })
            const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api), rerouteOnContentFilter: true })
            const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
            expect(failure).toBeUndefined()
            expect(events.map((e) => e._tag)).not.toContain("Restarted")
            expect(textAfterLastRestart(events)).toBe(SECONDARY_TEXT)
            const completed = events.at(-1)
            if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
            expect(completed.result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", outcome], ["secondary", "success"]])
          }).pipe(Effect.provide(Env)))
      }
    }

    it.scoped(`${api}: a rejected content filter stops the chain by default, recorded as ContentFiltered (not success)`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, { script: [{ kind: "content_filter" }] })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api) })
        const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
        expect(events.filter((e) => e._tag === "Completed")).toEqual([])
        expect(failure?.reason).toBe("stopped")
        expect(failure?.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "ContentFiltered"]])
      }).pipe(Effect.provide(Env)))
  }
})

describe("the deadline's hand-over over HTTP: a hung primary leaves the fallback its share", () => {
  for (const api of apis) {
    it.scoped(`${api}: generate under a 30 s deadline → the secondary answers at 15 s`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, { script: [{ kind: "hang_before_headers" }] })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api), deadline: "30 seconds" })
        const fiber = yield* Effect.fork(chain.generate(request))
        yield* awaitSleepUntil(15_000)
        yield* TestClock.adjust("15 seconds")
        const result = yield* settle(fiber)
        expect(result.route).toBe("secondary")
        expect(result.value).toBe(SECONDARY_TEXT)
        expect(result.durationMs).toBe(15_000)
        expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "Timeout"], ["secondary", "success"]])
      }).pipe(Effect.provide(Env)))

    it.scoped(`${api}: stream under a 30 s deadline → the secondary streams from 15 s`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, { script: [{ kind: "hang_before_headers" }] })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api), deadline: "30 seconds" })
        const fiber = yield* Effect.fork(collect(chain.stream(request)))
        yield* awaitSleepUntil(15_000)
        yield* TestClock.adjust("15 seconds")
        const { events, failure } = yield* settle(fiber)
        expect(failure).toBeUndefined()
        const completed = events.at(-1)
        if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
        expect(completed.result.durationMs).toBe(15_000)
        expect(completed.result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "Timeout"], ["secondary", "success"]])
      }).pipe(Effect.provide(Env)))
  }
})

const City = Schema.Struct({ city: Schema.String, population: Schema.Number })
const paris = { city: "Paris", population: 2_100_000 }

describe("Fallback.streamObject over HTTP", () => {
  for (const api of apis) {
    it.scoped(`${api}: text deltas, previews, then Completed with the decoded value`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, { content: { kind: "json", value: paris } })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api) })
        const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.streamObject(City, request))))
        expect(failure).toBeUndefined()
        const text = events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
        expect(JSON.parse(text)).toEqual(paris)
        const previews = events.flatMap((e) => (e._tag === "PartialObject" ? [e.value] : []))
        expect(previews.length).toBeGreaterThan(0)
        expect(previews.at(-1)).toEqual(paris)
        const completed = events.at(-1)
        if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
        expect(completed.result.value).toEqual(paris)
        expect(completed.result.route).toBe("primary")
        // The request asked for structured output like generateObject's.
        const sent = (yield* handle.stats).log[0]
        expect(sent?.route).toBe("primary")
      }).pipe(Effect.provide(Env)))

    it.scoped(`${api}: an answer that does not decode, with nothing delivered, falls over to the next route`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, { script: [{ kind: "empty_content" }] }, { content: { kind: "json", value: paris } })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api) })
        const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.streamObject(City, request))))
        expect(failure).toBeUndefined()
        const completed = events.at(-1)
        if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
        expect(completed.result.value).toEqual(paris)
        expect(completed.result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "InvalidOutput"], ["secondary", "success"]])
      }).pipe(Effect.provide(Env)))

    // The primary's deltas come 10 ms apart, so its text reaches the consumer before its end is judged.
    const offSchemaAfterText = { content: { kind: "json", value: { city: "Paris", population: "lots" } }, deltaDelayMs: 10 } as const

    it.scoped(`${api}: an off-schema answer after its text was delivered fails with the partial output (default mode)`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, offSchemaAfterText, { content: { kind: "json", value: paris } })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api) })
        const { events, failure } = yield* settleAdvancing(yield* Effect.fork(collect(chain.streamObject(City, request))))
        expect(events.some((e) => e._tag === "TextDelta")).toBe(true)
        const error = failure as AllRoutesFailed | InvalidOptions | undefined
        if (error?._tag !== "AllRoutesFailed") return expect.unreachable("expected AllRoutesFailed")
        expect(error.reason).toBe("stopped")
        expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "InvalidOutput"]])
        // The decode issues are named in the chain's message, not only on lastError.
        expect(error.message).toContain("decode issues: primary:")
        expect(error.message).toContain("population")
        expect((yield* handle.stats).log.map((entry) => entry.route)).toEqual(["primary"])
      }).pipe(Effect.provide(Env)))

    it.scoped(`${api}: the same answer in restart mode → Restarted, then the secondary's decoded value`, () =>
      Effect.gen(function*() {
        const handle = yield* server(api, offSchemaAfterText, { content: { kind: "json", value: paris } })
        const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, api), onPartialOutputFailure: "restart" })
        const { events, failure } = yield* settleAdvancing(yield* Effect.fork(collect(chain.streamObject(City, request))))
        expect(failure).toBeUndefined()
        const restarts = events.filter((e) => e._tag === "Restarted")
        expect(restarts).toHaveLength(1)
        expect(restarts[0]).toMatchObject({ from: "primary", to: "secondary" })
        expect(JSON.parse(textAfterLastRestart(events))).toEqual(paris)
        const completed = events.at(-1)
        if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
        expect(completed.result.value).toEqual(paris)
        expect(completed.result.degraded).toBe(true)
      }).pipe(Effect.provide(Env)))
  }

  it.effect("a schema with no JSON Schema fails the stream with InvalidOptions, before any request", () =>
    Effect.gen(function*() {
      const handle = yield* server("openai", {})
      const chain = yield* Fallback.make({ routes: yield* twoRoutes(handle, "openai") })
      const Opaque = Schema.declare((u: unknown): u is Date => u instanceof Date)
      const { failure } = yield* collect(chain.streamObject(Opaque, request))
      expect(failure).toMatchObject({ _tag: "InvalidOptions", component: "Fallback.generateObject", option: "schema" })
      expect((yield* handle.stats).log).toEqual([])
      const generated = yield* Effect.flip(chain.generateObject(Opaque, request))
      expect(generated._tag).toBe("InvalidOptions")
      expect(generated.message).toContain("no JSON Schema")
    }).pipe(Effect.scoped, Effect.provide(Env)))
})

describe("a chain across three wire formats over HTTP", () => {
  it.scoped("Responses primary overloaded, Chat secondary truncated, Anthropic tertiary answers: generate and stream", () =>
    Effect.gen(function*() {
      const handle = yield* ChaosServer.make({
        scenario: {
          routes: [
            { name: "primary", api: "responses", model: "primary-model", script: [{ kind: "overloaded" }, { kind: "overloaded" }] },
            { name: "secondary", api: "openai", model: "secondary-model", script: [{ kind: "truncated" }, { kind: "truncated" }] },
            { name: "tertiary", api: "anthropic", model: "tertiary-model", content: { kind: "text", text: SECONDARY_TEXT } }
          ]
        }
      })
      const key = Redacted.make("sk-e2e-three-formats")
      const routes: ReadonlyArray<Fallback.Route> = [
        { name: "primary", model: "primary-model", provider: yield* OpenAiResponses.make({ apiKey: key, baseUrl: handle.openAiBaseUrl }) },
        { name: "secondary", model: "secondary-model", provider: yield* OpenAi.make({ apiKey: key, baseUrl: handle.openAiBaseUrl }) },
        { name: "tertiary", model: "tertiary-model", provider: yield* Anthropic.make({ apiKey: key, baseUrl: handle.anthropicBaseUrl }) }
      ]
      const chain = yield* Fallback.make({ routes, onPartialOutputFailure: "restart" })
      const generated = yield* settle(yield* Effect.fork(chain.generate(request)))
      expect(generated.value).toBe(SECONDARY_TEXT)
      expect(generated.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["primary", "Overloaded"],
        ["secondary", "InvalidOutput"],
        ["tertiary", "success"]
      ])
      const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
      expect(failure).toBeUndefined()
      expect(textAfterLastRestart(events)).toBe(SECONDARY_TEXT)
      const completed = events.at(-1)
      if (completed?._tag !== "Completed") return expect.unreachable("the stream must end with Completed")
      expect(completed.result.attempts.map((a) => [a.route, a.outcome])).toEqual([
        ["primary", "Overloaded"],
        ["secondary", "InvalidOutput"],
        ["tertiary", "success"]
      ])
    }).pipe(Effect.provide(Env)))
})

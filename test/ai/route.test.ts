/**
 * @effect/ai models as routes of the chain, over real HTTP: @effect/ai-openai (Responses,
 * `POST /v1/responses`) and @effect/ai-anthropic (Messages) against the ChaosServer, on TestClock. The
 * route's policy is the only retry layer, and the server's log proves it: one request per attempt.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Ai from "../../src/Ai.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import type { StreamEvent } from "../../src/Provider.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import { awaitSleepUntil, routesFailed, settle } from "../testing/helpers.js"
import { type AiApi, aiModel, chaosApi, collectEither, otherApi, servedBy } from "./helpers.js"

const Env = Layer.merge(Policy.layerState, DegradedMode.layer)

const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Say hello." }], maxTokens: 200 }
const HELLO = "Hello from the primary model."

/** A scenario route for @effect/ai's wire of `api`, matched by its model id. */
const chaosRoute = (name: string, api: AiApi, extra: Partial<Scenario.Route> = {}): Scenario.Route => ({
  name,
  api: chaosApi(api),
  model: `${name}-model`,
  content: { kind: "text", text: name === "primary" ? HELLO : `Hello from the ${name} model.` },
  ...extra
})

/** A chain route whose provider is @effect/ai's own model for `api`. */
const bridgedRoute = (server: ChaosServer.ChaosServerHandle, name: string, api: AiApi) =>
  Ai.route({
    name,
    model: `${name}-model`,
    languageModel: aiModel(api, server, `${name}-model`),
    policy: { retry: { jitter: "none", base: "100 millis" } }
  })

const twoRouteChain = (server: ChaosServer.ChaosServerHandle, api: AiApi, options: Partial<Fallback.FallbackOptions> = {}) =>
  Effect.gen(function*() {
    const routes = [yield* bridgedRoute(server, "primary", api), yield* bridgedRoute(server, "secondary", otherApi(api))]
    return yield* Fallback.make({ routes, ...options })
  })

for (const api of ["openai", "anthropic"] as const) {
  describe(`@effect/ai-${api} as a route`, () => {
    it.scoped("the provider label is the model's ProviderName", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({ scenario: { routes: [chaosRoute("primary", api)] } })
        const provider = yield* Ai.provider(aiModel(api, server, "primary-model"))
        expect(provider.name).toBe(api)
        const response = yield* settle(yield* Effect.fork(provider.generate({ ...request, model: "primary-model" })))
        expect([response.provider, response.model, response.text, response.finishReason]).toEqual([api, "primary-model", HELLO, "stop"])
        expect(response.usage.outputTokens).toBeGreaterThan(0)
        expect(response.usage.totalTokens).toBe(response.usage.inputTokens + response.usage.outputTokens)
      }))

    it.scoped("429 with retry-after 2 s → the route's policy waits exactly 2 s and the primary answers; one request per attempt", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: {
            routes: [chaosRoute("primary", api, { script: [{ kind: "rate_limit", retryAfterSeconds: 2 }] }), chaosRoute("secondary", otherApi(api))]
          }
        })
        const chain = yield* twoRouteChain(server, api, { deadline: "10 seconds" })
        const fiber = yield* Effect.fork(chain.generate(request))
        yield* awaitSleepUntil(2_000)
        // @effect/ai's client did not retry on its own: the server has seen exactly one request.
        expect(yield* servedBy(server)).toEqual([["primary", 0, 429]])
        yield* TestClock.adjust("2 seconds")
        const result = yield* settle(fiber)
        expect([result.route, result.degraded, result.value]).toEqual(["primary", false, HELLO])
        expect(result.attempts.map((a) => [a.route, a.attempt, a.outcome, a.status, a.delayMs])).toEqual([
          ["primary", 1, "RateLimited", 429, 0],
          ["primary", 2, "success", undefined, 2000]
        ])
        expect(result.attempts[0]!.requestId).toMatch(/^req_/)
        expect(yield* servedBy(server)).toEqual([["primary", 0, 429], ["primary", 2000, 200]])
      }).pipe(Effect.provide(Env)))

    it.scoped("529 → Overloaded → the other route answers at once, without a second call to the primary", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "overloaded" }] }), chaosRoute("secondary", otherApi(api))] }
        })
        const chain = yield* twoRouteChain(server, api)
        const result = yield* settle(yield* Effect.fork(chain.generate(request)))
        expect([result.route, result.degraded]).toEqual(["secondary", true])
        expect(result.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([
          ["primary", "Overloaded", 529],
          ["secondary", "success", undefined]
        ])
        expect(yield* Clock.currentTimeMillis).toBe(0)
        expect(yield* servedBy(server)).toEqual([["primary", 0, 529], ["secondary", 0, 200]])
      }).pipe(Effect.provide(Env)))

    it.scoped("spent quota → QuotaExhausted: the other route answers at once; alone, the call stops without a retry or a wait", () =>
      Effect.gen(function*() {
        const scenario = (routes: ReadonlyArray<Scenario.Route>): Scenario.Scenario => ({ routes })
        // The primary would answer a second call: only the classification keeps it from being asked.
        const quotaPrimary = chaosRoute("primary", api, { script: [{ kind: "insufficient_quota" }] })
        const server = yield* ChaosServer.make({ scenario: scenario([quotaPrimary, chaosRoute("secondary", otherApi(api))]) })
        const chain = yield* twoRouteChain(server, api)
        const result = yield* settle(yield* Effect.fork(chain.generate(request)))
        expect(result.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([
          ["primary", "QuotaExhausted", api === "openai" ? 429 : 400],
          ["secondary", "success", undefined]
        ])
        expect(yield* servedBy(server)).toEqual([["primary", 0, api === "openai" ? 429 : 400], ["secondary", 0, 200]])

        yield* server.setScenario(scenario([quotaPrimary]))
        yield* server.reset
        const alone = yield* Fallback.make({ routes: [yield* bridgedRoute(server, "primary", api)], deadline: "30 seconds" })
        const failure = yield* settle(yield* Effect.fork(routesFailed(alone.generate(request))))
        expect(failure.lastError?._tag).toBe("QuotaExhausted")
        expect(failure.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "QuotaExhausted"]])
        expect((yield* server.stats).total).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)
      }).pipe(Effect.provide(Env)))

    it.scoped("an error inside the 200 stream fails the route's stream with the typed error (@effect/ai alone succeeds)", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "stream_error", afterDeltas: 1 }, { kind: "stream_error", afterDeltas: 1 }] })] }
        })
        const model = aiModel(api, server, "primary-model")
        // Plain @effect/ai: the error arrives as a part and the stream ends successfully.
        const plain = yield* settle(yield* Effect.fork(collectEither(LanguageModel.streamText({ prompt: "Say hello." }).pipe(Stream.provideLayer(model)))))
        expect(plain.failure).toBeUndefined()
        expect(plain.elements.some((part) => part.type === "error")).toBe(true)
        // As a route: the same bytes fail the stream with Overloaded, after the first delta.
        const provider = yield* Ai.provider(model)
        const bridged = yield* settle(yield* Effect.fork(collectEither(provider.stream({ ...request, model: "primary-model" }))))
        expect(bridged.elements.map((e) => e._tag)).toEqual(["Metadata", "TextDelta"])
        expect(bridged.failure).toMatchObject({ _tag: "Overloaded", provider: api, model: "primary-model" })
        expect(bridged.failure?.status).toBeUndefined()
      }))

    it.scoped("an in-stream overload before the first token → the chain streams the other route; history recorded", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "stream_error", afterDeltas: 0 }] }), chaosRoute("secondary", otherApi(api))] }
        })
        const chain = yield* twoRouteChain(server, api)
        const { elements, failure } = yield* settle(yield* Effect.fork(collectEither(chain.stream(request))))
        expect(failure).toBeUndefined()
        expect(elements.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")).toBe("Hello from the secondary model.")
        const last = elements[elements.length - 1]
        expect(last?._tag === "Completed" && [last.result.route, last.result.degraded]).toEqual(["secondary", true])
        expect(last?._tag === "Completed" && last.result.attempts.map((a) => [a.route, a.outcome])).toEqual([
          ["primary", "Overloaded"],
          ["secondary", "success"]
        ])
      }).pipe(Effect.provide(Env)))

    it.scoped("a stream cut without its terminator → StreamInterrupted with the partial text, never a success", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "stream_cut", afterDeltas: 2 }] })] }
        })
        const provider = yield* Ai.provider(aiModel(api, server, "primary-model"))
        const { elements, failure } = yield* settle(yield* Effect.fork(collectEither(provider.stream({ ...request, model: "primary-model" }))))
        const partial = elements.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")
        expect(partial.length).toBeGreaterThan(0)
        expect(HELLO.startsWith(partial)).toBe(true)
        expect(failure?._tag === "StreamInterrupted" && [failure.receivedContent, failure.partialText]).toEqual([true, partial])
      }))

    it.scoped("a connection reset → ConnectionError{reset}, retried after the route's backoff, then answered", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "connection_reset" }] }), chaosRoute("secondary", otherApi(api))] }
        })
        const chain = yield* twoRouteChain(server, api)
        const fiber = yield* Effect.fork(chain.generate(request))
        yield* awaitSleepUntil(100)
        yield* TestClock.adjust("100 millis")
        const result = yield* settle(fiber)
        expect(result.route).toBe("primary")
        expect(result.attempts.map((a) => [a.outcome, a.delayMs])).toEqual([["ConnectionError", 0], ["success", 100]])
        expect(result.attempts[0]!.message).toContain("connection reset")
      }).pipe(Effect.provide(Env)))

    it.scoped("TestClock: a hung @effect/ai call is cut by the route's timeout at exactly 5 s; the other route answers", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "hang_before_headers" }] }), chaosRoute("secondary", otherApi(api))] }
        })
        const primary = yield* Ai.route({
          name: "primary",
          model: "primary-model",
          languageModel: aiModel(api, server, "primary-model"),
          policy: { timeouts: { attempt: "5 seconds" } }
        })
        const chain = yield* Fallback.make({ routes: [primary, yield* bridgedRoute(server, "secondary", otherApi(api))] })
        const fiber = yield* Effect.fork(chain.generate(request))
        yield* awaitSleepUntil(5_000)
        yield* TestClock.adjust("5 seconds")
        const result = yield* settle(fiber)
        expect(result.route).toBe("secondary")
        expect(result.attempts.map((a) => [a.route, a.outcome, a.durationMs])).toEqual([["primary", "Timeout", 5000], ["secondary", "success", 0]])
        expect(yield* servedBy(server)).toEqual([["primary", 0, null], ["secondary", 5000, 200]])
      }).pipe(Effect.provide(Env)))

    it.scoped("400 → BadRequest stops the chain; the other route is never called", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [chaosRoute("primary", api, { script: [{ kind: "http_error", status: 400 }] }), chaosRoute("secondary", otherApi(api))] }
        })
        const chain = yield* twoRouteChain(server, api)
        const failure = yield* settle(yield* Effect.fork(routesFailed(chain.generate(request))))
        expect([failure.reason, failure.lastError?._tag, failure.lastError?.status]).toEqual(["stopped", "BadRequest", 400])
        expect((yield* server.stats).byRoute).toEqual({ primary: 1 })
      }).pipe(Effect.provide(Env)))
  })
}

describe("structured output and tools through an @effect/ai route", () => {
  const Greeting = Schema.Struct({ greeting: Schema.String, language: Schema.Literal("en", "fr") })

  for (const api of ["openai", "anthropic"] as const) {
    it.scoped(`generateObject: an answer that is not JSON is judged by the chain's gate and repaired (${api})`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: {
            routes: [
              chaosRoute("primary", api, {
                content: { kind: "json", value: { greeting: "Bonjour", language: "fr" } },
                script: [{ kind: "ok", content: { kind: "text", text: "Sure! Bonjour, in French." } }]
              })
            ]
          }
        })
        const chain = yield* Fallback.make({ routes: [yield* bridgedRoute(server, "primary", api)], repairAttempts: 1 })
        const result = yield* settle(yield* Effect.fork(chain.generateObject(Greeting, request)))
        expect(result.value).toEqual({ greeting: "Bonjour", language: "fr" })
        expect([result.route, result.repaired]).toEqual(["primary", true])
        expect(result.attempts.map((a) => [a.attempt, a.outcome])).toEqual([[1, "InvalidOutput"], [2, "success"]])
      }).pipe(Effect.provide(Env)))

    it.scoped(`tool calls come back as the chain's ToolCalls, generated and streamed (${api})`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: {
            routes: [
              chaosRoute("primary", api, {
                content: { kind: "tool_calls", calls: [{ name: "get_weather", arguments: { city: "Paris", unit: "celsius" } }] }
              })
            ]
          }
        })
        const provider = yield* Ai.provider(aiModel(api, server, "primary-model"))
        const withTools = {
          ...request,
          model: "primary-model",
          tools: [{
            name: "get_weather",
            description: "The weather in a city.",
            parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string" } }, required: ["city"] }
          }]
        }
        const response = yield* settle(yield* Effect.fork(provider.generate(withTools)))
        expect(response.finishReason).toBe("tool_calls")
        expect(response.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([["get_weather", { city: "Paris", unit: "celsius" }]])
        const streamed = yield* settle(yield* Effect.fork(collectEither(provider.stream(withTools))))
        expect(streamed.failure).toBeUndefined()
        expect(streamed.elements.some((e: StreamEvent) => e._tag === "ToolCallDelta")).toBe(true)
        const finish = streamed.elements.find((e): e is Extract<StreamEvent, { _tag: "Finish" }> => e._tag === "Finish")
        expect(finish?.response.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([["get_weather", { city: "Paris", unit: "celsius" }]])
        expect(finish?.response.finishReason).toBe("tool_calls")
      }))
  }
})

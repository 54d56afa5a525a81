/**
 * The chain as an @effect/ai `LanguageModel`, over real HTTP (ChaosServer) on TestClock. The program
 * under test imports only @effect/ai: what changes between runs is the Layer it is given.
 */
import * as AiError from "@effect/ai/AiError"
import * as Chat from "@effect/ai/Chat"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Prompt from "@effect/ai/Prompt"
import type * as Response from "@effect/ai/Response"
import * as Tool from "@effect/ai/Tool"
import * as Toolkit from "@effect/ai/Toolkit"
import { OpenAiTool } from "@effect/ai-openai"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as Ai from "../../src/Ai.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import type * as Fallback from "../../src/Fallback.js"
import type * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { awaitSleepUntil, settle } from "../testing/helpers.js"
import { aiModel, collectEither, openAiModel, servedBy } from "./helpers.js"

// ---------------------------------------------------------------------------------------------------
// The application: @effect/ai only
// ---------------------------------------------------------------------------------------------------

const GetWeather = Tool.make("GetWeather", {
  description: "The current weather in a city.",
  parameters: { city: Schema.String },
  success: Schema.Struct({ city: Schema.String, tempC: Schema.Number })
})
const WeatherToolkit = Toolkit.make(GetWeather)
const WeatherHandlers = WeatherToolkit.toLayer({ GetWeather: ({ city }) => Effect.succeed({ city, tempC: 21 }) })
const Forecast = Schema.Struct({ city: Schema.String, summary: Schema.String })

/** Looks the weather up with a tool, then answers as a `Forecast` — one Chat, two calls. */
const weatherProgram = Effect.gen(function*() {
  const chat = yield* Chat.empty
  const lookup = yield* chat.generateText({
    prompt: "What is the weather in Paris?",
    toolkit: WeatherToolkit,
    toolChoice: { tool: "GetWeather" }
  })
  const forecast = yield* chat.generateObject({ prompt: "Summarise the forecast as JSON.", schema: Forecast, objectName: "forecast" })
  return { lookup, forecast }
})

// ---------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------

const parisForecast = { city: "Paris", summary: "Sunny, 21 °C." }
const ALL_DAY = { fromMs: 0, toMs: 86_400_000 }

/** Which side builds the chain's routes: this library's adapters, or @effect/ai's models (`Ai.route`). */
type RouteKind = "adapters" | "@effect/ai models"

/** Chain routes to the server: primary over OpenAI Responses, secondary over Anthropic Messages. */
const routesTo = (server: ChaosServer.ChaosServerHandle, kind: RouteKind) =>
  Effect.gen(function*() {
    const policy: Policy.PolicyOptions = { retry: { jitter: "none", base: "100 millis" } }
    if (kind === "adapters") {
      const openai = yield* OpenAiResponses.make({ apiKey: Redacted.make("sk-bridge-openai-0123"), baseUrl: server.openAiBaseUrl })
      const anthropic = yield* Anthropic.make({ apiKey: Redacted.make("sk-ant-bridge-0123"), baseUrl: server.anthropicBaseUrl })
      return [
        { name: "primary", provider: openai, model: "primary-model", policy },
        { name: "secondary", provider: anthropic, model: "secondary-model", policy }
      ] satisfies ReadonlyArray<Fallback.Route>
    }
    return [
      yield* Ai.route({ name: "primary", model: "primary-model", languageModel: aiModel("openai", server, "primary-model"), policy }),
      yield* Ai.route({ name: "secondary", model: "secondary-model", languageModel: aiModel("anthropic", server, "secondary-model"), policy })
    ]
  })

/** Our LanguageModel over the server, with its own policy state and DegradedMode. */
/** A 1×1 PNG, and a one-page PDF, as a user would attach them. */
const PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
const PNG_BYTES_LENGTH = Buffer.from(PNG_BASE64, "base64").length
const PDF_BYTES = Buffer.from("%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF")

const resilientModel = (server: ChaosServer.ChaosServerHandle, kind: RouteKind, options: Partial<Ai.LanguageModelOptions> = {}) =>
  Layer.unwrapScoped(Effect.map(routesTo(server, kind), (routes) => Ai.layerWithState({ routes, ...options }))).pipe(
    // The transport lives as long as the layer: the adapters keep using its connection pool.
    Layer.provide(Transport.layer())
  )

const scenario = (primary: Partial<Scenario.Route>, secondary: Partial<Scenario.Route> = {}): Scenario.Scenario => ({
  routes: [
    { name: "primary", api: "responses", model: "primary-model", content: { kind: "text", text: "Hello from the primary." }, ...primary },
    { name: "secondary", api: "anthropic", model: "secondary-model", content: { kind: "text", text: "Hello from the secondary." }, ...secondary }
  ]
})

const resilience = (source: Parameters<typeof Ai.resilienceOf>[0]) =>
  Option.getOrThrowWith(Ai.resilienceOf(source), () => new Error("the answer carries no chain outcome"))

// ---------------------------------------------------------------------------------------------------

describe("an unchanged @effect/ai program over Ai.layer", () => {
  it.scoped("with @effect/ai's own OpenAI model, the primary outage fails the program (the baseline)", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ outage: ALL_DAY }) })
      const error = yield* settle(yield* Effect.fork(Effect.flip(weatherProgram.pipe(Effect.provide(openAiModel(server, "primary-model"))))))
      expect(error._tag === "HttpResponseError" && [error.module, error.response.status]).toEqual(["OpenAiClient", 503])
      expect(yield* servedBy(server)).toEqual([["primary", 0, 503]])
    }).pipe(Effect.provide(WeatherHandlers)))

  for (const kind of ["adapters", "@effect/ai models"] as const) {
    it.scoped(`generateText with a Toolkit tool, then generateObject: answered by the fallback through the outage (routes: ${kind})`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: scenario({ outage: ALL_DAY }, { content: { kind: "json", value: parisForecast } })
        })
        const { forecast, lookup } = yield* settle(yield* Effect.fork(weatherProgram.pipe(Effect.provide(resilientModel(server, kind)))))

        // The tool call was answered by the fallback and resolved by the program's own handler.
        expect(lookup.finishReason).toBe("tool-calls")
        expect(lookup.toolCalls.map((call) => [call.name, call.params])).toEqual([["GetWeather", { city: "Paris" }]])
        expect(lookup.toolResults.map((result) => result.result)).toEqual([{ city: "Paris", tempC: 21 }])
        expect(forecast.value).toEqual(parisForecast)
        expect(forecast.usage.outputTokens).toBeGreaterThan(0)

        // Route, degraded flag and history ride on each answer.
        for (const answer of [lookup, forecast]) {
          const outcome = resilience(answer)
          expect([outcome.route, outcome.degraded, outcome.provider]).toEqual(["secondary", true, "anthropic"])
          expect(outcome.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "Overloaded"], ["secondary", "success"]])
        }
        expect(yield* servedBy(server)).toEqual([["primary", 0, 503], ["secondary", 0, 200], ["primary", 0, 503], ["secondary", 0, 200]])
      }).pipe(Effect.provide(WeatherHandlers)))
  }

  it.scoped("the degraded flag is also published to DegradedMode, which layerWithState exposes", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ outage: ALL_DAY }) })
      const state = yield* settle(yield* Effect.fork(
        Effect.zipRight(
          LanguageModel.generateText({ prompt: "Say hello." }),
          Effect.flatMap(DegradedMode.DegradedMode, SubscriptionRef.get)
        ).pipe(Effect.provide(resilientModel(server, "adapters")))
      ))
      expect(state).toMatchObject({ degraded: true, route: "secondary" })
    }))

  it.scoped("across calls, the primary's breaker opens: later calls skip it without a request, and a probe finds it back", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ outage: { fromMs: 0, toMs: 10_000 } }) })
      const layer = Layer.unwrapScoped(Effect.map(routesTo(server, "@effect/ai models"), ([primary, secondary]) =>
        Ai.layerWithState({
          routes: [{ ...primary!, policy: { breaker: { consecutiveFailures: 2, openDuration: "30 seconds" } } }, secondary!]
        }))).pipe(Layer.provide(Transport.layer()))
      const outcomes = yield* Effect.gen(function*() {
        const call = Effect.map(LanguageModel.generateText({ prompt: "Say hello." }), (response) => resilience(response))
        const during = yield* settle(yield* Effect.fork(Effect.all([call, call, call, call])))
        yield* TestClock.adjust("30 seconds")
        const after = yield* settle(yield* Effect.fork(call))
        return { during, after }
      }).pipe(Effect.provide(layer))
      expect(outcomes.during.map((o) => o.attempts.map((a) => `${a.route}:${a.outcome}`).join(" "))).toEqual([
        "primary:Overloaded secondary:success",
        "primary:Overloaded secondary:success",
        "primary:CircuitOpen secondary:success",
        "primary:CircuitOpen secondary:success"
      ])
      // The outage is over at 30 s: the half-open probe goes to the primary, which answers.
      expect([outcomes.after.route, outcomes.after.degraded]).toEqual(["primary", false])
      expect((yield* server.stats).byRoute).toEqual({ primary: 3, secondary: 4 })
    }))

  it.scoped("TestClock: a 429 with retry-after 2 s waits exactly 2 s on the primary, then answers undegraded", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ script: [{ kind: "rate_limit", retryAfterSeconds: 2 }] }) })
      const fiber = yield* Effect.fork(
        LanguageModel.generateText({ prompt: "Say hello." }).pipe(Effect.provide(resilientModel(server, "@effect/ai models", { deadline: "10 seconds" })))
      )
      yield* awaitSleepUntil(2_000)
      expect(yield* servedBy(server)).toEqual([["primary", 0, 429]])
      yield* TestClock.adjust("2 seconds")
      const response = yield* settle(fiber)
      expect(response.text).toBe("Hello from the primary.")
      const outcome = resilience(response)
      expect([outcome.route, outcome.degraded, outcome.durationMs]).toEqual(["primary", false, 2000])
      expect(outcome.attempts.map((a) => [a.route, a.outcome, a.delayMs])).toEqual([["primary", "RateLimited", 0], ["primary", "success", 2000]])
      expect(yield* servedBy(server)).toEqual([["primary", 0, 429], ["primary", 2000, 200]])
    }))

  it.scoped("generateObject: the chain's gate and repair run underneath; a fenced answer still decodes for @effect/ai", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: scenario({
          content: { kind: "text", text: "```json\n" + JSON.stringify(parisForecast) + "\n```" },
          script: [{ kind: "schema_violation", value: { city: "Paris", summary: 21 } }]
        })
      })
      const response = yield* settle(yield* Effect.fork(
        LanguageModel.generateObject({ prompt: "Forecast for Paris, as JSON.", schema: Forecast }).pipe(
          Effect.provide(resilientModel(server, "adapters", { repairAttempts: 1 }))
        )
      ))
      expect(response.value).toEqual(parisForecast)
      const outcome = resilience(response)
      expect([outcome.route, outcome.repaired, outcome.degraded]).toEqual(["primary", true, true])
      expect(outcome.attempts.map((a) => [a.attempt, a.outcome])).toEqual([[1, "InvalidOutput"], [2, "success"]])
    }))
})

describe("streamText over Ai.layer", () => {
  const textOf = (parts: ReadonlyArray<Response.StreamPart<{}>>) => parts.flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("")

  it.scoped("an overload before the first token falls over; the stream reads like any provider's, and ends with the outcome", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ script: [{ kind: "stream_error", afterDeltas: 0 }] }) })
      const { elements, failure } = yield* settle(yield* Effect.fork(
        collectEither(LanguageModel.streamText({ prompt: "Say hello." })).pipe(Effect.provide(resilientModel(server, "@effect/ai models")))
      ))
      expect(failure).toBeUndefined()
      expect(textOf(elements)).toBe("Hello from the secondary.")
      const types = elements.map((part) => part.type).filter((type) => type !== "text-delta")
      expect(types).toEqual(["response-metadata", "text-start", "text-end", "finish"])
      const finish = elements[elements.length - 1]
      expect(finish?.type === "finish" && finish.reason).toBe("stop")
      const outcome = resilience(elements)
      expect([outcome.route, outcome.degraded]).toEqual(["secondary", true])
      expect(outcome.attempts.map((a) => a.outcome)).toEqual(["Overloaded", "success"])
    }))

  it.scoped("tool calls stream as params parts, then a complete call the toolkit's handler resolves", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: scenario({ content: { kind: "tool_calls", calls: [{ name: "GetWeather", arguments: { city: "Paris" } }] } })
      })
      const { elements, failure } = yield* settle(yield* Effect.fork(
        collectEither(LanguageModel.streamText({ prompt: "Weather in Paris?", toolkit: WeatherToolkit })).pipe(
          Effect.provide(resilientModel(server, "adapters")),
          Effect.provide(WeatherHandlers)
        )
      ))
      expect(failure).toBeUndefined()
      const types = elements.map((part) => part.type).filter((type) => type !== "tool-params-delta")
      expect(types).toEqual(["response-metadata", "tool-params-start", "tool-params-end", "tool-call", "tool-result", "finish"])
      const result = elements.find((part) => part.type === "tool-result")
      expect(result?.type === "tool-result" && result.result).toEqual({ city: "Paris", tempC: 21 })
      const finish = elements[elements.length - 1]
      expect(finish?.type === "finish" && finish.reason).toBe("tool-calls")
    }))

  it.scoped("an error after the first token fails the stream with an AiError carrying the chain's failure", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ script: [{ kind: "stream_error", afterDeltas: 1 }] }) })
      const { elements, failure } = yield* settle(yield* Effect.fork(
        collectEither(LanguageModel.streamText({ prompt: "Say hello." })).pipe(Effect.provide(resilientModel(server, "@effect/ai models")))
      ))
      expect(textOf(elements).length).toBeGreaterThan(0)
      expect(elements.some((part) => part.type === "finish")).toBe(false)
      // After output the chain reports the break as StreamInterrupted (with the partial text): a transport-class AiError.
      expect(AiError.isAiError(failure) && failure._tag).toBe("HttpRequestError")
      const chainFailure = Option.getOrThrow(Ai.failureOf(failure))
      expect(chainFailure._tag === "AllRoutesFailed" && chainFailure.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "StreamInterrupted"]])
      const last = chainFailure._tag === "AllRoutesFailed" ? chainFailure.lastError : undefined
      expect(last?._tag === "StreamInterrupted" && [last.partialText, last.message]).toEqual([textOf(elements), "stream failed after partial output: Overloaded: The server is overloaded, please try again later."])
      // Never two models' text spliced: the secondary was not asked after output reached the consumer.
      expect((yield* server.stats).byRoute).toEqual({ primary: 1 })
    }))
})

describe("failures as AiErrors", () => {
  it.scoped("a 400 stops the chain → HttpResponseError 400, its cause the chain's AllRoutesFailed", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({ script: [{ kind: "http_error", status: 400 }] }) })
      const error = yield* settle(yield* Effect.fork(
        Effect.flip(LanguageModel.generateText({ prompt: "Say hello." })).pipe(Effect.provide(resilientModel(server, "adapters")))
      ))
      expect(error._tag).toBe("HttpResponseError")
      expect(error._tag === "HttpResponseError" && [error.module, error.method, error.response.status, error.reason]).toEqual([
        "effect-llm-resilience",
        "generateText",
        400,
        "StatusCode"
      ])
      expect(error._tag === "HttpResponseError" && error.response.headers["x-request-id"]).toMatch(/^req_/)
      const failure = Option.getOrThrow(Ai.failureOf(error))
      expect(failure._tag === "AllRoutesFailed" && [failure.reason, failure.lastError?._tag]).toEqual(["stopped", "BadRequest"])
      expect((error as { readonly cause?: unknown }).cause).toBe(failure)
    }))

  it.scoped("per-call request settings reach the wire: a 2-token bound truncates, the gate rejects, MalformedOutput", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({}, {}) })
      const model = resilientModel(server, "adapters")
      const bounded = yield* settle(yield* Effect.fork(
        Effect.flip(LanguageModel.generateText({ prompt: "Say hello." })).pipe(
          Effect.provideService(Ai.CurrentRequestSettings, { maxTokens: 2 }),
          Effect.provide(model)
        )
      ))
      expect(bounded._tag).toBe("MalformedOutput")
      const failure = Option.getOrThrow(Ai.failureOf(bounded))
      expect(failure._tag === "AllRoutesFailed" && failure.lastError?._tag === "InvalidOutput" && failure.lastError.reason).toBe("truncated")
      // Without the override the layer's default bound (4096) lets the same answer through.
      const unbounded = yield* settle(yield* Effect.fork(LanguageModel.generateText({ prompt: "Say hello." }).pipe(Effect.provide(model))))
      expect(unbounded.text).toBe("Hello from the primary.")
    }))

  for (const kind of ["adapters", "@effect/ai models"] as const) {
    it.scoped(`an image and a PDF in the prompt reach the fallback natively through the outage; a file by URL the primary cannot take (routes: ${kind})`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({ scenario: scenario({ outage: ALL_DAY }) })
        const prompt = Prompt.make([{
          role: "user",
          content: [
            { type: "text", text: "What is in this picture and this report?" },
            { type: "file", mediaType: "image/png", data: PNG_BASE64 },
            { type: "file", mediaType: "application/pdf", fileName: "report.pdf", data: new Uint8Array(PDF_BYTES) }
          ]
        }])
        const response = yield* settle(yield* Effect.fork(
          LanguageModel.generateText({ prompt }).pipe(Effect.provide(resilientModel(server, kind)))
        ))
        expect(response.text).toBe("Hello from the secondary.")
        expect(resilience(response).route).toBe("secondary")
        const served = (yield* server.stats).log.map((entry) => [entry.route, entry.media.map((m) => [m.kind, m.mediaType, m.source, m.bytes])])
        const media = [["image", "image/png", "base64", PNG_BYTES_LENGTH], ["file", "application/pdf", "base64", PDF_BYTES.length]]
        // Both routes received both parts in their own wire's shape (Responses input_image/input_file,
        // Anthropic image/document); the primary answered 503.
        expect(served).toEqual([["primary", media], ["secondary", media]])
      }))
  }

  it.scoped("a provider-defined tool (OpenAI web search) cannot be offered to every route → MalformedInput naming it", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario({}) })
      const toolkit = Toolkit.make(OpenAiTool.WebSearch({}))
      const error = yield* settle(yield* Effect.fork(
        Effect.flip(LanguageModel.generateText({ prompt: "News today?", toolkit })).pipe(
          Effect.provide(resilientModel(server, "adapters"))
        )
      ))
      expect(error._tag).toBe("MalformedInput")
      const failure = Option.getOrThrow(Ai.failureOf(error))
      expect(failure._tag === "InvalidOptions" && [failure.option, failure.message]).toEqual([
        "toolkit",
        "the provider-defined tool 'OpenAiWebSearch' runs on one vendor's servers and cannot be offered to every route of the chain"
      ])
      expect((yield* server.stats).total).toBe(0)
    }))

  it.effect("layer defaults are checked where the layer is built", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Ai.layerWithState({
        routes: [{ name: "primary", provider: { name: "never", generate: () => Effect.never, stream: () => Stream.never }, model: "m" }],
        defaults: { maxTokens: 0 }
      })).pipe(Effect.scoped))
      expect([error._tag, error.option]).toEqual(["InvalidOptions", "defaults.maxTokens"])
    }))
})

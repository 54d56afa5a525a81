/**
 * The ChaosServer's Gemini wire (`POST /v1beta/models/{model}:generateContent` and
 * `:streamGenerateContent?alt=sse`) against the official `@google/genai` SDK — `generateContent`,
 * `generateContentStream`, function calls, its `ApiError` — and against our `Gemini` adapter, over
 * real HTTP on 127.0.0.1.
 */
import { ApiError, FinishReason, FunctionCallingConfigMode, GoogleGenAI } from "@google/genai"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { actionOf } from "../../src/Errors.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type { ChaosServerHandle } from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { rejection } from "./helpers.js"

const TEXT = "Hello there, chaos world!"
const MODEL = "gemini-2.5-flash"
const serve = (scenario: Scenario.Scenario = {}) => ChaosServer.make({ scenario })
const textRoute = { content: { kind: "text", text: TEXT } } as const
const weatherCall = { content: { kind: "tool_calls", calls: [{ name: "weather", arguments: { city: "Paris" } }] } } as const

/** The SDK pointed at the server (it appends `/v1beta` itself); the SDK retries nothing by default. */
const genai = (server: ChaosServerHandle) => new GoogleGenAI({ apiKey: "AIza-chaos-test", httpOptions: { baseUrl: server.url } })

/** Our adapter pointed at the server (the test provides the transport, which must outlive the calls). */
const adapter = (server: ChaosServerHandle) => Gemini.make({ apiKey: Redacted.make("AIza-chaos-test"), baseUrl: `${server.url}/v1beta` })

describe("ChaosServer with the @google/genai SDK", () => {
  it.scopedLive("generateContent: text, STOP, usage, responseId and modelVersion", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const response = yield* Effect.promise(() => genai(server).models.generateContent({ model: MODEL, contents: "Say hello." }))
      expect(response.text).toBe(TEXT)
      expect(response.candidates?.[0]?.finishReason).toBe(FinishReason.STOP)
      expect(response.usageMetadata?.candidatesTokenCount).toBeGreaterThan(0)
      expect(response.usageMetadata?.totalTokenCount).toBe(
        (response.usageMetadata?.promptTokenCount ?? 0) + (response.usageMetadata?.candidatesTokenCount ?? 0)
      )
      expect(response.responseId).toMatch(/^[A-Za-z0-9]{23}$/)
      expect(response.modelVersion).toBe(MODEL)
    }))

  it.scopedLive("generateContentStream: several text chunks, the last one with the finish", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const chunks = yield* Effect.promise(async () => {
        const out = []
        for await (const chunk of await genai(server).models.generateContentStream({ model: MODEL, contents: "Say hello." })) out.push(chunk)
        return out
      })
      expect(chunks.length).toBeGreaterThan(2)
      expect(chunks.map((c) => c.text ?? "").join("")).toBe(TEXT)
      expect(chunks.at(-1)?.candidates?.[0]?.finishReason).toBe(FinishReason.STOP)
      expect(chunks.slice(0, -1).every((c) => c.candidates?.[0]?.finishReason === undefined)).toBe(true)
    }))

  it.scopedLive("a function call, JSON and streamed, reaches the SDK as functionCalls", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: weatherCall })
      const request = {
        model: MODEL,
        contents: "Weather in Paris?",
        config: {
          tools: [{ functionDeclarations: [{ name: "weather", parametersJsonSchema: { type: "object", properties: { city: { type: "string" } } } }] }],
          toolConfig: { functionCallingConfig: { mode: FunctionCallingConfigMode.AUTO } }
        }
      }
      const json = yield* Effect.promise(() => genai(server).models.generateContent(request))
      expect(json.functionCalls).toEqual([{ name: "weather", args: { city: "Paris" } }])
      const streamed = yield* Effect.promise(async () => {
        const calls = []
        for await (const chunk of await genai(server).models.generateContentStream(request)) calls.push(...(chunk.functionCalls ?? []))
        return calls
      })
      expect(streamed).toEqual([{ name: "weather", args: { city: "Paris" } }])
    }))

  it.scopedLive.each([
    ["truncated", FinishReason.MAX_TOKENS],
    ["content_filter", FinishReason.SAFETY]
  ] as const)("a %s answer ends with finishReason %s", ([kind, finish]) =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind }, { kind }] } })
      const json = yield* Effect.promise(() => genai(server).models.generateContent({ model: MODEL, contents: "hi" }))
      expect(json.candidates?.[0]?.finishReason).toBe(finish)
      const last = yield* Effect.promise(async () => {
        let final
        for await (const chunk of await genai(server).models.generateContentStream({ model: MODEL, contents: "hi" })) final = chunk
        return final
      })
      expect(last?.candidates?.[0]?.finishReason).toBe(finish)
    }))

  it.scopedLive("a 429 is the SDK's ApiError carrying Google's RESOURCE_EXHAUSTED body", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: [{ kind: "rate_limit", retryAfterSeconds: 3 }] } })
      const error = yield* rejection(() => genai(server).models.generateContent({ model: MODEL, contents: "hi" }))
      expect(error).toBeInstanceOf(ApiError)
      expect((error as ApiError).status).toBe(429)
      const body = JSON.parse((error as ApiError).message) as { error: { status: string; details: Array<Record<string, unknown>> } }
      expect(body.error.status).toBe("RESOURCE_EXHAUSTED")
      expect(body.error.details).toContainEqual({ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "3s" })
    }))

  it.scopedLive("an in-stream error chunk is an ApiError from the SDK's stream", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_error", afterDeltas: 1 }] } })
      const error = yield* rejection(async () => {
        for await (const _ of await genai(server).models.generateContentStream({ model: MODEL, contents: "hi" })) {
          // drain
        }
      })
      expect(error).toBeInstanceOf(ApiError)
      expect((error as ApiError).status).toBe(503)
    }))
})

describe("ChaosServer Gemini faults through our Gemini adapter", () => {
  const request = { model: MODEL, messages: [{ role: "user" as const, content: "hi" }], maxTokens: 64 }

  it.scopedLive("text and a streamed function call decode like the real API's", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const provider = yield* adapter(server)
      expect((yield* provider.generate(request)).text).toBe(TEXT)
      yield* server.setScenario({ default: weatherCall })
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(request)))
      const last = events.at(-1)
      expect(last?._tag === "Finish" && last.response.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([["weather", { city: "Paris" }]])
      expect(last?._tag === "Finish" && last.response.finishReason).toBe("tool_calls")
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive.each([
    [{ kind: "rate_limit", retryAfterSeconds: 3 }, "RateLimited", "wait"],
    [{ kind: "insufficient_quota" }, "QuotaExhausted", "reroute"],
    [{ kind: "overloaded" }, "Overloaded", "reroute"],
    [{ kind: "http_error", status: 500 }, "ServerError", "wait"],
    [{ kind: "http_error", status: 400, reason: "context_length" }, "ContextLengthExceeded", "stop"],
    [{ kind: "http_error", status: 404 }, "NotFound", "reroute"]
  ] as const)("%j → %s (%s)", ([fault, tag, action]) =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [fault] } })
      const error = yield* Effect.flip((yield* adapter(server)).generate(request))
      expect(error._tag).toBe(tag)
      expect(actionOf(error)).toBe(action)
      if (error._tag === "RateLimited") expect(error.retryAfterMs).toBe(3000)
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("a cut stream (no finishReason) is StreamInterrupted", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_cut", afterDeltas: 2 }] } })
      const error = yield* Effect.flip(Stream.runDrain((yield* adapter(server)).stream(request)))
      expect(error._tag).toBe("StreamInterrupted")
    }).pipe(Effect.provide(Transport.layer())))
})

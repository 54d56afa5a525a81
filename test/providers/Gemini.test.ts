/**
 * The Gemini adapter over real HTTP (a local server saying exactly which bytes come back): the request
 * it encodes, the answers it decodes, its stream terminator rule, every error class of Gemini's own
 * error semantics, and — over a mock client — that no bytes a server can send become a defect.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as fc from "fast-check"
import { basicGate } from "../../src/chain/gate.js"
import { actionOf, isRetryable } from "../../src/Errors.js"
import { type GenerateRequest, type GenerateResponse, Provider, type StreamEvent } from "../../src/Provider.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as Transport from "../../src/Transport.js"
import { jsonReply, mockClient, sseReply } from "../utils/reply.js"
import { type Handler, json, sse, wireServer } from "../utils/wireServer.js"

const KEY = "AIzaSyTest-gemini-secret-0123456789"
const request: GenerateRequest = { model: "gemini-test", messages: [{ role: "user", content: "hi" }], maxTokens: 64 }

type Adapter = Effect.Effect.Success<ReturnType<typeof Gemini.make>>

const withProvider = <A, E>(handler: Handler, use: (provider: Adapter) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const server = yield* wireServer(handler)
    const provider = yield* Gemini.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1beta` })
    return yield* use(provider)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const answer = (parts: ReadonlyArray<Record<string, unknown>>, finishReason = "STOP", extra: Record<string, unknown> = {}) => ({
  candidates: [{ content: { parts, role: "model" }, finishReason, index: 0 }],
  usageMetadata: { promptTokenCount: 9, candidatesTokenCount: 5, thoughtsTokenCount: 20, totalTokenCount: 34 },
  modelVersion: "gemini-test-001",
  responseId: "resp_1",
  ...extra
})

/** A chunk as Gemini frames it (`alt=sse` ends each event with CRLF CRLF). */
const chunk = (body: unknown) => `data: ${JSON.stringify(body)}\r\n\r\n`
const textChunk = (text: string) => chunk({ candidates: [{ content: { parts: [{ text }], role: "model" }, index: 0 }], responseId: "resp_s" })

const googleError = (code: number, status: string, message: string, details: ReadonlyArray<unknown> = [], headers: Record<string, string> = {}) =>
  json(code, { error: { code, message, status, ...(details.length > 0 ? { details } : {}) } }, headers)

const quotaFailure = (...quotaIds: ReadonlyArray<string>) => ({
  "@type": "type.googleapis.com/google.rpc.QuotaFailure",
  violations: quotaIds.map((quotaId) => ({ quotaMetric: "generativelanguage.googleapis.com/generate_content_free_tier_requests", quotaId }))
})
const retryInfo = (retryDelay: string) => ({ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay })
/** Gemini's 429 message opens the same way for a per-minute and a per-day quota. */
const QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."

const eventsOf = (provider: Adapter, req: GenerateRequest = request) =>
  Effect.map(Stream.runCollect(provider.stream(req)), (events) => Chunk.toReadonlyArray(events))

const finishOf = (events: ReadonlyArray<StreamEvent>): GenerateResponse => {
  const last = events[events.length - 1]
  if (last?._tag !== "Finish") throw new Error(`the stream did not end with Finish: ${events.map((e) => e._tag).join(",")}`)
  return last.response
}

describe("Gemini adapter — the request", () => {
  it.live("posts generateContent with the key header, system instruction, contents and generation config", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, answer([{ text: "ok" }])))
      const provider = yield* Gemini.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1beta` })
      yield* provider.generate({
        ...request,
        system: "be brief",
        messages: [{ role: "system", content: "be kind" }, { role: "user", content: "hi" }],
        temperature: 0.2,
        topP: 0.9,
        stop: ["END"],
        responseFormat: { type: "json_schema", name: "answer", schema: { type: "object", additionalProperties: false } }
      })
      const sent = server.requests[0]!
      expect(sent.path).toBe("/v1beta/models/gemini-test:generateContent")
      expect(sent.headers["x-goog-api-key"]).toBe(KEY)
      expect(sent.headers["accept"]).toBe("application/json")
      expect(sent.body).toEqual({
        contents: [{ role: "user", parts: [{ text: "hi" }] }],
        systemInstruction: { parts: [{ text: "be brief\n\nbe kind" }] },
        generationConfig: {
          maxOutputTokens: 64,
          temperature: 0.2,
          topP: 0.9,
          stopSequences: ["END"],
          responseMimeType: "application/json",
          responseJsonSchema: { type: "object", additionalProperties: false }
        }
      })
      expect(JSON.stringify(sent.body)).not.toContain(KEY)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("streams from streamGenerateContent?alt=sse; a models/ prefix is kept, the id is one encoded path segment", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(sse([chunk(answer([{ text: "ok" }]))]))
      const provider = yield* Gemini.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1beta` })
      yield* eventsOf(provider, { ...request, model: "models/gemini-2.5-flash" })
      yield* eventsOf(provider, { ...request, model: "../x?key=1:evil/y" })
      yield* Effect.either(provider.generate({ ...request, model: "tunedModels/my-tune" }))
      expect(server.requests.map((r) => r.path)).toEqual([
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/v1beta/models/..%2Fx%3Fkey%3D1%3Aevil%2Fy:streamGenerateContent?alt=sse",
        "/v1beta/tunedModels/my-tune:generateContent"
      ])
      expect(server.requests[0]!.headers["accept"]).toBe("text/event-stream")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it("tool calls become functionCall parts, results functionResponse parts named after the call they answer", () => {
    const body = Gemini.encodeRequest({
      model: "gemini-2.5-flash",
      maxTokens: 32,
      messages: [
        { role: "user", content: "weather in Paris and Rome?" },
        {
          role: "assistant",
          content: "",
          toolCalls: [
            { id: "c1", name: "weather", arguments: "{\"city\":\"Paris\"}" },
            { id: "c2", name: "time", arguments: "not json" }
          ]
        },
        { role: "tool", toolCallId: "c1", content: "18C" },
        { role: "tool", toolCallId: "c2", content: "12:00" },
        { role: "tool", toolCallId: "unknown", name: "fallback_name", content: "x" },
        { role: "assistant", content: "done" }
      ],
      tools: [{ name: "weather", description: "Weather now", parameters: { type: "object", properties: { city: { type: "string" } } } }],
      toolChoice: { name: "weather" }
    }, 32)
    expect(body["contents"]).toEqual([
      { role: "user", parts: [{ text: "weather in Paris and Rome?" }] },
      {
        role: "model",
        parts: [
          { functionCall: { id: "c1", name: "weather", args: { city: "Paris" } } },
          { functionCall: { id: "c2", name: "time", args: { _raw: "not json" } } }
        ]
      },
      {
        role: "user",
        parts: [
          { functionResponse: { id: "c1", name: "weather", response: { output: "18C" } } },
          { functionResponse: { id: "c2", name: "time", response: { output: "12:00" } } },
          { functionResponse: { id: "unknown", name: "fallback_name", response: { output: "x" } } }
        ]
      },
      { role: "model", parts: [{ text: "done" }] }
    ])
    expect(body["tools"]).toEqual([{
      functionDeclarations: [{ name: "weather", description: "Weather now", parametersJsonSchema: { type: "object", properties: { city: { type: "string" } } } }]
    }])
    expect(body["toolConfig"]).toEqual({ functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["weather"] } })
  })

  it("a Gemini 3 model gets the documented signature sentinel on the first call of each replayed turn; 2.x does not", () => {
    const messages: GenerateRequest["messages"] = [
      { role: "user", content: "q" },
      { role: "assistant", content: "", toolCalls: [{ id: "a", name: "f", arguments: "{}" }, { id: "b", name: "f", arguments: "{}" }] },
      { role: "tool", toolCallId: "a", content: "1" },
      { role: "tool", toolCallId: "b", content: "2" }
    ]
    const partsOf = (model: string) =>
      (Gemini.encodeRequest({ model, messages, maxTokens: 8 }, 8)["contents"] as ReadonlyArray<{ parts: ReadonlyArray<Record<string, unknown>> }>)[1]!.parts
    expect(partsOf("gemini-3-pro-preview").map((part) => part["thoughtSignature"])).toEqual(["skip_thought_signature_validator", undefined])
    expect(partsOf("models/gemini-2.5-flash").map((part) => part["thoughtSignature"])).toEqual([undefined, undefined])
  })

  it.each([
    ["auto", { mode: "AUTO" }],
    ["none", { mode: "NONE" }],
    ["required", { mode: "ANY" }]
  ] as const)("toolChoice %s → functionCallingConfig %j", (choice, config) => {
    expect(Gemini.encodeRequest({ ...request, toolChoice: choice }, 8)["toolConfig"]).toEqual({ functionCallingConfig: config })
  })

  it("json_object asks for application/json without a schema; text asks for nothing", () => {
    expect(Gemini.encodeRequest({ ...request, responseFormat: { type: "json_object" } }, 8)["generationConfig"]).toEqual({
      maxOutputTokens: 8,
      responseMimeType: "application/json"
    })
    expect(Gemini.encodeRequest({ ...request, responseFormat: { type: "text" } }, 8)["generationConfig"]).toEqual({ maxOutputTokens: 8 })
  })
})

describe("Gemini adapter — answers", () => {
  it.live("decodes text (thoughts skipped), usage with thinking tokens as output, modelVersion and responseId", () =>
    withProvider(json(200, answer([{ text: "thinking…", thought: true }, { text: "Hello " }, { text: "there", thoughtSignature: "c2ln" }])), (p) =>
      Effect.gen(function*() {
        const response = yield* p.generate(request)
        expect(response.text).toBe("Hello there")
        expect(response.finishReason).toBe("stop")
        expect(response.rawFinishReason).toBe("STOP")
        expect(response.usage).toEqual({ inputTokens: 9, outputTokens: 25, totalTokens: 34 })
        expect(response.model).toBe("gemini-test-001")
        expect(response.id).toBe("resp_1")
        expect(response.provider).toBe("gemini")
      })))

  it.live("function calls → tool calls (Gemini's id kept, else a stable one), finish tool_calls", () =>
    withProvider(
      json(200, answer([
        { functionCall: { name: "weather", args: { city: "Paris" } } },
        { functionCall: { id: "fc_9", name: "time", args: {} } }
      ])),
      (p) =>
        Effect.gen(function*() {
          const first = yield* p.generate(request)
          const again = yield* p.generate(request)
          expect(first.toolCalls).toEqual([
            { id: "call_resp_1_0", name: "weather", arguments: "{\"city\":\"Paris\"}" },
            { id: "fc_9", name: "time", arguments: "{}" }
          ])
          expect(again.toolCalls).toEqual(first.toolCalls)
          expect(first.finishReason).toBe("tool_calls")
        })
    ))

  it.live.each([
    ["MAX_TOKENS", "length"],
    ["SAFETY", "content_filter"],
    ["RECITATION", "content_filter"],
    ["PROHIBITED_CONTENT", "content_filter"],
    ["BLOCKLIST", "content_filter"],
    ["SPII", "content_filter"],
    ["IMAGE_SAFETY", "content_filter"],
    ["LANGUAGE", "other"],
    ["OTHER", "other"]
  ] as const)("finishReason %s → %s", ([raw, normalised]) =>
    withProvider(json(200, answer([{ text: "par" }], raw)), (p) =>
      Effect.gen(function*() {
        const response = yield* p.generate(request)
        expect([response.finishReason, response.rawFinishReason]).toEqual([normalised, raw])
      })))

  it.live("a filtered answer and a blocked prompt are ContentFiltered at the chain's gate, like every adapter's", () =>
    Effect.gen(function*() {
      const filtered = yield* withProvider(json(200, answer([], "SAFETY")), (p) => p.generate(request))
      const blocked = yield* withProvider(
        json(200, { promptFeedback: { blockReason: "PROHIBITED_CONTENT" }, usageMetadata: { promptTokenCount: 9, totalTokenCount: 9 }, responseId: "r" }),
        (p) => p.generate(request)
      )
      expect(blocked).toMatchObject({ finishReason: "content_filter", rawFinishReason: "PROHIBITED_CONTENT", text: "", toolCalls: [] })
      expect(blocked.usage).toEqual({ inputTokens: 9, outputTokens: 0, totalTokens: 9 })
      for (const response of [filtered, blocked]) {
        const rejected = yield* Effect.flip(basicGate(false)(response, request))
        expect(rejected._tag).toBe("ContentFiltered")
      }
      const rejected = yield* Effect.flip(basicGate(false)(blocked, request))
      expect(rejected.message).toBe("the prompt was blocked (PROHIBITED_CONTENT)")
    }))

  it.live("MALFORMED_FUNCTION_CALL is InvalidOutput, never an answer", () =>
    withProvider(json(200, answer([{ text: "let me call" }], "MALFORMED_FUNCTION_CALL")), (p) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(p.generate(request))
        expect(error).toMatchObject({ _tag: "InvalidOutput", reason: "unparsable", output: "let me call", status: 200 })
        expect(actionOf(error)).toBe("reroute")
      })))

  it.live("no candidate and no block reason is a malformed response; a 200 error object is classified", () =>
    Effect.gen(function*() {
      const empty = yield* withProvider(json(200, { usageMetadata: {} }), (p) => Effect.flip(p.generate(request)))
      expect(empty).toMatchObject({ _tag: "InvalidOutput", reason: "malformed-response" })
      const inBody = yield* withProvider(json(200, { error: { code: 503, status: "UNAVAILABLE", message: "The model is overloaded." } }), (p) =>
        Effect.flip(p.generate(request)))
      expect(inBody._tag).toBe("Overloaded")
    }))
})

describe("Gemini adapter — streams", () => {
  it.live("text chunks, then the chunk with finishReason ends the stream (usage once, before Finish)", () =>
    withProvider(
      sse([
        textChunk("Hel"),
        textChunk("lo"),
        chunk({ ...answer([{ text: "", thoughtSignature: "c2ln" }]), responseId: "resp_s" })
      ]),
      (p) =>
        Effect.gen(function*() {
          const events = yield* eventsOf(p)
          expect(events.map((e) => e._tag)).toEqual(["Metadata", "TextDelta", "TextDelta", "Usage", "Finish"])
          expect(finishOf(events)).toMatchObject({
            text: "Hello",
            finishReason: "stop",
            rawFinishReason: "STOP",
            id: "resp_s",
            model: "gemini-test-001",
            usage: { inputTokens: 9, outputTokens: 25, totalTokens: 34 }
          })
        })
    ))

  it.live("a function call streams whole in one delta; STOP after it is tool_calls", () =>
    withProvider(
      sse([
        chunk({ candidates: [{ content: { parts: [{ functionCall: { name: "weather", args: { city: "Rome" } }, thoughtSignature: "c2ln" }] } }], responseId: "r7" }),
        chunk(answer([{ text: "" }]))
      ]),
      (p) =>
        Effect.gen(function*() {
          const events = yield* eventsOf(p)
          expect(events.filter((e) => e._tag === "ToolCallDelta")).toEqual([
            { _tag: "ToolCallDelta", index: 0, id: "call_r7_0", name: "weather", argumentsDelta: "{\"city\":\"Rome\"}" }
          ])
          const response = finishOf(events)
          expect(response.toolCalls).toEqual([{ id: "call_r7_0", name: "weather", arguments: "{\"city\":\"Rome\"}" }])
          expect(response.finishReason).toBe("tool_calls")
        })
    ))

  it.live("a blocked prompt is its own final chunk: Finish with content_filter", () =>
    withProvider(sse([chunk({ promptFeedback: { blockReason: "SAFETY" }, usageMetadata: { promptTokenCount: 3, totalTokenCount: 3 } })]), (p) =>
      Effect.gen(function*() {
        const response = finishOf(yield* eventsOf(p))
        expect(response).toMatchObject({ finishReason: "content_filter", rawFinishReason: "SAFETY", refusal: "the prompt was blocked (SAFETY)" })
      })))

  it.live("nothing after the final chunk is read (no terminator event exists)", () =>
    withProvider(sse([textChunk("ok"), chunk(answer([], "MAX_TOKENS")), "data: not json\r\n\r\n"]), (p) =>
      Effect.gen(function*() {
        const response = finishOf(yield* eventsOf(p))
        expect([response.text, response.finishReason]).toEqual(["ok", "length"])
      })))

  it.live.each([false, true])("a body that ends without a finishReason is StreamInterrupted (connection broken: %s)", (destroy) =>
    withProvider(sse([textChunk("Par"), textChunk("tial")], { destroy }), (p) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(eventsOf(p))
        expect(error).toMatchObject({ _tag: "StreamInterrupted", partialText: "Partial", receivedContent: true, status: 200 })
        expect(actionOf(error)).toBe("wait")
      })))

  it.live("an error chunk after HTTP 200 is classified, after the deltas before it reach the consumer", () =>
    withProvider(
      // One write: the text and the error arrive in the same network chunk.
      sse([
        textChunk("Par") +
        chunk({ error: { code: 503, status: "UNAVAILABLE", message: "The model is overloaded. Please try again later." } })
      ]),
      (p) =>
        Effect.gen(function*() {
          const seen: Array<string> = []
          const error = yield* Effect.flip(Stream.runForEach(p.stream(request), (event) =>
            Effect.sync(() => {
              if (event._tag === "TextDelta") seen.push(event.text)
            })))
          expect(seen).toEqual(["Par"])
          expect(error).toMatchObject({ _tag: "Overloaded", providerType: "UNAVAILABLE" })
          expect(error.status).toBeUndefined()
          expect(isRetryable(error)).toBe(true)
        })
    ))

  it.live("an in-stream RESOURCE_EXHAUSTED keeps its RetryInfo; a per-day one is QuotaExhausted", () =>
    Effect.gen(function*() {
      const perMinute = yield* withProvider(
        sse([chunk({ error: { code: 429, status: "RESOURCE_EXHAUSTED", message: QUOTA_MESSAGE, details: [retryInfo("0.5s")] } })]),
        (p) => Effect.flip(eventsOf(p))
      )
      expect(perMinute).toMatchObject({ _tag: "RateLimited", retryAfterMs: 500 })
      const perDay = yield* withProvider(
        sse([chunk({
          error: { code: 429, status: "RESOURCE_EXHAUSTED", message: QUOTA_MESSAGE, details: [quotaFailure("GenerateRequestsPerDayPerProjectPerModel-FreeTier")] }
        })]),
        (p) => Effect.flip(eventsOf(p))
      )
      expect(perDay._tag).toBe("QuotaExhausted")
    }))

  it.live("MALFORMED_FUNCTION_CALL at the end of a stream is InvalidOutput", () =>
    withProvider(sse([textChunk("x"), chunk(answer([], "MALFORMED_FUNCTION_CALL"))]), (p) =>
      Effect.gen(function*() {
        expect(yield* Effect.flip(eventsOf(p))).toMatchObject({ _tag: "InvalidOutput", reason: "unparsable" })
      })))
})

describe("Gemini adapter — classified failures over real HTTP", () => {
  const failureOf = (handler: Handler) => withProvider(handler, (p) => Effect.flip(p.generate(request)))

  it.live("429 per-minute quota with RetryInfo → RateLimited waiting retryDelay, not QuotaExhausted despite the message", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(googleError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, [
        quotaFailure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
        { "@type": "type.googleapis.com/google.rpc.Help", links: [] },
        retryInfo("12s")
      ]))
      expect(error).toMatchObject({
        _tag: "RateLimited",
        status: 429,
        retryAfterMs: 12_000,
        providerType: "RESOURCE_EXHAUSTED",
        providerCode: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        message: QUOTA_MESSAGE
      })
      expect(actionOf(error)).toBe("wait")
    }))

  it.live("429 naming a per-day quota → QuotaExhausted (never wait for midnight), even with a RetryInfo", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(googleError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, [
        quotaFailure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
        retryInfo("36s")
      ]))
      expect(error).toMatchObject({ _tag: "QuotaExhausted", providerCode: "GenerateRequestsPerDayPerProjectPerModel-FreeTier" })
      expect([actionOf(error), isRetryable(error)]).toEqual(["reroute", false])
    }))

  it.live("429 without details: the message's 'Please retry in …', else the Retry-After header", () =>
    Effect.gen(function*() {
      const prose = yield* failureOf(googleError(429, "RESOURCE_EXHAUSTED", `${QUOTA_MESSAGE}\nPlease retry in 25.5s.`))
      expect(prose).toMatchObject({ _tag: "RateLimited", retryAfterMs: 25_500 })
      const header = yield* failureOf(googleError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [], { "retry-after": "7" }))
      expect(header).toMatchObject({ _tag: "RateLimited", retryAfterMs: 7_000 })
    }))

  it.live.each([
    [402, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted.", "QuotaExhausted", "reroute"],
    [503, "UNAVAILABLE", "The model is overloaded. Please try again later.", "Overloaded", "reroute"],
    [500, "INTERNAL", "An internal error has occurred.", "ServerError", "wait"],
    [504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", "ServerError", "wait"],
    [400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \"foo\".", "BadRequest", "stop"],
    [400, "INVALID_ARGUMENT", "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).", "ContextLengthExceeded", "stop"],
    [400, "FAILED_PRECONDITION", "User location is not supported for the API use.", "Unauthorized", "reroute"],
    [400, "FAILED_PRECONDITION", "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.", "QuotaExhausted", "reroute"],
    [403, "PERMISSION_DENIED", "Your API key doesn't have the required permissions.", "Unauthorized", "reroute"],
    [401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "Unauthorized", "reroute"],
    [404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta.", "NotFound", "reroute"]
  ] as const)("%d %s (%s) → %s (%s)", ([status, grpc, message, tag, action]) =>
    Effect.gen(function*() {
      const error = yield* failureOf(googleError(status, grpc, message))
      expect(error).toMatchObject({ _tag: tag, status, providerType: grpc, message })
      expect(actionOf(error)).toBe(action)
    }))

  it.live("400 API_KEY_INVALID (ErrorInfo) → Unauthorized; the echoed key is scrubbed everywhere", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(googleError(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com", metadata: { service: "generativelanguage.googleapis.com" } },
        { "@type": "type.googleapis.com/google.rpc.DebugInfo", detail: `Invalid API key: ${KEY}` }
      ]))
      expect(error).toMatchObject({ _tag: "Unauthorized", status: 400, providerCode: "API_KEY_INVALID" })
      expect(error.rawBody).toContain("<redacted>")
      expect(JSON.stringify(error)).not.toContain(KEY)
      expect(String(error)).not.toContain(KEY)
    }))

  it.live("a key echoed in an in-stream error message or in answer text never leaves the adapter", () =>
    Effect.gen(function*() {
      const error = yield* withProvider(
        sse([chunk({ error: { code: 500, status: "INTERNAL", message: `internal error for key ${KEY}` } })]),
        (p) => Effect.flip(eventsOf(p))
      )
      expect(error._tag).toBe("ServerError")
      expect(JSON.stringify(error) + String(error)).not.toContain(KEY)
      const response = yield* withProvider(json(200, answer([{ text: `your key is ${KEY}` }])), (p) => p.generate(request))
      expect(JSON.stringify(response)).not.toContain(KEY)
    }))

  it.live("a gateway's HTML page keeps the shared classification", () =>
    Effect.gen(function*() {
      const error = yield* failureOf((_req, _body, res) => {
        res.writeHead(502, { "content-type": "text/html" })
        res.end("<html>Bad Gateway</html>")
      })
      expect(error).toMatchObject({ _tag: "ServerError", status: 502, rawBody: "<html>Bad Gateway</html>" })
    }))
})

describe("Gemini adapter — construction and configuration", () => {
  const key = Redacted.make(KEY)
  it.effect.each([
    [{ apiKey: key, baseUrl: "ftp://example.com/v1beta" }, "baseUrl"],
    // Gemini's REST examples put the key in the query: a pasted URL must not echo it back.
    [{ apiKey: key, baseUrl: `https://example.com/v1beta?key=${KEY}` }, "baseUrl"],
    [{ apiKey: key, name: " " }, "name"],
    [{ apiKey: key, maxTokensCap: 0 }, "maxTokensCap"],
    [{ apiKey: key, headers: { "bad header": "x" } }, "headers[\"bad header\"]"],
    [{ apiKey: Redacted.make("AIza\nsplit") }, "apiKey"]
  ] as const)("%j → InvalidOptions naming %s, before any call", ([options, option]) =>
    Effect.gen(function*() {
      const made = yield* Effect.flip(Gemini.make(options))
      expect(made).toMatchObject({ _tag: "InvalidOptions", component: "Gemini.make", option })
      const layered = yield* Effect.flip(Effect.provide(Provider, Gemini.layer(options)))
      expect(layered).toMatchObject({ _tag: "InvalidOptions", component: "Gemini.layer", option })
      expect(JSON.stringify(made)).not.toContain(KEY)
    }).pipe(Effect.provide(Transport.layer())))

  const fromEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.live("layerConfig: GOOGLE_API_KEY wins over GEMINI_API_KEY; GOOGLE_GEMINI_BASE_URL is a root, /v1beta appended", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, answer([{ text: "ok" }])))
      const provider = yield* Effect.provide(Provider, Gemini.layerConfig.pipe(
        Layer.provide(fromEnv({ GOOGLE_API_KEY: "AIza-google-key-1234", GEMINI_API_KEY: "AIza-gemini-key-1234", GOOGLE_GEMINI_BASE_URL: `${server.url}/` }))
      ))
      expect((yield* provider.generate(request)).text).toBe("ok")
      expect(server.requests[0]!.path).toBe("/v1beta/models/gemini-test:generateContent")
      expect(server.requests[0]!.headers["x-goog-api-key"]).toBe("AIza-google-key-1234")
      const geminiOnly = yield* Effect.provide(Provider, Gemini.layerConfig.pipe(
        Layer.provide(fromEnv({ GEMINI_API_KEY: "AIza-gemini-key-1234", GOOGLE_GEMINI_BASE_URL: server.url }))
      ))
      yield* geminiOnly.generate(request)
      expect(server.requests[1]!.headers["x-goog-api-key"]).toBe("AIza-gemini-key-1234")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.effect.each([{}, { GOOGLE_API_KEY: " ", GEMINI_API_KEY: "" }])("layerConfig without a usable key (%j) is a ConfigError naming both variables", (env) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(Provider, Gemini.layerConfig.pipe(Layer.provide(fromEnv(env)))))
      expect(error._tag).not.toBe("InvalidOptions")
      expect(String(error)).toContain("GEMINI_API_KEY")
      expect(String(error)).toContain("GOOGLE_API_KEY")
      expect(String(error)).not.toContain("<redacted>")
    }).pipe(Effect.provide(Transport.layer())))

  it.live("a blank GOOGLE_API_KEY falls through to GEMINI_API_KEY", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, answer([{ text: "ok" }])))
      const provider = yield* Effect.provide(Provider, Gemini.layerConfig.pipe(
        Layer.provide(fromEnv({ GOOGLE_API_KEY: "  ", GEMINI_API_KEY: "AIza-gemini-key-1234", GOOGLE_GEMINI_BASE_URL: server.url }))
      ))
      yield* provider.generate(request)
      expect(server.requests[0]!.headers["x-goog-api-key"]).toBe("AIza-gemini-key-1234")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))
})

// ---------------------------------------------------------------------------------------------------
// Bad bytes
// ---------------------------------------------------------------------------------------------------

const mockAdapter = (client: HttpClient.HttpClient) =>
  Gemini.make({ apiKey: Redacted.make(KEY), baseUrl: "http://mock.invalid/v1beta", maxBodyBytes: 65_536, maxSseEventBytes: 65_536 }).pipe(
    Effect.provideService(HttpClient.HttpClient, client)
  )

/** A 200 event stream delivered as exactly these byte chunks. */
const byteStreamClient = (pieces: ReadonlyArray<Uint8Array>): HttpClient.HttpClient =>
  HttpClient.make((req) =>
    Effect.succeed(HttpClientResponse.fromWeb(
      req,
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            for (const piece of pieces) controller.enqueue(piece)
            controller.close()
          }
        }),
        { status: 200, headers: { "content-type": "text/event-stream" } }
      )
    ))
  )

/** Runs a program and asserts it is a success or a typed failure — never a defect. */
const neverADefect = async (program: Effect.Effect<unknown, unknown>) => {
  const exit = await Effect.runPromiseExit(program)
  if (Exit.isFailure(exit)) {
    expect(Cause.isDie(exit.cause)).toBe(false)
    expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
    expect(() => JSON.stringify(Cause.failureOption(exit.cause))).not.toThrow()
  }
  return exit
}

describe("Gemini adapter — bad provider bytes never become defects", () => {
  const body = [
    textChunk("héllo 🌍 "),
    chunk({ candidates: [{ content: { parts: [{ functionCall: { name: "f", args: { q: "ü" } } }] } }], responseId: "resp_s" }),
    chunk(answer([{ text: "fin" }]))
  ].join("")
  const bytes = new TextEncoder().encode(body)

  it.effect("a valid stream split at every byte boundary decodes to the same answer", () =>
    Effect.gen(function*() {
      const whole = finishOf(yield* eventsOf(yield* mockAdapter(byteStreamClient([bytes]))))
      expect(whole.text).toBe("héllo 🌍 fin")
      expect(whole.toolCalls).toEqual([{ id: "call_resp_s_0", name: "f", arguments: "{\"q\":\"ü\"}" }])
      for (let cut = 1; cut < bytes.length; cut++) {
        const split = finishOf(yield* eventsOf(yield* mockAdapter(byteStreamClient([bytes.slice(0, cut), bytes.slice(cut)]))))
        expect([split.text, split.toolCalls, split.finishReason]).toEqual([whole.text, whole.toolCalls, whole.finishReason])
      }
    }))

  it("random cuts, random bytes and truncation: a typed error or the answer", () =>
    fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 6 }),
        fc.integer({ min: 1, max: bytes.length }),
        fc.uint8Array({ maxLength: 64 }),
        async (cuts, keep, noise) => {
          const truncated = bytes.slice(0, keep)
          const points = [0, ...cuts.filter((c) => c < keep).sort((a, b) => a - b), keep]
          const pieces = points.slice(1).map((end, i) => truncated.slice(points[i]!, end))
          for (const stream of [pieces, [...pieces, noise]]) {
            const exit = await neverADefect(Effect.flatMap(mockAdapter(byteStreamClient(stream)), eventsOf))
            // Cut before the final event's blank line (its lone CR already ends that line), the answer
            // never finished: that must not be a success.
            if (keep < bytes.length - 1 && stream === pieces) expect(Exit.isFailure(exit)).toBe(true)
          }
        }
      ),
      { numRuns: 200, seed: 20261216 }
    ))

  // Gemini's fields filled with values of every type, in every place the decoders and the classifier read.
  const value = fc.oneof(
    fc.json(),
    fc.constantFrom("[".repeat(300) + "]".repeat(300), "null", "7", "\"STOP\"", "{}", "[]", "true")
  )
  const geminiBody = value.chain((v) =>
    fc.constantFrom(
      v,
      `{"candidates":${v}}`,
      `{"candidates":[${v}]}`,
      `{"candidates":[{"content":${v},"finishReason":"STOP"}]}`,
      `{"candidates":[{"content":{"parts":${v}},"finishReason":"STOP"}]}`,
      `{"candidates":[{"content":{"parts":[${v}]},"finishReason":${v}}]}`,
      `{"candidates":[{"content":{"parts":[{"functionCall":${v}}]},"finishReason":"STOP"}],"responseId":${v}}`,
      `{"candidates":[{"content":{"parts":[{"functionCall":{"name":${v},"args":${v},"id":${v}}}]}}]}`,
      `{"candidates":[],"promptFeedback":${v},"usageMetadata":${v},"modelVersion":${v}}`,
      `{"promptFeedback":{"blockReason":${v}}}`,
      `{"error":${v}}`,
      `{"error":{"code":${v},"status":${v},"message":${v},"details":${v}}}`,
      `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[${v},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":${v}},{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":${v}},{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":${v},"metadata":${v}}]}}`
    )
  )
  const reply = fc.oneof(
    fc.tuple(fc.constantFrom(200, 400, 401, 402, 403, 404, 429, 500, 503, 504), geminiBody).map(([status, b]) => jsonReply(status, b)),
    fc.tuple(fc.array(fc.oneof(geminiBody.map((b) => `data: ${b}\r\n\r\n`), fc.string()), { maxLength: 6 }), fc.boolean())
      .map(([frames, breakAfter]) => sseReply(frames, {}, { breakAfter }))
  )

  it("wrong JSON types anywhere, as bodies or stream chunks: a typed error or a valid answer", () =>
    fc.assert(
      fc.asyncProperty(reply, fc.boolean(), async (r, streamMode) => {
        await neverADefect(Effect.flatMap(mockAdapter(mockClient(r)), (provider) =>
          streamMode ? Stream.runDrain(provider.stream(request)) : provider.generate(request)))
      }),
      { numRuns: 400, seed: 20261216 }
    ))
})

/**
 * The core's must-show list (issue 2), each case run twice with the same bytes: over a mock
 * `HttpClient` (no socket) and over a real local HTTP server through the undici transport. The
 * adapters must classify identically on both. Runs under TestClock, so an HTTP-date Retry-After is
 * measured exactly against Effect's clock.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as fc from "fast-check"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { actionOf, type ErrorAction, isRetryable, type ProviderError } from "../../src/Errors.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as Transport from "../../src/Transport.js"
import { chunkedReply, closedPort, jsonReply, mockClient, refused, type Reply, sseReply, toHandler } from "../utils/reply.js"
import { anthropicEvent, openAiChunk, wireServer } from "../utils/wireServer.js"

type Api = "openai" | "anthropic" | "responses"

const KEY = "sk-transport-secret-0123456789"
const NOW = Date.parse("2026-03-02T10:00:00Z")

interface Case {
  readonly name: string
  readonly api: Api
  readonly mode: "generate" | "stream"
  readonly reply: Reply
  readonly tag: ProviderError["_tag"]
  readonly action: ErrorAction
  readonly retryable: boolean
  readonly check?: (error: ProviderError) => void
  /** Adapter bounds for this case. */
  readonly limits?: { readonly maxBodyBytes?: number; readonly maxSseEventBytes?: number }
}

const openAiError = (status: number, type: string, code: string | null, message: string, headers: Record<string, string> = {}) =>
  jsonReply(status, { error: { message, type, param: null, code } }, { "x-request-id": "req_wire", ...headers })

const anthropicStart = [
  anthropicEvent("message_start", {
    message: { id: "msg_1", type: "message", role: "assistant", model: "claude-test", content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } }
  }),
  anthropicEvent("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
  anthropicEvent("ping", {})
]

const completion = (content: string) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "gpt-test",
  choices: [{ index: 0, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
})

const cases: ReadonlyArray<Case> = [
  {
    name: "OpenAI 429 rate_limit_exceeded with retry-after-ms",
    api: "openai",
    mode: "generate",
    reply: openAiError(429, "requests", "rate_limit_exceeded", "Rate limit reached", {
      "retry-after-ms": "1250",
      "retry-after": "2",
      "x-ratelimit-limit-requests": "60",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "1.25s"
    }),
    tag: "RateLimited",
    action: "wait",
    retryable: true,
    check: (e) => {
      if (e._tag !== "RateLimited") return
      expect(e.retryAfterMs).toBe(1250)
      expect(e.rateLimit?.requests).toEqual({ limit: 60, remaining: 0, resetAfterMs: 1250 })
      expect(e.providerCode).toBe("rate_limit_exceeded")
      expect(e.requestId).toBe("req_wire")
    }
  },
  {
    name: "OpenAI 429 insufficient_quota",
    api: "openai",
    mode: "generate",
    reply: openAiError(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota", { "retry-after": "1" }),
    tag: "QuotaExhausted",
    action: "reroute",
    retryable: false
  },
  ...([[500, "ServerError", "wait"], [502, "ServerError", "wait"], [503, "Overloaded", "reroute"], [504, "ServerError", "wait"]] as const).map(
    ([status, tag, action]): Case => ({
      name: `OpenAI ${status}`,
      api: "openai",
      mode: "generate",
      reply: openAiError(status, "server_error", null, "The server had an error while processing your request."),
      tag,
      action,
      retryable: true,
      check: (e) => expect(e.status).toBe(status)
    })
  ),
  {
    name: "OpenAI 502 with an HTML gateway page (unparsable body, kept raw)",
    api: "openai",
    mode: "generate",
    reply: jsonReply(502, "<html><body>Bad Gateway</body></html>", { "content-type": "text/html" }),
    tag: "ServerError",
    action: "wait",
    retryable: true,
    check: (e) => expect(e.rawBody).toBe("<html><body>Bad Gateway</body></html>")
  },
  {
    name: "400 context_length_exceeded",
    api: "openai",
    mode: "generate",
    reply: openAiError(400, "invalid_request_error", "context_length_exceeded", "This model's maximum context length is 128000 tokens."),
    tag: "ContextLengthExceeded",
    action: "stop",
    retryable: false
  },
  {
    name: "401 (the echoed key is scrubbed)",
    api: "openai",
    mode: "generate",
    reply: openAiError(401, "invalid_request_error", "invalid_api_key", `Incorrect API key provided: ${KEY}.`),
    tag: "Unauthorized",
    action: "reroute",
    retryable: false,
    check: (e) => expect(e.message).toContain("<redacted>")
  },
  {
    name: "404 model",
    api: "openai",
    mode: "generate",
    reply: openAiError(404, "invalid_request_error", "model_not_found", "The model `gpt-x` does not exist"),
    tag: "NotFound",
    action: "reroute",
    retryable: false
  },
  {
    name: "Anthropic 529 overloaded_error",
    api: "anthropic",
    mode: "generate",
    reply: jsonReply(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" }, request_id: "req_body" }, { "request-id": "req_hdr" }),
    tag: "Overloaded",
    action: "reroute",
    retryable: true,
    check: (e) => {
      expect(e.status).toBe(529)
      expect(e.providerType).toBe("overloaded_error")
      expect(e.requestId).toBe("req_hdr")
    }
  },
  {
    name: "Anthropic 200 SSE with a mid-stream event: error overloaded_error",
    api: "anthropic",
    mode: "stream",
    reply: sseReply([
      ...anthropicStart,
      anthropicEvent("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Par" } }),
      "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    ], { "request-id": "req_mid" }),
    tag: "Overloaded",
    action: "reroute",
    retryable: true,
    check: (e) => {
      expect(e.status).toBeUndefined()
      expect(e.requestId).toBe("req_mid")
    }
  },
  {
    name: "OpenAI SSE cut before [DONE]",
    api: "openai",
    mode: "stream",
    reply: sseReply([openAiChunk({ role: "assistant", content: "" }), openAiChunk({ content: "Partial" }), openAiChunk({}, "stop")]),
    tag: "StreamInterrupted",
    action: "wait",
    retryable: true,
    check: (e) => {
      if (e._tag !== "StreamInterrupted") return
      expect(e.receivedContent).toBe(true)
      expect(e.partialText).toBe("Partial")
    }
  },
  {
    name: "OpenAI SSE broken mid-body (connection dropped)",
    api: "openai",
    mode: "stream",
    reply: sseReply([openAiChunk({ content: "abc" })], {}, { breakAfter: true }),
    tag: "StreamInterrupted",
    action: "wait",
    retryable: true
  },
  {
    name: "x-should-retry: false on a 500",
    api: "openai",
    mode: "generate",
    reply: openAiError(500, "server_error", null, "boom", { "x-should-retry": "false" }),
    tag: "ServerError",
    action: "reroute",
    retryable: false,
    check: (e) => expect(e.shouldRetry).toBe(false)
  },
  {
    name: "retry-after as an HTTP-date (measured against Effect's clock)",
    api: "anthropic",
    mode: "generate",
    reply: jsonReply(429, { type: "error", error: { type: "rate_limit_error", message: "slow down" } }, {
      "retry-after": new Date(NOW + 45_000).toUTCString()
    }),
    tag: "RateLimited",
    action: "wait",
    retryable: true,
    check: (e) => expect(e._tag === "RateLimited" && e.retryAfterMs).toBe(45_000)
  },
  {
    name: "malformed JSON body on a 200",
    api: "openai",
    mode: "generate",
    reply: jsonReply(200, "{\"id\":\"chatcmpl-1\",\"choices\":[", { "x-request-id": "req_bad" }),
    tag: "InvalidOutput",
    action: "wait",
    retryable: true,
    check: (e) => {
      expect(e._tag === "InvalidOutput" && e.reason).toBe("malformed-response")
      expect(e.requestId).toBe("req_bad")
    }
  },
  {
    name: "a malformed SSE data line on a 200 stream",
    api: "anthropic",
    mode: "stream",
    reply: sseReply([...anthropicStart, "event: content_block_delta\ndata: {not json\n\n"]),
    tag: "InvalidOutput",
    action: "wait",
    retryable: true
  },
  {
    name: "connection refused",
    api: "openai",
    mode: "generate",
    reply: refused,
    tag: "ConnectionError",
    action: "wait",
    retryable: true,
    check: (e) => {
      expect(e._tag === "ConnectionError" && e.reason).toBe("refused")
      expect(e._tag === "ConnectionError" && e.code).toBe("ECONNREFUSED")
    }
  },
  {
    name: "a body over the size bound (declared length)",
    api: "openai",
    mode: "generate",
    reply: jsonReply(200, completion("x".repeat(5_000))),
    limits: { maxBodyBytes: 1_000 },
    tag: "ResponseTooLarge",
    action: "reroute",
    retryable: false,
    check: (e) => {
      expect(e._tag === "ResponseTooLarge" && e.part).toBe("body")
      expect(e._tag === "ResponseTooLarge" && e.limitBytes).toBe(1_000)
    }
  },
  {
    name: "a body over the size bound (chunked, no length)",
    api: "anthropic",
    mode: "generate",
    reply: chunkedReply(200, Array.from({ length: 10 }, () => "x".repeat(600))),
    limits: { maxBodyBytes: 1_000 },
    tag: "ResponseTooLarge",
    action: "reroute",
    retryable: false
  },
  {
    name: "an error body over the size bound",
    api: "openai",
    mode: "generate",
    reply: chunkedReply(500, Array.from({ length: 10 }, () => "y".repeat(600))),
    limits: { maxBodyBytes: 1_000 },
    tag: "ResponseTooLarge",
    action: "reroute",
    retryable: false,
    check: (e) => expect(e.status).toBe(500)
  },
  {
    name: "one SSE event over the event bound",
    api: "openai",
    mode: "stream",
    reply: sseReply([openAiChunk({ content: "z".repeat(4_000) }), "data: [DONE]\n\n"]),
    limits: { maxSseEventBytes: 1_024 },
    tag: "ResponseTooLarge",
    action: "reroute",
    retryable: false,
    check: (e) => expect(e._tag === "ResponseTooLarge" && e.part).toBe("sse-event")
  }
]

const request = (api: Api): GenerateRequest => ({
  model: api === "anthropic" ? "claude-test" : "gpt-test",
  messages: [{ role: "user", content: "hi" }],
  maxTokens: 32
})

const adapter = (api: Api, baseUrl: string, limits: Case["limits"] = {}) =>
  api === "openai"
    ? OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${baseUrl}/v1`, ...limits })
    : api === "responses"
    ? OpenAiResponses.make({ apiKey: Redacted.make(KEY), baseUrl: `${baseUrl}/v1`, ...limits })
    : Anthropic.make({ apiKey: Redacted.make(KEY), baseUrl, ...limits })

type Transport = "mock HttpClient" | "real local server"

/** Builds the adapter for `api` on `transport`, wired to answer with `reply` (the real one needs `Transport`). */
const providerOn = (transport: Transport, api: Api, reply: Reply, limits?: Case["limits"]) =>
  Effect.gen(function*() {
    if (transport === "mock HttpClient") {
      return yield* adapter(api, "http://mock.invalid", limits).pipe(Effect.provideService(HttpClient.HttpClient, mockClient(reply)))
    }
    const baseUrl = reply._tag === "Refused"
      ? `http://127.0.0.1:${yield* closedPort}`
      : (yield* wireServer(toHandler(reply))).url
    return yield* adapter(api, baseUrl, limits)
  })

const outcome = (provider: ProviderShape<ProviderError>, api: Api, mode: Case["mode"]) =>
  mode === "generate"
    ? Effect.flip(provider.generate(request(api)))
    : Effect.flip(Stream.runDrain(provider.stream(request(api))))

for (const transport of ["mock HttpClient", "real local server"] as const) {
  describe(`must-show classification over a ${transport}`, () => {
    it.scoped.each(cases.map((c) => [c.name, c] as const))("%s", ([, c]) =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        const provider = yield* providerOn(transport, c.api, c.reply, c.limits)
        const error = yield* outcome(provider, c.api, c.mode)
        expect(error._tag).toBe(c.tag)
        expect(actionOf(error)).toBe(c.action)
        expect(isRetryable(error)).toBe(c.retryable)
        expect(error.provider).toBe(c.api)
        expect(error.route).toBe(`${c.api}/${request(c.api).model}`)
        expect(JSON.stringify(error)).not.toContain(KEY)
        expect(String(error)).not.toContain(KEY)
        c.check?.(error)
      }).pipe(Effect.provide(Transport.layer())))

    it.scoped("a healthy answer decodes the same (JSON and SSE, both providers)", () =>
      Effect.gen(function*() {
        const openai = yield* providerOn(transport, "openai", jsonReply(200, completion("Hello!"), { "x-request-id": "req_ok" }))
        const json: GenerateResponse = yield* openai.generate(request("openai"))
        expect([json.text, json.finishReason, json.requestId]).toEqual(["Hello!", "stop", "req_ok"])
        const anthropic = yield* providerOn(transport, "anthropic", sseReply([
          ...anthropicStart,
          anthropicEvent("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Hi" } }),
          anthropicEvent("content_block_stop", { index: 0 }),
          anthropicEvent("message_delta", { delta: { stop_reason: "max_tokens", stop_sequence: null }, usage: { output_tokens: 2 } }),
          anthropicEvent("message_stop", {})
        ]))
        const events = yield* Stream.runCollect(anthropic.stream(request("anthropic")))
        const last = [...events].pop()
        expect(last?._tag === "Finish" && [last.response.text, last.response.finishReason]).toEqual(["Hi", "length"])
      }).pipe(Effect.provide(Transport.layer())))
  })
}

describe("bad provider bytes never become defects", () => {
  // Whatever the status, headers and body, and however an event stream is framed, every outcome is a
  // success or a typed failure — never a defect, never a thrown exception.
  const frame = fc.oneof(
    fc.string().map((s) => `data: ${s}\n\n`),
    fc.json().map((j) => `data: ${j}\n\n`),
    fc.json().map((j) => `event: error\ndata: ${j}\n\n`),
    fc.constantFrom(
      "data: [DONE]\n\n",
      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":7}}\n\n",
      "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":\"x\",\"function\":null}]}}]}\n\n",
      ": keep-alive\r\n\r\n",
      "data: {\"choices\":null,\"usage\":{\"prompt_tokens\":\"many\"}}\n\n"
    ),
    fc.string()
  )
  const reply = fc.oneof(
    fc.tuple(fc.integer({ min: 200, max: 599 }), fc.oneof(fc.string(), fc.json())).map(([status, body]) => jsonReply(status, body)),
    fc.tuple(fc.array(frame, { maxLength: 8 }), fc.boolean()).map(([frames, breakAfter]) => sseReply(frames, {}, { breakAfter }))
  )

  it.effect.each(["openai", "anthropic"] as const)("%s: generate and stream over arbitrary replies", (api) =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(reply, fc.boolean(), async (r, streamMode) => {
          const program = adapter(api, "http://mock.invalid", { maxBodyBytes: 4_096, maxSseEventBytes: 1_024 }).pipe(
            Effect.provideService(HttpClient.HttpClient, mockClient(r)),
            Effect.flatMap((provider) =>
              streamMode ? Stream.runDrain(provider.stream(request(api))) : Effect.asVoid(provider.generate(request(api)))
            )
          )
          const exit = await Effect.runPromiseExit(program)
          if (Exit.isFailure(exit)) {
            expect(Cause.isDie(exit.cause)).toBe(false)
            expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
          }
        }),
        { numRuns: 300, seed: 20260302 }
      )
    ))
})

describe("deep and wide JSON anywhere in a reply never becomes a defect", () => {
  // Values placed where each wire format carries provider data: JSON bodies, error objects, SSE
  // events, tool inputs. Deep ones exceed the library's bound (and, past ~5 000 levels, the stack of
  // every recursive walker); wide ones are large but shallow and must be read like any other body.
  const deep = fc.tuple(fc.integer({ min: 100, max: 8_000 }), fc.boolean()).map(([depth, asArray]) =>
    asArray ? "[".repeat(depth) + "]".repeat(depth) : "{\"k\":".repeat(depth) + "0" + "}".repeat(depth)
  )
  const wide = fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.boolean()).map(([n, asArray]) =>
    asArray
      ? JSON.stringify(Array.from({ length: n }, (_, i) => i % 3 === 0 ? `s${i}` : { i }))
      : JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])))
  )
  const value = fc.oneof(deep, wide, fc.json())
  const openAiBody = (v: string) =>
    fc.constantFrom(
      v,
      `{"id":"c","model":"gpt-test","choices":[{"index":0,"message":{"role":"assistant","content":"hi","extra":${v}},"finish_reason":"stop"}]}`,
      `{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"},"x":${v}}]},"finish_reason":"tool_calls"}]}`,
      `{"error":{"message":"boom","type":"server_error","code":null,"param":${v}}}`
    )
  const anthropicBody = (v: string) =>
    fc.constantFrom(
      v,
      `{"id":"m","type":"message","role":"assistant","model":"claude-test","stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1},"content":[{"type":"tool_use","id":"t","name":"f","input":${v}}]}`,
      `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded","detail":${v}},"request_id":"req_1"}`
    )
  const openAiFrames = (v: string) =>
    fc.constantFrom(
      [`data: {"choices":[{"index":0,"delta":{"content":"a"}}],"x":${v}}\n\n`, "data: [DONE]\n\n"],
      [`data: {"error":{"message":"boom","type":"server_error","detail":${v}}}\n\n`],
      [`data: ${v}\n\n`, "data: [DONE]\n\n"]
    )
  const anthropicFrames = (v: string) =>
    fc.constantFrom(
      [`event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x","detail":${v}}}\n\n`],
      [`event: message_start\ndata: {"type":"message_start","message":${v}}\n\n`, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"],
      [
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n",
        `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"},"x":${v}}\n\n`,
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
      ]
    )
  const reply = (api: Api) =>
    value.chain((v) =>
      fc.oneof(
        fc.tuple(fc.constantFrom(200, 400, 429, 500, 529), api === "openai" ? openAiBody(v) : anthropicBody(v))
          .map(([status, body]) => jsonReply(status, body)),
        (api === "openai" ? openAiFrames(v) : anthropicFrames(v)).map((frames) => sseReply(frames))
      )
    )

  it.effect.each(["openai", "anthropic"] as const)("%s: generate and stream", (api) =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(reply(api), fc.boolean(), async (r, streamMode) => {
          const program = adapter(api, "http://mock.invalid").pipe(
            Effect.provideService(HttpClient.HttpClient, mockClient(r)),
            Effect.flatMap((provider) =>
              streamMode ? Stream.runDrain(provider.stream(request(api))) : Effect.asVoid(provider.generate(request(api)))
            )
          )
          const exit = await Effect.runPromiseExit(program)
          if (Exit.isFailure(exit)) {
            expect(Cause.isDie(exit.cause)).toBe(false)
            expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
            // Whatever failed, its description can be serialised (a report, a log, a checkpoint row).
            expect(() => JSON.stringify(Cause.failureOption(exit.cause))).not.toThrow()
          }
        }),
        { numRuns: 200, seed: 20261206 }
      )
    ))
})

describe("OpenAI Responses: arbitrary and deep replies never become a defect", () => {
  const deep = fc.integer({ min: 100, max: 8_000 }).map((depth) => "[".repeat(depth) + "]".repeat(depth))
  const value = fc.oneof(deep, fc.json(), fc.string().map((text) => JSON.stringify(text)))
  const type = fc.constantFrom(
    "response.created",
    "response.output_text.delta",
    "response.refusal.delta",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
    "response.unknown"
  )
  // Each event's fields replaced by arbitrary values of arbitrary types, in arbitrary order.
  const frame = fc.oneof(
    fc.tuple(type, fc.constantFrom("delta", "response", "item", "output_index", "code", "usage"), value)
      .map(([t, field, v]) => `event: ${t}\ndata: {"type":"${t}","${field}":${v}}\n\n`),
    fc.tuple(type, value).map(([t, v]) => `event: ${t}\ndata: ${v}\n\n`),
    fc.constant("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"output\":[]}}\n\n"),
    fc.string()
  )
  const body = value.chain((v) =>
    fc.constantFrom(
      v,
      `{"id":"r","object":"response","status":"completed","output":${v}}`,
      `{"id":"r","status":"completed","output":[{"type":"message","content":${v}}]}`,
      `{"id":"r","status":"incomplete","incomplete_details":${v},"output":[]}`,
      `{"id":"r","status":"failed","error":${v},"output":[]}`,
      `{"error":{"message":"boom","type":"server_error","code":${v}}}`
    )
  )
  const reply = fc.oneof(
    fc.tuple(fc.constantFrom(200, 400, 429, 500, 503), body).map(([status, b]) => jsonReply(status, b)),
    fc.tuple(fc.array(frame, { maxLength: 8 }), fc.boolean()).map(([frames, breakAfter]) => sseReply(frames, {}, { breakAfter }))
  )

  it("generate and stream: a typed error or a valid answer, never a defect", () =>
    fc.assert(
      fc.asyncProperty(reply, fc.boolean(), async (r, streamMode) => {
        const program = adapter("responses", "http://mock.invalid", { maxBodyBytes: 65_536, maxSseEventBytes: 65_536 }).pipe(
          Effect.provideService(HttpClient.HttpClient, mockClient(r)),
          Effect.flatMap((provider) =>
            streamMode ? Stream.runDrain(provider.stream(request("responses"))) : Effect.asVoid(provider.generate(request("responses")))
          )
        )
        const exit = await Effect.runPromiseExit(program)
        if (Exit.isFailure(exit)) {
          expect(Cause.isDie(exit.cause)).toBe(false)
          expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
          expect(() => JSON.stringify(Cause.failureOption(exit.cause))).not.toThrow()
        }
      }),
      { numRuns: 400, seed: 20261206 }
    ))
})

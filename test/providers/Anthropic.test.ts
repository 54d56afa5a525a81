import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { actionOf, isRetryable } from "../../src/Errors.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import type { GenerateRequest } from "../../src/Provider.js"
import * as Transport from "../../src/Transport.js"
import { anthropicEvent, type Handler, json, sse, wireServer } from "../utils/wireServer.js"

const KEY = "sk-ant-test-secret-0123456789"
const request: GenerateRequest = { model: "claude-test", messages: [{ role: "user", content: "hi" }], maxTokens: 64 }

const withProvider = <A, E>(handler: Handler, use: (p: Effect.Effect.Success<ReturnType<typeof Anthropic.make>>) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const server = yield* wireServer(handler)
    const provider = yield* Anthropic.make({ apiKey: Redacted.make(KEY), baseUrl: server.url })
    return yield* use(provider)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const anthropicError = (status: number, type: string, message = "boom", headers: Record<string, string> = {}) =>
  json(status, { type: "error", error: { type, message }, request_id: "req_body" }, { "request-id": "req_hdr", ...headers })

const message = (content: ReadonlyArray<Record<string, unknown>>, stop = "end_turn") => ({
  id: "msg_1",
  type: "message",
  role: "assistant",
  model: "claude-test-2026",
  content,
  stop_reason: stop,
  stop_sequence: null,
  usage: { input_tokens: 10, output_tokens: 4 }
})

const messageStream = (deltas: ReadonlyArray<string>, tail: ReadonlyArray<string>) => [
  anthropicEvent("message_start", { message: { ...message([], ""), stop_reason: null, usage: { input_tokens: 10, output_tokens: 1 } } }),
  anthropicEvent("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
  anthropicEvent("ping", {}),
  ...deltas.map((text) => anthropicEvent("content_block_delta", { index: 0, delta: { type: "text_delta", text } })),
  ...tail
]

const streamEnd = [
  anthropicEvent("content_block_stop", { index: 0 }),
  anthropicEvent("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 6 } }),
  anthropicEvent("message_stop", {})
]

describe("Anthropic adapter — success", () => {
  it.live("sends a Messages request (system lifted, version header) and decodes the message", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, message([{ type: "text", text: "Hi " }, { type: "text", text: "there" }]), {
        "request-id": "req_1",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": new Date(Date.now() + 60_000).toISOString()
      }))
      const provider = yield* Anthropic.make({ apiKey: Redacted.make(KEY), baseUrl: server.url })
      const response = yield* provider.generate({
        ...request,
        messages: [{ role: "system", content: "be kind" }, { role: "user", content: "hi" }],
        system: "be brief",
        stop: ["END"]
      })
      expect(response.text).toBe("Hi there")
      expect(response.finishReason).toBe("stop")
      expect(response.usage).toEqual({ inputTokens: 10, outputTokens: 4, totalTokens: 14 })
      expect(response.requestId).toBe("req_1")
      expect(response.rateLimit?.requests?.remaining).toBe(49)
      const sent = server.requests[0]!
      expect(sent.path).toBe("/v1/messages")
      expect(sent.headers["x-api-key"]).toBe(KEY)
      expect(sent.headers["anthropic-version"]).toBe("2023-06-01")
      expect(sent.body).toEqual({
        model: "claude-test",
        max_tokens: 64,
        system: "be brief\n\nbe kind",
        messages: [{ role: "user", content: "hi" }],
        stop_sequences: ["END"]
      })
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("json_schema output is a forced tool call whose input becomes the text", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, message([{ type: "tool_use", id: "toolu_1", name: "answer", input: { city: "Paris" } }], "tool_use")))
      const provider = yield* Anthropic.make({ apiKey: Redacted.make(KEY), baseUrl: server.url })
      const response = yield* provider.generate({
        ...request,
        responseFormat: { type: "json_schema", name: "answer", schema: { type: "object", properties: { city: { type: "string" } } } }
      })
      expect(JSON.parse(response.text)).toEqual({ city: "Paris" })
      expect(response.toolCalls).toEqual([])
      expect(response.finishReason).toBe("stop")
      const body = server.requests[0]!.body as Record<string, unknown>
      expect(body["tool_choice"]).toEqual({ type: "tool", name: "answer" })
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("max_tokens and refusal stop reasons stay visible", () =>
    Effect.gen(function*() {
      const truncated = yield* withProvider(json(200, message([{ type: "text", text: "par" }], "max_tokens")), (p) => p.generate(request))
      const refused = yield* withProvider(json(200, message([], "refusal")), (p) => p.generate(request))
      expect(truncated.finishReason).toBe("length")
      expect(refused.finishReason).toBe("refusal")
    }))

  it.live("streams text (pings ignored) and ends with Finish", () =>
    withProvider(sse(messageStream(["Hel", "lo"], streamEnd), { headers: { "request-id": "req_s" } }), (p) =>
      Effect.gen(function*() {
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(p.stream(request)))
        expect(events.map((e) => e._tag)).toEqual(["Metadata", "TextDelta", "TextDelta", "Usage", "Finish"])
        const finish = events[4]!
        if (finish._tag !== "Finish") return
        expect(finish.response.text).toBe("Hello")
        expect(finish.response.id).toBe("msg_1")
        expect(finish.response.usage).toEqual({ inputTokens: 10, outputTokens: 6, totalTokens: 16 })
        expect(finish.response.requestId).toBe("req_s")
      })))

  it.live("an event type it does not know is skipped unread, even when its data is not JSON (Anthropic may add events)", () =>
    withProvider(
      sse(messageStream(["Hel", "lo"], [
        "event: server_hint\ndata: <not json>\n\n",
        anthropicEvent("future_event", { anything: [1, 2] }),
        ...streamEnd
      ])),
      (p) =>
        Effect.gen(function*() {
          const events = Chunk.toReadonlyArray(yield* Stream.runCollect(p.stream(request)))
          const finish = events.at(-1)
          expect(finish?._tag === "Finish" ? finish.response.text : undefined).toBe("Hello")
        })
    ))
})

describe("Anthropic adapter — classified failures over real HTTP", () => {
  const failureOf = (handler: Handler) => withProvider(handler, (p) => Effect.flip(p.generate(request)))

  it.live.each([
    [529, "overloaded_error", "Overloaded", "reroute"],
    [429, "rate_limit_error", "RateLimited", "wait"],
    [402, "billing_error", "QuotaExhausted", "reroute"],
    [401, "authentication_error", "Unauthorized", "reroute"],
    [403, "permission_error", "Unauthorized", "reroute"],
    [404, "not_found_error", "NotFound", "reroute"],
    [413, "request_too_large", "BadRequest", "stop"],
    [500, "api_error", "ServerError", "wait"],
    [504, "timeout_error", "ServerError", "wait"],
    [400, "invalid_request_error", "BadRequest", "stop"]
  ] as const)("%d %s → %s (%s)", ([status, type, tag, action]) =>
    Effect.gen(function*() {
      const error = yield* failureOf(anthropicError(status, type, "nope", { "retry-after": "4" }))
      expect(error._tag).toBe(tag)
      expect(error.status).toBe(status)
      expect(error.providerType).toBe(type)
      expect(error.requestId).toBe("req_hdr")
      expect(actionOf(error)).toBe(action)
      if (error._tag === "RateLimited") expect(error.retryAfterMs).toBe(4000)
    }))

  it.live("400 prompt is too long → ContextLengthExceeded", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(anthropicError(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"))
      expect(error._tag).toBe("ContextLengthExceeded")
    }))
})

describe("Anthropic adapter — stream failures", () => {
  const collect = (handler: Handler) => withProvider(handler, (p) => Effect.flip(Stream.runCollect(p.stream(request))))

  it.live("a mid-stream event: error overloaded_error after HTTP 200 → Overloaded", () =>
    Effect.gen(function*() {
      const error = yield* collect(sse(messageStream(["Par"], [
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
      ]), { headers: { "request-id": "req_mid" } }))
      expect(error._tag).toBe("Overloaded")
      expect(error.status).toBeUndefined()
      expect(error.requestId).toBe("req_mid")
      expect(actionOf(error)).toBe("reroute")
      expect(isRetryable(error)).toBe(true)
    }))

  it.live("deltas that share a network chunk with a later error event still reach the consumer first", () =>
    withProvider(
      // One write: the text deltas and the error arrive in the same chunk.
      sse([messageStream(["Par", "tial"], [
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
      ]).join("")]),
      (p) =>
        Effect.gen(function*() {
          const seen: Array<string> = []
          const error = yield* Effect.flip(Stream.runForEach(p.stream(request), (event) =>
            Effect.sync(() => {
              if (event._tag === "TextDelta") seen.push(event.text)
            })))
          expect(seen.join("")).toBe("Partial")
          expect(error._tag).toBe("Overloaded")
        })
    ))

  it.live("a stream that ends without message_stop → StreamInterrupted", () =>
    Effect.gen(function*() {
      const error = yield* collect(sse(messageStream(["Hel", "lo"], [anthropicEvent("content_block_stop", { index: 0 })])))
      expect(error._tag).toBe("StreamInterrupted")
      if (error._tag === "StreamInterrupted") expect(error.partialText).toBe("Hello")
    }))

  it.live("a stream that ends before any content → StreamInterrupted without content", () =>
    Effect.gen(function*() {
      const error = yield* collect(sse([anthropicEvent("message_start", { message: message([], "") })]))
      expect(error._tag === "StreamInterrupted" && error.receivedContent).toBe(false)
    }))
})

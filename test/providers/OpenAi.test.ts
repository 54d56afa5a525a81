import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { actionOf, isRetryable } from "../../src/Errors.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import type { GenerateRequest, StreamEvent } from "../../src/Provider.js"
import * as Transport from "../../src/Transport.js"
import { type Handler, json, openAiChunk, sse, wireServer } from "../utils/wireServer.js"

const KEY = "sk-test-secret-key-0123456789"
const request: GenerateRequest = { model: "gpt-test", messages: [{ role: "user", content: "hi" }], maxTokens: 64 }

const withProvider = <A, E>(handler: Handler, use: (p: Effect.Effect.Success<ReturnType<typeof OpenAi.make>>) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const server = yield* wireServer(handler)
    const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1` })
    return yield* use(provider)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const failureOf = (handler: Handler) => withProvider(handler, (p) => Effect.flip(p.generate(request)))

const openAiError = (status: number, type: string, code: string | null, message = "boom", headers: Record<string, string> = {}) =>
  json(status, { error: { message, type, param: null, code } }, { "x-request-id": "req_abc", ...headers })

describe("OpenAI adapter — success", () => {
  it.live("sends the chat completions request and decodes the completion", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, {
        id: "chatcmpl-9",
        object: "chat.completion",
        created: 1,
        model: "gpt-test-2026",
        choices: [{ index: 0, message: { role: "assistant", content: "Hello!", refusal: null }, logprobs: null, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
      }, {
        "x-request-id": "req_1",
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-requests": "600ms"
      }))
      const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1`, maxTokensCap: 32 })
      const response = yield* provider.generate({ ...request, system: "be brief", idempotencyKey: "idem-1" })
      expect(response.text).toBe("Hello!")
      expect(response.model).toBe("gpt-test-2026")
      expect(response.finishReason).toBe("stop")
      expect(response.usage).toEqual({ inputTokens: 5, outputTokens: 2, totalTokens: 7 })
      expect(response.requestId).toBe("req_1")
      expect(response.rateLimit?.requests).toEqual({ limit: 100, remaining: 99, resetAfterMs: 600 })
      const sent = server.requests[0]!
      expect(sent.path).toBe("/v1/chat/completions")
      expect(sent.headers["authorization"]).toBe(`Bearer ${KEY}`)
      expect(sent.headers["idempotency-key"]).toBe("idem-1")
      expect(sent.body).toEqual({
        model: "gpt-test",
        messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }],
        max_completion_tokens: 32
      })
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("keeps length, content_filter and refusal visible", () =>
    Effect.gen(function*() {
      const completion = (finish: string, refusal: string | null = null) =>
        json(200, { id: "c", model: "m", choices: [{ index: 0, message: { role: "assistant", content: "x", refusal }, finish_reason: finish }] })
      const length = yield* withProvider(completion("length"), (p) => p.generate(request))
      const filtered = yield* withProvider(completion("content_filter"), (p) => p.generate(request))
      const refused = yield* withProvider(completion("stop", "I can't help with that"), (p) => p.generate(request))
      expect(length.finishReason).toBe("length")
      expect(filtered.finishReason).toBe("content_filter")
      expect(refused.finishReason).toBe("refusal")
      expect(refused.refusal).toBe("I can't help with that")
    }))

  it.live("streams deltas, tool calls and usage, ending with Finish", () =>
    withProvider(sse([
      openAiChunk({ role: "assistant", content: "" }),
      openAiChunk({ content: "Hel" }),
      openAiChunk({ content: "lo" }),
      openAiChunk({ tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "lookup", arguments: "{\"q\":" } }] }),
      openAiChunk({ tool_calls: [{ index: 0, function: { arguments: "1}" } }] }),
      openAiChunk({}, "tool_calls"),
      `data: ${JSON.stringify({ id: "chatcmpl-1", object: "chat.completion.chunk", model: "gpt-test", choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } })}\n\n`,
      "data: [DONE]\n\n"
    ], { headers: { "x-request-id": "req_s" } }), (p) =>
      Effect.gen(function*() {
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(p.stream(request)))
        expect(events[0]).toEqual({ _tag: "Metadata", requestId: "req_s" })
        expect(events.filter((e) => e._tag === "TextDelta").map((e) => (e as Extract<StreamEvent, { _tag: "TextDelta" }>).text))
          .toEqual(["Hel", "lo"])
        const finish = events[events.length - 1]!
        expect(finish._tag).toBe("Finish")
        if (finish._tag !== "Finish") return
        expect(finish.response.text).toBe("Hello")
        expect(finish.response.toolCalls).toEqual([{ id: "call_1", name: "lookup", arguments: "{\"q\":1}" }])
        expect(finish.response.finishReason).toBe("tool_calls")
        expect(finish.response.usage.totalTokens).toBe(7)
        expect(finish.response.requestId).toBe("req_s")
      })))
})

describe("OpenAI adapter — classified failures over real HTTP", () => {
  it.live("429 rate_limit_exceeded with retry-after-ms → RateLimited (wait) with the snapshot", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(openAiError(429, "requests", "rate_limit_exceeded", "Rate limit reached", {
        "retry-after-ms": "1250",
        "retry-after": "2",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s"
      }))
      expect(error._tag).toBe("RateLimited")
      if (error._tag !== "RateLimited") return
      expect(error.retryAfterMs).toBe(1250)
      expect(error.rateLimit?.requests).toEqual({ limit: 60, remaining: 0, resetAfterMs: 1000 })
      expect(error.status).toBe(429)
      expect(error.requestId).toBe("req_abc")
      expect(error.providerCode).toBe("rate_limit_exceeded")
      expect(actionOf(error)).toBe("wait")
      expect(isRetryable(error)).toBe(true)
      expect(error.route).toBe("openai/gpt-test")
      expect(error.attempt).toBe(1)
    }))

  it.live("429 insufficient_quota → QuotaExhausted, never retried", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(openAiError(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota"))
      expect(error._tag).toBe("QuotaExhausted")
      expect(isRetryable(error)).toBe(false)
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live.each([
    [500, "ServerError", "wait"],
    [502, "ServerError", "wait"],
    [503, "Overloaded", "reroute"],
    [504, "ServerError", "wait"]
  ] as const)("%d → %s (%s)", ([status, tag, action]) =>
    Effect.gen(function*() {
      const error = yield* failureOf(json(status, status === 502 ? "<html>Bad Gateway</html>" : { error: { message: "x", type: status === 503 ? "service_unavailable" : "server_error", param: null, code: null } }))
      expect(error._tag).toBe(tag)
      expect(error.status).toBe(status)
      expect(actionOf(error)).toBe(action)
      expect(isRetryable(error)).toBe(true)
      if (status === 502) expect(error.rawBody).toBe("<html>Bad Gateway</html>")
    }))

  it.live("400 context_length_exceeded → ContextLengthExceeded (stop)", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(openAiError(400, "invalid_request_error", "context_length_exceeded", "This model's maximum context length is 128000 tokens."))
      expect(error._tag).toBe("ContextLengthExceeded")
      expect(actionOf(error)).toBe("stop")
    }))

  it.live("400 invalid_request_error → BadRequest with the param", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(json(400, { error: { message: "bad temperature", type: "invalid_request_error", param: "temperature", code: null } }))
      expect(error._tag).toBe("BadRequest")
      if (error._tag === "BadRequest") expect(error.param).toBe("temperature")
      expect(actionOf(error)).toBe("stop")
    }))

  it.live("401 → Unauthorized, and the echoed key never appears in the error", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(openAiError(401, "invalid_request_error", "invalid_api_key", `Incorrect API key provided: ${KEY}.`))
      expect(error._tag).toBe("Unauthorized")
      expect(JSON.stringify(error)).not.toContain(KEY)
      expect(error.message).not.toContain(KEY)
      expect(String(error)).not.toContain(KEY)
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live("404 model_not_found → NotFound", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(openAiError(404, "invalid_request_error", "model_not_found", "The model `gpt-x` does not exist"))
      expect(error._tag).toBe("NotFound")
    }))

  it.live("x-should-retry: false on a 500 → not retryable, rerouted", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(openAiError(500, "server_error", null, "x", { "x-should-retry": "false" }))
      expect(error._tag).toBe("ServerError")
      expect(isRetryable(error)).toBe(false)
      expect(actionOf(error)).toBe("reroute")
    }))

  it.effect("retry-after as an HTTP-date is measured against Effect's clock", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.parse("2026-11-22T12:00:00Z"))
      const error = yield* failureOf(openAiError(429, "tokens", "rate_limit_exceeded", "slow down", {
        "retry-after": "Sun, 22 Nov 2026 12:00:30 GMT"
      }))
      expect(error._tag === "RateLimited" && error.retryAfterMs).toBe(30_000)
    }))

  it.live("malformed JSON on a 200 → InvalidOutput{malformed-response}, retryable", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(json(200, "{\"id\": \"chatcmpl-1\", \"choices\": [", { "x-request-id": "req_m" }))
      expect(error._tag).toBe("InvalidOutput")
      if (error._tag !== "InvalidOutput") return
      expect(error.reason).toBe("malformed-response")
      expect(error.requestId).toBe("req_m")
      expect(isRetryable(error)).toBe(true)
    }))

  it.live("a 200 JSON body without choices is malformed, not a success", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(json(200, { object: "list", data: [] }))
      expect(error._tag === "InvalidOutput" && error.reason).toBe("malformed-response")
    }))

  it.live("connection refused → ConnectionError{refused}", () =>
    Effect.gen(function*() {
      const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: "http://127.0.0.1:1/v1" })
      const error = yield* Effect.flip(provider.generate(request))
      expect(error._tag).toBe("ConnectionError")
      if (error._tag === "ConnectionError") expect(error.reason).toBe("refused")
      expect(actionOf(error)).toBe("wait")
    }).pipe(Effect.provide(Transport.layer())))

  it.live("a reset before headers → ConnectionError{reset}", () =>
    Effect.gen(function*() {
      const error = yield* failureOf((_req, _body, res) => res.socket?.destroy())
      expect(error._tag).toBe("ConnectionError")
      if (error._tag === "ConnectionError") expect(["reset", "closed"]).toContain(error.reason)
    }))

  it.live("a body over the bound → ResponseTooLarge (declared and chunked)", () =>
    Effect.gen(function*() {
      const big = JSON.stringify({ id: "c", choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(5000) }, finish_reason: "stop" }] })
      const declared = yield* Effect.gen(function*() {
        const server = yield* wireServer(json(200, big))
        const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1`, maxBodyBytes: 1000 })
        return yield* Effect.flip(provider.generate(request))
      }).pipe(Effect.scoped)
      const chunked = yield* Effect.gen(function*() {
        const server = yield* wireServer((_req, _body, res) => {
          res.writeHead(200, { "content-type": "application/json" })
          for (let i = 0; i < 10; i++) res.write(big.slice(i * 600, (i + 1) * 600))
          res.end()
        })
        const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1`, maxBodyBytes: 1000 })
        return yield* Effect.flip(provider.generate(request))
      }).pipe(Effect.scoped)
      for (const error of [declared, chunked]) {
        expect(error._tag).toBe("ResponseTooLarge")
        if (error._tag === "ResponseTooLarge") expect(error.part).toBe("body")
      }
    }).pipe(Effect.provide(Transport.layer())))
})

describe("OpenAI adapter — stream failures", () => {
  const collect = (handler: Handler) => withProvider(handler, (p) => Effect.flip(Stream.runCollect(p.stream(request))))

  it.live("a stream cut before [DONE] → StreamInterrupted with the partial text", () =>
    Effect.gen(function*() {
      const error = yield* collect(sse([openAiChunk({ role: "assistant", content: "" }), openAiChunk({ content: "Partial ans" })]))
      expect(error._tag).toBe("StreamInterrupted")
      if (error._tag !== "StreamInterrupted") return
      expect(error.receivedContent).toBe(true)
      expect(error.partialText).toBe("Partial ans")
      expect(actionOf(error)).toBe("wait")
    }))

  it.live("a socket destroyed mid-stream → StreamInterrupted", () =>
    Effect.gen(function*() {
      const error = yield* collect(sse([openAiChunk({ content: "abc" })], { destroy: true }))
      expect(error._tag).toBe("StreamInterrupted")
    }))

  it.live("an error chunk mid-stream is classified by its type", () =>
    Effect.gen(function*() {
      const error = yield* collect(sse([
        openAiChunk({ content: "a" }),
        `data: ${JSON.stringify({ error: { message: "The server had an error", type: "server_error", param: null, code: null } })}\n\n`
      ]))
      expect(error._tag).toBe("ServerError")
      expect(error.status).toBeUndefined()
    }))

  it.live("an oversized event → ResponseTooLarge{sse-event}", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(sse([openAiChunk({ content: "x".repeat(4000) }), "data: [DONE]\n\n"]))
      const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1`, maxSseEventBytes: 1024 })
      const error = yield* Effect.flip(Stream.runCollect(provider.stream(request)))
      expect(error._tag === "ResponseTooLarge" && error.part).toBe("sse-event")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("an HTTP error on a stream request is classified like any other", () =>
    Effect.gen(function*() {
      const error = yield* collect(openAiError(429, "requests", "rate_limit_exceeded", "slow", { "retry-after": "3" }))
      expect(error._tag === "RateLimited" && error.retryAfterMs).toBe(3000)
    }))
})

/**
 * The ChaosServer against the official SDKs, over real HTTP on 127.0.0.1: the SDKs must parse its
 * healthy answers (JSON and SSE) exactly as they parse the real APIs', and raise the right error class
 * with our headers for every injected fault.
 */
import Anthropic from "@anthropic-ai/sdk"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import { anthropic, chatBody, messagesBody, openai, postJson, raw, rejection, sseData, sseEvents } from "./helpers.js"

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>
type OpenAIRateLimitError = InstanceType<typeof OpenAI.RateLimitError>
type AnthropicApiError = InstanceType<typeof Anthropic.APIError>

const TEXT = "Hello there, chaos world!"
const serve = (scenario: Scenario.Scenario = {}) => ChaosServer.make({ scenario })
const textRoute = { content: { kind: "text", text: TEXT } } as const

const userMessage = [{ role: "user" as const, content: "Say hello." }]

describe("ChaosServer with the OpenAI SDK", () => {
  it.scopedLive("parses a chat.completion with content, usage, finish reason and request id", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const { data, request_id, response } = yield* Effect.promise(() =>
        openai(server).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }).withResponse()
      )
      expect(data.object).toBe("chat.completion")
      expect(data.id).toMatch(/^chatcmpl-[A-Za-z0-9]{29}$/)
      expect(data.model).toBe("gpt-4o-mini")
      expect(data.choices).toHaveLength(1)
      expect(data.choices[0]?.message).toMatchObject({ role: "assistant", content: TEXT, refusal: null })
      expect(data.choices[0]?.finish_reason).toBe("stop")
      // "Say hello." = 10 chars → 3 tokens; the answer is 25 chars → 7 tokens.
      expect(data.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 })
      expect(request_id).toMatch(/^req_[0-9a-f]{32}$/)
      expect(response.headers.get("x-request-id")).toBe(request_id)
      expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("9999")
      expect(response.headers.get("openai-version")).toBe("2020-10-01")
    }))

  it.scopedLive("streams chunks: role delta first, content deltas, finish chunk, usage chunk, [DONE]", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const chunks = yield* Effect.promise(async () => {
        const stream = await openai(server).chat.completions.create({
          model: "gpt-4o-mini",
          messages: userMessage,
          stream: true,
          stream_options: { include_usage: true }
        })
        const out: Array<OpenAI.ChatCompletionChunk> = []
        for await (const chunk of stream) out.push(chunk)
        return out
      })
      expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true)
      expect(chunks[0]?.choices[0]?.delta).toMatchObject({ role: "assistant", content: "" })
      const contentDeltas = chunks.flatMap((c) => c.choices.flatMap((choice) => choice.delta.content ?? []))
      expect(contentDeltas.filter((d) => d !== "").length).toBeGreaterThan(2)
      expect(contentDeltas.join("")).toBe(TEXT)
      const finish = chunks.filter((c) => c.choices[0]?.finish_reason != null)
      expect(finish.map((c) => c.choices[0]?.finish_reason)).toEqual(["stop"])
      const last = chunks[chunks.length - 1]
      expect(last?.choices).toEqual([])
      expect(last?.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 })
    }))

  it.scopedLive("the SDK's stream helper accumulates a final completion", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const final = yield* Effect.promise(() =>
        openai(server).chat.completions.stream({ model: "gpt-4o-mini", messages: userMessage }).finalChatCompletion()
      )
      expect(final.choices[0]?.message.content).toBe(TEXT)
      expect(final.choices[0]?.finish_reason).toBe("stop")
    }))

  it.scopedLive("without include_usage there is no usage chunk, and the body ends with [DONE]", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const response = yield* postJson(`${server.openAiBaseUrl}/chat/completions`, chatBody({ stream: true }))
      expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
      const data = sseData(response.text)
      expect(data[data.length - 1]).toBe("[DONE]")
      const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Record<string, unknown>)
      expect(chunks.some((c) => "usage" in c)).toBe(false)
      expect(response.text.endsWith("data: [DONE]\n\n")).toBe(true)
    }))

  it.scopedLive("echo and json content; max_tokens cuts the answer with finish_reason length", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        routes: [
          { model: "echo-*", content: { kind: "echo" } },
          { model: "json-model", content: { kind: "json", value: { answer: 42, tags: ["a", "b"] } } }
        ],
        default: { content: { kind: "text", text: "x".repeat(100) } }
      })
      const client = openai(server)
      const echoed = yield* Effect.promise(() =>
        client.chat.completions.create({
          model: "echo-1",
          messages: [{ role: "user", content: "first" }, { role: "assistant", content: "ok" }, {
            role: "user",
            content: [{ type: "text", text: "the last one" }]
          }]
        })
      )
      expect(echoed.choices[0]?.message.content).toBe("the last one")
      const json = yield* Effect.promise(() => client.chat.completions.create({ model: "json-model", messages: userMessage }))
      expect(JSON.parse(json.choices[0]?.message.content ?? "")).toEqual({ answer: 42, tags: ["a", "b"] })
      const capped = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "gpt-4o-mini", messages: userMessage, max_completion_tokens: 5 })
      )
      expect(capped.choices[0]?.message.content).toBe("x".repeat(20))
      expect(capped.choices[0]?.finish_reason).toBe("length")
      expect(capped.usage?.completion_tokens).toBe(5)
    }))

  it.scopedLive("lists models: defaults, the scenario's models and the routes' exact models", () =>
    Effect.gen(function*() {
      const server = yield* serve({ models: ["my-model"], routes: [{ model: "routed-model" }, { model: "glob-*" }] })
      const page = yield* Effect.promise(() => openai(server).models.list())
      const ids = page.data.map((m) => m.id)
      expect(ids).toEqual(expect.arrayContaining(["gpt-4o-mini", "claude-sonnet-4-5", "my-model", "routed-model"]))
      expect(ids).not.toContain("glob-*")
      expect(page.data.every((m) => m.object === "model")).toBe(true)
    }))

  const openAiCases: ReadonlyArray<{
    readonly fault: Scenario.Fault
    readonly cls: new(...args: never) => OpenAIApiError
    readonly status: number
    readonly type?: string
    readonly code?: string | null
  }> = [
    { fault: { kind: "rate_limit", retryAfterSeconds: 7 }, cls: OpenAI.RateLimitError, status: 429, type: "requests", code: "rate_limit_exceeded" },
    { fault: { kind: "rate_limit", limitType: "tokens" }, cls: OpenAI.RateLimitError, status: 429, type: "tokens", code: "rate_limit_exceeded" },
    { fault: { kind: "insufficient_quota" }, cls: OpenAI.RateLimitError, status: 429, type: "insufficient_quota", code: "insufficient_quota" },
    { fault: { kind: "billing" }, cls: OpenAI.APIError, status: 402, type: "insufficient_quota", code: "billing_not_active" },
    { fault: { kind: "overloaded" }, cls: OpenAI.InternalServerError, status: 529, type: "server_error", code: "overloaded" },
    { fault: { kind: "http_error", status: 500 }, cls: OpenAI.InternalServerError, status: 500, type: "server_error", code: null },
    { fault: { kind: "http_error", status: 502 }, cls: OpenAI.InternalServerError, status: 502 },
    { fault: { kind: "http_error", status: 503 }, cls: OpenAI.InternalServerError, status: 503 },
    { fault: { kind: "http_error", status: 504 }, cls: OpenAI.InternalServerError, status: 504 },
    { fault: { kind: "http_error", status: 400 }, cls: OpenAI.BadRequestError, status: 400, type: "invalid_request_error" },
    {
      fault: { kind: "http_error", status: 400, reason: "context_length" },
      cls: OpenAI.BadRequestError,
      status: 400,
      type: "invalid_request_error",
      code: "context_length_exceeded"
    },
    { fault: { kind: "http_error", status: 401 }, cls: OpenAI.AuthenticationError, status: 401, code: "invalid_api_key" },
    { fault: { kind: "http_error", status: 403 }, cls: OpenAI.PermissionDeniedError, status: 403 },
    { fault: { kind: "http_error", status: 404 }, cls: OpenAI.NotFoundError, status: 404, code: "model_not_found" },
    { fault: { kind: "http_error", status: 413 }, cls: OpenAI.APIError, status: 413 },
    { fault: { kind: "http_error", status: 422 }, cls: OpenAI.UnprocessableEntityError, status: 422 }
  ]

  it.scopedLive("raises the SDK's error class for every injected HTTP fault, with our request id and headers", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: openAiCases.map((c) => c.fault) } })
      const client = openai(server)
      const seen: Array<string> = []
      for (const expected of openAiCases) {
        const error = yield* rejection(() => client.chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }))
        const label = JSON.stringify(expected.fault)
        expect(error, label).toBeInstanceOf(expected.cls)
        const apiError = error as OpenAIApiError
        expect(apiError.status, label).toBe(expected.status)
        expect(apiError.requestID, label).toMatch(/^req_[0-9a-f]{32}$/)
        expect(apiError.headers?.get("x-request-id"), label).toBe(apiError.requestID)
        if (expected.type !== undefined) expect(apiError.type, label).toBe(expected.type)
        if (expected.code !== undefined) expect(apiError.code, label).toBe(expected.code)
        seen.push(apiError.requestID ?? "")
      }
      const stats = yield* server.stats
      expect(stats.log.map((e) => e.requestId)).toEqual(seen)
      expect(stats.log.map((e) => e.status)).toEqual(openAiCases.map((c) => c.status))
    }))

  it.scopedLive("rate limit headers: retry-after, retry-after-ms, HTTP-date, remaining 0", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          script: [
            { kind: "rate_limit", retryAfterSeconds: 7 },
            { kind: "rate_limit", retryAfterMs: 250 },
            { kind: "rate_limit", retryAfterDate: "Wed, 21 Oct 2015 07:28:00 GMT" },
            { kind: "rate_limit", retryAfterDate: 30, limitType: "tokens" }
          ]
        }
      })
      const client = openai(server)
      const call = () => rejection(() => client.chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }))
      const seconds = (yield* call()) as OpenAIRateLimitError
      expect(seconds.headers.get("retry-after")).toBe("7")
      expect(seconds.headers.get("x-ratelimit-remaining-requests")).toBe("0")
      expect(seconds.headers.get("x-ratelimit-reset-requests")).toBe("7s")
      expect(seconds.message).toContain("Please try again in 7s")
      const ms = (yield* call()) as OpenAIRateLimitError
      expect(ms.headers.get("retry-after-ms")).toBe("250")
      expect(ms.headers.get("retry-after")).toBeNull()
      expect(ms.headers.get("x-ratelimit-reset-requests")).toBe("250ms")
      const date = (yield* call()) as OpenAIRateLimitError
      expect(date.headers.get("retry-after")).toBe("Wed, 21 Oct 2015 07:28:00 GMT")
      const relative = (yield* call()) as OpenAIRateLimitError
      const at = Date.parse(relative.headers.get("retry-after") ?? "")
      expect(at - Date.now()).toBeGreaterThan(20_000)
      expect(at - Date.now()).toBeLessThanOrEqual(31_000)
      expect(relative.headers.get("x-ratelimit-remaining-tokens")).toBe("0")
      expect(relative.headers.get("x-ratelimit-remaining-requests")).not.toBe("0")
    }))

  it.scopedLive("x-should-retry: false stops the SDK's retry of a 500; true makes it retry a 400", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          script: [
            { kind: "http_error", status: 500, shouldRetry: false },
            { kind: "http_error", status: 400, shouldRetry: true, retryAfterSeconds: 0.01 },
            { kind: "http_error", status: 400, shouldRetry: true, retryAfterSeconds: 0.01 }
          ]
        }
      })
      const client = openai(server, { maxRetries: 1 })
      const first = yield* rejection(() => client.chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }))
      expect(first).toBeInstanceOf(OpenAI.InternalServerError)
      expect((first as OpenAIApiError).headers?.get("x-should-retry")).toBe("false")
      expect((yield* server.stats).total).toBe(1)
      const second = yield* rejection(() => client.chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }))
      expect(second).toBeInstanceOf(OpenAI.BadRequestError)
      const stats = yield* server.stats
      expect(stats.total).toBe(3)
      expect(stats.byStatus).toEqual({ "500": 1, "400": 2 })
    }))

  it.scopedLive("a 429 with retry-after-ms: 10 is retried once (2 requests) and then succeeds", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "rate_limit", retryAfterMs: 10 }] } })
      const completion = yield* Effect.promise(() =>
        openai(server, { maxRetries: 1 }).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage })
      )
      expect(completion.choices[0]?.message.content).toBe(TEXT)
      const stats = yield* server.stats
      expect(stats.total).toBe(2)
      expect(stats.log.map((e) => [e.fault, e.status])).toEqual([["rate_limit", 429], ["ok", 200]])
    }))

  it.scopedLive("a mid-stream error chunk makes the SDK stream throw after the first deltas", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_error", afterDeltas: 2 }] } })
      const received: Array<string> = []
      const error = yield* rejection(async () => {
        const stream = await openai(server).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage, stream: true })
        for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? "")
      })
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect((error as OpenAIApiError).message).toContain("overloaded")
      expect(received.filter((d) => d !== "")).toHaveLength(2)
    }))

  it.scopedLive("a stream cut before [DONE] is observable: no finish chunk, no [DONE], and the helper rejects", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_cut", afterDeltas: 2 }, { kind: "stream_cut", afterDeltas: 2 }] } })
      const response = yield* postJson(`${server.openAiBaseUrl}/chat/completions`, chatBody({ stream: true }))
      const data = sseData(response.text)
      expect(data).not.toContain("[DONE]")
      expect(data).toHaveLength(3) // role chunk + 2 content deltas
      expect(data.some((d) => d.includes("\"finish_reason\":\"stop\""))).toBe(false)
      const error = yield* rejection(() =>
        openai(server).chat.completions.stream({ model: "gpt-4o-mini", messages: userMessage }).finalChatCompletion()
      )
      expect(String(error)).toContain("missing finish_reason")
    }))

  it.scopedLive("an aborted stream (socket closed mid-body) makes the SDK stream throw", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_cut", afterDeltas: 1, abort: true }] } })
      const received: Array<string> = []
      const error = yield* rejection(async () => {
        const stream = await openai(server).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage, stream: true })
        for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? "")
      })
      expect(error).toBeInstanceOf(Error)
      expect(received.join("")).toBe("Hello")
    }))

  it.scopedLive("a connection reset surfaces as APIConnectionError", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: [{ kind: "connection_reset" }] } })
      const error = yield* rejection(() => openai(server).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }))
      expect(error).toBeInstanceOf(OpenAI.APIConnectionError)
      const stats = yield* server.stats
      expect(stats.byStatus).toEqual({ none: 1 })
    }))

  it.scopedLive("a hang before headers times the SDK out, and the slot is released when it gives up", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { concurrency: 1, script: [{ kind: "hang_before_headers" }] } })
      const error = yield* rejection(() =>
        openai(server, { timeout: 150 }).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage })
      )
      expect(error).toBeInstanceOf(OpenAI.APIConnectionTimeoutError)
      // The client hung up; once the server notices, the concurrency slot is free again.
      for (let i = 0; i < 200 && (yield* server.stats).inFlight > 0; i++) yield* Effect.sleep("5 millis")
      expect((yield* server.stats).inFlight).toBe(0)
      const ok = yield* Effect.promise(() => openai(server).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage }))
      expect(ok.choices[0]?.finish_reason).toBe("stop")
    }))

  it.scopedLive("200 faults: empty, schema violation, truncated, content filter, malformed JSON", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          ...textRoute,
          script: [
            { kind: "empty_content" },
            { kind: "schema_violation", value: { answer: "forty-two", extra: [1, 2] } },
            { kind: "truncated" },
            { kind: "content_filter" },
            { kind: "malformed_json" }
          ]
        }
      })
      const client = openai(server)
      const create = () => client.chat.completions.create({ model: "gpt-4o-mini", messages: userMessage })
      const empty = yield* Effect.promise(create)
      expect(empty.choices[0]?.message.content).toBe("")
      expect(empty.choices[0]?.finish_reason).toBe("stop")
      expect(empty.usage?.completion_tokens).toBe(0)
      const violation = yield* Effect.promise(create)
      expect(JSON.parse(violation.choices[0]?.message.content ?? "")).toEqual({ answer: "forty-two", extra: [1, 2] })
      const truncated = yield* Effect.promise(create)
      expect(truncated.choices[0]?.finish_reason).toBe("length")
      expect(TEXT.startsWith(truncated.choices[0]?.message.content ?? "-")).toBe(true)
      expect((truncated.choices[0]?.message.content ?? "").length).toBeLessThan(TEXT.length)
      const filtered = yield* Effect.promise(create)
      expect(filtered.choices[0]?.finish_reason).toBe("content_filter")
      const malformed = yield* rejection(create)
      expect(malformed).toBeInstanceOf(Error)
      expect(malformed).not.toBeInstanceOf(OpenAI.APIError)
    }))
})

describe("the SDKs read our wait hints the way they read the real ones", () => {
  // Their default backoff before the first retry is 0.5 s minus up to 25 % jitter, so a gap of at least
  // 0.9 s between the two requests can only come from reading our header. (The SDKs sleep on the wall
  // clock; nothing in this test does.)
  it.scopedLive("OpenAI waits out retry-after-ms; Anthropic waits until the retry-after HTTP-date", () =>
    Effect.gen(function*() {
      const gapOf = (server: ChaosServer.ChaosServerHandle) =>
        Effect.map(server.stats, (stats) => {
          expect(stats.log.map((e) => e.status)).toEqual([429, 200])
          return stats.log[1]!.at - stats.log[0]!.at
        })
      const openAiServer = yield* serve({ default: { ...textRoute, script: [{ kind: "rate_limit", retryAfterMs: 900 }] } })
      // A date one second ahead, rounded up to the next whole second: 1 to 2 s away.
      const anthropicServer = yield* serve({ default: { ...textRoute, script: [{ kind: "rate_limit", retryAfterDate: 1 }] } })
      yield* Effect.all([
        Effect.promise(() =>
          openai(openAiServer, { maxRetries: 1 }).chat.completions.create({ model: "gpt-4o-mini", messages: userMessage })
        ),
        Effect.promise(() =>
          anthropic(anthropicServer, { maxRetries: 1 }).messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: userMessage })
        )
      ], { concurrency: "unbounded" })
      const openAiGap = yield* gapOf(openAiServer)
      expect(openAiGap).toBeGreaterThanOrEqual(900)
      expect(openAiGap).toBeLessThan(1_900)
      const anthropicGap = yield* gapOf(anthropicServer)
      expect(anthropicGap).toBeGreaterThanOrEqual(900)
      expect(anthropicGap).toBeLessThan(2_500)
    }))
})

describe("ChaosServer with the Anthropic SDK", () => {
  it.scopedLive("parses a message with content, usage, stop reason and request id", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const { data, request_id, response } = yield* Effect.promise(() =>
        anthropic(server).messages.create({ model: "claude-haiku-4-5", max_tokens: 256, messages: userMessage }).withResponse()
      )
      expect(data.type).toBe("message")
      expect(data.id).toMatch(/^msg_01[A-Za-z0-9]{22}$/)
      expect(data.role).toBe("assistant")
      expect(data.content).toEqual([{ type: "text", text: TEXT }])
      expect(data.stop_reason).toBe("end_turn")
      expect(data.stop_sequence).toBeNull()
      expect(data.usage).toMatchObject({ input_tokens: 3, output_tokens: 7 })
      expect(request_id).toMatch(/^req_011C[A-Za-z0-9]{20}$/)
      expect(response.headers.get("anthropic-ratelimit-requests-remaining")).toBe("9999")
      expect(response.headers.get("anthropic-ratelimit-tokens-reset")).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    }))

  it.scopedLive("streams the full event sequence; the SDK's MessageStream accumulates the final message", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const response = yield* postJson(`${server.anthropicBaseUrl}/v1/messages`, messagesBody({ stream: true }))
      const events = sseEvents(response.text)
      expect(events.slice(0, 3)).toEqual(["message_start", "content_block_start", "ping"])
      expect(events.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"])
      expect(events.filter((e) => e === "content_block_delta").length).toBeGreaterThan(2)
      const final = yield* Effect.promise(() =>
        anthropic(server).messages.stream({ model: "claude-haiku-4-5", max_tokens: 256, messages: userMessage }).finalMessage()
      )
      expect(final.content).toHaveLength(1)
      expect(final.content[0]).toMatchObject({ type: "text", text: TEXT })
      expect(final.stop_reason).toBe("end_turn")
      expect(final.usage).toMatchObject({ input_tokens: 3, output_tokens: 7 })
    }))

  const anthropicCases: ReadonlyArray<{
    readonly fault: Scenario.Fault
    readonly cls: new(...args: never) => AnthropicApiError
    readonly status: number
    readonly type: string
    readonly message?: RegExp
  }> = [
    { fault: { kind: "overloaded" }, cls: Anthropic.OverloadedError, status: 529, type: "overloaded_error" },
    { fault: { kind: "rate_limit", retryAfterSeconds: 3 }, cls: Anthropic.RateLimitError, status: 429, type: "rate_limit_error" },
    { fault: { kind: "insufficient_quota" }, cls: Anthropic.BadRequestError, status: 400, type: "invalid_request_error", message: /credit balance is too low/ },
    { fault: { kind: "billing" }, cls: Anthropic.PaymentRequiredError, status: 402, type: "billing_error" },
    { fault: { kind: "http_error", status: 400 }, cls: Anthropic.BadRequestError, status: 400, type: "invalid_request_error" },
    {
      fault: { kind: "http_error", status: 400, reason: "context_length" },
      cls: Anthropic.BadRequestError,
      status: 400,
      type: "invalid_request_error",
      message: /^prompt is too long: \d+ tokens > 200000 maximum$/
    },
    { fault: { kind: "http_error", status: 401 }, cls: Anthropic.AuthenticationError, status: 401, type: "authentication_error" },
    { fault: { kind: "http_error", status: 403 }, cls: Anthropic.PermissionDeniedError, status: 403, type: "permission_error" },
    { fault: { kind: "http_error", status: 404 }, cls: Anthropic.NotFoundError, status: 404, type: "not_found_error", message: /^model: claude-haiku-4-5$/ },
    { fault: { kind: "http_error", status: 413 }, cls: Anthropic.ContentTooLargeError, status: 413, type: "request_too_large" },
    { fault: { kind: "http_error", status: 422 }, cls: Anthropic.UnprocessableEntityError, status: 422, type: "invalid_request_error" },
    { fault: { kind: "http_error", status: 500 }, cls: Anthropic.InternalServerError, status: 500, type: "api_error" },
    { fault: { kind: "http_error", status: 502 }, cls: Anthropic.InternalServerError, status: 502, type: "api_error" },
    { fault: { kind: "http_error", status: 503 }, cls: Anthropic.ServiceUnavailableError, status: 503, type: "api_error" },
    { fault: { kind: "http_error", status: 504 }, cls: Anthropic.GatewayTimeoutError, status: 504, type: "timeout_error" }
  ]

  it.scopedLive("raises the SDK's error class for every injected HTTP fault, with type, request id and body", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: anthropicCases.map((c) => c.fault) } })
      const client = anthropic(server)
      for (const expected of anthropicCases) {
        const error = yield* rejection(() => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 256, messages: userMessage }))
        const label = JSON.stringify(expected.fault)
        expect(error, label).toBeInstanceOf(expected.cls)
        const apiError = error as AnthropicApiError
        expect(apiError.status, label).toBe(expected.status)
        expect(apiError.type, label).toBe(expected.type)
        expect(apiError.requestID, label).toMatch(/^req_011C[A-Za-z0-9]{20}$/)
        expect(apiError.error, label).toMatchObject({ type: "error", request_id: apiError.requestID })
        if (expected.message !== undefined) expect(apiError.apiMessage ?? "", label).toMatch(expected.message)
      }
      const stats = yield* server.stats
      expect(stats.log.map((e) => e.status)).toEqual(anthropicCases.map((c) => c.status))
    }))

  it.scopedLive("x-should-retry false: one request for a 529; true on a 400: two requests", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          script: [
            { kind: "overloaded", shouldRetry: false },
            { kind: "http_error", status: 400, shouldRetry: true, retryAfterSeconds: 0.01 },
            { kind: "http_error", status: 400, shouldRetry: true, retryAfterSeconds: 0.01 }
          ]
        }
      })
      const client = anthropic(server, { maxRetries: 1 })
      const first = yield* rejection(() => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: userMessage }))
      expect(first).toBeInstanceOf(Anthropic.OverloadedError)
      expect((yield* server.stats).total).toBe(1)
      const second = yield* rejection(() => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: userMessage }))
      expect(second).toBeInstanceOf(Anthropic.BadRequestError)
      expect((yield* server.stats).total).toBe(3)
    }))

  it.scopedLive("a 429 with retry-after-ms: 10 is retried once (2 requests)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "rate_limit", retryAfterMs: 10 }] } })
      const message = yield* Effect.promise(() =>
        anthropic(server, { maxRetries: 1 }).messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: userMessage })
      )
      expect(message.content).toEqual([{ type: "text", text: TEXT }])
      expect((yield* server.stats).log.map((e) => e.status)).toEqual([429, 200])
    }))

  it.scopedLive("a mid-stream `event: error` makes the SDK stream throw an APIError of type overloaded_error", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_error", afterDeltas: 1 }] } })
      const types: Array<string> = []
      const error = yield* rejection(async () => {
        const stream = await anthropic(server).messages.create({
          model: "claude-haiku-4-5",
          max_tokens: 64,
          messages: userMessage,
          stream: true
        })
        for await (const event of stream) types.push(event.type)
      })
      expect(error).toBeInstanceOf(Anthropic.APIError)
      expect((error as AnthropicApiError).type).toBe("overloaded_error")
      expect((error as AnthropicApiError).status).toBeUndefined()
      expect(types).toEqual(["message_start", "content_block_start", "content_block_delta"])
      const raw = yield* postJson(`${server.anthropicBaseUrl}/v1/messages`, messagesBody({ stream: true }))
      expect(raw.status).toBe(200)
    }))

  it.scopedLive("the stream_error kind and overrides are configurable", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: { script: [{ kind: "stream_error", error: "server_error" }, { kind: "stream_error", errorType: "api_error", message: "boom" }] }
      })
      const first = yield* postJson(`${server.anthropicBaseUrl}/v1/messages`, messagesBody({ stream: true }))
      // afterDeltas defaults to 1: one content delta, then the error, and nothing after it.
      expect(sseEvents(first.text)).toEqual(["message_start", "content_block_start", "ping", "content_block_delta", "error"])
      expect(first.text.endsWith(`event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Internal server error"}}\n\n`)).toBe(true)
      const second = yield* postJson(`${server.anthropicBaseUrl}/v1/messages`, messagesBody({ stream: true }))
      expect(second.text.endsWith(`event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n`)).toBe(true)
    }))

  it.scopedLive("200 faults: empty content, truncated (max_tokens), refusal, cut stream", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          ...textRoute,
          script: [{ kind: "empty_content" }, { kind: "truncated", fraction: 0.4 }, { kind: "content_filter" }, { kind: "stream_cut", afterDeltas: 1 }]
        }
      })
      const client = anthropic(server)
      const create = () => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: userMessage })
      const empty = yield* Effect.promise(create)
      expect(empty.content).toEqual([])
      expect(empty.usage.output_tokens).toBe(0)
      const truncated = yield* Effect.promise(create)
      expect(truncated.stop_reason).toBe("max_tokens")
      const refusal = yield* Effect.promise(create)
      expect(refusal.stop_reason).toBe("refusal")
      const cut = yield* postJson(`${server.anthropicBaseUrl}/v1/messages`, messagesBody({ stream: true }))
      expect(sseEvents(cut.text)).toEqual(["message_start", "content_block_start", "ping", "content_block_delta"])
    }))

  it.scopedLive("bad bodies and unknown paths answer in the provider's error shape", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const missing = yield* postJson(`${server.anthropicBaseUrl}/v1/messages`, { model: "claude-haiku-4-5", messages: [] })
      expect(missing.status).toBe(400)
      expect(JSON.parse(missing.text)).toMatchObject({
        type: "error",
        error: { type: "invalid_request_error", message: "max_tokens: Field required" },
        request_id: missing.headers.get("request-id")
      })
      const notFound = yield* postJson(`${server.anthropicBaseUrl}/v1/messages/batches/x`, {})
      expect(notFound.status).toBe(404)
      expect(JSON.parse(notFound.text)).toMatchObject({ type: "error", error: { type: "not_found_error" } })
      const openAiNotFound = yield* postJson(`${server.openAiBaseUrl}/embeddings`, {})
      expect(JSON.parse(openAiNotFound.text)).toEqual({
        error: { message: "Invalid URL (POST /v1/embeddings)", type: "invalid_request_error", param: null, code: null }
      })
      const notJson = yield* raw(`${server.openAiBaseUrl}/chat/completions`, { method: "POST", body: "{oops" })
      expect(notJson.status).toBe(400)
      expect(JSON.parse(notJson.text).error.message).toContain("could not parse the JSON body")
      expect((yield* server.stats).byFault).toEqual({ invalid_request: 2, unknown_path: 2 })
    }))
})

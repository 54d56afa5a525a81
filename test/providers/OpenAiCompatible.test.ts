/**
 * The OpenAI-compatible presets over real HTTP against a local server answering in each server's own
 * words: defaults (token field, auth) and the quirks that change classification — OpenRouter's typed
 * errors and mid-stream error chunks, vLLM's top-level error body, Ollama's /v1 errors, Groq's 498,
 * Together's 403 for an over-long prompt.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { actionOf, type ProviderError } from "../../src/Errors.js"
import type { GenerateRequest, StreamEvent } from "../../src/Provider.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as Transport from "../../src/Transport.js"
import { type Handler, json, openAiChunk, sse, wireServer } from "../utils/wireServer.js"

const KEY = "sk-or-v1-0123456789abcdef0123456789abcdef"
const request: GenerateRequest = { model: "some/model", messages: [{ role: "user", content: "hi" }], maxTokens: 32 }
const completion = { id: "c1", object: "chat.completion", model: "some/model", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] }

const withPreset = <A, E>(
  preset: OpenAiCompatible.PresetName,
  handler: Handler,
  use: (provider: Effect.Effect.Success<ReturnType<typeof OpenAiCompatible.make>>, server: Effect.Effect.Success<ReturnType<typeof wireServer>>) => Effect.Effect<A, E>,
  options: OpenAiCompatible.OpenAiCompatibleOptions = {}
) =>
  Effect.gen(function*() {
    const server = yield* wireServer(handler)
    const provider = yield* OpenAiCompatible.make(preset as "vllm", { apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1`, ...options })
    return yield* use(provider, server)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const failureOf = (preset: OpenAiCompatible.PresetName, handler: Handler) =>
  withPreset(preset, handler, (p) => Effect.flip(p.generate(request)))

const streamFailureOf = (preset: OpenAiCompatible.PresetName, handler: Handler) =>
  withPreset(preset, handler, (p) =>
    Effect.gen(function*() {
      const seen: Array<StreamEvent> = []
      const error: ProviderError = yield* Effect.flip(Stream.runForEach(p.stream(request), (event) => Effect.sync(() => seen.push(event))))
      return { error, seen }
    }))

describe("presets — defaults on the wire", () => {
  it("each preset's base URL, token field and key requirement", () => {
    expect(OpenAiCompatible.presets).toEqual({
      vllm: { baseUrl: "http://localhost:8000/v1", maxTokensField: "max_tokens", apiKey: "optional" },
      ollama: { baseUrl: "http://localhost:11434/v1", maxTokensField: "max_tokens", apiKey: "none" },
      openrouter: { baseUrl: "https://openrouter.ai/api/v1", maxTokensField: "max_tokens", apiKey: "required" },
      groq: { baseUrl: "https://api.groq.com/openai/v1", maxTokensField: "max_completion_tokens", apiKey: "required" },
      together: { baseUrl: "https://api.together.xyz/v1", maxTokensField: "max_tokens", apiKey: "required" }
    })
  })

  it.live("ollama: no key, no authorization header, max_tokens, labelled ollama", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, completion))
      const provider = yield* OpenAiCompatible.make("ollama", { baseUrl: `${server.url}/v1` })
      const response = yield* provider.generate(request)
      expect(response.provider).toBe("ollama")
      const sent = server.requests[0]!
      expect(sent.path).toBe("/v1/chat/completions")
      expect(sent.headers["authorization"]).toBeUndefined()
      expect(sent.body).toMatchObject({ max_tokens: 32 })
      expect(sent.body).not.toHaveProperty("max_completion_tokens")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("groq: bearer key and max_completion_tokens", () =>
    withPreset("groq", json(200, completion), (provider, server) =>
      Effect.gen(function*() {
        yield* provider.generate(request)
        expect(server.requests[0]!.headers["authorization"]).toBe(`Bearer ${KEY}`)
        expect(server.requests[0]!.body).toMatchObject({ max_completion_tokens: 32 })
      })))

  it.effect("a hosted preset without a key, or an unknown preset → InvalidOptions at construction", () =>
    Effect.gen(function*() {
      const noKey = yield* Effect.flip(OpenAiCompatible.make("openrouter", {} as { apiKey: Redacted.Redacted<string> }))
      expect([noKey.component, noKey.option, noKey.message]).toEqual(["OpenAiCompatible.make", "apiKey", "apiKey is required for openrouter"])
      const unknown = yield* Effect.flip(OpenAiCompatible.make("lmstudio" as "vllm"))
      expect(unknown.option).toBe("preset")
      const badUrl = yield* Effect.flip(OpenAiCompatible.make("vllm", { baseUrl: "gpu-box:8000" }))
      expect(badUrl.option).toBe("baseUrl")
    }).pipe(Effect.provide(Transport.layer())))
})

describe("OpenRouter", () => {
  const openRouterError = (status: number, error: Record<string, unknown>, headers: Record<string, string> = {}) =>
    json(status, { error }, { "x-generation-id": "gen-abc123", ...headers })

  it.live("402 insufficient credits → QuotaExhausted (reroute, never retried), with the generation id", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", openRouterError(402, { code: 402, message: "Insufficient credits", metadata: { error_type: "payment_required" } }))
      expect(error._tag).toBe("QuotaExhausted")
      expect(error.requestId).toBe("gen-abc123")
      expect(error.providerType).toBe("payment_required")
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live("429 free-models-per-day → QuotaExhausted: waiting until midnight UTC is not a retry", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", openRouterError(429, { code: 429, message: "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day" }, {
        "x-ratelimit-limit": "50",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1767225600000"
      }))
      expect(error._tag).toBe("QuotaExhausted")
    }))

  it.effect("OpenRouter's own 429 → RateLimited, waiting until X-RateLimit-Reset (epoch ms) on Effect's clock", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_767_225_000_000)
      const error = yield* failureOf("openrouter", openRouterError(429, { code: 429, message: "Rate limit exceeded: free-models-per-min", metadata: { error_type: "rate_limit_exceeded" } }, {
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1767225012000"
      }))
      expect(error._tag).toBe("RateLimited")
      expect(error._tag === "RateLimited" && error.retryAfterMs).toBe(12_000)
    }))

  it.live("a provider-routed 429 (metadata.provider_code) → Overloaded: another route serves, this one is at capacity", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", openRouterError(429, {
        code: 429,
        message: "Rate limit exceeded",
        metadata: { error_type: "rate_limit_exceeded", provider_code: "rate_limited" }
      }, { "retry-after": "20" }))
      expect(error._tag).toBe("Overloaded")
      expect(error._tag === "Overloaded" && error.retryAfterMs).toBe(20_000)
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live("every provider at capacity: availability.retry_after is the wait when no header says it", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", json(429, {
        error: {
          message: "All providers for anthropic/claude-sonnet-4.5 are at capacity. Retry after 40 seconds.",
          error_type: "rate_limit_exceeded",
          http_status: 429,
          availability: { code: "capacity_exhausted", retryable: true, retry_after: 40, requested_models: ["anthropic/claude-sonnet-4.5"] }
        }
      }))
      expect(error._tag).toBe("Overloaded")
      expect(error._tag === "Overloaded" && error.retryAfterMs).toBe(40_000)
    }))

  it.live("403 moderation (metadata.reasons) → ContentFiltered, not Unauthorized", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", openRouterError(403, {
        code: 403,
        message: "openai/gpt-4o requires moderation on OpenRouter. Your input was flagged for \"violence\".",
        metadata: { reasons: ["violence"], flagged_input: "...", provider_name: "OpenAI", model_slug: "openai/gpt-4o" }
      }))
      expect(error._tag).toBe("ContentFiltered")
      expect(error.status).toBe(403)
    }))

  it.live("an unknown model (400 availability.model_not_found) → NotFound, so the chain moves on instead of stopping", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", json(400, {
        error: { message: "acme/fake-1.0 is not a valid model ID", error_type: "invalid_request", http_status: 400, availability: { code: "model_not_found", retryable: false } }
      }))
      expect(error._tag).toBe("NotFound")
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live.each([
    [408, { code: 408, message: "Your request timed out" }, "ServerError"],
    [502, { code: 502, message: "Your chosen model is down", metadata: { error_type: "provider_unavailable", provider_name: "Together", raw: "upstream" } }, "ServerError"],
    [503, { code: 503, message: "No available model provider meets your routing requirements", metadata: { error_type: "provider_overloaded" } }, "Overloaded"],
    [401, { code: 401, message: "No auth credentials found", metadata: { error_type: "authentication" } }, "Unauthorized"]
  ] as const)("%d → %s", ([status, error, tag]) =>
    Effect.gen(function*() {
      expect((yield* failureOf("openrouter", openRouterError(status, error)))._tag).toBe(tag)
    }))

  it.live("a mid-stream error chunk (finish_reason error) → its typed error, after the partial text reached the consumer", () =>
    Effect.gen(function*() {
      const { error, seen } = yield* streamFailureOf("openrouter", sse([
        ": OPENROUTER PROCESSING\n\n",
        openAiChunk({ role: "assistant", content: "Partial" }),
        `data: ${JSON.stringify({
          id: "gen-abc123",
          object: "chat.completion.chunk",
          created: 1,
          model: "openai/gpt-4o",
          provider: "OpenAI",
          error: { code: 429, message: "Rate limit exceeded", metadata: { error_type: "rate_limit_exceeded" } },
          choices: [{ index: 0, delta: { content: "" }, finish_reason: "error" }]
        })}\n\n`
      ]))
      expect(error._tag).toBe("RateLimited")
      expect(error.status).toBeUndefined()
      expect(error.providerType).toBe("rate_limit_exceeded")
      expect(seen.some((e) => e._tag === "TextDelta" && e.text === "Partial")).toBe(true)
    }))

  it.live("a 200 whose choice failed part-way (choices[0].error) is a failure, not a short answer", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("openrouter", json(200, {
        id: "gen-1",
        model: "openai/gpt-4o",
        choices: [{
          index: 0,
          message: { role: "assistant", content: "partial output..." },
          finish_reason: "error",
          error: { code: 502, message: "Provider disconnected mid-stream", metadata: { error_type: "provider_unavailable" } }
        }]
      }))
      expect(error._tag).toBe("ServerError")
      expect(error.status).toBeUndefined()
    }))
})

describe("vLLM", () => {
  it.live("the top-level error body (before 0.10): context length → ContextLengthExceeded with vLLM's type", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("vllm", json(400, {
        object: "error",
        message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4968 in the messages, 32 in the completion).",
        type: "BadRequestError",
        param: null,
        code: 400
      }))
      expect(error._tag).toBe("ContextLengthExceeded")
      expect(error.providerType).toBe("BadRequestError")
      expect(error.providerCode).toBe("400")
    }))

  it.live("404 NotFoundError for an unknown model → NotFound", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("vllm", json(404, { object: "error", message: "The model `x` does not exist.", type: "NotFoundError", param: null, code: 404 }))
      expect(error._tag).toBe("NotFound")
      expect(error.providerType).toBe("NotFoundError")
    }))

  it.live("a streamed ErrorResponse {error:{…, code: 400}} → BadRequest (its code is its status), not a retryable ServerError", () =>
    Effect.gen(function*() {
      const { error } = yield* streamFailureOf("vllm", sse([
        openAiChunk({ content: "a" }),
        `data: ${JSON.stringify({ error: { message: "Invalid tool call arguments", type: "BadRequestError", param: null, code: 400 } })}\n\n`
      ]))
      expect(error._tag).toBe("BadRequest")
      expect(error.status).toBeUndefined()
    }))
})

describe("Ollama", () => {
  const ollamaError = (status: number, type: string, message: string) => json(status, { error: { message, type, param: null, code: null } })

  it.live("404 'model not found, try pulling it first' (type api_error) → NotFound", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("ollama", ollamaError(404, "api_error", "model \"llama9\" not found, try pulling it first"))
      expect(error._tag).toBe("NotFound")
    }))

  it.live("503 'server busy … maximum pending requests exceeded' (OLLAMA_MAX_QUEUE) → Overloaded", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("ollama", ollamaError(503, "api_error", "server busy, please try again.  maximum pending requests exceeded"))
      expect(error._tag).toBe("Overloaded")
    }))
})

describe("Groq", () => {
  const groqError = (status: number, error: Record<string, unknown>, headers: Record<string, string> = {}) => json(status, { error }, headers)

  it.live("498 capacity_exceeded (flex tier full) → Overloaded, not a BadRequest that stops the chain", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("groq", groqError(498, { message: "Flex tier capacity exceeded. This is a known issue, please try again later.", type: "service_unavailable", code: "capacity_exceeded" }))
      expect(error._tag).toBe("Overloaded")
      expect(error.status).toBe(498)
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live("429 with retry-after and Groq's x-ratelimit headers → RateLimited with the wait and the snapshot", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("groq", groqError(429, {
        message: "Rate limit reached for model `llama-3.3-70b-versatile` on tokens per minute (TPM): Limit 6000, Used 5900, Requested 400. Please try again in 2.9s.",
        type: "tokens",
        code: "rate_limit_exceeded"
      }, { "retry-after": "3", "x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "2.9s" }))
      expect(error._tag).toBe("RateLimited")
      if (error._tag !== "RateLimited") return
      expect(error.retryAfterMs).toBe(3000)
      expect(error.rateLimit?.tokens).toEqual({ limit: 6000, remaining: 100, resetAfterMs: 2900 })
    }))

  it.live("503 → Overloaded", () =>
    Effect.gen(function*() {
      expect((yield* failureOf("groq", groqError(503, { message: "Service Unavailable", type: "internal_server_error" })))._tag).toBe("Overloaded")
    }))

  it.live("413 'Request too large … on tokens per minute' (code rate_limit_exceeded) → QuotaExhausted: no wait makes it fit", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("groq", groqError(413, {
        message: "Request too large for model `llama-3.3-70b-versatile` in organization `org_1` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 14368, please reduce your message size and try again.",
        type: "tokens",
        code: "rate_limit_exceeded"
      }))
      expect(error._tag).toBe("QuotaExhausted")
      expect(actionOf(error)).toBe("reroute")
    }))
})

describe("Together", () => {
  const togetherError = (status: number, error: Record<string, unknown>) => json(status, { error })

  it.live("403 'tokens + max_new_tokens must be <= N' → ContextLengthExceeded, not Unauthorized", () =>
    Effect.gen(function*() {
      const error = yield* failureOf("together", togetherError(403, {
        message: "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4097. Given: 5013 `inputs` tokens and 128 `max_new_tokens`",
        type: "invalid_request_error",
        param: null,
        code: null
      }))
      expect(error._tag).toBe("ContextLengthExceeded")
      expect(actionOf(error)).toBe("stop")
    }))

  it.live("a 403 that is not about tokens stays Unauthorized", () =>
    Effect.gen(function*() {
      expect((yield* failureOf("together", togetherError(403, { message: "Forbidden", type: "permission_error" })))._tag).toBe("Unauthorized")
    }))

  it.live("the legacy 400 code rate_limit → RateLimited", () =>
    Effect.gen(function*() {
      expect((yield* failureOf("together", togetherError(400, { message: "rate limited", type: "invalid_request_error", code: "rate_limit" })))._tag).toBe("RateLimited")
    }))

  it.live.each([
    [429, "RateLimited"],
    [503, "Overloaded"],
    [402, "QuotaExhausted"]
  ] as const)("%d → %s", ([status, tag]) =>
    Effect.gen(function*() {
      expect((yield* failureOf("together", togetherError(status, { message: "x", type: "error" })))._tag).toBe(tag)
    }))
})

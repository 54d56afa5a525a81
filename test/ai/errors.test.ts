/**
 * The error mapping both ways, row by row (docs/effect-ai.md has the same tables): @effect/ai's
 * `AiError`s as they come out of its OpenAI and Anthropic clients → this library's `ProviderError`s,
 * and the chain's failures → the `AiError` an @effect/ai program sees, with the failure kept as cause.
 */
import * as AiError from "@effect/ai/AiError"
import { describe, expect, it } from "@effect/vitest"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ai from "../../src/Ai.js"
import { fromErrorPart } from "../../src/ai/errors.js"
import { notBilled } from "../../src/internal/spend.js"
import { BUDGET_REFUSED_TYPE, isUnsent } from "../../src/internal/unsent.js"
import type { CallSite } from "../../src/Classify.js"
import {
  AllRoutesFailed,
  BadRequest,
  BudgetExceeded,
  CircuitOpen,
  ConnectionError,
  ContentFiltered,
  DeadlineExceeded,
  InvalidOptions,
  InvalidOutput,
  Overloaded,
  QuotaExhausted,
  RateLimited,
  type RouteError,
  ServerError,
  StreamInterrupted,
  Timeout
} from "../../src/Errors.js"

const site: CallSite = { provider: "openai", model: "gpt-4o-mini", route: "openai/gpt-4o-mini", attempt: 1 }
const NOW = Date.parse("2025-01-01T12:00:00Z")

const requestDetails = {
  method: "POST" as const,
  url: "https://api.openai.com/v1/responses",
  urlParams: [],
  hash: Option.none(),
  headers: { authorization: "Bearer sk-live-should-never-be-kept-0123456789" }
}

/**
 * An HttpResponseError as @effect/ai's clients build it: `body` is `Inspectable.format` of what they
 * read, headers as `Inspectable.redact` left them, and no validation (so a `Redacted` value gets in).
 */
const responseError = (status: number, headers: Record<string, string>, body: string | undefined, description?: string) =>
  new AiError.HttpResponseError({
    module: "OpenAiClient",
    method: "createResponse",
    reason: status >= 200 && status < 300 ? "Decode" : "StatusCode",
    request: requestDetails,
    response: { status, headers },
    ...(body !== undefined ? { body } : {}),
    ...(description !== undefined ? { description } : {})
  }, { disableValidation: true })

const pretty = (value: unknown) => JSON.stringify(value, null, 2)

const classify = (error: AiError.AiError) => Ai.fromAiError(error, site, NOW)

describe("AiError → ProviderError (an @effect/ai model as a route)", () => {
  it("429 rate_limit_exceeded with retry-after → RateLimited waiting 2 s, with the request id and rate-limit snapshot", () => {
    const error = classify(responseError(
      429,
      { "retry-after": "2", "x-request-id": "req_abc123", "x-ratelimit-remaining-requests": "0", "x-ratelimit-limit-requests": "60" },
      pretty({ error: { message: "Rate limit reached", type: "requests", param: null, code: "rate_limit_exceeded" } })
    ))
    expect(error).toBeInstanceOf(RateLimited)
    expect(error._tag === "RateLimited" && [error.status, error.retryAfterMs, error.requestId, error.providerCode]).toEqual([
      429,
      2000,
      "req_abc123",
      "rate_limit_exceeded"
    ])
  })

  it("429 insufficient_quota → QuotaExhausted (never retried, unlike a rate limit)", () => {
    const error = classify(responseError(429, {}, pretty({ error: { message: "You exceeded your current quota", type: "insufficient_quota", code: "insufficient_quota" } })))
    expect(error).toBeInstanceOf(QuotaExhausted)
  })

  it("Anthropic 529 overloaded_error → Overloaded; its 400 'credit balance is too low' → QuotaExhausted", () => {
    const overloaded = classify(responseError(529, { "request-id": "req_011Cabc" }, pretty({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })))
    expect(overloaded._tag === "Overloaded" && [overloaded.status, overloaded.requestId]).toEqual([529, "req_011Cabc"])
    const credit = classify(responseError(400, {}, pretty({ type: "error", error: { type: "invalid_request_error", message: "Your credit balance is too low to access the Anthropic API." } })))
    expect(credit).toBeInstanceOf(QuotaExhausted)
  })

  it("a text body (kept by @effect/ai as a quoted JSON string) is read as the provider sent it: HTML 502 → ServerError", () => {
    const error = classify(responseError(502, { "content-type": "text/html" }, JSON.stringify("<html><h1>502 Bad Gateway</h1></html>")))
    expect(error._tag === "ServerError" && [error.status, error.rawBody]).toEqual([502, "<html><h1>502 Bad Gateway</h1></html>"])
  })

  it("no body, but the error JSON in `description` (the generated client's non-2xx path) → classified from it", () => {
    const description = JSON.stringify({ error: { message: "maximum context length is 8192 tokens", type: "invalid_request_error", code: "context_length_exceeded" } })
    expect(classify(responseError(400, {}, undefined, description))._tag).toBe("ContextLengthExceeded")
  })

  it("a body that is @effect/ai's formatted read error (it embeds the request and its key) is never kept", () => {
    const formatted = pretty({ request: { _id: "@effect/platform/HttpClientRequest", headers: requestDetails.headers }, reason: "Decode" })
    const error = classify(responseError(500, {}, formatted))
    expect(error).toBeInstanceOf(ServerError)
    expect(JSON.stringify(error)).not.toContain("sk-live")
  })

  it("a 2xx whose body did not decode → InvalidOutput{malformed-response}, retried like wire corruption, body not kept", () => {
    const formatted = pretty({ request: { _id: "@effect/platform/HttpClientRequest", headers: requestDetails.headers } })
    const error = classify(responseError(200, { "x-request-id": "req_200" }, formatted))
    expect(error._tag === "InvalidOutput" && [error.reason, error.status, error.requestId, error.rawBody]).toEqual([
      "malformed-response",
      200,
      "req_200",
      undefined
    ])
    expect(JSON.stringify(error)).not.toContain("sk-live")
  })

  it("x-should-retry is read; a header @effect/ai redacted (a Redacted value, not a string) is left out", () => {
    // A program that adds `x-request-id` to `Headers.currentRedactedNames` gets it as a Redacted value.
    const headers = { "x-should-retry": "false", "x-request-id": Redacted.make("req_hidden") } as unknown as Record<string, string>
    const error = classify(responseError(500, headers, pretty({ error: { type: "server_error", message: "boom" } })))
    expect(error._tag === "ServerError" && [error.shouldRetry, error.requestId]).toEqual([false, undefined])
  })

  const transport = (code: string) =>
    new AiError.HttpRequestError({
      module: "OpenAiClient",
      method: "createResponse",
      reason: "Transport",
      request: requestDetails,
      // @effect/ai's cause is the platform RequestError, whose cause is undici's error with its code.
      cause: Object.assign(new Error("Transport error"), { cause: Object.assign(new Error(`failed: ${code}`), { code }) })
    })

  it("HttpRequestError Transport → ConnectionError / Timeout from undici's code", () => {
    const reset = classify(transport("ECONNRESET"))
    expect(reset._tag === "ConnectionError" && [reset.reason, reset.code]).toEqual(["reset", "ECONNRESET"])
    const headers = classify(transport("UND_ERR_HEADERS_TIMEOUT"))
    expect(headers._tag === "Timeout" && headers.phase).toBe("headers")
    expect(classify(transport("ECONNREFUSED"))).toBeInstanceOf(ConnectionError)
  })

  it("HttpRequestError Encode → BadRequest, InvalidUrl → NotFound (this route cannot serve; others may)", () => {
    const of = (reason: "Encode" | "InvalidUrl") => classify(new AiError.HttpRequestError({ module: "m", method: "x", reason, request: requestDetails }))
    expect(of("Encode")._tag).toBe("BadRequest")
    expect(of("InvalidUrl")._tag).toBe("NotFound")
  })

  it("MalformedOutput → InvalidOutput{malformed-response}; MalformedInput → BadRequest; UnknownError → ServerError", () => {
    const output = classify(new AiError.MalformedOutput({ module: "OpenAiClient", method: "createResponse", description: "bad body" }))
    expect(output._tag === "InvalidOutput" && [output.reason, output.message]).toEqual(["malformed-response", "bad body"])
    expect(classify(new AiError.MalformedInput({ module: "m", method: "x", description: "unsupported part" }))).toBeInstanceOf(BadRequest)
    expect(classify(new AiError.UnknownError({ module: "m", method: "x" }))).toBeInstanceOf(ServerError)
  })

  it("an AiError carrying this library's failure (a chain used as another chain's route) keeps that failure", () => {
    const inner = new Overloaded({ provider: "anthropic", model: "claude", route: "inner", attempt: 3, status: 529, message: "Overloaded" })
    const failure = new AllRoutesFailed({ message: "all failed", reason: "exhausted", attempts: [], lastError: inner })
    const carried = classify(Ai.toAiError(failure, "generateText"))
    expect(carried._tag === "Overloaded" && [carried.route, carried.attempt, carried.status, carried.provider]).toEqual([
      site.route,
      1,
      529,
      "anthropic"
    ])
    const open = new CircuitOpen({ ...ctx("inner"), retryAfterMs: 5000, message: "breaker open" })
    const fromOpen = classify(new AiError.UnknownError({ module: "m", method: "x", cause: open }))
    expect(fromOpen._tag === "Overloaded" && fromOpen.retryAfterMs).toBe(5000)
    // The inner chain's spend budget refused before sending: for the outer chain that route cannot pay now.
    const refused = new BudgetExceeded({ ...ctx("inner"), budget: "inner", limit: "tokens", reason: "over-limit", max: 10, spent: 10, reserved: 0, requested: 5, message: "budget" })
    const fromBudget = classify(new AiError.UnknownError({ module: "m", method: "x", cause: refused }))
    expect([fromBudget._tag, fromBudget.route]).toEqual(["QuotaExhausted", site.route])
    // …and stays recognisable as a refusal before sending: no breaker verdict, permit refunded, not charged.
    expect(fromBudget.providerType).toBe(BUDGET_REFUSED_TYPE)
    expect(fromBudget.status).toBeUndefined()
    expect([isUnsent(fromBudget), notBilled(fromBudget)]).toEqual([true, true])
    // A real provider's quota error is neither.
    const quota = new QuotaExhausted({ ...ctx("inner"), status: 429, providerType: "insufficient_quota", message: "quota" })
    expect([isUnsent(quota), notBilled(quota)]).toEqual([false, true])
    expect(isUnsent(new QuotaExhausted({ ...ctx("inner"), message: "quota" }))).toBe(false)
  })
})

describe("error parts inside a 200 stream", () => {
  // What the route's stream does with an @effect/ai `error` part's payload.
  const errorPart = (error: unknown) => fromErrorPart(error, site)

  it("OpenAI Responses `error` event: the code decides (overloaded, rate_limit_exceeded, invalid_* → BadRequest)", () => {
    expect(errorPart({ type: "error", sequence_number: 3, code: "overloaded", message: "busy", param: null })._tag).toBe("Overloaded")
    expect(errorPart({ type: "error", code: "rate_limit_exceeded", message: "slow down" })._tag).toBe("RateLimited")
    expect(errorPart({ type: "error", code: "invalid_prompt", message: "no" })._tag).toBe("BadRequest")
    expect(errorPart({ type: "error", code: "server_error", message: "oops" })._tag).toBe("ServerError")
  })

  it("Anthropic's inner error object, a Chat Completions chunk, and anything else", () => {
    expect(errorPart({ type: "overloaded_error", message: "Overloaded" })._tag).toBe("Overloaded")
    expect(errorPart({ error: { type: "server_error", code: "overloaded", message: "busy" } })._tag).toBe("Overloaded")
    const unknown = errorPart(new Error("socket hang up"))
    expect(unknown._tag === "ServerError" && unknown.message).toBe("socket hang up")
  })
})

// ---------------------------------------------------------------------------------------------------

const ctx = (route: string) => ({ provider: "openai", model: "gpt-4o-mini", route, attempt: 2 })

const chainFailure = (lastError: RouteError | undefined, reason: AllRoutesFailed["reason"] = "exhausted") =>
  new AllRoutesFailed({
    message: `all routes failed: ${lastError?._tag ?? reason}`,
    reason,
    attempts: [{ route: "primary", attempt: 1, outcome: lastError?._tag ?? "Skipped", delayMs: 0, durationMs: 5 }],
    ...(lastError !== undefined ? { lastError } : {})
  })

describe("chain failure → AiError (the chain as a LanguageModel)", () => {
  const rows: ReadonlyArray<readonly [RouteError | undefined, AiError.AiError["_tag"]]> = [
    [new RateLimited({ ...ctx("primary"), status: 429, retryAfterMs: 1500, requestId: "req_1", message: "slow down" }), "HttpResponseError"],
    [new QuotaExhausted({ ...ctx("primary"), status: 429, message: "quota" }), "HttpResponseError"],
    [new Overloaded({ ...ctx("primary"), status: 529, message: "overloaded" }), "HttpResponseError"],
    [new BadRequest({ ...ctx("primary"), status: 400, message: "bad" }), "HttpResponseError"],
    // In a 200 stream there is no status to report.
    [new Overloaded({ ...ctx("primary"), message: "overloaded mid-stream" }), "UnknownError"],
    [new Timeout({ ...ctx("primary"), phase: "headers", message: "timed out" }), "HttpRequestError"],
    [new ConnectionError({ ...ctx("primary"), reason: "reset", message: "reset" }), "HttpRequestError"],
    [new StreamInterrupted({ ...ctx("primary"), receivedContent: true, message: "cut" }), "HttpRequestError"],
    [new InvalidOutput({ ...ctx("primary"), status: 200, reason: "schema", message: "does not match" }), "MalformedOutput"],
    [new ContentFiltered({ ...ctx("primary"), status: 200, finishReason: "content_filter", message: "filtered" }), "MalformedOutput"],
    [new CircuitOpen({ ...ctx("primary"), message: "open" }), "UnknownError"],
    [new DeadlineExceeded({ ...ctx("primary"), deadlineMs: 30_000, message: "deadline" }), "UnknownError"],
    [
      new BudgetExceeded({ ...ctx("primary"), budget: "run", limit: "cost", reason: "over-limit", max: 1, spent: 0.99, reserved: 0, requested: 0.02, message: "budget" }),
      "UnknownError"
    ]
  ]

  for (const [lastError, expected] of rows) {
    it(`lastError ${lastError?._tag}${lastError?.status !== undefined ? ` ${lastError.status}` : ""} → ${expected}, the failure as cause`, () => {
      const failure = chainFailure(lastError)
      const error = Ai.toAiError(failure, "generateText")
      expect(error._tag).toBe(expected)
      expect([error.module, error.method]).toEqual(["effect-llm-resilience", "generateText"])
      expect(Option.getOrThrow(Ai.failureOf(error))).toBe(failure)
      expect(AiError.isAiError(error)).toBe(true)
    })
  }

  it("HttpResponseError keeps the status and the provider's hints as headers; the request names the route", () => {
    const error = Ai.toAiError(chainFailure(rows[0]![0]), "generateObject")
    expect(error._tag === "HttpResponseError" && [error.response.status, error.response.headers, error.request.url]).toEqual([
      429,
      { "x-request-id": "req_1", "retry-after-ms": "1500" },
      "llm-resilience://route/primary"
    ])
  })

  it("InvalidOptions, and no route able to take the prompt → MalformedInput", () => {
    const options = new InvalidOptions({ component: "Fallback.generateObject", option: "schema", message: "no JSON Schema" })
    expect(Ai.toAiError(options, "generateObject")._tag).toBe("MalformedInput")
    expect(Ai.failureOf(Ai.toAiError(options, "generateObject"))).toEqual(Option.some(options))
    expect(Ai.toAiError(chainFailure(undefined, "no-route"), "generateText")._tag).toBe("MalformedInput")
  })

  it("failureOf is None for AiErrors that did not come from the chain, and for non-errors", () => {
    expect(Option.isNone(Ai.failureOf(new AiError.UnknownError({ module: "OpenAiClient", method: "x", cause: new Error("x") })))).toBe(true)
    expect(Option.isNone(Ai.failureOf("boom"))).toBe(true)
    expect(Option.isNone(Ai.failureOf(undefined))).toBe(true)
  })
})

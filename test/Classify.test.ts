import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { classify, fromHttp, fromStreamError, fromTransport } from "../src/Classify.js"
import {
  actionOf,
  defaultActionOf,
  isProviderHealthFailure,
  isRetryable,
  ProviderError,
  RateLimited,
  restamp,
  routeErrorTags
} from "../src/Errors.js"
import * as OpenAi from "../src/providers/OpenAi.js"

const site = { provider: "openai", model: "m", route: "openai/m", attempt: 1, secrets: ["topsecretkey"] }
const http = (status: number, body: string, headers: Record<string, string> = {}) =>
  fromHttp({ site, status, headers, body, now: 0 })

describe("classification is total", () => {
  it.each([
    [418, "BadRequest"],
    [451, "BadRequest"],
    [505, "ServerError"],
    [599, "ServerError"],
    [302, "ServerError"],
    [408, "ServerError"],
    [409, "ServerError"]
  ] as const)("unknown status %d with an unparsable body → %s, raw body kept", (status, tag) => {
    const error = http(status, "<<not json>>")
    expect(error._tag).toBe(tag)
    expect(error.rawBody).toBe("<<not json>>")
    expect(error.message).toBe(`HTTP ${status} from openai`)
  })

  it("keeps at most a bounded, redacted slice of the raw body", () => {
    const error = http(500, `topsecretkey ${"x".repeat(10_000)}`)
    expect(error.rawBody!.length).toBeLessThan(2200)
    expect(error.rawBody).not.toContain("topsecretkey")
  })

  it("reads looser OpenAI-compatible bodies", () => {
    expect(http(400, JSON.stringify({ error: "maximum context length exceeded" }))._tag).toBe("ContextLengthExceeded")
    expect(http(422, JSON.stringify({ detail: "bad field" })).message).toBe("bad field")
  })

  it("provider semantics beat the status", () => {
    expect(http(429, JSON.stringify({ error: { type: "insufficient_quota", code: "insufficient_quota", message: "q" } }))._tag)
      .toBe("QuotaExhausted")
    expect(http(500, JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "o" } }))._tag).toBe("Overloaded")
  })

  it("Anthropic's out-of-credit 400 is QuotaExhausted, not a bad request", () => {
    const body = { type: "error", error: { type: "invalid_request_error", message: "Your credit balance is too low to access the Anthropic API." } }
    expect(http(400, JSON.stringify(body))._tag).toBe("QuotaExhausted")
  })

  it("x-should-retry: true makes a 400 retryable (the provider said so)", () => {
    const error = http(400, "{}", { "x-should-retry": "true" })
    expect(isRetryable(error)).toBe(true)
    expect(actionOf(error)).toBe("wait")
  })
})

describe("stream errors", () => {
  it.each([
    ["overloaded_error", "Overloaded"],
    ["rate_limit_error", "RateLimited"],
    ["api_error", "ServerError"],
    ["something_new", "ServerError"],
    ["invalid_request_error", "BadRequest"]
  ] as const)("%s → %s", (type, tag) => {
    expect(fromStreamError({ site, payload: { type: "error", error: { type, message: "m" } } })._tag).toBe(tag)
  })
  it("a payload that is not an object is still a typed ServerError", () => {
    expect(fromStreamError({ site, payload: "garbage" })._tag).toBe("ServerError")
  })
})

describe("transport errors", () => {
  const cause = (code: string) => Object.assign(new Error(code), { code })
  it.each([
    ["ECONNREFUSED", "ConnectionError", "refused"],
    ["ECONNRESET", "ConnectionError", "reset"],
    ["UND_ERR_SOCKET", "ConnectionError", "reset"],
    ["ENOTFOUND", "ConnectionError", "dns"],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "ConnectionError", "tls"],
    ["WHAT", "ConnectionError", "unknown"]
  ] as const)("%s → %s{%s}", (code, tag, reason) => {
    const error = fromTransport({ site, cause: new TypeError("fetch failed", { cause: cause(code) }) })
    expect(error._tag).toBe(tag)
    if (error._tag === "ConnectionError") expect(error.reason).toBe(reason)
  })
  it.each([
    ["UND_ERR_CONNECT_TIMEOUT", "connect"],
    ["UND_ERR_HEADERS_TIMEOUT", "headers"],
    ["UND_ERR_BODY_TIMEOUT", "idle"]
  ] as const)("%s → Timeout{%s}", (code, phase) => {
    const error = fromTransport({ site, cause: cause(code) })
    expect(error._tag === "Timeout" && error.phase).toBe(phase)
  })
  it("reads codes inside an AggregateError (happy eyeballs)", () => {
    const error = fromTransport({ site, cause: new AggregateError([cause("ECONNREFUSED"), cause("ECONNREFUSED")]) })
    expect(error._tag === "ConnectionError" && error.reason).toBe("refused")
  })
})

describe("the taxonomy", () => {
  it("has an action for every route-level tag, and only provider-health failures count for breakers", () => {
    expect(routeErrorTags.length).toBe(19)
    for (const tag of routeErrorTags) expect(["wait", "reroute", "stop"]).toContain(defaultActionOf(tag))
    expect(isProviderHealthFailure(http(400, "{}"))).toBe(false)
    expect(isProviderHealthFailure(http(500, "{}"))).toBe(true)
    expect(isProviderHealthFailure(http(429, "{}"))).toBe(false)
  })

  it("errors round-trip through their Schema (so they can be stored and shipped)", () => {
    const error = http(429, JSON.stringify({ error: { code: "rate_limit_exceeded", message: "slow" } }), {
      "retry-after": "2",
      "x-ratelimit-remaining-requests": "0"
    })
    const encoded = Schema.encodeSync(ProviderError)(error)
    const decoded = Schema.decodeUnknownSync(ProviderError)(JSON.parse(JSON.stringify(encoded)))
    expect(decoded).toBeInstanceOf(RateLimited)
    expect(decoded).toEqual(error)
  })

  it("restamp copies an error with a new route and attempt, keeping its class", () => {
    const error = http(503, "{}")
    const stamped = restamp(error, { route: "primary", attempt: 3 })
    expect(stamped._tag).toBe("Overloaded")
    expect(stamped.route).toBe("primary")
    expect(stamped.attempt).toBe(3)
    expect(stamped.status).toBe(503)
    expect(error.attempt).toBe(1)
    expect(restamp(error, { attempt: 1 })).toBe(error)
  })
})

describe("spent budgets are QuotaExhausted (reroute, never waited on), as the providers document them", () => {
  // Sources: OpenAI spend-limits guide / help article (billing codes; the type is only *maybe*
  // insufficient_quota); Anthropic rate-limits page (spend cap: 429 rate_limit_error with
  // details.error_code, no retry-after) and errors page (user-set limit: 400 invalid_request_error).
  it.each([
    ["OpenAI credit_balance_exhausted", 429, { error: { type: "invalid_request_error", code: "credit_balance_exhausted", message: "Your credit balance is exhausted." } }],
    ["OpenAI organization_spend_limit_exceeded", 429, { error: { type: "requests", code: "organization_spend_limit_exceeded", message: "Spend limit" } }],
    ["OpenAI project_spend_limit_exceeded", 429, { error: { code: "project_spend_limit_exceeded", message: "Project spend limit" } }],
    ["OpenAI organization_usage_limit_exceeded", 429, { error: { code: "organization_usage_limit_exceeded", message: "Usage limit" } }],
    [
      "Anthropic monthly spend cap",
      429,
      { type: "error", error: { type: "rate_limit_error", message: "You have reached your monthly spend limit.", details: { error_code: "enforced_spend_limit_reached" } } }
    ],
    [
      "Anthropic user-set spend limit",
      400,
      { type: "error", error: { type: "invalid_request_error", message: "You have reached your specified API usage limits. You will regain access on 2026-12-31." } }
    ]
  ] as const)("%s", (_, status, body) => {
    const error = http(status, JSON.stringify(body))
    expect(error._tag).toBe("QuotaExhausted")
    expect(actionOf(error)).toBe("reroute")
  })

  it("a plain 429 rate_limit_error is still a wait", () => {
    expect(http(429, JSON.stringify({ type: "error", error: { type: "rate_limit_error", message: "slow down" } }))._tag).toBe("RateLimited")
  })
})

describe("OpenAI stream errors, as the SDK reads them", () => {
  const streamed = (frames: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const client = HttpClient.make((request) =>
        Effect.succeed(HttpClientResponse.fromWeb(request, new Response(frames.join(""), { status: 200, headers: { "content-type": "text/event-stream" } }))))
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-stream-errors"), baseUrl: "http://mock.invalid/v1" }).pipe(
        Effect.provideService(HttpClient.HttpClient, client)
      )
      return yield* Effect.either(Stream.runCollect(provider.stream({ model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 5 })))
    })

  it.effect("a chunk with \"error\": null is a chunk, not an error", () =>
    Effect.gen(function*() {
      const outcome = yield* streamed([
        `data: {"choices":[{"index":0,"delta":{"content":"ok"}}],"error":null}\n\n`,
        `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n`,
        "data: [DONE]\n\n"
      ])
      expect(outcome._tag).toBe("Right")
    }))

  it.effect("an `event: error` whose payload is the error object itself is classified", () =>
    Effect.gen(function*() {
      const outcome = yield* streamed([`event: error\ndata: {"message":"The server is overloaded.","type":"server_error","code":"overloaded"}\n\n`])
      expect(outcome._tag === "Left" && outcome.left._tag).toBe("Overloaded")
    }))
})

describe("adapters run on any HttpClient (swappable in tests)", () => {
  it.effect("a mock HttpClient answering 529 yields Overloaded without a network", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const mock = HttpClient.make((request) => {
        seen.push(request.url)
        return Effect.succeed(HttpClientResponse.fromWeb(request, new Response(
          JSON.stringify({ error: { message: "Overloaded", type: "overloaded", code: null } }),
          { status: 529, headers: { "content-type": "application/json", "x-request-id": "req_mock" } }
        )))
      })
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("k-123456"), baseUrl: "http://mock/v1" }).pipe(
        Effect.provideService(HttpClient.HttpClient, mock)
      )
      const error = yield* Effect.flip(provider.generate({ model: "m", messages: [{ role: "user", content: "x" }], maxTokens: 5 }))
      expect(error._tag).toBe("Overloaded")
      expect(error.requestId).toBe("req_mock")
      expect(seen).toEqual(["http://mock/v1/chat/completions"])
    }))

  it.effect("a mock HttpClient answering 200 yields the decoded response", () =>
    Effect.gen(function*() {
      const mock = HttpClient.make((request) =>
        Effect.succeed(HttpClientResponse.fromWeb(request, new Response(JSON.stringify({
          id: "c",
          model: "m",
          choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
        }), { status: 200, headers: { "content-type": "application/json" } })))
      )
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("k-123456") }).pipe(Effect.provideService(HttpClient.HttpClient, mock))
      const response = yield* provider.generate({ model: "m", messages: [{ role: "user", content: "x" }], maxTokens: 5 })
      expect(response.text).toBe("ok")
    }))
})

describe("classify: one entry point, total on arbitrary input", () => {
  it("dispatches HTTP responses, stream error events and transport failures", () => {
    expect(classify(site, { _tag: "Http", status: 529, headers: { "retry-after": "2" }, body: "", now: 0 })).toMatchObject({
      _tag: "Overloaded",
      retryAfterMs: 2000
    })
    expect(classify(site, { _tag: "StreamError", payload: { type: "error", error: { type: "rate_limit_error" } }, requestId: "req_1" }))
      .toMatchObject({ _tag: "RateLimited", requestId: "req_1" })
    expect(classify(site, { _tag: "Transport", cause: Object.assign(new Error("x"), { code: "ENOTFOUND" }) })).toMatchObject({
      _tag: "ConnectionError",
      reason: "dns"
    })
  })

  it("never throws, always yields an encodable ProviderError, whatever the status, headers and body", () => {
    const encode = Schema.encodeSync(ProviderError)
    const headerValue = fc.oneof(fc.string(), fc.constantFrom("NaN", "-1", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT", "true", "6m0s", ""))
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 999 }),
        fc.dictionary(
          fc.constantFrom("retry-after", "retry-after-ms", "x-should-retry", "x-request-id", "x-ratelimit-reset-requests", "anthropic-ratelimit-tokens-reset"),
          headerValue
        ),
        fc.oneof(fc.string(), fc.json(), fc.constantFrom("{\"error\":null}", "{\"error\":{\"type\":7,\"code\":{}}}", "[]", "null")),
        (status, headers, body) => {
          const error = classify(site, { _tag: "Http", status, headers, body, now: 0 })
          expect(routeErrorTags).toContain(error._tag)
          expect(() => encode(error)).not.toThrow()
          const retryAfter = "retryAfterMs" in error ? error.retryAfterMs : undefined
          if (retryAfter !== undefined) expect(Number.isFinite(retryAfter) && retryAfter >= 0).toBe(true)
        }
      ),
      { numRuns: 500, seed: 20260302 }
    )
    fc.assert(
      fc.property(fc.anything(), (payload) => {
        const error = classify(site, { _tag: "StreamError", payload })
        expect(routeErrorTags).toContain(error._tag)
        expect(() => encode(error)).not.toThrow()
      }),
      { numRuns: 300, seed: 20260302 }
    )
    fc.assert(
      fc.property(fc.anything(), (cause) => {
        expect(["ConnectionError", "Timeout"]).toContain(classify(site, { _tag: "Transport", cause })._tag)
      }),
      { numRuns: 300, seed: 20260302 }
    )
  })
})

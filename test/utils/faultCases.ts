/**
 * The whole fault list of issue 3 ("chaos") as one table — fault → expected tag, action, and the
 * field that proves it was read from the wire — shared by the real-HTTP test (ChaosServer, live clock)
 * and the in-process test (ChaosProvider, TestClock). Both run the same adapters and the same fault
 * engine, so both must produce the same answers.
 */
import { routesFailed } from "../testing/helpers.js"
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { actionOf, type ErrorAction, isRetryable, type RouteError } from "../../src/Errors.js"
import * as Fallback from "../../src/Fallback.js"
import type { ProviderShape } from "../../src/Provider.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Timeouts from "../../src/Timeouts.js"

export type Api = "openai" | "anthropic" | "responses" | "gemini" | "bedrock"

/**
 * `generate` / `object` go through a one-route fallback chain (no retries) so the output gate runs
 * (empty, truncated, schema); `stream` reads the provider's stream under phase timeouts.
 */
export type Mode = "generate" | "object" | "stream"

export interface FaultCase {
  readonly fault: Scenario.Fault
  readonly mode: Mode
  readonly tag: RouteError["_tag"]
  readonly action: ErrorAction
  readonly retryable: boolean
  readonly check?: (error: RouteError, api: Api) => void
}

/** How each format says "overloaded": 529 where it exists (OpenAI-style servers, Anthropic), else 503. */
const OVERLOADED_STATUS: Readonly<Record<Api, number>> = { openai: 529, responses: 529, anthropic: 529, gemini: 503, bedrock: 503 }

/** How each format refuses an account that cannot pay (Bedrock: AccessDeniedException, 403). */
const BILLING_STATUS: Readonly<Record<Api, number>> = { openai: 402, responses: 402, anthropic: 402, gemini: 402, bedrock: 403 }

const field = (error: RouteError, name: string): unknown => (error as unknown as Record<string, unknown>)[name]

export const faultCases: ReadonlyArray<FaultCase> = [
  // 429 with each wait hint, and the rate-limit headers that come with it.
  {
    fault: { kind: "rate_limit", retryAfterMs: 1500 },
    mode: "generate",
    tag: "RateLimited",
    action: "wait",
    retryable: true,
    check: (e) => {
      expect(field(e, "retryAfterMs")).toBe(1500)
      expect(e.status).toBe(429)
    }
  },
  {
    fault: { kind: "rate_limit", retryAfterSeconds: 3 },
    mode: "generate",
    tag: "RateLimited",
    action: "wait",
    retryable: true,
    check: (e) => expect(field(e, "retryAfterMs")).toBe(3000)
  },
  {
    fault: { kind: "rate_limit", retryAfterDate: 30, limitType: "tokens" },
    mode: "generate",
    tag: "RateLimited",
    action: "wait",
    retryable: true,
    check: (e, api) => {
      // An HTTP-date has one-second resolution (the server rounds up): 30 s from now reads as 29–31 s.
      const wait = field(e, "retryAfterMs") as number
      expect(wait).toBeGreaterThan(29_000)
      expect(wait).toBeLessThanOrEqual(31_000)
      // Gemini and Bedrock send no rate-limit headers.
      if (e._tag !== "RateLimited" || api === "gemini" || api === "bedrock") return
      expect(e.rateLimit?.tokens?.remaining).toBe(0)
      expect(e.rateLimit?.requests?.remaining).toBeGreaterThan(0)
    }
  },
  {
    fault: { kind: "rate_limit", retryAfterMs: 250 },
    mode: "stream",
    tag: "RateLimited",
    action: "wait",
    retryable: true,
    check: (e) => expect(field(e, "retryAfterMs")).toBe(250)
  },
  // Money and load.
  {
    fault: { kind: "insufficient_quota" },
    mode: "generate",
    tag: "QuotaExhausted",
    action: "reroute",
    retryable: false,
    // Anthropic: the empty-balance 400; Bedrock: the per-day throttle, 429.
    check: (e, api) => expect(e.status).toBe(api === "anthropic" ? 400 : 429)
  },
  {
    fault: { kind: "billing" },
    mode: "generate",
    tag: "QuotaExhausted",
    action: "reroute",
    retryable: false,
    check: (e, api) => expect(e.status).toBe(BILLING_STATUS[api])
  },
  {
    fault: { kind: "overloaded" },
    mode: "generate",
    tag: "Overloaded",
    action: "reroute",
    retryable: true,
    check: (e, api) => expect(e.status).toBe(OVERLOADED_STATUS[api])
  },
  { fault: { kind: "overloaded" }, mode: "stream", tag: "Overloaded", action: "reroute", retryable: true },
  {
    fault: { kind: "overloaded", status: 503, retryAfterSeconds: 2 },
    mode: "generate",
    tag: "Overloaded",
    action: "reroute",
    retryable: true,
    check: (e) => expect(field(e, "retryAfterMs")).toBe(2000)
  },
  // Every status in the list.
  ...([
    [500, "ServerError", "wait", true],
    [502, "ServerError", "wait", true],
    [503, "Overloaded", "reroute", true],
    [504, "ServerError", "wait", true],
    [400, "BadRequest", "stop", false],
    [401, "Unauthorized", "reroute", false],
    [403, "Unauthorized", "reroute", false],
    [404, "NotFound", "reroute", false],
    [413, "BadRequest", "stop", false],
    [422, "BadRequest", "stop", false]
  ] as const).map(([status, tag, action, retryable]): FaultCase => ({
    fault: { kind: "http_error", status },
    mode: "generate",
    tag,
    action,
    retryable,
    // AWS answers a bad key with 403 (UnrecognizedClientException), never 401.
    check: (e, api) => expect(e.status).toBe(api === "bedrock" && status === 401 ? 403 : status)
  })),
  {
    fault: { kind: "http_error", status: 400, reason: "context_length" },
    mode: "generate",
    tag: "ContextLengthExceeded",
    action: "stop",
    retryable: false
  },
  {
    fault: { kind: "http_error", status: 502, body: "<html><h1>502 Bad Gateway</h1></html>", contentType: "text/html" },
    mode: "generate",
    tag: "ServerError",
    action: "wait",
    retryable: true,
    check: (e) => expect(e.rawBody).toBe("<html><h1>502 Bad Gateway</h1></html>")
  },
  // x-should-retry overrides the status, both ways.
  {
    fault: { kind: "http_error", status: 500, shouldRetry: false },
    mode: "generate",
    tag: "ServerError",
    action: "reroute",
    retryable: false,
    check: (e) => expect(e.shouldRetry).toBe(false)
  },
  {
    fault: { kind: "http_error", status: 400, shouldRetry: true },
    mode: "generate",
    tag: "BadRequest",
    action: "wait",
    retryable: true,
    check: (e) => expect(e.shouldRetry).toBe(true)
  },
  // Transport.
  { fault: { kind: "connection_reset" }, mode: "generate", tag: "ConnectionError", action: "wait", retryable: true, check: (e) => expect(field(e, "reason")).toBe("reset") },
  { fault: { kind: "connection_reset" }, mode: "stream", tag: "ConnectionError", action: "wait", retryable: true },
  { fault: { kind: "hang_before_headers" }, mode: "generate", tag: "Timeout", action: "wait", retryable: true, check: (e) => expect(field(e, "phase")).toBe("attempt") },
  { fault: { kind: "hang_before_headers" }, mode: "stream", tag: "Timeout", action: "wait", retryable: true, check: (e) => expect(field(e, "phase")).toBe("headers") },
  // Streaming timing faults.
  {
    fault: { kind: "slow_first_token", delayMs: 600_000 },
    mode: "stream",
    tag: "Timeout",
    action: "wait",
    retryable: true,
    check: (e) => expect(field(e, "phase")).toBe("first-token")
  },
  {
    fault: { kind: "slow_first_token", delayMs: 600_000 },
    mode: "generate",
    tag: "Timeout",
    action: "wait",
    retryable: true,
    check: (e) => expect(field(e, "phase")).toBe("attempt")
  },
  { fault: { kind: "stall_mid_stream", afterDeltas: 1 }, mode: "stream", tag: "Timeout", action: "wait", retryable: true, check: (e) => expect(field(e, "phase")).toBe("idle") },
  { fault: { kind: "stall_mid_stream", afterDeltas: 1 }, mode: "generate", tag: "Timeout", action: "wait", retryable: true, check: (e) => expect(field(e, "phase")).toBe("attempt") },
  // Errors inside a 200 stream (no status), in each kind.
  {
    fault: { kind: "stream_error", afterDeltas: 1 },
    mode: "stream",
    tag: "Overloaded",
    action: "reroute",
    retryable: true,
    check: (e) => expect(e.status).toBeUndefined()
  },
  { fault: { kind: "stream_error", afterDeltas: 1, error: "server_error" }, mode: "stream", tag: "ServerError", action: "wait", retryable: true },
  { fault: { kind: "stream_error", afterDeltas: 2, error: "rate_limit" }, mode: "stream", tag: "RateLimited", action: "wait", retryable: true },
  // The same fault on a non-stream request is the equivalent HTTP error.
  {
    fault: { kind: "stream_error" },
    mode: "generate",
    tag: "Overloaded",
    action: "reroute",
    retryable: true,
    check: (e, api) => expect(e.status).toBe(OVERLOADED_STATUS[api])
  },
  // Streams cut without their terminator, cleanly or by a dropped connection.
  {
    fault: { kind: "stream_cut", afterDeltas: 2 },
    mode: "stream",
    tag: "StreamInterrupted",
    action: "wait",
    retryable: true,
    check: (e) => expect(field(e, "receivedContent")).toBe(true)
  },
  { fault: { kind: "stream_cut", afterDeltas: 1, abort: true }, mode: "stream", tag: "StreamInterrupted", action: "wait", retryable: true },
  { fault: { kind: "stream_cut", afterDeltas: 0 }, mode: "stream", tag: "StreamInterrupted", action: "wait", retryable: true, check: (e) => expect(field(e, "receivedContent")).toBe(false) },
  // A JSON body cut in half is not the provider's JSON.
  { fault: { kind: "stream_cut" }, mode: "generate", tag: "InvalidOutput", action: "wait", retryable: true, check: (e) => expect(field(e, "reason")).toBe("malformed-response") },
  { fault: { kind: "stream_cut", abort: true }, mode: "generate", tag: "ConnectionError", action: "wait", retryable: true },
  // 200s that are not answers.
  { fault: { kind: "malformed_json" }, mode: "generate", tag: "InvalidOutput", action: "wait", retryable: true, check: (e) => expect(field(e, "reason")).toBe("malformed-response") },
  { fault: { kind: "malformed_json" }, mode: "stream", tag: "InvalidOutput", action: "wait", retryable: true, check: (e) => expect(field(e, "reason")).toBe("malformed-response") },
  { fault: { kind: "empty_content" }, mode: "generate", tag: "InvalidOutput", action: "reroute", retryable: false, check: (e) => expect(field(e, "reason")).toBe("empty") },
  {
    fault: { kind: "schema_violation", value: { answer: 42 } },
    mode: "object",
    tag: "InvalidOutput",
    action: "reroute",
    retryable: false,
    check: (e) => expect(field(e, "reason")).toBe("schema")
  },
  { fault: { kind: "truncated" }, mode: "generate", tag: "InvalidOutput", action: "reroute", retryable: false, check: (e) => expect(field(e, "reason")).toBe("truncated") },
  { fault: { kind: "content_filter" }, mode: "generate", tag: "ContentFiltered", action: "stop", retryable: false }
]

/** The Vitest title of a case. */
export const caseTitle = (c: FaultCase): string => {
  const { kind, ...rest } = c.fault
  const options = Object.keys(rest).length === 0 ? "" : ` ${JSON.stringify(rest)}`
  return `${kind}${options} (${c.mode}) → ${c.tag}`
}

const Answer = Schema.Struct({ answer: Schema.String })

/** In milliseconds. Generous on purpose: the in-process run is virtual time; the real-HTTP run passes its own. */
export const defaultTimeouts = { attempt: 60_000, headers: 10_000, firstToken: 20_000, idle: 15_000 } as const

/**
 * Runs one case against a provider speaking `api` and returns the failure (a case that succeeds is a
 * test failure). Needs `Policy.PolicyState` (and `DegradedMode` for the chain).
 */
export const failureOf = (provider: ProviderShape, api: Api, c: FaultCase, timeouts: Timeouts.TimeoutOptions = defaultTimeouts) =>
  Effect.gen(function*() {
    const model = api === "anthropic" ? "claude-chaos" : "gpt-chaos"
    const messages = [{ role: "user" as const, content: "hello there" }]
    if (c.mode === "stream") {
      const guarded = Timeouts.make(timeouts).stream(provider.stream({ model, messages, maxTokens: 64 }), {
        provider: api,
        model,
        route: "r",
        attempt: 1
      })
      return yield* Effect.flip(Stream.runDrain(guarded))
    }
    const chain = yield* Fallback.make({
      routes: [{ name: "r", provider, model, policy: { retry: false, breaker: false, timeouts } }]
    })
    const request = { messages, maxTokens: 64 }
    const failure = c.mode === "object"
      ? yield* routesFailed(chain.generateObject(Answer, request))
      : yield* Effect.flip(chain.generate(request))
    expect(failure.attempts.length).toBe(1)
    expect(failure.lastError).toBeDefined()
    return failure.lastError!
  })

/** Each format's request id as the chaos server renders it (Bedrock: `x-amzn-requestid`, a UUID). */
const REQUEST_ID: Readonly<Record<Exclude<Api, "gemini">, RegExp>> = {
  openai: /^req_[0-9a-f]{32}$/,
  responses: /^req_[0-9a-f]{32}$/,
  anthropic: /^req_011C[A-Za-z0-9]{20}$/,
  bedrock: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
}

/** What every case asserts, whatever the transport. */
export const assertCase = (error: RouteError, api: Api, c: FaultCase, secret: string) => {
  expect(error._tag).toBe(c.tag)
  expect(actionOf(error)).toBe(c.action)
  expect(isRetryable(error)).toBe(c.retryable)
  expect(error.provider).toBe(api)
  // Everything that came with a response carries the provider's request id; transport failures cannot.
  // Gemini's API sends no request id at all.
  if (error._tag !== "Timeout" && error._tag !== "ConnectionError" && api !== "gemini") {
    expect(error.requestId ?? "").toMatch(REQUEST_ID[api])
  }
  expect(JSON.stringify(error)).not.toContain(secret)
  expect(String(error)).not.toContain(secret)
  c.check?.(error, api)
}

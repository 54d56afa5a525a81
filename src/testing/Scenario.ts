/**
 * The chaos server's fault model: what a scenario file may say, as `effect/Schema` definitions, and
 * the decoders that turn JSON text or a file into a typed `Scenario` — failing with a `ScenarioError`
 * whose message names the offending path and what was expected (never a defect).
 *
 * A scenario is a list of routes (matched on `api` and/or `model`, first match wins) plus a default
 * route. Each route says what content a healthy answer carries and which faults to inject: a `script`
 * consumed in order, then a seeded random `mix`, behind a capacity model (`rpm`, `tpm`,
 * `concurrency`) and an optional `outage` window. See docs/chaos-server.md for the full reference.
 *
 * The decoded type equals the JSON shape (no transformations, no defaults filled in), so a scenario
 * can be written as a TypeScript literal, served back by `GET /__chaos/scenario`, and round-tripped.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { firstJsonError, lineColumn } from "./internal/jsonLocate.js"
import { isHttpDate } from "./internal/timeFormat.js"
import { formatPath, mergeIssues } from "../internal/schemaIssues.js"

// ---------------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------------

const NonNegative = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
const Positive = Schema.Number.pipe(Schema.finite(), Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonEmpty = Schema.String.pipe(Schema.minLength(1))

/**
 * Optional field that may be absent but not `undefined` (JSON has no `undefined`; this also keeps the
 * decoder's messages free of "Expected undefined" noise).
 */
const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

/**
 * The provider wire format a request used: OpenAI Chat Completions (also under Azure's paths), OpenAI
 * Responses, Anthropic Messages, Google Gemini (`generateContent`) or AWS Bedrock Converse.
 *
 * @since 0.1.0
 * @category models
 */
export const Api = Schema.Literal("openai", "anthropic", "responses", "gemini", "bedrock")

/**
 * @since 0.1.0
 * @category models
 */
export type Api = typeof Api.Type

// ---------------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------------

/**
 * Always wait `ms` before answering.
 *
 * @since 0.1.0
 * @category latency
 */
export const FixedLatency = Schema.Struct({ kind: Schema.Literal("fixed"), ms: NonNegative }).annotations({ identifier: "FixedLatency" })

/**
 * Wait a seeded uniform draw from `[minMs, maxMs]`.
 *
 * @since 0.1.0
 * @category latency
 */
export const UniformLatency = Schema.Struct({
  kind: Schema.Literal("uniform"),
  minMs: NonNegative,
  maxMs: NonNegative
}).pipe(Schema.filter((l) => l.minMs <= l.maxMs || { path: ["maxMs"], message: "maxMs must be at least minMs" })).annotations({ identifier: "UniformLatency" })

/**
 * Wait `medianMs · e^(sigma·Z)` with Z a seeded standard normal — the long right tail real model
 * APIs show. `maxMs` caps the draw.
 *
 * @since 0.1.0
 * @category latency
 */
export const LognormalLatency = Schema.Struct({
  kind: Schema.Literal("lognormal"),
  medianMs: Positive,
  sigma: NonNegative,
  maxMs: opt(NonNegative)
}).annotations({ identifier: "LognormalLatency" })

/**
 * Delay before the response headers (time to first byte). Draws are seeded per route.
 *
 * @since 0.1.0
 * @category latency
 */
export const Latency = Schema.Union(FixedLatency, UniformLatency, LognormalLatency).annotations({ identifier: "Latency" })

/**
 * @since 0.1.0
 * @category latency
 */
export type Latency = typeof Latency.Type

// ---------------------------------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------------------------------

/**
 * Answer with this exact text.
 *
 * @since 0.1.0
 * @category content
 */
export const TextContent = Schema.Struct({ kind: Schema.Literal("text"), text: Schema.String }).annotations({ identifier: "TextContent" })

/**
 * Answer with `value` serialised as compact JSON (for structured-output tests).
 *
 * @since 0.1.0
 * @category content
 */
export const JsonContent = Schema.Struct({ kind: Schema.Literal("json"), value: Schema.Unknown }).annotations({ identifier: "JsonContent" })

/**
 * Answer with the text of the last user message.
 *
 * @since 0.1.0
 * @category content
 */
export const EchoContent = Schema.Struct({ kind: Schema.Literal("echo") }).annotations({ identifier: "EchoContent" })

/**
 * One tool call of a {@link ToolCallsContent} answer: the function's name and its arguments (any JSON
 * value; sent as the format sends arguments — JSON text for OpenAI, an object for Anthropic, Gemini
 * and Bedrock).
 *
 * @since 0.2.0
 * @category content
 */
export const ToolCallSpec = Schema.Struct({ name: Schema.NonEmptyString, arguments: Schema.Unknown }).annotations({
  identifier: "ToolCallSpec"
})

/**
 * Answer by calling tools, in every wire format's own shape — Chat `tool_calls`, Responses
 * `function_call` items, Anthropic `tool_use` blocks, Gemini `functionCall` parts, Bedrock `toolUse`
 * blocks — streamed as each format streams them (argument fragments where the format has them).
 *
 * @since 0.2.0
 * @category content
 */
export const ToolCallsContent = Schema.Struct({
  kind: Schema.Literal("tool_calls"),
  calls: Schema.NonEmptyArray(ToolCallSpec),
  /** Text said before the calls (default none). */
  text: Schema.optional(Schema.String)
}).annotations({ identifier: "ToolCallsContent" })

/**
 * What a healthy answer says. The default is a fixed sentence (see docs/chaos-server.md). A request
 * that forces one tool (`tool_choice` naming a function, as our Anthropic adapter does for structured
 * output) is answered with a call of that tool whose arguments are the content's JSON.
 *
 * @since 0.1.0
 * @category content
 */
export const Content = Schema.Union(TextContent, JsonContent, EchoContent, ToolCallsContent).annotations({ identifier: "Content" })

/**
 * @since 0.1.0
 * @category content
 */
export type Content = typeof Content.Type

// ---------------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------------

const latencyField = {
  /** Overrides the route's latency for responses produced by this fault. */
  latency: opt(Latency)
}

const errorFields = {
  ...latencyField,
  /** Emit `x-should-retry: true|false` (the SDKs let it override the status). */
  shouldRetry: opt(Schema.Boolean),
  /** Overrides the error message in the body. */
  message: opt(Schema.String)
}

const afterDeltas = opt(NonNegativeInt)

/**
 * A healthy answer (optionally with its own content).
 *
 * @since 0.1.0
 * @category faults
 */
export const Ok = Schema.Struct({ kind: Schema.Literal("ok"), ...latencyField, content: opt(Content) }).annotations({ identifier: "Ok" })

/**
 * HTTP 429 rate limit (OpenAI `rate_limit_exceeded`, Anthropic `rate_limit_error`) with the chosen
 * wait hints and rate-limit headers showing 0 remaining for `limitType` (default `requests`).
 * `retryAfterDate` is an HTTP-date string sent verbatim, or a number of seconds from now rendered as
 * an HTTP-date. `retryAfterSeconds` and `retryAfterDate` both set `retry-after`, so only one may be given.
 *
 * @since 0.1.0
 * @category faults
 */
export const RateLimit = Schema.Struct({
  kind: Schema.Literal("rate_limit"),
  ...errorFields,
  limitType: opt(Schema.Literal("requests", "tokens")),
  retryAfterSeconds: opt(NonNegative),
  retryAfterMs: opt(NonNegative),
  retryAfterDate: opt(
    Schema.Union(Schema.String.pipe(Schema.filter(isHttpDate)), NonNegative).annotations({
      message: () => ({
        message: "Expected an HTTP-date such as \"Wed, 21 Oct 2015 07:28:00 GMT\", or a number of seconds from now",
        override: true
      })
    })
  )
}).pipe(Schema.filter((f) =>
  f.retryAfterSeconds === undefined || f.retryAfterDate === undefined ||
  { path: ["retryAfterDate"], message: "retryAfterSeconds and retryAfterDate both set `retry-after`; give only one" }
)).annotations({ identifier: "RateLimit" })

/**
 * Out of credit: OpenAI 429 `insufficient_quota`; Anthropic 400 `invalid_request_error` "Your credit
 * balance is too low…" (what the Messages API actually sends).
 *
 * @since 0.1.0
 * @category faults
 */
export const InsufficientQuota = Schema.Struct({ kind: Schema.Literal("insufficient_quota"), ...errorFields }).annotations({ identifier: "InsufficientQuota" })

/**
 * HTTP 402: Anthropic `billing_error`; OpenAI-shaped `insufficient_quota` / `billing_not_active`.
 *
 * @since 0.1.0
 * @category faults
 */
export const Billing = Schema.Struct({ kind: Schema.Literal("billing"), ...errorFields }).annotations({ identifier: "Billing" })

/**
 * Provider overloaded: HTTP `status` (default 529) with Anthropic `overloaded_error` or an OpenAI-shaped
 * body (`type: "server_error"`, `code: "overloaded"`).
 *
 * @since 0.1.0
 * @category faults
 */
export const Overloaded = Schema.Struct({
  kind: Schema.Literal("overloaded"),
  ...errorFields,
  status: opt(Schema.Int.pipe(Schema.between(400, 599))),
  retryAfterSeconds: opt(NonNegative)
}).annotations({ identifier: "Overloaded" })

/**
 * Any 4xx/5xx in the provider's error shape. `reason: "context_length"` (status 400) renders the
 * context-window error (OpenAI `context_length_exceeded`; Anthropic "prompt is too long: N tokens > M
 * maximum") against `contextWindow` (default 128000 / 200000). `errorType`, `errorCode`, `param`
 * override the body fields; `body` (+ `contentType`) replaces the body entirely (e.g. an HTML gateway page).
 *
 * @since 0.1.0
 * @category faults
 */
export const HttpError = Schema.Struct({
  kind: Schema.Literal("http_error"),
  ...errorFields,
  status: Schema.Int.pipe(Schema.between(400, 599)),
  reason: opt(Schema.Literal("context_length")),
  contextWindow: opt(PositiveInt),
  errorType: opt(Schema.String),
  errorCode: opt(Schema.NullOr(Schema.String)),
  param: opt(Schema.NullOr(Schema.String)),
  body: opt(Schema.String),
  contentType: opt(NonEmpty),
  retryAfterSeconds: opt(NonNegative)
}).pipe(Schema.filter((f) =>
  f.reason === undefined || f.status === 400 ||
  { path: ["status"], message: "reason \"context_length\" is a 400 error" }
)).annotations({ identifier: "HttpError" })

/**
 * Reset the TCP connection (RST) after reading the request, before any response byte.
 *
 * @since 0.1.0
 * @category faults
 */
export const ConnectionReset = Schema.Struct({ kind: Schema.Literal("connection_reset"), ...latencyField }).annotations({ identifier: "ConnectionReset" })

/**
 * Accept the request and never answer, until the client goes away or the server closes.
 *
 * @since 0.1.0
 * @category faults
 */
export const HangBeforeHeaders = Schema.Struct({ kind: Schema.Literal("hang_before_headers") }).annotations({ identifier: "HangBeforeHeaders" })

/**
 * Stream: headers and the metadata event(s) promptly, the first content delta after `delayMs`.
 * Non-stream: the whole response after `delayMs`.
 *
 * @since 0.1.0
 * @category faults
 */
export const SlowFirstToken = Schema.Struct({
  kind: Schema.Literal("slow_first_token"),
  ...latencyField,
  delayMs: NonNegative
}).annotations({ identifier: "SlowFirstToken" })

/**
 * Stream: `afterDeltas` content deltas (default 1), then silence for `delayMs` (then the rest) or, without
 * `delayMs`, forever. Non-stream: headers and half the body, then the same silence.
 *
 * @since 0.1.0
 * @category faults
 */
export const StallMidStream = Schema.Struct({
  kind: Schema.Literal("stall_mid_stream"),
  ...latencyField,
  afterDeltas,
  delayMs: opt(NonNegative)
}).annotations({ identifier: "StallMidStream" })

/**
 * Stream: HTTP 200, `afterDeltas` content deltas (default 1), then an error event in the provider's
 * format (Anthropic `event: error`; OpenAI a `data:` chunk carrying `error`) and the end of the body.
 * `error` picks the kind (default `overloaded`); `errorType` / `errorCode` / `message` override the body.
 * Non-stream: the equivalent HTTP error.
 *
 * @since 0.1.0
 * @category faults
 */
export const StreamError = Schema.Struct({
  kind: Schema.Literal("stream_error"),
  ...latencyField,
  afterDeltas,
  error: opt(Schema.Literal("overloaded", "server_error", "rate_limit")),
  errorType: opt(Schema.String),
  errorCode: opt(Schema.NullOr(Schema.String)),
  message: opt(Schema.String)
}).annotations({ identifier: "StreamError" })

/**
 * Stream: `afterDeltas` content deltas (default 1), then the body ends without the protocol terminator
 * (`[DONE]` / `message_stop`). `abort: true` destroys the socket instead of ending the chunked body, so
 * the client sees a transport error. Non-stream: half the body, then the socket is destroyed.
 *
 * @since 0.1.0
 * @category faults
 */
export const StreamCut = Schema.Struct({
  kind: Schema.Literal("stream_cut"),
  ...latencyField,
  afterDeltas,
  abort: opt(Schema.Boolean)
}).annotations({ identifier: "StreamCut" })

/**
 * HTTP 200 whose body is not JSON (stream: a `data:` line that is not JSON). `body` overrides the text.
 *
 * @since 0.1.0
 * @category faults
 */
export const MalformedJson = Schema.Struct({
  kind: Schema.Literal("malformed_json"),
  ...latencyField,
  body: opt(Schema.String)
}).annotations({ identifier: "MalformedJson" })

/**
 * HTTP 200 with no text (OpenAI `content: ""`; Anthropic `content: []`).
 *
 * @since 0.1.0
 * @category faults
 */
export const EmptyContent = Schema.Struct({ kind: Schema.Literal("empty_content"), ...latencyField }).annotations({ identifier: "EmptyContent" })

/**
 * HTTP 200 whose text is `value` as JSON — valid JSON that breaks the caller's output contract.
 *
 * @since 0.1.0
 * @category faults
 */
export const SchemaViolation = Schema.Struct({
  kind: Schema.Literal("schema_violation"),
  ...latencyField,
  value: Schema.Unknown
}).annotations({ identifier: "SchemaViolation" })

/**
 * HTTP 200 with the first `fraction` (default 0.5) of the content and OpenAI `finish_reason: "length"` /
 * Anthropic `stop_reason: "max_tokens"`.
 *
 * @since 0.1.0
 * @category faults
 */
export const Truncated = Schema.Struct({
  kind: Schema.Literal("truncated"),
  ...latencyField,
  fraction: opt(Schema.Number.pipe(Schema.between(0, 1)))
}).annotations({ identifier: "Truncated" })

/**
 * HTTP 200 with the first `fraction` (default 0) of the content and OpenAI
 * `finish_reason: "content_filter"` / Anthropic `stop_reason: "refusal"`.
 *
 * @since 0.1.0
 * @category faults
 */
export const ContentFilter = Schema.Struct({
  kind: Schema.Literal("content_filter"),
  ...latencyField,
  fraction: opt(Schema.Number.pipe(Schema.between(0, 1)))
}).annotations({ identifier: "ContentFilter" })

/**
 * One fault to inject (field `kind`).
 *
 * @since 0.1.0
 * @category faults
 */
export const Fault = Schema.Union(
  Ok,
  RateLimit,
  InsufficientQuota,
  Billing,
  Overloaded,
  HttpError,
  ConnectionReset,
  HangBeforeHeaders,
  SlowFirstToken,
  StallMidStream,
  StreamError,
  StreamCut,
  MalformedJson,
  EmptyContent,
  SchemaViolation,
  Truncated,
  ContentFilter
).annotations({ identifier: "Fault" })

/**
 * @since 0.1.0
 * @category faults
 */
export type Fault = typeof Fault.Type

/**
 * Every fault kind, in documentation order.
 *
 * @since 0.1.0
 * @category faults
 */
export type FaultKind = Fault["kind"]

/**
 * @since 0.1.0
 * @category faults
 */
export const faultKinds: ReadonlyArray<FaultKind> = [
  "ok",
  "rate_limit",
  "insufficient_quota",
  "billing",
  "overloaded",
  "http_error",
  "connection_reset",
  "hang_before_headers",
  "slow_first_token",
  "stall_mid_stream",
  "stream_error",
  "stream_cut",
  "malformed_json",
  "empty_content",
  "schema_violation",
  "truncated",
  "content_filter"
]

// ---------------------------------------------------------------------------------------------------
// Routes and scenarios
// ---------------------------------------------------------------------------------------------------

/**
 * One weighted entry of a route's random `mix`: `fault` with probability `rate`.
 *
 * @since 0.1.0
 * @category routes
 */
export const MixEntry = Schema.Struct({ fault: Fault, rate: Schema.Number.pipe(Schema.between(0, 1)) }).annotations({ identifier: "MixEntry" })

/**
 * A window, in milliseconds since server start (or the last reset), during which the route answers
 * with `fault` (default: OpenAI 503, Anthropic 529 overloaded). `toMs` is exclusive.
 *
 * @since 0.1.0
 * @category routes
 */
export const Outage = Schema.Struct({ fromMs: NonNegative, toMs: NonNegative, fault: opt(Fault) }).pipe(
  Schema.filter((o) => o.fromMs < o.toMs || { path: ["toMs"], message: "toMs must be greater than fromMs" })
).annotations({ identifier: "Outage" })

const routeFields = {
  /** What a healthy answer says on this route. */
  content: opt(Content),
  /** Default delay before headers for every response on this route. */
  latency: opt(Latency),
  /** Delay between stream deltas (default 0). */
  deltaDelayMs: opt(NonNegative),
  /** Faults served in order, one per request, before `mix` applies. */
  script: opt(Schema.Array(Fault)),
  /** Seeded random faults once the script is spent; the remaining probability is `ok`. */
  mix: opt(Schema.Array(MixEntry).pipe(Schema.filter((entries) => {
    const total = entries.reduce((sum, e) => sum + e.rate, 0)
    return total <= 1 + 1e-9 || `the rates of a mix must add up to at most 1 (they add up to ${total})`
  }))),
  /** Requests per minute (token bucket, capacity `rpm`, refilled continuously). */
  rpm: opt(Positive),
  /** Tokens per minute; a request costs its estimated prompt tokens plus `max_tokens`. */
  tpm: opt(Positive),
  /** Requests in flight at once; one more is answered 529 overloaded. */
  concurrency: opt(PositiveInt),
  /**
   * The model's context window, in tokens: a request whose estimated prompt (text, plus 1,600 tokens
   * per image and about bytes / 4 per file) plus `max_tokens` exceeds it is answered with the
   * provider's context-length 400 (served as `http_error` with source `context`), before any capacity
   * is taken.
   */
  contextWindow: opt(PositiveInt),
  outage: opt(Outage)
}

/**
 * A route: which requests it matches (`api` and/or `model`, where `model` may use `*` wildcards) and
 * how it behaves. `name` labels it in stats (default `routes[i]`).
 *
 * @since 0.1.0
 * @category routes
 */
export const Route = Schema.Struct({
  name: opt(NonEmpty),
  api: opt(Api),
  model: opt(NonEmpty),
  ...routeFields
}).annotations({ identifier: "Route" })

/**
 * @since 0.1.0
 * @category routes
 */
export type Route = typeof Route.Type

/**
 * The route for requests no other route matched (same fields, no matching).
 *
 * @since 0.1.0
 * @category routes
 */
export const DefaultRoute = Schema.Struct(routeFields).annotations({ identifier: "DefaultRoute" })

/**
 * @since 0.1.0
 * @category routes
 */
export type DefaultRoute = typeof DefaultRoute.Type

/**
 * A whole scenario. `seed` (default 1) drives every random draw; `models` adds ids to `GET /v1/models`.
 *
 * @since 0.1.0
 * @category models
 */
export const Scenario = Schema.Struct({
  description: opt(Schema.String),
  seed: opt(Schema.Int),
  models: opt(Schema.Array(NonEmpty)),
  routes: opt(Schema.Array(Route)),
  default: opt(DefaultRoute)
}).annotations({ identifier: "Scenario" })

/**
 * @since 0.1.0
 * @category models
 */
export type Scenario = typeof Scenario.Type

/**
 * The scenario with no routes: every request is answered `ok` with the default content.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: Scenario = {}

// ---------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------

/**
 * One problem found in a scenario: where (`routes[0].script[1].kind`, or `(root)`) and what.
 *
 * @since 0.1.0
 * @category errors
 */
export const ScenarioIssue = Schema.Struct({ path: Schema.String, message: Schema.String })

/**
 * @since 0.1.0
 * @category errors
 */
export type ScenarioIssue = typeof ScenarioIssue.Type

/**
 * A scenario could not be used: the file could not be read (`Read`), the text is not JSON (`Json`,
 * with line and column), or the JSON does not fit the schema (`Schema`, with one issue per problem).
 *
 * @since 0.1.0
 * @category errors
 */
export class ScenarioError extends Schema.TaggedError<ScenarioError>()("ScenarioError", {
  reason: Schema.Literal("Read", "Json", "Schema"),
  /** The file path, or a label for inline text. */
  source: Schema.String,
  issues: Schema.Array(ScenarioIssue),
  message: Schema.String
}) {}

const describe = (source: string, issues: ReadonlyArray<ScenarioIssue>): string =>
  [`Invalid scenario (${source}):`, ...issues.map((i) => `  - ${i.path}: ${i.message}`)].join("\n")

/**
 * Checks any value (e.g. parsed JSON, or a literal built in code) against the schema. Excess properties
 * are errors, so a typo such as `retryAfterSecs` is reported instead of silently ignored.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeUnknown = (input: unknown, source = "<inline>"): Effect.Effect<Scenario, ScenarioError> =>
  Schema.decodeUnknown(Scenario, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((error) => {
      const issues = mergeIssues(ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
        path: formatPath(issue.path),
        message: issue.message
      })))
      return new ScenarioError({ reason: "Schema", source, issues, message: describe(source, issues) })
    })
  )

/**
 * Parses and checks scenario JSON text.
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromJson = (text: string, source = "<inline>"): Effect.Effect<Scenario, ScenarioError> =>
  Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (cause) => {
      const located = firstJsonError(text)
      const where = located === undefined ? "" : (() => {
        const { column, line } = lineColumn(text, located.offset)
        return ` at line ${line}, column ${column} (expected ${located.expected})`
      })()
      const detail = cause instanceof Error ? cause.message : String(cause)
      const issue = { path: "(root)", message: `not valid JSON${where}: ${detail}` }
      return new ScenarioError({ reason: "Json", source, issues: [issue], message: describe(source, [issue]) })
    }
  }).pipe(Effect.flatMap((json) => decodeUnknown(json, source)))

/**
 * Reads, parses and checks a scenario file (UTF-8 JSON).
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromFile = (path: string): Effect.Effect<Scenario, ScenarioError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError((error) => {
      const issue = { path: "(root)", message: `cannot read the file: ${error.message}` }
      return new ScenarioError({ reason: "Read", source: path, issues: [issue], message: describe(path, [issue]) })
    }),
    Effect.flatMap((text) => fromJson(text, path))
  )

/**
 * The failure taxonomy. Every way a model call can fail is one tagged, Schema-encodable error that
 * says *what to do next* (`action`) and whether the same request on the same route may succeed later
 * (`retryable`). Classification reads provider semantics first (body `type`/`code`, `x-should-retry`),
 * the HTTP status second, so that e.g. OpenAI's 429 `insufficient_quota` is never retried like a rate
 * limit, and Anthropic's `overloaded_error` inside a 200 stream is an `Overloaded`, not a success.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { RateLimitSnapshot } from "./RateLimitSnapshot.js"
// Provider.ts imports this module for types only, so this is not a runtime cycle.
import { Usage } from "./Provider.js"

/**
 * What a caller should do about a failure:
 * - `wait`: stay on this route and try again after a delay (rate limits, 5xx, timeouts, resets).
 * - `reroute`: this route cannot serve the request now; another route may (overload, quota, auth, breaker).
 * - `stop`: the request itself is wrong or time is up; no route will do better.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorAction = "wait" | "reroute" | "stop"

/**
 * Fields every provider-facing failure carries.
 *
 * @since 0.1.0
 * @category fields
 */
export const ErrorContextFields = {
  /** Provider family (`openai`, `anthropic`, or a custom adapter's name). */
  provider: Schema.String,
  /** The model id the request asked for. */
  model: Schema.String,
  /** The route label (set by the fallback chain; the adapter default is `provider/model`). */
  route: Schema.String,
  /** 1-based attempt number within one logical call. */
  attempt: Schema.Number,
  /** HTTP status, when the failure came from an HTTP response (absent for mid-stream and transport errors). */
  status: Schema.optional(Schema.Number),
  /** The provider's error `type` (e.g. `rate_limit_error`, `insufficient_quota`). */
  providerType: Schema.optional(Schema.String),
  /** The provider's error `code` (e.g. `context_length_exceeded`). */
  providerCode: Schema.optional(Schema.String),
  /** `x-request-id` (OpenAI) / `request-id` (Anthropic), for support tickets. */
  requestId: Schema.optional(Schema.String),
  /** The provider's `x-should-retry` verdict, which overrides the tag's default. */
  shouldRetry: Schema.optional(Schema.Boolean),
  /** The raw response body, redacted and truncated (see docs/errors.md), for diagnosis. */
  rawBody: Schema.optional(Schema.String),
  /** Human-readable, redacted description. */
  message: Schema.String
}

/**
 * The context fields as a plain type (what adapters fill in before classification).
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorContext = Schema.Struct.Constructor<typeof ErrorContextFields>

/** A provider's wait hint, in milliseconds. */
const retryAfterMs = Schema.optional(Schema.Number)

/**
 * 429 `rate_limit_exceeded` / Anthropic `rate_limit_error`: wait for `retryAfterMs` and try again.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  ...ErrorContextFields,
  retryAfterMs,
  rateLimit: Schema.optional(RateLimitSnapshot)
}) {}

/**
 * OpenAI 429 `insufficient_quota`, 402, Anthropic `billing_error`: the account cannot pay for this
 * route. Never retried; another route (another key or provider) may serve.
 *
 * @since 0.1.0
 * @category errors
 */
export class QuotaExhausted extends Schema.TaggedError<QuotaExhausted>()("QuotaExhausted", {
  ...ErrorContextFields
}) {}

/**
 * 529 / 503 / Anthropic `overloaded_error` (also mid-stream after HTTP 200): the provider is shedding
 * load. Move to another route rather than adding to the pile.
 *
 * @since 0.1.0
 * @category errors
 */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  ...ErrorContextFields,
  retryAfterMs
}) {}

/**
 * 500 / 502 / 504, Anthropic `api_error` / `timeout_error`, 408 / 409, unknown statuses: a transient
 * server fault. Retry with backoff.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", {
  ...ErrorContextFields,
  retryAfterMs
}) {}

/**
 * 400 / 413 / 422 `invalid_request_error`: the request is wrong and will be wrong everywhere.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  ...ErrorContextFields,
  /** The request parameter the provider blamed, when it said. */
  param: Schema.optional(Schema.String)
}) {}

/**
 * This route's wire format cannot carry something in the request — an image or file part it has no
 * encoding for (a PDF by URL on Chat Completions, any URL on Bedrock, an image in a tool result where
 * tool results are text), or a media type it does not accept. Found before anything is sent, so the
 * provider never sees the request; another route may carry it, so the chain moves on. Not a sign of
 * provider health: breakers do not count it.
 *
 * @since 0.3.0
 * @category errors
 */
export class UnsupportedRequest extends Schema.TaggedError<UnsupportedRequest>()("UnsupportedRequest", {
  ...ErrorContextFields,
  /** Where in the request: `messages[2].content[1]`. */
  param: Schema.String
}) {}

/**
 * 400 with a context-length code or message: the prompt does not fit this model. Only a route with a
 * larger context window can help.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContextLengthExceeded extends Schema.TaggedError<ContextLengthExceeded>()("ContextLengthExceeded", {
  ...ErrorContextFields
}) {}

/**
 * 401 / 403: the key is missing, wrong or lacks permission for this model.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  ...ErrorContextFields
}) {}

/**
 * 404: usually an unknown model id on this route.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  ...ErrorContextFields
}) {}

/**
 * The provider refused or filtered the output (`content_filter`, `refusal`).
 *
 * @since 0.1.0
 * @category errors
 */
export class ContentFiltered extends Schema.TaggedError<ContentFiltered>()("ContentFiltered", {
  ...ErrorContextFields,
  finishReason: Schema.String
}) {}

/**
 * The client-side phases a single attempt can time out in.
 *
 * @since 0.1.0
 * @category models
 */
export const TimeoutPhase = Schema.Literal("connect", "headers", "first-token", "idle", "attempt")

/**
 * @since 0.1.0
 * @category models
 */
export type TimeoutPhase = typeof TimeoutPhase.Type

/**
 * An attempt ran out of time in one phase. Retryable; the wall-clock deadline is `DeadlineExceeded`.
 *
 * @since 0.1.0
 * @category errors
 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  ...ErrorContextFields,
  phase: TimeoutPhase,
  timeoutMs: Schema.optional(Schema.Number)
}) {}

/**
 * Why a connection failed.
 *
 * @since 0.1.0
 * @category models
 */
export const ConnectionFailure = Schema.Literal("refused", "reset", "dns", "tls", "closed", "unknown")

/**
 * @since 0.1.0
 * @category models
 */
export type ConnectionFailure = typeof ConnectionFailure.Type

/**
 * The transport failed before or while reading a response (reset, refused, DNS, TLS).
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionError extends Schema.TaggedError<ConnectionError>()("ConnectionError", {
  ...ErrorContextFields,
  reason: ConnectionFailure,
  /** The system or undici error code (`ECONNREFUSED`, `UND_ERR_SOCKET`, …). */
  code: Schema.optional(Schema.String)
}) {}

/**
 * A stream ended (or broke) without its terminator (`[DONE]` / `message_stop`). Never a clean success.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamInterrupted extends Schema.TaggedError<StreamInterrupted>()("StreamInterrupted", {
  ...ErrorContextFields,
  /** Whether any content had been delivered before the break (retry is only transparent before that). */
  receivedContent: Schema.Boolean,
  /** The content received so far, so a caller can show or salvage it. */
  partialText: Schema.optional(Schema.String)
}) {}

/**
 * Why an answer was rejected although the transport succeeded.
 *
 * @since 0.1.0
 * @category models
 */
export const InvalidOutputReason = Schema.Literal(
  "malformed-response",
  "empty",
  "truncated",
  "unparsable",
  "schema",
  "validator"
)

/**
 * @since 0.1.0
 * @category models
 */
export type InvalidOutputReason = typeof InvalidOutputReason.Type

/**
 * HTTP 200, but the answer is unusable: a body that is not the provider's JSON, empty content, output
 * cut by `length`/`max_tokens`, unparsable JSON or a Schema failure. A 200 is not success.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOutput extends Schema.TaggedError<InvalidOutput>()("InvalidOutput", {
  ...ErrorContextFields,
  reason: InvalidOutputReason,
  /** The decode errors, formatted (fed back to the model by the repair loop). */
  issues: Schema.optional(Schema.String),
  /** The rejected output, truncated. */
  output: Schema.optional(Schema.String)
}) {}

/**
 * A response body or a single SSE event exceeded the configured bound; reading stopped there.
 *
 * @since 0.1.0
 * @category errors
 */
export class ResponseTooLarge extends Schema.TaggedError<ResponseTooLarge>()("ResponseTooLarge", {
  ...ErrorContextFields,
  limitBytes: Schema.Number,
  part: Schema.Literal("body", "sse-event")
}) {}

/**
 * The route's circuit breaker is open: fail fast without calling the provider.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>()("CircuitOpen", {
  ...ErrorContextFields,
  retryAfterMs
}) {}

/**
 * What a spend budget limits: its cost in USD (`cost`) or its tokens (`tokens`).
 *
 * @since 0.2.0
 * @category models
 */
export const BudgetLimit = Schema.Literal("cost", "tokens")

/**
 * @since 0.2.0
 * @category models
 */
export type BudgetLimit = typeof BudgetLimit.Type

/**
 * A spend budget (`Spend.budget`) refused an attempt **before it was sent**: the attempt's worst case
 * (its estimated prompt plus its `maxTokens` of output, priced) does not fit what is left once the
 * budget's spend and the reservations of the attempts still in flight are counted — or, with
 * `reason: "unpriced-model"`, the budget limits cost and has no price for the model. Nothing went on
 * the wire, so breakers give it no verdict and limiters refund its permit. Action `stop`: a retry, a
 * repair or another route would only ask the same spent budget again (catch it to fall back to
 * something cheaper deliberately) — except for `unpriced-model`, `reroute`: another route's model may
 * be priced (see {@link actionOf}). Amounts are in the limit's unit: USD for `cost`, tokens for `tokens`.
 *
 * @since 0.2.0
 * @category errors
 */
export class BudgetExceeded extends Schema.TaggedError<BudgetExceeded>()("BudgetExceeded", {
  ...ErrorContextFields,
  /** The refusing budget's name (with nested budgets, the one that had no room). */
  budget: Schema.String,
  limit: BudgetLimit,
  /** `over-limit`: the attempt does not fit; `unpriced-model`: a cost limit and no price for the model. */
  reason: Schema.Literal("over-limit", "unpriced-model"),
  /** The limit (`maxCostUsd` or `maxTokens`); absent when an unpriced model is refused without a cost limit. */
  max: Schema.optional(Schema.Number),
  /** What the budget had spent when it refused (settled attempts). */
  spent: Schema.Number,
  /** What attempts in flight held reserved when it refused. */
  reserved: Schema.Number,
  /** This attempt's worst case (absent for an unpriced model's cost). */
  requested: Schema.optional(Schema.Number)
}) {}

/**
 * The union of failures a single route attempt can produce (wire and transport).
 *
 * @since 0.1.0
 * @category models
 */
export type ProviderError =
  | RateLimited
  | QuotaExhausted
  | Overloaded
  | ServerError
  | BadRequest
  | UnsupportedRequest
  | ContextLengthExceeded
  | Unauthorized
  | NotFound
  | ContentFiltered
  | Timeout
  | ConnectionError
  | StreamInterrupted
  | InvalidOutput
  | ResponseTooLarge

/**
 * Schema of {@link ProviderError}, for storing and shipping failures.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ProviderError: Schema.Union<[
  typeof RateLimited,
  typeof QuotaExhausted,
  typeof Overloaded,
  typeof ServerError,
  typeof BadRequest,
  typeof UnsupportedRequest,
  typeof ContextLengthExceeded,
  typeof Unauthorized,
  typeof NotFound,
  typeof ContentFiltered,
  typeof Timeout,
  typeof ConnectionError,
  typeof StreamInterrupted,
  typeof InvalidOutput,
  typeof ResponseTooLarge
]> = Schema.Union(
  RateLimited,
  QuotaExhausted,
  Overloaded,
  ServerError,
  BadRequest,
  UnsupportedRequest,
  ContextLengthExceeded,
  Unauthorized,
  NotFound,
  ContentFiltered,
  Timeout,
  ConnectionError,
  StreamInterrupted,
  InvalidOutput,
  ResponseTooLarge
)

/**
 * The retry budget of a route is spent: the failure surfaces at once instead of adding to a storm.
 *
 * @since 0.1.0
 * @category errors
 */
export class RetryBudgetExhausted extends Schema.TaggedError<RetryBudgetExhausted>()("RetryBudgetExhausted", {
  ...ErrorContextFields,
  /** The failure that would have been retried. */
  lastError: ProviderError
}) {}

/**
 * The caller's wall-clock deadline passed (it spans retries and fallbacks). Stop.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeadlineExceeded extends Schema.TaggedError<DeadlineExceeded>()("DeadlineExceeded", {
  ...ErrorContextFields,
  deadlineMs: Schema.Number,
  lastError: Schema.optional(ProviderError)
}) {}

/**
 * One attempt in the history of a logical call.
 *
 * @since 0.1.0
 * @category models
 */
export const AttemptRecord = Schema.Struct({
  route: Schema.String,
  attempt: Schema.Number,
  /** `success` or the failure's tag. */
  outcome: Schema.String,
  status: Schema.optional(Schema.Number),
  requestId: Schema.optional(Schema.String),
  /** The delay waited before this attempt started. */
  delayMs: Schema.Number,
  durationMs: Schema.Number,
  message: Schema.optional(Schema.String),
  /** Tokens the attempt consumed, when a response reported them (also for answers the chain rejected). */
  usage: Schema.optional(Usage),
  /** What `usage` cost in USD, when the chain has a price for the route's model (see `Spend`). */
  costUsd: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 * @category models
 */
export type AttemptRecord = typeof AttemptRecord.Type

/**
 * Schema of every route-level failure ({@link RouteError}).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RouteErrorSchema = Schema.Union(
  ...ProviderError.members,
  CircuitOpen,
  RetryBudgetExhausted,
  DeadlineExceeded,
  BudgetExceeded
)

/**
 * Why a fallback chain gave up.
 *
 * @since 0.1.0
 * @category models
 */
export const ChainStop = Schema.Literal("exhausted", "stopped", "deadline", "no-route", "budget")

/**
 * A fallback chain produced no accepted answer. `reason` says why: every route was tried and failed
 * (`exhausted`), a failure said no route would do better (`stopped`: a bad request, a context length
 * with no larger route), the deadline passed (`deadline`), no route could take the request
 * (`no-route`: every context window too small), or a spend budget refused the next attempt before it
 * was sent (`budget`, with `lastError` the `BudgetExceeded`). Carries the whole attempt history and the last
 * failure — never only the last error, and never a rejected value.
 *
 * @since 0.1.0
 * @category errors
 */
export class AllRoutesFailed extends Schema.TaggedError<AllRoutesFailed>()("AllRoutesFailed", {
  message: Schema.String,
  reason: ChainStop,
  attempts: Schema.Array(AttemptRecord),
  lastError: Schema.optional(RouteErrorSchema)
}) {}

/**
 * A constructor was given options it cannot work with (a base URL that does not parse, a deadline
 * ≤ 0, an empty route list, a schema with no JSON Schema for structured output, …). Raised when the
 * value is built, never at call time and never as a defect, so a misconfiguration fails the program's
 * start with a message that names the option.
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** What was being built, e.g. `OpenAi.make` or `Fallback.make`. */
  component: Schema.String,
  /** The option's path, e.g. `baseUrl` or `routes[1].policy.deadline`. */
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * Failures that carry the per-route context (everything but the chain-level {@link AllRoutesFailed}).
 *
 * @since 0.1.0
 * @category models
 */
export type RouteError = ProviderError | CircuitOpen | RetryBudgetExhausted | DeadlineExceeded | BudgetExceeded

/**
 * Every failure this library produces.
 *
 * @since 0.1.0
 * @category models
 */
export type LlmError = RouteError | AllRoutesFailed

const DEFAULTS: { readonly [K in RouteError["_tag"]]: { readonly action: ErrorAction; readonly retryable: boolean } } = {
  RateLimited: { action: "wait", retryable: true },
  QuotaExhausted: { action: "reroute", retryable: false },
  Overloaded: { action: "reroute", retryable: true },
  ServerError: { action: "wait", retryable: true },
  BadRequest: { action: "stop", retryable: false },
  UnsupportedRequest: { action: "reroute", retryable: false },
  ContextLengthExceeded: { action: "stop", retryable: false },
  Unauthorized: { action: "reroute", retryable: false },
  NotFound: { action: "reroute", retryable: false },
  ContentFiltered: { action: "stop", retryable: false },
  Timeout: { action: "wait", retryable: true },
  ConnectionError: { action: "wait", retryable: true },
  StreamInterrupted: { action: "wait", retryable: true },
  InvalidOutput: { action: "reroute", retryable: false },
  ResponseTooLarge: { action: "reroute", retryable: false },
  CircuitOpen: { action: "reroute", retryable: false },
  // The budget is per route: when it is spent, that route is sick, and another route may still serve.
  RetryBudgetExhausted: { action: "reroute", retryable: false },
  DeadlineExceeded: { action: "stop", retryable: false },
  // A spent budget is spent for every route and every retry: nothing this call can do would fit.
  // (`actionOf` reroutes an `unpriced-model` refusal: another route's model may be priced.)
  BudgetExceeded: { action: "stop", retryable: false }
}

/**
 * Whether the same request on the same route may succeed later. `x-should-retry` wins over the tag;
 * a malformed (non-JSON) 200 body is treated as transient wire corruption.
 *
 * @since 0.1.0
 * @category guards
 */
export const isRetryable = (error: RouteError): boolean => {
  if (error.shouldRetry !== undefined) return error.shouldRetry
  if (error._tag === "InvalidOutput") return error.reason === "malformed-response"
  return DEFAULTS[error._tag].retryable
}

/**
 * What to do about a failure (see {@link ErrorAction}). An explicit `x-should-retry: false` turns a
 * `wait` into `reroute` (this route said no; another may not); `x-should-retry: true` turns any
 * action into `wait`. A `BudgetExceeded` for an `unpriced-model` is `reroute`: the budget has no price
 * for this route's model, which says nothing of what is left in it — another route's model may be
 * priced and fit (an `over-limit` refusal stays `stop`).
 *
 * @since 0.1.0
 * @category guards
 */
export const actionOf = (error: RouteError): ErrorAction => {
  const base = error._tag === "InvalidOutput" && error.reason === "malformed-response"
    ? "wait"
    : error._tag === "BudgetExceeded" && error.reason === "unpriced-model"
    ? "reroute"
    : DEFAULTS[error._tag].action
  if (error.shouldRetry === false && base === "wait") return "reroute"
  if (error.shouldRetry === true) return "wait"
  return base
}

/**
 * The provider's wait hint carried by an error, in milliseconds, if any.
 *
 * @since 0.1.0
 * @category getters
 */
export const retryAfterOf = (error: RouteError): number | undefined =>
  "retryAfterMs" in error ? error.retryAfterMs : undefined

/**
 * Whether a failure says the *provider* (not the request) is unhealthy — what breakers count.
 * `RateLimited` is a separate opt-in in the breaker: it means "too fast", not "sick".
 *
 * @since 0.1.0
 * @category guards
 */
export const isProviderHealthFailure = (error: RouteError): boolean => {
  switch (error._tag) {
    case "Overloaded":
    case "ServerError":
    case "Timeout":
    case "ConnectionError":
    case "StreamInterrupted":
      return true
    case "InvalidOutput":
      return error.reason === "malformed-response"
    default:
      return false
  }
}

/**
 * Tags of every route-level failure, for exhaustive tables and docs.
 *
 * @since 0.1.0
 * @category models
 */
export const routeErrorTags = Object.keys(DEFAULTS) as ReadonlyArray<RouteError["_tag"]>

/**
 * The default action of a tag (before `x-should-retry` overrides), for docs and tests.
 *
 * @since 0.1.0
 * @category getters
 */
export const defaultActionOf = (tag: RouteError["_tag"]): ErrorAction => DEFAULTS[tag].action

/**
 * Returns a copy of the error re-stamped with the given route and attempt (the adapter knows neither
 * the fallback route label nor the attempt number when it classifies; the policies do).
 *
 * @since 0.1.0
 * @category constructors
 */
export const restamp = <E extends RouteError>(error: E, fields: { readonly route?: string; readonly attempt?: number }): E => {
  if (
    (fields.route === undefined || fields.route === error.route) &&
    (fields.attempt === undefined || fields.attempt === error.attempt)
  ) return error
  const Ctor = error.constructor as new(props: object, disableValidation?: boolean) => E
  // `message` is an own but non-enumerable property of an Error: a copy alone would drop it.
  // Object.assign, not a spread: see internal/object.ts.
  return new Ctor(Object.assign({}, error, { message: error.message }, fields), true)
}

/**
 * Failures across the bridge, both ways.
 *
 * Into this library (an @effect/ai model as a route): an `AiError` is classified like a wire failure
 * of our own adapters — an `HttpResponseError`'s real status, headers and body go through
 * `Classify.fromHttp` (so a 429 `insufficient_quota` is a `QuotaExhausted`, a 429 with `retry-after`
 * a `RateLimited` with its wait, a 529 an `Overloaded`), an `HttpRequestError` through
 * `Classify.fromTransport`, an in-stream error part through `Classify.fromStreamError`.
 *
 * Out of this library (the chain as a `LanguageModel`): a chain failure becomes the `AiError` variant
 * that says the same thing to an @effect/ai program, and keeps the chain's typed failure (with its
 * whole attempt history) as the AiError's `cause`, where {@link failureOf} finds it again.
 *
 * @internal
 */
import * as AiError from "@effect/ai/AiError"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type CallSite, errorInfoOf, fromHttp, fromStreamError, fromTransport } from "../Classify.js"
import {
  AllRoutesFailed,
  BadRequest,
  InvalidOptions,
  InvalidOutput,
  NotFound,
  Overloaded,
  type ProviderError,
  ProviderError as ProviderErrorSchema,
  QuotaExhausted,
  restamp,
  type RouteError,
  RouteErrorSchema,
  ServerError,
  Timeout
} from "../Errors.js"
import type { HeaderMap } from "../internal/headers.js"
import { requestIdOf } from "../internal/headers.js"
import { isRecord, parseUntrusted, string } from "../internal/json.js"
import { redactAndTruncate } from "../internal/redact.js"
import { BUDGET_REFUSED_TYPE } from "../internal/unsent.js"

// ---------------------------------------------------------------------------------------------------
// AiError → ProviderError (an @effect/ai model as a route)
// ---------------------------------------------------------------------------------------------------

const siteFields = (site: CallSite) => ({ provider: site.provider, model: site.model, route: site.route, attempt: site.attempt })

const describe = (error: AiError.AiError): string =>
  redactAndTruncate(("description" in error ? error.description : undefined) ?? `${error._tag} from ${error.module}.${error.method}`, [])

/**
 * Response headers as plain lower-cased strings. @effect/ai types them as strings, but a header named
 * sensitive (`authorization`, `set-cookie`) arrives as a `Redacted` value: it is left out.
 */
const plainHeaders = (headers: Readonly<Record<string, unknown>>): HeaderMap => {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) if (typeof value === "string") out[name.toLowerCase()] = value
  return out
}

/** Whether a parsed value is a platform error or request that @effect/ai formatted into `body`. */
const isFormattedPlatformValue = (value: unknown): boolean =>
  isRecord(value) && (typeof value["_id"] === "string" || isRecord(value["request"]) || isRecord(value["response"]))

/**
 * The response body as the provider sent it. @effect/ai keeps it JSON-formatted (`body`): a JSON body
 * pretty-printed, a text body as a quoted JSON string, and — when the body could not be read a second
 * time — the formatted read error, which embeds the request with its credentials. That last form is
 * never used; the generated clients also put the error JSON in `description`, which is the fallback.
 */
const providerBodyOf = (error: AiError.HttpResponseError): string => {
  const fromBody = (() => {
    if (error.body === undefined) return undefined
    const parsed = parseUntrusted(error.body)
    if (parsed._tag !== "Json") return error.body
    if (typeof parsed.value === "string") return parsed.value
    return isFormattedPlatformValue(parsed.value) ? undefined : error.body
  })()
  const describesError = (text: string | undefined): text is string => {
    if (text === undefined) return false
    const parsed = parseUntrusted(text)
    return parsed._tag === "Json" && Object.keys(errorInfoOf(parsed.value)).length > 0
  }
  if (describesError(fromBody)) return fromBody
  if (describesError(error.description)) return error.description
  return fromBody ?? ""
}

const fromResponseError = (error: AiError.HttpResponseError, site: CallSite, now: number): ProviderError => {
  const headers = plainHeaders(error.response.headers)
  const status = error.response.status
  if (status >= 200 && status < 300) {
    // A 2xx whose body did not decode (`Decode`, `EmptyBody`): wire corruption, retried like our
    // adapters' malformed bodies. The formatted body may embed the request's credentials: not kept.
    const requestId = requestIdOf(headers, [])
    return new InvalidOutput({
      ...siteFields(site),
      status,
      reason: "malformed-response",
      message: `the provider's ${status} response did not decode (${error.reason})`,
      ...(requestId !== undefined ? { requestId } : {})
    }, true)
  }
  return fromHttp({ site, status, headers, body: providerBodyOf(error), now })
}

const fromRequestError = (error: AiError.HttpRequestError, site: CallSite): ProviderError => {
  switch (error.reason) {
    case "Transport":
      // The platform's RequestError (and under it undici's error, with its `code`) is the cause.
      return fromTransport({ site, cause: error.cause ?? error })
    case "Encode":
      return new BadRequest({ ...siteFields(site), message: `the request body could not be encoded: ${describe(error)}` }, true)
    case "InvalidUrl":
      // A route whose URL does not parse cannot serve; another route may (the request itself is fine).
      return new NotFound({ ...siteFields(site), message: `the route's URL is invalid: ${describe(error)}` }, true)
  }
}

const isProviderError = Schema.is(ProviderErrorSchema)
const isRouteError = Schema.is(RouteErrorSchema)

/** A route-level failure of this library in the terms of a single provider (a nested chain's failure). */
const asProviderError = (error: RouteError, site: CallSite): ProviderError => {
  const stamp = { route: site.route, attempt: site.attempt }
  switch (error._tag) {
    case "CircuitOpen":
      // The inner breaker is open: for the outer chain this route is shedding load.
      return new Overloaded({ ...siteFields(site), message: error.message, ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}) }, true)
    case "RetryBudgetExhausted":
      return restamp(error.lastError, stamp)
    case "BudgetExceeded":
      // The inner chain's spend budget refused before sending: for the outer chain this route
      // cannot pay now (an enclosing budget, if it is the same, refuses the other routes itself).
      // Marked as the refusal it is, so that it stays "nothing was sent" for the outer route: no
      // breaker verdict, its limiter permit refunded, no spend charged (see internal/unsent.ts).
      return new QuotaExhausted({ ...siteFields(site), providerType: BUDGET_REFUSED_TYPE, message: error.message }, true)
    case "DeadlineExceeded":
      return error.lastError !== undefined
        ? restamp(error.lastError, stamp)
        : new Timeout({ ...siteFields(site), phase: "attempt", timeoutMs: error.deadlineMs, message: error.message }, true)
    default:
      return restamp(error, stamp)
  }
}

/**
 * Our own failure carried by an AiError, if any: a chain served as a LanguageModel (this module's
 * other direction) used as a route of another chain keeps its classification instead of being
 * classified again from a reconstructed response.
 */
const carriedFailure = (error: AiError.AiError, site: CallSite): ProviderError | undefined => {
  const cause: unknown = "cause" in error ? error.cause : undefined
  if (cause instanceof AllRoutesFailed) return cause.lastError === undefined ? undefined : asProviderError(cause.lastError, site)
  if (isProviderError(cause) || isRouteError(cause)) return asProviderError(cause, site)
  return undefined
}

/**
 * Classifies an `AiError` from an @effect/ai model into the {@link ProviderError} union. Total.
 *
 * | AiError | becomes |
 * |---|---|
 * | `HttpResponseError` with a non-2xx status | `Classify.fromHttp` on its status, headers and body |
 * | `HttpResponseError` with a 2xx status (`Decode`, `EmptyBody`) | `InvalidOutput{malformed-response}` |
 * | `HttpRequestError` `Transport` | `Classify.fromTransport` on its cause (`ConnectionError`, `Timeout{connect/headers/idle}`) |
 * | `HttpRequestError` `Encode` / `InvalidUrl` | `BadRequest` / `NotFound` |
 * | `MalformedOutput` | `InvalidOutput{malformed-response}` |
 * | `MalformedInput` | `BadRequest` |
 * | `UnknownError` | `ServerError` |
 * | any of them carrying this library's failure as `cause` | that failure |
 */
export const toProviderError = (error: AiError.AiError, site: CallSite, now: number): ProviderError => {
  const carried = carriedFailure(error, site)
  if (carried !== undefined) return carried
  switch (error._tag) {
    case "HttpResponseError":
      return fromResponseError(error, site, now)
    case "HttpRequestError":
      return fromRequestError(error, site)
    case "MalformedOutput":
      return new InvalidOutput({ ...siteFields(site), reason: "malformed-response", message: describe(error) }, true)
    case "MalformedInput":
      return new BadRequest({ ...siteFields(site), message: describe(error) }, true)
    case "UnknownError":
      return new ServerError({ ...siteFields(site), message: describe(error) }, true)
  }
}

/**
 * An error part's payload in the shape the stream classifier reads (`{error: {type, code, message}}`):
 * OpenAI Responses sends `{type: "error", code, message, param}` (only a `code`; an `invalid_*` code is
 * the request's fault, as in our Responses adapter), Anthropic's part carries the inner
 * `{type: "overloaded_error", message}`, a Chat Completions chunk already has `error`.
 */
const streamErrorPayload = (error: unknown): unknown => {
  if (!isRecord(error)) return { error: { message: error instanceof Error ? error.message : String(error) } }
  if (isRecord(error["error"])) return error
  if (error["type"] === "error") {
    const code = string(error["code"])
    return {
      error: {
        ...(code !== undefined ? { code } : {}),
        ...(code !== undefined && code.startsWith("invalid_") ? { type: "invalid_request_error" } : {}),
        message: string(error["message"]) ?? "stream error",
        ...(string(error["param"]) !== undefined ? { param: string(error["param"]) } : {})
      }
    }
  }
  return { error }
}

/**
 * Classifies an @effect/ai `error` stream part (an error the provider sent inside a 200 stream, which
 * @effect/ai passes on as a part and lets the stream succeed). The provider's type decides, as for our
 * adapters' stream errors: `overloaded_error` / `overloaded` is an `Overloaded`, an unknown type a
 * retryable `ServerError`.
 */
export const fromErrorPart = (error: unknown, site: CallSite): ProviderError =>
  fromStreamError({ site, payload: streamErrorPayload(error) })

// ---------------------------------------------------------------------------------------------------
// chain failure → AiError (the chain as a LanguageModel)
// ---------------------------------------------------------------------------------------------------

/** The `module` of every AiError this bridge raises. */
export const MODULE = "effect-llm-resilience"

/** What failed, in the chain's terms (its failure is the AiError's `cause`). */
export type ChainFailure = AllRoutesFailed | InvalidOptions

/**
 * A chain has no URL of its own: the request details name the route whose failure ended the call, so
 * AiError's message (`… (status POST url)`) says where it came from. No header is copied.
 */
const chainRequest = (route: string | undefined): typeof AiError.HttpRequestDetails.Type => ({
  method: "POST",
  url: `llm-resilience://route/${encodeURIComponent(route ?? "chain")}`,
  urlParams: [],
  hash: Option.none(),
  headers: {}
})

/** The provider hints worth showing an @effect/ai program, rebuilt as the headers that carried them. */
const hintHeaders = (error: RouteError): Record<string, string> => {
  const headers: Record<string, string> = {}
  if (error.requestId !== undefined) headers["x-request-id"] = error.requestId
  if ("retryAfterMs" in error && error.retryAfterMs !== undefined) headers["retry-after-ms"] = String(error.retryAfterMs)
  if (error.shouldRetry !== undefined) headers["x-should-retry"] = String(error.shouldRetry)
  return headers
}

/**
 * `HttpResponseError` has no `cause` field in its schema: the chain's failure is attached as the
 * standard `Error.cause` property (non-enumerable, so the AiError's equality, JSON and Schema encoding
 * are what @effect/ai defines; {@link failureOf} and `error.cause` read it).
 */
const withCause = <E extends AiError.AiError>(error: E, failure: ChainFailure): E => {
  Object.defineProperty(error, "cause", { value: failure, enumerable: false, configurable: true, writable: false })
  return error
}

const statusResponseError = (last: RouteError, status: number, failure: AllRoutesFailed, method: string) =>
  withCause(
    new AiError.HttpResponseError({
      module: MODULE,
      method,
      reason: "StatusCode",
      request: chainRequest(last.route),
      response: { status, headers: hintHeaders(last) },
      description: failure.message,
      ...(last.rawBody !== undefined ? { body: last.rawBody } : {})
    }),
    failure
  )

/**
 * The AiError an @effect/ai program sees for a chain failure, chosen by the failure that ended the
 * call (`lastError`); docs/effect-ai.md has the table. The chain's failure is always the `cause`.
 */
export const toAiError = (failure: ChainFailure, method: string): AiError.AiError => {
  const common = { module: MODULE, method, description: failure.message, cause: failure }
  if (failure._tag === "InvalidOptions") return new AiError.MalformedInput(common)
  const last = failure.lastError
  if (last === undefined) {
    // No route was tried: every context window was too small for the prompt — the input's fault.
    return failure.reason === "no-route" ? new AiError.MalformedInput(common) : new AiError.UnknownError(common)
  }
  switch (last._tag) {
    case "UnsupportedRequest":
      // No route's wire format could carry a part of the prompt: the input's fault, not a transport's.
      return new AiError.MalformedInput(common)
    case "RateLimited":
    case "QuotaExhausted":
    case "Overloaded":
    case "ServerError":
    case "BadRequest":
    case "ContextLengthExceeded":
    case "Unauthorized":
    case "NotFound": {
      const status = last.status
      // A failure that arrived inside a 200 stream has no status of its own to report.
      return status === undefined ? new AiError.UnknownError(common) : statusResponseError(last, status, failure, method)
    }
    case "Timeout":
    case "ConnectionError":
    case "StreamInterrupted":
      return new AiError.HttpRequestError({ ...common, reason: "Transport", request: chainRequest(last.route) })
    case "ContentFiltered":
    case "InvalidOutput":
    case "ResponseTooLarge":
      return new AiError.MalformedOutput(common)
    case "CircuitOpen":
    case "RetryBudgetExhausted":
    case "DeadlineExceeded":
    case "BudgetExceeded":
      return new AiError.UnknownError(common)
  }
}

/**
 * The chain's typed failure behind an AiError raised by the chain's LanguageModel: `AllRoutesFailed`
 * (with `reason`, `lastError` and every attempt) or `InvalidOptions`. `None` for any other error.
 */
export const failureOf = (error: unknown): Option.Option<ChainFailure> => {
  if (!isRecord(error) && !(error instanceof Error)) return Option.none()
  const cause: unknown = (error as { readonly cause?: unknown }).cause
  return cause instanceof AllRoutesFailed || cause instanceof InvalidOptions ? Option.some(cause) : Option.none()
}

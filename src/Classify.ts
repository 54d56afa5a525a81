/**
 * Turns what came over the wire into the {@link ProviderError} union: an HTTP error response
 * (status + headers + body), an error event inside a 200 stream, or a transport failure.
 *
 * Classification is total — unknown statuses, unparsable bodies and exotic causes still produce a
 * typed error (with the raw body kept, redacted and truncated) — and it reads provider semantics first
 * (body `type`/`code`), the status second. See docs/errors.md for the full table.
 *
 * @since 0.1.0
 */
import { ConnectionError, type ConnectionFailure, type ProviderError, Timeout } from "./Errors.js"
import { errorOfKind, kindFromStatus, type StatusKind } from "./internal/errorKind.js"
import { type HeaderMap, parseRateLimit, parseRetryAfterMs, parseShouldRetry, requestIdOf } from "./internal/headers.js"
import { isRecord, opt, parseUntrusted, safeStringify } from "./internal/json.js"
import { cleanRequestId, redact, redactAndTruncate, redactField } from "./internal/redact.js"
import { spentWindowsResetMs } from "./RateLimitSnapshot.js"

/**
 * Who was called: filled in by the adapter, re-stamped by the policies.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallSite {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
  /** Secret values (API keys) to scrub from anything kept. */
  readonly secrets?: ReadonlyArray<string>
}

/**
 * The provider's own description of an error, extracted from whichever body shape it used.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProviderErrorInfo {
  readonly type?: string
  readonly code?: string
  readonly message?: string
  readonly param?: string
  readonly requestId?: string
}

const str = (u: unknown): string | undefined => (typeof u === "string" && u.length > 0 ? u : undefined)
const strOrNumber = (u: unknown): string | undefined => (typeof u === "number" ? String(u) : str(u))

/**
 * Extracts `{type, code, message, param}` from an OpenAI body (`{"error":{…}}`), an Anthropic body
 * (`{"type":"error","error":{…},"request_id"}`), or the looser shapes OpenAI-compatible servers use
 * (`{"error":"text"}`, `{"message"}`, `{"detail"}`).
 *
 * @since 0.1.0
 * @category parsing
 */
export const errorInfoOf = (body: unknown): ProviderErrorInfo => {
  if (!isRecord(body)) return {}
  const requestId = str(body["request_id"])
  const error = body["error"]
  if (isRecord(error)) {
    const type = str(error["type"])
    // Anthropic names some failures only in `error.details.error_code` (the spend-cap 429).
    const details = error["details"]
    const code = strOrNumber(error["code"]) ?? (isRecord(details) ? str(details["error_code"]) : undefined)
    const message = str(error["message"])
    const param = str(error["param"])
    return {
      ...(type !== undefined ? { type } : {}),
      ...(code !== undefined ? { code } : {}),
      ...(message !== undefined ? { message } : {}),
      ...(param !== undefined ? { param } : {}),
      ...(requestId !== undefined ? { requestId } : {})
    }
  }
  const message = str(error) ?? str(body["message"]) ?? str(body["detail"])
  return {
    ...(message !== undefined ? { message } : {}),
    ...(requestId !== undefined ? { requestId } : {})
  }
}

// Anthropic answers an empty balance (observed) and a user-set spend limit (its errors page) with 400
// invalid_request_error and these messages, not a 402: money, not a malformed request — reroute.
const OUT_OF_CREDIT = /credit balance is too low|exceeded your current quota|reached your specified API usage limits/i

/**
 * Codes that name a spent budget rather than a rate: OpenAI's billing 429s (whose type is only *maybe*
 * `insufficient_quota`, per its spend-limits guide) and Anthropic's monthly spend cap (a 429
 * `rate_limit_error` with `details.error_code`, and no `retry-after`). Waiting does not cure them.
 */
const SPENT_BUDGET_CODES: ReadonlySet<string> = new Set([
  "insufficient_quota",
  "billing_not_active",
  "credit_balance_exhausted",
  "organization_usage_limit_exceeded",
  "organization_spend_limit_exceeded",
  "project_spend_limit_exceeded",
  "enforced_spend_limit_reached"
])

const CONTEXT_LENGTH = /context[_ ]length|context window|maximum context|prompt is too long|too many tokens|reduce the length of the messages/i

const isContextLength = (info: ProviderErrorInfo): boolean =>
  info.code === "context_length_exceeded" || info.code === "string_above_max_length" ||
  (info.message !== undefined && CONTEXT_LENGTH.test(info.message))

type Kind = StatusKind

/** Provider semantics first: a type or code that names the failure decides, whatever the status. */
const kindFromProvider = (info: ProviderErrorInfo): Kind | undefined => {
  const { code, type } = info
  if (
    (code !== undefined && SPENT_BUDGET_CODES.has(code)) || type === "insufficient_quota" || type === "billing_error" ||
    (info.message !== undefined && OUT_OF_CREDIT.test(info.message))
  ) return "QuotaExhausted"
  if (type === "rate_limit_error" || code === "rate_limit_exceeded") return "RateLimited"
  if (type === "overloaded_error" || code === "overloaded") return "Overloaded"
  if (
    type === "authentication_error" || type === "permission_error" || code === "invalid_api_key" ||
    code === "invalid_organization"
  ) return "Unauthorized"
  if (type === "not_found_error" || code === "model_not_found") return "NotFound"
  if (code === "context_length_exceeded") return "ContextLengthExceeded"
  if (type === "request_too_large") return "BadRequest"
  // Generic server types (`api_error`, `server_error`, `timeout_error`) name no cause, so the status
  // decides: a 503 with a generic body is still the provider shedding load (OpenAI answers 503 "The
  // engine is currently overloaded" with type `server_error`), and any 5xx is at least a ServerError.
  return undefined
}

/**
 * Classifies an HTTP error response (any status outside 2xx).
 *
 * @since 0.1.0
 * @category classification
 */
export const fromHttp = (input: {
  readonly site: CallSite
  readonly status: number
  readonly headers: HeaderMap
  readonly body: string
  /** Epoch milliseconds from Effect's Clock, to resolve HTTP-date Retry-After and reset instants. */
  readonly now: number
}): ProviderError => {
  const { body, headers, now, site, status } = input
  const secrets = site.secrets ?? []
  const parsed = parseUntrusted(body, secrets)
  const info = errorInfoOf(parsed._tag === "Json" ? parsed.value : undefined)
  const kind = kindFromProvider(info) ?? kindFromStatus(status, isContextLength(info))
  const message = redactAndTruncate(info.message ?? `HTTP ${status} from ${site.provider}`, secrets)
  const rateLimit = kind === "RateLimited" ? parseRateLimit(headers, now) : undefined
  // A 429 without Retry-After still says when it ends: the reset of the window it reports as spent.
  const retryAfterMs = parseRetryAfterMs(headers, now) ?? (rateLimit === undefined ? undefined : spentWindowsResetMs(rateLimit))
  return errorOfKind(
    kind,
    {
      provider: site.provider,
      model: site.model,
      route: site.route,
      attempt: site.attempt,
      message,
      status,
      ...opt("providerType", redactField(info.type, secrets)),
      ...opt("providerCode", redactField(info.code, secrets)),
      ...opt("requestId", requestIdOf(headers, secrets) ?? cleanRequestId(info.requestId, secrets)),
      ...opt("shouldRetry", parseShouldRetry(headers)),
      // A secret hidden behind JSON escapes (`\u0073k-…`) survives text redaction; when the parse found
      // one, the kept body is the scrubbed value re-serialised.
      rawBody: redactAndTruncate(parsed._tag === "Json" && parsed.scrubbed ? safeStringify(parsed.value) : body, secrets)
    },
    { retryAfterMs, param: redactField(info.param, secrets), rateLimit }
  )
}

/**
 * Classifies an error delivered *inside* a stream that started with HTTP 200: Anthropic's
 * `event: error` payload or an OpenAI chunk carrying `error`. There is no status; the provider's type
 * decides, and an unknown type is a (retryable) `ServerError`.
 *
 * @since 0.1.0
 * @category classification
 */
export const fromStreamError = (input: {
  readonly site: CallSite
  readonly payload: unknown
  readonly requestId?: string | undefined
}): ProviderError => {
  const { payload, site } = input
  const secrets = site.secrets ?? []
  const info = errorInfoOf(payload)
  const kind = kindFromProvider(info) ??
    (info.type === "invalid_request_error" ? (isContextLength(info) ? "ContextLengthExceeded" : "BadRequest") : "ServerError")
  return errorOfKind(
    kind,
    {
      provider: site.provider,
      model: site.model,
      route: site.route,
      attempt: site.attempt,
      message: redactAndTruncate(info.message ?? `stream error from ${site.provider}`, secrets),
      ...opt("providerType", redactField(info.type, secrets)),
      ...opt("providerCode", redactField(info.code, secrets)),
      ...opt("requestId", cleanRequestId(input.requestId ?? info.requestId, secrets)),
      rawBody: redactAndTruncate(safeStringify(payload), secrets)
    }
  )
}

/** Collects `code`s along an error's cause chain (and inside AggregateErrors from happy-eyeballs). */
const codesOf = (cause: unknown, depth = 0, out: Array<string> = []): Array<string> => {
  if (depth > 6 || !isRecord(cause) && !(cause instanceof Error)) return out
  const record = cause as Record<string, unknown>
  const code = record["code"]
  if (typeof code === "string") out.push(code)
  const errors = record["errors"]
  if (Array.isArray(errors)) for (const e of errors) codesOf(e, depth + 1, out)
  if (record["cause"] !== undefined) codesOf(record["cause"], depth + 1, out)
  return out
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED)/

const connectionFailureOf = (codes: ReadonlyArray<string>): ConnectionFailure => {
  for (const code of codes) {
    if (code === "ECONNREFUSED") return "refused"
    if (code === "ECONNRESET" || code === "EPIPE" || code === "UND_ERR_SOCKET") return "reset"
    if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "dns"
    if (TLS_CODES.test(code)) return "tls"
    if (code === "UND_ERR_CLOSED" || code === "UND_ERR_DESTROYED") return "closed"
  }
  return "unknown"
}

/**
 * Classifies a transport failure (no HTTP response, or the body broke while reading): undici's timeout
 * codes become `Timeout{phase}`, everything else a `ConnectionError` with the reason.
 *
 * @since 0.1.0
 * @category classification
 */
export const fromTransport = (input: { readonly site: CallSite; readonly cause: unknown }): Timeout | ConnectionError => {
  const { cause, site } = input
  const codes = codesOf(cause)
  const base = { provider: site.provider, model: site.model, route: site.route, attempt: site.attempt }
  const describe = cause instanceof Error ? cause.message : String(cause)
  if (codes.includes("UND_ERR_CONNECT_TIMEOUT")) {
    return new Timeout({ ...base, phase: "connect", message: "timed out connecting to the provider" }, true)
  }
  if (codes.includes("UND_ERR_HEADERS_TIMEOUT")) {
    return new Timeout({ ...base, phase: "headers", message: "timed out waiting for response headers" }, true)
  }
  if (codes.includes("UND_ERR_BODY_TIMEOUT")) {
    return new Timeout({ ...base, phase: "idle", message: "timed out waiting for the next body chunk" }, true)
  }
  const reason = connectionFailureOf(codes)
  const code = codes[0]
  return new ConnectionError({
    ...base,
    reason,
    ...opt("code", code),
    message: redact(`connection ${reason}${code !== undefined ? ` (${code})` : ""}: ${describe}`, site.secrets ?? [])
  }, true)
}

/**
 * What came over the wire instead of an answer: an HTTP error response, an error event inside a 200
 * stream, or a transport failure (no response, or a body that broke). Header names are lower-case.
 *
 * @since 0.1.0
 * @category models
 */
export type WireFailure =
  | {
    readonly _tag: "Http"
    readonly status: number
    readonly headers: HeaderMap
    /** The body text as received (any shape, possibly not JSON). */
    readonly body: string
    /** Epoch milliseconds from Effect's Clock, to resolve HTTP-date Retry-After and reset instants. */
    readonly now: number
  }
  | {
    readonly _tag: "StreamError"
    /** The decoded payload of the error event (Anthropic `event: error` data, or an OpenAI chunk with `error`). */
    readonly payload: unknown
    /** The request id from the stream's response headers. */
    readonly requestId?: string | undefined
  }
  | { readonly _tag: "Transport"; readonly cause: unknown }

/**
 * The one entry point: classifies any {@link WireFailure} into the {@link ProviderError} union. Total —
 * every input, however malformed, yields a typed error. Equivalent to {@link fromHttp},
 * {@link fromStreamError} and {@link fromTransport}, which adapters call directly.
 *
 * @since 0.1.0
 * @category classification
 */
export const classify = (site: CallSite, failure: WireFailure): ProviderError => {
  switch (failure._tag) {
    case "Http":
      return fromHttp({ site, status: failure.status, headers: failure.headers, body: failure.body, now: failure.now })
    case "StreamError":
      return fromStreamError({ site, payload: failure.payload, requestId: failure.requestId })
    case "Transport":
      return fromTransport({ site, cause: failure.cause })
  }
}

/**
 * Gemini's own error semantics. The Generative Language API answers failures in Google's canonical
 * shape `{"error":{"code","message","status","details":[…]}}`, where `status` is the gRPC status name
 * and `details` carries typed `google.rpc.*` messages. Two of them decide what a caller should do:
 *
 * - `google.rpc.QuotaFailure` names the quota that was spent. A 429 `RESOURCE_EXHAUSTED` for a
 *   per-minute quota (`GenerateRequestsPerMinutePerProjectPerModel-FreeTier`) is a wait; the same 429
 *   for a per-day quota (`GenerateRequestsPerDayPerProjectPerModel-FreeTier`) only clears at midnight
 *   Pacific, so it is `QuotaExhausted` — even though Google attaches a `RetryInfo` of a few seconds to
 *   it too (the Gemini CLI classifies it the same way, before looking at the delay).
 * - `google.rpc.RetryInfo.retryDelay` (a protobuf Duration, `"12s"`, `"34.4s"`) is the wait.
 * - `google.rpc.ErrorInfo.reason` names a bad key (`API_KEY_INVALID` comes as 400 `INVALID_ARGUMENT`,
 *   not 401) or disabled billing.
 *
 * The shared classifier cannot be used for the kind: Gemini's per-*minute* 429 message reads "You
 * exceeded your current quota, please check your plan and billing details", which the shared
 * OpenAI/Anthropic rules rightly treat as a spent budget. It is still used for everything that is not
 * Gemini-specific — the redacted message and raw body, the request id, `x-should-retry`,
 * `Retry-After` — and the error is rebuilt with Gemini's kind over those fields. Sources in
 * docs/providers.md and the Gemini notes.
 *
 * @internal
 */
import { type CallSite, fromHttp, fromStreamError } from "../../Classify.js"
import type { ProviderError } from "../../Errors.js"
import { errorOfKind, type StatusKind } from "../../internal/errorKind.js"
import { parseRateLimit, parseRetryAfterMs } from "../../internal/headers.js"
import { array, isRecord, type JsonRecord, number, opt, parseUntrusted, record, string } from "../../internal/json.js"
import { redactField } from "../../internal/redact.js"
import type { RateLimitSnapshot } from "../../RateLimitSnapshot.js"
import type { HttpClassifier } from "./wire.js"

/** What a Google error body says, read totally (any field may be missing or of the wrong type). */
export interface GoogleError {
  /** `error.code`: the HTTP status the error stands for (the only status an in-stream error has). */
  readonly code: number | undefined
  /** `error.status`: the canonical gRPC status name (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, …). */
  readonly status: string | undefined
  readonly message: string | undefined
  /** `google.rpc.ErrorInfo.reason` of every ErrorInfo detail (`API_KEY_INVALID`, …). */
  readonly reasons: ReadonlyArray<string>
  /** Every spent quota named: `QuotaFailure.violations[].quotaId` and ErrorInfo `quota_limit`. */
  readonly quotaIds: ReadonlyArray<string>
  /** `google.rpc.RetryInfo.retryDelay`, else the "Please retry in 25.4s." of the message, in ms. */
  readonly retryDelayMs: number | undefined
}

const RPC = "type.googleapis.com/google.rpc."

/** A protobuf Duration in its JSON form (`"12s"`, `"0.5s"`, `"34.074824224s"`) in milliseconds. */
const DURATION = /^\s*(\d+(?:\.\d+)?|\.\d+)s\s*$/

export const parseDurationMs = (value: unknown): number | undefined => {
  const match = typeof value === "string" ? DURATION.exec(value) : null
  if (match === null) return undefined
  const ms = Number(match[1]) * 1000
  return Number.isFinite(ms) ? ms : undefined
}

/** Google's prose form of the same hint, which the message keeps when `details` are dropped (streams). */
const RETRY_IN_MESSAGE = /Please retry in (\d+(?:\.\d+)?)(ms|s)\b/

const retryInMessageMs = (message: string | undefined): number | undefined => {
  const match = message === undefined ? null : RETRY_IN_MESSAGE.exec(message)
  if (match === null) return undefined
  const value = Number(match[1])
  return Number.isFinite(value) ? (match[2] === "ms" ? value : value * 1000) : undefined
}

/** Reads the `google.rpc` details that matter here. */
const detailsOf = (details: ReadonlyArray<unknown>) => {
  const reasons: Array<string> = []
  const quotaIds: Array<string> = []
  let retryDelayMs: number | undefined
  for (const entry of details) {
    const detail = record(entry)
    const type = string(detail?.["@type"])
    if (detail === undefined || type === undefined || !type.startsWith(RPC)) continue
    switch (type.slice(RPC.length)) {
      case "ErrorInfo": {
        const reason = string(detail["reason"])
        if (reason !== undefined) reasons.push(reason)
        const quotaLimit = string(record(detail["metadata"])?.["quota_limit"])
        if (quotaLimit !== undefined) quotaIds.push(quotaLimit)
        break
      }
      case "QuotaFailure":
        for (const violation of array(detail["violations"]) ?? []) {
          const quotaId = string(record(violation)?.["quotaId"])
          if (quotaId !== undefined) quotaIds.push(quotaId)
        }
        break
      case "RetryInfo":
        retryDelayMs ??= parseDurationMs(detail["retryDelay"])
        break
    }
  }
  return { reasons, quotaIds, retryDelayMs }
}

/**
 * The Google error in a parsed body or stream chunk, or `undefined` when the value is not one (a
 * proxy's HTML page, another vendor's error shape).
 */
export const googleErrorOf = (payload: unknown): GoogleError | undefined => {
  const error = isRecord(payload) ? record(payload["error"]) : undefined
  if (error === undefined) return undefined
  const message = string(error["message"])
  const details = detailsOf(array(error["details"]) ?? [])
  return {
    code: number(error["code"]),
    status: string(error["status"]),
    message,
    reasons: details.reasons,
    quotaIds: details.quotaIds,
    retryDelayMs: details.retryDelayMs ?? retryInMessageMs(message)
  }
}

type Kind = StatusKind

/** ErrorInfo reasons (google/api/error_reason.proto) that say the key or project may not call the API. */
const UNAUTHORIZED_REASONS: ReadonlySet<string> = new Set([
  "API_KEY_INVALID",
  "API_KEY_SERVICE_BLOCKED",
  "API_KEY_HTTP_REFERRER_BLOCKED",
  "API_KEY_IP_ADDRESS_BLOCKED",
  "API_KEY_ANDROID_APP_BLOCKED",
  "API_KEY_IOS_APP_BLOCKED",
  "SERVICE_DISABLED",
  "CONSUMER_SUSPENDED",
  "CONSUMER_INVALID",
  "USER_PROJECT_DENIED",
  "ACCESS_TOKEN_EXPIRED",
  "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
  "CREDENTIALS_MISSING"
])

/** A quota that resets once a day (RPD, TPD): waiting seconds does not clear it. */
const PER_DAY_QUOTA = /PerDay|Daily/i
/** "API key not valid. Please pass a valid API key." / "API Key not found." / "API key expired." */
const BAD_KEY_MESSAGE = /API key (not valid|not found|expired)/i
/** "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)." */
const CONTEXT_LENGTH_MESSAGE = /input token count.*exceeds|exceeds the maximum number of tokens/i
/** FAILED_PRECONDITION "Gemini API free tier is not available in your country. Please enable billing…" */
const BILLING_MESSAGE = /billing/i

/** The kind a status code alone implies (the shared rules, minus their OpenAI/Anthropic body readings). */
const kindOfStatusCode = (code: number | undefined, message: string | undefined): Kind => {
  if (code === undefined) return "ServerError"
  if (code === 401 || code === 403) return "Unauthorized"
  if (code === 402) return "QuotaExhausted"
  if (code === 404) return "NotFound"
  if (code === 429) return "RateLimited"
  if (code === 503 || code === 529) return "Overloaded"
  if (code === 408 || code === 409 || code < 400 || code >= 500) return "ServerError"
  return message !== undefined && CONTEXT_LENGTH_MESSAGE.test(message) ? "ContextLengthExceeded" : "BadRequest"
}

/**
 * Gemini's semantics first (ErrorInfo reason, the gRPC status, the quota named), the status code second.
 * `httpStatus` is absent for an error inside a 200 stream; the body's own `code` stands in for it.
 */
export const kindOf = (error: GoogleError, httpStatus: number | undefined): Kind => {
  const code = httpStatus ?? error.code
  const message = error.message
  if (error.reasons.some((reason) => UNAUTHORIZED_REASONS.has(reason))) return "Unauthorized"
  if (error.reasons.includes("BILLING_DISABLED")) return "QuotaExhausted"
  if (message !== undefined && BAD_KEY_MESSAGE.test(message)) return "Unauthorized"
  switch (error.status) {
    case "RESOURCE_EXHAUSTED":
      // 402 is the prepay balance at zero; a per-day quota clears only at midnight Pacific.
      if (code === 402 || error.quotaIds.some((id) => PER_DAY_QUOTA.test(id))) return "QuotaExhausted"
      return "RateLimited"
    case "UNAVAILABLE":
      return "Overloaded"
    case "INTERNAL":
    case "UNKNOWN":
    case "DEADLINE_EXCEEDED":
    case "CANCELLED":
    case "ABORTED":
    case "DATA_LOSS":
      return "ServerError"
    case "INVALID_ARGUMENT":
    case "OUT_OF_RANGE":
      return message !== undefined && CONTEXT_LENGTH_MESSAGE.test(message) ? "ContextLengthExceeded" : "BadRequest"
    case "FAILED_PRECONDITION":
      // Not the request's fault but the route's: the account must enable billing, or the caller's
      // region may not use the API. No retry helps; another route (provider, key, region) may.
      return message !== undefined && BILLING_MESSAGE.test(message) ? "QuotaExhausted" : "Unauthorized"
    case "UNAUTHENTICATED":
    case "PERMISSION_DENIED":
      return "Unauthorized"
    case "NOT_FOUND":
      return "NotFound"
    default:
      return kindOfStatusCode(code, message)
  }
}

/** What the provider's code field should show: the reason or quota that decided, if any. */
const providerCodeOf = (error: GoogleError, kind: Kind): string | undefined => {
  if (kind === "QuotaExhausted") {
    const daily = error.quotaIds.find((id) => PER_DAY_QUOTA.test(id))
    if (daily !== undefined) return daily
  }
  return error.reasons[0] ?? error.quotaIds[0]
}

/**
 * The error of `kind`, over the fields the shared classifier already read and redacted (message, raw
 * body, request id, `x-should-retry`, status), with Gemini's status and reason as type and code.
 */
const rebuild = (
  base: ProviderError,
  error: GoogleError,
  kind: Kind,
  secrets: ReadonlyArray<string>,
  wait: { readonly retryAfterMs: number | undefined; readonly rateLimit: RateLimitSnapshot | undefined }
): ProviderError => {
  const fields = {
    provider: base.provider,
    model: base.model,
    route: base.route,
    attempt: base.attempt,
    message: base.message,
    ...opt("status", base.status),
    ...opt("providerType", redactField(error.status, secrets)),
    ...opt("providerCode", redactField(providerCodeOf(error, kind), secrets)),
    ...opt("requestId", base.requestId),
    ...opt("shouldRetry", base.shouldRetry),
    ...opt("rawBody", base.rawBody)
  }
  return errorOfKind(kind, fields, wait)
}

/**
 * Classifies a non-2xx Gemini answer. A body that is not a Google error (a gateway's HTML page) keeps
 * the shared classification.
 */
export const classifyGeminiHttp: HttpClassifier = (input) => {
  const base = fromHttp(input)
  const secrets = input.site.secrets ?? []
  const parsed = parseUntrusted(input.body, secrets)
  const error = parsed._tag === "Json" ? googleErrorOf(parsed.value) : undefined
  if (error === undefined) return base
  const kind = kindOf(error, input.status)
  return rebuild(base, error, kind, secrets, {
    // Google's own hint is precise (RetryInfo); a proxy's Retry-After header is the fallback.
    retryAfterMs: error.retryDelayMs ?? parseRetryAfterMs(input.headers, input.now),
    rateLimit: kind === "RateLimited" ? parseRateLimit(input.headers, input.now) : undefined
  })
}

/**
 * Classifies a Google error delivered inside a 200 (an SSE chunk `{"error":{…}}`, or a 200 body that
 * is one). There is no HTTP status; the body's `code` and `status` decide, and an unknown one is a
 * (retryable) `ServerError` as for every other format.
 */
export const classifyGeminiPayload = (site: CallSite, payload: JsonRecord, requestId: string | undefined): ProviderError => {
  const base = fromStreamError({ site, payload, requestId })
  const error = googleErrorOf(payload)
  if (error === undefined) return base
  return rebuild(base, error, kindOf(error, undefined), site.secrets ?? [], {
    retryAfterMs: error.retryDelayMs,
    rateLimit: undefined
  })
}

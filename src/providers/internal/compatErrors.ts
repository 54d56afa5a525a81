/**
 * Classification for servers that speak OpenAI's wire format but fail in their own words: Azure
 * OpenAI, OpenRouter, vLLM, Ollama, Groq, Together. `Classify.fromHttp` does the shared work once —
 * the redacted message and raw body, request id, `x-should-retry`, `retry-after(-ms)`, rate-limit
 * headers — and a server's own rules then re-tag that error where its semantics differ (OpenRouter's
 * `error.metadata.error_type`, Groq's 498, Together's 403 for an over-long prompt). Re-tagging keeps
 * every field the shared classifier filled in, so no server can get redaction or request ids subtly
 * wrong. Sources for every rule: the notes in docs (azure.md / compat.md).
 *
 * @internal
 */
import { type CallSite, fromHttp, fromStreamError } from "../../Classify.js"
import type { ProviderError } from "../../Errors.js"
import { type ErrorKind, errorOfKind } from "../../internal/errorKind.js"
import type { HeaderMap } from "../../internal/headers.js"
import { isRecord, type JsonRecord, number, opt, parseUntrusted, record, safeStringify, string } from "../../internal/json.js"
import { cleanRequestId, redactField } from "../../internal/redact.js"
import type { StreamErrorClassifier } from "../OpenAi.js"
import type { HttpClassifier } from "./wire.js"

// ---------------------------------------------------------------------------------------------------
// Re-tagging a classified error
// ---------------------------------------------------------------------------------------------------

/** The tags a server-specific rule may turn a wire failure into. */
export type Kind = ErrorKind

/** Fields to set on a re-tagged error; `undefined` removes the field. */
export interface Patch {
  readonly status?: number | undefined
  readonly providerType?: string | undefined
  readonly providerCode?: string | undefined
  readonly requestId?: string | undefined
  readonly retryAfterMs?: number | undefined
}

/** The context every provider error carries, without the fields that are absent. */
const contextOf = (error: ProviderError, patch: Patch) => {
  const pick = <K extends keyof Patch>(key: K, fallback: Patch[K]): Patch[K] => (key in patch ? patch[key] : fallback)
  return {
    provider: error.provider,
    model: error.model,
    route: error.route,
    attempt: error.attempt,
    message: error.message,
    ...opt("status", pick("status", error.status)),
    ...opt("providerType", pick("providerType", error.providerType)),
    ...opt("providerCode", pick("providerCode", error.providerCode)),
    ...opt("requestId", pick("requestId", error.requestId)),
    ...opt("shouldRetry", error.shouldRetry),
    ...opt("rawBody", error.rawBody)
  }
}

const retryAfterOf = (error: ProviderError): number | undefined =>
  error._tag === "RateLimited" || error._tag === "Overloaded" || error._tag === "ServerError" ? error.retryAfterMs : undefined

/**
 * The error as `kind`, keeping everything the shared classifier read (message, raw body, request id,
 * `x-should-retry`, the wait hint and rate-limit snapshot where the new tag has room for them).
 */
export const retag = (error: ProviderError, kind: Kind, patch: Patch = {}): ProviderError => {
  return errorOfKind(kind, contextOf(error, patch), {
    retryAfterMs: "retryAfterMs" in patch ? patch.retryAfterMs : retryAfterOf(error),
    rateLimit: error._tag === "RateLimited" ? error.rateLimit : undefined,
    param: error._tag === "BadRequest" ? error.param : undefined
  })
}

/** The same error with some fields set (a request id from another header, a wait hint from the body). */
export const patched = (error: ProviderError, patch: Patch): ProviderError => {
  const kind = error._tag
  switch (kind) {
    case "RateLimited":
    case "QuotaExhausted":
    case "Overloaded":
    case "ServerError":
    case "BadRequest":
    case "ContextLengthExceeded":
    case "Unauthorized":
    case "NotFound":
    case "ContentFiltered":
      return retag(error, kind, patch)
    default:
      return error
  }
}

/** A wait hint only for the tags that carry one, and only when the shared headers gave none. */
export const withWaitHint = (error: ProviderError, retryAfterMs: number | undefined): ProviderError =>
  retryAfterMs === undefined || retryAfterOf(error) !== undefined ||
    (error._tag !== "RateLimited" && error._tag !== "Overloaded" && error._tag !== "ServerError")
    ? error
    : patched(error, { retryAfterMs })

// ---------------------------------------------------------------------------------------------------
// Reading what servers send
// ---------------------------------------------------------------------------------------------------

/**
 * The error object of a body or chunk, whatever its shape: `{"error":{…}}` (OpenAI, OpenRouter, Groq,
 * Together, Ollama's /v1, vLLM ≥ 0.10), vLLM's older top-level `{"object":"error","message",…}`, or a
 * bare `{"error":"text"}`.
 */
export const errorObjectOf = (payload: unknown): JsonRecord | undefined => {
  if (!isRecord(payload)) return undefined
  const error = payload["error"]
  if (isRecord(error)) return error
  if (typeof error === "string") return { message: error }
  if (payload["object"] === "error") return payload
  return undefined
}

/** The parsed body of an HTTP error (the route's secrets scrubbed), or `undefined` when it is not JSON. */
export const parsedBody = (body: string, site: CallSite): unknown => {
  const parsed = parseUntrusted(body, site.secrets ?? [])
  return parsed._tag === "Json" ? parsed.value : undefined
}

/** A status-like number: `429` or `"429"`, within 400–599. */
export const statusCode = (u: unknown): number | undefined => {
  const value = typeof u === "string" && /^\d{3}$/.test(u) ? Number(u) : number(u)
  return value !== undefined && Number.isInteger(value) && value >= 400 && value <= 599 ? value : undefined
}

/**
 * An error inside a 2xx stream or body that names its HTTP status in `error.code` (OpenRouter's
 * mid-stream errors, vLLM's streamed `ErrorResponse`): classified as that status would be over HTTP,
 * then stripped of `status` (the response itself was a 200). Without such a code, OpenAI's rules.
 */
export const statusCodedStreamError: StreamErrorClassifier = ({ payload, requestId, site }) => {
  const status = statusCode(errorObjectOf(payload)?.["code"])
  if (status === undefined) return fromStreamError({ site, payload, requestId })
  const error = fromHttp({ site, status, headers: {}, body: safeStringify(payload), now: 0 })
  return patched(error, { status: undefined, requestId: cleanRequestId(requestId, site.secrets ?? []) })
}

/** An HTTP classifier built from a server's rule over the shared one. */
export type Refine = (input: {
  readonly error: ProviderError
  readonly status: number
  readonly headers: HeaderMap
  readonly body: unknown
  readonly now: number
  readonly site: CallSite
}) => ProviderError

/**
 * `Classify.fromHttp`, then the server's rule. (Request ids under other names — Azure's
 * `apim-request-id`, OpenRouter's `x-generation-id` — are read by the shared `requestIdOf`.)
 */
export const refinedHttp = (refine: Refine): HttpClassifier => (input) =>
  refine({ ...input, error: fromHttp(input), body: parsedBody(input.body, input.site) })

/** A provider's `type`/`code` (vLLM's top-level ones, OpenRouter's `error_type`), scrubbed, for re-tagging. */
export const providerFields = (site: CallSite, type: string | undefined, code: string | undefined): Patch => ({
  ...opt("providerType", redactField(type, site.secrets ?? [])),
  ...opt("providerCode", redactField(code, site.secrets ?? []))
})

// ---------------------------------------------------------------------------------------------------
// OpenRouter
// ---------------------------------------------------------------------------------------------------

/** OpenRouter's own free-model caps: `free-models-per-day` clears at midnight UTC, waiting does not help. */
const PER_DAY = /per-day|per day/i

/** `error.metadata.error_type` (OpenRouter's typed codes) → tag, where the status alone would mislead. */
const OPENROUTER_TYPES: Readonly<Record<string, Kind>> = {
  payment_required: "QuotaExhausted",
  // "A token budget enforced by OpenRouter (e.g. credit-based cap) was exceeded": money, not a rate.
  token_limit_exceeded: "QuotaExhausted",
  content_policy_violation: "ContentFiltered",
  refusal: "ContentFiltered",
  context_length_exceeded: "ContextLengthExceeded",
  provider_overloaded: "Overloaded",
  authentication: "Unauthorized",
  not_found: "NotFound",
  server: "ServerError",
  unmapped: "ServerError",
  timeout: "ServerError",
  provider_unavailable: "ServerError"
}

const openRouterRateKind = (object: JsonRecord | undefined, message: string): Kind => {
  if (PER_DAY.test(message)) return "QuotaExhausted"
  const metadata = record(object?.["metadata"])
  // An upstream provider's 429 (OpenRouter already tried the model's other providers) or every
  // provider at capacity: another route may serve now, this one will not for a while.
  if (string(metadata?.["provider_code"]) !== undefined) return "Overloaded"
  if (string(record(object?.["availability"])?.["code"]) === "capacity_exhausted") return "Overloaded"
  return "RateLimited"
}

/** OpenRouter's semantics over an error object, for HTTP bodies and mid-stream chunks alike. */
const openRouterKind = (status: number | undefined, object: JsonRecord | undefined, message: string): Kind | undefined => {
  const metadata = record(object?.["metadata"])
  const errorType = string(metadata?.["error_type"]) ?? string(object?.["error_type"])
  const availability = string(record(object?.["availability"])?.["code"])
  // An unknown model id answers 400, which would stop the whole chain; it is this route's model.
  if (availability === "model_not_found") return "NotFound"
  if (status === 429 || errorType === "rate_limit_exceeded") return openRouterRateKind(object, message)
  // The in-flight spending budget is a wait (it comes with Retry-After); any other 402 is money.
  if (status === 402) return string(metadata?.["limit_source"]) === "openrouter_in_flight_budget" ? "RateLimited" : "QuotaExhausted"
  // Moderation (`metadata.reasons`, `flagged_input`) and guardrail blocks: the content was refused.
  if (status === 403 && (Array.isArray(metadata?.["reasons"]) || metadata?.["flagged_input"] !== undefined || /^request blocked/i.test(message))) {
    return "ContentFiltered"
  }
  return errorType === undefined ? undefined : OPENROUTER_TYPES[errorType]
}

/** `X-RateLimit-Reset` on OpenRouter's own 429: an epoch instant (milliseconds; seconds accepted). */
const resetHeaderMs = (headers: HeaderMap, now: number): number | undefined => {
  const value = Number(headers["x-ratelimit-reset"])
  if (!Number.isFinite(value) || value <= 1e9) return undefined
  return Math.max(0, (value > 1e12 ? value : value * 1000) - now)
}

/** `error.availability.retry_after` (seconds), the body's copy of Retry-After. */
const availabilityWaitMs = (object: JsonRecord | undefined): number | undefined => {
  const seconds = number(record(object?.["availability"])?.["retry_after"])
  return seconds !== undefined && seconds >= 0 ? seconds * 1000 : undefined
}

const openRouterRetag = (error: ProviderError, status: number | undefined, object: JsonRecord | undefined, site: CallSite): ProviderError => {
  const kind = openRouterKind(status, object, string(object?.["message"]) ?? "")
  const errorType = string(record(object?.["metadata"])?.["error_type"]) ?? string(object?.["error_type"])
  const fields = errorType !== undefined && error.providerType === undefined ? providerFields(site, errorType, undefined) : {}
  if (kind === undefined || kind === error._tag) return Object.keys(fields).length > 0 ? patched(error, fields) : error
  return retag(error, kind, fields)
}

/** OpenRouter over HTTP: its typed codes, per-day and provider-routed 429s, moderation 403s, reset hints. */
export const openRouterHttp: HttpClassifier = refinedHttp(({ body, error, headers, now, site, status }) => {
  const object = errorObjectOf(body)
  const retagged = openRouterRetag(error, status, object, site)
  return withWaitHint(retagged, availabilityWaitMs(object) ?? (retagged._tag === "RateLimited" ? resetHeaderMs(headers, now) : undefined))
})

/** OpenRouter mid-stream: `{"error":{"code":429,…,"metadata":{"error_type":…}},"choices":[{"finish_reason":"error"}]}`. */
export const openRouterStreamError: StreamErrorClassifier = (input) => {
  const object = errorObjectOf(input.payload)
  const error = statusCodedStreamError(input)
  return withWaitHint(openRouterRetag(error, statusCode(object?.["code"]), object, input.site), availabilityWaitMs(object))
}

// ---------------------------------------------------------------------------------------------------
// vLLM, Groq, Together
// ---------------------------------------------------------------------------------------------------

/**
 * vLLM before 0.10 answers errors at the top level (`{"object":"error","message","type","param","code"}`),
 * where the shared reader finds the message but not the type (`BadRequestError`, `NotFoundError`);
 * they are put back so errors say what vLLM said.
 */
export const vllmHttp: HttpClassifier = refinedHttp(({ body, error, site }) => {
  if (!isRecord(body) || body["object"] !== "error" || error.providerType !== undefined) return error
  const code = body["code"]
  return patched(error, providerFields(site, string(body["type"]), typeof code === "number" ? String(code) : string(code)))
})

/**
 * Groq's flex tier answers 498 `capacity_exceeded` when it is full: load shedding, not a bad request.
 * A request larger than the organization's whole tokens-per-minute allowance is a 413 "Request too
 * large … on tokens per minute (TPM): Limit 6000, Requested 14368" whose body says
 * `code: "rate_limit_exceeded"` — read as a rate limit it would be waited on forever; only another
 * route (or a higher Groq tier) can serve it, which is what `QuotaExhausted` means.
 */
const groqRetag = (error: ProviderError, status: number | undefined, object: JsonRecord | undefined): ProviderError => {
  if (status === 498 || string(object?.["code"]) === "capacity_exceeded") return retag(error, "Overloaded")
  if (status === 413 || /^request too large/i.test(string(object?.["message"]) ?? "")) return retag(error, "QuotaExhausted")
  return error
}

export const groqHttp: HttpClassifier = refinedHttp(({ body, error, status }) => groqRetag(error, status, errorObjectOf(body)))

export const groqStreamError: StreamErrorClassifier = (input) => {
  const object = errorObjectOf(input.payload)
  return groqRetag(statusCodedStreamError(input), statusCode(object?.["code"]), object)
}

/** Together's "input tokens + max_new_tokens must be <= N" (its errors page lists it as a 403). */
const TOKEN_LIMIT = /tokens`? \+ `?max_(new_)?tokens|context length|context window/i

const togetherRetag = (error: ProviderError, status: number | undefined, object: JsonRecord | undefined): ProviderError => {
  const message = string(object?.["message"]) ?? string(object?.["error"]) ?? ""
  if ((status === 403 || status === 400 || status === 422) && TOKEN_LIMIT.test(message)) return retag(error, "ContextLengthExceeded")
  // "Rate limits were previously coded as 400's with code 'rate_limit'" (together-python).
  if (string(object?.["code"]) === "rate_limit" || string(object?.["type"]) === "rate_limit") return retag(error, "RateLimited")
  return error
}

export const togetherHttp: HttpClassifier = refinedHttp(({ body, error, status }) => togetherRetag(error, status, errorObjectOf(body)))

export const togetherStreamError: StreamErrorClassifier = (input) => {
  const object = errorObjectOf(input.payload)
  return togetherRetag(statusCodedStreamError(input), statusCode(object?.["code"]), object)
}

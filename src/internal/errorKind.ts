/**
 * The one place a classified failure becomes its tagged error. Every classifier (the shared
 * `Classify.fromHttp` / `fromStreamError`, and the formats with their own rules — Gemini, Bedrock,
 * Azure and the OpenAI-compatible presets) decides a *kind* from the wire and hands the fields it read
 * here; which fields each tag carries (a wait on the retryable ones, a snapshot on `RateLimited`, the
 * blamed parameter on `BadRequest`) and what a bare status means are written once.
 *
 * @internal
 */
import {
  BadRequest,
  ContentFiltered,
  ContextLengthExceeded,
  NotFound,
  Overloaded,
  type ProviderError,
  QuotaExhausted,
  RateLimited,
  ServerError,
  Unauthorized
} from "../Errors.js"
import type { RateLimitSnapshot } from "../RateLimitSnapshot.js"

/** The tags a wire failure is classified into. */
export type ErrorKind =
  | "RateLimited"
  | "QuotaExhausted"
  | "Overloaded"
  | "ServerError"
  | "BadRequest"
  | "ContextLengthExceeded"
  | "Unauthorized"
  | "NotFound"
  | "ContentFiltered"

/** The tags a status or a provider's error code can name (content filtering comes from an answer, or a format's own rule). */
export type StatusKind = Exclude<ErrorKind, "ContentFiltered">

/** What every classified failure carries (already redacted by the classifier). */
export interface ErrorFields {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
  readonly message: string
  readonly status?: number
  readonly providerType?: string
  readonly providerCode?: string
  readonly requestId?: string
  readonly shouldRetry?: boolean
  readonly rawBody?: string
}

/** What some tags carry besides: a wait (retryable tags), a snapshot (`RateLimited`), a parameter (`BadRequest`). */
export interface ErrorExtras {
  readonly retryAfterMs?: number | undefined
  readonly rateLimit?: RateLimitSnapshot | undefined
  readonly param?: string | undefined
}

/** The tagged error of `kind`. */
export const errorOfKind = (kind: ErrorKind, fields: ErrorFields, extras: ErrorExtras = {}): ProviderError => {
  const wait = extras.retryAfterMs !== undefined ? { retryAfterMs: extras.retryAfterMs } : {}
  switch (kind) {
    case "RateLimited":
      return new RateLimited({ ...fields, ...wait, ...(extras.rateLimit !== undefined ? { rateLimit: extras.rateLimit } : {}) }, true)
    case "QuotaExhausted":
      return new QuotaExhausted(fields, true)
    case "Overloaded":
      return new Overloaded({ ...fields, ...wait }, true)
    case "ServerError":
      return new ServerError({ ...fields, ...wait }, true)
    case "BadRequest":
      return new BadRequest({ ...fields, ...(extras.param !== undefined ? { param: extras.param } : {}) }, true)
    case "ContextLengthExceeded":
      return new ContextLengthExceeded(fields, true)
    case "Unauthorized":
      return new Unauthorized(fields, true)
    case "NotFound":
      return new NotFound(fields, true)
    case "ContentFiltered":
      return new ContentFiltered({ ...fields, finishReason: "content_filter" }, true)
  }
}

/**
 * What a status means when nothing else on the wire names the failure. 408 (a server-side request
 * timeout) and 409 (a conflict) are transient — the official SDKs retry both; any other 4xx is the
 * request's fault (`ContextLengthExceeded` when the classifier recognised a context-length message).
 */
export const kindFromStatus = (status: number, contextLength: boolean): StatusKind => {
  switch (status) {
    case 401:
    case 403:
      return "Unauthorized"
    case 402:
      return "QuotaExhausted"
    case 404:
      return "NotFound"
    case 408:
    case 409:
      return "ServerError"
    case 429:
      return "RateLimited"
    case 503:
    case 529:
      return "Overloaded"
  }
  if (status >= 400 && status < 500) return contextLength ? "ContextLengthExceeded" : "BadRequest"
  return "ServerError"
}

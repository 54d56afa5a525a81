/**
 * Bedrock's failures, classified by the error *code* AWS names (provider semantics first, the status
 * second), from the two places it names one:
 *
 * - a non-2xx answer: the `x-amzn-errortype` header (`ThrottlingException:http://internal.amazon.com/…`),
 *   else the body's `code`, else its `__type` (`com.amazonaws…#ValidationException`) — the restJson1
 *   order and clean-up of the AWS SDK (`loadRestJsonErrorCode` in `@smithy/core/protocols`); the text
 *   is the body's `message` (or `Message`);
 * - inside a 200 ConverseStream: an `exception` message (`:exception-type: throttlingException`, a JSON
 *   payload with `message`), or an unmodelled `error` message (`:error-code`, `:error-message`).
 *
 * The codes and their meaning (sources in /tmp/docs/bedrock.md → docs/providers.md):
 *
 * | code | tag | why |
 * |---|---|---|
 * | ThrottlingException (429) | RateLimited; QuotaExhausted when it names a *daily* quota | "Too many tokens per day" does not clear by waiting |
 * | ServiceQuotaExceededException (400) | RateLimited | AWS: "You can resubmit your request later" — the per-minute quotas |
 * | ServiceUnavailableException (503) | Overloaded | "Too many connections, please wait" — shedding load |
 * | InternalServerException (500) | ServerError | |
 * | ModelStreamErrorException (424), ModelErrorException (424) | by `originalStatusCode` (429 → RateLimited, 503/529 → Overloaded, other 4xx → BadRequest for ModelError), else ServerError | the model behind Bedrock failed; its own status says how |
 * | ModelNotReadyException (429) | ServerError | the model is loading; the SDK retries it (`$retryable`) — wait, not a rate limit |
 * | ModelTimeoutException (408) | ServerError | a server-side processing timeout, not one of our client-side phases |
 * | ValidationException (400) | ContextLengthExceeded by message, else BadRequest | |
 * | AccessDeniedException naming INVALID_PAYMENT_INSTRUMENT | QuotaExhausted | the account cannot pay (Marketplace models) |
 * | AccessDeniedException (403), UnrecognizedClientException, ExpiredToken(Exception), InvalidSignatureException, SignatureDoesNotMatch, IncompleteSignature, InvalidClientTokenId, MissingAuthenticationToken, RequestExpired | Unauthorized | |
 * | ResourceNotFoundException (404) | NotFound | |
 * | anything else | by status, as `Classify.fromHttp` does | |
 *
 * Bedrock sends no `Retry-After`. A wait hint is honoured when one is present anyway (`retry-after-ms`,
 * `retry-after`, and `x-amz-retry-after` in milliseconds, which the AWS SDK reads); otherwise the
 * error carries none and the retry policy's own backoff decides — inventing a fixed wait would only
 * synchronise clients.
 *
 * @internal
 */
import type { CallSite } from "../../Classify.js"
import type { ProviderError } from "../../Errors.js"
import { errorOfKind, kindFromStatus, type StatusKind } from "../../internal/errorKind.js"
import { type HeaderMap, parseNumber, parseRateLimit, parseRetryAfterMs, parseShouldRetry, requestIdOf } from "../../internal/headers.js"
import { isRecord, type JsonRecord, number, opt, parseUntrusted, safeStringify, string } from "../../internal/json.js"
import { redactAndTruncate, redactField } from "../../internal/redact.js"

/**
 * An AWS error code as the SDK cleans it: the part before `,` and `:` (the header appends a URL), and
 * after `#` (a Smithy shape id).
 */
export const cleanErrorCode = (raw: string): string => {
  let code = raw.split(",")[0]!.split(":")[0]!
  if (code.includes("#")) code = code.split("#")[1] ?? ""
  return code.trim()
}

/** The code of a non-2xx answer: header, then body `code`, then body `__type` (restJson1's order). */
export const errorCodeOf = (headers: HeaderMap, body: unknown): string | undefined => {
  const header = headers["x-amzn-errortype"]
  if (header !== undefined && header.trim().length > 0) return cleanErrorCode(header)
  if (!isRecord(body)) return undefined
  const code = body["code"] ?? body["Code"]
  if (typeof code === "string" || typeof code === "number") return cleanErrorCode(String(code))
  const type = string(body["__type"])
  return type === undefined ? undefined : cleanErrorCode(type)
}

type Kind = StatusKind

/** Authentication and signing failures (AWS's common errors and Bedrock's own). */
const UNAUTHORIZED_CODES: ReadonlySet<string> = new Set([
  "accessdeniedexception",
  "unrecognizedclientexception",
  "expiredtokenexception",
  "expiredtoken",
  "invalidsignatureexception",
  "signaturedoesnotmatch",
  "incompletesignature",
  "invalidclienttokenid",
  "missingauthenticationtoken",
  "missingauthenticationtokenexception",
  "notauthorized",
  "requestexpired",
  "requesttimetooskewed"
])

/** Throttling codes the AWS SDK retries as throttling (`THROTTLING_ERROR_CODES`), lower-cased. */
const THROTTLING_CODES: ReadonlySet<string> = new Set([
  "throttlingexception",
  "throttling",
  "throttledexception",
  "requestthrottledexception",
  "requestthrottled",
  "toomanyrequestsexception",
  "limitexceededexception",
  "provisionedthroughputexceededexception",
  "requestlimitexceeded",
  "slowdown"
])

/** A throttle that names a daily quota: waiting seconds does not clear it (QuotaExhausted, reroute). */
const DAILY_QUOTA = /per day|daily/i

/**
 * An AccessDeniedException that is about money, not permissions: "Model access is denied due to
 * INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided." (AWS Marketplace models).
 */
const PAYMENT = /INVALID_PAYMENT_INSTRUMENT|payment instrument/i

/**
 * Bedrock's context-window messages in a ValidationException: "Input is too long for requested model",
 * "The model returned the following errors: prompt is too long: 200049 tokens > 200000 maximum", and
 * the usual wordings of the models behind it.
 */
const CONTEXT_LENGTH =
  /input is too long|too many input tokens|prompt is too long|input tokens? exceeds?|context window|context length|maximum context/i

/** A Model*Exception's `originalStatusCode`: what the model behind Bedrock answered. */
const kindFromOriginalStatus = (status: number | undefined, code: string): Kind | undefined => {
  if (status === undefined) return undefined
  if (status === 429) return "RateLimited"
  if (status === 503 || status === 529) return "Overloaded"
  // A model that rejected the request (400/422) will reject it again; a stream that failed part-way
  // is retried whatever the model said (AWS: "Retry your request").
  if (code === "modelerrorexception" && status >= 400 && status < 500 && status !== 408 && status !== 409) return "BadRequest"
  return undefined
}

const kindFromCode = (code: string, message: string | undefined, originalStatus: number | undefined): Kind | undefined => {
  if (UNAUTHORIZED_CODES.has(code)) return message !== undefined && PAYMENT.test(message) ? "QuotaExhausted" : "Unauthorized"
  if (THROTTLING_CODES.has(code)) return message !== undefined && DAILY_QUOTA.test(message) ? "QuotaExhausted" : "RateLimited"
  switch (code) {
    case "servicequotaexceededexception":
      return message !== undefined && DAILY_QUOTA.test(message) ? "QuotaExhausted" : "RateLimited"
    case "serviceunavailableexception":
      return "Overloaded"
    case "internalserverexception":
    case "internalfailure":
    case "modelnotreadyexception":
    case "modeltimeoutexception":
      return "ServerError"
    case "modelstreamerrorexception":
    case "modelerrorexception":
      return kindFromOriginalStatus(originalStatus, code) ?? "ServerError"
    case "validationexception":
      return message !== undefined && CONTEXT_LENGTH.test(message) ? "ContextLengthExceeded" : "BadRequest"
    case "resourcenotfoundexception":
      return "NotFound"
  }
  return undefined
}

/** An unknown code (or none): the status decides, as `Classify.fromHttp` does; in a stream (no status), a retryable `ServerError`. */
const kindOfStatus = (status: number | undefined, message: string | undefined): Kind =>
  status === undefined ? "ServerError" : kindFromStatus(status, message !== undefined && CONTEXT_LENGTH.test(message))

/** What an AWS error payload says: its message and, for Model*Exceptions, the model's own status. */
const payloadInfo = (payload: unknown): { readonly message: string | undefined; readonly originalStatus: number | undefined } => {
  if (!isRecord(payload)) return { message: undefined, originalStatus: undefined }
  const message = string(payload["message"]) ?? string(payload["Message"])
  const original = number(payload["originalStatusCode"]) ?? parseNumber(string(payload["originalStatusCode"]))
  return { message: message !== undefined && message.length > 0 ? message : undefined, originalStatus: original }
}

/** `x-amz-retry-after`: milliseconds, read by the AWS SDK's retry middleware (`parseRetryAfterHeader`). */
const retryAfterOf = (headers: HeaderMap, now: number): number | undefined =>
  parseRetryAfterMs(headers, now) ?? parseNumber(headers["x-amz-retry-after"])

/**
 * Classifies a non-2xx Bedrock answer. Total: every status, header set and body gives a typed error.
 */
export const classifyBedrockHttp = (input: {
  readonly site: CallSite
  readonly status: number
  readonly headers: HeaderMap
  readonly body: string
  readonly now: number
}): ProviderError => {
  const { body, headers, now, site, status } = input
  const secrets = site.secrets ?? []
  const parsed = parseUntrusted(body, secrets)
  const value = parsed._tag === "Json" ? parsed.value : undefined
  const code = errorCodeOf(headers, value)
  const { message, originalStatus } = payloadInfo(value)
  const kind = (code !== undefined ? kindFromCode(code.toLowerCase(), message, originalStatus) : undefined) ?? kindOfStatus(status, message)
  const rateLimit = kind === "RateLimited" ? parseRateLimit(headers, now) : undefined
  return errorOfKind(kind, {
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    message: redactAndTruncate(message ?? `HTTP ${status} from ${site.provider}`, secrets),
    status,
    ...opt("providerType", redactField(code, secrets)),
    ...opt("providerCode", originalStatus !== undefined ? String(originalStatus) : undefined),
    ...opt("requestId", requestIdOf(headers, secrets)),
    ...opt("shouldRetry", parseShouldRetry(headers)),
    rawBody: redactAndTruncate(parsed._tag === "Json" && parsed.scrubbed ? safeStringify(parsed.value) : body, secrets)
  }, { retryAfterMs: retryAfterOf(headers, now), rateLimit })
}

/**
 * Classifies an error delivered inside a 200 ConverseStream: an `exception` message (its
 * `:exception-type` and JSON payload) or an unmodelled `error` message (`:error-code`,
 * `:error-message`). There is no HTTP status (the modelled one, e.g. 429, is not this response's);
 * an unknown code is a retryable `ServerError`.
 */
export const classifyBedrockStreamError = (input: {
  readonly site: CallSite
  readonly code: string | undefined
  readonly payload: JsonRecord | undefined
  readonly message?: string | undefined
  readonly rawBody: string
  readonly requestId: string | undefined
}): ProviderError => {
  const { site } = input
  const secrets = site.secrets ?? []
  const info = payloadInfo(input.payload)
  const message = info.message ?? input.message
  // The stream names exceptions in camelCase (`throttlingException`), the HTTP header and the SDK's error
  // classes in PascalCase: one spelling in `providerType`, whichever way the failure came.
  const cleaned = input.code === undefined ? undefined : cleanErrorCode(input.code)
  const code = cleaned === undefined || cleaned.length === 0 ? undefined : cleaned[0]!.toUpperCase() + cleaned.slice(1)
  const kind = (code !== undefined ? kindFromCode(code.toLowerCase(), message, info.originalStatus) : undefined) ??
    kindOfStatus(undefined, message)
  return errorOfKind(kind, {
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    message: redactAndTruncate(message ?? `stream error from ${site.provider}`, secrets),
    ...opt("providerType", redactField(code, secrets)),
    ...opt("providerCode", info.originalStatus !== undefined ? String(info.originalStatus) : undefined),
    ...opt("requestId", input.requestId),
    rawBody: redactAndTruncate(input.rawBody, secrets)
  })
}

/**
 * Azure OpenAI's own failure semantics over the shared classifier (see `compatErrors`). What differs
 * from OpenAI, each from Microsoft's docs or the Azure SDKs (rows in the Azure notes):
 *
 * - A prompt the content filter blocks is HTTP 400 with `error.code: "content_filter"` and
 *   `error.innererror.code: "ResponsibleAIPolicyViolation"` plus `content_filter_result(s)` — a
 *   refusal of the content, `ContentFiltered`, not a malformed request (`BadRequest` would stop every
 *   route of the chain; a route without that filter configuration may serve).
 * - A 429 says which of two things happened: the deployment's TPM/RPM rate limit ("Rate limit is
 *   exceeded", a wait), or "the system is experiencing high demand and cannot process your request"
 *   (capacity, `Overloaded`: another region or deployment may serve now).
 * - The wait hint comes as `retry-after-ms` + `retry-after` (read by the shared headers), as
 *   `x-ms-retry-after-ms` (the Azure core SDKs read it), or only in the message ("Please retry after
 *   37 seconds") when a response carries no header (reported for the Responses API).
 * - The request id is `apim-request-id` / `x-ms-request-id` when `x-request-id` is absent (read by the
 *   shared `requestIdOf`).
 *
 * @internal
 */
import type { ProviderError } from "../../Errors.js"
import type { HeaderMap } from "../../internal/headers.js"
import { parseNumber } from "../../internal/headers.js"
import { type JsonRecord, record, string } from "../../internal/json.js"
import type { StreamErrorClassifier } from "../OpenAi.js"
import { errorObjectOf, refinedHttp, retag, statusCode, statusCodedStreamError, withWaitHint } from "./compatErrors.js"
import type { HttpClassifier } from "./wire.js"

/** `innererror` in the dated API; `inner_error` accepted for gateways that re-case it. */
const innerErrorOf = (object: JsonRecord): JsonRecord | undefined => record(object["innererror"]) ?? record(object["inner_error"])

/** Whether an error object is the content filter's refusal. */
export const isContentFilterError = (object: JsonRecord | undefined): boolean =>
  object !== undefined &&
  (string(object["code"]) === "content_filter" || string(innerErrorOf(object)?.["code"]) === "ResponsibleAIPolicyViolation")

/** The capacity 429 ("high demand"), as opposed to the deployment's own rate limit. */
const HIGH_DEMAND = /high demand|cannot process your request/i

/** "Please retry after 37 seconds." — the wait when no header carries it. */
const RETRY_IN_MESSAGE = /retry after (\d+(?:\.\d+)?) seconds?/i

const messageWaitMs = (object: JsonRecord | undefined): number | undefined => {
  const match = RETRY_IN_MESSAGE.exec(string(object?.["message"]) ?? "")
  return match === null ? undefined : Number(match[1]) * 1000
}

const azureRetag = (error: ProviderError, status: number | undefined, object: JsonRecord | undefined): ProviderError => {
  if (isContentFilterError(object)) return error._tag === "ContentFiltered" ? error : retag(error, "ContentFiltered")
  if (status === 429 && HIGH_DEMAND.test(string(object?.["message"]) ?? "")) return retag(error, "Overloaded")
  return error
}

const waitHintMs = (headers: HeaderMap, object: JsonRecord | undefined): number | undefined =>
  parseNumber(headers["x-ms-retry-after-ms"]) ?? messageWaitMs(object)

/** Non-2xx answers from Azure OpenAI (either URL shape, Chat Completions or Responses). */
export const azureHttp: HttpClassifier = refinedHttp(({ body, error, headers, status }) => {
  const object = errorObjectOf(body)
  return withWaitHint(azureRetag(error, status, object), waitHintMs(headers, object))
})

/** Error objects in Azure 2xx bodies and Chat Completions chunks. */
export const azureStreamError: StreamErrorClassifier = (input) => {
  const object = errorObjectOf(input.payload)
  return withWaitHint(azureRetag(statusCodedStreamError(input), statusCode(object?.["code"]), object), messageWaitMs(object))
}

/**
 * A failure the Responses protocol classified with OpenAI's rules (it keeps only the error's `code`):
 * Azure's `content_filter` code is still the content filter.
 */
export const refineResponsesError = (error: ProviderError): ProviderError =>
  error.providerCode === "content_filter" && error._tag !== "ContentFiltered" ? retag(error, "ContentFiltered") : error

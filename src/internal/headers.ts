/**
 * Header parsing for provider responses. Every parser is total: garbage in, `undefined` out — a
 * provider (or a proxy in front of it) sending a malformed header must never turn a typed failure into
 * a defect.
 *
 * @internal
 */
import type { RateLimitSnapshot, RateLimitWindow } from "../RateLimitSnapshot.js"
import { cleanRequestId } from "./redact.js"

/** Lower-cased header names to values, as `@effect/platform` Headers and undici give them. */
export type HeaderMap = { readonly [name: string]: string | undefined }

const finiteNonNegative = (n: number): number | undefined => (Number.isFinite(n) && n >= 0 ? n : undefined)

const NUMERIC = /^\s*\d+(?:\.\d+)?\s*$/

/** A non-negative decimal number, or `undefined`. `Number("")` is 0, so emptiness is rejected first. */
export const parseNumber = (value: string | undefined): number | undefined =>
  value !== undefined && NUMERIC.test(value) ? finiteNonNegative(Number(value)) : undefined

/**
 * `x-should-retry: true|false` — the provider's explicit verdict, which overrides the status code
 * (the official SDKs honour it the same way).
 */
export const parseShouldRetry = (headers: HeaderMap): boolean | undefined => {
  const value = headers["x-should-retry"]?.trim().toLowerCase()
  return value === "true" ? true : value === "false" ? false : undefined
}

/**
 * The provider's wait hint in milliseconds: `retry-after-ms` (float ms) wins over `retry-after`
 * (integer/float seconds, or an HTTP-date measured against `now`). A date in the past means "now" (0).
 */
export const parseRetryAfterMs = (headers: HeaderMap, now: number): number | undefined => {
  const ms = parseNumber(headers["retry-after-ms"])
  if (ms !== undefined) return ms
  const raw = headers["retry-after"]
  if (raw === undefined) return undefined
  const seconds = parseNumber(raw)
  if (seconds !== undefined) return seconds * 1000
  // HTTP-date (IMF-fixdate and the obsolete forms Date.parse understands). Only accept strings that
  // look like dates: Date.parse("1") would otherwise succeed as a year.
  if (!/[a-z]/i.test(raw)) return undefined
  const at = Date.parse(raw)
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined
}

const GO_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}

const GO_DURATION = /^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/
const GO_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g

/**
 * A Go `time.Duration` string as OpenAI sends in `x-ratelimit-reset-*` (`1s`, `6m0s`, `12ms`,
 * `1h2m3.5s`) to milliseconds. A bare number is read as seconds, which some OpenAI-compatible
 * servers send.
 */
export const parseGoDurationMs = (value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const text = value.trim()
  if (text === "0") return 0
  const bare = parseNumber(text)
  if (bare !== undefined) return bare * 1000
  if (text.length === 0 || text.length > 64 || !GO_DURATION.test(text)) return undefined
  let total = 0
  for (const match of text.matchAll(GO_PART)) {
    total += Number(match[1]) * (GO_UNITS[match[2] ?? ""] ?? Number.NaN)
  }
  return finiteNonNegative(total)
}

/** An RFC 3339 instant (Anthropic's `*-reset`) to milliseconds after `now` (0 if already past). */
export const parseResetInstantMs = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}T/.test(value.trim())) return undefined
  const at = Date.parse(value.trim())
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined
}

const window = (
  limit: number | undefined,
  remaining: number | undefined,
  resetAfterMs: number | undefined
): RateLimitWindow | undefined => {
  if (limit === undefined && remaining === undefined && resetAfterMs === undefined) return undefined
  return {
    ...(limit !== undefined ? { limit } : {}),
    ...(remaining !== undefined ? { remaining } : {}),
    ...(resetAfterMs !== undefined ? { resetAfterMs } : {})
  }
}

const openAiWindow = (headers: HeaderMap, kind: "requests" | "tokens") =>
  window(
    parseNumber(headers[`x-ratelimit-limit-${kind}`]),
    parseNumber(headers[`x-ratelimit-remaining-${kind}`]),
    parseGoDurationMs(headers[`x-ratelimit-reset-${kind}`])
  )

const anthropicWindow = (headers: HeaderMap, kind: string, now: number) =>
  window(
    parseNumber(headers[`anthropic-ratelimit-${kind}-limit`]),
    parseNumber(headers[`anthropic-ratelimit-${kind}-remaining`]),
    parseResetInstantMs(headers[`anthropic-ratelimit-${kind}-reset`], now)
  )

/**
 * Reads every rate-limit header either provider sends into one snapshot; `undefined` when the
 * response carried none of them (so the common no-header case allocates nothing).
 */
export const parseRateLimit = (headers: HeaderMap, now: number): RateLimitSnapshot | undefined => {
  const requests = openAiWindow(headers, "requests") ?? anthropicWindow(headers, "requests", now)
  const tokens = openAiWindow(headers, "tokens") ?? anthropicWindow(headers, "tokens", now)
  const inputTokens = anthropicWindow(headers, "input-tokens", now)
  const outputTokens = anthropicWindow(headers, "output-tokens", now)
  const retryAfterMs = parseRetryAfterMs(headers, now)
  if (
    requests === undefined && tokens === undefined && inputTokens === undefined && outputTokens === undefined &&
    retryAfterMs === undefined
  ) {
    return undefined
  }
  return {
    ...(requests !== undefined ? { requests } : {}),
    ...(tokens !== undefined ? { tokens } : {}),
    ...(inputTokens !== undefined ? { inputTokens } : {}),
    ...(outputTokens !== undefined ? { outputTokens } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    observedAt: now
  }
}

/**
 * The request id each provider stamps on responses: OpenAI (and Azure) `x-request-id`, Anthropic
 * `request-id`, AWS `x-amzn-requestid`, Azure's `apim-request-id` / `x-ms-request-id`, OpenRouter's
 * `x-generation-id` — the first one present that passes `cleanRequestId` (shape-checked, dropped when
 * it carries a secret), so an unusable id does not hide a good one. Gemini sends none.
 */
export const requestIdOf = (headers: HeaderMap, secrets: ReadonlyArray<string>): string | undefined => {
  for (const name of REQUEST_ID_HEADERS) {
    const value = headers[name]
    if (value === undefined) continue
    const clean = cleanRequestId(value, secrets)
    if (clean !== undefined) return clean
  }
  return undefined
}

const REQUEST_ID_HEADERS = ["x-request-id", "request-id", "x-amzn-requestid", "apim-request-id", "x-ms-request-id", "x-generation-id"] as const

/**
 * The three time notations the providers put in headers: Go durations (OpenAI
 * `x-ratelimit-reset-*`), HTTP-dates (`retry-after`) and RFC 3339 instants (Anthropic
 * `anthropic-ratelimit-*-reset`).
 *
 * @internal
 */

/** Up to three decimals, trailing zeros dropped: 1.5 → "1.5", 2 → "2", 0.1234 → "0.123". */
const decimal = (n: number): string => {
  const fixed = (Math.round(n * 1000) / 1000).toFixed(3)
  return fixed.replace(/\.?0+$/, "")
}

/**
 * Formats milliseconds the way Go's `time.Duration.String()` does, which is what OpenAI sends:
 * `0s`, `60µs`, `12ms`, `1.5ms`, `1.5s`, `59.999s`, `6m0s`, `1h0m0s`. Values under a second keep
 * three decimals of their unit; longer ones are rounded to the millisecond.
 */
export const goDuration = (ms: number): string => {
  if (!Number.isFinite(ms) || ms <= 0) return "0s"
  if (ms < 0.001) return `${decimal(ms * 1_000_000)}ns`
  if (ms < 1) return `${decimal(ms * 1000)}µs`
  if (ms < 1000) return `${decimal(ms)}ms`
  const total = Math.round(ms)
  const hours = Math.floor(total / 3_600_000)
  const minutes = Math.floor((total % 3_600_000) / 60_000)
  const seconds = decimal((total % 60_000) / 1000)
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`
  if (minutes > 0) return `${minutes}m${seconds}s`
  return `${seconds}s`
}

/** IMF-fixdate (RFC 9110 HTTP-date), e.g. `Wed, 21 Oct 2015 07:28:00 GMT`. Rounded up to the second. */
export const httpDate = (epochMs: number): string => new Date(Math.ceil(epochMs / 1000) * 1000).toUTCString()

/**
 * RFC 3339 in UTC with second precision, e.g. `2024-10-22T12:00:05Z`, as Anthropic sends it. Rounded
 * up so a client waiting until the instant never wakes before the bucket has refilled.
 */
export const rfc3339 = (epochMs: number): string =>
  new Date(Math.ceil(epochMs / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z")

/** Whether a string is an HTTP-date that `Date.parse` understands (and not a bare number). */
export const isHttpDate = (text: string): boolean => /[a-z]/i.test(text) && Number.isFinite(Date.parse(text))

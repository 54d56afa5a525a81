/**
 * What one worker was granted for one key, kept the way the fail-open fallback's buckets would stand
 * had they been charged with it: per configured dimension (requests, tokens), a bucket of the
 * fallback's capacity (`fallbackShare` × the configured per-minute limit) refilled at the fallback's
 * rate, charged with every call this worker was granted — by Redis or by the fallback itself —
 * corrected with the real token usage, given back for a call the breaker refused, and **never below
 * zero**: spending beyond the share is not carried over as debt, so one minute without grants makes
 * it full again.
 *
 * When Redis becomes unreachable the fallback limiter is lowered to what these buckets hold, so it
 * starts from `max(0, share · limit − what this worker spent, refilled at share · limit per minute)`,
 * never full. Plain numbers, updated in single synchronous steps on the caller's clock (Effect's
 * `Clock`, so `TestClock` drives it); no Redis round trip.
 *
 * @internal
 */
import * as Bucket from "../../internal/tokenBucket.js"

/** The dimensions tracked: requests, tokens (the ones `RateLimiterOptions` can configure). */
const DIMS = 2

/** What one call took from the buckets (mutable: corrections move it), per dimension. @internal */
export type Taken = [requests: number, tokens: number]

/** @internal */
export interface OwnSpend {
  /** `undefined` for a dimension with no configured limit (the fallback has no bucket for it either). */
  readonly buckets: readonly [Bucket.TokenBucket | undefined, Bucket.TokenBucket | undefined]
}

/** Full buckets of `share` × each configured limit. @internal */
export const make = (
  requestsPerMinute: number | undefined,
  tokensPerMinute: number | undefined,
  share: number,
  now: number
): OwnSpend => ({
  buckets: [
    requestsPerMinute === undefined ? undefined : Bucket.make(requestsPerMinute * share, now),
    tokensPerMinute === undefined ? undefined : Bucket.make(tokensPerMinute * share, now)
  ]
})

/** Takes up to `amount` from a bucket, never below zero; what it took. */
const takeFloored = (bucket: Bucket.TokenBucket, amount: number, now: number): number => {
  Bucket.refill(bucket, now)
  const took = Math.min(amount, Math.max(0, bucket.available))
  if (took > 0) bucket.available -= took
  return took
}

/** Charges a granted call (1 request, its estimated tokens); what it took, for the corrections. @internal */
export const take = (spend: OwnSpend, requests: number, tokens: number, now: number): Taken => {
  const taken: Taken = [0, 0]
  const costs = [requests, tokens]
  for (let i = 0; i < DIMS; i++) {
    const bucket = spend.buckets[i]
    if (bucket !== undefined && costs[i]! > 0) taken[i] = takeFloored(bucket, costs[i]!, now)
  }
  return taken
}

/**
 * The call's real token usage is known: its charge becomes that usage (less given back, or more taken
 * — never below zero). A usage of 0 (omitted) leaves the estimate charged, as in the limiters. Whether
 * anything changed. @internal
 */
export const correct = (spend: OwnSpend, taken: Taken, totalTokens: number, now: number): boolean => {
  const bucket = spend.buckets[1]
  if (bucket === undefined || !(totalTokens > 0) || totalTokens === taken[1]) return false
  if (totalTokens < taken[1]) {
    Bucket.give(bucket, taken[1] - totalTokens, now)
    taken[1] = totalTokens
    return true
  }
  const more = takeFloored(bucket, totalTokens - taken[1], now)
  taken[1] += more
  return more > 0
}

/** Nothing was sent (the breaker refused the call): everything it took goes back. Whether anything changed. @internal */
export const refund = (spend: OwnSpend, taken: Taken, now: number): boolean => {
  let changed = false
  for (let i = 0; i < DIMS; i++) {
    const bucket = spend.buckets[i]
    if (bucket === undefined || !(taken[i]! > 0)) continue
    Bucket.give(bucket, taken[i]!, now)
    taken[i] = 0
    changed = true
  }
  return changed
}

/** What the buckets hold now (`undefined` for a dimension without one). @internal */
export const available = (spend: OwnSpend, now: number): readonly [number | undefined, number | undefined] => {
  const [requests, tokens] = spend.buckets
  if (requests !== undefined) Bucket.refill(requests, now)
  if (tokens !== undefined) Bucket.refill(tokens, now)
  return [requests?.available, tokens?.available]
}

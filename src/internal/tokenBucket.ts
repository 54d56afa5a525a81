/**
 * A continuously refilling token bucket on plain numbers: `capacity` tokens, refilled at
 * `perMinute / 60 000` tokens per millisecond. Mutable on purpose — the rate limiter owns one state
 * object per route and updates it inside single synchronous steps, so the happy path is a clock read
 * and some arithmetic.
 *
 * `available` may go negative: a request larger than what is left (or corrected upward by the real
 * usage of a response) puts the bucket into debt, and later callers wait for the debt to refill.
 *
 * Time is whatever the caller passes (the limiter passes Effect's `Clock`, so `TestClock` drives it).
 *
 * @internal
 */

/** Tolerance for floating-point refill arithmetic (a wait computed to the millisecond must suffice). */
const EPSILON = 1e-6

/** @internal */
export interface TokenBucket {
  /** Tokens per minute; also the capacity. */
  perMinute: number
  /** Tokens available as of `updatedAt` (may be negative: debt). */
  available: number
  /** Clock time (ms) `available` was last brought up to date. */
  updatedAt: number
}

/** A full bucket. */
export const make = (perMinute: number, now: number): TokenBucket => ({
  perMinute,
  available: perMinute,
  updatedAt: now
})

/** Brings `available` up to `now`. A clock that goes backwards refills nothing. */
export const refill = (bucket: TokenBucket, now: number): void => {
  const elapsed = now - bucket.updatedAt
  if (elapsed <= 0) return
  if (bucket.available < bucket.perMinute) {
    // Multiply before dividing: 1 000 ms at 60/min is exactly 1 token.
    bucket.available = Math.min(bucket.perMinute, bucket.available + (elapsed * bucket.perMinute) / 60_000)
  }
  bucket.updatedAt = now
}

/**
 * Milliseconds (whole, rounded up) until `cost` tokens are available, 0 when they are now. A cost
 * above the capacity waits for a full bucket (it could never be met otherwise) and then drives the
 * bucket into debt. A bucket with no rate (`perMinute <= 0`) never refills: `Infinity`.
 */
export const waitFor = (bucket: TokenBucket, cost: number, now: number): number => {
  refill(bucket, now)
  const deficit = Math.min(cost, bucket.perMinute) - bucket.available
  if (deficit <= EPSILON) return 0
  if (!(bucket.perMinute > 0)) return Number.POSITIVE_INFINITY
  return Math.max(1, Math.ceil((deficit * 60_000) / bucket.perMinute - EPSILON))
}

/**
 * Like {@link waitFor}, but as if `ahead` tokens were taken first (callers queued in front). Used to
 * estimate a newcomer's wait; does not refill or change the bucket beyond bringing it up to `now`.
 */
export const waitBehind = (bucket: TokenBucket, ahead: number, cost: number, now: number): number => {
  refill(bucket, now)
  // Everyone in front leaves at worst a full-bucket wait each; the newcomer needs `cost` after them.
  const deficit = ahead + Math.min(cost, bucket.perMinute) - bucket.available
  if (deficit <= EPSILON) return 0
  if (!(bucket.perMinute > 0)) return Number.POSITIVE_INFINITY
  return Math.max(1, Math.ceil((deficit * 60_000) / bucket.perMinute - EPSILON))
}

/** Takes `cost` tokens (call after {@link waitFor} returned 0). */
export const take = (bucket: TokenBucket, cost: number): void => {
  bucket.available -= cost
}

/** Gives `amount` tokens back (a refund), never above the capacity; a negative amount charges more. */
export const give = (bucket: TokenBucket, amount: number, now: number): void => {
  refill(bucket, now)
  bucket.available = Math.min(bucket.perMinute, bucket.available + amount)
}

/** Lowers `available` to at most `remaining` (what the provider says is left); never raises it. */
export const lowerTo = (bucket: TokenBucket, remaining: number, now: number): void => {
  refill(bucket, now)
  if (remaining < bucket.available) bucket.available = remaining
}

/** Changes the rate (and capacity); the tokens available never rise because of it. */
export const setRate = (bucket: TokenBucket, perMinute: number, now: number): void => {
  refill(bucket, now)
  bucket.perMinute = perMinute
  if (bucket.available > perMinute) bucket.available = perMinute
}

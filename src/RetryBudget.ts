/**
 * A retry budget per route: retries may add at most `ratio` of the route's requests, plus a small
 * reserve of `minPerSecond` over the window — Finagle's and Envoy's answer to retry storms. When a
 * provider hard-fails under load, unbudgeted retries multiply the load exactly when it can least take
 * it; with a budget, failures beyond it surface at once as `RetryBudgetExhausted` (carrying the
 * original error) and a fallback can reroute.
 *
 * Accounting is over a sliding window of `window` split into one-second buckets, so memory is
 * constant and old traffic stops counting. Over any window:
 * `retries ≤ ratio · requests + minPerSecond · windowSeconds`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { millisOf } from "./internal/timer.js"

/**
 * Options. Defaults: ratio 0.2, minPerSecond 10, window 10 seconds (Finagle's).
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryBudgetOptions {
  /** Retries allowed per request (0.2 = retries may add 20% load). */
  readonly ratio?: number | undefined
  /** A reserve for low-traffic routes, per second of window. */
  readonly minPerSecond?: number | undefined
  /** How long a request keeps counting toward the budget. */
  readonly window?: Duration.DurationInput | undefined
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 } as const

/**
 * A budget.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryBudget {
  /** Records one logical request (call once per call, not per attempt). */
  readonly deposit: Effect.Effect<void>
  /** Takes one retry from the budget; `false` when it is spent. */
  readonly withdraw: Effect.Effect<boolean>
  /** Retries currently available. */
  readonly available: Effect.Effect<number>
  /** {@link deposit} at clock time `now`, synchronously (for timer callbacks and hot paths). */
  readonly unsafeDeposit: (now: number) => void
  /** {@link withdraw} at clock time `now`, synchronously (hedging spends from timer callbacks). */
  readonly unsafeWithdraw: (now: number) => boolean
}

/**
 * A budget's options with their defaults applied: the window in whole one-second buckets, and the
 * reserve in retries per window.
 *
 * @since 0.2.0
 * @category models
 */
export interface ResolvedRetryBudget {
  readonly ratio: number
  readonly seconds: number
  readonly reserve: number
}

/**
 * The options with their defaults applied — one reading for the local budget and the Redis-shared one
 * (`effect-llm-resilience/redis`'s `RedisRetryBudget`).
 *
 * @since 0.2.0
 * @category utils
 */
export const resolve = (options: RetryBudgetOptions = {}): ResolvedRetryBudget => {
  const windowMs = Math.max(1000, millisOf(options.window) ?? defaults.windowMs)
  return {
    ratio: options.ratio ?? defaults.ratio,
    seconds: Math.ceil(windowMs / 1000),
    reserve: (options.minPerSecond ?? defaults.minPerSecond) * (windowMs / 1000)
  }
}

/**
 * Builds a budget.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: RetryBudgetOptions = {}): RetryBudget => {
  const { ratio, reserve, seconds: buckets } = resolve(options)
  const deposits = new Float64Array(buckets)
  const withdrawals = new Float64Array(buckets)
  let currentSecond = Number.NEGATIVE_INFINITY

  // Expires the buckets that fell out of the window since the last call.
  const advance = (now: number) => {
    const second = Math.floor(now / 1000)
    if (second === currentSecond) return
    const stale = Math.min(buckets, second - currentSecond)
    for (let i = 1; i <= stale; i++) {
      const slot = (((second - stale + i) % buckets) + buckets) % buckets
      deposits[slot] = 0
      withdrawals[slot] = 0
    }
    currentSecond = second
  }
  const slotOf = () => ((currentSecond % buckets) + buckets) % buckets
  // Whole counts first, then one multiplication: the same float arithmetic as the Redis-shared budget's
  // script (`effect-llm-resilience/redis`), so both grant the same retries at the boundaries.
  const balance = () => {
    let deposited = 0
    let withdrawn = 0
    for (let i = 0; i < buckets; i++) {
      deposited += deposits[i]!
      withdrawn += withdrawals[i]!
    }
    return reserve + ratio * deposited - withdrawn
  }

  const unsafeDeposit = (now: number): void => {
    advance(now)
    deposits[slotOf()]! += 1
  }
  const unsafeWithdraw = (now: number): boolean => {
    advance(now)
    if (balance() < 1) return false
    withdrawals[slotOf()]! += 1
    return true
  }
  return {
    deposit: Effect.map(Clock.currentTimeMillis, unsafeDeposit),
    withdraw: Effect.map(Clock.currentTimeMillis, unsafeWithdraw),
    unsafeDeposit,
    unsafeWithdraw,
    available: Effect.map(Clock.currentTimeMillis, (now) => {
      advance(now)
      return Math.max(0, Math.floor(balance()))
    })
  }
}

/**
 * The registry: one budget per route, shared by every caller of that route.
 *
 * @since 0.1.0
 * @category tags
 */
export class RetryBudgets extends Context.Tag("effect-llm-resilience/RetryBudgets")<RetryBudgets, {
  readonly get: (key: string, options?: RetryBudgetOptions) => Effect.Effect<RetryBudget>
}>() {}

/**
 * The registry layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RetryBudgets> = Layer.sync(RetryBudgets, () => {
  const budgets = new Map<string, RetryBudget>()
  return {
    get: (key, options) =>
      Effect.sync(() => {
        let budget = budgets.get(key)
        if (budget === undefined) {
          budget = make(options)
          budgets.set(key, budget)
        }
        return budget
      })
  }
})

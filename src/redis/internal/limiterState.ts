/**
 * The synchronous state of one Redis-backed rate limiter of one worker: the local bulkhead and FIFO
 * queue, this worker's own spend (for the fail-open fallback), the last snapshot written, and the pure
 * planning of the update script's arguments. `RedisRateLimiter` wraps it in effects (Redis round
 * trips, clock reads, waiting, metrics); nothing here forks, sleeps or talks to Redis.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Exit from "effect/Exit"
import { limiterMetrics, requestCosts } from "../../internal/limiter.js"
import type { GenerateRequest, Usage } from "../../Provider.js"
import * as RateLimiterModule from "../../RateLimiter.js"
import type { RateLimiter, RateLimiterOptions } from "../../RateLimiter.js"
import { type RateLimitSnapshot, spentWindowsResetMs } from "../../RateLimitSnapshot.js"
import type { Guard } from "./guard.js"
import * as OwnSpend from "./ownSpend.js"

/** The provider-side code of the fail-closed rejection. @internal */
export const SHARED_STATE_UNAVAILABLE = "shared_state_unavailable"

/** requests, tokens, inputTokens, outputTokens — the scripts' dimensions 1..4. */
const DIMENSIONS = ["requests", "tokens", "inputTokens", "outputTokens"] as const

/** @internal */
export type Costs = readonly [requests: number, tokens: number, inputTokens: number, outputTokens: number]

/** @internal */
export type Outcome =
  | { readonly _tag: "Shared"; readonly charged: number; readonly taken: OwnSpend.Taken }
  | { readonly _tag: "Local" }
  | { readonly _tag: "Wait"; readonly ms: number }
  | { readonly _tag: "Unavailable"; readonly detail: string }

/** @internal */
export type Admission = Extract<Outcome, { readonly _tag: "Shared" | "Local" }>

/** A call Redis admitted: its costs, the dimensions the script charged, what it took from this worker's own-spend buckets. @internal */
export interface Grant {
  readonly costs: Costs
  readonly charged: number
  readonly taken: OwnSpend.Taken
}

/** @internal */
export type Reason = "queue_full" | "max_wait" | "deadline" | "concurrency" | typeof SHARED_STATE_UNAVAILABLE

/** @internal */
export interface Waiter {
  readonly costs: Costs
  /** Completed to make the waiter re-check. */
  wake: Deferred.Deferred<void> | undefined
  /** What it waits for: its turn (not head), a concurrency slot, or rate capacity (a refund may help). */
  blockedOn: "turn" | "slot" | "rate"
}

/** @internal */
export interface Shared extends Guard {
  readonly prefix: string
  readonly failOpen: boolean
  readonly fallbackShare: number
}

/** The state of one limiter (one key) of one worker; the fields were the closure's variables. @internal */
export class LimiterState {
  readonly maxConcurrency: number
  readonly maxQueue: number
  readonly maxWaitMs: number
  readonly learn: boolean
  readonly estimate: RateLimiterOptions["estimateTokens"]
  readonly configuredArgs: ReadonlyArray<string | number>

  inFlight = 0
  readonly queue: Array<Waiter> = []
  lastSnapshot: RateLimitSnapshot | undefined

  /**
   * What this worker was granted, as the fail-open fallback's buckets would stand (see ownSpend.ts);
   * `unseeded` when it changed in ways the fallback has not seen (Redis grants and their corrections).
   */
  readonly spend: OwnSpend.OwnSpend
  unseeded = false

  readonly waitMetric: ReturnType<typeof limiterMetrics>["wait"]
  readonly rejectionMetric: ReturnType<typeof limiterMetrics>["rejections"]

  constructor(
    readonly shared: Shared,
    readonly key: string,
    readonly hashKey: string,
    options: RateLimiterOptions,
    readonly local: RateLimiter,
    now: number
  ) {
    this.maxConcurrency = options.maxConcurrency === undefined
      ? Number.POSITIVE_INFINITY
      : Math.max(1, Math.floor(options.maxConcurrency))
    this.maxQueue = Math.max(0, Math.floor(options.maxQueue ?? RateLimiterModule.defaults.maxQueue))
    this.maxWaitMs = options.maxWait === undefined
      ? RateLimiterModule.defaults.maxWaitMs
      : Math.max(0, Duration.toMillis(Duration.decode(options.maxWait)))
    this.learn = options.learnFromHeaders ?? RateLimiterModule.defaults.learnFromHeaders
    this.estimate = options.estimateTokens
    const configured: ReadonlyArray<number | undefined> = [options.requestsPerMinute, options.tokensPerMinute, undefined, undefined]
    this.configuredArgs = configured.map((limit) => (limit === undefined ? "" : limit))
    this.spend = OwnSpend.make(options.requestsPerMinute, options.tokensPerMinute, shared.fallbackShare, now)
    const { wait: waitMetric, rejections: rejectionMetric } = limiterMetrics(key)
    this.waitMetric = waitMetric
    this.rejectionMetric = rejectionMetric
  }

  costsOf(request: GenerateRequest): Costs {
    const costs = requestCosts(request, this.estimate)
    return [costs.requests, costs.tokens, costs.inputTokens, costs.outputTokens]
  }

  // ---- the local bulkhead and queue ----

  wakeHead(why: "turn" | "slot" | "rate"): void {
    const head = this.queue[0]
    if (head?.wake !== undefined && (head.blockedOn === "turn" || head.blockedOn === why)) {
      Deferred.unsafeDone(head.wake, Exit.void)
      head.wake = undefined
    }
  }

  leave(waiter: Waiter): void {
    const index = this.queue.indexOf(waiter)
    if (index < 0) return
    this.queue.splice(index, 1)
    if (index === 0) this.wakeHead("turn")
  }

  release(): void {
    this.inFlight--
    this.wakeHead("slot")
  }

  whyLimit(reason: Reason): string {
    return reason === "deadline" ? "deadline" : "maxWait"
  }

  // ---- after a call: corrections and lessons ----

  /** ARGV[5..18] of the update script, or `undefined` when there is nothing to write. */
  planUpdate(
    costs: Costs,
    charged: number,
    usage: Usage | undefined,
    snapshot: RateLimitSnapshot | undefined,
    retryAfterMs: number | undefined,
    now: number,
    refundAll = false
  ): { readonly args: ReadonlyArray<string | number>; readonly refund: boolean } | undefined {
    const deltas = [0, 0, 0, 0]
    let refund = false
    if (refundAll) {
      // Nothing was sent: every charge, the request's included, goes back.
      for (let i = 0; i < 4; i++) {
        if ((charged & (1 << i)) === 0 || !(costs[i]! > 0)) continue
        deltas[i] = costs[i]!
        refund = true
      }
    } else if (usage !== undefined && usage.totalTokens > 0) {
      // A response reporting totalTokens 0 (usage omitted) leaves the estimate charged.
      const real = [undefined, usage.totalTokens, usage.inputTokens, usage.outputTokens]
      for (let i = 1; i < 4; i++) {
        const value = real[i]
        if ((charged & (1 << i)) === 0 || value === undefined) continue
        deltas[i] = costs[i]! - value
        if (deltas[i]! > 0) refund = true
      }
    }
    const learned: Array<string | number> = ["", "", "", ""]
    const remaining: Array<string | number> = ["", "", "", ""]
    let coolUntil = Number.NEGATIVE_INFINITY
    let age = 0
    let taught = false
    if (snapshot !== undefined) {
      age = Math.max(0, now - snapshot.observedAt)
      if (snapshot.retryAfterMs !== undefined) coolUntil = Math.max(coolUntil, snapshot.observedAt + snapshot.retryAfterMs)
      // A spent window blocks until its reset: the same rule as the local limiter's and Retry's.
      const spent = spentWindowsResetMs(snapshot)
      if (spent !== undefined) coolUntil = Math.max(coolUntil, snapshot.observedAt + spent)
      // Anthropic's combined `tokens` window is the most restrictive of input / output, not a total:
      // when the split windows are present it only blocks (remaining 0); they teach the buckets.
      const split = snapshot.inputTokens !== undefined || snapshot.outputTokens !== undefined
      DIMENSIONS.forEach((name, i) => {
        const window = snapshot[name]
        if (window === undefined) return
        if (split && name === "tokens") return
        if (window.limit !== undefined && window.limit > 0) {
          learned[i] = window.limit
          taught = true
        }
        if (window.remaining !== undefined) {
          remaining[i] = window.remaining
          taught = true
        }
      })
    }
    if (retryAfterMs !== undefined) coolUntil = Math.max(coolUntil, now + retryAfterMs)
    const cooldownMs = coolUntil > now ? Math.ceil(coolUntil - now) : 0
    if (!taught && cooldownMs === 0 && deltas.every((d) => d === 0)) return undefined
    return { args: [...this.configuredArgs, ...deltas, ...learned, ...remaining, age, cooldownMs], refund }
  }
}

/**
 * The synchronous state of one in-process rate limiter: its buckets, the route block learned from
 * headers, the concurrency count and the FIFO queue, with every transition as a plain method call.
 * `RateLimiter` wraps it in effects (clock reads, waiting, metrics); nothing here forks or sleeps.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import { isTagged } from "effect/Predicate"
import { RateLimited } from "../Errors.js"
import { formatMs, limiterMetrics, requestCosts } from "../internal/limiter.js"
import { isUnsent } from "./breakerCore.js"
import * as Bucket from "../internal/tokenBucket.js"
import type { GenerateRequest, GenerateResponse, Usage } from "../Provider.js"
import type { LimiterTicket } from "../RateLimiter.js"
import { type RateLimitSnapshot, type RateLimitWindow, spentWindowsResetMs } from "../RateLimitSnapshot.js"

export type Dimension = "requests" | "tokens" | "inputTokens" | "outputTokens"

const DIMENSIONS: ReadonlyArray<Dimension> = ["requests", "tokens", "inputTokens", "outputTokens"]

/** One limit dimension: its bucket (configured, learned from headers, or none yet). */
export interface Dim {
  readonly name: Dimension
  /** The configured per-minute limit (a ceiling for what headers teach), if any. */
  readonly configured: number | undefined
  bucket: Bucket.TokenBucket | undefined
}

/** What one request costs in each dimension (fixed when it asks, so the correction matches the charge). */
export type Costs = { readonly [K in Dimension]: number }

interface Charge {
  readonly dim: Dimension
  readonly bucket: Bucket.TokenBucket
  readonly cost: number
}

export interface Permit extends LimiterTicket {
  readonly charges: ReadonlyArray<Charge>
  released: boolean
  settled: boolean
}

export interface Ticket {
  readonly costs: Costs
  /** Completed to make the waiter re-check (it became head, a slot freed, tokens were refunded). */
  wake: Deferred.Deferred<void> | undefined
}

export type Decision =
  | { readonly _tag: "Admit"; readonly permit: Permit }
  | { readonly _tag: "Wait"; readonly wake: Deferred.Deferred<void>; readonly ms: number }
  | { readonly _tag: "Reject"; readonly reason: Reason; readonly waitMs: number; readonly detail: string }

export type Reason = "queue_full" | "max_wait" | "deadline" | "concurrency"

/** The options with their defaults applied (see `unsafeMake` in RateLimiter.ts). */
export interface Resolved {
  readonly maxConcurrency: number
  readonly maxQueue: number
  readonly maxWaitMs: number
  readonly learn: boolean
  readonly estimate: ((request: GenerateRequest) => number) | undefined
  readonly requestsPerMinute: number | undefined
  readonly tokensPerMinute: number | undefined
}

const EMPTY_CHARGES: ReadonlyArray<Charge> = []

const realUsage = (dim: Dimension, usage: Usage): number | undefined => {
  switch (dim) {
    case "requests":
      return undefined
    case "tokens":
      return usage.totalTokens > 0 ? usage.totalTokens : undefined
    case "inputTokens":
      return usage.totalTokens > 0 ? usage.inputTokens : undefined
    case "outputTokens":
      return usage.totalTokens > 0 ? usage.outputTokens : undefined
  }
}

const makeDim = (name: Dimension, configured: number | undefined, now: number): Dim => ({
  name,
  configured,
  bucket: configured === undefined ? undefined : Bucket.make(configured, now)
})

const untilWord = (reason: Reason): string => (reason === "deadline" ? "deadline" : "maxWait")

/** The state of one limiter; every mutation happens in one synchronous step. */
export class LimiterCore {
  readonly maxConcurrency: number
  readonly maxQueue: number
  readonly maxWaitMs: number
  readonly learn: boolean
  readonly estimate: ((request: GenerateRequest) => number) | undefined
  readonly dims: { readonly [K in Dimension]: Dim }
  readonly dimList: ReadonlyArray<Dim>
  /** The route is blocked (provider said `remaining: 0` or `retry-after`) until this clock time. */
  blockedUntil = Number.NEGATIVE_INFINITY
  inFlight = 0
  readonly queue: Array<Ticket> = []
  lastSnapshot: RateLimitSnapshot | undefined
  readonly waitMetric: ReturnType<typeof limiterMetrics>["wait"]
  readonly rejectionMetric: ReturnType<typeof limiterMetrics>["rejections"]

  constructor(key: string, resolved: Resolved, now: number) {
    this.maxConcurrency = resolved.maxConcurrency
    this.maxQueue = resolved.maxQueue
    this.maxWaitMs = resolved.maxWaitMs
    this.learn = resolved.learn
    this.estimate = resolved.estimate
    const dims = {
      requests: makeDim("requests", resolved.requestsPerMinute, now),
      tokens: makeDim("tokens", resolved.tokensPerMinute, now),
      inputTokens: makeDim("inputTokens", undefined, now),
      outputTokens: makeDim("outputTokens", undefined, now)
    }
    this.dims = dims
    this.dimList = DIMENSIONS.map((name) => dims[name])
    const { wait, rejections } = limiterMetrics(key)
    this.waitMetric = wait
    this.rejectionMetric = rejections
  }

  costsOf(request: GenerateRequest): Costs {
    return requestCosts(request, this.estimate)
  }

  // ---- capacity ----

  /** Milliseconds until the rate capacity for `costs` exists (0 = now). Concurrency not included. */
  rateWait(costs: Costs, at: number): number {
    let wait = this.blockedUntil > at ? this.blockedUntil - at : 0
    for (const d of this.dimList) {
      if (d.bucket === undefined) continue
      const w = Bucket.waitFor(d.bucket, costs[d.name], at)
      if (w > wait) wait = w
    }
    return wait
  }

  /** The rate wait of `costs` behind the first `ahead` queued callers (an estimate: for fail-fast and hints). */
  estimateWait(costs: Costs, ahead: number, at: number): number {
    const queue = this.queue
    let wait = this.blockedUntil > at ? this.blockedUntil - at : 0
    for (const d of this.dimList) {
      if (d.bucket === undefined) continue
      let before = 0
      for (let i = 0; i < ahead && i < queue.length; i++) before += Math.min(queue[i]!.costs[d.name], d.bucket.perMinute)
      const w = Bucket.waitBehind(d.bucket, before, costs[d.name], at)
      if (w > wait) wait = w
    }
    return wait
  }

  admit(costs: Costs): Permit {
    let charges = EMPTY_CHARGES
    for (const d of this.dimList) {
      if (d.bucket === undefined) continue
      const cost = costs[d.name]
      Bucket.take(d.bucket, cost)
      // Every charge is kept, the request's too: a call the breaker refuses gives all of them back.
      if (charges === EMPTY_CHARGES) charges = []
      ;(charges as Array<Charge>).push({ dim: d.name, bucket: d.bucket, cost })
    }
    this.inFlight++
    return { _tag: "LimiterTicket", charges, released: false, settled: false }
  }

  /** The happy path: capacity and a slot at once, when nobody is queued. `undefined` = go to the queue. */
  tryAdmit(costs: Costs, at: number): Permit | undefined {
    return this.queue.length === 0 && this.inFlight < this.maxConcurrency && this.rateWait(costs, at) === 0
      ? this.admit(costs)
      : undefined
  }

  wakeHead(): void {
    const head = this.queue[0]
    if (head?.wake !== undefined) {
      Deferred.unsafeDone(head.wake, Exit.void)
      head.wake = undefined
    }
  }

  /** Removes a ticket that gave up (rejected or interrupted) and lets the next one re-check. */
  leave(ticket: Ticket): void {
    const index = this.queue.indexOf(ticket)
    if (index < 0) return
    this.queue.splice(index, 1)
    if (index === 0) this.wakeHead()
  }

  release(permit: Permit): void {
    if (permit.released) return
    permit.released = true
    this.inFlight--
    this.wakeHead()
  }

  /** Corrects the token buckets with the real usage (a refund when the estimate was high, debt when low). */
  settle(permit: Permit, usage: Usage, at: number): void {
    if (permit.settled) return
    permit.settled = true
    let refunded = false
    for (const charge of permit.charges) {
      const real = realUsage(charge.dim, usage)
      if (real === undefined) continue
      const delta = charge.cost - real
      if (delta === 0) continue
      Bucket.give(charge.bucket, delta, at)
      if (delta > 0) refunded = true
    }
    if (refunded) this.wakeHead()
  }

  /** Gives back every charge of a call that never reached the provider. */
  refund(permit: Permit, at: number): void {
    if (permit.settled) return
    permit.settled = true
    for (const charge of permit.charges) Bucket.give(charge.bucket, charge.cost, at)
    this.wakeHead()
  }

  // ---- learning ----

  block(until: number): void {
    if (until > this.blockedUntil) this.blockedUntil = until
  }

  learnWindow(d: Dim, window: RateLimitWindow, observedAt: number, at: number): void {
    const { limit, remaining } = window
    const knownLimit = limit !== undefined && limit > 0 ? limit : undefined
    if (d.bucket === undefined) {
      // A window the options did not configure: learn a bucket of `limit` per minute.
      if (knownLimit === undefined || remaining === undefined) return
      d.bucket = Bucket.make(knownLimit, at)
    } else if (knownLimit !== undefined) {
      // The configured limit is a ceiling: a lower provider limit wins, a higher one never raises it.
      const perMinute = d.configured === undefined ? knownLimit : Math.min(d.configured, knownLimit)
      if (perMinute !== d.bucket.perMinute) Bucket.setRate(d.bucket, perMinute, at)
    }
    if (remaining === undefined) return
    // What was left at `observedAt`, plus what refilled since (a stream's Finish may carry old headers).
    const refilled = at > observedAt ? ((at - observedAt) * d.bucket.perMinute) / 60_000 : 0
    Bucket.lowerTo(d.bucket, remaining + refilled, at)
  }

  learnSnapshot(snapshot: RateLimitSnapshot, at: number): void {
    if (snapshot === this.lastSnapshot) return
    this.lastSnapshot = snapshot
    if (snapshot.retryAfterMs !== undefined) this.block(snapshot.observedAt + snapshot.retryAfterMs)
    const spent = spentWindowsResetMs(snapshot)
    if (spent !== undefined) this.block(snapshot.observedAt + spent)
    // Anthropic's `tokens` window is whichever of its input / output windows is most restrictive, not a
    // total: when the split windows are present, it only blocks (remaining 0, above); they teach the buckets.
    const split = snapshot.inputTokens !== undefined || snapshot.outputTokens !== undefined
    for (const d of this.dimList) {
      const window = snapshot[d.name]
      if (window !== undefined && !(split && d.name === "tokens")) this.learnWindow(d, window, snapshot.observedAt, at)
    }
  }

  /** A provider's 429 that passed through us: back off until its reset / Retry-After. */
  learnFromFailure(error: unknown, at: number): void {
    if (!(error instanceof RateLimited) || error.providerType === "client_rate_limit") return
    if (error.rateLimit !== undefined) this.learnSnapshot(error.rateLimit, at)
    if (error.retryAfterMs !== undefined && error.rateLimit?.retryAfterMs === undefined) this.block(at + error.retryAfterMs)
  }

  // ---- outcomes ----

  onResponse(permit: Permit, response: GenerateResponse, at: number): void {
    this.settle(permit, response.usage, at)
    if (this.learn && response.rateLimit !== undefined) this.learnSnapshot(response.rateLimit, at)
  }

  /** After a call: free the slot, correct usage, learn the headers (or the provider's 429). */
  onExit(permit: Permit, exit: Exit.Exit<GenerateResponse, unknown>, at: number): void {
    this.release(permit)
    if (Exit.isSuccess(exit)) return this.onResponse(permit, exit.value, at)
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) this.onFailure(permit, failure.value, at)
  }

  /** A call (or stream) failed: a refusal below gives everything back; a provider 429 teaches. */
  onFailure(permit: Permit, error: unknown, at: number): void {
    // The breaker, the route's wire format or a spend budget refused the call: nothing was sent, so
    // nothing was spent.
    if (isTagged(error, "CircuitOpen") || isUnsent(error)) return this.refund(permit, at)
    if (this.learn) this.learnFromFailure(error, at)
  }

  // ---- waiting ----

  budgetReason(deadlineLeft: number): Reason {
    return deadlineLeft < this.maxWaitMs ? "deadline" : "max_wait"
  }

  /** One look at the state for a queued ticket: go, wait (how long), or give up. Synchronous. */
  decide(ticket: Ticket, at: number, until: number, reason: Reason): Decision {
    const left = until - at
    const index = this.queue.indexOf(ticket)
    if (index === 0) return this.decideHead(ticket, at, left, reason)
    if (left <= 0) {
      const waitMs = this.estimateWait(ticket.costs, Math.max(0, index), at)
      this.leave(ticket)
      return { _tag: "Reject", reason, waitMs, detail: `still queued behind ${index} callers after the ${untilWord(reason)}` }
    }
    const wake = Deferred.unsafeMake<void>(FiberId.none)
    ticket.wake = wake
    return { _tag: "Wait", wake, ms: left }
  }

  /** {@link decide} for the head of the queue, with `left` ms of its budget remaining. */
  private decideHead(ticket: Ticket, at: number, left: number, reason: Reason): Decision {
    const wait = this.rateWait(ticket.costs, at)
    if (wait === 0 && this.inFlight < this.maxConcurrency) {
      this.queue.shift()
      const permit = this.admit(ticket.costs)
      // The next caller may be able to go too (capacity for several, or only FIFO order held it).
      this.wakeHead()
      return { _tag: "Admit", permit }
    }
    if (wait > left || (wait === 0 && left <= 0)) {
      this.leave(ticket)
      return wait === 0
        ? { _tag: "Reject", reason: "concurrency", waitMs: Number.NaN, detail: `no concurrency slot freed in time (${this.maxConcurrency} in flight)` }
        : { _tag: "Reject", reason, waitMs: wait, detail: `capacity in ${formatMs(wait)} exceeds the ${untilWord(reason)} (${formatMs(left)} left)` }
    }
    const wake = Deferred.unsafeMake<void>(FiberId.none)
    ticket.wake = wake
    return { _tag: "Wait", wake, ms: wait > 0 ? Math.min(wait, left) : left }
  }

  availableIn(d: Dim, at: number): number {
    if (d.bucket === undefined) return Number.POSITIVE_INFINITY
    Bucket.refill(d.bucket, at)
    return d.bucket.available
  }
}

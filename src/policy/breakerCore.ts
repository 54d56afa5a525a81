/**
 * The synchronous state machine of one circuit breaker: its state, sliding window, open-period
 * backoff, half-open probes and history, with every transition as a plain method call. `CircuitBreaker`
 * wraps it in effects (clock reads, metrics, publishing); nothing here allocates beyond the events and
 * verdicts it returns.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { BreakerEvent, BreakerState, Site } from "../CircuitBreaker.js"
import { CircuitOpen } from "../Errors.js"
import { isUnsent } from "../internal/unsent.js"

/**
 * A failure raised before the request left (see internal/unsent.ts, the one place the rule is
 * written): not evidence about the provider (breakers give it no verdict), and nothing was spent
 * (limiters refund its permit, spend budgets release its reservation).
 */
export { isUnsent }

/** The options with their defaults applied (see `resolve` in CircuitBreaker.ts). */
export interface Resolved {
  readonly consecutive: number
  readonly rate: number
  readonly minimumThroughput: number
  readonly windowMs: number
  readonly bucketMs: number
  readonly buckets: number
  readonly openMs: number
  readonly factor: number
  readonly maxOpenMs: number
  readonly honourRetryAfter: boolean
  readonly probes: number
  readonly isFailure: (error: unknown) => boolean
}

/** The verdict of a finished call: whether it counts as a failure, and the error it failed with. */
export interface Verdict {
  readonly failed: boolean
  readonly error: unknown
}

const HISTORY = 256

const retryAfterOf = (error: unknown): number | undefined => {
  if (typeof error !== "object" || error === null || !("retryAfterMs" in error)) return undefined
  const value = (error as { readonly retryAfterMs: unknown }).retryAfterMs
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

const sum = (array: Float64Array) => {
  let total = 0
  for (let i = 0; i < array.length; i++) total += array[i]!
  return total
}

/** One breaker's state. Methods that change state return the event to publish (publishing happens outside). */
export class BreakerCore {
  // Sliding window of calls and failures, in buckets of `bucketMs`.
  readonly calls: Float64Array
  readonly failures: Float64Array
  currentBucket = Number.NEGATIVE_INFINITY
  consecutive = 0
  state: BreakerState = "closed"
  openUntil = 0
  reopenings = 0 // consecutive re-opens without a close in between, for the open-duration backoff
  probesInFlight = 0
  probeSuccesses = 0
  // Bumped on every transition: a permit only reports into the generation it was taken in.
  generation = 0
  readonly history: Array<BreakerEvent> = []

  constructor(readonly key: string, readonly o: Resolved) {
    this.calls = new Float64Array(o.buckets)
    this.failures = new Float64Array(o.buckets)
  }

  advance(now: number): void {
    const o = this.o
    const bucket = Math.floor(now / o.bucketMs)
    if (bucket === this.currentBucket) return
    const stale = Math.min(o.buckets, bucket - this.currentBucket)
    for (let i = 1; i <= stale; i++) {
      const slot = (((bucket - stale + i) % o.buckets) + o.buckets) % o.buckets
      this.calls[slot] = 0
      this.failures[slot] = 0
    }
    this.currentBucket = bucket
  }

  slot(): number {
    return ((this.currentBucket % this.o.buckets) + this.o.buckets) % this.o.buckets
  }

  totalCalls(): number {
    return sum(this.calls)
  }

  totalFailures(): number {
    return sum(this.failures)
  }

  clearWindow(): void {
    this.calls.fill(0)
    this.failures.fill(0)
    this.consecutive = 0
  }

  /** Applies a transition now and returns the event to publish (publishing happens outside the sync block). */
  transition(now: number, to: BreakerState, reason: string): BreakerEvent {
    const from = this.state
    this.state = to
    this.generation++
    this.probesInFlight = 0
    this.probeSuccesses = 0
    const event: BreakerEvent = {
      key: this.key,
      from,
      to,
      at: now,
      reason,
      ...(to === "open" ? { openUntil: this.openUntil } : {})
    }
    this.history.push(event)
    if (this.history.length > HISTORY) this.history.shift()
    return event
  }

  open(now: number, reason: string, error: unknown): BreakerEvent {
    const o = this.o
    let duration = Math.min(o.maxOpenMs, o.openMs * o.factor ** this.reopenings)
    const hint = o.honourRetryAfter ? retryAfterOf(error) : undefined
    if (hint !== undefined) duration = Math.max(duration, Math.min(o.maxOpenMs, hint))
    this.reopenings++
    this.openUntil = now + duration
    return this.transition(now, "open", reason)
  }

  /** Closes with a clean slate: no backoff carried over, an empty window. */
  close(now: number, reason: string): BreakerEvent {
    this.reopenings = 0
    this.clearWindow()
    return this.transition(now, "closed", reason)
  }

  /** Moves an expired open period to half-open (lazily, when someone looks). */
  refresh(now: number): BreakerEvent | undefined {
    return this.state === "open" && now >= this.openUntil
      ? this.transition(now, "half-open", "open period ended")
      : undefined
  }

  rejected(site: Site, now: number, retryAfterMs: number | undefined): CircuitOpen {
    const key = this.key
    return new CircuitOpen({
      ...site,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      message: this.state === "isolated"
        ? `circuit for ${key} is isolated (manually opened)`
        : this.state === "half-open"
        ? `circuit for ${key} is half-open and its probe calls are in flight`
        : `circuit for ${key} is open for another ${Math.max(0, this.openUntil - now)} ms`
    }, true)
  }

  /** Records an outcome taken under `taken` (a generation) and returns the transition it caused, if any. */
  settle(taken: number, failed: boolean, error: unknown, now: number): BreakerEvent | undefined {
    if (taken !== this.generation) return undefined
    if (this.state === "half-open") {
      this.probesInFlight = Math.max(0, this.probesInFlight - 1)
      if (failed) return this.open(now, "probe failed", error)
      this.probeSuccesses++
      if (this.probeSuccesses < this.o.probes) return undefined
      return this.close(now, "probes succeeded")
    }
    if (this.state !== "closed") return undefined
    return this.settleClosed(failed, error, now)
  }

  private settleClosed(failed: boolean, error: unknown, now: number): BreakerEvent | undefined {
    const o = this.o
    this.advance(now)
    const at = this.slot()
    this.calls[at]! += 1
    if (!failed) {
      this.consecutive = 0
      return undefined
    }
    this.failures[at]! += 1
    this.consecutive++
    if (this.consecutive >= o.consecutive) return this.open(now, `${this.consecutive} consecutive failures`, error)
    const total = sum(this.calls)
    if (total >= o.minimumThroughput) {
      const failed = sum(this.failures)
      if (failed / total >= o.rate) return this.open(now, `failure rate ${Math.round((100 * failed) / total)}% of ${total} calls`, error)
    }
    return undefined
  }

  /** The verdict of a finished call: failure (counted or not), or none for a bare interruption. */
  verdictOf(exit: Exit.Exit<unknown, unknown>): Verdict | undefined {
    if (Exit.isSuccess(exit)) return { failed: false, error: undefined }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      // Refused before anything was sent (a part the route's wire cannot carry): the provider was not
      // asked, so the call says nothing of its health — no verdict, like an interruption.
      if (isUnsent(failure.value)) return undefined
      return { failed: this.o.isFailure(failure.value), error: failure.value }
    }
    // A defect is a failure of the call; an interruption alone has no verdict.
    if (Cause.isInterruptedOnly(exit.cause)) return undefined
    const defect = Cause.squash(exit.cause)
    return { failed: this.o.isFailure(defect), error: defect }
  }
}

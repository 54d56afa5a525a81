/**
 * A client-side, header-aware rate limiter per route: it slows down *before* the provider answers 429.
 *
 * Each limiter keeps, for one route (key `route/model` in `Policy`):
 *
 * - a requests-per-minute and a tokens-per-minute **token bucket** (capacity = the per-minute limit,
 *   refilled continuously at `limit / 60 s`); a request takes 1 request and its estimated tokens
 *   (prompt estimate + `maxTokens`), and the token bucket is corrected with the response's real usage;
 * - a **concurrency bulkhead** (a slot per call in flight, held by a stream until it ends);
 * - what the provider's own **rate-limit headers** said (the `RateLimitSnapshot` adapters put on
 *   responses, stream `Metadata`/`Finish` events and `RateLimited` errors): `remaining` lowers a
 *   bucket (never raises it), `remaining: 0` and `retry-after` block the route until the reset, and a
 *   window the options did not configure becomes a learned bucket (`limit` per minute) — including
 *   Anthropic's separate input-token (charged with the prompt estimate) and output-token (charged with
 *   the real output when the response ends) windows.
 *
 * Callers that cannot go at once wait in a bounded FIFO queue. A caller whose wait would exceed
 * `maxWait` or the call's `Deadline` — or who finds the queue full — fails at once with `RateLimited`
 * (`providerType: "client_rate_limit"`, no HTTP status, `retryAfterMs` = the estimated wait), so a
 * fallback chain can reroute instead of queueing. The limiter never retries.
 *
 * Cost: when there is capacity, a call is a clock read, a prompt estimate and arithmetic on one mutable
 * state object — no fiber, no timer. Only a caller that must wait forks: it races a sleep for its
 * computed wait (on Effect's `Clock`, so `TestClock` drives it) against a wake-up (a slot freed, tokens
 * refunded, its turn came), then re-checks.
 *
 * See docs/policies/rate-limiter.md.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import { isTagged } from "effect/Predicate"
import * as Stream from "effect/Stream"
import * as Deadline from "./Deadline.js"
import { RateLimited } from "./Errors.js"
import * as Estimate from "./internal/estimateTokens.js"
import { clientRateLimited, formatMs, limiterMetrics, requestCosts } from "./internal/limiter.js"
import { millisOf } from "./internal/timer.js"
import * as Bucket from "./internal/tokenBucket.js"
import type { GenerateRequest, GenerateResponse, StreamEvent, Usage } from "./Provider.js"
import { type RateLimitSnapshot, type RateLimitWindow, spentWindowsResetMs } from "./RateLimitSnapshot.js"

/**
 * Options. Every field is optional; see {@link defaults} and docs/policies/rate-limiter.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiterOptions {
  /** Requests per minute. `undefined` = no configured RPM bucket (headers may still teach one). */
  readonly requestsPerMinute?: number | undefined
  /** Tokens per minute (prompt + output). `undefined` = no configured TPM bucket (headers may still teach one). */
  readonly tokensPerMinute?: number | undefined
  /** Calls in flight at once. `undefined` = unbounded. */
  readonly maxConcurrency?: number | undefined
  /** Callers waiting for capacity beyond this fail fast. Default 1000. 0 = never queue (fail fast). */
  readonly maxQueue?: number | undefined
  /** Never wait longer than this for capacity; fail fast instead (so a fallback can reroute). Default 60 seconds. */
  readonly maxWait?: Duration.DurationInput | undefined
  /** Learn from provider headers (responses, stream events, `RateLimited` errors). Default true. */
  readonly learnFromHeaders?: boolean | undefined
  /** Token cost estimate of a request before it is sent. Default: estimatePromptTokens(request) + request.maxTokens. */
  readonly estimateTokens?: ((request: GenerateRequest) => number) | undefined
}

/**
 * Where a call runs, for the `RateLimited` errors the limiter produces.
 *
 * @since 0.1.0
 * @category models
 */
export type Site = {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
}

/**
 * A limiter for one route.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter {
  readonly key: string
  /**
   * Waits for capacity (RPM 1, TPM estimate, a concurrency slot), runs the call, then corrects the TPM
   * bucket with the response's real usage and learns from its rate-limit snapshot.
   */
  readonly generate: <E, R>(
    request: GenerateRequest,
    call: Effect.Effect<GenerateResponse, E, R>,
    site: Site
  ) => Effect.Effect<GenerateResponse, E | RateLimited, R>
  /**
   * Same for a stream: capacity acquired before the first pull, concurrency slot held until the stream
   * ends (success, failure or interruption), usage corrected from the Finish event, snapshot learned
   * from Metadata/Finish.
   */
  readonly stream: <E, R>(
    request: GenerateRequest,
    call: Stream.Stream<StreamEvent, E, R>,
    site: Site
  ) => Stream.Stream<StreamEvent, E | RateLimited, R>
  /** Feed a snapshot (e.g. from a RateLimited error) so the limiter backs off until its reset. */
  readonly observe: (snapshot: RateLimitSnapshot) => Effect.Effect<void>
  /**
   * The fast path for composition layers (`Policy`), synchronous: a ticket when the request can go
   * now (capacity in every bucket, a free slot, nobody queued), `undefined` otherwise (then use
   * {@link generate}, which queues). A ticket holds a concurrency slot: release it with
   * {@link unsafeRelease} exactly once, even when the call is interrupted (take it in an
   * uninterruptible region).
   */
  readonly unsafeTryAdmit: (request: GenerateRequest, now: number) => LimiterTicket | undefined
  /** Frees the slot of a ticket and corrects the buckets with the call's outcome (usage, headers, 429). */
  readonly unsafeRelease: (ticket: LimiterTicket, exit: Exit.Exit<GenerateResponse, unknown>, now: number) => void
  /**
   * Callers waiting, calls in flight, and the requests / tokens available now in the RPM / TPM buckets
   * (configured or learned; `Infinity` when there is none; negative while a bucket is in debt).
   */
  readonly stats: Effect.Effect<{
    readonly queued: number
    readonly inFlight: number
    readonly requestTokens: number
    readonly tokenTokens: number
  }>
}

/**
 * A fast-path admission (see {@link RateLimiter.unsafeTryAdmit}). Opaque.
 *
 * @since 0.1.0
 * @category models
 */
export interface LimiterTicket {
  readonly _tag: "LimiterTicket"
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxQueue: 1000,
  maxWaitMs: 60_000,
  learnFromHeaders: true
} as const

/**
 * The estimated prompt tokens of a request (no tokenizer: `ceil(characters / 4)` per text, plus a few
 * tokens of framing per message, plus tool and schema JSON / 4). Corrected by real usage after the call.
 * Exposed for custom `estimateTokens` functions.
 *
 * @since 0.1.0
 * @category utils
 */
export const estimatePromptTokens: (request: GenerateRequest) => number = Estimate.estimatePromptTokens

type Dimension = "requests" | "tokens" | "inputTokens" | "outputTokens"

const DIMENSIONS: ReadonlyArray<Dimension> = ["requests", "tokens", "inputTokens", "outputTokens"]

/** One limit dimension: its bucket (configured, learned from headers, or none yet). */
interface Dim {
  readonly name: Dimension
  /** The configured per-minute limit (a ceiling for what headers teach), if any. */
  readonly configured: number | undefined
  bucket: Bucket.TokenBucket | undefined
}

/** What one request costs in each dimension (fixed when it asks, so the correction matches the charge). */
type Costs = { readonly [K in Dimension]: number }

interface Charge {
  readonly dim: Dimension
  readonly bucket: Bucket.TokenBucket
  readonly cost: number
}

interface Permit extends LimiterTicket {
  readonly charges: ReadonlyArray<Charge>
  released: boolean
  settled: boolean
}

interface Ticket {
  readonly costs: Costs
  /** Completed to make the waiter re-check (it became head, a slot freed, tokens were refunded). */
  wake: Deferred.Deferred<void> | undefined
}

type Decision =
  | { readonly _tag: "Admit"; readonly permit: Permit }
  | { readonly _tag: "Wait"; readonly wake: Deferred.Deferred<void>; readonly ms: number }
  | { readonly _tag: "Reject"; readonly reason: Reason; readonly waitMs: number; readonly detail: string }

type Reason = "queue_full" | "max_wait" | "deadline" | "concurrency"

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

const unsafeMake = (key: string, options: RateLimiterOptions, now: number): RateLimiter => {
  const maxConcurrency = options.maxConcurrency === undefined
    ? Number.POSITIVE_INFINITY
    : Math.max(1, Math.floor(options.maxConcurrency))
  const maxQueue = Math.max(0, Math.floor(options.maxQueue ?? defaults.maxQueue))
  const maxWaitMs = options.maxWait === undefined
    ? defaults.maxWaitMs
    : Math.max(0, millisOf(options.maxWait) ?? Number.POSITIVE_INFINITY)
  const learn = options.learnFromHeaders ?? defaults.learnFromHeaders
  const estimate = options.estimateTokens

  const dim = (name: Dimension, configured: number | undefined): Dim => ({
    name,
    configured,
    bucket: configured === undefined ? undefined : Bucket.make(configured, now)
  })
  const dims: { readonly [K in Dimension]: Dim } = {
    requests: dim("requests", options.requestsPerMinute),
    tokens: dim("tokens", options.tokensPerMinute),
    inputTokens: dim("inputTokens", undefined),
    outputTokens: dim("outputTokens", undefined)
  }
  const dimList: ReadonlyArray<Dim> = DIMENSIONS.map((name) => dims[name])

  /** The route is blocked (provider said `remaining: 0` or `retry-after`) until this clock time. */
  let blockedUntil = Number.NEGATIVE_INFINITY
  let inFlight = 0
  const queue: Array<Ticket> = []
  let lastSnapshot: RateLimitSnapshot | undefined

  const { wait: waitMetric, rejections: rejectionMetric } = limiterMetrics(key)

  const costsOf = (request: GenerateRequest): Costs => requestCosts(request, estimate)

  // ---- capacity (synchronous; every mutation of the state happens in one step) ----

  /** Milliseconds until the rate capacity for `costs` exists (0 = now). Concurrency not included. */
  const rateWait = (costs: Costs, at: number): number => {
    let wait = blockedUntil > at ? blockedUntil - at : 0
    for (const d of dimList) {
      if (d.bucket === undefined) continue
      const w = Bucket.waitFor(d.bucket, costs[d.name], at)
      if (w > wait) wait = w
    }
    return wait
  }

  /** The rate wait of `costs` behind the first `ahead` queued callers (an estimate: for fail-fast and hints). */
  const estimateWait = (costs: Costs, ahead: number, at: number): number => {
    let wait = blockedUntil > at ? blockedUntil - at : 0
    for (const d of dimList) {
      if (d.bucket === undefined) continue
      let before = 0
      for (let i = 0; i < ahead && i < queue.length; i++) before += Math.min(queue[i]!.costs[d.name], d.bucket.perMinute)
      const w = Bucket.waitBehind(d.bucket, before, costs[d.name], at)
      if (w > wait) wait = w
    }
    return wait
  }

  const admit = (costs: Costs): Permit => {
    let charges = EMPTY_CHARGES
    for (const d of dimList) {
      if (d.bucket === undefined) continue
      const cost = costs[d.name]
      Bucket.take(d.bucket, cost)
      // Every charge is kept, the request's too: a call the breaker refuses gives all of them back.
      if (charges === EMPTY_CHARGES) charges = []
      ;(charges as Array<Charge>).push({ dim: d.name, bucket: d.bucket, cost })
    }
    inFlight++
    return { _tag: "LimiterTicket", charges, released: false, settled: false }
  }

  const wakeHead = (): void => {
    const head = queue[0]
    if (head?.wake !== undefined) {
      Deferred.unsafeDone(head.wake, Exit.void)
      head.wake = undefined
    }
  }

  /** Removes a ticket that gave up (rejected or interrupted) and lets the next one re-check. */
  const leave = (ticket: Ticket): void => {
    const index = queue.indexOf(ticket)
    if (index < 0) return
    queue.splice(index, 1)
    if (index === 0) wakeHead()
  }

  const release = (permit: Permit): void => {
    if (permit.released) return
    permit.released = true
    inFlight--
    wakeHead()
  }

  /** Corrects the token buckets with the real usage (a refund when the estimate was high, debt when low). */
  const settle = (permit: Permit, usage: Usage, at: number): void => {
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
    if (refunded) wakeHead()
  }

  /** Gives back every charge of a call that never reached the provider. */
  const refund = (permit: Permit, at: number): void => {
    if (permit.settled) return
    permit.settled = true
    for (const charge of permit.charges) Bucket.give(charge.bucket, charge.cost, at)
    wakeHead()
  }

  const block = (until: number): void => {
    if (until > blockedUntil) blockedUntil = until
  }

  const learnWindow = (d: Dim, window: RateLimitWindow, observedAt: number, at: number): void => {
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

  const learnSnapshot = (snapshot: RateLimitSnapshot, at: number): void => {
    if (snapshot === lastSnapshot) return
    lastSnapshot = snapshot
    if (snapshot.retryAfterMs !== undefined) block(snapshot.observedAt + snapshot.retryAfterMs)
    const spent = spentWindowsResetMs(snapshot)
    if (spent !== undefined) block(snapshot.observedAt + spent)
    // Anthropic's `tokens` window is whichever of its input / output windows is most restrictive, not a
    // total: when the split windows are present, it only blocks (remaining 0, above); they teach the buckets.
    const split = snapshot.inputTokens !== undefined || snapshot.outputTokens !== undefined
    for (const d of dimList) {
      const window = snapshot[d.name]
      if (window !== undefined && !(split && d.name === "tokens")) learnWindow(d, window, snapshot.observedAt, at)
    }
  }

  /** A provider's 429 that passed through us: back off until its reset / Retry-After. */
  const learnFromFailure = (error: unknown, at: number): void => {
    if (!(error instanceof RateLimited) || error.providerType === "client_rate_limit") return
    if (error.rateLimit !== undefined) learnSnapshot(error.rateLimit, at)
    if (error.retryAfterMs !== undefined && error.rateLimit?.retryAfterMs === undefined) block(at + error.retryAfterMs)
  }

  // ---- waiting ----

  const rejection = (site: Site, reason: Reason, waitMs: number, detail: string): Effect.Effect<never, RateLimited> =>
    Effect.zipRight(
      Metric.increment(rejectionMetric(reason)),
      Effect.fail(clientRateLimited(site, detail, waitMs))
    )

  const budgetReason = (deadlineLeft: number): Reason => (deadlineLeft < maxWaitMs ? "deadline" : "max_wait")

  /** One look at the state for a queued ticket: go, wait (how long), or give up. Synchronous. */
  const decide = (ticket: Ticket, at: number, until: number, reason: Reason): Decision => {
    const left = until - at
    const index = queue.indexOf(ticket)
    if (index === 0) {
      const wait = rateWait(ticket.costs, at)
      if (wait === 0 && inFlight < maxConcurrency) {
        queue.shift()
        const permit = admit(ticket.costs)
        // The next caller may be able to go too (capacity for several, or only FIFO order held it).
        wakeHead()
        return { _tag: "Admit", permit }
      }
      if (wait > left || (wait === 0 && left <= 0)) {
        leave(ticket)
        return wait === 0
          ? { _tag: "Reject", reason: "concurrency", waitMs: Number.NaN, detail: `no concurrency slot freed in time (${maxConcurrency} in flight)` }
          : { _tag: "Reject", reason, waitMs: wait, detail: `capacity in ${formatMs(wait)} exceeds the ${reason === "deadline" ? "deadline" : "maxWait"} (${formatMs(left)} left)` }
      }
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      ticket.wake = wake
      return { _tag: "Wait", wake, ms: wait > 0 ? Math.min(wait, left) : left }
    }
    if (left <= 0) {
      const waitMs = estimateWait(ticket.costs, Math.max(0, index), at)
      leave(ticket)
      return { _tag: "Reject", reason, waitMs, detail: `still queued behind ${index} callers after the ${reason === "deadline" ? "deadline" : "maxWait"}` }
    }
    const wake = Deferred.unsafeMake<void>(FiberId.none)
    ticket.wake = wake
    return { _tag: "Wait", wake, ms: left }
  }

  const sleepOrWake = (wake: Deferred.Deferred<void>, ms: number): Effect.Effect<void> =>
    Number.isFinite(ms)
      ? Effect.raceFirst(Deferred.await(wake), Effect.sleep(Duration.millis(Math.max(0, ms))))
      : Deferred.await(wake)

  type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

  const waitInQueue = (
    ticket: Ticket,
    since: number,
    until: number,
    reason: Reason,
    site: Site,
    restore: Restore
  ): Effect.Effect<Permit, RateLimited> =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => {
      const decision = decide(ticket, at, until, reason)
      switch (decision._tag) {
        case "Admit":
          return Effect.as(Metric.update(waitMetric, at - since), decision.permit)
        case "Reject":
          return rejection(site, decision.reason, decision.waitMs, decision.detail)
        case "Wait":
          return Effect.zipRight(
            Effect.onInterrupt(restore(sleepOrWake(decision.wake, decision.ms)), () => Effect.sync(() => leave(ticket))),
            waitInQueue(ticket, since, until, reason, site, restore)
          )
      }
    })

  /** The slow path: fail fast if the wait cannot fit, else join the queue. */
  const enqueue = (costs: Costs, at: number, site: Site, restore: Restore): Effect.Effect<Permit, RateLimited> =>
    Effect.flatMap(Deadline.remaining, (deadlineLeft) => {
      const budget = Math.min(maxWaitMs, deadlineLeft)
      const reason = budgetReason(deadlineLeft)
      const expected = estimateWait(costs, queue.length, at)
      if (queue.length >= maxQueue) {
        return rejection(
          site,
          "queue_full",
          expected,
          maxQueue === 0 ? "no capacity now and queueing is off (maxQueue 0)" : `queue full (${queue.length} callers waiting)`
        )
      }
      if (expected > budget) {
        return rejection(
          site,
          reason,
          expected,
          `capacity in ${formatMs(expected)} exceeds the ${reason === "deadline" ? "deadline" : "maxWait"} (${formatMs(budget)})`
        )
      }
      const ticket: Ticket = { costs, wake: undefined }
      queue.push(ticket)
      return waitInQueue(ticket, at, at + budget, reason, site, restore)
    })

  /** The happy path: capacity and a slot at once, when nobody is queued. `undefined` = go to the queue. */
  const tryAdmit = (costs: Costs, at: number): Permit | undefined =>
    queue.length === 0 && inFlight < maxConcurrency && rateWait(costs, at) === 0 ? admit(costs) : undefined

  // ---- calls ----

  const onResponse = (permit: Permit, response: GenerateResponse, at: number): void => {
    settle(permit, response.usage, at)
    if (learn && response.rateLimit !== undefined) learnSnapshot(response.rateLimit, at)
  }

  /** After a call: free the slot, correct usage, learn the headers (or the provider's 429). */
  const onExit = (permit: Permit, exit: Exit.Exit<GenerateResponse, unknown>, at: number): void => {
    release(permit)
    if (Exit.isSuccess(exit)) return onResponse(permit, exit.value, at)
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) onFailure(permit, failure.value, at)
  }

  /** A call (or stream) failed: a breaker refusal below gives everything back; a provider 429 teaches. */
  const onFailure = (permit: Permit, error: unknown, at: number): void => {
    // The breaker refused the call: nothing was sent, so nothing was spent.
    if (isTagged(error, "CircuitOpen")) return refund(permit, at)
    if (learn) learnFromFailure(error, at)
  }

  const generate = <E, R>(
    request: GenerateRequest,
    call: Effect.Effect<GenerateResponse, E, R>,
    site: Site
  ): Effect.Effect<GenerateResponse, E | RateLimited, R> =>
    Effect.clockWith((clock) =>
      Effect.uninterruptibleMask((restore) => {
        // Uninterruptible from taking the permit until the call runs: the slot is always released.
        const run = (permit: Permit) =>
          Effect.flatMap(Effect.exit(restore(call)), (exit) => {
            onExit(permit, exit, clock.unsafeCurrentTimeMillis())
            return exit
          })
        const at = clock.unsafeCurrentTimeMillis()
        const costs = costsOf(request)
        const permit = tryAdmit(costs, at)
        return permit !== undefined ? run(permit) : Effect.flatMap(enqueue(costs, at, site, restore), run)
      })
    )

  const stream = <E, R>(
    request: GenerateRequest,
    call: Stream.Stream<StreamEvent, E, R>,
    site: Site
  ): Stream.Stream<StreamEvent, E | RateLimited, R> =>
    Stream.unwrapScoped(Effect.clockWith((clock) =>
      Effect.uninterruptibleMask((restore) => {
        // The stream's scope closes when it ends (success, failure, interruption, consumer stopping early).
        const run = (permit: Permit) =>
          Effect.as(Effect.addFinalizer(() => Effect.sync(() => release(permit))), guard(permit, call, clock))
        const at = clock.unsafeCurrentTimeMillis()
        const costs = costsOf(request)
        const permit = tryAdmit(costs, at)
        return permit !== undefined ? run(permit) : Effect.flatMap(enqueue(costs, at, site, restore), run)
      })
    ))

  /** Learns from `Metadata` / `Finish` (usage correction) and from a provider 429 ending the stream. */
  const guard = <E, R>(permit: Permit, call: Stream.Stream<StreamEvent, E, R>, clock: Clock.Clock) => {
    const events = Stream.mapChunks(call, (chunk) => {
      for (const event of chunk) {
        if (event._tag === "Finish") onResponse(permit, event.response, clock.unsafeCurrentTimeMillis())
        else if (learn && event._tag === "Metadata" && event.rateLimit !== undefined) {
          learnSnapshot(event.rateLimit, clock.unsafeCurrentTimeMillis())
        }
      }
      return chunk
    })
    return Stream.tapError(events, (error) => Effect.sync(() => onFailure(permit, error, clock.unsafeCurrentTimeMillis())))
  }

  const observe = (snapshot: RateLimitSnapshot): Effect.Effect<void> =>
    Effect.map(Clock.currentTimeMillis, (at) => learnSnapshot(snapshot, at))

  const availableIn = (d: Dim, at: number): number => {
    if (d.bucket === undefined) return Number.POSITIVE_INFINITY
    Bucket.refill(d.bucket, at)
    return d.bucket.available
  }

  const stats = Effect.map(Clock.currentTimeMillis, (at) => ({
    queued: queue.length,
    inFlight,
    requestTokens: availableIn(dims.requests, at),
    tokenTokens: availableIn(dims.tokens, at)
  }))

  return {
    key,
    generate,
    stream,
    observe,
    stats,
    unsafeTryAdmit: (request, now) => tryAdmit(costsOf(request), now),
    // Tickets are only ever made by `admit` (as `Permit`s).
    unsafeRelease: (ticket, exit, now) => onExit(ticket as Permit, exit, now)
  }
}

/**
 * Builds a limiter (buckets full at the current `Clock` time). Prefer the {@link RateLimiters}
 * registry, which shares one limiter per key across callers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (key: string, options: RateLimiterOptions): Effect.Effect<RateLimiter> =>
  Effect.map(Clock.currentTimeMillis, (now) => unsafeMake(key, options, now))

/**
 * The registry: one limiter per key (`route/model` in `Policy`), shared by every caller of that key.
 * The options of the first `get` of a key win.
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimiters extends Context.Tag("effect-llm-resilience/RateLimiters")<RateLimiters, {
  readonly get: (key: string, options: RateLimiterOptions) => Effect.Effect<RateLimiter>
}>() {}

/**
 * The registry layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RateLimiters> = Layer.sync(RateLimiters, () => {
  const limiters = new Map<string, RateLimiter>()
  return {
    get: (key, options) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          let limiter = limiters.get(key)
          if (limiter === undefined) {
            limiter = unsafeMake(key, options, now)
            limiters.set(key, limiter)
          }
          return limiter
        }))
  }
})

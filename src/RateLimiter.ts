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
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import * as Deadline from "./Deadline.js"
import type { RateLimited } from "./Errors.js"
import * as Estimate from "./internal/estimateTokens.js"
import { clientRateLimited, formatMs } from "./internal/limiter.js"
import { millisOf } from "./internal/timer.js"
import { type Costs, LimiterCore, type Permit, type Reason, type Ticket } from "./policy/limiterCore.js"
import type { GenerateRequest, GenerateResponse, StreamEvent } from "./Provider.js"
import type { RateLimitSnapshot } from "./RateLimitSnapshot.js"

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

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

const rejection = (
  core: LimiterCore,
  site: Site,
  reason: Reason,
  waitMs: number,
  detail: string
): Effect.Effect<never, RateLimited> =>
  Effect.zipRight(
    Metric.increment(core.rejectionMetric(reason)),
    Effect.fail(clientRateLimited(site, detail, waitMs))
  )

const sleepOrWake = (wake: Deferred.Deferred<void>, ms: number): Effect.Effect<void> =>
  Number.isFinite(ms)
    ? Effect.raceFirst(Deferred.await(wake), Effect.sleep(Duration.millis(Math.max(0, ms))))
    : Deferred.await(wake)

const waitInQueue = (
  core: LimiterCore,
  ticket: Ticket,
  since: number,
  until: number,
  reason: Reason,
  site: Site,
  restore: Restore
): Effect.Effect<Permit, RateLimited> =>
  Effect.flatMap(Clock.currentTimeMillis, (at) => {
    const decision = core.decide(ticket, at, until, reason)
    switch (decision._tag) {
      case "Admit":
        return Effect.as(Metric.update(core.waitMetric, at - since), decision.permit)
      case "Reject":
        return rejection(core, site, decision.reason, decision.waitMs, decision.detail)
      case "Wait":
        return Effect.zipRight(
          Effect.onInterrupt(restore(sleepOrWake(decision.wake, decision.ms)), () => Effect.sync(() => core.leave(ticket))),
          waitInQueue(core, ticket, since, until, reason, site, restore)
        )
    }
  })

/** The slow path: fail fast if the wait cannot fit, else join the queue. */
const enqueue = (
  core: LimiterCore,
  costs: Costs,
  at: number,
  site: Site,
  restore: Restore
): Effect.Effect<Permit, RateLimited> =>
  Effect.flatMap(Deadline.remaining, (deadlineLeft) => {
    const { maxQueue, queue } = core
    const budget = Math.min(core.maxWaitMs, deadlineLeft)
    const reason = core.budgetReason(deadlineLeft)
    const expected = core.estimateWait(costs, queue.length, at)
    if (queue.length >= maxQueue) {
      return rejection(
        core,
        site,
        "queue_full",
        expected,
        maxQueue === 0 ? "no capacity now and queueing is off (maxQueue 0)" : `queue full (${queue.length} callers waiting)`
      )
    }
    if (expected > budget) {
      return rejection(
        core,
        site,
        reason,
        expected,
        `capacity in ${formatMs(expected)} exceeds the ${reason === "deadline" ? "deadline" : "maxWait"} (${formatMs(budget)})`
      )
    }
    const ticket: Ticket = { costs, wake: undefined }
    queue.push(ticket)
    return waitInQueue(core, ticket, at, at + budget, reason, site, restore)
  })

const generateWith = <E, R>(
  core: LimiterCore,
  request: GenerateRequest,
  call: Effect.Effect<GenerateResponse, E, R>,
  site: Site
): Effect.Effect<GenerateResponse, E | RateLimited, R> =>
  Effect.clockWith((clock) =>
    Effect.uninterruptibleMask((restore) => {
      // Uninterruptible from taking the permit until the call runs: the slot is always released.
      const run = (permit: Permit) =>
        Effect.flatMap(Effect.exit(restore(call)), (exit) => {
          core.onExit(permit, exit, clock.unsafeCurrentTimeMillis())
          return exit
        })
      const at = clock.unsafeCurrentTimeMillis()
      const costs = core.costsOf(request)
      const permit = core.tryAdmit(costs, at)
      return permit !== undefined ? run(permit) : Effect.flatMap(enqueue(core, costs, at, site, restore), run)
    })
  )

const streamWith = <E, R>(
  core: LimiterCore,
  request: GenerateRequest,
  call: Stream.Stream<StreamEvent, E, R>,
  site: Site
): Stream.Stream<StreamEvent, E | RateLimited, R> =>
  Stream.unwrapScoped(Effect.clockWith((clock) =>
    Effect.uninterruptibleMask((restore) => {
      // The stream's scope closes when it ends (success, failure, interruption, consumer stopping early).
      const run = (permit: Permit) =>
        Effect.as(Effect.addFinalizer(() => Effect.sync(() => core.release(permit))), guard(core, permit, call, clock))
      const at = clock.unsafeCurrentTimeMillis()
      const costs = core.costsOf(request)
      const permit = core.tryAdmit(costs, at)
      return permit !== undefined ? run(permit) : Effect.flatMap(enqueue(core, costs, at, site, restore), run)
    })
  ))

/** Learns from `Metadata` / `Finish` (usage correction) and from a provider 429 ending the stream. */
const guard = <E, R>(core: LimiterCore, permit: Permit, call: Stream.Stream<StreamEvent, E, R>, clock: Clock.Clock) => {
  const events = Stream.mapChunks(call, (chunk) => {
    for (const event of chunk) {
      if (event._tag === "Finish") core.onResponse(permit, event.response, clock.unsafeCurrentTimeMillis())
      else if (core.learn && event._tag === "Metadata" && event.rateLimit !== undefined) {
        core.learnSnapshot(event.rateLimit, clock.unsafeCurrentTimeMillis())
      }
    }
    return chunk
  })
  return Stream.tapError(events, (error) => Effect.sync(() => core.onFailure(permit, error, clock.unsafeCurrentTimeMillis())))
}

const unsafeMake = (key: string, options: RateLimiterOptions, now: number): RateLimiter => {
  const core = new LimiterCore(key, {
    maxConcurrency: options.maxConcurrency === undefined
      ? Number.POSITIVE_INFINITY
      : Math.max(1, Math.floor(options.maxConcurrency)),
    maxQueue: Math.max(0, Math.floor(options.maxQueue ?? defaults.maxQueue)),
    maxWaitMs: options.maxWait === undefined
      ? defaults.maxWaitMs
      : Math.max(0, millisOf(options.maxWait) ?? Number.POSITIVE_INFINITY),
    learn: options.learnFromHeaders ?? defaults.learnFromHeaders,
    estimate: options.estimateTokens,
    requestsPerMinute: options.requestsPerMinute,
    tokensPerMinute: options.tokensPerMinute
  }, now)

  return {
    key,
    generate: (request, call, site) => generateWith(core, request, call, site),
    stream: (request, call, site) => streamWith(core, request, call, site),
    observe: (snapshot) => Effect.map(Clock.currentTimeMillis, (at) => core.learnSnapshot(snapshot, at)),
    stats: Effect.map(Clock.currentTimeMillis, (at) => ({
      queued: core.queue.length,
      inFlight: core.inFlight,
      requestTokens: core.availableIn(core.dims.requests, at),
      tokenTokens: core.availableIn(core.dims.tokens, at)
    })),
    unsafeTryAdmit: (request, now) => core.tryAdmit(core.costsOf(request), now),
    // Tickets are only ever made by `admit` (as `Permit`s).
    unsafeRelease: (ticket, exit, now) => core.onExit(ticket as Permit, exit, now)
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

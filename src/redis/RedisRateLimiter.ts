/**
 * A `RateLimiters` registry whose buckets live in Redis, so every worker process that shares one API
 * key (one org's quota) draws from one requests-per-minute and one tokens-per-minute budget, and one
 * worker's 429 holds all of them back.
 *
 * Per route key (`route/model` in `Policy`), one Redis hash holds the buckets — configured or learned
 * from the provider's headers (RPM, TPM, and Anthropic's input / output token windows) — and a shared
 * "cooldown until". Each admission is one Lua script (refill and take every cost, or take nothing and
 * answer how long to wait), atomic in Redis and timed by Redis' own `TIME`, so workers with skewed
 * clocks agree. After the call one more script corrects the token buckets with the real usage and
 * applies what the response's rate-limit headers said; a provider 429 writes the cooldown every worker
 * then honours. The concurrency bulkhead and the FIFO queue of waiting callers stay per process.
 *
 * Redis down, slow or erroring never becomes a defect and never blocks a call for longer than
 * `commandTimeout`: with `onRedisError: "fail-open"` (the default) the call goes through a local
 * in-process limiter with the same options (times `fallbackShare`), whose buckets start from what this
 * worker was already granted, not full (a warning is logged once per outage), with `"fail-closed"`
 * it fails with `RateLimited` (`providerType: "client_rate_limit"`, `providerCode:
 * "shared_state_unavailable"`). After a failure Redis is left alone for `retryRedisAfter`.
 *
 * See docs/policies/shared-state.md.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
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
import type { Redis } from "ioredis"
import * as Deadline from "../Deadline.js"
import { RateLimited } from "../Errors.js"
import { clientRateLimited, formatMs, positiveOr } from "../internal/limiter.js"
import * as Metrics from "../internal/metrics.js"
import { isUnsent } from "../policy/breakerCore.js"
import type { GenerateRequest, GenerateResponse, StreamEvent, Usage } from "../Provider.js"
import * as RateLimiterModule from "../RateLimiter.js"
import { type RateLimiter, type RateLimiterOptions, RateLimiters, type Site } from "../RateLimiter.js"
import type { RateLimitSnapshot } from "../RateLimitSnapshot.js"
import * as Connection from "./internal/connection.js"
import {
  type Admission,
  type Costs,
  type Grant,
  LimiterState,
  type Outcome,
  type Reason,
  SHARED_STATE_UNAVAILABLE,
  type Shared,
  type Waiter
} from "./internal/limiterState.js"
import * as Guard from "./internal/guard.js"
import * as OwnSpend from "./internal/ownSpend.js"
import * as Scripts from "./internal/scripts.js"
import { make as makeClient, RedisClient, type RedisConnectionOptions } from "./RedisClient.js"

/**
 * What to do with a call when Redis cannot be asked.
 *
 * - `fail-open`: admit it through a local, in-process limiter with the same options (the quota is then
 *   enforced per process, not per key, until Redis answers again); a warning is logged once per outage.
 *   Its buckets start from what this worker already spent — `max(0, fallbackShare · limit − granted)`,
 *   refilled at `fallbackShare · limit` per minute — never full.
 * - `fail-closed`: fail it at once with `RateLimited` (`providerCode: "shared_state_unavailable"`,
 *   `retryAfterMs` = `retryRedisAfter`), never sending a request the shared budget did not grant.
 *
 * @since 0.1.0
 * @category models
 */
export type OnRedisError = "fail-open" | "fail-closed"

/**
 * Options of the Redis-backed registry (the limits themselves are each limiter's `RateLimiterOptions`,
 * as with the local registry — every worker must configure the same limits for a key).
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisRateLimiterOptions {
  /** Prefix of every Redis key (`<prefix>ratelimit:{<key>}`). Default `llm-resilience:`. */
  readonly prefix?: string | undefined
  /** Default `fail-open`. */
  readonly onRedisError?: OnRedisError | undefined
  /** The longest a Redis command may take before it counts as a Redis failure. Default 500 ms. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** After a Redis failure, go straight to `onRedisError` for this long before asking Redis again. Default 1 second. */
  readonly retryRedisAfter?: Duration.DurationInput | undefined
  /**
   * The share of the configured RPM / TPM the local fallback limiter of each process gets while Redis
   * is unreachable (fail-open). 1 (the default) lets every process use the whole limit; `1 / N` with N
   * workers keeps the fleet under the limit during an outage. The fallback starts from what this
   * process was already granted (by Redis or by the fallback) against that share, never below zero and
   * refilled at the share's rate — so it is full only after a minute without grants.
   */
  readonly fallbackShare?: number | undefined
}

/**
 * The registry's options plus where Redis is, for the layers that open their own connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisRateLimiterLayerOptions extends RedisRateLimiterOptions, RedisConnectionOptions {}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  prefix: "llm-resilience:",
  onRedisError: "fail-open",
  commandTimeoutMs: 500,
  retryRedisAfterMs: 1_000,
  fallbackShare: 1
} as const satisfies {
  readonly prefix: string
  readonly onRedisError: OnRedisError
  readonly commandTimeoutMs: number
  readonly retryRedisAfterMs: number
  readonly fallbackShare: number
}

/**
 * The Redis key of a limiter's state. The key is wrapped in a hash tag so it maps to one slot in a
 * Redis Cluster.
 *
 * @since 0.1.0
 * @category utils
 */
export const stateKey = (prefix: string, key: string): string => `${prefix}ratelimit:{${key}}`

const LOCAL: Admission = { _tag: "Local" }

const errorsMetric = Metrics.counter(
  "llm_ratelimiter_shared_state_errors_total",
  "Redis commands of the shared rate limiter that failed or timed out",
  {}
)

type Reply = { readonly _tag: "Admitted"; readonly charged: number } | { readonly _tag: "Wait"; readonly ms: number }

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

const parseAdmit = (reply: unknown): Reply | undefined => {
  if (!Array.isArray(reply) || reply.length < 3) return undefined
  const [admitted, wait, mask] = reply as ReadonlyArray<unknown>
  if (typeof admitted !== "number" || typeof wait !== "number" || typeof mask !== "number") return undefined
  return admitted === 1 ? { _tag: "Admitted", charged: mask } : { _tag: "Wait", ms: wait < 0 ? Number.POSITIVE_INFINITY : wait }
}

const parseAvailable = (value: unknown): number | undefined => {
  if (value === "inf") return Number.POSITIVE_INFINITY
  const n = typeof value === "string" ? Number(value) : Number.NaN
  return Number.isNaN(n) ? undefined : n
}

/** What a provider 429 passing through teaches (client-side rejections teach nothing). */
const failureLesson = (error: unknown): { readonly snapshot: RateLimitSnapshot | undefined; readonly retryAfterMs: number | undefined } | undefined => {
  if (!(error instanceof RateLimited) || error.providerType === "client_rate_limit") return undefined
  return {
    snapshot: error.rateLimit,
    retryAfterMs: error.rateLimit?.retryAfterMs === undefined ? error.retryAfterMs : undefined
  }
}

const runScript = Guard.runScript

// ---- the local bulkhead and queue ----

const rejection = (s: LimiterState, site: Site, reason: Reason, waitMs: number, detail: string): Effect.Effect<never, RateLimited> =>
  Effect.zipRight(
    Metric.increment(s.rejectionMetric(reason)),
    Effect.fail(clientRateLimited(site, detail, waitMs, reason === SHARED_STATE_UNAVAILABLE ? SHARED_STATE_UNAVAILABLE : undefined))
  )

const unavailable = (s: LimiterState, site: Site, detail: string): Effect.Effect<never, RateLimited> =>
  rejection(
    s,
    site,
    SHARED_STATE_UNAVAILABLE,
    s.shared.retryRedisAfterMs,
    `the shared rate-limit state (Redis) is unavailable (${detail}) and onRedisError is "fail-closed"`
  )

/**
 * Before the fallback admits anything after Redis grants: lower its buckets to what this worker has
 * left of its share (`remaining` lowers a bucket, never raises it), so it does not start full.
 */
const seedLocal = (s: LimiterState, at: number): Effect.Effect<void> =>
  // Uninterruptible: the flag is cleared only together with the fallback being lowered.
  Effect.uninterruptible(Effect.suspend(() => {
    if (!s.unseeded) return Effect.void
    s.unseeded = false
    const [requests, tokens] = OwnSpend.available(s.spend, at)
    return s.local.observe({
      observedAt: at,
      ...(requests !== undefined ? { requests: { remaining: requests } } : {}),
      ...(tokens !== undefined ? { tokens: { remaining: tokens } } : {})
    })
  }))

/** Asks Redis for the capacity of `costs` (one script); never fails. */
const tryShared = (s: LimiterState, costs: Costs): Effect.Effect<Outcome> =>
  Effect.flatMap(runScript(s.shared, Scripts.admit, s.hashKey, [...s.configuredArgs, ...costs]), (reply) =>
    Effect.flatMap(Clock.currentTimeMillis, (at): Effect.Effect<Outcome> => {
      const parsed = Option.isSome(reply) ? parseAdmit(reply.value) : undefined
      if (parsed?._tag === "Admitted") {
        s.unseeded = true
        return Effect.succeed({ _tag: "Shared", charged: parsed.charged, taken: OwnSpend.take(s.spend, costs[0], costs[1], at) })
      }
      if (parsed !== undefined) return Effect.succeed(parsed)
      return s.shared.failOpen
        ? Effect.as(seedLocal(s, at), LOCAL)
        : Effect.succeed({ _tag: "Unavailable", detail: s.shared.health.lastError || "unexpected reply" })
    }))

const sleepOrWake = (wake: Deferred.Deferred<void>, ms: number): Effect.Effect<void> =>
  Number.isFinite(ms)
    ? Effect.raceFirst(Deferred.await(wake), Effect.sleep(Duration.millis(Math.max(0, ms))))
    : Deferred.await(wake)

/** A queued caller: only the head asks Redis; the others wait for their turn. */
const waitInQueue = (
  s: LimiterState,
  waiter: Waiter,
  since: number,
  until: number,
  reason: Reason,
  site: Site,
  restore: Restore,
  knownWait: number
): Effect.Effect<Admission, RateLimited> =>
  Effect.flatMap(Clock.currentTimeMillis, (at) => {
    const left = until - at
    const index = s.queue.indexOf(waiter)
    if (index === 0 && knownWait <= 0 && s.inFlight < s.maxConcurrency) {
      s.inFlight++ // reserved while Redis is asked
      const asked = Effect.onInterrupt(restore(tryShared(s, waiter.costs)), () =>
        Effect.sync(() => {
          s.release()
          s.leave(waiter)
        }))
      return Effect.flatMap(asked, (outcome): Effect.Effect<Admission, RateLimited> => {
        switch (outcome._tag) {
          case "Shared":
          case "Local":
            s.queue.shift()
            s.wakeHead("turn")
            return Effect.as(Metric.update(s.waitMetric, at - since), outcome)
          case "Unavailable":
            s.release()
            s.leave(waiter)
            return unavailable(s, site, outcome.detail)
          case "Wait": {
            s.release()
            if (outcome.ms > left) {
              s.leave(waiter)
              return rejection(s, site, reason, outcome.ms, `capacity in ${formatMs(outcome.ms)} exceeds the ${s.whyLimit(reason)} (${formatMs(left)} left)`)
            }
            return waitInQueue(s, waiter, since, until, reason, site, restore, outcome.ms)
          }
        }
      })
    }
    if (left <= 0) {
      s.leave(waiter)
      return index === 0
        ? rejection(s, site, "concurrency", Number.NaN, `no concurrency slot freed in time (${s.maxConcurrency} in flight)`)
        : rejection(s, site, reason, Number.NaN, `still queued behind ${index} callers after the ${s.whyLimit(reason)}`)
    }
    const wake = Deferred.unsafeMake<void>(FiberId.none)
    waiter.wake = wake
    waiter.blockedOn = index > 0 ? "turn" : knownWait > 0 ? "rate" : "slot"
    const ms = index === 0 && knownWait > 0 ? Math.min(knownWait, left) : left
    return Effect.zipRight(
      Effect.onInterrupt(restore(sleepOrWake(wake, ms)), () => Effect.sync(() => s.leave(waiter))),
      waitInQueue(s, waiter, since, until, reason, site, restore, 0)
    )
  })

/** Capacity for `costs`: a slot here and the shared budget in Redis (or the local fallback). */
const admit = (s: LimiterState, costs: Costs, site: Site, restore: Restore): Effect.Effect<Admission, RateLimited> =>
  Effect.flatMap(Effect.zip(Clock.currentTimeMillis, Deadline.remaining), ([at, deadlineLeft]) => {
    const budget = Math.min(s.maxWaitMs, deadlineLeft)
    const reason: Reason = deadlineLeft < s.maxWaitMs ? "deadline" : "max_wait"
    const until = at + budget
    const enqueue = (knownWait: number): Effect.Effect<Admission, RateLimited> => {
      if (s.queue.length >= s.maxQueue) {
        return rejection(
          s,
          site,
          "queue_full",
          knownWait,
          s.maxQueue === 0 ? "no capacity now and queueing is off (maxQueue 0)" : `queue full (${s.queue.length} callers waiting)`
        )
      }
      if (knownWait > budget) {
        return rejection(s, site, reason, knownWait, `capacity in ${formatMs(knownWait)} exceeds the ${s.whyLimit(reason)} (${formatMs(budget)})`)
      }
      const waiter: Waiter = { costs, wake: undefined, blockedOn: "turn" }
      s.queue.push(waiter)
      return waitInQueue(s, waiter, at, until, reason, site, restore, s.queue.length === 1 ? knownWait : 0)
    }
    if (s.queue.length > 0 || s.inFlight >= s.maxConcurrency) return enqueue(0)
    // Nobody waiting here and a free slot: ask Redis straight away (the slot is reserved meanwhile).
    s.inFlight++
    const asked = Effect.onInterrupt(restore(tryShared(s, costs)), () => Effect.sync(() => s.release()))
    return Effect.flatMap(asked, (outcome): Effect.Effect<Admission, RateLimited> => {
      switch (outcome._tag) {
        case "Shared":
        case "Local":
          return Effect.succeed(outcome)
        case "Unavailable":
          s.release()
          return unavailable(s, site, outcome.detail)
        case "Wait":
          s.release()
          return enqueue(outcome.ms)
      }
    })
  })

// ---- after a call: corrections and lessons ----

/**
 * Writes the call's corrections and lessons to Redis (never fails: a failure is logged and marks
 * Redis down) and mirrors the lessons into the local fallback limiter.
 */
const settle = (
  s: LimiterState,
  grant: Grant,
  usage: Usage | undefined,
  newSnapshot: RateLimitSnapshot | undefined,
  errorRetryAfterMs: number | undefined,
  always = false,
  refundAll = false
): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    // This worker's own spend follows the same corrections (the fallback does not see them: unseeded).
    const spendChanged = refundAll
      ? OwnSpend.refund(s.spend, grant.taken, now)
      : usage !== undefined && OwnSpend.correct(s.spend, grant.taken, usage.totalTokens, now)
    if (spendChanged) s.unseeded = true
    const snapshot = (s.learn || always) && newSnapshot !== undefined && newSnapshot !== s.lastSnapshot ? newSnapshot : undefined
    if (snapshot !== undefined) s.lastSnapshot = snapshot
    const retryAfterMs = s.learn || always ? errorRetryAfterMs : undefined
    const mirror = snapshot !== undefined
      ? s.local.observe(snapshot)
      : retryAfterMs !== undefined
      ? s.local.observe({ retryAfterMs, observedAt: now })
      : Effect.void
    const plan = s.planUpdate(grant.costs, grant.charged, usage, snapshot, retryAfterMs, now, refundAll)
    if (plan === undefined) return mirror
    return Effect.zipRight(
      mirror,
      Effect.map(runScript(s.shared, Scripts.update, s.hashKey, plan.args), (reply) => {
        if (plan.refund && Option.isSome(reply)) s.wakeHead("rate")
      })
    )
  })

const afterExit = (s: LimiterState, grant: Grant, exit: Exit.Exit<GenerateResponse, unknown>): Effect.Effect<void> => {
  if (Exit.isSuccess(exit)) return settle(s, grant, exit.value.usage, exit.value.rateLimit, undefined)
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) ? afterFailure(s, grant, failure.value) : Effect.void
}

/** A call (or stream) failed: a refusal below gives everything back; a provider 429 teaches. */
const afterFailure = (s: LimiterState, grant: Grant, error: unknown): Effect.Effect<void> => {
  // The breaker, the route's wire format or a spend budget refused the call: nothing was sent, so
  // nothing was spent.
  if (isTagged(error, "CircuitOpen") || isUnsent(error)) return settle(s, grant, undefined, undefined, undefined, false, true)
  const lesson = failureLesson(error)
  return lesson === undefined ? Effect.void : settle(s, grant, undefined, lesson.snapshot, lesson.retryAfterMs)
}

// ---- calls the fallback admits: this worker's own spend too ----

/** Corrects the own spend of a call the fallback admitted (the fallback corrects its own buckets). */
const correctLocal = (s: LimiterState, taken: OwnSpend.Taken, exit: Exit.Exit<GenerateResponse, unknown>): Effect.Effect<void> =>
  Effect.map(Clock.currentTimeMillis, (at) => {
    if (Exit.isSuccess(exit)) {
      OwnSpend.correct(s.spend, taken, exit.value.usage.totalTokens, at)
      return
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure) && (isTagged(failure.value, "CircuitOpen") || isUnsent(failure.value))) OwnSpend.refund(s.spend, taken, at)
  })

/** `call`, charging this worker's own spend when it runs (i.e. once the fallback admitted it). */
const spentLocally = <E, R>(
  s: LimiterState,
  costs: Costs,
  call: Effect.Effect<GenerateResponse, E, R>
): Effect.Effect<GenerateResponse, E, R> =>
  Effect.flatMap(Clock.currentTimeMillis, (at) => {
    const taken = OwnSpend.take(s.spend, costs[0], costs[1], at)
    return Effect.onExit(call, (exit) => correctLocal(s, taken, exit))
  })

/** The same for a stream: charged when it starts, corrected by its `Finish` (or refunded on `CircuitOpen`). */
const spentLocallyStream = <E, R>(
  s: LimiterState,
  costs: Costs,
  call: Stream.Stream<StreamEvent, E, R>
): Stream.Stream<StreamEvent, E, R> =>
  Stream.unwrap(Effect.map(Clock.currentTimeMillis, (at) => {
    const taken = OwnSpend.take(s.spend, costs[0], costs[1], at)
    let settled = false
    const events = Stream.mapChunksEffect(call, (chunk) => {
      if (settled) return Effect.succeed(chunk)
      for (const event of chunk) {
        if (event._tag === "Finish") {
          settled = true
          return Effect.as(correctLocal(s, taken, Exit.succeed(event.response)), chunk)
        }
      }
      return Effect.succeed(chunk)
    })
    return Stream.tapError(events, (error) => (settled ? Effect.void : correctLocal(s, taken, Exit.fail(error))))
  }))

// ---- calls ----

const generate = <E, R>(
  s: LimiterState,
  request: GenerateRequest,
  call: Effect.Effect<GenerateResponse, E, R>,
  site: Site
): Effect.Effect<GenerateResponse, E | RateLimited, R> =>
  Effect.uninterruptibleMask((restore) => {
    // Uninterruptible from taking the slot until it is released (waits and the call are restored).
    const costs = s.costsOf(request)
    return Effect.flatMap(admit(s, costs, site, restore), (admission) => {
      if (admission._tag === "Local") {
        return Effect.ensuring(
          restore(s.local.generate(request, spentLocally(s, costs, call), site)),
          Effect.sync(() => s.release())
        )
      }
      const grant: Grant = { costs, charged: admission.charged, taken: admission.taken }
      return Effect.flatMap(Effect.exit(restore(call)), (exit) => {
        s.release()
        return Effect.zipRight(afterExit(s, grant, exit), exit)
      })
    })
  })

/** Learns from `Metadata` / `Finish` (usage correction) and from a provider 429 ending the stream. */
const guard = <E, R>(s: LimiterState, grant: Grant, call: Stream.Stream<StreamEvent, E, R>): Stream.Stream<StreamEvent, E, R> => {
  let settled = false
  const events = Stream.mapChunksEffect(call, (chunk) => {
    let effect: Effect.Effect<void> = Effect.void
    for (const event of chunk) {
      if (event._tag === "Finish" && !settled) {
        settled = true
        effect = Effect.zipRight(effect, settle(s, grant, event.response.usage, event.response.rateLimit, undefined))
      } else if (s.learn && event._tag === "Metadata" && event.rateLimit !== undefined) {
        effect = Effect.zipRight(effect, settle(s, grant, undefined, event.rateLimit, undefined))
      }
    }
    return effect === Effect.void ? Effect.succeed(chunk) : Effect.as(effect, chunk)
  })
  return Stream.tapError(events, (error) => afterFailure(s, grant, error))
}

const stream = <E, R>(
  s: LimiterState,
  request: GenerateRequest,
  call: Stream.Stream<StreamEvent, E, R>,
  site: Site
): Stream.Stream<StreamEvent, E | RateLimited, R> =>
  Stream.unwrapScoped(Effect.uninterruptibleMask((restore) => {
    // The slot is held until the stream's scope closes (end, failure, interruption, early stop).
    const costs = s.costsOf(request)
    return Effect.flatMap(admit(s, costs, site, restore), (admission) =>
      Effect.as(
        Effect.addFinalizer(() => Effect.sync(() => s.release())),
        admission._tag === "Local"
          ? s.local.stream(request, spentLocallyStream(s, costs, call), site)
          : guard(s, { costs, charged: admission.charged, taken: admission.taken }, call)
      ))
  }))

/** For a snapshot fed in from outside (`observe`): no call, nothing charged. */
const noGrant = (): Grant => ({ costs: [0, 0, 0, 0], charged: 0, taken: [0, 0] })

const statsOf = (s: LimiterState): RateLimiter["stats"] =>
  Effect.flatMap(runScript(s.shared, Scripts.peek, s.hashKey, s.configuredArgs), (reply) => {
    if (Option.isSome(reply) && Array.isArray(reply.value)) {
      const values = reply.value as ReadonlyArray<unknown>
      const requestTokens = parseAvailable(values[0])
      const tokenTokens = parseAvailable(values[1])
      if (requestTokens !== undefined && tokenTokens !== undefined) {
        return Effect.succeed({ queued: s.queue.length, inFlight: s.inFlight, requestTokens, tokenTokens })
      }
    }
    // Redis unavailable: what the local fallback holds (from what this worker spent, not full).
    return Effect.zipRight(
      Effect.flatMap(Clock.currentTimeMillis, (at) => seedLocal(s, at)),
      Effect.map(s.local.stats, (stats) => ({ ...stats, queued: s.queue.length, inFlight: s.inFlight }))
    )
  })

const makeLimiter = (
  shared: Shared,
  key: string,
  options: RateLimiterOptions,
  local: RateLimiter,
  now: number
): RateLimiter => {
  const s = new LimiterState(shared, key, stateKey(shared.prefix, key), options, local, now)
  return {
    key,
    generate: (request, call, site) => generate(s, request, call, site),
    stream: (request, call, site) => stream(s, request, call, site),
    observe: (snapshot) => settle(s, noGrant(), undefined, snapshot, undefined, true),
    stats: statsOf(s),
    // Admission needs a Redis round trip, so there is no synchronous fast path: `Policy` then uses `generate`.
    unsafeTryAdmit: () => undefined,
    // Never called: `unsafeTryAdmit` hands out no tickets.
    unsafeRelease: () => {}
  }
}

/**
 * The Redis-backed registry over a client the caller owns (it is not closed here). Limiters are made
 * on first `get` of a key, with the options of that first `get`, as in the local registry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  client: Redis,
  options: RedisRateLimiterOptions = {}
): Effect.Effect<Context.Tag.Service<RateLimiters>> =>
  Effect.sync(() => {
    const failOpen = (options.onRedisError ?? defaults.onRedisError) === "fail-open"
    const shared: Shared = {
      client,
      prefix: options.prefix ?? defaults.prefix,
      failOpen,
      commandTimeoutMs: Connection.msOf(options.commandTimeout, defaults.commandTimeoutMs),
      retryRedisAfterMs: Connection.msOf(options.retryRedisAfter, defaults.retryRedisAfterMs),
      fallbackShare: positiveOr(options.fallbackShare, defaults.fallbackShare),
      health: Guard.healthy(),
      what: "the shared rate-limit state",
      whileDown: failOpen
        ? "calls go through a local, per-process limiter"
        : "calls fail with RateLimited (fail-closed)",
      errors: errorsMetric
    }
    const limiters = new Map<string, RateLimiter>()
    const share = (limit: number | undefined) => (limit === undefined ? undefined : limit * shared.fallbackShare)
    const get = (key: string, limiterOptions: RateLimiterOptions): Effect.Effect<RateLimiter> =>
      Effect.suspend(() => {
        const existing = limiters.get(key)
        if (existing !== undefined) return Effect.succeed(existing)
        // The fail-open fallback: the same limits (times `fallbackShare`), no bulkhead (ours applies).
        return Effect.map(
          Effect.zip(
            RateLimiterModule.make(key, {
              ...limiterOptions,
              requestsPerMinute: share(limiterOptions.requestsPerMinute),
              tokensPerMinute: share(limiterOptions.tokensPerMinute),
              maxConcurrency: undefined
            }),
            Clock.currentTimeMillis
          ),
          ([local, now]) => {
            const raced = limiters.get(key)
            if (raced !== undefined) return raced
            const limiter = makeLimiter(shared, key, limiterOptions, local, now)
            limiters.set(key, limiter)
            return limiter
          }
        )
      })
    return RateLimiters.of({ get })
  })

/**
 * The Redis-backed registry over the `RedisClient` in context (share one connection with
 * `BreakerGossip`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (options: RedisRateLimiterOptions = {}): Layer.Layer<RateLimiters, never, RedisClient> =>
  Layer.effect(RateLimiters, Effect.flatMap(RedisClient, (client) => make(client, options)))

/**
 * The Redis-backed registry with its own connection, opened when the layer is built and closed
 * (`QUIT`) with its scope. Building it never fails: an unreachable Redis is handled per call, as
 * `onRedisError` says.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: RedisRateLimiterLayerOptions = {}): Layer.Layer<RateLimiters> =>
  Layer.scoped(RateLimiters, Effect.flatMap(makeClient(options), (client) => make(client, options)))

/**
 * {@link layer} with its options read from `Config`, e.g.
 * `Config.all({ url: Config.redacted("REDIS_URL"), prefix: Config.string("LIMITER_PREFIX") })`
 * (keep the URL `Config.redacted` when it holds a password).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<RedisRateLimiterLayerOptions>
): Layer.Layer<RateLimiters, ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

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
import { clientRateLimited, formatMs, limiterMetrics, positiveOr, requestCosts } from "../internal/limiter.js"
import * as Metrics from "../internal/metrics.js"
import type { GenerateRequest, GenerateResponse, StreamEvent, Usage } from "../Provider.js"
import * as RateLimiterModule from "../RateLimiter.js"
import { type RateLimiter, type RateLimiterOptions, RateLimiters, type Site } from "../RateLimiter.js"
import { type RateLimitSnapshot, spentWindowsResetMs } from "../RateLimitSnapshot.js"
import * as Connection from "./internal/connection.js"
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

/** The provider-side code of the fail-closed rejection. */
const SHARED_STATE_UNAVAILABLE = "shared_state_unavailable"

/** requests, tokens, inputTokens, outputTokens — the scripts' dimensions 1..4. */
const DIMENSIONS = ["requests", "tokens", "inputTokens", "outputTokens"] as const

type Costs = readonly [requests: number, tokens: number, inputTokens: number, outputTokens: number]

type Outcome =
  | { readonly _tag: "Shared"; readonly charged: number; readonly taken: OwnSpend.Taken }
  | { readonly _tag: "Local" }
  | { readonly _tag: "Wait"; readonly ms: number }
  | { readonly _tag: "Unavailable"; readonly detail: string }

type Admission = Extract<Outcome, { readonly _tag: "Shared" | "Local" }>

/** A call Redis admitted: its costs, the dimensions the script charged, what it took from this worker's own-spend buckets. */
interface Grant {
  readonly costs: Costs
  readonly charged: number
  readonly taken: OwnSpend.Taken
}

type Reason = "queue_full" | "max_wait" | "deadline" | "concurrency" | typeof SHARED_STATE_UNAVAILABLE

interface Waiter {
  readonly costs: Costs
  /** Completed to make the waiter re-check. */
  wake: Deferred.Deferred<void> | undefined
  /** What it waits for: its turn (not head), a concurrency slot, or rate capacity (a refund may help). */
  blockedOn: "turn" | "slot" | "rate"
}

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

const LOCAL: Admission = { _tag: "Local" }

const errorsMetric = Metrics.counter(
  "llm_ratelimiter_shared_state_errors_total",
  "Redis commands of the shared rate limiter that failed or timed out",
  {}
)

/** Whether Redis answered lately, shared by every limiter of a registry (they share one connection). */
interface Health {
  downUntil: number
  down: boolean
  lastError: string
}

type Reply = { readonly _tag: "Admitted"; readonly charged: number } | { readonly _tag: "Wait"; readonly ms: number }

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

interface Shared {
  readonly client: Redis
  readonly prefix: string
  readonly failOpen: boolean
  readonly commandTimeoutMs: number
  readonly retryRedisAfterMs: number
  readonly fallbackShare: number
  readonly health: Health
}

const redisFailed = (shared: Shared, error: Error, now: number): Effect.Effect<void> => {
  const { health } = shared
  health.downUntil = now + shared.retryRedisAfterMs
  health.lastError = error.message
  const counted = Metric.increment(errorsMetric)
  if (health.down) return counted
  health.down = true
  return Effect.zipRight(
    counted,
    Effect.logWarning(
      `effect-llm-resilience/redis: the shared rate-limit state at ${Connection.describe(shared.client)} is unavailable (${error.message}); ${
        shared.failOpen
          ? "calls go through a local, per-process limiter until it answers again"
          : "calls fail with RateLimited (fail-closed) until it answers again"
      }`
    )
  )
}

const redisAnswered = (shared: Shared): Effect.Effect<void> => {
  if (!shared.health.down) return Effect.void
  shared.health.down = false
  return Effect.logInfo(`effect-llm-resilience/redis: the shared rate-limit state at ${Connection.describe(shared.client)} answers again`)
}

/** A script run, timed out after `commandTimeout`, with the health bookkeeping; `None` when Redis failed. */
const runScript = (
  shared: Shared,
  script: Scripts.Script,
  key: string,
  args: ReadonlyArray<string | number>
): Effect.Effect<Option.Option<unknown>> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    shared.health.downUntil > now
      ? Effect.succeed(Option.none())
      : Effect.matchEffect(Connection.command(shared.commandTimeoutMs, () => Scripts.run(shared.client, script, key, args)), {
        onFailure: (error) => Effect.as(redisFailed(shared, error, now), Option.none()),
        onSuccess: (reply) => Effect.as(redisAnswered(shared), Option.some(reply))
      }))

const makeLimiter = (
  shared: Shared,
  key: string,
  options: RateLimiterOptions,
  local: RateLimiter,
  now: number
): RateLimiter => {
  const hashKey = stateKey(shared.prefix, key)
  const maxConcurrency = options.maxConcurrency === undefined
    ? Number.POSITIVE_INFINITY
    : Math.max(1, Math.floor(options.maxConcurrency))
  const maxQueue = Math.max(0, Math.floor(options.maxQueue ?? RateLimiterModule.defaults.maxQueue))
  const maxWaitMs = options.maxWait === undefined
    ? RateLimiterModule.defaults.maxWaitMs
    : Math.max(0, Duration.toMillis(Duration.decode(options.maxWait)))
  const learn = options.learnFromHeaders ?? RateLimiterModule.defaults.learnFromHeaders
  const estimate = options.estimateTokens
  const configured: ReadonlyArray<number | undefined> = [options.requestsPerMinute, options.tokensPerMinute, undefined, undefined]
  const configuredArgs = configured.map((limit) => (limit === undefined ? "" : limit))

  let inFlight = 0
  const queue: Array<Waiter> = []
  let lastSnapshot: RateLimitSnapshot | undefined

  /**
   * What this worker was granted, as the fail-open fallback's buckets would stand (see ownSpend.ts);
   * `unseeded` when it changed in ways the fallback has not seen (Redis grants and their corrections).
   */
  const spend = OwnSpend.make(options.requestsPerMinute, options.tokensPerMinute, shared.fallbackShare, now)
  let unseeded = false

  const { wait: waitMetric, rejections: rejectionMetric } = limiterMetrics(key)

  const costsOf = (request: GenerateRequest): Costs => {
    const costs = requestCosts(request, estimate)
    return [costs.requests, costs.tokens, costs.inputTokens, costs.outputTokens]
  }

  // ---- the local bulkhead and queue ----

  const wakeHead = (why: "turn" | "slot" | "rate"): void => {
    const head = queue[0]
    if (head?.wake !== undefined && (head.blockedOn === "turn" || head.blockedOn === why)) {
      Deferred.unsafeDone(head.wake, Exit.void)
      head.wake = undefined
    }
  }

  const leave = (waiter: Waiter): void => {
    const index = queue.indexOf(waiter)
    if (index < 0) return
    queue.splice(index, 1)
    if (index === 0) wakeHead("turn")
  }

  const release = (): void => {
    inFlight--
    wakeHead("slot")
  }

  const rejection = (site: Site, reason: Reason, waitMs: number, detail: string): Effect.Effect<never, RateLimited> =>
    Effect.zipRight(
      Metric.increment(rejectionMetric(reason)),
      Effect.fail(clientRateLimited(site, detail, waitMs, reason === SHARED_STATE_UNAVAILABLE ? SHARED_STATE_UNAVAILABLE : undefined))
    )

  const unavailable = (site: Site, detail: string): Effect.Effect<never, RateLimited> =>
    rejection(
      site,
      SHARED_STATE_UNAVAILABLE,
      shared.retryRedisAfterMs,
      `the shared rate-limit state (Redis) is unavailable (${detail}) and onRedisError is "fail-closed"`
    )

  const whyLimit = (reason: Reason): string => (reason === "deadline" ? "deadline" : "maxWait")

  /**
   * Before the fallback admits anything after Redis grants: lower its buckets to what this worker has
   * left of its share (`remaining` lowers a bucket, never raises it), so it does not start full.
   */
  const seedLocal = (at: number): Effect.Effect<void> =>
    // Uninterruptible: the flag is cleared only together with the fallback being lowered.
    Effect.uninterruptible(Effect.suspend(() => {
      if (!unseeded) return Effect.void
      unseeded = false
      const [requests, tokens] = OwnSpend.available(spend, at)
      return local.observe({
        observedAt: at,
        ...(requests !== undefined ? { requests: { remaining: requests } } : {}),
        ...(tokens !== undefined ? { tokens: { remaining: tokens } } : {})
      })
    }))

  /** Asks Redis for the capacity of `costs` (one script); never fails. */
  const tryShared = (costs: Costs): Effect.Effect<Outcome> =>
    Effect.flatMap(runScript(shared, Scripts.admit, hashKey, [...configuredArgs, ...costs]), (reply) =>
      Effect.flatMap(Clock.currentTimeMillis, (at): Effect.Effect<Outcome> => {
        const parsed = Option.isSome(reply) ? parseAdmit(reply.value) : undefined
        if (parsed?._tag === "Admitted") {
          unseeded = true
          return Effect.succeed({ _tag: "Shared", charged: parsed.charged, taken: OwnSpend.take(spend, costs[0], costs[1], at) })
        }
        if (parsed !== undefined) return Effect.succeed(parsed)
        return shared.failOpen
          ? Effect.as(seedLocal(at), LOCAL)
          : Effect.succeed({ _tag: "Unavailable", detail: shared.health.lastError || "unexpected reply" })
      }))

  const sleepOrWake = (wake: Deferred.Deferred<void>, ms: number): Effect.Effect<void> =>
    Number.isFinite(ms)
      ? Effect.raceFirst(Deferred.await(wake), Effect.sleep(Duration.millis(Math.max(0, ms))))
      : Deferred.await(wake)

  /** A queued caller: only the head asks Redis; the others wait for their turn. */
  const waitInQueue = (
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
      const index = queue.indexOf(waiter)
      if (index === 0 && knownWait <= 0 && inFlight < maxConcurrency) {
        inFlight++ // reserved while Redis is asked
        const asked = Effect.onInterrupt(restore(tryShared(waiter.costs)), () =>
          Effect.sync(() => {
            release()
            leave(waiter)
          }))
        return Effect.flatMap(asked, (outcome): Effect.Effect<Admission, RateLimited> => {
          switch (outcome._tag) {
            case "Shared":
            case "Local":
              queue.shift()
              wakeHead("turn")
              return Effect.as(Metric.update(waitMetric, at - since), outcome)
            case "Unavailable":
              release()
              leave(waiter)
              return unavailable(site, outcome.detail)
            case "Wait": {
              release()
              if (outcome.ms > left) {
                leave(waiter)
                return rejection(site, reason, outcome.ms, `capacity in ${formatMs(outcome.ms)} exceeds the ${whyLimit(reason)} (${formatMs(left)} left)`)
              }
              return waitInQueue(waiter, since, until, reason, site, restore, outcome.ms)
            }
          }
        })
      }
      if (left <= 0) {
        leave(waiter)
        return index === 0
          ? rejection(site, "concurrency", Number.NaN, `no concurrency slot freed in time (${maxConcurrency} in flight)`)
          : rejection(site, reason, Number.NaN, `still queued behind ${index} callers after the ${whyLimit(reason)}`)
      }
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      waiter.wake = wake
      waiter.blockedOn = index > 0 ? "turn" : knownWait > 0 ? "rate" : "slot"
      const ms = index === 0 && knownWait > 0 ? Math.min(knownWait, left) : left
      return Effect.zipRight(
        Effect.onInterrupt(restore(sleepOrWake(wake, ms)), () => Effect.sync(() => leave(waiter))),
        waitInQueue(waiter, since, until, reason, site, restore, 0)
      )
    })

  /** Capacity for `costs`: a slot here and the shared budget in Redis (or the local fallback). */
  const admit = (costs: Costs, site: Site, restore: Restore): Effect.Effect<Admission, RateLimited> =>
    Effect.flatMap(Effect.zip(Clock.currentTimeMillis, Deadline.remaining), ([at, deadlineLeft]) => {
      const budget = Math.min(maxWaitMs, deadlineLeft)
      const reason: Reason = deadlineLeft < maxWaitMs ? "deadline" : "max_wait"
      const until = at + budget
      const enqueue = (knownWait: number): Effect.Effect<Admission, RateLimited> => {
        if (queue.length >= maxQueue) {
          return rejection(
            site,
            "queue_full",
            knownWait,
            maxQueue === 0 ? "no capacity now and queueing is off (maxQueue 0)" : `queue full (${queue.length} callers waiting)`
          )
        }
        if (knownWait > budget) {
          return rejection(site, reason, knownWait, `capacity in ${formatMs(knownWait)} exceeds the ${whyLimit(reason)} (${formatMs(budget)})`)
        }
        const waiter: Waiter = { costs, wake: undefined, blockedOn: "turn" }
        queue.push(waiter)
        return waitInQueue(waiter, at, until, reason, site, restore, queue.length === 1 ? knownWait : 0)
      }
      if (queue.length > 0 || inFlight >= maxConcurrency) return enqueue(0)
      // Nobody waiting here and a free slot: ask Redis straight away (the slot is reserved meanwhile).
      inFlight++
      const asked = Effect.onInterrupt(restore(tryShared(costs)), () => Effect.sync(release))
      return Effect.flatMap(asked, (outcome): Effect.Effect<Admission, RateLimited> => {
        switch (outcome._tag) {
          case "Shared":
          case "Local":
            return Effect.succeed(outcome)
          case "Unavailable":
            release()
            return unavailable(site, outcome.detail)
          case "Wait":
            release()
            return enqueue(outcome.ms)
        }
      })
    })

  // ---- after a call: corrections and lessons ----

  /** ARGV[5..18] of the update script, or `undefined` when there is nothing to write. */
  const planUpdate = (
    costs: Costs,
    charged: number,
    usage: Usage | undefined,
    snapshot: RateLimitSnapshot | undefined,
    retryAfterMs: number | undefined,
    now: number,
    refundAll = false
  ): { readonly args: ReadonlyArray<string | number>; readonly refund: boolean } | undefined => {
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
    return { args: [...configuredArgs, ...deltas, ...learned, ...remaining, age, cooldownMs], refund }
  }

  /**
   * Writes the call's corrections and lessons to Redis (never fails: a failure is logged and marks
   * Redis down) and mirrors the lessons into the local fallback limiter.
   */
  const settle = (
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
        ? OwnSpend.refund(spend, grant.taken, now)
        : usage !== undefined && OwnSpend.correct(spend, grant.taken, usage.totalTokens, now)
      if (spendChanged) unseeded = true
      const snapshot = (learn || always) && newSnapshot !== undefined && newSnapshot !== lastSnapshot ? newSnapshot : undefined
      if (snapshot !== undefined) lastSnapshot = snapshot
      const retryAfterMs = learn || always ? errorRetryAfterMs : undefined
      const mirror = snapshot !== undefined
        ? local.observe(snapshot)
        : retryAfterMs !== undefined
        ? local.observe({ retryAfterMs, observedAt: now })
        : Effect.void
      const plan = planUpdate(grant.costs, grant.charged, usage, snapshot, retryAfterMs, now, refundAll)
      if (plan === undefined) return mirror
      return Effect.zipRight(
        mirror,
        Effect.map(runScript(shared, Scripts.update, hashKey, plan.args), (reply) => {
          if (plan.refund && Option.isSome(reply)) wakeHead("rate")
        })
      )
    })

  const afterExit = (grant: Grant, exit: Exit.Exit<GenerateResponse, unknown>): Effect.Effect<void> => {
    if (Exit.isSuccess(exit)) return settle(grant, exit.value.usage, exit.value.rateLimit, undefined)
    const failure = Cause.failureOption(exit.cause)
    return Option.isSome(failure) ? afterFailure(grant, failure.value) : Effect.void
  }

  /** A call (or stream) failed: a breaker refusal below gives everything back; a provider 429 teaches. */
  const afterFailure = (grant: Grant, error: unknown): Effect.Effect<void> => {
    // The breaker refused the call: nothing was sent, so nothing was spent.
    if (isTagged(error, "CircuitOpen")) return settle(grant, undefined, undefined, undefined, false, true)
    const lesson = failureLesson(error)
    return lesson === undefined ? Effect.void : settle(grant, undefined, lesson.snapshot, lesson.retryAfterMs)
  }

  // ---- calls the fallback admits: this worker's own spend too ----

  /** Corrects the own spend of a call the fallback admitted (the fallback corrects its own buckets). */
  const correctLocal = (taken: OwnSpend.Taken, exit: Exit.Exit<GenerateResponse, unknown>): Effect.Effect<void> =>
    Effect.map(Clock.currentTimeMillis, (at) => {
      if (Exit.isSuccess(exit)) {
        OwnSpend.correct(spend, taken, exit.value.usage.totalTokens, at)
        return
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure) && isTagged(failure.value, "CircuitOpen")) OwnSpend.refund(spend, taken, at)
    })

  /** `call`, charging this worker's own spend when it runs (i.e. once the fallback admitted it). */
  const spentLocally = <E, R>(costs: Costs, call: Effect.Effect<GenerateResponse, E, R>): Effect.Effect<GenerateResponse, E, R> =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => {
      const taken = OwnSpend.take(spend, costs[0], costs[1], at)
      return Effect.onExit(call, (exit) => correctLocal(taken, exit))
    })

  /** The same for a stream: charged when it starts, corrected by its `Finish` (or refunded on `CircuitOpen`). */
  const spentLocallyStream = <E, R>(costs: Costs, call: Stream.Stream<StreamEvent, E, R>): Stream.Stream<StreamEvent, E, R> =>
    Stream.unwrap(Effect.map(Clock.currentTimeMillis, (at) => {
      const taken = OwnSpend.take(spend, costs[0], costs[1], at)
      let settled = false
      const events = Stream.mapChunksEffect(call, (chunk) => {
        if (settled) return Effect.succeed(chunk)
        for (const event of chunk) {
          if (event._tag === "Finish") {
            settled = true
            return Effect.as(correctLocal(taken, Exit.succeed(event.response)), chunk)
          }
        }
        return Effect.succeed(chunk)
      })
      return Stream.tapError(events, (error) => (settled ? Effect.void : correctLocal(taken, Exit.fail(error))))
    }))

  // ---- calls ----

  const generate = <E, R>(
    request: GenerateRequest,
    call: Effect.Effect<GenerateResponse, E, R>,
    site: Site
  ): Effect.Effect<GenerateResponse, E | RateLimited, R> =>
    Effect.uninterruptibleMask((restore) => {
      // Uninterruptible from taking the slot until it is released (waits and the call are restored).
      const costs = costsOf(request)
      return Effect.flatMap(admit(costs, site, restore), (admission) => {
        if (admission._tag === "Local") {
          return Effect.ensuring(restore(local.generate(request, spentLocally(costs, call), site)), Effect.sync(release))
        }
        const grant: Grant = { costs, charged: admission.charged, taken: admission.taken }
        return Effect.flatMap(Effect.exit(restore(call)), (exit) => {
          release()
          return Effect.zipRight(afterExit(grant, exit), exit)
        })
      })
    })

  /** Learns from `Metadata` / `Finish` (usage correction) and from a provider 429 ending the stream. */
  const guard = <E, R>(grant: Grant, call: Stream.Stream<StreamEvent, E, R>): Stream.Stream<StreamEvent, E, R> => {
    let settled = false
    const events = Stream.mapChunksEffect(call, (chunk) => {
      let effect: Effect.Effect<void> = Effect.void
      for (const event of chunk) {
        if (event._tag === "Finish" && !settled) {
          settled = true
          effect = Effect.zipRight(effect, settle(grant, event.response.usage, event.response.rateLimit, undefined))
        } else if (learn && event._tag === "Metadata" && event.rateLimit !== undefined) {
          effect = Effect.zipRight(effect, settle(grant, undefined, event.rateLimit, undefined))
        }
      }
      return effect === Effect.void ? Effect.succeed(chunk) : Effect.as(effect, chunk)
    })
    return Stream.tapError(events, (error) => afterFailure(grant, error))
  }

  const stream = <E, R>(
    request: GenerateRequest,
    call: Stream.Stream<StreamEvent, E, R>,
    site: Site
  ): Stream.Stream<StreamEvent, E | RateLimited, R> =>
    Stream.unwrapScoped(Effect.uninterruptibleMask((restore) => {
      // The slot is held until the stream's scope closes (end, failure, interruption, early stop).
      const costs = costsOf(request)
      return Effect.flatMap(admit(costs, site, restore), (admission) =>
        Effect.as(
          Effect.addFinalizer(() => Effect.sync(release)),
          admission._tag === "Local"
            ? local.stream(request, spentLocallyStream(costs, call), site)
            : guard({ costs, charged: admission.charged, taken: admission.taken }, call)
        ))
    }))

  /** For a snapshot fed in from outside (`observe`): no call, nothing charged. */
  const noGrant = (): Grant => ({ costs: [0, 0, 0, 0], charged: 0, taken: [0, 0] })

  const stats = Effect.flatMap(runScript(shared, Scripts.peek, hashKey, configuredArgs), (reply) => {
    if (Option.isSome(reply) && Array.isArray(reply.value)) {
      const values = reply.value as ReadonlyArray<unknown>
      const requestTokens = parseAvailable(values[0])
      const tokenTokens = parseAvailable(values[1])
      if (requestTokens !== undefined && tokenTokens !== undefined) {
        return Effect.succeed({ queued: queue.length, inFlight, requestTokens, tokenTokens })
      }
    }
    // Redis unavailable: what the local fallback holds (from what this worker spent, not full).
    return Effect.zipRight(
      Effect.flatMap(Clock.currentTimeMillis, seedLocal),
      Effect.map(local.stats, (s) => ({ ...s, queued: queue.length, inFlight }))
    )
  })

  return {
    key,
    generate,
    stream,
    observe: (snapshot) => settle(noGrant(), undefined, snapshot, undefined, true),
    stats,
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
    const shared: Shared = {
      client,
      prefix: options.prefix ?? defaults.prefix,
      failOpen: (options.onRedisError ?? defaults.onRedisError) === "fail-open",
      commandTimeoutMs: Connection.msOf(options.commandTimeout, defaults.commandTimeoutMs),
      retryRedisAfterMs: Connection.msOf(options.retryRedisAfter, defaults.retryRedisAfterMs),
      fallbackShare: positiveOr(options.fallbackShare, defaults.fallbackShare),
      health: { downUntil: Number.NEGATIVE_INFINITY, down: false, lastError: "" }
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

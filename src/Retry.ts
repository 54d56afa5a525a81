/**
 * Retries driven by what the failure says, not by its status code alone.
 *
 * - `wait` (rate limits, 5xx, timeouts, resets): back off and try again — at least as long as the
 *   provider's Retry-After, which is honoured up to `maxRetryAfter` (default 60 s). A longer wait fails
 *   fast with the `RateLimited` error so a fallback can reroute instead of sleeping.
 * - `reroute` (overload, quota, auth, unknown model, open breaker): surface at once when another route
 *   exists; otherwise allow `rerouteRetries` (default 1) short retries for transient ones (overload) —
 *   never the whole attempt budget on an overloaded provider, never any on a spent quota.
 * - `stop` (bad request, context length, deadline): never retried.
 *
 * Delays are capped exponential with full jitter by default (`random(0, min(cap, base·2^n))`, the
 * AWS result: least total work under contention); equal and decorrelated jitter are available. Jitter
 * draws from Effect's `Random`, so a seeded `Random` makes delays reproducible. Every sleep is checked
 * against the `Deadline`: a retry that could only start after it is not attempted. An optional
 * `RetryBudget` stops storms. Every attempt of one logical call carries the same idempotency key.
 *
 * Streams are retried only before the first content token; after partial output the consumer has
 * seen text, so the failure surfaces as `StreamInterrupted` with the partial text attached.
 *
 * @since 0.1.0
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleInterval from "effect/ScheduleInterval"
import * as Stream from "effect/Stream"
import * as Deadline from "./Deadline.js"
import {
  actionOf,
  type AttemptRecord,
  isRetryable,
  type ProviderError,
  restamp,
  retryAfterOf,
  RetryBudgetExhausted,
  type RouteError,
  StreamInterrupted
} from "./Errors.js"
import * as Metrics from "./internal/metrics.js"
import { extend } from "./internal/object.js"
import { clockOf, millisOf } from "./internal/timer.js"
import type { GenerateRequest, GenerateResponse, StreamEvent } from "./Provider.js"
import type { RetryBudget } from "./RetryBudget.js"
import { type AttemptOutcome, type RetryCore, retryStream } from "./policy/retryStream.js"

/**
 * How backoff delays are randomised.
 *
 * @since 0.1.0
 * @category models
 */
export type Jitter = "full" | "equal" | "decorrelated" | "none"

/**
 * Options. Every default is in docs/policies.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  /** Total attempts, the first included. Default 3. */
  readonly maxAttempts?: number | undefined
  /** Backoff base. Default 500 ms. */
  readonly base?: Duration.DurationInput | undefined
  /** Backoff cap. Default 10 seconds. */
  readonly cap?: Duration.DurationInput | undefined
  /** Default `full`. */
  readonly jitter?: Jitter | undefined
  /** The longest provider Retry-After honoured by waiting; longer fails fast. Default 60 seconds. */
  readonly maxRetryAfter?: Duration.DurationInput | undefined
  /** Retries for retryable `reroute` failures (overload) when no other route exists. Default 1. */
  readonly rerouteRetries?: number | undefined
  /** Another route exists (set by the fallback chain): `reroute` failures surface at once. Default false. */
  readonly hasAlternative?: boolean | undefined
  /** Generate one idempotency key per logical call and send it on every attempt. Default true. */
  readonly idempotencyKey?: boolean | undefined
}

/**
 * The defaults, in milliseconds where they are durations.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxAttempts: 3,
  baseMs: 500,
  capMs: 10_000,
  jitter: "full" as Jitter,
  maxRetryAfterMs: 60_000,
  rerouteRetries: 1,
  hasAlternative: false,
  idempotencyKey: true
} as const

/**
 * The backoff delay (ms) before retry number `retry` (0-based), given the previous delay (for
 * decorrelated jitter).
 *
 * @since 0.1.0
 * @category backoff
 */
export const backoffDelay = (
  jitter: Jitter,
  retry: number,
  baseMs: number,
  capMs: number,
  previousMs: number
): Effect.Effect<number> => {
  const ceiling = Math.min(capMs, baseMs * 2 ** retry)
  switch (jitter) {
    case "none":
      return Effect.succeed(ceiling)
    case "full":
      return Random.nextRange(0, ceiling)
    case "equal":
      return Effect.map(Random.nextRange(0, ceiling / 2), (r) => ceiling / 2 + r)
    case "decorrelated":
      return Effect.map(
        Random.nextRange(baseMs, Math.max(baseMs, previousMs * 3)),
        (r) => Math.min(capMs, r)
      )
  }
}

/**
 * The backoff as a `Schedule` (for `Effect.retry` / `Effect.repeat` outside this policy, and for the
 * herd simulation): outputs the delay it chose, stops after `maxAttempts - 1` recurrences.
 *
 * @since 0.1.0
 * @category backoff
 */
export const schedule = (
  options: Pick<RetryOptions, "base" | "cap" | "jitter" | "maxAttempts"> = {}
): Schedule.Schedule<Duration.Duration, unknown> => {
  const baseMs = millisOf(options.base) ?? defaults.baseMs
  const capMs = millisOf(options.cap) ?? defaults.capMs
  const jitter = options.jitter ?? defaults.jitter
  const maxRetries = (options.maxAttempts ?? defaults.maxAttempts) - 1
  return Schedule.makeWithState<{ readonly retry: number; readonly previous: number }, unknown, Duration.Duration>(
    { retry: 0, previous: baseMs },
    (now, _input, state) =>
      state.retry >= maxRetries
        ? Effect.succeed([state, Duration.zero, ScheduleDecision.done] as const)
        : Effect.map(backoffDelay(jitter, state.retry, baseMs, capMs, state.previous), (delay) =>
          [
            { retry: state.retry + 1, previous: delay },
            Duration.millis(delay),
            ScheduleDecision.continueWith(ScheduleInterval.after(now + delay))
          ] as const)
  )
}

/**
 * What the retry loop reports about each finished attempt (for attempt histories, spans and metrics).
 * Called when the attempt has ended; the loop runs the returned effect before it goes on.
 *
 * @since 0.1.0
 * @category models
 */
export type AttemptObserver = (record: AttemptRecord) => Effect.Effect<void>

/**
 * What one logical call adds to the policy: its own deadline and attempt observer.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions {
  /**
   * The call's deadline (absolute, on Effect's `Clock`), for a caller that tracks it itself; the
   * tighter of it and `Deadline.currentDeadline` is honoured. Default: `Deadline.currentDeadline`.
   */
  readonly deadline?: number | undefined
  /** Hears about every finished attempt of this call (before the policy's own observer). */
  readonly observe?: AttemptObserver | undefined
  /**
   * When another route can take the call (set by the fallback chain under a deadline): the instant
   * (absolute, on Effect's `Clock`) by which this route should have answered — a non-streamed attempt
   * — or shown its first content — a stream. Attempts are clipped to it as timeouts, and no retry waits
   * past it, so later routes keep their share of the deadline.
   */
  readonly handOverAt?: number | undefined
}

/**
 * A configured retry policy.
 *
 * @since 0.1.0
 * @category models
 */
export interface Retry {
  /**
   * Runs one logical call: `attempt(request, n, delayMs)` is attempt number `n` (1-based), started
   * after a backoff of `delayMs` (0 for the first).
   */
  readonly generate: <E extends RouteError, R>(
    request: GenerateRequest,
    attempt: (request: GenerateRequest, attempt: number, delayMs: number) => Effect.Effect<GenerateResponse, E, R>,
    call?: CallOptions
  ) => Effect.Effect<GenerateResponse, E | RetryBudgetExhausted, R>
  readonly stream: <E extends RouteError, R>(
    request: GenerateRequest,
    attempt: (request: GenerateRequest, attempt: number, delayMs: number) => Stream.Stream<StreamEvent, E, R>,
    call?: CallOptions
  ) => Stream.Stream<StreamEvent, E | RetryBudgetExhausted | StreamInterrupted, R>
}

const isProviderError = (error: RouteError): error is ProviderError =>
  error._tag !== "CircuitOpen" && error._tag !== "RetryBudgetExhausted" && error._tag !== "DeadlineExceeded" &&
  error._tag !== "BudgetExceeded"

/**
 * One key per logical call: 24 hex digits, a random 64-bit prefix drawn once per process (again after
 * 2^32 keys) followed by a 32-bit counter. Unique across processes and runs by the prefix, and within a
 * process by the counter — without drawing randomness per call (the key is on every call's path). Not
 * drawn from Effect's `Random` on purpose: a key must stay unique even when a test seeds `Random`
 * (jitter, which tests do want reproducible, does draw from it). Keys are not secrets; that they are
 * sequential within a process is harmless.
 */
const idempotencyKey = (): string => {
  if (keyCounter >= 0x1_0000_0000) {
    keyPrefix = randomPrefix()
    keyCounter = 0
  }
  return keyPrefix + (keyCounter++).toString(16).padStart(8, "0")
}

const randomPrefix = (): string => {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(8))
  let prefix = "llmr-"
  for (const byte of bytes) prefix += HEX[byte]!
  return prefix
}

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"))
let keyPrefix = randomPrefix()
let keyCounter = 0

/** The observers of one call: its own, then the policy's. */
const observersOf = (observe: AttemptObserver | undefined, call: CallOptions | undefined): AttemptObserver | undefined =>
  call?.observe === undefined
    ? observe
    : observe === undefined
    ? call.observe
    : (record) => Effect.zipRight(call.observe!(record), observe(record))

/**
 * Reports one finished attempt of `route` to the call's observers. Called when the attempt has ended
 * (its duration is read from the clock now), from the continuation that saw it end.
 */
const record = (
  route: string,
  observer: AttemptObserver | undefined,
  clock: Clock.Clock,
  attempt: number,
  delayMs: number,
  startedAt: number,
  outcome: AttemptOutcome
): Effect.Effect<void> => {
  if (observer === undefined) return Effect.void
  const requestId = outcome.error?.requestId ?? outcome.requestId
  return observer({
    route,
    attempt,
    outcome: outcome.tag,
    ...(outcome.error?.status !== undefined ? { status: outcome.error.status } : {}),
    ...(requestId !== undefined ? { requestId } : {}),
    delayMs,
    durationMs: clock.unsafeCurrentTimeMillis() - startedAt,
    ...(outcome.error !== undefined ? { message: outcome.error.message } : {})
  })
}

/**
 * The instant no retry may wait past: the call's deadline or the fiber's, whichever is sooner, and
 * the hand-over instant when another route waits for its turn.
 */
const waitLimitOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>, call: CallOptions | undefined): number => {
  let limit = Deadline.unsafeOf(fiber)
  if (call?.deadline !== undefined && call.deadline < limit) limit = call.deadline
  if (call?.handOverAt !== undefined && call.handOverAt < limit) limit = call.handOverAt
  return limit
}

/** Takes a retry from the budget, or surfaces the failure as RetryBudgetExhausted. */
const spend = <E extends RouteError>(
  budget: RetryBudget | undefined,
  rejected: Metric.Metric.Counter<number>,
  error: E
): Effect.Effect<void, E | RetryBudgetExhausted> => {
  if (budget === undefined) return Effect.void
  return Effect.flatMap(budget.withdraw, (ok): Effect.Effect<void, E | RetryBudgetExhausted> => {
    if (ok) return Effect.void
    const surfaced: Effect.Effect<never, E | RetryBudgetExhausted> = !isProviderError(error)
      ? Effect.fail(error)
      : Effect.fail(
        new RetryBudgetExhausted({
          provider: error.provider,
          model: error.model,
          route: error.route,
          attempt: error.attempt,
          lastError: error,
          message: `retry budget of route ${error.route} is spent; not retrying: ${error.message}`
        }, true)
      )
    return Effect.zipRight(Metric.increment(rejected), surfaced)
  })
}

/**
 * What a retry policy is built with besides its options.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryExtras {
  /** The route label put on attempt records and metrics. Default `*`. */
  readonly route?: string | undefined
  readonly budget?: RetryBudget | undefined
  readonly observe?: AttemptObserver | undefined
}

/**
 * Builds a retry policy. `budget` (optional) is the route's {@link RetryBudget}; `observe` (optional)
 * hears about every finished attempt.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: RetryOptions = {}, extras: RetryExtras = {}): Retry => makeLoop(options, extras)

/**
 * {@link make} with the entry point of a layer that holds the calling fiber (`Policy`).
 *
 * @internal
 */
export const makeLoop = (options: RetryOptions = {}, extras: RetryExtras = {}): RetryLoop => {
  const maxAttempts = Math.max(1, options.maxAttempts ?? defaults.maxAttempts)
  const baseMs = millisOf(options.base) ?? defaults.baseMs
  const capMs = millisOf(options.cap) ?? defaults.capMs
  const jitter = options.jitter ?? defaults.jitter
  const maxRetryAfterMs = millisOf(options.maxRetryAfter) ?? defaults.maxRetryAfterMs
  const rerouteRetries = options.rerouteRetries ?? defaults.rerouteRetries
  const hasAlternative = options.hasAlternative ?? defaults.hasAlternative
  const useKey = options.idempotencyKey ?? defaults.idempotencyKey
  const { budget, observe } = extras
  const route = extras.route ?? "*"
  const rejected = Metrics.counter(
    "llm_retry_budget_rejections_total",
    "Retries refused because the route's retry budget was spent, by route",
    { route }
  )

  /**
   * The delay before the next attempt, or the error to surface instead. `reroutesUsed` counts the
   * retries already spent on `reroute`-class failures.
   */
  const decide = <E extends RouteError>(
    error: E,
    attempt: number,
    previousDelay: number,
    reroutesUsed: number,
    waitLimit: number,
    clock: Clock.Clock
  ): Effect.Effect<{ readonly delay: number; readonly reroute: boolean }, E | RetryBudgetExhausted> => {
    if (attempt >= maxAttempts) return Effect.fail(error)
    const action = actionOf(error)
    if (action === "stop") return Effect.fail(error)
    const reroute = action === "reroute"
    if (reroute && (hasAlternative || !isRetryable(error) || reroutesUsed >= rerouteRetries)) return Effect.fail(error)
    // A hung or slow provider is left to the next route rather than waited on a second time.
    if (hasAlternative && error._tag === "Timeout") return Effect.fail(error)
    const hint = retryAfterOf(error)
    if (hint !== undefined && hint > maxRetryAfterMs) return Effect.fail(error)
    return Effect.flatMap(backoffDelay(jitter, attempt - 1, baseMs, capMs, previousDelay), (backoff) => {
      const delay = hint !== undefined ? Math.max(backoff, hint) : backoff
      // Retrying after the deadline (or the hand-over to the next route) is pointless, and retrying before a Retry-After would only
      // be refused again: surface the failure while the caller still has time to reroute.
      if (delay >= waitLimit - clock.unsafeCurrentTimeMillis()) return Effect.fail(error)
      return Effect.as(spend(budget, rejected, error), { delay, reroute })
    })
  }

  /** Starts a logical call: one budget deposit and one idempotency key, at the clock time `now`. */
  const begin = (request: GenerateRequest, now: number): GenerateRequest => {
    budget?.unsafeDeposit(now)
    return !useKey || request.idempotencyKey !== undefined ? request : extend(request, { idempotencyKey: idempotencyKey() })
  }

  const generateOn = <E extends RouteError, R>(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    request: GenerateRequest,
    attempt: AttemptOn<E, R>,
    call?: CallOptions
  ): Effect.Effect<GenerateResponse, E | RetryBudgetExhausted, R> => {
    const clock = clockOf(fiber)
    const waitLimit = waitLimitOf(fiber, call)
    const observer = observersOf(observe, call)
    const loop = (
      keyed: GenerateRequest,
      n: number,
      delayMs: number,
      reroutesUsed: number
    ): Effect.Effect<GenerateResponse, E | RetryBudgetExhausted, R> => {
      const startedAt = clock.unsafeCurrentTimeMillis()
      const attempted = attempt(keyed, n, delayMs, fiber)
      const onFailure = (raw: E): Effect.Effect<GenerateResponse, E | RetryBudgetExhausted, R> => {
        const error = restamp(raw, { attempt: n })
        return Effect.zipRight(
          record(route, observer, clock, n, delayMs, startedAt, { tag: error._tag, error }),
          Effect.flatMap(decide(error, n, delayMs, reroutesUsed, waitLimit, clock), ({ delay, reroute }) =>
            Effect.zipRight(
              Effect.sleep(Duration.millis(delay)),
              // Suspended: the next attempt's start time must be read after the sleep, not before.
              Effect.suspend(() => loop(keyed, n + 1, delay, reroutesUsed + (reroute ? 1 : 0)))
            ))
        )
      }
      if (observer === undefined) return Effect.catchAll(attempted, onFailure)
      // One continuation for both ends (recording a success cannot fail: observers return `Effect<void>`).
      return Effect.matchEffect(attempted, {
        onFailure,
        onSuccess: (response) => {
          const recorded = record(route, observer, clock, n, delayMs, startedAt, { tag: "success", requestId: response.requestId })
          return recorded === Effect.void ? Effect.succeed(response) : Effect.as(recorded, response)
        }
      })
    }
    return loop(begin(request, clock.unsafeCurrentTimeMillis()), 1, 0, 0)
  }

  const generate: Retry["generate"] = (request, attempt, call) =>
    Effect.withFiberRuntime((fiber) => generateOn(fiber, request, attempt, call))

  const core: RetryCore = {
    decide,
    record: (observer, clock, attempt, delayMs, startedAt, outcome) => record(route, observer, clock, attempt, delayMs, startedAt, outcome),
    observersOf: (call) => observersOf(observe, call),
    waitLimitOf,
    begin
  }
  const stream: Retry["stream"] = (request, attempt, call) => retryStream(core, request, attempt, call)

  return { generate, generateOn, stream }
}

/**
 * One attempt of a loop run by {@link RetryLoop.generateOn}: also given the fiber that runs the loop
 * (and runs the attempt's effect at once, as the loop's next step).
 *
 * @internal
 */
export type AttemptOn<E, R> = (
  request: GenerateRequest,
  attempt: number,
  delayMs: number,
  fiber: Fiber.RuntimeFiber<unknown, unknown>
) => Effect.Effect<GenerateResponse, E, R>

/**
 * A retry policy with the entry point a composition layer uses when it already holds the calling
 * fiber (`Policy`): `generate` is `generateOn` run on the fiber that runs it.
 *
 * @internal
 */
export interface RetryLoop extends Retry {
  readonly generateOn: <E extends RouteError, R>(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    request: GenerateRequest,
    attempt: AttemptOn<E, R>,
    call?: CallOptions
  ) => Effect.Effect<GenerateResponse, E | RetryBudgetExhausted, R>
}

/**
 * A circuit breaker per route and model: stop sending requests to a provider that is failing, fail
 * fast with `CircuitOpen` (action `reroute`) while it recovers, and let a few probe calls find out when
 * it has.
 *
 * ```
 * closed ──trip──▶ open ──(open duration passes)──▶ half-open ──N probes succeed──▶ closed
 *                   ▲                                   │
 *                   └───────────── a probe fails ───────┘   (each re-open lasts longer, up to a cap)
 * ```
 *
 * - **Trips** on `consecutiveFailures` failures in a row, or when at least `minimumThroughput` calls in
 *   the sliding `window` failed at `failureRate` or more (whichever comes first).
 * - **Counts only what says the provider is unhealthy** (`Errors.isProviderHealthFailure`: overload,
 *   5xx, timeouts, connection errors, broken streams, malformed 200s; `RateLimited` only with
 *   `countRateLimited`). Any other outcome — a 400, a 401, a schema failure — proves the provider
 *   answered, so it counts as a success, as in Polly.
 * - **Open duration** starts at `openDuration`, grows by `backoffFactor` on each consecutive re-open up to
 *   `maxOpenDuration`, and is never shorter than a `Retry-After` the tripping failure carried.
 * - **Half-open** lets `halfOpenProbes` calls through at once; all must succeed to close; one failure
 *   re-opens. Other callers keep failing fast.
 * - A permit taken in one state reports into that state only: an answer that arrives after the breaker
 *   has moved on (a slow call that started before it opened) is ignored, so it cannot close or re-trip a
 *   breaker on stale evidence.
 * - Manual `isolate` (open until `reset`) and `reset`; `tripUntil` / `untrip` (open until a given time,
 *   or close, on evidence from elsewhere — another process's breaker, see `effect-llm-resilience/redis`);
 *   a `BreakerCoordinator` that one process of a fleet at a time probes through; transitions as a
 *   `Stream` of events, a bounded history (for reports) and metrics; an optional background health
 *   probe that can close an open breaker without spending a user's request.
 *
 * Cost: a permit on the closed path is a clock read, a comparison and, when the call ends, an array
 * write — no fiber, no timer, no allocation beyond the permit.
 *
 * See docs/policies/circuit-breaker.md.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { CircuitOpen, isProviderHealthFailure, type RouteError, routeErrorTags } from "./Errors.js"
import * as Metrics from "./internal/metrics.js"
import { millisOf } from "./internal/timer.js"
import { BreakerCore, isUnsent, type Resolved } from "./policy/breakerCore.js"

/**
 * Options. Every default is in {@link defaults} and docs/policies/circuit-breaker.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface CircuitBreakerOptions {
  /** Trip after this many counted failures in a row. `Infinity` switches the rule off. Default 5. */
  readonly consecutiveFailures?: number | undefined
  /** Trip when this share of the calls in the window failed… Default 0.5. `Infinity` switches the rule off. */
  readonly failureRate?: number | undefined
  /** …and the window holds at least this many calls. Default 20. */
  readonly minimumThroughput?: number | undefined
  /** The sliding window of the failure-rate rule. Default 30 seconds. */
  readonly window?: Duration.DurationInput | undefined
  /** How long the breaker stays open the first time. Default 5 seconds. */
  readonly openDuration?: Duration.DurationInput | undefined
  /**
   * Each consecutive re-open lasts this many times longer (up to `maxOpenDuration`). Default 1 (constant):
   * LLM providers answer a healthy share of probes with transient 529s, so a growing open period keeps a
   * recovered provider dark long after its outage (measured in bench:herd and bench:chaos).
   */
  readonly backoffFactor?: number | undefined
  /** The longest an open period lasts. Default 60 seconds. */
  readonly maxOpenDuration?: Duration.DurationInput | undefined
  /** Stay open at least as long as the tripping failure's Retry-After (capped by `maxOpenDuration`). Default true. */
  readonly honourRetryAfter?: boolean | undefined
  /** Probe calls let through at once in half-open; all must succeed to close. Default 1. */
  readonly halfOpenProbes?: number | undefined
  /** Count `RateLimited` as a health failure ("too fast" is not "sick", so off by default). Default false. */
  readonly countRateLimited?: boolean | undefined
  /** Replaces the rule for what counts as a failure. Default: provider-health failures. */
  readonly isFailure?: ((error: unknown) => boolean) | undefined
  /**
   * A background health probe: while the breaker is open, run the route's probe every `interval`
   * (off by default; `Policy` supplies the probe — a one-token request — when this is set).
   */
  readonly healthProbe?: { readonly interval: Duration.DurationInput } | undefined
}

/**
 * The defaults, in milliseconds where they are durations.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  consecutiveFailures: 5,
  failureRate: 0.5,
  minimumThroughput: 20,
  windowMs: 30_000,
  openDurationMs: 5_000,
  backoffFactor: 1,
  maxOpenDurationMs: 60_000,
  honourRetryAfter: true,
  halfOpenProbes: 1,
  countRateLimited: false
} as const

/**
 * The breaker's state. `isolated` is a manual open that only {@link CircuitBreaker.reset} ends.
 *
 * @since 0.1.0
 * @category models
 */
export type BreakerState = "closed" | "open" | "half-open" | "isolated"

/**
 * A state transition.
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerEvent {
  readonly key: string
  readonly from: BreakerState
  readonly to: BreakerState
  /** Clock time (ms) of the transition. */
  readonly at: number
  /** When an open period ends (for `open`). */
  readonly openUntil?: number | undefined
  /** What caused it (`consecutive failures`, `failure rate`, `probe failed`, `probes succeeded`, `manual`, …). */
  readonly reason: string
}

/**
 * Where a call runs, for the `CircuitOpen` errors the breaker produces.
 *
 * @since 0.1.0
 * @category models
 */
export interface Site {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
}

/**
 * Leave to make one call through the breaker. Report its outcome exactly once (later reports are
 * ignored): `success`, `failure(error)` (counted only if it says the provider is unhealthy), or
 * `cancel` (no verdict: the caller stopped before an answer).
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  readonly success: Effect.Effect<void>
  readonly failure: (error: unknown) => Effect.Effect<void>
  readonly cancel: Effect.Effect<void>
}

/**
 * A closed-state admission (see {@link CircuitBreaker.unsafeTryAdmit}): the breaker generation it was
 * taken in, so that a late report cannot affect a later state.
 *
 * @since 0.1.0
 * @category models
 */
export type BreakerTicket = number

/**
 * A snapshot for dashboards and reports.
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerStats {
  readonly state: BreakerState
  /** Calls and counted failures in the sliding window. */
  readonly calls: number
  readonly failures: number
  readonly consecutiveFailures: number
  /** When the current open period ends (Clock ms), if open. */
  readonly openUntil?: number | undefined
}

/**
 * One breaker.
 *
 * @since 0.1.0
 * @category models
 */
export interface CircuitBreaker {
  readonly key: string
  /** Takes a permit, or fails fast with `CircuitOpen` (carrying the time left until half-open). */
  readonly acquire: (site: Site) => Effect.Effect<Permit, CircuitOpen>
  /** Runs a call with a permit, reporting its outcome (interruption reports `cancel`). */
  readonly execute: <A, E, R>(call: Effect.Effect<A, E, R>, site: Site) => Effect.Effect<A, E | CircuitOpen, R>
  /**
   * The closed-state fast path for composition layers (`Policy`), synchronous: a ticket when the
   * breaker is closed, `undefined` otherwise (then use {@link execute}). A call admitted this way must
   * be reported with {@link unsafeReport}; an interrupted one may simply not be (no verdict).
   */
  readonly unsafeTryAdmit: () => BreakerTicket | undefined
  /**
   * Reports the exit of a call admitted by {@link unsafeTryAdmit} at clock time `now`; returns the
   * effect that announces a resulting transition (`Effect.void` when there is none).
   */
  readonly unsafeReport: (ticket: BreakerTicket, exit: Exit.Exit<unknown, unknown>, now: number) => Effect.Effect<void>
  /** The current state (an expired open period reads as `half-open`). */
  readonly state: Effect.Effect<BreakerState>
  readonly stats: Effect.Effect<BreakerStats>
  /**
   * Runs a synthetic health check outside user traffic. While the breaker is open or half-open, a
   * success closes it at once (the provider answered; no need to wait out the open period) and a
   * counted failure in half-open re-opens it; in any other state the outcome changes nothing. Returns
   * whether the check succeeded.
   */
  readonly probe: <A, E, R>(check: Effect.Effect<A, E, R>) => Effect.Effect<boolean, never, R>
  /**
   * Forces the breaker open until clock time `untilMs`, for evidence gathered elsewhere (another
   * process's breaker for the same provider opened — see `effect-llm-resilience/redis`'s
   * `BreakerGossip`). Closed or half-open → open with `reason` (probes in flight lose their vote); an
   * open period that would end sooner is extended (no new event); an isolated breaker, or an `untilMs`
   * not in the future, is left alone. It does not count as a re-open for the open-duration backoff.
   * When the period ends the breaker goes half-open and probes on its own, as after any open.
   */
  readonly tripUntil: (untilMs: number, reason: string) => Effect.Effect<void>
  /**
   * Closes an open or half-open breaker on evidence from elsewhere (another process's probe found the
   * provider healthy again — see `effect-llm-resilience/redis`'s `FleetBreaker`), with a clean slate as
   * after any close. A closed or isolated breaker is left alone.
   */
  readonly untrip: (reason: string) => Effect.Effect<void>
  /** Opens the breaker until {@link reset}. */
  readonly isolate: Effect.Effect<void>
  /** Closes the breaker and forgets its history of failures. */
  readonly reset: Effect.Effect<void>
  /**
   * Subscribes now (in the current scope) and returns every transition from then on: no event between
   * the subscription and the first pull is lost.
   */
  readonly events: Effect.Effect<Stream.Stream<BreakerEvent>, never, Scope.Scope>
  /** The last transitions (up to 256), oldest first — the breaker's state over time. */
  readonly history: Effect.Effect<ReadonlyArray<BreakerEvent>>
}

/**
 * What a {@link BreakerCoordinator} answers when a breaker in half-open is about to let a probe call
 * through:
 * - `Granted`: this process probes (`release` gives the claim back when the probe ends without a
 *   verdict — interrupted, or refused before it was sent);
 * - `Closed`: another process's probe already closed the breaker fleet-wide — close here too, with
 *   `reason` on the transition;
 * - `Open`: the fleet's open period has `forMs` left (another process re-opened it) — open here too;
 * - `Busy`: another process's probe is in flight for at most `forMs` — refuse this call.
 *
 * @since 0.2.0
 * @category models
 */
export type ProbeClaim =
  | { readonly _tag: "Granted"; readonly release: Effect.Effect<void> }
  | { readonly _tag: "Closed"; readonly reason: string }
  | { readonly _tag: "Open"; readonly forMs: number; readonly reason: string }
  | { readonly _tag: "Busy"; readonly forMs: number }

/**
 * Coordinates the half-open probes of breakers of the same key across processes, so that a fleet of
 * workers sends one probe into a recovering provider instead of one per worker. Asked only on the
 * half-open path (the closed path never waits on it); `effect-llm-resilience/redis`'s `FleetBreaker`
 * implements it over Redis. A coordinator that cannot reach its store should answer `Granted` (probe
 * locally) rather than keep a route dark.
 *
 * @since 0.2.0
 * @category models
 */
export interface BreakerCoordinator {
  readonly claimProbe: (key: string) => Effect.Effect<ProbeClaim>
}

const stateCode: Readonly<Record<BreakerState, number>> = { closed: 0, "half-open": 1, open: 2, isolated: 3 }

const SUCCESS = { failed: false, error: undefined } as const

const isRouteError = (error: unknown): error is RouteError =>
  typeof error === "object" && error !== null && "_tag" in error &&
  (routeErrorTags as ReadonlyArray<unknown>).includes((error as { readonly _tag: unknown })._tag)

const resolve = (options: CircuitBreakerOptions): Resolved => {
  const countRateLimited = options.countRateLimited ?? defaults.countRateLimited
  const windowMs = Math.max(1, millisOf(options.window) ?? defaults.windowMs)
  // Ten buckets per window: the rate rule forgets old calls in steps of a tenth of the window.
  const buckets = 10
  return {
    consecutive: Math.max(1, options.consecutiveFailures ?? defaults.consecutiveFailures),
    rate: options.failureRate ?? defaults.failureRate,
    minimumThroughput: Math.max(1, options.minimumThroughput ?? defaults.minimumThroughput),
    windowMs,
    bucketMs: windowMs / buckets,
    buckets,
    openMs: Math.max(0, millisOf(options.openDuration) ?? defaults.openDurationMs),
    factor: Math.max(1, options.backoffFactor ?? defaults.backoffFactor),
    maxOpenMs: Math.max(0, millisOf(options.maxOpenDuration) ?? defaults.maxOpenDurationMs),
    honourRetryAfter: options.honourRetryAfter ?? defaults.honourRetryAfter,
    probes: Math.max(1, Math.floor(options.halfOpenProbes ?? defaults.halfOpenProbes)),
    isFailure: options.isFailure ??
      ((error) =>
        isRouteError(error) &&
        (isProviderHealthFailure(error) || (countRateLimited && error._tag === "RateLimited")))
  }
}

/** A breaker's metrics, tagged once per breaker (see internal/metrics.ts): rejections happen on every call of an outage. */
const breakerMetrics = (key: string) => ({
  transitions: Metrics.counterFamily(
    "llm_breaker_transitions_total",
    "Circuit breaker state transitions, by key and target state",
    { key },
    "to"
  ),
  rejections: Metrics.counter("llm_breaker_rejections_total", "Calls refused because the breaker was open, by key", { key }),
  state: Metrics.gauge("llm_breaker_state", "Circuit breaker state by key: 0 closed, 1 half-open, 2 open, 3 isolated", { key })
})

/** Publishes a transition, if there is one: metrics, then the hub. */
type Announce = (event: BreakerEvent | undefined) => Effect.Effect<void>

const announcer = (metrics: ReturnType<typeof breakerMetrics>, hub: PubSub.PubSub<BreakerEvent>): Announce => (event) =>
  event === undefined ? Effect.void : Effect.zipRight(
    Effect.zipRight(
      Metric.increment(metrics.transitions(event.to)),
      Metric.set(metrics.state, stateCode[event.to])
    ),
    PubSub.publish(hub, event)
  )

/** `release`: what gives a coordinator's probe claim back when the probe ends without a verdict. */
const permitFor = (
  core: BreakerCore,
  announce: Announce,
  taken: number,
  probe: boolean,
  release: Effect.Effect<void> = Effect.void
): Permit => {
  let done = false
  const report = (failed: boolean | undefined, error: unknown): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (done) return Effect.void
      done = true
      if (failed === undefined) {
        if (probe && taken === core.generation) core.probesInFlight = Math.max(0, core.probesInFlight - 1)
        return release
      }
      return Effect.flatMap(Clock.currentTimeMillis, (now) => announce(core.settle(taken, failed, error, now)))
    })
  return {
    success: report(false, undefined),
    // A request refused before it left (see `isUnsent`) gives no verdict: it frees its permit only.
    failure: (error) => (isUnsent(error) ? report(undefined, undefined) : report(core.o.isFailure(error), error)),
    cancel: report(undefined, undefined)
  }
}

/**
 * Opens `core` until `untilMs` on evidence from elsewhere (see {@link CircuitBreaker.tripUntil}): an
 * open period that would end sooner is extended, an isolated breaker or a past `untilMs` left alone.
 */
const forceOpenUntil = (core: BreakerCore, announce: Announce, now: number, untilMs: number, reason: string): Effect.Effect<void> => {
  if (!(untilMs > now) || core.state === "isolated") return Effect.void
  const expired = core.refresh(now)
  if (core.state === "open") {
    if (untilMs > core.openUntil) core.openUntil = untilMs
    return announce(expired)
  }
  core.openUntil = untilMs
  const event = core.transition(now, "open", reason)
  return expired === undefined ? announce(event) : Effect.zipRight(announce(expired), announce(event))
}

/** The call path of a breaker: admission (permits and the closed-state fast path) and reporting. */
const callPath = (
  core: BreakerCore,
  announce: Announce,
  rejections: Metric.Metric.Counter<number>,
  coordinator: BreakerCoordinator | undefined
): Pick<CircuitBreaker, "acquire" | "execute" | "unsafeTryAdmit" | "unsafeReport"> => {
  /** The local decision at `now`: a permit, or a (counted) rejection. `release` goes with a probe permit. */
  const admit = (site: Site, now: number, release?: Effect.Effect<void>): Effect.Effect<Permit, CircuitOpen> => {
    let outcome: Permit | CircuitOpen
    if (core.state === "closed") outcome = permitFor(core, announce, core.generation, false)
    else if (core.state === "half-open" && core.probesInFlight < core.o.probes) {
      core.probesInFlight++
      outcome = permitFor(core, announce, core.generation, true, release)
    } else {
      outcome = core.rejected(
        site,
        now,
        core.state === "open" ? Math.max(0, core.openUntil - now) : core.state === "half-open" ? 0 : undefined
      )
    }
    const result: Effect.Effect<Permit, CircuitOpen> = outcome instanceof CircuitOpen
      ? Effect.zipRight(Metric.increment(rejections), Effect.fail(outcome))
      : Effect.succeed(outcome)
    return release !== undefined && outcome instanceof CircuitOpen ? Effect.zipRight(release, result) : result
  }

  /**
   * A half-open probe asks the coordinator first: one process of the fleet probes at a time. While the
   * coordinator answers, the claim holds a probe slot here, so this process's other callers are refused
   * as while a probe is in flight. The claim and what follows it (a permit, or the claim given back) are
   * one uninterruptible step — bounded by the coordinator's command timeout — so an interruption can
   * never strand a claim. An answer that arrives after the breaker moved on (news from elsewhere opened
   * or closed it meanwhile) is stale: a granted claim is given back and the decision is made afresh.
   */
  const claimProbe = (fleet: BreakerCoordinator, site: Site): Effect.Effect<Permit, CircuitOpen> =>
    Effect.uninterruptible(Effect.suspend(() => {
      const generation = core.generation
      core.probesInFlight++
      return Effect.flatMap(fleet.claimProbe(core.key), (claim) =>
        Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<Permit, CircuitOpen> => {
          const current = core.generation === generation
          if (current) core.probesInFlight = Math.max(0, core.probesInFlight - 1)
          if (!current) return claim._tag === "Granted" ? Effect.zipRight(claim.release, admit(site, now)) : admit(site, now)
          switch (claim._tag) {
            case "Granted":
              return admit(site, now, claim.release)
            case "Closed":
              return Effect.zipRight(announce(core.close(now, claim.reason)), admit(site, now))
            case "Open":
              return Effect.zipRight(forceOpenUntil(core, announce, now, now + claim.forMs, claim.reason), admit(site, now))
            case "Busy":
              return Effect.zipRight(Metric.increment(rejections), Effect.fail(core.rejected(site, now, claim.forMs)))
          }
        }))
    }))

  const acquire = (site: Site): Effect.Effect<Permit, CircuitOpen> =>
    Effect.flatMap(Effect.zip(Clock.currentTimeMillis, FiberRef.get(currentPanic)), ([now, panic]) => {
      // In panic (every alternative is open too), an open period ends early: the call becomes a
      // half-open probe instead of a rejection, so a chain never fails without asking anyone — and
      // without asking the fleet either: in panic this process probes on its own.
      const event = core.refresh(now) ??
        (panic && core.state === "open" ? core.transition(now, "half-open", "panic: every route's breaker is open") : undefined)
      const result = coordinator !== undefined && !panic && core.state === "half-open" && core.probesInFlight < core.o.probes
        ? claimProbe(coordinator, site)
        : admit(site, now)
      return event === undefined ? result : Effect.zipRight(announce(event), result)
    })

  const unsafeTryAdmit = (): BreakerTicket | undefined => (core.state === "closed" ? core.generation : undefined)

  const unsafeReport = (ticket: BreakerTicket, exit: Exit.Exit<unknown, unknown>, now: number): Effect.Effect<void> => {
    const verdict = Exit.isSuccess(exit) ? SUCCESS : core.verdictOf(exit)
    return verdict === undefined ? Effect.void : announce(core.settle(ticket, verdict.failed, verdict.error, now))
  }

  const execute = <A, E, R>(call: Effect.Effect<A, E, R>, site: Site): Effect.Effect<A, E | CircuitOpen, R> =>
    Effect.clockWith((clock) => {
      const ticket = unsafeTryAdmit()
      if (ticket === undefined) return slowExecute(call, site)
      // The closed path, with no permit object: an interrupted call simply reports nothing.
      return Effect.flatMap(Effect.exit(call), (exit) => Effect.zipRight(unsafeReport(ticket, exit, clock.unsafeCurrentTimeMillis()), exit))
    })

  // Taking the permit and arming its report are one uninterruptible step: an interruption in between
  // would leave a probe slot (and a fleet's probe claim) held with nobody to report.
  const slowExecute = <A, E, R>(call: Effect.Effect<A, E, R>, site: Site): Effect.Effect<A, E | CircuitOpen, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(acquire(site), (permit) =>
        Effect.onExit(restore(call), (exit) => {
          const verdict = core.verdictOf(exit)
          if (verdict === undefined) return permit.cancel
          return verdict.failed ? permit.failure(verdict.error) : permit.success
        })))

  return { acquire, execute, unsafeTryAdmit, unsafeReport }
}

/** The control side of a breaker: snapshots, health probes, remote and manual opens, resets and events. */
const controlPath = (
  core: BreakerCore,
  announce: Announce,
  hub: PubSub.PubSub<BreakerEvent>
): Omit<CircuitBreaker, "key" | "acquire" | "execute" | "unsafeTryAdmit" | "unsafeReport"> => {
  const stats: Effect.Effect<BreakerStats> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const event = core.refresh(now)
    core.advance(now)
    const state = core.state
    const snapshot: BreakerStats = {
      state,
      calls: core.totalCalls(),
      failures: core.totalFailures(),
      consecutiveFailures: core.consecutive,
      ...(state === "open" ? { openUntil: core.openUntil } : {})
    }
    return Effect.as(announce(event), snapshot)
  })

  const probe = <A, E, R>(check: Effect.Effect<A, E, R>): Effect.Effect<boolean, never, R> =>
    Effect.flatMap(Effect.exit(check), (exit) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const verdict = core.verdictOf(exit)
        const ok = Exit.isSuccess(exit)
        if (verdict === undefined || (core.state !== "open" && core.state !== "half-open")) return Effect.succeed(ok)
        let event: BreakerEvent | undefined
        if (!verdict.failed) event = core.close(now, "health probe succeeded")
        else if (core.state === "half-open") event = core.open(now, "health probe failed", verdict.error)
        return Effect.as(announce(event), ok)
      }))

  const tripUntil = (untilMs: number, reason: string): Effect.Effect<void> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => forceOpenUntil(core, announce, now, untilMs, reason))

  const untrip = (reason: string): Effect.Effect<void> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      announce(core.state === "open" || core.state === "half-open" ? core.close(now, reason) : undefined))

  return {
    probe,
    tripUntil,
    untrip,
    state: Effect.map(stats, (s) => s.state),
    stats,
    isolate: Effect.flatMap(Clock.currentTimeMillis, (now) =>
      announce(core.state === "isolated" ? undefined : core.transition(now, "isolated", "manual isolate"))),
    reset: Effect.flatMap(Clock.currentTimeMillis, (now) => {
      core.reopenings = 0
      core.clearWindow()
      return announce(core.state === "closed" ? undefined : core.transition(now, "closed", "manual reset"))
    }),
    events: Effect.map(Stream.fromPubSub(hub, { scoped: true }), Stream.filter((event) => event.key === core.key)),
    history: Effect.sync(() => core.history.slice())
  }
}

/**
 * Builds a breaker that publishes its transitions to `hub`. Prefer the {@link CircuitBreakers}
 * registry, which shares one breaker per key across callers.
 */
const unsafeMake = (
  key: string,
  options: CircuitBreakerOptions,
  hub: PubSub.PubSub<BreakerEvent>,
  coordinator?: BreakerCoordinator
): CircuitBreaker => {
  const core = new BreakerCore(key, resolve(options))
  const metrics = breakerMetrics(key)
  const announce = announcer(metrics, hub)
  const calls = callPath(core, announce, metrics.rejections, coordinator)
  const controls = controlPath(core, announce, hub)
  return {
    key,
    acquire: calls.acquire,
    execute: calls.execute,
    unsafeTryAdmit: calls.unsafeTryAdmit,
    unsafeReport: calls.unsafeReport,
    probe: controls.probe,
    tripUntil: controls.tripUntil,
    untrip: controls.untrip,
    state: controls.state,
    stats: controls.stats,
    isolate: controls.isolate,
    reset: controls.reset,
    events: controls.events,
    history: controls.history
  }
}

/**
 * Builds a standalone breaker. Prefer the {@link CircuitBreakers} registry, which shares one breaker per
 * key across every caller of a route.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (key: string, options: CircuitBreakerOptions = {}): Effect.Effect<CircuitBreaker> =>
  Effect.map(PubSub.unbounded<BreakerEvent>(), (hub) => unsafeMake(key, options, hub))

/**
 * Runs `probe` every `interval` while the breaker is open or half-open (not while isolated), in the
 * current scope, through {@link CircuitBreaker.probe}: a success closes the breaker before its open
 * period ends, without a user's request being spent on finding out.
 *
 * @since 0.1.0
 * @category constructors
 */
export const withHealthProbe = <E, R>(
  breaker: CircuitBreaker,
  probe: Effect.Effect<unknown, E, R>,
  interval: Duration.DurationInput
): Effect.Effect<void, never, R | Scope.Scope> => {
  const tick = Effect.flatMap(breaker.state, (state) =>
    state === "open" || state === "half-open" ? Effect.asVoid(breaker.probe(probe)) : Effect.void)
  return Effect.asVoid(Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(interval), tick))))
}

/**
 * Panic mode for the current fiber: an open breaker admits the call as a half-open probe instead of
 * rejecting it. The fallback chain sets it for one last pass when every route it tried was refused by
 * its breaker — with every alternative believed down, failing fast protects nothing (Envoy's panic
 * threshold follows the same reasoning).
 *
 * @since 0.1.0
 * @category fiber refs
 */
export const currentPanic: FiberRef.FiberRef<boolean> = FiberRef.unsafeMake(false)

/**
 * The registry: one breaker per key (`route/model` in `Policy`), shared by every caller of that key,
 * with one stream of every breaker's transitions. The options of the first `get` of a key win.
 *
 * @since 0.1.0
 * @category tags
 */
export class CircuitBreakers extends Context.Tag("effect-llm-resilience/CircuitBreakers")<CircuitBreakers, {
  /** The breaker of `key`, created on first use; `probe` starts its health probe when the options ask for one. */
  readonly get: (
    key: string,
    options?: CircuitBreakerOptions,
    probe?: Effect.Effect<unknown, unknown>
  ) => Effect.Effect<CircuitBreaker>
  /** The breaker of `key`, if one exists. */
  readonly lookup: (key: string) => Effect.Effect<Option.Option<CircuitBreaker>>
  /** Every breaker created so far. */
  readonly all: Effect.Effect<ReadonlyArray<CircuitBreaker>>
  /** Subscribes now (in the current scope) to every transition of every breaker from then on. */
  readonly events: Effect.Effect<Stream.Stream<BreakerEvent>, never, Scope.Scope>
}>() {}

/**
 * Builds the registry in the current scope (health probes run in it and stop when it closes). With a
 * `coordinator`, every breaker asks it before a half-open probe leaves (see {@link BreakerCoordinator});
 * without one, breakers are purely local — what {@link layer} builds.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeRegistry = (
  options: { readonly coordinator?: BreakerCoordinator | undefined } = {}
): Effect.Effect<Context.Tag.Service<CircuitBreakers>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const hub = yield* PubSub.unbounded<BreakerEvent>()
    yield* Effect.addFinalizer(() => PubSub.shutdown(hub))
    const breakers = new Map<string, CircuitBreaker>()
    const get = (key: string, breakerOptions: CircuitBreakerOptions = {}, probe?: Effect.Effect<unknown, unknown>) =>
      Effect.suspend(() => {
        const existing = breakers.get(key)
        if (existing !== undefined) return Effect.succeed(existing)
        const breaker = unsafeMake(key, breakerOptions, hub, options.coordinator)
        breakers.set(key, breaker)
        if (probe === undefined || breakerOptions.healthProbe === undefined) return Effect.succeed(breaker)
        return Effect.as(
          Scope.extend(withHealthProbe(breaker, probe, breakerOptions.healthProbe.interval), scope),
          breaker
        )
      })
    return {
      get,
      lookup: (key) => Effect.sync(() => Option.fromNullable(breakers.get(key))),
      all: Effect.sync(() => Array.from(breakers.values())),
      events: Stream.fromPubSub(hub, { scoped: true })
    }
  })

/**
 * The registry layer: breakers local to this process. Health probes run in the layer's scope and stop
 * when it closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<CircuitBreakers> = Layer.scoped(CircuitBreakers, makeRegistry())

/**
 * Pre-flight health: before a long run starts, look at the primary route — its circuit breaker, the
 * shared `DegradedMode`, an optional synthetic probe (a one-token request) and an optional status-page
 * check (such as the CLI doctor's statuspage.io reader) — and decide whether to refuse to start, or to
 * start on the fallback chain, when the primary is degraded.
 *
 * Every check is optional; a check that cannot run (the status page does not answer) is reported but
 * does not by itself declare the primary degraded — an unreachable status page says nothing about the
 * API.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { CircuitBreakers } from "../CircuitBreaker.js"
import * as DegradedMode from "../DegradedMode.js"
import type * as Fallback from "../Fallback.js"
import type { HealthFinding } from "./AgentError.js"

/**
 * What a status-page check reports.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatusPageVerdict {
  readonly operational: boolean
  readonly description?: string | undefined
}

/**
 * What to do when the primary is degraded: `refuse` to start (`PreflightRefused`), or start with
 * model calls on `fallback` (a chain over the fallback routes) and return to the primary once a
 * re-check finds it healthy.
 *
 * @since 0.1.0
 * @category models
 */
export type OnDegraded =
  | { readonly onDegraded: "refuse" }
  | { readonly onDegraded: "fallback"; readonly fallback: Fallback.Chain }

/**
 * The checks.
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthChecks {
  /** The primary's breaker key in the `CircuitBreakers` registry (`route/model`). Default: the agent's `primaryBreaker`. */
  readonly primaryBreaker?: string | undefined
  /** Consult the shared `DegradedMode` (answers are already coming from a fallback). Default true. */
  readonly degradedMode?: boolean | undefined
  /** A synthetic request to the primary; failing (or exceeding `probeTimeout`) means degraded. */
  readonly probe?: Effect.Effect<unknown, unknown> | undefined
  /** Default 10 seconds. */
  readonly probeTimeout?: Duration.DurationInput | undefined
  /** A status-page reader. */
  readonly statusPage?: Effect.Effect<StatusPageVerdict, unknown> | undefined
}

/**
 * Pre-flight options of a run.
 *
 * @since 0.1.0
 * @category models
 */
export type PreflightOptions = HealthChecks & OnDegraded & {
  /** In fallback mode, how often model steps re-check the primary. Default 60 seconds. */
  readonly recheckEvery?: Duration.DurationInput | undefined
}

/**
 * The outcome of the checks.
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthReport {
  readonly healthy: boolean
  readonly findings: ReadonlyArray<HealthFinding>
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  probeTimeoutMs: 10_000,
  recheckEveryMs: 60_000
} as const

const describeFailure = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? `${error._tag}${"message" in error && typeof error.message === "string" ? `: ${error.message}` : ""}`
    : String(error)

/**
 * Runs the configured checks (in parallel) and reports every finding.
 *
 * @since 0.1.0
 * @category combinators
 */
export const check = (checks: HealthChecks): Effect.Effect<HealthReport> =>
  Effect.gen(function*() {
    const findings: Array<HealthFinding> = []
    const breakerKey = checks.primaryBreaker
    const tasks: Array<Effect.Effect<void>> = []
    if (breakerKey !== undefined) {
      tasks.push(Effect.gen(function*() {
        const registry = yield* Effect.serviceOption(CircuitBreakers)
        const breaker = Option.isSome(registry) ? yield* registry.value.lookup(breakerKey) : Option.none()
        if (Option.isNone(breaker)) {
          findings.push({ source: "breaker", healthy: true, detail: `no breaker ${breakerKey} yet (no call has failed)` })
          return
        }
        const state = yield* breaker.value.state
        const healthy = state === "closed" || state === "half-open"
        findings.push({ source: "breaker", healthy, detail: `breaker ${breakerKey} is ${state}` })
      }))
    }
    if (checks.degradedMode !== false) {
      tasks.push(Effect.gen(function*() {
        const ref = yield* Effect.serviceOption(DegradedMode.DegradedMode)
        if (Option.isNone(ref)) return
        const state = yield* SubscriptionRef.get(ref.value)
        findings.push({
          source: "degraded-mode",
          healthy: !state.degraded,
          detail: state.degraded ? `degraded: ${state.reason ?? `served by ${state.route ?? "a fallback route"}`}` : "not degraded"
        })
      }))
    }
    const probe = checks.probe
    if (probe !== undefined) {
      const timeout = Duration.decode(checks.probeTimeout ?? Duration.millis(defaults.probeTimeoutMs))
      tasks.push(
        probe.pipe(
          Effect.timeoutFail({ duration: timeout, onTimeout: () => `no answer within ${Duration.format(timeout)}` }),
          Effect.match({
            onSuccess: () => findings.push({ source: "probe", healthy: true, detail: "the probe succeeded" }),
            onFailure: (error) => findings.push({ source: "probe", healthy: false, detail: `the probe failed: ${describeFailure(error)}` })
          }),
          Effect.asVoid
        )
      )
    }
    const statusPage = checks.statusPage
    if (statusPage !== undefined) {
      tasks.push(
        statusPage.pipe(
          Effect.match({
            onSuccess: (verdict) =>
              findings.push({
                source: "status-page",
                healthy: verdict.operational,
                detail: verdict.description ?? (verdict.operational ? "operational" : "reported degraded")
              }),
            // An unreachable status page says nothing about the API itself: reported, not counted.
            onFailure: (error) =>
              findings.push({ source: "status-page", healthy: true, detail: `status page unavailable (ignored): ${describeFailure(error)}` })
          }),
          Effect.asVoid
        )
      )
    }
    yield* Effect.all(tasks, { concurrency: "unbounded", discard: true })
    findings.sort((a, b) => a.source.localeCompare(b.source))
    return { healthy: findings.every((f) => f.healthy), findings }
  })

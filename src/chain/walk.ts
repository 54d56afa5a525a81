/**
 * The chain's one walker. `generate`, `generateObject`, `stream` and `streamObject` are the same walk
 * — route order, pre-flight, action routing, repair, passes, panic, the deadline and its hand-over
 * rule, the retry budget, the attempt history and the degraded state — and differ only in how one
 * attempt runs (an effect or a stream) and how its answer is gated. So the walk is a state machine the
 * drivers step through: it says which attempt to make, hears how it ended, and says what comes next.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as DegradedMode from "../DegradedMode.js"
import { AllRoutesFailed, type RouteError, retryAfterOf } from "../Errors.js"
import { extend } from "../internal/object.js"
import type { ChainRequest, ChainResult, PartialOutputFailure, Restarted, Route } from "../Fallback.js"
import type { Acceptor, CallContext, PolicyRoute } from "../Policy.js"
import type { GenerateRequest, GenerateResponse } from "../Provider.js"
import { backoffDelay } from "../Retry.js"
import type { RetryBudgets } from "../RetryBudget.js"
import { AttemptLog } from "./attemptLog.js"
import { briefIssues, isRepairable, repairRequest, withoutRejectedOutput } from "./gate.js"
import {
  nextAfter,
  onlyBreakerRefusals,
  PASS_BACKOFF_BASE_MS,
  PASS_BACKOFF_CAP_MS,
  passesOf,
  preflight,
  transientTags
} from "./routing.js"

/** What a chain is built from, resolved and validated once by `Fallback.make`. */
export interface ChainConfig {
  readonly routes: ReadonlyArray<Route>
  /** Each route's policy, applied once. */
  readonly policies: ReadonlyMap<string, PolicyRoute>
  /** The order of one call's routes (groups shuffled by weight). */
  readonly order: Effect.Effect<ReadonlyArray<Route>>
  /** The routes of the first position: serving from them is not degraded. */
  readonly primaries: ReadonlySet<string>
  readonly budgets: Context.Tag.Service<RetryBudgets>
  readonly deadlineMs: number | undefined
  readonly passes: number | undefined
  readonly repairAttempts: number
  readonly panicWhenAllOpen: boolean
  readonly rerouteOnContentFilter: boolean
  /** The share of the time left that one route may use while a later route waits (see docs/policies.md). */
  readonly routeShare: number
  readonly estimate: (request: GenerateRequest) => number
}

/** One call: its request, its gate, and what the accepted answer's value is. */
export interface CallSpec<A> {
  readonly request: ChainRequest
  readonly gate: Acceptor
  readonly extract: (response: GenerateResponse) => A
  /** Structured output: an answer failing to decode may be repaired on the same route. */
  readonly repairable: boolean
  /** What a failure after output reached the consumer does (streams only). */
  readonly onPartialOutput: PartialOutputFailure
}

/** What to do next. */
export type Step<A> =
  | {
    readonly _tag: "Attempt"
    readonly route: Route
    readonly policy: PolicyRoute
    readonly request: GenerateRequest
    readonly context: CallContext
    /** Open breakers admit this attempt as a half-open probe (`CircuitBreaker.currentPanic`). */
    readonly panic: boolean
    /** Output of an earlier route reached the consumer: emit this before the attempt's first output. */
    readonly restartedFrom: Omit<Restarted, "to"> | undefined
  }
  | Done<A>
  | { readonly _tag: "Stop"; readonly error: AllRoutesFailed }

/** The call's accepted answer. */
export interface Done<A> {
  readonly _tag: "Done"
  readonly result: ChainResult<A>
}

/** Starts the walk of one call. */
export const start = <A>(config: ChainConfig, spec: CallSpec<A>): Effect.Effect<Walk<A>> =>
  Effect.map(Clock.currentTimeMillis, (now) => new Walk(config, spec, now))

export class Walk<A> {
  readonly log = new AttemptLog()
  private context: CallContext
  private passes: number
  private lastError: RouteError | undefined = undefined
  /** Decode issues of every rejected answer, per route, for the chain's message. */
  private readonly issues = new Map<string, string>()
  /** Routes that failed for good (or whose answer failed after its repair): later passes skip them. */
  private readonly settled = new Map<string, string>()
  private pass = 0
  private order: ReadonlyArray<Route> = []
  private index = -1
  private minContextWindow = 0
  private passErrors: Array<{ readonly route: string; readonly error: RouteError }> = []
  private passStart = 0
  private panic = false
  private repairs = 0
  private current: GenerateRequest | undefined = undefined
  private restart: Omit<Restarted, "to"> | undefined = undefined

  constructor(
    private readonly config: ChainConfig,
    private readonly spec: CallSpec<A>,
    private readonly startedAt: number,
    /** The call's deadline, absolute: the chain's own, clipped by the caller's in `beginWith`. */
    private deadline: number = config.deadlineMs === undefined ? Number.POSITIVE_INFINITY : startedAt + config.deadlineMs
  ) {
    this.context = { deadline: this.deadline, acceptor: this.log.metered(spec.gate), observe: this.log.observe }
    this.passes = passesOf(config.passes, this.deadline < Number.POSITIVE_INFINITY)
  }

  /** The call's deadline (absolute; `Infinity` for none). */
  get until(): number {
    return this.deadline
  }

  /** The first step, under the caller's deadline `enclosing` (a fiber's `Deadline`) when tighter. */
  begin(enclosing: number): Effect.Effect<Step<A>> {
    if (enclosing < this.deadline) {
      this.deadline = enclosing
      this.context = extend(this.context, { deadline: enclosing })
      this.passes = passesOf(this.config.passes, true)
    }
    return this.beginPass()
  }


  private beginPass(): Effect.Effect<Step<A>> {
    this.pass++
    this.index = -1
    this.minContextWindow = 0
    this.passErrors = []
    this.passStart = this.log.records.length
    return Effect.flatMap(this.config.order, (order) => {
      this.order = order
      return this.advance()
    })
  }

  /** The next route of this pass that can take the call, or the end of the pass. */
  private advance(): Effect.Effect<Step<A>> {
    return Effect.suspend(() => {
      for (this.index++; this.index < this.order.length; this.index++) {
        const route = this.order[this.index]!
        const settledBy = this.settled.get(route.name)
        if (settledBy !== undefined) {
          this.log.skip(route.name, `not tried again after ${settledBy}`)
          continue
        }
        const checked = preflight(route, this.spec.request, this.minContextWindow, this.config.estimate)
        if (checked._tag === "Skip") {
          this.log.skip(route.name, checked.message)
          continue
        }
        if (this.pass === 1) return this.attempt(route, checked.request, 0)
        // A later pass is a retry of the route: it spends the route's retry budget like one.
        return Effect.flatMap(this.withdraw(route), (granted) => {
          if (granted) return this.attempt(route, checked.request, 0)
          this.log.skip(route.name, "retry budget exhausted: not tried again")
          return this.advance()
        })
      }
      return this.endOfPass()
    })
  }

  private withdraw(route: Route): Effect.Effect<boolean> {
    return Effect.flatMap(this.config.budgets.get(route.name), (budget) => budget.withdraw)
  }

  private attempt(route: Route, request: GenerateRequest, repairs: number): Effect.Effect<Step<A>> {
    this.repairs = repairs
    this.current = request
    this.log.beginCall(route.name, repairs > 0 ? `repair ${repairs}/${this.config.repairAttempts}` : undefined)
    return Effect.map(Clock.currentTimeMillis, (now) => ({
      _tag: "Attempt",
      route,
      policy: this.config.policies.get(route.name)!,
      request,
      context: this.handOver(now),
      panic: this.panic,
      restartedFrom: this.restart
    }))
  }

  /**
   * The attempt's context. Under a deadline, while a later route waits its turn, this route gets
   * `routeShare` of the time left: its attempts (and a stream's headers and first token) are clipped
   * to that instant, and its retries never wait past it — a hung primary leaves the fallback time.
   */
  private handOver(now: number): CallContext {
    if (this.deadline === Number.POSITIVE_INFINITY || !this.laterRouteRemains()) return this.context
    return extend(this.context, { handOverAt: now + this.config.routeShare * Math.max(0, this.deadline - now) })
  }

  private laterRouteRemains(): boolean {
    for (let i = this.index + 1; i < this.order.length; i++) if (!this.settled.has(this.order[i]!.name)) return true
    return false
  }

  /**
   * The step after the current attempt failed. `delivered` is the text that reached the consumer
   * before the failure (streams), `undefined` when nothing did.
   */
  failed(error: RouteError, delivered: string | undefined): Effect.Effect<Step<A>> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const route = this.order[this.index]!
      this.lastError = error
      if (error._tag === "InvalidOutput" && error.issues !== undefined) this.issues.set(route.name, error.issues)
      // Past the deadline no route can answer, whatever this one failed with.
      if (now >= this.deadline) return this.stop("deadline", "the deadline passed")
      if (delivered !== undefined && this.spec.onPartialOutput === "fail") {
        return this.stop("stopped", `${route.name} failed after partial output`)
      }
      if (delivered === undefined && this.spec.repairable && isRepairable(error) && this.repairs < this.config.repairAttempts) {
        // A repair is a retry: it spends the route's retry budget like one.
        return Effect.flatMap(this.withdraw(route), (granted) =>
          granted ? this.attempt(route, repairRequest(this.current!, error), this.repairs + 1) : this.onward(route, error, delivered))
      }
      return this.onward(route, error, delivered)
    })
  }

  /** The route failed for this pass: settle it if no later pass can help, then route on or stop. */
  private onward(route: Route, error: RouteError, delivered: string | undefined): Effect.Effect<Step<A>> {
    this.passErrors.push({ route: route.name, error })
    if (!transientTags.has(error._tag)) this.settled.set(route.name, error._tag)
    // Its answer failed the gate even after a repair: another pass would pay for the same answer.
    else if (error._tag === "InvalidOutput" && this.repairs > 0) this.settled.set(route.name, "InvalidOutput after a repair")
    const next = nextAfter(error, route, this.minContextWindow, this.config.rerouteOnContentFilter)
    if (next._tag === "Stop") return this.stop("stopped", next.summary)
    this.minContextWindow = next.minContextWindow
    if (delivered !== undefined) this.restart = { _tag: "Restarted", from: route.name, discardedText: delivered, error }
    return this.advance()
  }

  private endOfPass(): Effect.Effect<Step<A>> {
    if (this.lastError === undefined) return this.stop("no-route", "no route could take the request")
    if (this.lastError._tag === "ContextLengthExceeded") {
      // Every later route was skipped for a window no larger: the request is too long for this chain.
      return this.stop("stopped", "ContextLengthExceeded: no route declares a larger context window")
    }
    if (!this.panic && this.config.panicWhenAllOpen && onlyBreakerRefusals(this.log.records.slice(this.passStart))) {
      // Every route refused at its open breaker and no provider was asked: walk once more in panic
      // mode, where each open breaker admits the call as a probe (see `FallbackOptions.panicWhenAllOpen`).
      this.panic = true
      this.pass--
      return this.beginPass()
    }
    this.panic = false
    if (this.pass >= this.passes) return this.stop("exhausted", "every route failed")
    return Effect.flatMap(this.pauseBeforePass(), (wait) =>
      wait === undefined
        ? this.stop("exhausted", "every route failed")
        : Effect.zipRight(Effect.sleep(Duration.millis(wait)), this.beginPass()))
  }

  /** The wait before another pass, or `undefined` when no pass can help or the deadline forbids it. */
  private pauseBeforePass(): Effect.Effect<number | undefined> {
    // Routes another pass would walk: failed transiently this pass and not settled since.
    const hopeful = this.passErrors.flatMap(({ error, route }) =>
      transientTags.has(error._tag) && !this.settled.has(route) ? [error] : [])
    if (hopeful.length === 0) return Effect.succeed(undefined)
    // The soonest any hopeful route said it may answer; a route that said nothing may try after one backoff.
    let wait = Number.POSITIVE_INFINITY
    let unhinted = false
    for (const error of hopeful) {
      const hint = retryAfterOf(error)
      if (hint === undefined) unhinted = true
      else wait = Math.min(wait, hint)
    }
    const backoff = unhinted
      ? backoffDelay("full", this.pass - 1, PASS_BACKOFF_BASE_MS, PASS_BACKOFF_CAP_MS, 0)
      : Effect.succeed(Number.POSITIVE_INFINITY)
    return Effect.flatMap(backoff, (delay) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const pause = Math.min(wait, delay)
        return pause < this.deadline - now ? pause : undefined
      }))
  }

  /** The current attempt's answer passed the gate: the call's result, published to `DegradedMode`. */
  answered(response: GenerateResponse): Effect.Effect<Done<A>> {
    const route = this.order[this.index]!
    const restarted = this.restart !== undefined
    const repaired = this.repairs > 0
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const degraded = !this.config.primaries.has(route.name) || repaired || restarted
      const result: ChainResult<A> = {
        value: this.spec.extract(response),
        response,
        route: route.name,
        degraded,
        repaired,
        attempts: this.log.records,
        usage: this.log.totalUsage(),
        durationMs: now - this.startedAt
      }
      const reason = repaired
        ? `repaired on ${route.name}`
        : restarted
        ? `stream restarted on ${route.name}`
        : `served by fallback route ${route.name}`
      return Effect.as(
        DegradedMode.publish({ degraded, route: route.name, ...(degraded ? { reason } : {}) }, now),
        { _tag: "Done", result } as const
      )
    })
  }

  /** The chain's failure; when every route failed or time ran out, the system is degraded too. */
  private stop(reason: AllRoutesFailed["reason"], summary: string): Effect.Effect<Step<A>> {
    const issues = [...this.issues].map(([route, text]) => `${route}: ${briefIssues(text)}`).join(" | ")
    const error = new AllRoutesFailed({
      reason,
      attempts: this.log.records,
      ...(this.lastError !== undefined ? { lastError: withoutRejectedOutput(this.lastError) } : {}),
      message: `${summary} (${this.log.summary()})${issues.length > 0 ? `; decode issues: ${issues}` : ""}`
    })
    const step = { _tag: "Stop", error } as const
    if (reason !== "exhausted" && reason !== "deadline") return Effect.succeed(step)
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.as(DegradedMode.publish({ degraded: true, reason: `no route answered (${reason})` }, now), step))
  }
}

/**
 * The chain's one walker. `generate`, `generateObject`, `stream` and `streamObject` are the same walk
 * — route order, pre-flight, action routing, repair, passes, panic, the deadline and its hand-over
 * rule, the retry budget, the attempt history and the degraded state — and differ only in how one
 * attempt runs (an effect or a stream) and how its answer is gated. So the walk is a state machine the
 * drivers step through: it says which attempt to make, hears how it ended, and says what comes next.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as DegradedMode from "../DegradedMode.js"
import { actionOf, AllRoutesFailed, type RouteError, retryAfterOf } from "../Errors.js"
import { extend, type Mutable } from "../internal/object.js"
import type { PriceTable } from "../internal/spend.js"
import type { ChainRequest, ChainResult, PartialOutputFailure, Restarted, Route } from "../Fallback.js"
import type { Acceptor, CallContext, RouteOn } from "../Policy.js"
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
  readonly policies: ReadonlyMap<string, RouteOn>
  /** The order of one call's routes: fixed, or drawn per call (groups shuffled by weight). */
  readonly order: ReadonlyArray<Route> | Effect.Effect<ReadonlyArray<Route>>
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
  /** Prices of attempts and calls (`costUsd`): the chain's own; else the enclosing budget's, per call. */
  readonly prices: PriceTable | undefined
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
export type Step =
  | {
    readonly _tag: "Attempt"
    readonly route: Route
    readonly policy: RouteOn
    readonly request: GenerateRequest
    readonly context: CallContext
    /** Open breakers admit this attempt as a half-open probe (`CircuitBreaker.currentPanic`). */
    readonly panic: boolean
    /** Output of an earlier route reached the consumer: emit this before the attempt's first output. */
    readonly restartedFrom: Omit<Restarted, "to"> | undefined
  }
  | { readonly _tag: "Stop"; readonly error: AllRoutesFailed }

/**
 * A step the walk knows at once, or an effect that finds it (a wait, a budget withdrawal, a random
 * route order, a `DegradedMode` publication). Most steps of a call are known at once, and an effect
 * step per decision would cost more than the decision. Every method that returns one runs at the
 * instant its step is taken (the drivers call them when the previous step ended), so the clock is
 * read synchronously there.
 */
export type Stepped = Step | Effect.Effect<Step>

/** Whether the step is known now. */
export const isStep = (stepped: Stepped): stepped is Step => !Effect.isEffect(stepped)

/** The step as an effect. */
export const stepEffect = (stepped: Stepped): Effect.Effect<Step> =>
  isStep(stepped) ? Effect.succeed(stepped) : stepped

/** The walk of one call; made by a driver when the call starts, on the calling fiber's clock. */
export class Walk<A> {
  readonly log: AttemptLog
  private context: CallContext
  private passes: number
  private lastError: RouteError | undefined = undefined
  /** Decode issues of every rejected answer, per route, for the chain's message. */
  private issues: Map<string, string> | undefined = undefined
  /** Routes that failed for good (or whose answer failed after its repair): later passes skip them. */
  private settled: Map<string, string> | undefined = undefined
  private pass = 0
  private order: ReadonlyArray<Route> = []
  private index = -1
  private minContextWindow = 0
  private passErrors: Array<{ readonly route: string; readonly error: RouteError }> | undefined = undefined
  private passStart = 0
  private panic = false
  private repairs = 0
  private current: GenerateRequest | undefined = undefined
  private restart: Omit<Restarted, "to"> | undefined = undefined

  private readonly startedAt: number
  /** The call's deadline, absolute: the chain's own, clipped by the caller's in `begin`. */
  private deadline: number

  constructor(
    private readonly config: ChainConfig,
    private readonly spec: CallSpec<A>,
    /** The calling fiber's clock (read synchronously: every step is taken when it is due). */
    private readonly clock: Clock.Clock,
    /** What attempts cost (see `ChainConfig.prices`). */
    prices: PriceTable | undefined = config.prices
  ) {
    this.log = new AttemptLog(prices)
    this.startedAt = clock.unsafeCurrentTimeMillis()
    this.deadline = config.deadlineMs === undefined ? Number.POSITIVE_INFINITY : this.startedAt + config.deadlineMs
    this.context = { deadline: this.deadline, acceptor: this.log.metered(spec.gate), observe: this.log.observe }
    this.passes = passesOf(config.passes, this.deadline < Number.POSITIVE_INFINITY)
  }

  /** The call's deadline (absolute; `Infinity` for none). */
  get until(): number {
    return this.deadline
  }

  /** The first step, under the caller's deadline `enclosing` (a fiber's `Deadline`) when tighter. */
  begin(enclosing: number): Stepped {
    if (enclosing < this.deadline) {
      this.deadline = enclosing
      this.context = extend(this.context, { deadline: enclosing })
      this.passes = passesOf(this.config.passes, true)
    }
    return this.beginPass()
  }


  private beginPass(): Stepped {
    this.pass++
    this.index = -1
    this.minContextWindow = 0
    this.passErrors = undefined
    this.passStart = this.log.records.length
    const order = this.config.order
    if (!Effect.isEffect(order)) return this.walkPass(order)
    return Effect.flatMap(order, (drawn) => stepEffect(this.walkPass(drawn)))
  }

  private walkPass(order: ReadonlyArray<Route>): Stepped {
    this.order = order
    return this.advance()
  }

  /** The next route of this pass that can take the call, or the end of the pass. */
  private advance(): Stepped {
    for (this.index++; this.index < this.order.length; this.index++) {
      const route = this.order[this.index]!
      const settledBy = this.settled?.get(route.name)
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
        if (granted) return Effect.succeed(this.attempt(route, checked.request, 0))
        this.log.skip(route.name, "retry budget exhausted: not tried again")
        return stepEffect(this.advance())
      })
    }
    return this.endOfPass()
  }

  private withdraw(route: Route): Effect.Effect<boolean> {
    return Effect.flatMap(this.config.budgets.get(route.name), (budget) => budget.withdraw)
  }

  private attempt(route: Route, request: GenerateRequest, repairs: number): Step {
    this.repairs = repairs
    this.current = request
    this.log.beginCall(route.name, request.model, repairs > 0 ? `repair ${repairs}/${this.config.repairAttempts}` : undefined)
    return {
      _tag: "Attempt",
      route,
      policy: this.config.policies.get(route.name)!,
      request,
      context: this.handOver(this.clock.unsafeCurrentTimeMillis()),
      panic: this.panic,
      restartedFrom: this.restart
    }
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
    for (let i = this.index + 1; i < this.order.length; i++) if (this.settled?.has(this.order[i]!.name) !== true) return true
    return false
  }

  /**
   * The step after the current attempt failed. `delivered` is the text that reached the consumer
   * before the failure (streams), `undefined` when nothing did.
   */
  failed(error: RouteError, delivered: string | undefined): Stepped {
    const now = this.clock.unsafeCurrentTimeMillis()
    const route = this.order[this.index]!
    this.lastError = error
    if (error._tag === "InvalidOutput" && error.issues !== undefined) {
      this.issues ??= new Map()
      this.issues.set(route.name, error.issues)
    }
    // Past the deadline no route can answer, whatever this one failed with.
    if (now >= this.deadline) return this.stop("deadline", "the deadline passed")
    // A spend budget refused before sending: every route and retry would ask the same spent budget.
    // (Not for an unpriced model — `actionOf` reroutes it: the next route's model may be priced.)
    if (error._tag === "BudgetExceeded" && actionOf(error) === "stop") {
      return this.stop("budget", `spend budget "${error.budget}" refused ${route.name}`)
    }
    if (delivered !== undefined && this.spec.onPartialOutput === "fail") {
      return this.stop("stopped", `${route.name} failed after partial output`)
    }
    if (delivered === undefined && this.spec.repairable && isRepairable(error) && this.repairs < this.config.repairAttempts) {
      // A repair is a retry: it spends the route's retry budget like one.
      return Effect.flatMap(this.withdraw(route), (granted) =>
        granted
          ? Effect.succeed(this.attempt(route, repairRequest(this.current!, error), this.repairs + 1))
          : stepEffect(this.onward(route, error, delivered)))
    }
    return this.onward(route, error, delivered)
  }

  /** The route failed for this pass: settle it if no later pass can help, then route on or stop. */
  private onward(route: Route, error: RouteError, delivered: string | undefined): Stepped {
    this.passErrors ??= []
    this.passErrors.push({ route: route.name, error })
    if (!transientTags.has(error._tag)) this.settle(route.name, error._tag)
    // Its answer failed the gate even after a repair: another pass would pay for the same answer.
    else if (error._tag === "InvalidOutput" && this.repairs > 0) this.settle(route.name, "InvalidOutput after a repair")
    const next = nextAfter(error, route, this.minContextWindow, this.config.rerouteOnContentFilter)
    if (next._tag === "Stop") return this.stop("stopped", next.summary)
    this.minContextWindow = next.minContextWindow
    if (delivered !== undefined) this.restart = { _tag: "Restarted", from: route.name, discardedText: delivered, error }
    return this.advance()
  }

  private settle(route: string, why: string): void {
    this.settled ??= new Map()
    this.settled.set(route, why)
  }

  private endOfPass(): Stepped {
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
    if (this.pass >= this.passes) return this.exhausted()
    return Effect.flatMap(this.pauseBeforePass(), (wait) =>
      wait === undefined
        ? stepEffect(this.exhausted())
        // Suspended: the next pass starts (and reads the clock) after the pause, not before.
        : Effect.zipRight(Effect.sleep(Duration.millis(wait)), Effect.suspend(() => stepEffect(this.beginPass()))))
  }

  /** No route is left to try. */
  private exhausted(): Stepped {
    const last = this.lastError
    // The last route tried was refused by a spend budget (an unpriced model: the walk moved on).
    if (last?._tag === "BudgetExceeded") return this.stop("budget", `spend budget "${last.budget}" refused the last route tried`)
    return this.stop("exhausted", "every route failed")
  }

  /** The wait before another pass, or `undefined` when no pass can help or the deadline forbids it. */
  private pauseBeforePass(): Effect.Effect<number | undefined> {
    // Routes another pass would walk: failed transiently this pass and not settled since.
    const hopeful = (this.passErrors ?? []).flatMap(({ error, route }) =>
      transientTags.has(error._tag) && this.settled?.has(route) !== true ? [error] : [])
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
    return Effect.map(backoff, (delay) => {
      const pause = Math.min(wait, delay)
      return pause < this.deadline - this.clock.unsafeCurrentTimeMillis() ? pause : undefined
    })
  }

  /**
   * The current attempt's answer passed the gate: the call's result, and its publication to
   * `DegradedMode` (to run before the result is handed out).
   */
  answered(response: GenerateResponse): Answered<A> {
    const now = this.clock.unsafeCurrentTimeMillis()
    const route = this.order[this.index]!
    const restarted = this.restart !== undefined
    const repaired = this.repairs > 0
    const degraded = !this.config.primaries.has(route.name) || repaired || restarted
    const result: Mutable<ChainResult<A>> = {
      value: this.spec.extract(response),
      response,
      route: route.name,
      degraded,
      repaired,
      attempts: this.log.records,
      usage: this.log.totalUsage(),
      durationMs: now - this.startedAt
    }
    const cost = this.log.totalCost()
    if (cost !== undefined) result.costUsd = cost
    const state = !degraded
      ? { degraded, route: route.name }
      : {
        degraded,
        route: route.name,
        reason: repaired
          ? `repaired on ${route.name}`
          : restarted
          ? `stream restarted on ${route.name}`
          : `served by fallback route ${route.name}`
      }
    return { result, publish: DegradedMode.publish(state, now) }
  }

  /** The chain's failure; when every route failed or time ran out, the system is degraded too. */
  private stop(reason: AllRoutesFailed["reason"], summary: string): Stepped {
    const issues = [...(this.issues ?? [])].map(([route, text]) => `${route}: ${briefIssues(text)}`).join(" | ")
    const error = new AllRoutesFailed({
      reason,
      attempts: this.log.records,
      ...(this.lastError !== undefined ? { lastError: withoutRejectedOutput(this.lastError) } : {}),
      message: `${summary} (${this.log.summary()})${issues.length > 0 ? `; decode issues: ${issues}` : ""}`
    })
    const step = { _tag: "Stop", error } as const
    if (reason !== "exhausted" && reason !== "deadline") return step
    const now = this.clock.unsafeCurrentTimeMillis()
    return Effect.as(DegradedMode.publish({ degraded: true, reason: `no route answered (${reason})` }, now), step)
  }
}

/** An accepted answer: the call's result, and the `DegradedMode` publication that precedes it. */
export interface Answered<A> {
  readonly result: ChainResult<A>
  readonly publish: Effect.Effect<void>
}

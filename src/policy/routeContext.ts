/**
 * What every attempt of one policy-wrapped route shares — its provider, label, timeouts, metrics and
 * tracing switch — and the per-call and per-model values the attempt builders work with. Built once
 * per route by `Policy`; the attempt builders (`generateAttempt.ts`, `streamAttempt.ts`) close over it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { CircuitBreaker } from "../CircuitBreaker.js"
import type { RouteError } from "../Errors.js"
import type * as Hedge from "../Hedge.js"
import * as Metrics from "../internal/metrics.js"
import * as Spend from "../internal/spend.js"
import type { Acceptor, CallContext, PolicyOptions } from "../Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape, StreamEvent } from "../Provider.js"
import type { RateLimiter } from "../RateLimiter.js"
import type * as Retry from "../Retry.js"
import type * as Timeouts from "../Timeouts.js"

/** The output gate of the current call (public as `Policy.currentAcceptor`). */
export const currentAcceptor: FiberRef.FiberRef<Option.Option<Acceptor>> = FiberRef.unsafeMake<Option.Option<Acceptor>>(
  Option.none()
)

/**
 * Counters of one route. Built once (see internal/metrics.ts for why not `Metric.tagged`) and updated
 * synchronously with the fiber's metric labels, so counting an attempt is not an effect step.
 */
export const routeMetrics = (route: string) => {
  const attempts = Metrics.counterFamily("llm_attempts_total", "Provider attempts by route and outcome", { route }, "outcome")
  const timeouts = Metrics.counterFamily(
    "llm_timeouts_total",
    "Attempts ended by a timeout, by route and phase (deadline = the call's deadline)",
    { route },
    "phase"
  )
  const retried = Metrics.counter("llm_retries_total", "Attempts after the first, by route", { route })
  const succeeded = attempts("success")
  const count = (attempt: number, error: RouteError | undefined, labels: ReadonlyArray<MetricLabel.MetricLabel>): void => {
    if (attempt > 1) retried.unsafeUpdate(1, labels)
    if (error === undefined) return succeeded.unsafeUpdate(1, labels)
    attempts(error._tag).unsafeUpdate(1, labels)
    if (error._tag === "Timeout") timeouts(error.phase).unsafeUpdate(1, labels)
    else if (error._tag === "DeadlineExceeded") timeouts("deadline").unsafeUpdate(1, labels)
  }
  return {
    count,
    /** The same, as an effect (for streams, which count from inside stream operators). */
    countEffect: (attempt: number, error: RouteError | undefined): Effect.Effect<void> =>
      Effect.withFiberRuntime((fiber) => {
        count(attempt, error, fiber.getFiberRef(FiberRef.currentMetricLabels))
        return Effect.void
      })
  }
}

/** One route's shared parts. */
export interface RouteContext {
  readonly provider: ProviderShape
  readonly route: string
  /** Always on: with phase timeouts off, it still enforces the deadline (one timer per attempt). */
  readonly guard: Timeouts.Timeouts
  readonly metrics: ReturnType<typeof routeMetrics>
  readonly tracing: PolicyOptions["tracing"]
}

/** Per model of a route: its breaker, limiter, retry loop and hedger, looked up once and cached. */
export interface ModelState {
  readonly breaker: CircuitBreaker | undefined
  readonly limiter: RateLimiter | undefined
  readonly retry: Retry.RetryLoop
  readonly hedge: Hedge.Hedge | undefined
}

/** A call's context once resolved at its start; `deadline` undefined = the fiber's. */
export interface ResolvedCall extends Retry.CallOptions {
  readonly acceptor: Acceptor | undefined
}

/** The context of a call that brought none: the deadline and output gate are the fiber's. */
export const inherited: ResolvedCall = { acceptor: undefined }

/** The gate and hand-over of a streamed call (its deadline stays in the fiber). */
export type StreamContext = Pick<CallContext, "acceptor" | "handOverAt">

export const noStreamContext: StreamContext = {}

/** Where an attempt's failures are attributed. */
export const siteOf = (ctx: RouteContext, request: GenerateRequest, attempt: number): Timeouts.Site => ({
  provider: ctx.provider.name,
  model: request.model,
  route: ctx.route,
  attempt
})

/** The budgets a send of this route must pass: none without a budget, none for a self-guarded provider. */
const budgetsFor = (ctx: RouteContext, fiber: Fiber.RuntimeFiber<unknown, unknown>) => {
  const budgets = fiber.getFiberRef(Spend.currentBudgets)
  return budgets.length === 0 || Spend.isSelfGuarded(ctx.provider) ? undefined : budgets
}

/**
 * The provider's call of one attempt. Every send of a policy-wrapped route — each retry, hedge leg,
 * repair, later pass and fallback route — starts here, so this is where the spend budgets of the
 * fiber (`Spend.within`, a chain's `spend`) refuse or reserve before anything is sent (see
 * internal/spend.ts). Without a budget it is the provider's own call, untouched — and so it is for a
 * provider whose own sends are guarded already (a chain behind the @effect/ai bridge: its routes'
 * attempts reserve in the same budgets, so the whole call is not reserved a second time).
 */
export const sendGenerate = (
  ctx: RouteContext,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  request: GenerateRequest,
  site: Timeouts.Site
): Effect.Effect<GenerateResponse, RouteError> => {
  const budgets = budgetsFor(ctx, fiber)
  const call = ctx.provider.generate(request)
  return budgets === undefined ? call : Spend.guardGenerate(budgets, site, request, call, fiber.getFiberRef(FiberRef.currentMetricLabels))
}

/** {@link sendGenerate} for a streamed attempt. */
export const sendStream = (
  ctx: RouteContext,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  request: GenerateRequest,
  site: Timeouts.Site
): Stream.Stream<StreamEvent, RouteError> => {
  const budgets = budgetsFor(ctx, fiber)
  const call = ctx.provider.stream(request)
  return budgets === undefined ? call : Spend.guardStream(budgets, site, request, call, fiber.getFiberRef(FiberRef.currentMetricLabels))
}

/** Span attributes of an attempt (computed only when spans are on). */
export const attributesOf = (
  ctx: RouteContext,
  state: ModelState,
  request: GenerateRequest,
  attempt: number,
  delayMs: number,
  hedged: boolean,
  stream: boolean
) =>
  Effect.map(state.breaker === undefined ? Effect.succeed("none") : state.breaker.state, (breakerState) => ({
    "llm.route": ctx.route,
    "llm.attempt": attempt,
    "llm.retry.delay_ms": delayMs,
    "llm.breaker.state": breakerState,
    "llm.hedge": hedged,
    "llm.stream": stream,
    "gen_ai.system": ctx.provider.name,
    "gen_ai.request.model": request.model
  }))

/** What the `llm.attempt` span learns at its end: the outcome, and the provider's (checked) request id. */
export const outcomeAttributes = (outcome: string, requestId: string | undefined): Record<string, unknown> =>
  requestId === undefined ? { "llm.outcome": outcome } : { "llm.outcome": outcome, "llm.request_id": requestId }

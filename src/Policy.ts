/**
 * The per-route reliability policy: one value that composes the strategies in a fixed order and
 * applies them to a `Provider` (as a function or as a Layer).
 *
 * ```
 * Deadline ▸ Retry(+RetryBudget) ▸ [Hedge] ▸ per attempt: RateLimiter ▸ CircuitBreaker ▸ Timeouts ▸ Provider
 * ```
 *
 * Why the limiter and breaker sit *inside* the retry loop (each attempt, not each logical call, goes
 * through them): every attempt spends provider quota, so every attempt must take a rate-limit permit;
 * and every attempt is evidence of the provider's health, so the breaker must see each one — and once
 * it opens, the next attempt fails fast with `CircuitOpen` (action `reroute`), which ends the retry
 * loop instead of sleeping toward a provider known to be down.
 *
 * Hedging (off by default) sits between the retry loop and the attempt: a hedged step runs up to two
 * full attempts (each with its own permit, breaker verdict and timeouts) and counts as one step of the
 * retry loop; the second attempt is paid from the route's retry budget.
 *
 * The deadline is neither armed nor written to the caller's fiber: the call takes the tighter of the
 * policy's and the caller's at its start, every wait below refuses to cross it, every attempt's single
 * timer is clipped to it, and the attempt's fiber starts with it as `Deadline.currentDeadline` (so the
 * provider sees what is left). A policy call costs one timer per attempt, deadline included, and no
 * `Effect.locally` (a runtime-flags change, two fiber-ref map copies and an exit handler per call).
 *
 * Stateful parts (breakers, limiters, budgets) live in registry services keyed by route and model,
 * outside any per-attempt or per-call layer, so every caller of a route shares them.
 *
 * Observability: every attempt runs in an `llm.attempt` span (when a tracer is installed, see
 * `tracing`) with `llm.route`, `llm.attempt`, `llm.retry.delay_ms`, `llm.breaker.state`, `llm.hedge`
 * and, when it ends, `llm.outcome`; and counts in `llm_attempts_total{route,outcome}`,
 * `llm_retries_total{route}`, `llm_timeouts_total{route,phase}` (phase `deadline` for the deadline),
 * `llm_retry_budget_rejections_total{route}` (Retry), `llm_breaker_transitions_total{key,to}`
 * (CircuitBreaker), `llm_hedges_total{route,outcome}` (Hedge) and, under a spend budget with prices,
 * `llm_cost_usd_total{route}` (Spend).
 *
 * Spend budgets (`Spend.within`, a chain's `spend`) are checked where an attempt calls its provider:
 * each attempt reserves its worst case there before it is sent, or fails with `BudgetExceeded`.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { type CircuitBreakerOptions, CircuitBreakers } from "./CircuitBreaker.js"
import * as CircuitBreakerModule from "./CircuitBreaker.js"
import * as Deadline from "./Deadline.js"
import type { ContentFiltered, InvalidOutput, RouteError } from "./Errors.js"
import * as Hedge from "./Hedge.js"
import { clockOf, millisOf } from "./internal/timer.js"
import { type GenerateRequest, type GenerateResponse, Provider, type ProviderShape, type StreamEvent } from "./Provider.js"
import { type RateLimiterOptions, RateLimiters } from "./RateLimiter.js"
import * as RateLimiterModule from "./RateLimiter.js"
import * as Retry from "./Retry.js"
import * as RetryBudget from "./RetryBudget.js"
import * as Timeouts from "./Timeouts.js"
import { makeGenerateAttempt } from "./policy/generateAttempt.js"
import {
  inherited,
  type ModelState,
  noStreamContext,
  type ResolvedCall,
  type RouteContext,
  routeMetrics,
  type StreamContext
} from "./policy/routeContext.js"
import * as RouteContextModule from "./policy/routeContext.js"
import { makeStreamAttempt } from "./policy/streamAttempt.js"

/**
 * The policy options: each strategy's own options, or `false` to switch it off.
 *
 * @since 0.1.0
 * @category models
 */
export interface PolicyOptions {
  /** Default: on, with Retry's defaults. */
  readonly retry?: Retry.RetryOptions | false | undefined
  /** Default: on, with RetryBudget's defaults. */
  readonly budget?: RetryBudget.RetryBudgetOptions | false | undefined
  /** Default: on, with Timeouts' defaults. */
  readonly timeouts?: Timeouts.TimeoutOptions | false | undefined
  /** Default: on, with CircuitBreaker's defaults. */
  readonly breaker?: CircuitBreakerOptions | false | undefined
  /** Default: off (a limit you do not know cannot be enforced; the provider's headers still teach it when on). */
  readonly rateLimit?: RateLimiterOptions | false | undefined
  /** A wall-clock deadline per call, spanning every retry. Default: none. */
  readonly deadline?: Duration.DurationInput | undefined
  /**
   * Latency hedging: a second attempt when the first has produced no content after a delay (fixed, or
   * the route's observed p95), paid from the retry budget. `true` = Hedge's defaults. Default: off.
   */
  readonly hedge?: Hedge.HedgeOptions | boolean | undefined
  /** Hears about every finished attempt (attempt histories, custom telemetry). */
  readonly observe?: Retry.AttemptObserver | undefined
  /**
   * Spans per attempt: `auto` (default) creates them only when a real tracer is installed (e.g.
   * `@effect/opentelemetry`), since a span costs several microseconds even when nothing exports it.
   */
  readonly tracing?: "auto" | "always" | "never" | undefined
}

/**
 * A policy value: plain data, applied with {@link apply} or {@link layer}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: PolicyOptions = {}): PolicyOptions => options

const defaultPolicy: PolicyOptions = {}

export {
  /**
   * The default policy: retry (3 attempts, full jitter, Retry-After honoured up to 60 s), retry budget
   * (20% + 10/s), timeouts (headers 30 s, first token 120 s, idle 60 s, attempt 10 min), circuit
   * breaker (5 consecutive or 50% of ≥ 20 in 30 s, open 5 s, one half-open probe), no rate limiter, no
   * hedging, no deadline.
   *
   * @since 0.1.0
   * @category constructors
   */
  defaultPolicy as default
}

/**
 * The registries the stateful strategies keep their state in.
 *
 * @since 0.1.0
 * @category models
 */
export type PolicyState = CircuitBreakers | RateLimiters | RetryBudget.RetryBudgets

/**
 * The registries as one layer (provide it once, high in the program, so every caller shares state).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerState: Layer.Layer<PolicyState> = Layer.mergeAll(
  CircuitBreakerModule.layer,
  RateLimiterModule.layer,
  RetryBudget.layer
)

/**
 * Decides whether a transport-successful response is acceptable (the fallback chain's output gate).
 *
 * @since 0.1.0
 * @category models
 */
export type Acceptor = (
  response: GenerateResponse,
  request: GenerateRequest
) => Effect.Effect<GenerateResponse, InvalidOutput | ContentFiltered>

/**
 * The output gate of the current call, read inside every attempt so that a rejected answer is a
 * failure of *that attempt* — seen by the breaker, the metrics and the attempt history — not a success
 * rejected afterwards.
 *
 * @since 0.1.0
 * @category fiber refs
 */
export const currentAcceptor: FiberRef.FiberRef<Option.Option<Acceptor>> = RouteContextModule.currentAcceptor

/** Phase timeouts switched off: only the call's deadline (if any) bounds an attempt. */
const deadlineOnly: Timeouts.TimeoutOptions = {
  attempt: Number.POSITIVE_INFINITY,
  headers: Number.POSITIVE_INFINITY,
  firstToken: Number.POSITIVE_INFINITY,
  idle: Number.POSITIVE_INFINITY
}

/**
 * The per-model state of a route (`route/model` keys its breaker and limiter), made on a model's first
 * call and cached: one retry loop, breaker and hedger per model, ever.
 */
const modelStates = (policy: PolicyOptions, provider: ProviderShape, route: string) =>
  Effect.gen(function*() {
    const breakers = yield* CircuitBreakers
    const limiters = yield* RateLimiters
    const budgets = yield* RetryBudget.RetryBudgets
    const retryOptions: Retry.RetryOptions = policy.retry === false ? { maxAttempts: 1 } : policy.retry ?? {}
    const hedgeOptions = policy.hedge === undefined || policy.hedge === false ? undefined : policy.hedge === true ? {} : policy.hedge
    const budget = policy.budget === false || (policy.retry === false && hedgeOptions === undefined)
      ? undefined
      : yield* budgets.get(route, policy.budget ?? {})
    // The breaker's optional background probe: the smallest request the route can answer, sent
    // straight to the provider (not through the retry loop or the output gate).
    const healthProbe = (model: string) => provider.generate({ model, messages: [{ role: "user", content: "ping" }], maxTokens: 1 })
    const models = new Map<string, ModelState>()
    const stateOf = (model: string): Effect.Effect<ModelState> =>
      Effect.gen(function*() {
        // An effect built before the first call of this model and run later (or run many times)
        // finds the state made meanwhile.
        const existing = models.get(model)
        if (existing !== undefined) return existing
        const key = `${route}/${model}`
        const state: ModelState = {
          breaker: policy.breaker === false ? undefined : yield* breakers.get(key, policy.breaker ?? {}, healthProbe(model)),
          limiter: policy.rateLimit === undefined || policy.rateLimit === false ? undefined : yield* limiters.get(key, policy.rateLimit),
          retry: Retry.makeLoop(retryOptions, { route, budget, observe: policy.observe }),
          hedge: hedgeOptions === undefined ? undefined : Hedge.make(hedgeOptions, { budget, label: route })
        }
        // Another fiber may have made it while this one looked up the shared registries.
        const made = models.get(model)
        if (made !== undefined) return made
        models.set(model, state)
        return state
      })
    return { models, stateOf }
  })

/** Builds a route: the strategies' state, the attempt builders, and the retry loop around them. */
const makeRoute = (
  policy: PolicyOptions,
  provider: ProviderShape,
  route: string
): Effect.Effect<RouteOn, never, PolicyState> =>
  Effect.gen(function*() {
    const { models, stateOf } = yield* modelStates(policy, provider, route)
    const ctx: RouteContext = {
      provider,
      route,
      guard: Timeouts.make(policy.timeouts === false ? deadlineOnly : policy.timeouts ?? {}),
      metrics: routeMetrics(route),
      tracing: policy.tracing
    }
    const deadline = policy.deadline
    const deadlineMs = millisOf(deadline)
    const generateAttempt = makeGenerateAttempt(ctx)
    const streamAttempt = makeStreamAttempt(ctx)

    /** The model's state, without an extra step once it exists. */
    const withState = <A, E, R>(model: string, f: (state: ModelState) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
      const cached = models.get(model)
      return cached !== undefined ? f(cached) : Effect.flatMap(stateOf(model), f)
    }

    const generateStep = (state: ModelState, context: ResolvedCall): Retry.AttemptOn<RouteError, never> =>
    (request, attempt, delayMs, fiber) =>
      state.hedge === undefined
        // Run at once by the retry loop, on its fiber.
        ? generateAttempt.attemptOn(fiber, state, request, attempt, delayMs, false, context)
        : state.hedge.generate(
          generateAttempt.attempt(state, request, attempt, delayMs, false, context),
          generateAttempt.attempt(state, request, attempt, delayMs, true, context)
        )

    const streamStep = (state: ModelState, context: StreamContext) => (request: GenerateRequest, attempt: number, delayMs: number) =>
      state.hedge === undefined
        ? streamAttempt(state, request, attempt, delayMs, false, context)
        : state.hedge.stream(
          streamAttempt(state, request, attempt, delayMs, false, context),
          streamAttempt(state, request, attempt, delayMs, true, context)
        )

    /**
     * One call's context, resolved at its start: the tighter of the given (or inherited) deadline and
     * the policy's own, and the given output gate (or the fiber's `currentAcceptor`).
     */
    const resolve = (fiber: Fiber.RuntimeFiber<unknown, unknown>, given: CallContext | undefined): ResolvedCall => {
      let limit = Deadline.unsafeOf(fiber)
      if (given?.deadline !== undefined) limit = Math.min(limit, given.deadline)
      if (deadlineMs !== undefined) limit = Math.min(limit, clockOf(fiber).unsafeCurrentTimeMillis() + deadlineMs)
      const acceptor = given === undefined ? Option.getOrUndefined(fiber.getFiberRef(currentAcceptor)) : given.acceptor
      return { deadline: limit, acceptor, observe: given?.observe, handOverAt: given?.handOverAt }
    }

    const generateOn = (
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      request: GenerateRequest,
      given: CallContext | undefined
    ): Effect.Effect<GenerateResponse, RouteError> => {
      // Nothing to resolve: every part reads the fiber's deadline and gate where it needs them.
      if (given === undefined && deadlineMs === undefined) {
        return withState(request.model, (state) => state.retry.generateOn(fiber, request, generateStep(state, inherited)))
      }
      const context = resolve(fiber, given)
      return withState(request.model, (state) => state.retry.generateOn(fiber, request, generateStep(state, context), context))
    }
    const generate = (request: GenerateRequest, given: CallContext | undefined) =>
      Effect.withFiberRuntime<GenerateResponse, RouteError>((fiber) => generateOn(fiber, request, given))

    // A stream's deadline bounds its consumer too, so it stays in the fiber (the chain publishes its
    // own there once per stream); the gate, the hand-over and the observer come as arguments.
    const stream = (request: GenerateRequest, given: CallContext | undefined) => {
      // Once the model's state exists, no `Stream.unwrap` (a stage every chunk would pass through).
      const events = Stream.suspend(() => {
        const context: StreamContext = given ?? noStreamContext
        const state = models.get(request.model)
        return state !== undefined
          ? state.retry.stream(request, streamStep(state, context), given)
          : Stream.unwrap(Effect.map(stateOf(request.model), (made) => made.retry.stream(request, streamStep(made, context), given)))
      })
      return deadline === undefined ? events : Deadline.propagateStream(events, deadline)
    }

    return {
      provider: {
        name: provider.name,
        generate: (request) => generate(request, undefined),
        stream: (request) => stream(request, undefined)
      },
      generate,
      generateOn,
      stream
    }
  })

/**
 * Wraps a provider with the policy. `route` labels errors, spans, metrics and keys the shared state
 * (default: the provider's name); the key of a breaker or limiter is `route/model`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const apply = (
  policy: PolicyOptions,
  provider: ProviderShape,
  route: string = provider.name
): Effect.Effect<ProviderShape, never, PolicyState> => Effect.map(makeRoute(policy, provider, route), (made) => made.provider)

/**
 * One call's context, given as arguments by a caller that tracks it itself (the fallback chain)
 * instead of in fiber refs: handing it down through `Effect.locally` costs a runtime-flags change,
 * two fiber-ref map copies and an exit handler per call.
 *
 * @since 0.2.0
 * @category models
 */
export interface CallContext extends Retry.CallOptions {
  /** The output gate every attempt's answer must pass (replaces {@link currentAcceptor}). */
  readonly acceptor?: Acceptor | undefined
}

/**
 * A policy-wrapped provider with entry points that take one call's context as arguments: what the
 * fallback chain calls. `provider` is the same policy as a plain `Provider` (what {@link apply} returns).
 *
 * @since 0.2.0
 * @category models
 */
export interface PolicyRoute {
  readonly provider: ProviderShape
  readonly generate: (request: GenerateRequest, call: CallContext | undefined) => Effect.Effect<GenerateResponse, RouteError>
  readonly stream: (request: GenerateRequest, call: CallContext | undefined) => Stream.Stream<StreamEvent, RouteError>
}

/**
 * A {@link PolicyRoute} with the entry point of a caller that holds the fiber the call runs on and
 * runs the returned effect on it at once (the fallback chain's driver): `generate` is `generateOn`
 * run on the fiber that runs it.
 *
 * @internal
 */
export interface RouteOn extends PolicyRoute {
  readonly generateOn: (
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    request: GenerateRequest,
    call: CallContext | undefined
  ) => Effect.Effect<GenerateResponse, RouteError>
}

/**
 * {@link route} with the entry point of {@link RouteOn}.
 *
 * @internal
 */
export const routeOn = (policy: PolicyOptions, provider: ProviderShape, name: string): Effect.Effect<RouteOn, never, PolicyState> =>
  makeRoute(policy, provider, name)

/**
 * {@link apply} as a {@link PolicyRoute}.
 *
 * @since 0.2.0
 * @category combinators
 */
export const route: (
  policy: PolicyOptions,
  provider: ProviderShape,
  route?: string
) => Effect.Effect<PolicyRoute, never, PolicyState> = (policy, provider, name = provider.name) =>
  makeRoute(policy, provider, name)

/**
 * A layer that wraps the `Provider` in context with the policy.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (policy: PolicyOptions, route?: string): Layer.Layer<Provider, never, Provider | PolicyState> =>
  Layer.effect(Provider, Effect.flatMap(Provider, (provider) => apply(policy, provider, route)))

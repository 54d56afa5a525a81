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
 * (CircuitBreaker) and `llm_hedges_total{route,outcome}` (Hedge).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { type CircuitBreaker, type CircuitBreakerOptions, CircuitBreakers } from "./CircuitBreaker.js"
import * as CircuitBreakerModule from "./CircuitBreaker.js"
import * as Deadline from "./Deadline.js"
import {
  type CircuitOpen,
  type ContentFiltered,
  type InvalidOutput,
  type RouteError,
  restamp
} from "./Errors.js"
import * as Hedge from "./Hedge.js"
import { clockOf, millisOf } from "./internal/timer.js"
import * as Metrics from "./internal/metrics.js"
import { type GenerateRequest, type GenerateResponse, Provider, type ProviderShape, type StreamEvent } from "./Provider.js"
import { type RateLimiter, type RateLimiterOptions, RateLimiters } from "./RateLimiter.js"
import * as RateLimiterModule from "./RateLimiter.js"
import * as Retry from "./Retry.js"
import * as RetryBudget from "./RetryBudget.js"
import * as Timeouts from "./Timeouts.js"
import { spansOn } from "./internal/tracing.js"

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
export const currentAcceptor: FiberRef.FiberRef<Option.Option<Acceptor>> = FiberRef.unsafeMake<Option.Option<Acceptor>>(
  Option.none()
)

/**
 * Counters of one route. Built once (see internal/metrics.ts for why not `Metric.tagged`) and updated
 * synchronously with the fiber's metric labels, so counting an attempt is not an effect step.
 */
const routeMetrics = (route: string) => {
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

/** Phase timeouts switched off: only the call's deadline (if any) bounds an attempt. */
const deadlineOnly: Timeouts.TimeoutOptions = {
  attempt: Number.POSITIVE_INFINITY,
  headers: Number.POSITIVE_INFINITY,
  firstToken: Number.POSITIVE_INFINITY,
  idle: Number.POSITIVE_INFINITY
}

/** What the `llm.attempt` span learns at its end: the outcome, and the provider's (checked) request id. */
const outcomeAttributes = (outcome: string, requestId: string | undefined): Record<string, unknown> =>
  requestId === undefined ? { "llm.outcome": outcome } : { "llm.outcome": outcome, "llm.request_id": requestId }

/** Per model of a route: its breaker, limiter, retry loop and hedger, looked up once and cached. */
interface ModelState {
  readonly breaker: CircuitBreaker | undefined
  readonly limiter: RateLimiter | undefined
  readonly retry: Retry.Retry
  readonly hedge: Hedge.Hedge | undefined
}

/** Builds a route: the strategies' state looked up once, and the attempt, stream and retry plumbing. */
const makeRoute = (
  policy: PolicyOptions,
  provider: ProviderShape,
  route: string
): Effect.Effect<PolicyRoute, never, PolicyState> =>
  Effect.gen(function*() {
    const breakers = yield* CircuitBreakers
    const limiters = yield* RateLimiters
    const budgets = yield* RetryBudget.RetryBudgets
    // Always on: with phase timeouts off, the guard still enforces the deadline (one timer per attempt).
    const guard = Timeouts.make(policy.timeouts === false ? deadlineOnly : policy.timeouts ?? {})
    const retryOptions: Retry.RetryOptions = policy.retry === false ? { maxAttempts: 1 } : policy.retry ?? {}
    const hedgeOptions = policy.hedge === undefined || policy.hedge === false
      ? undefined
      : policy.hedge === true
      ? {}
      : policy.hedge
    const budget = policy.budget === false || (policy.retry === false && hedgeOptions === undefined)
      ? undefined
      : yield* budgets.get(route, policy.budget ?? {})
    const deadline = policy.deadline
    const deadlineMs = millisOf(deadline)
    const metrics = routeMetrics(route)
    const tracing = policy.tracing

    const models = new Map<string, ModelState>()
    const stateOf = (model: string): Effect.Effect<ModelState> => {
      const key = `${route}/${model}`
      return Effect.gen(function*() {
        // An effect built before the first call of this model and run later (or run many times)
        // finds the state made meanwhile: one retry loop, breaker and hedger per model, ever.
        const existing = models.get(model)
        if (existing !== undefined) return existing
        const state: ModelState = {
          breaker: policy.breaker === false
            ? undefined
            : yield* breakers.get(key, policy.breaker ?? {}, healthProbe(model)),
          limiter: policy.rateLimit === undefined || policy.rateLimit === false
            ? undefined
            : yield* limiters.get(key, policy.rateLimit),
          retry: Retry.make(retryOptions, { route, budget, observe: policy.observe }),
          hedge: hedgeOptions === undefined ? undefined : Hedge.make(hedgeOptions, { budget, label: route })
        }
        // Another fiber may have made it while this one looked up the shared registries.
        const made = models.get(model)
        if (made !== undefined) return made
        models.set(model, state)
        return state
      })
    }
    /** The model's state, without an extra step once it exists. */
    const withState = <A, E, R>(model: string, f: (state: ModelState) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
      const cached = models.get(model)
      return cached !== undefined ? f(cached) : Effect.flatMap(stateOf(model), f)
    }

    // The breaker's optional background probe: the smallest request the route can answer, sent
    // straight to the provider (not through the retry loop or the output gate).
    const healthProbe = (model: string) =>
      provider.generate({ model, messages: [{ role: "user", content: "ping" }], maxTokens: 1 })

    const siteOf = (request: GenerateRequest, attempt: number) => ({
      provider: provider.name,
      model: request.model,
      route,
      attempt
    })

    /** Span attributes of an attempt (computed only when spans are on). */
    const attributesOf = (state: ModelState, request: GenerateRequest, attempt: number, delayMs: number, hedged: boolean, stream: boolean) =>
      Effect.map(state.breaker === undefined ? Effect.succeed("none") : state.breaker.state, (breakerState) => ({
        "llm.route": route,
        "llm.attempt": attempt,
        "llm.retry.delay_ms": delayMs,
        "llm.breaker.state": breakerState,
        "llm.hedge": hedged,
        "llm.stream": stream,
        "gen_ai.system": provider.name,
        "gen_ai.request.model": request.model
      }))

    /** Counts a finished attempt and stamps its failure with the route and attempt number. */
    const finish = (
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      attempt: number,
      exit: Exit.Exit<GenerateResponse, RouteError>
    ): Effect.Effect<GenerateResponse, RouteError> => {
      const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
      if (Exit.isSuccess(exit)) {
        metrics.count(attempt, undefined, labels)
        return exit
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isNone(failure)) return exit
      const error = restamp(failure.value, { route, attempt })
      metrics.count(attempt, error, labels)
      return Effect.fail(error)
    }

    /** The general form: limiter ▸ breaker ▸ guarded call, each through its own Effect API. */
    const layered = (state: ModelState, request: GenerateRequest, call: Effect.Effect<GenerateResponse, RouteError>, site: Timeouts.Site) => {
      let layeredCall = call
      if (state.breaker !== undefined) layeredCall = state.breaker.execute(layeredCall, site)
      if (state.limiter !== undefined) layeredCall = state.limiter.generate(request, layeredCall, site)
      return layeredCall
    }

    const generateAttempt = (
      state: ModelState,
      request: GenerateRequest,
      attempt: number,
      delayMs: number,
      hedged: boolean,
      context: ResolvedCall
    ) =>
      Effect.withFiberRuntime<GenerateResponse, RouteError>((fiber) => {
        const site = siteOf(request, attempt)
        const acceptor = context === inherited ? Option.getOrUndefined(fiber.getFiberRef(currentAcceptor)) : context.acceptor
        let unguarded: Effect.Effect<GenerateResponse, RouteError> = provider.generate(request)
        if (acceptor !== undefined) unguarded = Effect.flatMap(unguarded, (response) => acceptor(response, request))
        const done = (exit: Exit.Exit<GenerateResponse, RouteError>) => finish(fiber, attempt, exit)
        /** The general form; its waits (a limiter's queue) read the deadline from the fiber. */
        const general = () =>
          published(
            fiber,
            context.deadline,
            layered(state, request, guard.generate(unguarded, site, context.deadline, undefined, context.handOverAt), site)
          )

        if (spansOn(tracing, fiber.currentTracer)) {
          const counted = Effect.flatMap(Effect.exit(general()), done)
          return Effect.flatMap(
            attributesOf(state, request, attempt, delayMs, hedged, false),
            (attributes) =>
              Effect.withSpan(
                Effect.tapBoth(counted, {
                  onFailure: (error) => Effect.annotateCurrentSpan(outcomeAttributes(error._tag, error.requestId)),
                  onSuccess: (response) => Effect.annotateCurrentSpan(outcomeAttributes("success", response.requestId))
                }),
                "llm.attempt",
                { kind: "client", attributes }
              )
          )
        }

        // The fast path: the breaker closed and the limiter with capacity now, checked and settled
        // synchronously around one `Effect.exit` — the same semantics as `layered`, without an effect
        // step per strategy. Anything else (open breaker, a queue) takes the general form.
        const { breaker, limiter } = state
        const ticket = breaker?.unsafeTryAdmit()
        if (breaker !== undefined && ticket === undefined) return Effect.flatMap(Effect.exit(general()), done)
        const clock = clockOf(fiber)
        const settle = (exit: Exit.Exit<GenerateResponse, RouteError>, now: number) => {
          const announced = breaker === undefined || ticket === undefined ? Effect.void : breaker.unsafeReport(ticket, exit, now)
          return announced === Effect.void ? done(exit) : Effect.zipRight(announced, done(exit))
        }
        if (limiter === undefined) {
          return Effect.flatMap(
            Effect.exit(guard.generate(unguarded, site, context.deadline, undefined, context.handOverAt)),
            (exit) => settle(exit, clock.unsafeCurrentTimeMillis())
          )
        }
        // Uninterruptible from taking the limiter's slot until the call's exit is seen: it is always freed.
        return Effect.uninterruptibleMask((restore) => {
          const admitted = limiter.unsafeTryAdmit(request, clock.unsafeCurrentTimeMillis())
          if (admitted === undefined) return Effect.flatMap(Effect.exit(restore(general())), done)
          // The attempt waits interruptibly inside this region rather than in one of its own.
          return Effect.flatMap(Effect.exit(guard.generate(unguarded, site, context.deadline, restore, context.handOverAt)), (exit) => {
            const now = clock.unsafeCurrentTimeMillis()
            limiter.unsafeRelease(admitted, exit, now)
            return settle(exit, now)
          })
        })
      })

    /**
     * A streamed attempt as one stage: the timeouts' pull, with the breaker's verdict (closed-state
     * ticket), the metrics and the route stamp done per chunk in the same pull — the same semantics as
     * {@link layeredStream}, without an operator (a stage of the channel executor, paid on every chunk)
     * per concern. Anything else (a rate limiter, spans, a breaker not closed) takes the layered form.
     */
    const streamAttempt = (
      state: ModelState,
      request: GenerateRequest,
      attempt: number,
      delayMs: number,
      hedged: boolean,
      context: StreamContext
    ): Stream.Stream<StreamEvent, RouteError> =>
      Stream.fromPull(Effect.withFiberRuntime((fiber) => {
        const { breaker } = state
        const ticket = breaker?.unsafeTryAdmit()
        if (
          state.limiter !== undefined || (breaker !== undefined && ticket === undefined) ||
          spansOn(tracing, fiber.currentTracer)
        ) return Stream.toPull(layeredStream(state, request, attempt, delayMs, hedged, context))
        const clock = clockOf(fiber)
        const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
        // The attempt's verdict is given once: at `Finish`, or at its failure. A stream that ends
        // otherwise (the consumer stopped, an interruption) gives none, as the layered form's cancel.
        let settled = false
        const settle = (error: RouteError | undefined): Effect.Effect<void> => {
          settled = true
          metrics.count(attempt, error, labels)
          return breaker === undefined || ticket === undefined
            ? Effect.void
            : breaker.unsafeReport(ticket, error === undefined ? Exit.void : Exit.fail(error), clock.unsafeCurrentTimeMillis())
        }
        const failWith = (raw: RouteError) => {
          const error = restamp(raw, { route, attempt })
          const failed = Effect.fail(Option.some(error))
          if (settled) return failed
          const announced = settle(error)
          return announced === Effect.void ? failed : Effect.zipRight(announced, failed)
        }
        const accepted = (chunk: Chunk.Chunk<StreamEvent>) => {
          const announced = settle(undefined)
          return announced === Effect.void ? Effect.succeed(chunk) : Effect.as(announced, chunk)
        }
        const site = siteOf(request, attempt)
        return Effect.map(guard.streamPull(provider.stream(request), site, context.handOverAt), (pull) =>
          Effect.matchCauseEffect(pull, {
            onSuccess: (chunk) => {
              if (settled) return Effect.succeed(chunk)
              const finish = finishOf(chunk)
              if (finish === undefined) return Effect.succeed(chunk)
              if (context.acceptor === undefined) return accepted(chunk)
              // The answer is judged before the chunk that completes it goes out: a rejection is this
              // attempt's failure, seen by the breaker, the metrics, the retry loop and the history.
              return Effect.matchEffect(context.acceptor(finish.response, request), {
                onFailure: failWith,
                onSuccess: () => accepted(chunk)
              })
            },
            onFailure: (cause) => {
              const failure = Cause.failureOption(cause)
              if (Option.isNone(failure) || Option.isNone(failure.value)) return Effect.failCause(cause)
              return failWith(failure.value.value)
            }
          }))
      }))

    /** The general form: limiter ▸ breaker ▸ timeouts, each through its own stream operators. */
    const layeredStream = (
      state: ModelState,
      request: GenerateRequest,
      attempt: number,
      delayMs: number,
      hedged: boolean,
      context: StreamContext
    ) => {
      const site = siteOf(request, attempt)
      const { acceptor } = context
      let call: Stream.Stream<StreamEvent, RouteError> = guard.stream(provider.stream(request), site, context.handOverAt)
      if (acceptor !== undefined) {
        // The same verdict as the fast path's, as a stage of its own.
        call = Stream.mapChunksEffect(call, (chunk) => {
          const finish = finishOf(chunk)
          return finish === undefined ? Effect.succeed(chunk) : Effect.as(acceptor(finish.response, request), chunk)
        })
      }
      if (state.breaker !== undefined) call = guardStream(state.breaker, call, site)
      if (state.limiter !== undefined) call = state.limiter.stream(request, call, site)
      let outcome = "cancelled"
      const counted = call.pipe(
        Stream.mapError((error) => restamp(error, { route, attempt })),
        Stream.tapError((error) => {
          outcome = error._tag
          return metrics.countEffect(attempt, error)
        }),
        Stream.mapChunksEffect((chunk) => {
          for (const event of chunk) {
            if (event._tag === "Finish") {
              outcome = "success"
              return Effect.as(metrics.countEffect(attempt, undefined), chunk)
            }
          }
          return Effect.succeed(chunk)
        })
      )
      return Stream.unwrap(Effect.tracerWith((tracer) =>
        !spansOn(tracing, tracer) ? Effect.succeed(counted) : Effect.map(
          attributesOf(state, request, attempt, delayMs, hedged, true),
          (attributes) =>
            Stream.withSpan(
              Stream.ensuring(counted, Effect.suspend(() => Effect.annotateCurrentSpan("llm.outcome", outcome))),
              "llm.attempt",
              { kind: "client", attributes }
            )
        )
      ))
    }

    const generateStep = (state: ModelState, context: ResolvedCall) => (request: GenerateRequest, attempt: number, delayMs: number) =>
      state.hedge === undefined
        ? generateAttempt(state, request, attempt, delayMs, false, context)
        : state.hedge.generate(
          generateAttempt(state, request, attempt, delayMs, false, context),
          generateAttempt(state, request, attempt, delayMs, true, context)
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
      let deadline = Deadline.unsafeOf(fiber)
      if (given?.deadline !== undefined) deadline = Math.min(deadline, given.deadline)
      if (deadlineMs !== undefined) deadline = Math.min(deadline, clockOf(fiber).unsafeCurrentTimeMillis() + deadlineMs)
      const acceptor = given === undefined ? Option.getOrUndefined(fiber.getFiberRef(currentAcceptor)) : given.acceptor
      return { deadline, acceptor, observe: given?.observe, handOverAt: given?.handOverAt }
    }

    const generate = (request: GenerateRequest, given: CallContext | undefined) =>
      // Nothing to resolve: every part reads the fiber's deadline and gate where it needs them.
      given === undefined && deadlineMs === undefined
        ? withState(request.model, (state) => state.retry.generate(request, generateStep(state, inherited)))
        : Effect.withFiberRuntime<GenerateResponse, RouteError>((fiber) => {
          const context = resolve(fiber, given)
          return withState(request.model, (state) => state.retry.generate(request, generateStep(state, context), context))
        })

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

/** The gate and hand-over of a streamed call (its deadline stays in the fiber). */
type StreamContext = Pick<CallContext, "acceptor" | "handOverAt">

const noStreamContext: StreamContext = {}

/** The `Finish` event of a chunk, if it holds one. */
const finishOf = (chunk: Chunk.Chunk<StreamEvent>): Extract<StreamEvent, { readonly _tag: "Finish" }> | undefined => {
  for (const event of chunk) if (event._tag === "Finish") return event
  return undefined
}

/** A call's context once resolved (see `resolve` in {@link apply}); `deadline` undefined = the fiber's. */
interface ResolvedCall extends Retry.CallOptions {
  readonly acceptor: Acceptor | undefined
}

/** The context of a call that brought none: the deadline and output gate are the fiber's. */
const inherited: ResolvedCall = { acceptor: undefined }

/**
 * Runs `effect` with `deadline` published as the fiber's current deadline when it is the tighter one
 * (for the general attempt path, whose waits read it there).
 */
const published = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  deadline: number | undefined,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  return deadline !== undefined && deadline < Deadline.unsafeOf(fiber)
    ? Effect.locally(effect, Deadline.currentDeadline, Option.some(deadline))
    : effect
}

/**
 * Runs a stream through a breaker: one permit per attempt, reported exactly once — success on
 * `Finish`, failure on error, cancel when the consumer stops early or is interrupted.
 */
const guardStream = <E extends RouteError>(
  breaker: CircuitBreaker,
  call: Stream.Stream<StreamEvent, E>,
  site: Timeouts.Site
): Stream.Stream<StreamEvent, E | CircuitOpen> =>
  Stream.unwrap(Effect.map(breaker.acquire(site), (permit) => {
    let reported = false
    const report = (effect: Effect.Effect<void>) =>
      Effect.suspend(() => {
        if (reported) return Effect.void
        reported = true
        return effect
      })
    return call.pipe(
      Stream.tapError((error) => report(permit.failure(error))),
      Stream.mapChunksEffect((chunk) => {
        for (const event of chunk) if (event._tag === "Finish") return Effect.as(report(permit.success), chunk)
        return Effect.succeed(chunk)
      }),
      Stream.ensuring(report(permit.cancel))
    )
  }))

/**
 * A layer that wraps the `Provider` in context with the policy.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (policy: PolicyOptions, route?: string): Layer.Layer<Provider, never, Provider | PolicyState> =>
  Layer.effect(Provider, Effect.flatMap(Provider, (provider) => apply(policy, provider, route)))

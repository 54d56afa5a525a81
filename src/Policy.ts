/**
 * The per-route reliability policy: one value that composes the strategies in a fixed order and
 * applies them to a `Provider` (as a function or as a Layer).
 *
 * ```
 * Deadline ▸ Retry(+RetryBudget) ▸ per attempt: RateLimiter ▸ CircuitBreaker ▸ Timeouts ▸ Provider
 * ```
 *
 * Why the limiter and breaker sit *inside* the retry loop (each attempt, not each logical call, goes
 * through them): every attempt spends provider quota, so every attempt must take a rate-limit permit;
 * and every attempt is evidence of the provider's health, so the breaker must see each one — and once
 * it opens, the next attempt fails fast with `CircuitOpen` (action `reroute`), which ends the retry
 * loop instead of sleeping toward a provider known to be down.
 *
 * Stateful parts (breakers, limiters, budgets) live in registry services keyed by route and model,
 * outside any per-attempt or per-call layer, so every caller of a route shares them.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { type CircuitBreaker, type CircuitBreakerOptions, CircuitBreakers } from "./CircuitBreaker.js"
import * as CircuitBreakerModule from "./CircuitBreaker.js"
import * as Deadline from "./Deadline.js"
import { type CircuitOpen, type ContentFiltered, type DeadlineExceeded, type InvalidOutput, type RouteError, restamp } from "./Errors.js"
import { type GenerateRequest, type GenerateResponse, Provider, type ProviderShape, type StreamEvent } from "./Provider.js"
import { type RateLimiter, type RateLimiterOptions, RateLimiters } from "./RateLimiter.js"
import * as RateLimiterModule from "./RateLimiter.js"
import * as Retry from "./Retry.js"
import * as RetryBudget from "./RetryBudget.js"
import * as Timeouts from "./Timeouts.js"

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
   * breaker (5 consecutive or 50% of ≥ 20 in 30 s, open 5 s doubling to 60 s), no rate limiter, no
   * deadline.
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

/** Effect's built-in tracer, which records spans but exports nothing. */
const nativeTracer = Effect.runSync(Effect.tracer)

const traced = (tracing: PolicyOptions["tracing"]) =>
<A, E, R>(effect: Effect.Effect<A, E, R>, name: string, attributes: Record<string, unknown>): Effect.Effect<A, E, R> =>
  tracing === "never"
    ? effect
    : tracing === "always"
    ? Effect.withSpan(effect, name, { kind: "client", attributes })
    : Effect.tracerWith((tracer) =>
      tracer === nativeTracer ? effect : Effect.withSpan(effect, name, { kind: "client", attributes })
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

const gate = (call: Effect.Effect<GenerateResponse, RouteError>, request: GenerateRequest) =>
  Effect.flatMap(FiberRef.get(currentAcceptor), (acceptor) =>
    Option.isNone(acceptor) ? call : Effect.flatMap(call, (response) => acceptor.value(response, request)))

const attempts = Metric.counter("llm_attempts_total", { description: "Provider attempts by route and outcome" })
const retries = Metric.counter("llm_retries_total", { description: "Attempts after the first, by route" })

/** Per model of a route: its breaker and limiter, looked up once and cached. */
interface ModelState {
  readonly breaker: CircuitBreaker | undefined
  readonly limiter: RateLimiter | undefined
  readonly retry: Retry.Retry
}

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
): Effect.Effect<ProviderShape, never, PolicyState> =>
  Effect.gen(function*() {
    const breakers = yield* CircuitBreakers
    const limiters = yield* RateLimiters
    const budgets = yield* RetryBudget.RetryBudgets
    const timeouts = policy.timeouts === false ? undefined : Timeouts.make(policy.timeouts ?? {})
    const retryOptions: Retry.RetryOptions = policy.retry === false ? { maxAttempts: 1 } : policy.retry ?? {}
    const budget = policy.retry === false || policy.budget === false ? undefined : yield* budgets.get(route, policy.budget ?? {})
    const deadlineMs = policy.deadline
    const span = traced(policy.tracing)

    const models = new Map<string, ModelState>()
    const stateOf = (model: string): Effect.Effect<ModelState> => {
      const cached = models.get(model)
      if (cached !== undefined) return Effect.succeed(cached)
      const key = `${route}/${model}`
      return Effect.gen(function*() {
        const state: ModelState = {
          breaker: policy.breaker === false
            ? undefined
            : yield* breakers.get(key, policy.breaker ?? {}, healthProbe(model)),
          limiter: policy.rateLimit === undefined || policy.rateLimit === false
            ? undefined
            : yield* limiters.get(key, policy.rateLimit),
          retry: Retry.make(retryOptions, { route, budget, observe: policy.observe })
        }
        models.set(model, state)
        return state
      })
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

    const countAttempt = (attempt: number, outcome: string) =>
      Effect.zipRight(
        Metric.increment(Metric.tagged(Metric.tagged(attempts, "route", route), "outcome", outcome)),
        attempt > 1 ? Metric.increment(Metric.tagged(retries, "route", route)) : Effect.void
      )

    const generateAttempt = (state: ModelState) => (request: GenerateRequest, attempt: number) => {
      const site = siteOf(request, attempt)
      let call: Effect.Effect<GenerateResponse, RouteError> = gate(provider.generate(request), request)
      if (timeouts !== undefined) call = timeouts.generate(call, site)
      if (state.breaker !== undefined) call = state.breaker.execute(call, site)
      if (state.limiter !== undefined) call = state.limiter.generate(request, call, site)
      return call.pipe(
        Effect.mapError((error) => restamp(error, { route, attempt })),
        Effect.tapBoth({
          onFailure: (error) => countAttempt(attempt, error._tag),
          onSuccess: () => countAttempt(attempt, "success")
        }),
        (effect) =>
          span(effect, "llm.attempt", {
            "llm.route": route,
            "llm.attempt": attempt,
            "gen_ai.system": provider.name,
            "gen_ai.request.model": request.model
          })
      )
    }

    const streamAttempt = (state: ModelState) => (request: GenerateRequest, attempt: number) => {
      const site = siteOf(request, attempt)
      let call: Stream.Stream<StreamEvent, RouteError> = provider.stream(request)
      if (timeouts !== undefined) call = timeouts.stream(call, site)
      if (state.breaker !== undefined) call = guardStream(state.breaker, call, site)
      if (state.limiter !== undefined) call = state.limiter.stream(request, call, site)
      return call.pipe(
        Stream.mapError((error) => restamp(error, { route, attempt })),
        Stream.tapError((error) => countAttempt(attempt, error._tag)),
        (stream) =>
          policy.tracing === "never" ? stream : Stream.withSpan(stream, "llm.attempt", {
            kind: "client",
            attributes: {
              "llm.route": route,
              "llm.attempt": attempt,
              "gen_ai.system": provider.name,
              "gen_ai.request.model": request.model,
              "llm.stream": true
            }
          })
      )
    }

    const withDeadline = <A, E, R>(effect: Effect.Effect<A, E, R>, request: GenerateRequest): Effect.Effect<A, E | DeadlineExceeded, R> =>
      deadlineMs === undefined
        ? effect
        : Deadline.withDeadline(effect, deadlineMs, { provider: provider.name, model: request.model, route })

    return {
      name: provider.name,
      generate: (request) =>
        withDeadline(
          Effect.flatMap(stateOf(request.model), (state) => state.retry.generate(request, generateAttempt(state))),
          request
        ),
      stream: (request) => {
        const stream = Stream.unwrap(
          Effect.map(stateOf(request.model), (state) => state.retry.stream(request, streamAttempt(state)))
        )
        return deadlineMs === undefined
          ? stream
          : Deadline.withDeadlineStream(stream, deadlineMs, { provider: provider.name, model: request.model, route })
      }
    } satisfies ProviderShape as ProviderShape
  })

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

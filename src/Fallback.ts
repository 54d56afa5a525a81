/**
 * The schema-gated fallback chain. Gateways fall back on status codes, so when the frontier model is
 * down and traffic spills to a weaker one, a 200 whose output breaks the contract passes as success.
 * Here an answer is accepted only when it decodes: empty output, truncation (`length`/`max_tokens`),
 * refusals, unparsable JSON and Schema failures are `InvalidOutput` failures *of that attempt* —
 * seen by the route's breaker and metrics, recorded in the history, and cascaded.
 *
 * Routing follows each failure's action: `wait` is handled inside the route (its Retry waits while the
 * provider's Retry-After fits the deadline and the retry budget, else surfaces); `reroute` moves on at
 * once (529, breaker open, quota, auth, unknown model, invalid output); `stop` ends the chain (a bad
 * request is bad everywhere; a spend budget that refused an attempt before it was sent is spent for
 * every route: `AllRoutesFailed{budget}` — but a refusal for an unpriced model reroutes), except that a `ContextLengthExceeded` moves on to routes
 * declared with a larger context window. Routes whose window cannot hold the prompt plus `maxTokens` are skipped
 * without a call.
 *
 * Streams fall over transparently until the first content token; after it, the default is to fail
 * with the partial text attached, and the opt-in `restart` mode re-runs the request on the next route
 * and tells the consumer with a `Restarted` event — two models' output is never spliced silently.
 *
 * With a `cache` (`effect-llm-resilience/ResponseCache`) the chain reads it before the walk — a hit,
 * judged again by the call's own gate, is the result without a provider call (`cached: true`) — and
 * stores each answer the walk accepted (docs/caching.md).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Drive from "./chain/drive.js"
import { basicGate, compile, objectGate } from "./chain/gate.js"
import { positions, routeOrder } from "./chain/routing.js"
import type { ChainConfig } from "./chain/walk.js"
import { type AllRoutesFailed, InvalidOptions, type RouteError } from "./Errors.js"
import * as Cache from "./chain/cache.js"
import { estimatePromptTokens } from "./internal/estimateTokens.js"
import { type CallCache, isResponseCache, type ResponseCacheCore } from "./internal/responseCache.js"
import { extend } from "./internal/object.js"
import * as Policy from "./Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape, StreamEvent, Usage } from "./Provider.js"
import type { AttemptRecord } from "./Errors.js"
import { RetryBudgets } from "./RetryBudget.js"
import * as Spend from "./Spend.js"

/**
 * One route: a provider, the model to ask, its policy and its limits.
 *
 * @since 0.1.0
 * @category models
 */
export interface Route {
  /** Label in results, errors, spans and metrics; keys the route's breaker, limiter and budget. */
  readonly name: string
  readonly provider: ProviderShape
  readonly model: string
  /** Default: `Policy.default`. */
  readonly policy?: Policy.PolicyOptions | undefined
  /** Prompt + output tokens the model can hold; routes that cannot fit a request are skipped. */
  readonly contextWindow?: number | undefined
  /** Upper bound on `maxTokens` for this route. */
  readonly maxTokens?: number | undefined
  /**
   * Consecutive routes with the same group share one position in the chain and spread load by
   * `weight` (several keys or deployments of one model); the others in the group remain fallbacks.
   */
  readonly group?: string | undefined
  /** Default 1. */
  readonly weight?: number | undefined
  /**
   * With a chain `cache`: `false` keeps this route's answers out of it (they are served, never stored —
   * e.g. an emergency model whose answers should not outlive the incident). Default true.
   */
  readonly cache?: boolean | undefined
}

/**
 * What a stream does when a route fails after content reached the consumer: `fail` (the default) ends
 * the call with `AllRoutesFailed` whose `lastError` is a `StreamInterrupted` carrying the partial
 * text; `restart` re-runs the request on the next route, emitting a `Restarted` event first.
 *
 * @since 0.1.0
 * @category models
 */
export type PartialOutputFailure = "fail" | "restart"

/**
 * Chain options. Defaults in docs/fallback.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface FallbackOptions {
  readonly routes: ReadonlyArray<Route>
  /** Wall-clock deadline per call, across every route. Default: none. */
  readonly deadline?: Duration.DurationInput | undefined
  /** Re-ask the same route with the decode errors this many times before moving on. Default 0. */
  readonly repairAttempts?: number | undefined
  /** Move to the next route on a refusal / content filter instead of stopping. Default false. */
  readonly rerouteOnContentFilter?: boolean | undefined
  /** Accept `length`-truncated text from `generate` and `stream` (never from `generateObject`). Default false. */
  readonly acceptTruncated?: boolean | undefined
  /** Streams: what a failure after partial output does. Default `fail`. */
  readonly onPartialOutputFailure?: PartialOutputFailure | undefined
  /**
   * The prompt-token estimate of the context-window pre-flight. Default: the documented
   * characters/4 + framing estimate (docs/fallback.md); plug a tokenizer in here for exact counts.
   */
  readonly estimateTokens?: ((request: GenerateRequest) => number) | undefined
  /**
   * When every route that was tried refused at its open breaker (no provider was asked), make one more
   * pass in panic mode, where each open breaker admits the call as a half-open probe
   * (`CircuitBreaker.currentPanic`). Failing every caller fast while all providers are believed down
   * protects nobody, and the pass doubles as the probe that finds the first route to recover.
   * Default true.
   */
  readonly panicWhenAllOpen?: boolean | undefined
  /**
   * How many times one call may walk the chain. When every route failed and at least one failed
   * transiently (overloaded, 5xx, 429, timeout, connection, cut stream, open breaker, invalid output),
   * the chain waits — the shortest Retry-After / breaker wait among those routes, or one full-jitter
   * backoff (base 500 ms, cap 5 s) when sooner and some route gave no such hint — and walks again, skipping routes that failed for good (quota,
   * auth, unknown model, retry budget). A later pass never sleeps past the deadline, and each route
   * it calls spends one token of that route's retry budget, so passes cannot become a retry storm.
   * Default: 3 when the call has a deadline (this option's or an enclosing `Deadline`), else 1 — the
   * deadline is what says how long the caller is willing to wait. Streams walk again only while no
   * output has reached the consumer (or in `restart` mode). Must be an integer ≥ 1.
   */
  readonly passes?: number | undefined
  /**
   * Under a deadline, while a later route waits its turn, the share of the time left that one route
   * may use: its attempts (for a stream, its headers and first token) are clipped to that instant as
   * `Timeout`s, its retries never wait past it, and a timeout then moves on at once. With the default
   * 0.5 and a 30 s deadline, a hung primary hands over at 15 s and the fallback has the other 15 s.
   * The last route left gets all the time there is. In (0, 1]; 1 turns the rule off. Default 0.5.
   */
  readonly routeShare?: number | undefined
  /**
   * A spend budget (`Spend.budget`) every call of this chain runs under — the client's budget — in
   * addition to any enclosing one (`Spend.within`): each attempt (retry, hedge leg, repair, pass,
   * fallback route) reserves its worst case before it is sent and is refused with `BudgetExceeded`
   * when it does not fit; the call then fails with `AllRoutesFailed{budget}`. Default: none.
   */
  readonly spend?: Spend.Budget | undefined
  /**
   * Prices for the `costUsd` of each attempt and call. Default: the `spend` budget's, else the
   * innermost enclosing budget's that has prices; without any, no cost is reported.
   */
  readonly prices?: Spend.PriceTable | undefined
  /**
   * A response cache (`ResponseCache.make`, from `effect-llm-resilience/ResponseCache`): a call whose
   * answer is stored is answered from it without a provider call; an answer the chain accepted is
   * stored. Requests that sample (temperature unset or > 0) use it only when asked (the cache's or
   * the call's `nondeterministic`). See docs/caching.md. Default: none.
   */
  readonly cache?: ResponseCacheCore | undefined
}

/**
 * Per-call control of the chain's response cache: `false` bypasses it (no read, no write);
 * `{ ttl }` sets how long this answer stays (`0`: read, never write); `{ nondeterministic: true }` lets
 * a sampling request (temperature unset or > 0) use it; `{ refresh: true }` skips the read and stores
 * the new answer. Ignored by a chain without a cache.
 *
 * @since 0.2.0
 * @category models
 */
export type CallCacheOptions = CallCache

/**
 * A chain request: a `GenerateRequest` without `model` (each route supplies its own).
 *
 * @since 0.1.0
 * @category models
 */
export type ChainRequest = Omit<GenerateRequest, "model">

/**
 * An accepted answer and how it was obtained.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChainResult<A> {
  readonly value: A
  readonly response: GenerateResponse
  /** The route that served it. */
  readonly route: string
  /** Served by a route outside the chain's first position, after a repair, or after a stream restart. */
  readonly degraded: boolean
  readonly repaired: boolean
  /** Every attempt on every route, in order (skipped routes included), each with its usage when known. */
  readonly attempts: ReadonlyArray<AttemptRecord>
  /** Usage summed over every attempt that reported it (rejected answers cost tokens too). */
  readonly usage: Usage
  /**
   * What `usage` cost in USD, when the chain has prices (`prices`, its `spend` budget's, or an
   * enclosing budget's) for every attempt that reported usage. A budget may have charged more: it
   * also counts the worst case of attempts that were sent and reported nothing (docs/cost.md).
   */
  readonly costUsd?: number | undefined
  readonly durationMs: number
  /**
   * Served from the response cache: no provider was called (the history holds one `cached` record,
   * `usage` is zero, `costUsd` 0 when priced). `route`, `degraded` and `repaired` describe how the
   * stored answer was obtained. Absent otherwise.
   */
  readonly cached?: true | undefined
  /** A cached answer's: when it was stored (epoch milliseconds, the chain's `Clock`). */
  readonly cachedAt?: number | undefined
  /** A cached answer's: the usage of the call that produced it. */
  readonly cachedUsage?: Usage | undefined
  /** A cached answer's: what that call cost, when it was priced. */
  readonly cachedCostUsd?: number | undefined
}

/**
 * Extra acceptance rule for decoded values: fail with a message to reject.
 *
 * @since 0.1.0
 * @category models
 */
export type Validator<A> = (value: A) => Effect.Effect<void, string>

/**
 * Per-call options of `generateObject`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ObjectOptions<A> {
  /** The name of the output (OpenAI `json_schema.name`, Anthropic's forced tool). Default `response`. */
  readonly name?: string
  readonly validate?: Validator<A>
  /** This call and the chain's response cache (see {@link CallCacheOptions}). */
  readonly cache?: CallCacheOptions | undefined
}

/**
 * Per-call options of `generate`.
 *
 * @since 0.2.0
 * @category models
 */
export interface GenerateOptions {
  /** This call and the chain's response cache (see {@link CallCacheOptions}). */
  readonly cache?: CallCacheOptions | undefined
}

/**
 * Per-call options of `stream`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamOptions {
  /** Overrides the chain's `onPartialOutputFailure` for this call. */
  readonly onPartialOutputFailure?: PartialOutputFailure | undefined
  /** This call and the chain's response cache (see {@link CallCacheOptions}). */
  readonly cache?: CallCacheOptions | undefined
}

/**
 * The output so far came from a route that failed after partial output; the chain is re-running the
 * request on route `to`. Consumers should discard what they showed of `discardedText`. Emitted just
 * before the new route's first event, so a restart that finds no route ends in failure without one.
 *
 * @since 0.1.0
 * @category models
 */
export interface Restarted {
  readonly _tag: "Restarted"
  readonly from: string
  readonly to: string
  readonly discardedText: string
  readonly error: RouteError
}

/**
 * The last event of a successful chain stream: the accepted answer with the route that served it,
 * the degraded flag, the attempt history and the usage (the same metadata as `generate`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Completed<A = string> {
  readonly _tag: "Completed"
  readonly result: ChainResult<A>
}

/**
 * What a chain stream emits: the serving route's own {@link StreamEvent}s (`Metadata`, `TextDelta`,
 * `ToolCallDelta`, `Usage`, `Finish`), plus the chain's `Restarted` and a final `Completed`.
 *
 * @since 0.1.0
 * @category models
 */
export type ChainStreamEvent<A = string> = StreamEvent | Restarted | Completed<A>

/**
 * `streamObject`'s preview of the JSON answer so far: the value its text parses to once open strings,
 * arrays and objects are closed (best effort; not decoded against the schema). Emitted when it
 * changes. The decoded value is the `Completed` event's `result.value`.
 *
 * @since 0.2.0
 * @category models
 */
export interface PartialObject {
  readonly _tag: "PartialObject"
  readonly value: unknown
}

/**
 * What `streamObject` emits: the serving route's events, `PartialObject` previews, `Restarted`, and a
 * final `Completed` whose `result.value` is the decoded object.
 *
 * @since 0.2.0
 * @category models
 */
export type ObjectStreamEvent<A> = ChainStreamEvent<A> | PartialObject
/**
 * The chain.
 *
 * @since 0.1.0
 * @category models
 */
export interface Chain {
  readonly generate: (request: ChainRequest, options?: GenerateOptions) => Effect.Effect<ChainResult<string>, AllRoutesFailed>
  readonly generateObject: <A, I>(
    schema: Schema.Schema<A, I>,
    request: ChainRequest,
    options?: ObjectOptions<A>
  ) => Effect.Effect<ChainResult<A>, AllRoutesFailed | InvalidOptions>
  readonly stream: (request: ChainRequest, options?: StreamOptions) => Stream.Stream<ChainStreamEvent, AllRoutesFailed>
  /**
   * `generateObject` streamed: text deltas and `PartialObject` previews as the answer arrives; the
   * complete answer passes the same gate (JSON, schema, validator) before the final `Completed`. A
   * rejection before any output reached the consumer falls over to the next route; after output, the
   * stream's `onPartialOutputFailure` policy applies. A schema with no JSON Schema fails the stream with
   * `InvalidOptions`.
   */
  readonly streamObject: <A, I>(
    schema: Schema.Schema<A, I>,
    request: ChainRequest,
    options?: ObjectOptions<A> & StreamOptions
  ) => Stream.Stream<ObjectStreamEvent<A>, AllRoutesFailed | InvalidOptions>
}

// ---------------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------------

const COMPONENT = "Fallback.make"

/** Defaults (docs/fallback.md). */
const DEFAULT_ROUTE_SHARE = 0.5

/**
 * The first problem with the options, named by its path, or `undefined`. A chain that cannot work
 * as configured fails where it is built — not at its first call, and never as a defect.
 */
const validate = (options: FallbackOptions): InvalidOptions | undefined => {
  const invalid = (option: string, message: string) => new InvalidOptions({ component: COMPONENT, option, message: `${option} ${message}` })
  const positiveInteger = (value: number | undefined, min: number) => value === undefined || (Number.isSafeInteger(value) && value >= min)
  if (!Array.isArray(options.routes) || options.routes.length === 0) return invalid("routes", "must list at least one route")
  const names = new Set<string>()
  for (const [index, route] of options.routes.entries()) {
    const at = `routes[${index}]`
    if (typeof route.name !== "string" || route.name.trim().length === 0) return invalid(`${at}.name`, "must be a non-empty label")
    if (names.has(route.name)) {
      return invalid(`${at}.name`, `"${route.name}" names another route too (a name keys the route's breaker, limiter and budget)`)
    }
    names.add(route.name)
    if (typeof route.model !== "string" || route.model.length === 0) return invalid(`${at}.model`, "must be a non-empty model id")
    if (!positiveInteger(route.maxTokens, 1)) return invalid(`${at}.maxTokens`, `must be an integer ≥ 1, got ${String(route.maxTokens)}`)
    if (!positiveInteger(route.contextWindow, 1)) {
      return invalid(`${at}.contextWindow`, `must be an integer ≥ 1, got ${String(route.contextWindow)}`)
    }
    if (route.weight !== undefined && !(Number.isFinite(route.weight) && route.weight > 0)) {
      return invalid(`${at}.weight`, `must be a positive number, got ${String(route.weight)}`)
    }
    const policyDeadline = durationProblem(route.policy?.deadline)
    if (policyDeadline !== undefined) return invalid(`${at}.policy.deadline`, policyDeadline)
    if (route.cache !== undefined && typeof route.cache !== "boolean") {
      return invalid(`${at}.cache`, `must be a boolean, got ${JSON.stringify(route.cache)}`)
    }
  }
  const deadline = durationProblem(options.deadline)
  if (deadline !== undefined) return invalid("deadline", deadline)
  if (!positiveInteger(options.repairAttempts, 0)) {
    return invalid("repairAttempts", `must be an integer ≥ 0, got ${String(options.repairAttempts)}`)
  }
  if (!positiveInteger(options.passes, 1)) return invalid("passes", `must be an integer ≥ 1, got ${String(options.passes)}`)
  const share = options.routeShare
  if (share !== undefined && !(Number.isFinite(share) && share > 0 && share <= 1)) {
    return invalid("routeShare", `must be a number in (0, 1], got ${String(share)}`)
  }
  const partial = options.onPartialOutputFailure
  if (partial !== undefined && partial !== "fail" && partial !== "restart") {
    return invalid("onPartialOutputFailure", `must be "fail" or "restart", got ${JSON.stringify(partial)}`)
  }
  if (options.spend !== undefined && !Spend.isBudget(options.spend)) return invalid("spend", "must be a budget made by Spend.budget")
  if (options.prices !== undefined && !Spend.isPriceTable(options.prices)) {
    return invalid("prices", "must be a price table made by Spend.prices or Spend.pricesFromFile")
  }
  if (options.cache !== undefined && !isResponseCache(options.cache)) {
    return invalid("cache", "must be a response cache made by ResponseCache.make")
  }
  return undefined
}

/** Why a deadline cannot be used, or `undefined` (absent, or a positive duration). */
const durationProblem = (input: Duration.DurationInput | undefined): string | undefined => {
  if (input === undefined) return undefined
  const decoded = Duration.decodeUnknown(input)
  if (decoded._tag === "None") return `is not a duration, got ${JSON.stringify(String(input)).slice(0, 100)}`
  return Duration.toMillis(decoded.value) > 0 ? undefined : `must be positive, got ${Duration.format(decoded.value)}`
}

const textOf = (response: GenerateResponse): string => response.text

/** A route's policy as the chain applies it: it knows whether another route can take the call. */
const chainPolicy = (routes: ReadonlyArray<Route>, index: number): Policy.PolicyOptions => {
  const route = routes[index]!
  const base = route.policy ?? {}
  const hasAlternative = index < routes.length - 1 ||
    routes.some((r, j) => j !== index && r.group !== undefined && r.group === route.group)
  return {
    ...base,
    retry: base.retry === false ? false : { ...base.retry, hasAlternative: hasAlternative || base.retry?.hasAlternative === true }
  }
}

/**
 * Builds a chain. Each route's policy is applied once (its breaker, limiter and budget live in
 * `Policy.layerState`, shared by every caller). Options are checked here: a chain that cannot work as
 * configured fails with `InvalidOptions` naming the option.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { Fallback, OpenAi, Anthropic } from "effect-llm-resilience"
 *
 * const chain = Effect.gen(function*() {
 *   const openai = yield* OpenAi.make({ apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") })
 *   const anthropic = yield* Anthropic.make({ apiKey: Redacted.make(process.env.ANTHROPIC_API_KEY ?? "") })
 *   return yield* Fallback.make({
 *     routes: [
 *       { name: "primary", provider: openai, model: "gpt-4o-mini" },
 *       { name: "fallback", provider: anthropic, model: "claude-3-5-haiku-latest" }
 *     ],
 *     deadline: "30 seconds" // a hung primary hands over at 15 s (routeShare 0.5)
 *   })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: FallbackOptions): Effect.Effect<Chain, InvalidOptions, Policy.PolicyState> =>
  Effect.gen(function*() {
    const problem = validate(options)
    if (problem !== undefined) return yield* Effect.fail(problem)
    const policies = new Map<string, Policy.RouteOn>()
    for (const [index, route] of options.routes.entries()) {
      policies.set(route.name, yield* Policy.routeOn(chainPolicy(options.routes, index), route.provider, route.name))
    }
    const deadline = options.deadline === undefined ? undefined : Duration.toMillis(Duration.decode(options.deadline))
    const config: ChainConfig = {
      routes: options.routes,
      policies,
      order: routeOrder(options.routes),
      // Load spread over the first position (several keys of the primary model) is not degradation.
      primaries: new Set(positions(options.routes)[0]!.map((route) => route.name)),
      budgets: yield* RetryBudgets,
      deadlineMs: deadline !== undefined && Number.isFinite(deadline) ? deadline : undefined,
      passes: options.passes,
      repairAttempts: options.repairAttempts ?? 0,
      panicWhenAllOpen: options.panicWhenAllOpen ?? true,
      rerouteOnContentFilter: options.rerouteOnContentFilter === true,
      routeShare: options.routeShare ?? DEFAULT_ROUTE_SHARE,
      estimate: options.estimateTokens ?? estimatePromptTokens,
      prices: options.prices ?? options.spend?.prices
    }
    // The client's budget: every call (and so every send) of this chain runs under it.
    const spend = options.spend
    const budgeted = <X, E>(effect: Effect.Effect<X, E>): Effect.Effect<X, E> => spend === undefined ? effect : Spend.within(spend)(effect)
    const budgetedStream = <X, E>(stream: Stream.Stream<X, E>): Stream.Stream<X, E> =>
      spend === undefined ? stream : Spend.withinStream(spend)(stream)
    const textGate = basicGate(options.acceptTruncated === true)
    const onPartial = (given: StreamOptions | undefined) => given?.onPartialOutputFailure ?? options.onPartialOutputFailure ?? "fail"
    const text = (request: ChainRequest, onPartialOutput: PartialOutputFailure): Drive.Prepare<string, never> => () =>
      Either.right({
        request,
        gate: textGate,
        extract: textOf,
        repairable: false,
        onPartialOutput
      })
    const object = <A, I>(
      schema: Schema.Schema<A, I>,
      request: ChainRequest,
      given: ObjectOptions<A> | undefined,
      onPartialOutput: PartialOutputFailure
    ): Drive.Prepare<A, InvalidOptions> =>
    () =>
      Either.map(compile(schema, "Fallback.generateObject"), (compiled) => {
        // Per call: what the gate decoded, by the response it decoded it from.
        const decoded = new WeakMap<GenerateResponse, A>()
        return {
          request: extend(request, {
            responseFormat: { type: "json_schema" as const, name: given?.name ?? "response", schema: compiled.jsonSchema, strict: false }
          }),
          gate: objectGate(compiled, given?.validate, decoded),
          // The gate decoded this very response object before the walk accepted it.
          extract: (response: GenerateResponse) => decoded.get(response) as A,
          repairable: true,
          onPartialOutput
        }
      })
    const generate = <A, E>(prepare: Drive.Prepare<A, E>) => budgeted(Drive.generate(config, prepare))
    const stream = <A, E>(prepare: Drive.Prepare<A, E>) => budgetedStream(Drive.stream(config, prepare))
    const streamObject = <A, E>(prepare: Drive.Prepare<A, E>) => budgetedStream(Drive.stream(config, prepare, Drive.objectPreviews))
    if (options.cache === undefined) {
      return {
        generate: (request) => generate(text(request, "fail")),
        generateObject: (schema, request, given) => generate(object(schema, request, given, "fail")),
        stream: (request, given) => stream(text(request, onPartial(given))),
        streamObject: (schema, request, given) => streamObject(object(schema, request, given, onPartial(given)))
      }
    }
    // Cache first: a hit is answered before the walk (and before any coalescing under it); a miss walks.
    const site: Cache.CacheSite = {
      cache: options.cache,
      identity: options.routes.map((route) => [route.model, route.maxTokens ?? null]),
      unstored: new Set(options.routes.filter((route) => route.cache === false).map((route) => route.name)),
      prices: config.prices
    }
    return {
      generate: (request, given) => Cache.generate(site, text(request, "fail"), given?.cache, generate),
      generateObject: (schema, request, given) => Cache.generate(site, object(schema, request, given, "fail"), given?.cache, generate),
      stream: (request, given) => Cache.stream(site, text(request, onPartial(given)), given?.cache, stream),
      streamObject: (schema, request, given) =>
        Cache.stream(site, object(schema, request, given, onPartial(given)), given?.cache, streamObject, Drive.objectPreviews)
    }
  })

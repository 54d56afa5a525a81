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
 * request is bad everywhere), except that a `ContextLengthExceeded` moves on to routes declared with a
 * larger context window. Routes whose window cannot hold the prompt plus `maxTokens` are skipped
 * without a call.
 *
 * Streams fall over transparently until the first content token; after it, the default is to fail
 * with the partial text attached, and the opt-in `restart` mode re-runs the request on the next route
 * and tells the consumer with a `Restarted` event — two models' output is never spliced silently.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as JSONSchema from "effect/JSONSchema"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as CircuitBreaker from "./CircuitBreaker.js"
import * as Deadline from "./Deadline.js"
import * as DegradedMode from "./DegradedMode.js"
import {
  actionOf,
  AllRoutesFailed,
  type AttemptRecord,
  ContentFiltered,
  InvalidOutput,
  type InvalidOutputReason,
  retryAfterOf,
  type RouteError
} from "./Errors.js"
import { estimatePromptTokens } from "./internal/estimateTokens.js"
import { parseUntrusted, refusedBecause, type Untrusted } from "./internal/json.js"
import { extend, type Mutable } from "./internal/object.js"
import { clockOf, millisOf } from "./internal/timer.js"
import * as Policy from "./Policy.js"
import {
  type GenerateRequest,
  type GenerateResponse,
  isContentEvent,
  type ProviderShape,
  type StreamEvent,
  type Usage
} from "./Provider.js"
import { backoffDelay } from "./Retry.js"
import { RetryBudgets } from "./RetryBudget.js"

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
   * `generate` / `generateObject` only. Default true.
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
   * deadline is what says how long the caller is willing to wait. A value that is not a number ≥ 1
   * means 1. `generate` / `generateObject` only.
   */
  readonly passes?: number | undefined
}

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
  readonly durationMs: number
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
export interface Completed {
  readonly _tag: "Completed"
  readonly result: ChainResult<string>
}

/**
 * What a chain stream emits: the serving route's own {@link StreamEvent}s (`Metadata`, `TextDelta`,
 * `ToolCallDelta`, `Usage`, `Finish`), plus the chain's `Restarted` and a final `Completed`.
 *
 * @since 0.1.0
 * @category models
 */
export type ChainStreamEvent = StreamEvent | Restarted | Completed

/**
 * The chain.
 *
 * @since 0.1.0
 * @category models
 */
export interface Chain {
  readonly generate: (request: ChainRequest) => Effect.Effect<ChainResult<string>, AllRoutesFailed>
  readonly generateObject: <A, I>(
    schema: Schema.Schema<A, I>,
    request: ChainRequest,
    options?: ObjectOptions<A>
  ) => Effect.Effect<ChainResult<A>, AllRoutesFailed>
  readonly stream: (request: ChainRequest, options?: StreamOptions) => Stream.Stream<ChainStreamEvent, AllRoutesFailed>
}

// ---------------------------------------------------------------------------------------------------
// The attempt log of one call
// ---------------------------------------------------------------------------------------------------

/**
 * The history of one call. The retry loop of each route appends every attempt to it; the
 * chain adds the routes it skipped, numbers repair calls after the route's earlier attempts, and
 * attaches to each record the usage of the response it was about (the output gate sees the response
 * before the retry loop records the attempt).
 */
class CallLog {
  readonly records: Array<AttemptRecord> = []
  private readonly pendingUsage: Array<{ readonly requestId: string | undefined; readonly usage: Usage }> = []
  private attemptOffset = 0
  private note: string | undefined = undefined

  /** Records of the next provider call on a route continue its attempt numbers, labelled `note`. */
  beginCall(route: string, note?: string): void {
    this.attemptOffset = this.records.filter((r) => r.route === route && r.attempt > 0).length
    this.note = note
    // A response whose attempt then failed for another reason (a timeout after the gate) is not ours.
    this.pendingUsage.length = 0
  }

  responseSeen(response: GenerateResponse): void {
    this.pendingUsage.push({ requestId: response.requestId, usage: response.usage })
  }

  add(record: AttemptRecord): void {
    const usage = record.outcome === "success" || record.outcome === "InvalidOutput" || record.outcome === "ContentFiltered"
      ? this.takeUsage(record.requestId)
      : undefined
    const message = this.note === undefined ? record.message : record.message === undefined ? this.note : `${this.note}: ${record.message}`
    const logged: Mutable<AttemptRecord> = extend(record, { attempt: record.attempt + this.attemptOffset })
    if (message !== undefined) logged.message = message
    if (usage !== undefined) logged.usage = usage
    this.records.push(logged)
  }

  skip(route: string, message: string): void {
    this.records.push({ route, attempt: 0, outcome: "Skipped", delayMs: 0, durationMs: 0, message })
  }

  /** Streams: the retry loop records success on `Finish` before the chain sees it; attach usage after. */
  attachUsage(route: string, usage: Usage): void {
    for (let i = this.records.length - 1; i >= 0; i--) {
      const record = this.records[i]!
      if (record.route === route && record.outcome === "success") {
        if (record.usage === undefined) this.records[i] = { ...record, usage }
        return
      }
    }
  }

  totalUsage(): Usage {
    let total: Usage = noUsage
    for (const record of this.records) if (record.usage !== undefined) total = addUsage(total, record.usage)
    return total
  }

  private takeUsage(requestId: string | undefined): Usage | undefined {
    // Match by request id where there is one (concurrent hedged attempts), else in arrival order.
    let index = requestId === undefined ? -1 : this.pendingUsage.findIndex((p) => p.requestId === requestId)
    if (index < 0) index = this.pendingUsage.findIndex((p) => p.requestId === undefined || requestId === undefined)
    if (index < 0) return undefined
    const [taken] = this.pendingUsage.splice(index, 1)
    return taken?.usage
  }
}

/** The attempt observer that writes into a call's log. */
const logTo = (log: CallLog) => (record: AttemptRecord): Effect.Effect<void> =>
  Effect.sync(() => log.add(record))

const noUsage: Usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 }

const addUsage = (a: Usage, b: Usage): Usage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  totalTokens: a.totalTokens + b.totalTokens
})

// ---------------------------------------------------------------------------------------------------
// The output gate
// ---------------------------------------------------------------------------------------------------

const invalid = (
  response: GenerateResponse,
  request: GenerateRequest,
  reason: InvalidOutputReason,
  message: string,
  issues?: string
) =>
  new InvalidOutput({
    provider: response.provider,
    model: request.model,
    route: "*",
    attempt: 1,
    status: 200,
    ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
    reason,
    message,
    ...(issues !== undefined ? { issues } : {}),
    output: response.text.length > 4000 ? `${response.text.slice(0, 4000)}…` : response.text
  }, true)

/** What every answer must pass: not empty, not truncated, not refused. */
const basicGate = (acceptTruncated: boolean): Policy.Acceptor => (response, request) => {
  if (response.finishReason === "content_filter" || response.finishReason === "refusal") {
    return Effect.fail(
      new ContentFiltered({
        provider: response.provider,
        model: request.model,
        route: "*",
        attempt: 1,
        status: 200,
        ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
        finishReason: response.finishReason,
        message: response.refusal ?? `the model's output was ${response.finishReason === "refusal" ? "a refusal" : "filtered"}`
      }, true)
    )
  }
  if (response.finishReason === "length" && !acceptTruncated) {
    return Effect.fail(invalid(response, request, "truncated", "the output was cut by the token limit"))
  }
  if (response.text.trim().length === 0 && response.toolCalls.length === 0) {
    return Effect.fail(invalid(response, request, "empty", "the output was empty"))
  }
  return Effect.succeed(response)
}

/** Runs the gate and notes the response's usage for the attempt record, accepted or not. */
const metered = (log: CallLog, acceptor: Policy.Acceptor): Policy.Acceptor => (response, request) => {
  log.responseSeen(response)
  return acceptor(response, request)
}

/** The model's JSON answer, through the same depth-bounded door as provider bodies. */
const parseAnswer = (text: string): Untrusted => {
  const trimmed = text.trim()
  // Models often wrap JSON in a Markdown fence despite instructions; unwrapping it is not guessing.
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/i.exec(trimmed)
  return parseUntrusted(fenced?.[1] ?? trimmed)
}

/** A schema's decoder and JSON Schema, built once per schema (applications reuse theirs on every call). */
interface Compiled<A> {
  readonly decode: (input: unknown) => Effect.Effect<A, ParseResult.ParseError>
  readonly jsonSchema: Record<string, unknown>
}

const compiledSchemas = new WeakMap<Schema.Schema.Any, Compiled<unknown>>()

const compiled = <A, I>(schema: Schema.Schema<A, I>): Compiled<A> => {
  let entry = compiledSchemas.get(schema)
  if (entry === undefined) {
    entry = {
      decode: Schema.decodeUnknown(schema) as (input: unknown) => Effect.Effect<unknown, ParseResult.ParseError>,
      jsonSchema: JSONSchema.make(schema) as unknown as Record<string, unknown>
    }
    compiledSchemas.set(schema, entry)
  }
  return entry as Compiled<A>
}

/** The follow-up that feeds the decode errors back to the same route. */
const repairRequest = (request: GenerateRequest, error: InvalidOutput): GenerateRequest => ({
  ...request,
  messages: [
    ...request.messages,
    { role: "assistant", content: error.output ?? "" },
    {
      role: "user",
      content: `Your previous answer was rejected: ${error.message}.${error.issues !== undefined ? `\nProblems:\n${error.issues}` : ""}\nReply again with only the corrected JSON.`
    }
  ]
})

/**
 * The chain's failure never carries a rejected answer: the history says what each attempt did, the
 * decode issues say why the output was refused, but the off-contract value itself stays out.
 */
const withoutRejectedOutput = (error: RouteError): RouteError => {
  if (error._tag !== "InvalidOutput" || error.output === undefined) return error
  // `message` is an own non-enumerable property of an Error, so a spread alone would drop it.
  const { output: _output, ...rest } = error
  return new InvalidOutput({ ...rest, message: error.message }, true)
}

// ---------------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------------

/**
 * Orders routes for one call: groups are shuffled by weight, everything else keeps its place. A chain
 * without groups has one order, built once.
 */
const routeOrder = (routes: ReadonlyArray<Route>): Effect.Effect<ReadonlyArray<Route>> => {
  const grouped = positions(routes)
  return grouped.every((members) => members.length === 1) ? Effect.succeed(routes) : shuffled(grouped)
}

const shuffled = (grouped: ReadonlyArray<ReadonlyArray<Route>>): Effect.Effect<ReadonlyArray<Route>> =>
  Effect.gen(function*() {
    const out: Array<Route> = []
    for (const members of grouped) {
      // Weighted shuffle without replacement (Efraimidis–Spirakis keys), drawn from Effect's Random.
      const keyed: Array<{ readonly route: Route; readonly key: number }> = []
      for (const route of members) {
        const u = members.length === 1 ? 0.5 : yield* Random.next
        keyed.push({ route, key: Math.pow(u, 1 / Math.max(1e-9, route.weight ?? 1)) })
      }
      keyed.sort((a, b) => b.key - a.key)
      for (const { route } of keyed) out.push(route)
    }
    return out
  })

/** The chain's positions: a lone route, or a run of consecutive routes sharing a group. */
const positions = (routes: ReadonlyArray<Route>): Array<ReadonlyArray<Route>> => {
  const out: Array<ReadonlyArray<Route>> = []
  let i = 0
  while (i < routes.length) {
    const group = routes[i]!.group
    let j = i + 1
    while (group !== undefined && j < routes.length && routes[j]!.group === group) j++
    out.push(routes.slice(i, j))
    i = j
  }
  return out
}

/** Whether a route can take the request, and the request it gets. */
type Preflight =
  | { readonly _tag: "Call"; readonly request: GenerateRequest }
  | { readonly _tag: "Skip"; readonly message: string }

/** What the chain does after a route's failure. */
type Next =
  | { readonly _tag: "Next"; readonly minContextWindow: number }
  | { readonly _tag: "Stop"; readonly reason: "stopped" | "deadline"; readonly summary: string }

/** Per-call state shared by `generate`, `generateObject` and `stream`. */
interface Call {
  readonly log: CallLog
  readonly startedAt: number
  /** The call's deadline (absolute, on the Clock; `Infinity` for none): the chain's own or the caller's, the tighter. */
  readonly deadline: number
  lastError: RouteError | undefined
  readonly fail: (reason: AllRoutesFailed["reason"], summary: string) => AllRoutesFailed
}

/** Every route that was tried refused at its breaker: no provider has been asked anything. */
const onlyBreakerRefusals = (records: ReadonlyArray<AttemptRecord>): boolean => {
  let refused = false
  for (const record of records) {
    if (record.outcome === "CircuitOpen") refused = true
    else if (record.outcome !== "Skipped") return false
  }
  return refused
}

/** Failures another walk of the chain may cure: the provider may be healthy again in a moment. */
const transientTags: ReadonlySet<RouteError["_tag"]> = new Set<RouteError["_tag"]>([
  "Overloaded",
  "ServerError",
  "RateLimited",
  "Timeout",
  "ConnectionError",
  "StreamInterrupted",
  "CircuitOpen",
  "InvalidOutput"
])

/** Defaults of the chain's passes (see {@link FallbackOptions.passes}). */
const PASSES_WITH_DEADLINE = 3
const PASS_BACKOFF_BASE_MS = 500
const PASS_BACKOFF_CAP_MS = 5_000

/** Walks per call: the option when it is a number ≥ 1 (floored), else the default for the call's deadline. */
const passesOf = (option: number | undefined, hasDeadline: boolean): number =>
  option !== undefined && Number.isFinite(option) && option >= 1
    ? Math.floor(option)
    : option === undefined && hasDeadline
    ? PASSES_WITH_DEADLINE
    : 1

/** The failure when the chain ran out of routes. */
const endOfChain = (call: Call): AllRoutesFailed =>
  call.lastError === undefined
    ? call.fail("no-route", "no route could take the request")
    : call.lastError._tag === "ContextLengthExceeded"
    // Every later route was skipped for a window no larger: the request is too long for this chain.
    ? call.fail("stopped", "ContextLengthExceeded: no route declares a larger context window")
    : call.fail("exhausted", "every route failed")

/**
 * Builds a chain. Each route's policy is applied once (its breaker, limiter and budget live in
 * `Policy.layerState`, shared by every caller).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: FallbackOptions): Effect.Effect<Chain, never, Policy.PolicyState> =>
  Effect.gen(function*() {
    if (options.routes.length === 0) return yield* Effect.dieMessage("Fallback.make: at least one route is required")
    const budgets = yield* RetryBudgets
    // Load spread over the first position (several keys of the primary model) is not degradation.
    const primaries = new Set(positions(options.routes)[0]!.map((route) => route.name))
    const orderRoutes = routeOrder(options.routes)
    const repairAttempts = Math.max(0, options.repairAttempts ?? 0)
    const panicWhenAllOpen = options.panicWhenAllOpen ?? true
    const deadline = millisOf(options.deadline)
    const estimate = options.estimateTokens ?? estimatePromptTokens
    const wrapped = new Map<string, Policy.PolicyRoute>()
    for (const [index, route] of options.routes.entries()) {
      const base = route.policy ?? {}
      const hasAlternative = index < options.routes.length - 1 ||
        options.routes.some((r, j) => j !== index && r.group !== undefined && r.group === route.group)
      const policy: Policy.PolicyOptions = {
        ...base,
        retry: base.retry === false
          ? false
          : { ...base.retry, hasAlternative: hasAlternative || base.retry?.hasAlternative === true },
        observe: base.observe
      }
      wrapped.set(route.name, yield* Policy.route(policy, route.provider, route.name))
    }

    const preflight = (route: Route, request: ChainRequest, minContextWindow: number): Preflight => {
      const maxTokens = route.maxTokens === undefined ? request.maxTokens : Math.min(request.maxTokens, route.maxTokens)
      const routeRequest: GenerateRequest = extend(request, { model: route.model, maxTokens })
      if (route.contextWindow !== undefined) {
        const needed = estimate(routeRequest) + maxTokens
        if (needed > route.contextWindow) {
          return { _tag: "Skip", message: `context window ${route.contextWindow} cannot hold ~${needed} tokens` }
        }
        if (route.contextWindow <= minContextWindow) {
          return { _tag: "Skip", message: `context window ${route.contextWindow} is not larger than the one that overflowed (${minContextWindow})` }
        }
      } else if (minContextWindow > 0) {
        return { _tag: "Skip", message: "no declared context window larger than the one that overflowed" }
      }
      return { _tag: "Call", request: routeRequest }
    }

    const next = (call: Call, error: RouteError, route: Route, minContextWindow: number): Effect.Effect<Next> => {
      if (error._tag === "DeadlineExceeded") {
        // The route's own policy deadline is a per-route bound: the chain moves on while it has time.
        return Effect.map(Clock.currentTimeMillis, (now) =>
          call.deadline - now > 0
            ? { _tag: "Next", minContextWindow }
            : { _tag: "Stop", reason: "deadline", summary: "the deadline passed" })
      }
      if (error._tag === "ContextLengthExceeded") {
        return Effect.succeed({ _tag: "Next", minContextWindow: Math.max(minContextWindow, route.contextWindow ?? 1) })
      }
      if (error._tag === "ContentFiltered" && options.rerouteOnContentFilter === true) {
        return Effect.succeed({ _tag: "Next", minContextWindow })
      }
      if (actionOf(error) === "stop") {
        return Effect.succeed({ _tag: "Stop", reason: "stopped", summary: `${error._tag} on ${route.name}: no route will do better` })
      }
      return Effect.succeed({ _tag: "Next", minContextWindow })
    }

    const startCall: Effect.Effect<Call> = Effect.withFiberRuntime((fiber) => {
      const startedAt = clockOf(fiber).unsafeCurrentTimeMillis()
      const enclosing = Deadline.unsafeOf(fiber)
      const log = new CallLog()
      const call: Call = {
        log,
        startedAt,
        deadline: deadline === undefined ? enclosing : Math.min(enclosing, startedAt + deadline),
        lastError: undefined,
        fail: (reason, summary) =>
          new AllRoutesFailed({
            reason,
            attempts: log.records,
            ...(call.lastError !== undefined ? { lastError: withoutRejectedOutput(call.lastError) } : {}),
            message: `${summary} (${log.records.map((a) => `${a.route}#${a.attempt}:${a.outcome}`).join(", ") || "no attempt"})`
          })
      }
      return Effect.succeed(call)
    })

    /** Publishes the outcome of a call to `DegradedMode` and builds the result. */
    const accept = <A>(
      call: Call,
      route: Route,
      response: GenerateResponse,
      value: A,
      flags: { readonly repaired: boolean; readonly restarted: boolean }
    ): Effect.Effect<ChainResult<A>> =>
      Effect.withFiberRuntime((fiber) => {
        const now = clockOf(fiber).unsafeCurrentTimeMillis()
        const degraded = !primaries.has(route.name) || flags.repaired || flags.restarted
        const result: ChainResult<A> = {
          value,
          response,
          route: route.name,
          degraded,
          repaired: flags.repaired,
          attempts: call.log.records,
          usage: call.log.totalUsage(),
          durationMs: now - call.startedAt
        }
        return Effect.as(
          DegradedMode.publish({
            degraded,
            route: route.name,
            ...(degraded
              ? {
                reason: flags.repaired
                  ? `repaired on ${route.name}`
                  : flags.restarted
                  ? `stream restarted on ${route.name}`
                  : `served by fallback route ${route.name}`
              }
              : {})
          }, now),
          result
        )
      })

    /** A chain failure; when every route failed or time ran out, the system is degraded too. */
    const reject = (error: AllRoutesFailed): Effect.Effect<never, AllRoutesFailed> =>
      error.reason === "exhausted" || error.reason === "deadline"
        ? Effect.zipRight(
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            DegradedMode.publish({ degraded: true, reason: `no route answered (${error.reason})` }, now)),
          Effect.fail(error)
        )
        : Effect.fail(error)

    const run = <A>(
      request: ChainRequest,
      acceptor: Policy.Acceptor,
      extract: (response: GenerateResponse) => A,
      repairable: boolean
    ): Effect.Effect<ChainResult<A>, AllRoutesFailed> =>
      Effect.flatMap(startCall, (call) => {
        const context: Policy.CallContext = { deadline: call.deadline, acceptor: metered(call.log, acceptor), observe: logTo(call.log) }
        /** Routes that failed for good in an earlier pass; later passes skip them. */
        const settled = new Map<string, string>()
        /** The failure of each route tried in the current pass. */
        let passErrors: Array<RouteError> = []
        const pass = (passNumber: number) =>
          Effect.gen(function*() {
            const routes = yield* orderRoutes
            let minContextWindow = 0
            for (const route of routes) {
              const settledBy = settled.get(route.name)
              if (settledBy !== undefined) {
                call.log.skip(route.name, `not tried again after ${settledBy}`)
                continue
              }
              const checked = preflight(route, request, minContextWindow)
              if (checked._tag === "Skip") {
                call.log.skip(route.name, checked.message)
                continue
              }
              // A later pass is a retry of the route: it spends the route's retry budget like one.
              if (passNumber > 1 && !(yield* (yield* budgets.get(route.name)).withdraw)) {
                call.log.skip(route.name, "retry budget exhausted: not tried again")
                continue
              }
              let routeRequest = checked.request
              const provider = wrapped.get(route.name)!
              const repairBudget = repairable ? repairAttempts : 0
              let repairs = 0
              let error: RouteError
              while (true) {
                call.log.beginCall(route.name, repairs > 0 ? `repair ${repairs}/${repairBudget}` : undefined)
                const outcome = yield* Effect.either(provider.generate(routeRequest, context))
                if (outcome._tag === "Right") {
                  const response = outcome.right
                  return yield* accept(call, route, response, extract(response), { repaired: repairs > 0, restarted: false })
                }
                error = outcome.left
                call.lastError = error
                const canRepair = error._tag === "InvalidOutput" && repairs < repairBudget &&
                  (error.reason === "unparsable" || error.reason === "schema" || error.reason === "validator")
                if (!canRepair) break
                // A repair is a retry: it spends the route's retry budget like one.
                const budget = yield* budgets.get(route.name)
                if (!(yield* budget.withdraw)) break
                repairs++
                routeRequest = repairRequest(routeRequest, error as InvalidOutput)
              }
              passErrors.push(error)
              if (!transientTags.has(error._tag)) settled.set(route.name, error._tag)
              const decision = yield* next(call, error, route, minContextWindow)
              if (decision._tag === "Stop") return yield* Effect.fail(call.fail(decision.reason, decision.summary))
              minContextWindow = decision.minContextWindow
            }
            return yield* Effect.fail(endOfChain(call))
          })

        /** The wait before another pass, or `undefined` when no pass can help or the deadline forbids it. */
        const pauseBeforePass = (passNumber: number): Effect.Effect<number | undefined> =>
          Effect.gen(function*() {
            const hopeful = passErrors.filter((error) => transientTags.has(error._tag))
            if (hopeful.length === 0) return undefined
            // The soonest any hopeful route said it may answer; a route that said nothing may try after one backoff.
            let wait = Number.POSITIVE_INFINITY
            let unhinted = false
            for (const error of hopeful) {
              const hint = retryAfterOf(error)
              if (hint === undefined) unhinted = true
              else wait = Math.min(wait, hint)
            }
            if (unhinted) {
              wait = Math.min(wait, yield* backoffDelay("full", passNumber - 1, PASS_BACKOFF_BASE_MS, PASS_BACKOFF_CAP_MS, 0))
            }
            return wait < call.deadline - (yield* Clock.currentTimeMillis) ? wait : undefined
          })

        const walk = (passNumber: number, passes: number): Effect.Effect<ChainResult<A>, AllRoutesFailed> => {
          const from = call.log.records.length
          passErrors = []
          const attempt = panicWhenAllOpen
            ? Effect.catchIf(
              pass(passNumber),
              (error) => error.reason === "exhausted" && onlyBreakerRefusals(call.log.records.slice(from)),
              () => Effect.locally(pass(passNumber), CircuitBreaker.currentPanic, true)
            )
            : pass(passNumber)
          if (passNumber >= passes) return attempt
          return Effect.catchIf(attempt, (error) => error.reason === "exhausted", (error) =>
            Effect.flatMap(pauseBeforePass(passNumber), (wait) =>
              wait === undefined
                ? Effect.fail(error)
                : Effect.zipRight(Effect.sleep(Duration.millis(wait)), walk(passNumber + 1, passes))))
        }

        // No timer of its own for the deadline: every wait below refuses to cross it (the pauses
        // between passes here, each route's retry sleeps and limiter queues) and every attempt's one
        // timer is clipped to it, so it fires where the time is spent, as `DeadlineExceeded`.
        return Effect.catchAll(walk(1, passesOf(options.passes, call.deadline < Number.POSITIVE_INFINITY)), reject)
      })

    const textGate = basicGate(options.acceptTruncated === true)

    const generate: Chain["generate"] = (request) => run(request, textGate, (response) => response.text, false)

    const generateObject: Chain["generateObject"] = (schema, request, objectOptions) => {
      const { decode, jsonSchema } = compiled(schema)
      const name = objectOptions?.name ?? "response"
      const validate = objectOptions?.validate
      const decoded = new WeakMap<GenerateResponse, unknown>()
      const objectGate = basicGate(false)
      const acceptor: Policy.Acceptor = (response, routeRequest) =>
        Effect.flatMap(objectGate(response, routeRequest), (accepted) => {
          const parsed = parseAnswer(accepted.text)
          if (parsed._tag !== "Json") {
            const why = refusedBecause(parsed)
            return Effect.fail(invalid(accepted, routeRequest, "unparsable", `the output is ${why}`, `expected a single JSON value, got ${why}`))
          }
          return decode(parsed.value).pipe(
            Effect.mapError((error) =>
              invalid(accepted, routeRequest, "schema", "the output does not match the schema", ParseResult.TreeFormatter.formatErrorSync(error))
            ),
            Effect.flatMap((value) =>
              validate === undefined
                ? Effect.succeed(value)
                : Effect.as(
                  Effect.mapError(validate(value), (issue) => invalid(accepted, routeRequest, "validator", `rejected by the validator: ${issue}`, issue)),
                  value
                )
            ),
            Effect.map((value) => {
              decoded.set(accepted, value)
              return accepted
            })
          )
        })
      return run(
        extend(request, { responseFormat: { type: "json_schema", name, schema: jsonSchema, strict: false } }),
        acceptor,
        // The acceptor decoded this very response object before the chain accepted it.
        (response) => decoded.get(response) as typeof schema.Type,
        true
      )
    }

    const stream: Chain["stream"] = (request, streamOptions) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const call = yield* startCall
        const mode = streamOptions?.onPartialOutputFailure ?? options.onPartialOutputFailure ?? "fail"
        const routes = yield* orderRoutes
        const observe = logTo(call.log)
        // The chain's deadline is published once for the whole stream, not watched by a producer of its
        // own: every attempt's watch is clipped to it (it fails with DeadlineExceeded at that instant,
        // after the events already received) and every wait between attempts refuses to cross it.
        if (deadline !== undefined) yield* Effect.locallyScoped(Deadline.currentDeadline, Option.some(call.deadline))
        // Set when a route failed after partial output in `restart` mode; emitted before the next output.
        let restart: Omit<Restarted, "to"> | undefined
        /** Ends the stream with the chain's failure (published to `DegradedMode` like `generate`'s). */
        const failWith = (error: AllRoutesFailed): Stream.Stream<never, AllRoutesFailed> => Stream.fromEffect(reject(error))

        const fromRoute = (index: number, minContextWindow: number): Stream.Stream<ChainStreamEvent, AllRoutesFailed> =>
          Stream.suspend(() => {
            let position = index
            let checked: Preflight | undefined
            for (; position < routes.length; position++) {
              checked = preflight(routes[position]!, request, minContextWindow)
              if (checked._tag === "Call") break
              call.log.skip(routes[position]!.name, checked.message)
            }
            if (position >= routes.length || checked?._tag !== "Call") {
              return failWith(endOfChain(call))
            }
            const route = routes[position]!
            const routeRequest = checked.request
            const restartedFrom = restart
            // Events before the first content (metadata, usage) are held back, so that an attempt
            // failing before content leaves no trace in the consumer's stream.
            const held: Array<ChainStreamEvent> = []
            const text: Array<string> = []
            let flowing = false
            const release = (out: Array<ChainStreamEvent>): void => {
              if (flowing) return
              flowing = true
              if (restartedFrom !== undefined) out.push(extend(restartedFrom, { to: route.name }))
              for (const event of held) out.push(event)
              held.length = 0
            }
            /** The answer: gated, recorded and published (effects), then the chain's `Completed`. */
            const finish = (event: Extract<StreamEvent, { readonly _tag: "Finish" }>, out: Array<ChainStreamEvent>) =>
              Effect.flatMap(textGate(event.response, routeRequest), (response) => {
                call.log.attachUsage(route.name, response.usage)
                return Effect.map(
                  accept(call, route, response, response.text, { repaired: false, restarted: restartedFrom !== undefined }),
                  (result) => {
                    release(out)
                    out.push(event, { _tag: "Completed", result })
                  }
                )
              })
            // A chunk at a time, synchronously but for the `Finish` (one stage, not one effect per event).
            const onChunk = (chunk: Chunk.Chunk<StreamEvent>): Effect.Effect<Chunk.Chunk<ChainStreamEvent>, RouteError> => {
              const events = Chunk.toReadonlyArray(chunk)
              const out: Array<ChainStreamEvent> = []
              const from = (start: number): Effect.Effect<Chunk.Chunk<ChainStreamEvent>, RouteError> => {
                for (let i = start; i < events.length; i++) {
                  const event = events[i]!
                  if (event._tag === "Finish") return Effect.flatMap(finish(event, out), () => from(i + 1))
                  if (isContentEvent(event)) {
                    if (event._tag === "TextDelta") text.push(event.text)
                    release(out)
                    out.push(event)
                  } else if (flowing) out.push(event)
                  else held.push(event)
                }
                return Effect.succeed(Chunk.unsafeFromArray(out))
              }
              return from(0)
            }
            return wrapped.get(route.name)!.stream(routeRequest, { observe }).pipe(
              Stream.mapChunksEffect(onChunk),
              Stream.catchAll((error): Stream.Stream<ChainStreamEvent, AllRoutesFailed> =>
                Stream.unwrap(Effect.gen(function*() {
                  call.lastError = error
                  // Past the deadline no route can answer, whatever this one failed with (after partial
                  // output the retry loop reports the deadline as a broken stream).
                  if (call.deadline <= (yield* Clock.currentTimeMillis)) return failWith(call.fail("deadline", "the deadline passed"))
                  if (flowing && mode === "fail") {
                    return failWith(call.fail("stopped", `${route.name} failed after partial output`))
                  }
                  const decision = yield* next(call, error, route, minContextWindow)
                  if (decision._tag === "Stop") return failWith(call.fail(decision.reason, decision.summary))
                  if (flowing) restart = { _tag: "Restarted", from: route.name, discardedText: text.join(""), error }
                  return fromRoute(position + 1, decision.minContextWindow)
                }))
              )
            )
          })

        return fromRoute(0, 0)
      }))

    return { generate, generateObject, stream }
  })

/**
 * What happened during a run, as data, and its renderings.
 *
 * A `RunRecord` holds every logical call, every attempt (with when it started), every circuit-breaker
 * transition, the steps of an agent and its notable moments (a refused tool, a crash, a resume, a
 * heartbeat). A {@link Recorder} builds it from the library's own hooks — each route's Policy
 * `observe`, the breaker registry's event stream, the chain's result or `AllRoutesFailed` — and
 * streams the same facts as {@link RunEvent}s while the run goes on (the CLI's live view reads them).
 *
 * {@link summarize} computes the numbers (retries, fallbacks, tokens, cost, latency percentiles, per-route
 * counts) that both the terminal summary table and the HTML page show, and {@link html} renders a
 * self-contained page: a Gantt timeline of every attempt per route coloured by outcome, breaker state
 * over time, a latency histogram and the summary tables — inline SVG and CSS, no script, no network.
 *
 * Why a library module and not part of the CLI: a team running chains inside its own Effect program
 * wants the same post-incident page for its own runs; the record only depends on the library's public
 * models (`AttemptRecord`, `BreakerEvent`, `ChainResult`), and the CLI is one consumer of it.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BreakerEvent, CircuitBreakers } from "./CircuitBreaker.js"
import { type AllRoutesFailed, AttemptRecord, type InvalidOptions } from "./Errors.js"
import type { ChainResult, ChainStreamEvent, Route } from "./Fallback.js"
import { renderHtml } from "./report/html.js"
import { redact } from "./internal/redact.js"
import { Usage } from "./Provider.js"

// ---------------------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------------------

/**
 * A route of the run, as shown in the report.
 *
 * @since 0.1.0
 * @category models
 */
export const RouteInfo = Schema.Struct({
  name: Schema.String,
  provider: Schema.String,
  model: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export type RouteInfo = typeof RouteInfo.Type

/**
 * One attempt: the library's `AttemptRecord` plus the call it belonged to and when it started
 * (milliseconds since the run started).
 *
 * @since 0.1.0
 * @category models
 */
export const AttemptEntry = Schema.Struct({
  call: Schema.Number,
  step: Schema.optional(Schema.String),
  startedAt: Schema.Number,
  ...AttemptRecord.fields
})

/**
 * @since 0.1.0
 * @category models
 */
export type AttemptEntry = typeof AttemptEntry.Type

/**
 * One logical call (one chain `generate` / `generateObject`).
 *
 * @since 0.1.0
 * @category models
 */
export const CallEntry = Schema.Struct({
  id: Schema.Number,
  label: Schema.String,
  step: Schema.optional(Schema.String),
  startedAt: Schema.Number,
  durationMs: Schema.Number,
  ok: Schema.Boolean,
  /** The route that served the answer. */
  route: Schema.optional(Schema.String),
  degraded: Schema.Boolean,
  repaired: Schema.Boolean,
  /** Why the call failed: the last route error's tag (or `AllRoutesFailed`) and the chain's reason. */
  error: Schema.optional(Schema.Struct({ _tag: Schema.String, reason: Schema.String, message: Schema.String })),
  usage: Usage,
  /** What the call's reported usage cost in USD, when the chain had prices (see `Spend`). */
  costUsd: Schema.optional(Schema.Number),
  /** Answered from the response cache: no provider was called (see `ResponseCache`). */
  cached: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type CallEntry = typeof CallEntry.Type

/**
 * A breaker state.
 *
 * @since 0.1.0
 * @category models
 */
export const BreakerStateSchema = Schema.Literal("closed", "open", "half-open", "isolated")

/**
 * One breaker transition (`at`: milliseconds since the run started).
 *
 * @since 0.1.0
 * @category models
 */
export const BreakerEntry = Schema.Struct({
  key: Schema.String,
  from: BreakerStateSchema,
  to: BreakerStateSchema,
  at: Schema.Number,
  reason: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export type BreakerEntry = typeof BreakerEntry.Type

/**
 * How a step of an agent ended: run now (`done`), answered from a checkpoint (`replayed`), refused
 * (an irreversible tool while degraded), `failed`, or cut short by a crash (`interrupted`).
 *
 * @since 0.1.0
 * @category models
 */
export const StepStatus = Schema.Literal("running", "done", "replayed", "refused", "failed", "interrupted")

/**
 * @since 0.1.0
 * @category models
 */
export type StepStatus = typeof StepStatus.Type

/**
 * One step of an agent run.
 *
 * @since 0.1.0
 * @category models
 */
export const StepEntry = Schema.Struct({
  name: Schema.String,
  status: StepStatus,
  startedAt: Schema.Number,
  durationMs: Schema.Number,
  detail: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type StepEntry = typeof StepEntry.Type

/**
 * What a note is about.
 *
 * @since 0.1.0
 * @category models
 */
export const NoteKind = Schema.Literal("info", "incident", "degraded", "tool", "crash", "resume", "heartbeat")

/**
 * @since 0.1.0
 * @category models
 */
export type NoteKind = typeof NoteKind.Type

/**
 * A notable moment (`at`: milliseconds since the run started).
 *
 * @since 0.1.0
 * @category models
 */
export const NoteEntry = Schema.Struct({ at: Schema.Number, kind: NoteKind, text: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export type NoteEntry = typeof NoteEntry.Type

/**
 * A whole run. `startedAt` is epoch milliseconds; every other time is relative to it.
 *
 * @since 0.1.0
 * @category models
 */
export const RunRecord = Schema.Struct({
  title: Schema.String,
  startedAt: Schema.Number,
  durationMs: Schema.Number,
  routes: Schema.Array(RouteInfo),
  calls: Schema.Array(CallEntry),
  attempts: Schema.Array(AttemptEntry),
  breakers: Schema.Array(BreakerEntry),
  steps: Schema.Array(StepEntry),
  notes: Schema.Array(NoteEntry)
})

/**
 * @since 0.1.0
 * @category models
 */
export type RunRecord = typeof RunRecord.Type

// ---------------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------------

/**
 * Per-route numbers.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteSummary {
  readonly route: string
  readonly attempts: number
  readonly successes: number
  readonly failures: number
  readonly retries: number
  /** Median duration of the route's successful attempts (0 when none). */
  readonly p50Ms: number
}

/**
 * The numbers of a run (the CLI's summary table and the page's tables show exactly these).
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary {
  readonly calls: number
  readonly succeeded: number
  readonly failed: number
  /** Answers served by a fallback route or only after a repair. */
  readonly degraded: number
  /** Answers served from the response cache (no provider call). */
  readonly cached: number
  /** Attempts sent to a provider (skipped routes are not attempts). */
  readonly attempts: number
  /** Attempts after the first on the same route within one call. */
  readonly retries: number
  /** Moves from one route to another within one call. */
  readonly fallbacks: number
  /** Answers rejected by the output gate (`InvalidOutput`). */
  readonly rejectedOutputs: number
  /** Transitions of any breaker to `open`. */
  readonly breakerOpens: number
  readonly tokens: Usage
  /** USD of the calls that have a cost (`CallEntry.costUsd`); absent when none has one. */
  readonly costUsd?: number | undefined
  /** Calls that reported tokens but have no cost (a model without a price): `costUsd` leaves them out. */
  readonly unpricedCalls: number
  /** Durations of successful attempts. */
  readonly latency: { readonly p50Ms: number; readonly p95Ms: number; readonly maxMs: number }
  /** Attempts by outcome (`success` or the failure's tag). */
  readonly outcomes: Readonly<Record<string, number>>
  readonly routes: ReadonlyArray<RouteSummary>
  readonly steps: { readonly total: number; readonly done: number; readonly replayed: number; readonly refused: number; readonly failed: number }
}

/** Nearest-rank percentile of sorted values (0 for none). */
const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const sortedDurations = (attempts: ReadonlyArray<AttemptEntry>): Array<number> =>
  attempts.filter((a) => a.outcome === "success").map((a) => a.durationMs).sort((a, b) => a - b)

const addUsage = (a: Usage, b: Usage): Usage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  totalTokens: a.totalTokens + b.totalTokens
})

const zeroUsage: Usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 }

/**
 * Whether an attempt record is a real attempt (a route the chain skipped without calling it is not).
 *
 * @since 0.1.0
 * @category guards
 */
export const isSentAttempt = (attempt: { readonly outcome: string; readonly attempt: number }): boolean =>
  attempt.outcome !== "Skipped" && attempt.attempt > 0

/**
 * The numbers of a run.
 *
 * @since 0.1.0
 * @category summaries
 */
export const summarize = (record: RunRecord): Summary => {
  const sent = record.attempts.filter(isSentAttempt)
  const outcomes: Record<string, number> = {}
  for (const attempt of sent) outcomes[attempt.outcome] = (outcomes[attempt.outcome] ?? 0) + 1
  let fallbacks = 0
  const byCall = new Map<number, Array<AttemptEntry>>()
  for (const attempt of sent) {
    const list = byCall.get(attempt.call) ?? []
    list.push(attempt)
    byCall.set(attempt.call, list)
  }
  for (const list of byCall.values()) {
    for (let i = 1; i < list.length; i++) if (list[i]!.route !== list[i - 1]!.route) fallbacks++
  }
  const routeNames = [...record.routes.map((r) => r.name)]
  for (const attempt of sent) if (!routeNames.includes(attempt.route)) routeNames.push(attempt.route)
  const routes = routeNames.map((route): RouteSummary => {
    const mine = sent.filter((a) => a.route === route)
    const successes = mine.filter((a) => a.outcome === "success").length
    return {
      route,
      attempts: mine.length,
      successes,
      failures: mine.length - successes,
      retries: mine.filter((a) => a.attempt > 1).length,
      p50Ms: percentile(sortedDurations(mine), 50)
    }
  })
  const durations = sortedDurations(sent)
  // A call's tokens: the chain's own sum for an answer; for a failed call, what its attempts reported.
  let tokens = zeroUsage
  let costUsd: number | undefined
  let unpricedCalls = 0
  for (const call of record.calls) {
    tokens = addUsage(tokens, call.usage)
    if (call.costUsd !== undefined) costUsd = (costUsd ?? 0) + call.costUsd
    else if (call.usage.totalTokens > 0) unpricedCalls++
  }
  const succeeded = record.calls.filter((c) => c.ok).length
  const stepCount = (status: StepStatus) => record.steps.filter((s) => s.status === status).length
  return {
    calls: record.calls.length,
    succeeded,
    failed: record.calls.length - succeeded,
    degraded: record.calls.filter((c) => c.ok && c.degraded).length,
    cached: record.calls.filter((c) => c.ok && c.cached === true).length,
    attempts: sent.length,
    retries: sent.filter((a) => a.attempt > 1).length,
    fallbacks,
    rejectedOutputs: outcomes["InvalidOutput"] ?? 0,
    breakerOpens: record.breakers.filter((b) => b.to === "open").length,
    tokens,
    ...(costUsd !== undefined ? { costUsd } : {}),
    unpricedCalls,
    latency: { p50Ms: percentile(durations, 50), p95Ms: percentile(durations, 95), maxMs: durations.at(-1) ?? 0 },
    outcomes,
    routes,
    steps: {
      total: record.steps.length,
      done: stepCount("done"),
      replayed: stepCount("replayed"),
      refused: stepCount("refused"),
      failed: stepCount("failed") + stepCount("interrupted")
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------------

/**
 * Options of {@link html}.
 *
 * @since 0.1.0
 * @category models
 */
export interface HtmlOptions {
  /**
   * Secret values scrubbed from every text on the page, in addition to key-shaped tokens. Messages
   * are already redacted by the library; this is defence in depth for free text added by callers.
   */
  readonly secrets?: ReadonlyArray<Redacted.Redacted<string>> | undefined
}

/**
 * The run as a self-contained HTML page (inline SVG charts and CSS; no script, no external resource).
 *
 * @since 0.1.0
 * @category rendering
 */
export const html = (record: RunRecord, options: HtmlOptions = {}): string => {
  const secrets = (options.secrets ?? []).map(Redacted.value)
  return renderHtml(record, summarize(record), (text) => redact(text, secrets))
}

// ---------------------------------------------------------------------------------------------------
// Recorder
// ---------------------------------------------------------------------------------------------------

/**
 * What a recorder streams while a run goes on.
 *
 * @since 0.1.0
 * @category models
 */
export type RunEvent =
  | { readonly _tag: "CallStarted"; readonly id: number; readonly label: string; readonly step?: string | undefined; readonly at: number }
  | { readonly _tag: "CallFinished"; readonly call: CallEntry }
  | { readonly _tag: "Attempt"; readonly attempt: AttemptEntry }
  | { readonly _tag: "Breaker"; readonly transition: BreakerEntry }
  | { readonly _tag: "Step"; readonly step: StepEntry }
  | { readonly _tag: "Note"; readonly note: NoteEntry }

/**
 * Builds a {@link RunRecord} while a run goes on.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recorder {
  /** Epoch milliseconds (Effect `Clock`) when the recorder was made; every recorded time is relative to it. */
  readonly startedAt: number
  /** The observer to install as a route policy's `observe` (see {@link Recorder.instrument}). */
  readonly observe: (record: AttemptRecord) => Effect.Effect<void>
  /** The routes with the observer added to each route's policy (keeping any observer it had). */
  readonly instrument: (routes: ReadonlyArray<Route>) => ReadonlyArray<Route>
  /** Records one chain call: its attempts are attributed to it, its outcome and tokens recorded. */
  readonly call: <A, E extends AllRoutesFailed | InvalidOptions, R>(
    label: string,
    effect: Effect.Effect<ChainResult<A>, E, R>,
    options?: { readonly step?: string | undefined }
  ) => Effect.Effect<ChainResult<A>, E, R>
  /** Records one chain stream (its `Completed` event or its failure ends the call). */
  readonly callStream: <R>(
    label: string,
    stream: Stream.Stream<ChainStreamEvent, AllRoutesFailed, R>,
    options?: { readonly step?: string | undefined }
  ) => Stream.Stream<ChainStreamEvent, AllRoutesFailed, R>
  /** Records a step: started now, ended with `status` (or `failed` if the effect fails). */
  readonly step: <A, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    status?: (value: A) => { readonly status: StepStatus; readonly detail?: string | undefined }
  ) => Effect.Effect<A, E, R>
  /**
   * Announces a step that runs elsewhere (e.g. inside a durable agent): a `running` event for live
   * views; finish it with {@link Recorder.stepOutcome}.
   */
  readonly stepStarted: (name: string) => Effect.Effect<void>
  /** Records a step whose outcome is already known (e.g. replayed from a checkpoint, refused). */
  readonly stepOutcome: (entry: Omit<StepEntry, "startedAt" | "durationMs"> & { readonly durationMs?: number }) => Effect.Effect<void>
  readonly note: (kind: NoteKind, text: string) => Effect.Effect<void>
  /**
   * Records that every breaker not closed now starts closed again (a process restart builds new
   * breakers, which emit no transition of their own).
   */
  readonly resetBreakers: (reason: string) => Effect.Effect<void>
  /** Follows every breaker of the registry in context until the scope closes. */
  readonly followBreakers: Effect.Effect<void, never, CircuitBreakers | Scope.Scope>
  /** Subscribes now (in the current scope): every event from then on. */
  readonly events: Effect.Effect<Stream.Stream<RunEvent>, never, Scope.Scope>
  /** The record so far. */
  readonly record: Effect.Effect<RunRecord>
}

interface CallContext {
  readonly id: number
  readonly step: string | undefined
  /** Usage reported by attempts of this call (the chain's own sum is used for answers). */
  usage: Usage
}

/** What a recorder's parts share: the clock origin, the event hub, the fiber-local call and step, the entries. */
interface RecorderState {
  readonly startedAt: number
  readonly since: Effect.Effect<number>
  readonly publish: (event: RunEvent) => Effect.Effect<boolean>
  /** Per recorder (not module-wide), so two recorders in one program never attribute to each other. */
  readonly currentCall: FiberRef.FiberRef<Option.Option<CallContext>>
  readonly currentStep: FiberRef.FiberRef<Option.Option<string>>
  readonly calls: Array<CallEntry>
  readonly attempts: Array<AttemptEntry>
  readonly breakers: Array<BreakerEntry>
  readonly steps: Array<StepEntry>
  readonly notes: Array<NoteEntry>
  nextCall: number
}

/** A failed call's cost: what its priced attempts (rejected answers, say) cost, when every one with usage is priced. */
const failedCost = (error: AllRoutesFailed): { readonly costUsd?: number } => {
  let cost: number | undefined
  for (const attempt of error.attempts) {
    if (attempt.usage === undefined) continue
    if (attempt.costUsd === undefined) return {}
    cost = (cost ?? 0) + attempt.costUsd
  }
  return cost === undefined ? {} : { costUsd: cost }
}

/** Attempts (the chain's `observe` hook) and calls (`call`, `callStream`). */
const callRecording = (state: RecorderState) => {
  const { attempts, calls, currentCall, currentStep, publish, since } = state
  const observe = (record: AttemptRecord): Effect.Effect<void> =>
    Effect.gen(function*() {
      const call = yield* FiberRef.get(currentCall)
      const step = yield* FiberRef.get(currentStep)
      yield* attempt(record, Option.getOrUndefined(call), Option.getOrUndefined(step))
    })

  /** One attempt of a call: from a route's observer, or (a cache hit, which no route sees) from the call's result. */
  const attempt = (record: AttemptRecord, call: CallContext | undefined, step: string | undefined): Effect.Effect<void> =>
    Effect.gen(function*() {
      const at = yield* since
      const usage = record.usage
      if (call !== undefined && usage !== undefined) call.usage = addUsage(call.usage, usage)
      const entry: AttemptEntry = {
        call: call !== undefined ? call.id : 0,
        ...(step !== undefined ? { step } : {}),
        startedAt: Math.max(0, at - record.durationMs),
        route: record.route,
        attempt: record.attempt,
        outcome: record.outcome,
        ...(record.status !== undefined ? { status: record.status } : {}),
        ...(record.requestId !== undefined ? { requestId: record.requestId } : {}),
        delayMs: record.delayMs,
        durationMs: record.durationMs,
        ...(record.message !== undefined ? { message: record.message } : {}),
        ...(usage !== undefined ? { usage } : {}),
        ...(record.costUsd !== undefined ? { costUsd: record.costUsd } : {})
      }
      attempts.push(entry)
      yield* publish({ _tag: "Attempt", attempt: entry })
    })

  const instrument = (routes: ReadonlyArray<Route>): ReadonlyArray<Route> =>
    routes.map((route) => {
      const previous = route.policy?.observe
      return {
        ...route,
        policy: {
          ...route.policy,
          observe: previous === undefined ? observe : (record) => Effect.zipRight(observe(record), previous(record))
        }
      }
    })

  const startCall = (label: string, explicitStep: string | undefined) =>
    Effect.gen(function*() {
      const id = state.nextCall++
      const step = explicitStep ?? Option.getOrUndefined(yield* FiberRef.get(currentStep))
      const context: CallContext = { id, step, usage: zeroUsage }
      const begin = yield* since
      yield* publish({ _tag: "CallStarted", id, label, step, at: begin })
      return { context, label, begin }
    })

  const finishCall = (
    started: { readonly context: CallContext; readonly label: string; readonly begin: number },
    outcome: { readonly _tag: "Right"; readonly result: ChainResult<unknown> } | { readonly _tag: "Left"; readonly error: AllRoutesFailed }
  ) =>
    Effect.flatMap(since, (end) => {
      const { begin, context, label } = started
      const base = { id: context.id, label, ...(context.step !== undefined ? { step: context.step } : {}), startedAt: begin, durationMs: end - begin }
      const entry: CallEntry = outcome._tag === "Right"
        ? {
          ...base,
          ok: true,
          route: outcome.result.route,
          degraded: outcome.result.degraded,
          repaired: outcome.result.repaired,
          usage: outcome.result.usage,
          ...(outcome.result.costUsd !== undefined ? { costUsd: outcome.result.costUsd } : {}),
          ...(outcome.result.cached === true ? { cached: true } : {})
        }
        : {
          ...base,
          ok: false,
          degraded: false,
          repaired: false,
          error: {
            _tag: outcome.error.lastError?._tag ?? outcome.error._tag,
            reason: outcome.error.reason,
            message: outcome.error.message
          },
          usage: context.usage,
          ...failedCost(outcome.error)
        }
      // A cache hit called no route, so no observer recorded its `cached` attempt: record it here.
      const hit = outcome._tag === "Right" && outcome.result.cached === true
        ? Effect.forEach(outcome.result.attempts, (record) => attempt(record, context, context.step), { discard: true })
        : Effect.void
      return Effect.zipRight(hit, Effect.suspend(() => {
        calls.push(entry)
        return publish({ _tag: "CallFinished", call: entry })
      }))
    })

  const call = <A, E extends AllRoutesFailed | InvalidOptions, R>(
    label: string,
    effect: Effect.Effect<ChainResult<A>, E, R>,
    options?: { readonly step?: string | undefined }
  ): Effect.Effect<ChainResult<A>, E, R> =>
    Effect.flatMap(startCall(label, options?.step), (started) =>
      Effect.locally(effect, currentCall, Option.some(started.context)).pipe(
        // An interrupted call (a crash) leaves no call entry: it never finished.
        Effect.tapBoth({
          onSuccess: (result) => finishCall(started, { _tag: "Right", result }),
          // A call refused before any route was asked (a schema with no JSON Schema) made no call.
          onFailure: (error) => error._tag === "AllRoutesFailed" ? finishCall(started, { _tag: "Left", error }) : Effect.void
        })
      ))

  const callStream = <R>(
    label: string,
    stream: Stream.Stream<ChainStreamEvent, AllRoutesFailed, R>,
    options?: { readonly step?: string | undefined }
  ): Stream.Stream<ChainStreamEvent, AllRoutesFailed, R> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const started = yield* startCall(label, options?.step)
      yield* Effect.locallyScoped(currentCall, Option.some(started.context))
      return stream.pipe(
        Stream.tap((event) => event._tag === "Completed" ? finishCall(started, { _tag: "Right", result: event.result }) : Effect.void),
        Stream.tapError((error) => finishCall(started, { _tag: "Left", error }))
      )
    }))

  return { observe, instrument, call, callStream }
}

/** Steps and notes. */
const stepRecording = (state: RecorderState) => {
  const { currentStep, notes, publish, since, steps } = state
  const stepOutcome = (entry: Omit<StepEntry, "startedAt" | "durationMs"> & { readonly durationMs?: number }) =>
    Effect.flatMap(since, (at) => {
      const full: StepEntry = {
        name: entry.name,
        status: entry.status,
        startedAt: Math.max(0, at - (entry.durationMs ?? 0)),
        durationMs: entry.durationMs ?? 0,
        ...(entry.detail !== undefined ? { detail: entry.detail } : {})
      }
      steps.push(full)
      return publish({ _tag: "Step", step: full })
    })

  const stepStarted = (name: string) =>
    Effect.flatMap(since, (at) => publish({ _tag: "Step", step: { name, status: "running", startedAt: at, durationMs: 0 } }))

  const step = <A, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    status?: (value: A) => { readonly status: StepStatus; readonly detail?: string | undefined }
  ): Effect.Effect<A, E, R> =>
    Effect.gen(function*() {
      const begin = yield* since
      yield* publish({ _tag: "Step", step: { name, status: "running", startedAt: begin, durationMs: 0 } })
      const exit = yield* Effect.exit(Effect.locally(effect, currentStep, Option.some(name)))
      const end = yield* since
      const outcome = exit._tag === "Success"
        ? (status?.(exit.value) ?? { status: "done" as const })
        : Cause.isInterruptedOnly(exit.cause) ? { status: "interrupted" as const } : { status: "failed" as const }
      const entry: StepEntry = {
        name,
        status: outcome.status,
        startedAt: begin,
        durationMs: end - begin,
        ...(outcome.detail !== undefined ? { detail: outcome.detail } : {})
      }
      steps.push(entry)
      yield* publish({ _tag: "Step", step: entry })
      return yield* exit
    })

  const note = (kind: NoteKind, text: string) =>
    Effect.flatMap(since, (at) => {
      const entry: NoteEntry = { at, kind, text }
      notes.push(entry)
      return publish({ _tag: "Note", note: entry })
    })

  return { step, stepStarted, stepOutcome, note }
}

/** Breaker transitions: followed from the registry, or reset after a simulated restart. */
const breakerRecording = (state: RecorderState) => {
  const { breakers, publish, startedAt } = state
  const onBreaker = (event: BreakerEvent) => {
    const entry: BreakerEntry = { key: event.key, from: event.from, to: event.to, at: Math.max(0, event.at - startedAt), reason: event.reason }
    breakers.push(entry)
    return publish({ _tag: "Breaker", transition: entry })
  }

  const resetBreakers = (reason: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const last = new Map<string, BreakerEntry>()
      for (const entry of breakers) last.set(entry.key, entry)
      return Effect.forEach(
        [...last.values()].filter((entry) => entry.to !== "closed"),
        (entry) => onBreaker({ key: entry.key, from: entry.to, to: "closed", at: now, reason }),
        { discard: true }
      )
    })

  const followBreakers: Effect.Effect<void, never, CircuitBreakers | Scope.Scope> = Effect.flatMap(
    CircuitBreakers,
    (registry) =>
      Effect.flatMap(registry.events, (events) => Effect.asVoid(Effect.forkScoped(Stream.runForEach(events, onBreaker))))
  )

  return { resetBreakers, followBreakers }
}

/**
 * Makes a recorder for a run over `routes`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRecorder = (options: { readonly title: string; readonly routes: ReadonlyArray<RouteInfo> }): Effect.Effect<Recorder> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const hub = yield* PubSub.unbounded<RunEvent>()
    const state: RecorderState = {
      startedAt,
      since: Effect.map(Clock.currentTimeMillis, (now) => now - startedAt),
      publish: (event) => PubSub.publish(hub, event),
      currentCall: FiberRef.unsafeMake<Option.Option<CallContext>>(Option.none()),
      currentStep: FiberRef.unsafeMake<Option.Option<string>>(Option.none()),
      calls: [],
      attempts: [],
      breakers: [],
      steps: [],
      notes: [],
      nextCall: 1
    }
    const { attempts, breakers, calls, notes, since, steps } = state
    const record: Effect.Effect<RunRecord> = Effect.map(since, (durationMs) => ({
      title: options.title,
      startedAt,
      durationMs,
      routes: options.routes,
      calls: calls.slice(),
      attempts: attempts.slice().sort((a, b) => a.startedAt - b.startedAt),
      breakers: breakers.slice(),
      steps: steps.slice(),
      notes: notes.slice()
    }))

    return {
      startedAt,
      ...callRecording(state),
      ...stepRecording(state),
      ...breakerRecording(state),
      events: Stream.fromPubSub(hub, { scoped: true }),
      record
    } satisfies Recorder
  })

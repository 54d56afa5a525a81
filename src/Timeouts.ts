/**
 * Phase timeouts for one attempt.
 *
 * A streamed model call fails in phases, and each needs its own bound: the response headers
 * (`headers`), the first piece of *content* (`first-token` — a metadata event such as OpenAI's role
 * chunk or Anthropic's `message_start` does not count), the gap between events once content flows
 * (`idle` — a stream that hangs after the first token), and the whole attempt (`attempt`). Each fires
 * `Timeout{phase}`, which is retryable. The call-wide wall clock is `Deadline`, not an attempt timeout.
 *
 * Every bound is clipped to the call's `Deadline` (if any): when the deadline is the nearer one, the
 * attempt fails with `DeadlineExceeded` (action `stop`) instead — so one timer per attempt enforces
 * both, and `Policy` needs no timer of its own for the deadline.
 *
 * Cost (see `internal/timer.ts`): a non-streamed attempt runs on a child fiber started synchronously
 * and arms one timer only if it suspends; no `Effect.timeout`, no race, no `AbortController` on the
 * happy path. A streamed attempt gets one producer fiber and one timer, re-armed only when it fires
 * early or a bound moves earlier — events just update two numbers — so a thousand-chunk stream costs
 * one timer, not a thousand, and no per-chunk fork (`Stream.timeout`/`interruptWhen` fork per pull).
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as FiberRefs from "effect/FiberRefs"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Deadline from "./Deadline.js"
import { type DeadlineExceeded, Timeout, type TimeoutPhase } from "./Errors.js"
import {
  type Bound,
  type ChildRefs,
  type Expiry,
  guard,
  millisOf,
  type Restore,
  watchPull
} from "./internal/timer.js"
import { fromPull } from "./internal/pull.js"
import type { GenerateResponse, StreamEvent } from "./Provider.js"

/**
 * Options. Every default is in docs/policies.md; `undefined` means "use the default", `Infinity`
 * (or `"infinity"`) means "no bound".
 *
 * @since 0.1.0
 * @category models
 */
export interface TimeoutOptions {
  /** The whole attempt (a non-streamed call until its response; a stream until `Finish`). Default 10 minutes. */
  readonly attempt?: Duration.DurationInput | undefined
  /** Stream: until the response headers (the `Metadata` event). Default 30 seconds. */
  readonly headers?: Duration.DurationInput | undefined
  /** Stream: from the start of the attempt until the first content event. Default 120 seconds. */
  readonly firstToken?: Duration.DurationInput | undefined
  /** Stream: the longest gap between events once content flows. Default 60 seconds. */
  readonly idle?: Duration.DurationInput | undefined
}

/**
 * The defaults, in milliseconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  attempt: 600_000,
  headers: 30_000,
  firstToken: 120_000,
  idle: 60_000
} as const

/**
 * Where an attempt runs, for the errors it produces.
 *
 * @since 0.1.0
 * @category models
 */
export interface Site {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
}

interface Resolved {
  readonly attempt: number
  readonly headers: number
  readonly firstToken: number
  readonly idle: number
}

const resolve = (options: TimeoutOptions): Resolved => ({
  attempt: millisOf(options.attempt) ?? (options.attempt === undefined ? defaults.attempt : Number.POSITIVE_INFINITY),
  headers: millisOf(options.headers) ?? (options.headers === undefined ? defaults.headers : Number.POSITIVE_INFINITY),
  firstToken: millisOf(options.firstToken) ??
    (options.firstToken === undefined ? defaults.firstToken : Number.POSITIVE_INFINITY),
  idle: millisOf(options.idle) ?? (options.idle === undefined ? defaults.idle : Number.POSITIVE_INFINITY)
})

const timeout = (site: Site, phase: TimeoutPhase, timeoutMs: number) =>
  new Timeout({ ...site, phase, timeoutMs, message: `no ${phaseText[phase]} within ${timeoutMs} ms` }, true)

const phaseText: Readonly<Record<TimeoutPhase, string>> = {
  connect: "connection",
  headers: "response headers",
  "first-token": "first content token",
  idle: "stream event",
  attempt: "complete response"
}

/**
 * A configured set of phase timeouts, applicable to attempts. Both forms also enforce the current
 * `Deadline` (failing with `DeadlineExceeded` when it is the nearer bound).
 *
 * @since 0.1.0
 * @category models
 */
export interface Timeouts {
  /**
   * Bounds one non-streamed attempt. `deadline` (absolute, on Effect's `Clock`) is the call's deadline
   * when the caller tracks it itself rather than in `Deadline.currentDeadline`; the attempt then runs
   * with it published there (when it is the tighter one), so the provider sees what is left. Default:
   * the fiber's current deadline.
   *
   * `restore`: for a caller already in an uninterruptible region (to release a rate-limit slot
   * whatever happens), its `uninterruptibleMask` restore; the attempt then runs interruptibly within
   * that region instead of entering one of its own.
   */
  readonly generate: <E, R>(
    call: Effect.Effect<GenerateResponse, E, R>,
    site: Site,
    deadline?: number,
    restore?: Restore,
    handOverAt?: number
  ) => Effect.Effect<GenerateResponse, E | Timeout | DeadlineExceeded, R>
  /**
   * Bounds one streamed attempt. `handOverAt` (absolute, on Effect's `Clock`; see `Retry.CallOptions`)
   * clips the headers and first-token bounds: a route that has shown no content by then times out, so
   * the next route keeps its share of the deadline; once content flows it no longer applies.
   */
  readonly stream: <E, R>(
    call: Stream.Stream<StreamEvent, E, R>,
    site: Site,
    handOverAt?: number
  ) => Stream.Stream<StreamEvent, E | Timeout | DeadlineExceeded, R>
  /**
   * {@link stream} as the pull it is made of (run it in the scope of the stream it feeds): for a
   * composition layer that does its own per-event work in the same stage — `Policy` does — rather than
   * stacking stream operators, each of which is a stage paid on every chunk.
   */
  readonly streamPull: <E, R>(
    call: Stream.Stream<StreamEvent, E, R>,
    site: Site,
    handOverAt?: number
  ) => Effect.Effect<
    Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<E | Timeout | DeadlineExceeded>, R>,
    never,
    R | Scope.Scope
  >
}

/** Fiber refs that carry `deadline` as the current deadline. */
const publish = (deadline: number): ChildRefs => (refs, child) =>
  FiberRefs.updateAs(refs, { fiberId: child, fiberRef: Deadline.currentDeadline, value: Option.some(deadline) })

/** The deadline passed during this attempt (`deadlineMs`: what was left of it when the attempt began). */
const deadlinePassed = (site: Site, startedAt: number, deadline: number): DeadlineExceeded =>
  Deadline.exceeded(site, deadline - startedAt)

/**
 * Builds the timeouts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: TimeoutOptions = {}): Timeouts => {
  const limits = resolve(options)
  const streamPull: Timeouts["streamPull"] = (call, site, handOverAt) =>
    watchPull(call, (fiber, startedAt) => watch(site, limits, startedAt, Deadline.unsafeOf(fiber), handOverAt))
  return {
    generate: (call, site, explicit, restore, handOverAt) =>
      guard(call, (fiber, now): Bound<Timeout | DeadlineExceeded> | undefined => {
        const inherited = Deadline.unsafeOf(fiber)
        const deadline = explicit === undefined ? inherited : Math.min(explicit, inherited)
        const childRefs = deadline < inherited ? publish(deadline) : undefined
        // The hand-over clips the attempt: past it the route times out and the next one gets its turn.
        const attemptMs = handOverAt === undefined ? limits.attempt : Math.min(limits.attempt, Math.max(0, handOverAt - now))
        if (deadline - now < attemptMs) {
          return { ms: deadline - now, onTimeout: () => deadlinePassed(site, now, deadline), childRefs }
        }
        return attemptMs === Number.POSITIVE_INFINITY
          ? undefined
          : { ms: attemptMs, onTimeout: () => timeout(site, "attempt", Math.round(attemptMs)), childRefs }
      }, restore),
    stream: (call, site, handOverAt) => fromPull(streamPull(call, site, handOverAt)),
    streamPull
  }
}

/** The phase bounds of one streamed attempt, from its producer's side. */
const watch = (site: Site, limits: Resolved, startedAt: number, deadline: number, handOverAt: number | undefined) => {
  if (
    deadline === Number.POSITIVE_INFINITY && limits.attempt === Number.POSITIVE_INFINITY &&
    limits.headers === Number.POSITIVE_INFINITY && limits.firstToken === Number.POSITIVE_INFINITY &&
    limits.idle === Number.POSITIVE_INFINITY && handOverAt === undefined
  ) return undefined
  /** A bound before the first content, clipped to the hand-over (reported with the time it allowed). */
  const beforeContent = (limit: number): { readonly at: number; readonly limit: number } =>
    handOverAt !== undefined && handOverAt < startedAt + limit
      ? { at: handOverAt, limit: Math.max(0, Math.round(handOverAt - startedAt)) }
      : { at: startedAt + limit, limit }
  let lastEventAt = startedAt
  let sawHeaders = false
  let sawContent = false
  const bound = (at: number, phase: TimeoutPhase, limit: number): Expiry<Timeout | DeadlineExceeded> => ({
    at,
    fail: () => timeout(site, phase, limit)
  })
  return {
    observe: (chunk: Chunk.Chunk<StreamEvent>, now: number) => {
      lastEventAt = now
      if (sawContent) return
      for (const event of chunk) {
        if (event._tag === "Metadata") sawHeaders = true
        else if (event._tag === "TextDelta" || event._tag === "ToolCallDelta") {
          sawHeaders = true
          sawContent = true
        }
      }
    },
    // A consumer slower than the provider fills the buffer and holds the producer back: that is not
    // the provider going quiet, so the idle clock restarts.
    paused: (now: number) => {
      lastEventAt = now
    },
    next: (): Expiry<Timeout | DeadlineExceeded> | undefined => {
      let best: Expiry<Timeout | DeadlineExceeded> | undefined = deadline === Number.POSITIVE_INFINITY
        ? undefined
        : { at: deadline, fail: () => deadlinePassed(site, startedAt, deadline) }
      const consider = (at: number, phase: TimeoutPhase, limit: number) => {
        if (at < (best?.at ?? Number.POSITIVE_INFINITY)) best = bound(at, phase, limit)
      }
      consider(startedAt + limits.attempt, "attempt", limits.attempt)
      if (sawContent) consider(lastEventAt + limits.idle, "idle", limits.idle)
      else {
        if (!sawHeaders) {
          const headers = beforeContent(limits.headers)
          consider(headers.at, "headers", headers.limit)
        }
        const firstToken = beforeContent(limits.firstToken)
        consider(firstToken.at, "first-token", firstToken.limit)
      }
      return best
    }
  }
}

/**
 * Whether a chunk of events holds content (exported for the hedging and retry policies).
 *
 * @since 0.1.0
 * @category guards
 */
export const hasContent = (chunk: Chunk.Chunk<StreamEvent>): boolean =>
  Chunk.some(chunk, (event) => event._tag === "TextDelta" || event._tag === "ToolCallDelta")

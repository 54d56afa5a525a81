/**
 * Phase timeouts for one attempt.
 *
 * A streamed model call fails in phases, and each needs its own bound: the response headers
 * (`headers`), the first piece of *content* (`first-token` — a metadata event such as OpenAI's role
 * chunk or Anthropic's `message_start` does not count), the gap between events once content flows
 * (`idle` — a stream that hangs after the first token), and the whole attempt (`attempt`). Each fires
 * `Timeout{phase}`, which is retryable. The call-wide wall clock is `Deadline`, not an attempt timeout.
 *
 * Cost: a streamed attempt gets one watchdog fiber that sleeps until the nearest expiry and re-arms
 * only when it wakes — events just update two numbers — so a thousand-chunk stream costs one timer,
 * not a thousand. A non-streamed attempt gets one timer.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { Timeout, type TimeoutPhase } from "./Errors.js"
import { millisOf, within } from "./internal/timer.js"
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
 * A configured set of phase timeouts, applicable to attempts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Timeouts {
  readonly generate: <E, R>(
    call: Effect.Effect<GenerateResponse, E, R>,
    site: Site
  ) => Effect.Effect<GenerateResponse, E | Timeout, R>
  readonly stream: <E, R>(call: Stream.Stream<StreamEvent, E, R>, site: Site) => Stream.Stream<StreamEvent, E | Timeout, R>
}

/**
 * Builds the timeouts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: TimeoutOptions = {}): Timeouts => {
  const limits = resolve(options)
  return {
    generate: (call, site) => within(call, limits.attempt, () => timeout(site, "attempt", limits.attempt)),
    stream: (call, site) => watch(call, site, limits)
  }
}

const watch = <E, R>(
  call: Stream.Stream<StreamEvent, E, R>,
  site: Site,
  limits: Resolved
): Stream.Stream<StreamEvent, E | Timeout, R> =>
  Stream.suspend(() => {
    // Mutated by the stream as events pass, read by the watchdog when it wakes.
    const state = { startedAt: 0, lastEventAt: 0, sawHeaders: false, sawContent: false }
    const nextExpiry = (): { readonly at: number; readonly phase: TimeoutPhase; readonly limit: number } => {
      const attempt = { at: state.startedAt + limits.attempt, phase: "attempt" as const, limit: limits.attempt }
      const candidates = state.sawContent
        ? [{ at: state.lastEventAt + limits.idle, phase: "idle" as const, limit: limits.idle }]
        : state.sawHeaders
        ? [{ at: state.startedAt + limits.firstToken, phase: "first-token" as const, limit: limits.firstToken }]
        : [
          { at: state.startedAt + limits.headers, phase: "headers" as const, limit: limits.headers },
          { at: state.startedAt + limits.firstToken, phase: "first-token" as const, limit: limits.firstToken }
        ]
      let best: { readonly at: number; readonly phase: TimeoutPhase; readonly limit: number } = attempt
      for (const candidate of candidates) if (candidate.at < best.at) best = candidate
      return best
    }
    const watchdog: Effect.Effect<never, Timeout> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const next = nextExpiry()
      if (next.at === Number.POSITIVE_INFINITY && (state.sawContent || limits.idle === Number.POSITIVE_INFINITY)) {
        return Effect.never
      }
      if (now >= next.at) return Effect.fail(timeout(site, next.phase, next.limit))
      // Before content flows, an idle bound may start at any moment and end before `next`; waking
      // at least once per idle period catches it without re-arming on every event.
      const wake = state.sawContent ? next.at : Math.min(next.at, now + limits.idle)
      return Effect.zipRight(Effect.sleep(wake - now), watchdog)
    })
    const started = Effect.map(Clock.currentTimeMillis, (now) => {
      state.startedAt = now
      state.lastEventAt = now
    })
    const observed = Stream.mapChunksEffect(call, (chunk) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        state.lastEventAt = now
        for (const event of chunk) {
          if (event._tag === "Metadata") state.sawHeaders = true
          else if (event._tag === "TextDelta" || event._tag === "ToolCallDelta") {
            state.sawHeaders = true
            state.sawContent = true
          }
        }
        return chunk
      }))
    return Stream.unwrap(Effect.as(started, Stream.interruptWhen(observed, watchdog)))
  })

/**
 * Whether a chunk of events holds content (exported for the hedging and retry policies).
 *
 * @since 0.1.0
 * @category guards
 */
export const hasContent = (chunk: Chunk.Chunk<StreamEvent>): boolean =>
  Chunk.some(chunk, (event) => event._tag === "TextDelta" || event._tag === "ToolCallDelta")

/**
 * Deterministic timelines of model calls: record every attempt a pipeline makes — when it started and
 * ended (by the Effect clock), on which route, with what outcome — and run a program under `TestClock`
 * to completion without hand-written `TestClock.adjust` steps.
 *
 * ```ts
 * const recorder = yield* Timeline.make
 * const primary = recorder.wrap("primary", yield* ChaosProvider.make({ scenario }))
 * const run = yield* Timeline.run(callThroughMyPolicies(primary))
 * expect(Timeline.format(yield* recorder.entries)).toEqual([
 *   "0ms primary#1 RateLimited",
 *   "1500ms primary#2 success"
 * ])
 * ```
 *
 * Wrap the *raw* provider (below retries and timeouts) to see one entry per attempt; an attempt cut by
 * a timeout or a fallback shows as `interrupted` at the moment it was cut.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { RouteError } from "../Errors.js"
import type { GenerateRequest, ProviderShape } from "../Provider.js"

/**
 * How an attempt ended: `success`, the failure's tag (`RateLimited`, `Timeout`, …), `interrupted` (cut
 * from outside: a timeout, a deadline, a hedge or the consumer stopping a stream early), `defect`, or
 * `pending` (still running when the entries were read).
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome = "success" | RouteError["_tag"] | "interrupted" | "defect" | "pending"

/**
 * One attempt. Times are milliseconds since the recorder was made (by the Effect clock, so exact under
 * `TestClock`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  /** 1-based, in start order across all routes. */
  readonly seq: number
  readonly route: string
  /** 1-based count of attempts on this route. */
  readonly attempt: number
  readonly kind: "generate" | "stream"
  readonly model: string
  readonly at: number
  /** When it ended; undefined while `pending`. */
  readonly endAt: number | undefined
  readonly outcome: Outcome
  /** The HTTP status of a failure, when it had one. */
  readonly status?: number | undefined
  /** The refinement of a failure: a Timeout's `phase`, an InvalidOutput's or ConnectionError's `reason`. */
  readonly detail?: string | undefined
}

/**
 * Records the attempts of the providers it wraps.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recorder {
  /**
   * A provider that behaves exactly like `provider` and records each call as an entry on `route`.
   */
  readonly wrap: <E extends RouteError>(route: string, provider: ProviderShape<E>) => ProviderShape<E>
  /** The entries so far, in start order. */
  readonly entries: Effect.Effect<ReadonlyArray<Entry>>
  /** Forgets the entries and restarts time at 0 from now. */
  readonly clear: Effect.Effect<void>
}

type MutableEntry = { -readonly [K in keyof Entry]: Entry[K] }

const detailOf = (error: RouteError): string | undefined => {
  switch (error._tag) {
    case "Timeout":
      return error.phase
    case "InvalidOutput":
    case "ConnectionError":
      return error.reason
    case "ResponseTooLarge":
      return error.part
    default:
      return undefined
  }
}

const settle = <E extends RouteError>(entry: MutableEntry, exit: Exit.Exit<unknown, E>, endAt: number): void => {
  if (entry.outcome !== "pending") return
  entry.endAt = endAt
  if (Exit.isSuccess(exit)) {
    entry.outcome = "success"
    return
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    entry.outcome = error._tag
    if (error.status !== undefined) entry.status = error.status
    const detail = detailOf(error)
    if (detail !== undefined) entry.detail = detail
    return
  }
  entry.outcome = Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "defect"
}

/**
 * A new recorder; time 0 is now.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Recorder> = Effect.map(Clock.currentTimeMillis, (createdAt) => {
  let origin = createdAt
  let entries: Array<MutableEntry> = []
  const perRoute = new Map<string, number>()

  const start = (route: string, kind: Entry["kind"], request: GenerateRequest) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const attempt = (perRoute.get(route) ?? 0) + 1
      perRoute.set(route, attempt)
      const entry: MutableEntry = {
        seq: entries.length + 1,
        route,
        attempt,
        kind,
        model: request.model,
        at: now - origin,
        endAt: undefined,
        outcome: "pending"
      }
      entries.push(entry)
      return entry
    })

  const end = <E extends RouteError>(entry: MutableEntry, exit: Exit.Exit<unknown, E>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => settle(entry, exit, now - origin)))

  const wrap = <E extends RouteError>(route: string, provider: ProviderShape<E>): ProviderShape<E> => ({
    name: provider.name,
    generate: (request) =>
      Effect.flatMap(start(route, "generate", request), (entry) =>
        provider.generate(request).pipe(Effect.onExit((exit) => end(entry, exit)))),
    stream: (request) =>
      Stream.unwrap(Effect.map(start(route, "stream", request), (entry) => {
        let finished = false
        return provider.stream(request).pipe(
          Stream.tap((event) => Effect.sync(() => {
            if (event._tag === "Finish") finished = true
          })),
          // A stream the consumer stops after `Finish` succeeded; one stopped before it was cut.
          Stream.ensuringWith((exit) =>
            end(entry, Exit.isSuccess(exit) && !finished ? Exit.interrupt(FiberId.none) : exit)
          )
        )
      }))
  })

  return {
    wrap,
    entries: Effect.sync(() => entries.map((entry) => ({ ...entry }))),
    clear: Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        origin = now
        entries = []
        perRoute.clear()
      }))
  }
})

/**
 * Formatting options for {@link format}.
 *
 * @since 0.1.0
 * @category models
 */
export interface FormatOptions {
  /** Append each attempt's duration, e.g. `(1500ms)`. Default false. */
  readonly durations?: boolean | undefined
  /** Append the failure's HTTP status, e.g. `429`. Default false. */
  readonly status?: boolean | undefined
}

/**
 * One line per entry, made to be compared with `toEqual`: `"<at>ms <route>#<attempt> <outcome>"`, with
 * the detail in braces (`Timeout{first-token}`, `InvalidOutput{truncated}`) and, on request, the status
 * and the duration: `"0ms primary#1 RateLimited 429 (0ms)"`.
 *
 * @since 0.1.0
 * @category utils
 */
export const format = (entries: ReadonlyArray<Entry>, options: FormatOptions = {}): ReadonlyArray<string> =>
  entries.map((entry) => {
    const detail = entry.detail !== undefined ? `{${entry.detail}}` : ""
    const status = options.status === true && entry.status !== undefined ? ` ${entry.status}` : ""
    const duration = options.durations === true && entry.endAt !== undefined ? ` (${entry.endAt - entry.at}ms)` : ""
    return `${entry.at}ms ${entry.route}#${entry.attempt} ${entry.outcome}${detail}${status}${duration}`
  })

/**
 * Options for {@link run}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** Virtual time after which the program is interrupted (`timedOut: true`). Default 24 hours. */
  readonly limit?: Duration.DurationInput | undefined
  /**
   * Event-loop turns to wait for outside work (a promise, a socket) when no fiber sleeps on the clock,
   * before declaring the program blocked. Default 100.
   */
  readonly idleTurns?: number | undefined
}

/**
 * What {@link run} observed.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunResult<A, E> {
  readonly exit: Exit.Exit<A, E>
  /** Virtual milliseconds from the start of the run until the program ended (or was interrupted). */
  readonly elapsedMs: number
  /** The program was still running at `limit`. */
  readonly timedOut: boolean
  /** The program waited on something no clock advance could deliver; it was interrupted. */
  readonly blocked: boolean
}

const eventLoopTurn = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const isTestClock = (clock: Clock.Clock): boolean => "adjust" in clock && "sleeps" in clock

/**
 * Runs `effect` under `TestClock` to completion: whenever every fiber is parked, the clock jumps to the
 * next scheduled wake-up, so each sleep, backoff, timeout and latency happens at its exact virtual
 * instant and the test takes no wall time. Returns the program's exit and the virtual time it took.
 *
 * For in-process programs (`MockProvider`, `ChaosProvider`). With real sockets (`ChaosServer`) advance
 * the clock by hand: a jump while a response is on the wire would fire timeouts the program would not
 * have hit. Needs the `TestClock` (`it.effect`, `it.scoped`); under the live clock it dies with a
 * message saying so.
 *
 * @since 0.1.0
 * @category runners
 */
export const run = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: RunOptions = {}
): Effect.Effect<RunResult<A, E>, never, R> =>
  Effect.gen(function*() {
    if (!isTestClock(yield* Effect.clock)) {
      return yield* Effect.dieMessage("Timeline.run needs the TestClock (use it.effect / it.scoped, or provide TestContext)")
    }
    const started = yield* TestClock.currentTimeMillis
    const limitMs = Duration.toMillis(options.limit ?? Duration.hours(24))
    const idleTurns = options.idleTurns ?? 100
    const fiber = yield* Effect.fork(effect)
    const finish = (exit: Exit.Exit<A, E>, flags: { readonly timedOut?: boolean; readonly blocked?: boolean } = {}) =>
      Effect.map(TestClock.currentTimeMillis, (now): RunResult<A, E> => ({
        exit,
        elapsedMs: now - started,
        timedOut: flags.timedOut === true,
        blocked: flags.blocked === true
      }))
    let idle = 0
    for (;;) {
      // Lets every fiber run until it parks, and wakes the sleeps due at the current instant.
      yield* TestClock.adjust(0)
      const polled = yield* Fiber.poll(fiber)
      if (Option.isSome(polled)) return yield* finish(polled.value)
      const now = yield* TestClock.currentTimeMillis
      const pending = Chunk.toReadonlyArray(yield* TestClock.sleeps()).filter((instant) => instant > now)
      if (pending.length === 0) {
        if (idle++ >= idleTurns) return yield* finish(yield* Fiber.interrupt(fiber), { blocked: true })
        yield* eventLoopTurn
        continue
      }
      idle = 0
      const next = Math.min(...pending)
      if (next - started > limitMs) {
        yield* TestClock.adjust(Math.max(0, started + limitMs - now))
        return yield* finish(yield* Fiber.interrupt(fiber), { timedOut: true })
      }
      yield* TestClock.adjust(next - now)
    }
  })

/**
 * Latency hedging: when an attempt has produced no first *content* after a delay, start a second one
 * and keep whichever succeeds first; the other is interrupted (for an HTTP call, `@effect/platform`
 * aborts the request and closes its socket).
 *
 * Tail latency of model APIs is dominated by a few slow requests (a cold replica, a queued prefill); a
 * duplicate sent at the p95 costs ~5% more calls and cuts the tail to roughly the latency of two
 * independent draws. Hedging is **off by default** — it spends quota — and every second attempt is
 * **paid from the route's retry budget**: when the budget is spent, the call just keeps waiting for the
 * first attempt, so hedging can never amplify an overload.
 *
 * - **Delay**: fixed (`delay`), or adaptive: the `percentile` (default p95) of the latencies to first
 *   content this hedger observed over its last `samples` calls, clamped to [`minDelay`, `maxDelay`],
 *   with `initialDelay` until `minSamples` calls were seen. When the second attempt wins, the first
 *   one's latency is only known to exceed the time so far; that lower bound is what is recorded, so
 *   the estimate is not dragged down by the hedge's own wins.
 * - **generate**: the winner is the first attempt to *succeed*; a failure before the hedge started
 *   surfaces at once (the retry policy decides what to do with it); once both run, a failure waits
 *   for the other; if both fail, the first attempt's failure surfaces.
 * - **stream**: the winner is the first attempt to produce content (or to finish); its events —
 *   including its own `Metadata` — are emitted from the start, the loser's are discarded unseen.
 *
 * The two attempts are any two effects (streams): `Policy` hedges an attempt with a copy of itself on
 * the same route (each with its own rate-limit permit, breaker verdict and phase timeouts); a fallback
 * chain can hedge with the *next* route by passing that route's call as `secondary`.
 *
 * Cost when the first attempt answers before the delay: one timer; when it completes synchronously,
 * none. See docs/policies.md#hedge.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { fromPull } from "./internal/pull.js"
import { arm, clockOf, type Disarm, millisOf, type Pump, runtimeOf, startPump } from "./internal/timer.js"
import { HedgeCore } from "./policy/hedgeCore.js"
import type { StreamEvent } from "./Provider.js"
import type { RetryBudget } from "./RetryBudget.js"

/**
 * Options. Every default is in {@link defaults} and docs/policies.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface HedgeOptions {
  /** A fixed delay before the second attempt. Default: adaptive (see `percentile`). */
  readonly delay?: Duration.DurationInput | undefined
  /** Adaptive delay: this percentile of the observed latencies to first content. Default 0.95. */
  readonly percentile?: number | undefined
  /** Adaptive delay used until `minSamples` latencies were observed. Default 2 seconds. */
  readonly initialDelay?: Duration.DurationInput | undefined
  /** Observations before the percentile is trusted. Default 20. */
  readonly minSamples?: number | undefined
  /** The adaptive delay never goes below this. Default 100 ms. */
  readonly minDelay?: Duration.DurationInput | undefined
  /** The adaptive delay never goes above this. Default 30 seconds. */
  readonly maxDelay?: Duration.DurationInput | undefined
  /** How many recent latencies the sketch keeps. Default 200. */
  readonly samples?: number | undefined
}

/**
 * The defaults, in milliseconds where they are durations.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  percentile: 0.95,
  initialDelayMs: 2_000,
  minSamples: 20,
  minDelayMs: 100,
  maxDelayMs: 30_000,
  samples: 200
} as const

/**
 * What a hedger has done so far.
 *
 * @since 0.1.0
 * @category models
 */
export interface HedgeStats {
  /** The delay the next call would use (ms). */
  readonly delayMs: number
  /** Latencies observed (capped at the sketch size). */
  readonly samples: number
  /** Second attempts started. */
  readonly started: number
  /** Second attempts that won (the first one was interrupted). */
  readonly won: number
  /** Hedges not started because the retry budget was spent. */
  readonly skipped: number
}

/**
 * A hedger: apply it to two attempts of one call.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hedge {
  /**
   * Runs `primary`; if it has not succeeded after the delay, also runs `secondary` (evaluated then);
   * the first success wins and the other is interrupted.
   */
  readonly generate: <A, E, R>(primary: Effect.Effect<A, E, R>, secondary: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Streams `primary`; if it has produced no content after the delay, also starts `secondary`; the
   * first to produce content (or finish) is the stream, the other is interrupted unseen.
   */
  readonly stream: <E, R>(
    primary: Stream.Stream<StreamEvent, E, R>,
    secondary: Stream.Stream<StreamEvent, E, R>
  ) => Stream.Stream<StreamEvent, E, R>
  /** Records an observed latency to first content (ms) — for callers that also measure elsewhere. */
  readonly record: (latencyMs: number) => Effect.Effect<void>
  readonly stats: Effect.Effect<HedgeStats>
}

const noDisarm: Disarm = () => {}

const isDecisive = (chunk: Chunk.Chunk<StreamEvent>): boolean =>
  Chunk.some(chunk, (event) => event._tag === "TextDelta" || event._tag === "ToolCallDelta" || event._tag === "Finish")

const generateWith = <A, E, R>(
  core: HedgeCore,
  primary: Effect.Effect<A, E, R>,
  secondary: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((parent, status) => {
    const { sketch } = core
    const clock = clockOf(parent)
    const startedAt = clock.unsafeCurrentTimeMillis()
    const runtime = runtimeOf<R>(parent, status.runtimeFlags)
    const first = Runtime.runFork(runtime)(primary)
    const early = first.unsafePoll()
    if (early !== null) {
      if (Exit.isSuccess(early)) sketch.record(0)
      return early
    }
    return Effect.async<A, E>((resume) => {
      let second: Fiber.RuntimeFiber<A, E> | undefined
      let firstExit: Exit.Exit<A, E> | undefined
      let secondExit: Exit.Exit<A, E> | undefined
      let settled = false
      let disarm: Disarm = noDisarm
      const settle = (exit: Exit.Exit<A, E>, loser: Fiber.RuntimeFiber<A, E> | undefined) => {
        if (settled) return
        settled = true
        disarm()
        // The loser's finalizers (socket close) complete before the winner is returned.
        resume(loser === undefined ? exit : Effect.zipRight(Fiber.interrupt(loser), exit))
      }
      const onSecond = (exit: Exit.Exit<A, E>) => {
        secondExit = exit
        if (Exit.isSuccess(exit)) {
          sketch.record(clock.unsafeCurrentTimeMillis() - startedAt)
          core.secondWon()
          settle(exit, first)
        } else if (firstExit !== undefined) settle(firstExit, undefined)
      }
      disarm = arm(clock, core.delayMs(), () => {
        if (settled || !core.mayHedge(clock.unsafeCurrentTimeMillis())) return
        second = Runtime.runFork(runtime)(secondary)
        const done = second.unsafePoll()
        if (done !== null) onSecond(done)
        else second.addObserver(onSecond)
      })
      first.addObserver((exit) => {
        firstExit = exit
        if (Exit.isSuccess(exit)) {
          sketch.record(clock.unsafeCurrentTimeMillis() - startedAt)
          if (second !== undefined) core.firstWon()
          settle(exit, second)
        } else if (second === undefined || secondExit !== undefined) settle(exit, undefined)
      })
      return Effect.suspend(() => {
        settled = true
        disarm()
        return second === undefined ? Fiber.interrupt(first) : Fiber.interruptAll([first, second])
      })
    })
  })

const streamWith = <E, R>(
  core: HedgeCore,
  primary: Stream.Stream<StreamEvent, E, R>,
  secondary: Stream.Stream<StreamEvent, E, R>
): Stream.Stream<StreamEvent, E, R> =>
  fromPull(
    Effect.withFiberRuntime<Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<E>>, never, R | Scope.Scope>(
      (parent, status) => {
        const clock = clockOf(parent)
        const startedAt = clock.unsafeCurrentTimeMillis()
        let first: Pump<StreamEvent, E> | undefined
        let second: Pump<StreamEvent, E> | undefined
        let firstDecisive = false
        let secondDecisive = false
        let winner: Pump<StreamEvent, E> | undefined
        let waiting: ((pull: Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<E>>) => void) | undefined

        const decide = () => {
          if (winner !== undefined || first === undefined) return
          let loser: Pump<StreamEvent, E> | undefined
          if (firstDecisive) {
            winner = first
            loser = second
            if (second !== undefined) core.firstWon()
          } else if (secondDecisive && second !== undefined) {
            winner = second
            loser = first
            core.secondWon()
          } else if (first.ended() && (second === undefined || second.ended())) {
            // The first attempt failed before any hedge, or both failed: its outcome stands.
            winner = first
            loser = undefined
          } else return
          disarm()
          if (winner !== undefined && (firstDecisive || secondDecisive)) {
            core.sketch.record(clock.unsafeCurrentTimeMillis() - startedAt)
          }
          loser?.stopNow()
          const resume = waiting
          waiting = undefined
          resume?.(winner.pull)
        }

        let disarm: Disarm = noDisarm
        first = startPump<StreamEvent, E, R>(parent, status.runtimeFlags, primary, (chunk) => {
          if (!firstDecisive && isDecisive(chunk)) firstDecisive = true
        }, decide)
        decide()
        if (winner === undefined) {
          disarm = arm(clock, core.delayMs(), () => {
            if (winner !== undefined || !core.mayHedge(clock.unsafeCurrentTimeMillis())) return
            second = startPump<StreamEvent, E, R>(parent, status.runtimeFlags, secondary, (chunk) => {
              if (!secondDecisive && isDecisive(chunk)) secondDecisive = true
            }, decide)
            decide()
          })
        }
        const pull: Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<E>> = Effect.suspend(() =>
          winner !== undefined
            ? winner.pull
            : Effect.async<Chunk.Chunk<StreamEvent>, Option.Option<E>>((resume) => {
              waiting = (next) => resume(next)
              return Effect.sync(() => {
                waiting = undefined
              })
            })
        )
        return Effect.as(
          Effect.addFinalizer(() =>
            Effect.suspend(() => {
              disarm()
              return Effect.zipRight(first?.stop ?? Effect.void, second?.stop ?? Effect.void)
            })
          ),
          pull
        )
      }
    )
  )

/**
 * Builds a hedger. `budget` (optional) pays for every second attempt; `label` tags its metrics
 * (`llm_hedges_total{route}`), default `*`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: HedgeOptions = {},
  extras: { readonly budget?: RetryBudget | undefined; readonly label?: string | undefined } = {}
): Hedge => {
  const core = new HedgeCore({
    fixed: millisOf(options.delay),
    percentile: Math.min(1, Math.max(0, options.percentile ?? defaults.percentile)),
    initialMs: millisOf(options.initialDelay) ?? defaults.initialDelayMs,
    minSamples: Math.max(1, options.minSamples ?? defaults.minSamples),
    minMs: millisOf(options.minDelay) ?? defaults.minDelayMs,
    maxMs: millisOf(options.maxDelay) ?? defaults.maxDelayMs,
    samples: Math.max(1, Math.floor(options.samples ?? defaults.samples))
  }, extras.budget, extras.label ?? "*")

  return {
    generate: (primary, secondary) => generateWith(core, primary, secondary),
    stream: (primary, secondary) => streamWith(core, primary, secondary),
    record: (latencyMs) => Effect.sync(() => core.sketch.record(latencyMs)),
    stats: Effect.sync(() => ({
      delayMs: core.delayMs(),
      samples: core.sketch.count(),
      started: core.started,
      won: core.won,
      skipped: core.skipped
    }))
  }
}

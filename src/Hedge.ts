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
import * as Metrics from "./internal/metrics.js"
import { arm, clockOf, type Disarm, millisOf, type Pump, runtimeOf, startPump } from "./internal/timer.js"
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

/**
 * A small latency sketch: the last `size` observations in a ring; the percentile is recomputed (a
 * sort of at most `size` numbers) only after a tenth of the ring changed, so reading it is O(1)
 * amortised.
 */
const makeSketch = (size: number) => {
  const ring = new Float64Array(size)
  let count = 0
  let next = 0
  let cached: number | undefined
  let changed = 0
  const refresh = Math.max(1, Math.floor(size / 10))
  return {
    record: (ms: number) => {
      ring[next] = ms
      next = (next + 1) % size
      if (count < size) count++
      changed++
    },
    count: () => count,
    quantile: (q: number): number | undefined => {
      if (count === 0) return undefined
      if (cached === undefined || changed >= refresh) {
        const sorted = ring.slice(0, count).sort()
        cached = sorted[Math.min(count - 1, Math.max(0, Math.ceil(q * count) - 1))]!
        changed = 0
      }
      return cached
    }
  }
}

const noDisarm: Disarm = () => {}

const isDecisive = (chunk: Chunk.Chunk<StreamEvent>): boolean =>
  Chunk.some(chunk, (event) => event._tag === "TextDelta" || event._tag === "ToolCallDelta" || event._tag === "Finish")

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
  const fixed = millisOf(options.delay)
  const percentile = Math.min(1, Math.max(0, options.percentile ?? defaults.percentile))
  const initialMs = millisOf(options.initialDelay) ?? defaults.initialDelayMs
  const minSamples = Math.max(1, options.minSamples ?? defaults.minSamples)
  const minMs = millisOf(options.minDelay) ?? defaults.minDelayMs
  const maxMs = millisOf(options.maxDelay) ?? defaults.maxDelayMs
  const sketch = makeSketch(Math.max(1, Math.floor(options.samples ?? defaults.samples)))
  const { budget } = extras
  const label = extras.label ?? "*"
  const hedges = Metrics.counterFamily(
    "llm_hedges_total",
    "Hedged attempts by route and outcome (started, won, lost, skipped: budget spent)",
    { route: label },
    "outcome"
  )
  const counters = { started: hedges("started"), won: hedges("won"), lost: hedges("lost"), skipped: hedges("skipped") }
  let started = 0
  let won = 0
  let skipped = 0

  const delayMs = (): number => {
    if (fixed !== undefined) return fixed
    if (sketch.count() < minSamples) return initialMs
    return Math.min(maxMs, Math.max(minMs, sketch.quantile(percentile) ?? initialMs))
  }

  /** Whether a second attempt may start now (spends one retry from the budget). */
  const mayHedge = (now: number): boolean => {
    if (budget !== undefined && !budget.unsafeWithdraw(now)) {
      skipped++
      counters.skipped.unsafeUpdate(1, [])
      return false
    }
    started++
    counters.started.unsafeUpdate(1, [])
    return true
  }
  const secondWon = () => {
    won++
    counters.won.unsafeUpdate(1, [])
  }

  const generate = <A, E, R>(primary: Effect.Effect<A, E, R>, secondary: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime<A, E, R>((parent, status) => {
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
            secondWon()
            settle(exit, first)
          } else if (firstExit !== undefined) settle(firstExit, undefined)
        }
        disarm = arm(clock, delayMs(), () => {
          if (settled || !mayHedge(clock.unsafeCurrentTimeMillis())) return
          second = Runtime.runFork(runtime)(secondary)
          const done = second.unsafePoll()
          if (done !== null) onSecond(done)
          else second.addObserver(onSecond)
        })
        first.addObserver((exit) => {
          firstExit = exit
          if (Exit.isSuccess(exit)) {
            sketch.record(clock.unsafeCurrentTimeMillis() - startedAt)
            if (second !== undefined) counters.lost.unsafeUpdate(1, [])
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

  const stream = <E, R>(
    primary: Stream.Stream<StreamEvent, E, R>,
    secondary: Stream.Stream<StreamEvent, E, R>
  ): Stream.Stream<StreamEvent, E, R> =>
    Stream.fromPull(
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
              if (second !== undefined) counters.lost.unsafeUpdate(1, [])
            } else if (secondDecisive && second !== undefined) {
              winner = second
              loser = first
              secondWon()
            } else if (first.ended() && (second === undefined || second.ended())) {
              // The first attempt failed before any hedge, or both failed: its outcome stands.
              winner = first
              loser = undefined
            } else return
            disarm()
            if (winner !== undefined && (firstDecisive || secondDecisive)) {
              sketch.record(clock.unsafeCurrentTimeMillis() - startedAt)
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
            disarm = arm(clock, delayMs(), () => {
              if (winner !== undefined || !mayHedge(clock.unsafeCurrentTimeMillis())) return
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

  return {
    generate,
    stream,
    record: (latencyMs) => Effect.sync(() => sketch.record(latencyMs)),
    stats: Effect.sync(() => ({ delayMs: delayMs(), samples: sketch.count(), started, won, skipped }))
  }
}

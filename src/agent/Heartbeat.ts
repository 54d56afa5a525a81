/**
 * "Still working" signals for long steps. A step that runs longer than the interval (default 30 s)
 * emits a beat every interval — elapsed time and step name — until it ends, so a UI or supervisor can
 * tell a slow step from a hung executor. Beats follow Effect's `Clock` (deterministic under `TestClock`)
 * and stop the moment the step finishes, fails or is interrupted.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"

/**
 * The default interval.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultInterval: Duration.Duration = Duration.seconds(30)

/**
 * One beat.
 *
 * @since 0.1.0
 * @category models
 */
export interface StillWorking {
  readonly _tag: "StillWorking"
  readonly runId: string
  readonly index: number
  readonly step: string
  /** Time since the step started, by the Clock. */
  readonly elapsedMs: number
}

/**
 * Runs `effect`, calling `onBeat(elapsedMs)` after every full `interval` it is still running.
 *
 * @since 0.1.0
 * @category combinators
 */
export const during = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: { readonly interval: Duration.DurationInput; readonly onBeat: (elapsedMs: number) => Effect.Effect<void> }
): Effect.Effect<A, E, R> =>
  Effect.flatMap(Clock.currentTimeMillis, (startedAt) => {
    const beat = Effect.flatMap(Clock.currentTimeMillis, (now) => options.onBeat(now - startedAt))
    const beats = Effect.zipRight(Effect.sleep(options.interval), Effect.repeat(beat, Schedule.spaced(options.interval)))
    // Forked inside the mask, so the beats must be made interruptible explicitly (a child inherits
    // its parent's interruptibility), or stopping them would wait out the current interval.
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.fork(Effect.interruptible(beats)), (fiber) => Effect.ensuring(restore(effect), Fiber.interrupt(fiber)))
    )
  })

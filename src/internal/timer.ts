/**
 * The one timing primitive the policies use: run an effect with a time limit and turn expiry into a
 * typed failure. Every policy that bounds time goes through here, so its cost is paid (and can be
 * optimised) in one place.
 *
 * It rides on `Effect.timeoutFail`, which sleeps through Effect's `Clock`: `TestClock` drives it in
 * tests, and interruption of the timed effect runs its finalizers (an HTTP request in flight is
 * aborted, its socket closed).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

export const within = <A, E, R, E2>(
  effect: Effect.Effect<A, E, R>,
  millis: number,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> =>
  millis === Number.POSITIVE_INFINITY
    ? effect
    : millis <= 0
    ? Effect.fail(onTimeout())
    : Effect.timeoutFail(effect, { duration: Duration.millis(millis), onTimeout })

/** Milliseconds of a DurationInput, or `undefined` for none/infinite. */
export const millisOf = (input: Duration.DurationInput | undefined): number | undefined => {
  if (input === undefined) return undefined
  const ms = Duration.toMillis(Duration.decode(input))
  return Number.isFinite(ms) ? ms : undefined
}

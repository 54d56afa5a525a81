/**
 * A wall-clock deadline for one logical call, spanning every retry, wait and fallback under it.
 *
 * The deadline lives in a `FiberRef` (absolute time on Effect's `Clock`), so every layer below can
 * ask how much time is left: retries refuse to sleep past it, rate limiters refuse to queue past it,
 * attempt timers (`Timeouts`) are clipped to it. When it passes, the work under it is interrupted — an
 * HTTP request in flight is aborted and its socket closed — and the call fails with `DeadlineExceeded`
 * (action `stop`). Nested deadlines only ever tighten.
 *
 * Cost: {@link withDeadline} arms one timer per call (no fiber scheduled when the work completes
 * synchronously; see `internal/timer.ts`). {@link propagate} arms none: it only publishes the deadline,
 * for callers that enforce it at every attempt and wait themselves (a policy-wrapped provider does, so
 * a deadline around it costs no second timer). `Policy`'s and the fallback chain's own deadlines are not
 * published on the caller's fiber at all: they are handed down as arguments and published on each
 * attempt's fiber, which saves an `Effect.locally` per call.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { dual, pipe } from "effect/Function"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { DeadlineExceeded } from "./Errors.js"
import { millisOf, watchStream, within } from "./internal/timer.js"

/**
 * The absolute deadline (epoch ms on Effect's Clock) of the current call, if any.
 *
 * @since 0.1.0
 * @category fiber refs
 */
export const currentDeadline: FiberRef.FiberRef<Option.Option<number>> = FiberRef.unsafeMake<Option.Option<number>>(
  Option.none()
)

/**
 * The absolute deadline of a running fiber (`Infinity` when it has none), read synchronously — for code
 * that already holds its fiber (`Effect.withFiberRuntime`) and compares deadlines on a hot path.
 *
 * @since 0.1.0
 * @category getters
 */
export const unsafeOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): number => {
  const deadline = fiber.getFiberRef(currentDeadline)
  return Option.isSome(deadline) ? deadline.value : Number.POSITIVE_INFINITY
}

/**
 * Milliseconds left before the current deadline (`Infinity` when there is none; never negative).
 *
 * @since 0.1.0
 * @category getters
 */
export const remaining: Effect.Effect<number> = Effect.flatMap(FiberRef.get(currentDeadline), (deadline) =>
  Option.isNone(deadline)
    ? Effect.succeed(Number.POSITIVE_INFINITY)
    : Effect.map(Clock.currentTimeMillis, (now) => Math.max(0, deadline.value - now)))

/**
 * Where a deadline fired, for the error it produces.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadlineSite {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt?: number
}

/**
 * Runs `effect` under a deadline `timeout` from now (or the enclosing deadline, if that is sooner).
 * Fails with `DeadlineExceeded` when it passes.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withDeadline: {
  (timeout: Duration.DurationInput, site?: DeadlineSite): <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | DeadlineExceeded, R>
  <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    timeout: Duration.DurationInput,
    site?: DeadlineSite
  ): Effect.Effect<A, E | DeadlineExceeded, R>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(effect: Effect.Effect<A, E, R>, timeout: Duration.DurationInput, site?: DeadlineSite) =>
    apply(effect, timeout, site)
)

/** The absolute deadline `ms` from `now`, tightened by an enclosing one. */
const tighten = (enclosing: Option.Option<number>, now: number, ms: number): number =>
  Option.isSome(enclosing) ? Math.min(enclosing.value, now + ms) : now + ms

const apply = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  timeout: Duration.DurationInput,
  site: DeadlineSite | undefined
): Effect.Effect<A, E | DeadlineExceeded, R> => {
  const ms = millisOf(timeout) ?? Number.POSITIVE_INFINITY
  if (ms === Number.POSITIVE_INFINITY) return effect
  return Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.flatMap(FiberRef.get(currentDeadline), (enclosing) => {
      const deadline = tighten(enclosing, now, ms)
      return pipe(
        within(effect, deadline - now, () => exceeded(site, ms)),
        Effect.locally(currentDeadline, Option.some(deadline))
      )
    }))
}

/**
 * Publishes a deadline `timeout` from now (or the enclosing one, if sooner) to everything under
 * `effect` **without arming a timer**: for layers that enforce it themselves at every wait and every
 * attempt (as a `Policy`-wrapped provider does — its retry sleeps and limiter queues refuse to cross it,
 * and each attempt's single timer is clipped to it). Plain effects should use {@link withDeadline}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const propagate = <A, E, R>(effect: Effect.Effect<A, E, R>, timeout: Duration.DurationInput): Effect.Effect<A, E, R> => {
  const ms = millisOf(timeout) ?? Number.POSITIVE_INFINITY
  if (ms === Number.POSITIVE_INFINITY) return effect
  return Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.flatMap(FiberRef.get(currentDeadline), (enclosing) =>
      Effect.locally(effect, currentDeadline, Option.some(tighten(enclosing, now, ms)))))
}

/**
 * The stream form of {@link propagate}: the deadline is visible to every pull of `stream`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const propagateStream = <A, E, R>(stream: Stream.Stream<A, E, R>, timeout: Duration.DurationInput): Stream.Stream<A, E, R> => {
  const ms = millisOf(timeout) ?? Number.POSITIVE_INFINITY
  if (ms === Number.POSITIVE_INFINITY) return stream
  return Stream.unwrapScoped(
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.flatMap(FiberRef.get(currentDeadline), (enclosing) =>
        Effect.as(Effect.locallyScoped(currentDeadline, Option.some(tighten(enclosing, now, ms))), stream)))
  )
}

/**
 * The error for a passed deadline.
 *
 * @since 0.1.0
 * @category constructors
 */
export const exceeded = (site: DeadlineSite | undefined, deadlineMs: number): DeadlineExceeded =>
  new DeadlineExceeded({
    provider: site?.provider ?? "*",
    model: site?.model ?? "*",
    route: site?.route ?? "*",
    attempt: site?.attempt ?? 0,
    deadlineMs,
    message: `deadline of ${deadlineMs} ms exceeded`
  }, true)

/**
 * The stream form of {@link withDeadline}: the deadline bounds the whole consumption of the stream
 * (not only its creation), and is visible to everything pulled under it.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withDeadlineStream = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  timeout: Duration.DurationInput,
  site?: DeadlineSite
): Stream.Stream<A, E | DeadlineExceeded, R> => {
  const ms = millisOf(timeout) ?? Number.POSITIVE_INFINITY
  if (ms === Number.POSITIVE_INFINITY) return stream
  return Stream.unwrapScoped(
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.flatMap(FiberRef.get(currentDeadline), (enclosing) => {
        const deadline = tighten(enclosing, now, ms)
        return Effect.as(
          Effect.locallyScoped(currentDeadline, Option.some(deadline)),
          watchStream(stream, () => ({ observe: () => {}, next: () => ({ at: deadline, fail: () => exceeded(site, ms) }) }))
        )
      }))
  )
}

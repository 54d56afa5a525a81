/**
 * The timing primitives the policies share: one timer per bounded piece of work, armed on Effect's
 * `Clock`, and the way expiry interrupts that work. Every policy that bounds time (attempt timeouts,
 * stream phase timeouts, deadlines, hedging) goes through here, so the cost is paid — and measured —
 * in one place.
 *
 * Why not `Effect.timeout`: it races the effect against a sleep with `raceFibersWith`, which forks two
 * fibers, schedules both on the scheduler and allocates a scope per call (≈20–35 µs per call on the
 * bench machine, ten times a bare call or more). `Stream.timeout` / `Stream.interruptWhen` are worse: they go
 * through `Channel.mergeWith`, which forks a fiber *per pull* and races two joins per element.
 *
 * What this does instead:
 *
 * - **Timers** (`arm`): under the live `Clock`, a plain `setTimeout`/`clearTimeout` (≈0.3 µs); under any
 *   other `Clock` (`TestClock`), a daemon fiber sleeping on that clock, so tests drive expiry exactly.
 * - **Effects** (`guard`, `within`): the work runs on a child fiber started *synchronously* on the caller's
 *   stack (`Runtime.runFork` runs a fiber immediately until its first async boundary). Work that
 *   completes synchronously never arms a timer and never touches the scheduler; work that suspends
 *   (an HTTP call) arms one timer and resumes the caller once when it ends. Preemption needs the work
 *   on a fiber of its own: interrupting the caller's fiber instead would also interrupt every child
 *   the caller forked, and an interrupted fiber cannot recover to retry.
 * - **Streams** (`watchStream`, `startPump`): one producer fiber per stream pulls the upstream into a small buffer; the
 *   consumer takes chunks synchronously when any are buffered. One timer per stream, re-armed only when
 *   it fires early (events just update numbers) or when a bound moves *earlier* (content started and
 *   the idle bound became the nearest).
 *
 * Expiry interrupts the work's fiber; `@effect/platform` then aborts the HTTP request and closes its
 * socket (its `AbortController` is only aborted on that path — never on the happy path). FiberRef
 * changes the work makes stay on its fiber (`Effect.timeout` would merge them back into the caller);
 * a provider call sets none that should outlive it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as FiberRefs from "effect/FiberRefs"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { fromPull, type Pull, toPull } from "./pull.js"

/** Milliseconds of a DurationInput, or `undefined` for none/infinite. */
export const millisOf = (input: Duration.DurationInput | undefined): number | undefined => {
  if (input === undefined) return undefined
  const ms = Duration.toMillis(Duration.decode(input))
  return Number.isFinite(ms) ? ms : undefined
}

/** Cancels an armed timer (idempotent). */
export type Disarm = () => void

const noop: Disarm = () => {}

/** The default (live) clock: the one `setTimeout` can stand in for. */
const liveClock: Clock.Clock = Effect.runSync(Effect.clock)

/** Node's timer limit; Effect's own clock treats longer sleeps as "never" too. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Who interrupted a timed-out fiber (shows up in its cause, never in a caller's error). */
const timerFiberId = FiberId.make(-1, 0)

/**
 * Runs `onFire` after `ms` on `clock` — never synchronously, even for `ms <= 0`. Under the live clock
 * this is a plain Node timer; under any other clock (TestClock) a daemon fiber sleeps on it, so
 * `TestClock.adjust` fires it at the exact instant.
 */
export const arm = (clock: Clock.Clock, ms: number, onFire: () => void): Disarm => {
  if (!(ms < Number.POSITIVE_INFINITY)) return noop
  if (clock === liveClock) {
    if (ms > MAX_TIMER_MS) return noop
    const handle = setTimeout(onFire, Math.max(0, ms))
    return () => clearTimeout(handle)
  }
  // A zero sleep completes synchronously: yield first, so `onFire` never runs inside `arm`.
  const wait = ms > 0 ? clock.sleep(Duration.millis(ms)) : Effect.yieldNow()
  const sleeper = Effect.runFork(Effect.zipRight(wait, Effect.sync(onFire)))
  return () => sleeper.unsafeInterruptAsFork(FiberId.none)
}

/** The clock of a fiber, read synchronously. */
export const clockOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Clock.Clock =>
  Context.get(fiber.currentDefaultServices, Clock.Clock)

/** A runtime that forks like the given fiber would (its context, flags and fiber refs). */
export const runtimeOf = <R>(fiber: Fiber.RuntimeFiber<unknown, unknown>, flags: Runtime.Runtime<R>["runtimeFlags"]) =>
  Runtime.make<R>({
    context: fiber.currentContext as Context.Context<R>,
    runtimeFlags: flags,
    fiberRefs: fiber.getFiberRefs()
  })

/**
 * A bound on some work: expire `ms` from now with the error `onTimeout` builds. `undefined` = no bound.
 * `childRefs`, when given, adjusts the fiber refs the work runs with.
 */
export interface Bound<E2> {
  readonly ms: number
  readonly onTimeout: () => E2
  readonly childRefs?: ChildRefs | undefined
}

/**
 * Fiber refs the work's fiber gets on top of its parent's (e.g. a deadline the caller tracks itself,
 * published to the work without a `FiberRef` write on the caller's fiber).
 */
export type ChildRefs = (refs: FiberRefs.FiberRefs, child: FiberId.Runtime) => FiberRefs.FiberRefs

/** `uninterruptibleMask`'s `restore`: runs an effect with the interruptibility the region was entered with. */
export type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/**
 * Runs `effect` under the bound that `bound` computes at start (from the calling fiber and the clock
 * time), failing with the bound's error when it passes. See the module comment for the cost model.
 *
 * `restore`: for a caller already in an uninterruptible region (one that must release something
 * whatever happens, like a rate-limit slot): the wait is made interruptible with it, instead of in a
 * region of its own — one region per attempt, not two.
 */
export const guard = <A, E, R, E2>(
  effect: Effect.Effect<A, E, R>,
  bound: (fiber: Fiber.RuntimeFiber<unknown, unknown>, now: number) => Bound<E2> | undefined,
  restore?: Restore
): Effect.Effect<A, E | E2, R> =>
  Effect.withFiberRuntime<A, E | E2, R>((parent, status) => {
    const clock = clockOf(parent)
    const limit = bound(parent, clock.unsafeCurrentTimeMillis())
    if (limit === undefined || !(limit.ms < Number.POSITIVE_INFINITY)) return restore === undefined ? effect : restore(effect)
    if (limit.ms <= 0) return Effect.fail(limit.onTimeout())
    const child = Runtime.runFork(
      runtimeOf<R>(parent, status.runtimeFlags),
      effect,
      limit.childRefs === undefined ? undefined : { updateRefs: limit.childRefs }
    )
    // Completed synchronously: no timer was needed, and the caller never suspends.
    const early = child.unsafePoll()
    if (early !== null) return early
    let expired = false
    const disarm = arm(clock, limit.ms, () => {
      expired = true
      child.unsafeInterruptAsFork(timerFiberId)
    })
    const wait = Effect.async<A, E | E2>((resume) => {
      child.addObserver((exit) => {
        disarm()
        resume(expired && Exit.isFailure(exit) ? Effect.fail(limit.onTimeout()) : exit)
      })
    })
    // The caller was interrupted: stop the work and wait for its finalizers (the socket is closed).
    // Not a canceller returned from `Effect.async`: Effect wraps those in `onInterrupt`, whose
    // bookkeeping runs on every *successful* wait too; a failure handler costs nothing until it runs.
    const waitOrStop = (interruptible: Restore) =>
      Effect.catchAllCause(interruptible(wait), (cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.zipRight(
            Effect.suspend(() => {
              disarm()
              return Fiber.interrupt(child)
            }),
            Effect.failCause(cause)
          )
          : Effect.failCause(cause))
    return restore === undefined ? Effect.uninterruptibleMask(waitOrStop) : waitOrStop(restore)
  })

/**
 * Runs `effect` with a time limit of `millis`, failing with `onTimeout()` when it passes (and
 * interrupting the effect). `Infinity` = no limit.
 */
export const within = <A, E, R, E2>(
  effect: Effect.Effect<A, E, R>,
  millis: number,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> =>
  millis === Number.POSITIVE_INFINITY ? effect : guard(effect, () => ({ ms: millis, onTimeout }))

/**
 * What a stream watcher decides: the nearest expiry (absolute clock ms) and the failure it raises.
 */
export interface Expiry<E2> {
  readonly at: number
  readonly fail: () => E2
}

/**
 * Watches a stream from its producer's side: `observe` sees every chunk as it arrives (with the clock
 * time), `next` says when the nearest bound expires. Built per stream run, at its start.
 */
export interface Watch<A, E2> {
  readonly observe: (chunk: Chunk.Chunk<A>, now: number) => void
  readonly next: (now: number) => Expiry<E2> | undefined
  /**
   * The producer is held back by a slow consumer (its buffer is full): the upstream is not idle, the
   * consumer is. Called when a timer fires during such a pause, before `next`.
   */
  readonly paused?: (now: number) => void
}

/** How many chunks a producer may run ahead of its consumer. */
const CAPACITY = 16

/**
 * A running producer: the upstream is pulled on its own fiber into a bounded buffer.
 *
 * @internal
 */
export interface Pump<A, E> {
  /** The consumer's pull: a buffered chunk at once, else waits for one; `None` = the upstream ended. */
  readonly pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>
  /** Ends the stream with `error` (after what is buffered) and stops the producer. No-op once ended. */
  readonly fail: (error: E) => void
  /** Stops the producer and waits for its finalizers. */
  readonly stop: Effect.Effect<void>
  /** Stops the producer without waiting (from a callback); the stream ends as interrupted if pulled. */
  readonly stopNow: () => void
  /** Chunks buffered and not yet pulled (for hedging, which decides before anyone pulls). */
  readonly buffered: ReadonlyArray<Chunk.Chunk<A>>
  /** Whether the upstream ended (successfully or not) or was failed. */
  readonly ended: () => boolean
  /** Whether the producer is waiting for the consumer (its buffer is full). */
  readonly paused: () => boolean
}

/**
 * Starts a producer for `stream` from `parent` (inherits its context and fiber refs). `onChunk` sees
 * each chunk before it is buffered; `onChange` is called after every chunk (`false`) and once when the
 * stream ends (`true`). Both may run before this function returns (the producer starts at once).
 */
export const startPump = <A, E, R>(
  parent: Fiber.RuntimeFiber<unknown, unknown>,
  flags: Runtime.Runtime<R>["runtimeFlags"],
  stream: Stream.Stream<A, E, R>,
  onChunk: (chunk: Chunk.Chunk<A>) => void,
  onChange: (ended: boolean) => void
): Pump<A, E> => {
  const buffer: Array<Chunk.Chunk<A>> = []
  let end: Exit.Exit<void, E> | undefined
  let consumer: ((effect: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>) => void) | undefined
  let producerWaiting: ((effect: Effect.Effect<void>) => void) | undefined

  const take = (): Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> | undefined => {
    const chunk = buffer.shift()
    if (chunk !== undefined) {
      const waiting = producerWaiting
      if (waiting !== undefined) {
        producerWaiting = undefined
        waiting(Effect.void)
      }
      return Effect.succeed(chunk)
    }
    if (end === undefined) return undefined
    return Exit.isSuccess(end) ? Effect.fail(Option.none()) : Effect.failCause(Cause.map(end.cause, Option.some))
  }
  // The consumer's wait has no canceller (Effect wraps cancellers in `onInterrupt`, paid on every pull):
  // it is woken with an effect that takes the chunk *when it runs*, so waking a consumer that was
  // interrupted meanwhile (its resume is then ignored) loses nothing.
  const wakeConsumer = () => {
    const waiting = consumer
    if (waiting === undefined || (buffer.length === 0 && end === undefined)) return
    consumer = undefined
    waiting(pull)
  }
  const finish = (exit: Exit.Exit<void, E>) => {
    if (end !== undefined) return
    end = exit
    wakeConsumer()
    onChange(true)
  }

  const handle = (chunk: Chunk.Chunk<A>): Effect.Effect<void> => {
    if (end !== undefined) return Effect.interrupt
    onChunk(chunk)
    buffer.push(chunk)
    wakeConsumer()
    onChange(false)
    return buffer.length < CAPACITY
      ? Effect.void
      : Effect.async<void>((resume) => {
        producerWaiting = resume
      })
  }
  // The upstream's own pull when it is one of ours (`internal/pull.ts`): no executor in between.
  const body = Effect.scoped(Effect.flatMap(toPull(stream), (upstream) => {
    const loop = (): Effect.Effect<void, E, R> =>
      Effect.matchEffect(upstream, {
        onFailure: (error) => (Option.isNone(error) ? Effect.void : Effect.fail(error.value)),
        onSuccess: (chunk) => Effect.flatMap(handle(chunk), loop)
      })
    return loop()
  }))
  const pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> = Effect.suspend(() =>
    take() ?? Effect.async<Chunk.Chunk<A>, Option.Option<E>>((resume) => {
      consumer = resume
    })
  )
  const producer = Runtime.runFork(runtimeOf<R>(parent, flags))(body)
  producer.addObserver((exit) => finish(Exit.isSuccess(exit) ? Exit.void : exit))

  return {
    pull,
    fail: (error) => {
      if (end !== undefined) return
      finish(Exit.fail(error))
      producer.unsafeInterruptAsFork(timerFiberId)
    },
    stop: Fiber.interrupt(producer),
    stopNow: () => producer.unsafeInterruptAsFork(timerFiberId),
    buffered: buffer,
    ended: () => end !== undefined,
    paused: () => producerWaiting !== undefined
  }
}

/**
 * Runs `stream` on a producer fiber, watched by `makeWatch(startedAt)`: one timer, armed for the
 * nearest expiry, re-armed when it fires early or when a bound moves earlier. On expiry the stream
 * fails with the expiry's error (after the chunks already received) and the producer is interrupted.
 */
export const watchStream = <A, E, R, E2>(
  stream: Stream.Stream<A, E, R>,
  makeWatch: (fiber: Fiber.RuntimeFiber<unknown, unknown>, startedAt: number) => Watch<A, E2> | undefined
): Stream.Stream<A, E | E2, R> => fromPull(watchPull(stream, makeWatch))

/**
 * {@link watchStream} as the pull it is made of (in a scope that stops the producer when it closes),
 * for a caller that adds its own per-chunk work in the same stage instead of stacking stream
 * operators (each one a stage of the channel executor, paid on every chunk).
 */
export const watchPull = <A, E, R, E2>(
  stream: Stream.Stream<A, E, R>,
  makeWatch: (fiber: Fiber.RuntimeFiber<unknown, unknown>, startedAt: number) => Watch<A, E2> | undefined
): Effect.Effect<Pull<A, E | E2, R>, never, R | Scope.Scope> =>
  Effect.withFiberRuntime<Effect.Effect<Chunk.Chunk<A>, Option.Option<E | E2>, R>, never, R | Scope.Scope>(
    (parent, status) => {
      const clock = clockOf(parent)
      const watch = makeWatch(parent, clock.unsafeCurrentTimeMillis())
      if (watch === undefined) return toPull(stream)
      let armedAt = Number.POSITIVE_INFINITY
      let disarm = noop
      const rearm = (now: number) => {
        const next = watch.next(now)
        if (next === undefined || next.at >= armedAt) return
        disarm()
        armedAt = next.at
        disarm = arm(clock, next.at - now, fire)
      }
      const fire = () => {
        armedAt = Number.POSITIVE_INFINITY
        const now = clock.unsafeCurrentTimeMillis()
        if (pump.paused()) watch.paused?.(now)
        const next = watch.next(now)
        if (next === undefined) return
        if (next.at > now) {
          armedAt = next.at
          disarm = arm(clock, next.at - now, fire)
          return
        }
        pump.fail(next.fail())
      }
      const pump: Pump<A, E | E2> = startPump<A, E | E2, R>(
        parent,
        status.runtimeFlags,
        stream,
        (chunk) => {
          const now = clock.unsafeCurrentTimeMillis()
          watch.observe(chunk, now)
          rearm(now)
        },
        (ended) => {
          if (ended) disarm()
        }
      )
      if (!pump.ended()) rearm(clock.unsafeCurrentTimeMillis())
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.suspend(() => {
            disarm()
            return pump.stop
          })
        ),
        pump.pull
      )
    }
  )

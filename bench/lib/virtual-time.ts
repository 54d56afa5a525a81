/**
 * Virtual time for benchmarks that simulate minutes of traffic: a discrete-event loop that runs an
 * Effect program on a controlled scheduler and a virtual `Clock`.
 *
 * Why not `TestClock`: every `TestClock.adjust` waits (on real timers) until all supervised fibers are
 * suspended, which costs milliseconds per wake-up and grows with the number of fibers — fine for a
 * unit test, minutes for thousands of concurrent calls. Here fibers run on `Scheduler.ControlledScheduler`,
 * so "every fiber is suspended" simply means "the scheduler has no task left"; the loop then jumps
 * the clock to the earliest pending sleep and wakes it. Everything the library times goes through
 * Effect's `Clock`, so the policies under test run unchanged, deterministically, at CPU speed.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Scheduler from "effect/Scheduler"

/** A binary min-heap ordered by `(at, seq)`: the event queue of the simulations. */
export class EventQueue<T extends { readonly at: number; readonly seq: number }> {
  private readonly items: Array<T> = []
  get size(): number {
    return this.items.length
  }
  private less(a: T, b: T) {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }
  push(item: T): void {
    const items = this.items
    items.push(item)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(items[i]!, items[parent]!)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }
  pop(): T | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0 && last !== undefined) {
      items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let min = i
        if (l < items.length && this.less(items[l]!, items[min]!)) min = l
        if (r < items.length && this.less(items[r]!, items[min]!)) min = r
        if (min === i) break
        ;[items[i], items[min]] = [items[min]!, items[i]!]
        i = min
      }
    }
    return top
  }
}

interface Sleeper {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
  cancelled: boolean
}

/** A `Clock` whose time moves only when the loop says so. Starts at 0. */
class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  now = 0
  private seq = 0
  readonly sleepers = new EventQueue<Sleeper>()
  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.now)
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now * 1e6))
  }
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const ms = Math.max(0, Duration.toMillis(duration))
      // An infinite sleep never wakes: leave it out of the queue.
      if (!Number.isFinite(ms)) return Effect.void
      const sleeper: Sleeper = { at: this.now + ms, seq: this.seq++, wake: () => resume(Effect.void), cancelled: false }
      this.sleepers.push(sleeper)
      return Effect.sync(() => {
        sleeper.cancelled = true
      })
    })
  }
}

/**
 * Runs `effect` to completion in virtual time and returns its exit and the virtual time it took.
 * Throws if the program deadlocks (no runnable fiber, no pending sleep, not done).
 */
export const runVirtual = <A, E>(effect: Effect.Effect<A, E>): { readonly exit: Exit.Exit<A, E>; readonly elapsedMs: number } => {
  const scheduler = new Scheduler.ControlledScheduler()
  const clock = new VirtualClock()
  const fiber = Effect.runFork(Effect.withClock(effect, clock), { scheduler })
  for (;;) {
    while (scheduler.tasks.buckets.length > 0) scheduler.step()
    const exit = fiber.unsafePoll()
    if (exit !== null) return { exit, elapsedMs: clock.now }
    let next = clock.sleepers.pop()
    while (next !== undefined && next.cancelled) next = clock.sleepers.pop()
    if (next === undefined) throw new Error("runVirtual: deadlock — no runnable fiber and no pending sleep")
    clock.now = Math.max(clock.now, next.at)
    next.wake()
  }
}

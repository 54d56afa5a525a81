/**
 * The timing primitives' interruption contracts (internal/timer.ts): the caller of a guarded effect
 * being interrupted stops the work and waits for its finalizers; a stream consumer interrupted while
 * it waits for a chunk loses nothing. Both waits carry no canceller (a cost paid on every call
 * otherwise), so these are the tests that keep them correct.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { startPump, within } from "../../src/internal/timer.js"

describe("internal/timer", () => {
  it.effect("guard: interrupting the caller interrupts the work and waits for its finalizers", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const log: Array<string> = []
      const work = Effect.zipRight(Deferred.succeed(started, undefined), Effect.never).pipe(
        // A finalizer that takes (virtual) time: the caller's interruption must wait for it.
        Effect.onInterrupt(() => Effect.zipRight(Effect.sleep("1 second"), Effect.sync(() => log.push("work finalized"))))
      )
      const caller = yield* Effect.fork(within(work, 60_000, () => "timeout" as const))
      yield* Deferred.await(started)
      const interrupting = yield* Effect.fork(Fiber.interrupt(caller))
      yield* TestClock.adjust("500 millis")
      expect(log).toEqual([])
      expect(yield* Fiber.poll(interrupting)).toEqual(Option.none())
      yield* TestClock.adjust("500 millis")
      const exit = yield* Fiber.join(interrupting)
      expect(log).toEqual(["work finalized"])
      expect(Exit.isInterrupted(exit)).toBe(true)
    }))

  it.effect("guard: work that suspends resumes its caller with its result", () =>
    Effect.gen(function*() {
      const caller = yield* Effect.fork(within(Effect.as(Effect.sleep("10 millis"), "done"), 60, () => "timeout" as const))
      yield* TestClock.adjust("10 millis")
      expect(yield* Fiber.join(caller)).toBe("done")
    }))

  it.effect("pump: a consumer interrupted while waiting loses no chunk", () =>
    Effect.withFiberRuntime<void, Option.Option<never>>((parent, status) =>
      Effect.gen(function*() {
        const source = yield* Queue.unbounded<number>()
        const pump = startPump(parent, status.runtimeFlags, Stream.fromQueue(source), () => {}, () => {})
        // A consumer starts waiting (nothing buffered yet) and is interrupted.
        const waiting = yield* Effect.fork(pump.pull)
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(waiting)
        // The chunk that arrives next must reach the next pull, not the interrupted one.
        yield* Queue.offer(source, 1)
        yield* Effect.yieldNow()
        const next = yield* pump.pull
        expect(Chunk.toReadonlyArray(next)).toEqual([1])
        yield* pump.stop
      })
    ))
})

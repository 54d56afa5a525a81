/**
 * The retry budget shared over a real Redis (127.0.0.1:6379; skipped with the reason when it is down,
 * failing when CI=true): the same arithmetic as the local `RetryBudget` (property test), one budget
 * for several registries ("processes"), the hedge lease, and what happens while Redis is unreachable.
 * The 4-process amplification test is fleet.processes.test.ts.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as RetryBudget from "../../src/RetryBudget.js"
import * as RedisRetryBudget from "../../src/redis/RedisRetryBudget.js"
import { cleanup, eventually, redisGate, redisUrl, uniquePrefix, unreachableUrl } from "./helpers.js"

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

const freshPrefix = () => {
  const prefix = uniquePrefix("budget")
  prefixes.push(prefix)
  return prefix
}

/** One "process": a shared budget registry on its own connection. */
const registry = (options: RedisRetryBudget.RedisRetryBudgetLayerOptions) =>
  Effect.map(
    Layer.build(RedisRetryBudget.layer({ url: redisUrl, connectTimeout: "300 millis", ...options })),
    (context) => Context.get(context, RetryBudget.RetryBudgets)
  )

type Op = { readonly _tag: "deposit"; readonly n: number } | { readonly _tag: "withdraw" }

const redisUp = await redisGate((name, fn) => describe("RedisRetryBudget", () => it(name, fn)))

describe.runIf(redisUp)("RedisRetryBudget", () => {
  it.scopedLive("grants exactly what the local budget grants, on any sequence of deposits and withdrawals (property)", () =>
    Effect.gen(function*() {
      const ops = fc.array(
        fc.oneof(
          fc.record({ _tag: fc.constant("deposit" as const), n: fc.integer({ min: 1, max: 12 }) }),
          fc.constant({ _tag: "withdraw" as const })
        ),
        { minLength: 1, maxLength: 40 }
      )
      const options = fc.record({
        ratio: fc.constantFrom(0, 0.1, 0.2, 0.5, 1),
        minPerSecond: fc.constantFrom(0, 0.3, 1, 10),
        window: fc.constantFrom("10 seconds" as const, "30 seconds" as const, "2500 millis" as const)
      })
      const samples = fc.sample(fc.tuple(ops, options), { numRuns: 40, seed: 20_261_206 })
      for (const [sequence, budgetOptions] of samples) {
        const shared = yield* Effect.flatMap(registry({ prefix: freshPrefix() }), (r) => r.get("route", budgetOptions))
        // The local budget on the real clock, as Redis' is: each sequence runs well inside every window above.
        const local = RetryBudget.make(budgetOptions)
        const grants: Array<[boolean, boolean]> = []
        for (const op of sequence as ReadonlyArray<Op>) {
          if (op._tag === "deposit") {
            for (let i = 0; i < op.n; i++) {
              shared.unsafeDeposit(Date.now())
              local.unsafeDeposit(Date.now())
            }
          } else grants.push([yield* shared.withdraw, local.unsafeWithdraw(Date.now())])
        }
        expect(grants.map(([s]) => s), JSON.stringify({ sequence, budgetOptions })).toEqual(grants.map(([, l]) => l))
        expect(yield* shared.available).toBe(yield* local.available)
      }
    }), 60_000)

  it.scopedLive("one budget for every process: deposits from one fund retries in another; the fleet spends at most the budget", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const options = { ratio: 0.2, minPerSecond: 0 }
      const a = yield* Effect.flatMap(registry({ prefix }), (r) => r.get("route", options))
      const b = yield* Effect.flatMap(registry({ prefix }), (r) => r.get("route", options))
      for (let i = 0; i < 20; i++) a.unsafeDeposit(0)
      for (let i = 0; i < 10; i++) b.unsafeDeposit(0)
      // 30 calls × 0.2 = 6 retries for the fleet, whoever asks (B's deposits go in with its withdrawal;
      // A's are flushed by the background sync — wait until the fleet sees them).
      yield* eventually(Effect.map(b.available, (n) => n === 6))
      const granted = [
        ...(yield* Effect.forEach(Array.from({ length: 5 }), () => b.withdraw)),
        ...(yield* Effect.forEach(Array.from({ length: 5 }), () => a.withdraw))
      ]
      expect(granted.filter(Boolean).length).toBe(6)
      expect(yield* a.available).toBe(0)
    }))

  it.scopedLive("hedges withdraw synchronously from a small lease taken from the fleet's budget after first use", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const options = { ratio: 0, minPerSecond: 0.3 } // 3 retries per 10 s window for the fleet
      const a = yield* Effect.flatMap(registry({ prefix, syncInterval: "20 millis", hedgeLease: 2 }), (r) => r.get("route", options))
      const b = yield* Effect.flatMap(registry({ prefix }), (r) => r.get("route", options))
      expect(a.unsafeWithdraw(Date.now())).toBe(false) // no lease yet: asks for one
      yield* eventually(Effect.sync(() => a.unsafeWithdraw(Date.now()))) // the lease arrived: one spent
      // From here on, A spends from leases (refilled in the background) and B asks Redis: together they
      // get the fleet's 3 retries, once.
      let spent = 1
      for (let i = 0; i < 3; i++) if (yield* b.withdraw) spent++
      for (let i = 0; i < 30; i++) {
        if (a.unsafeWithdraw(Date.now())) spent++
        yield* Effect.sleep("10 millis")
      }
      expect(spent).toBe(3)
    }))

  it.scopedLive("Redis unreachable: fail-open spends from a local budget fed by the same deposits; fail-closed makes no retries", () =>
    Effect.gen(function*() {
      const options = { ratio: 0.5, minPerSecond: 0 }
      const open = yield* Effect.flatMap(registry({ url: unreachableUrl, commandTimeout: "100 millis" }), (r) => r.get("route", options))
      const closed = yield* Effect.flatMap(
        registry({ url: unreachableUrl, onRedisError: "fail-closed", commandTimeout: "100 millis" }),
        (r) => r.get("route", options)
      )
      for (let i = 0; i < 4; i++) {
        open.unsafeDeposit(Date.now())
        closed.unsafeDeposit(Date.now())
      }
      const fromOpen = yield* Effect.forEach(Array.from({ length: 3 }), () => open.withdraw)
      expect(fromOpen).toEqual([true, true, false])
      expect(yield* closed.withdraw).toBe(false)
      expect(yield* closed.available).toBe(0)
    }))
})

/**
 * One Redis-backed state's view of Redis' health, and its script runs: each run is bounded by
 * `commandTimeout`; after a failure the state does not ask Redis again for `retryRedisAfter` (every
 * caller goes straight to the state's fallback meanwhile), and the first failure and the recovery are
 * logged once each — the same for the rate limiter, the fleet breaker and the shared retry budget.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type { Redis } from "ioredis"
import * as Connection from "./connection.js"
import * as Scripts from "./scripts.js"

/** Whether Redis answered lately, shared by every key of one state (they share one connection). @internal */
export interface Health {
  downUntil: number
  down: boolean
  lastError: string
}

/** @internal */
export interface Guard {
  readonly client: Redis
  readonly commandTimeoutMs: number
  readonly retryRedisAfterMs: number
  readonly health: Health
  /** What the state is, for log lines: `the shared rate-limit state`. */
  readonly what: string
  /** What happens while Redis is down, for the log line: `calls go through a local limiter`. */
  readonly whileDown: string
  /** Counts failed or timed-out commands. */
  readonly errors: Metric.Metric.Counter<number>
}

/** A fresh health record: Redis presumed up. @internal */
export const healthy = (): Health => ({ downUntil: Number.NEGATIVE_INFINITY, down: false, lastError: "" })

const failed = (guard: Guard, error: Error, now: number): Effect.Effect<void> => {
  const { health } = guard
  health.downUntil = now + guard.retryRedisAfterMs
  health.lastError = error.message
  const counted = Metric.increment(guard.errors)
  if (health.down) return counted
  health.down = true
  return Effect.zipRight(
    counted,
    Effect.logWarning(
      `effect-llm-resilience/redis: ${guard.what} at ${Connection.describe(guard.client)} is unavailable (${error.message}); ${guard.whileDown} until it answers again`
    )
  )
}

const answered = (guard: Guard): Effect.Effect<void> => {
  if (!guard.health.down) return Effect.void
  guard.health.down = false
  return Effect.logInfo(`effect-llm-resilience/redis: ${guard.what} at ${Connection.describe(guard.client)} answers again`)
}

/** A script run with the health bookkeeping; `None` when Redis failed or is held to be down. @internal */
export const runScript = (
  guard: Guard,
  script: Scripts.Script,
  key: string,
  args: ReadonlyArray<string | number>
): Effect.Effect<Option.Option<unknown>> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    guard.health.downUntil > now
      ? Effect.succeed(Option.none())
      : Effect.matchEffect(Connection.command(guard.commandTimeoutMs, () => Scripts.run(guard.client, script, key, args)), {
        onFailure: (error) => Effect.as(failed(guard, error, now), Option.none()),
        onSuccess: (reply) => Effect.as(answered(guard), Option.some(reply))
      }))

/** A reply's integers (Lua numbers come back as integers; strings where a script says so), or `undefined`. @internal */
export const integers = (reply: unknown, length: number): ReadonlyArray<number> | undefined => {
  if (!Array.isArray(reply) || reply.length < length) return undefined
  const out: Array<number> = []
  for (let i = 0; i < length; i++) {
    const value: unknown = reply[i]
    const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : Number.NaN
    if (!Number.isFinite(n)) return undefined
    out.push(n)
  }
  return out
}

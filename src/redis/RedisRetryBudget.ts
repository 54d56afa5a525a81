/**
 * Retry budgets shared by a fleet of worker processes, over Redis: one budget per route for the whole
 * fleet, so that fifty workers with a 20% budget add 20% to a failing provider's load — not fifty
 * reserves and fifty ratios' worth of rounding.
 *
 * The arithmetic is `RetryBudget`'s (`ratio`, `minPerSecond`, `window`; every worker must configure the
 * same), kept in one Redis hash per route (`<prefix>budget:{<key>}`) of per-second deposit and
 * withdrawal counts, on Redis' clock:
 *
 * - a **deposit** (one per logical call) is counted locally and sent in batches — with the next
 *   withdrawal, or by a background flush every `syncInterval` — so the call path never waits on Redis
 *   (a batch whose command failed is not sent again: it may have been applied, and counting it twice
 *   would raise the budget);
 * - a **withdrawal** (one per retry) is one atomic script run: the pending deposits go in, and the retry
 *   is granted only if the fleet's balance allows. A retry already waits out a backoff, so the round
 *   trip costs it nothing that matters;
 * - the synchronous withdrawal hedging uses (`unsafeWithdraw`) spends from a small lease of retries
 *   (`hedgeLease`, default 2) taken from the fleet's budget in the background after first use — so at
 *   most that many per process are spent ahead of the fleet's accounting.
 *
 * **When Redis is unreachable** (`onRedisError`): `fail-open` (the default) — each process spends from
 * its own local budget with the same options, fed with the same deposits (the budget every process
 * had before it shared one), until Redis answers again; `fail-closed` — no retries at all until then
 * (failures surface at once as `RetryBudgetExhausted`; a fallback route can still take the call).
 *
 * See docs/policies/shared-state.md.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import * as Metrics from "../internal/metrics.js"
import * as RetryBudgetModule from "../RetryBudget.js"
import { type RetryBudget, RetryBudgets } from "../RetryBudget.js"
import * as Connection from "./internal/connection.js"
import * as FleetScripts from "./internal/fleetScripts.js"
import * as Guard from "./internal/guard.js"
import { make as makeClient, RedisClient, type RedisConnectionOptions } from "./RedisClient.js"
import type { OnRedisError } from "./RedisRateLimiter.js"

/**
 * Options of the shared registry (each budget's own options are `RetryBudgetOptions`, as with the local
 * registry).
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisRetryBudgetOptions {
  /** Prefix of every Redis key (`<prefix>budget:{<key>}`). Default `llm-resilience:`. */
  readonly prefix?: string | undefined
  /** What happens while Redis is unreachable. Default `fail-open` (a local budget per process). */
  readonly onRedisError?: OnRedisError | undefined
  /** The longest a Redis command may take before it counts as a Redis failure. Default 500 ms. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** After a Redis failure, go straight to `onRedisError` for this long before asking Redis again. Default 1 second. */
  readonly retryRedisAfter?: Duration.DurationInput | undefined
  /** How often pending deposits are flushed (and hedge leases topped up). Default 200 ms. */
  readonly syncInterval?: Duration.DurationInput | undefined
  /** Retries a process holds for synchronous (hedge) withdrawals once it has made one. Default 2. */
  readonly hedgeLease?: number | undefined
}

/**
 * The options plus where Redis is, for the layer that opens its own connection.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisRetryBudgetLayerOptions extends RedisRetryBudgetOptions, RedisConnectionOptions {}

/**
 * The defaults.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults = {
  prefix: "llm-resilience:",
  onRedisError: "fail-open",
  commandTimeoutMs: 500,
  retryRedisAfterMs: 1_000,
  syncIntervalMs: 200,
  hedgeLease: 2
} as const

/**
 * The Redis key of a route's budget (hash-tagged: one slot in a Redis Cluster).
 *
 * @since 0.2.0
 * @category utils
 */
export const stateKey = (prefix: string, key: string): string => `${prefix}budget:{${key}}`

const errorsMetric = Metrics.counter(
  "llm_retry_budget_shared_state_errors_total",
  "Redis commands of the shared retry budget that failed or timed out",
  {}
)

/** One route's shared budget in this process. */
class SharedBudget {
  pending = 0 // deposits not yet sent to Redis
  lease = 0 // retries taken from the fleet for synchronous (hedge) withdrawals
  leaseWanted = false
  api!: RetryBudget

  constructor(
    readonly hashKey: string,
    readonly args: readonly [ratio: number, reserve: number, seconds: number],
    readonly local: RetryBudget
  ) {}
}

/**
 * The shared registry over `client` (which the caller owns). Budgets are made on first `get` of a key,
 * with the options of that first `get`; pending deposits are flushed in the current scope's lifetime.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  client: Redis,
  options: RedisRetryBudgetOptions = {}
): Effect.Effect<typeof RetryBudgets.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? defaults.prefix
    const failOpen = (options.onRedisError ?? defaults.onRedisError) === "fail-open"
    const leaseSize = Math.max(0, Math.floor(options.hedgeLease ?? defaults.hedgeLease))
    const guard: Guard.Guard = {
      client,
      commandTimeoutMs: Connection.msOf(options.commandTimeout, defaults.commandTimeoutMs),
      retryRedisAfterMs: Connection.msOf(options.retryRedisAfter, defaults.retryRedisAfterMs),
      health: Guard.healthy(),
      what: "the shared retry budget",
      whileDown: failOpen ? "retries spend from a local budget per process" : "no retries are made (fail-closed)",
      errors: errorsMetric
    }
    const budgets = new Map<string, SharedBudget>()

    /**
     * Sends the pending deposits and asks for `want` retries: the retries granted and the balance left,
     * `undefined` when Redis failed (the deposits stay pending).
     */
    const sync = (b: SharedBudget, want: number): Effect.Effect<readonly [granted: number, balance: number] | undefined> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        // While Redis is held to be down nothing is sent: the deposits wait for the next sync.
        if (guard.health.downUntil > now) return Effect.succeed(undefined)
        const deposits = b.pending
        b.pending = 0
        // A command that failed may still have run (a timeout after Redis applied it): its deposits are
        // not sent again — losing a batch only lowers the budget, counting one twice would raise it.
        return Effect.map(Guard.runScript(guard, FleetScripts.budget, b.hashKey, [deposits, want, ...b.args]), (reply) => {
          const parsed = Option.isSome(reply) ? Guard.integers(reply.value, 2) : undefined
          return parsed === undefined ? undefined : [parsed[0]!, parsed[1]!] as const
        })
      })

    const flushAll = Effect.suspend(() => Effect.forEach(
      Array.from(budgets.values()),
      (b) => {
        const want = b.leaseWanted ? Math.max(0, leaseSize - b.lease) : 0
        if (b.pending === 0 && want === 0) return Effect.void
        return Effect.map(sync(b, want), (reply) => void (b.lease += reply?.[0] ?? 0))
      },
      { discard: true }
    ))
    const every = Math.max(10, Connection.msOf(options.syncInterval, defaults.syncIntervalMs))
    yield* Effect.forkScoped(Effect.repeat(flushAll, Schedule.spaced(Duration.millis(every))))
    // What is still pending when the scope closes is sent once more (bounded by the command timeout).
    yield* Effect.addFinalizer(() => flushAll)

    const budgetOf = (b: SharedBudget): RetryBudget => {
      const unsafeDeposit = (now: number): void => {
        b.pending++
        b.local.unsafeDeposit(now) // the fail-open fallback sees the same traffic
      }
      return {
        deposit: Effect.map(Clock.currentTimeMillis, unsafeDeposit),
        unsafeDeposit,
        withdraw: Effect.flatMap(sync(b, 1), (reply) =>
          reply !== undefined ? Effect.succeed(reply[0] >= 1) : failOpen ? b.local.withdraw : Effect.succeed(false)),
        unsafeWithdraw: (now) => {
          b.leaseWanted = true
          if (b.lease >= 1) {
            b.lease--
            return true
          }
          return guard.health.down && failOpen ? b.local.unsafeWithdraw(now) : false
        },
        available: Effect.flatMap(sync(b, 0), (reply) =>
          reply !== undefined
            ? Effect.succeed(Math.max(0, Math.floor(reply[1])) + b.lease)
            : failOpen
            ? b.local.available
            : Effect.succeed(0))
      }
    }

    return RetryBudgets.of({
      get: (key, budgetOptions) =>
        Effect.sync(() => {
          const existing = budgets.get(key)
          if (existing !== undefined) return existing.api
          const { ratio, reserve, seconds } = RetryBudgetModule.resolve(budgetOptions)
          const b = new SharedBudget(stateKey(prefix, key), [ratio, reserve, seconds], RetryBudgetModule.make(budgetOptions))
          b.api = budgetOf(b)
          budgets.set(key, b)
          return b.api
        })
    })
  })

/**
 * The shared registry over the `RedisClient` in context (one connection shared with the other
 * Redis-backed state).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerClient = (options: RedisRetryBudgetOptions = {}): Layer.Layer<RetryBudgets, never, RedisClient> =>
  Layer.scoped(RetryBudgets, Effect.flatMap(RedisClient, (client) => make(client, options)))

/**
 * The shared registry with its own connection (opened when the layer is built, closed with its scope).
 * Building it never fails: while Redis is unreachable budgets work as `onRedisError` says.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: RedisRetryBudgetLayerOptions = {}): Layer.Layer<RetryBudgets> =>
  Layer.scoped(RetryBudgets, Effect.flatMap(makeClient(options), (client) => make(client, options)))

/**
 * {@link layer} with its options read from `Config`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<RedisRetryBudgetLayerOptions>
): Layer.Layer<RetryBudgets, ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

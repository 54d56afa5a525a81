/**
 * Opening, connecting and closing ioredis clients, and running Redis commands as effects with a bound.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"

/** @internal */
export const DEFAULT_URL = "redis://127.0.0.1:6379"

/** @internal */
export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000

/** Milliseconds of a duration option (`fallback` when absent or infinite). @internal */
export const msOf = (input: Duration.DurationInput | undefined, fallback: number): number => {
  if (input === undefined) return fallback
  const ms = Duration.toMillis(Duration.decode(input))
  return Number.isFinite(ms) ? Math.max(0, ms) : fallback
}

/** `host:port` of a client, for log lines (never the URL: it may hold a password). @internal */
export const describe = (client: Redis): string => `${client.options.host ?? "?"}:${client.options.port ?? "?"}`

/** A command's failure as an `Error` with a readable message. */
const asError = (error: unknown): Error => {
  if (!(error instanceof Error)) return new Error(String(error))
  // ioredis' words for "a command was sent while disconnected" (its offline queue is off).
  if (error.message.includes("enableOfflineQueue")) return new Error("not connected")
  return error
}

/** Swallows ioredis' `error` events (failures surface through the commands that fail). */
const ignoreErrorEvents = (client: Redis): void => {
  client.on("error", () => {})
}

/**
 * Connects a lazily-connecting client, waiting at most `timeoutMs`; a failure is logged, not raised
 * (the client keeps reconnecting in the background).
 *
 * @internal
 */
export const connect = (client: Redis, timeoutMs: number, role: string): Effect.Effect<void> =>
  command(timeoutMs, () => client.connect()).pipe(
    Effect.catchAll((error) =>
      Effect.logWarning(
        `effect-llm-resilience/redis: the ${role} connection to Redis at ${describe(client)} is not up (${error.message}); going on without it and reconnecting in the background`
      )
    )
  )

/**
 * Closes a client: `QUIT` when connected (bounded to one second), otherwise a plain disconnect (which
 * also stops the reconnect loop).
 *
 * @internal
 */
export const close = (client: Redis): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (client.status !== "ready") return Effect.sync(() => client.disconnect())
    return Effect.tryPromise(() => client.quit()).pipe(
      Effect.timeout(Duration.seconds(1)),
      Effect.asVoid,
      Effect.catchAll(() => Effect.sync(() => client.disconnect()))
    )
  })

/**
 * A command connection in the current scope (`QUIT` on release). Never fails: when Redis is
 * unreachable the client is returned anyway and reconnects in the background.
 *
 * @internal
 */
export const open = (
  url: string | Redacted.Redacted<string> | undefined,
  connectTimeoutMs: number,
  extra: RedisOptions | undefined
): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const plain = url === undefined ? DEFAULT_URL : Redacted.isRedacted(url) ? Redacted.value(url) : url
      const client = new Redis(plain, {
        lazyConnect: true,
        // A command while disconnected fails at once (→ fail-open / fail-closed), never waits in a queue.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        connectTimeout: connectTimeoutMs,
        // Keep reconnecting in the background, at most every 2 s.
        retryStrategy: (times) => Math.min(times * 100, 2_000),
        ...extra
      })
      ignoreErrorEvents(client)
      return Effect.as(connect(client, connectTimeoutMs, "command"), client)
    }),
    close
  )

/**
 * A dedicated connection for `SUBSCRIBE` (a subscribed connection cannot send other commands), made
 * from `client`'s options, in the current scope. Unlike command connections it queues while
 * disconnected: a subscription asked for while Redis is down is made when it comes back, and ioredis
 * re-subscribes after every reconnect.
 *
 * @internal
 */
export const subscriber = (client: Redis, connectTimeoutMs: number): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const duplicate = client.duplicate({
        lazyConnect: true,
        enableOfflineQueue: true,
        maxRetriesPerRequest: null,
        autoResubscribe: true,
        connectTimeout: connectTimeoutMs,
        retryStrategy: (times) => Math.min(times * 100, 2_000)
      })
      ignoreErrorEvents(duplicate)
      return Effect.as(connect(duplicate, connectTimeoutMs, "subscriber"), duplicate)
    }),
    close
  )

/**
 * A Redis command as an effect, failing with an `Error` when it fails or takes longer than `timeoutMs`
 * (the command itself may still run on the server).
 *
 * @internal
 */
export const command = <A>(timeoutMs: number, run: () => Promise<A>): Effect.Effect<A, Error> =>
  Effect.tryPromise({ try: run, catch: asError }).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () => new Error(`no answer from Redis within ${timeoutMs} ms`)
    })
  )

/**
 * `effect-llm-resilience/redis/ResponseCache` — the response cache's store in Redis, shared by every
 * worker: an `@effect/experimental` `BackingPersistence` on this package's Redis connection
 * (`RedisClient`), under `Persistence.layerResult` — so entries are Schema-encoded and decoded like in
 * every other store. One string per entry, `<prefix>cache:<namespace>:<hash>`, with Redis' own expiry
 * (`SET … PX`); Redis' clock decides when an entry is gone.
 *
 * Why not only `@effect/experimental/Persistence/Redis` (which works too: `ResponseCache.layerBacking`
 * over its `layer`, see docs/caching.md): that layer opens its own connection from `RedisOptions` with
 * ioredis' defaults, whose offline queue makes a cache read wait while Redis is down — a model call
 * held up by its cache. This connection is the one the rate limiter and the fleet breaker use:
 * commands fail at once while Redis is unreachable (a miss, a skipped write), each is bounded by
 * `commandTimeout`, and the layer waits a bounded time for the first connection.
 *
 * Needs the optional peers `ioredis` and `@effect/experimental`.
 *
 * @example
 * ```ts
 * import * as RedisResponseCache from "effect-llm-resilience/redis/ResponseCache"
 * import * as ResponseCache from "effect-llm-resilience/ResponseCache"
 *
 * const Llm = Layer.unwrapScoped(
 *   Effect.map(ResponseCache.make({ ttl: "1 day", namespace: "support" }), (cache) => LlmClient.layerWithState({ routes, cache }))
 * ).pipe(Layer.provide(RedisResponseCache.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.2.0
 */
import * as Persistence from "@effect/experimental/Persistence"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Redis } from "ioredis"
import { msOf } from "./internal/connection.js"
import { make as makeClient, RedisClient, type RedisConnectionOptions } from "./RedisClient.js"

/**
 * Options of the store.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisResponseCacheOptions {
  /** Prefix of every key (`<prefix>cache:<namespace>:<hash>`). Default `llm-resilience:`. */
  readonly prefix?: string | undefined
  /** The longest a command may take before the read is a miss (or the write skipped). Default 500 ms. */
  readonly commandTimeout?: Duration.DurationInput | undefined
}

/**
 * Store options plus where Redis is ({@link layer} opens its own connection).
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisResponseCacheLayerOptions extends RedisResponseCacheOptions, RedisConnectionOptions {}

/**
 * The defaults.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults = { prefix: "llm-resilience:", commandTimeoutMs: 500 } as const

/**
 * A `BackingPersistence` over an ioredis client: `storeId` `cache:<namespace>` becomes the key prefix
 * `<prefix>cache:<namespace>:`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const backing = (client: Redis, options: RedisResponseCacheOptions = {}): Persistence.BackingPersistence => {
  const prefix = options.prefix ?? defaults.prefix
  const timeoutMs = msOf(options.commandTimeout, defaults.commandTimeoutMs)
  const run = <A>(method: string, command: () => Promise<A>): Effect.Effect<A, Persistence.PersistenceError> =>
    Effect.tryPromise({ try: command, catch: (cause) => Persistence.PersistenceBackingError.make(method, cause) }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(timeoutMs),
        onTimeout: () => Persistence.PersistenceBackingError.make(method, new Error(`no answer from Redis within ${timeoutMs} ms`))
      })
    )
  const parse = (method: string, text: string | null): Effect.Effect<Option.Option<unknown>, Persistence.PersistenceError> => {
    if (text === null) return Effect.succeed(Option.none())
    return Effect.try({ try: () => Option.some(JSON.parse(text) as unknown), catch: (cause) => Persistence.PersistenceBackingError.make(method, cause) })
  }
  const encode = (method: string, value: unknown): Effect.Effect<string, Persistence.PersistenceError> =>
    Effect.try({ try: () => JSON.stringify(value), catch: (cause) => Persistence.PersistenceBackingError.make(method, cause) })
  /** `SET key value [PX ms]`: Redis wants whole milliseconds ≥ 1. */
  const set = (key: string, text: string, ttl: Option.Option<Duration.Duration>) => {
    if (Option.isNone(ttl) || !Duration.isFinite(ttl.value)) return client.set(key, text)
    return client.set(key, text, "PX", Math.max(1, Math.ceil(Duration.toMillis(ttl.value))))
  }
  return Persistence.BackingPersistence.of({
    [Persistence.BackingPersistenceTypeId]: Persistence.BackingPersistenceTypeId,
    make: (storeId) =>
      Effect.sync(() => {
        const keyOf = (key: string) => `${prefix}${storeId}:${key}`
        return {
          get: (key) => Effect.flatMap(run("get", () => client.get(keyOf(key))), (text) => parse("get", text)),
          getMany: (keys) =>
            keys.length === 0
              ? Effect.succeed([])
              : Effect.flatMap(run("getMany", () => client.mget(keys.map(keyOf))), (texts) => Effect.forEach(texts, (text) => parse("getMany", text))),
          set: (key, value, ttl) => Effect.flatMap(encode("set", value), (text) => Effect.asVoid(run("set", () => set(keyOf(key), text, ttl)))),
          setMany: (writes) =>
            Effect.forEach(writes, ([key, value, ttl]) =>
              Effect.flatMap(encode("setMany", value), (text) => run("setMany", () => set(keyOf(key), text, ttl))), { discard: true }),
          remove: (key) => Effect.asVoid(run("remove", () => client.del(keyOf(key)))),
          clear: run("clear", async () => {
            let cursor = "0"
            do {
              const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}${storeId}:*`, "COUNT", 200)
              if (keys.length > 0) await client.del(...keys)
              cursor = next
            } while (cursor !== "0")
          })
        }
      })
  })
}

/**
 * The response cache's store on the `RedisClient` in context (the connection `SharedState` and the
 * Redis-backed policies use).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerClient = (options: RedisResponseCacheOptions = {}): Layer.Layer<Persistence.ResultPersistence, never, RedisClient> =>
  Persistence.layerResult.pipe(Layer.provide(Layer.effect(Persistence.BackingPersistence, Effect.map(RedisClient, (client) => backing(client, options)))))

/**
 * The response cache's store on a connection of its own (closed with the layer). Building it waits at
 * most `connectTimeout` for Redis, then goes on: while Redis is unreachable every read is a miss.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: RedisResponseCacheLayerOptions = {}): Layer.Layer<Persistence.ResultPersistence> =>
  Persistence.layerResult.pipe(Layer.provide(Layer.scoped(Persistence.BackingPersistence, Effect.map(makeClient(options), (client) => backing(client, options)))))

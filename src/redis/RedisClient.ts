/**
 * The ioredis connection the Redis-backed state runs on: acquired in a `Scope` (closed with `QUIT` when
 * the scope closes), or an existing client the application owns.
 *
 * The connections this module opens are set up so that Redis trouble never blocks a model call: a
 * command sent while disconnected fails at once instead of queueing (`enableOfflineQueue: false`), and
 * the client keeps reconnecting in the background. Building a layer waits at most `connectTimeout` for
 * the first connection and then goes on even if Redis is down — what happens to calls then is the
 * `onRedisError` choice of `RedisRateLimiter` (see docs/policies/shared-state.md).
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Redis, RedisOptions } from "ioredis"
import * as Connection from "./internal/connection.js"

/**
 * Where Redis is and how to connect.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisConnectionOptions {
  /**
   * `redis://[[user]:password@]host:port[/db]` (or `rediss://` for TLS). Keep it `Redacted` when it
   * holds a password (`Config.redacted("REDIS_URL")`). Default `redis://127.0.0.1:6379`.
   */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** How long building the layer waits for the first connection before going on without it. Default 2 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** More ioredis options (TLS, username, db, name, …), applied over this module's own. */
  readonly redisOptions?: RedisOptions | undefined
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  url: Connection.DEFAULT_URL,
  connectTimeoutMs: Connection.DEFAULT_CONNECT_TIMEOUT_MS
} as const

/**
 * The ioredis client in context, shared by the Redis-backed rate limiter and the breaker gossip.
 *
 * @since 0.1.0
 * @category tags
 */
export class RedisClient extends Context.Tag("effect-llm-resilience/redis/RedisClient")<RedisClient, Redis>() {}

/**
 * Opens a connection in the current scope (closed with `QUIT` when the scope closes). Never fails:
 * when Redis is unreachable the client is returned anyway (a warning is logged) and reconnects in the
 * background.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: RedisConnectionOptions = {}): Effect.Effect<Redis, never, Scope.Scope> =>
  Connection.open(options.url, Connection.msOf(options.connectTimeout, defaults.connectTimeoutMs), options.redisOptions)

/**
 * A connection as a layer (closed when the layer's scope closes).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: RedisConnectionOptions = {}): Layer.Layer<RedisClient> => Layer.scoped(RedisClient, make(options))

/**
 * A connection whose options are read from `Config`, e.g.
 * `RedisClient.layerConfig(Config.all({ url: Config.redacted("REDIS_URL") }))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<RedisConnectionOptions>
): Layer.Layer<RedisClient, ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

/**
 * An existing client the application owns (this layer never closes it). Prefer `enableOfflineQueue:
 * false` on it: with ioredis' default offline queue, a call made while Redis is down waits up to the
 * rate limiter's `commandTimeout` before falling back.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromClient = (client: Redis): Layer.Layer<RedisClient> => Layer.succeed(RedisClient, client)

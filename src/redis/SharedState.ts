/**
 * Everything `Policy` keeps state in, shared across worker processes through one Redis: the
 * Redis-backed `RateLimiters`, the `CircuitBreakers` registry with gossip, and the (local) retry
 * budgets — a drop-in replacement for `Policy.layerState`.
 *
 * ```ts
 * const State = SharedState.layerConfig(Config.all({ url: Config.redacted("REDIS_URL") }))
 * const Llm = Policy.layer(policy, "primary").pipe(Layer.provide(State), Layer.provide(OpenAi.layerConfig))
 * ```
 *
 * See docs/policies/shared-state.md.
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as CircuitBreaker from "../CircuitBreaker.js"
import type { PolicyState } from "../Policy.js"
import * as RetryBudget from "../RetryBudget.js"
import * as BreakerGossip from "./BreakerGossip.js"
import * as RedisClient from "./RedisClient.js"
import * as RedisRateLimiter from "./RedisRateLimiter.js"

/**
 * Options: where Redis is, the limiter's options, and the gossip's (`false` = breakers stay per
 * process).
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedStateOptions extends RedisClient.RedisConnectionOptions {
  readonly rateLimiter?: RedisRateLimiter.RedisRateLimiterOptions | undefined
  readonly gossip?: BreakerGossip.BreakerGossipOptions | false | undefined
}

/**
 * The shared policy state over the `RedisClient` in context (`url` and `redisOptions` are ignored:
 * the client is already made; `connectTimeout` bounds the wait for the gossip's subscription).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (options: SharedStateOptions = {}): Layer.Layer<PolicyState, never, RedisClient.RedisClient> =>
  Layer.mergeAll(
    options.gossip === false
      ? CircuitBreaker.layer
      : BreakerGossip.layerClient({
        ...(options.connectTimeout !== undefined ? { connectTimeout: options.connectTimeout } : {}),
        ...options.gossip
      }).pipe(Layer.provide(CircuitBreaker.layer)),
    RedisRateLimiter.layerClient(options.rateLimiter),
    RetryBudget.layer
  )

/**
 * The shared policy state with one connection of its own (plus the gossip's subscriber), closed with
 * the layer's scope. Building it never fails: an unreachable Redis is handled as the limiter's
 * `onRedisError` says, and breakers then work locally.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: SharedStateOptions = {}): Layer.Layer<PolicyState> =>
  layerClient(options).pipe(Layer.provide(RedisClient.layer(options)))

/**
 * {@link layer} with its options read from `Config` (keep the URL `Config.redacted` when it holds a
 * password).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (config: Config.Config<SharedStateOptions>): Layer.Layer<PolicyState, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(config, layer))

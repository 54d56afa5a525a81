/**
 * Everything `Policy` keeps state in, shared across worker processes through one Redis: the
 * Redis-backed `RateLimiters`, the fleet-wide `CircuitBreakers` (`FleetBreaker`: opens, the half-open
 * probe and closes shared) and the fleet-wide `RetryBudgets` (`RedisRetryBudget`) — a drop-in
 * replacement for `Policy.layerState`.
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
import * as FleetBreaker from "./FleetBreaker.js"
import * as RedisClient from "./RedisClient.js"
import * as RedisRateLimiter from "./RedisRateLimiter.js"
import * as RedisRetryBudget from "./RedisRetryBudget.js"

/**
 * Options: where Redis is, and each part's options — `false` keeps that part per process.
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedStateOptions extends RedisClient.RedisConnectionOptions {
  /** The prefix of every key of every part, unless a part sets its own. Default `llm-resilience:`. */
  readonly prefix?: string | undefined
  readonly rateLimiter?: RedisRateLimiter.RedisRateLimiterOptions | undefined
  /**
   * The breakers' sharing (channel, prefix, probe lease, …). `fleet: false` shares opens only (the
   * 0.1 `BreakerGossip`: each process probes and closes on its own); `false`: breakers per process.
   */
  readonly gossip?: (FleetBreaker.FleetBreakerOptions & { readonly fleet?: boolean | undefined }) | false | undefined
  /** The retry budgets' sharing; `false`: a budget per process. */
  readonly retryBudget?: RedisRetryBudget.RedisRetryBudgetOptions | false | undefined
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
    breakersLayer(options),
    RedisRateLimiter.layerClient({ ...prefixOf(options), ...options.rateLimiter }),
    budgetsLayer(options)
  )

const prefixOf = (options: SharedStateOptions): { readonly prefix?: string } =>
  options.prefix !== undefined ? { prefix: options.prefix } : {}

const breakersLayer = (options: SharedStateOptions): Layer.Layer<CircuitBreaker.CircuitBreakers, never, RedisClient.RedisClient> => {
  if (options.gossip === false) return CircuitBreaker.layer
  const gossip = {
    ...(options.connectTimeout !== undefined ? { connectTimeout: options.connectTimeout } : {}),
    ...prefixOf(options),
    ...options.gossip
  }
  return gossip.fleet === false
    ? BreakerGossip.layerClient(gossip).pipe(Layer.provide(CircuitBreaker.layer))
    : FleetBreaker.layerClient(gossip)
}

const budgetsLayer = (options: SharedStateOptions): Layer.Layer<RetryBudget.RetryBudgets, never, RedisClient.RedisClient> =>
  options.retryBudget === false ? RetryBudget.layer : RedisRetryBudget.layerClient({ ...prefixOf(options), ...options.retryBudget })

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

/**
 * `effect-llm-resilience/redis` — shared state for several worker processes behind one API key: a
 * Redis-backed rate limiter (one RPM / TPM budget and one 429 cooldown for the whole fleet), one
 * circuit breaker per route for the fleet (opens, the half-open probe and closes shared) and one retry
 * budget per route for the fleet. Needs the optional peer dependency `ioredis` (^5); the root
 * entry point never loads it.
 *
 * See docs/policies/shared-state.md.
 *
 * @since 0.1.0
 */

/**
 * The ioredis connection (scoped, or an existing client).
 *
 * @since 0.1.0
 */
export * as RedisClient from "./RedisClient.js"

/**
 * A `RateLimiters` registry whose buckets and cooldowns live in Redis, one atomic Lua script per admission.
 *
 * @since 0.1.0
 */
export * as RedisRateLimiter from "./RedisRateLimiter.js"

/**
 * Circuit-breaker opens shared across processes over Redis pub/sub.
 *
 * @since 0.1.0
 */
export * as BreakerGossip from "./BreakerGossip.js"

/**
 * One circuit breaker per key for a fleet: opens, the half-open probe (one process at a time) and
 * closes shared over Redis.
 *
 * @since 0.2.0
 */
export * as FleetBreaker from "./FleetBreaker.js"

/**
 * Retry budgets shared by a fleet: one budget per route across every worker.
 *
 * @since 0.2.0
 */
export * as RedisRetryBudget from "./RedisRetryBudget.js"

/**
 * `Policy`'s whole state shared through Redis: a drop-in for `Policy.layerState`.
 *
 * @since 0.1.0
 */
export * as SharedState from "./SharedState.js"

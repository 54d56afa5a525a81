/**
 * `effect-llm-resilience/redis` — shared state for several worker processes behind one API key: a
 * Redis-backed rate limiter (one RPM / TPM budget and one 429 cooldown for the whole fleet) and
 * circuit-breaker gossip over pub/sub. Needs the optional peer dependency `ioredis` (^5); the root
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
 * `Policy`'s whole state shared through Redis: a drop-in for `Policy.layerState`.
 *
 * @since 0.1.0
 */
export * as SharedState from "./SharedState.js"

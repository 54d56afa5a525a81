/**
 * Circuit-breaker gossip over Redis pub/sub: when one worker's breaker for a key opens, every other
 * worker's breaker for that key opens too, until the same moment — so a provider outage seen by one
 * process stops the whole fleet sending, not only the process that paid for the evidence.
 *
 * The layer decorates the `CircuitBreakers` registry in context. Every local transition to `open`
 * (consecutive failures, failure rate, a failed probe) is published on a channel as `{ origin, key,
 * openUntil, openForMs, reason }`; every other process's subscriber forces its breaker for `key` open
 * with `CircuitBreaker.tripUntil` for `openForMs` from its own clock (so clock skew between machines
 * does not matter), capped at `maxOpenDuration`. A breaker that does not exist yet in the receiving
 * process opens as soon as it is created. Closing stays local: when the period ends each process
 * probes on its own (`FleetBreaker` — what `SharedState` uses — also shares the probe and the close; a
 * close it publishes closes a gossip-only process's breaker too).
 *
 * Messages from this process (same `origin`) are ignored, a breaker opened by gossip never publishes
 * again (no echo), and malformed messages are dropped (decoded with `Schema`, never a defect). Redis
 * down only means no gossip: breakers keep working locally, publishing failures are logged, and the
 * subscription is re-made when Redis comes back.
 *
 * See docs/policies/shared-state.md.
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import * as os from "node:os"
import { CircuitBreakers } from "../CircuitBreaker.js"
import * as Connection from "./internal/connection.js"
import * as Gossip from "./internal/gossip.js"
import { make as makeClient, RedisClient, type RedisConnectionOptions } from "./RedisClient.js"

/**
 * Options.
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerGossipOptions {
  /** The pub/sub channel; every worker of one fleet must use the same. Default `llm-resilience:breaker`. */
  readonly channel?: string | undefined
  /** This process's id in the messages (its own are ignored). Default `hostname/pid/random`, unique per layer. */
  readonly origin?: string | undefined
  /** The longest a remote open lasts here, whatever a message says. Default 60 seconds. */
  readonly maxOpenDuration?: Duration.DurationInput | undefined
  /** How long building the layer waits for the subscription. Default 2 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** The longest a `PUBLISH` may take before it counts as failed. Default 500 ms. */
  readonly commandTimeout?: Duration.DurationInput | undefined
}

/**
 * The options plus where Redis is, for the layer that opens its own connections.
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerGossipLayerOptions extends BreakerGossipOptions, RedisConnectionOptions {}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  channel: "llm-resilience:breaker",
  maxOpenDurationMs: 60_000,
  commandTimeoutMs: 500
} as const

/**
 * One message on the channel (JSON): `{ origin, key, openUntil, openForMs, reason }`, plus `kind`
 * (`open` / `closed`) and `epoch` when a `FleetBreaker` sent it.
 *
 * @since 0.1.0
 * @category models
 */
export const Message = Gossip.Message

/**
 * @since 0.1.0
 * @category models
 */
export type Message = typeof Message.Type

/**
 * The reason of a transition caused by gossip starts with this (such transitions are not published).
 *
 * @since 0.1.0
 * @category constants
 */
export const remoteReasonPrefix = Gossip.remoteReasonPrefix

/** @internal */
export const settingsOf = (options: BreakerGossipOptions): Gossip.Settings => ({
  channel: options.channel ?? defaults.channel,
  origin: options.origin ?? `${os.hostname()}/${process.pid}/${Math.random().toString(36).slice(2, 10)}`,
  maxOpenMs: Connection.msOf(options.maxOpenDuration, defaults.maxOpenDurationMs),
  commandTimeoutMs: Connection.msOf(options.commandTimeout, defaults.commandTimeoutMs),
  connectTimeoutMs: Connection.msOf(options.connectTimeout, Connection.DEFAULT_CONNECT_TIMEOUT_MS)
})

/** Gossip alone records nothing in Redis: an open is published as it is, a close stays local. */
const publishOpens: Gossip.Recorder = {
  opened: (event) => Effect.succeed({ openForMs: Math.max(0, event.openUntil - event.at) }),
  closed: () => Effect.succeed(undefined)
}

/**
 * Decorates the `CircuitBreakers` registry in context with gossip over `client` (which the caller
 * owns; a dedicated subscriber connection is opened from its options in the current scope). Local
 * opens are published and remote ones applied for as long as the scope lives.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  client: Redis,
  options: BreakerGossipOptions = {}
): Effect.Effect<Context.Tag.Service<CircuitBreakers>, never, Scope.Scope | CircuitBreakers> =>
  Effect.flatMap(CircuitBreakers, (base) =>
    Effect.map(Gossip.start(client, base, settingsOf(options), publishOpens), (gossip) => gossip.registry))

/**
 * Gossip over the `RedisClient` in context (one command connection shared with `RedisRateLimiter`,
 * plus a subscriber connection of its own), decorating the `CircuitBreakers` registry in context:
 * `BreakerGossip.layerClient().pipe(Layer.provide(CircuitBreaker.layer))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (
  options: BreakerGossipOptions = {}
): Layer.Layer<CircuitBreakers, never, CircuitBreakers | RedisClient> =>
  Layer.scoped(CircuitBreakers, Effect.flatMap(RedisClient, (client) => make(client, options)))

/**
 * Gossip with its own connections (opened when the layer is built, closed with its scope), decorating
 * the `CircuitBreakers` registry in context: `BreakerGossip.layer({ url }).pipe(Layer.provide(CircuitBreaker.layer))`.
 * Building it never fails: while Redis is unreachable the breakers work locally.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: BreakerGossipLayerOptions = {}): Layer.Layer<CircuitBreakers, never, CircuitBreakers> =>
  Layer.scoped(CircuitBreakers, Effect.flatMap(makeClient(options), (client) => make(client, options)))

/**
 * {@link layer} with its options read from `Config` (keep the URL `Config.redacted` when it holds a
 * password).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<BreakerGossipLayerOptions>
): Layer.Layer<CircuitBreakers, ConfigError.ConfigError, CircuitBreakers> => Layer.unwrapEffect(Effect.map(config, layer))

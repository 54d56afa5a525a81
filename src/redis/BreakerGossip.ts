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
 * probes on its own.
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
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Redis } from "ioredis"
import * as os from "node:os"
import { type BreakerEvent, CircuitBreakers } from "../CircuitBreaker.js"
import * as Connection from "./internal/connection.js"
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
 * One message on the channel (JSON).
 *
 * @since 0.1.0
 * @category models
 */
export const Message = Schema.Struct({
  /** The publishing process (`origin` option). */
  origin: Schema.String,
  /** The breaker key (`route/model` in `Policy`). */
  key: Schema.String,
  /** When the open period ends, on the publisher's clock (epoch ms). */
  openUntil: Schema.Number.pipe(Schema.finite()),
  /** How long the open period lasts from the moment of publishing; preferred over `openUntil` (clock skew). */
  openForMs: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.nonNegative())),
  /** Why it opened (`5 consecutive failures`, `probe failed`, …). */
  reason: Schema.String
}).annotations({ identifier: "BreakerGossipMessage" })

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
export const remoteReasonPrefix = "remote: "

/** Remote opens remembered for breakers not created yet (bounded: a flood of keys cannot grow it). */
const MAX_PENDING = 1024

const decode = Schema.decodeUnknownEither(Schema.parseJson(Message))

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
  Effect.gen(function*() {
    const base = yield* CircuitBreakers
    const channel = options.channel ?? defaults.channel
    const origin = options.origin ?? `${os.hostname()}/${process.pid}/${Math.random().toString(36).slice(2, 10)}`
    const maxOpenMs = Connection.msOf(options.maxOpenDuration, defaults.maxOpenDurationMs)
    const commandTimeoutMs = Connection.msOf(options.commandTimeout, defaults.commandTimeoutMs)
    const connectTimeoutMs = Connection.msOf(options.connectTimeout, Connection.DEFAULT_CONNECT_TIMEOUT_MS)

    // ---- receiving ----

    const pending = new Map<string, { readonly until: number; readonly reason: string }>()

    const receive = (raw: string): Effect.Effect<void> => {
      const decoded = decode(raw)
      if (Either.isLeft(decoded)) return Effect.logDebug(`effect-llm-resilience/redis: ignored a malformed message on ${channel}`)
      const message = decoded.right
      if (message.origin === origin) return Effect.void
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const forMs = Math.min(maxOpenMs, message.openForMs ?? message.openUntil - now)
        if (!(forMs > 0)) return Effect.void
        const until = now + forMs
        const reason = `${remoteReasonPrefix}${message.reason} (from ${message.origin})`
        return Effect.flatMap(base.lookup(message.key), (breaker) => {
          if (Option.isSome(breaker)) return breaker.value.tripUntil(until, reason)
          return Effect.sync(() => {
            const known = pending.get(message.key)
            if (known !== undefined && known.until >= until) return
            if (known === undefined && pending.size >= MAX_PENDING) {
              const oldest = pending.keys().next()
              if (oldest.done !== true) pending.delete(oldest.value)
            }
            pending.set(message.key, { until, reason })
          })
        })
      })
    }

    const inbox = yield* Queue.unbounded<string>()
    const subscriber = yield* Connection.subscriber(client, connectTimeoutMs)
    const onMessage = (from: string, message: string): void => {
      if (from === channel) Queue.unsafeOffer(inbox, message)
    }
    subscriber.on("message", onMessage)
    yield* Effect.addFinalizer(() => Effect.sync(() => void subscriber.off("message", onMessage)))
    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(Queue.take(inbox), (raw) =>
        Effect.catchAllCause(receive(raw), (cause) =>
          Effect.logDebug("effect-llm-resilience/redis: a breaker gossip message could not be applied", cause))))
    )
    // Made now when Redis is up; otherwise queued on the subscriber connection and made when it comes back.
    yield* Connection.command(connectTimeoutMs, () => subscriber.subscribe(channel)).pipe(
      Effect.catchAll((error) =>
        Effect.logWarning(
          `effect-llm-resilience/redis: not subscribed to ${channel} yet (${error.message}); breakers work locally until Redis answers`
        )
      )
    )

    // ---- publishing ----

    let publishFailing = false
    const publish = (event: BreakerEvent): Effect.Effect<void> => {
      if (event.to !== "open" || event.openUntil === undefined || event.reason.startsWith(remoteReasonPrefix)) return Effect.void
      const message: Message = {
        origin,
        key: event.key,
        openUntil: event.openUntil,
        openForMs: Math.max(0, event.openUntil - event.at),
        reason: event.reason
      }
      return Connection.command(commandTimeoutMs, () => client.publish(channel, JSON.stringify(message))).pipe(
        Effect.matchEffect({
          onFailure: (error) => {
            if (publishFailing) return Effect.void
            publishFailing = true
            return Effect.logWarning(
              `effect-llm-resilience/redis: could not publish a breaker open on ${channel} (${error.message}); other workers will not hear of it`
            )
          },
          onSuccess: () => Effect.sync(() => void (publishFailing = false))
        })
      )
    }
    const events = yield* base.events
    yield* Effect.forkScoped(Stream.runForEach(events, publish))

    // ---- the decorated registry ----

    const applyPending = (key: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const remote = pending.get(key)
        if (remote === undefined) return Effect.void
        pending.delete(key)
        return Effect.flatMap(base.lookup(key), (breaker) =>
          Option.isSome(breaker) ? breaker.value.tripUntil(remote.until, remote.reason) : Effect.void)
      })

    return CircuitBreakers.of({
      ...base,
      get: (key, breakerOptions, probe) => Effect.tap(base.get(key, breakerOptions, probe), () => applyPending(key))
    })
  })

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

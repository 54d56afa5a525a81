/**
 * The breaker messages between processes over Redis pub/sub — receiving, publishing and the news
 * each process has of each key — for both `BreakerGossip` (opens only) and `FleetBreaker` (opens and
 * closes, ordered by the fleet's epochs). What differs between the two is what a local transition
 * records in Redis before it is published: the {@link Recorder}.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Redis } from "ioredis"
import type { BreakerEvent, CircuitBreakers } from "../../CircuitBreaker.js"
import * as Connection from "./connection.js"

/** @internal */
export const remoteReasonPrefix = "remote: "

/**
 * One message on the channel (JSON). `kind` and `epoch` came with the fleet breaker; a message
 * without them is an open from a gossip-only process (older ones ignore `kind: "closed"` messages, whose
 * `openUntil` is 0 — already over).
 *
 * @internal
 */
export const Message = Schema.Struct({
  origin: Schema.String,
  key: Schema.String,
  openUntil: Schema.Number.pipe(Schema.finite()),
  openForMs: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.nonNegative())),
  reason: Schema.String,
  kind: Schema.optional(Schema.Literal("open", "closed")),
  epoch: Schema.optional(Schema.Number.pipe(Schema.finite()))
}).annotations({ identifier: "BreakerGossipMessage" })

/** @internal */
export type Message = typeof Message.Type

const decode = Schema.decodeUnknownEither(Schema.parseJson(Message))

/** Remote news remembered per key (bounded: a flood of keys cannot grow it). */
const MAX_KEYS = 1024

const remember = <V>(map: Map<string, V>, key: string, value: V): void => {
  if (!map.has(key) && map.size >= MAX_KEYS) {
    const oldest = map.keys().next()
    if (oldest.done !== true) map.delete(oldest.value)
  }
  map.set(key, value)
}

/** What a local transition leaves in Redis before it is announced; `undefined` = announce nothing. @internal */
export interface Recorder {
  readonly opened: (event: BreakerEvent & { readonly openUntil: number }) => Effect.Effect<{ readonly epoch?: number; readonly openForMs: number } | undefined>
  readonly closed: (event: BreakerEvent) => Effect.Effect<{ readonly epoch: number } | undefined>
}

/** @internal */
export interface Settings {
  readonly channel: string
  readonly origin: string
  readonly maxOpenMs: number
  readonly commandTimeoutMs: number
  readonly connectTimeoutMs: number
}

/** @internal */
export interface Gossip {
  /** The registry with remote opens applied to breakers created after the news came. */
  readonly registry: Context.Tag.Service<CircuitBreakers>
  /** The newest fleet epoch this process has heard of for `key` (0: none). */
  readonly knownEpoch: (key: string) => number
  /** Records news (a script's reply) of `key` at `epoch`. */
  readonly learnEpoch: (key: string, epoch: number) => void
}

/**
 * Subscribes to the channel and publishes `registry`'s local transitions as `recorder` says, for as
 * long as the current scope lives.
 *
 * @internal
 */
export const start = (
  client: Redis,
  registry: Context.Tag.Service<CircuitBreakers>,
  settings: Settings,
  recorder: Recorder
): Effect.Effect<Gossip, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { channel, origin } = settings
    const epochs = new Map<string, number>()
    const knownEpoch = (key: string) => epochs.get(key) ?? 0
    const learnEpoch = (key: string, epoch: number) => {
      if (epoch > knownEpoch(key)) remember(epochs, key, epoch)
    }

    // ---- receiving ----

    const pending = new Map<string, { readonly until: number; readonly reason: string }>()

    const opened = (message: Message, reason: string): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const forMs = Math.min(settings.maxOpenMs, message.openForMs ?? message.openUntil - now)
        if (!(forMs > 0)) return Effect.void
        const until = now + forMs
        return Effect.flatMap(registry.lookup(message.key), (breaker) => {
          if (Option.isSome(breaker)) return breaker.value.tripUntil(until, reason)
          return Effect.sync(() => {
            const known = pending.get(message.key)
            if (known === undefined || known.until < until) remember(pending, message.key, { until, reason })
          })
        })
      })

    const closed = (message: Message, reason: string): Effect.Effect<void> =>
      Effect.flatMap(registry.lookup(message.key), (breaker) => {
        pending.delete(message.key)
        return Option.isSome(breaker) ? breaker.value.untrip(reason) : Effect.void
      })

    const receive = (raw: string): Effect.Effect<void> => {
      const decoded = decode(raw)
      if (Either.isLeft(decoded)) return Effect.logDebug(`effect-llm-resilience/redis: ignored a malformed message on ${channel}`)
      const message = decoded.right
      if (message.origin === origin) return Effect.void
      // Older news than this process already has (a message overtaken by a later trip or close) is stale.
      if (message.epoch !== undefined) {
        if (message.epoch <= knownEpoch(message.key)) return Effect.void
        learnEpoch(message.key, message.epoch)
      }
      const reason = `${remoteReasonPrefix}${message.reason} (from ${message.origin})`
      return message.kind === "closed" ? closed(message, reason) : opened(message, reason)
    }

    const inbox = yield* Queue.unbounded<string>()
    const subscriber = yield* Connection.subscriber(client, settings.connectTimeoutMs)
    const onMessage = (from: string, message: string): void => {
      if (from === channel) Queue.unsafeOffer(inbox, message)
    }
    subscriber.on("message", onMessage)
    yield* Effect.addFinalizer(() => Effect.sync(() => void subscriber.off("message", onMessage)))
    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(Queue.take(inbox), (raw) =>
        Effect.catchAllCause(receive(raw), (cause) =>
          Effect.logDebug("effect-llm-resilience/redis: a breaker message could not be applied", cause))))
    )
    // Made now when Redis is up; otherwise queued on the subscriber connection and made when it comes back.
    yield* Connection.command(settings.connectTimeoutMs, () => subscriber.subscribe(channel)).pipe(
      Effect.catchAll((error) =>
        Effect.logWarning(
          `effect-llm-resilience/redis: not subscribed to ${channel} yet (${error.message}); breakers work locally until Redis answers`
        )
      )
    )

    // ---- publishing ----

    let publishFailing = false
    const publish = (message: Message): Effect.Effect<void> =>
      Connection.command(settings.commandTimeoutMs, () => client.publish(channel, JSON.stringify(message))).pipe(
        Effect.matchEffect({
          onFailure: (error) => {
            if (publishFailing) return Effect.void
            publishFailing = true
            return Effect.logWarning(
              `effect-llm-resilience/redis: could not publish a breaker ${message.kind ?? "open"} on ${channel} (${error.message}); other workers will not hear of it`
            )
          },
          onSuccess: () => Effect.sync(() => void (publishFailing = false))
        })
      )

    const announce = (event: BreakerEvent): Effect.Effect<void> => {
      if (event.reason.startsWith(remoteReasonPrefix)) return Effect.void // news from elsewhere is not echoed
      if (event.to === "open" && event.openUntil !== undefined) {
        const openUntil = event.openUntil
        return Effect.flatMap(recorder.opened({ ...event, openUntil }), (recorded) => {
          if (recorded === undefined) return Effect.void
          if (recorded.epoch !== undefined) learnEpoch(event.key, recorded.epoch)
          return publish({
            origin,
            key: event.key,
            openUntil,
            openForMs: recorded.openForMs,
            reason: event.reason,
            ...(recorded.epoch !== undefined ? { kind: "open" as const, epoch: recorded.epoch } : {})
          })
        })
      }
      if (event.to === "closed" && (event.from === "half-open" || event.from === "open")) {
        return Effect.flatMap(recorder.closed(event), (recorded) => {
          if (recorded === undefined) return Effect.void
          learnEpoch(event.key, recorded.epoch)
          return publish({ origin, key: event.key, openUntil: 0, reason: event.reason, kind: "closed", epoch: recorded.epoch })
        })
      }
      return Effect.void
    }
    const events = yield* registry.events
    yield* Effect.forkScoped(Stream.runForEach(events, announce))

    // ---- the decorated registry ----

    const applyPending = (key: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const remote = pending.get(key)
        if (remote === undefined) return Effect.void
        pending.delete(key)
        return Effect.flatMap(registry.lookup(key), (breaker) =>
          Option.isSome(breaker) ? breaker.value.tripUntil(remote.until, remote.reason) : Effect.void)
      })

    return {
      registry: {
        ...registry,
        get: (key, breakerOptions, probe) => Effect.tap(registry.get(key, breakerOptions, probe), () => applyPending(key))
      },
      knownEpoch,
      learnEpoch
    }
  })

/**
 * One circuit breaker per key for a whole fleet of worker processes, over Redis: an open anywhere
 * opens it everywhere (as `BreakerGossip` does), **one** process at a time probes a recovering
 * provider when the open period ends, and that probe's success closes the breaker everywhere at once.
 *
 * Each process keeps its own breaker — the closed path never waits on Redis, and trips are decided
 * from each process's own calls as before — and Redis keeps the fleet's state per key (`<prefix>
 * breaker:{<key>}`): tripped or closed, when the fleet's open period ends, which process owns the
 * half-open probe and until when, and an epoch that orders the news. The transitions:
 *
 * - **open**: a local trip (failures, a failed probe) is recorded in Redis — the fleet is open at
 *   least until this trip's open period ends, any probe claim is void — and published; every other
 *   process opens its breaker for the same time (`CircuitBreaker.tripUntil`).
 * - **half-open**: when a process's open period ends, its breaker asks Redis before letting a probe
 *   through (`CircuitBreaker.BreakerCoordinator`): the first process to ask claims the probe for
 *   `probeLease`; the others are refused (`CircuitOpen`) while the claim holds, or open again if the
 *   fleet's open period has not ended.
 * - **close**: the probe's owner closes the fleet's record (only while it still owns the claim — a
 *   trip in between wins) and publishes it; every other process closes its breaker
 *   (`CircuitBreaker.untrip`). A probe that ends without a verdict (interrupted) gives its claim back.
 *
 * Messages carry the fleet's epoch: news older than what a process has heard is ignored, so a close
 * overtaken by a later trip cannot close anyone. A process that dies while probing holds the claim for
 * at most `probeLease`.
 *
 * **When Redis is unreachable** every process falls back to its local breaker — it trips on its own
 * failures and probes on its own — and comes back to the fleet when Redis answers (after
 * `retryRedisAfter`). There is deliberately no fail-closed choice: a breaker that may not probe
 * without Redis would keep a healthy provider dark for as long as Redis is away, turning a Redis outage
 * into a provider outage.
 *
 * `halfOpenProbes` stays a per-process count: the process that owns the claim lets that many probes
 * through. A health probe (`healthProbe`) or a panic-mode call closes only its own process's breaker.
 *
 * See docs/policies/shared-state.md.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import {
  type BreakerCoordinator,
  CircuitBreakers,
  makeRegistry,
  type ProbeClaim
} from "../CircuitBreaker.js"
import * as Metrics from "../internal/metrics.js"
import { type BreakerGossipOptions, settingsOf } from "./BreakerGossip.js"
import * as Connection from "./internal/connection.js"
import * as FleetScripts from "./internal/fleetScripts.js"
import * as Gossip from "./internal/gossip.js"
import * as Guard from "./internal/guard.js"
import { make as makeClient, RedisClient, type RedisConnectionOptions } from "./RedisClient.js"

/**
 * Options: the gossip's (channel, origin, …) and the fleet state's.
 *
 * @since 0.2.0
 * @category models
 */
export interface FleetBreakerOptions extends BreakerGossipOptions {
  /** Prefix of every Redis key (`<prefix>breaker:{<key>}`). Default `llm-resilience:`. */
  readonly prefix?: string | undefined
  /**
   * How long a process's claim on the half-open probe holds: the longest a probe call may take before
   * another process may probe instead (a process that died while probing blocks the others this long).
   * Default 30 seconds.
   */
  readonly probeLease?: Duration.DurationInput | undefined
  /** After a Redis failure, breakers work locally for this long before asking Redis again. Default 1 second. */
  readonly retryRedisAfter?: Duration.DurationInput | undefined
}

/**
 * The options plus where Redis is, for the layer that opens its own connections.
 *
 * @since 0.2.0
 * @category models
 */
export interface FleetBreakerLayerOptions extends FleetBreakerOptions, RedisConnectionOptions {}

/**
 * The defaults.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults = {
  prefix: "llm-resilience:",
  probeLeaseMs: 30_000,
  retryRedisAfterMs: 1_000,
  /** A process refused because another owns the probe asks Redis again after at most this long. */
  recheckMs: 1_000
} as const

/**
 * The Redis key of a breaker's fleet state (hash-tagged: one slot in a Redis Cluster).
 *
 * @since 0.2.0
 * @category utils
 */
export const stateKey = (prefix: string, key: string): string => `${prefix}breaker:{${key}}`

const errorsMetric = Metrics.counter(
  "llm_breaker_shared_state_errors_total",
  "Redis commands of the fleet breaker that failed or timed out",
  {}
)

/** The reasons of transitions the fleet causes (they are not published again). */
const FLEET_CLOSED = `${Gossip.remoteReasonPrefix}another worker's probe succeeded`
const FLEET_OPEN = `${Gossip.remoteReasonPrefix}the fleet's open period has not ended`

/**
 * The fleet breaker's registry over `client` (which the caller owns; a subscriber connection is
 * opened from its options in the current scope).
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  client: Redis,
  options: FleetBreakerOptions = {}
): Effect.Effect<typeof CircuitBreakers.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? defaults.prefix
    // The channel follows the prefix unless named: two fleets with two prefixes never hear each other.
    const settings = settingsOf({ ...options, channel: options.channel ?? `${prefix}breaker` })
    const leaseMs = Connection.msOf(options.probeLease, defaults.probeLeaseMs)
    const guard: Guard.Guard = {
      client,
      commandTimeoutMs: settings.commandTimeoutMs,
      retryRedisAfterMs: Connection.msOf(options.retryRedisAfter, defaults.retryRedisAfterMs),
      health: Guard.healthy(),
      what: "the fleet breaker state",
      whileDown: "breakers trip and probe locally, per process",
      errors: errorsMetric
    }
    const run = (script: FleetScripts.Script, key: string, args: ReadonlyArray<string | number>, length: number) =>
      Effect.map(Guard.runScript(guard, script, stateKey(prefix, key), args), (reply) =>
        Option.isSome(reply) ? Guard.integers(reply.value, length) : undefined)

    // Set once the gossip has started (the coordinator is only asked by breakers, which exist after that).
    let gossip: Gossip.Gossip | undefined
    const knownEpoch = (key: string) => gossip?.knownEpoch(key) ?? 0
    const learnEpoch = (key: string, epoch: number) => gossip?.learnEpoch(key, epoch)
    // The claim this process holds per key: one token per process and key while it holds the claim
    // (every local probe under `halfOpenProbes` shares it), with the number of local probes using it. A
    // token is recorded before it is sent, so a claim whose answer was lost (a timeout after Redis
    // granted it) is still closed by this process's successful probe, or given back.
    const owned = new Map<string, { readonly token: string; holders: number }>()
    let claims = 0
    // Keys whose probe another process owns: refused locally until then (or until news of the key
    // arrives), without asking Redis on every call.
    const busyUntil = new Map<string, { readonly until: number; readonly epoch: number }>()

    const releaseOf = (key: string, claim: { readonly token: string; holders: number }): Effect.Effect<void> =>
      Effect.suspend(() => {
        claim.holders = Math.max(0, claim.holders - 1)
        if (claim.holders > 0 || owned.get(key) !== claim) return Effect.void
        owned.delete(key)
        return Effect.asVoid(run(FleetScripts.release, key, [claim.token], 0))
      })

    const claimProbe = (key: string): Effect.Effect<ProbeClaim> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const busy = busyUntil.get(key)
        if (busy !== undefined && busy.until > now && busy.epoch === knownEpoch(key)) {
          return Effect.succeed<ProbeClaim>({ _tag: "Busy", forMs: busy.until - now })
        }
        busyUntil.delete(key)
        let claim = owned.get(key)
        if (claim === undefined) {
          claim = { token: `${settings.origin}#${++claims}`, holders: 0 }
          owned.set(key, claim)
        }
        const held = claim
        held.holders++
        return Effect.map(run(FleetScripts.claim, key, [held.token, leaseMs, knownEpoch(key)], 3), (reply): ProbeClaim => {
          // Redis away (or the answer lost): probe locally (see the module's note on why there is no
          // fail-closed), keeping the token in case Redis did grant it.
          if (reply === undefined) return { _tag: "Granted", release: releaseOf(key, held) }
          const [verdict, epoch, ms] = reply as [number, number, number]
          learnEpoch(key, epoch)
          if (verdict === 1) return { _tag: "Granted", release: releaseOf(key, held) }
          // Not granted: this probe does not hold the claim.
          held.holders = Math.max(0, held.holders - 1)
          if (held.holders === 0 && owned.get(key) === held) owned.delete(key)
          switch (verdict) {
            case 2:
              return { _tag: "Closed", reason: FLEET_CLOSED }
            case 3:
              return { _tag: "Open", forMs: ms, reason: FLEET_OPEN }
            default:
              busyUntil.set(key, { until: now + Math.min(ms, defaults.recheckMs), epoch: knownEpoch(key) })
              return { _tag: "Busy", forMs: ms }
          }
        })
      })
    const coordinator: BreakerCoordinator = { claimProbe }

    const recorder: Gossip.Recorder = {
      opened: (event) => {
        owned.delete(event.key) // a trip voids any claim (the script drops it in Redis too)
        const openForMs = Math.max(0, event.openUntil - event.at)
        return Effect.map(run(FleetScripts.trip, event.key, [openForMs], 2), (reply) =>
          reply === undefined ? { openForMs } : { epoch: reply[0]!, openForMs: reply[1]! })
      },
      // Only a close by this process's claimed probe closes the fleet (a health probe's or a panic call's
      // success closes this process alone): the script checks the claim is still this one.
      closed: (event) =>
        Effect.suspend(() => {
          const claim = owned.get(event.key)
          if (claim === undefined) return Effect.succeed(undefined)
          owned.delete(event.key)
          return Effect.map(run(FleetScripts.close, event.key, [claim.token], 2), (reply) =>
            reply !== undefined && reply[0] === 1 ? { epoch: reply[1]! } : undefined)
        })
    }

    const registry = yield* makeRegistry({ coordinator })
    gossip = yield* Gossip.start(client, registry, settings, recorder)
    return gossip.registry
  })

/**
 * The fleet breaker over the `RedisClient` in context (one command connection shared with the other
 * Redis-backed state, plus a subscriber connection of its own).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerClient = (options: FleetBreakerOptions = {}): Layer.Layer<CircuitBreakers, never, RedisClient> =>
  Layer.scoped(CircuitBreakers, Effect.flatMap(RedisClient, (client) => make(client, options)))

/**
 * The fleet breaker with its own connections (opened when the layer is built, closed with its scope).
 * Building it never fails: while Redis is unreachable the breakers work locally.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: FleetBreakerLayerOptions = {}): Layer.Layer<CircuitBreakers> =>
  Layer.scoped(CircuitBreakers, Effect.flatMap(makeClient(options), (client) => make(client, options)))

/**
 * {@link layer} with its options read from `Config` (keep the URL `Config.redacted` when it holds a
 * password).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<FleetBreakerLayerOptions>
): Layer.Layer<CircuitBreakers, ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

/**
 * The response cache's core, below the chain and below `@effect/experimental`: what an entry is (a
 * versioned Schema, decoded on every read), how a call's key is made (the canonical request hash that
 * coalescing uses, plus the chain's models and the client's namespace), which calls may use the cache
 * (temperature 0, unless sampled answers were asked for), the client's validated settings, and the
 * metrics. Reads and writes never fail the call: a store that fails, or an entry that does not decode,
 * is a miss (or a skipped write), counted and logged.
 *
 * The store itself is an `EntryStore`: `ResponseCache.make` builds one over an `@effect/experimental`
 * `ResultPersistence` store (memory, a `KeyValueStore` file, Redis, …). This module never loads
 * `@effect/experimental`, so the chain (in the root entry point) can hold a cache without the root
 * depending on it.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { InvalidOptions } from "../Errors.js"
import { GenerateResponse, type GenerateRequest, Usage } from "../Provider.js"
import * as Metrics from "./metrics.js"
import { requestKey } from "./requestKey.js"

/** The attempt-history outcome of an answer served from the cache. @internal */
export const CACHED_OUTCOME = "cached"

/**
 * A stored answer's response: the provider's response without its decoded body (`raw`, large and
 * provider-specific) and its rate-limit snapshot (stale the moment it is stored).
 *
 * @internal
 */
export const StoredResponse = GenerateResponse.pipe(Schema.omit("raw", "rateLimit"))

/**
 * One entry: an answer the chain accepted, with where it came from and what it cost then. `v` is the
 * format's version: an entry of another version does not decode, which makes it a miss.
 *
 * @internal
 */
export const CachedAnswer = Schema.Struct({
  v: Schema.Literal(1),
  response: StoredResponse,
  /** The route that served it. */
  route: Schema.String,
  degraded: Schema.Boolean,
  repaired: Schema.Boolean,
  /** The usage of the call that produced it (every attempt, rejected answers included). */
  usage: Usage,
  /** What that usage cost, when the chain had prices. */
  costUsd: Schema.optional(Schema.Number),
  /** Epoch milliseconds (the chain's `Clock`) when it was stored. */
  storedAt: Schema.Number
})

/** @internal */
export type CachedAnswer = typeof CachedAnswer.Type

/**
 * What the cache reads and writes through. Failures are plain messages: the core turns them into a
 * miss or a skipped write, never into a failed call.
 *
 * @internal
 */
export interface EntryStore {
  /** The entry under `key`: `None` when absent or expired; fails (with why) when the store failed or the entry does not decode. */
  readonly get: (key: string) => Effect.Effect<Option.Option<CachedAnswer>, string>
  /** Stores `entry` for `ttlMs` milliseconds (`Infinity`: no expiry). */
  readonly set: (key: string, entry: CachedAnswer, ttlMs: number) => Effect.Effect<void, string>
}

/**
 * Per-call control of the cache (`{ cache: … }` on a chain call): `false` bypasses it (no read, no
 * write); an object adjusts this call.
 *
 * @internal
 */
export type CallCache = false | {
  /** How long this call's answer stays (overrides the client's `ttl`); `0` reads but never writes. */
  readonly ttl?: Duration.DurationInput | undefined
  /** Use the cache although the request samples (temperature unset or > 0). */
  readonly nondeterministic?: boolean | undefined
  /** Skip the read (always ask a provider) but store the new answer. */
  readonly refresh?: boolean | undefined
}

/** A client's validated settings. @internal */
export interface CacheSettings {
  readonly namespace: string
  readonly ttlMs: number
  readonly nondeterministic: boolean
}

/** The client options `ResponseCache.make` validates. @internal */
export interface CacheOptions {
  readonly ttl?: Duration.DurationInput | undefined
  readonly namespace?: string | undefined
  readonly nondeterministic?: boolean | undefined
}

/** Defaults (docs/caching.md). @internal */
export const defaults = { ttl: "1 hour", ttlMs: 3_600_000, namespace: "default" } as const

const NAMESPACE = /^[A-Za-z0-9._-]{1,64}$/

/** Milliseconds of a positive duration (`Infinity` allowed), or why it is not one. */
const positiveMillis = (input: Duration.DurationInput): number | string => {
  const decoded = Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) return `is not a duration, got ${JSON.stringify(String(input)).slice(0, 100)}`
  const ms = Duration.toMillis(decoded.value)
  return ms > 0 ? ms : `must be positive, got ${Duration.format(decoded.value)}`
}

/** The client's settings, or the first bad option. @internal */
export const settingsOf = (options: CacheOptions, component: string): CacheSettings | InvalidOptions => {
  const invalid = (option: string, message: string) => new InvalidOptions({ component, option, message: `${option} ${message}` })
  let ttlMs: number = defaults.ttlMs
  if (options.ttl !== undefined) {
    const ms = positiveMillis(options.ttl)
    if (typeof ms === "string") return invalid("ttl", ms)
    ttlMs = ms
  }
  const namespace = options.namespace ?? defaults.namespace
  if (typeof namespace !== "string" || !NAMESPACE.test(namespace)) {
    return invalid("namespace", `must be 1–64 characters of A–Z, a–z, 0–9, ".", "_" or "-", got ${JSON.stringify(String(namespace)).slice(0, 80)}`)
  }
  if (options.nondeterministic !== undefined && typeof options.nondeterministic !== "boolean") {
    return invalid("nondeterministic", `must be a boolean, got ${JSON.stringify(options.nondeterministic)}`)
  }
  return { namespace, ttlMs, nondeterministic: options.nondeterministic === true }
}

/**
 * Whether a request's answer is a function of the request: only at temperature 0. An unset
 * temperature is the provider's default, which is 1 for OpenAI, Anthropic and Gemini — sampled.
 *
 * @internal
 */
export const isDeterministic = (request: { readonly temperature?: number | undefined }): boolean => request.temperature === 0

/** What one call does with the cache. @internal */
export type Plan =
  | { readonly _tag: "Skip" }
  | {
    readonly _tag: "Use"
    readonly key: string
    /** Read first (not on `refresh`). */
    readonly read: boolean
    /** How long the answer is stored; `0`: not at all. */
    readonly ttlMs: number
  }

/** What a read found. @internal */
export type Found = { readonly _tag: "Hit"; readonly entry: CachedAnswer } | { readonly _tag: "Miss" }

const MISS: Found = { _tag: "Miss" }
const WARN_EVERY_MS = 10_000
const SKIP: Plan = { _tag: "Skip" }

/** The TTL of a call: its own `ttl` when it gives one (`0` or less, or not a duration: no write). */
const callTtl = (given: Duration.DurationInput | undefined, fallback: number): number => {
  if (given === undefined) return fallback
  const decoded = Duration.decodeUnknown(given)
  if (Option.isNone(decoded)) return 0
  return Math.max(0, Duration.toMillis(decoded.value))
}

/**
 * A client's cache: its store and settings, the key of a call, and reads and writes that never fail.
 * Built by `ResponseCache.make`; the chain takes it as its `cache` option.
 *
 * @internal
 */
export class ResponseCacheCore {
  private readonly requests: (result: string) => ReturnType<typeof Metrics.counter>
  private readonly writes: (result: string) => ReturnType<typeof Metrics.counter>
  /** When the last store failure was logged: one line per `WARN_EVERY_MS` while a store is down, not one per call. */
  private warnedAt = Number.NEGATIVE_INFINITY

  constructor(readonly store: EntryStore, readonly settings: CacheSettings) {
    const tags = { namespace: settings.namespace }
    this.requests = Metrics.counterFamily(
      "llm_cache_requests_total",
      "Chain calls by what the response cache did: hit, miss, rejected (an entry the caller's gate refused), error (the store failed), bypass, refresh, uncacheable",
      tags,
      "result"
    )
    this.writes = Metrics.counterFamily("llm_cache_writes_total", "Accepted answers written to the response cache (stored) or not (error)", tags, "result")
  }

  /**
   * The plan of one call. `request` is the chain's request as the call sends it (a structured call's
   * includes its JSON Schema); `identity` is the chain's part of the key (its routes' models).
   */
  plan(request: Omit<GenerateRequest, "model">, call: CallCache | undefined, identity: unknown): Effect.Effect<Plan> {
    if (call === false) return Effect.as(this.count("bypass"), SKIP)
    const options = call ?? {}
    if (!isDeterministic(request) && !this.settings.nondeterministic && options.nondeterministic !== true) {
      return Effect.as(this.count("uncacheable"), SKIP)
    }
    const read = options.refresh !== true
    const plan: Plan = {
      _tag: "Use",
      key: requestKey(request, { cache: 1, namespace: this.settings.namespace, chain: identity }),
      read,
      ttlMs: callTtl(options.ttl, this.settings.ttlMs)
    }
    return read ? Effect.succeed(plan) : Effect.as(this.count("refresh"), plan)
  }

  /** Reads `key`: a hit, or a miss — when absent, and when the store failed or the entry did not decode (logged). */
  lookup(key: string): Effect.Effect<Found> {
    return Effect.matchEffect(this.store.get(key), {
      onFailure: (why) => Effect.as(Effect.zipRight(this.count("error"), this.warn(`read failed, treated as a miss: ${why}`)), MISS),
      onSuccess: (entry) => Option.isSome(entry) ? Effect.succeed<Found>({ _tag: "Hit", entry: entry.value }) : Effect.as(this.count("miss"), MISS)
    })
  }

  /** Stores an accepted answer; a failed write is logged and counted, never raised. */
  save(key: string, ttlMs: number, entry: CachedAnswer): Effect.Effect<void> {
    if (!(ttlMs > 0)) return Effect.void
    return Effect.matchEffect(this.store.set(key, entry, ttlMs), {
      onFailure: (why) => Effect.zipRight(Metric.increment(this.writes("error")), this.warn(`write failed, answer not stored: ${why}`)),
      onSuccess: () => Metric.increment(this.writes("stored"))
    })
  }

  private warn(message: string): Effect.Effect<void> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (now - this.warnedAt < WARN_EVERY_MS) return Effect.void
      this.warnedAt = now
      return Effect.logWarning(
        `effect-llm-resilience: response cache (${this.settings.namespace}) ${message} (further store failures within ${WARN_EVERY_MS / 1_000} s are only counted, in llm_cache_requests_total / llm_cache_writes_total{result="error"})`
      )
    })
  }

  /** Counts one call's outcome (`hit`, `rejected`, …). */
  count(result: string): Effect.Effect<void> {
    return Metric.increment(this.requests(result))
  }
}

/** Whether a value is a cache made by `ResponseCache.make`. @internal */
export const isResponseCache = (value: unknown): value is ResponseCacheCore => value instanceof ResponseCacheCore

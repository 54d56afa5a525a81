/**
 * `effect-llm-resilience/ResponseCache` — a response cache for the fallback chain, on
 * `@effect/experimental`'s `Persistence`: the same stores Effect applications already run (memory, a
 * `KeyValueStore` — a directory of files, or your own —, Redis through
 * `effect-llm-resilience/redis/ResponseCache` or `@effect/experimental/Persistence/Redis`, any
 * `BackingPersistence`). Needs the optional peer dependency `@effect/experimental` (^0.61); the root
 * entry point never loads it.
 *
 * - **Opt-in per client**: `Fallback.make({ …, cache })` / `LlmClient.layer({ …, cache })` with a cache
 *   from {@link make}. **Per route**: `cache: false` on a route keeps its answers out. **Per call**:
 *   `{ cache: false }` bypasses it, `{ cache: { ttl, nondeterministic, refresh } }` adjusts the call.
 * - **Key**: the canonical hash of the chain's request that request coalescing uses (model parameters,
 *   messages with file bytes by content, system, tools, tool choice, response format — a structured
 *   call's JSON Schema and output name —, metadata; not the idempotency key), the chain's routes'
 *   models and output bounds, and the client's `namespace`.
 * - **Only accepted answers are stored** — never a failure, an `InvalidOutput` or a stream that did not
 *   complete — and **a hit is judged again by the caller's gate** (schema, validator, truncation rule)
 *   before it is served: a stored answer the caller's schema rejects is a miss, and the new answer
 *   replaces it.
 * - **Sampling**: a request with a temperature other than 0 — or none: OpenAI, Anthropic and Gemini
 *   default to 1 — uses the cache only when asked (`nondeterministic`, per client or per call).
 * - **A hit** sends nothing: `ChainResult.cached` is `true`, the attempt history holds one `cached`
 *   record, usage is zero (the original is `cachedUsage`), no spend budget is charged, no breaker or
 *   `DegradedMode` hears of it; `stream` / `streamObject` replay it as the chain's usual events.
 *   Metrics: `llm_cache_requests_total{namespace,result}` and `llm_cache_writes_total{namespace,result}`.
 * - **Never in the way**: a store that fails, or an entry that does not decode (another version, a
 *   corrupt file), is a miss and a skipped write — logged and counted, never a failed call.
 *
 * Put it first and coalesce the misses: the chain reads the cache before it walks its routes, so
 * routes whose providers are wrapped in `Coalesce.provider` share one provider call among identical
 * misses in flight. See docs/caching.md.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { LlmClient } from "effect-llm-resilience"
 * import * as ResponseCache from "effect-llm-resilience/ResponseCache"
 *
 * const Llm = Layer.unwrapScoped(Effect.gen(function*() {
 *   const cache = yield* ResponseCache.make({ ttl: "1 hour", namespace: "triage" })
 *   return LlmClient.layerWithState({ routes, cache })
 * })).pipe(Layer.provide(ResponseCache.layerMemory()))
 *
 * const answer = LlmClient.generate({ messages, maxTokens: 300, temperature: 0 })      // cached
 * const fresh = LlmClient.generate({ messages, maxTokens: 300, temperature: 0 }, { cache: false })
 * ```
 *
 * @since 0.2.0
 */
import * as Persistence from "@effect/experimental/Persistence"
import type { PlatformError } from "@effect/platform/Error"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { InvalidOptions } from "./Errors.js"
import type { CallCacheOptions } from "./Fallback.js"
import * as Internal from "./internal/responseCache.js"

/**
 * A client's response cache: give it to a chain as its `cache` option.
 *
 * @since 0.2.0
 * @category models
 */
export type Cache = Internal.ResponseCacheCore

/**
 * Options of {@link make}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ResponseCacheOptions {
  /** How long an answer stays; a call may set its own. `Duration.infinity`: until the store drops it. Default 1 hour. */
  readonly ttl?: Duration.DurationInput | undefined
  /**
   * Clients with different namespaces never share an entry, whatever the store; clients with the same
   * one and the same routes' models share them. 1–64 characters of `A–Z a–z 0–9 . _ -`. Default `default`.
   */
  readonly namespace?: string | undefined
  /**
   * Also cache requests that sample (a temperature other than 0, or none — the providers' default is
   * 1): a stored sample then stands for every later one. Default false.
   */
  readonly nondeterministic?: boolean | undefined
}

/**
 * Per-call control: `false` bypasses the cache; `{ ttl }`, `{ nondeterministic: true }`,
 * `{ refresh: true }` adjust the call (the same type as the chain's per-call `cache` option).
 *
 * @since 0.2.0
 * @category models
 */
export type CallOptions = CallCacheOptions

/**
 * The defaults.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults = {
  ttl: Internal.defaults.ttl,
  namespace: Internal.defaults.namespace,
  nondeterministic: false,
  /** Entries {@link layerMemory} keeps before it evicts the least recently used. */
  memoryCapacity: 10_000
} as const

/**
 * The key of one entry in a `ResultPersistence` store: its hash is the primary key; the TTL travels
 * with it to the store's `timeToLive`. Entries are `Exit`s of {@link Internal.CachedAnswer}, encoded
 * and decoded with Schema by `Persistence.layerResult`.
 */
class EntryKey extends Schema.TaggedRequest<EntryKey>()("effect-llm-resilience/ResponseCacheEntry", {
  failure: Schema.Never,
  success: Internal.CachedAnswer,
  payload: { key: Schema.String, ttlMs: Schema.Number }
}) {
  [PrimaryKey.symbol](): string {
    return this.key
  }
}

const describe = (error: Persistence.PersistenceError): string => {
  if (error.reason === "ParseError") return `the entry does not decode: ${error.message}`
  const cause = error.cause
  return `${error.method}: ${cause instanceof Error ? cause.message : String(cause)}`
}

/** The core's store over a `ResultPersistence` store. */
const entryStore = (store: Persistence.ResultPersistenceStore): Internal.EntryStore => ({
  get: (key) => {
    const entryKey = new EntryKey({ key, ttlMs: 0 }, true)
    return store.get(entryKey).pipe(
      // Bad input loses nothing: an entry that does not decode is removed (the next answer replaces it anyway).
      Effect.catchAll((error) =>
        Effect.zipRight(
          error.reason === "ParseError" ? Effect.ignore(store.remove(entryKey)) : Effect.void,
          Effect.fail(describe(error))
        )
      ),
      // Only successes are ever written; anything else under the key is not an answer.
      Effect.map(Option.flatMap((exit) => (Exit.isSuccess(exit) ? Option.some(exit.value) : Option.none())))
    )
  },
  set: (key, entry, ttlMs) => Effect.mapError(store.set(new EntryKey({ key, ttlMs }, true), Exit.succeed(entry)), describe)
})

/**
 * A cache over the `ResultPersistence` in context (one of the `layer*` stores below, or your own).
 * Options are checked here (`InvalidOptions` names the bad one). Entries live under the store id
 * `cache:<namespace>`.
 *
 * @example
 * ```ts
 * const cache = yield* ResponseCache.make({ ttl: "30 minutes", namespace: "support-bot" })
 * const chain = yield* Fallback.make({ routes, cache })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options: ResponseCacheOptions = {}
): Effect.Effect<Cache, InvalidOptions, Persistence.ResultPersistence | Scope.Scope> =>
  Effect.gen(function*() {
    const settings = Internal.settingsOf(options, "ResponseCache.make")
    if (settings instanceof InvalidOptions) return yield* Effect.fail(settings)
    const persistence = yield* Persistence.ResultPersistence
    const store = yield* persistence.make({
      storeId: `cache:${settings.namespace}`,
      timeToLive: (key, exit) => (Exit.isSuccess(exit) && key instanceof EntryKey ? Duration.millis(key.ttlMs) : Duration.zero)
    })
    return new Internal.ResponseCacheCore(entryStore(store), settings)
  })

/**
 * Whether a value is a cache made by {@link make}.
 *
 * @since 0.2.0
 * @category guards
 */
export const isCache: (value: unknown) => value is Cache = Internal.isResponseCache

/**
 * A cache as a service, for programs that wire clients from context.
 *
 * @since 0.2.0
 * @category tags
 */
export class ResponseCache extends Context.Tag("effect-llm-resilience/ResponseCache")<ResponseCache, Cache>() {}

/**
 * {@link make} as a layer of the {@link ResponseCache} service, e.g.
 * `Layer.unwrapEffect(Effect.map(ResponseCache.ResponseCache, (cache) => LlmClient.layer({ routes, cache })))`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: ResponseCacheOptions = {}): Layer.Layer<ResponseCache, InvalidOptions, Persistence.ResultPersistence> =>
  Layer.scoped(ResponseCache, make(options))

// ---------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------

/**
 * In process memory, bounded: at most `capacity` entries per namespace, the least recently used
 * evicted first; expiry on the Effect `Clock` (so `TestClock` drives it). `@effect/experimental`'s own
 * `Persistence.layerResultMemory` works too, but never evicts an entry nobody reads again.
 */
const memoryBacking = (capacity: number): Persistence.BackingPersistence => {
  const stores = new Map<string, Map<string, readonly [value: unknown, expires: number | null]>>()
  return Persistence.BackingPersistence.of({
    [Persistence.BackingPersistenceTypeId]: Persistence.BackingPersistenceTypeId,
    make: (storeId) =>
      Effect.map(Effect.clock, (clock) => {
        let entries = stores.get(storeId)
        if (entries === undefined) {
          entries = new Map()
          stores.set(storeId, entries)
        }
        const map = entries
        const read = (key: string): Option.Option<unknown> => {
          const found = map.get(key)
          if (found === undefined) return Option.none()
          map.delete(key)
          if (found[1] !== null && found[1] <= clock.unsafeCurrentTimeMillis()) return Option.none()
          map.set(key, found) // the most recently used go last; eviction takes the first
          return Option.some(found[0])
        }
        const write = (key: string, value: unknown, ttl: Option.Option<Duration.Duration>): void => {
          map.delete(key)
          map.set(key, [value, Persistence.unsafeTtlToExpires(clock, ttl)])
          for (const oldest of map.keys()) {
            if (map.size <= capacity) break
            map.delete(oldest)
          }
        }
        return {
          get: (key) => Effect.sync(() => read(key)),
          getMany: (keys) => Effect.sync(() => keys.map(read)),
          set: (key, value, ttl) => Effect.sync(() => write(key, value, ttl)),
          setMany: (writes) =>
            Effect.sync(() => {
              for (const [key, value, ttl] of writes) write(key, value, ttl)
            }),
          remove: (key) => Effect.sync(() => void map.delete(key)),
          clear: Effect.sync(() => map.clear())
        }
      })
  })
}

/**
 * A store in process memory: at most `capacity` entries per namespace (default 10 000), the least
 * recently used evicted first. Entries are Schema-encoded and decoded like every other store's.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerMemory = (
  options: { readonly capacity?: number | undefined } = {}
): Layer.Layer<Persistence.ResultPersistence, InvalidOptions> => {
  const capacity = options.capacity ?? defaults.memoryCapacity
  if (!(Number.isSafeInteger(capacity) && capacity >= 1)) {
    return Layer.fail(
      new InvalidOptions({ component: "ResponseCache.layerMemory", option: "capacity", message: `capacity must be an integer ≥ 1, got ${String(capacity)}` })
    )
  }
  return Persistence.layerResult.pipe(Layer.provide(Layer.sync(Persistence.BackingPersistence, () => memoryBacking(capacity))))
}

/**
 * A store over the `KeyValueStore` in context (`@effect/platform`): one value per entry, JSON with its
 * expiry (checked on the Effect `Clock` when read; an expired entry is removed then).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerKeyValueStore: Layer.Layer<Persistence.ResultPersistence, never, KeyValueStore.KeyValueStore> =
  Persistence.layerResultKeyValueStore

/**
 * A store of files in `directory` (created if missing): one file per entry, through
 * `KeyValueStore.layerFileSystem`. Survives restarts; shared by processes on one machine (writes are
 * not atomic: a file read while another process writes it, like any torn or foreign file, is a miss).
 * Expired files are removed when read; nothing sweeps the others.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerFileSystem = (directory: string): Layer.Layer<Persistence.ResultPersistence, PlatformError> =>
  layerKeyValueStore.pipe(
    Layer.provide(KeyValueStore.layerFileSystem(directory)),
    Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer))
  )

/**
 * A store over any `BackingPersistence` in context: `@effect/experimental`'s Redis
 * (`Persistence/Redis`) or LMDB layers, or your own.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerBacking: Layer.Layer<Persistence.ResultPersistence, never, Persistence.BackingPersistence> = Persistence.layerResult

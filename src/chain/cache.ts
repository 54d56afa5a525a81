/**
 * The response cache at the chain: a call's plan (bypass, sampled request, key), the read before the
 * walk, the stored answer re-judged by *this* call's gate (its schema and validator, its truncation
 * rule) before it is served, a hit as the chain's result — or as a stream replaying it in the chain's
 * own events —, and the write of an answer the walk accepted. Nothing else is ever written: a failed
 * call ends without an answer, an `InvalidOutput` is an attempt's failure, and a stream writes only on
 * its `Completed` event, which comes after the gate accepted the whole answer.
 *
 * A hit sends nothing, so it reserves and charges no spend budget, gives no breaker a verdict and
 * publishes nothing to `DegradedMode` (a stored answer says nothing about the providers' health now).
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import type { AllRoutesFailed, AttemptRecord } from "../Errors.js"
import type { ChainResult, ChainStreamEvent, Completed } from "../Fallback.js"
import { extend, type Mutable } from "../internal/object.js"
import {
  CACHED_OUTCOME,
  type CachedAnswer,
  type CallCache,
  type Plan,
  type ResponseCacheCore
} from "../internal/responseCache.js"
import { innermostPrices, type PriceTable } from "../internal/spend.js"
import { clockOf } from "../internal/timer.js"
import type { GenerateResponse, StreamEvent } from "../Provider.js"
import { noUsage } from "./attemptLog.js"
import type { Prepare, Previewer } from "./drive.js"
import type { CallSpec } from "./walk.js"

/** What a chain with a cache knows of it, resolved once by `Fallback.make`. */
export interface CacheSite {
  readonly cache: ResponseCacheCore
  /** The chain's part of every key: its routes' models and output bounds, in order. */
  readonly identity: unknown
  /** Routes declared `cache: false`: their answers are served but never stored. */
  readonly unstored: ReadonlySet<string>
  /** The chain's own prices (else the enclosing budget's): a hit then reports `costUsd: 0`. */
  readonly prices: PriceTable | undefined
}

type Use = Extract<Plan, { readonly _tag: "Use" }>

/** Writes an accepted answer (unless its route keeps its answers out of the cache). */
const store = <A>(site: CacheSite, plan: Use, result: ChainResult<A>, clock: Clock.Clock): Effect.Effect<void> => {
  if (plan.ttlMs <= 0 || site.unstored.has(result.route)) return Effect.void
  const { raw: _raw, rateLimit: _rateLimit, ...response } = result.response
  const entry: Mutable<CachedAnswer> = {
    v: 1,
    response,
    route: result.route,
    degraded: result.degraded,
    repaired: result.repaired,
    usage: result.usage,
    storedAt: clock.unsafeCurrentTimeMillis()
  }
  if (result.costUsd !== undefined) entry.costUsd = result.costUsd
  return site.cache.save(plan.key, plan.ttlMs, entry)
}

/** `1.5 s`, `3 min`, `2 h` — how old an entry is, for the history's message. */
const age = (ms: number): string =>
  ms < 1_000 ? `${Math.max(0, Math.round(ms))} ms` : ms < 120_000 ? `${(ms / 1_000).toFixed(1)} s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 3_600_000)} h`

/**
 * The stored answer as this call's result, when this call's gate accepts it; `undefined` (counted as
 * `rejected`) when it does not — a schema that changed under the same key, a validator, a truncated
 * answer a client without `acceptTruncated` refuses. The gate is the one the walk would apply, so a
 * hit can never hand out a value the caller's schema rejects.
 */
const hitOf = <A>(
  site: CacheSite,
  spec: CallSpec<A>,
  entry: CachedAnswer,
  clock: Clock.Clock,
  started: number,
  prices: PriceTable | undefined
): Effect.Effect<ChainResult<A> | undefined> => {
  // What this call consumed is nothing: every usage it reports is zero; the original is `cachedUsage`.
  const response: GenerateResponse = extend(entry.response, { usage: noUsage })
  return Effect.matchEffect(spec.gate(response, extend(spec.request, { model: response.model })), {
    onFailure: () => Effect.as(site.cache.count("rejected"), undefined),
    onSuccess: (accepted) => {
      const now = clock.unsafeCurrentTimeMillis()
      const durationMs = now - started
      const record: Mutable<AttemptRecord> = {
        route: entry.route,
        attempt: 0,
        outcome: CACHED_OUTCOME,
        delayMs: 0,
        durationMs,
        message: `answered from the response cache: stored ${age(now - entry.storedAt)} ago, served then by ${entry.route}`
      }
      if (entry.response.requestId !== undefined) record.requestId = entry.response.requestId
      const result: Mutable<ChainResult<A>> = {
        value: spec.extract(accepted),
        response: accepted,
        route: entry.route,
        degraded: entry.degraded,
        repaired: entry.repaired,
        attempts: [record],
        usage: noUsage,
        durationMs,
        cached: true,
        cachedAt: entry.storedAt,
        cachedUsage: entry.usage
      }
      if (prices !== undefined) result.costUsd = 0
      if (entry.costUsd !== undefined) result.cachedCostUsd = entry.costUsd
      return Effect.as(site.cache.count("hit"), result)
    }
  })
}

/** The call's spec once (the miss runs the same one), or why it cannot be made. */
const once = <A, E>(prepare: Prepare<A, E>) => {
  const spec = prepare()
  return { spec, prepared: (() => spec) as Prepare<A, E> }
}

const pricesOf = (site: CacheSite, fiber: Fiber.RuntimeFiber<unknown, unknown>) => site.prices ?? innermostPrices(fiber)

/** `generate` / `generateObject` with the cache: a hit without a walk, or the walk and the write. */
export const generate = <A, E>(
  site: CacheSite,
  prepare: Prepare<A, E>,
  call: CallCache | undefined,
  run: (prepare: Prepare<A, E>) => Effect.Effect<ChainResult<A>, AllRoutesFailed | E>
): Effect.Effect<ChainResult<A>, AllRoutesFailed | E> =>
  Effect.withFiberRuntime((fiber) => {
    const { prepared, spec } = once(prepare)
    if (Either.isLeft(spec)) return Effect.fail(spec.left)
    return Effect.flatMap(site.cache.plan(spec.right.request, call, site.identity), (plan) => {
      if (plan._tag === "Skip") return run(prepared)
      const clock = clockOf(fiber)
      const miss = Effect.tap(run(prepared), (result) => store(site, plan, result, clock))
      if (!plan.read) return miss
      const started = clock.unsafeCurrentTimeMillis()
      return Effect.flatMap(site.cache.lookup(plan.key), (found) =>
        found._tag === "Miss"
          ? miss
          : Effect.flatMap(hitOf(site, spec.right, found.entry, clock, started, pricesOf(site, fiber)), (hit) => hit === undefined ? miss : Effect.succeed(hit)))
    })
  })

const isCompleted = (event: unknown): event is Completed<unknown> => (event as { readonly _tag?: unknown })._tag === "Completed"

/**
 * A hit as the chain's stream: the answer's metadata, its text as one delta (and its preview), its
 * tool calls, the provider's `Finish` and the chain's `Completed` — the events a live answer ends
 * with, so a consumer needs no second code path (`Completed.result.cached` says where it came from).
 */
const replay = <A, P>(result: ChainResult<A>, previewer: Previewer<P> | undefined): ReadonlyArray<ChainStreamEvent<A> | P> => {
  const response = result.response
  const metadata: Mutable<Extract<StreamEvent, { readonly _tag: "Metadata" }>> = { _tag: "Metadata", model: response.model }
  if (response.id !== undefined) metadata.id = response.id
  if (response.requestId !== undefined) metadata.requestId = response.requestId
  const events: Array<ChainStreamEvent<A> | P> = [metadata]
  if (response.text.length > 0) {
    events.push({ _tag: "TextDelta", text: response.text })
    const preview = previewer?.()(response.text)
    if (preview !== undefined) events.push(preview.event)
  }
  response.toolCalls.forEach((call, index) => {
    events.push({ _tag: "ToolCallDelta", index, id: call.id, name: call.name, argumentsDelta: call.arguments })
  })
  events.push({ _tag: "Finish", response }, { _tag: "Completed", result })
  return events
}

/** `stream` / `streamObject` with the cache: a replayed hit, or the walk, written once it completed. */
export const stream = <A, E, P>(
  site: CacheSite,
  prepare: Prepare<A, E>,
  call: CallCache | undefined,
  run: (prepare: Prepare<A, E>) => Stream.Stream<ChainStreamEvent<A> | P, AllRoutesFailed | E>,
  previewer?: Previewer<P>
): Stream.Stream<ChainStreamEvent<A> | P, AllRoutesFailed | E> =>
  Stream.unwrap(Effect.withFiberRuntime((fiber) => {
    const { prepared, spec } = once(prepare)
    if (Either.isLeft(spec)) return Effect.fail(spec.left)
    return Effect.flatMap(site.cache.plan(spec.right.request, call, site.identity), (plan) => {
      if (plan._tag === "Skip") return Effect.succeed(run(prepared))
      const clock = clockOf(fiber)
      // Only the `Completed` event — after the gate accepted the whole answer — writes; a stream cut,
      // failed or abandoned before it writes nothing.
      const miss = Stream.tap(run(prepared), (event) => isCompleted(event) ? store(site, plan, event.result, clock) : Effect.void)
      if (!plan.read) return Effect.succeed(miss)
      const started = clock.unsafeCurrentTimeMillis()
      return Effect.flatMap(site.cache.lookup(plan.key), (found) =>
        found._tag === "Miss"
          ? Effect.succeed(miss)
          : Effect.map(
            hitOf(site, spec.right, found.entry, clock, started, pricesOf(site, fiber)),
            (hit) => hit === undefined ? miss : Stream.fromIterable(replay(hit, previewer))
          ))
    })
  }))

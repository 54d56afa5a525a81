/**
 * Request coalescing ("single flight"): identical requests in flight at the same moment share one
 * provider call. A burst of 100 callers asking the same question — a cold cache, a retry wave, a
 * dashboard refreshed by everyone at 9:00 — costs one call, not 100.
 *
 * - **Identity**: a canonical hash of the request (model, messages — bytes by content —, tools,
 *   parameters, response format, metadata; not the per-attempt idempotency key). Object key order
 *   does not matter.
 * - **Only while in flight**: the first caller starts the shared call; callers arriving before it ends
 *   join it; the next one after it ended starts a new one (a response cache, `ResponseCache`, is a
 *   separate, explicit choice: a chain reads it first and coalesced routes share its misses).
 * - **Each caller keeps its own deadline and interruption**: the shared call runs in the coalescer's
 *   scope, not in any caller's fiber, and without a caller's deadline; each caller waits under its own
 *   (failing with `DeadlineExceeded` when it passes) and may be interrupted alone. The shared call is
 *   interrupted only when no caller waits for it any more.
 * - **Everyone gets the same outcome**: the answer, or the same typed failure.
 * - **Per spend budget**: the shared call runs under the spend budgets (`Spend.within`) of the caller
 *   who started it, so only callers under the same set of budgets share it — a tenant's budget
 *   never pays for, nor refuses, another tenant's call.
 *
 * Put it outermost — over a policy-wrapped provider or a chain, so that one group of identical calls is
 * one retry loop and one breaker verdict, not one per caller. Because the shared call runs without the
 * callers' deadlines, a policy under it cannot shorten its waits to them: a `Retry-After` longer than a
 * caller's deadline is waited out by the shared call while that caller fails with `DeadlineExceeded`
 * (action `stop`) — give the policy or the chain its own `deadline` option when that matters. The shared
 * call also inherits the first caller's context (its span, log annotations). Streams are not coalesced
 * (a caller joining late would miss the start of the stream); `stream` passes through.
 *
 * @example
 * ```ts
 * const llm = Coalesce.provider(coalescer, yield* Policy.apply(Policy.default, openai, "openai"))
 * ```
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Deadline from "./Deadline.js"
import type { RouteError } from "./Errors.js"
import { requestKey } from "./internal/requestKey.js"
import * as Spend from "./internal/spend.js"
import { type GenerateRequest, Provider, type ProviderShape } from "./Provider.js"

/**
 * Shares in-flight work by key.
 *
 * @since 0.2.0
 * @category models
 */
export interface Coalescer {
  /**
   * Runs `effect` for `key`, or joins the run of `key` already in flight. The shared run is
   * interrupted when every caller waiting for it has left.
   */
  readonly run: <A, E>(key: string, effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
  /** Keys with a shared run in flight now. */
  readonly inFlight: Effect.Effect<number>
}

interface Entry {
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  waiters: number
}

/**
 * A coalescer whose shared runs live in the current scope (closing it interrupts them).
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: Effect.Effect<Coalescer, never, Scope.Scope> = Effect.map(Effect.scope, (scope) => {
  const entries = new Map<string, Entry>()

  const start = (key: string, effect: Effect.Effect<unknown, unknown>): Effect.Effect<Entry> =>
    // Forked from an uninterruptible region: the shared run itself must stay interruptible.
    Effect.map(Effect.forkIn(Effect.interruptible(effect), scope), (fiber) => {
      const entry: Entry = { fiber, waiters: 0 }
      entries.set(key, entry)
      // Done: later callers start afresh (this is coalescing, not caching).
      fiber.addObserver(() => {
        if (entries.get(key) === entry) entries.delete(key)
      })
      return entry
    })

  const leave = (key: string, entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      entry.waiters--
      if (entry.waiters > 0) return Effect.void
      if (entries.get(key) === entry) entries.delete(key)
      // Nobody waits any more: stop the shared run (without waiting for it to wind down).
      return Effect.asVoid(Fiber.interruptFork(entry.fiber))
    })

  const run = <A, E>(key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    // Joining and leaving are uninterruptible steps; only the wait itself is interruptible.
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.suspend(() => {
          const existing = entries.get(key)
          return existing !== undefined && existing.fiber.unsafePoll() === null ? Effect.succeed(existing) : start(key, effect)
        }),
        (entry) => {
          entry.waiters++
          return Effect.ensuring(restore(Fiber.join(entry.fiber as Fiber.Fiber<A, E>)), leave(key, entry))
        }
      )
    )

  return { run, inFlight: Effect.sync(() => entries.size) }
})

/**
 * Waits for `shared` under the caller's own deadline (if it has one), failing with `DeadlineExceeded`
 * when it passes.
 */
const underOwnDeadline = <A, E>(shared: Effect.Effect<A, E>, site: { readonly provider: string; readonly model: string }): Effect.Effect<A, E | RouteError> =>
  Effect.flatMap(FiberRef.get(Deadline.currentDeadline), (deadline) =>
    Option.isNone(deadline) ? shared : Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const exceeded = () => Deadline.exceeded({ ...site, route: "*", attempt: 0 }, deadline.value)
      // Already past: fail without starting (or joining) anything.
      if (deadline.value <= now) return Effect.fail(exceeded())
      return Effect.timeoutFail(shared, { duration: deadline.value - now, onTimeout: exceeded })
    }))

/**
 * `provider` with identical `generate` calls in flight coalesced (`stream` passes through).
 *
 * @since 0.2.0
 * @category combinators
 */
export const provider = <E extends RouteError>(coalescer: Coalescer, inner: ProviderShape<E>): ProviderShape<E | RouteError> => {
  // Keys are scoped to this wrapper: one coalescer over two providers never hands one's answer to the other.
  const scope = `${inner.name}#${++wrappers}`
  return {
    name: inner.name,
    stream: inner.stream,
    generate: (request: GenerateRequest) =>
      underOwnDeadline(
        Effect.flatMap(FiberRef.get(Spend.currentBudgets), (budgets) =>
          coalescer.run(
            // Callers under different spend budgets never share a call: the shared call runs under
            // the first caller's budgets, so sharing would charge (or refuse) one tenant for another.
            requestKey(request, budgets.length === 0 ? scope : `${scope}|spend:${Spend.budgetsKey(budgets)}`),
            // The shared call carries no caller's deadline: each caller enforces its own while it waits.
            Effect.locally(inner.generate(request), Deadline.currentDeadline, Option.none())
          )),
        { provider: inner.name, model: request.model }
      )
  }
}

let wrappers = 0

/**
 * Coalesces the `Provider` in context (a layer over it), e.g.
 * `Coalesce.layer.pipe(Layer.provide(Policy.layer(policy, "openai")))`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: Layer.Layer<Provider, never, Provider> = Layer.scoped(
  Provider,
  Effect.zipWith(Provider, make, (inner, coalescer) => provider(coalescer, inner))
)

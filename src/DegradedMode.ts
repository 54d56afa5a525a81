/**
 * Whether the system is running degraded: answers are coming from a fallback route, or only after a
 * repair. Published by the fallback chain after every call; read by anything that should behave more
 * carefully while degraded (durable agents refuse irreversible tools, dashboards show a banner).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SubscriptionRef from "effect/SubscriptionRef"

/**
 * The current state.
 *
 * @since 0.1.0
 * @category models
 */
export interface DegradedState {
  readonly degraded: boolean
  /** The route that served the last answer. */
  readonly route?: string | undefined
  /** Why the system is degraded (which route failed, or that a repair was needed). */
  readonly reason?: string | undefined
  /** Clock time (ms) of the last change. */
  readonly since?: number | undefined
}

/**
 * The service: a `SubscriptionRef`, so consumers can read it or follow its changes.
 *
 * @since 0.1.0
 * @category tags
 */
export class DegradedMode extends Context.Tag("effect-llm-resilience/DegradedMode")<
  DegradedMode,
  SubscriptionRef.SubscriptionRef<DegradedState>
>() {}

/**
 * A fresh state, starting healthy.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<SubscriptionRef.SubscriptionRef<DegradedState>> = SubscriptionRef.make<DegradedState>({ degraded: false })

/**
 * A layer starting healthy.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DegradedMode> = Layer.effect(DegradedMode, make)

/**
 * Whether the system is degraded right now (false when no `DegradedMode` is provided).
 *
 * @since 0.1.0
 * @category getters
 */
export const isDegraded: Effect.Effect<boolean> = Effect.flatMap(
  Effect.serviceOption(DegradedMode),
  (ref) => ref._tag === "None" ? Effect.succeed(false) : Effect.map(SubscriptionRef.get(ref.value), (s) => s.degraded)
)

/**
 * Records the outcome of a call (only changes — and so only notifies — when the state flips or the
 * serving route changes). The fallback chain calls it after every call; a no-op without the service.
 *
 * @since 0.1.0
 * @category combinators
 */
export const publish = (next: Omit<DegradedState, "since">, now: number): Effect.Effect<void> =>
  Effect.flatMap(Effect.serviceOption(DegradedMode), (ref) =>
    ref._tag === "None"
      ? Effect.void
      : Effect.flatMap(SubscriptionRef.get(ref.value), (current) =>
        current.degraded === next.degraded && current.route === next.route
          ? Effect.void
          : SubscriptionRef.set(ref.value, { ...next, since: now })))

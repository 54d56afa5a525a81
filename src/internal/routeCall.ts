/**
 * The protocol between a policy-wrapped provider and the fallback chain above it.
 *
 * A chain call has a deadline, an output gate and an attempt log of its own. Handing them down through
 * `FiberRef`s costs an `Effect.locally` each — a runtime-flags change, two fiber-ref map copies and an
 * exit handler per call, the largest share of a chain call's overhead once measured. A route built by
 * `Policy.apply` therefore also takes them as plain arguments; the chain finds that entry point here.
 * Callers outside the chain keep the public `Provider` interface and the `FiberRef`s
 * (`Deadline.currentDeadline`, `Policy.currentAcceptor`), which the same entry point reads when no
 * context is given.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import type { RouteError } from "../Errors.js"
import type { Acceptor } from "../Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape, StreamEvent } from "../Provider.js"
import type { AttemptObserver } from "../Retry.js"

/** One call's context. */
export interface RouteCall {
  /** The call's deadline (absolute, on Effect's `Clock`); the tighter of it and the fiber's is honoured. */
  readonly deadline?: number | undefined
  /** The output gate every attempt's response must pass (replaces `Policy.currentAcceptor`). */
  readonly acceptor?: Acceptor | undefined
  /** Hears about every finished attempt of this call, before the policy's own observer. */
  readonly observe?: AttemptObserver | undefined
}

/** A policy-wrapped provider's entry points with an explicit call context. */
export interface RouteProvider {
  readonly generate: (request: GenerateRequest, call: RouteCall) => Effect.Effect<GenerateResponse, RouteError>
  /** Streams take only the observer: their deadline bounds the consumer too, and stays in the fiber ref. */
  readonly stream: (
    request: GenerateRequest,
    call: Pick<RouteCall, "observe">
  ) => Stream.Stream<StreamEvent, RouteError>
}

const registry = new WeakMap<ProviderShape, RouteProvider>()

/** Called by `Policy.apply` for the provider it returns. */
export const register = (provider: ProviderShape, route: RouteProvider): void => {
  registry.set(provider, route)
}

/** The explicit entry points of a provider built by `Policy.apply`, or `undefined` for any other. */
export const lookup = (provider: ProviderShape): RouteProvider | undefined => registry.get(provider)

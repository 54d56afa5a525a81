/**
 * The client an application talks to: a fallback chain of policy-wrapped routes, as a service.
 *
 * ```ts
 * const answer = yield* LlmClient.generateObject(Answer, { messages, maxTokens: 500 })
 * yield* LlmClient.stream({ messages, maxTokens: 500 }).pipe(
 *   Stream.runForEach((event) => event._tag === "TextDelta" ? Console.log(event.text) : Effect.void)
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as DegradedMode from "./DegradedMode.js"
import type { AllRoutesFailed, InvalidOptions } from "./Errors.js"
import * as Fallback from "./Fallback.js"
import * as Policy from "./Policy.js"

/**
 * The service: a {@link Fallback.Chain}.
 *
 * @since 0.1.0
 * @category tags
 */
export class LlmClient extends Context.Tag("effect-llm-resilience/LlmClient")<LlmClient, Fallback.Chain>() {}

/**
 * Builds the client's chain (the same as {@link Fallback.make}), for providing the service by hand.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: Fallback.FallbackOptions
) => Effect.Effect<Fallback.Chain, InvalidOptions, Policy.PolicyState> = Fallback.make

/**
 * A client over the given routes (the chain is built by {@link Fallback.make}). Requires the policy state (breakers, limiters, budgets) so that
 * several clients over the same routes share it; see {@link layerWithState}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Fallback.FallbackOptions): Layer.Layer<LlmClient, InvalidOptions, Policy.PolicyState> =>
  Layer.effect(LlmClient, make(options))

/**
 * A client with its own policy state and `DegradedMode` (both also exposed to the rest of the program).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithState = (
  options: Fallback.FallbackOptions
): Layer.Layer<LlmClient | Policy.PolicyState | DegradedMode.DegradedMode, InvalidOptions> =>
  layer(options).pipe(Layer.provideMerge(Layer.merge(Policy.layerState, DegradedMode.layer)))

/**
 * The chain in the fiber's context, read synchronously: what `Effect.flatMap(LlmClient, f)` does in
 * three effect steps (a missing service is the same defect).
 */
const clientOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Fallback.Chain =>
  Context.unsafeGet(fiber.currentContext, LlmClient)

/**
 * Generates text through the chain.
 *
 * @since 0.1.0
 * @category accessors
 */
export const generate = (
  request: Fallback.ChainRequest,
  options?: Fallback.GenerateOptions
): Effect.Effect<Fallback.ChainResult<string>, AllRoutesFailed, LlmClient> =>
  Effect.withFiberRuntime((fiber) => clientOf(fiber).generate(request, options))

/**
 * Generates a value that decodes with `schema` through the chain.
 *
 * @since 0.1.0
 * @category accessors
 */
export const generateObject = <A, I>(
  schema: Schema.Schema<A, I>,
  request: Fallback.ChainRequest,
  options?: Fallback.ObjectOptions<A>
): Effect.Effect<Fallback.ChainResult<A>, AllRoutesFailed | InvalidOptions, LlmClient> =>
  Effect.withFiberRuntime((fiber) => clientOf(fiber).generateObject(schema, request, options))

/**
 * Streams through the chain: the serving route's events, a `Restarted` event when the opt-in restart
 * mode re-runs the request after partial output, and a final `Completed` event with the result
 * metadata (route, degraded flag, attempts, usage).
 *
 * @since 0.1.0
 * @category accessors
 */
export const stream = (
  request: Fallback.ChainRequest,
  options?: Fallback.StreamOptions
): Stream.Stream<Fallback.ChainStreamEvent, AllRoutesFailed, LlmClient> =>
  Stream.unwrap(Effect.map(LlmClient, (client) => client.stream(request, options)))

/**
 * Streams a value that decodes with `schema` through the chain: text deltas and `PartialObject`
 * previews as the answer arrives, then `Completed` with the decoded value. The whole answer passes the
 * same gate as {@link generateObject} before the stream completes.
 *
 * @since 0.2.0
 * @category accessors
 */
export const streamObject = <A, I>(
  schema: Schema.Schema<A, I>,
  request: Fallback.ChainRequest,
  options?: Fallback.ObjectOptions<A> & Fallback.StreamOptions
): Stream.Stream<Fallback.ObjectStreamEvent<A>, AllRoutesFailed | InvalidOptions, LlmClient> =>
  Stream.unwrap(Effect.map(LlmClient, (client) => client.streamObject(schema, request, options)))

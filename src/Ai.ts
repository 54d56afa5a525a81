/**
 * `@effect/ai` both ways (`effect-llm-resilience/ai`; `@effect/ai` 0.37 is an optional peer).
 *
 * - **The chain as a `LanguageModel`** ({@link layer}): an unchanged @effect/ai program —
 *   `LanguageModel.generateText` / `generateObject` / `streamText`, `Toolkit` handlers, `Chat` — gains
 *   retries, timeouts, breakers, rate limits, the schema gate with repair, and fallback by swapping one
 *   Layer. The route, degraded flag and attempt history ride on every answer ({@link resilienceOf});
 *   a failure is an `AiError` whose `cause` is the chain's typed failure ({@link failureOf}).
 * - **Any @effect/ai model as a route** ({@link route}, {@link provider}, {@link providerFrom}): its
 *   `AiError`s are classified like our own adapters' wire failures — real status, headers and body —
 *   and an error inside a 200 stream fails the stream with its typed error.
 *
 * docs/effect-ai.md has the error mapping both ways and a side-by-side with `ExecutionPlan`.
 *
 * @since 0.2.0
 */
import type * as AiError from "@effect/ai/AiError"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as errors from "./ai/errors.js"
import * as languageModel from "./ai/languageModel.js"
import * as metadata from "./ai/metadata.js"
import * as routes from "./ai/route.js"
import type { CallSite } from "./Classify.js"
import type * as DegradedMode from "./DegradedMode.js"
import type { AllRoutesFailed, InvalidOptions, ProviderError } from "./Errors.js"
import type * as Fallback from "./Fallback.js"
import type { LlmClient } from "./LlmClient.js"
import type * as Policy from "./Policy.js"
import type { ProviderShape } from "./Provider.js"

// ---------------------------------------------------------------------------------------------------
// The chain as a LanguageModel
// ---------------------------------------------------------------------------------------------------

/**
 * Sampling and size settings of the chain's requests, which @effect/ai leaves to each provider's
 * config: `maxTokens` (default 4096, each route's own `maxTokens` still caps it), `temperature`,
 * `topP`, `stop`, `metadata`.
 *
 * @since 0.2.0
 * @category models
 */
export type RequestSettings = languageModel.RequestSettings

/**
 * {@link layer}'s options: the chain's (`Fallback.FallbackOptions`) plus `defaults`, the
 * {@link RequestSettings} every call starts from.
 *
 * @since 0.2.0
 * @category models
 */
export type LanguageModelOptions = languageModel.LanguageModelOptions

/**
 * Per-call overrides of the layer's request settings: provide it around one @effect/ai call
 * (`Effect.provideService(Ai.CurrentRequestSettings, { maxTokens: 200 })`).
 *
 * @since 0.2.0
 * @category context
 */
export const CurrentRequestSettings: typeof languageModel.CurrentRequestSettings = languageModel.CurrentRequestSettings

/**
 * The fallback chain as an @effect/ai `LanguageModel` Layer. Options are the chain's (checked when the
 * layer is built, failing with `InvalidOptions`) plus `defaults` for every request. The breaker,
 * limiter and budget state comes from `Policy.PolicyState`; see {@link layerWithState}.
 *
 * @example
 * ```ts
 * import { LanguageModel } from "@effect/ai"
 * import { Effect, Layer, Redacted } from "effect"
 * import { Anthropic, OpenAiResponses, Policy, Transport } from "effect-llm-resilience"
 * import * as Ai from "effect-llm-resilience/ai"
 *
 * // The @effect/ai program, unchanged.
 * const program = LanguageModel.generateText({ prompt: "Say hello." })
 *
 * const ResilientModel = Layer.unwrapEffect(Effect.gen(function*() {
 *   const openai = yield* OpenAiResponses.make({ apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") })
 *   const anthropic = yield* Anthropic.make({ apiKey: Redacted.make(process.env.ANTHROPIC_API_KEY ?? "") })
 *   return Ai.layer({
 *     routes: [
 *       { name: "primary", provider: openai, model: "gpt-4o-mini" },
 *       { name: "fallback", provider: anthropic, model: "claude-haiku-4-5" }
 *     ],
 *     deadline: "30 seconds",
 *     defaults: { maxTokens: 1024 }
 *   })
 * })).pipe(Layer.provide(Layer.merge(Policy.layerState, Transport.layer())))
 *
 * program.pipe(Effect.provide(ResilientModel))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: (
  options: LanguageModelOptions
) => Layer.Layer<LanguageModel.LanguageModel, InvalidOptions, Policy.PolicyState> = languageModel.layer

/**
 * {@link layer} with its own policy state and `DegradedMode`, both also exposed to the program.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerWithState: (
  options: LanguageModelOptions
) => Layer.Layer<LanguageModel.LanguageModel | Policy.PolicyState | DegradedMode.DegradedMode, InvalidOptions> =
  languageModel.layerWithState

/**
 * The `LanguageModel` over the `LlmClient` already in the program (one chain, two front doors).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerFromClient: (
  defaults?: RequestSettings
) => Layer.Layer<LanguageModel.LanguageModel, InvalidOptions, LlmClient> = languageModel.layerFromClient

/**
 * A `LanguageModel` service over a chain built by hand (`Fallback.make`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromChain: (chain: Fallback.Chain, defaults?: RequestSettings) => Effect.Effect<LanguageModel.Service> =
  languageModel.fromChain

/**
 * The chain's outcome of one call, as it rides on the answer's finish part: `route`, `degraded`,
 * `repaired`, `attempts` (every attempt on every route), `usage` (summed over every attempt),
 * `durationMs`, and the serving `provider`, `model` and `requestId`.
 *
 * @since 0.2.0
 * @category models
 */
export type Resilience = metadata.Resilience

/**
 * The Schema of {@link Resilience}: the metadata is plain JSON-safe data, decodable after it was stored.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Resilience: typeof metadata.Resilience = metadata.Resilience

/**
 * The provider-metadata key under which the finish part carries the {@link Resilience}.
 *
 * @since 0.2.0
 * @category models
 */
export const METADATA_KEY: typeof metadata.METADATA_KEY = metadata.METADATA_KEY

/**
 * What {@link resilienceOf} reads: a response (`{ content }`), its parts (or a stream's), or a finish part.
 *
 * @since 0.2.0
 * @category models
 */
export type ResilienceSource = metadata.ResilienceSource

/**
 * The route, degraded flag and attempt history of an answer served by the chain's LanguageModel: from
 * a `GenerateTextResponse` / `GenerateObjectResponse`, its parts, the parts of a stream, or the finish
 * part. `None` for an answer that did not come through the chain.
 *
 * @example
 * ```ts
 * import { LanguageModel } from "@effect/ai"
 * import { Effect, Option } from "effect"
 * import * as Ai from "effect-llm-resilience/ai"
 *
 * const answer = Effect.gen(function*() {
 *   const response = yield* LanguageModel.generateText({ prompt: "Say hello." })
 *   const outcome = Ai.resilienceOf(response)
 *   if (Option.isSome(outcome) && outcome.value.degraded) {
 *     yield* Effect.logWarning(`served by ${outcome.value.route} after ${outcome.value.attempts.length} attempts`)
 *   }
 *   return response.text
 * })
 * ```
 *
 * @since 0.2.0
 * @category getters
 */
export const resilienceOf: (source: ResilienceSource) => Option.Option<Resilience> = metadata.resilienceOf

/**
 * The chain's typed failure behind an `AiError` raised by the chain's LanguageModel: `AllRoutesFailed`
 * (`reason`, `lastError`, every attempt) or `InvalidOptions`. The AiError variant is chosen by the
 * failure that ended the call (docs/effect-ai.md); this is the exact failure underneath.
 *
 * @example
 * ```ts
 * import { LanguageModel } from "@effect/ai"
 * import { Effect, Option } from "effect"
 * import * as Ai from "effect-llm-resilience/ai"
 *
 * const program = LanguageModel.generateText({ prompt: "Say hello." }).pipe(
 *   Effect.tapError((error) => {
 *     const failure = Ai.failureOf(error)
 *     return Option.isSome(failure) && failure.value._tag === "AllRoutesFailed"
 *       ? Effect.logError(failure.value.reason, failure.value.attempts.map((a) => `${a.route} ${a.outcome}`))
 *       : Effect.void
 *   })
 * )
 * ```
 *
 * @since 0.2.0
 * @category getters
 */
export const failureOf: (error: unknown) => Option.Option<AllRoutesFailed | InvalidOptions> = errors.failureOf

/**
 * The `AiError` the chain's LanguageModel raises for a chain failure (exported for callers that run the
 * chain themselves and answer in @effect/ai's terms). `method` names the @effect/ai method.
 *
 * @since 0.2.0
 * @category conversions
 */
export const toAiError: (failure: AllRoutesFailed | InvalidOptions, method: string) => AiError.AiError = errors.toAiError

// ---------------------------------------------------------------------------------------------------
// @effect/ai models as routes
// ---------------------------------------------------------------------------------------------------

/**
 * Applies per-request settings around one call of a wrapped @effect/ai model — the settings @effect/ai
 * keeps in each provider's config (`max_output_tokens`, `temperature`, the model id), e.g.
 * `(request) => OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.maxTokens })`.
 *
 * @since 0.2.0
 * @category models
 */
export type Configure = routes.Configure

/**
 * Options of {@link providerFrom} and {@link provider}: `providerName` (the label in errors and
 * metrics; default the model's `ProviderName`, else `effect-ai`) and `configure`.
 *
 * @since 0.2.0
 * @category models
 */
export type ProviderFromOptions = routes.ProviderFromOptions

/**
 * Options of {@link route}: a chain route (`name`, `model`, `policy`, `contextWindow`, …) whose provider
 * is `languageModel`, an @effect/ai model Layer, plus {@link ProviderFromOptions}.
 *
 * @since 0.2.0
 * @category models
 */
export type RouteOptions<E, R> = routes.RouteOptions<E, R>

/**
 * A chain route over an @effect/ai model Layer, built once in the current scope. Its failures are
 * classified into the `ProviderError` union from the real HTTP response; the route's policy is the only
 * retry layer (@effect/ai's OpenAI and Anthropic clients do not retry unless a `transformClient` adds it
 * — leave it out).
 *
 * @example
 * ```ts
 * import { AnthropicClient, AnthropicLanguageModel } from "@effect/ai-anthropic"
 * import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
 * import { Effect, Layer, Redacted } from "effect"
 * import { Fallback, Transport } from "effect-llm-resilience"
 * import * as Ai from "effect-llm-resilience/ai"
 *
 * const chain = Effect.gen(function*() {
 *   const primary = yield* Ai.route({
 *     name: "primary",
 *     model: "gpt-4o-mini",
 *     languageModel: OpenAiLanguageModel.model("gpt-4o-mini").pipe(
 *       Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") }))
 *     ),
 *     configure: (request) => OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.maxTokens })
 *   })
 *   const fallback = yield* Ai.route({
 *     name: "fallback",
 *     model: "claude-haiku-4-5",
 *     languageModel: AnthropicLanguageModel.model("claude-haiku-4-5").pipe(
 *       Layer.provide(AnthropicClient.layer({ apiKey: Redacted.make(process.env.ANTHROPIC_API_KEY ?? "") }))
 *     ),
 *     configure: (request) => AnthropicLanguageModel.withConfigOverride({ max_tokens: request.maxTokens })
 *   })
 *   return yield* Fallback.make({ routes: [primary, fallback], deadline: "30 seconds" })
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const route: <E, R>(options: RouteOptions<E, R>) => Effect.Effect<Fallback.Route, E, R | Scope.Scope> = routes.route

/**
 * A provider over an @effect/ai model Layer (built once in the current scope), for a route built by
 * hand or for `Policy.route`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const provider: <E, R>(
  languageModel: Layer.Layer<LanguageModel.LanguageModel, E, R>,
  options?: ProviderFromOptions
) => Effect.Effect<ProviderShape<ProviderError>, E, R | Scope.Scope> = routes.provider

/**
 * A provider over an @effect/ai `LanguageModel` service already built.
 *
 * @since 0.2.0
 * @category constructors
 */
export const providerFrom: (model: LanguageModel.Service, options?: ProviderFromOptions) => ProviderShape<ProviderError> =
  routes.providerFrom

/**
 * Classifies an `AiError` into the `ProviderError` union the way a route over @effect/ai does
 * (`now`: epoch ms from Effect's `Clock`, for HTTP-date Retry-After). The table is in docs/effect-ai.md.
 *
 * @since 0.2.0
 * @category conversions
 */
export const fromAiError: (error: AiError.AiError, site: CallSite, now: number) => ProviderError = errors.toProviderError

/**
 * The chain as an @effect/ai `LanguageModel`: an unchanged @effect/ai program (`generateText`,
 * `generateObject`, `streamText`, `Toolkit` handlers, `Chat`) runs on the fallback chain — retries,
 * timeouts, breakers, rate limits, schema gate, repair and fallback — by swapping one Layer.
 *
 * @effect/ai's `LanguageModel.make` keeps doing what it does for every provider (tool-call
 * resolution with the toolkit's handlers, decoding, spans); this module is the provider underneath
 * it, with the chain where an HTTP client would be. What the chain adds travels with the answer: the
 * finish part's metadata carries the route, degraded flag and attempt history, and a failure's AiError
 * carries the chain's typed failure as its `cause`.
 *
 * @internal
 */
import type * as AiError from "@effect/ai/AiError"
import type { IdGenerator } from "@effect/ai/IdGenerator"
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as DegradedMode from "../DegradedMode.js"
import { InvalidOptions } from "../Errors.js"
import * as Fallback from "../Fallback.js"
import { opt } from "../internal/json.js"
import { LlmClient } from "../LlmClient.js"
import * as Policy from "../Policy.js"
import type { FinishReason, GenerateResponse, StreamEvent, Usage } from "../Provider.js"
import { MODULE, toAiError } from "./errors.js"
import { markChainBacked, METADATA_KEY, resilienceOfResult } from "./metadata.js"
import { messagesFromPrompt, parseArguments, toolChoiceFrom, toolDefinitionsFrom } from "./prompt.js"

// ---------------------------------------------------------------------------------------------------
// Request settings @effect/ai has no words for
// ---------------------------------------------------------------------------------------------------

/**
 * Sampling and size settings. @effect/ai leaves them to each provider's config (e.g.
 * `OpenAiLanguageModel.withConfigOverride`); the chain needs them in its request, because every route
 * receives the same request and `maxTokens` bounds both cost and the context-window pre-flight.
 */
export interface RequestSettings {
  /** Output token bound of every call (each route's own `maxTokens` still caps it). Default 4096. */
  readonly maxTokens?: number | undefined
  readonly temperature?: number | undefined
  readonly topP?: number | undefined
  readonly stop?: ReadonlyArray<string> | undefined
  /** Labels sent as provider metadata where the wire supports it, and put on spans. */
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

/** The output bound when nothing else says: @effect/ai-anthropic's own default. */
const DEFAULT_MAX_TOKENS = 4096

/**
 * Per-call overrides of the layer's {@link RequestSettings}, read from the context of each call so an
 * @effect/ai program can change them around one call without touching the layer.
 */
export class CurrentRequestSettings extends Context.Reference<CurrentRequestSettings>()(
  "effect-llm-resilience/ai/CurrentRequestSettings",
  { defaultValue: (): RequestSettings => ({}) }
) {}

/** Why settings cannot be used, or `undefined`. Checked where the layer is built, not per call. */
const settingsProblem = (settings: RequestSettings, component: string): InvalidOptions | undefined => {
  const { maxTokens } = settings
  if (maxTokens !== undefined && !(Number.isSafeInteger(maxTokens) && maxTokens >= 1)) {
    return new InvalidOptions({ component, option: "defaults.maxTokens", message: `defaults.maxTokens must be an integer ≥ 1, got ${String(maxTokens)}` })
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// @effect/ai provider options → chain request
// ---------------------------------------------------------------------------------------------------

/** What the chain cannot carry, as the chain's own typed failure (the AiError's cause) naming the option. */
const malformedInput = (method: string, option: "prompt" | "toolkit", description: string): AiError.AiError =>
  toAiError(new InvalidOptions({ component: `LanguageModel.${method} (${MODULE})`, option, message: description }), method)

/** The chain request for one @effect/ai call, or a `MalformedInput` naming what cannot be carried. */
const chainRequestOf = (
  options: LanguageModel.ProviderOptions,
  settings: RequestSettings,
  method: string
): Either.Either<Fallback.ChainRequest, AiError.AiError> => {
  const messages = messagesFromPrompt(options.prompt)
  if (Either.isLeft(messages)) return Either.left(malformedInput(method, "prompt", messages.left))
  const tools = toolDefinitionsFrom(options.tools)
  if (Either.isLeft(tools)) return Either.left(malformedInput(method, "toolkit", tools.left))
  const offersTools = tools.right.length > 0
  return Either.right({
    messages: messages.right,
    maxTokens: settings.maxTokens ?? DEFAULT_MAX_TOKENS,
    ...opt("temperature", settings.temperature),
    ...opt("topP", settings.topP),
    ...opt("stop", settings.stop),
    ...opt("metadata", settings.metadata),
    ...(offersTools ? { tools: tools.right, toolChoice: toolChoiceFrom(options.toolChoice) } : {})
  })
}

// ---------------------------------------------------------------------------------------------------
// chain result → @effect/ai response parts
// ---------------------------------------------------------------------------------------------------

const FINISH_REASONS: { readonly [K in FinishReason]: Response.FinishReason } = {
  stop: "stop",
  length: "length",
  tool_calls: "tool-calls",
  content_filter: "content-filter",
  refusal: "content-filter",
  other: "other"
}

const usagePart = (usage: Usage): typeof Response.Usage.Encoded => ({
  inputTokens: usage.inputTokens,
  outputTokens: usage.outputTokens,
  totalTokens: usage.totalTokens
})

/** The finish part: the served answer's reason and usage, and the chain's outcome as metadata. */
const finishPart = (result: Fallback.ChainResult<unknown>): Response.FinishPartEncoded => ({
  type: "finish",
  reason: FINISH_REASONS[result.response.finishReason],
  usage: usagePart(result.response.usage),
  metadata: { [METADATA_KEY]: resilienceOfResult(result) }
})

const metadataPart = (response: GenerateResponse): Response.ResponseMetadataPartEncoded => ({
  type: "response-metadata",
  modelId: response.model,
  ...opt("id", response.id)
})

const toolCallParts = (response: GenerateResponse): Array<Response.ToolCallPartEncoded> =>
  response.toolCalls.map((call) => ({
    type: "tool-call",
    id: call.id,
    name: call.name,
    params: parseArguments(call.arguments),
    providerExecuted: false
  }))

/** A whole answer as @effect/ai parts; `text` is the answer's text as @effect/ai should read it. */
const responseParts = (result: Fallback.ChainResult<unknown>, text: string): Array<Response.PartEncoded> => [
  metadataPart(result.response),
  ...(text.length > 0 ? [{ type: "text" as const, text }] : []),
  ...toolCallParts(result.response),
  finishPart(result)
]

/** Puts the outcome on the @effect/ai span, so a trace shows which route answered. */
const annotateSpan = (options: LanguageModel.ProviderOptions, result: Fallback.ChainResult<unknown>): void => {
  options.span.attribute("llm_resilience.route", result.route)
  options.span.attribute("llm_resilience.degraded", result.degraded)
  options.span.attribute("llm_resilience.attempts", result.attempts.length)
  if (result.cached === true) options.span.attribute("llm_resilience.cached", true)
}

/**
 * The decoded value as canonical JSON text. @effect/ai decodes the text part again after the chain's
 * gate accepted it; the gate tolerates what the model wraps JSON in (a Markdown fence), @effect/ai's
 * `parseJson` does not — so it is given the value re-encoded, which it decodes to the same value.
 */
const canonicalJson = (schema: Schema.Schema<unknown, unknown>, result: Fallback.ChainResult<unknown>) =>
  Effect.match(Schema.encodeUnknown(schema)(result.value), {
    onFailure: () => result.response.text,
    onSuccess: (encoded) => JSON.stringify(encoded)
  })

// ---------------------------------------------------------------------------------------------------
// The provider functions
// ---------------------------------------------------------------------------------------------------

const currentSettings = (defaults: RequestSettings) =>
  Effect.map(CurrentRequestSettings, (perCall): RequestSettings => ({ ...defaults, ...perCall }))

/**
 * The schema of a structured-output call. @effect/ai types it with an open context; decoding runs in
 * the caller's fiber, which @effect/ai already requires to provide that context (`generateObject`'s
 * `R`), so the chain may decode with it as a context-free schema.
 */
const objectSchemaOf = (format: { readonly schema: Schema.Schema.Any }) => format.schema as Schema.Schema<unknown, unknown>

const generateParts = (chain: Fallback.Chain, defaults: RequestSettings) =>
(options: LanguageModel.ProviderOptions): Effect.Effect<Array<Response.PartEncoded>, AiError.AiError, IdGenerator> =>
  Effect.gen(function*() {
    const format = options.responseFormat
    const method = format.type === "json" ? "generateObject" : "generateText"
    const request = yield* Either.match(chainRequestOf(options, yield* currentSettings(defaults), method), {
      onLeft: Effect.fail,
      onRight: Effect.succeed
    })
    if (format.type === "json") {
      const schema = objectSchemaOf(format)
      const result = yield* Effect.mapError(
        chain.generateObject(schema, request, { name: format.objectName }),
        (failure) => toAiError(failure, method)
      )
      annotateSpan(options, result)
      return responseParts(result, yield* canonicalJson(schema, result))
    }
    const result = yield* Effect.mapError(chain.generate(request), (failure) => toAiError(failure, method))
    annotateSpan(options, result)
    return responseParts(result, result.response.text)
  })

const TEXT_ID = "0"

/**
 * Turns the chain's stream events into @effect/ai stream parts. Metadata is held back until the
 * first content (a route that fails before content is replaced transparently, and its metadata with
 * it); complete tool calls and the finish part are emitted at `Completed`, when the chain has
 * accepted the answer — @effect/ai resolves tool calls as their parts arrive, so a call must not be
 * announced before the answer that holds it is accepted.
 */
class StreamPartEncoder {
  private pendingMetadata: Response.ResponseMetadataPartEncoded | undefined
  private textOpen = false
  private readonly toolIds = new Map<number, string>()

  onEvent(event: Fallback.ChainStreamEvent): Array<Response.StreamPartEncoded> {
    switch (event._tag) {
      case "Metadata":
        this.pendingMetadata = { type: "response-metadata", ...opt("id", event.id), ...opt("modelId", event.model) }
        return []
      case "TextDelta":
        return [...this.takeMetadata(), ...this.openText(), { type: "text-delta", id: TEXT_ID, delta: event.text }]
      case "ToolCallDelta":
        return [...this.takeMetadata(), ...this.toolDelta(event)]
      case "Completed":
        return this.complete(event.result)
      case "Usage":
      case "Finish":
        // Both are in `Completed`'s result, which comes after them.
        return []
      case "Restarted":
        // Never emitted: the chain is called with `onPartialOutputFailure: "fail"`, because an
        // @effect/ai consumer has no way to take back text it was already given.
        return []
    }
  }

  private takeMetadata(): Array<Response.StreamPartEncoded> {
    const pending = this.pendingMetadata
    this.pendingMetadata = undefined
    return pending === undefined ? [] : [pending]
  }

  private openText(): Array<Response.StreamPartEncoded> {
    if (this.textOpen) return []
    this.textOpen = true
    return [{ type: "text-start", id: TEXT_ID }]
  }

  private toolDelta(event: Extract<StreamEvent, { readonly _tag: "ToolCallDelta" }>): Array<Response.StreamPartEncoded> {
    const known = this.toolIds.get(event.index)
    if (known !== undefined) {
      return event.argumentsDelta.length === 0 ? [] : [{ type: "tool-params-delta", id: known, delta: event.argumentsDelta }]
    }
    const id = event.id ?? `tool-${event.index}`
    this.toolIds.set(event.index, id)
    return [
      { type: "tool-params-start", id, name: event.name ?? "", providerExecuted: false },
      ...(event.argumentsDelta.length === 0 ? [] : [{ type: "tool-params-delta" as const, id, delta: event.argumentsDelta }])
    ]
  }

  private complete(result: Fallback.ChainResult<string>): Array<Response.StreamPartEncoded> {
    return [
      ...(this.pendingMetadata !== undefined || this.textOpen || this.toolIds.size > 0 ? this.takeMetadata() : [metadataPart(result.response)]),
      ...(this.textOpen ? [{ type: "text-end" as const, id: TEXT_ID }] : []),
      ...Array.from(this.toolIds.values(), (id) => ({ type: "tool-params-end" as const, id })),
      ...toolCallParts(result.response),
      finishPart(result)
    ]
  }
}

const streamParts = (chain: Fallback.Chain, defaults: RequestSettings) =>
(options: LanguageModel.ProviderOptions): Stream.Stream<Response.StreamPartEncoded, AiError.AiError, IdGenerator> =>
  Stream.unwrap(Effect.gen(function*() {
    const request = yield* Either.match(chainRequestOf(options, yield* currentSettings(defaults), "streamText"), {
      onLeft: Effect.fail,
      onRight: Effect.succeed
    })
    const encoder = new StreamPartEncoder()
    return chain.stream(request, { onPartialOutputFailure: "fail" }).pipe(
      Stream.tap((event) => Effect.sync(() => event._tag === "Completed" ? annotateSpan(options, event.result) : undefined)),
      Stream.mapConcat((event) => encoder.onEvent(event)),
      // One part per chunk, as @effect/ai's own providers deliver them: @effect/ai resolves a chunk's
      // tool calls after offering the whole chunk, so a call sharing a chunk with the finish part
      // would have its result arrive after the finish.
      Stream.rechunk(1),
      Stream.mapError((failure) => toAiError(failure, "streamText"))
    )
  }))

// ---------------------------------------------------------------------------------------------------
// Constructors and layers
// ---------------------------------------------------------------------------------------------------

/**
 * A `LanguageModel` service over a chain. `defaults` are the request settings of every call
 * ({@link CurrentRequestSettings} overrides them per call).
 */
export const fromChain = (chain: Fallback.Chain, defaults: RequestSettings = {}): Effect.Effect<LanguageModel.Service> =>
  Effect.map(LanguageModel.make({ generateText: generateParts(chain, defaults), streamText: streamParts(chain, defaults) }), markChainBacked)

/** Chain options plus the request settings every call through the LanguageModel starts from. */
export interface LanguageModelOptions extends Fallback.FallbackOptions {
  readonly defaults?: RequestSettings | undefined
}

const checkedDefaults = (defaults: RequestSettings | undefined, component: string): Effect.Effect<RequestSettings, InvalidOptions> => {
  const problem = settingsProblem(defaults ?? {}, component)
  return problem === undefined ? Effect.succeed(defaults ?? {}) : Effect.fail(problem)
}

/** The chain's LanguageModel layer; the policy state (breakers, limiters, budgets) comes from outside. */
export const layer = (
  options: LanguageModelOptions
): Layer.Layer<LanguageModel.LanguageModel, InvalidOptions, Policy.PolicyState> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.gen(function*() {
      const defaults = yield* checkedDefaults(options.defaults, "Ai.layer")
      return yield* fromChain(yield* Fallback.make(options), defaults)
    })
  )

/** {@link layer} with its own policy state and `DegradedMode`, both exposed to the program too. */
export const layerWithState = (
  options: LanguageModelOptions
): Layer.Layer<LanguageModel.LanguageModel | Policy.PolicyState | DegradedMode.DegradedMode, InvalidOptions> =>
  layer(options).pipe(Layer.provideMerge(Layer.merge(Policy.layerState, DegradedMode.layer)))

/** The LanguageModel over the `LlmClient` service already in the program. */
export const layerFromClient = (
  defaults?: RequestSettings
): Layer.Layer<LanguageModel.LanguageModel, InvalidOptions, LlmClient> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.gen(function*() {
      const checked = yield* checkedDefaults(defaults, "Ai.layerFromClient")
      return yield* fromChain(yield* LlmClient, checked)
    })
  )

/**
 * Any @effect/ai `LanguageModel` as a route of the chain: a `ProviderShape` whose failures are this
 * library's `ProviderError` union, so the route's policy (retry with Retry-After, breaker, timeouts,
 * limiter) and the chain's decisions read them exactly as they read our own adapters' failures.
 *
 * One retry layer only: @effect/ai's OpenAI and Anthropic clients do not retry by themselves (their
 * `transformClient` hook is where a retry would be added; leave it without one), so the route's policy
 * is the only place a call is repeated. Failures are classified from the real HTTP response
 * @effect/ai keeps on its `HttpResponseError` (status, headers, body), and an error that arrives
 * inside a 200 stream — which @effect/ai passes on as an `error` part and then ends the stream
 * successfully — fails the route's stream with its typed error here.
 *
 * @internal
 */
import type * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import { ProviderName } from "@effect/ai/Model"
import type * as Prompt from "@effect/ai/Prompt"
import type * as Response from "@effect/ai/Response"
import { CurrentSpanTransformer, type SpanTransformer } from "@effect/ai/Telemetry"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { CallSite } from "../Classify.js"
import { BadRequest, type ProviderError, ServerError, StreamInterrupted } from "../Errors.js"
import type * as Fallback from "../Fallback.js"
import { opt } from "../internal/json.js"
import { markSelfGuarded } from "../internal/spend.js"
import type { FinishReason, GenerateRequest, GenerateResponse, ProviderShape, StreamEvent, ToolCall, Usage } from "../Provider.js"
import { fromErrorPart, toProviderError } from "./errors.js"
import { isChainBacked } from "./metadata.js"
import { type ForwardingToolkit, forwardingToolkit, passThroughObjectSchema, promptFromRequest, toolChoiceFor } from "./prompt.js"

/**
 * Applies per-request settings around one call of the wrapped model — the settings @effect/ai keeps in
 * each provider's config rather than in its calls (`max_output_tokens`, `temperature`, even the model
 * id). For example `(request) => OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.maxTokens })`.
 */
export type Configure = (request: GenerateRequest) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** Options of {@link providerFrom}. */
export interface ProviderFromOptions {
  /** The provider label in errors, spans and metrics. Default: the model's `ProviderName`, else `effect-ai`. */
  readonly providerName?: string | undefined
  readonly configure?: Configure | undefined
}

const DEFAULT_PROVIDER_NAME = "effect-ai"

const siteOf = (providerName: string, request: GenerateRequest): CallSite => ({
  provider: providerName,
  model: request.model,
  route: `${providerName}/${request.model}`,
  attempt: 1
})

/** An AiError classified, reading the clock for HTTP-date Retry-After and reset instants. */
const classified = (site: CallSite) => (error: AiError.AiError): Effect.Effect<never, ProviderError> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(toProviderError(error, site, now)))

const promptOf = (request: GenerateRequest, site: CallSite): Effect.Effect<Prompt.Prompt, ProviderError> =>
  Effect.mapError(promptFromRequest(request), (message) => new BadRequest({ ...site, message }, true))

const toolkitOf = (request: GenerateRequest): ForwardingToolkit | undefined =>
  request.tools !== undefined && request.tools.length > 0 ? forwardingToolkit(request.tools) : undefined

// ---------------------------------------------------------------------------------------------------
// @effect/ai response parts → GenerateResponse
// ---------------------------------------------------------------------------------------------------

const FINISH_REASONS: { readonly [K in Exclude<Response.FinishReason, "error">]: FinishReason } = {
  stop: "stop",
  length: "length",
  "content-filter": "content_filter",
  "tool-calls": "tool_calls",
  pause: "other",
  other: "other",
  unknown: "other"
}

/** @effect/ai reports what the provider reported; a missing count is 0, a missing total the sum. */
const usageOf = (usage: Response.Usage | undefined): Usage => {
  const inputTokens = usage?.inputTokens ?? 0
  const outputTokens = usage?.outputTokens ?? 0
  return { inputTokens, outputTokens, totalTokens: usage?.totalTokens ?? inputTokens + outputTokens }
}

/** A finish that says the generation itself failed is a failed attempt, not an answer. */
const erroredFinish = (site: CallSite): ServerError =>
  new ServerError({ ...site, status: 200, message: "the provider finished the generation with reason 'error'" }, true)

const argumentsText = (params: unknown): string => JSON.stringify(params ?? {}) ?? "{}"

/** A whole @effect/ai answer as a `GenerateResponse`. */
const responseFromParts = (
  parts: ReadonlyArray<Response.AnyPart>,
  site: CallSite
): Effect.Effect<GenerateResponse, ProviderError> => {
  const text: Array<string> = []
  const toolCalls: Array<ToolCall> = []
  let id: string | undefined
  let model: string | undefined
  let finish: Response.FinishPart | undefined
  for (const part of parts) {
    if (part.type === "text") text.push(part.text)
    // Provider-executed calls (OpenAI web search) were already answered by the provider.
    else if (part.type === "tool-call" && !part.providerExecuted) {
      toolCalls.push({ id: part.id, name: part.name, arguments: argumentsText(part.params) })
    } else if (part.type === "response-metadata") {
      id = Option.getOrUndefined(part.id)
      model = Option.getOrUndefined(part.modelId)
    } else if (part.type === "finish") finish = part
  }
  const reason = finish?.reason ?? "unknown"
  if (reason === "error") return Effect.fail(erroredFinish(site))
  return Effect.succeed({
    provider: site.provider,
    model: model ?? site.model,
    ...opt("id", id),
    text: text.join(""),
    toolCalls,
    finishReason: FINISH_REASONS[reason],
    rawFinishReason: reason,
    usage: usageOf(finish?.usage)
  })
}

// ---------------------------------------------------------------------------------------------------
// generate
// ---------------------------------------------------------------------------------------------------

const textParts = (
  model: LanguageModel.Service,
  request: GenerateRequest,
  prompt: Prompt.Prompt
): Effect.Effect<ReadonlyArray<Response.AnyPart>, AiError.AiError> => {
  const toolkit = toolkitOf(request)
  const call = toolkit === undefined
    ? model.generateText({ prompt })
    : model.generateText({ prompt, toolkit, toolChoice: toolChoiceFor(request.toolChoice), disableToolCallResolution: true })
  return Effect.map(call, (response): ReadonlyArray<Response.AnyPart> => response.content)
}

/**
 * Runs a structured-output call and keeps the answer's parts even when @effect/ai rejects them.
 * @effect/ai's `generateObject` decodes the text itself and, when it is not JSON, fails with a
 * `MalformedOutput` that has lost the text and the finish reason. The chain's gate must judge the
 * answer instead (unparsable → repair with the text, truncated, filtered): @effect/ai hands the parts
 * to the current span transformer before decoding, so one is installed around the call to keep them —
 * calling on to a transformer already in the caller's context.
 */
const structuredParts = (
  model: LanguageModel.Service,
  request: GenerateRequest,
  prompt: Prompt.Prompt,
  format: { readonly name: string; readonly schema: Readonly<Record<string, unknown>> }
): Effect.Effect<ReadonlyArray<Response.AnyPart>, AiError.AiError> =>
  Effect.flatMap(Effect.serviceOption(CurrentSpanTransformer), (previous) => {
    let captured: ReadonlyArray<Response.AnyPart> | undefined
    const capture: SpanTransformer = (options) => {
      captured = options.response
      if (Option.isSome(previous)) previous.value(options)
    }
    const toolkit = toolkitOf(request)
    const schema = passThroughObjectSchema(format.schema)
    const contentOf = (response: { readonly content: ReadonlyArray<Response.AnyPart> }) => response.content
    const call = toolkit === undefined
      ? Effect.map(model.generateObject({ prompt, schema, objectName: format.name }), contentOf)
      : Effect.map(
        model.generateObject({
          prompt,
          schema,
          objectName: format.name,
          toolkit,
          toolChoice: toolChoiceFor(request.toolChoice),
          disableToolCallResolution: true
        }),
        contentOf
      )
    return call.pipe(
      Effect.catchTag("MalformedOutput", (error) => captured === undefined ? Effect.fail(error) : Effect.succeed(captured)),
      Effect.provideService(CurrentSpanTransformer, capture)
    )
  })

/** The JSON Schema and name a structured request asks for (`json_object` asks for any object). */
const structuredFormat = (request: GenerateRequest) => {
  const format = request.responseFormat
  if (format === undefined || format.type === "text") return undefined
  return format.type === "json_schema" ? { name: format.name, schema: format.schema } : { name: "response", schema: { type: "object" } }
}

// ---------------------------------------------------------------------------------------------------
// stream
// ---------------------------------------------------------------------------------------------------

interface StreamedToolCall {
  readonly index: number
  readonly id: string
  readonly name: string
  argumentsText: string
}

/**
 * Turns @effect/ai stream parts into the stream model's events: `Metadata`, `TextDelta`,
 * `ToolCallDelta`, then `Usage` and `Finish` at the finish part. An `error` part fails with its
 * classified error; a stream that ends without a finish part is a `StreamInterrupted`.
 */
class StreamAssembler {
  private text = ""
  private receivedContent = false
  private finished = false
  private id: string | undefined
  private model: string | undefined
  private readonly calls = new Map<string, StreamedToolCall>()

  constructor(private readonly site: CallSite) {}

  onPart(part: Response.AnyPart): Effect.Effect<ReadonlyArray<StreamEvent>, ProviderError> {
    if (this.finished) return Effect.succeed([])
    switch (part.type) {
      case "response-metadata": {
        this.id = Option.getOrUndefined(part.id) ?? this.id
        this.model = Option.getOrUndefined(part.modelId) ?? this.model
        return Effect.succeed([{ _tag: "Metadata", ...opt("id", this.id), ...opt("model", this.model) }])
      }
      case "text-delta": {
        if (part.delta.length === 0) return Effect.succeed([])
        this.text += part.delta
        this.receivedContent = true
        return Effect.succeed([{ _tag: "TextDelta", text: part.delta }])
      }
      case "tool-params-start":
        return Effect.succeed(part.providerExecuted ? [] : this.startToolCall(part.id, part.name, ""))
      case "tool-params-delta":
        return Effect.succeed(this.toolArguments(part.id, part.delta))
      case "tool-call":
        return Effect.succeed(part.providerExecuted ? [] : this.completeToolCall(part.id, part.name, part.params))
      case "finish":
        return this.finish(part)
      case "error":
        return Effect.fail(fromErrorPart(part.error, this.site))
      default:
        return Effect.succeed([])
    }
  }

  /** What the stream's end means: nothing after a finish part, an interruption without one. */
  end(): Effect.Effect<ReadonlyArray<StreamEvent>, ProviderError> {
    if (this.finished) return Effect.succeed([])
    return Effect.fail(
      new StreamInterrupted({
        ...this.site,
        status: 200,
        receivedContent: this.receivedContent,
        ...opt("partialText", this.text.length > 0 ? this.text : undefined),
        message: "the stream ended without a finish"
      }, true)
    )
  }

  private startToolCall(id: string, name: string, argumentsDelta: string): Array<StreamEvent> {
    const index = this.calls.size
    this.calls.set(id, { index, id, name, argumentsText: argumentsDelta })
    this.receivedContent = true
    return [{ _tag: "ToolCallDelta", index, id, name, argumentsDelta }]
  }

  private toolArguments(id: string, delta: string): Array<StreamEvent> {
    const call = this.calls.get(id)
    if (call === undefined || delta.length === 0) return []
    call.argumentsText += delta
    return [{ _tag: "ToolCallDelta", index: call.index, argumentsDelta: delta }]
  }

  /** A complete call: announced whole when no parameter deltas came before it. */
  private completeToolCall(id: string, name: string, params: unknown): Array<StreamEvent> {
    const call = this.calls.get(id)
    if (call === undefined) return this.startToolCall(id, name, argumentsText(params))
    // Streamed arguments are kept as the model wrote them; a call streamed without any gets its params.
    if (call.argumentsText.length === 0) call.argumentsText = argumentsText(params)
    return []
  }

  private finish(part: Response.FinishPart): Effect.Effect<ReadonlyArray<StreamEvent>, ProviderError> {
    if (part.reason === "error") return Effect.fail(erroredFinish(this.site))
    this.finished = true
    const usage = usageOf(part.usage)
    const response: GenerateResponse = {
      provider: this.site.provider,
      model: this.model ?? this.site.model,
      ...opt("id", this.id),
      text: this.text,
      toolCalls: Array.from(this.calls.values(), (call) => ({ id: call.id, name: call.name, arguments: call.argumentsText })),
      finishReason: FINISH_REASONS[part.reason],
      rawFinishReason: part.reason,
      usage
    }
    return Effect.succeed([{ _tag: "Usage", usage }, { _tag: "Finish", response }])
  }
}

const streamParts = (
  model: LanguageModel.Service,
  request: GenerateRequest,
  prompt: Prompt.Prompt
): Stream.Stream<Response.AnyPart, AiError.AiError> => {
  const toolkit = toolkitOf(request)
  return toolkit === undefined
    ? model.streamText({ prompt })
    : model.streamText({ prompt, toolkit, toolChoice: toolChoiceFor(request.toolChoice), disableToolCallResolution: true })
}

/**
 * A stream run inside `configure`: the settings are captured from the configured context and given
 * to the stream, which runs later, outside the effect `configure` wrapped.
 */
const configuredStream = <A, E>(
  configure: Configure | undefined,
  request: GenerateRequest,
  stream: Stream.Stream<A, E>
): Stream.Stream<A, E> =>
  configure === undefined
    ? stream
    : Stream.unwrap(configure(request)(Effect.map(Effect.context<never>(), (context) => Stream.provideSomeContext(stream, context))))

// ---------------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------------

/**
 * A provider over an @effect/ai `LanguageModel` service. The model id is the one the service was built
 * with (the request's `model` labels errors; a `configure` may pass it on as a config override).
 */
export const providerFrom = (model: LanguageModel.Service, options: ProviderFromOptions = {}): ProviderShape<ProviderError> => {
  const providerName = options.providerName ?? DEFAULT_PROVIDER_NAME
  const configure = options.configure
  const configured = <A, E>(request: GenerateRequest, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    configure === undefined ? effect : configure(request)(effect)
  const shape: ProviderShape<ProviderError> = {
    name: providerName,
    generate: (request) => {
      const site = siteOf(providerName, request)
      return configured(
        request,
        Effect.gen(function*() {
          const prompt = yield* promptOf(request, site)
          const format = structuredFormat(request)
          const call = format === undefined ? textParts(model, request, prompt) : structuredParts(model, request, prompt, format)
          const parts = yield* Effect.catchAll(call, classified(site))
          return yield* responseFromParts(parts, site)
        })
      )
    },
    stream: (request) => {
      const site = siteOf(providerName, request)
      return Stream.unwrap(Effect.map(promptOf(request, site), (prompt) => {
        const assembler = new StreamAssembler(site)
        return configuredStream(configure, request, streamParts(model, request, prompt)).pipe(
          Stream.catchAll((error) => Stream.fromEffect(classified(site)(error))),
          Stream.mapEffect((part) => assembler.onPart(part)),
          Stream.concat(Stream.fromEffect(Effect.suspend(() => assembler.end()))),
          Stream.flattenIterables
        )
      }))
    }
  }
  // A chain behind the model: its routes' attempts reserve in the caller's spend budgets already, so
  // a policy over this provider does not reserve the whole call again (internal/spend.ts).
  return isChainBacked(model) ? markSelfGuarded(shape) : shape
}

/**
 * A provider over an @effect/ai model Layer (e.g. `OpenAiLanguageModel.model("gpt-4o")` with its client
 * provided), built once in the current scope. The provider label is the model's `ProviderName`
 * (`openai`, `anthropic`) unless `providerName` says otherwise.
 */
export const provider = <E, R>(
  languageModel: Layer.Layer<LanguageModel.LanguageModel, E, R>,
  options: ProviderFromOptions = {}
): Effect.Effect<ProviderShape<ProviderError>, E, R | Scope.Scope> =>
  Effect.map(Layer.build(languageModel), (context) =>
    providerFrom(Context.get(context, LanguageModel.LanguageModel), {
      ...options,
      providerName: options.providerName ?? Option.getOrUndefined(Context.getOption(context, ProviderName))
    }))

/** Options of {@link route}: a chain route whose provider is an @effect/ai model Layer. */
export interface RouteOptions<E, R> extends Omit<Fallback.Route, "provider">, ProviderFromOptions {
  readonly languageModel: Layer.Layer<LanguageModel.LanguageModel, E, R>
}

/** A chain route over an @effect/ai model Layer (see {@link provider}). */
export const route = <E, R>(options: RouteOptions<E, R>): Effect.Effect<Fallback.Route, E, R | Scope.Scope> => {
  const { configure, languageModel, providerName, ...route } = options
  return Effect.map(provider(languageModel, { providerName, configure }), (built) => ({ ...route, provider: built }))
}

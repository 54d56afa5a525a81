/**
 * OpenAI Chat Completions (`POST {baseUrl}/chat/completions`) as a {@link Provider} — also any
 * OpenAI-compatible server (vLLM, Ollama, LiteLLM, Azure-style gateways) via `baseUrl`.
 *
 * Handles JSON and SSE (`data:` chunks ending with `data: [DONE]`, chunks carrying `error`), normalises
 * `finish_reason` (`length`, `content_filter`, refusals stay visible), reads request ids and rate-limit
 * headers, and classifies every failure. The API key is `Redacted` and scrubbed from everything kept.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { type CallSite, fromStreamError } from "../Classify.js"
import { type InvalidOptions, InvalidOutput, type ProviderError } from "../Errors.js"
import { apiKeyConfig } from "../internal/config.js"
import { array, isRecord, type JsonRecord, number, opt, record, safeStringify, string } from "../internal/json.js"
import { type ContentSupport, dataUrlOf, mediaOf } from "../internal/media.js"
import type { SseEvent } from "../internal/sse.js"
import {
  type FinishReason,
  type GenerateRequest,
  type GenerateResponse,
  type Message,
  Provider,
  type ProviderShape,
  type StreamEvent,
  textOf,
  type ToolCall,
  type Usage
} from "../Provider.js"
import { type CommonOptions, decodedResponse, type Exchange, makeHttpAdapter, resolve, sseFraming, type WireFormat } from "./internal/adapter.js"
import { parseEventObject, ResponseBuilder, type StreamProtocol } from "./internal/streaming.js"
import { type HttpClassifier, malformed } from "./internal/wire.js"

/**
 * Options of the OpenAI adapter. Every default is listed in docs/providers.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface OpenAiOptions extends CommonOptions {
  /** API root including any path prefix. Default `https://api.openai.com/v1`. */
  readonly baseUrl?: string | undefined
  /** Label in errors, spans and metrics. Default `openai`. */
  readonly name?: string | undefined
  readonly organization?: string | undefined
  readonly project?: string | undefined
  /**
   * Which body field carries the token cap. OpenAI's reasoning models accept only
   * `max_completion_tokens`; many OpenAI-compatible servers only `max_tokens`.
   * Default `max_completion_tokens` (`max_tokens` for {@link layerCompatible}).
   */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens" | undefined
  /** Forward `request.metadata` in the body (OpenAI stores it only with `store: true`). Default false. */
  readonly sendMetadata?: boolean | undefined
}

/**
 * The default API root.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_BASE_URL = "https://api.openai.com/v1"

/**
 * What Chat Completions carries (platform.openai.com/docs/guides/images-vision, …/guides/pdf-files):
 * PNG, JPEG, WebP and non-animated GIF images by URL or inline; PDFs inline only (`file_data`);
 * tool messages are text.
 */
export const CHAT_CONTENT: ContentSupport = {
  format: "OpenAI Chat Completions",
  imageTypes: new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]),
  fileTypes: new Set(["application/pdf"]),
  imageUrlSchemes: ["https:", "http:"],
  fileUrlSchemes: [],
  mediaInToolResults: false
}

/** A user message's content: a string stays a string; parts become `text`, `image_url` and `file`. */
const userContent = (content: Message["content"]): unknown =>
  typeof content === "string" ? content : content.map((part) => {
    if (part._tag === "Text") return { type: "text", text: part.text }
    const media = mediaOf(part)
    if (media.isImage) {
      return { type: "image_url", image_url: { url: media.url ?? dataUrlOf(media), ...opt("detail", part.detail) } }
    }
    return { type: "file", file: { file_data: dataUrlOf(media), filename: part.filename ?? "document" } }
  })

const toWireMessage = (message: Message): JsonRecord => {
  if (message.role === "user") return { role: "user", content: userContent(message.content), ...opt("name", message.name) }
  const text = textOf(message.content)
  if (message.role === "tool") {
    return { role: "tool", content: text, tool_call_id: message.toolCallId ?? "" }
  }
  if (message.role === "assistant" && message.toolCalls !== undefined && message.toolCalls.length > 0) {
    return {
      role: "assistant",
      content: text.length > 0 ? text : null,
      tool_calls: message.toolCalls.map((call) => ({
        id: call.id,
        type: "function",
        function: { name: call.name, arguments: call.arguments }
      }))
    }
  }
  return { role: message.role, content: text, ...opt("name", message.name) }
}

const toolChoiceOf = (choice: NonNullable<GenerateRequest["toolChoice"]>): unknown =>
  typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } }

const responseFormatOf = (format: NonNullable<GenerateRequest["responseFormat"]>): unknown =>
  format.type === "json_schema"
    ? { type: "json_schema", json_schema: { name: format.name, schema: format.schema, strict: format.strict ?? true } }
    : { type: format.type }

/**
 * The Chat Completions request body the adapter sends for a request, for inspecting or logging what
 * goes over the wire.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeRequest = (
  request: GenerateRequest,
  options: { readonly maxTokens: number; readonly maxTokensField: string; readonly sendMetadata: boolean },
  stream: boolean
): JsonRecord => {
  const messages = request.messages.map(toWireMessage)
  return {
    model: request.model,
    messages: request.system !== undefined ? [{ role: "system", content: request.system }, ...messages] : messages,
    [options.maxTokensField]: options.maxTokens,
    ...opt("temperature", request.temperature),
    ...opt("top_p", request.topP),
    ...opt("stop", request.stop),
    ...(request.tools !== undefined && request.tools.length > 0
      ? {
        tools: request.tools.map((tool) => ({
          type: "function",
          function: { name: tool.name, ...opt("description", tool.description), parameters: tool.parameters }
        }))
      }
      : {}),
    ...(request.toolChoice !== undefined ? { tool_choice: toolChoiceOf(request.toolChoice) } : {}),
    ...(request.responseFormat !== undefined ? { response_format: responseFormatOf(request.responseFormat) } : {}),
    ...(options.sendMetadata && request.metadata !== undefined ? { metadata: request.metadata } : {}),
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {})
  }
}

/**
 * Maps OpenAI's `finish_reason` to the normalised {@link FinishReason}.
 *
 * @since 0.1.0
 * @category parsing
 */
export const finishReasonOf = (raw: string | undefined, refused: boolean): FinishReason => {
  if (refused) return "refusal"
  switch (raw) {
    case "stop":
      return "stop"
    case "length":
      return "length"
    case "tool_calls":
    case "function_call":
      return "tool_calls"
    case "content_filter":
      return "content_filter"
    default:
      return "other"
  }
}

const usageOf = (u: unknown): Usage | undefined => {
  const usage = record(u)
  if (usage === undefined) return undefined
  const inputTokens = number(usage["prompt_tokens"]) ?? 0
  const outputTokens = number(usage["completion_tokens"]) ?? 0
  return { inputTokens, outputTokens, totalTokens: number(usage["total_tokens"]) ?? inputTokens + outputTokens }
}

const toolCallsOf = (u: unknown): Array<ToolCall> => {
  const calls: Array<ToolCall> = []
  for (const item of array(u) ?? []) {
    const call = record(item)
    const fn = record(call?.["function"])
    if (call === undefined || fn === undefined) continue
    calls.push({ id: string(call["id"]) ?? "", name: string(fn["name"]) ?? "", arguments: string(fn["arguments"]) ?? "" })
  }
  return calls
}

/**
 * Classifies an error object found where an answer was expected: a 2xx body, a choice, or an SSE chunk
 * carrying `error`. `Classify.fromStreamError` (OpenAI's error types) unless a format knows better —
 * OpenRouter's numeric `error.code`, Azure's `content_filter`.
 *
 * @since 0.2.0
 * @category internal
 */
export type StreamErrorClassifier = (input: {
  readonly site: CallSite
  readonly payload: unknown
  readonly requestId?: string | undefined
}) => ProviderError

/** A non-empty string, or `undefined`: Azure's filter-annotation chunks carry `"id": ""` and `"model": ""`. */
const nonEmpty = (u: unknown): string | undefined => {
  const text = string(u)
  return text !== undefined && text.length > 0 ? text : undefined
}

const decodeResponse = (classifyError: StreamErrorClassifier) =>
(exchange: Exchange, body: unknown): Effect.Effect<GenerateResponse, ProviderError> => {
  const { requestId, site } = exchange
  // Some OpenAI-compatible servers answer HTTP 200 with an error object.
  if (isRecord(body) && isRecord(body["error"])) {
    return Effect.fail(classifyError({ site, payload: body, requestId }))
  }
  const choice = record(array(record(body)?.["choices"])?.[0])
  // A choice that failed part-way (OpenRouter: `finish_reason: "error"` with the provider's `error`
  // next to the partial message) is a failure, not a short answer.
  const choiceError = record(choice?.["error"])
  if (choiceError !== undefined) return Effect.fail(classifyError({ site, payload: { error: choiceError }, requestId }))
  const message = record(choice?.["message"])
  if (!isRecord(body) || choice === undefined || message === undefined) {
    return Effect.fail(malformed(site, "no choices[0].message in the completion", safeStringify(body), requestId))
  }
  const refusal = string(message["refusal"])
  const rawFinishReason = string(choice["finish_reason"])
  return Effect.succeed(decodedResponse(exchange, body, {
    text: string(message["content"]) ?? "",
    toolCalls: toolCallsOf(message["tool_calls"]),
    finishReason: finishReasonOf(rawFinishReason, refusal !== undefined && refusal.length > 0),
    rawFinishReason,
    refusal,
    usage: usageOf(body["usage"])
  }))
}

/** The chat.completion.chunk grammar: content, tool-call and refusal deltas; `error` chunks; `[DONE]`. */
const chunkProtocol = (classifyError: StreamErrorClassifier) =>
({ provider, rateLimit, requestId, site }: Exchange): StreamProtocol => {
  const builder = new ResponseBuilder(provider, site.model, site.secrets ?? [])
  const refusal: Array<string> = []
  const onEvent = (event: SseEvent, out: Array<StreamEvent>): ProviderError | undefined => {
    const data = event.data
    if (data === "[DONE]") {
      if (refusal.length > 0) {
        builder.refusal = refusal.join("")
        builder.finishReason = "refusal"
      }
      out.push({ _tag: "Finish", response: builder.build(requestId, rateLimit) })
      return undefined
    }
    const chunk = parseEventObject(site, data, "stream chunk", requestId)
    if (chunk instanceof InvalidOutput) return chunk
    // As the SDK: an `error` that is set (not `null`), or an SSE `event: error` whose payload is the
    // error object itself.
    if (isRecord(chunk["error"]) || typeof chunk["error"] === "string") return classifyError({ site, payload: chunk, requestId })
    if (event.event === "error") return classifyError({ site, payload: { error: chunk }, requestId })
    builder.id ??= nonEmpty(chunk["id"])
    const model = nonEmpty(chunk["model"])
    if (model !== undefined) builder.model = model
    const usage = usageOf(chunk["usage"])
    if (usage !== undefined) {
      builder.usage = usage
      out.push({ _tag: "Usage", usage })
    }
    const choice = record(array(chunk["choices"])?.[0])
    if (choice === undefined) return undefined
    const delta = record(choice["delta"])
    const content = string(delta?.["content"])
    if (content !== undefined && content.length > 0) {
      builder.addText(content)
      out.push({ _tag: "TextDelta", text: content })
    }
    const refusalDelta = string(delta?.["refusal"])
    if (refusalDelta !== undefined) refusal.push(refusalDelta)
    for (const item of array(delta?.["tool_calls"]) ?? []) {
      const call = record(item)
      if (call === undefined) continue
      const index = number(call["index"]) ?? 0
      const fn = record(call["function"])
      const id = string(call["id"])
      const toolName = string(fn?.["name"])
      const argumentsDelta = string(fn?.["arguments"]) ?? ""
      builder.addToolCall(index, id, toolName, argumentsDelta)
      out.push({ _tag: "ToolCallDelta", index, ...opt("id", id), ...opt("name", toolName), argumentsDelta })
    }
    const finish = string(choice["finish_reason"])
    if (finish !== undefined) {
      builder.rawFinishReason = finish
      builder.finishReason = finishReasonOf(finish, false)
    }
    return undefined
  }
  return { builder, onEvent }
}

/**
 * What varies between servers that speak Chat Completions: where it is, how it authenticates, which
 * field carries the token cap, whether streams ask for usage, and how failures are classified.
 *
 * @since 0.2.0
 * @category internal
 */
export interface ChatFormatOptions {
  readonly path: (request: GenerateRequest, stream: boolean) => string
  readonly authHeaders: Readonly<Record<string, string>>
  readonly maxTokensField: "max_tokens" | "max_completion_tokens"
  readonly sendMetadata?: boolean | undefined
  /**
   * Send `stream_options: {include_usage: true}` on streams. Default true; servers that reject
   * unknown fields (Azure api-versions before 2024-09-01-preview) need false.
   */
  readonly streamUsage?: boolean | undefined
  /** Non-2xx answers. Default `Classify.fromHttp`. */
  readonly classify?: HttpClassifier | undefined
  /** Error objects inside 2xx bodies and streams. Default `Classify.fromStreamError`. */
  readonly classifyStreamError?: StreamErrorClassifier | undefined
  /** The images and files the server takes. Default OpenAI's ({@link CHAT_CONTENT}). */
  readonly content?: ContentSupport | undefined
}

const withoutStreamUsage = (body: JsonRecord): JsonRecord =>
  Object.fromEntries(Object.entries(body).filter(([field]) => field !== "stream_options"))

/**
 * The Chat Completions wire format over the shared adapter skeleton, for any server that speaks it
 * (OpenAI here; Azure OpenAI and the OpenAI-compatible presets reuse it with their own path, auth and
 * classifiers).
 *
 * @since 0.2.0
 * @category internal
 */
export const chatFormat = (options: ChatFormatOptions): WireFormat => {
  const { maxTokensField } = options
  const sendMetadata = options.sendMetadata ?? false
  const streamUsage = options.streamUsage ?? true
  const classifyError = options.classifyStreamError ?? fromStreamError
  return {
    path: options.path,
    authHeaders: options.authHeaders,
    content: options.content ?? CHAT_CONTENT,
    encode: (request, call) => {
      const body = encodeRequest(request, { maxTokens: call.maxTokens, maxTokensField, sendMetadata }, call.stream)
      return streamUsage ? body : withoutStreamUsage(body)
    },
    decode: decodeResponse(classifyError),
    protocol: chunkProtocol(classifyError),
    framing: sseFraming,
    ...(options.classify !== undefined ? { classify: options.classify } : {})
  }
}

/** OpenAI's own Chat Completions: bearer key, organization and project headers. */
const wireFormat = (options: OpenAiOptions): WireFormat => {
  const key = Redacted.value(options.apiKey)
  return chatFormat({
    path: () => "/chat/completions",
    authHeaders: {
      ...(key.length > 0 ? { authorization: `Bearer ${key}` } : {}),
      ...opt("openai-organization", options.organization),
      ...opt("openai-project", options.project)
    },
    maxTokensField: options.maxTokensField ?? "max_completion_tokens",
    sendMetadata: options.sendMetadata ?? false
  })
}

/** `make` under the name of the constructor the caller used, so an `InvalidOptions` says which. */
const build = (component: string) =>
(options: OpenAiOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> =>
  Effect.flatMap(
    resolve(component, options, { name: "openai", baseUrl: DEFAULT_BASE_URL }, {
      organization: options.organization,
      project: options.project
    }),
    (resolved) => Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, resolved, wireFormat(options)))
  )

/**
 * Builds the adapter from an `HttpClient` in context. Fails with `InvalidOptions` (naming the option)
 * when an option cannot work: a `baseUrl` that is not an http(s) URL, a bound or cap that is not a
 * positive integer, a key or header that cannot be sent as an HTTP header, an empty `name`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: OpenAiOptions) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> =
  build("OpenAi.make")

/**
 * The adapter as a `Provider` layer (fails with `InvalidOptions` like {@link make}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: OpenAiOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("OpenAi.layer")(options))

/**
 * An OpenAI-compatible server (vLLM, Ollama, LiteLLM proxy, …): the same wire format, `max_tokens`
 * as the token field, and a label of your choice. For vLLM, Ollama, OpenRouter, Groq and Together,
 * `OpenAiCompatible` adds each server's defaults and the failures it reports in its own words.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerCompatible = (
  options: OpenAiOptions & { readonly baseUrl: string; readonly name: string }
): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("OpenAi.layerCompatible")({ maxTokensField: "max_tokens", ...options }))

/**
 * The adapter configured from the environment: `OPENAI_API_KEY` (redacted) and optional
 * `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`. A variable that is set but unusable (a
 * `OPENAI_BASE_URL` that is not an http(s) URL) fails with `InvalidOptions`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Provider, ConfigError.ConfigError | InvalidOptions, HttpClient.HttpClient> = Layer
  .effect(
    Provider,
    Effect.flatMap(
      Config.all({
        apiKey: apiKeyConfig("OPENAI_API_KEY"),
        baseUrl: Config.withDefault(Config.string("OPENAI_BASE_URL"), DEFAULT_BASE_URL),
        organization: Config.option(Config.string("OPENAI_ORG_ID")),
        project: Config.option(Config.string("OPENAI_PROJECT_ID"))
      }),
      (config) =>
        build("OpenAi.layerConfig")({
          apiKey: config.apiKey,
          baseUrl: config.baseUrl,
          organization: config.organization._tag === "Some" ? config.organization.value : undefined,
          project: config.project._tag === "Some" ? config.project.value : undefined
        })
    )
  )

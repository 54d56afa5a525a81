/**
 * Anthropic Messages (`POST {baseUrl}/v1/messages`) as a {@link Provider}.
 *
 * Handles JSON and SSE (`message_start` … `message_stop`, `ping` keep-alives ignored, `event: error`
 * classified by `error.type` — an `overloaded_error` after HTTP 200 is `Overloaded`), normalises
 * `stop_reason` (`max_tokens` → `length`, `refusal` kept visible), lifts system messages into the
 * `system` slot, and maps `json_schema` output to a forced tool call (Anthropic's structured-output
 * idiom), returning the tool input as the response text.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { fromStreamError } from "../Classify.js"
import { apiKeyConfig } from "../internal/config.js"
import { type InvalidOptions, InvalidOutput, type ProviderError } from "../Errors.js"
import { array, isRecord, type JsonRecord, number, opt, record, safeStringify, string } from "../internal/json.js"
import { type ContentSupport, type Media, mediaOf } from "../internal/media.js"
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
import { malformed } from "./internal/wire.js"

/**
 * Options of the Anthropic adapter. Every default is listed in docs/providers.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface AnthropicOptions extends CommonOptions {
  /** API root, without `/v1`. Default `https://api.anthropic.com`. */
  readonly baseUrl?: string | undefined
  /** Label in errors, spans and metrics. Default `anthropic`. */
  readonly name?: string | undefined
  /** The `anthropic-version` header. Default `2023-06-01`. */
  readonly version?: string | undefined
  /** Extra `anthropic-beta` flags. */
  readonly beta?: ReadonlyArray<string> | undefined
}

/**
 * The default API root.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_BASE_URL = "https://api.anthropic.com"

/**
 * The default `anthropic-version`.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_VERSION = "2023-06-01"

const JSON_ONLY_INSTRUCTION = "Respond with a single JSON object and nothing else."

const parseArguments = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    // The model's own malformed arguments are passed back verbatim so it can see what it sent.
    return { _raw: text }
  }
}

/**
 * What Messages carries (docs.anthropic.com/en/docs/build-with-claude/vision, …/pdf-support):
 * JPEG, PNG, GIF and WebP images and PDF documents inline or by URL, plain-text documents, and images
 * and documents inside tool results.
 */
export const CONTENT: ContentSupport = {
  format: "Anthropic Messages",
  imageTypes: new Set(["image/jpeg", "image/png", "image/gif", "image/webp"]),
  fileTypes: new Set(["application/pdf", "text/plain"]),
  imageUrlSchemes: ["https:", "http:"],
  fileUrlSchemes: ["https:", "http:"],
  // The one URL document source is a PDF's (`URLPDFSource`): plain text goes inline.
  fileUrlTypes: new Set(["application/pdf"]),
  mediaInToolResults: true
}

const documentSource = (media: Media): JsonRecord => {
  if (media.url !== undefined) return { type: "url", url: media.url }
  if (media.mediaType === "text/plain") {
    const text = Encoding.decodeBase64String(media.base64 ?? "")
    // Undecodable base64 is sent as it came; Anthropic answers it with a 400 naming the field.
    if (Either.isRight(text)) return { type: "text", media_type: "text/plain", data: text.right }
  }
  return { type: "base64", media_type: media.mediaType, data: media.base64 ?? "" }
}

/** Content blocks of a user message or a tool result: `text`, `image` and `document`. */
const contentBlocks = (content: Message["content"]): unknown =>
  typeof content === "string" ? content : content.map((part) => {
    if (part._tag === "Text") return { type: "text", text: part.text }
    const media = mediaOf(part)
    if (media.isImage) {
      return {
        type: "image",
        source: media.url !== undefined
          ? { type: "url", url: media.url }
          : { type: "base64", media_type: media.mediaType, data: media.base64 ?? "" }
      }
    }
    return { type: "document", source: documentSource(media), ...opt("title", part.filename) }
  })

const toWireMessage = (message: Message): JsonRecord => {
  if (message.role === "tool") {
    return {
      role: "user",
      content: [{ type: "tool_result", tool_use_id: message.toolCallId ?? "", content: contentBlocks(message.content) }]
    }
  }
  if (message.role === "user") return { role: "user", content: contentBlocks(message.content) }
  const text = textOf(message.content)
  if (message.role === "assistant" && message.toolCalls !== undefined && message.toolCalls.length > 0) {
    return {
      role: "assistant",
      content: [
        ...(text.length > 0 ? [{ type: "text", text }] : []),
        ...message.toolCalls.map((call) => ({
          type: "tool_use",
          id: call.id,
          name: call.name,
          input: parseArguments(call.arguments)
        }))
      ]
    }
  }
  return { role: message.role === "assistant" ? "assistant" : "user", content: text }
}

/** The structured-output tool name we force when the request asks for a JSON schema. */
const structuredToolName = (request: GenerateRequest): string | undefined =>
  request.responseFormat?.type === "json_schema" ? request.responseFormat.name : undefined

/**
 * The Messages request body the adapter sends for a request (system lifted, tools and output format
 * translated), for inspecting or logging what goes over the wire.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeRequest = (request: GenerateRequest, maxTokens: number, stream: boolean): JsonRecord => {
  const systemParts: Array<string> = []
  if (request.system !== undefined) systemParts.push(request.system)
  for (const message of request.messages) if (message.role === "system") systemParts.push(textOf(message.content))
  if (request.responseFormat?.type === "json_object") systemParts.push(JSON_ONLY_INSTRUCTION)
  const format = request.responseFormat
  const tools: Array<JsonRecord> = (request.tools ?? []).map((tool) => ({
    name: tool.name,
    ...opt("description", tool.description),
    input_schema: tool.parameters
  }))
  let toolChoice: JsonRecord | undefined
  if (format?.type === "json_schema") {
    tools.push({ name: format.name, description: "Return the answer as this tool's input.", input_schema: format.schema })
    toolChoice = { type: "tool", name: format.name }
  } else if (request.toolChoice !== undefined) {
    const choice = request.toolChoice
    toolChoice = typeof choice === "string"
      ? { type: choice === "required" ? "any" : choice }
      : { type: "tool", name: choice.name }
  }
  const userId = request.metadata?.["user_id"]
  return {
    model: request.model,
    max_tokens: maxTokens,
    ...(systemParts.length > 0 ? { system: systemParts.join("\n\n") } : {}),
    messages: request.messages.filter((message) => message.role !== "system").map(toWireMessage),
    ...opt("temperature", request.temperature),
    ...opt("top_p", request.topP),
    ...opt("stop_sequences", request.stop),
    ...(tools.length > 0 ? { tools } : {}),
    ...opt("tool_choice", toolChoice),
    ...(userId !== undefined ? { metadata: { user_id: userId } } : {}),
    ...(stream ? { stream: true } : {})
  }
}

/**
 * Maps Anthropic's `stop_reason` to the normalised {@link FinishReason}. A forced structured-output
 * tool call ends with `tool_use`, which for the caller is a normal stop.
 *
 * @since 0.1.0
 * @category parsing
 */
export const finishReasonOf = (raw: string | undefined, structured: boolean): FinishReason => {
  switch (raw) {
    case "end_turn":
    case "stop_sequence":
      return "stop"
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return structured ? "stop" : "tool_calls"
    case "refusal":
      return "refusal"
    default:
      return "other"
  }
}

const usageOf = (u: unknown, previous?: Usage): Usage | undefined => {
  const usage = record(u)
  if (usage === undefined) return undefined
  const input = (number(usage["input_tokens"]) ?? 0) + (number(usage["cache_creation_input_tokens"]) ?? 0) +
    (number(usage["cache_read_input_tokens"]) ?? 0)
  const inputTokens = input > 0 ? input : previous?.inputTokens ?? 0
  const outputTokens = number(usage["output_tokens"]) ?? previous?.outputTokens ?? 0
  return { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens }
}

const decodeResponse = (exchange: Exchange, body: unknown): Effect.Effect<GenerateResponse, ProviderError> => {
  const { request, requestId, site } = exchange
  if (isRecord(body) && body["type"] === "error") {
    return Effect.fail(fromStreamError({ site, payload: body, requestId }))
  }
  const content = array(record(body)?.["content"])
  if (!isRecord(body) || content === undefined) {
    return Effect.fail(malformed(site, "no content array in the message", safeStringify(body), requestId))
  }
  const structured = structuredToolName(request)
  const text: Array<string> = []
  const toolCalls: Array<ToolCall> = []
  for (const item of content) {
    const block = record(item)
    if (block === undefined) continue
    if (block["type"] === "text") text.push(string(block["text"]) ?? "")
    if (block["type"] === "tool_use") {
      const args = JSON.stringify(block["input"] ?? {})
      if (structured !== undefined && block["name"] === structured) text.push(args)
      else toolCalls.push({ id: string(block["id"]) ?? "", name: string(block["name"]) ?? "", arguments: args })
    }
  }
  const rawFinishReason = string(body["stop_reason"])
  return Effect.succeed(decodedResponse(exchange, body, {
    text: text.join(""),
    toolCalls,
    finishReason: finishReasonOf(rawFinishReason, structured !== undefined),
    rawFinishReason,
    usage: usageOf(body["usage"])
  }))
}

/** The events the stream reads (`message` is SSE's name for an event without an `event:` line). */
const PARSED_EVENTS: ReadonlySet<string> = new Set([
  "message_start",
  "content_block_start",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
  "error",
  "message"
])

/** The Messages event grammar: `message_start` … `message_stop`, `ping`, `error`. */
const eventProtocol = ({ provider, rateLimit, request, requestId, site }: Exchange): StreamProtocol => {
  const builder = new ResponseBuilder(provider, site.model, site.secrets ?? [])
  const structured = structuredToolName(request)
  // Content-block index → how to treat its deltas (text, a real tool call, or our structured output).
  const blocks = new Map<number, { readonly kind: "text" | "tool" | "structured" | "other"; readonly toolIndex: number }>()
  let toolCount = 0
  const emitText = (text: string, out: Array<StreamEvent>) => {
    if (text.length === 0) return
    builder.addText(text)
    out.push({ _tag: "TextDelta", text })
  }
  const onEvent = (event: SseEvent, out: Array<StreamEvent>): ProviderError | undefined => {
    // Anthropic may add event types and asks clients to tolerate unknown ones (docs: streaming,
    // "Other events"): an event named something else is skipped unread, whatever its data.
    if (!PARSED_EVENTS.has(event.event)) return undefined
    const payload = parseEventObject(site, event.data, `event '${event.event}'`, requestId)
    if (payload instanceof InvalidOutput) return payload
    const type = string(payload["type"]) ?? event.event
    switch (type) {
      case "error":
        return fromStreamError({ site, payload, requestId })
      case "message_start": {
        const message = record(payload["message"])
        builder.id = string(message?.["id"])
        const model = string(message?.["model"])
        if (model !== undefined) builder.model = model
        const usage = usageOf(message?.["usage"])
        if (usage !== undefined) builder.usage = usage
        return undefined
      }
      case "content_block_start": {
        const index = number(payload["index"]) ?? 0
        const block = record(payload["content_block"])
        if (block?.["type"] === "tool_use") {
          if (structured !== undefined && block["name"] === structured) {
            blocks.set(index, { kind: "structured", toolIndex: -1 })
            return undefined
          }
          const toolIndex = toolCount++
          blocks.set(index, { kind: "tool", toolIndex })
          const id = string(block["id"])
          const toolName = string(block["name"])
          builder.addToolCall(toolIndex, id, toolName, "")
          out.push({ _tag: "ToolCallDelta", index: toolIndex, ...opt("id", id), ...opt("name", toolName), argumentsDelta: "" })
          return undefined
        }
        blocks.set(index, { kind: block?.["type"] === "text" ? "text" : "other", toolIndex: -1 })
        if (block?.["type"] === "text") emitText(string(block["text"]) ?? "", out)
        return undefined
      }
      case "content_block_delta": {
        const index = number(payload["index"]) ?? 0
        const delta = record(payload["delta"])
        const block = blocks.get(index)
        if (delta?.["type"] === "text_delta") emitText(string(delta["text"]) ?? "", out)
        else if (delta?.["type"] === "input_json_delta") {
          const partial = string(delta["partial_json"]) ?? ""
          if (block?.kind === "structured") emitText(partial, out)
          else if (block?.kind === "tool") {
            builder.addToolCall(block.toolIndex, undefined, undefined, partial)
            out.push({ _tag: "ToolCallDelta", index: block.toolIndex, argumentsDelta: partial })
          }
        }
        // thinking / signature deltas are not answer content.
        return undefined
      }
      case "message_delta": {
        const delta = record(payload["delta"])
        const stop = string(delta?.["stop_reason"])
        if (stop !== undefined) {
          builder.rawFinishReason = stop
          builder.finishReason = finishReasonOf(stop, structured !== undefined)
        }
        const usage = usageOf(payload["usage"], builder.usage)
        if (usage !== undefined) {
          builder.usage = usage
          out.push({ _tag: "Usage", usage })
        }
        return undefined
      }
      case "message_stop":
        out.push({ _tag: "Finish", response: builder.build(requestId, rateLimit) })
        return undefined
      default:
        // content_block_stop and event types added later carry nothing we need.
        return undefined
    }
  }
  return { builder, onEvent }
}

/**
 * The Messages wire format over the shared adapter skeleton.
 */
const wireFormat = (options: AnthropicOptions): WireFormat => {
  const key = Redacted.value(options.apiKey)
  return {
    path: () => "/v1/messages",
    authHeaders: {
      ...(key.length > 0 ? { "x-api-key": key } : {}),
      "anthropic-version": options.version ?? DEFAULT_VERSION,
      ...(options.beta !== undefined && options.beta.length > 0 ? { "anthropic-beta": options.beta.join(",") } : {})
    },
    content: CONTENT,
    encode: (request, call) => encodeRequest(request, call.maxTokens, call.stream),
    decode: decodeResponse,
    protocol: eventProtocol,
    framing: sseFraming
  }
}

/** `make` under the name of the constructor the caller used, so an `InvalidOptions` says which. */
const build = (component: string) =>
(options: AnthropicOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> =>
  Effect.flatMap(
    resolve(component, options, { name: "anthropic", baseUrl: DEFAULT_BASE_URL }, {
      version: options.version,
      beta: options.beta?.join(",")
    }),
    (resolved) => Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, resolved, wireFormat(options)))
  )

/**
 * Builds the adapter from an `HttpClient` in context. Fails with `InvalidOptions` (naming the option)
 * when an option cannot work: a `baseUrl` that is not an http(s) URL, a bound or cap that is not a
 * positive integer, a key, `version`, `beta` or header that cannot be sent as an HTTP header, an
 * empty `name`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: AnthropicOptions
) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> = build("Anthropic.make")

/**
 * The adapter as a `Provider` layer (fails with `InvalidOptions` like {@link make}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: AnthropicOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("Anthropic.layer")(options))

/**
 * The adapter configured from the environment: `ANTHROPIC_API_KEY` (redacted) and optional
 * `ANTHROPIC_BASE_URL`. A variable that is set but unusable (an `ANTHROPIC_BASE_URL` that is not an
 * http(s) URL) fails with `InvalidOptions`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Provider, ConfigError.ConfigError | InvalidOptions, HttpClient.HttpClient> = Layer
  .effect(
    Provider,
    Effect.flatMap(
      Config.all({
        apiKey: apiKeyConfig("ANTHROPIC_API_KEY"),
        baseUrl: Config.withDefault(Config.string("ANTHROPIC_BASE_URL"), DEFAULT_BASE_URL)
      }),
      build("Anthropic.layerConfig")
    )
  )

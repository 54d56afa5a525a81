/**
 * OpenAI Responses (`POST {baseUrl}/responses`) as a {@link Provider}: the API OpenAI points new work
 * at, and the only one `@effect/ai-openai` speaks.
 *
 * A wire format over the shared adapter skeleton: the request is `input` items (messages, the
 * assistant's `function_call`s and their `function_call_output`s), `instructions` for the system
 * prompt, `max_output_tokens`, `tools` and `text.format` for structured output; the answer is a
 * `response` whose `output` holds `message` items (`output_text`, `refusal` parts) and
 * `function_call` items, and whose `status` says how it ended — `completed`, `incomplete` with
 * `incomplete_details.reason` (`max_output_tokens` → `length`, `content_filter`), or `failed` with an
 * `error`. A stream is typed SSE events ending with `response.completed` / `response.incomplete` /
 * `response.failed` (there is no `[DONE]`); an `error` event fails it. Status codes, error bodies,
 * request ids and rate-limit headers are Chat Completions' and are classified the same way. Sources
 * in docs/providers.md.
 *
 * @since 0.2.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { fromStreamError } from "../Classify.js"
import type { CallSite } from "../Classify.js"
import { type InvalidOptions, InvalidOutput, type ProviderError } from "../Errors.js"
import { array, isRecord, type JsonRecord, number, opt, record, safeStringify, string } from "../internal/json.js"
import { type ContentSupport, dataUrlOf, mediaOf } from "../internal/media.js"
import type { SseEvent } from "../internal/sse.js"
import {
  type ContentPart,
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
import { DEFAULT_BASE_URL } from "./OpenAi.js"

/**
 * Options of the Responses adapter. Every default is listed in docs/providers.md.
 *
 * @since 0.2.0
 * @category models
 */
export interface OpenAiResponsesOptions extends CommonOptions {
  /** API root including any path prefix. Default `https://api.openai.com/v1`. */
  readonly baseUrl?: string | undefined
  /** Label in errors, spans and metrics. Default `openai`. */
  readonly name?: string | undefined
  readonly organization?: string | undefined
  readonly project?: string | undefined
  /**
   * Let OpenAI keep the response (`store`). The API's own default is `true`; a resilience layer has
   * no business keeping users' conversations on a provider unasked, so the default here is `false`.
   */
  readonly store?: boolean | undefined
  /** Forward `request.metadata` in the body. Default false. */
  readonly sendMetadata?: boolean | undefined
}

/**
 * What Responses carries (platform.openai.com/docs/guides/images-vision, …/guides/file-inputs): the
 * Chat Completions images; PDFs and the other documented document types (OpenAI decides which),
 * inline or by URL (`file_url`); and images and files in function outputs.
 */
export const RESPONSES_CONTENT: ContentSupport = {
  format: "OpenAI Responses",
  imageTypes: new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]),
  fileTypes: "any",
  imageUrlSchemes: ["https:", "http:"],
  fileUrlSchemes: ["https:", "http:"],
  mediaInToolResults: true
}

/** Parts as Responses input content: `input_text`, `input_image`, `input_file`. */
const inputContent = (parts: ReadonlyArray<ContentPart>): Array<JsonRecord> =>
  parts.map((part) => {
    if (part._tag === "Text") return { type: "input_text", text: part.text }
    const media = mediaOf(part)
    if (media.isImage) return { type: "input_image", image_url: media.url ?? dataUrlOf(media), detail: part.detail ?? "auto" }
    return media.url !== undefined
      ? { type: "input_file", file_url: media.url }
      : { type: "input_file", file_data: dataUrlOf(media), filename: part.filename ?? "document" }
  })

/** A message as `input` items: the assistant's tool calls and the tools' outputs are items of their own. */
const inputItemsOf = (message: Message): Array<JsonRecord> => {
  const content = message.content
  if (message.role === "user" && typeof content !== "string") return [{ role: "user", content: inputContent(content) }]
  if (message.role === "tool") {
    // A text result stays a string; one with images or files is the list form of `output`.
    const output = typeof content === "string" || content.every((part) => part._tag === "Text") ? textOf(content) : inputContent(content)
    return [{ type: "function_call_output", call_id: message.toolCallId ?? "", output }]
  }
  const text = textOf(content)
  const items: Array<JsonRecord> = []
  if (text.length > 0 || message.toolCalls === undefined) items.push({ role: message.role, content: text })
  for (const call of message.toolCalls ?? []) {
    items.push({ type: "function_call", call_id: call.id, name: call.name, arguments: call.arguments })
  }
  return items
}

const toolChoiceOf = (choice: NonNullable<GenerateRequest["toolChoice"]>): unknown =>
  typeof choice === "string" ? choice : { type: "function", name: choice.name }

const textFormatOf = (format: NonNullable<GenerateRequest["responseFormat"]>): unknown =>
  format.type === "json_schema"
    ? { type: "json_schema", name: format.name, schema: format.schema, strict: format.strict ?? true }
    : { type: format.type }

/**
 * The Responses request body the adapter sends for a request. `stop` sequences have no Responses
 * equivalent and are not sent.
 *
 * @since 0.2.0
 * @category encoding
 */
export const encodeRequest = (
  request: GenerateRequest,
  options: { readonly maxTokens: number; readonly store: boolean; readonly sendMetadata: boolean },
  stream: boolean
): JsonRecord => ({
  model: request.model,
  input: request.messages.flatMap(inputItemsOf),
  ...opt("instructions", request.system),
  max_output_tokens: options.maxTokens,
  store: options.store,
  ...opt("temperature", request.temperature),
  ...opt("top_p", request.topP),
  ...(request.tools !== undefined && request.tools.length > 0
    ? {
      tools: request.tools.map((tool) => ({
        type: "function",
        name: tool.name,
        ...opt("description", tool.description),
        parameters: tool.parameters,
        strict: false
      }))
    }
    : {}),
  ...(request.toolChoice !== undefined ? { tool_choice: toolChoiceOf(request.toolChoice) } : {}),
  ...(request.responseFormat !== undefined ? { text: { format: textFormatOf(request.responseFormat) } } : {}),
  ...(options.sendMetadata && request.metadata !== undefined ? { metadata: request.metadata } : {}),
  ...(stream ? { stream: true } : {})
})

const usageOf = (u: unknown): Usage | undefined => {
  const usage = record(u)
  if (usage === undefined) return undefined
  const inputTokens = number(usage["input_tokens"]) ?? 0
  const outputTokens = number(usage["output_tokens"]) ?? 0
  return { inputTokens, outputTokens, totalTokens: number(usage["total_tokens"]) ?? inputTokens + outputTokens }
}

/** What a finished `response` says: its text, refusal, tool calls and how it ended. */
interface Outcome {
  readonly text: string
  readonly refusal: string | undefined
  readonly toolCalls: Array<ToolCall>
  readonly finishReason: FinishReason
  readonly rawFinishReason: string | undefined
}

/**
 * How a response ended. `incomplete` names its reason; a completed response that called a tool
 * ended to let the caller run it; a refusal part is a refusal whatever the status says.
 *
 * @since 0.2.0
 * @category parsing
 */
export const finishReasonOf = (status: string | undefined, incompleteReason: string | undefined, toolCalled: boolean, refused: boolean): FinishReason => {
  if (refused) return "refusal"
  if (status === "incomplete") {
    return incompleteReason === "max_output_tokens" ? "length" : incompleteReason === "content_filter" ? "content_filter" : "other"
  }
  if (status === "completed") return toolCalled ? "tool_calls" : "stop"
  return "other"
}

const outcomeOf = (response: JsonRecord): Outcome => {
  const text: Array<string> = []
  const refusal: Array<string> = []
  const toolCalls: Array<ToolCall> = []
  for (const entry of array(response["output"]) ?? []) {
    const item = record(entry)
    if (item?.["type"] === "function_call") {
      toolCalls.push({ id: string(item["call_id"]) ?? string(item["id"]) ?? "", name: string(item["name"]) ?? "", arguments: string(item["arguments"]) ?? "" })
    } else if (item?.["type"] === "message") {
      for (const p of array(item["content"]) ?? []) {
        const part = record(p)
        if (part?.["type"] === "output_text") text.push(string(part["text"]) ?? "")
        else if (part?.["type"] === "refusal") refusal.push(string(part["refusal"]) ?? "")
      }
    }
  }
  const status = string(response["status"])
  const reason = string(record(response["incomplete_details"])?.["reason"])
  const refused = refusal.join("")
  return {
    text: text.join(""),
    refusal: refused.length > 0 ? refused : undefined,
    toolCalls,
    finishReason: finishReasonOf(status, reason, toolCalls.length > 0, refused.length > 0),
    rawFinishReason: reason ?? status
  }
}

/**
 * A failed response's or an `error` event's error in the shape the classifier reads. Responses names
 * only a `code` (`server_error`, `rate_limit_exceeded`, `invalid_prompt`, …): an `invalid_*` code is
 * the request's fault, as Chat Completions' `invalid_request_error` type.
 */
const errorPayloadOf = (error: JsonRecord | undefined): JsonRecord => {
  const code = string(error?.["code"])
  return {
    error: {
      ...opt("code", code),
      ...opt("message", string(error?.["message"])),
      ...opt("param", string(error?.["param"])),
      ...(code !== undefined && code.startsWith("invalid_") ? { type: "invalid_request_error" } : {})
    }
  }
}

const failedResponse = (site: CallSite, response: JsonRecord, requestId: string | undefined): ProviderError =>
  fromStreamError({ site, payload: errorPayloadOf(record(response["error"])), requestId })

const decodeResponse = (exchange: Exchange, body: unknown): Effect.Effect<GenerateResponse, ProviderError> => {
  const { requestId, site } = exchange
  // OpenAI-compatible servers may answer 200 with an error object.
  if (isRecord(body) && isRecord(body["error"]) && body["status"] === undefined) {
    return Effect.fail(fromStreamError({ site, payload: body, requestId }))
  }
  if (!isRecord(body) || !Array.isArray(body["output"])) {
    return Effect.fail(malformed(site, "no output in the response", safeStringify(body), requestId))
  }
  if (body["status"] === "failed") return Effect.fail(failedResponse(site, body, requestId))
  const outcome = outcomeOf(body)
  return Effect.succeed(decodedResponse(exchange, body, { ...outcome, usage: usageOf(body["usage"]) }))
}

/**
 * The Responses event grammar: text, refusal and function-call argument deltas; the terminal
 * `response.completed` / `response.incomplete` (the finish, from the final response object) and
 * `response.failed`; `error` events. Other events (`response.created`, `…done`, reasoning) carry
 * nothing the stream model needs.
 */
const eventProtocol = ({ provider, rateLimit, requestId, site }: Exchange): StreamProtocol => {
  const builder = new ResponseBuilder(provider, site.model, site.secrets ?? [])
  const refusal: Array<string> = []
  const finish = (response: JsonRecord | undefined, out: Array<StreamEvent>): undefined => {
    const usage = usageOf(response?.["usage"])
    if (usage !== undefined) {
      builder.usage = usage
      out.push({ _tag: "Usage", usage })
    }
    const status = string(response?.["status"])
    const reason = string(record(response?.["incomplete_details"])?.["reason"])
    const refused = refusal.join("")
    if (refused.length > 0) builder.refusal = refused
    builder.rawFinishReason = reason ?? status
    builder.finishReason = finishReasonOf(status, reason, builder.receivedToolCall, refused.length > 0)
    out.push({ _tag: "Finish", response: builder.build(requestId, rateLimit) })
    return undefined
  }
  const onEvent = (event: SseEvent, out: Array<StreamEvent>): ProviderError | undefined => {
    const data = parseEventObject(site, event.data, `event '${event.event}'`, requestId)
    if (data instanceof InvalidOutput) return data
    const type = string(data["type"]) ?? event.event
    switch (type) {
      case "response.created":
      case "response.in_progress": {
        const response = record(data["response"])
        builder.id ??= string(response?.["id"])
        const model = string(response?.["model"])
        if (model !== undefined) builder.model = model
        return undefined
      }
      case "response.output_text.delta": {
        const text = string(data["delta"]) ?? ""
        if (text.length === 0) return undefined
        builder.addText(text)
        out.push({ _tag: "TextDelta", text })
        return undefined
      }
      case "response.refusal.delta":
        refusal.push(string(data["delta"]) ?? "")
        return undefined
      case "response.output_item.added": {
        const item = record(data["item"])
        if (item?.["type"] !== "function_call") return undefined
        const index = number(data["output_index"]) ?? 0
        const id = string(item["call_id"])
        const name = string(item["name"])
        const args = string(item["arguments"]) ?? ""
        builder.addToolCall(index, id, name, args)
        out.push({ _tag: "ToolCallDelta", index, ...opt("id", id), ...opt("name", name), argumentsDelta: args })
        return undefined
      }
      case "response.function_call_arguments.delta": {
        const index = number(data["output_index"]) ?? 0
        const argumentsDelta = string(data["delta"]) ?? ""
        builder.addToolCall(index, undefined, undefined, argumentsDelta)
        out.push({ _tag: "ToolCallDelta", index, argumentsDelta })
        return undefined
      }
      case "response.completed":
      case "response.incomplete":
        return finish(record(data["response"]), out)
      case "response.failed":
        return failedResponse(site, record(data["response"]) ?? {}, requestId)
      case "error":
        return fromStreamError({ site, payload: errorPayloadOf(data), requestId })
      default:
        return undefined
    }
  }
  return { builder, onEvent }
}

/**
 * Where a Responses server is and how it authenticates, when it is not OpenAI's own API: Azure OpenAI
 * serves the same wire format at `/openai/v1/responses` behind an `api-key` header.
 *
 * @since 0.2.0
 * @category internal
 */
export interface ResponsesFormatOverrides {
  readonly path?: ((request: GenerateRequest, stream: boolean) => string) | undefined
  readonly authHeaders?: Readonly<Record<string, string>> | undefined
  readonly classify?: HttpClassifier | undefined
}

/**
 * The Responses wire format over the shared adapter skeleton.
 *
 * @since 0.2.0
 * @category internal
 */
export const wireFormat = (options: OpenAiResponsesOptions, overrides: ResponsesFormatOverrides = {}): WireFormat => {
  const key = Redacted.value(options.apiKey)
  const store = options.store ?? false
  const sendMetadata = options.sendMetadata ?? false
  return {
    path: overrides.path ?? (() => "/responses"),
    authHeaders: overrides.authHeaders ?? {
      ...(key.length > 0 ? { authorization: `Bearer ${key}` } : {}),
      ...opt("openai-organization", options.organization),
      ...opt("openai-project", options.project)
    },
    content: RESPONSES_CONTENT,
    encode: (request, call) => encodeRequest(request, { maxTokens: call.maxTokens, store, sendMetadata }, call.stream),
    decode: decodeResponse,
    protocol: eventProtocol,
    framing: sseFraming,
    ...(overrides.classify !== undefined ? { classify: overrides.classify } : {})
  }
}

const build = (component: string) =>
(options: OpenAiResponsesOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> =>
  Effect.flatMap(
    resolve(component, options, { name: "openai", baseUrl: DEFAULT_BASE_URL }, {
      organization: options.organization,
      project: options.project
    }),
    (resolved) => Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, resolved, wireFormat(options)))
  )

/**
 * Builds the adapter from an `HttpClient` in context; fails with `InvalidOptions` naming a bad option.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { OpenAiResponses, Transport } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const openai = yield* OpenAiResponses.make({ apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") })
 *   return yield* openai.generate({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], maxTokens: 64 })
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: (
  options: OpenAiResponsesOptions
) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> = build("OpenAiResponses.make")

/**
 * The adapter as a `Provider` layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: OpenAiResponsesOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("OpenAiResponses.layer")(options))

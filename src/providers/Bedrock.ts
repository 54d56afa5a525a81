/**
 * Amazon Bedrock Converse (`POST {endpoint}/model/{modelId}/converse`) and ConverseStream
 * (`…/converse-stream`) as a {@link Provider}: one request shape for every Bedrock model that takes
 * messages (Claude, Nova, Llama, Mistral, …).
 *
 * A wire format over the shared adapter skeleton. The request is `messages` of content blocks (`text`,
 * the assistant's `toolUse`, the tools' `toolResult` — consecutive messages of one role merged, since
 * Converse wants the roles to alternate), `system` blocks, `inferenceConfig` and `toolConfig`; the answer
 * is `output.message.content` with a `stopReason` (`max_tokens` and `model_context_window_exceeded` →
 * `length`, `guardrail_intervened` / `content_filtered` → `content_filter`) and `usage`. A stream is
 * `application/vnd.amazon.eventstream` binary messages (`messageStart` … `messageStop`, then
 * `metadata` with the usage), or an `exception` message after HTTP 200. `json_schema` output is a
 * forced tool by default (as for Anthropic), or Converse's native `outputConfig.textFormat`.
 *
 * Authentication is SigV4 (service `bedrock`, signed over the final URL, headers and body) with static
 * credentials, or a Bedrock API key sent as `Authorization: Bearer …` — then nothing is signed. Errors
 * are classified by the AWS error code (`x-amzn-errortype`, or the stream's `:exception-type`), not by
 * the status alone. Sources in docs/providers.md.
 *
 * @since 0.2.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { InvalidOptions, InvalidOutput, type ProviderError } from "../Errors.js"
import { array, isRecord, type JsonRecord, number, opt, record, safeStringify, string } from "../internal/json.js"
import { type ContentSupport, mediaOf } from "../internal/media.js"
import {
  type FilePart,
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
import { type CommonOptions, decodedResponse, type Exchange, makeHttpAdapter, resolve, type WireFormat } from "./internal/adapter.js"
import { classifyBedrockHttp, classifyBedrockStreamError } from "./internal/bedrockErrors.js"
import { type EventStreamFrame, eventStreamFraming, type EventStreamMessage } from "./internal/eventstream.js"
import { type AwsCredentials, sigV4Signer } from "./internal/sigv4.js"
import { parseEventObject, ResponseBuilder, type StreamProtocol } from "./internal/streaming.js"
import { malformed } from "./internal/wire.js"

/**
 * Static AWS credentials for SigV4. The secret key and the session token are `Redacted` and scrubbed
 * from every error, result and report.
 *
 * @since 0.2.0
 * @category models
 */
export interface BedrockCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: Redacted.Redacted<string>
  /** For temporary credentials (STS, SSO): sent as `x-amz-security-token` and signed. */
  readonly sessionToken?: Redacted.Redacted<string> | undefined
}

/**
 * Options of the Bedrock adapter. Exactly one of `credentials` (SigV4) and `apiKey` (a Bedrock API
 * key, sent as a bearer token) is required. Every default is listed in docs/providers.md.
 *
 * @since 0.2.0
 * @category models
 */
export interface BedrockOptions extends Omit<CommonOptions, "apiKey"> {
  /** The AWS region, e.g. `us-east-1`: the default endpoint's and the signature's. */
  readonly region: string
  /** SigV4 credentials. */
  readonly credentials?: BedrockCredentials | undefined
  /** A Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`): sent as `Authorization: Bearer …`, nothing is signed. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /**
   * The endpoint (a VPC endpoint, a proxy, a test server). Default
   * `https://bedrock-runtime.{region}.amazonaws.com` (`.amazonaws.com.cn` in China regions).
   */
  readonly baseUrl?: string | undefined
  /** Label in errors, spans and metrics. Default `bedrock`. */
  readonly name?: string | undefined
  /**
   * How `json_schema` output is asked for. `tool` (default): a forced tool whose input is the answer,
   * which every model with forced tool choice serves. `native`: Converse's `outputConfig.textFormat`
   * (constrained decoding; fewer models, and a new schema is compiled on first use, which Bedrock says
   * can take minutes — a latency spike a resilience layer should not pick silently).
   */
  readonly structuredOutput?: "tool" | "native" | undefined
}

/**
 * The DNS suffix of each AWS partition other than `aws`, by region prefix — the SDK's partition table
 * (`@aws-sdk/core` `util-endpoints/lib/aws/partitions.js`), which the endpoint rule
 * `https://bedrock-runtime.{Region}.{dnsSuffix}` uses.
 */
const PARTITION_SUFFIXES: ReadonlyArray<readonly [RegExp, string]> = [
  [/^cn-/, "amazonaws.com.cn"],
  [/^eusc-/, "amazonaws.eu"],
  [/^us-isob-/, "sc2s.sgov.gov"],
  [/^us-isof-/, "csp.hci.ic.gov"],
  [/^us-iso-/, "c2s.ic.gov"],
  [/^eu-isoe-/, "cloud.adc-e.uk"]
]

/**
 * The default endpoint of a region: `https://bedrock-runtime.{region}.amazonaws.com`, with the
 * partition's suffix in China, the EU sovereign cloud and the isolated regions.
 *
 * @since 0.2.0
 * @category constants
 */
export const endpointOf = (region: string): string =>
  `https://bedrock-runtime.${region}.${PARTITION_SUFFIXES.find(([prefix]) => prefix.test(region))?.[1] ?? "amazonaws.com"}`

/**
 * The path of a call: the model id (or ARN, or inference profile id) percent-encoded as one segment, as
 * the AWS SDK encodes it (`:` → `%3A`, `/` → `%2F`).
 *
 * @since 0.2.0
 * @category encoding
 */
export const pathOf = (model: string, stream: boolean): string =>
  `/model/${encodeURIComponent(model).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}/${
    stream ? "converse-stream" : "converse"
  }`

const JSON_ONLY_INSTRUCTION = "Respond with a single JSON object and nothing else."

const parseArguments = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    // The model's own malformed arguments are passed back verbatim so it can see what it sent.
    return { _raw: text }
  }
}

/** Converse's image `format` per media type. */
const IMAGE_FORMATS: Readonly<Record<string, string>> = {
  "image/png": "png",
  "image/jpeg": "jpeg",
  "image/gif": "gif",
  "image/webp": "webp"
}

/** Converse's document `format` per media type. */
const DOCUMENT_FORMATS: Readonly<Record<string, string>> = {
  "application/pdf": "pdf",
  "text/csv": "csv",
  "application/msword": "doc",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
  "application/vnd.ms-excel": "xls",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
  "text/html": "html",
  "text/plain": "txt",
  "text/markdown": "md"
}

interface WireMessage {
  readonly role: "user" | "assistant"
  readonly content: Array<JsonRecord>
}

/**
 * What Converse carries (docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ImageBlock.html,
 * …/API_runtime_DocumentBlock.html, …/API_runtime_ToolResultContentBlock.html): PNG, JPEG, GIF and
 * WebP images and nine document formats, as bytes or from `s3://` (never an https URL), in user
 * turns and in tool results.
 */
export const CONTENT: ContentSupport = {
  format: "Bedrock Converse",
  imageTypes: new Set(Object.keys(IMAGE_FORMATS)),
  fileTypes: new Set(Object.keys(DOCUMENT_FORMATS)),
  imageUrlSchemes: ["s3:"],
  fileUrlSchemes: ["s3:"],
  mediaInToolResults: true
}

/**
 * A document's `name`: Converse allows letters, digits, single spaces, hyphens, parentheses and square
 * brackets, so anything else in the file name becomes a hyphen.
 */
const documentName = (filename: string | undefined): string => {
  const name = (filename ?? "").replace(/[^A-Za-z0-9\s\-()[\]]/g, "-").replace(/\s+/g, " ").trim()
  return name.length > 0 ? name : "document"
}

const mediaBlock = (part: FilePart): JsonRecord => {
  const media = mediaOf(part)
  const source = media.url !== undefined ? { s3Location: { uri: media.url } } : { bytes: media.base64 ?? "" }
  return media.isImage
    ? { image: { format: IMAGE_FORMATS[media.mediaType] ?? media.mediaType, source } }
    : { document: { format: DOCUMENT_FORMATS[media.mediaType] ?? media.mediaType, name: documentName(part.filename), source } }
}

const contentBlocks = (content: Message["content"]): Array<JsonRecord> =>
  typeof content === "string" ? [{ text: content }] : content.map((part) => (part._tag === "Text" ? { text: part.text } : mediaBlock(part)))

/** One message as Converse content blocks; a tool result is a user turn, as Converse wants it. */
const wireMessageOf = (message: Message): WireMessage => {
  if (message.role === "tool") {
    return { role: "user", content: [{ toolResult: { toolUseId: message.toolCallId ?? "", content: contentBlocks(message.content) } }] }
  }
  if (message.role === "assistant") {
    const text = textOf(message.content)
    const content: Array<JsonRecord> = text.length > 0 ? [{ text }] : []
    for (const call of message.toolCalls ?? []) {
      content.push({ toolUse: { toolUseId: call.id, name: call.name, input: parseArguments(call.arguments) } })
    }
    return { role: "assistant", content: content.length > 0 ? content : [{ text }] }
  }
  return { role: "user", content: contentBlocks(message.content) }
}

/**
 * The conversation as Converse `messages`. Consecutive turns of one role are merged into one message —
 * the tool results answering one assistant turn become one user message, as Converse requires (it
 * rejects two user or two assistant messages in a row).
 */
const messagesOf = (messages: ReadonlyArray<Message>): Array<WireMessage> => {
  const out: Array<WireMessage> = []
  for (const message of messages) {
    if (message.role === "system") continue
    const wire = wireMessageOf(message)
    const last = out[out.length - 1]
    if (last !== undefined && last.role === wire.role) last.content.push(...wire.content)
    else out.push({ role: wire.role, content: [...wire.content] })
  }
  return out
}

/** The forced tool carrying structured output, when the request asks for a JSON schema in `tool` mode. */
const structuredToolName = (request: GenerateRequest, mode: "tool" | "native"): string | undefined =>
  request.responseFormat?.type === "json_schema" && mode === "tool" ? request.responseFormat.name : undefined

const hasToolBlocks = (messages: ReadonlyArray<Message>): boolean =>
  messages.some((m) => m.role === "tool" || (m.toolCalls !== undefined && m.toolCalls.length > 0))

/**
 * `toolConfig`: the tools as `toolSpec`s and the choice. Converse has no `none`: the tools are then left
 * out, unless the conversation already holds tool blocks (Converse refuses those without a
 * `toolConfig`) — then they are sent with the model's default choice.
 */
const toolConfigOf = (request: GenerateRequest, structured: string | undefined): JsonRecord | undefined => {
  const tools: Array<JsonRecord> = (request.tools ?? []).map((tool) => ({
    toolSpec: { name: tool.name, ...opt("description", tool.description), inputSchema: { json: tool.parameters } }
  }))
  const format = request.responseFormat
  if (structured !== undefined && format?.type === "json_schema") {
    tools.push({ toolSpec: { name: format.name, description: "Return the answer as this tool's input.", inputSchema: { json: format.schema } } })
    return { tools, toolChoice: { tool: { name: format.name } } }
  }
  if (tools.length === 0) return undefined
  const choice = request.toolChoice
  if (choice === "none") return hasToolBlocks(request.messages) ? { tools } : undefined
  const toolChoice = choice === undefined
    ? undefined
    : typeof choice === "string"
    ? (choice === "required" ? { any: {} } : { auto: {} })
    : { tool: { name: choice.name } }
  return { tools, ...opt("toolChoice", toolChoice) }
}

/**
 * The Converse request body the adapter sends (the model id goes in the path, see {@link pathOf}):
 * system lifted into `system` blocks, tools and structured output translated.
 *
 * @example
 * ```ts
 * import * as Bedrock from "effect-llm-resilience/Bedrock"
 *
 * const body = Bedrock.encodeRequest(
 *   { model: "anthropic.claude-3-haiku-20240307-v1:0", messages: [{ role: "user", content: "hi" }], maxTokens: 64 },
 *   { maxTokens: 64 }
 * )
 * // { messages: [{ role: "user", content: [{ text: "hi" }] }], inferenceConfig: { maxTokens: 64 } }
 * ```
 *
 * @since 0.2.0
 * @category encoding
 */
export const encodeRequest = (
  request: GenerateRequest,
  options: { readonly maxTokens: number; readonly structuredOutput?: "tool" | "native" | undefined }
): JsonRecord => {
  const mode = options.structuredOutput ?? "tool"
  const system: Array<JsonRecord> = []
  if (request.system !== undefined) system.push({ text: request.system })
  for (const message of request.messages) if (message.role === "system") system.push({ text: textOf(message.content) })
  if (request.responseFormat?.type === "json_object") system.push({ text: JSON_ONLY_INSTRUCTION })
  const format = request.responseFormat
  const toolConfig = toolConfigOf(request, structuredToolName(request, mode))
  return {
    messages: messagesOf(request.messages),
    ...(system.length > 0 ? { system } : {}),
    inferenceConfig: {
      maxTokens: options.maxTokens,
      ...opt("temperature", request.temperature),
      ...opt("topP", request.topP),
      ...(request.stop !== undefined && request.stop.length > 0 ? { stopSequences: request.stop } : {})
    },
    ...opt("toolConfig", toolConfig),
    ...(mode === "native" && format?.type === "json_schema"
      ? {
        outputConfig: {
          textFormat: {
            type: "json_schema",
            // Converse takes the schema as JSON text, not as a JSON value.
            structure: { jsonSchema: { schema: safeStringify(format.schema), name: format.name } }
          }
        }
      }
      : {})
  }
}

/**
 * Maps Converse's `stopReason` to the normalised {@link FinishReason}. A forced structured-output tool
 * call ends with `tool_use`, which for the caller is a normal stop; a response that filled the context
 * window is as truncated as one that hit `maxTokens`.
 *
 * @since 0.2.0
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
    case "guardrail_intervened":
    case "content_filtered":
      return "content_filter"
    default:
      // malformed_model_output / malformed_tool_use and reasons added later: the output gate judges.
      return "other"
  }
}

/**
 * Converse `usage`. Cache reads and writes are prompt tokens too (as for Anthropic), so they count as
 * input; `totalTokens` is Bedrock's when it sends one.
 */
const usageOf = (u: unknown): Usage | undefined => {
  const usage = record(u)
  if (usage === undefined) return undefined
  const inputTokens = (number(usage["inputTokens"]) ?? 0) + (number(usage["cacheReadInputTokens"]) ?? 0) +
    (number(usage["cacheWriteInputTokens"]) ?? 0)
  const outputTokens = number(usage["outputTokens"]) ?? 0
  return { inputTokens, outputTokens, totalTokens: number(usage["totalTokens"]) ?? inputTokens + outputTokens }
}

const decodeResponse = (mode: "tool" | "native") => (exchange: Exchange, body: unknown): Effect.Effect<GenerateResponse, ProviderError> => {
  const { request, requestId, site } = exchange
  const content = array(record(record(record(body)?.["output"])?.["message"])?.["content"])
  if (!isRecord(body) || content === undefined) {
    return Effect.fail(malformed(site, "no output.message.content in the Converse response", safeStringify(body), requestId))
  }
  const structured = structuredToolName(request, mode)
  const text: Array<string> = []
  const toolCalls: Array<ToolCall> = []
  for (const item of content) {
    const block = record(item)
    const blockText = string(block?.["text"])
    if (blockText !== undefined) text.push(blockText)
    const toolUse = record(block?.["toolUse"])
    if (toolUse === undefined) continue
    const args = safeStringify(toolUse["input"] ?? {})
    if (structured !== undefined && toolUse["name"] === structured) text.push(args)
    else toolCalls.push({ id: string(toolUse["toolUseId"]) ?? "", name: string(toolUse["name"]) ?? "", arguments: args })
  }
  const rawFinishReason = string(body["stopReason"])
  return Effect.succeed(decodedResponse(exchange, body, {
    text: text.join(""),
    toolCalls,
    finishReason: finishReasonOf(rawFinishReason, structured !== undefined),
    rawFinishReason,
    usage: usageOf(body["usage"])
  }))
}

const utf8 = new TextDecoder("utf-8")

/** How the deltas of one content block are treated. */
interface Block {
  readonly kind: "tool" | "structured"
  readonly toolIndex: number
}

/**
 * The ConverseStream grammar: `messageStart`, `contentBlockStart` (tool use only: text blocks start
 * with their first delta), `contentBlockDelta` (`text`, `toolUse.input` JSON fragments; reasoning and
 * citations are not answer content), `contentBlockStop`, `messageStop` (the stop reason) and
 * `metadata` (the usage). The answer is complete when both `messageStop` and `metadata` arrived, in
 * either order; a body that ends cleanly after `messageStop` without `metadata` is complete too, with
 * zero usage (undici reports a cut body as an error, so a clean end is the server's decision, and the
 * content is whole). Before `messageStop`, any end is `StreamInterrupted`.
 */
const eventProtocol = (mode: "tool" | "native") => (exchange: Exchange): StreamProtocol<EventStreamFrame> => {
  const { provider, rateLimit, request, requestId, site } = exchange
  const builder = new ResponseBuilder(provider, site.model, site.secrets ?? [])
  const structured = structuredToolName(request, mode)
  const blocks = new Map<number, Block>()
  let toolCount = 0
  let stopped = false
  let metered = false
  const emitText = (text: string, out: Array<StreamEvent>) => {
    if (text.length === 0) return
    builder.addText(text)
    out.push({ _tag: "TextDelta", text })
  }
  const finish = (out: Array<StreamEvent>): undefined => {
    out.push({ _tag: "Finish", response: builder.build(requestId, rateLimit) })
    return undefined
  }
  const onBlockStart = (payload: JsonRecord, out: Array<StreamEvent>): undefined => {
    const toolUse = record(record(payload["start"])?.["toolUse"])
    if (toolUse === undefined) return undefined
    const index = number(payload["contentBlockIndex"]) ?? 0
    const name = string(toolUse["name"])
    if (structured !== undefined && name === structured) {
      blocks.set(index, { kind: "structured", toolIndex: -1 })
      return undefined
    }
    const toolIndex = toolCount++
    blocks.set(index, { kind: "tool", toolIndex })
    const id = string(toolUse["toolUseId"])
    builder.addToolCall(toolIndex, id, name, "")
    out.push({ _tag: "ToolCallDelta", index: toolIndex, ...opt("id", id), ...opt("name", name), argumentsDelta: "" })
    return undefined
  }
  const onBlockDelta = (payload: JsonRecord, out: Array<StreamEvent>): ProviderError | undefined => {
    const delta = record(payload["delta"])
    emitText(string(delta?.["text"]) ?? "", out)
    const toolUse = record(delta?.["toolUse"])
    if (toolUse === undefined) return undefined
    const block = blocks.get(number(payload["contentBlockIndex"]) ?? 0)
    const input = string(toolUse["input"]) ?? ""
    if (block === undefined) return malformed(site, "a toolUse delta for a block that never started as toolUse", safeStringify(payload), requestId)
    if (block.kind === "structured") emitText(input, out)
    else {
      builder.addToolCall(block.toolIndex, undefined, undefined, input)
      out.push({ _tag: "ToolCallDelta", index: block.toolIndex, argumentsDelta: input })
    }
    return undefined
  }
  const onEvent = (type: string, payload: JsonRecord, out: Array<StreamEvent>): ProviderError | undefined => {
    switch (type) {
      case "contentBlockStart":
        return onBlockStart(payload, out)
      case "contentBlockDelta":
        return onBlockDelta(payload, out)
      case "messageStop": {
        stopped = true
        builder.rawFinishReason = string(payload["stopReason"])
        builder.finishReason = finishReasonOf(builder.rawFinishReason, structured !== undefined)
        return metered ? finish(out) : undefined
      }
      case "metadata": {
        metered = true
        const usage = usageOf(payload["usage"])
        if (usage !== undefined) {
          builder.usage = usage
          out.push({ _tag: "Usage", usage })
        }
        return stopped ? finish(out) : undefined
      }
      default:
        // messageStart, contentBlockStop, and event types added later carry nothing we need (the SDK,
        // too, skips event types it does not know).
        return undefined
    }
  }
  const onFrame = (frame: EventStreamFrame, out: Array<StreamEvent>): ProviderError | undefined => {
    if (frame._tag === "End") return stopped ? finish(out) : undefined
    const messageType = frame.headers[":message-type"]
    if (messageType === "event") {
      const type = frame.headers[":event-type"] ?? ""
      const payload = parseEventObject(site, utf8.decode(frame.body), `event '${type}'`, requestId)
      return payload instanceof InvalidOutput ? payload : onEvent(type, payload, out)
    }
    if (messageType === "exception" || messageType === "error") return streamFailure(frame, exchange, requestId)
    return malformed(site, `an event-stream message of type '${messageType ?? "(none)"}'`, utf8.decode(frame.body), requestId)
  }
  return { builder, onEvent: onFrame }
}

/** An `exception` (modelled: `:exception-type`, JSON payload) or `error` (unmodelled) message, classified. */
const streamFailure = (frame: EventStreamMessage, { site }: Exchange, requestId: string | undefined): ProviderError => {
  const text = utf8.decode(frame.body)
  const parsed = parseEventObject(site, text, "exception payload", requestId)
  const exception = frame.headers[":message-type"] === "exception"
  return classifyBedrockStreamError({
    site,
    code: exception ? frame.headers[":exception-type"] : frame.headers[":error-code"],
    payload: parsed instanceof InvalidOutput ? undefined : parsed,
    message: exception ? undefined : frame.headers[":error-message"],
    rawBody: parsed instanceof InvalidOutput ? parsed.rawBody ?? "" : safeStringify(parsed),
    requestId
  })
}

/** How a call is authenticated, decided once at construction. */
type Auth =
  | { readonly _tag: "Bearer"; readonly token: string }
  | { readonly _tag: "SigV4"; readonly credentials: AwsCredentials }

const wireFormat = (options: BedrockOptions, auth: Auth): WireFormat<EventStreamFrame> => {
  const mode = options.structuredOutput ?? "tool"
  return {
    path: (request, stream) => pathOf(request.model, stream),
    authHeaders: auth._tag === "Bearer" ? { authorization: `Bearer ${auth.token}` } : {},
    content: CONTENT,
    encode: (request, call) => encodeRequest(request, { maxTokens: call.maxTokens, structuredOutput: mode }),
    decode: decodeResponse(mode),
    protocol: eventProtocol(mode),
    framing: eventStreamFraming,
    classify: classifyBedrockHttp,
    sign: auth._tag === "SigV4" ? sigV4Signer(options.region, auth.credentials) : undefined
  }
}

/** A region as AWS spells them (`us-east-1`, `us-gov-west-1`, `eu-central-2`): it becomes a host name. */
const REGION = /^[a-z]{2,}(?:-[a-z]+)+-\d{1,2}$/
/** What may go in a header or a signature: printable ASCII, no spaces (a pasted newline is a common mistake). */
const TOKEN_TEXT = /^[\x21-\x7e]+$/

/** The text of a `Redacted` option, or `undefined` when it is not a Redacted string (a JS caller's slip). */
const redactedText = (value: unknown): string | undefined => {
  if (!Redacted.isRedacted(value)) return undefined
  const text: unknown = Redacted.value(value)
  return typeof text === "string" ? text : undefined
}

/**
 * The Bedrock-specific options, checked: the region, and exactly one way to authenticate. Credential
 * values are never echoed.
 */
const authOf = (component: string, options: BedrockOptions): Auth | InvalidOptions => {
  const invalid = (option: string, message: string) => new InvalidOptions({ component, option, message: `${option} ${message}` })
  if (typeof options.region !== "string" || !REGION.test(options.region)) {
    return invalid("region", `must be an AWS region such as us-east-1, got "${String(options.region).slice(0, 64)}"`)
  }
  if (options.structuredOutput !== undefined && options.structuredOutput !== "tool" && options.structuredOutput !== "native") {
    return invalid("structuredOutput", `must be "tool" or "native"`)
  }
  const token = options.apiKey === undefined ? undefined : redactedText(options.apiKey)
  if (options.apiKey !== undefined && (token === undefined || !TOKEN_TEXT.test(token))) {
    return invalid("apiKey", "must be a Redacted Bedrock API key (printable text, no spaces or line breaks)")
  }
  const credentials = options.credentials
  if (token !== undefined && credentials !== undefined) {
    return invalid("credentials", "and apiKey are exclusive: give SigV4 credentials or a Bedrock API key, not both")
  }
  if (token !== undefined) return { _tag: "Bearer", token }
  if (credentials === undefined) {
    return invalid("credentials", "are required: give SigV4 credentials (accessKeyId, secretAccessKey) or a Bedrock API key (apiKey)")
  }
  if (typeof credentials.accessKeyId !== "string" || !TOKEN_TEXT.test(credentials.accessKeyId)) {
    return invalid("credentials.accessKeyId", "must be an AWS access key id (printable text, no spaces or line breaks)")
  }
  const secretAccessKey = redactedText(credentials.secretAccessKey)
  if (secretAccessKey === undefined || !TOKEN_TEXT.test(secretAccessKey)) {
    return invalid("credentials.secretAccessKey", "must be a Redacted secret access key (printable text, no spaces or line breaks)")
  }
  const sessionToken = credentials.sessionToken === undefined ? undefined : redactedText(credentials.sessionToken)
  if (credentials.sessionToken !== undefined && (sessionToken === undefined || !TOKEN_TEXT.test(sessionToken))) {
    return invalid("credentials.sessionToken", "must be a Redacted session token (printable text, no spaces or line breaks)")
  }
  return { _tag: "SigV4", credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey, ...opt("sessionToken", sessionToken) } }
}

/** `make` under the name of the constructor the caller used, so an `InvalidOptions` says which. */
const build = (component: string) =>
(options: BedrockOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> => {
  const auth = authOf(component, options)
  if (auth instanceof InvalidOptions) return Effect.fail(auth)
  // The skeleton's `apiKey` is the bearer token (scrubbed as its secret); with SigV4 it is empty, and
  // the secret key and session token are added to the secrets instead — they are never sent, but an
  // error body or a proxy page could still echo them.
  const common: CommonOptions = { ...options, apiKey: Redacted.make(auth._tag === "Bearer" ? auth.token : "") }
  return Effect.flatMap(
    resolve(component, common, { name: "bedrock", baseUrl: endpointOf(options.region) }),
    (resolved) => {
      const secrets = auth._tag === "SigV4"
        ? [...resolved.secrets, auth.credentials.secretAccessKey, ...(auth.credentials.sessionToken !== undefined ? [auth.credentials.sessionToken] : [])]
        : resolved.secrets
      return Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, { ...resolved, secrets }, wireFormat(options, auth)))
    }
  )
}

/**
 * Builds the adapter from an `HttpClient` in context. Fails with `InvalidOptions` (naming the option)
 * when an option cannot work: a region that is not one, no credentials or both kinds, a credential
 * that cannot be sent or signed, a `baseUrl` that is not an http(s) URL, a bound that is not a positive
 * integer.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { Transport } from "effect-llm-resilience"
 * import * as Bedrock from "effect-llm-resilience/Bedrock"
 *
 * const program = Effect.gen(function*() {
 *   const bedrock = yield* Bedrock.make({
 *     region: "us-east-1",
 *     credentials: {
 *       accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? "",
 *       secretAccessKey: Redacted.make(process.env.AWS_SECRET_ACCESS_KEY ?? "")
 *     }
 *   })
 *   return yield* bedrock.generate({
 *     model: "anthropic.claude-3-haiku-20240307-v1:0",
 *     messages: [{ role: "user", content: "hi" }],
 *     maxTokens: 64
 *   })
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: (
  options: BedrockOptions
) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> = build("Bedrock.make")

/**
 * The adapter as a `Provider` layer (fails with `InvalidOptions` like {@link make}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: BedrockOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("Bedrock.layer")(options))

const nonEmpty = <A extends string | Redacted.Redacted<string>>(value: Option.Option<A>): A | undefined => {
  if (Option.isNone(value)) return undefined
  const text = typeof value.value === "string" ? value.value : Redacted.value(value.value)
  return text.length > 0 ? value.value : undefined
}

/** The options the standard AWS variables describe (the bearer token wins, as in the AWS SDK). */
const fromEnvironment = (env: {
  readonly region: string
  readonly bearer: Option.Option<Redacted.Redacted<string>>
  readonly accessKeyId: Option.Option<string>
  readonly secretAccessKey: Option.Option<Redacted.Redacted<string>>
  readonly sessionToken: Option.Option<Redacted.Redacted<string>>
  readonly baseUrl: Option.Option<string>
}): BedrockOptions | InvalidOptions => {
  const component = "Bedrock.layerConfig"
  const base = { region: env.region, ...opt("baseUrl", nonEmpty(env.baseUrl)) }
  const bearer = nonEmpty(env.bearer)
  if (bearer !== undefined) return { ...base, apiKey: bearer }
  const accessKeyId = nonEmpty(env.accessKeyId)
  const secretAccessKey = nonEmpty(env.secretAccessKey)
  if (accessKeyId === undefined && secretAccessKey === undefined) {
    return new InvalidOptions({
      component,
      option: "AWS_ACCESS_KEY_ID",
      message: "no Bedrock credentials: set AWS_BEARER_TOKEN_BEDROCK, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)"
    })
  }
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    const missing = accessKeyId === undefined ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY"
    return new InvalidOptions({ component, option: missing, message: `${missing} is not set (SigV4 needs both the key id and the secret key)` })
  }
  return { ...base, credentials: { accessKeyId, secretAccessKey, ...opt("sessionToken", nonEmpty(env.sessionToken)) } }
}

/** What the standard AWS variables say; `given` values win over them. */
const environment = (given: EnvironmentOverrides) =>
  Config.all({
    region: given.region !== undefined
      ? Config.succeed(given.region)
      : Config.orElse(Config.string("AWS_REGION"), () => Config.string("AWS_DEFAULT_REGION")),
    bearer: Config.option(Config.redacted("AWS_BEARER_TOKEN_BEDROCK")),
    accessKeyId: Config.option(Config.string("AWS_ACCESS_KEY_ID")),
    secretAccessKey: Config.option(Config.redacted("AWS_SECRET_ACCESS_KEY")),
    sessionToken: Config.option(Config.redacted("AWS_SESSION_TOKEN")),
    baseUrl: given.baseUrl !== undefined ? Config.succeed(Option.some(given.baseUrl)) : Config.option(Config.string("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"))
  })

/**
 * What {@link makeConfig} takes from its caller instead of the environment.
 *
 * @since 0.2.0
 * @category models
 */
export interface EnvironmentOverrides {
  readonly region?: string | undefined
  readonly baseUrl?: string | undefined
  readonly name?: string | undefined
}

/**
 * The adapter configured from the standard AWS environment: `AWS_REGION` (else `AWS_DEFAULT_REGION`),
 * then either `AWS_BEARER_TOKEN_BEDROCK` (a Bedrock API key; preferred when set, as the AWS SDK does)
 * or `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`); secrets are read with
 * `Config.redacted`. `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` overrides the endpoint. `given` values win
 * over the variables. A missing region is a `ConfigError`; missing or half-set credentials are
 * `InvalidOptions` naming the variable. Profiles, SSO and instance roles are not read: resolve those
 * credentials with the AWS SDK and pass them to {@link make}.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeConfig = (
  given: EnvironmentOverrides = {}
): Effect.Effect<ProviderShape<ProviderError>, ConfigError.ConfigError | InvalidOptions, HttpClient.HttpClient> =>
  Effect.flatMap(environment(given), (env) => {
    const options = fromEnvironment(env)
    return options instanceof InvalidOptions
      ? Effect.fail(options)
      : build("Bedrock.layerConfig")({ ...options, ...opt("name", given.name) })
  })

/**
 * The adapter from the standard AWS environment, as a `Provider` layer (see {@link makeConfig}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Provider, ConfigError.ConfigError | InvalidOptions, HttpClient.HttpClient> = Layer
  .effect(Provider, makeConfig())

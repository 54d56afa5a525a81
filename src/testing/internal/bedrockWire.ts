/**
 * Amazon Bedrock Converse on the wire (`POST /model/{modelId}/converse` and `/converse-stream`):
 * `{output:{message:{role,content}}, stopReason, usage, metrics}` bodies; ConverseStream as
 * `application/vnd.amazon.eventstream` binary messages (messageStart, contentBlockStart for tool use,
 * contentBlockDelta, contentBlockStop, messageStop, metadata) encoded with the AWS SDK's own codec, so
 * the SDK parses them; errors as AWS sends them — the `x-amzn-errortype` header
 * (`ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/`) and `{"message": …}` —
 * and, inside a 200 stream, `exception` messages (`:exception-type: throttlingException`). The request
 * id header is `x-amzn-requestid` (a UUID); Bedrock sends no rate-limit headers. Shapes and messages:
 * /tmp/docs/bedrock.md (→ docs/providers.md).
 *
 * @internal
 */
import { encodeMessage } from "../../providers/internal/eventstream.js"
import type { MediaSeen } from "../ChaosServer.js"
import { base64Bytes, collectMedia, mediaTokens, mediaTypeOfExtension, type PartReader, seen, textDocument } from "./media.js"
import type { ChatRequest, PathFacts, RequestProblem } from "./request.js"
import type { Completion, ErrorSpec, Frame, RenderedError, StreamFrames, Wire } from "./wire.js"
import { definedOverrides } from "./wire.js"
import { isRecord } from "../../internal/json.js"

const utf8 = new TextEncoder()

/** One event-stream `event` message with a JSON payload, as Bedrock frames it. */
const event = (type: string, payload: unknown): Frame =>
  encodeMessage({ ":event-type": type, ":content-type": "application/json", ":message-type": "event" }, utf8.encode(JSON.stringify(payload)))

/** An event whose payload is the given text verbatim (malformed-frame faults). */
const rawEvent = (type: string, text: string): Frame =>
  encodeMessage({ ":event-type": type, ":content-type": "application/json", ":message-type": "event" }, utf8.encode(text))

/** `stopReason`: tool calls end with `tool_use` (forced or not), a filter with `content_filtered`. */
const stopReason = (c: Completion): string =>
  c.finish === "length"
    ? "max_tokens"
    : c.finish === "filtered"
    ? "content_filtered"
    : c.toolCalls.length > 0
    ? "tool_use"
    : "end_turn"

const toolUseId = (id: string): string => `tooluse_${id}`

/** A tool call's `input` object; arguments cut short by a fault parse to nothing, so `{}`. */
const inputOf = (args: string): unknown => {
  try {
    return JSON.parse(args)
  } catch {
    return {}
  }
}

const usage = (c: Completion) => ({
  inputTokens: c.promptTokens,
  outputTokens: c.completionTokens,
  totalTokens: c.promptTokens + c.completionTokens
})

/** The AWS error code and default message of an error, before overrides. */
interface AwsError {
  readonly status: number
  readonly code: string
  readonly message: string
}

const TOO_MANY_TOKENS = "Too many tokens, please wait before trying again."

/** The exception AWS models for a status (Bedrock runtime's error shapes and their `httpError`). */
const byStatus = (status: number): AwsError => {
  switch (status) {
    case 400:
      return { status, code: "ValidationException", message: "The input fails to satisfy the constraints specified by Amazon Bedrock." }
    case 401:
    case 403:
      return { status: 403, code: status === 401 ? "UnrecognizedClientException" : "AccessDeniedException", message: status === 401 ? "The security token included in the request is invalid." : "You don't have access to the model with the specified model ID." }
    case 404:
      return { status, code: "ResourceNotFoundException", message: "The specified resource ARN was not found." }
    case 408:
      return { status, code: "ModelTimeoutException", message: "The request took too long to process. Processing time exceeded the model timeout length." }
    case 424:
      return { status, code: "ModelErrorException", message: "The request failed due to an error while processing the model." }
    case 429:
      return { status, code: "ThrottlingException", message: TOO_MANY_TOKENS }
    case 503:
    case 529:
      // AWS has no 529: an overloaded Bedrock is ServiceUnavailableException, 503.
      return { status: 503, code: "ServiceUnavailableException", message: "Too many connections, please wait before trying again." }
  }
  return status >= 500
    ? { status, code: "InternalServerException", message: "An internal server error occurred. Retry your request." }
    : { status, code: "ValidationException", message: `Request failed with status ${status}.` }
}

const base = (spec: ErrorSpec): AwsError => {
  switch (spec.kind) {
    case "rate_limit":
      return { status: 429, code: "ThrottlingException", message: spec.limitType === "requests" ? "Too many requests, please wait before trying again." : TOO_MANY_TOKENS }
    case "insufficient_quota":
      // A spent *daily* quota comes as a throttle that no wait of seconds clears.
      return { status: 429, code: "ThrottlingException", message: "Too many tokens per day, please wait before trying again." }
    case "billing":
      return { status: 403, code: "AccessDeniedException", message: "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided." }
    case "overloaded":
      return byStatus(503)
    case "context_length":
      return { status: 400, code: "ValidationException", message: "Input is too long for requested model." }
    case "http":
      return byStatus(spec.status)
    case "server_error":
      return byStatus(500)
    case "invalid_request":
      return { status: 400, code: "ValidationException", message: spec.message }
    case "unknown_path":
      return { status: 404, code: "UnknownOperationException", message: `No operation matches ${spec.method} ${spec.path}.` }
  }
}

const errorOf = (spec: ErrorSpec): AwsError => {
  const error = base(spec)
  const overrides = definedOverrides(spec)
  return { status: error.status, code: overrides.type ?? error.code, message: overrides.message ?? error.message }
}

/** The exceptions ConverseStream can carry (its output union); another error is sent as the nearest. */
const STREAM_EXCEPTIONS: ReadonlySet<string> = new Set([
  "throttlingException",
  "serviceUnavailableException",
  "modelStreamErrorException",
  "internalServerException",
  "validationException"
])

const streamExceptionType = (code: string): string => {
  const camel = code.length > 0 ? code[0]!.toLowerCase() + code.slice(1) : code
  return STREAM_EXCEPTIONS.has(camel) ? camel : "internalServerException"
}

/**
 * The blocks after the text: each tool call is a block — contentBlockStart with the `toolUse`,
 * `toolUse.input` fragments, contentBlockStop (the block before it is closed first). Returns the
 * frames and the index of the last block opened (-1: none).
 */
const toolUseFrames = (c: Completion, firstIndex: number): { readonly frames: Array<Frame>; readonly last: number } => {
  const frames: Array<Frame> = []
  c.toolCalls.forEach((call, k) => {
    const index = firstIndex + k
    if (index > 0) frames.push(event("contentBlockStop", { contentBlockIndex: index - 1 }))
    frames.push(event("contentBlockStart", { contentBlockIndex: index, start: { toolUse: { toolUseId: toolUseId(call.id), name: call.name } } }))
    for (const input of call.argumentDeltas) frames.push(event("contentBlockDelta", { contentBlockIndex: index, delta: { toolUse: { input } } }))
  })
  return { frames, last: firstIndex + c.toolCalls.length - 1 }
}

/** A UUID-shaped id, as Bedrock's `x-amzn-RequestId`. */
const uuid = (hex: string): string => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`

/** The Bedrock Converse wire format. */
export const bedrockWire: Wire = {
  api: "bedrock",
  requestIdHeader: "x-amzn-requestid",
  defaultContextWindow: 200_000,
  streamContentType: "application/vnd.amazon.eventstream",

  requestId: (rng) => uuid(rng.hex(16)),
  // Converse bodies carry no response id; the request id is the handle.
  responseId: (rng) => uuid(rng.hex(16)),

  // Bedrock sends no rate-limit headers (its quotas are only visible as ThrottlingException).
  headers: () => ({}),

  error: (spec): RenderedError => {
    const { code, message, status } = errorOf(spec)
    return {
      status,
      body: JSON.stringify({ message }),
      headers: { "x-amzn-errortype": `${code}:http://internal.amazon.com/coral/com.amazon.bedrock/` }
    }
  },

  streamError: (spec) => {
    const { code, message } = errorOf(spec)
    return encodeMessage(
      { ":exception-type": streamExceptionType(code), ":content-type": "application/json", ":message-type": "exception" },
      utf8.encode(JSON.stringify({ message }))
    )
  },

  completion: (c) =>
    JSON.stringify({
      output: {
        message: {
          role: "assistant",
          content: [
            ...(c.text === "" ? [] : [{ text: c.text }]),
            ...c.toolCalls.map((call) => ({ toolUse: { toolUseId: toolUseId(call.id), name: call.name, input: inputOf(call.arguments) } }))
          ]
        }
      },
      stopReason: stopReason(c),
      usage: usage(c),
      metrics: { latencyMs: 0 }
    }),

  stream: (c): StreamFrames => {
    const hasText = c.deltas.length > 0
    const tools = toolUseFrames(c, hasText ? 1 : 0)
    const lastBlock = tools.last >= 0 ? tools.last : hasText ? 0 : -1
    return {
      head: [event("messageStart", { role: "assistant" })],
      deltas: [
        // Text blocks have no contentBlockStart in ConverseStream: the first delta opens them.
        ...c.deltas.map((text) => event("contentBlockDelta", { contentBlockIndex: 0, delta: { text } })),
        ...tools.frames
      ],
      // Usage always arrives, in `metadata` after `messageStop` (there is no include_usage switch).
      tail: [
        ...(lastBlock >= 0 ? [event("contentBlockStop", { contentBlockIndex: lastBlock })] : []),
        event("messageStop", { stopReason: stopReason(c) }),
        event("metadata", { usage: usage(c), metrics: { latencyMs: 0 } })
      ]
    }
  },

  malformedBody: () => `{"output":{"message":{"role":"assistant","content":[{"text":"`,

  malformedFrame: () => rawEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":`),

  rawFrame: (payload) => rawEvent("contentBlockDelta", payload),

  // The runtime has no model list; this is the control plane's ListFoundationModels shape.
  models: (ids) =>
    JSON.stringify({
      modelSummaries: ids.map((id) => ({
        modelId: id,
        modelName: id,
        providerName: id.split(".")[0] ?? id,
        inputModalities: ["TEXT"],
        outputModalities: ["TEXT"],
        responseStreamingSupported: true,
        inferenceTypesSupported: ["ON_DEMAND"],
        modelLifecycle: { status: "ACTIVE" }
      }))
    })
}

/** The text of Converse content blocks: `text` blocks, and the text inside `toolResult` blocks. */
const blocksText = (content: unknown): string => {
  if (!Array.isArray(content)) return ""
  const parts: Array<string> = []
  for (const block of content) {
    if (!isRecord(block)) continue
    if (typeof block["text"] === "string") parts.push(block["text"])
    const result = block["toolResult"]
    if (isRecord(result)) parts.push(blocksText(result["content"]))
  }
  return parts.filter((part) => part !== "").join("\n")
}

// ---------------------------------------------------------------------------------------------------
// Media: `ContentBlock.image` / `.document` (also inside `toolResult.content`), as
// @aws-sdk/client-bedrock-runtime models them (`ImageBlock`, `DocumentBlock`, `ImageSource`,
// `DocumentSource`, `S3Location`; the `ImageFormat` and `DocumentFormat` enums). Blobs travel as base64.
// Problems are worded the way AWS's request validation words them, with its 1-based member paths.
// ---------------------------------------------------------------------------------------------------

const IMAGE_FORMATS: ReadonlyArray<string> = ["gif", "jpeg", "png", "webp"]
const DOCUMENT_FORMATS: ReadonlyArray<string> = ["csv", "doc", "docx", "html", "md", "pdf", "txt", "xls", "xlsx"]
const MALFORMED = "Malformed input request, please reformat your input and try again."

const validation = (constraint: string, value: string, at: string): RequestProblem => ({
  message: `1 validation error detected: Value ${value} at '${at}' failed to satisfy constraint: ${constraint}`,
  param: at
})
const mustNotBeNull = (at: string): RequestProblem => validation("Member must not be null", "null", at)
const notInEnum = (value: unknown, at: string, set: ReadonlyArray<string>): RequestProblem =>
  validation(`Member must satisfy enum value set: [${set.join(", ")}]`, `'${String(value)}'`, at)

/** A `bytes` / `s3Location` source (images and documents alike), or undefined when it is neither. */
const blobSource = (
  source: Readonly<Record<string, unknown>>,
  at: string
): { readonly source: "base64" | "s3"; readonly bytes: number | null } | RequestProblem | undefined => {
  const bytes = source["bytes"]
  if (typeof bytes === "string") {
    const size = base64Bytes(bytes)
    return size === undefined ? { message: MALFORMED, param: `${at}.bytes` } : { source: "base64", bytes: size }
  }
  const s3 = source["s3Location"]
  if (!isRecord(s3)) return undefined
  return typeof s3["uri"] === "string" && s3["uri"] !== "" ? { source: "s3", bytes: null } : mustNotBeNull(`${at}.s3Location.uri`)
}

const bedrockImage = (image: Readonly<Record<string, unknown>>, at: string): MediaSeen | RequestProblem => {
  const format = image["format"]
  if (format === undefined || format === null) return mustNotBeNull(`${at}.format`)
  if (typeof format !== "string" || !IMAGE_FORMATS.includes(format)) return notInEnum(format, `${at}.format`, IMAGE_FORMATS)
  const source = isRecord(image["source"]) ? blobSource(image["source"], `${at}.source`) : undefined
  if (source === undefined) return mustNotBeNull(`${at}.source`)
  return "message" in source ? source : { kind: "image", mediaType: `image/${format}`, ...source }
}

/** The document's text when its source is `text` or `content` (text blocks), else undefined. */
const inlineText = (source: Readonly<Record<string, unknown>>): string | undefined => {
  if (typeof source["text"] === "string") return source["text"]
  const content = source["content"]
  if (!Array.isArray(content)) return undefined
  return content.flatMap((block: unknown) => (isRecord(block) && typeof block["text"] === "string" ? [block["text"]] : [])).join("\n")
}

/** A document: a unique `name`, a known `format`, and a bytes / S3 / text / content source. */
const bedrockDocument = (document: Readonly<Record<string, unknown>>, at: string, names: Set<string>): MediaSeen | RequestProblem => {
  const name = document["name"]
  if (name === undefined || name === null) return mustNotBeNull(`${at}.name`)
  if (typeof name !== "string" || name === "") {
    return validation("Member must have length greater than or equal to 1", `'${String(name)}'`, `${at}.name`)
  }
  if (names.has(name)) return { message: "Messages can't contain duplicate document names. Rename the document and retry your request.", param: null }
  names.add(name)
  const format = document["format"]
  if (format !== undefined && (typeof format !== "string" || !DOCUMENT_FORMATS.includes(format))) {
    return notInEnum(format, `${at}.format`, DOCUMENT_FORMATS)
  }
  const mediaType = typeof format === "string" ? mediaTypeOfExtension(format) : null
  const source = isRecord(document["source"]) ? document["source"] : undefined
  if (source === undefined) return mustNotBeNull(`${at}.source`)
  const text = inlineText(source)
  if (text !== undefined) return textDocument(text, mediaType ?? "text/plain")
  const blob = blobSource(source, `${at}.source`)
  if (blob === undefined) return mustNotBeNull(`${at}.source`)
  return "message" in blob ? blob : { kind: "file", mediaType, ...blob }
}

/** The media blocks at `path` (`messages.N.member.content`, or a tool result's content). */
const bedrockBlockReader = (path: string, names: Set<string>): PartReader => (block, j, into) => {
  const at = `${path}.${j + 1}.member`
  if (isRecord(block["image"])) return seen(into, bedrockImage(block["image"], `${at}.image`))
  if (isRecord(block["document"])) return seen(into, bedrockDocument(block["document"], `${at}.document`, names))
  const result = block["toolResult"]
  return isRecord(result) ? collectMedia(result["content"], bedrockBlockReader(`${at}.toolResult.content`, names), into) : undefined
}

/** The tool `toolConfig.toolChoice` forces: `{tool:{name}}`, or the only tool under `{any:{}}`. */
const forcedToolOf = (toolConfig: unknown): string | undefined => {
  if (!isRecord(toolConfig) || !isRecord(toolConfig["toolChoice"])) return undefined
  const choice = toolConfig["toolChoice"]
  const tool = choice["tool"]
  if (isRecord(tool) && typeof tool["name"] === "string") return tool["name"]
  if (!isRecord(choice["any"])) return undefined
  const tools = Array.isArray(toolConfig["tools"]) ? toolConfig["tools"] : []
  const names = tools.flatMap((t) => (isRecord(t) && isRecord(t["toolSpec"]) && typeof t["toolSpec"]["name"] === "string" ? [t["toolSpec"]["name"]] : []))
  return names.length === 1 ? names[0] : undefined
}

/**
 * Reads a Converse body: the model and streaming mode come from the path (`/model/{id}/converse` or
 * `/converse-stream`), the rest from `messages`, `system`, `inferenceConfig.maxTokens` and `toolConfig`.
 * Total: a malformed body is a `ValidationException`-style problem, never an exception.
 */
export const parseBedrockRequest = (
  body: string,
  path: PathFacts
): { readonly _tag: "Right"; readonly request: ChatRequest } | { readonly _tag: "Left"; readonly problem: RequestProblem } => {
  const left = (message: string, param: string | null) => ({ _tag: "Left" as const, problem: { message, param } })
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return left("Malformed input request, please reformat your input and try again.", null)
  }
  if (!isRecord(json)) return left("Malformed input request, please reformat your input and try again.", null)
  const model = path.model
  if (model === undefined || model === "") return left("The provided model identifier is invalid.", "modelId")
  const messages = json["messages"]
  if (!Array.isArray(messages)) {
    return left("1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null", "messages")
  }
  const texts: Array<string> = []
  const system = blocksText(json["system"])
  if (system !== "") texts.push(system)
  let lastUserText = ""
  const media: Array<MediaSeen> = []
  const documentNames = new Set<string>()
  for (let i = 0; i < messages.length; i++) {
    const message: unknown = messages[i]
    if (!isRecord(message)) continue
    const text = blocksText(message["content"])
    texts.push(text)
    if (message["role"] === "user") lastUserText = text
    const problem = collectMedia(message["content"], bedrockBlockReader(`messages.${i + 1}.member.content`, documentNames), media)
    if (problem !== undefined) return left(problem.message, problem.param)
  }
  const inference = json["inferenceConfig"]
  const maxTokens = isRecord(inference) && typeof inference["maxTokens"] === "number" && Number.isInteger(inference["maxTokens"]) &&
      inference["maxTokens"] >= 0
    ? inference["maxTokens"]
    : undefined
  return {
    _tag: "Right",
    request: {
      api: "bedrock",
      model,
      stream: path.stream ?? false,
      includeUsage: true,
      maxTokens,
      promptText: texts.join("\n"),
      lastUserText,
      forcedTool: forcedToolOf(json["toolConfig"]),
      media,
      mediaTokens: mediaTokens(media)
    }
  }
}

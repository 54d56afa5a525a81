/**
 * Google Gemini (Generative Language API) on the wire: `GenerateContentResponse` bodies
 * (`candidates[0].content.parts` of `text` and `functionCall` parts, `finishReason`, `usageMetadata`,
 * `modelVersion`, `responseId`), the `alt=sse` stream of `data:` chunks — each a whole response, the
 * last one carrying the `finishReason`, no terminator event —, and Google's canonical error bodies
 * `{"error":{code,message,status,details}}` with the `google.rpc` details clients act on: a per-minute
 * `RESOURCE_EXHAUSTED` with `QuotaFailure` + `RetryInfo`, a per-day one naming its daily quota, 503
 * `UNAVAILABLE` "The model is overloaded", `API_KEY_INVALID` in an `ErrorInfo`. Gemini sends no
 * rate-limit or request-id headers. Shapes follow the `@google/genai` SDK types (which parse them) and
 * captured responses; see the Gemini notes in docs/providers.md.
 *
 * @internal
 */
import type { MediaSeen } from "../ChaosServer.js"
import { base64Bytes, collectMedia, mediaTokens, type PartReader, seen } from "./media.js"
import type { ChatRequest, RequestProblem } from "./request.js"
import type { Completion, CompletionToolCall, ErrorSpec, Frame, RateLimitView, RenderedError, StreamFrames, Wire } from "./wire.js"
import { definedOverrides } from "./wire.js"
import { isRecord } from "../../internal/json.js"

const RPC = "type.googleapis.com/google.rpc."
const RATE_LIMIT_DOCS = "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
const QUOTA_MESSAGE = `You exceeded your current quota, please check your plan and billing details. ${RATE_LIMIT_DOCS}`

/** The canonical gRPC status name Google gives each HTTP status. */
const GRPC_STATUS: Readonly<Record<number, string>> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  402: "RESOURCE_EXHAUSTED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ABORTED",
  429: "RESOURCE_EXHAUSTED",
  499: "CANCELLED",
  500: "INTERNAL",
  501: "UNIMPLEMENTED",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED"
}

const grpcStatusOf = (status: number): string => GRPC_STATUS[status] ?? (status >= 500 ? "UNKNOWN" : "INVALID_ARGUMENT")

const STATUS_MESSAGES: Readonly<Record<number, string>> = {
  400: "Request contains an invalid argument.",
  401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
  403: "Your API key doesn't have the required permissions.",
  499: "The operation was cancelled.",
  500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
  503: "The model is overloaded. Please try again later.",
  504: "The service is currently unavailable."
}

/** A Google error before rendering: `details` are `google.rpc` messages. */
interface GoogleErrorObject {
  readonly code: number
  readonly message: string
  readonly status: string
  readonly details: ReadonlyArray<Record<string, unknown>>
}

const quotaFailure = (quotaId: string, quotaMetric: string, model: string, quotaValue: number) => ({
  "@type": `${RPC}QuotaFailure`,
  violations: [{ quotaMetric, quotaId, quotaDimensions: { location: "global", model }, quotaValue: String(quotaValue) }]
})

const help = { "@type": `${RPC}Help`, links: [{ description: "Learn more about Gemini API quotas", url: "https://ai.google.dev/gemini-api/docs/rate-limits" }] }

/**
 * `RetryInfo.retryDelay`: a protobuf Duration in its JSON form — whole seconds as Google usually sends
 * them (`"26s"`), else with the 3 fractional digits the format allows (`"1.500s"`).
 */
const retryInfo = (waitMs: number) => {
  const ms = Math.max(0, Math.round(waitMs))
  return { "@type": `${RPC}RetryInfo`, retryDelay: ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(3)}s` }
}

/** The model a fault names, without the `models/` prefix a request path may carry. */
const bareModel = (model: string): string => model.replace(/^models\//, "")

/**
 * A per-minute rate limit: `RESOURCE_EXHAUSTED` naming the per-minute quota (requests or input
 * tokens), with a `RetryInfo` — none when the request can never fit (`tooLarge`).
 */
const rateLimitError = (spec: Extract<ErrorSpec, { kind: "rate_limit" }>): GoogleErrorObject => {
  const model = bareModel(spec.model)
  const [quotaId, metric] = spec.limitType === "requests"
    ? ["GenerateRequestsPerMinutePerProjectPerModel", "generativelanguage.googleapis.com/generate_content_requests"]
    : ["GenerateContentInputTokensPerModelPerMinute", "generativelanguage.googleapis.com/generate_content_input_token_count"]
  const retry = spec.waitMs === undefined ? "" : `\nPlease retry in ${(spec.waitMs / 1000).toFixed(3)}s.`
  return {
    code: 429,
    message: `${QUOTA_MESSAGE}\n* Quota exceeded for metric: ${metric}, limit: ${spec.limit}, model: ${model}${retry}`,
    status: "RESOURCE_EXHAUSTED",
    details: [
      quotaFailure(quotaId, metric, model, spec.limit),
      help,
      ...(spec.waitMs === undefined ? [] : [retryInfo(spec.waitMs)])
    ]
  }
}

const httpError = (status: number, model: string): GoogleErrorObject => {
  if (status === 404) {
    return {
      code: 404,
      message: `models/${bareModel(model)} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`,
      status: "NOT_FOUND",
      details: []
    }
  }
  if (status === 529) return { code: 503, message: STATUS_MESSAGES[503]!, status: "UNAVAILABLE", details: [] }
  const message = STATUS_MESSAGES[status] ?? (status >= 500 ? `Internal error encountered (status ${status}).` : `Request failed with status ${status}.`)
  return { code: status, message, status: grpcStatusOf(status), details: [] }
}

/** The error object for `spec`, before overrides. */
const base = (spec: ErrorSpec): GoogleErrorObject => {
  switch (spec.kind) {
    case "rate_limit":
      return rateLimitError(spec)
    case "insufficient_quota": {
      // The daily quota: Google attaches a RetryInfo to it too, but it clears only at midnight Pacific.
      const metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
      return {
        code: 429,
        message: `${QUOTA_MESSAGE}\n* Quota exceeded for metric: ${metric}, limit: 250`,
        status: "RESOURCE_EXHAUSTED",
        details: [quotaFailure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", metric, "gemini", 250), help, retryInfo(36_000)]
      }
    }
    case "billing":
      return {
        code: 402,
        message: "Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.",
        status: "RESOURCE_EXHAUSTED",
        details: []
      }
    case "overloaded":
      // Gemini sheds load with 503 UNAVAILABLE; it never answers 529.
      return { code: spec.status === 529 ? 503 : spec.status, message: STATUS_MESSAGES[503]!, status: "UNAVAILABLE", details: [] }
    case "context_length":
      return {
        code: 400,
        message: `The input token count (${spec.requestedTokens}) exceeds the maximum number of tokens allowed (${spec.contextWindow}).`,
        status: "INVALID_ARGUMENT",
        details: []
      }
    case "http":
      return httpError(spec.status, spec.model)
    case "server_error":
      return { code: 500, message: STATUS_MESSAGES[500]!, status: "INTERNAL", details: [] }
    case "invalid_request":
      return { code: 400, message: spec.message, status: "INVALID_ARGUMENT", details: [] }
    case "unknown_path":
      return { code: 404, message: `Method not found: ${spec.method} ${spec.path}`, status: "NOT_FOUND", details: [] }
  }
}

/**
 * The error with a fault's overrides: `message`; `type` as the gRPC status name; `code` as an
 * `ErrorInfo.reason` (`API_KEY_INVALID`, …), the way Google names a cause. `param` has no Gemini form.
 */
const errorObject = (spec: ErrorSpec): GoogleErrorObject => {
  const error = base(spec)
  const overrides = definedOverrides(spec)
  const reason = typeof overrides.code === "string" ? overrides.code : undefined
  return {
    code: error.code,
    message: overrides.message ?? error.message,
    status: overrides.type ?? error.status,
    details: reason === undefined
      ? error.details
      : [{ "@type": `${RPC}ErrorInfo`, reason, domain: "googleapis.com", metadata: { service: "generativelanguage.googleapis.com" } }, ...error.details]
  }
}

/** An error body, fields in Google's order; `details` only when there are some. */
const errorBody = (error: GoogleErrorObject) => ({
  error: {
    code: error.code,
    message: error.message,
    status: error.status,
    ...(error.details.length > 0 ? { details: error.details } : {})
  }
})

/** `finishReason`: a tool call still ends with `STOP` (Gemini has no reason of its own for it). */
const finishReason = (c: Completion): string => c.finish === "length" ? "MAX_TOKENS" : c.finish === "filtered" ? "SAFETY" : "STOP"

/** A call's `args` object; arguments cut short by a fault parse to nothing, so `{}`. */
const argsOf = (call: CompletionToolCall): unknown => {
  try {
    return JSON.parse(call.arguments)
  } catch {
    return {}
  }
}

/** Gemini sends each function call whole, in one part, with no id. */
const functionCallPart = (call: CompletionToolCall) => ({ functionCall: { name: call.name, args: argsOf(call) } })

const usageMetadata = (c: Completion, candidatesTokens: number) => ({
  promptTokenCount: c.promptTokens,
  candidatesTokenCount: candidatesTokens,
  totalTokenCount: c.promptTokens + candidatesTokens,
  promptTokensDetails: [{ modality: "TEXT", tokenCount: c.promptTokens }]
})

/** The safety verdict of a filtered candidate. */
const SAFETY_RATINGS = [{ category: "HARM_CATEGORY_DANGEROUS_CONTENT", probability: "HIGH", blocked: true }]

/** One candidate: its parts (none → no `content`, as a filtered candidate comes), and the finish if final. */
const candidate = (parts: ReadonlyArray<Record<string, unknown>>, finish: string | undefined) => ({
  ...(parts.length > 0 ? { content: { parts, role: "model" } } : {}),
  ...(finish !== undefined ? { finishReason: finish } : {}),
  ...(finish === "SAFETY" ? { safetyRatings: SAFETY_RATINGS } : {}),
  index: 0
})

const response = (c: Completion, parts: ReadonlyArray<Record<string, unknown>>, finish: string | undefined, candidatesTokens: number) => ({
  candidates: [candidate(parts, finish)],
  usageMetadata: usageMetadata(c, candidatesTokens),
  modelVersion: bareModel(c.model),
  responseId: c.id
})

/** A `data:` event as `alt=sse` frames it (CRLF line ends). */
const sse = (data: unknown): string => `data: ${JSON.stringify(data)}\r\n\r\n`

/** The Gemini wire format. */
export const geminiWire: Wire = {
  api: "gemini",
  // Gemini sends no request id header; the chaos server's own id rides on a header of its own.
  requestIdHeader: "x-chaos-request-id",
  defaultContextWindow: 1_048_576,

  requestId: (rng) => rng.hex(16),
  // `responseId`s look like `bH6LaZW8Fp_3nsEPqtaSwQ4`.
  responseId: (rng) => rng.alphanumeric(23),

  // What Google's front end sends (captured in googleapis/js-genai#907): no rate-limit, no request id.
  headers: (_view: RateLimitView, _nowMs: number, processingMs: number) => ({
    server: "scaffolding on HTTPServer2",
    "server-timing": `gfet4t7; dur=${Math.max(0, Math.round(processingMs))}`,
    vary: "Origin, X-Origin, Referer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "x-xss-protection": "0"
  }),

  error: (spec): RenderedError => {
    const error = errorObject(spec)
    return { status: error.code, body: JSON.stringify(errorBody(error), null, 2) }
  },

  streamError: (spec): Frame => sse(errorBody(errorObject(spec))),

  completion: (c) => {
    const parts = [...(c.text === "" ? [] : [{ text: c.text }]), ...c.toolCalls.map(functionCallPart)]
    return JSON.stringify(response(c, parts, finishReason(c), c.completionTokens), null, 2)
  },

  stream: (c): StreamFrames => {
    // Every chunk repeats the running usage; the final one carries the finish and the totals.
    const pieces = [...c.deltas.map((text) => ({ text })), ...c.toolCalls.map(functionCallPart)]
    const running = (k: number) => Math.ceil((c.completionTokens * (k + 1)) / Math.max(1, pieces.length))
    const finish = finishReason(c)
    return {
      // Gemini has no metadata event to send before the first token; an empty write puts the headers
      // on the wire without a byte of body, so a slow first token is slow *after* the headers.
      head: [""],
      deltas: pieces.map((part, k) => sse(response(c, [part], undefined, running(k)))),
      tail: [sse(response(c, finish === "SAFETY" ? [] : [{ text: "" }], finish, c.completionTokens))]
    }
  },

  malformedBody: (c) => `{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n            "text": "${c.id}`,

  malformedFrame: () => `data: {"candidates": [{"content": {"parts": [{"text": \r\n\r\n`,

  rawFrame: (payload) => `data: ${payload}\r\n\r\n`,

  models: (ids) =>
    JSON.stringify(
      {
        models: ids.map((id) => ({
          name: `models/${bareModel(id)}`,
          version: "001",
          displayName: bareModel(id),
          inputTokenLimit: 1_048_576,
          outputTokenLimit: 65_536,
          supportedGenerationMethods: ["generateContent", "countTokens"]
        }))
      },
      null,
      2
    )
}

// ---------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------

const nonNegativeInt = (u: unknown): number | undefined => (typeof u === "number" && Number.isInteger(u) && u >= 0 ? u : undefined)

/** The text a content's parts carry: `text`, a function call's arguments, a function result. */
const partsText = (parts: unknown): string => {
  if (!Array.isArray(parts)) return ""
  const texts: Array<string> = []
  for (const part of parts) {
    if (!isRecord(part)) continue
    if (typeof part["text"] === "string") texts.push(part["text"])
    else if (isRecord(part["functionCall"])) texts.push(JSON.stringify(part["functionCall"]["args"] ?? {}))
    else if (isRecord(part["functionResponse"])) texts.push(JSON.stringify(part["functionResponse"]["response"] ?? {}))
  }
  return texts.join("\n")
}

/** The declared function names, in order. */
const functionNames = (tools: unknown): Array<string> => {
  if (!Array.isArray(tools)) return []
  const names: Array<string> = []
  for (const tool of tools) {
    const declarations = isRecord(tool) ? tool["functionDeclarations"] : undefined
    if (!Array.isArray(declarations)) continue
    for (const declaration of declarations) {
      if (isRecord(declaration) && typeof declaration["name"] === "string") names.push(declaration["name"])
    }
  }
  return names
}

/**
 * The function `functionCallingConfig` forces: mode `ANY` limited to one name (`allowedFunctionNames`),
 * or `ANY` with a single declared function.
 */
const forcedFunctionOf = (toolConfig: unknown, tools: unknown): string | undefined => {
  const config = isRecord(toolConfig) ? toolConfig["functionCallingConfig"] : undefined
  if (!isRecord(config) || config["mode"] !== "ANY") return undefined
  const allowed = config["allowedFunctionNames"]
  const names = Array.isArray(allowed) && allowed.length > 0 ? allowed.filter((n): n is string => typeof n === "string") : functionNames(tools)
  return names.length === 1 ? names[0] : undefined
}

/** A required field left out, as Google's front end reports it. */
const notSpecified = (field: string): RequestProblem => ({
  message: `* GenerateContentRequest.${field}: ${field.slice(field.lastIndexOf(".") + 1)} is not specified\n`,
  param: field
})

/** A part's field by its JSON (camelCase) or proto (snake_case) name — the API takes both. */
const field = (part: Readonly<Record<string, unknown>>, camel: string, snake: string): unknown => part[camel] ?? part[snake]

/** Files API URIs (`https://generativelanguage.googleapis.com/v1beta/files/abc`) name uploaded files. */
const FILES_API = /^https:\/\/generativelanguage\.googleapis\.com\/[^/]+\/files\//

/**
 * The media parts of `contents[i].parts` (`@google/genai` `Part`): `inlineData` (`Blob`: `mimeType`,
 * base64 `data`) and `fileData` (`FileData`: `mimeType`, `fileUri`). An image is a part whose MIME type
 * is `image/*`; anything else is a file.
 */
const geminiPartReader = (content: number): PartReader => (part, j, into) => {
  const at = `contents[${content}].parts[${j}]`
  const inline = field(part, "inlineData", "inline_data")
  if (isRecord(inline)) {
    const mimeType = field(inline, "mimeType", "mime_type")
    if (typeof mimeType !== "string" || mimeType === "") return notSpecified(`${at}.inline_data.mime_type`)
    const data = inline["data"]
    if (typeof data !== "string" || data === "") return notSpecified(`${at}.inline_data.data`)
    const bytes = base64Bytes(data, true)
    if (bytes === undefined) {
      const shown = data.length > 64 ? `${data.slice(0, 64)}...` : data
      return {
        message: `Invalid value at '${at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed for "${shown}"`,
        param: `${at}.inline_data.data`
      }
    }
    return seen(into, { kind: mimeType.startsWith("image/") ? "image" : "file", mediaType: mimeType, source: "base64", bytes })
  }
  const file = field(part, "fileData", "file_data")
  if (isRecord(file)) {
    const uri = field(file, "fileUri", "file_uri")
    if (typeof uri !== "string" || uri === "") return notSpecified(`${at}.file_data.file_uri`)
    const mimeType = field(file, "mimeType", "mime_type")
    const mediaType = typeof mimeType === "string" && mimeType !== "" ? mimeType : null
    const kind = mediaType?.startsWith("image/") === true ? "image" : "file"
    return seen(into, { kind, mediaType, source: FILES_API.test(uri) ? "file_id" : "url", bytes: null })
  }
  return undefined
}

/**
 * Reads a `generateContent` body (already parsed) for the model and streaming mode the URL named.
 * Problems are phrased as Gemini phrases them (a 400 `INVALID_ARGUMENT`). Gemini always reports usage,
 * so `includeUsage` is true.
 */
export const parseGeminiRequest = (json: unknown, path: { readonly model: string; readonly stream: boolean }): ChatRequest | RequestProblem => {
  if (!isRecord(json)) return { message: "Invalid JSON payload received. Expected an object.", param: null }
  const contents = json["contents"]
  if (!Array.isArray(contents) || contents.length === 0) {
    return { message: "* GenerateContentRequest.contents: contents is not specified\n", param: "contents" }
  }
  const texts: Array<string> = []
  const system = isRecord(json["systemInstruction"]) ? partsText(json["systemInstruction"]["parts"]) : ""
  if (system !== "") texts.push(system)
  let lastUserText = ""
  const media: Array<MediaSeen> = []
  for (let i = 0; i < contents.length; i++) {
    const content: unknown = contents[i]
    if (!isRecord(content)) continue
    const text = partsText(content["parts"])
    texts.push(text)
    // A content without a role is the user's (Gemini's own default).
    if ((content["role"] ?? "user") === "user" && text !== "") lastUserText = text
    const problem = collectMedia(content["parts"], geminiPartReader(i), media)
    if (problem !== undefined) return problem
  }
  const config = json["generationConfig"]
  return {
    api: "gemini",
    model: path.model,
    stream: path.stream,
    includeUsage: true,
    maxTokens: isRecord(config) ? nonNegativeInt(config["maxOutputTokens"]) : undefined,
    promptText: texts.join("\n"),
    lastUserText,
    forcedTool: forcedFunctionOf(json["toolConfig"], json["tools"]),
    media,
    mediaTokens: mediaTokens(media)
  }
}

/**
 * Reads the parts of an OpenAI Chat Completions or Anthropic Messages request body the chaos server
 * needs (model, streaming flags, max tokens, prompt text, image and file parts). Total: a malformed
 * body becomes a provider-style 400, never an exception.
 *
 * @internal
 */
import type { MediaSeen } from "../ChaosServer.js"
import type { Api } from "../Scenario.js"
import { parseBedrockRequest } from "./bedrockWire.js"
import { estimateTokens } from "./content.js"
import { parseGeminiRequest } from "./geminiWire.js"
import { anthropicPartReader, chatPartReader, collectMedia, mediaTokens, responsesPartReader } from "./media.js"
import { isRecord } from "../../internal/json.js"

/** The provider-neutral view of a model call. */
export interface ChatRequest {
  readonly api: Api
  readonly model: string
  readonly stream: boolean
  /** OpenAI `stream_options.include_usage`: send a usage chunk before `[DONE]`. */
  readonly includeUsage: boolean
  /** `max_tokens` / `max_completion_tokens`, when given. */
  readonly maxTokens: number | undefined
  /** All prompt text (system + every message), joined with newlines — the basis of the token estimate. */
  readonly promptText: string
  /** The text of the last user message (for `echo` content). */
  readonly lastUserText: string
  /** The one tool the request forces (`tool_choice` naming a function, or "any"/"required" with one tool). */
  readonly forcedTool: string | undefined
  /** The image and file parts the server understood, in request order. */
  readonly media: ReadonlyArray<MediaSeen>
  /** What `media` adds to the prompt-token estimate (see `mediaTokens` in media.ts); 0 without media. */
  readonly mediaTokens: number
}

/** The prompt-token estimate of a request: its text (characters / 4) plus its media. */
export const promptTokens = (request: ChatRequest): number => estimateTokens(request.promptText) + request.mediaTokens

/**
 * What the URL says about a model call. Gemini and Bedrock put the model (and Gemini the streaming
 * mode) in the path; Azure's deployment path names the deployment, which stands for the model.
 */
export interface PathFacts {
  readonly model?: string | undefined
  readonly stream?: boolean | undefined
}

/** Why a body was rejected, phrased as the provider would, and which parameter was at fault. */
export interface RequestProblem {
  readonly message: string
  readonly param: string | null
  /** The provider's error code, where it sends one (OpenAI `missing_required_parameter`, `invalid_value`). */
  readonly code?: string | undefined
}

/** A message `content`: a string, or an array of parts of which the `text` ones count. */
const textOf = (content: unknown): string => {
  if (typeof content === "string") return content
  if (!Array.isArray(content)) return ""
  const parts: Array<string> = []
  for (const part of content) {
    if (typeof part === "string") parts.push(part)
    else if (isRecord(part) && typeof part["text"] === "string") parts.push(part["text"])
  }
  return parts.join("\n")
}

const nonNegativeInt = (u: unknown): number | undefined =>
  typeof u === "number" && Number.isInteger(u) && u >= 0 ? u : undefined

/** A request's tool names, in order (OpenAI `function.name`, or a top-level `name`). */
const toolNames = (tools: unknown): Array<string> => {
  if (!Array.isArray(tools)) return []
  const names: Array<string> = []
  for (const tool of tools) {
    if (!isRecord(tool)) continue
    const fn = tool["function"]
    const name = isRecord(fn) ? fn["name"] : tool["name"]
    if (typeof name === "string") names.push(name)
  }
  return names
}

/**
 * The tool a `tool_choice` forces: a named one (`{type:"function",function:{name}}` in Chat,
 * `{type:"function",name}` in Responses, `{type:"tool",name}` in Anthropic), or the only tool when
 * any tool is required (`"required"`, `{type:"any"}`).
 */
const forcedToolOf = (choice: unknown, tools: unknown): string | undefined => {
  if (isRecord(choice)) {
    const fn = choice["function"]
    const name = isRecord(fn) ? fn["name"] : choice["name"]
    if (typeof name === "string") return name
    if (choice["type"] !== "any") return undefined
  } else if (choice !== "required") return undefined
  const names = toolNames(tools)
  return names.length === 1 ? names[0] : undefined
}

/** Parses a request body for `api`; `path` carries what the URL says (model, streaming). */
export const parseChatRequest = (
  api: Api,
  body: string,
  path: PathFacts = {}
): { readonly _tag: "Right"; readonly request: ChatRequest } | { readonly _tag: "Left"; readonly problem: RequestProblem } => {
  const left = (message: string, param: string | null) => ({ _tag: "Left" as const, problem: { message, param } })
  if (api === "bedrock") return parseBedrockRequest(body, path)
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    if (api === "gemini") return left("Invalid JSON payload received.", null)
    return api !== "anthropic"
      ? left(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
        null
      )
      : left("There was an error parsing the body of your request as JSON.", null)
  }
  if (api === "gemini") {
    const parsed = parseGeminiRequest(json, { model: path.model ?? "", stream: path.stream ?? false })
    return "api" in parsed ? { _tag: "Right", request: parsed } : { _tag: "Left", problem: parsed }
  }
  if (!isRecord(json)) return left("The request body must be a JSON object.", null)
  const model = path.model ?? json["model"]
  if (typeof model !== "string" || model === "") {
    return api !== "anthropic" ? left("you must provide a model parameter", null) : left("model: Field required", "model")
  }
  if (api === "responses") return parseResponsesRequest(json, model)
  const messages = json["messages"]
  if (!Array.isArray(messages)) {
    return api === "openai"
      ? left("Missing required parameter: 'messages'.", "messages")
      : left("messages: Field required", "messages")
  }
  const maxTokens = nonNegativeInt(json["max_tokens"]) ?? nonNegativeInt(json["max_completion_tokens"])
  if (api === "anthropic" && maxTokens === undefined) return left("max_tokens: Field required", "max_tokens")

  const texts: Array<string> = []
  if (api === "anthropic") {
    const system = textOf(json["system"])
    if (system !== "") texts.push(system)
  }
  const media: Array<MediaSeen> = []
  let lastUserText = ""
  for (let i = 0; i < messages.length; i++) {
    const message: unknown = messages[i]
    if (!isRecord(message)) continue
    const text = textOf(message["content"])
    texts.push(text)
    if (message["role"] === "user") lastUserText = text
    const read = api === "anthropic" ? anthropicPartReader(i) : chatPartReader(i, message["role"])
    const problem = collectMedia(message["content"], read, media)
    if (problem !== undefined) return { _tag: "Left", problem }
  }
  const streamOptions = json["stream_options"]
  return {
    _tag: "Right",
    request: {
      api,
      model,
      stream: json["stream"] === true,
      includeUsage: isRecord(streamOptions) && streamOptions["include_usage"] === true,
      maxTokens,
      promptText: texts.join("\n"),
      lastUserText,
      forcedTool: forcedToolOf(json["tool_choice"], json["tools"]),
      media,
      mediaTokens: mediaTokens(media)
    }
  }
}

/**
 * A Responses body: `input` (a string, or items of which messages and tool outputs carry text),
 * `instructions`, `max_output_tokens`. Usage is always in the final event, so `includeUsage` is true.
 */
const parseResponsesRequest = (
  json: Readonly<Record<string, unknown>>,
  model: string
): { readonly _tag: "Right"; readonly request: ChatRequest } | { readonly _tag: "Left"; readonly problem: RequestProblem } => {
  const input = json["input"]
  if (typeof input !== "string" && !Array.isArray(input)) {
    return { _tag: "Left", problem: { message: "Missing required parameter: 'input'.", param: "input" } }
  }
  const texts: Array<string> = []
  const instructions = textOf(json["instructions"])
  if (instructions !== "") texts.push(instructions)
  let lastUserText = typeof input === "string" ? input : ""
  const media: Array<MediaSeen> = []
  if (typeof input === "string") texts.push(input)
  else {
    for (let i = 0; i < input.length; i++) {
      const item: unknown = input[i]
      if (!isRecord(item)) continue
      const text = textOf(item["content"] ?? item["output"] ?? item["arguments"])
      texts.push(text)
      if (item["role"] === "user") lastUserText = text
      const problem = collectMedia(item["content"], responsesPartReader(`input[${i}].content`), media) ??
        collectMedia(item["output"], responsesPartReader(`input[${i}].output`), media)
      if (problem !== undefined) return { _tag: "Left", problem }
    }
  }
  return {
    _tag: "Right",
    request: {
      api: "responses",
      model,
      stream: json["stream"] === true,
      includeUsage: true,
      maxTokens: nonNegativeInt(json["max_output_tokens"]),
      promptText: texts.join("\n"),
      lastUserText,
      forcedTool: forcedToolOf(json["tool_choice"], json["tools"]),
      media,
      mediaTokens: mediaTokens(media)
    }
  }
}

/**
 * A tokenizer-free estimate of how many input tokens a request will cost, for the rate limiter to
 * charge its tokens-per-minute bucket *before* the request is sent. It is an estimate, not a count:
 * no tokenizer is a dependency of this library, and each provider's differs. The limiter corrects its
 * bucket with the provider's real `usage` when the response arrives, so a wrong estimate costs a little
 * waiting (too high) or a little debt (too low) on one request, never drift.
 *
 * The rule, in O(number of messages) and without scanning text:
 *
 * - text: `ceil(characters / 4)` — OpenAI's rule of thumb for English (≈ 4 characters per token).
 *   Denser scripts (Chinese, Japanese, emoji, much code) take more tokens per character and are
 *   underestimated; pass your own `estimateTokens` to the limiter if your traffic is mostly those.
 * - every message: +4 tokens of chat framing (role, separators — OpenAI documents 3–4), plus its
 *   tool calls' names and arguments and its `name` as text.
 * - images and files: see `mediaTokens` (internal/media.ts) — an image from its pixel size read from
 *   its header (≈ width × height / 750, at most 1,600), or 1,600 when it is a URL; a PDF 2,000 per
 *   page; a text file its bytes / 4; a document by URL or audio/video nothing (unknowable without
 *   fetching: pass your own `estimateTokens` if you send those). Base64 is never counted as text.
 * - the system prompt: as text, + one message of framing.
 * - tools and a `json_schema` response format: their JSON length / 4 (providers inject the
 *   definitions into the prompt). Computed once per tools array / schema object and cached.
 * - + 3 tokens priming the reply.
 *
 * @internal
 */
import type { GenerateRequest, MessageContent } from "../Provider.js"
import { mediaTokens } from "./media.js"

/** Characters per token of English text (OpenAI's rule of thumb). */
export const CHARS_PER_TOKEN = 4

/** Framing tokens per message (role and separators). */
export const MESSAGE_OVERHEAD = 4

/** Tokens priming the assistant's reply. */
export const REPLY_OVERHEAD = 3

const textTokens = (text: string | undefined): number =>
  text === undefined || text.length === 0 ? 0 : Math.ceil(text.length / CHARS_PER_TOKEN)

// Tool definitions and schemas are usually the same objects request after request: serialise each once.
const jsonCache = new WeakMap<object, number>()

const jsonTokens = (value: object | undefined): number => {
  if (value === undefined) return 0
  const cached = jsonCache.get(value)
  if (cached !== undefined) return cached
  let tokens = 0
  try {
    tokens = textTokens(JSON.stringify(value))
  } catch {
    // Cycles or BigInt in a user-built schema: the provider call will reject it; estimate nothing.
    tokens = 0
  }
  jsonCache.set(value, tokens)
  return tokens
}

const contentTokens = (content: MessageContent): number => {
  if (typeof content === "string") return textTokens(content)
  let tokens = 0
  for (const part of content) tokens += part._tag === "Text" ? textTokens(part.text) : mediaTokens(part)
  return tokens
}

/**
 * The estimated input (prompt) tokens of a request. Deterministic, cheap, and always ≥ 1.
 *
 * @internal
 */
export const estimatePromptTokens = (request: GenerateRequest): number => {
  let tokens = REPLY_OVERHEAD
  if (request.system !== undefined) tokens += MESSAGE_OVERHEAD + textTokens(request.system)
  for (const message of request.messages) {
    tokens += MESSAGE_OVERHEAD + contentTokens(message.content) + textTokens(message.name)
    if (message.toolCalls !== undefined) {
      for (const call of message.toolCalls) tokens += textTokens(call.name) + textTokens(call.arguments)
    }
  }
  if (request.tools !== undefined && request.tools.length > 0) tokens += jsonTokens(request.tools)
  if (request.responseFormat?.type === "json_schema") tokens += jsonTokens(request.responseFormat.schema)
  return tokens
}

/**
 * The default cost of a request against a tokens-per-minute limit: its estimated prompt plus the
 * most output it may produce (`maxTokens`) — an upper bound on the output, corrected downward by the
 * response's real usage.
 *
 * @internal
 */
export const estimateRequestTokens = (request: GenerateRequest): number =>
  estimatePromptTokens(request) + request.maxTokens

/**
 * Anthropic Messages on the wire: `message` bodies, the `event: <type>\ndata: <json>` stream
 * (message_start, content_block_start, ping, content_block_delta, content_block_stop, message_delta,
 * message_stop), `anthropic-ratelimit-*` headers with RFC 3339 reset instants, and
 * `{"type":"error","error":{type,message},"request_id"}` bodies with the real error types.
 *
 * @internal
 */
import { rfc3339 } from "./timeFormat.js"
import type { Completion, CompletionToolCall, ErrorSpec, RateLimitView, RenderedError, StreamFrames, Wire } from "./wire.js"
import { definedOverrides } from "./wire.js"

interface AnthropicErrorObject {
  readonly type: string
  readonly message: string
}

/** `stop_reason`: an answer that ends in tool calls stops with `tool_use`, forced or not. */
const stopReason = (c: Completion): string =>
  c.finish === "length"
    ? "max_tokens"
    : c.finish === "filtered"
    ? "refusal"
    : c.toolCalls.length > 0
    ? "tool_use"
    : "end_turn"

const toolUseId = (call: CompletionToolCall): string => `toolu_01${call.id}`

/** A tool call's `input` object; arguments cut short by a fault parse to nothing, so `{}`. */
const inputOf = (call: CompletionToolCall): unknown => {
  try {
    return JSON.parse(call.arguments)
  } catch {
    return {}
  }
}

/** The content blocks of a whole message: a text block when there is text, then one `tool_use` per call. */
const contentBlocks = (c: Completion): Array<Record<string, unknown>> => [
  // An answer with no text has no text block at all, as the API returns it.
  ...(c.text === "" ? [] : [{ type: "text", text: c.text }]),
  ...c.toolCalls.map((call) => ({ type: "tool_use", id: toolUseId(call), name: call.name, input: inputOf(call) }))
]

/**
 * The streamed blocks after the text: each tool call is its own block — `content_block_start` with
 * the `tool_use` (empty input), `input_json_delta` fragments, `content_block_stop` — and the block
 * before it is closed first. Returns the frames and the index of the last block opened (-1: none).
 */
const toolUseFrames = (c: Completion, firstIndex: number): { readonly frames: Array<string>; readonly last: number } => {
  const frames: Array<string> = []
  c.toolCalls.forEach((call, k) => {
    const index = firstIndex + k
    if (index > 0) frames.push(event("content_block_stop", { index: index - 1 }))
    frames.push(event("content_block_start", {
      index,
      content_block: { type: "tool_use", id: toolUseId(call), name: call.name, input: {} }
    }))
    for (const partial_json of call.argumentDeltas) {
      frames.push(event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json } }))
    }
  })
  return { frames, last: firstIndex + c.toolCalls.length - 1 }
}

const CREDIT_TOO_LOW =
  "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."

const statusErrors: Readonly<Record<number, AnthropicErrorObject>> = {
  400: { type: "invalid_request_error", message: "Invalid request." },
  401: { type: "authentication_error", message: "invalid x-api-key" },
  402: {
    type: "billing_error",
    message: "There is an issue with your account's billing. Please check your payment method in Plans & Billing."
  },
  403: { type: "permission_error", message: "Your API key does not have permission to use the specified resource." },
  408: { type: "timeout_error", message: "Request timed out." },
  409: { type: "conflict_error", message: "Conflict." },
  413: { type: "request_too_large", message: "Request exceeds the maximum allowed number of bytes." },
  422: { type: "invalid_request_error", message: "Unprocessable entity." },
  500: { type: "api_error", message: "Internal server error" },
  502: { type: "api_error", message: "Bad gateway" },
  503: { type: "api_error", message: "Service unavailable" },
  504: { type: "timeout_error", message: "Request timed out" },
  529: { type: "overloaded_error", message: "Overloaded" }
}

const base = (spec: ErrorSpec): { readonly status: number; readonly error: AnthropicErrorObject } => {
  switch (spec.kind) {
    case "rate_limit": {
      const unit = spec.limitType === "requests" ? "requests" : "tokens"
      const message = spec.tooLarge
        ? `This request would exceed the rate limit for your organization of ${spec.limit} ${unit} per minute, and is larger than that limit (${spec.requested} ${unit}). Please reduce the prompt length or the maximum tokens requested.`
        : `This request would exceed the rate limit for your organization of ${spec.limit} ${unit} per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.`
      return { status: 429, error: { type: "rate_limit_error", message } }
    }
    case "insufficient_quota":
      // What the Messages API actually answers when the prepaid balance is gone.
      return { status: 400, error: { type: "invalid_request_error", message: CREDIT_TOO_LOW } }
    case "billing":
      return { status: 402, error: statusErrors[402] ?? { type: "billing_error", message: CREDIT_TOO_LOW } }
    case "overloaded":
      return { status: spec.status, error: { type: "overloaded_error", message: "Overloaded" } }
    case "context_length":
      return {
        status: 400,
        error: {
          type: "invalid_request_error",
          message: `prompt is too long: ${spec.requestedTokens} tokens > ${spec.contextWindow} maximum`
        }
      }
    case "http": {
      if (spec.status === 404) return { status: 404, error: { type: "not_found_error", message: `model: ${spec.model}` } }
      const known = statusErrors[spec.status]
      const fallback = spec.status >= 500
        ? { type: "api_error", message: `Internal server error (status ${spec.status})` }
        : { type: "invalid_request_error", message: `Request failed with status ${spec.status}.` }
      return { status: spec.status, error: known ?? fallback }
    }
    case "server_error":
      return { status: 500, error: { type: "api_error", message: "Internal server error" } }
    case "invalid_request":
      return { status: 400, error: { type: "invalid_request_error", message: spec.message } }
    case "unknown_path":
      return { status: 404, error: { type: "not_found_error", message: "Not Found" } }
  }
}

const errorObject = (spec: ErrorSpec): { readonly status: number; readonly error: AnthropicErrorObject } => {
  const { error, status } = base(spec)
  const overrides = definedOverrides(spec)
  return {
    status,
    error: { type: overrides.type ?? error.type, message: overrides.message ?? error.message }
  }
}

const event = (type: string, data: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`

const usage = (c: Completion, outputTokens: number) => ({
  input_tokens: c.promptTokens,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
  output_tokens: outputTokens,
  service_tier: "standard"
})

/** The Anthropic wire format. */
export const anthropicWire: Wire = {
  api: "anthropic",
  requestIdHeader: "request-id",
  defaultContextWindow: 200_000,

  requestId: (rng) => `req_011C${rng.alphanumeric(20)}`,
  responseId: (rng) => `msg_01${rng.alphanumeric(22)}`,

  headers: (view: RateLimitView, nowMs: number, _processingMs: number) => {
    const requestsReset = rfc3339(nowMs + view.requests.resetMs)
    const tokensReset = rfc3339(nowMs + view.tokens.resetMs)
    // The chaos server models one token bucket; it is shown as the input, output and combined window.
    return {
      "anthropic-ratelimit-requests-limit": String(view.requests.limit),
      "anthropic-ratelimit-requests-remaining": String(view.requests.remaining),
      "anthropic-ratelimit-requests-reset": requestsReset,
      "anthropic-ratelimit-tokens-limit": String(view.tokens.limit),
      "anthropic-ratelimit-tokens-remaining": String(view.tokens.remaining),
      "anthropic-ratelimit-tokens-reset": tokensReset,
      "anthropic-ratelimit-input-tokens-limit": String(view.tokens.limit),
      "anthropic-ratelimit-input-tokens-remaining": String(view.tokens.remaining),
      "anthropic-ratelimit-input-tokens-reset": tokensReset,
      "anthropic-ratelimit-output-tokens-limit": String(view.tokens.limit),
      "anthropic-ratelimit-output-tokens-remaining": String(view.tokens.remaining),
      "anthropic-ratelimit-output-tokens-reset": tokensReset
    }
  },

  error: (spec, requestId): RenderedError => {
    const { error, status } = errorObject(spec)
    return { status, body: JSON.stringify({ type: "error", error, request_id: requestId }) }
  },

  streamError: (spec) => event("error", { error: errorObject(spec).error }),

  completion: (c) =>
    JSON.stringify({
      id: c.id,
      type: "message",
      role: "assistant",
      model: c.model,
      content: contentBlocks(c),
      stop_reason: stopReason(c),
      stop_sequence: null,
      usage: usage(c, c.completionTokens)
    }),

  stream: (c): StreamFrames => {
    const hasText = c.deltas.length > 0
    const tools = toolUseFrames(c, hasText ? 1 : 0)
    const lastBlock = tools.last >= 0 ? tools.last : hasText ? 0 : -1
    const start = event("message_start", {
      message: {
        id: c.id,
        type: "message",
        role: "assistant",
        model: c.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: usage(c, 1)
      }
    })
    return {
      head: [
        start,
        ...(hasText ? [event("content_block_start", { index: 0, content_block: { type: "text", text: "" } })] : []),
        event("ping", {})
      ],
      deltas: [
        ...c.deltas.map((text) => event("content_block_delta", { index: 0, delta: { type: "text_delta", text } })),
        ...tools.frames
      ],
      tail: [
        ...(lastBlock >= 0 ? [event("content_block_stop", { index: lastBlock })] : []),
        event("message_delta", {
          delta: { stop_reason: stopReason(c), stop_sequence: null },
          usage: { output_tokens: c.completionTokens }
        }),
        event("message_stop", {})
      ]
    }
  },

  malformedBody: (c) => `{"id":"${c.id}","type":"message","role":"assistant","model":"${c.model}","content":[{"type":"text","text":"`,

  malformedFrame: () => `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":\n\n`,

  rawFrame: (payload) => `data: ${payload}\n\n`,

  models: (ids, nowMs) => {
    const createdAt = rfc3339(nowMs)
    const data = ids.map((id) => ({ type: "model", id, display_name: id, created_at: createdAt }))
    return JSON.stringify({ data, has_more: false, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null })
  }
}

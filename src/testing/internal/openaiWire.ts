/**
 * OpenAI Chat Completions on the wire: `chat.completion` bodies (pretty-printed with two spaces, as
 * the API sends them), `chat.completion.chunk` SSE frames ending in `data: [DONE]`, the
 * `x-ratelimit-*` headers with Go-style durations, and `{"error":{message,type,param,code}}` bodies
 * with the real types and codes.
 *
 * @internal
 */
import { goDuration } from "./timeFormat.js"
import type { Completion, CompletionToolCall, ErrorSpec, RateLimitView, RenderedError, StreamFrames, Wire } from "./wire.js"
import { definedOverrides } from "./wire.js"

interface OpenAiErrorObject {
  readonly message: string
  readonly type: string
  readonly param: string | null
  readonly code: string | null
}

const RATE_LIMIT_DOCS = "Visit https://platform.openai.com/account/rate-limits to learn more."

/**
 * `finish_reason`. A call of a tool the request named in `tool_choice` finishes with `stop`, not
 * `tool_calls` — the API's own behaviour, which clients that wait for `tool_calls` trip over.
 */
const finishReason = (c: Completion): string =>
  c.finish === "stop"
    ? "stop"
    : c.finish === "length"
    ? "length"
    : c.finish === "tool_calls"
    ? (c.forcedTool ? "stop" : "tool_calls")
    : "content_filter"

/** The id OpenAI gives a tool call. */
export const toolCallId = (call: CompletionToolCall): string => `call_${call.id}`

const toolCallsOf = (c: Completion) =>
  c.toolCalls.map((call) => ({ id: toolCallId(call), type: "function", function: { name: call.name, arguments: call.arguments } }))

/**
 * A streamed tool call as the API streams it: a first delta with its index, id, type, name and empty
 * arguments, then one delta per argument fragment carrying only the index.
 */
const toolCallDeltas = (c: Completion): Array<Record<string, unknown>> =>
  c.toolCalls.flatMap((call, index) => [
    { tool_calls: [{ index, id: toolCallId(call), type: "function", function: { name: call.name, arguments: "" } }] },
    ...call.argumentDeltas.map((args) => ({ tool_calls: [{ index, function: { arguments: args } }] }))
  ])

const statusMessages: Readonly<Record<number, Omit<OpenAiErrorObject, "param">>> = {
  400: { message: "Invalid request.", type: "invalid_request_error", code: null },
  401: {
    message: "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    type: "invalid_request_error",
    code: "invalid_api_key"
  },
  403: {
    message: "Country, region, or territory not supported",
    type: "request_forbidden",
    code: "unsupported_country_region_territory"
  },
  408: { message: "Request timed out.", type: "invalid_request_error", code: null },
  409: { message: "Conflict.", type: "invalid_request_error", code: null },
  413: { message: "Request entity too large.", type: "invalid_request_error", code: null },
  422: { message: "Unprocessable entity.", type: "invalid_request_error", code: null },
  500: {
    message: "The server had an error while processing your request. Sorry about that!",
    type: "server_error",
    code: null
  },
  502: { message: "Bad gateway.", type: "server_error", code: null },
  503: { message: "The engine is currently overloaded, please try again later", type: "server_error", code: null },
  504: { message: "Gateway timeout.", type: "server_error", code: null }
}

const OVERLOADED: Omit<OpenAiErrorObject, "param"> = {
  message: "The server is overloaded, please try again later.",
  type: "server_error",
  code: "overloaded"
}

/** The status and error object for `spec`, before overrides. */
const base = (spec: ErrorSpec): { readonly status: number; readonly error: OpenAiErrorObject } => {
  switch (spec.kind) {
    case "rate_limit": {
      const window = spec.limitType === "requests" ? "requests per min (RPM)" : "tokens per min (TPM)"
      const message = spec.tooLarge
        ? `Request too large for ${spec.model} in organization org-chaos on ${window}: Limit ${spec.limit}, Requested ${spec.requested}. The input or output tokens must be reduced in order to run successfully. ${RATE_LIMIT_DOCS}`
        : `Rate limit reached for ${spec.model} in organization org-chaos on ${window}: Limit ${spec.limit}, Used ${spec.used}, Requested ${spec.requested}. Please try again in ${
          goDuration(spec.waitMs ?? 0)
        }. ${RATE_LIMIT_DOCS}`
      return { status: 429, error: { message, type: spec.limitType, param: null, code: "rate_limit_exceeded" } }
    }
    case "insufficient_quota":
      return {
        status: 429,
        error: {
          message:
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
          type: "insufficient_quota",
          param: null,
          code: "insufficient_quota"
        }
      }
    case "billing":
      return {
        status: 402,
        error: {
          message: "Your account is not active, please check your billing details on our website.",
          type: "insufficient_quota",
          param: null,
          code: "billing_not_active"
        }
      }
    case "overloaded":
      return { status: spec.status, error: { ...OVERLOADED, param: null } }
    case "context_length":
      return {
        status: 400,
        error: {
          message:
            `This model's maximum context length is ${spec.contextWindow} tokens. However, your messages resulted in ${spec.requestedTokens} tokens. Please reduce the length of the messages.`,
          type: "invalid_request_error",
          param: "messages",
          code: "context_length_exceeded"
        }
      }
    case "http": {
      if (spec.status === 404) {
        return {
          status: 404,
          error: {
            message: `The model \`${spec.model}\` does not exist or you do not have access to it.`,
            type: "invalid_request_error",
            param: null,
            code: "model_not_found"
          }
        }
      }
      if (spec.status === 529) return { status: 529, error: { ...OVERLOADED, param: null } }
      const known = statusMessages[spec.status]
      const fallback = spec.status >= 500
        ? { message: `The server had an error (status ${spec.status}).`, type: "server_error", code: null }
        : { message: `Request failed with status ${spec.status}.`, type: "invalid_request_error", code: null }
      return { status: spec.status, error: { ...(known ?? fallback), param: null } }
    }
    case "server_error":
      return { status: 500, error: { ...(statusMessages[500] ?? OVERLOADED), param: null } }
    case "invalid_request":
      return {
        status: 400,
        error: { message: spec.message, type: "invalid_request_error", param: spec.param, code: null }
      }
    case "unknown_path":
      return {
        status: 404,
        error: { message: `Invalid URL (${spec.method} ${spec.path})`, type: "invalid_request_error", param: null, code: null }
      }
  }
}

export const errorObject = (spec: ErrorSpec): { readonly status: number; readonly error: OpenAiErrorObject } => {
  const { error, status } = base(spec)
  const overrides = definedOverrides(spec)
  // Field order as the API sends it: message, type, param, code.
  return {
    status,
    error: {
      message: overrides.message ?? error.message,
      type: overrides.type ?? error.type,
      param: overrides.param === undefined ? error.param : overrides.param,
      code: overrides.code === undefined ? error.code : overrides.code
    }
  }
}

const usage = (c: Completion) => ({
  prompt_tokens: c.promptTokens,
  completion_tokens: c.completionTokens,
  total_tokens: c.promptTokens + c.completionTokens,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: {
    reasoning_tokens: 0,
    audio_tokens: 0,
    accepted_prediction_tokens: 0,
    rejected_prediction_tokens: 0
  }
})

const SYSTEM_FINGERPRINT = "fp_c4a05e5c1f"

const sse = (data: unknown): string => `data: ${JSON.stringify(data)}\n\n`

/** The OpenAI wire format. */
export const openaiWire: Wire = {
  api: "openai",
  requestIdHeader: "x-request-id",
  defaultContextWindow: 128_000,

  requestId: (rng) => `req_${rng.hex(16)}`,
  responseId: (rng) => `chatcmpl-${rng.alphanumeric(29)}`,

  headers: (view: RateLimitView, _nowMs: number, processingMs: number) => ({
    "openai-version": "2020-10-01",
    "openai-organization": "org-chaos",
    "openai-processing-ms": String(Math.max(0, Math.round(processingMs))),
    "x-ratelimit-limit-requests": String(view.requests.limit),
    "x-ratelimit-limit-tokens": String(view.tokens.limit),
    "x-ratelimit-remaining-requests": String(view.requests.remaining),
    "x-ratelimit-remaining-tokens": String(view.tokens.remaining),
    "x-ratelimit-reset-requests": goDuration(view.requests.resetMs),
    "x-ratelimit-reset-tokens": goDuration(view.tokens.resetMs)
  }),

  error: (spec, _requestId): RenderedError => {
    const { error, status } = errorObject(spec)
    return { status, body: JSON.stringify({ error }, null, 2) }
  },

  streamError: (spec) => sse({ error: errorObject(spec).error }),

  completion: (c) =>
    JSON.stringify(
      {
        id: c.id,
        object: "chat.completion",
        created: c.created,
        model: c.model,
        choices: [{
          index: 0,
          message: {
            role: "assistant",
            // With tool calls and no text, `content` is null, as the API sends it.
            content: c.text === "" && c.toolCalls.length > 0 ? null : c.text,
            refusal: null,
            ...(c.toolCalls.length > 0 ? { tool_calls: toolCallsOf(c) } : {}),
            annotations: []
          },
          logprobs: null,
          finish_reason: finishReason(c)
        }],
        usage: usage(c),
        service_tier: "default",
        system_fingerprint: SYSTEM_FINGERPRINT
      },
      null,
      2
    ),

  stream: (c, includeUsage): StreamFrames => {
    // With include_usage, every chunk carries `usage: null` and a last chunk with `choices: []`
    // carries the totals — exactly what the API does.
    const chunk = (delta: Record<string, unknown>, finish: string | null) =>
      sse({
        id: c.id,
        object: "chat.completion.chunk",
        created: c.created,
        model: c.model,
        service_tier: "default",
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {})
      })
    const usageChunk = sse({
      id: c.id,
      object: "chat.completion.chunk",
      created: c.created,
      model: c.model,
      service_tier: "default",
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices: [],
      usage: usage(c)
    })
    return {
      head: [chunk({ role: "assistant", content: "", refusal: null }, null)],
      deltas: [...c.deltas.map((text) => chunk({ content: text }, null)), ...toolCallDeltas(c).map((delta) => chunk(delta, null))],
      tail: [
        chunk({}, finishReason(c)),
        ...(includeUsage ? [usageChunk] : []),
        "data: [DONE]\n\n"
      ]
    }
  },

  malformedBody: (c) => `{"id":"${c.id}","object":"chat.completion","created":${c.created},"model":"${c.model}","choices":[{"index":0,"message":{"role":"assistant","content":"`,

  malformedFrame: (c) => `data: {"id":"${c.id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":\n\n`,

  rawFrame: (payload) => `data: ${payload}\n\n`,

  models: (ids, nowMs) =>
    JSON.stringify(
      {
        object: "list",
        data: ids.map((id) => ({
          id,
          object: "model",
          created: Math.floor(nowMs / 1000),
          owned_by: id.startsWith("claude") ? "anthropic" : "system"
        }))
      },
      null,
      2
    )
}

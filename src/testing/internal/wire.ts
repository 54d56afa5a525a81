/**
 * The provider-neutral description of what to send, which `openaiWire` and `anthropicWire` render into
 * each provider's exact bytes (bodies, SSE frames, headers). Keeping the decision (which fault, which
 * numbers) apart from the rendering lets every fault work on both wire formats.
 *
 * @internal
 */
import type { Api } from "../Scenario.js"
import type { Prng } from "./prng.js"

/**
 * How an answer ended, mapped per provider (stop/end_turn, length/max_tokens, content_filter/refusal,
 * tool_calls/tool_use).
 */
export type Finish = "stop" | "length" | "filtered" | "tool_calls"

/** A tool call in an answer, before rendering. */
export interface CompletionToolCall {
  /** A neutral id (alphanumeric); each wire adds its provider's prefix (`call_`, `toolu_`, …). */
  readonly id: string
  readonly name: string
  /** The arguments as JSON text (possibly cut short by a truncation fault). */
  readonly arguments: string
  /** `arguments` split the way providers stream them; joined, they give `arguments` back. */
  readonly argumentDeltas: ReadonlyArray<string>
}

/** One piece of a rendered stream: SSE text for most formats, binary for Bedrock's eventstream. */
export type Frame = string | Uint8Array

/** A successful answer, before rendering. */
export interface Completion {
  readonly id: string
  readonly model: string
  /** Epoch seconds (OpenAI `created`). */
  readonly created: number
  readonly text: string
  readonly deltas: ReadonlyArray<string>
  /** Tool calls after the text (none for a plain answer). */
  readonly toolCalls: ReadonlyArray<CompletionToolCall>
  /**
   * The request forced one tool (Anthropic's structured output, a named `tool_choice`): OpenAI then
   * reports `finish_reason: "stop"`, not `tool_calls`.
   */
  readonly forcedTool: boolean
  readonly finish: Finish
  readonly promptTokens: number
  readonly completionTokens: number
}

/** One rate-limit window as the headers show it. */
export interface RateLimitWindow {
  readonly limit: number
  readonly remaining: number
  /** Milliseconds until the window is fully replenished. */
  readonly resetMs: number
}

/** The request and token windows shown on every model-call response. */
export interface RateLimitView {
  readonly requests: RateLimitWindow
  readonly tokens: RateLimitWindow
}

/** Overrides a fault may put on an error body. */
export interface ErrorOverrides {
  readonly message?: string | undefined
  readonly type?: string | undefined
  readonly code?: string | null | undefined
  readonly param?: string | null | undefined
}

/** A provider error, before rendering. */
export type ErrorSpec = ErrorOverrides & (
  | {
    readonly kind: "rate_limit"
    readonly limitType: "requests" | "tokens"
    readonly model: string
    readonly limit: number
    readonly used: number
    readonly requested: number
    /** Time until the request would fit; undefined when it never will (`tooLarge`). */
    readonly waitMs: number | undefined
    readonly tooLarge: boolean
  }
  | { readonly kind: "insufficient_quota" }
  | { readonly kind: "billing" }
  | { readonly kind: "overloaded"; readonly status: number }
  | { readonly kind: "context_length"; readonly requestedTokens: number; readonly contextWindow: number }
  | { readonly kind: "http"; readonly status: number; readonly model: string }
  | { readonly kind: "server_error" }
  | { readonly kind: "invalid_request"; readonly message: string; readonly param: string | null }
  | { readonly kind: "unknown_path"; readonly method: string; readonly path: string }
)

/** A rendered error: status, body text, and any headers of the format's own (Bedrock's error type). */
export interface RenderedError {
  readonly status: number
  readonly body: string
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/** A stream split at the points faults cut into: metadata, content deltas, and the ending. */
export interface StreamFrames {
  /** Sent promptly: OpenAI's role chunk; Anthropic's message_start, content_block_start, ping. */
  readonly head: ReadonlyArray<Frame>
  /** One frame per content delta: text deltas, then each tool call's start and argument deltas. */
  readonly deltas: ReadonlyArray<Frame>
  /** The finish (reason + usage) and the terminator (`[DONE]` / `message_stop`). */
  readonly tail: ReadonlyArray<Frame>
}

/** One provider's wire format. */
export interface Wire {
  readonly api: Api
  /** `x-request-id` (OpenAI) or `request-id` (Anthropic). */
  readonly requestIdHeader: string
  readonly defaultContextWindow: number
  requestId(rng: Prng): string
  responseId(rng: Prng): string
  /** Headers on every model-call response (rate limits, versions), without the request id. */
  headers(view: RateLimitView, nowMs: number, processingMs: number): Record<string, string>
  error(spec: ErrorSpec, requestId: string): RenderedError
  /** `content-type` of a streamed answer. Default `text/event-stream; charset=utf-8`. */
  readonly streamContentType?: string | undefined
  /** The same error as a frame inside a 200 stream. */
  streamError(spec: ErrorSpec, requestId: string): Frame
  completion(completion: Completion): string
  stream(completion: Completion, includeUsage: boolean): StreamFrames
  /** A 200 body that is not JSON (default of `malformed_json`). */
  malformedBody(completion: Completion): string
  /** A frame whose payload is not JSON. */
  malformedFrame(completion: Completion): Frame
  /** A frame carrying `payload` verbatim (the `malformed_json` fault's `body` on a stream). */
  rawFrame(payload: string): Frame
  /** `GET /v1/models`. */
  models(ids: ReadonlyArray<string>, nowMs: number): string
}

/** Keeps only the override fields that are set, so they can be spread over defaults. */
export const definedOverrides = (spec: ErrorOverrides): ErrorOverrides => {
  const out: { message?: string; type?: string; code?: string | null; param?: string | null } = {}
  if (spec.message !== undefined) out.message = spec.message
  if (spec.type !== undefined) out.type = spec.type
  if (spec.code !== undefined) out.code = spec.code
  if (spec.param !== undefined) out.param = spec.param
  return out
}

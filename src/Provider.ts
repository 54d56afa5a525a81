/**
 * The provider-neutral model call: one request shape, one response shape, one stream event union, and
 * the `Provider` service every adapter (OpenAI, Anthropic, OpenAI-compatible, test doubles) implements.
 *
 * All shapes are Schemas so that responses can be checkpointed by durable runs and decoded back typed.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Encoding from "effect/Encoding"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { RouteError } from "./Errors.js"
import { RateLimitSnapshot } from "./RateLimitSnapshot.js"

/**
 * A tool call the model asked for. `arguments` is the JSON text exactly as the model produced it.
 *
 * @since 0.1.0
 * @category models
 */
export const ToolCall = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  arguments: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export type ToolCall = typeof ToolCall.Type

/**
 * Where a file's bytes are: at a URL the provider fetches, or inline as base64 (no `data:` prefix).
 *
 * @since 0.3.0
 * @category models
 */
export const MediaSource = Schema.Union(
  Schema.TaggedStruct("Url", { url: Schema.String }),
  Schema.TaggedStruct("Base64", { data: Schema.String })
)

/**
 * @since 0.3.0
 * @category models
 */
export type MediaSource = typeof MediaSource.Type

/**
 * A text part of a message's content.
 *
 * @since 0.3.0
 * @category models
 */
export const TextPart = Schema.TaggedStruct("Text", { text: Schema.String })

/**
 * @since 0.3.0
 * @category models
 */
export type TextPart = typeof TextPart.Type

/**
 * An image or a document in a message. `mediaType` decides how it is sent: `image/*` as each wire
 * format's image part (OpenAI `image_url` / `input_image`, Anthropic `image`, Gemini `inlineData` /
 * `fileData`, Bedrock `image`), anything else as its file or document part. `detail` is OpenAI's
 * image resolution hint (ignored elsewhere). A route whose wire format cannot carry a part (a PDF by
 * URL on Chat Completions, any URL on Bedrock) fails with `UnsupportedRequest` before sending, and
 * the chain moves to the next route. Build one with {@link filePart}.
 *
 * @since 0.3.0
 * @category models
 */
export const FilePart = Schema.TaggedStruct("File", {
  /** The IANA media type: `image/png`, `image/jpeg`, `application/pdf`, `text/plain`, … */
  mediaType: Schema.String,
  source: MediaSource,
  /** A file name (documents; Bedrock requires one and gets a generated name when absent). */
  filename: Schema.optional(Schema.String),
  detail: Schema.optional(Schema.Literal("auto", "low", "high"))
})

/**
 * @since 0.3.0
 * @category models
 */
export type FilePart = typeof FilePart.Type

/**
 * One part of a message's content.
 *
 * @since 0.3.0
 * @category models
 */
export const ContentPart = Schema.Union(TextPart, FilePart)

/**
 * @since 0.3.0
 * @category models
 */
export type ContentPart = typeof ContentPart.Type

/**
 * A message's content: text, or parts (text, images and files) in the order the model should read
 * them.
 *
 * @since 0.3.0
 * @category models
 */
export const MessageContent = Schema.Union(Schema.String, Schema.Array(ContentPart))

/**
 * @since 0.3.0
 * @category models
 */
export type MessageContent = typeof MessageContent.Type

/**
 * One conversation message. `system` messages are allowed here and lifted into the provider's system
 * slot by adapters that have one (Anthropic). `content` is a string, or parts when the message
 * carries images or files ({@link filePart}); system and assistant messages carry text only.
 *
 * @since 0.1.0
 * @category models
 */
export const Message = Schema.Struct({
  role: Schema.Literal("system", "user", "assistant", "tool"),
  content: MessageContent,
  /** Tool calls made by an assistant message. */
  toolCalls: Schema.optional(Schema.Array(ToolCall)),
  /** For `tool` messages: the id of the call this result answers. */
  toolCallId: Schema.optional(Schema.String),
  name: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Message = typeof Message.Type

/**
 * Builds an image or file part from a URL or from bytes (a `Uint8Array` is base64-encoded here; a
 * string is taken as base64 already; a `data:` URL is kept as a URL and sent inline where the wire
 * wants bytes).
 *
 * @example
 * ```ts
 * import { Provider } from "effect-llm-resilience"
 *
 * const message: Provider.Message = {
 *   role: "user",
 *   content: [
 *     { _tag: "Text", text: "What is in this picture?" },
 *     Provider.filePart({ mediaType: "image/png", url: "https://example.com/cat.png" })
 *   ]
 * }
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const filePart = (
  options:
    & {
      readonly mediaType: string
      readonly filename?: string | undefined
      readonly detail?: "auto" | "low" | "high" | undefined
    }
    & ({ readonly url: string | URL } | { readonly data: string | Uint8Array })
): FilePart => ({
  _tag: "File",
  mediaType: options.mediaType,
  source: "url" in options
    ? { _tag: "Url", url: String(options.url) }
    : { _tag: "Base64", data: typeof options.data === "string" ? options.data : Encoding.encodeBase64(options.data) },
  ...(options.filename !== undefined ? { filename: options.filename } : {}),
  ...(options.detail !== undefined ? { detail: options.detail } : {})
})

/**
 * The text of a message's content: the string itself, or its text parts joined by newlines (images
 * and files contribute nothing).
 *
 * @since 0.3.0
 * @category getters
 */
export const textOf = (content: MessageContent): string => {
  if (typeof content === "string") return content
  let text = ""
  let first = true
  for (const part of content) {
    if (part._tag !== "Text") continue
    text = first ? part.text : text + "\n" + part.text
    first = false
  }
  return text
}

/**
 * A tool the model may call; `parameters` is a JSON Schema object.
 *
 * @since 0.1.0
 * @category models
 */
export const ToolDefinition = Schema.Struct({
  name: Schema.String,
  description: Schema.optional(Schema.String),
  parameters: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

/**
 * @since 0.1.0
 * @category models
 */
export type ToolDefinition = typeof ToolDefinition.Type

/**
 * How the output should be shaped. `json_schema` is sent natively where the provider supports it
 * (OpenAI `response_format`); adapters without native support translate it (Anthropic: a forced tool).
 *
 * @since 0.1.0
 * @category models
 */
export const ResponseFormat = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text") }),
  Schema.Struct({ type: Schema.Literal("json_object") }),
  Schema.Struct({
    type: Schema.Literal("json_schema"),
    name: Schema.String,
    schema: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
    strict: Schema.optional(Schema.Boolean)
  })
)

/**
 * @since 0.1.0
 * @category models
 */
export type ResponseFormat = typeof ResponseFormat.Type

/**
 * A model call, independent of provider.
 *
 * @since 0.1.0
 * @category models
 */
export const GenerateRequest = Schema.Struct({
  model: Schema.String,
  messages: Schema.Array(Message),
  /** Required: an unbounded generation is a cost and latency risk. Adapters cap it by config. */
  maxTokens: Schema.Int.pipe(Schema.positive()),
  system: Schema.optional(Schema.String),
  temperature: Schema.optional(Schema.Number),
  topP: Schema.optional(Schema.Number),
  stop: Schema.optional(Schema.Array(Schema.String)),
  tools: Schema.optional(Schema.Array(ToolDefinition)),
  toolChoice: Schema.optional(
    Schema.Union(Schema.Literal("auto", "none", "required"), Schema.Struct({ name: Schema.String }))
  ),
  responseFormat: Schema.optional(ResponseFormat),
  /** Free-form labels (sent as provider metadata where supported; always on spans). */
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  /** Sent as the idempotency header on every attempt of one logical call (set by the Retry policy). */
  idempotencyKey: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type GenerateRequest = typeof GenerateRequest.Type

/**
 * Why generation stopped, normalised across providers. `length` (OpenAI) and `max_tokens`
 * (Anthropic) both become `length`; `content_filter` and Anthropic's `refusal` stay distinct so the
 * fallback chain can reject them.
 *
 * @since 0.1.0
 * @category models
 */
export const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "refusal", "other")

/**
 * @since 0.1.0
 * @category models
 */
export type FinishReason = typeof FinishReason.Type

/**
 * Token usage as the provider reported it.
 *
 * @since 0.1.0
 * @category models
 */
export const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  totalTokens: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type Usage = typeof Usage.Type

/**
 * A completed model call.
 *
 * @since 0.1.0
 * @category models
 */
export const GenerateResponse = Schema.Struct({
  provider: Schema.String,
  /** The model id the provider reports having used (may be more specific than the request's). */
  model: Schema.String,
  /** The provider's response id (`chatcmpl-…`, `msg_…`). */
  id: Schema.optional(Schema.String),
  text: Schema.String,
  toolCalls: Schema.Array(ToolCall),
  finishReason: FinishReason,
  /** The provider's own finish/stop reason string. */
  rawFinishReason: Schema.optional(Schema.String),
  /** A refusal message, when the model refused (OpenAI `message.refusal`). */
  refusal: Schema.optional(Schema.String),
  usage: Usage,
  requestId: Schema.optional(Schema.String),
  rateLimit: Schema.optional(RateLimitSnapshot),
  /** The decoded provider body (JSON responses only; streams do not keep one). */
  raw: Schema.optional(Schema.Unknown)
})

/**
 * @since 0.1.0
 * @category models
 */
export type GenerateResponse = typeof GenerateResponse.Type

/**
 * Stream events. `Metadata` comes first and is *not* content: time-to-first-token is measured to the
 * first `TextDelta`/`ToolCallDelta`. `Finish` is always last and carries the assembled response; a
 * stream that ends without it failed with `StreamInterrupted`.
 *
 * @since 0.1.0
 * @category models
 */
export const StreamEvent = Schema.Union(
  Schema.TaggedStruct("Metadata", {
    id: Schema.optional(Schema.String),
    model: Schema.optional(Schema.String),
    requestId: Schema.optional(Schema.String),
    rateLimit: Schema.optional(RateLimitSnapshot)
  }),
  Schema.TaggedStruct("TextDelta", { text: Schema.String }),
  Schema.TaggedStruct("ToolCallDelta", {
    index: Schema.Number,
    id: Schema.optional(Schema.String),
    name: Schema.optional(Schema.String),
    argumentsDelta: Schema.String
  }),
  Schema.TaggedStruct("Usage", { usage: Usage }),
  Schema.TaggedStruct("Finish", { response: GenerateResponse })
)

/**
 * @since 0.1.0
 * @category models
 */
export type StreamEvent = typeof StreamEvent.Type

/**
 * Whether a stream event carries model output (what time-to-first-token waits for).
 *
 * @since 0.1.0
 * @category guards
 */
export const isContentEvent = (event: StreamEvent): boolean =>
  event._tag === "TextDelta" || event._tag === "ToolCallDelta"

/**
 * What a provider implements. Adapters fail only with wire-level `ProviderError`s; a provider wrapped
 * in a `Policy` can also fail with `CircuitOpen`, `RetryBudgetExhausted` or `DeadlineExceeded`, so the
 * service in context is typed with the whole `RouteError` union.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProviderShape<E extends RouteError = RouteError> {
  /** Provider family label used in errors, spans and metrics (`openai`, `anthropic`, …). */
  readonly name: string
  readonly generate: (request: GenerateRequest) => Effect.Effect<GenerateResponse, E>
  readonly stream: (request: GenerateRequest) => Stream.Stream<StreamEvent, E>
}

/**
 * The provider service. Swap its Layer to change provider, or to test with `MockProvider`.
 *
 * @since 0.1.0
 * @category tags
 */
export class Provider extends Context.Tag("effect-llm-resilience/Provider")<Provider, ProviderShape>() {}

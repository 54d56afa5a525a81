/**
 * Google Gemini through the Generative Language API (`POST {baseUrl}/models/{model}:generateContent`
 * and `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`) as a {@link Provider}.
 *
 * A wire format over the shared adapter skeleton. The request is `contents` (roles `user` / `model`;
 * the assistant's tool calls as `functionCall` parts, tool results as `functionResponse` parts),
 * `systemInstruction`, `generationConfig` (`maxOutputTokens`, sampling, `stopSequences`, and
 * `responseMimeType` + `responseJsonSchema` for structured output), `tools[].functionDeclarations`
 * and `toolConfig.functionCallingConfig`. The answer is `candidates[0]` with its `finishReason`
 * (`SAFETY`, `RECITATION`, `PROHIBITED_CONTENT`, … → `content_filter`; `MAX_TOKENS` → `length`), or no
 * candidate and a `promptFeedback.blockReason` when the prompt itself was blocked.
 *
 * A stream is SSE `data:` chunks, each a whole `GenerateContentResponse`, with no terminator event:
 * the chunk that carries a `finishReason` (or a prompt block) is the last, and a body that ends before
 * one is `StreamInterrupted`. A chunk `{"error":{…}}` fails the stream. Errors are classified by
 * Gemini's own semantics (see `internal/geminiErrors.ts`): a per-minute `RESOURCE_EXHAUSTED` waits
 * for `RetryInfo.retryDelay`, a per-day one is `QuotaExhausted`. Sources in docs/providers.md.
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
import type { CallSite } from "../Classify.js"
import { type InvalidOptions, InvalidOutput, type ProviderError } from "../Errors.js"
import { apiKeyConfig } from "../internal/config.js"
import { array, isRecord, type JsonRecord, number, opt, record, safeStringify, string } from "../internal/json.js"
import { type ContentSupport, mediaOf } from "../internal/media.js"
import { redactAndTruncate } from "../internal/redact.js"
import type { SseEvent } from "../internal/sse.js"
import {
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
import { classifyGeminiHttp, classifyGeminiPayload } from "./internal/geminiErrors.js"
import { parseEventObject, ResponseBuilder, type StreamProtocol } from "./internal/streaming.js"
import { malformed } from "./internal/wire.js"

/**
 * Options of the Gemini adapter.
 *
 * @since 0.2.0
 * @category models
 */
export interface GeminiOptions extends CommonOptions {
  /** API root including the version. Default `https://generativelanguage.googleapis.com/v1beta`. */
  readonly baseUrl?: string | undefined
  /** Label in errors, spans and metrics. Default `gemini`. */
  readonly name?: string | undefined
}

/**
 * The default API root (the version the official SDK calls by default).
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

/**
 * The signature Google documents for replaying a `functionCall` part whose `thoughtSignature` the
 * client does not have. Gemini 3 models reject a replayed call without one (HTTP 400); `ToolCall`
 * carries no provider data to keep the real one in, so this sentinel stands in for it.
 */
const SKIP_THOUGHT_SIGNATURE = "skip_thought_signature_validator"

/** Gemini 3 and later enforce thought signatures on replayed function calls; 1.x and 2.x do not. */
const enforcesThoughtSignatures = (model: string): boolean => {
  const major = /gemini-(\d+)/i.exec(model)?.[1]
  return major !== undefined && Number(major) >= 3
}

/**
 * The resource path of a model: `models/{id}` (the `models/` prefix is optional in the request, as
 * in the official SDK), or a `tunedModels/{id}`. The id is one encoded path segment, so a model name
 * with `/`, `?`, `:` or `..` cannot reach another URL or method.
 */
const modelPath = (model: string): string => {
  const prefix = /^(models|tunedModels)\//.exec(model)?.[1] ?? "models"
  const id = model.startsWith(`${prefix}/`) ? model.slice(prefix.length + 1) : model
  return `${prefix}/${encodeURIComponent(id)}`
}

/** The model's own malformed arguments are sent back verbatim (as an object) so it can see them. */
const argsOf = (text: string): JsonRecord => {
  try {
    const parsed: unknown = JSON.parse(text)
    return isRecord(parsed) ? parsed : { _raw: text }
  } catch {
    return { _raw: text }
  }
}

/** An assistant turn: its text, then each tool call as a `functionCall` part. */
const modelContentOf = (message: Message, signed: boolean): JsonRecord => {
  const parts: Array<JsonRecord> = []
  const calls = message.toolCalls ?? []
  const text = textOf(message.content)
  if (text.length > 0 || calls.length === 0) parts.push({ text })
  calls.forEach((call, index) => {
    parts.push({
      functionCall: { id: call.id, name: call.name, args: argsOf(call.arguments) },
      // Parallel calls carry one signature, on the first call of the turn.
      ...(signed && index === 0 ? { thoughtSignature: SKIP_THOUGHT_SIGNATURE } : {})
    })
  })
  return { role: "model", parts }
}

/**
 * What generateContent carries (ai.google.dev/gemini-api/docs/image-understanding, …/document-processing,
 * …/files): PNG, JPEG, WebP, HEIC and HEIF images, any other media type Gemini reads (PDF, text,
 * audio, video — Gemini decides), inline (`inlineData`) or by URI (`fileData`: Files API and other
 * https URIs, `gs://`); function responses are JSON.
 */
export const CONTENT: ContentSupport = {
  format: "Gemini",
  imageTypes: new Set(["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"]),
  fileTypes: "any",
  imageUrlSchemes: ["https:", "http:", "gs:"],
  fileUrlSchemes: ["https:", "http:", "gs:"],
  mediaInToolResults: false
}

/** A user turn's parts: `text`, `inlineData` and `fileData`, in order (an empty text stays one part). */
const userParts = (content: Message["content"]): Array<JsonRecord> =>
  typeof content === "string" ? [{ text: content }] : content.map((part) => {
    if (part._tag === "Text") return { text: part.text }
    const media = mediaOf(part)
    return media.url !== undefined
      ? { fileData: { mimeType: media.mediaType, fileUri: media.url } }
      : { inlineData: { mimeType: media.mediaType, data: media.base64 ?? "" } }
  })

/**
 * The conversation as `contents`. System messages go to `systemInstruction`. A tool result becomes a
 * `functionResponse` part of a user turn — consecutive results share one turn, as Gemini answers
 * parallel calls — and Gemini needs the function's *name* there, which a `tool` message does not
 * carry: it is the name of the assistant call with that id (the nearest one before it), else the
 * message's own `name`.
 */
const contentsOf = (request: GenerateRequest): Array<JsonRecord> => {
  const signed = enforcesThoughtSignatures(request.model)
  const callNames = new Map<string, string>()
  const contents: Array<JsonRecord> = []
  let toolTurn: Array<JsonRecord> | undefined
  for (const message of request.messages) {
    if (message.role === "system") continue
    if (message.role !== "tool") {
      toolTurn = undefined
      if (message.role === "user") contents.push({ role: "user", parts: userParts(message.content) })
      else {
        for (const call of message.toolCalls ?? []) callNames.set(call.id, call.name)
        contents.push(modelContentOf(message, signed))
      }
      continue
    }
    const id = message.toolCallId
    const name = (id !== undefined ? callNames.get(id) : undefined) ?? message.name ?? ""
    const part = { functionResponse: { ...opt("id", id), name, response: { output: textOf(message.content) } } }
    if (toolTurn !== undefined) toolTurn.push(part)
    else {
      toolTurn = [part]
      contents.push({ role: "user", parts: toolTurn })
    }
  }
  return contents
}

const functionCallingConfigOf = (choice: NonNullable<GenerateRequest["toolChoice"]>): JsonRecord => {
  if (typeof choice !== "string") return { mode: "ANY", allowedFunctionNames: [choice.name] }
  return { mode: choice === "required" ? "ANY" : choice === "none" ? "NONE" : "AUTO" }
}

/**
 * Structured output: `responseJsonSchema` takes plain JSON Schema (the older `responseSchema` takes
 * only an OpenAPI subset and rejects keywords Effect's `JSONSchema.make` emits).
 */
const outputConfigOf = (format: GenerateRequest["responseFormat"]): JsonRecord => {
  if (format === undefined || format.type === "text") return {}
  if (format.type === "json_object") return { responseMimeType: "application/json" }
  return { responseMimeType: "application/json", responseJsonSchema: format.schema }
}

/**
 * The `generateContent` request body the adapter sends for a request (the same body streams: the
 * mode is in the URL). `metadata` and `idempotencyKey` have no Gemini equivalent in the body.
 *
 * @example
 * ```ts
 * import { Gemini } from "effect-llm-resilience"
 *
 * const body = Gemini.encodeRequest({ model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }], maxTokens: 64 }, 64)
 * // { contents: [{ role: "user", parts: [{ text: "hi" }] }], generationConfig: { maxOutputTokens: 64 } }
 * ```
 *
 * @since 0.2.0
 * @category encoding
 */
export const encodeRequest = (request: GenerateRequest, maxTokens: number): JsonRecord => {
  const system: Array<string> = []
  if (request.system !== undefined) system.push(request.system)
  for (const message of request.messages) if (message.role === "system") system.push(textOf(message.content))
  const tools = request.tools ?? []
  return {
    contents: contentsOf(request),
    ...(system.length > 0 ? { systemInstruction: { parts: [{ text: system.join("\n\n") }] } } : {}),
    generationConfig: {
      maxOutputTokens: maxTokens,
      ...opt("temperature", request.temperature),
      ...opt("topP", request.topP),
      ...(request.stop !== undefined && request.stop.length > 0 ? { stopSequences: request.stop } : {}),
      ...outputConfigOf(request.responseFormat)
    },
    ...(tools.length > 0
      ? {
        tools: [{
          functionDeclarations: tools.map((tool) => ({
            name: tool.name,
            ...opt("description", tool.description),
            parametersJsonSchema: tool.parameters
          }))
        }]
      }
      : {}),
    ...(request.toolChoice !== undefined ? { toolConfig: { functionCallingConfig: functionCallingConfigOf(request.toolChoice) } } : {})
  }
}

/** Finish reasons that mean the output (or part of it) was withheld by a safety or policy filter. */
const FILTERED: ReadonlySet<string> = new Set([
  "SAFETY",
  "RECITATION",
  "BLOCKLIST",
  "PROHIBITED_CONTENT",
  "SPII",
  "IMAGE_SAFETY",
  "IMAGE_PROHIBITED_CONTENT",
  "IMAGE_RECITATION"
])

/** Finish reasons that mean the model tried to call a tool and produced no usable call. */
const INVALID_TOOL_CALL: ReadonlySet<string> = new Set(["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"])

/**
 * Maps a candidate's `finishReason` to the normalised {@link FinishReason}. `STOP` after a function
 * call is `tool_calls` (Gemini has no reason of its own for it); every filter reason is
 * `content_filter`, which the chain's output gate turns into `ContentFiltered`. A malformed function
 * call maps to `other` here, but the adapter does not return it as an answer: it fails the call with
 * `InvalidOutput` (the turn the model meant to take is lost, whatever text came before it).
 *
 * @since 0.2.0
 * @category parsing
 */
export const finishReasonOf = (raw: string | undefined, toolCalled: boolean): FinishReason => {
  if (raw === "STOP") return toolCalled ? "tool_calls" : "stop"
  if (raw === "MAX_TOKENS") return "length"
  if (raw !== undefined && FILTERED.has(raw)) return "content_filter"
  return "other"
}

/**
 * Usage as Gemini reports it: thinking tokens are billed as output, tool-use prompt tokens as input.
 * Every stream chunk repeats the running totals, so the last one read is the answer's.
 */
const usageOf = (u: unknown): Usage | undefined => {
  const usage = record(u)
  if (usage === undefined) return undefined
  const inputTokens = (number(usage["promptTokenCount"]) ?? 0) + (number(usage["toolUsePromptTokenCount"]) ?? 0)
  const outputTokens = (number(usage["candidatesTokenCount"]) ?? 0) + (number(usage["thoughtsTokenCount"]) ?? 0)
  return { inputTokens, outputTokens, totalTokens: number(usage["totalTokenCount"]) ?? inputTokens + outputTokens }
}

/**
 * A function call's id: Gemini's own when it sends one, else one derived from the response id and
 * the call's position — stable for the same answer, distinct across turns.
 */
const toolCallIdOf = (call: JsonRecord, responseId: string | undefined, index: number): string =>
  string(call["id"]) ?? `call_${responseId ?? "gemini"}_${index}`

const toolCallOf = (call: JsonRecord, responseId: string | undefined, index: number): ToolCall => ({
  id: toolCallIdOf(call, responseId, index),
  name: string(call["name"]) ?? "",
  arguments: safeStringify(call["args"] ?? {})
})

/** One part of a candidate's content: answer text, a function call, or neither (thoughts, media). */
type Part = { readonly _tag: "Text"; readonly text: string } | { readonly _tag: "Call"; readonly call: JsonRecord } | undefined

const partOf = (entry: unknown): Part => {
  const part = record(entry)
  if (part === undefined || part["thought"] === true) return undefined
  const call = record(part["functionCall"])
  if (call !== undefined) return { _tag: "Call", call }
  const text = string(part["text"])
  return text !== undefined && text.length > 0 ? { _tag: "Text", text } : undefined
}

const partsOf = (candidate: JsonRecord): ReadonlyArray<unknown> => array(record(candidate["content"])?.["parts"]) ?? []

/** The finish of a prompt Gemini refused to answer at all (no candidate, `promptFeedback.blockReason`). */
const blockReasonOf = (body: JsonRecord): string | undefined => string(record(body["promptFeedback"])?.["blockReason"])

const blockedPrompt = (reason: string) => ({
  finishReason: "content_filter" as const,
  rawFinishReason: reason,
  refusal: `the prompt was blocked (${reason})`
})

/** A turn the model meant to be a tool call that Gemini could not produce: unusable output. */
const invalidToolCall = (site: CallSite, raw: string, text: string, requestId: string | undefined): InvalidOutput =>
  new InvalidOutput({
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    status: 200,
    ...opt("requestId", requestId),
    reason: "unparsable",
    message: `${site.provider} ended the answer with ${raw}: the model's tool call was not usable`,
    ...(text.length > 0 ? { output: redactAndTruncate(text, site.secrets ?? []) } : {})
  }, true)

/** Gemini names the response `responseId` and the model `modelVersion`. */
const withIdentity = (response: GenerateResponse, body: JsonRecord): GenerateResponse => ({
  ...response,
  model: string(body["modelVersion"]) ?? response.model,
  ...opt("id", string(body["responseId"]))
})

const decodeResponse = (exchange: Exchange, body: unknown): Effect.Effect<GenerateResponse, ProviderError> => {
  const { requestId, site } = exchange
  if (!isRecord(body)) return Effect.fail(malformed(site, "the response is not a JSON object", safeStringify(body), requestId))
  // A gateway (or Google itself) may answer 200 with the error object.
  if (isRecord(body["error"])) return Effect.fail(classifyGeminiPayload(site, body, requestId))
  const usage = usageOf(body["usageMetadata"])
  const candidate = record(array(body["candidates"])?.[0])
  if (candidate === undefined) {
    const blocked = blockReasonOf(body)
    if (blocked === undefined) return Effect.fail(malformed(site, "no candidates in the response", safeStringify(body), requestId))
    return Effect.succeed(withIdentity(decodedResponse(exchange, body, { text: "", toolCalls: [], usage, ...blockedPrompt(blocked) }), body))
  }
  const responseId = string(body["responseId"])
  const text: Array<string> = []
  const toolCalls: Array<ToolCall> = []
  for (const entry of partsOf(candidate)) {
    const part = partOf(entry)
    if (part?._tag === "Text") text.push(part.text)
    else if (part?._tag === "Call") toolCalls.push(toolCallOf(part.call, responseId, toolCalls.length))
  }
  const raw = string(candidate["finishReason"])
  if (raw !== undefined && INVALID_TOOL_CALL.has(raw)) return Effect.fail(invalidToolCall(site, raw, text.join(""), requestId))
  return Effect.succeed(withIdentity(
    decodedResponse(exchange, body, {
      text: text.join(""),
      toolCalls,
      finishReason: finishReasonOf(raw, toolCalls.length > 0),
      rawFinishReason: raw,
      usage
    }),
    body
  ))
}

/**
 * The chunk grammar: every chunk is a whole response holding the next parts of candidate 0 and the
 * running usage. The chunk with a `finishReason` — or, for a blocked prompt, the only chunk, with
 * `promptFeedback.blockReason` — ends the answer; Gemini sends nothing after it and no terminator.
 */
const chunkProtocol = ({ provider, rateLimit, requestId, site }: Exchange): StreamProtocol => {
  const builder = new ResponseBuilder(provider, site.model, site.secrets ?? [])
  let usage: Usage | undefined
  let toolCount = 0
  const finish = (out: Array<StreamEvent>): undefined => {
    if (usage !== undefined) {
      builder.usage = usage
      out.push({ _tag: "Usage", usage })
    }
    out.push({ _tag: "Finish", response: builder.build(requestId, rateLimit) })
    return undefined
  }
  const emitPart = (entry: unknown, out: Array<StreamEvent>) => {
    const part = partOf(entry)
    if (part?._tag === "Text") {
      builder.addText(part.text)
      out.push({ _tag: "TextDelta", text: part.text })
    } else if (part?._tag === "Call") {
      // Gemini sends each function call whole, in one part: one delta carries all of it.
      const call = toolCallOf(part.call, builder.id, toolCount)
      builder.addToolCall(toolCount, call.id, call.name, call.arguments)
      out.push({ _tag: "ToolCallDelta", index: toolCount, id: call.id, name: call.name, argumentsDelta: call.arguments })
      toolCount++
    }
  }
  const onEvent = (event: SseEvent, out: Array<StreamEvent>): ProviderError | undefined => {
    const chunk = parseEventObject(site, event.data, "stream chunk", requestId)
    if (chunk instanceof InvalidOutput) return chunk
    if (isRecord(chunk["error"])) return classifyGeminiPayload(site, chunk, requestId)
    builder.id ??= string(chunk["responseId"])
    const model = string(chunk["modelVersion"])
    if (model !== undefined) builder.model = model
    usage = usageOf(chunk["usageMetadata"]) ?? usage
    const candidate = record(array(chunk["candidates"])?.[0])
    if (candidate === undefined) {
      const blocked = blockReasonOf(chunk)
      if (blocked === undefined) return undefined
      const block = blockedPrompt(blocked)
      builder.finishReason = block.finishReason
      builder.rawFinishReason = block.rawFinishReason
      builder.refusal = block.refusal
      return finish(out)
    }
    for (const entry of partsOf(candidate)) emitPart(entry, out)
    const raw = string(candidate["finishReason"])
    if (raw === undefined) return undefined
    if (INVALID_TOOL_CALL.has(raw)) return invalidToolCall(site, raw, builder.partialText(), requestId)
    builder.rawFinishReason = raw
    builder.finishReason = finishReasonOf(raw, builder.receivedToolCall)
    return finish(out)
  }
  return { builder, onEvent }
}

const wireFormat = (options: GeminiOptions): WireFormat => {
  const key = Redacted.value(options.apiKey)
  return {
    path: (request, stream) => `/${modelPath(request.model)}:${stream ? "streamGenerateContent?alt=sse" : "generateContent"}`,
    authHeaders: key.length > 0 ? { "x-goog-api-key": key } : {},
    content: CONTENT,
    encode: (request, call) => encodeRequest(request, call.maxTokens),
    decode: decodeResponse,
    protocol: chunkProtocol,
    framing: sseFraming,
    classify: classifyGeminiHttp
  }
}

/** `make` under the name of the constructor the caller used, so an `InvalidOptions` says which. */
const build = (component: string) =>
(options: GeminiOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> =>
  Effect.flatMap(
    resolve(component, options, { name: "gemini", baseUrl: DEFAULT_BASE_URL }),
    (resolved) => Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, resolved, wireFormat(options)))
  )

/**
 * Builds the adapter from an `HttpClient` in context. Fails with `InvalidOptions` (naming the option)
 * when an option cannot work: a `baseUrl` that is not an http(s) URL or carries a query, a bound or
 * cap that is not a positive integer, a key or header that cannot be sent as an HTTP header, an empty
 * `name`.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { Gemini, Transport } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const gemini = yield* Gemini.make({ apiKey: Redacted.make(process.env.GEMINI_API_KEY ?? "") })
 *   return yield* gemini.generate({ model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }], maxTokens: 64 })
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: (
  options: GeminiOptions
) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> = build("Gemini.make")

/**
 * The adapter as a `Provider` layer (fails with `InvalidOptions` like {@link make}).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: GeminiOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("Gemini.layer")(options))

/**
 * The adapter configured from the environment the way the official `@google/genai` SDK reads it: the
 * key from `GOOGLE_API_KEY`, else `GEMINI_API_KEY` (redacted; missing or blank in both is a
 * `ConfigError` naming them), and an optional
 * `GOOGLE_GEMINI_BASE_URL` — a root *without* the API version, to which `/v1beta` is appended as the
 * SDK does. A variable that is set but unusable fails with `InvalidOptions`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Provider, ConfigError.ConfigError | InvalidOptions, HttpClient.HttpClient> = Layer
  .effect(
    Provider,
    Effect.flatMap(
      Config.all({
        // A blank GOOGLE_API_KEY falls through to GEMINI_API_KEY, as in the SDK (`google || gemini`).
        apiKey: Config.orElse(apiKeyConfig("GOOGLE_API_KEY"), () => apiKeyConfig("GEMINI_API_KEY")),
        root: Config.option(Config.string("GOOGLE_GEMINI_BASE_URL"))
      }),
      ({ apiKey, root }) =>
        build("Gemini.layerConfig")({
          apiKey,
          baseUrl: Option.match(root, { onNone: () => DEFAULT_BASE_URL, onSome: (url) => `${url.replace(/\/+$/, "")}/v1beta` })
        })
    )
  )

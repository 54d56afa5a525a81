/**
 * The one skeleton every HTTP adapter runs on. A wire format (OpenAI Chat, Anthropic Messages, and
 * next OpenAI Responses, Gemini, Azure, Bedrock) is only what differs between providers: a path and
 * auth headers, an encoder, a decoder for a 2xx body, and a stream protocol over frames. Everything
 * else — options and their validation, secrets, the idempotency header, sending, classifying non-2xx
 * answers, bounded reads, request ids and rate-limit headers read once per response, the stream's
 * terminator rule — lives here once, so a new format cannot get it subtly wrong.
 *
 * @internal
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { CallSite } from "../../Classify.js"
import { InvalidOptions, type ProviderError, UnsupportedRequest } from "../../Errors.js"
import { parseRateLimit, requestIdOf } from "../../internal/headers.js"
import { type ContentSupport, unsupportedContent } from "../../internal/media.js"
import { fromPull, type Pull } from "../../internal/pull.js"
import { redactAndTruncate } from "../../internal/redact.js"
import type { SseEvent } from "../../internal/sse.js"
import { type JsonRecord, opt, string } from "../../internal/json.js"
import type {
  FinishReason,
  GenerateRequest,
  GenerateResponse,
  ProviderShape,
  StreamEvent,
  ToolCall,
  Usage
} from "../../Provider.js"
import type { RateLimitSnapshot } from "../../RateLimitSnapshot.js"
import { decodeStream, type FrameDecoder, type StreamProtocol } from "./streaming.js"
import { type HttpClassifier, readJson, type Received, send, sseFrameDecoder, transportError, type WireLimits } from "./wire.js"

// ---------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------

/** Options every HTTP adapter takes (documented on the public option types). */
export interface CommonOptions {
  readonly apiKey: Redacted.Redacted<string>
  readonly baseUrl?: string | undefined
  readonly name?: string | undefined
  readonly maxTokensCap?: number | undefined
  readonly maxBodyBytes?: number | undefined
  readonly maxSseEventBytes?: number | undefined
  readonly idempotencyHeader?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/** Defaults: 8 MiB bodies (an LLM answer is far smaller; a runaway proxy page is not), 1 MiB events. */
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
export const DEFAULT_MAX_SSE_EVENT_BYTES = 1024 * 1024
export const DEFAULT_IDEMPOTENCY_HEADER = "idempotency-key"

/** The options, checked and with their defaults applied. */
export interface Resolved {
  readonly name: string
  readonly baseUrl: string
  readonly limits: WireLimits
  readonly secrets: ReadonlyArray<string>
  readonly maxTokensCap: number | undefined
  readonly idempotencyHeader: string
  readonly headers: Readonly<Record<string, string>>
}

/** Extra headers whose names say they carry a credential (a gateway's key, a bearer token). */
const CREDENTIAL_HEADER = /auth|key|token|secret|password|cookie/i

/**
 * What to scrub from everything kept: the API key and the value of every extra header that carries
 * a credential (gateways such as Portkey or an Azure APIM front take their own key as a header).
 */
const secretsOf = (key: string, headers: Readonly<Record<string, string>>): ReadonlyArray<string> => {
  const secrets = key.length > 0 ? [key] : []
  for (const [name, value] of Object.entries(headers)) {
    if (CREDENTIAL_HEADER.test(name) && value.length >= 4) secrets.push(value.replace(/^(Bearer|Basic)\s+/i, ""))
  }
  return secrets
}

/** An HTTP field name (RFC 9110 `token`), the rule undici enforces when the request is sent. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** A character undici refuses in a header value: controls other than tab (a line break!), and non-Latin-1. */
const BAD_HEADER_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/

/**
 * Checks the options an adapter is built with, so that a misconfiguration fails the program's start
 * with a message naming the option — not every call, and not as a defect from deep inside undici.
 * `headerOptions` are the format's own options that end up in a header (OpenAI's `organization`,
 * Anthropic's `version`), checked like `headers`. Returns the first problem found.
 *
 * Values that may be credentials (the key, header values) are never echoed; a `baseUrl` is, scrubbed
 * of the key and key-shaped tokens, because a key pasted into `OPENAI_BASE_URL` is a likely mistake.
 */
export const validateOptions = (
  component: string,
  options: CommonOptions,
  headerOptions: Readonly<Record<string, string | undefined>> = {}
): InvalidOptions | undefined => {
  const invalid = (option: string, message: string) => new InvalidOptions({ component, option, message: `${option} ${message}` })
  const key = Redacted.value(options.apiKey)
  if (typeof key !== "string" || BAD_HEADER_VALUE_CHAR.test(key)) {
    return invalid("apiKey", "must be text that can be sent in an HTTP header (no line break or control character)")
  }
  if (options.baseUrl !== undefined) {
    const problem = baseUrlProblem(options.baseUrl)
    if (problem !== undefined) {
      const shown = redactAndTruncate(String(options.baseUrl), key.length > 0 ? [key] : []).slice(0, 200)
      return invalid("baseUrl", `${problem}, got "${shown}"`)
    }
  }
  if (options.name !== undefined && (typeof options.name !== "string" || options.name.trim().length === 0)) {
    return invalid("name", "must be a non-empty label (it names the route in errors, spans and metrics)")
  }
  for (const option of ["maxTokensCap", "maxBodyBytes", "maxSseEventBytes"] as const) {
    const value = options[option]
    if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
      return invalid(option, `must be a positive integer, got ${String(value)}`)
    }
  }
  if (options.idempotencyHeader !== undefined && !HEADER_NAME.test(options.idempotencyHeader)) {
    return invalid("idempotencyHeader", `must be an HTTP header name, got "${String(options.idempotencyHeader).slice(0, 100)}"`)
  }
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (!HEADER_NAME.test(name)) return invalid(`headers["${name.slice(0, 100)}"]`, "is not an HTTP header name")
    if (typeof value !== "string" || BAD_HEADER_VALUE_CHAR.test(value)) {
      return invalid(`headers["${name}"]`, "must be text that can be sent in an HTTP header (no line break or control character)")
    }
  }
  for (const [option, value] of Object.entries(headerOptions)) {
    if (value !== undefined && (typeof value !== "string" || BAD_HEADER_VALUE_CHAR.test(value))) {
      return invalid(option, "must be text that can be sent in an HTTP header (no line break or control character)")
    }
  }
  return undefined
}

/**
 * Why a base URL is unusable, or `undefined`. Paths are appended to it as text, so a query or fragment
 * would end up in front of `/chat/completions`; a format that needs a query (Azure's `api-version`)
 * adds it in its `path`.
 */
const baseUrlProblem = (baseUrl: string): string | undefined => {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    return "must be an absolute http:// or https:// URL"
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "must be an http:// or https:// URL"
  if (url.search.length > 0 || url.hash.length > 0) return "must not carry a query or fragment (paths are appended to it)"
  return undefined
}

/** The options, checked (see {@link validateOptions}) and with their defaults applied. */
export const resolve = (
  component: string,
  options: CommonOptions,
  defaults: { readonly name: string; readonly baseUrl: string },
  headerOptions?: Readonly<Record<string, string | undefined>>
): Effect.Effect<Resolved, InvalidOptions> => {
  const invalid = validateOptions(component, options, headerOptions)
  if (invalid !== undefined) return Effect.fail(invalid)
  const key = Redacted.value(options.apiKey)
  return Effect.succeed({
    name: options.name ?? defaults.name,
    baseUrl: (options.baseUrl ?? defaults.baseUrl).replace(/\/+$/, ""),
    limits: {
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      maxSseEventBytes: options.maxSseEventBytes ?? DEFAULT_MAX_SSE_EVENT_BYTES
    },
    secrets: secretsOf(key, options.headers ?? {}),
    maxTokensCap: options.maxTokensCap,
    idempotencyHeader: (options.idempotencyHeader ?? DEFAULT_IDEMPOTENCY_HEADER).toLowerCase(),
    headers: options.headers ?? {}
  })
}

// ---------------------------------------------------------------------------------------------------
// The wire-format seam
// ---------------------------------------------------------------------------------------------------

/** One sent request and its 2xx headers: what a format's decoder and stream protocol work from. */
export interface Exchange {
  readonly site: CallSite
  readonly request: GenerateRequest
  readonly received: Received
  /** The checked request id of the response headers (read once per response). */
  readonly requestId: string | undefined
  /** The rate-limit headers (read once per response). */
  readonly rateLimit: RateLimitSnapshot | undefined
  /** The adapter's label (the `name` option): `GenerateResponse.provider`. */
  readonly provider: string
}

/**
 * How a streamed body is cut into frames. SSE for every format but one ({@link sseFraming}); Bedrock's
 * ConverseStream is `application/vnd.amazon.eventstream` binary frames — a second frame decoder,
 * bounded by `limits.maxSseEventBytes`, nothing else changes.
 */
export interface Framing<Frame> {
  /** The `accept` header of a streaming request. */
  readonly accept: string
  /** A fresh decoder for one response body. */
  readonly decoder: (site: CallSite, limits: WireLimits) => FrameDecoder<Frame>
}

/** Server-sent events. */
export const sseFraming: Framing<SseEvent> = { accept: "text/event-stream", decoder: sseFrameDecoder }

/** What the format's encoder is given besides the request. */
export interface EncodeCall {
  readonly stream: boolean
  /** `request.maxTokens` already capped by the `maxTokensCap` option. */
  readonly maxTokens: number
}

/**
 * A provider's wire format: everything an adapter is beyond the skeleton. Pure translation — no
 * sending, no reading, no timeouts; failures it finds in a 2xx body (an error object inside a 200, an
 * in-stream error event, a malformed payload) it returns as typed errors.
 */
export interface WireFormat<Frame = SseEvent> {
  /**
   * The path under `baseUrl` (with any query). A function of the request because some formats put the
   * model or the mode in it: Gemini `/models/{model}:streamGenerateContent?alt=sse`, Azure
   * `/openai/deployments/{deployment}/chat/completions?api-version=…`.
   */
  readonly path: (request: GenerateRequest, stream: boolean) => string
  /** Credential and version headers, fixed at construction (`authorization`, `x-api-key`, …). */
  readonly authHeaders: Readonly<Record<string, string>>
  /**
   * The images and files the format can carry. The skeleton refuses any other part before sending
   * (`UnsupportedRequest`), so `encode` only ever sees parts it can encode.
   */
  readonly content: ContentSupport
  /** The JSON request body. */
  readonly encode: (request: GenerateRequest, call: EncodeCall) => unknown
  /** A 2xx JSON body (already bounded, parsed and scrubbed) → the response, or the failure it carries. */
  readonly decode: (exchange: Exchange, body: unknown) => Effect.Effect<GenerateResponse, ProviderError>
  /** A fresh state machine for one stream: frames in, stream events out, `Finish` on the terminator. */
  readonly protocol: (exchange: Exchange) => StreamProtocol<Frame>
  /** How a streamed body is cut into frames ({@link sseFraming} unless the format says otherwise). */
  readonly framing: Framing<Frame>
  /**
   * Classifies a non-2xx answer. Default `Classify.fromHttp` (OpenAI and Anthropic error bodies, the
   * shared retry headers); a format with its own error shape (Gemini `RESOURCE_EXHAUSTED` per-minute vs
   * per-day, Bedrock `x-amzn-errortype`) supplies its own.
   */
  readonly classify?: HttpClassifier | undefined
  /**
   * The last step before sending, for formats whose requests must be signed over their final URL,
   * headers and body (Bedrock's SigV4). Not called when absent, so it costs nothing elsewhere.
   */
  readonly sign?:
    | ((request: HttpClientRequest.HttpClientRequest, site: CallSite) => Effect.Effect<HttpClientRequest.HttpClientRequest, ProviderError>)
    | undefined
}

/** What a format's decoder read from a 2xx body; the rest of the response comes from the exchange. */
export interface DecodedAnswer {
  readonly text: string
  readonly toolCalls: ReadonlyArray<ToolCall>
  readonly finishReason: FinishReason
  readonly rawFinishReason?: string | undefined
  readonly refusal?: string | undefined
  readonly usage: Usage | undefined
}

/**
 * The response of a decoded 2xx body: the answer, with the body's `model` and `id` when it names them,
 * the exchange's provider label, request id and rate-limit headers, and the body as `raw`.
 */
export const decodedResponse = (
  { provider, rateLimit, requestId, site }: Exchange,
  body: JsonRecord,
  answer: DecodedAnswer
): GenerateResponse => ({
  provider,
  model: string(body["model"]) ?? site.model,
  ...opt("id", string(body["id"])),
  text: answer.text,
  toolCalls: answer.toolCalls,
  finishReason: answer.finishReason,
  ...opt("rawFinishReason", answer.rawFinishReason),
  ...opt("refusal", answer.refusal),
  usage: answer.usage ?? { inputTokens: 0, outputTokens: 0, totalTokens: 0 },
  ...opt("requestId", requestId),
  ...opt("rateLimit", rateLimit),
  raw: body
})

// ---------------------------------------------------------------------------------------------------
// The skeleton
// ---------------------------------------------------------------------------------------------------

/** Where a call's failures are attributed (the chain re-labels route and attempt). */
export const siteOf = (resolved: Resolved, request: GenerateRequest): CallSite => ({
  provider: resolved.name,
  model: request.model,
  route: `${resolved.name}/${request.model}`,
  attempt: 1,
  secrets: resolved.secrets
})

const cappedMaxTokens = (resolved: Resolved, request: GenerateRequest): number =>
  resolved.maxTokensCap === undefined ? request.maxTokens : Math.min(request.maxTokens, resolved.maxTokensCap)

/** The JSON POST of a call: extra headers, the format's auth, `accept`, and the idempotency key if any. */
const httpRequestOf = <Frame>(
  resolved: Resolved,
  format: WireFormat<Frame>,
  request: GenerateRequest,
  stream: boolean
): HttpClientRequest.HttpClientRequest =>
  HttpClientRequest.post(resolved.baseUrl + format.path(request, stream)).pipe(
    HttpClientRequest.setHeaders({
      ...resolved.headers,
      ...format.authHeaders,
      accept: stream ? format.framing.accept : "application/json",
      ...(request.idempotencyKey !== undefined ? { [resolved.idempotencyHeader]: request.idempotencyKey } : {})
    }),
    HttpClientRequest.bodyUnsafeJson(format.encode(request, { stream, maxTokens: cappedMaxTokens(resolved, request) }))
  )

/**
 * An adapter from a wire format: `generate` = send → bounded JSON read → `decode`; `stream` = send →
 * `framing` → `protocol` (with a `Metadata` event first and the terminator rule of `decodeStream`).
 */
export const makeHttpAdapter = <Frame>(
  client: HttpClient.HttpClient,
  resolved: Resolved,
  format: WireFormat<Frame>
): ProviderShape<ProviderError> => {
  const exchange = (request: GenerateRequest, stream: boolean): Effect.Effect<Exchange, ProviderError> => {
    const site = siteOf(resolved, request)
    const toExchange = (received: Received): Exchange => ({
      site,
      request,
      received,
      requestId: requestIdOf(received.headers, resolved.secrets),
      rateLimit: parseRateLimit(received.headers, received.receivedAt),
      provider: resolved.name
    })
    const unsupported = unsupportedContent(request, format.content)
    if (unsupported !== undefined) {
      return Effect.fail(
        new UnsupportedRequest({
          provider: site.provider,
          model: site.model,
          route: site.route,
          attempt: site.attempt,
          param: unsupported.param,
          message: `${unsupported.message} (${unsupported.param})`
        }, true)
      )
    }
    const httpRequest = httpRequestOf(resolved, format, request, stream)
    const sent = (signed: HttpClientRequest.HttpClientRequest) =>
      Effect.map(send(client, signed, site, resolved.limits, format.classify), toExchange)
    return format.sign === undefined ? sent(httpRequest) : Effect.flatMap(format.sign(httpRequest, site), sent)
  }

  const generate = (request: GenerateRequest): Effect.Effect<GenerateResponse, ProviderError> =>
    Effect.flatMap(exchange(request, false), (ex) =>
      Effect.flatMap(
        readJson(ex.received, ex.site, resolved.limits, ex.requestId),
        (body) => format.decode(ex, body)
      ))

  // One stage from the request to the decoded events: the exchange runs in the first pull, then the
  // body's pull takes over (no `Stream.unwrap` in between, which every chunk would pass through).
  const stream = (request: GenerateRequest): Stream.Stream<StreamEvent, ProviderError> =>
    fromPull(Effect.map(Effect.scope, (scope) => {
      let decoded: Pull<StreamEvent, ProviderError> | undefined
      const start = Effect.matchEffect(exchange(request, true), {
        onFailure: (error) => {
          // Pulled again after this, the stream fails again: the request is never sent twice.
          decoded = Effect.fail(Option.some(error))
          return decoded
        },
        onSuccess: (ex) => {
          const made = decodeStream(
            ex.received.response.stream,
            transportError(ex.site),
            format.framing.decoder(ex.site, resolved.limits),
            ex.site,
            ex.requestId,
            ex.rateLimit,
            () => format.protocol(ex)
          )
          return Effect.flatMap(Scope.extend(made, scope), (pull) => {
            decoded = pull
            return pull
          })
        }
      })
      return Effect.suspend(() => decoded ?? start)
    }))

  return { name: resolved.name, generate, stream }
}

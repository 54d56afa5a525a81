/**
 * The HTTP leg shared by every adapter: send a request through `@effect/platform`'s HttpClient, turn
 * transport failures and non-2xx responses into typed errors, and read bodies and event streams within
 * bounds. Adapters only translate shapes; everything about *failing well* lives here once.
 *
 * @internal
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { type CallSite, fromHttp, fromTransport } from "../../Classify.js"
import { type ConnectionError, InvalidOutput, type ProviderError, ResponseTooLarge, type Timeout } from "../../Errors.js"
import type { HeaderMap } from "../../internal/headers.js"
import { parseUntrusted, refusedBecause } from "../../internal/json.js"
import { redactAndTruncate } from "../../internal/redact.js"
import { EVENT_TOO_LARGE, SseDecoder, type SseEvent } from "../../internal/sse.js"
import type { FrameDecoder } from "./streaming.js"

/** Read bounds, from the adapter's config. */
export interface WireLimits {
  readonly maxBodyBytes: number
  readonly maxSseEventBytes: number
}

/** A 2xx response, its headers read once (undici's header getter rebuilds them on each access). */
export interface Received {
  readonly response: HttpClientResponse.HttpClientResponse
  readonly headers: HeaderMap
  /** Epoch ms (Effect Clock) when the headers arrived. */
  readonly receivedAt: number
}

export const tooLarge = (site: CallSite, limitBytes: number, part: "body" | "sse-event", status?: number) =>
  new ResponseTooLarge({
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    ...(status !== undefined ? { status } : {}),
    limitBytes,
    part,
    message: `response ${part === "body" ? "body" : "event"} exceeded the ${limitBytes}-byte bound`
  }, true)

/** A broken or timed-out body read, classified like any transport failure. */
export const transportError = (site: CallSite) => (error: HttpClientError.HttpClientError): Timeout | ConnectionError =>
  fromTransport({ site, cause: error.cause ?? error })

const concat = (chunks: ReadonlyArray<Uint8Array>, total: number): Uint8Array => {
  if (chunks.length === 1) return chunks[0]!
  const out = new Uint8Array(total)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

const utf8 = new TextDecoder("utf-8")

/**
 * Reads a whole body, refusing more than `maxBytes`. A declared `content-length` within bounds takes
 * undici's own reader (the fast path); anything else is read chunk by chunk and cut at the bound, which
 * closes the socket instead of buffering a runaway body.
 */
export const readBody = (
  received: Received,
  site: CallSite,
  maxBytes: number
): Effect.Effect<string, ResponseTooLarge | Timeout | ConnectionError> => {
  const { headers, response } = received
  const declared = Number(headers["content-length"])
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Effect.zipRight(
      Effect.ignore(Stream.runDrain(Stream.take(response.stream, 1))),
      Effect.fail(tooLarge(site, maxBytes, "body", response.status))
    )
  }
  if (Number.isFinite(declared) && headers["content-length"] !== undefined) {
    return Effect.mapError(response.text, transportError(site))
  }
  return Effect.suspend(() => {
    const chunks: Array<Uint8Array> = []
    let total = 0
    return response.stream.pipe(
      Stream.mapError(transportError(site)),
      Stream.runForEachWhile((chunk) => {
        total += chunk.length
        if (total > maxBytes) return Effect.succeed(false)
        chunks.push(chunk)
        return Effect.succeed(true)
      }),
      Effect.flatMap(() =>
        total > maxBytes
          ? Effect.fail(tooLarge(site, maxBytes, "body", response.status))
          : Effect.succeed(utf8.decode(concat(chunks, total)))
      )
    )
  })
}

/**
 * Turns a non-2xx response into its typed error. `Classify.fromHttp` knows the OpenAI and Anthropic
 * error bodies and the shared headers; a wire format with its own error shape (Bedrock's
 * `x-amzn-errortype`, say) brings its own.
 */
export type HttpClassifier = (input: Parameters<typeof fromHttp>[0]) => ProviderError

/**
 * Sends the request. Transport failures become `ConnectionError`/`Timeout`; any status outside 2xx is
 * read (bounded) and classified from status, headers and body.
 */
export const send = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  site: CallSite,
  limits: WireLimits,
  classify: HttpClassifier = fromHttp
): Effect.Effect<Received, ProviderError> =>
  client.execute(request).pipe(
    Effect.mapError(transportError(site)),
    Effect.flatMap((response) =>
      Effect.flatMap(Clock.currentTimeMillis, (receivedAt): Effect.Effect<Received, ProviderError> => {
        const received: Received = { response, headers: response.headers, receivedAt }
        if (response.status >= 200 && response.status < 300) return Effect.succeed(received)
        return readBody(received, site, limits.maxBodyBytes).pipe(
          Effect.flatMap((body) =>
            Effect.fail(classify({ site, status: response.status, headers: received.headers, body, now: receivedAt }))
          )
        )
      })
    )
  )

/** A 200 body that is not the provider's JSON: wire corruption (a proxy page, a truncated body). */
export const malformed = (site: CallSite, detail: string, body: string, requestId?: string): InvalidOutput =>
  new InvalidOutput({
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    status: 200,
    ...(requestId !== undefined ? { requestId } : {}),
    reason: "malformed-response",
    // The detail can quote the wire (an SSE event's name), so it is scrubbed like the body.
    message: redactAndTruncate(`malformed response from ${site.provider}: ${detail}`, site.secrets ?? []),
    rawBody: redactAndTruncate(body, site.secrets ?? [])
  }, true)

/**
 * Reads a 2xx JSON body through the one door for provider JSON (bounded depth, the route's secrets
 * scrubbed); unparsable or too deep is `InvalidOutput{malformed-response}`.
 */
export const readJson = (
  received: Received,
  site: CallSite,
  limits: WireLimits,
  requestId: string | undefined
): Effect.Effect<unknown, ProviderError> =>
  Effect.flatMap(readBody(received, site, limits.maxBodyBytes), (text) => {
    const parsed = parseUntrusted(text, site.secrets)
    return parsed._tag === "Json"
      ? Effect.succeed(parsed.value)
      : Effect.fail(malformed(site, `body is ${refusedBecause(parsed)}`, text, requestId))
  })

/**
 * Server-sent events as a frame decoder: an event over the bound is `ResponseTooLarge`; at the end of
 * the body, an event not closed by a blank line is dropped (the adapter decides whether its terminator
 * was seen).
 */
export const sseFrameDecoder = (site: CallSite, limits: WireLimits): FrameDecoder<SseEvent> => {
  const decoder = new SseDecoder(limits.maxSseEventBytes)
  return {
    push: (bytes, out) => {
      const decoded = decoder.push(bytes)
      if (decoded === EVENT_TOO_LARGE) return tooLarge(site, limits.maxSseEventBytes, "sse-event")
      for (const event of decoded) out.push(event)
      return undefined
    },
    end: () => decoder.end()
  }
}

/**
 * What every adapter's stream shares: assembling the final response from deltas, and the rule that a
 * stream is only a success when the provider's terminator arrived — a body that just ends, or breaks,
 * is `StreamInterrupted` carrying whatever content had been received. Framing (SSE, or another format's
 * binary frames) is the caller's: this runs a protocol over whatever frame decoder it is given.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { CallSite } from "../../Classify.js"
import { type ConnectionError, type InvalidOutput, type ProviderError, type ResponseTooLarge, StreamInterrupted, type Timeout } from "../../Errors.js"
import { isRecord, type JsonRecord, parseUntrusted, refusedBecause } from "../../internal/json.js"
import type { MakePull } from "../../internal/pull.js"
import { scrubSecrets } from "../../internal/redact.js"
import type { SseEvent } from "../../internal/sse.js"
import type { FinishReason, GenerateResponse, StreamEvent, ToolCall, Usage } from "../../Provider.js"
import type { RateLimitSnapshot } from "../../RateLimitSnapshot.js"
import { malformed } from "./wire.js"

interface ToolCallParts {
  id: string
  name: string
  args: Array<string>
}

/** Accumulates deltas into a {@link GenerateResponse}. */
export class ResponseBuilder {
  private readonly text: Array<string> = []
  private readonly tools = new Map<number, ToolCallParts>()
  id: string | undefined = undefined
  model: string
  finishReason: FinishReason = "other"
  rawFinishReason: string | undefined = undefined
  refusal: string | undefined = undefined
  usage: Usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 }
  receivedContent = false

  constructor(readonly provider: string, model: string, private readonly secrets: ReadonlyArray<string> = []) {
    this.model = model
  }

  addText(text: string): void {
    if (text.length === 0) return
    this.text.push(text)
    this.receivedContent = true
  }

  addToolCall(index: number, id: string | undefined, name: string | undefined, args: string): void {
    let parts = this.tools.get(index)
    if (parts === undefined) {
      parts = { id: id ?? `call_${index}`, name: name ?? "", args: [] }
      this.tools.set(index, parts)
    }
    if (id !== undefined) parts.id = id
    if (name !== undefined) parts.name = name
    if (args.length > 0) parts.args.push(args)
    this.receivedContent = true
  }

  /** Whether any tool call has begun (a completed answer with one ended to let the caller run it). */
  get receivedToolCall(): boolean {
    return this.tools.size > 0
  }

  /** The text so far, scrubbed whole: each delta was scrubbed alone, and a key split across two is not. */
  partialText(): string {
    return scrubSecrets(this.text.join(""), this.secrets)
  }

  build(requestId: string | undefined, rateLimit: RateLimitSnapshot | undefined): GenerateResponse {
    const toolCalls: Array<ToolCall> = []
    for (const [, parts] of [...this.tools].sort(([a], [b]) => a - b)) {
      // Each delta was scrubbed on its own; a key split across deltas is whole only once joined.
      toolCalls.push({ id: parts.id, name: parts.name, arguments: scrubSecrets(parts.args.join(""), this.secrets) })
    }
    return {
      provider: this.provider,
      model: this.model,
      ...(this.id !== undefined ? { id: this.id } : {}),
      text: scrubSecrets(this.text.join(""), this.secrets),
      toolCalls,
      finishReason: this.finishReason,
      ...(this.rawFinishReason !== undefined ? { rawFinishReason: this.rawFinishReason } : {}),
      ...(this.refusal !== undefined ? { refusal: this.refusal } : {}),
      usage: this.usage,
      ...(requestId !== undefined ? { requestId } : {}),
      ...(rateLimit !== undefined ? { rateLimit } : {})
    }
  }
}

/** One provider's event grammar: maps a frame (an SSE event by default) to stream events, or fails. */
export interface StreamProtocol<Frame = SseEvent> {
  readonly builder: ResponseBuilder
  /** Appends the events this frame produces to `out`; returns a failure to end the stream with. */
  readonly onEvent: (event: Frame, out: Array<StreamEvent>) => ProviderError | undefined
}

/**
 * Cuts a response body into frames (SSE events, Bedrock's event-stream messages), keeping its partial
 * state between pushes. A frame over the bound or a corrupt one is a typed failure; after a failure the
 * decoder is not used again.
 */
export interface FrameDecoder<Frame> {
  /** Appends the frames `bytes` complete to `out`; returns why the body cannot be framed, if so. */
  readonly push: (bytes: Uint8Array, out: Array<Frame>) => ResponseTooLarge | InvalidOutput | undefined
  /** At a clean end of the body: appends any frame the end itself makes (Bedrock's `End`). */
  readonly end: (out: Array<Frame>) => void
}

const interrupted = (site: CallSite, builder: ResponseBuilder, requestId: string | undefined, detail: string) => {
  const partialText = builder.partialText()
  return new StreamInterrupted({
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    status: 200,
    ...(requestId !== undefined ? { requestId } : {}),
    receivedContent: builder.receivedContent,
    ...(partialText.length > 0 ? { partialText } : {}),
    message: `stream from ${site.provider} ${detail} before its terminator`
  }, true)
}

/** What ends a decoded stream's pull: the end of the stream, or its failure. */
const END = Effect.fail(Option.none())

/**
 * Runs a provider's protocol over a response body: bytes → frames → stream events, as one pull per
 * network chunk (one stream stage, not one per step: Effect's stream cost is per chunk and per stage).
 * Emits a `Metadata` event as soon as the headers are in (request id and rate-limit headroom are known
 * before any token), ends right after `Finish` without reading further, and fails with
 * `StreamInterrupted` when the body ends or breaks before it. An in-stream error or a frame that
 * cannot be decoded fails the stream after the events before it in the same network chunk: those are
 * the partial output, and reach the consumer first.
 */
export const decodeStream = <Frame, BodyError>(
  body: Stream.Stream<Uint8Array, BodyError>,
  bodyError: (error: BodyError) => Timeout | ConnectionError,
  frames: FrameDecoder<Frame>,
  site: CallSite,
  requestId: string | undefined,
  rateLimit: RateLimitSnapshot | undefined,
  makeProtocol: () => StreamProtocol<Frame>
): MakePull<StreamEvent, ProviderError> =>
  Effect.map(Stream.toPull(body), (pullBytes) => {
    const protocol = makeProtocol()
    let metadataSent = false
    let finished = false
    let failed: ProviderError | undefined
    const framed: Array<Frame> = []

    /** Frames through the protocol, until `Finish` or a failure. */
    const run = (out: Array<StreamEvent>) => {
      for (const frame of framed) {
        const failure = protocol.onEvent(frame, out)
        if (failure !== undefined) {
          failed = failure
          break
        }
        if (out.length > 0 && out[out.length - 1]!._tag === "Finish") {
          finished = true
          break
        }
      }
      framed.length = 0
    }
    const feed = (chunk: Chunk.Chunk<Uint8Array>): Array<StreamEvent> => {
      const out: Array<StreamEvent> = []
      for (const bytes of chunk) {
        const failure = frames.push(bytes, framed)
        run(out)
        if (failed === undefined && failure !== undefined) failed = failure
        if (finished || failed !== undefined) break
      }
      return out
    }
    const atEnd = (): Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<ProviderError>> => {
      frames.end(framed)
      const out: Array<StreamEvent> = []
      run(out)
      if (failed === undefined && !finished) failed = interrupted(site, protocol.builder, requestId, "ended")
      return out.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(out)) : pull
    }
    const pull: Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<ProviderError>> = Effect.suspend(() => {
      if (!metadataSent) {
        metadataSent = true
        return Effect.succeed(Chunk.of<StreamEvent>({
          _tag: "Metadata",
          ...(requestId !== undefined ? { requestId } : {}),
          ...(rateLimit !== undefined ? { rateLimit } : {})
        }))
      }
      if (finished) return END
      if (failed !== undefined) return Effect.fail(Option.some(failed))
      return Effect.matchEffect(pullBytes, {
        onFailure: (error) => {
          if (Option.isNone(error)) return atEnd()
          const broken = bodyError(error.value)
          failed = broken._tag === "ConnectionError"
            ? interrupted(site, protocol.builder, requestId, `broke (${broken.reason})`)
            : broken
          return Effect.fail(Option.some(failed))
        },
        onSuccess: (chunk) => {
          const out = feed(chunk)
          return out.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(out)) : pull
        }
      })
    })
    return pull
  })

/**
 * An SSE data payload that must be a JSON object: the object (depth-bounded, the route's secrets
 * scrubbed — see `parseUntrusted`), or `InvalidOutput{malformed-response}` saying why not.
 */
export const parseEventObject = (
  site: CallSite,
  data: string,
  what: string,
  requestId: string | undefined
): JsonRecord | InvalidOutput => {
  const parsed = parseUntrusted(data, site.secrets)
  if (parsed._tag === "Json" && isRecord(parsed.value)) return parsed.value
  return malformed(site, `${what} is ${parsed._tag === "Json" ? "not a JSON object" : refusedBecause(parsed)}`, data, requestId)
}

/**
 * What every adapter's stream shares: assembling the final response from deltas, and the rule that a
 * stream is only a success when the provider's terminator arrived — a body that just ends, or breaks,
 * is `StreamInterrupted` carrying whatever content had been received. Framing (SSE, or another format's
 * binary frames) is the caller's: this runs a protocol over whatever frames it is given.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Stream from "effect/Stream"
import type { CallSite } from "../../Classify.js"
import { type ConnectionError, type InvalidOutput, type ProviderError, type ResponseTooLarge, StreamInterrupted, type Timeout } from "../../Errors.js"
import { isRecord, type JsonRecord, parseUntrusted, refusedBecause } from "../../internal/json.js"
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

/** Ends the decoded stream after an in-stream error (see `decodeStream`). */
const STOP = { _tag: "Stop" } as const

/** One provider's event grammar: maps a frame (an SSE event by default) to stream events, or fails. */
export interface StreamProtocol<Frame = SseEvent> {
  readonly builder: ResponseBuilder
  /** Appends the events this frame produces to `out`; returns a failure to end the stream with. */
  readonly onEvent: (event: Frame, out: Array<StreamEvent>) => ProviderError | undefined
}

/**
 * How a framed body fails on its own: a frame over the bound, the connection breaking, or (binary
 * framings: Bedrock's event stream) a frame that is corrupt — a checksum mismatch, an impossible length.
 */
export type FrameError = ResponseTooLarge | Timeout | ConnectionError | InvalidOutput

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

/**
 * Runs a provider's protocol over the response's frames. Emits a `Metadata` event as soon as the
 * headers are in (request id and rate-limit headroom are known before any token), ends right after
 * `Finish`, and fails with `StreamInterrupted` when the input ends or breaks before it.
 */
export const decodeStream = <Frame>(
  frames: Stream.Stream<Frame, FrameError>,
  site: CallSite,
  requestId: string | undefined,
  rateLimit: RateLimitSnapshot | undefined,
  makeProtocol: () => StreamProtocol<Frame>
): Stream.Stream<StreamEvent, ProviderError> =>
  Stream.suspend(() => {
    const protocol = makeProtocol()
    let finished = false
    const metadata: StreamEvent = {
      _tag: "Metadata",
      ...(requestId !== undefined ? { requestId } : {}),
      ...(rateLimit !== undefined ? { rateLimit } : {})
    }
    // An error event may share a network chunk with deltas before it: those deltas must reach the
    // consumer (they are the partial output) before the stream fails. The failure is parked and the
    // STOP marker ends the pull at once, so a server that never closes after its error cannot hang us.
    let failed: ProviderError | undefined
    const events = frames.pipe(
      Stream.mapChunks((chunk): Chunk.Chunk<StreamEvent | typeof STOP> => {
        const out: Array<StreamEvent> = []
        for (const event of chunk) {
          if (finished) break
          const failure = protocol.onEvent(event, out)
          if (failure !== undefined) {
            failed = failure
            return Chunk.unsafeFromArray<StreamEvent | typeof STOP>([...out, STOP])
          }
          if (out.length > 0 && out[out.length - 1]!._tag === "Finish") finished = true
        }
        return Chunk.unsafeFromArray(out)
      }),
      Stream.takeUntil((event) => event === STOP || event._tag === "Finish"),
      Stream.filter((event): event is StreamEvent => event !== STOP),
      Stream.catchAll((error): Stream.Stream<never, ProviderError> =>
        Stream.fail(
          error._tag === "ConnectionError" ? interrupted(site, protocol.builder, requestId, `broke (${error.reason})`) : error
        )
      )
    )
    return Stream.concat(
      Stream.prepend(events, Chunk.of(metadata)),
      Stream.suspend(() =>
        failed !== undefined
          ? Stream.fail(failed)
          : finished
          ? Stream.empty
          : Stream.fail(interrupted(site, protocol.builder, requestId, "ended"))
      )
    )
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

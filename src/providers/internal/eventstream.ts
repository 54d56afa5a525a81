/**
 * The second `Framing`: `application/vnd.amazon.eventstream`, the binary framing of Bedrock's
 * ConverseStream (and every AWS event stream). A message is
 *
 * ```
 * [total length u32][headers length u32][prelude CRC32 u32][headers][payload][message CRC32 u32]
 * ```
 *
 * big-endian, both CRCs IEEE CRC-32. Messages arrive cut at arbitrary byte boundaries, so the decoder
 * keeps a partial message between pushes. Decoding a whole message (both checksums, typed headers) is
 * `@smithy/eventstream-codec`'s `EventStreamCodec` — the codec the AWS SDK itself uses — so what we
 * accept is what the SDK accepts. Cutting the byte stream into messages is ours, because the codec only
 * decodes a message it is handed whole, and because it must be bounded: a declared length above
 * `limits.maxSseEventBytes` fails with `ResponseTooLarge` before a byte of it is buffered.
 *
 * Nothing a server sends becomes a defect: a bad prelude checksum, an impossible length, a bad message
 * checksum or an unparsable header is `InvalidOutput{malformed-response}` (wire corruption, retryable
 * like any malformed body). A body that ends cleanly at a message boundary yields a final `End` frame,
 * so the protocol can tell "the server closed after its last message" from "the body was cut inside
 * one" (no `End`: the stream is then interrupted).
 *
 * @internal
 */
import { EventStreamCodec } from "@smithy/eventstream-codec"
import { fromUtf8, toUtf8 } from "@smithy/util-utf8"
import type { CallSite } from "../../Classify.js"
import type { InvalidOutput } from "../../Errors.js"
import type { Framing } from "./adapter.js"
import type { FrameDecoder } from "./streaming.js"
import { malformed, tooLarge, type WireLimits } from "./wire.js"

/** One decoded message: its string-valued headers (`:message-type`, `:event-type`, …) and payload. */
export interface EventStreamMessage {
  readonly _tag: "Message"
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array
}

/** The body ended cleanly right after a whole message. */
export interface EventStreamEnd {
  readonly _tag: "End"
}

/** What the framing yields. */
export type EventStreamFrame = EventStreamMessage | EventStreamEnd

/** The `End` frame (one value: it carries nothing). */
export const END: EventStreamEnd = { _tag: "End" }

/** Prelude: total length, headers length, prelude CRC. */
const PRELUDE_BYTES = 12
/** The smallest message: a prelude and the message CRC, no headers, no payload. */
const MIN_MESSAGE_BYTES = 16

/** Why a byte stream is not an event stream. */
export interface Corrupt {
  readonly _tag: "Corrupt"
  readonly detail: string
}

/** A message declared larger than the bound. */
export interface TooLarge {
  readonly _tag: "TooLarge"
}

/** What one push produced. */
export interface Pushed {
  readonly messages: ReadonlyArray<EventStreamMessage>
  readonly failure?: Corrupt | TooLarge
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/**
 * IEEE CRC-32, for the prelude only: it is checked before the declared length is trusted, so a flipped
 * bit in the length is reported as corruption instead of as a (bogus) too-large message or a wait for
 * bytes that never come. The codec re-checks it, with the message CRC, when the message is whole.
 */
const crc32 = (bytes: Uint8Array, from: number, to: number): number => {
  let crc = 0xffffffff
  for (let i = from; i < to; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

const readU32 = (bytes: Uint8Array, at: number): number =>
  ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0

const codec = new EventStreamCodec(toUtf8, fromUtf8)

/**
 * An incremental, bounded event-stream decoder: push bytes as they arrive, get the messages they
 * complete. After a push that reports a failure the decoder must not be used again.
 */
export class EventStreamDecoder {
  private buffer = new Uint8Array(0)
  private length = 0

  constructor(readonly maxMessageBytes: number) {}

  /** Bytes held that do not yet form a whole message (0 at a message boundary). */
  get pending(): number {
    return this.length
  }

  /**
   * Feeds bytes; returns the messages they complete and, when the stream turned out broken, why. The
   * messages before a broken one are returned with the failure: they are the partial output, and must
   * reach the consumer before the stream fails.
   */
  push(chunk: Uint8Array): Pushed {
    this.append(chunk)
    const messages: Array<EventStreamMessage> = []
    let offset = 0
    let failure: Corrupt | TooLarge | undefined
    while (failure === undefined && this.length - offset >= PRELUDE_BYTES) {
      failure = this.check(offset)
      if (failure !== undefined) break
      const total = readU32(this.buffer, offset)
      if (this.length - offset < total) break
      const decoded = decodeMessage(this.buffer.subarray(offset, offset + total))
      if (decoded._tag === "Corrupt") failure = decoded
      else {
        messages.push(decoded)
        offset += total
      }
    }
    this.consume(offset)
    return failure === undefined ? { messages } : { messages, failure }
  }

  /** Checks the prelude at `offset` before its declared length is trusted. */
  private check(offset: number): Corrupt | TooLarge | undefined {
    const total = readU32(this.buffer, offset)
    if (crc32(this.buffer, offset, offset + 8) !== readU32(this.buffer, offset + 8)) {
      return { _tag: "Corrupt", detail: "event-stream prelude checksum mismatch" }
    }
    const headersLength = readU32(this.buffer, offset + 4)
    if (total < MIN_MESSAGE_BYTES || headersLength > total - MIN_MESSAGE_BYTES) {
      return { _tag: "Corrupt", detail: `event-stream message length ${total} (headers ${headersLength}) is impossible` }
    }
    return total > this.maxMessageBytes ? { _tag: "TooLarge" } : undefined
  }

  private append(chunk: Uint8Array): void {
    const needed = this.length + chunk.length
    if (needed > this.buffer.length) {
      // Doubling keeps appends amortised O(1); the bound on one message bounds the buffer (a message
      // never waits for more than `maxMessageBytes`, and a chunk adds at most its own size).
      const grown = new Uint8Array(Math.max(needed, this.buffer.length * 2, 1024))
      grown.set(this.buffer.subarray(0, this.length))
      this.buffer = grown
    }
    this.buffer.set(chunk, this.length)
    this.length = needed
  }

  private consume(bytes: number): void {
    if (bytes === 0) return
    // copyWithin keeps the allocation; a fresh buffer when empty lets a burst's memory go.
    if (bytes === this.length) {
      this.length = 0
      if (this.buffer.length > 64 * 1024) this.buffer = new Uint8Array(0)
      return
    }
    this.buffer.copyWithin(0, bytes, this.length)
    this.length -= bytes
  }
}

/** One whole message through the SDK's codec (both CRCs, typed headers); only string headers are kept. */
const decodeMessage = (bytes: Uint8Array): EventStreamMessage | Corrupt => {
  try {
    // The codec keeps views into the buffer it is given; the decoder's buffer is reused, so copy.
    const message = codec.decode(bytes.slice())
    const headers: Record<string, string> = {}
    for (const [name, header] of Object.entries(message.headers)) {
      if (header.type === "string") headers[name] = header.value
    }
    return { _tag: "Message", headers, body: message.body }
  } catch (error) {
    // CRC mismatches and header bytes that run past their block (a RangeError) alike: wire corruption.
    return { _tag: "Corrupt", detail: `event-stream message is corrupt (${error instanceof Error ? error.message : String(error)})` }
  }
}

const corrupt = (site: CallSite, detail: string): InvalidOutput => malformed(site, detail, "")

/**
 * The event-stream framing's decoder: a message over the bound is `ResponseTooLarge` (the bound is
 * `maxSseEventBytes`, the Errors schema's `sse-event` part: the same option), corrupt framing is
 * `InvalidOutput{malformed-response}`. At a clean end of the body it adds `End` only at a message
 * boundary: leftover bytes are a message cut short, so the stream counts as interrupted.
 */
export const eventStreamDecoder = (site: CallSite, limits: WireLimits): FrameDecoder<EventStreamFrame> => {
  const decoder = new EventStreamDecoder(limits.maxSseEventBytes)
  return {
    push: (bytes, out) => {
      const pushed = decoder.push(bytes)
      for (const message of pushed.messages) out.push(message)
      if (pushed.failure === undefined) return undefined
      return pushed.failure._tag === "TooLarge"
        ? tooLarge(site, limits.maxSseEventBytes, "sse-event")
        : corrupt(site, pushed.failure.detail)
    },
    end: (out) => {
      if (decoder.pending === 0) out.push(END)
    }
  }
}

/** Bedrock's ConverseStream framing. */
export const eventStreamFraming: Framing<EventStreamFrame> = {
  accept: "application/vnd.amazon.eventstream",
  decoder: eventStreamDecoder
}

/** Encodes one message (string headers, raw payload) — the inverse of the decoder, for test servers. */
export const encodeMessage = (headers: Readonly<Record<string, string>>, body: Uint8Array): Uint8Array =>
  codec.encode({
    headers: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, { type: "string" as const, value }])),
    body
  })

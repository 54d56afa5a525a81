/**
 * An incremental Server-Sent Events decoder (WHATWG event-stream rules): CRLF / LF / CR line ends,
 * multi-line `data:`, comments (`:` keep-alives), `event:` and `id:` fields, a blank line dispatches.
 * Bytes arrive in arbitrary chunks — a UTF-8 sequence or a CRLF may be split across two — so the
 * decoder keeps its partial state between pushes.
 *
 * It is bounded: a single event (or an unterminated line) larger than `maxEventChars` is reported
 * instead of buffered, so a broken or hostile server cannot make us hold an unbounded string.
 *
 * @internal
 */

/** One dispatched event. `event` defaults to `message` as the spec says. */
export interface SseEvent {
  readonly event: string
  readonly data: string
  readonly id?: string
}

/** Returned by {@link SseDecoder.push} when the current event outgrew the bound. */
export const EVENT_TOO_LARGE: unique symbol = Symbol.for("effect-llm-resilience/sse/EventTooLarge")

const LF = 10
const CR = 13

export class SseDecoder {
  private readonly decoder = new TextDecoder("utf-8")
  private partialLine = ""
  private dataLines: Array<string> = []
  private eventType = ""
  private lastId: string | undefined = undefined
  private eventChars = 0
  private afterCR = false

  constructor(readonly maxEventChars: number) {}

  /** Feeds bytes; returns the events completed by them (often none), or {@link EVENT_TOO_LARGE}. */
  push(chunk: Uint8Array): Array<SseEvent> | typeof EVENT_TOO_LARGE {
    return this.pushText(this.decoder.decode(chunk, { stream: true }))
  }

  /** Feeds already-decoded text (used by tests and by `push`). */
  pushText(text: string): Array<SseEvent> | typeof EVENT_TOO_LARGE {
    const out: Array<SseEvent> = []
    let start = 0
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (c !== LF && c !== CR) continue
      if (c === LF && this.afterCR && i === start) {
        // The LF of a CRLF whose CR ended the previous line (possibly in the previous chunk).
        this.afterCR = false
        start = i + 1
        continue
      }
      const line = this.partialLine.length > 0 ? this.partialLine + text.slice(start, i) : text.slice(start, i)
      this.partialLine = ""
      this.afterCR = c === CR
      start = i + 1
      if (!this.processLine(line, out)) return EVENT_TOO_LARGE
    }
    if (start < text.length) {
      this.afterCR = false
      this.partialLine += text.slice(start)
      if (this.partialLine.length + this.eventChars > this.maxEventChars) return EVENT_TOO_LARGE
    }
    return out
  }

  /**
   * Flushes the decoder at end of input. Per the spec an event not closed by a blank line is
   * discarded — a stream cut mid-event delivers nothing of that event.
   */
  end(): void {
    this.decoder.decode()
    this.partialLine = ""
    this.resetEvent()
  }

  private resetEvent(): void {
    this.dataLines = []
    this.eventType = ""
    this.eventChars = 0
  }

  /** Returns false when the event outgrew the bound. */
  private processLine(line: string, out: Array<SseEvent>): boolean {
    if (line.length === 0) {
      if (this.dataLines.length > 0) {
        const data = this.dataLines.length === 1 ? this.dataLines[0]! : this.dataLines.join("\n")
        out.push(
          this.lastId === undefined
            ? { event: this.eventType || "message", data }
            : { event: this.eventType || "message", data, id: this.lastId }
        )
      }
      this.resetEvent()
      return true
    }
    if (line.charCodeAt(0) === 58 /* ':' comment / keep-alive */) return true
    const colon = line.indexOf(":")
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? "" : line.slice(colon + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    switch (field) {
      case "data":
        this.dataLines.push(value)
        this.eventChars += value.length + 1
        return this.eventChars <= this.maxEventChars
      case "event":
        this.eventType = value
        return true
      case "id":
        if (!value.includes("\u0000")) this.lastId = value
        return true
      default:
        // `retry:` and unknown fields are ignored, as the spec says.
        return true
    }
  }
}

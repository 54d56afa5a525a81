import { describe, expect, it } from "vitest"
import { EVENT_TOO_LARGE, SseDecoder, type SseEvent } from "../../src/internal/sse.js"

const all = (decoder: SseDecoder, parts: ReadonlyArray<string | Uint8Array>): Array<SseEvent> => {
  const out: Array<SseEvent> = []
  for (const part of parts) {
    const events = typeof part === "string" ? decoder.pushText(part) : decoder.push(part)
    if (events === EVENT_TOO_LARGE) throw new Error("too large")
    out.push(...events)
  }
  return out
}

describe("SseDecoder", () => {
  it("decodes data events, named events and ignores comments", () => {
    const events = all(new SseDecoder(1024), [": keep-alive\n\nevent: ping\ndata: {}\n\ndata: a\ndata: b\n\n"])
    expect(events).toEqual([{ event: "ping", data: "{}" }, { event: "message", data: "a\nb" }])
  })

  it("handles CRLF split across chunks and CR-only line ends", () => {
    const events = all(new SseDecoder(1024), ["data: x\r", "\n\r", "\ndata: y\r\rdata: z\n\n"])
    expect(events).toEqual([{ event: "message", data: "x" }, { event: "message", data: "y" }, { event: "message", data: "z" }])
  })

  it("handles a UTF-8 sequence split across byte chunks", () => {
    const bytes = new TextEncoder().encode("data: héllo ✓\n\n")
    const events = all(new SseDecoder(1024), [bytes.slice(0, 8), bytes.slice(8, 15), bytes.slice(15)])
    expect(events).toEqual([{ event: "message", data: "héllo ✓" }])
  })

  it("does not dispatch an event that was never closed by a blank line", () => {
    const decoder = new SseDecoder(1024)
    expect(all(decoder, ["data: partial"])).toEqual([])
    decoder.end()
  })

  it("reports an event that outgrows the bound, whether in one line or many", () => {
    expect(new SseDecoder(10).pushText("data: 0123456789abcdef\n")).toBe(EVENT_TOO_LARGE)
    const decoder = new SseDecoder(10)
    expect(decoder.pushText("data: 01234\n")).toEqual([])
    expect(decoder.pushText("data: 56789\n")).toBe(EVENT_TOO_LARGE)
    expect(new SseDecoder(10).pushText("data: 0123456789abcdef-with-no-newline")).toBe(EVENT_TOO_LARGE)
  })

  it("keeps the last event id", () => {
    expect(all(new SseDecoder(100), ["id: 7\ndata: a\n\n"])).toEqual([{ event: "message", data: "a", id: "7" }])
  })
})

/**
 * Pure pieces of the chaos server: time notations, delta splitting, the PRNG, latency draws, the token
 * bucket, the JSON error locator and request parsing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { parseGoDurationMs, parseResetInstantMs, parseRetryAfterMs } from "../../src/internal/headers.js"
import { Bucket } from "../../src/testing/internal/bucket.js"
import { capToMaxTokens, estimateTokens, prefixDeltas, splitDeltas } from "../../src/testing/internal/content.js"
import { sampleLatency } from "../../src/testing/internal/engine.js"
import { firstJsonError, lineColumn } from "../../src/testing/internal/jsonLocate.js"
import { Prng } from "../../src/testing/internal/prng.js"
import { parseChatRequest } from "../../src/testing/internal/request.js"
import { goDuration, httpDate, rfc3339 } from "../../src/testing/internal/timeFormat.js"

describe("time notations", () => {
  it("formats Go durations as OpenAI sends them", () => {
    const cases: ReadonlyArray<readonly [number, string]> = [
      [0, "0s"],
      [-5, "0s"],
      [0.0005, "500ns"],
      [0.06, "60µs"],
      [1.5, "1.5ms"],
      [12, "12ms"],
      [999, "999ms"],
      [1_000, "1s"],
      [1_500, "1.5s"],
      [59_999, "59.999s"],
      [60_000, "1m0s"],
      [61_500, "1m1.5s"],
      [360_000, "6m0s"],
      [3_600_000, "1h0m0s"],
      [3_723_004, "1h2m3.004s"]
    ]
    for (const [ms, text] of cases) expect(goDuration(ms), String(ms)).toBe(text)
  })

  it("round-trips through the library's own header parsers", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 10_000_000 }), (ms) => {
      expect(parseGoDurationMs(goDuration(ms))).toBeCloseTo(ms, 6)
    }))
    const now = Date.UTC(2025, 0, 1, 12, 0, 0)
    expect(parseRetryAfterMs({ "retry-after": httpDate(now + 30_000) }, now)).toBe(30_000)
    expect(parseResetInstantMs(rfc3339(now + 1_200), now)).toBe(2_000) // rounded up to the second
  })

  it("HTTP-date and RFC 3339 formats", () => {
    expect(httpDate(Date.UTC(2015, 9, 21, 7, 28, 0))).toBe("Wed, 21 Oct 2015 07:28:00 GMT")
    expect(rfc3339(Date.UTC(2024, 9, 22, 12, 0, 5, 1))).toBe("2024-10-22T12:00:06Z")
    expect(rfc3339(0)).toBe("1970-01-01T00:00:00Z")
  })
})

describe("content", () => {
  it("deltas join back to the text, are at most 16 code points, and exist for any non-empty text", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 300 }), (text) => {
      const deltas = splitDeltas(text)
      expect(deltas.join("")).toBe(text)
      for (const d of deltas) {
        expect(d).not.toBe("")
        expect(Array.from(d).length).toBeLessThanOrEqual(16)
      }
      expect(deltas.length > 0).toBe(text.length > 0)
    }))
    expect(splitDeltas("Hello there, world!")).toEqual(["Hello", " there,", " world!"])
  })

  it("prefixes, token estimate and max_tokens cap", () => {
    const deltas = splitDeltas("one two three four")
    expect(prefixDeltas(deltas, 0.5).join("")).toBe("one two")
    expect(prefixDeltas(deltas, 0.01).join("")).toBe("one")
    expect(prefixDeltas(deltas, 0)).toEqual([])
    expect(estimateTokens("")).toBe(0)
    expect(estimateTokens("abcde")).toBe(2)
    expect(capToMaxTokens("x".repeat(10), 2)).toEqual({ text: "x".repeat(8), capped: true })
    expect(capToMaxTokens("x".repeat(8), 2)).toEqual({ text: "x".repeat(8), capped: false })
  })
})

describe("PRNG and latency", () => {
  it("is deterministic per seed and stream, and uniform enough", () => {
    const draw = (seed: number, stream: string) => {
      const rng = new Prng(seed, stream)
      return Array.from({ length: 1_000 }, () => rng.next())
    }
    const a = draw(42, "x")
    expect(draw(42, "x")).toEqual(a)
    expect(draw(43, "x")).not.toEqual(a)
    expect(draw(42, "y")).not.toEqual(a)
    expect(a.every((u) => u >= 0 && u < 1)).toBe(true)
    const mean = a.reduce((s, u) => s + u, 0) / a.length
    expect(mean).toBeGreaterThan(0.45)
    expect(mean).toBeLessThan(0.55)
    expect(new Prng(1).hex(16)).toMatch(/^[0-9a-f]{32}$/)
  })

  it("latency draws follow their distribution", () => {
    const rng = new Prng(7)
    expect(sampleLatency(undefined, rng)).toBe(0)
    expect(sampleLatency({ kind: "fixed", ms: 30 }, rng)).toBe(30)
    const uniform = Array.from({ length: 500 }, () => sampleLatency({ kind: "uniform", minMs: 10, maxMs: 20 }, rng))
    expect(Math.min(...uniform)).toBeGreaterThanOrEqual(10)
    expect(Math.max(...uniform)).toBeLessThanOrEqual(20)
    const logn = Array.from({ length: 2_001 }, () => sampleLatency({ kind: "lognormal", medianMs: 100, sigma: 0.5 }, rng))
    const median = [...logn].sort((x, y) => x - y)[1_000] ?? 0
    expect(median).toBeGreaterThan(90)
    expect(median).toBeLessThan(110)
    const capped = Array.from({ length: 500 }, () => sampleLatency({ kind: "lognormal", medianMs: 100, sigma: 2, maxMs: 150 }, rng))
    expect(Math.max(...capped)).toBe(150)
  })
})

describe("token bucket", () => {
  it("refills continuously and says how long to wait", () => {
    const bucket = new Bucket(60, 0) // one per second
    bucket.take(60)
    expect(bucket.remaining).toBe(0)
    expect(bucket.msUntil(1)).toBeCloseTo(1_000)
    expect(bucket.msUntilFull).toBeCloseTo(60_000)
    bucket.refill(500)
    expect(bucket.msUntil(1)).toBeCloseTo(500)
    bucket.refill(120_000)
    expect(bucket.remaining).toBe(60)
    expect(bucket.msUntil(61)).toBe(Number.POSITIVE_INFINITY)
    bucket.refill(100) // time going backwards is ignored
    expect(bucket.remaining).toBe(60)
  })
})

describe("JSON error locator", () => {
  it("agrees with JSON.parse on validity and points at the first bad character", () => {
    fc.assert(fc.property(fc.json(), (json) => {
      expect(firstJsonError(json)).toBeUndefined()
    }))
    const cases: ReadonlyArray<readonly [string, number]> = [
      ["{\"a\": }", 6],
      ["[1, 2,]", 6],
      ["{\"a\" 1}", 5],
      ["tru", 0],
      ["{} x", 3],
      ["\"abc", 4],
      ["", 0]
    ]
    for (const [text, offset] of cases) {
      expect(() => JSON.parse(text)).toThrow()
      expect(firstJsonError(text)?.offset, text).toBe(offset)
    }
    expect(lineColumn("a\nbc\nd", 4)).toEqual({ line: 2, column: 3 })
  })
})

describe("request parsing", () => {
  it("reads model, stream flags, max tokens and text from both formats", () => {
    const openai = parseChatRequest("openai", JSON.stringify({
      model: "m",
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: 9,
      messages: [
        { role: "system", content: "sys" },
        { role: "user", content: [{ type: "text", text: "hi" }, { type: "image_url", image_url: { url: "https://example.com/a.png" } }] }
      ]
    }))
    expect(openai).toEqual({
      _tag: "Right",
      request: {
        api: "openai",
        model: "m",
        stream: true,
        includeUsage: true,
        maxTokens: 9,
        promptText: "sys\nhi",
        lastUserText: "hi",
        media: [{ kind: "image", mediaType: null, source: "url", bytes: null }],
        mediaTokens: 1600
      }
    })
    // An image part without its URL is the 400 OpenAI sends.
    expect(parseChatRequest("openai", JSON.stringify({ model: "m", messages: [{ role: "user", content: [{ type: "image_url" }] }] }))).toEqual({
      _tag: "Left",
      problem: {
        message: "Missing required parameter: 'messages[0].content[0].image_url.url'.",
        param: "messages[0].content[0].image_url.url",
        code: "missing_required_parameter"
      }
    })
    const anthropic = parseChatRequest("anthropic", JSON.stringify({
      model: "c",
      max_tokens: 5,
      system: [{ type: "text", text: "sys" }],
      messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }]
    }))
    expect(anthropic._tag === "Right" && anthropic.request).toMatchObject({ promptText: "sys\nq\na", lastUserText: "q", stream: false })
    expect(parseChatRequest("anthropic", JSON.stringify({ model: "c", messages: [] }))).toMatchObject({
      _tag: "Left",
      problem: { message: "max_tokens: Field required" }
    })
    expect(parseChatRequest("openai", "[]")._tag).toBe("Left")
    expect(parseChatRequest("openai", JSON.stringify({ messages: [] }))._tag).toBe("Left")
  })
})

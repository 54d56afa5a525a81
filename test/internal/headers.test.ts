import { describe, expect, it } from "vitest"
import {
  parseGoDurationMs,
  parseRateLimit,
  parseResetInstantMs,
  parseRetryAfterMs,
  parseShouldRetry
} from "../../src/internal/headers.js"

const NOW = Date.parse("2026-11-22T12:00:00Z")

describe("Go durations (x-ratelimit-reset-*)", () => {
  it.each([
    ["1s", 1000],
    ["6m0s", 360_000],
    ["12ms", 12],
    ["1.5s", 1500],
    ["1h2m3.5s", 3_723_500],
    ["250us", 0.25],
    ["0", 0],
    ["20", 20_000]
  ])("%s → %d ms", (text, ms) => {
    expect(parseGoDurationMs(text)).toBeCloseTo(ms, 6)
  })

  it.each(["", "abc", "1x", "-1s", "s", "1s2", "1.2.3s", "NaN"])("garbage %j → undefined", (text) => {
    expect(parseGoDurationMs(text)).toBeUndefined()
  })
})

describe("Retry-After", () => {
  it("retry-after-ms (float) wins over retry-after", () => {
    expect(parseRetryAfterMs({ "retry-after-ms": "1500.5", "retry-after": "30" }, NOW)).toBe(1500.5)
  })
  it("retry-after in seconds", () => {
    expect(parseRetryAfterMs({ "retry-after": "30" }, NOW)).toBe(30_000)
  })
  it("retry-after as an HTTP-date, measured against now", () => {
    expect(parseRetryAfterMs({ "retry-after": "Sun, 22 Nov 2026 12:00:45 GMT" }, NOW)).toBe(45_000)
  })
  it("an HTTP-date in the past means retry now", () => {
    expect(parseRetryAfterMs({ "retry-after": "Sun, 22 Nov 2026 11:00:00 GMT" }, NOW)).toBe(0)
  })
  it.each([{ "retry-after": "soon" }, { "retry-after": "-5" }, { "retry-after-ms": "abc" }, { "retry-after": "" }, {}])(
    "garbage %j is ignored",
    (headers) => {
      expect(parseRetryAfterMs(headers, NOW)).toBeUndefined()
    }
  )
  it("a garbage retry-after-ms falls back to retry-after", () => {
    expect(parseRetryAfterMs({ "retry-after-ms": "x", "retry-after": "2" }, NOW)).toBe(2000)
  })
})

describe("x-should-retry", () => {
  it.each([["true", true], ["false", false], ["TRUE", true], ["maybe", undefined]] as const)("%s", (value, expected) => {
    expect(parseShouldRetry({ "x-should-retry": value })).toBe(expected)
  })
})

describe("rate-limit snapshot", () => {
  it("reads OpenAI headers", () => {
    const snapshot = parseRateLimit({
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": "499",
      "x-ratelimit-reset-requests": "120ms",
      "x-ratelimit-limit-tokens": "30000",
      "x-ratelimit-remaining-tokens": "29000",
      "x-ratelimit-reset-tokens": "6m0s"
    }, NOW)
    expect(snapshot).toEqual({
      requests: { limit: 500, remaining: 499, resetAfterMs: 120 },
      tokens: { limit: 30000, remaining: 29000, resetAfterMs: 360_000 },
      observedAt: NOW
    })
  })
  it("reads Anthropic headers with RFC 3339 resets", () => {
    const snapshot = parseRateLimit({
      "anthropic-ratelimit-requests-limit": "50",
      "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": "2026-11-22T12:00:07Z",
      "anthropic-ratelimit-input-tokens-limit": "40000",
      "anthropic-ratelimit-input-tokens-remaining": "39000",
      "anthropic-ratelimit-input-tokens-reset": "2026-11-22T12:00:01.5Z",
      "retry-after": "7"
    }, NOW)
    expect(snapshot).toEqual({
      requests: { limit: 50, remaining: 0, resetAfterMs: 7000 },
      inputTokens: { limit: 40000, remaining: 39000, resetAfterMs: 1500 },
      retryAfterMs: 7000,
      observedAt: NOW
    })
  })
  it("is undefined without rate-limit headers and ignores garbage values", () => {
    expect(parseRateLimit({ "content-type": "application/json" }, NOW)).toBeUndefined()
    expect(parseRateLimit({ "x-ratelimit-limit-requests": "lots", "anthropic-ratelimit-tokens-reset": "tomorrow" }, NOW))
      .toBeUndefined()
  })
  it("RFC 3339 parser rejects non-instants", () => {
    expect(parseResetInstantMs("12345", NOW)).toBeUndefined()
    expect(parseResetInstantMs("2026-11-22T12:00:10+00:00", NOW)).toBe(10_000)
  })
})

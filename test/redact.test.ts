import { describe, expect, it } from "vitest"
import { redact, redactAndTruncate } from "../src/internal/redact.js"

describe("redaction", () => {
  it("masks configured secrets and key-shaped tokens", () => {
    const text = "Incorrect API key provided: sk-proj-abcdef123456. Also my-secret-value and Bearer abc.def.ghi.jkl"
    const out = redact(text, ["my-secret-value"])
    expect(out).not.toContain("sk-proj-abcdef123456")
    expect(out).not.toContain("my-secret-value")
    expect(out).not.toContain("abc.def.ghi.jkl")
    expect(out).toContain("Incorrect API key provided")
  })
  it("masks api-key fields in echoed JSON", () => {
    expect(redact('{"x-api-key":"anthropic-key-123"}')).toBe('{"x-api-key":"<redacted>"}')
  })
  it("truncates to the bound and says how much was cut", () => {
    const out = redactAndTruncate("a".repeat(3000), [], 100)
    expect(out.startsWith("a".repeat(100))).toBe(true)
    expect(out).toContain("2900 more chars")
  })
})

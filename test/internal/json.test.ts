/**
 * The one door provider JSON comes in through: depth bound, secret scrubbing (literal and behind JSON
 * escapes), and its shortcut (no walk when the text proves there is nothing to find) checked against a
 * plain recursive reference on random input.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { MAX_JSON_DEPTH, parseUntrusted, safeStringify } from "../../src/internal/json.js"

const SECRET = "sk-json-door-0123456789"

/** The reference: parse, then scrub recursively (fine for the shallow values generated here). */
const reference = (text: string, secrets: ReadonlyArray<string>): unknown => {
  const scrub = (s: string) => secrets.reduce((out, secret) => out.split(secret).join("<redacted>"), s)
  const walk = (v: unknown): unknown =>
    typeof v === "string" ? scrub(v) :
      Array.isArray(v) ? v.map(walk) :
      typeof v === "object" && v !== null ? Object.fromEntries(Object.entries(v).map(([k, x]) => [scrub(k), walk(x)])) :
      v
  return walk(JSON.parse(text))
}

/** JSON text of `value` with every non-ASCII-letter character of `secret` spelled as a `\u` escape. */
const escaped = (secret: string) => secret.replace(/[ks]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

describe("parseUntrusted", () => {
  it("accepts nesting up to the bound and refuses one level more, however deep", () => {
    const nest = (d: number) => "[".repeat(d) + "]".repeat(d)
    expect(parseUntrusted(nest(MAX_JSON_DEPTH))._tag).toBe("Json")
    expect(parseUntrusted(nest(MAX_JSON_DEPTH + 1))._tag).toBe("TooDeep")
    expect(parseUntrusted(nest(1_000_000))._tag).toBe("TooDeep")
    // Brackets inside strings are not nesting.
    expect(parseUntrusted(JSON.stringify({ text: "[".repeat(10_000) }))._tag).toBe("Json")
    expect(parseUntrusted("{not json")._tag).toBe("NotJson")
  })

  it("scrubs a secret from strings and keys, also when JSON escapes spell it", () => {
    const text = `{"id":"${SECRET}","nested":[{"m":"key ${escaped(SECRET)} echoed"}],"${SECRET}":1}`
    const parsed = parseUntrusted(text, [SECRET])
    expect(parsed._tag === "Json" && parsed.scrubbed).toBe(true)
    const out = parsed._tag === "Json" ? JSON.stringify(parsed.value) : ""
    expect(out).not.toContain(SECRET)
    expect(out).toContain("key <redacted> echoed")
    expect(parseUntrusted(`"${escaped(SECRET)}"`, [SECRET])).toEqual({ _tag: "Json", value: "<redacted>", scrubbed: true })
  })

  it("its shortcut equals the full walk on random values with secrets planted (some escaped)", () => {
    const plant = fc.oneof(fc.constant(SECRET), fc.constant(escaped(SECRET)), fc.string({ maxLength: 8 }))
    const text = fc.tuple(fc.json({ maxDepth: 4 }), fc.array(plant, { maxLength: 3 })).map(([json, plants]) =>
      `{"body":${json},"planted":[${plants.map((p) => `"${p.replace(/["\\]/g, "")}"`).join(",")}],"${plants[0]?.replace(/["\\]/g, "") ?? "k"}":0}`
    )
    fc.assert(
      fc.property(text, fc.boolean(), (t, withSecret) => {
        const secrets = withSecret ? [SECRET] : []
        const parsed = parseUntrusted(t, secrets)
        expect(parsed._tag).toBe("Json")
        if (parsed._tag === "Json") expect(parsed.value).toEqual(reference(t, secrets))
      }),
      { numRuns: 500, seed: 20261206 }
    )
  })

  it("safeStringify never throws", () => {
    let deep: unknown = 0
    for (let i = 0; i < 20_000; i++) deep = [deep]
    expect(safeStringify(deep)).toContain("unserialisable")
    expect(safeStringify({ a: 1 })).toBe("{\"a\":1}")
    expect(safeStringify(10n)).toContain("unserialisable")
  })
})

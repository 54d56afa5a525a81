/**
 * `streamObject`'s previews are incremental: however an answer's text is cut into deltas, each
 * preview is the one its whole prefix gives in one piece, and the last one is the answer.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { JsonPrefix } from "../../src/chain/partialJson.js"

const wholePreview = (text: string) => {
  const prefix = new JsonPrefix()
  prefix.push(text)
  return prefix.preview()
}

/** A JSON answer as models write it: maybe fenced, maybe indented, with strings that need escapes. */
const answer = fc.tuple(
  fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.array(fc.jsonValue())),
  fc.constantFrom("", "```json\n", "Here it is: "),
  fc.constantFrom(undefined, 2)
).map(([value, lead, indent]) => ({ value, text: lead + JSON.stringify(value, null, indent) }))

describe("JsonPrefix", () => {
  it("fed in any cuts, every preview equals the whole prefix's in one piece, and the last is the answer", () =>
    fc.assert(
      fc.property(answer, fc.array(fc.nat(), { maxLength: 12 }), ({ text, value }, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
        const prefix = new JsonPrefix()
        let at = 0
        for (const point of [...points, text.length]) {
          prefix.push(text.slice(at, point))
          at = point
          expect(prefix.preview()?.source).toBe(wholePreview(text.slice(0, point))?.source)
        }
        expect(prefix.preview()?.value).toEqual(JSON.parse(JSON.stringify(value)))
      }),
      { numRuns: 300 }
    ))

  it("closes open strings, arrays and objects, and cuts a dangling key back", () => {
    const prefix = new JsonPrefix()
    prefix.push('```json\n{"items":[{"name":"a"},{"name":"b')
    expect(prefix.preview()?.value).toEqual({ items: [{ name: "a" }, { name: "b" }] })
    prefix.push('"},{"na')
    // The dangling key is cut back to the last complete point: the third item is open and empty.
    expect(prefix.preview()?.value).toEqual({ items: [{ name: "a" }, { name: "b" }, {}] })
    prefix.push('me":"c"}]}')
    expect(prefix.preview()?.value).toEqual({ items: [{ name: "a" }, { name: "b" }, { name: "c" }] })
  })

  it("shows nothing before the JSON starts", () => {
    const prefix = new JsonPrefix()
    prefix.push("Sure, ")
    expect(prefix.preview()).toBeUndefined()
  })
})

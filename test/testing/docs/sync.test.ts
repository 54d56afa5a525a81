/**
 * docs/testing.md shows complete test files; this keeps them identical to the files in this folder,
 * which vitest runs — so every example in the guide is a passing test.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const guide = readFileSync(`${root}docs/testing.md`, "utf8")
const blocks = [...guide.matchAll(/```\w+ file=(\S+)\n([\s\S]*?)\n```/g)].map((m) => ({ path: m[1]!, text: m[2]! }))

describe("docs/testing.md", () => {
  it("embeds every example file of test/testing/docs verbatim", () => {
    const examples = readdirSync(fileURLToPath(new URL(".", import.meta.url)))
      .filter((name) => name !== "sync.test.ts")
      .map((name) => `test/testing/docs/${name}`)
    expect(blocks.map((b) => b.path).sort()).toEqual(examples.sort())
    for (const block of blocks) {
      expect(block.text, block.path).toBe(readFileSync(`${root}${block.path}`, "utf8").replace(/\n$/, ""))
    }
  })
})

/**
 * The README stays true: its quickstart is the typechecked examples/quickstart.ts, and CI runs exactly
 * the test command the README gives.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")

describe("README", () => {
  it("shows examples/quickstart.ts verbatim as its quickstart", () => {
    const section = readme.slice(readme.indexOf("## Quickstart"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    expect(block).toBe(fs.readFileSync(path.join(root, "examples/quickstart.ts"), "utf8"))
  })

  it("gives the test command that .ci/run runs", () => {
    expect(readme).toContain("npm ci && npm test")
    const lines = fs.readFileSync(path.join(root, ".ci/run"), "utf8").trim().split("\n")
    expect(lines.at(-1)).toBe("npm ci && npm test")
  })

  it("links only to files that exist", () => {
    for (const [, target] of readme.matchAll(/\]\(((?:docs|examples)\/[^)#]+)/g)) {
      expect(fs.existsSync(path.join(root, target!)), target).toBe(true)
    }
  })
})

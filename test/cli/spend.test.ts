/**
 * `llm-resilience call` with the config file's `prices` and `spend`: the real executable, spawned,
 * against a ChaosServer. With prices the answer carries its cost (`costUsd` in `--json`, `$…` on
 * stderr); a budget that cannot fit the call refuses it before it is sent (exit 1, `BudgetExceeded`,
 * and the server never sees a request).
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { onlyJson, runCli, startServer, tempDir } from "./helpers.js"

let chaos: Awaited<ReturnType<typeof startServer>>
let dir: string

beforeAll(async () => {
  chaos = await startServer({ routes: [{ name: "priced", model: "gpt-priced" }, { name: "refused", model: "gpt-refused" }] })
  dir = tempDir("spend")
})

afterAll(async () => {
  await chaos.close()
})

const config = (name: string, lines: ReadonlyArray<string>) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, [...lines, ""].join("\n"))
  return file
}

const call = (model: string, file: string, ...extra: Array<string>) => [
  "call",
  "--no-auth",
  "--provider",
  "openai",
  "--base-url",
  chaos.server.openAiBaseUrl,
  "--model",
  model,
  "--prompt",
  "What is six times seven?",
  "--max-tokens",
  "100",
  "--config",
  file,
  ...extra
]

const served = (route: string) => Effect.runPromise(Effect.map(chaos.server.stats, (stats) => stats.byRoute[route] ?? 0))

describe("call with prices and a spend budget", () => {
  it("prices: the answer's cost in --json and on stderr", async () => {
    const file = config("prices.yaml", ["prices:", "  gpt-priced*: { inputPerMTok: 2, outputPerMTok: 8 }"])
    const run = await runCli(call("gpt-priced", file, "--json"))
    expect(run.code, run.stderr).toBe(0)
    const out = onlyJson(run.stdout) as { readonly ok: boolean; readonly costUsd?: number }
    expect(out.ok).toBe(true)
    expect(out.costUsd).toBeGreaterThan(0)
    const human = await runCli(call("gpt-priced", file))
    expect(human.code, human.stderr).toBe(0)
    expect(human.stderr).toMatch(/tokens, \$0\.0\d+\n/)
  })

  it("a budget that cannot fit the call: refused before sending, exit 1, BudgetExceeded", async () => {
    const file = config("tight.yaml", [
      "prices:",
      "  gpt-refused: { inputPerMTok: 2, outputPerMTok: 8 }",
      "spend: { maxCostUsd: 0.0001 }"
    ])
    const run = await runCli(call("gpt-refused", file, "--json"))
    expect(run.code, run.stderr).toBe(1)
    const out = onlyJson(run.stdout) as {
      readonly ok: boolean
      readonly error: { readonly _tag: string; readonly action: string }
      readonly attempts: ReadonlyArray<{ readonly outcome: string }>
    }
    expect(out.ok).toBe(false)
    expect(out.error).toMatchObject({ _tag: "BudgetExceeded", action: "stop" })
    expect(out.attempts.map((a) => a.outcome)).toEqual(["BudgetExceeded"])
    expect(await served("refused")).toBe(0)
    const human = await runCli(call("gpt-refused", file))
    expect(human.code).toBe(1)
    expect(human.stderr).toContain(`BudgetExceeded (stop): spend budget "config spend" cannot fit this attempt`)
    expect(human.stderr).toContain("chain: budget")
  })
})

/**
 * docs/policies.md and docs/policies/circuit-breaker.md stay true: every default in the table is the
 * one the code uses, and every runnable example runs and prints what its comments say.
 */
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import * as Hedge from "../src/Hedge.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as Retry from "../src/Retry.js"
import * as RetryBudget from "../src/RetryBudget.js"
import * as Timeouts from "../src/Timeouts.js"

const policies = readFileSync(join("docs", "policies.md"), "utf8")
const breakerDoc = readFileSync(join("docs", "policies", "circuit-breaker.md"), "utf8")

/** "30 s", "500 ms", "10 min" — how the table writes durations. */
const duration = (ms: number): string =>
  ms % 60_000 === 0 && ms >= 600_000 ? `${ms / 60_000} min` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`

/** The default cell of the table row whose first two cells are `policy` and `option`. */
const defaultOf = (policy: string, option: string): string | undefined => {
  for (const line of policies.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim())
    if (cells[1] === policy && cells[2]?.startsWith(option)) return cells[3]
  }
  return undefined
}

describe("docs/policies.md — every default in one table", () => {
  it("matches the code's defaults", () => {
    const rows: ReadonlyArray<readonly [string, string, string]> = [
      ["Retry", "`maxAttempts`", String(Retry.defaults.maxAttempts)],
      ["Retry", "`base` / `cap`", `${duration(Retry.defaults.baseMs)} / ${duration(Retry.defaults.capMs)}`],
      ["Retry", "`maxRetryAfter`", duration(Retry.defaults.maxRetryAfterMs)],
      ["Retry", "`rerouteRetries`", String(Retry.defaults.rerouteRetries)],
      ["Retry", "`hasAlternative`", String(Retry.defaults.hasAlternative)],
      ["Retry", "`idempotencyKey`", String(Retry.defaults.idempotencyKey)],
      ["RetryBudget", "`ratio`", `${RetryBudget.defaults.ratio} / ${RetryBudget.defaults.minPerSecond} / ${duration(RetryBudget.defaults.windowMs)}`],
      ["Timeouts", "`headers`", duration(Timeouts.defaults.headers)],
      ["Timeouts", "`firstToken`", duration(Timeouts.defaults.firstToken)],
      ["Timeouts", "`idle`", duration(Timeouts.defaults.idle)],
      ["Timeouts", "`attempt`", duration(Timeouts.defaults.attempt)],
      ["CircuitBreaker", "`consecutiveFailures`", String(CircuitBreaker.defaults.consecutiveFailures)],
      [
        "CircuitBreaker",
        "`failureRate`",
        `${CircuitBreaker.defaults.failureRate} / ${CircuitBreaker.defaults.minimumThroughput} calls / ${duration(CircuitBreaker.defaults.windowMs)}`
      ],
      [
        "CircuitBreaker",
        "`openDuration`",
        `${duration(CircuitBreaker.defaults.openDurationMs)} / ×${CircuitBreaker.defaults.backoffFactor} / ${duration(CircuitBreaker.defaults.maxOpenDurationMs)}`
      ],
      [
        "CircuitBreaker",
        "`honourRetryAfter`",
        `${CircuitBreaker.defaults.honourRetryAfter} / ${CircuitBreaker.defaults.halfOpenProbes} / ${CircuitBreaker.defaults.countRateLimited}`
      ],
      ["Hedge", "`percentile`", `${Hedge.defaults.percentile} / last ${Hedge.defaults.samples} / ${Hedge.defaults.minSamples}`],
      ["Hedge", "`initialDelay`", `${duration(Hedge.defaults.initialDelayMs)} / ${duration(Hedge.defaults.minDelayMs)} / ${duration(Hedge.defaults.maxDelayMs)}`]
    ]
    for (const [policy, option, expected] of rows) {
      expect(defaultOf(policy, option), `${policy} ${option}`).toMatch(new RegExp(`^${expected.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`))
    }
    expect(defaultOf("RateLimiter", "`maxQueue`")).toMatch(
      new RegExp(`^${RateLimiter.defaults.maxQueue} / ${duration(RateLimiter.defaults.maxWaitMs)} / ${RateLimiter.defaults.learnFromHeaders}`)
    )
  })

  it("circuit-breaker.md lists every option with the code's default", () => {
    const table = (option: string) => breakerDoc.split("\n").find((line) => line.startsWith(`| \`${option}\` |`))?.split("|")[2]?.trim()
    expect(table("consecutiveFailures")).toBe(String(CircuitBreaker.defaults.consecutiveFailures))
    expect(table("failureRate")).toBe(String(CircuitBreaker.defaults.failureRate))
    expect(table("minimumThroughput")).toBe(String(CircuitBreaker.defaults.minimumThroughput))
    expect(table("window")).toBe(`${CircuitBreaker.defaults.windowMs / 1000} seconds`)
    expect(table("openDuration")).toBe(`${CircuitBreaker.defaults.openDurationMs / 1000} seconds`)
    expect(table("backoffFactor")).toBe(String(CircuitBreaker.defaults.backoffFactor))
    expect(table("maxOpenDuration")).toBe(`${CircuitBreaker.defaults.maxOpenDurationMs / 1000} seconds`)
    expect(table("honourRetryAfter")).toBe(`\`${CircuitBreaker.defaults.honourRetryAfter}\``)
    expect(table("halfOpenProbes")).toBe(String(CircuitBreaker.defaults.halfOpenProbes))
    expect(table("countRateLimited")).toBe(`\`${CircuitBreaker.defaults.countRateLimited}\``)
    for (const option of ["isFailure", "healthProbe"]) expect(table(option), option).toBeDefined()
  })
})

/** The TypeScript examples of a Markdown document, each under the `##` heading it belongs to. */
const examples = (markdown: string): ReadonlyArray<{ readonly section: string; readonly code: string }> => {
  const found: Array<{ section: string; code: string }> = []
  let section = ""
  const lines = markdown.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.startsWith("## ")) section = line.slice(3)
    if (line !== "```ts") continue
    const end = lines.indexOf("```", i + 1)
    found.push({ section, code: lines.slice(i + 1, end).join("\n") })
    i = end
  }
  return found
}

const tsxCli = createRequire(import.meta.url).resolve("tsx/cli")

/** Runs an example as a program (imports resolve to this package), returning what it printed. */
const run = (code: string): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(process.execPath, [tsxCli, "-e", code], { timeout: 60_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout))
  })

/**
 * All examples as one program (one process start instead of one per example): their imports merged,
 * each body in its own function scope, run in order, each output after a marker line.
 */
const program = (blocks: ReadonlyArray<{ readonly section: string; readonly code: string }>): string => {
  const imports = new Map<string, Set<string>>()
  const bodies = blocks.map(({ code, section }) => {
    const body: Array<string> = []
    for (const line of code.split("\n")) {
      const match = /^import \{ (.+) \} from "(.+)"$/.exec(line)
      if (match === null) {
        body.push(line.replace(/^Effect\.runPromise\(/, "await Effect.runPromise(").replace(/^export /, ""))
        continue
      }
      const names = imports.get(match[2]!) ?? new Set<string>()
      for (const name of match[1]!.split(",")) names.add(name.trim())
      imports.set(match[2]!, names)
    }
    return `console.log(${JSON.stringify(`=== ${section}`)})\nawait (async () => {\n${body.join("\n")}\n})()`
  })
  const header = [...imports].map(([module, names]) => `import { ${[...names].join(", ")} } from "${module}"`)
  return `${header.join("\n")}\n;(async () => {\n${bodies.join("\n")}\n})()`
}

/** What each example printed, by section. */
const outputsOf = (stdout: string): Map<string, string> => {
  const outputs = new Map<string, string>()
  for (const part of stdout.split("=== ").slice(1)) {
    const newline = part.indexOf("\n")
    outputs.set(part.slice(0, newline), part.slice(newline + 1))
  }
  return outputs
}

describe("docs — the examples run", () => {
  // The `Policy` example needs an OpenAI key; every other example is self-contained.
  const expected: Record<string, ReadonlyArray<string>> = {
    Retry: ["done [ 0, 30000 ]"],
    RetryBudget: ["1300 1000"],
    Timeouts: ["Timeout first-token"],
    Deadline: ["DeadlineExceeded"],
    CircuitBreaker: ["'CircuitOpen'", "] 3", "open"],
    RateLimiter: ["RateLimited"],
    Hedge: ["hedged"],
    Example: ["CircuitOpen 5000", "hello closed", "'half-open→closed (probes succeeded)'"]
  }

  it("every self-contained example of docs/policies.md and docs/policies/circuit-breaker.md prints what it says", async () => {
    const runnable = [
      ...examples(policies).filter((example) => example.code.includes("effect-llm-resilience/testing")),
      examples(breakerDoc)[0]!
    ]
    expect(runnable.map((example) => example.section)).toEqual(Object.keys(expected))
    const outputs = outputsOf(await run(program(runnable)))
    for (const [section, texts] of Object.entries(expected)) {
      for (const text of texts) expect(outputs.get(section), section).toContain(text)
    }
  }, 90_000)
})

/**
 * The config file: decoding (JSON and YAML), precise messages (path, line, expected) and exit 2.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import * as ConfigFile from "../../src/cli/ConfigFile.js"
import { runCli, tempDir } from "./helpers.js"

let dir: string
beforeAll(() => {
  dir = tempDir("config")
})

const write = (name: string, text: string) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, text)
  return file
}

const load = (file: string) => Effect.runPromise(Effect.either(ConfigFile.load(file)).pipe(Effect.provide(NodeFileSystem.layer)))

const example = `# routes in fallback order
routes:
  - name: primary
    provider: openai
    model: gpt-4o-mini
    policy: fast
  - name: secondary
    provider: anthropic
    model: claude-haiku-4-5
    apiKeyEnv: ANTHROPIC_KEY_TEAM_B
    policy:
      retry: { maxAttempts: 2 }
  - name: local
    provider: openai-compatible
    model: llama3.1:8b
    baseUrl: http://127.0.0.1:11434/v1
    statusPage: false
policies:
  default:
    timeouts: { headers: 10 seconds, idle: 30000 }
    breaker: { consecutiveFailures: 3, openDuration: 10 seconds }
  fast:
    retry: { maxAttempts: 4, base: 200 millis, jitter: decorrelated }
    timeouts: false
deadline: 45 seconds
repairAttempts: 1
store: { kind: postgres, url: "postgres://app:s3cret@db:5432/agents" }
telemetry: { endpoint: "http://127.0.0.1:4318", serviceName: research-agent }
`

describe("config file", () => {
  it("decodes a full YAML example: durations, named and inline policies, a redacted store URL", async () => {
    const config = await load(write("ok.yaml", example))
    expect(config._tag).toBe("Right")
    if (config._tag !== "Right") return
    const c = config.right
    expect(c.routes?.map((r) => r.name)).toEqual(["primary", "secondary", "local"])
    expect(c.deadline !== undefined && Duration.toMillis(c.deadline)).toBe(45_000)
    // A named policy replaces the default; an inline one is merged over it, strategy by strategy.
    const primary = ConfigFile.policyOf(c, c.routes![0]!)
    expect(primary.timeouts).toBe(false)
    expect(primary.retry !== false && primary.retry?.maxAttempts).toBe(4)
    const secondary = ConfigFile.policyOf(c, c.routes![1]!)
    expect(secondary.retry !== false && secondary.retry?.maxAttempts).toBe(2)
    expect(secondary.breaker !== false && secondary.breaker?.consecutiveFailures).toBe(3)
    const timeouts = secondary.timeouts
    expect(timeouts !== false && timeouts?.idle !== undefined && Duration.toMillis(Duration.decode(timeouts.idle))).toBe(30_000)
    expect(c.store?.kind).toBe("postgres")
    if (c.store?.kind === "postgres") {
      expect(Redacted.value(c.store.url)).toContain("s3cret")
      expect(String(c.store.url)).not.toContain("s3cret")
    }
  })

  it("decodes the same config written as JSON", async () => {
    const file = write("ok.json", JSON.stringify({ routes: [{ name: "a", provider: "openai", model: "m" }], deadline: 5000 }))
    const config = await load(file)
    expect(config._tag).toBe("Right")
  })

  it("reports every problem with its path, line and what was expected", async () => {
    const config = await load(write("bad.yaml", [
      "routes:",
      "  - name: primary",
      "    provider: openia",
      "    model: gpt-4o-mini",
      "    timeout: 5",
      "    policy: slow",
      "  - name: primary",
      "    provider: openai-compatible",
      "    model: x",
      "policies:",
      "  default:",
      "    retry: { maxAttempts: 0, base: ten seconds }",
      ""
    ].join("\n")))
    expect(config._tag).toBe("Left")
    if (config._tag !== "Left") return
    const message = config.left.message
    expect(message).toContain("Invalid config file")
    expect(message).toContain('routes[0].provider (line 3, column 15): Expected "openai" | "openai-responses" | "anthropic" | "openai-compatible" | "azure-openai" | "gemini" | "bedrock" | "vllm" | "ollama" | "openrouter" | "groq" | "together", actual "openia"')
    expect(message).toMatch(/routes\[0\]\.timeout \(line 5, column \d+\): is unexpected/)
    expect(message).toContain("policies.default.retry.maxAttempts (line 12, column 27): Expected a positive number, actual 0")
    expect(message).toContain('policies.default.retry.base (line 12, column 36): Expected a duration such as "500 millis", "30 seconds" or "2 minutes", actual "ten seconds"')
    // The union's other member ("false") is not reported as noise.
    expect(message).not.toContain("Expected false")
  })

  it("checks cross-field rules once the shape is right", async () => {
    const config = await load(write("rules.yaml", [
      "routes:",
      "  - { name: a, provider: openai, model: m, policy: slow }",
      "  - { name: a, provider: openai-compatible, model: n }",
      ""
    ].join("\n")))
    expect(config._tag).toBe("Left")
    if (config._tag !== "Left") return
    expect(config.left.message).toContain('routes[0].policy (line 2, column 52): unknown policy "slow"')
    expect(config.left.message).toContain('routes[1].name (line 3, column 13): duplicate route name "a"')
    expect(config.left.message).toContain("routes[1].baseUrl (line 3, column 5): is missing (an openai-compatible route needs the server's URL)")
  })

  it("prices and a spend budget: decoded, built, and checked (a negative price, a cost limit without prices)", async () => {
    const config = await load(write("spend.yaml", [
      "prices:",
      "  gpt-4o-mini*: { inputPerMTok: 0.15, outputPerMTok: 0.6 }",
      "spend: { maxCostUsd: 0.5, maxTokens: 100000 }",
      ""
    ].join("\n")))
    expect(config._tag).toBe("Right")
    if (config._tag !== "Right") return
    const { budget, prices } = await Effect.runPromise(ConfigFile.spendOf(config.right))
    expect(prices?.priceOf("gpt-4o-mini-2024-07-18")).toEqual({ inputPerMTok: 0.15, outputPerMTok: 0.6 })
    expect(budget).toMatchObject({ maxCostUsd: 0.5, maxTokens: 100_000, unknownModel: "refuse", prices })

    const negative = await load(write("negative-price.yaml", "prices:\n  gpt-4o: { inputPerMTok: -1, outputPerMTok: 2 }\n"))
    expect(negative._tag === "Left" && negative.left.message).toContain("prices.gpt-4o.inputPerMTok (line 2, column 27): Expected a non-negative number, actual -1")
    const unpriced = await load(write("unpriced.yaml", "spend: { maxCostUsd: 1 }\n"))
    expect(unpriced._tag === "Left" && unpriced.left.message).toContain("spend.maxCostUsd (line 1, column 22): needs a `prices` table")
  })

  it("reports JSON and YAML syntax errors with the line and column", async () => {
    const json = await load(write("syntax.json", '{\n  "routes": [\n    { "name": "a", }\n  ]\n}'))
    expect(json._tag === "Left" && json.left.message).toMatch(/not valid JSON at line 3, column 20/)
    const yaml = await load(write("syntax.yaml", "routes:\n  - name: a\n   provider: x\n"))
    expect(yaml._tag === "Left" && yaml.left.message).toMatch(/not valid YAML at line 3, column \d+/)
    const missing = await load(path.join(dir, "absent.yaml"))
    expect(missing._tag === "Left" && missing.left.message).toMatch(/cannot read the file/)
  })

  it("a keyless route never takes the key itself: apiKeyEnv must name a variable", async () => {
    const config = await load(write("key.yaml", "routes:\n  - { name: a, provider: openai, model: m, apiKeyEnv: sk-live-123 }\n"))
    expect(config._tag === "Left" && config.left.message).toContain("routes[0].apiKeyEnv (line 2, column 55): Expected the name of an environment variable")
  })

  it("the CLI exits 2 with the readable message on a bad file", async () => {
    const file = write("cli-bad.yaml", "routes:\n  - name: p\n    provider: openia\n    model: m\n")
    const run = await runCli(["call", "--no-auth", "--config", file, "--prompt", "hello", "--json"])
    expect(run.code).toBe(2)
    expect(run.stdout).toBe("")
    expect(run.stderr).toContain(`error: Invalid config file ${file}:`)
    expect(run.stderr).toContain('routes[0].provider (line 3, column 15): Expected "openai" | "openai-responses" | "anthropic" | "openai-compatible" | "azure-openai" | "gemini" | "bedrock" | "vllm" | "ollama" | "openrouter" | "groq" | "together", actual "openia"')
  })
})

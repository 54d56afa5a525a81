/**
 * `llm-resilience call` end to end: the real executable, spawned, against a ChaosServer; stdout must
 * be exactly one JSON object with `--json`, and the exit code 0 / 1 / 2.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { onlyJson, runCli, startServer, tempDir } from "./helpers.js"

type Started = Awaited<ReturnType<typeof startServer>>
// One of each adapter family the CLI builds (the other presets share groq's path; openai-responses has its own tests).
const EVERY_PROVIDER = ["gemini", "bedrock", "azure-openai", "groq"] as const
let chaos: Started
let dir: string

beforeAll(async () => {
  chaos = await startServer({
    routes: [
      { name: "rate-limited", model: "gpt-429", script: [{ kind: "rate_limit", retryAfterMs: 60 }] },
      { name: "overloaded", model: "gpt-529", script: [{ kind: "overloaded" }] },
      { name: "bad-request", model: "gpt-400", script: [{ kind: "http_error", status: 400, message: "Unsupported parameter: 'foo'." }] },
      { name: "prose", model: "gpt-prose", content: { kind: "text", text: "Sure! Here is the answer: 42" } },
      { name: "json", model: "gpt-json", content: { kind: "json", value: { answer: "42", confidence: 0.9 } } },
      // One scripted 429 per provider test (a script is consumed once per route).
      ...EVERY_PROVIDER.map((provider) => ({ name: `rl-${provider}`, model: `rl-${provider}`, script: [{ kind: "rate_limit" as const, retryAfterMs: 60 }] }))
    ]
  })
  dir = tempDir("call")
  fs.writeFileSync(
    path.join(dir, "schema.json"),
    JSON.stringify({ type: "object", properties: { answer: { type: "string" }, confidence: { type: "number", minimum: 0, maximum: 1 } }, required: ["answer"] })
  )
  fs.writeFileSync(
    path.join(dir, "fallback.yaml"),
    [
      "routes:",
      "  - name: primary",
      "    provider: openai",
      "    model: gpt-529",
      `    baseUrl: ${chaos.server.openAiBaseUrl}`,
      "  - name: secondary",
      "    provider: anthropic",
      "    model: claude-haiku-4-5",
      `    baseUrl: ${chaos.server.anthropicBaseUrl}`,
      "policies:",
      "  default:",
      "    retry: { maxAttempts: 3, base: 10 millis }",
      ""
    ].join("\n")
  )
})

afterAll(async () => {
  await chaos.close()
})

const openai = (model: string, ...extra: Array<string>) => [
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
  ...extra
]

interface Output {
  readonly ok: boolean
  readonly output: unknown
  readonly route: string | null
  readonly degraded: boolean
  readonly error: { readonly _tag: string; readonly action: string; readonly status: number | null; readonly requestId: string | null } | null
  readonly attempts: ReadonlyArray<{ readonly route: string; readonly attempt: number; readonly outcome: string; readonly status: number | null; readonly delayMs: number; readonly durationMs: number }>
}

const json = (stdout: string) => onlyJson(stdout) as unknown as Output

describe.concurrent("call --json", () => {
  it("success: exit 0, the answer and one attempt", async () => {
    const run = await runCli(openai("gpt-4o-mini", "--json"), { env: { OPENAI_API_KEY: "sk-test-call-1234" } })
    expect(run.code, run.stderr).toBe(0)
    const out = json(run.stdout)
    expect(Object.keys(out).sort()).toEqual(["attempts", "degraded", "error", "ok", "output", "route"])
    expect(out.ok).toBe(true)
    expect(out.output).toContain("deterministic test response")
    expect(out.route).toBe("openai")
    expect(out.degraded).toBe(false)
    expect(out.error).toBeNull()
    expect(out.attempts).toHaveLength(1)
    expect(out.attempts[0]).toMatchObject({ route: "openai", attempt: 1, outcome: "success", delayMs: 0 })
    expect(Object.keys(out.attempts[0]!).sort()).toEqual(["attempt", "delayMs", "durationMs", "outcome", "route", "status"])
  })

  it("429 then success: waits at least the Retry-After, exit 0", async () => {
    const run = await runCli(openai("gpt-429", "--json"))
    expect(run.code, run.stderr).toBe(0)
    const out = json(run.stdout)
    expect(out.ok).toBe(true)
    expect(out.attempts.map((a) => [a.attempt, a.outcome, a.status])).toEqual([[1, "RateLimited", 429], [2, "success", null]])
    expect(out.attempts[1]!.delayMs).toBeGreaterThanOrEqual(60)
  })

  it("529 on the primary: falls back to the Anthropic-format secondary, degraded, exit 0", async () => {
    const run = await runCli(["call", "--no-auth", "--config", path.join(dir, "fallback.yaml"), "--prompt", "hello", "--json"])
    expect(run.code, run.stderr).toBe(0)
    const out = json(run.stdout)
    expect(out.ok).toBe(true)
    expect(out.route).toBe("secondary")
    expect(out.degraded).toBe(true)
    // Overloaded reroutes at once when another route exists: no retry on the sick primary.
    expect(out.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([["primary", "Overloaded", 529], ["secondary", "success", null]])
  })

  it("400: the chain stops (no retry, no fallback), exit 1 with the typed error", async () => {
    const run = await runCli(openai("gpt-400", "--json", "--max-attempts", "3"))
    expect(run.code).toBe(1)
    const out = json(run.stdout)
    expect(out.ok).toBe(false)
    expect(out.output).toBeNull()
    expect(out.error).toMatchObject({ _tag: "BadRequest", action: "stop", status: 400 })
    expect(out.error!.requestId).toMatch(/^req_/)
    expect(out.attempts).toHaveLength(1)
  })

  it("prose where the schema wants JSON: InvalidOutput, exit 1", async () => {
    const run = await runCli(openai("gpt-prose", "--json", "--schema", path.join(dir, "schema.json")))
    expect(run.code).toBe(1)
    const out = json(run.stdout)
    expect(out.ok).toBe(false)
    expect(out.error).toMatchObject({ _tag: "InvalidOutput", action: "reroute", status: 200 })
    expect(out.attempts.map((a) => a.outcome)).toEqual(["InvalidOutput"])
  })

  it("JSON that fits the schema: the decoded object is the output", async () => {
    const run = await runCli(openai("gpt-json", "--json", "--schema", path.join(dir, "schema.json")))
    expect(run.code, run.stderr).toBe(0)
    expect(json(run.stdout).output).toEqual({ answer: "42", confidence: 0.9 })
  })

  it("--stream --json: still exactly one JSON object", async () => {
    const run = await runCli(openai("gpt-4o-mini", "--stream", "--json"))
    expect(run.code, run.stderr).toBe(0)
    const out = json(run.stdout)
    expect(out.ok).toBe(true)
    expect(out.output).toContain("deterministic test response")
  })

  it("--stream --schema --json: the decoded object, checked whole", async () => {
    const run = await runCli(openai("gpt-json", "--stream", "--json", "--schema", path.join(dir, "schema.json")))
    expect(run.code, run.stderr).toBe(0)
    expect(json(run.stdout)).toMatchObject({ ok: true, output: { answer: "42", confidence: 0.9 } })
  })

  it("--stream --schema --json, prose where the schema wants JSON: InvalidOutput, exit 1", async () => {
    const run = await runCli(openai("gpt-prose", "--stream", "--json", "--schema", path.join(dir, "schema.json")))
    expect(run.code).toBe(1)
    const out = json(run.stdout)
    expect(out.ok).toBe(false)
    expect(out.error).toMatchObject({ _tag: "InvalidOutput", status: 200 })
  })

  it("--stream --schema (text): the JSON text streams to stdout; a bad answer is InvalidOutput on stderr, exit 1", async () => {
    const good = await runCli(openai("gpt-json", "--stream", "--schema", path.join(dir, "schema.json")))
    expect(good.code, good.stderr).toBe(0)
    expect(JSON.parse(good.stdout)).toEqual({ answer: "42", confidence: 0.9 })
    expect(good.stderr).toMatch(/served by openai/)
    const bad = await runCli(openai("gpt-prose", "--stream", "--schema", path.join(dir, "schema.json")))
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/InvalidOutput/)
  })

  it("--provider openai-responses: the Responses API, JSON and streamed", async () => {
    const base = ["call", "--no-auth", "--provider", "openai-responses", "--base-url", chaos.server.openAiBaseUrl, "--model", "gpt-json", "--prompt", "x", "--json"]
    const run = await runCli([...base, "--schema", path.join(dir, "schema.json")])
    expect(run.code, run.stderr).toBe(0)
    expect(json(run.stdout)).toMatchObject({ ok: true, route: "openai-responses", output: { answer: "42", confidence: 0.9 } })
    const streamed = await runCli([...base, "--stream"])
    expect(streamed.code, streamed.stderr).toBe(0)
    expect(JSON.parse(String(json(streamed.stdout).output))).toEqual({ answer: "42", confidence: 0.9 })
  })

  it("without --json: the answer on stdout, the attempt summary on stderr", async () => {
    const run = await runCli(openai("gpt-4o-mini"))
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout.trim()).toBe("This is a deterministic test response from the effect-llm-resilience chaos server.")
    expect(run.stderr).toMatch(/served by openai in 1 attempt/)
  })
})

describe.concurrent("call: bad usage exits 2", () => {
  it("a flag route without --model", async () => {
    const run = await runCli(["call", "--provider", "openai", "--prompt", "x", "--json"])
    expect(run.code).toBe(2)
    expect(run.stdout).toBe("")
    expect(run.stderr).toMatch(/needs both --provider and --model/)
  })

  it("no route at all", async () => {
    const run = await runCli(["call", "--prompt", "x"])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/no route to call/)
  })

  it("a malformed --base-url", async () => {
    const run = await runCli(["call", "--provider", "openai", "--model", "m", "--base-url", "localhost:8080", "--prompt", "x"])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/--base-url must be an http:\/\/ or https:\/\/ URL/)
  })

  it("an unknown provider (rejected by the flag parser)", async () => {
    const run = await runCli(["call", "--provider", "cohere", "--model", "m", "--prompt", "x"])
    expect(run.code).toBe(2)
  })

  it("a JSON Schema with an unsupported keyword, with its path", async () => {
    const file = path.join(dir, "bad-schema.json")
    fs.writeFileSync(file, JSON.stringify({ type: "object", properties: { a: { $ref: "#/defs/a" } } }))
    const run = await runCli(openai("gpt-json", "--schema", file))
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('properties.a.$ref: unsupported JSON Schema keyword "$ref"')
  })
})

describe.concurrent("plain output off a terminal", () => {
  // stdout and stderr are pipes here: @effect/cli's styled help and validation texts must arrive plain.
  it("--help and a usage error carry no ANSI escape codes", async () => {
    const help = await runCli(["--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("USAGE")
    const usage = await runCli(["call", "--no-such-flag"])
    expect(usage.code).toBe(2)
    for (const text of [help.stdout, help.stderr, usage.stdout, usage.stderr]) expect(text).not.toMatch(/\x1b\[/)
  })
})

describe.concurrent("call speaks every provider family (against the chaos server)", () => {
  const call = (provider: string, baseUrl: string, model: string) => [
    "call",
    "--provider",
    provider,
    "--base-url",
    baseUrl,
    "--model",
    model,
    "--prompt",
    "What is six times seven?",
    "--json",
    "--max-attempts",
    "3"
  ]
  it.each([
    ["gemini", () => `${chaos.server.url}/v1beta`, { GEMINI_API_KEY: "gemini-cli-test-key" }],
    ["bedrock", () => chaos.server.url, { AWS_REGION: "eu-west-1", AWS_ACCESS_KEY_ID: "AKIDCLI", AWS_SECRET_ACCESS_KEY: "aws-cli-secret" }],
    ["azure-openai", () => chaos.server.url, { AZURE_OPENAI_API_KEY: "azure-cli-test-key" }],
    ["groq", () => chaos.server.openAiBaseUrl, { GROQ_API_KEY: "gsk-cli-test-key" }]
  ] as const)("%s: 429 with a wait, then the answer", async (provider, baseUrl, env) => {
    const run = await runCli(call(provider, baseUrl(), `rl-${provider}`), { env })
    expect(run.code, run.stderr).toBe(0)
    const out = json(run.stdout)
    expect(out.ok).toBe(true)
    expect(out.route).toBe(provider)
    expect(out.attempts.map((a) => [a.outcome, a.status])).toEqual([["RateLimited", 429], ["success", null]])
    for (const secret of Object.values(env)) expect(run.stdout + run.stderr).not.toContain(secret)
  })

  it("an unset key is a usage error naming the variable (exit 2), and nothing is sent; --no-auth sends without", async () => {
    const served = async () => (await Effect.runPromise(chaos.server.stats)).log.filter((entry) => entry.model === "no-key-model").length
    const refused = await runCli(call("openrouter", chaos.server.openAiBaseUrl, "no-key-model"))
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain("OPENROUTER_API_KEY is not set")
    expect(refused.stderr).toContain("--no-auth")
    const plain = await runCli(call("openai", chaos.server.openAiBaseUrl, "no-key-model"))
    expect(plain.code).toBe(2)
    expect(plain.stderr).toContain("OPENAI_API_KEY is not set")
    expect(await served()).toBe(0)
    const allowed = await runCli([...call("openai", chaos.server.openAiBaseUrl, "no-key-model"), "--no-auth"])
    expect(allowed.code, allowed.stderr).toBe(0)
    expect(await served()).toBe(1)
  })
})

/**
 * `llm-resilience doctor` end to end against a ChaosServer (and a local statuspage.io stand-in): one
 * verdict per check, a remedy where something is wrong, exit 1 only when a check fails.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { onlyJson, runCli, startServer, tempDir } from "./helpers.js"

type Started = Awaited<ReturnType<typeof startServer>>
let chaos: Started
let statusServer: http.Server
let statusUrl: string

beforeAll(async () => {
  chaos = await startServer({
    routes: [
      { name: "revoked-key", model: "gpt-revoked", mix: [{ fault: { kind: "http_error", status: 401 }, rate: 1 }] },
      // A pattern route: the typo is not an exact id, so GET /v1/models does not list it.
      { name: "typo", model: "gpt-4o-mni*", mix: [{ fault: { kind: "http_error", status: 404 }, rate: 1 }] }
    ]
  })
  statusServer = http.createServer((request, response) => {
    const bodies: Record<string, string> = {
      "/ok.json": JSON.stringify({ page: { name: "Chaos" }, status: { indicator: "none", description: "All Systems Operational" } }),
      "/major.json": JSON.stringify({ page: { name: "Chaos" }, status: { indicator: "major", description: "Partial System Outage" } }),
      "/html": "<html>maintenance</html>"
    }
    const body = bodies[request.url ?? ""]
    response.writeHead(body === undefined ? 404 : 200, { "content-type": "application/json" }).end(body ?? "{}")
  })
  await new Promise<void>((resolve) => statusServer.listen(0, "127.0.0.1", resolve))
  statusUrl = `http://127.0.0.1:${(statusServer.address() as AddressInfo).port}`
})

afterAll(async () => {
  await chaos.close()
  await new Promise<void>((resolve) => statusServer.close(() => resolve()))
})

interface Check {
  readonly check: string
  readonly verdict: string
  readonly detail: string
  readonly remedy?: string
}

const doctor = (model: string, status: string, ...extra: Array<string>) =>
  runCli([
    "doctor",
    "--provider",
    "openai",
    "--base-url",
    chaos.server.openAiBaseUrl,
    "--model",
    model,
    "--status-url",
    status,
    "--timeout-ms",
    "5000",
    ...extra
  ], { env: { OPENAI_API_KEY: "sk-doctor-test-key-0001" } })

const checksOf = (stdout: string): Record<string, Check> => {
  const report = onlyJson(stdout) as { readonly routes: ReadonlyArray<{ readonly checks: ReadonlyArray<Check> }> }
  return Object.fromEntries(report.routes[0]!.checks.map((c) => [c.check, c]))
}

describe.concurrent("doctor", () => {
  it("ok: key accepted, model answers, latency and headroom measured, status operational — exit 0", async () => {
    const run = await doctor("gpt-4o-mini", `${statusUrl}/ok.json`, "--json")
    expect(run.code, run.stderr).toBe(0)
    const checks = checksOf(run.stdout)
    expect(Object.fromEntries(Object.entries(checks).map(([k, c]) => [k, c.verdict]))).toEqual({
      key: "ok",
      model: "ok",
      latency: "ok",
      headroom: "ok",
      status: "ok"
    })
    expect(checks["latency"]!.detail).toMatch(/a 1-token request took \d+ ms/)
    expect(checks["headroom"]!.detail).toMatch(/requests: \d+ of 10000 left/)
    expect(checks["status"]!.detail).toBe("All Systems Operational")
  })

  it("401: the key check fails with what to do — exit 1", async () => {
    const run = await doctor("gpt-revoked", `${statusUrl}/ok.json`, "--json")
    expect(run.code).toBe(1)
    const checks = checksOf(run.stdout)
    expect(checks["key"]!.verdict).toBe("fail")
    expect(checks["key"]!.detail).toMatch(/OPENAI_API_KEY was rejected \(HTTP 401/)
    expect(checks["key"]!.remedy).toMatch(/replace OPENAI_API_KEY with a valid key/)
    expect(checks["model"]!.verdict).toBe("unknown")
    // The key's value never appears, even in a failure report.
    expect(run.stdout + run.stderr).not.toContain("sk-doctor-test-key-0001")
  })

  it("404: the model check fails and lists the valid ids — exit 1", async () => {
    const run = await doctor("gpt-4o-mni", `${statusUrl}/ok.json`, "--json")
    expect(run.code).toBe(1)
    const checks = checksOf(run.stdout)
    expect(checks["key"]!.verdict).toBe("ok")
    expect(checks["model"]!.verdict).toBe("fail")
    expect(checks["model"]!.detail).toMatch(/model "gpt-4o-mni" does not exist/)
    expect(checks["model"]!.remedy).toContain("use one of: gpt-4o, gpt-4o-mini")
    expect(checks["model"]!.remedy).toContain('closest: "gpt-4o-mini"')
  })

  it("several routes from a config file: human output, one verdict line per check, remedies, the overall verdict", async () => {
    const dir = tempDir("doctor")
    const config = path.join(dir, "routes.yaml")
    fs.writeFileSync(config, [
      "routes:",
      "  - name: keyless",
      "    provider: openai",
      "    model: gpt-4o-mini",
      `    baseUrl: ${chaos.server.openAiBaseUrl}`,
      "    apiKeyEnv: LOCAL_SERVER_KEY",
      `    statusPage: ${statusUrl}/html`,
      "  - name: down",
      "    provider: anthropic",
      "    model: claude-haiku-4-5",
      "    baseUrl: http://127.0.0.1:1",
      `    statusPage: ${statusUrl}/major.json`,
      "  - name: unlisted-status",
      "    provider: openai",
      "    model: gpt-4o",
      `    baseUrl: ${chaos.server.openAiBaseUrl}`,
      "    statusPage: http://127.0.0.1:1/status.json",
      ""
    ].join("\n"))
    const run = await runCli(["doctor", "--config", config, "--timeout-ms", "5000"], { env: { OPENAI_API_KEY: "sk-doctor-test-key-0002" } })
    expect(run.code).toBe(1)
    const verdictLines = run.stdout.split("\n").filter((l) => /^ {2}[✔!✘?] (ok|warn|fail|unknown) +(key|model|latency|headroom|status) /.test(l))
    expect(verdictLines).toHaveLength(15)
    const section = (name: string) => run.stdout.slice(run.stdout.indexOf(`${name} — `)).split("\n\n")[0]!
    // No key set, and the endpoint did not ask for one: a warning, not a failure.
    expect(section("keyless")).toMatch(/! warn +key +LOCAL_SERVER_KEY is not set/)
    expect(section("keyless")).toMatch(/✔ ok +latency/)
    // A status URL that does not answer statuspage.io JSON is unknown, not a crash.
    expect(section("keyless")).toMatch(/\? unknown status .*did not answer statuspage\.io JSON/)
    expect(section("down")).toMatch(/✘ fail +latency +cannot connect to http:\/\/127\.0\.0\.1:1 \(refused/)
    expect(section("down")).toMatch(/→ check the base URL/)
    expect(section("down")).toMatch(/✘ fail +status +major outage: Partial System Outage/)
    expect(section("down")).toMatch(/→ route traffic to another provider/)
    expect(section("unlisted-status")).toMatch(/\? unknown status +status page http:\/\/127\.0\.0\.1:1\/status\.json is unreachable/)
    expect(run.stdout).toMatch(/verdict: FAIL — 2 check\(s\) failed/)
  })
})

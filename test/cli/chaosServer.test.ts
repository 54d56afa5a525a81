/**
 * `llm-resilience chaos-server` standalone: serves its scenario file, stops cleanly on SIGTERM, and
 * rejects a bad scenario with the path of each problem (exit 2).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { runCli, startCli, tempDir } from "./helpers.js"

describe.concurrent("chaos-server", () => {
  it("serves the scenario on the given port and stops on SIGTERM with exit 0", async () => {
    const dir = tempDir("chaos")
    const scenario = path.join(dir, "scenario.json")
    fs.writeFileSync(scenario, JSON.stringify({ default: { script: [{ kind: "rate_limit", retryAfterSeconds: 2 }] } }))
    const server = await startCli(["chaos-server", "--port", "0", "--scenario", scenario], /OpenAI-format base URL +(http:\/\/127\.0\.0\.1:\d+\/v1)/)
    try {
      const base = server.match[1]!
      const first = await fetch(`${base}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
      })
      expect(first.status).toBe(429)
      expect(first.headers.get("retry-after")).toBe("2")
      const second = await fetch(`${base}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
      })
      expect(second.status).toBe(200)
      const stats = await (await fetch(`${base.replace(/\/v1$/, "")}/__chaos/stats`)).json() as { readonly total: number }
      expect(stats.total).toBe(2)
    } finally {
      server.child.kill("SIGTERM")
    }
    const exit = await server.exit
    expect(exit.code).toBe(0)
  })

  it("rejects an invalid scenario file with exit 2 and the path of each problem", async () => {
    const dir = tempDir("chaos-bad")
    const scenario = path.join(dir, "bad.json")
    fs.writeFileSync(scenario, JSON.stringify({ routes: [{ script: [{ kind: "rate_limt" }] }] }))
    const run = await runCli(["chaos-server", "--port", "0", "--scenario", scenario])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain("routes[0].script[0].kind")
    expect(run.stderr).toContain('actual "rate_limt"')
  })

  it("rejects an out-of-range port with exit 2", async () => {
    const run = await runCli(["chaos-server", "--port", "70000"])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/--port must be between 0 and 65535/)
  })
})

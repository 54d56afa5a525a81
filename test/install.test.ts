/**
 * The package as a user gets it: `npm pack`, then a fresh project that installs the tarball and the
 * peers the README lists (from npm's cache or the registry), and runs the CLI from that install —
 * `--help`, `call` against a chaos server, `demo` (memory store), `--otel-console` without the
 * telemetry packages (a clear "install X" usage error, never an internal error), and a library import.
 */
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startServer } from "./cli/helpers.js"

const root = path.resolve(import.meta.dirname, "..")
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
  readonly peerDependencies: Record<string, string>
  readonly peerDependenciesMeta: Record<string, { readonly optional?: boolean }>
}

let app: string
let chaos: Awaited<ReturnType<typeof startServer>>

/** The README's install: the package and its required peers. */
const requiredPeers = () =>
  Object.entries(pkg.peerDependencies)
    .filter(([name]) => pkg.peerDependenciesMeta[name]?.optional !== true)
    .map(([name, range]) => `${name}@${range}`)

/** Runs the installed executable (asynchronously: the chaos server it calls lives in this process). */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(app, "node_modules", ".bin", "llm-resilience"), ...args], {
      cwd: app,
      env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? os.tmpdir(), NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

beforeAll(async () => {
  app = fs.mkdtempSync(path.join(os.tmpdir(), "llmr-install-"))
  // The tarball the registry would serve, from the dist/ that `npm test` built (scripts off: `prepack`
  // would rebuild dist/ under the other test files' feet).
  if (!fs.existsSync(path.join(root, "dist", "cli", "main.js"))) throw new Error("dist/ is missing: run `npm run build` (npm test does)")
  const tarball = execFileSync("npm", ["pack", "--silent", "--ignore-scripts", "--pack-destination", app], { cwd: root, encoding: "utf8" })
    .trim()
    .split("\n")
    .pop()!
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module" }))
  execFileSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", path.join(app, tarball), ...requiredPeers()], {
    cwd: app,
    encoding: "utf8",
    timeout: 300_000
  })
  chaos = await startServer({ routes: [{ name: "rl", model: "rl-model", script: [{ kind: "rate_limit", retryAfterMs: 50 }] }] })
}, 360_000)

afterAll(async () => {
  await chaos?.close()
  if (app !== undefined) fs.rmSync(app, { recursive: true, force: true })
})

describe("installed from the tarball", () => {
  it("--help runs (the CLI's own dependencies came with the package)", async () => {
    const run = await cli(["--help"])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain("USAGE")
    expect(run.stderr).not.toContain("internal error")
  })

  it("call against a chaos server: a 429 waited out, exit 0", async () => {
    const run = await cli(["call", "--provider", "openai", "--base-url", chaos.server.openAiBaseUrl, "--model", "rl-model", "--prompt", "hi", "--json"], {
      OPENAI_API_KEY: "sk-install-test"
    })
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout) as { readonly ok: boolean; readonly attempts: ReadonlyArray<{ readonly outcome: string }> }
    expect(out.ok).toBe(true)
    expect(out.attempts.map((a) => a.outcome)).toEqual(["RateLimited", "success"])
  })

  it("demo (memory store from a config file) runs the scripted incident to the end", async () => {
    fs.writeFileSync(path.join(app, "demo.yaml"), "store:\n  kind: memory\n")
    const run = await cli(["demo", "--config", "demo.yaml", "--plain", "--report", path.join(app, "report.html")])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).not.toContain("internal error")
    expect(fs.existsSync(path.join(app, "report.html"))).toBe(true)
  })

  it("demo with the default SQLite store, driver not installed: says what to install (exit 2)", async () => {
    const run = await cli(["demo", "--plain"])
    expect(run.code, run.stderr).toBe(2)
    expect(run.stderr).toContain("npm i @effect/sql-sqlite-node")
    expect(run.stderr).not.toContain("internal error")
  })

  it("--otel-console without the telemetry packages: says what to install (exit 2), nothing is sent", async () => {
    const run = await cli(["call", "--provider", "openai", "--base-url", chaos.server.openAiBaseUrl, "--model", "m", "--prompt", "hi", "--otel-console", "--no-auth"])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain("npm i @effect/opentelemetry")
    expect(run.stderr).not.toContain("internal error")
  })

  it("the library itself loads from the install", () => {
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", "const m = await import('effect-llm-resilience'); const g = await import('effect-llm-resilience/Gemini'); console.log(typeof m.Fallback.make, typeof g.make)"], {
      cwd: app,
      encoding: "utf8"
    })
    expect(out.trim()).toBe("function function")
  })
})

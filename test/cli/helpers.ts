/**
 * Helpers for the CLI tests: run the real executable (`bin/llm-resilience.mjs`) as a child process,
 * and run a ChaosServer in the test process for it to talk to.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const bin = path.join(root, "bin", "llm-resilience.mjs")

export interface Run {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Environment for the child: no inherited keys or telemetry settings, no colour, and the TypeScript
 * sources (not a possibly stale dist/ build) — the code under test.
 */
const baseEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", LLM_RESILIENCE_FROM_SOURCE: "1" }
  for (const name of Object.keys(env)) {
    if (/_API_KEY$/.test(name) || name.startsWith("OTEL_")) delete env[name]
  }
  return env
}

/** Runs the CLI to completion (or kills it after `timeoutMs`). */
export const runCli = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string>; readonly timeoutMs?: number; readonly cwd?: string } = {}
): Promise<Run> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: options.cwd ?? root,
      env: { ...baseEnv(), ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 25_000)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })

/** Starts the CLI and waits until its stdout contains `marker`; returns the process. */
export const startCli = (
  args: ReadonlyArray<string>,
  marker: RegExp,
  options: { readonly env?: Record<string, string>; readonly timeoutMs?: number } = {}
) =>
  new Promise<{ readonly child: ReturnType<typeof spawn>; readonly match: RegExpMatchArray; readonly output: () => string; readonly exit: Promise<Run> }>(
    (resolve, reject) => {
      const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { ...baseEnv(), ...options.env }, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      const exit = new Promise<Run>((done) => child.on("close", (code, signal) => done({ code, signal, stdout, stderr })))
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        reject(new Error(`no ${marker} within ${options.timeoutMs ?? 20_000} ms; stdout: ${stdout}; stderr: ${stderr}`))
      }, options.timeoutMs ?? 20_000)
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk
        const match = stdout.match(marker)
        if (match !== null) {
          clearTimeout(timer)
          resolve({ child, match, output: () => stdout, exit })
        }
      })
      void exit.then((run) => {
        clearTimeout(timer)
        if (stdout.match(marker) === null) reject(new Error(`exited (${run.code}) before ${marker}; stderr: ${run.stderr}`))
      })
    }
  )

/** A ChaosServer living in the test process until `close`. */
export const startServer = async (scenario: Scenario.Scenario) => {
  const scope = await Effect.runPromise(Scope.make())
  const server = await Effect.runPromise(Scope.extend(ChaosServer.make({ scenario }), scope))
  return { server, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** A fresh temporary directory. */
export const tempDir = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), `llmr-${prefix}-`))

/** Parses stdout that must be exactly one JSON object (and nothing else). */
export const onlyJson = (stdout: string): Record<string, unknown> => {
  const trimmed = stdout.trim()
  if (!trimmed.startsWith("{") || trimmed.split("\n").length !== 1) throw new Error(`stdout is not one JSON line: ${stdout}`)
  const value: unknown = JSON.parse(trimmed)
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`not an object: ${stdout}`)
  return value as Record<string, unknown>
}

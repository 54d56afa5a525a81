/**
 * Child processes for the benchmarks: servers run in their own process (optionally pinned to another
 * core with `taskset`) so the client under test does not share its event loop with them.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createRequire } from "node:module"
import * as net from "node:net"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { hasTaskset } from "./report.js"

const here = dirname(fileURLToPath(import.meta.url))

/** A running child and how to stop it. */
export interface Child {
  readonly process: ChildProcess
  /** The first capture group of the ready pattern (e.g. the port). */
  readonly ready: string
  readonly pinnedTo: number | undefined
  readonly stop: () => Promise<void>
}

/**
 * Starts `command args` and resolves once a stdout/stderr line matches `ready` (first capture group
 * returned), or rejects after `timeoutMs` with what the child printed.
 */
export const start = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly ready: RegExp; readonly cpu?: number | undefined; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number }
): Promise<Child> => {
  const pin = options.cpu !== undefined && hasTaskset() ? options.cpu : undefined
  const [file, argv] = pin === undefined ? [command, [...args]] : ["taskset", ["-c", String(pin), command, ...args]]
  const child = spawn(file, argv, { env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  return new Promise<Child>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${command} ${args.join(" ")} did not become ready in ${options.timeoutMs ?? 20_000} ms:\n${output.slice(-2000)}`))
    }, options.timeoutMs ?? 20_000)
    const onData = (data: Buffer) => {
      output += data.toString()
      const match = options.ready.exec(output)
      if (match !== null) {
        clearTimeout(timer)
        child.stdout.off("data", onData)
        child.stderr.off("data", onData)
        // Keep draining the pipes so a chatty child never blocks on a full pipe.
        child.stdout.resume()
        child.stderr.resume()
        resolve({ process: child, ready: match[1] ?? "", pinnedTo: pin, stop: () => stop(child) })
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${command} exited (${code ?? signal}) before it was ready:\n${output.slice(-2000)}`))
    })
  })
}

const stop = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const force = setTimeout(() => child.kill("SIGKILL"), 3_000)
    child.once("exit", () => {
      clearTimeout(force)
      resolve()
    })
    child.kill("SIGTERM")
  })

/** Runs one of the TypeScript entry points in bench/lib with tsx. */
export const startTs = (
  entry: string,
  args: ReadonlyArray<string>,
  options: { readonly ready: RegExp; readonly cpu?: number | undefined; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number }
): Promise<Child> => start(process.execPath, ["--import", "tsx", join(here, entry), ...args], options)

/** The absolute path of a file inside an installed package. */
export const packageFile = (specifier: string): string => createRequire(import.meta.url).resolve(specifier)

/** `preferred` if nothing listens on it, else a free port picked by the OS. */
export const portOr = (preferred: number): Promise<number> =>
  new Promise((resolve) => {
    const probe = net.createServer()
    probe.once("error", () => {
      const any = net.createServer()
      any.listen(0, "127.0.0.1", () => {
        const address = any.address()
        any.close(() => resolve(typeof address === "object" && address !== null ? address.port : preferred))
      })
    })
    probe.listen(preferred, "127.0.0.1", () => probe.close(() => resolve(preferred)))
  })

/**
 * What every benchmark script shares: the `--quick` flag, the machine description, percentiles, a
 * Markdown table printer, and writing `bench/results/<name>.json` + `.svg`.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** `--quick`: the CI-sized smoke run. */
export const quick = process.argv.includes("--quick")

/** bench/results, next to this folder (`BENCH_RESULTS_DIR` overrides it, e.g. for the CI smoke test). */
export const resultsDir = process.env["BENCH_RESULTS_DIR"] ?? join(dirname(fileURLToPath(import.meta.url)), "..", "results")

/** The machine a result was measured on. */
export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly node: string
  readonly platform: string
  readonly loadAverage: ReadonlyArray<number>
  readonly date: string
}

export const machine = (): Machine => {
  let cpu = os.cpus()[0]?.model ?? "unknown"
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"))
    if (line !== undefined) cpu = line.split(":")[1]!.trim()
  } catch {
    // Not Linux: os.cpus() is the next best source.
  }
  return {
    cpu,
    cores: os.cpus().length,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadAverage: os.loadavg().map((l) => +l.toFixed(2)),
    date: new Date().toISOString()
  }
}

/** Nearest-rank percentile of an unsorted sample (`p` in 0..100); NaN for an empty sample. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export const median = (values: ReadonlyArray<number>): number => percentile(values, 50)

/** Formats a number for a table: fixed digits, `–` for NaN/undefined. */
export const fmt = (value: number | undefined, digits = 1): string =>
  value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits)

/** Prints (and returns) a Markdown table. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const text = [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n")
  console.log(text)
  return text
}

/**
 * Writes `bench/results/<name>.json` (the machine, the mode and `data`) and the plots: a string is
 * `<name>.svg`; a record maps suffixes to plots (`{ "": main, "budget": other }` → `<name>.svg`,
 * `<name>-budget.svg`). Quick runs write `<name>-quick*` so a smoke run never overwrites the figures
 * the docs cite.
 */
export const writeResults = (
  name: string,
  data: unknown,
  svg: string | Readonly<Record<string, string>>,
  /** The command that produced it, when it is not `npm run bench:<name>` (a variant's flags). */
  command: string = commandLine(name)
): ReadonlyArray<string> => {
  mkdirSync(resultsDir, { recursive: true })
  const base = join(resultsDir, quick ? `${name}-quick` : name)
  const written = [`${base}.json`]
  writeFileSync(written[0]!, JSON.stringify({ bench: name, quick, machine: machine(), command, data }, null, 2) + "\n")
  for (const [suffix, plot] of Object.entries(typeof svg === "string" ? { "": svg } : svg)) {
    const file = suffix === "" ? `${base}.svg` : `${base}-${suffix}.svg`
    writeFileSync(file, plot)
    written.push(file)
  }
  console.log(`\nwrote ${written.join(", ")}`)
  return written
}

const commandLine = (name: string) => `npm run bench:${name}${quick ? " -- --quick" : ""}`

/** Prints the header every script starts with. */
export const banner = (name: string, what: string): void => {
  const m = machine()
  console.log(`bench:${name}${quick ? " (--quick)" : ""} — ${what}`)
  console.log(`${m.cpu}, ${m.cores} cores, Node ${m.node}, load ${m.loadAverage.join(" ")}, ${m.date}\n`)
}

/**
 * Pins the current process (all its threads) to one CPU with `taskset`, when there are at least two
 * and `taskset` exists; returns the CPU or undefined.
 */
export const pinSelf = (cpu: number): number | undefined => {
  if (os.cpus().length < 2 || !hasTaskset()) return undefined
  try {
    execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(process.pid)], { stdio: "ignore" })
    return cpu
  } catch {
    return undefined
  }
}

let tasksetFound: boolean | undefined
export const hasTaskset = (): boolean => {
  if (tasksetFound === undefined) {
    try {
      execFileSync("taskset", ["-V"], { stdio: "ignore" })
      tasksetFound = true
    } catch {
      tasksetFound = false
    }
  }
  return tasksetFound
}

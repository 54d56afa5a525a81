/**
 * bench:crash-soak — the SIGKILL crash test at scale: the same 20-turn durable agent and the same
 * checks as test/agent/crash.test.ts (no lost or rewritten completed step, no completed step executed
 * again, every irreversible charge and keyed email applied exactly once at the ledger, every run's
 * answer equal to the uninterrupted run's), for many more kills and several seeds.
 *
 * Run: npm run bench:crash-soak                          (500 kills, seed 1)
 *      npm run bench:crash-soak -- --kills 2000 --seed 7
 * Exits 1 if any check failed. Progress goes to stderr, the summary (JSON) to stdout.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { runCampaign } from "../test/agent/fixtures/crashHarness.js"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number`)
  return value
}

const kills = arg("kills", 500)
const seed = arg("seed", 1)
const dir = path.resolve(".tmp", `crash-soak-${process.pid}`)

const main = async () => {
  console.error(`bench:crash-soak — ${kills} SIGKILLs, seed ${seed}, working in ${dir}`)
  const result = await runCampaign({ kills, seed, dir, log: (line) => console.error(`[${new Date().toISOString()}] ${line}`) })
  const summary = {
    kills: result.kills,
    lives: result.lives,
    runs: result.runs,
    killsAt: result.killsAt,
    violations: result.violations,
    finalsEqualReference: result.finals.every((f) => f === result.reference),
    ledger: result.ledger,
    modelRequests: result.modelRequests,
    modelSteps: result.modelSteps,
    durationMs: result.durationMs,
    secondsPerLife: +(result.durationMs / 1000 / result.lives).toFixed(2)
  }
  console.log(JSON.stringify(summary, null, 2))
  fs.rmSync(dir, { recursive: true, force: true })
  if (result.violations.length > 0 || !summary.finalsEqualReference) process.exit(1)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})

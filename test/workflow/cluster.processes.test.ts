/**
 * The cluster engine under fire: 3 runner processes (test/workflow/fixtures/runner.ts) on one Postgres
 * database (the cluster's messages and shard locks, the agent journal, the ledger), 30 runs of a
 * 20-step agent whose every other step is an irreversible charge, and ≥ 20 SIGKILLs of a random runner
 * at seeded random moments (a killed runner comes back after RESTART_MS and its boot, by when the others
 * have usually taken its runs over). Checks: every run completes with all its charges; every run's 20 steps are in
 * the journal, completed; no charge is in the ledger twice; a step executes again only when the runner
 * executing it was killed; every run a kill interrupted is resumed — the time from the kill to its next
 * step is the takeover time, reported.
 *
 * Kills and restarts are real processes on the wall clock (nothing here can be simulated); the checks
 * are on what happened, not on timings. CLUSTER_KILLS and CLUSTER_SEED override the size and the seed.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as PgCheckpointStore from "../../src/agent/PgCheckpointStore.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import { AgentWorkflow } from "../../src/workflow/index.js"
import { pgConfig, postgresGate } from "../agent/backends.js"
import { LedgerAgent, ledgerDdl, TURNS } from "./fixtures/ledgerAgent.js"
import { freePort } from "../utils/freePort.js"
import { prng } from "../utils/prng.js"

const KILLS = Number(process.env["CLUSTER_KILLS"] ?? 20)
const SEED = Number(process.env["CLUSTER_SEED"] ?? 20_261_207)
const RUNS = 30
const RUNNERS = 3
/** The agent lease and the shard-lock expiry of this test (the module's defaults are 10 s each). */
const LEASE_MS = 3_000
const LOCK_MS = 3_000
/**
 * A killed runner is restarted this long after its kill; with its boot (≈ 2 s) it is back after the
 * others have usually taken its runs (the test requires that some were taken over by another runner).
 */
const RESTART_MS = 3_000
const START_EVERY_MS = 2_500

const runnerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "runner.ts")

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const withDb = <A>(database: string, use: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(PgClient.make({ ...pgConfig, database }), use)).pipe(
    Effect.provide(Reactivity.layer)
  ))

interface Exec {
  readonly runId: string
  readonly index: number
  readonly runner: string
  readonly pid: number
  readonly at: number
}
interface Kill {
  readonly runner: string
  readonly pid: number
  readonly at: number
  /** Runs the killed runner was executing (its last step of each was not known to be finished). */
  readonly victims: ReadonlyArray<string>
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!
}

const runPostgres = await postgresGate((name, fn) => describe("Cluster engine, 3 runner processes", () => it(name, fn)))

describe.runIf(runPostgres)("Cluster engine, 3 runner processes", () => {
  const database = `llmr_cluster_${process.pid}_${Date.now().toString(36)}`
  const children = new Set<ChildProcess>()
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    await withDb("test", (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => undefined)
  })

  it(`30 runs of a 20-step agent survive ≥ ${KILLS} SIGKILLs of random runners: every step once, every charge once, dead runners' runs taken over`, async () => {
    await withDb("test", (sql) => sql.unsafe(`CREATE DATABASE ${database}`))
    await withDb(database, (sql) => sql.unsafe(ledgerDdl))
    const Pg = PgClient.layer({ ...pgConfig, database, maxConnections: 4 })
    // The journal's tables and the cluster's, created once here rather than raced by three runners.
    await Effect.runPromise(Effect.scoped(Layer.build(PgCheckpointStore.layer({ ...pgConfig, database, maxConnections: 2 }))))
    const client = ManagedRuntime.make(AgentWorkflow.clientLayer({
      sharding: { shardLockExpiration: Duration.millis(LOCK_MS), entityReplyPollInterval: Duration.millis(200) }
    }).pipe(Layer.provide(Pg)))
    // The client creates the cluster's tables: three runners starting at once on a fresh database race
    // to create them.
    await client.runtime()
    const scope = Effect.runSync(Scope.make())
    const chaos = await Effect.runPromise(Scope.extend(
      ChaosServer.make({
        scenario: {
          seed: SEED,
          default: {
            content: { kind: "echo" },
            latency: { kind: "fixed", ms: 250 },
            mix: [{ fault: { kind: "http_error", status: 500 }, rate: 0.05 }]
          }
        }
      }),
      scope
    ))

    const random = prng(SEED)
    const execs: Array<Exec> = []
    const kills: Array<Kill> = []
    const lastExec = new Map<string, Exec>()
    const outcomes = new Map<string, Exit.Exit<typeof LedgerAgent.success.Type, AgentWorkflow.AgentRunFailed>>()
    const live = new Map<string, ChildProcess>()
    const stderr: Array<string> = []
    let acted = 0

    const start = (id: string, port: number) =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", runnerScript], {
          env: {
            ...process.env,
            RUNNER_ID: id,
            RUNNER_PORT: String(port),
            PG_DATABASE: database,
            CHAOS_URL: chaos.url,
            LEASE_MS: String(LEASE_MS),
            LOCK_MS: String(LOCK_MS),
            ACT_DELAY_MS: "150"
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        children.add(child)
        const pid = child.pid!
        readline.createInterface({ input: child.stdout! }).on("line", (line) => {
          const [kind, runId, a] = line.split(" ")
          if (kind === "READY") {
            live.set(id, child)
            resolve()
          } else if (kind === "EXEC" && runId !== undefined) {
            const exec = { runId, index: Number(a), runner: id, pid, at: Date.now() }
            execs.push(exec)
            lastExec.set(runId, exec)
          } else if (kind === "ACTED") acted++
        })
        readline.createInterface({ input: child.stderr! }).on("line", (line) => {
          stderr.push(`${id}: ${line}`)
          if (stderr.length > 200) stderr.shift()
        })
        child.on("close", () => {
          if (live.get(id) === child) live.delete(id)
          reject(new Error(`runner ${id} exited before READY:\n${stderr.slice(-20).join("\n")}`))
        })
      })

    const ports = await Promise.all(Array.from({ length: RUNNERS }, freePort))
    const runners = ports.map((port, i) => ({ id: `r${i + 1}`, port }))
    const restarts: Array<Promise<void>> = []
    const t0 = Date.now()
    try {
      await Promise.all(runners.map((r) => start(r.id, r.port)))
      const runIds = Array.from({ length: RUNS }, (_, i) => `run-${i}`)
      const deadline = Date.now() + 360_000

      // Runs start one every START_EVERY_MS, so that kills land on every phase of the campaign; the
      // last few wait for the last kills, so that there is work to interrupt however slowly the
      // runners restart on a loaded machine.
      const starting = (async () => {
        for (const [i, runId] of runIds.entries()) {
          // run RUNS-4+k waits for kill KILLS-4+k: the last run is in flight for the last kill.
          while (i >= RUNS - 4 && kills.length < KILLS - RUNS + i && Date.now() < deadline) await sleep(200)
          await client.runPromise(LedgerAgent.start(runId))
          await sleep(START_EVERY_MS)
        }
      })()

      const allDone = () => outcomes.size === RUNS
      const killing = (async () => {
        while (!allDone() && kills.length < KILLS && Date.now() < deadline) {
          await sleep(600 + random() * 1_200)
          const candidates = [...live.entries()]
          if (candidates.length === 0) continue
          const [id, child] = candidates[Math.floor(random() * candidates.length)]!
          const victims = [...lastExec.values()].filter((e) => e.pid === child.pid && !outcomes.has(e.runId)).map((e) => e.runId)
          live.delete(id)
          child.kill("SIGKILL")
          kills.push({ runner: id, pid: child.pid!, at: Date.now(), victims })
          // A fresh port: the old one is back in the ephemeral range, where an outgoing connection may take it.
          restarts.push(sleep(RESTART_MS).then(freePort).then((port) => start(id, port)))
        }
      })()

      while (!allDone() && Date.now() < deadline) {
        await sleep(500)
        for (const runId of runIds) {
          if (outcomes.has(runId)) continue
          const polled = await client.runPromise(LedgerAgent.poll(runId)).catch(() => Option.none())
          if (Option.isSome(polled)) outcomes.set(runId, polled.value)
        }
      }
      await starting
      await killing
      await Promise.all(restarts)
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await client.dispose()
    }
    const wallMs = Date.now() - t0

    // Every run completed, with every charge.
    expect(outcomes.size, `runs finished (stderr tail:\n${stderr.slice(-15).join("\n")})`).toBe(RUNS)
    for (const [runId, exit] of outcomes) {
      expect(Exit.isSuccess(exit) ? exit.value : String(exit), runId).toMatchObject({ runId, charged: TURNS })
    }
    expect(kills.length).toBeGreaterThanOrEqual(KILLS)

    // The journal: 20 completed steps per run, none lost.
    const steps = await withDb(database, (sql) =>
      sql<{ run_id: string; n: string }>`SELECT run_id, count(*) AS n FROM llmr_steps WHERE status = 'completed' GROUP BY run_id`)
    expect(steps.length).toBe(RUNS)
    for (const row of steps) expect(Number(row.n), row.run_id).toBe(2 * TURNS)

    // The ledger: every charge once.
    const ledger = await withDb(database, (sql) =>
      sql<{ key: string; n: string }>`SELECT key, count(*) AS n FROM ledger GROUP BY key`)
    const duplicates = ledger.filter((row) => Number(row.n) > 1)
    expect(duplicates).toEqual([])
    expect(ledger.length).toBe(RUNS * TURNS)

    // A step executed again only after the runner executing it was killed.
    const seen = new Map<string, Exec>()
    let reExecuted = 0
    for (const exec of execs) {
      const key = `${exec.runId}#${exec.index}`
      const before = seen.get(key)
      if (before !== undefined) {
        reExecuted++
        const killed = kills.some((k) => k.pid === before.pid && k.at >= before.at && k.at <= exec.at)
        expect(killed, `${key} executed again by ${exec.runner} though ${before.runner} (pid ${before.pid}) was not killed`).toBe(true)
      }
      seen.set(key, exec)
    }

    // Takeovers: the next step of every interrupted run, after the kill, and by whom.
    const takeovers: Array<{ ms: number; byOther: boolean }> = []
    for (const kill of kills) {
      for (const runId of kill.victims) {
        const next = execs.find((e) => e.runId === runId && e.at > kill.at)
        if (next === undefined) continue // the kill came after its last step: nothing left to take over
        takeovers.push({ ms: next.at - kill.at, byOther: next.runner !== kill.runner })
      }
    }
    const perRunner: Record<string, number> = {}
    for (const e of execs) perRunner[e.runner] = (perRunner[e.runner] ?? 0) + 1
    const span = (runId: string) => {
      const mine = execs.filter((e) => e.runId === runId)
      return mine.length === 0 ? 0 : mine.at(-1)!.at - mine[0]!.at
    }
    console.log(`[cluster test] steps executed per runner ${JSON.stringify(perRunner)}; run spans (first to last step) median ${median(Array.from({ length: RUNS }, (_, i) => span(`run-${i}`)))} ms; kills at ${kills.map((k) => `${k.runner}+${k.at - t0}ms(${k.victims.length})`).join(" ")}`)
    const byOthers = takeovers.filter((t) => t.byOther).map((t) => t.ms)
    console.log(
      `[cluster test] ${RUNS} runs × ${2 * TURNS} steps, ${kills.length} SIGKILLs (${kills.reduce((n, k) => n + k.victims.length, 0)} runs interrupted), ${wallMs} ms; ` +
        `${reExecuted} steps re-executed after a kill, ${acted} charges acted, 0 duplicated; takeovers: ${takeovers.length} ` +
        `(${byOthers.length} by another runner) in ${Math.min(...takeovers.map((t) => t.ms))}–${Math.max(...takeovers.map((t) => t.ms))} ms, median ${median(takeovers.map((t) => t.ms))} ms`
    )
    expect(byOthers.length).toBeGreaterThan(0)
  }, 600_000)
})

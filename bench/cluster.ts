/**
 * bench:cluster — durable agent runs on the cluster engine (`effect-llm-resilience/workflow`: 3 runner
 * processes, @effect/cluster's workflow engine with its storage in Postgres, the journal in the same
 * database) against the single-process engine (`Agent.run` in one process) on the Postgres and the
 * SQLite checkpoint stores. The same agent everywhere (test/workflow/fixtures/ledgerAgent.ts: 10 turns
 * of a model call — the ChaosServer, no added latency — and an irreversible charge inserted into a
 * Postgres ledger table; 20 journaled steps per run), the same bound on runs in flight (3 × 6 = 18).
 *
 * Reported per engine: steps per second over the whole batch (first start to last step), step latency
 * (StepStarted → StepCompleted, journal write included: p50 / p99) and, for the cluster, the time from
 * `start` to a run's first step (placement by the engine, and the wait for one of the runner's 6 slots:
 * 60 runs start at once into 18 slots, so most of it is queueing).
 *
 * Run: npm run bench:cluster             (60 runs per engine)
 *      npm run bench:cluster -- --quick  (6 runs)
 * Needs Postgres on 127.0.0.1:5432 (database `test`, user `postgres`); creates and drops a database.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as readline from "node:readline"
import * as Agent from "../src/agent/Agent.js"
import type * as CheckpointStore from "../src/agent/CheckpointStore.js"
import type { StoreError } from "../src/agent/AgentError.js"
import * as PgCheckpointStore from "../src/agent/PgCheckpointStore.js"
import * as SqliteCheckpointStore from "../src/agent/SqliteCheckpointStore.js"
import * as LlmClient from "../src/LlmClient.js"
import * as OpenAi from "../src/providers/OpenAi.js"
import * as ChaosServer from "../src/testing/ChaosServer.js"
import * as Transport from "../src/Transport.js"
import { AgentWorkflow } from "../src/workflow/index.js"
import { LedgerAgent, ledgerDdl, program, TURNS } from "../test/workflow/fixtures/ledgerAgent.js"
import { banner, fmt, median, percentile, quick, table, writeResults } from "./lib/report.js"
import { barChart } from "./lib/svg.js"
import { freePort } from "../test/utils/freePort.js"

const RUNS = quick ? 6 : 60
const RUNNERS = 3
const PER_RUNNER = 6
const IN_FLIGHT = RUNNERS * PER_RUNNER
const STEPS = 2 * TURNS
const pgConfig = { host: process.env["PGHOST"] ?? "127.0.0.1", port: Number(process.env["PGPORT"] ?? 5432), username: "postgres" } as const
const database = `llmr_bench_cluster_${process.pid}`
const runnerScript = path.resolve("test/workflow/fixtures/runner.ts")

interface Row {
  readonly engine: string
  readonly runs: number
  readonly steps: number
  readonly wallMs: number
  readonly stepsPerSecond: number
  readonly stepP50Ms: number
  readonly stepP99Ms: number
  readonly firstStepP50Ms: number | undefined
  readonly firstStepP99Ms: number | undefined
}

const withDb = <A>(db: string, use: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(PgClient.make({ ...pgConfig, database: db }), use)).pipe(Effect.provide(Reactivity.layer)))

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const summarize = (engine: string, wallMs: number, stepMs: ReadonlyArray<number>, firstStepMs?: ReadonlyArray<number>): Row => ({
  engine,
  runs: RUNS,
  steps: stepMs.length,
  wallMs,
  stepsPerSecond: (RUNS * STEPS * 1000) / wallMs,
  stepP50Ms: median(stepMs),
  stepP99Ms: percentile(stepMs, 99),
  firstStepP50Ms: firstStepMs === undefined ? undefined : median(firstStepMs),
  firstStepP99Ms: firstStepMs === undefined ? undefined : percentile(firstStepMs, 99)
})

/** `Agent.run` in this process, RUNS runs with IN_FLIGHT at a time, on `store`. */
const single = (engine: string, chaosUrl: string, store: Layer.Layer<CheckpointStore.CheckpointStore, StoreError>) =>
  Effect.gen(function*() {
    const stepMs: Array<number> = []
    const openai = yield* OpenAi.make({ apiKey: Redacted.make("sk-bench"), baseUrl: `${chaosUrl}/v1` })
    const services = yield* Layer.build(Layer.merge(
      LlmClient.layerWithState({ routes: [{ name: "primary", provider: openai, model: "bench-model", policy: { breaker: false } }] }),
      PgClient.layer({ ...pgConfig, database, maxConnections: 8 })
    ))
    const agent = Agent.layer({
      onEvent: (event) => Effect.sync(() => void (event._tag === "StepCompleted" && stepMs.push(event.durationMs)))
    }).pipe(Layer.provide(store))
    const prefix = engine.replace(/\W+/g, "-")
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: RUNS }, (_, i) => `${prefix}-${i}`),
      (runId) => Agent.run(runId, Effect.provide(program(runId, "single", () => Effect.void), services)),
      { concurrency: IN_FLIGHT, discard: true }
    ).pipe(Effect.provide(agent))
    return summarize(engine, performance.now() - started, stepMs)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

/** RUNS runs started at once through a client, executed by 3 runner processes. */
const cluster = async (chaosUrl: string): Promise<Row> => {
  const children: Array<ChildProcess> = []
  const stepMs: Array<number> = []
  const firstStep = new Map<string, number>()
  let lastDone = 0
  const client = ManagedRuntime.make(AgentWorkflow.clientLayer().pipe(Layer.provide(PgClient.layer({ ...pgConfig, database, maxConnections: 4 }))))
  // The client creates the cluster's tables: three runners starting at once on a fresh database race
  // to create them.
  await client.runtime()
  const ports = await Promise.all(Array.from({ length: RUNNERS }, freePort))
  const ready = Array.from({ length: RUNNERS }, (_, i) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", runnerScript], {
        env: {
          ...process.env,
          RUNNER_ID: `r${i + 1}`,
          RUNNER_PORT: String(ports[i]),
          PG_DATABASE: database,
          CHAOS_URL: chaosUrl,
          LEASE_MS: String(AgentWorkflow.defaults.leaseDurationMs),
          LOCK_MS: String(AgentWorkflow.defaults.shardLockExpirationMs),
          ACT_DELAY_MS: "0",
          MAX_RUNS: String(PER_RUNNER)
        },
        stdio: ["ignore", "pipe", "inherit"]
      })
      children.push(child)
      child.on("exit", (code) => reject(new Error(`runner ${i + 1} exited (${code})`)))
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        const [kind, runId, , ms] = line.split(" ")
        if (kind === "READY") resolve()
        else if (kind === "EXEC" && runId !== undefined && !firstStep.has(runId)) firstStep.set(runId, performance.now())
        else if (kind === "DONE") {
          stepMs.push(Number(ms))
          lastDone = performance.now()
        }
      })
    }))
  try {
    await Promise.all(ready)
    await sleep(2_000) // let the runners divide the shards before the clock starts
    const runIds = Array.from({ length: RUNS }, (_, i) => `cluster-${i}`)
    const startedAt = new Map<string, number>()
    const started = performance.now()
    for (const runId of runIds) {
      startedAt.set(runId, performance.now())
      await client.runPromise(LedgerAgent.start(runId))
    }
    const pending = new Set(runIds)
    const deadline = performance.now() + 300_000
    while (pending.size > 0) {
      if (performance.now() > deadline) throw new Error(`${pending.size} runs not finished after 5 minutes`)
      await sleep(100)
      for (const runId of [...pending]) {
        if (Option.isSome(await client.runPromise(LedgerAgent.poll(runId)))) pending.delete(runId)
      }
    }
    const firstStepMs = runIds.map((runId) => firstStep.get(runId)! - startedAt.get(runId)!)
    return summarize(`cluster: ${RUNNERS} runner processes, Postgres`, lastDone - started, stepMs, firstStepMs)
  } finally {
    for (const child of children) {
      child.removeAllListeners("exit")
      child.kill("SIGKILL")
    }
    await client.dispose()
  }
}

const main = async () => {
  banner("cluster", `${RUNS} runs × ${STEPS} steps per engine, ${IN_FLIGHT} runs in flight`)
  await withDb("test", (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`))
  await withDb("test", (sql) => sql.unsafe(`CREATE DATABASE ${database}`))
  const dir = path.resolve(".tmp", `bench-cluster-${process.pid}`)
  fs.mkdirSync(dir, { recursive: true })
  const scope = Effect.runSync(Scope.make())
  try {
    await withDb(database, (sql) => sql.unsafe(ledgerDdl))
    await Effect.runPromise(Effect.scoped(Layer.build(PgCheckpointStore.layer({ ...pgConfig, database, maxConnections: 2 }))))
    const chaos = await Effect.runPromise(Scope.extend(ChaosServer.make({ scenario: { default: { content: { kind: "echo" } } } }), scope))
    const rows: Array<Row> = []
    rows.push(await Effect.runPromise(single("single process, Postgres store", chaos.url, PgCheckpointStore.layer({ ...pgConfig, database, tablePrefix: "single_", maxConnections: 8 }))))
    rows.push(await Effect.runPromise(single("single process, SQLite store", chaos.url, SqliteCheckpointStore.layer({ filename: path.join(dir, "journal.db") }))))
    rows.push(await cluster(chaos.url))
    table(
      ["engine", "runs", "steps/s", "step p50 ms", "step p99 ms", "start → first step p50 / p99 ms", "wall ms"],
      rows.map((r) => [
        r.engine,
        String(r.runs),
        fmt(r.stepsPerSecond, 0),
        fmt(r.stepP50Ms, 2),
        fmt(r.stepP99Ms, 2),
        r.firstStepP50Ms === undefined ? "—" : `${fmt(r.firstStepP50Ms, 0)} / ${fmt(r.firstStepP99Ms, 0)}`,
        fmt(r.wallMs, 0)
      ])
    )
    const base = rows[0]!
    for (const r of rows.slice(1)) console.log(`${r.engine}: ${fmt(r.stepsPerSecond / base.stepsPerSecond, 2)}× the steps/s of ${base.engine}`)
    writeResults("cluster", { runs: RUNS, stepsPerRun: STEPS, inFlight: IN_FLIGHT, rows }, barChart({
      title: "Durable agent steps per second",
      subtitle: `${RUNS} runs × ${STEPS} steps, ${IN_FLIGHT} in flight`,
      categories: rows.map((r) => r.engine.replace(/,.*/, "").replace("single process", "single")),
      series: [{ name: "steps/s", values: rows.map((r) => r.stepsPerSecond) }],
      y: { label: "steps/s", min: 0 }
    }))
  } finally {
    await Effect.runPromise(Scope.close(scope, Effect.runSync(Effect.exit(Effect.void))))
    await withDb("test", (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => undefined)
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(error)
  process.exit(1)
})

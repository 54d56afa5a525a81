/**
 * bench:checkpoint — what a durable step costs: the journal write of `Agent.step` (one transaction:
 * the fencing update of the run row + the step upsert, fsynced), a tool step (claim + record: two
 * transactions), a step that also snapshots the conversation, and a replay (read + decode), on
 * SQLite (`synchronous=FULL`, WAL, exclusive lock — the default — and shared locking) and Postgres
 * (127.0.0.1:5432, database `test`; skipped with a note when unreachable). Memory is the baseline:
 * the journal machinery without I/O.
 *
 * Targets (SQLite, FULL): ≤ 2 ms per step and ≥ 500 steps/s.
 *
 * Run: npm run bench:checkpoint             (2000 steps per row; Postgres 1000)
 *      npm run bench:checkpoint -- --quick  (200 steps per row)
 * The database files live under .tmp/ (the project's disk: fsync is real there; /tmp may be tmpfs).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as Agent from "../src/agent/Agent.js"
import type { StoreError } from "../src/agent/AgentError.js"
import * as CheckpointStore from "../src/agent/CheckpointStore.js"
import * as PgCheckpointStore from "../src/agent/PgCheckpointStore.js"
import * as SqliteCheckpointStore from "../src/agent/SqliteCheckpointStore.js"
import * as Tool from "../src/agent/Tool.js"
import { banner, fmt, median, percentile, quick, table, writeResults } from "./lib/report.js"

const STEPS = quick ? 200 : 2_000
const PG_STEPS = quick ? 200 : 1_000
const WARMUP = quick ? 20 : 100
const dir = path.resolve(".tmp", `bench-checkpoint-${process.pid}`)

interface Row {
  readonly backend: string
  readonly operation: string
  readonly steps: number
  readonly meanMs: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly stepsPerSecond: number
  readonly settings: Readonly<Record<string, string>>
}

const noop = Tool.make({
  name: "noop",
  effect: "irreversible",
  parameters: Schema.Struct({ i: Schema.Int }),
  success: Schema.Int,
  run: ({ i }) => Effect.succeed(i)
})

/** One turn's worth of conversation: each snapshot step appends one, so the snapshot grows as in a chat. */
const message = { role: "user" as const, content: "x".repeat(200) }
const SNAPSHOT_STEPS = 200

type Operation = "step" | "tool step (claim + record)" | "step + snapshot (grows to ~45 KB)" | "replay (read + decode)"

/** Runs `count` steps of one kind in one run; returns per-step latencies (ms) and the total. */
const measure = (runId: string, operation: Operation, count: number) =>
  Effect.gen(function*() {
    const latencies: Array<number> = []
    const program = Effect.gen(function*() {
      for (let i = 0; i < count; i++) {
        const started = performance.now()
        if (operation === "tool step (claim + record)") yield* Agent.useTool(noop, { i })
        else {
          if (operation === "step + snapshot (grows to ~45 KB)") yield* Agent.addMessages(message)
          yield* Agent.step("s", Schema.Number, Effect.succeed(i))
        }
        latencies.push(performance.now() - started)
      }
    })
    if (operation === "replay (read + decode)") {
      // Journal the run first, then time a full replay of it (run start included).
      yield* Agent.run(runId, Effect.forEach(Array.from({ length: count }), (_, i) => Agent.step("s", Schema.Number, Effect.succeed(i))))
      const started = performance.now()
      yield* Agent.run(runId, Effect.forEach(Array.from({ length: count }), (_, i) => Agent.step("s", Schema.Number, Effect.succeed(i))))
      // One figure for the whole replay: per-step latencies would be below the timer's resolution.
      return { latencies: [], totalMs: performance.now() - started }
    }
    const started = performance.now()
    yield* Agent.run(runId, program)
    return { latencies, totalMs: performance.now() - started }
  })

const bench = (
  backend: string,
  layer: Layer.Layer<CheckpointStore.CheckpointStore, StoreError>,
  count: number
): Effect.Effect<ReadonlyArray<Row>, unknown> =>
  Effect.gen(function*() {
    const store = yield* CheckpointStore.CheckpointStore
    const rows: Array<Row> = []
    yield* measure("warmup", "step", WARMUP)
    const operations: ReadonlyArray<Operation> = ["step", "tool step (claim + record)", "step + snapshot (grows to ~45 KB)", "replay (read + decode)"]
    for (const operation of operations) {
      const n = operation === "step + snapshot (grows to ~45 KB)" ? Math.min(count, SNAPSHOT_STEPS) : count
      const { latencies, totalMs } = yield* measure(`bench-${operation}`, operation, n)
      rows.push({
        backend,
        operation,
        steps: n,
        meanMs: totalMs / n,
        p50Ms: median(latencies),
        p99Ms: percentile(latencies, 99),
        stepsPerSecond: n / (totalMs / 1000),
        settings: store.settings
      })
    }
    return rows
  }).pipe(Effect.provide(Agent.layer({ heartbeatInterval: false }).pipe(Layer.provideMerge(layer))))

const postgresLayer = () =>
  PgCheckpointStore.layer({
    host: process.env["PGHOST"] ?? "127.0.0.1",
    port: Number(process.env["PGPORT"] ?? 5432),
    database: "test",
    username: "postgres",
    connectTimeout: "3 seconds",
    tablePrefix: `llmr_bench${process.pid}_`
  })

const dropPostgresTables = Effect.gen(function*() {
  const { PgClient } = yield* Effect.promise(() => import("@effect/sql-pg/PgClient"))
  const sql = yield* PgClient
  const p = `llmr_bench${process.pid}_`
  yield* sql.unsafe(`DROP TABLE IF EXISTS ${p}steps, ${p}runs, ${p}migrations`)
})

const main = Effect.gen(function*() {
  banner("checkpoint", "per-step checkpoint cost (journal write, fsynced)")
  fs.mkdirSync(dir, { recursive: true })
  const rows: Array<Row> = []
  const notes: Array<string> = [
    "The machine was shared with other jobs while this ran (see loadAverage): figures are provisional."
  ]
  rows.push(...yield* bench("memory", CheckpointStore.layerMemory, STEPS))
  rows.push(...yield* bench("sqlite (FULL, exclusive)", SqliteCheckpointStore.layer({ filename: path.join(dir, "exclusive.db") }), STEPS))
  rows.push(...yield* bench("sqlite (FULL, shared locking)", SqliteCheckpointStore.layer({ filename: path.join(dir, "shared.db"), exclusive: false }), STEPS))
  const pg = yield* Effect.either(bench("postgres", postgresLayer(), PG_STEPS))
  if (pg._tag === "Right") {
    rows.push(...pg.right)
    const { layer } = yield* Effect.promise(() => import("@effect/sql-pg/PgClient"))
    yield* Effect.ignore(dropPostgresTables.pipe(Effect.provide(layer({ host: process.env["PGHOST"] ?? "127.0.0.1", database: "test", username: "postgres" }))))
  } else {
    notes.push(`Postgres skipped: ${String(pg.left)}`)
    console.log(`Postgres skipped: ${String(pg.left)}\n`)
  }
  fs.rmSync(dir, { recursive: true, force: true })

  table(
    ["backend", "operation", "steps", "ms/step (mean)", "p50 ms", "p99 ms", "steps/s"],
    rows.map((r) => [r.backend, r.operation, String(r.steps), fmt(r.meanMs, 3), fmt(r.p50Ms, 3), fmt(r.p99Ms, 3), fmt(r.stepsPerSecond, 0)])
  )
  const sqliteStep = rows.find((r) => r.backend === "sqlite (FULL, exclusive)" && r.operation === "step")
  const targets = sqliteStep === undefined ? undefined : {
    msPerStep: { target: 2, measured: +sqliteStep.meanMs.toFixed(3), met: sqliteStep.meanMs <= 2 },
    stepsPerSecond: { target: 500, measured: Math.round(sqliteStep.stepsPerSecond), met: sqliteStep.stepsPerSecond >= 500 }
  }
  if (targets !== undefined) {
    console.log(`\nSQLite FULL step: ${targets.msPerStep.measured} ms/step (target ≤ 2: ${targets.msPerStep.met ? "met" : "MISSED"}), ${targets.stepsPerSecond.measured} steps/s (target ≥ 500: ${targets.stepsPerSecond.met ? "met" : "MISSED"})`)
  }
  for (const note of notes) console.log(`note: ${note}`)
  writeResults("checkpoint", { rows, targets, notes, filesystem: "the project's disk (.tmp/)" }, {})
})

Effect.runPromise(main).catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})

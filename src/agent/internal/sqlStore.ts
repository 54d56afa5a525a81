/**
 * The SQL checkpoint store, shared by SQLite and Postgres: the statements are the same (both speak
 * `ON CONFLICT` and `RETURNING`); only the connection setup differs.
 *
 * Fencing: every write of a run first updates the run row `WHERE epoch = lease.epoch AND owner =
 * lease.owner` inside the write's transaction. A lost lease makes that update match nothing, and the
 * transaction rolls back with `LeaseLost` — in Postgres the row lock it takes also orders the write
 * against a concurrent acquisition. `confirm` (before a tool acts) additionally requires the lease to be
 * live (`lease_until > now`) and extends it.
 *
 * @internal
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { LeaseLost, RunLocked, StoreError } from "../AgentError.js"
import type { CheckpointStoreShape, Lease, RunRecord, RunStatus, StepRecord } from "../CheckpointStore.js"
import { redact } from "../../internal/redact.js"

type Backend = "sqlite" | "postgres"

/** Turns anything a store operation failed with into a `StoreError` with a readable, redacted message. */
export const makeStoreError = (backend: StoreError["backend"], operation: string, cause: unknown): StoreError => {
  const parts: Array<string> = []
  let current: unknown = cause
  // SqlError wraps the driver's error in `cause`; the driver's message is the useful one.
  for (let depth = 0; depth < 3 && current !== undefined && current !== null; depth++) {
    if (typeof current === "object" && "message" in current && typeof current.message === "string" && current.message !== "") {
      if (!parts.includes(current.message)) parts.push(current.message)
    }
    current = typeof current === "object" && "cause" in current ? current.cause : undefined
  }
  const message = parts.length === 0 ? String(cause) : parts.join(": ")
  return new StoreError({ backend, operation, message: redact(`${operation} failed: ${message}`) })
}

const PREFIX = /^[A-Za-z_][A-Za-z0-9_]{0,40}$/

const num = (u: unknown): number =>
  typeof u === "number" ? u : typeof u === "bigint" ? Number(u) : typeof u === "string" ? Number(u) : Number.NaN

const str = (u: unknown): string | null => (typeof u === "string" ? u : u === null || u === undefined ? null : String(u))

type Row = Readonly<Record<string, unknown>>

const toStep = (row: Row): StepRecord => ({
  runId: String(row["run_id"]),
  index: num(row["step_index"]),
  name: String(row["name"]),
  key: String(row["step_key"]),
  kind: String(row["kind"]) as StepRecord["kind"],
  effect: str(row["effect"]),
  status: String(row["status"]) as StepRecord["status"],
  argsHash: str(row["args_hash"]),
  result: str(row["result"]),
  startedAt: num(row["started_at"]),
  completedAt: row["completed_at"] === null || row["completed_at"] === undefined ? null : num(row["completed_at"])
})

const toRun = (row: Row): RunRecord => ({
  runId: String(row["run_id"]),
  status: String(row["status"]) as RunStatus,
  owner: str(row["owner"]),
  epoch: num(row["epoch"]),
  leaseUntil: num(row["lease_until"]),
  createdAt: num(row["created_at"]),
  updatedAt: num(row["updated_at"]),
  conversation: str(row["conversation"])
})

/** The journal schema, version 1. Types that both dialects accept with the same meaning. */
const createJournal = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const runs = sql(`${prefix}runs`)
    const steps = sql(`${prefix}steps`)
    yield* sql`CREATE TABLE ${runs} (
      run_id TEXT PRIMARY KEY,
      status TEXT NOT NULL,
      owner TEXT,
      epoch BIGINT NOT NULL DEFAULT 0,
      lease_until BIGINT NOT NULL DEFAULT 0,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      conversation TEXT
    )`
    yield* sql`CREATE TABLE ${steps} (
      run_id TEXT NOT NULL,
      step_index INTEGER NOT NULL,
      name TEXT NOT NULL,
      step_key TEXT NOT NULL,
      kind TEXT NOT NULL,
      effect TEXT,
      status TEXT NOT NULL,
      args_hash TEXT,
      result TEXT,
      started_at BIGINT NOT NULL,
      completed_at BIGINT,
      PRIMARY KEY (run_id, step_index)
    )`
    yield* sql`CREATE INDEX ${sql(`${prefix}runs_updated_at`)} ON ${runs} (updated_at)`
  })

const migrate = (backend: Backend, sql: SqlClient.SqlClient, prefix: string): Effect.Effect<void, StoreError> =>
  Migrator.make({})({
    loader: Migrator.fromRecord({ "1_create_journal": createJournal(prefix) }),
    table: `${prefix}migrations`
  }).pipe(
    Effect.provideService(SqlClient.SqlClient, sql),
    Effect.asVoid,
    Effect.mapError((error) => makeStoreError(backend, "migrate", error)),
    // The Migrator turns a failing migration into a defect; a store that cannot migrate is a typed failure.
    Effect.catchAllDefect((defect) => Effect.fail(makeStoreError(backend, "migrate", defect)))
  )

/** Builds the store over a connected client with migrated tables. */
const makeSqlStore = (
  backend: Backend,
  sql: SqlClient.SqlClient,
  prefix: string,
  settings: Readonly<Record<string, string>>
): CheckpointStoreShape => {
  const runs = sql(`${prefix}runs`)
  const steps = sql(`${prefix}steps`)
  const fail = (operation: string) => (error: SqlError) => makeStoreError(backend, operation, error)

  /** The fencing update: touches the run row only while the lease is still ours. */
  const fence = (lease: Lease, now: number, conversation: string | undefined) =>
    Effect.flatMap(
      conversation === undefined
        ? sql`UPDATE ${runs} SET updated_at = ${now}
              WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner} RETURNING run_id`
        : sql`UPDATE ${runs} SET updated_at = ${now}, conversation = ${conversation}
              WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner} RETURNING run_id`,
      (rows) =>
        rows.length === 1
          ? Effect.void
          : Effect.fail(new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) was taken over` }))
    )

  const stepValues = (step: StepRecord) =>
    sql`(${step.runId}, ${step.index}, ${step.name}, ${step.key}, ${step.kind}, ${step.effect}, ${step.status},
         ${step.argsHash}, ${step.result}, ${step.startedAt}, ${step.completedAt})`

  const columns = sql.literal(
    "(run_id, step_index, name, step_key, kind, effect, status, args_hash, result, started_at, completed_at)"
  )

  return {
    backend,
    settings,
    acquire: (runId, owner, { leaseMs, now }) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO ${runs} (run_id, status, owner, epoch, lease_until, created_at, updated_at, conversation)
                   VALUES (${runId}, 'running', NULL, 0, 0, ${now}, ${now}, NULL) ON CONFLICT (run_id) DO NOTHING`
        const granted = yield* sql`UPDATE ${runs}
          SET owner = ${owner}, epoch = epoch + 1, lease_until = ${now + leaseMs}, status = 'running', updated_at = ${now}
          WHERE run_id = ${runId} AND (owner IS NULL OR owner = ${owner} OR lease_until <= ${now})
          RETURNING epoch`
        if (granted.length === 1) return { runId, owner, epoch: num(granted[0]!["epoch"]) } satisfies Lease
        const holder = yield* sql`SELECT owner, lease_until FROM ${runs} WHERE run_id = ${runId}`
        const current = holder[0]
        return yield* new RunLocked({
          runId,
          ...(current !== undefined && typeof current["owner"] === "string" ? { owner: current["owner"] } : {}),
          ...(current !== undefined ? { leaseUntil: num(current["lease_until"]) } : {}),
          message: `run ${runId} is held by another executor until its lease expires`
        })
      })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail("acquire")(e)))),

    renew: (lease, { leaseMs, now }) =>
      sql`UPDATE ${runs} SET lease_until = ${now + leaseMs}
          WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner} RETURNING run_id`.pipe(
        Effect.mapError(fail("renew")),
        Effect.flatMap((rows) =>
          rows.length === 1
            ? Effect.void
            : Effect.fail(new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) was taken over` }))
        )
      ),

    confirm: (lease, { leaseMs, now }) =>
      // One statement: the row lock orders it against a concurrent acquisition (Postgres), and a
      // takeover (other epoch or owner) or an expired lease matches nothing.
      sql`UPDATE ${runs} SET lease_until = ${now + leaseMs}
          WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner} AND lease_until > ${now}
          RETURNING run_id`.pipe(
        Effect.mapError(fail("confirm lease")),
        Effect.flatMap((rows) =>
          rows.length === 1
            ? Effect.void
            : Effect.fail(new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) expired or was taken over` }))
        )
      ),

    release: (lease, status, now) =>
      sql`UPDATE ${runs} SET owner = NULL, lease_until = 0, status = ${status}, updated_at = ${now}
          WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner}`.pipe(
        Effect.asVoid,
        Effect.mapError(fail("release"))
      ),

    run: (runId) =>
      sql`SELECT * FROM ${runs} WHERE run_id = ${runId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toRun)),
        Effect.mapError(fail("read run"))
      ),

    steps: (runId) =>
      sql`SELECT * FROM ${steps} WHERE run_id = ${runId} ORDER BY step_index`.pipe(
        Effect.map((rows) => rows.map(toStep)),
        Effect.mapError(fail("read journal"))
      ),

    claim: (lease, step) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* fence(lease, step.startedAt, undefined)
        const inserted = yield* sql`INSERT INTO ${steps} ${columns} VALUES ${stepValues(step)}
                                    ON CONFLICT (run_id, step_index) DO NOTHING RETURNING step_index`
        if (inserted.length === 0) {
          return yield* new StoreError({
            backend,
            operation: "claim",
            message: `step ${step.index} of run ${step.runId} is already journaled`
          })
        }
      })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail("claim")(e)))),

    record: (lease, step, conversation) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* fence(lease, step.completedAt ?? step.startedAt, conversation)
        yield* sql`INSERT INTO ${steps} ${columns} VALUES ${stepValues(step)}
                   ON CONFLICT (run_id, step_index) DO UPDATE SET
                     name = excluded.name, step_key = excluded.step_key, kind = excluded.kind, effect = excluded.effect,
                     status = excluded.status, args_hash = excluded.args_hash, result = excluded.result,
                     completed_at = excluded.completed_at`
      })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail("record")(e)))),

    prune: ({ before, includeUnfinished, now }) => {
      const finished = sql.literal(includeUnfinished ? "" : "AND status IN ('completed', 'failed')")
      return sql.withTransaction(Effect.gen(function*() {
        yield* sql`DELETE FROM ${steps} WHERE run_id IN (
          SELECT run_id FROM ${runs} WHERE updated_at < ${before} AND (owner IS NULL OR lease_until <= ${now}) ${finished})`
        const removed = yield* sql`DELETE FROM ${runs}
          WHERE updated_at < ${before} AND (owner IS NULL OR lease_until <= ${now}) ${finished} RETURNING run_id`
        return removed.length
      })).pipe(Effect.mapError(fail("prune")))
    }
  }
}

const checkPrefix = (backend: Backend, prefix: string | undefined): Effect.Effect<string, StoreError> => {
  const value = prefix ?? "llmr_"
  return PREFIX.test(value)
    ? Effect.succeed(value)
    : Effect.fail(new StoreError({ backend, operation: "open", message: `invalid table prefix ${JSON.stringify(value)}: use letters, digits and _ (at most 41)` }))
}

/** @internal */
export interface SqliteStoreOptions {
  readonly filename: string
  readonly tablePrefix: string | undefined
  readonly exclusive: boolean
  readonly busyTimeoutMs: number
  readonly connect: (
    config: SqliteClient.SqliteClientConfig
  ) => Effect.Effect<SqliteClient.SqliteClient, never, Scope.Scope | Reactivity.Reactivity>
}

const pragma = (sql: SqlClient.SqlClient, statement: string) =>
  Effect.mapError(sql.unsafe<Row>(statement), (error) => makeStoreError("sqlite", `open (${statement})`, error))

/** A locked file at open means another process (or connection) holds it: say so. */
const explainLock = (filename: string) => (error: StoreError): StoreError =>
  /locked|busy/i.test(error.message)
    ? new StoreError({
      ...error,
      message: `${error.message} — ${filename} is in use by another process or connection (one process per file)`
    })
    : error

/**
 * Opens the file: exclusive locking (before WAL, so no shared-memory index is needed), WAL,
 * `synchronous=FULL` read back, migrations, then — holding the file lock, so no other process can be
 * running — releases leases a dead process left behind.
 */
export const makeSqliteStore = (
  options: SqliteStoreOptions
): Effect.Effect<CheckpointStoreShape, StoreError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const prefix = yield* checkPrefix("sqlite", options.tablePrefix)
    const sql = yield* Effect.catchAllDefect(
      options.connect({ filename: options.filename, disableWAL: true }),
      (defect) => Effect.fail(makeStoreError("sqlite", `open ${options.filename}`, defect))
    )
    yield* pragma(sql, `PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs))}`)
    if (options.exclusive) yield* pragma(sql, "PRAGMA locking_mode = EXCLUSIVE")
    const journal = yield* pragma(sql, "PRAGMA journal_mode = WAL")
    if (String(journal[0]?.["journal_mode"]).toLowerCase() !== "wal") {
      return yield* new StoreError({ backend: "sqlite", operation: "open", message: `journal_mode=WAL could not be set (got ${String(journal[0]?.["journal_mode"])})` })
    }
    yield* pragma(sql, "PRAGMA synchronous = FULL")
    const synchronous = yield* pragma(sql, "PRAGMA synchronous")
    // 2 = FULL: with WAL, every commit is fsynced; NORMAL (the client's default) can lose the last
    // commits on power loss, which for a journal means re-running a step that had completed.
    if (num(synchronous[0]?.["synchronous"]) !== 2) {
      return yield* new StoreError({ backend: "sqlite", operation: "open", message: `synchronous=FULL could not be set (read back ${String(synchronous[0]?.["synchronous"])})` })
    }
    if (options.exclusive) {
      // Take the write lock now (and, in exclusive mode, keep it): fail fast if another process has the file.
      yield* Effect.mapError(
        Effect.zipRight(sql.unsafe("BEGIN IMMEDIATE"), sql.unsafe("COMMIT")),
        (error) => makeStoreError("sqlite", `open ${options.filename}`, error)
      )
    }
    yield* migrate("sqlite", sql, prefix)
    if (options.exclusive) {
      yield* Effect.mapError(
        sql`UPDATE ${sql(`${prefix}runs`)} SET owner = NULL, lease_until = 0 WHERE owner IS NOT NULL`,
        (error) => makeStoreError("sqlite", "release stale leases", error)
      )
    }
    const locking = yield* pragma(sql, "PRAGMA locking_mode")
    return makeSqlStore("sqlite", sql, prefix, {
      journal_mode: "wal",
      synchronous: "FULL",
      locking_mode: String(locking[0]?.["locking_mode"]).toLowerCase()
    })
  }).pipe(Effect.mapError(explainLock(options.filename)))

/** The Postgres store over a connected client (the `PgClient` of `PgCheckpointStore`). */
export const makePostgresStore = (
  sql: SqlClient.SqlClient,
  options: { readonly tablePrefix: string | undefined }
): Effect.Effect<CheckpointStoreShape, StoreError> =>
  Effect.gen(function*() {
    const prefix = yield* checkPrefix("postgres", options.tablePrefix)
    yield* migrate("postgres", sql, prefix)
    const commit = yield* Effect.mapError(
      sql.unsafe<Row>("SHOW synchronous_commit"),
      (error) => makeStoreError("postgres", "open", error)
    )
    return makeSqlStore("postgres", sql, prefix, { synchronous_commit: String(commit[0]?.["synchronous_commit"]) })
  })

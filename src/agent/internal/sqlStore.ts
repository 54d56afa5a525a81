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
import * as fs from "node:fs"
import type * as Scope from "effect/Scope"
import { LeaseLost, RunAlreadyFinished, RunCancelled, RunLocked, RunNotFound, StoreError } from "../AgentError.js"
import type {
  CheckpointStoreShape,
  Lease,
  RunRecord,
  RunStatus,
  RunSummary,
  StepCounts,
  StepRecord,
  WriteResult
} from "../CheckpointStore.js"
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

const numOrNull = (u: unknown): number | null => (u === null || u === undefined ? null : num(u))

const toRunFields = (row: Row): Omit<RunRecord, "conversation"> => ({
  runId: String(row["run_id"]),
  status: String(row["status"]) as RunStatus,
  owner: str(row["owner"]),
  epoch: num(row["epoch"]),
  leaseUntil: num(row["lease_until"]),
  createdAt: num(row["created_at"]),
  updatedAt: num(row["updated_at"]),
  cancelRequestedAt: numOrNull(row["cancel_requested_at"]),
  cancelReason: str(row["cancel_reason"])
})

const toRun = (row: Row): RunRecord => ({ ...toRunFields(row), conversation: str(row["conversation"]) })

const noSteps: StepCounts = { total: 0, completed: 0, started: 0, refused: 0, unknown: 0 }

/** The `RunCancelled` of a run row (or of what an acquisition read of it). */
const cancelledError = (runId: string, row: Row | undefined): RunCancelled => {
  const requestedAt = numOrNull(row?.["cancel_requested_at"])
  const reason = str(row?.["cancel_reason"])
  return new RunCancelled({
    runId,
    ...(requestedAt === null ? {} : { requestedAt }),
    ...(reason === null ? {} : { reason }),
    message: `run ${runId} was cancelled${reason === null ? "" : ` (${reason})`}; a cancelled run is never resumed`
  })
}

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

/**
 * Version 2: durable cancel requests. Two nullable columns, so rows written by version 1 read as "no
 * request"; `status` is plain text, so the new `cancelled` value needs no change. One column per
 * statement: SQLite's ALTER TABLE adds one at a time.
 */
const addCancelRequests = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const runs = sql(`${prefix}runs`)
    yield* sql`ALTER TABLE ${runs} ADD COLUMN cancel_requested_at BIGINT`
    yield* sql`ALTER TABLE ${runs} ADD COLUMN cancel_reason TEXT`
  })

/** Every migration of the journal, in order (the Migrator applies those a database has not seen). */
export const journalMigrations = (prefix: string) => ({
  "1_create_journal": createJournal(prefix),
  "2_cancel_requests": addCancelRequests(prefix)
})

/**
 * For stores opened with `create: false` (operators' tools): a database without the journal's
 * migrations table is the wrong database, file or prefix — say so before the Migrator creates tables.
 */
const requireJournal = (backend: Backend, sql: SqlClient.SqlClient, prefix: string, where: string): Effect.Effect<void, StoreError> =>
  Effect.flatMap(
    Effect.mapError(
      backend === "sqlite"
        ? sql`SELECT name FROM sqlite_master WHERE type = 'table' AND name = ${`${prefix}migrations`}`
        : sql`SELECT to_regclass(${`${prefix}migrations`}) AS name`,
      (error) => makeStoreError(backend, "open", error)
    ),
    (rows) =>
      rows.length > 0 && typeof rows[0]?.["name"] === "string"
        ? Effect.void
        : Effect.fail(
          new StoreError({
            backend,
            operation: "open",
            message: `${where} holds no checkpoint journal (no table ${prefix}migrations): a different database, or another table prefix? Nothing was created`
          })
        )
  )

const migrate = (backend: Backend, sql: SqlClient.SqlClient, prefix: string): Effect.Effect<void, StoreError> =>
  Migrator.make({})({
    loader: Migrator.fromRecord(journalMigrations(prefix)),
    table: `${prefix}migrations`
  }).pipe(
    Effect.provideService(SqlClient.SqlClient, sql),
    Effect.asVoid,
    Effect.mapError((error) => makeStoreError(backend, "migrate", error)),
    // The Migrator turns a failing migration into a defect; a store that cannot migrate is a typed failure.
    Effect.catchAllDefect((defect) => Effect.fail(makeStoreError(backend, "migrate", defect)))
  )

/** The client, the two tables and the error wrapper every statement of a store uses. */
const tablesOf = (backend: Backend, sql: SqlClient.SqlClient, prefix: string) => ({
  backend,
  sql,
  runs: sql(`${prefix}runs`),
  steps: sql(`${prefix}steps`),
  fail: (operation: string) => (error: SqlError) => makeStoreError(backend, operation, error)
})

type Tables = ReturnType<typeof tablesOf>

/** `CheckpointStoreShape.acquire`. */
const acquireRun = (
  { fail, runs, sql }: Tables,
  runId: string,
  owner: string,
  { leaseMs, now }: { readonly leaseMs: number; readonly now: number }
): Effect.Effect<Lease, RunLocked | RunCancelled | StoreError> =>
  sql.withTransaction(Effect.gen(function*() {
    yield* sql`INSERT INTO ${runs} (run_id, status, owner, epoch, lease_until, created_at, updated_at, conversation)
               VALUES (${runId}, 'running', NULL, 0, 0, ${now}, ${now}, NULL) ON CONFLICT (run_id) DO NOTHING`
    // A cancel request bars the run from every executor (a completed run stays replayable).
    const granted = yield* sql`UPDATE ${runs}
      SET owner = ${owner}, epoch = epoch + 1, lease_until = ${now + leaseMs}, status = 'running', updated_at = ${now}
      WHERE run_id = ${runId} AND (owner IS NULL OR owner = ${owner} OR lease_until <= ${now})
        AND (cancel_requested_at IS NULL OR status = 'completed')
      RETURNING epoch`
    if (granted.length === 1) return { _tag: "Granted", lease: { runId, owner, epoch: num(granted[0]!["epoch"]) } } as const
    const holder = yield* sql`SELECT owner, lease_until, status, cancel_requested_at, cancel_reason FROM ${runs} WHERE run_id = ${runId}`
    const current = holder[0]
    if (current !== undefined && numOrNull(current["cancel_requested_at"]) !== null) {
      // Its executor died before it could stop: nothing holds the run, so it is cancelled now.
      yield* sql`UPDATE ${runs} SET status = 'cancelled', owner = NULL, lease_until = 0, updated_at = ${now}
                 WHERE run_id = ${runId} AND status = 'running' AND (owner IS NULL OR lease_until <= ${now})`
      return { _tag: "Refused", error: cancelledError(runId, current) } as const
    }
    return {
      _tag: "Refused",
      error: new RunLocked({
        runId,
        ...(current !== undefined && typeof current["owner"] === "string" ? { owner: current["owner"] } : {}),
        ...(current !== undefined ? { leaseUntil: num(current["lease_until"]) } : {}),
        message: `run ${runId} is held by another executor until its lease expires`
      })
    } as const
  })).pipe(
    // Decided inside the transaction, failed outside it: a refusal still commits the cancellation.
    Effect.mapError(fail("acquire")),
    Effect.flatMap((outcome) => outcome._tag === "Granted" ? Effect.succeed(outcome.lease) : Effect.fail(outcome.error))
  )

/** `CheckpointStoreShape.list`: a page of runs with their step counts. */
const listRuns = (
  { fail, runs, sql, steps }: Tables,
  { limit, status }: { readonly limit: number; readonly status?: RunStatus | undefined }
): Effect.Effect<ReadonlyArray<RunSummary>, StoreError> =>
  Effect.gen(function*() {
    const filter = status === undefined ? sql.literal("") : sql`WHERE status = ${status}`
    const page = yield* sql`SELECT run_id, status, owner, epoch, lease_until, created_at, updated_at, cancel_requested_at, cancel_reason
      FROM ${runs} ${filter} ORDER BY updated_at DESC, run_id LIMIT ${Math.max(0, Math.floor(limit))}`
    if (page.length === 0) return []
    // Counted for this page only, by the steps' primary key (run_id first).
    const counts = yield* sql`SELECT run_id, status, COUNT(*) AS n FROM ${steps}
      WHERE ${sql.in("run_id", page.map((row) => String(row["run_id"])))} GROUP BY run_id, status`
    const byRun = new Map<string, { -readonly [K in keyof StepCounts]: number }>()
    for (const row of counts) {
      const id = String(row["run_id"])
      const tally = byRun.get(id) ?? { ...noSteps }
      const n = num(row["n"])
      tally.total += n
      const stepStatus = String(row["status"])
      if (stepStatus === "completed" || stepStatus === "started" || stepStatus === "refused" || stepStatus === "unknown") {
        tally[stepStatus] += n
      }
      byRun.set(id, tally)
    }
    return page.map((row): RunSummary => ({ ...toRunFields(row), steps: byRun.get(String(row["run_id"])) ?? noSteps }))
  }).pipe(Effect.mapError(fail("list runs")))

/** `CheckpointStoreShape.cancel`. */
const cancelRun = (
  { fail, runs, sql }: Tables,
  runId: string,
  { now, reason }: { readonly now: number; readonly reason?: string | undefined }
): Effect.Effect<RunRecord, RunNotFound | RunAlreadyFinished | StoreError> =>
  sql.withTransaction(Effect.gen(function*() {
    const why = reason ?? null
    // Nothing holds the run (never leased, released, or its lease expired): cancelled now, and the
    // lease voided so that an executor still running on an expired lease is fenced off.
    const stopped = yield* sql`UPDATE ${runs}
      SET status = 'cancelled', owner = NULL, lease_until = 0, updated_at = ${now},
          cancel_requested_at = COALESCE(cancel_requested_at, ${now}), cancel_reason = COALESCE(cancel_reason, ${why})
      WHERE run_id = ${runId} AND status NOT IN ('completed', 'cancelled') AND (owner IS NULL OR lease_until <= ${now})
      RETURNING *`
    if (stopped.length === 1) return { _tag: "Done", run: toRun(stopped[0]!) } as const
    // A live executor holds it: record the request for it to observe at its next step boundary.
    const requested = yield* sql`UPDATE ${runs}
      SET updated_at = ${now},
          cancel_requested_at = COALESCE(cancel_requested_at, ${now}), cancel_reason = COALESCE(cancel_reason, ${why})
      WHERE run_id = ${runId} AND status NOT IN ('completed', 'cancelled')
      RETURNING *`
    if (requested.length === 1) return { _tag: "Done", run: toRun(requested[0]!) } as const
    const existing = yield* sql`SELECT status FROM ${runs} WHERE run_id = ${runId}`
    const finished = existing[0]?.["status"]
    return {
      _tag: "Refused",
      error: finished === "completed" || finished === "cancelled"
        ? new RunAlreadyFinished({ runId, status: finished, message: `run ${runId} is already ${finished}; there is nothing to cancel` })
        : new RunNotFound({ runId, message: `there is no run ${runId} in this store` })
    } as const
  })).pipe(
    Effect.mapError(fail("cancel")),
    Effect.flatMap((outcome) => outcome._tag === "Done" ? Effect.succeed(outcome.run) : Effect.fail(outcome.error))
  )

/** Builds the store over a connected client with migrated tables. */
const makeSqlStore = (
  backend: Backend,
  sql: SqlClient.SqlClient,
  prefix: string,
  settings: Readonly<Record<string, string>>
): CheckpointStoreShape => {
  const t = tablesOf(backend, sql, prefix)
  const { fail, runs, steps } = t

  const lost = (lease: Lease) =>
    new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) was taken over` })

  /**
   * The fencing update: touches the run row only while the lease is still ours, and reads the cancel
   * request in the same statement (no extra round trip per step).
   */
  const fence = (lease: Lease, now: number, conversation: string | undefined) =>
    Effect.flatMap(
      conversation === undefined
        ? sql`UPDATE ${runs} SET updated_at = ${now}
              WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner}
              RETURNING run_id, cancel_requested_at, cancel_reason`
        : sql`UPDATE ${runs} SET updated_at = ${now}, conversation = ${conversation}
              WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner}
              RETURNING run_id, cancel_requested_at, cancel_reason`,
      (rows) => rows.length === 1 ? Effect.succeed(rows[0]!) : Effect.fail(lost(lease))
    )

  const writeResult = (row: Row): WriteResult => ({ cancelRequested: numOrNull(row["cancel_requested_at"]) !== null })

  const stepValues = (step: StepRecord) =>
    sql`(${step.runId}, ${step.index}, ${step.name}, ${step.key}, ${step.kind}, ${step.effect}, ${step.status},
         ${step.argsHash}, ${step.result}, ${step.startedAt}, ${step.completedAt})`

  const columns = sql.literal(
    "(run_id, step_index, name, step_key, kind, effect, status, args_hash, result, started_at, completed_at)"
  )

  return {
    backend,
    settings,
    acquire: (runId, owner, timing) => acquireRun(t, runId, owner, timing),

    renew: (lease, { leaseMs, now }) =>
      sql`UPDATE ${runs} SET lease_until = ${now + leaseMs}
          WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner}
          RETURNING run_id, cancel_requested_at`.pipe(
        Effect.mapError(fail("renew")),
        Effect.flatMap((rows) => rows.length === 1 ? Effect.succeed(writeResult(rows[0]!)) : Effect.fail(lost(lease)))
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
      (status === "completed"
        ? sql`UPDATE ${runs} SET owner = NULL, lease_until = 0, status = 'completed', updated_at = ${now}
              WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner}`
        : sql`UPDATE ${runs} SET owner = NULL, lease_until = 0, updated_at = ${now},
                status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE ${status} END
              WHERE run_id = ${lease.runId} AND epoch = ${lease.epoch} AND owner = ${lease.owner}`).pipe(
        Effect.asVoid,
        Effect.mapError(fail("release"))
      ),

    run: (runId) =>
      sql`SELECT * FROM ${runs} WHERE run_id = ${runId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toRun)),
        Effect.mapError(fail("read run"))
      ),

    list: (options) => listRuns(t, options),

    cancel: (runId, options) => cancelRun(t, runId, options),

    steps: (runId) =>
      sql`SELECT * FROM ${steps} WHERE run_id = ${runId} ORDER BY step_index`.pipe(
        Effect.map((rows) => rows.map(toStep)),
        Effect.mapError(fail("read journal"))
      ),

    claim: (lease, step) =>
      sql.withTransaction(Effect.gen(function*() {
        const run = yield* fence(lease, step.startedAt, undefined)
        // The claim is a side effect's commit point: after a cancel request, none is claimed. In
        // Postgres the fence's row lock orders this against a concurrent request.
        if (numOrNull(run["cancel_requested_at"]) !== null) return yield* cancelledError(lease.runId, run)
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
        const run = yield* fence(lease, step.completedAt ?? step.startedAt, conversation)
        yield* sql`INSERT INTO ${steps} ${columns} VALUES ${stepValues(step)}
                   ON CONFLICT (run_id, step_index) DO UPDATE SET
                     name = excluded.name, step_key = excluded.step_key, kind = excluded.kind, effect = excluded.effect,
                     status = excluded.status, args_hash = excluded.args_hash, result = excluded.result,
                     completed_at = excluded.completed_at`
        return writeResult(run)
      })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(fail("record")(e)))),

    prune: ({ before, includeUnfinished, now }) => {
      const finished = sql.literal(includeUnfinished ? "" : "AND status IN ('completed', 'failed', 'cancelled')")
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
  /** Create the file and tables when missing (false: fail, and create nothing). */
  readonly create: boolean
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
    // Opening a missing file would create it: refuse first.
    if (!options.create && options.filename !== ":memory:" && !fs.existsSync(options.filename)) {
      return yield* new StoreError({ backend: "sqlite", operation: "open", message: `no checkpoint database at ${options.filename}` })
    }
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
    if (!options.create) yield* requireJournal("sqlite", sql, prefix, options.filename)
    yield* migrate("sqlite", sql, prefix)
    if (options.exclusive) {
      // Released as `release` would: a run its dead executor was asked to cancel is cancelled.
      yield* Effect.mapError(
        sql`UPDATE ${sql(`${prefix}runs`)} SET owner = NULL, lease_until = 0,
              status = CASE WHEN cancel_requested_at IS NOT NULL AND status = 'running' THEN 'cancelled' ELSE status END
            WHERE owner IS NOT NULL`,
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
  options: { readonly tablePrefix: string | undefined; readonly create: boolean }
): Effect.Effect<CheckpointStoreShape, StoreError> =>
  Effect.gen(function*() {
    const prefix = yield* checkPrefix("postgres", options.tablePrefix)
    if (!options.create) yield* requireJournal("postgres", sql, prefix, "the database")
    yield* migrate("postgres", sql, prefix)
    const commit = yield* Effect.mapError(
      sql.unsafe<Row>("SHOW synchronous_commit"),
      (error) => makeStoreError("postgres", "open", error)
    )
    return makeSqlStore("postgres", sql, prefix, { synchronous_commit: String(commit[0]?.["synchronous_commit"]) })
  })

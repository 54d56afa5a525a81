/**
 * A checkpoint database written by the first schema version (before cancel requests) opens with the
 * current stores, on SQLite and on Postgres: the Migrator adds the new columns, the old runs and their
 * journals read back unchanged (no request), and can be listed, cancelled and resumed.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import type { StoreError } from "../../src/agent/AgentError.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import { journalMigrations } from "../../src/agent/internal/sqlStore.js"
import * as PgCheckpointStore from "../../src/agent/PgCheckpointStore.js"
import * as SqliteCheckpointStore from "../../src/agent/SqliteCheckpointStore.js"
import { pgConfig, postgresGate, scratchDir } from "./backends.js"

/** Writes what version 1 of the store would have: its one migration, a run mid-way and its journal. */
const writeVersion1 = (prefix: string) =>
  Effect.gen(function*() {
    yield* Migrator.make({})({
      loader: Migrator.fromRecord({ "1_create_journal": journalMigrations(prefix)["1_create_journal"] }),
      table: `${prefix}migrations`
    })
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO ${sql(`${prefix}runs`)} (run_id, status, owner, epoch, lease_until, created_at, updated_at, conversation)
               VALUES ('old-run', 'running', NULL, 3, 0, 1000, 2000, '[]')`
    yield* sql`INSERT INTO ${sql(`${prefix}steps`)} (run_id, step_index, name, step_key, kind, effect, status, args_hash, result, started_at, completed_at)
               VALUES ('old-run', 0, 'fetch', 'old-run:0:fetch', 'step', NULL, 'completed', NULL, '{"v":1}', 1500, 1600)`
  })

const upgraded = (name: string, prepare: () => Promise<void>, layer: () => Layer.Layer<CheckpointStore.CheckpointStore, StoreError>) =>
  it.effect(`${name}: a version-1 database gains cancel requests; its runs read back and can be cancelled`, () =>
    Effect.gen(function*() {
      yield* Effect.promise(prepare)
      const first = yield* Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const run = Option.getOrThrow(yield* store.run("old-run"))
        expect(run).toMatchObject({ status: "running", epoch: 3, cancelRequestedAt: null, cancelReason: null, conversation: "[]" })
        expect((yield* store.steps("old-run")).map((s) => [s.name, s.status, s.result])).toEqual([["fetch", "completed", "{\"v\":1}"]])
        expect((yield* store.list({ limit: 10 })).map((r) => [r.runId, r.steps.completed])).toEqual([["old-run", 1]])
        return yield* store.cancel("old-run", { now: 3_000, reason: "retired with the upgrade" })
      }).pipe(Effect.provide(layer()))
      expect(first).toMatchObject({ status: "cancelled", cancelRequestedAt: 3_000, cancelReason: "retired with the upgrade" })
      // Reopened: the migration is not applied twice and the request is durable.
      const again = yield* Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.acquire("old-run", "w", { now: 4_000, leaseMs: 1_000 })).pipe(
        Effect.flip,
        Effect.provide(layer())
      )
      expect(again._tag).toBe("RunCancelled")
    }))

/** `create: false` (operators' tools): a database without the journal is an error, and stays as it was. */
const refusesToCreate = (
  name: string,
  layer: () => Layer.Layer<CheckpointStore.CheckpointStore, StoreError>,
  tables: () => Promise<ReadonlyArray<string>>,
  setup: () => Promise<unknown> = async () => {}
) =>
  it.effect(`${name}: with create: false, a database without the journal is a StoreError and nothing is created`, () =>
    Effect.gen(function*() {
      yield* Effect.promise(setup)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(layer())))
      expect(error).toMatchObject({ _tag: "StoreError", operation: "open" })
      expect(error.message).toMatch(/no checkpoint (journal|database)/)
      expect(yield* Effect.promise(tables)).toEqual([])
    }))

const dir = scratchDir("migration")
const sqliteFile = path.join(dir, "v1.sqlite")
const pgPrefix = `llmr_m${Date.now().toString(36)}_`

afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true })
  await Effect.runPromise(
    Effect.scoped(Effect.flatMap(PgClient.make(pgConfig), (sql) =>
      sql.unsafe(`DROP TABLE IF EXISTS ${pgPrefix}steps, ${pgPrefix}runs, ${pgPrefix}migrations`))).pipe(
        Effect.provide(Reactivity.layer),
        Effect.ignore
      )
  )
})

describe("schema migration", () => {
  upgraded(
    "SQLite",
    () =>
      Effect.runPromise(
        Effect.scoped(Effect.flatMap(SqliteClient.make({ filename: sqliteFile }), (sql) =>
          Effect.provideService(writeVersion1("llmr_"), SqlClient.SqlClient, sql))).pipe(Effect.provide(Reactivity.layer))
      ),
    () => SqliteCheckpointStore.layer({ filename: sqliteFile })
  )
  const missing = path.join(dir, "missing.sqlite")
  refusesToCreate(
    "SQLite, a missing file",
    () => SqliteCheckpointStore.layer({ filename: missing, create: false }),
    async () => (fs.existsSync(missing) ? ["the file was created"] : [])
  )
  const foreign = path.join(dir, "foreign.sqlite")
  const sqliteTables = (sql: string) =>
    Effect.runPromise(
      Effect.scoped(Effect.flatMap(SqliteClient.make({ filename: foreign }), (client) => client.unsafe<{ readonly name: string }>(sql))).pipe(
        Effect.provide(Reactivity.layer)
      )
    )
  refusesToCreate(
    "SQLite, another application's file",
    () => SqliteCheckpointStore.layer({ filename: foreign, create: false }),
    async () => (await sqliteTables("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'llmr%'")).map((t) => t.name),
    () => sqliteTables("CREATE TABLE users (id INTEGER PRIMARY KEY)")
  )
})

const postgresUp = await postgresGate((name, fn) => describe("Postgres", () => it(name, fn)))
describe.runIf(postgresUp)("schema migration on Postgres", () => {
  upgraded(
    "Postgres",
    () =>
      Effect.runPromise(
        Effect.scoped(Effect.flatMap(PgClient.make(pgConfig), (sql) =>
          Effect.provideService(writeVersion1(pgPrefix), SqlClient.SqlClient, sql))).pipe(Effect.provide(Reactivity.layer))
      ),
    () => PgCheckpointStore.layer({ ...pgConfig, tablePrefix: pgPrefix, maxConnections: 2 })
  )
  const absent = `${pgPrefix}absent_`
  refusesToCreate(
    "Postgres, a prefix without tables",
    () => PgCheckpointStore.layer({ ...pgConfig, tablePrefix: absent, maxConnections: 2, create: false }),
    () =>
      Effect.runPromise(
        Effect.scoped(Effect.flatMap(PgClient.make(pgConfig), (sql) =>
          sql<{ readonly tablename: string }>`SELECT tablename FROM pg_tables WHERE tablename LIKE ${`${absent}%`}`)).pipe(
            Effect.provide(Reactivity.layer),
            Effect.map((rows) => rows.map((r) => r.tablename))
          )
      )
  )
})

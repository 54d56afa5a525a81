/**
 * The three checkpoint backends the conformance suite runs against, each giving a *fresh, empty* store
 * per test: memory; SQLite (a new file under .tmp/); Postgres (a new table prefix per test in the
 * `test` database on 127.0.0.1:5432, all dropped after the file's tests).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as PgCheckpointStore from "../../src/agent/PgCheckpointStore.js"
import * as SqliteCheckpointStore from "../../src/agent/SqliteCheckpointStore.js"
import type { StoreError } from "../../src/agent/AgentError.js"
import { serviceGate } from "../utils/serviceGate.js"

export interface Backend {
  readonly name: "memory" | "sqlite" | "postgres"
  readonly layer: () => Layer.Layer<CheckpointStore.CheckpointStore, StoreError>
  /** Removes what the tests created (files, tables). */
  readonly cleanup: () => Promise<void>
}

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

export const memory: Backend = {
  name: "memory",
  layer: () => CheckpointStore.layerMemory,
  cleanup: async () => {}
}

export const scratchDir = (label: string): string => {
  const dir = path.resolve(".tmp", `agent-${label}-${process.pid}-${unique()}`)
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

export const sqlite = (): Backend => {
  const dir = scratchDir("sqlite")
  let n = 0
  return {
    name: "sqlite",
    layer: () => SqliteCheckpointStore.layer({ filename: path.join(dir, `store-${n++}.db`) }),
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** 127.0.0.1:5432 unless the standard PGHOST / PGPORT say otherwise. */
export const pgConfig = {
  host: process.env["PGHOST"] ?? "127.0.0.1",
  port: Number(process.env["PGPORT"] ?? 5432),
  database: "test",
  username: "postgres",
  connectTimeout: "3 seconds"
} as const

const withPg = <A, E>(use: (sql: PgClient.PgClient) => Effect.Effect<A, E>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(PgClient.make(pgConfig), use)).pipe(Effect.provide(Reactivity.layer))
  )

/** Whether Postgres answers, and why not. */
export const probePostgres = async (): Promise<{ readonly available: boolean; readonly reason: string }> => {
  try {
    await withPg((sql) => sql`SELECT 1`)
    return { available: true, reason: "" }
  } catch (error) {
    return {
      available: false,
      reason: `Postgres at ${pgConfig.host}:${pgConfig.port} (database ${pgConfig.database}, user ${pgConfig.username}) is unreachable: ${
        error instanceof Error ? error.message : String(error)
      }`
    }
  }
}

export const postgres = (): Backend => {
  const prefixes: Array<string> = []
  const run = unique()
  return {
    name: "postgres",
    layer: () => {
      const tablePrefix = `llmr_t${run}_${prefixes.length}_`
      prefixes.push(tablePrefix)
      return PgCheckpointStore.layer({ ...pgConfig, tablePrefix, maxConnections: 4 })
    },
    cleanup: async () => {
      if (prefixes.length === 0) return
      await withPg((sql) =>
        Effect.forEach(prefixes, (p) => sql.unsafe(`DROP TABLE IF EXISTS ${p}steps, ${p}runs, ${p}migrations`), { discard: true })
      )
    }
  }
}

/** A store over fixed tables (shared with other processes), dropped by `cleanup`. */
export const postgresTables = (tablePrefix: string): Backend => ({
  name: "postgres",
  layer: () => PgCheckpointStore.layer({ ...pgConfig, tablePrefix, maxConnections: 2 }),
  cleanup: async () => {
    await withPg((sql) => sql.unsafe(`DROP TABLE IF EXISTS ${tablePrefix}steps, ${tablePrefix}runs, ${tablePrefix}migrations`))
  }
})

/**
 * Registers the Postgres gate: in CI an unreachable Postgres is a failing test; elsewhere the tests are
 * skipped with the reason printed. Returns whether to run them.
 */
export const postgresGate = (register: (name: string, fn: () => void) => void): Promise<boolean> =>
  serviceGate("Postgres", "test/agent", probePostgres, register)

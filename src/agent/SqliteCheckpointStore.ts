/**
 * The SQLite `CheckpointStore` (entry point `effect-llm-resilience/agent/sqlite`), over
 * `@effect/sql-sqlite-node`: a file, WAL, `synchronous=FULL` (set and read back), migrations, and by
 * default SQLite's exclusive locking mode, so the *file* enforces "one process per file" — a second
 * process cannot open it while the first lives, and the lock dies with the process. The default store
 * for one worker.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { StoreError } from "./AgentError.js"
import { CheckpointStore, type SqlStoreOptions } from "./CheckpointStore.js"
import { makeSqliteStore } from "./internal/sqlStore.js"

/**
 * SQLite options.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqliteOptions extends SqlStoreOptions {
  /** The database file (created if missing, unless `create: false`). */
  readonly filename: string
  /**
   * Hold SQLite's exclusive lock for the life of the connection (`locking_mode=EXCLUSIVE`), so a
   * second process cannot use the file while this one lives, and leases left by a dead process are
   * released at open. Default true. Switch it off only to read the file from a tool while it runs.
   */
  readonly exclusive?: boolean | undefined
  /** How long to wait for the file lock at open before failing with `StoreError`. Default 5 s. */
  readonly busyTimeoutMs?: number | undefined
}

/**
 * The SQLite store: WAL, `synchronous=FULL` (verified), migrations, exclusive file lock by default.
 * One process per file; several runs (and executors) per process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: SqliteOptions): Layer.Layer<CheckpointStore, StoreError> =>
  Layer.scoped(
    CheckpointStore,
    makeSqliteStore({
      filename: options.filename,
      tablePrefix: options.tablePrefix,
      create: options.create ?? true,
      exclusive: options.exclusive ?? true,
      busyTimeoutMs: options.busyTimeoutMs ?? 5_000,
      connect: SqliteClient.make
    })
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * The SQLite store with its options read from `Config` (for example
 * `Config.all({ filename: Config.string("CHECKPOINT_DB") })`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<SqliteOptions>
): Layer.Layer<CheckpointStore, StoreError | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

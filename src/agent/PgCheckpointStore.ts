/**
 * The Postgres `CheckpointStore` (entry point `effect-llm-resilience/agent/postgres`), over
 * `@effect/sql-pg`: several workers on one database; fencing by a lease column with an epoch (fencing
 * token) checked inside every write transaction; migrations by the `@effect/sql` Migrator.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { StoreError } from "./AgentError.js"
import { CheckpointStore, type SqlStoreOptions } from "./CheckpointStore.js"
import { makePostgresStore, makeStoreError } from "./internal/sqlStore.js"

/**
 * Postgres options: the `@effect/sql-pg` client configuration plus the table prefix.
 *
 * @since 0.1.0
 * @category models
 */
export interface PostgresOptions extends PgClient.PgClientConfig, SqlStoreOptions {}

/**
 * The Postgres store over a `PgClient` already in context (share the application's pool).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (options: SqlStoreOptions = {}): Layer.Layer<CheckpointStore, StoreError, PgClient.PgClient> =>
  Layer.effect(CheckpointStore, Effect.flatMap(PgClient.PgClient, (sql) => makePostgresStore(sql, { tablePrefix: options.tablePrefix, create: options.create ?? true })))

/**
 * The Postgres store with its own connection pool.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: PostgresOptions): Layer.Layer<CheckpointStore, StoreError> =>
  layerClient(options).pipe(
    Layer.provide(PgClient.layer(options)),
    Layer.catchAll((error) => Layer.fail(error._tag === "StoreError" ? error : makeStoreError("postgres", "connect", error)))
  )

/**
 * The Postgres store with its options read from `Config` (keep the password or URL `Config.redacted`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<PostgresOptions>
): Layer.Layer<CheckpointStore, StoreError | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

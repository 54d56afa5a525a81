/**
 * Where durable runs keep their journal: one row per run (status, lease, conversation snapshot) and
 * one row per step (deterministic key, arguments hash, Schema-encoded result). Three backends behind
 * one service:
 *
 * - {@link layerMemory}: tests and throw-away runs.
 * - `SqliteCheckpointStore.layer` (entry point `effect-llm-resilience/agent/sqlite`): the default for one worker. A file, WAL, `synchronous=FULL` (set and read
 *   back), and by default SQLite's exclusive locking mode, so the *file* enforces "one process per
 *   file" — a second process cannot open it while the first lives, and the lock dies with the process.
 * - `PgCheckpointStore.layer` / `layerClient` (entry point `effect-llm-resilience/agent/postgres`):
 *   several workers on one database; fencing by a
 *   lease column with an epoch (fencing token) checked inside every write transaction.
 *
 * The SQL backends live in their own modules so that this one (and the package's root) never loads a
 * database driver the application does not use: `@effect/sql-*` are optional peer dependencies.
 *
 * Schemas are created and upgraded by the `@effect/sql` Migrator (table `<prefix>migrations`; a
 * database made by an older version gains the new columns when a store opens it). All times are
 * Clock milliseconds supplied by the caller, so leases follow `TestClock` in tests.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Struct from "effect/Struct"
import type { LeaseLost, RunAlreadyFinished, RunCancelled, RunLocked, RunNotFound, StoreError } from "./AgentError.js"
import { makeMemoryStore } from "./internal/memoryStore.js"

/**
 * A run's status. `running` also covers a run that stopped (crash, interruption) and can be resumed;
 * `failed` means its last execution ended with a failure — a resume retries it. `completed` and
 * `cancelled` are final: a cancelled run is never acquired again (`RunCancelled`).
 *
 * A cancel requested while an executor holds the run leaves it `running` with `cancelRequestedAt`
 * set until that executor stops (at its next step boundary) and releases it as `cancelled`.
 *
 * @since 0.1.0
 * @category models
 */
export const RunStatus = Schema.Literal("running", "completed", "failed", "cancelled")

/**
 * @since 0.1.0
 * @category models
 */
export type RunStatus = typeof RunStatus.Type

/**
 * What a journal entry is: a plain `step`, a `model` call, or a `tool` call.
 *
 * @since 0.1.0
 * @category models
 */
export const StepKind = Schema.Literal("step", "model", "tool")

/**
 * @since 0.1.0
 * @category models
 */
export type StepKind = typeof StepKind.Type

/**
 * A journal entry's state: `started` (a tool call claimed: the intent is committed, the outcome is
 * not), `completed` (the outcome is recorded), `refused` (the degraded guard said no; the tool was not
 * called), `unknown` (a claimed call whose outcome could not be established; escalated).
 *
 * @since 0.1.0
 * @category models
 */
export const StepStatus = Schema.Literal("started", "completed", "refused", "unknown")

/**
 * @since 0.1.0
 * @category models
 */
export type StepStatus = typeof StepStatus.Type

/**
 * One journal entry.
 *
 * @since 0.1.0
 * @category models
 */
export const StepRecord = Schema.Struct({
  runId: Schema.String,
  /** 0-based position in the run (program order). */
  index: Schema.Int,
  name: Schema.String,
  /** The deterministic key (run + index + name); tools send it as their idempotency key. */
  key: Schema.String,
  kind: StepKind,
  /** A tool's effect kind (`pure`, `idempotent`, `keyed`, `irreversible`). */
  effect: Schema.NullOr(Schema.String),
  status: StepStatus,
  /** SHA-256 of the canonical, Schema-encoded tool arguments. */
  argsHash: Schema.NullOr(Schema.String),
  /** The Schema-encoded result, as JSON text. */
  result: Schema.NullOr(Schema.String),
  startedAt: Schema.Number,
  completedAt: Schema.NullOr(Schema.Number)
})

/**
 * @since 0.1.0
 * @category models
 */
export type StepRecord = typeof StepRecord.Type

/**
 * One run.
 *
 * @since 0.1.0
 * @category models
 */
export const RunRecord = Schema.Struct({
  runId: Schema.String,
  status: RunStatus,
  /** The executor holding the lease, or null. */
  owner: Schema.NullOr(Schema.String),
  /** Fencing token: incremented on every acquisition; writes carry the epoch they were granted. */
  epoch: Schema.Number,
  leaseUntil: Schema.Number,
  createdAt: Schema.Number,
  updatedAt: Schema.Number,
  /** The conversation snapshot (JSON array of messages) as of the last recorded step. */
  conversation: Schema.NullOr(Schema.String),
  /** When a cancel was requested (Clock ms), or null. Set once; see {@link CheckpointStoreShape.cancel}. */
  cancelRequestedAt: Schema.NullOr(Schema.Number),
  /** The reason given with the cancel request, or null. */
  cancelReason: Schema.NullOr(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type RunRecord = typeof RunRecord.Type

/**
 * How many journal entries a run has, by state.
 *
 * @since 0.2.0
 * @category models
 */
export const StepCounts = Schema.Struct({
  total: Schema.Int,
  completed: Schema.Int,
  /** Claimed tool calls whose outcome is not recorded (where a stopped run stopped). */
  started: Schema.Int,
  refused: Schema.Int,
  unknown: Schema.Int
})

/**
 * @since 0.2.0
 * @category models
 */
export type StepCounts = typeof StepCounts.Type

/**
 * A run as listed: its record without the conversation, with its journal's counts.
 *
 * @since 0.2.0
 * @category models
 */
export const RunSummary = Schema.Struct({
  ...Struct.omit(RunRecord.fields, "conversation"),
  steps: StepCounts
})

/**
 * @since 0.2.0
 * @category models
 */
export type RunSummary = typeof RunSummary.Type

/**
 * What a fenced write tells its executor besides success: whether a cancel has been requested for
 * the run (read in the same statement, so observing a cancel costs no extra round trip).
 *
 * @since 0.2.0
 * @category models
 */
export interface WriteResult {
  readonly cancelRequested: boolean
}

/**
 * Proof of holding a run: the owner and the epoch every write is fenced with.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly runId: string
  readonly owner: string
  readonly epoch: number
}

/**
 * What a backend implements. Every write that belongs to a run takes the {@link Lease} and fails with
 * `LeaseLost` when another executor has acquired the run since (checked in the write's transaction);
 * `confirm` also fails when the lease has expired.
 *
 * @since 0.1.0
 * @category models
 */
export interface CheckpointStoreShape {
  readonly backend: "memory" | "sqlite" | "postgres"
  /**
   * The durability settings as read back from the database at open (SQLite: `journal_mode`,
   * `synchronous`, `locking_mode`; Postgres: `synchronous_commit`).
   */
  readonly settings: Readonly<Record<string, string>>
  /**
   * Creates the run if needed and takes its lease until `now + leaseMs` — unless another owner holds
   * an unexpired lease (`RunLocked`). The same owner may take its own lease again (a restarted worker).
   * A run with a cancel request (and not `completed`) is never acquired: `RunCancelled` — and when no
   * live lease holds it (its executor died before it could stop), it is marked `cancelled` on the way.
   */
  readonly acquire: (
    runId: string,
    owner: string,
    timing: { readonly now: number; readonly leaseMs: number }
  ) => Effect.Effect<Lease, RunLocked | RunCancelled | StoreError>
  /** Extends the lease to `now + leaseMs`; says whether a cancel has been requested. */
  readonly renew: (
    lease: Lease,
    timing: { readonly now: number; readonly leaseMs: number }
  ) => Effect.Effect<WriteResult, LeaseLost | StoreError>
  /**
   * The fence before an act: in one atomic write, checks that `lease` is still this executor's *and
   * live* at `now` (same owner, same epoch, `leaseUntil > now`) and extends it to `now + leaseMs`;
   * otherwise `LeaseLost`, and nothing changes. The tool protocol calls it immediately before every
   * non-`pure` tool acts (and tools may call it again right before their effect, through
   * `ToolContext.confirmLease`): an executor that was paused past its lease — and possibly taken over —
   * cannot act, and after a confirmation no other executor can take the run over for `leaseMs`.
   */
  readonly confirm: (lease: Lease, timing: { readonly now: number; readonly leaseMs: number }) => Effect.Effect<void, LeaseLost | StoreError>
  /**
   * Sets the run's status and gives the lease up (a no-op when the lease was already lost). A run with
   * a cancel request that did not complete is released `cancelled`, whatever `status` says (it stopped,
   * and it may never be acquired again).
   */
  readonly release: (lease: Lease, status: RunStatus, now: number) => Effect.Effect<void, StoreError>
  readonly run: (runId: string) => Effect.Effect<Option.Option<RunRecord>, StoreError>
  /**
   * Runs, most recently updated first (then by id), optionally of one status, at most `limit`.
   */
  readonly list: (options: {
    readonly status?: RunStatus | undefined
    readonly limit: number
  }) => Effect.Effect<ReadonlyArray<RunSummary>, StoreError>
  /**
   * Requests the run's cancellation, durably. When no live lease holds the run at `now`, it is
   * `cancelled` at once and its (expired) lease is voided, so a stale executor's next write is fenced
   * off; otherwise it stays `running` with the request recorded, for its executor to observe at its
   * next step boundary. A second request keeps the first one's time and reason. Returns the run after
   * the request. `RunNotFound` for an unknown id (nothing is created); `RunAlreadyFinished` for a
   * `completed` or `cancelled` run (nothing changes).
   */
  readonly cancel: (
    runId: string,
    options: { readonly now: number; readonly reason: string | undefined }
  ) => Effect.Effect<RunRecord, RunNotFound | RunAlreadyFinished | StoreError>
  /** The run's journal, by index. */
  readonly steps: (runId: string) => Effect.Effect<ReadonlyArray<StepRecord>, StoreError>
  /**
   * Commits a `started` entry (the claim) before a tool acts. Fails with `StoreError` if the index
   * is already journaled, and with `RunCancelled` (nothing written) once a cancel has been requested:
   * the claim is the commit point of a side effect, so no tool acts after a cancel request committed.
   */
  readonly claim: (lease: Lease, step: StepRecord) => Effect.Effect<void, LeaseLost | RunCancelled | StoreError>
  /**
   * Writes the entry's final state and, in the same transaction, the conversation snapshot (when
   * given): a crash leaves both or neither. Never refused for a cancel request (the work is done and
   * must be journaled); it says whether one was made.
   */
  readonly record: (
    lease: Lease,
    step: StepRecord,
    conversation: string | undefined
  ) => Effect.Effect<WriteResult, LeaseLost | StoreError>
  /**
   * Deletes runs (with their journals) last updated before `before` and not leased at `now`; only
   * finished runs (`completed`, `failed`, `cancelled`) unless `includeUnfinished`. Returns how many
   * runs were removed.
   */
  readonly prune: (options: {
    readonly before: number
    readonly now: number
    readonly includeUnfinished: boolean
  }) => Effect.Effect<number, StoreError>
}

/**
 * The checkpoint store service.
 *
 * @since 0.1.0
 * @category tags
 */
export class CheckpointStore extends Context.Tag("effect-llm-resilience/agent/CheckpointStore")<
  CheckpointStore,
  CheckpointStoreShape
>() {}

/**
 * Table naming shared by the SQL backends.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqlStoreOptions {
  /**
   * Prefix of the tables (`<prefix>runs`, `<prefix>steps`, `<prefix>migrations`). Letters, digits and
   * `_` only. Default `llmr_`.
   */
  readonly tablePrefix?: string | undefined
  /**
   * Create the journal's tables when the database has none. Default true. False — for tools that
   * operate existing runs, like the CLI's `runs` commands — makes a database without them (the wrong
   * database or `tablePrefix`) a `StoreError`, and creates nothing. Existing tables are upgraded either way.
   */
  readonly create?: boolean | undefined
}

/**
 * The in-memory store (a fresh, empty one per layer build).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<CheckpointStore> = Layer.sync(CheckpointStore, makeMemoryStore)


/**
 * The failures of durable agent runs: the checkpoint store, fencing, journal integrity and the tool
 * protocol. Every one is a `Schema.TaggedError`, so a caller can match on `_tag`, and none carries a
 * secret (messages are built from run ids, step names and keys, never from arguments or credentials).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The checkpoint store could not do what was asked (connection, SQL, migration, pragma verification,
 * the SQLite file held by another process).
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  backend: Schema.Literal("memory", "sqlite", "postgres"),
  /** What the store was doing (`open`, `migrate`, `acquire`, `record`, …). */
  operation: Schema.String,
  message: Schema.String
}) {}

/**
 * Another executor holds the run's lease: only one live executor may run a run at a time.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunLocked extends Schema.TaggedError<RunLocked>()("RunLocked", {
  runId: Schema.String,
  /** The executor holding the lease, when known. */
  owner: Schema.optional(Schema.String),
  /** When the current lease expires (Clock ms), when known. */
  leaseUntil: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/**
 * The run was cancelled (`Agent.cancel`, `llm-resilience runs cancel`): a durable request in the
 * checkpoint store. An executor that sees it stops at its next step boundary (a step in progress is
 * finished and recorded, a tool call already claimed is made and recorded; no new tool call is
 * claimed), and the run is never acquired again — `Agent.run` and `Agent.resume` of it fail with this.
 *
 * @since 0.2.0
 * @category errors
 */
export class RunCancelled extends Schema.TaggedError<RunCancelled>()("RunCancelled", {
  runId: Schema.String,
  /** When the cancel was requested (Clock ms), when known. */
  requestedAt: Schema.optional(Schema.Number),
  /** The reason given with the request, when one was. */
  reason: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/**
 * No run with this id is in the checkpoint store (`Agent.resume`, `Agent.cancel`: neither creates one).
 *
 * @since 0.2.0
 * @category errors
 */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", {
  runId: Schema.String,
  message: Schema.String
}) {}

/**
 * The run has already finished for good: `completed` (nothing to resume or cancel) or `cancelled`
 * (nothing to cancel again). A `failed` run is not finished: a resume retries it, a cancel ends it.
 *
 * @since 0.2.0
 * @category errors
 */
export class RunAlreadyFinished extends Schema.TaggedError<RunAlreadyFinished>()("RunAlreadyFinished", {
  runId: Schema.String,
  status: Schema.Literal("completed", "cancelled"),
  message: Schema.String
}) {}

/**
 * This executor's lease was taken over (it expired and another executor acquired the run): every
 * further write is fenced off and the run stops here.
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", {
  runId: Schema.String,
  /** The fencing epoch this executor held. */
  epoch: Schema.Number,
  message: Schema.String
}) {}

/**
 * The program no longer matches its journal: at this position the journal holds another step. A run
 * must call its steps in the same order on every execution (branch only on step results).
 *
 * @since 0.1.0
 * @category errors
 */
export class StepMismatch extends Schema.TaggedError<StepMismatch>()("StepMismatch", {
  runId: Schema.String,
  index: Schema.Number,
  /** The step the journal holds at this index. */
  journaled: Schema.String,
  /** The step the program asked for. */
  requested: Schema.String,
  message: Schema.String
}) {}

/**
 * The same idempotency key was used with different arguments: the program asked for a different
 * action under a key that already stands for another one. Never resolved silently.
 *
 * @since 0.1.0
 * @category errors
 */
export class IdempotencyConflict extends Schema.TaggedError<IdempotencyConflict>()("IdempotencyConflict", {
  runId: Schema.String,
  index: Schema.Number,
  tool: Schema.String,
  key: Schema.String,
  message: Schema.String
}) {}

/**
 * A step result could not be checkpointed or restored with the step's Schema: it does not encode to
 * JSON (`encode`), or a stored result no longer decodes (`decode`: the Schema changed incompatibly
 * between the run that wrote it and the one reading it).
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointCodecError extends Schema.TaggedError<CheckpointCodecError>()("CheckpointCodecError", {
  runId: Schema.String,
  index: Schema.Number,
  step: Schema.String,
  direction: Schema.Literal("encode", "decode"),
  message: Schema.String
}) {}

/**
 * A value about to be checkpointed contains a `Redacted` secret. Nothing was written: secrets never
 * enter a checkpoint (keep them in `Config`, pass them to tools from their environment).
 *
 * @since 0.1.0
 * @category errors
 */
export class UnsafeCheckpoint extends Schema.TaggedError<UnsafeCheckpoint>()("UnsafeCheckpoint", {
  runId: Schema.String,
  index: Schema.Number,
  step: Schema.String,
  /** Where in the value the secret sits (`order.card.number`). */
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * The run id is empty, too long (> 200 characters) or contains control characters.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRunId extends Schema.TaggedError<InvalidRunId>()("InvalidRunId", {
  runId: Schema.String,
  message: Schema.String
}) {}

/**
 * One health finding of a pre-flight check.
 *
 * @since 0.1.0
 * @category models
 */
export const HealthFinding = Schema.Struct({
  /** `breaker`, `probe`, `status-page` or `degraded-mode`. */
  source: Schema.String,
  healthy: Schema.Boolean,
  detail: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export type HealthFinding = typeof HealthFinding.Type

/**
 * The pre-flight health check found the primary degraded and the run is configured to refuse to
 * start; nothing was written.
 *
 * @since 0.1.0
 * @category errors
 */
export class PreflightRefused extends Schema.TaggedError<PreflightRefused>()("PreflightRefused", {
  runId: Schema.String,
  findings: Schema.Array(HealthFinding),
  message: Schema.String
}) {}

/**
 * A tool ran and failed with its own typed failure (recorded: a resume returns the same failure).
 *
 * @since 0.1.0
 * @category errors
 */
export class ToolFailed extends Schema.TaggedError<ToolFailed>()("ToolFailed", {
  tool: Schema.String,
  key: Schema.String,
  /** The `_tag` of the tool's failure, when it had one. */
  errorTag: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/**
 * A tool refused to act (the degraded guard: an irreversible action while the system runs degraded).
 * Nothing was done and the idempotency key was not used.
 *
 * @since 0.1.0
 * @category errors
 */
export class ToolRefused extends Schema.TaggedError<ToolRefused>()("ToolRefused", {
  tool: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {}

/**
 * A tool call was sent but its outcome was never recorded (the executor stopped in between), and it
 * cannot be safely re-sent (not `keyed`, or past the key retention) nor reconciled. It may or may not
 * have happened: a human or a reconciliation job must decide. Never retried blindly.
 *
 * @since 0.1.0
 * @category errors
 */
export class ToolOutcomeUnknown extends Schema.TaggedError<ToolOutcomeUnknown>()("ToolOutcomeUnknown", {
  runId: Schema.String,
  index: Schema.Number,
  tool: Schema.String,
  key: Schema.String,
  message: Schema.String
}) {}

/**
 * What a tool call can fail with besides the run-level errors.
 *
 * @since 0.1.0
 * @category models
 */
export type ToolCallError = ToolFailed | ToolRefused | ToolOutcomeUnknown

/**
 * Schema of {@link ToolCallError} (journaled tool outcomes carry it).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolCallError = Schema.Union(ToolFailed, ToolRefused, ToolOutcomeUnknown)

/**
 * The run-level failures `Agent.run` adds to a program's own.
 *
 * @since 0.1.0
 * @category models
 */
export type AgentError =
  | StoreError
  | RunLocked
  | LeaseLost
  | StepMismatch
  | IdempotencyConflict
  | CheckpointCodecError
  | UnsafeCheckpoint
  | InvalidRunId
  | PreflightRefused
  | RunCancelled
  | RunNotFound
  | RunAlreadyFinished

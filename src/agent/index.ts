/**
 * Durable agent runs: checkpointed steps, model calls and tools that resume after a crash or an
 * outage and never repeat an irreversible side effect. See docs/durable-agents.md.
 *
 * @since 0.1.0
 */

/**
 * Runs, steps, model steps, tools, the toolkit, events; listing, cancelling and resuming runs.
 *
 * @since 0.1.0
 */
export * as Agent from "./Agent.js"

/**
 * The failures of durable runs (store, fencing, journal, tool protocol).
 *
 * @since 0.1.0
 */
export * as AgentError from "./AgentError.js"

/**
 * The journal store: memory, SQLite, Postgres.
 *
 * @since 0.1.0
 */
export * as CheckpointStore from "./CheckpointStore.js"

/**
 * "Still working" events for long steps.
 *
 * @since 0.1.0
 */
export * as Heartbeat from "./Heartbeat.js"

/**
 * Pre-flight health of the primary route before a run.
 *
 * @since 0.1.0
 */
export * as Preflight from "./Preflight.js"

/**
 * Tools and their effect kinds.
 *
 * @since 0.1.0
 */
export * as Tool from "./Tool.js"

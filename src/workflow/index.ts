/**
 * `effect-llm-resilience/workflow` — durable agent runs spread over several runner processes on
 * `@effect/cluster`'s workflow engine (SQL storage, e.g. Postgres), taken over when a runner dies.
 * Needs the optional peer dependencies `@effect/cluster` (0.60) and `@effect/workflow` (0.19); the
 * root entry point never loads them. See docs/durable-agents.md, "Scaling out".
 *
 * @since 0.2.0
 */

/**
 * An agent definition as a workflow; the runner's handler layer, the runner and client engines.
 *
 * @since 0.2.0
 */
export * as AgentWorkflow from "./AgentWorkflow.js"

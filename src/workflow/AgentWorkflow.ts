/**
 * Durable agent runs spread over a fleet: each run is an `@effect/workflow` execution that
 * `@effect/cluster`'s workflow engine places on one of several runner processes, persists, and moves
 * to another runner when its runner dies. The run itself executes exactly as with `Agent.run` — the
 * same program, the same journal (the Postgres checkpoint store), the same tool protocol — so one
 * agent definition runs on either engine, and `llm-resilience runs list | show | cancel` and the HTML
 * report work on both.
 *
 * Why the run, and not each step, is the unit the engine sees: an @effect/workflow Activity is keyed
 * `name/attempt`, is run again from the start when its runner dies mid-way, and runs uninterruptibly
 * — so a paused runner can still be executing an activity its successor has started again. An
 * irreversible tool needs a fenced claim before it acts (the checkpoint store's lease epoch) whatever
 * the engine does; keeping the journal in one place keeps that rule in one place. See
 * docs/durable-agents.md, "Scaling out".
 *
 * @since 0.2.0
 */
import * as ClusterWorkflowEngine from "@effect/cluster/ClusterWorkflowEngine"
import type { MessageStorage } from "@effect/cluster/MessageStorage"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import type { Runners } from "@effect/cluster/Runners"
import type { Sharding } from "@effect/cluster/Sharding"
import type * as ShardingConfig from "@effect/cluster/ShardingConfig"
import type { SocketServerError } from "@effect/platform/SocketServer"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import type { SqlClient } from "@effect/sql/SqlClient"
import * as Workflow from "@effect/workflow/Workflow"
import type { WorkflowEngine } from "@effect/workflow/WorkflowEngine"
import type * as ConfigError from "effect/ConfigError"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { hostname } from "node:os"
import * as Agent from "../agent/Agent.js"
import type { InvalidRunId } from "../agent/AgentError.js"
import { CheckpointStore } from "../agent/CheckpointStore.js"
import { InvalidOptions } from "../Errors.js"

/**
 * The defaults of the cluster engine, chosen so that a dead runner's runs are taken over within about
 * ten seconds (with the cluster's own defaults — a 35 s shard lock, a 1 minute health check — a
 * takeover took ≈ 30 s in our runs, and the agent's default lease is 60 s).
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults = {
  /** A runner's shard locks expire this long after its last refresh: the time to notice a dead runner. */
  shardLockExpirationMs: 10_000,
  /** Runners re-read the runner table and re-balance shards this often. */
  refreshAssignmentsMs: 1_000,
  /**
   * One runner pings the others this often (each ping retried for ≈ 2.5 s) and drops a runner that does
   * not answer — usually sooner than its heartbeat expiring (`@effect/cluster`'s default: 1 minute).
   */
  runnerHealthCheckMs: 5_000,
  /** Unprocessed messages (a dead runner's runs included) are polled from storage this often. */
  entityMessagePollMs: 1_000,
  /** The agent lease under the cluster engine (a taken-over run waits for the dead runner's lease). */
  leaseDurationMs: 10_000,
  /** Runs one runner executes at once; the fleet's bound is this times the runners. */
  maxConcurrentRuns: 32
} as const

/**
 * An agent run failed, was cancelled or could not start. Carries the failure's tag (`RunCancelled`,
 * `AllRoutesFailed`, `PreflightRefused`, a tool's failure…) and message, never the value; stored by the
 * engine as the execution's result.
 *
 * @since 0.2.0
 * @category errors
 */
export class AgentRunFailed extends Schema.TaggedError<AgentRunFailed>()("AgentRunFailed", {
  runId: Schema.String,
  /** The `_tag` of the run's failure, or `Defect`. */
  reason: Schema.String,
  message: Schema.String
}) {}

/**
 * An agent workflow's identity, shared by every process of the fleet: its name and how its answer is
 * stored. Runners register its program with {@link layer}; any process with the engine starts, awaits
 * and polls runs with it.
 *
 * @since 0.2.0
 * @category models
 */
export interface AgentWorkflow<A, I> {
  readonly name: string
  readonly success: Schema.Schema<A, I>
  /** The underlying workflow (one execution per run id: the run id is its idempotency key). */
  readonly workflow: Workflow.Workflow<
    string,
    Schema.Struct<{ runId: typeof Schema.String }>,
    Schema.Schema<A, I>,
    typeof AgentRunFailed
  >
  /**
   * Starts run `runId` somewhere in the fleet and returns its execution id without waiting. Starting a
   * run that exists (running or finished) starts nothing: the same execution answers.
   */
  readonly start: (runId: string) => Effect.Effect<string, InvalidRunId, WorkflowEngine>
  /** Starts (or joins) run `runId` and waits for its outcome. */
  readonly execute: (runId: string) => Effect.Effect<A, AgentRunFailed | InvalidRunId, WorkflowEngine>
  /** The run's outcome if it has finished; `None` while it runs (or was never started). */
  readonly poll: (runId: string) => Effect.Effect<Option.Option<Exit.Exit<A, AgentRunFailed>>, InvalidRunId, WorkflowEngine>
}

/**
 * Declares an agent workflow under `name` (keep it stable across deployments — stored executions are
 * found by it); `success` encodes the run's answer in the engine's storage. The program comes with the
 * runners' {@link layer}, so a client process needs neither the program nor its services.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { Agent } from "effect-llm-resilience/agent"
 * import { AgentWorkflow } from "effect-llm-resilience/workflow"
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 *
 * const Triage = AgentWorkflow.make({ name: "triage", success: Schema.String })
 *
 * // on every runner: the program, under an Agent executor on the checkpoint store in context
 * const TriageLive = AgentWorkflow.layer(Triage, Agent.define({ program: (runId) => Effect.succeed(`triaged ${runId}`) }))
 *
 * // anywhere in the fleet (a runner or a client-only process):
 * const started = Triage.start("ticket-4711")
 * ```
 */
export const make = <A, I>(options: {
  readonly name: string
  readonly success: Schema.Schema<A, I>
}): AgentWorkflow<A, I> => {
  const workflow = Workflow.make({
    name: `llm-resilience/agent/${options.name}`,
    payload: { runId: Schema.String },
    success: options.success,
    error: AgentRunFailed,
    idempotencyKey: ({ runId }) => runId
  })
  return {
    name: options.name,
    success: options.success,
    workflow,
    start: (runId) => Effect.flatMap(Agent.checkRunId(runId), () => workflow.execute({ runId }, { discard: true })),
    execute: (runId) => Effect.flatMap(Agent.checkRunId(runId), () => workflow.execute({ runId })),
    poll: (runId) =>
      Effect.gen(function*() {
        yield* Agent.checkRunId(runId)
        const result = yield* workflow.poll(yield* workflow.executionId({ runId }))
        return result === undefined || result._tag === "Suspended" ? Option.none() : Option.some(result.exit)
      })
  }
}

const describeFailure = (runId: string, error: unknown): AgentRunFailed => {
  const tagged = typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : undefined
  const message = typeof error === "object" && error !== null && "message" in error && typeof error.message === "string"
    ? error.message
    : String(error)
  return new AgentRunFailed({ runId, reason: tagged ?? "Failure", message })
}

const tagOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : undefined

/** A journal write that failed (a database blip): retried before the run's outcome is made final. */
const storeRetry = Schedule.exponential(Duration.seconds(1), 2).pipe(
  Schedule.either(Schedule.spaced(Duration.seconds(30))),
  Schedule.intersect(Schedule.recurs(8))
)

/**
 * Options of a runner's handler for one agent workflow.
 *
 * @since 0.2.0
 * @category models
 */
export interface HandlerOptions {
  /** Runs of this workflow this runner executes at once. Default {@link defaults.maxConcurrentRuns}. */
  readonly maxConcurrentRuns?: number | undefined
  /** A stable executor id for this runner's leases (default: host/pid/random). */
  readonly executorId?: string | undefined
}

/**
 * Registers an agent workflow's program on this runner: each execution placed here runs the
 * definition's program under an `Agent` executor of this process, on the checkpoint store in context
 * (Postgres for a fleet).
 *
 * - A run taken over from a dead runner waits for that runner's lease to expire (`leaseDuration`,
 *   {@link defaults.leaseDurationMs} unless the definition sets it) and resumes from the journal; it
 *   waits as long as a live executor holds the run (a `runs resume` in a terminal, say).
 * - A runner that finds its lease taken (it was paused past its shard lock) waits for the new holder
 *   to be done, then reports what the journal reached: a completed run is replayed (no pre-flight,
 *   nothing executed), a failed or cancelled one is `AgentRunFailed`.
 * - A journal write that fails (`StoreError`) is retried for about two minutes before it fails the run.
 * - Any other failure of the program is the run's final outcome on this engine (`AgentRunFailed`): the
 *   execution for that run id is finished, and starting the id again returns it.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = <A, I, E>(
  agentWorkflow: AgentWorkflow<A, I>,
  definition: Agent.Definition<A, E>,
  options: HandlerOptions = {}
): Layer.Layer<never, InvalidOptions, WorkflowEngine | CheckpointStore> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const max = options.maxConcurrentRuns ?? defaults.maxConcurrentRuns
    if (!Number.isInteger(max) || max < 1) {
      return yield* new InvalidOptions({ component: "AgentWorkflow.layer", option: "maxConcurrentRuns", message: `must be a positive integer, got ${String(max)}` })
    }
    const agentOptions = definition.options
    const leaseDuration = agentOptions.leaseDuration ?? Duration.millis(defaults.leaseDurationMs)
    const agent = yield* Agent.make({ ...agentOptions, leaseDuration, executorId: options.executorId })
    // Replays of a run another runner finished: no pre-flight (nothing will be called).
    const replayer = yield* Agent.make({ ...agentOptions, preflight: undefined, leaseDuration, executorId: options.executorId })
    const store = yield* CheckpointStore
    const permits = yield* Effect.makeSemaphore(max)
    const retryEvery = Duration.millis(Math.max(100, Math.min(1_000, Math.floor(Duration.toMillis(leaseDuration) / 4))))

    /** Waits until no live lease holds the run (its holder finished, released it or died), and returns it. */
    const awaitFree = (runId: string) =>
      Effect.gen(function*() {
        while (true) {
          const record = yield* Effect.retry(store.run(runId), storeRetry)
          const now = yield* Clock.currentTimeMillis
          if (Option.isNone(record)) return record
          const run = record.value
          if (run.status !== "running" || run.owner === null || run.leaseUntil <= now) return record
          yield* Effect.logDebug(`run ${runId} is held by ${run.owner} until ${new Date(run.leaseUntil).toISOString()}; waiting`)
          yield* Effect.sleep(retryEvery)
        }
      })

    const execute = (runId: string): Effect.Effect<A, unknown> =>
      permits.withPermits(1)(agent.run(runId, definition.program(runId))).pipe(
        Effect.retry({ while: (error) => tagOf(error) === "StoreError", schedule: storeRetry }),
        // Another executor holds the run: a dead runner's lease not yet expired (a takeover) — wait for
        // it, then take the run over from its journal.
        Effect.catchIf((error) => tagOf(error) === "RunLocked", () => Effect.zipRight(awaitFree(runId), Effect.suspend(() => execute(runId)))),
        // Our own lease was taken while this runner was paused: the run is someone else's now. Wait
        // for that executor to be done with it; then report what it reached, executing nothing again.
        Effect.catchIf((error) => tagOf(error) === "LeaseLost", () =>
          Effect.flatMap(awaitFree(runId), (record) => {
            const status = Option.isSome(record) ? record.value.status : undefined
            if (status === "completed") return replayer.run(runId, definition.program(runId))
            if (status === "running") return execute(runId) // its new holder died too: take it over
            return Effect.fail(new AgentRunFailed({ runId, reason: status === "cancelled" ? "RunCancelled" : "FailedElsewhere", message: `run ${runId} was taken over by another executor and ended ${status ?? "unknown"} there` }))
          }))
      )

    return agentWorkflow.workflow.toLayer(({ runId }) =>
      execute(runId).pipe(
        Effect.catchAllDefect((defect) => Effect.fail(describeFailure(runId, { _tag: "Defect", message: String(defect) }))),
        Effect.mapError((error) => error instanceof AgentRunFailed ? error : describeFailure(runId, error))
      )
    )
  }))

/**
 * Options of a runner process or a client of the fleet.
 *
 * @since 0.2.0
 * @category models
 */
export interface ClusterOptions {
  /**
   * The address other runners (on other hosts too) reach this runner at. Default: this host's name
   * (`os.hostname()`). The runners' socket protocol is not authenticated: keep it on a private network.
   */
  readonly host?: string | undefined
  /** The port this runner listens on (runners only). Default 34431. */
  readonly port?: number | undefined
  /** Overrides of `@effect/cluster`'s `ShardingConfig` (after this module's {@link defaults}). */
  readonly sharding?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
}

const shardingConfig = (options: ClusterOptions, runner: boolean): Partial<ShardingConfig.ShardingConfig["Type"]> => ({
  shardLockExpiration: Duration.millis(defaults.shardLockExpirationMs),
  shardLockRefreshInterval: Duration.millis(Math.floor(defaults.shardLockExpirationMs / 3)),
  refreshAssignmentsInterval: Duration.millis(defaults.refreshAssignmentsMs),
  runnerHealthCheckInterval: Duration.millis(defaults.runnerHealthCheckMs),
  entityMessagePollInterval: Duration.millis(defaults.entityMessagePollMs),
  ...(runner ? { runnerAddress: Option.some(RunnerAddress.make(options.host ?? hostname(), options.port ?? 34431)) } : {}),
  ...options.sharding
})

/**
 * The workflow engine of a runner process: `@effect/cluster` over sockets, with its messages and
 * runner table (shard locks) in the SQL database in context. Provide the agent workflows' {@link layer}s
 * with it, and launch it.
 *
 * @since 0.2.0
 * @category layers
 */
export const runnerLayer = (
  options: ClusterOptions = {}
): Layer.Layer<WorkflowEngine | Sharding | Runners | MessageStorage, SocketServerError | ConfigError.ConfigError, SqlClient> =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ storage: "sql", shardingConfig: shardingConfig(options, true) }))
  )

/**
 * The workflow engine of a process that only starts, polls or awaits runs (an API server, the CLI):
 * it owns no shards and executes nothing.
 *
 * @since 0.2.0
 * @category layers
 */
export const clientLayer = (
  options: Omit<ClusterOptions, "host" | "port"> = {}
): Layer.Layer<WorkflowEngine | Sharding | Runners | MessageStorage, ConfigError.ConfigError, SqlClient> =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig: shardingConfig(options, false) }))
  )

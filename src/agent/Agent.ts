/**
 * Durable agent runs: a program of steps that resumes after a crash or an outage where it stopped,
 * never re-bills a model call it already paid for, and never repeats an irreversible side effect.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   yield* Agent.addMessages({ role: "user", content: "Refund order 42" })
 *   const plan = yield* Agent.turn({ maxTokens: 500, tools: tools.definitions })   // a model step
 *   for (const call of plan.response.toolCalls) yield* tools.dispatch(call)           // tool steps
 *   return (yield* Agent.turn({ maxTokens: 500 })).text
 * })
 * const answer = yield* Agent.run("refund-42", program)   // the same call resumes it after a crash
 * ```
 *
 * **The journal.** Every step gets a deterministic key — run id, position, name — and its result is
 * Schema-encoded into the {@link CheckpointStore}. On resume the program runs again from the top; a
 * journaled step returns its stored result without executing, so the program walks the same path to
 * the first step that never completed. Steps must therefore run one at a time, in the same order,
 * branching only on step results (a mismatch is `StepMismatch`, never a silent divergence).
 *
 * **Model calls** ({@link generate}, {@link generateObject}, {@link turn}) are steps: the response and
 * its usage are stored, so a resume neither pays for them again nor gets a different answer. The
 * conversation ({@link addMessages}, {@link turn}, tool replies) is snapshotted in the same
 * transaction as the step that changed it.
 *
 * **Tools** ({@link useTool}, {@link toolkit}) follow the claim → act → record protocol; what a resume
 * does with a claimed call whose outcome was never recorded depends on the tool's effect kind (see
 * `Tool` and docs/durable-agents.md). A tool's typed failure becomes text for the agent; a refusal by
 * the degraded guard does not use the tool's key; interruption is never swallowed.
 *
 * **Executors.** One live executor per run: a lease with expiry and a fencing epoch checked in every
 * write — and, immediately before a side-effecting tool acts, confirmed live in the store (so an
 * executor paused past its lease and taken over does not act); a second executor gets `RunLocked`, a
 * fenced-off one `LeaseLost`.
 *
 * **Operating runs.** {@link list}, {@link inspect} (with {@link describeStep} and
 * {@link toReportRecord} for `Report.html`), {@link cancel} — a durable request the executor honours at
 * its next step boundary, after which the run is never acquired again — and {@link resume}; a
 * {@link define}d agent can be resumed from outside the service (`llm-resilience runs resume --agent`).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Struct from "effect/Struct"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import * as DegradedMode from "../DegradedMode.js"
import { type AllRoutesFailed, AttemptRecord, type InvalidOptions } from "../Errors.js"
import type * as Fallback from "../Fallback.js"
import { LlmClient } from "../LlmClient.js"
import { GenerateResponse, Message, type ToolCall, type ToolDefinition, Usage } from "../Provider.js"
import {
  type CheckpointCodecError,
  type IdempotencyConflict,
  InvalidRunId,
  type LeaseLost,
  PreflightRefused,
  RunAlreadyFinished,
  type RunCancelled,
  RunLocked,
  RunNotFound,
  type StepMismatch,
  type StoreError,
  ToolFailed,
  type ToolOutcomeUnknown,
  type ToolRefused,
  type UnsafeCheckpoint
} from "./AgentError.js"
import {
  CheckpointStore,
  type CheckpointStoreShape,
  type Lease,
  type RunRecord,
  type RunStatus,
  type RunSummary,
  type StepRecord
} from "./CheckpointStore.js"
import { decodeJson, encodeJson } from "./internal/codec.js"
import {
  adopt,
  commit,
  completedEvent,
  entry,
  executing,
  type JournalEvent,
  now,
  observe,
  replayedEvent,
  type RunState,
  siteOf,
  stoppedByCancel,
  withSlot
} from "./internal/runState.js"
import { runTool, texts } from "./internal/toolProtocol.js"
import { describeStep as describeJournalStep, journalRecord } from "./internal/journalReport.js"
import * as Preflight from "./Preflight.js"
import type * as Report from "../Report.js"
import type * as Tool from "./Tool.js"

// ---------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------

/**
 * Options of an agent (one executor). Every default is in {@link defaults} and docs/durable-agents.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface AgentOptions {
  /**
   * This executor's identity in leases. Default: `host/pid/random`, unique per process. A worker that
   * restarts under the same stable id may take back its own unexpired lease at once.
   */
  readonly executorId?: string | undefined
  /** How long a lease lasts without renewal (renewed every third of it). Default 60 seconds. */
  readonly leaseDuration?: Duration.DurationInput | undefined
  /** "Still working" events for steps running longer than this; `false` for none. Default 30 seconds. */
  readonly heartbeatInterval?: Duration.DurationInput | false | undefined
  /**
   * The primary route's breaker key in the `CircuitBreakers` registry (`Policy` keys breakers
   * `route/model`). While it is open, `refuse` tools refuse. Default: none (only `DegradedMode` counts).
   */
  readonly primaryBreaker?: string | undefined
  /** Pre-flight health check of every run (a run's own options win). Default: none. */
  readonly preflight?: Preflight.PreflightOptions | undefined
  /**
   * Called inline with every event, before the step goes on (for logs and supervisors that must see
   * an event even if the process dies right after it). The `events` stream gets them too.
   */
  readonly onEvent?: ((event: AgentEvent) => Effect.Effect<void>) | undefined
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  leaseDurationMs: 60_000,
  heartbeatIntervalMs: 30_000
} as const

/**
 * Options of one run.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  readonly preflight?: Preflight.PreflightOptions | undefined
}

/**
 * The answer of a model step, as journaled: the response (without the provider's raw body), where it
 * came from and what it cost.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ModelTurn = Schema.Struct({
  text: Schema.String,
  response: Schema.Struct(Struct.omit(GenerateResponse.fields, "raw")),
  route: Schema.String,
  degraded: Schema.Boolean,
  repaired: Schema.Boolean,
  usage: Usage,
  attempts: Schema.Array(AttemptRecord),
  durationMs: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type ModelTurn = typeof ModelTurn.Type

/**
 * What a tool call gave the agent: the value, or a failure, refusal or unknown outcome — each with
 * `text` the agent can read (feed it back as the tool message) and, for the last three, the typed error.
 *
 * @since 0.1.0
 * @category models
 */
export type ToolReply<A> =
  | { readonly _tag: "Success"; readonly tool: string; readonly key: string; readonly value: A; readonly text: string }
  | { readonly _tag: "Failure"; readonly tool: string; readonly key: string; readonly text: string; readonly error: ToolFailed }
  | { readonly _tag: "Refused"; readonly tool: string; readonly key: string; readonly text: string; readonly error: ToolRefused }
  | {
    readonly _tag: "Unknown"
    readonly tool: string
    readonly key: string
    readonly text: string
    readonly error: ToolOutcomeUnknown
  }

/**
 * What the agent reports while runs execute (subscribe with {@link AgentShape.events}).
 *
 * @since 0.1.0
 * @category models
 */
export type AgentEvent =
  | { readonly _tag: "RunStarted"; readonly runId: string; readonly epoch: number; readonly journaled: number }
  | JournalEvent
  | {
    readonly _tag: "RunFinished"
    readonly runId: string
    /** `cancelled`: the run stopped for a cancel request (since 0.2.0). */
    readonly outcome: "completed" | "failed" | "interrupted" | "cancelled"
  }

/**
 * Failures of the journal itself (any step can fail with these).
 *
 * @since 0.1.0
 * @category models
 */
export type JournalError = StepMismatch | CheckpointCodecError | UnsafeCheckpoint | LeaseLost | RunCancelled | StoreError

/**
 * A run as stored, for dashboards and operators.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunReport {
  readonly run: RunRecord
  readonly steps: ReadonlyArray<StepRecord>
  /** The last conversation snapshot. */
  readonly conversation: ReadonlyArray<Message>
  /** Usage summed over the journaled model steps. */
  readonly usage: Usage
  /** Steps escalated as unknown (a human must check the callee). */
  readonly unknown: ReadonlyArray<StepRecord>
}

/**
 * The agent service.
 *
 * @since 0.1.0
 * @category models
 */
export interface AgentShape {
  readonly executorId: string
  /** Runs (or resumes) `runId`. */
  readonly run: <A, E, R>(
    runId: string,
    program: Effect.Effect<A, E, R>,
    options?: RunOptions
  ) => Effect.Effect<A, E | JournalError | IdempotencyConflict | RunLocked | InvalidRunId | PreflightRefused, Exclude<R, CurrentRun>>
  /** Subscribes now (in the current scope) to every event from then on. */
  readonly events: Effect.Effect<Stream.Stream<AgentEvent>, never, Scope.Scope>
  readonly inspect: (runId: string) => Effect.Effect<Option.Option<RunReport>, StoreError>
  /**
   * Continues a run that exists and is not finished: like {@link AgentShape.run}, but `RunNotFound`
   * instead of creating a run for an unknown id, and `RunAlreadyFinished` for a `completed` one (a
   * cancelled one fails with `RunCancelled`). For supervisors and operators: a typo cannot start a run.
   */
  readonly resume: <A, E, R>(
    runId: string,
    program: Effect.Effect<A, E, R>,
    options?: RunOptions
  ) => Effect.Effect<
    A,
    E | JournalError | IdempotencyConflict | RunLocked | InvalidRunId | PreflightRefused | RunNotFound | RunAlreadyFinished,
    Exclude<R, CurrentRun>
  >
  /** Runs, most recently updated first (see `CheckpointStoreShape.list`; default limit 50). */
  readonly list: (options?: {
    readonly status?: RunStatus | undefined
    readonly limit?: number | undefined
  }) => Effect.Effect<ReadonlyArray<RunSummary>, StoreError>
  /**
   * Requests the run's cancellation, durably (see `CheckpointStoreShape.cancel`): a run no executor
   * holds is `cancelled` at once; a running one stops at its next step boundary, wherever its executor
   * runs. Returns the run after the request.
   */
  readonly cancel: (
    runId: string,
    options?: { readonly reason?: string | undefined }
  ) => Effect.Effect<RunRecord, RunNotFound | RunAlreadyFinished | InvalidRunId | StoreError>
  /** Deletes runs not updated for `olderThan` (finished ones only, unless `includeUnfinished`). */
  readonly prune: (options: {
    readonly olderThan: Duration.DurationInput
    readonly includeUnfinished?: boolean | undefined
  }) => Effect.Effect<number, StoreError>
}

/**
 * The agent service tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class Agent extends Context.Tag("effect-llm-resilience/agent/Agent")<Agent, AgentShape>() {}

/**
 * The run a step belongs to; provided by {@link AgentShape.run} to its program.
 *
 * @since 0.1.0
 * @category tags
 */
export class CurrentRun extends Context.Tag("effect-llm-resilience/agent/CurrentRun")<CurrentRun, RunState>() {}

// ---------------------------------------------------------------------------------------------------
// Conversation
// ---------------------------------------------------------------------------------------------------

/**
 * The id of the current run.
 *
 * @since 0.1.0
 * @category accessors
 */
export const runId: Effect.Effect<string, never, CurrentRun> = Effect.map(CurrentRun, (state) => state.runId)

/**
 * The conversation so far.
 *
 * @since 0.1.0
 * @category accessors
 */
export const messages: Effect.Effect<ReadonlyArray<Message>, never, CurrentRun> = Effect.map(CurrentRun, (state) => state.conversation)

/**
 * Appends messages to the conversation (snapshotted with the next step).
 *
 * @since 0.1.0
 * @category combinators
 */
export const addMessages = (...added: ReadonlyArray<Message>): Effect.Effect<void, never, CurrentRun> =>
  Effect.map(CurrentRun, (state) => {
    if (added.length === 0) return
    state.conversation = [...state.conversation, ...added]
    state.dirty = true
  })

// ---------------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------------

/**
 * A journaled step: runs `effect` once per run; a resume returns the stored result (decoded with
 * `schema`) without running it. A failing step is not journaled (a resume runs it again).
 *
 * @since 0.1.0
 * @category steps
 */
export const step = <A, I, E, R>(
  name: string,
  schema: Schema.Schema<A, I>,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | JournalError, R | CurrentRun> =>
  Effect.flatMap(CurrentRun, (state) =>
    withSlot(state, name, "step", (slot) => Effect.gen(function*() {
      const site = siteOf(state, slot, name)
      if (slot.existing?.status === "completed") {
        const value = yield* decodeJson(schema, slot.existing.result, site)
        yield* state.publish(replayedEvent(state, slot, slot.existing))
        return value
      }
      const startedAt = yield* now
      yield* state.publish({ _tag: "StepStarted", runId: state.runId, index: slot.index, step: name, kind: "step" })
      const value = yield* executing(state, slot, name, effect)
      const result = yield* encodeJson(schema, value, site)
      const record = entry(state, slot, { name, kind: "step", status: "completed", result, startedAt, completedAt: yield* now })
      yield* commit(state, record)
      yield* state.publish(completedEvent(state, record))
      return value
    })))

// ---------------------------------------------------------------------------------------------------
// Model steps
// ---------------------------------------------------------------------------------------------------

const toTurn = <A>(result: Fallback.ChainResult<A>): ModelTurn => {
  const { raw: _raw, ...response } = result.response
  return {
    text: result.response.text,
    response,
    route: result.route,
    degraded: result.degraded,
    repaired: result.repaired,
    usage: result.usage,
    attempts: result.attempts,
    durationMs: result.durationMs
  }
}

/**
 * The chain model steps use now: the `LlmClient`, or — after a degraded pre-flight — the fallback
 * chain until a re-check finds the primary healthy. The fallback chain runs without `DegradedMode`,
 * so its answers (served by *its* first route) cannot announce the system healthy.
 */
const currentChain = (state: RunState): Effect.Effect<Fallback.Chain, never, LlmClient> =>
  Effect.gen(function*() {
    const mode = state.route
    if (mode._tag === "fallback") {
      const t = yield* now
      if (t - mode.checkedAt >= mode.recheckMs) {
        const report = yield* Preflight.check(mode.checks)
        if (report.healthy) {
          state.route = { _tag: "primary" }
          yield* state.publish({ _tag: "RouteChanged", runId: state.runId, mode: "primary", reason: "the primary passed its health re-check" })
        } else {
          state.route = { ...mode, checkedAt: t }
        }
      }
    }
    const active = state.route
    if (active._tag === "primary") return yield* LlmClient
    const chain = active.chain
    const isolate = <A, E>(effect: Effect.Effect<A, E>) =>
      Effect.mapInputContext(effect, (context: Context.Context<never>) => Context.omit(DegradedMode.DegradedMode)(context))
    return {
      ...chain,
      generate: (request) => isolate(chain.generate(request)),
      generateObject: (schema, request, options) => isolate(chain.generateObject(schema, request, options))
    } satisfies Fallback.Chain
  })

const modelStep = <V, VI, E extends AllRoutesFailed | InvalidOptions = AllRoutesFailed>(
  name: string,
  schema: Schema.Schema<V, VI>,
  call: (chain: Fallback.Chain, idempotencyKey: string) => Effect.Effect<V, E>,
  conversationAfter?: (value: V, before: ReadonlyArray<Message>) => ReadonlyArray<Message>
): Effect.Effect<V, E | JournalError, CurrentRun | LlmClient> =>
  Effect.flatMap(CurrentRun, (state) =>
    withSlot(state, name, "model", (slot) => Effect.gen(function*() {
      const site = siteOf(state, slot, name)
      if (slot.existing?.status === "completed") {
        const value = yield* decodeJson(schema, slot.existing.result, site)
        adopt(state, conversationAfter?.(value, state.conversation))
        yield* state.publish(replayedEvent(state, slot, slot.existing))
        return value
      }
      const startedAt = yield* now
      yield* state.publish({ _tag: "StepStarted", runId: state.runId, index: slot.index, step: name, kind: "model" })
      const chain = yield* currentChain(state)
      // The step key doubles as the request's idempotency key: a call re-sent after a crash carries
      // the same key to providers and gateways that dedupe.
      const value = yield* executing(state, slot, name, call(chain, slot.key))
      const result = yield* encodeJson(schema, value, site)
      const record = entry(state, slot, { name, kind: "model", status: "completed", result, startedAt, completedAt: yield* now })
      yield* commit(state, record, conversationAfter?.(value, state.conversation))
      yield* state.publish(completedEvent(state, record))
      return value
    })))

/**
 * A model call as a step (explicit messages; the conversation is not touched).
 *
 * @since 0.1.0
 * @category model steps
 */
export const generate = (
  request: Fallback.ChainRequest,
  options?: { readonly name?: string | undefined }
): Effect.Effect<ModelTurn, AllRoutesFailed | JournalError, CurrentRun | LlmClient> =>
  modelStep(
    options?.name ?? "model",
    ModelTurn,
    (chain, key) => Effect.map(chain.generate({ ...request, idempotencyKey: request.idempotencyKey ?? key }), toTurn)
  )

/**
 * A model turn over the conversation: sends the conversation as the messages, appends the assistant's
 * answer (with its tool calls) and snapshots it with the step.
 *
 * @since 0.1.0
 * @category model steps
 */
export const turn = (
  request: Omit<Fallback.ChainRequest, "messages">,
  options?: { readonly name?: string | undefined }
): Effect.Effect<ModelTurn, AllRoutesFailed | JournalError, CurrentRun | LlmClient> =>
  Effect.flatMap(messages, (conversation) =>
    modelStep(
      options?.name ?? "model",
      ModelTurn,
      (chain, key) => Effect.map(chain.generate({ ...request, messages: conversation, idempotencyKey: request.idempotencyKey ?? key }), toTurn),
      (value, before) => [
        ...before,
        {
          role: "assistant",
          content: value.text,
          ...(value.response.toolCalls.length > 0 ? { toolCalls: value.response.toolCalls } : {})
        }
      ]
    ))

/**
 * A schema-gated model call as a step: the decoded value is journaled (encoded with `schema`) along
 * with the response metadata.
 *
 * @since 0.1.0
 * @category model steps
 */
export const generateObject = <A, I>(
  schema: Schema.Schema<A, I>,
  request: Fallback.ChainRequest,
  options?: Fallback.ObjectOptions<A> & { readonly step?: string | undefined }
): Effect.Effect<ModelTurn & { readonly value: A }, AllRoutesFailed | InvalidOptions | JournalError, CurrentRun | LlmClient> =>
  modelStep(
    options?.step ?? "model",
    Schema.Struct({ ...ModelTurn.fields, value: schema }),
    (chain, key) =>
      Effect.map(
        chain.generateObject(schema, { ...request, idempotencyKey: request.idempotencyKey ?? key }, options),
        (result) => ({ ...toTurn(result), value: result.value })
      )
  )

// ---------------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------------

/**
 * Calls a tool as a journaled step — claim (a committed `started` entry with the arguments' hash),
 * confirm the lease (`LeaseLost`, and no call, when this executor lost it), act with the step's
 * idempotency key and fencing token, record — and returns what the agent should hear. On resume:
 *
 * - a recorded outcome (success, failure, refusal, unknown) is returned as recorded;
 * - a claimed call without an outcome is re-run (`pure`, `idempotent`), re-sent with the same key
 *   (`keyed`, within `keyRetention`), else reconciled (`reconcile`: applied → recorded; not applied →
 *   made now; cannot tell → unknown), else marked `unknown` — never re-sent blindly;
 * - different arguments under the same key fail with `IdempotencyConflict`.
 *
 * While the system is degraded, a tool with `whenDegraded: "refuse"` (irreversible tools by default)
 * is not called and its key is not used; the refusal is journaled so a replay shows the agent the same
 * thing, and a later call (after recovery) runs under its own key. With `callId`, the reply is also
 * appended to the conversation as the `tool` message answering that call.
 *
 * @since 0.1.0
 * @category tools
 */
export const useTool = <Args, ArgsI, A, AI, E, R>(
  tool: Tool.Tool<Args, ArgsI, A, AI, E, R>,
  args: Args,
  options?: { readonly callId?: string | undefined }
): Effect.Effect<ToolReply<A>, JournalError | IdempotencyConflict, R | CurrentRun> =>
  Effect.flatMap(CurrentRun, (state) => runTool(state, tool, args, options?.callId))

/**
 * Like {@link useTool}, but a failure, refusal or unknown outcome fails with its typed error (for
 * programs that handle tool outcomes themselves rather than handing them to a model).
 *
 * @since 0.1.0
 * @category tools
 */
export const callTool = <Args, ArgsI, A, AI, E, R>(
  tool: Tool.Tool<Args, ArgsI, A, AI, E, R>,
  args: Args
): Effect.Effect<A, ToolFailed | ToolRefused | ToolOutcomeUnknown | JournalError | IdempotencyConflict, R | CurrentRun> =>
  Effect.flatMap(useTool(tool, args), (reply) => reply._tag === "Success" ? Effect.succeed(reply.value) : Effect.fail(reply.error))

/**
 * A set of tools for a model: their definitions, and `dispatch` for the model's tool calls (decodes
 * the arguments, calls {@link useTool} with the call's id, so the reply joins the conversation). A
 * call to an unknown tool or with arguments that do not decode gets a text reply without a step.
 *
 * @since 0.1.0
 * @category tools
 */
export interface Toolkit<R> {
  readonly definitions: ReadonlyArray<ToolDefinition>
  readonly add: <Args, ArgsI, A, AI, E, R2>(tool: Tool.Tool<Args, ArgsI, A, AI, E, R2>) => Toolkit<R | R2>
  readonly dispatch: (call: ToolCall) => Effect.Effect<ToolReply<unknown>, JournalError | IdempotencyConflict, R | CurrentRun>
}

type Handler<R> = (call: ToolCall) => Effect.Effect<ToolReply<unknown>, JournalError | IdempotencyConflict, R | CurrentRun>

const makeToolkit = <R>(definitions: ReadonlyArray<ToolDefinition>, handlers: ReadonlyMap<string, Handler<R>>): Toolkit<R> => ({
  definitions,
  add: <Args, ArgsI, A, AI, E, R2>(tool: Tool.Tool<Args, ArgsI, A, AI, E, R2>): Toolkit<R | R2> => {
    const decode = Schema.decodeUnknownEither(Schema.parseJson(tool.parameters))
    const handler: Handler<R2> = (call) => {
      const args = decode(call.arguments)
      if (args._tag === "Left") {
        return rejectCall(call, `invalid arguments for ${tool.name}: ${args.left.message}`)
      }
      return useTool(tool, args.right, { callId: call.id })
    }
    const next = new Map<string, Handler<R | R2>>(handlers)
    next.set(tool.name, handler)
    return makeToolkit<R | R2>([...definitions.filter((d) => d.name !== tool.name), tool.definition], next)
  },
  dispatch: (call) => {
    const handler = handlers.get(call.name)
    return handler === undefined ? rejectCall(call, `there is no tool named ${call.name}`) : handler(call)
  }
})

/** A text reply to a call that never became a step (it follows from the journaled model answer). */
const rejectCall = (call: ToolCall, message: string): Effect.Effect<ToolReply<unknown>, never, CurrentRun> =>
  Effect.map(CurrentRun, (state) => {
    const text = texts.failure(call.name, message)
    state.conversation = [...state.conversation, { role: "tool", content: text, toolCallId: call.id, name: call.name }]
    state.dirty = true
    return { _tag: "Failure", tool: call.name, key: "", text, error: new ToolFailed({ tool: call.name, key: "", message }) }
  })

/**
 * An empty toolkit; add tools with `.add(tool)`.
 *
 * @since 0.1.0
 * @category tools
 */
export const toolkit: Toolkit<never> = makeToolkit([], new Map())

// ---------------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------------

const isTagged = (u: unknown, tag: string): boolean =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === tag

/**
 * Checks a run id (1–200 characters, no control characters); every engine applies this one rule.
 *
 * @since 0.2.0
 * @category validation
 */
export const checkRunId = (id: string): Effect.Effect<string, InvalidRunId> =>
  id.length === 0 || id.length > 200 || /[\u0000-\u001f\u007f]/.test(id)
    ? Effect.fail(new InvalidRunId({ runId: id.slice(0, 200), message: "a run id must be 1–200 characters without control characters" }))
    : Effect.succeed(id)

const millis = (input: Duration.DurationInput): number => Duration.toMillis(Duration.decode(input))

const Conversation = Schema.parseJson(Schema.Array(Message))
const ModelUsage = Schema.parseJson(Schema.Struct({ v: Schema.Struct({ usage: Usage }) }))

const reportOf = (run: RunRecord, steps: ReadonlyArray<StepRecord>): RunReport => {
  const usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 }
  for (const s of steps) {
    if (s.kind !== "model" || s.result === null) continue
    const decoded = Schema.decodeUnknownOption(ModelUsage)(s.result)
    if (Option.isNone(decoded)) continue
    usage.inputTokens += decoded.value.v.usage.inputTokens
    usage.outputTokens += decoded.value.v.usage.outputTokens
    usage.totalTokens += decoded.value.v.usage.totalTokens
  }
  return {
    run,
    steps,
    conversation: run.conversation === null ? [] : Option.getOrElse(Schema.decodeUnknownOption(Conversation)(run.conversation), () => []),
    usage,
    unknown: steps.filter((s) => s.status === "unknown")
  }
}

/**
 * Builds an agent over the `CheckpointStore` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: AgentOptions = {}): Effect.Effect<AgentShape, never, CheckpointStore> =>
  Effect.gen(function*() {
    const store: CheckpointStoreShape = yield* CheckpointStore
    const hub = yield* PubSub.unbounded<AgentEvent>()
    const executorId = options.executorId ?? `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`
    const leaseMs = options.leaseDuration === undefined ? defaults.leaseDurationMs : millis(options.leaseDuration)
    const heartbeatMs = options.heartbeatInterval === false
      ? undefined
      : options.heartbeatInterval === undefined
      ? defaults.heartbeatIntervalMs
      : millis(options.heartbeatInterval)
    // Runs this executor is executing: a second `run` of one of them here is refused at once (the
    // store's lease would let the same owner in again).
    const active = new Set<string>()
    const onEvent = options.onEvent
    const publish = (event: AgentEvent) =>
      onEvent === undefined
        ? Effect.asVoid(PubSub.publish(hub, event))
        : Effect.zipRight(onEvent(event), Effect.asVoid(PubSub.publish(hub, event)))

    const preflight = (id: string, chosen: Preflight.PreflightOptions | undefined) =>
      Effect.gen(function*() {
        if (chosen === undefined) return { _tag: "primary" } as const
        const checks: Preflight.HealthChecks = { ...chosen, primaryBreaker: chosen.primaryBreaker ?? options.primaryBreaker }
        const report = yield* Preflight.check(checks)
        if (report.healthy) return { _tag: "primary" } as const
        const reason = report.findings.filter((f) => !f.healthy).map((f) => `${f.source}: ${f.detail}`).join("; ")
        if (chosen.onDegraded === "refuse") {
          return yield* new PreflightRefused({ runId: id, findings: report.findings, message: `run ${id} not started: the primary is degraded (${reason})` })
        }
        return {
          _tag: "fallback",
          chain: chosen.fallback,
          // Re-checks skip DegradedMode: it reflects the last answer served, and while this run avoids
          // the primary only the primary's answers could clear it.
          checks: { ...checks, degradedMode: false },
          recheckMs: chosen.recheckEvery === undefined ? Preflight.defaults.recheckEveryMs : millis(chosen.recheckEvery),
          checkedAt: yield* now,
          reason
        } as const
      })

    const keeper = (state: RunState): Effect.Effect<never, LeaseLost | RunCancelled> =>
      Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep(Duration.millis(Math.max(1, Math.floor(leaseMs / 3))))
          const t = yield* now
          // A failed renewal is retried at the next tick; only a lease taken over stops the run (and
          // even without renewals, every write is fenced by the epoch).
          const renewed = yield* Effect.catchTag(store.renew(state.lease, { now: t, leaseMs }), "StoreError", () => Effect.succeed(undefined))
          if (renewed !== undefined) observe(state, renewed)
          // A cancel seen here stops a program that is between steps (waiting, thinking) now; a step in
          // progress is left to finish and be recorded — it stops at the boundary after it.
          if (state.cancelRequested && !state.busy) return yield* stoppedByCancel(state, "between steps")
        }
      })

    const run: AgentShape["run"] = (id, program, runOptions) =>
      Effect.gen(function*() {
        yield* checkRunId(id)
        if (active.has(id)) {
          return yield* new RunLocked({ runId: id, owner: executorId, message: `run ${id} is already executing in this executor` })
        }
        const route = yield* preflight(id, runOptions?.preflight ?? options.preflight)
        const acquire = Effect.gen(function*() {
          const lease = yield* store.acquire(id, executorId, { now: yield* now, leaseMs })
          active.add(id)
          return lease
        })
        const release = (lease: Lease, exit: Exit.Exit<unknown, unknown>) =>
          Effect.gen(function*() {
            active.delete(id)
            const interrupted = Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
            const cancelled = Exit.isFailure(exit) &&
              Option.exists(Cause.failureOption(exit.cause), (error) => isTagged(error, "RunCancelled"))
            // (The store also releases any non-completed run with a cancel request as cancelled.)
            const status = Exit.isSuccess(exit) ? "completed" : cancelled ? "cancelled" : interrupted ? "running" : "failed"
            // A release that fails leaves the lease to expire; the run's outcome is what matters here.
            yield* Effect.ignore(store.release(lease, status, yield* now))
            yield* publish({ _tag: "RunFinished", runId: id, outcome: Exit.isSuccess(exit) ? "completed" : cancelled ? "cancelled" : interrupted ? "interrupted" : "failed" })
          })
        return yield* Effect.acquireUseRelease(acquire, (lease) =>
          Effect.gen(function*() {
            const steps = yield* store.steps(id)
            const state: RunState = {
              runId: id,
              lease,
              leaseMs,
              store,
              journal: new Map(steps.map((s) => [s.index, s])),
              heartbeatMs,
              primaryBreaker: options.primaryBreaker,
              publish,
              next: 0,
              busy: false,
              conversation: [],
              dirty: false,
              route,
              cancelRequested: false
            }
            yield* publish({ _tag: "RunStarted", runId: id, epoch: lease.epoch, journaled: steps.length })
            return yield* Effect.raceFirst(Effect.provideService(program, CurrentRun, state), keeper(state))
          }), release)
      })

    const resume: AgentShape["resume"] = (id, program, runOptions) =>
      Effect.gen(function*() {
        yield* checkRunId(id)
        const record = yield* store.run(id)
        if (Option.isNone(record)) return yield* new RunNotFound({ runId: id, message: `there is no run ${id} to resume in this store` })
        if (record.value.status === "completed") {
          return yield* new RunAlreadyFinished({ runId: id, status: "completed", message: `run ${id} already completed; there is nothing to resume` })
        }
        // A cancelled run is refused by the acquisition itself (RunCancelled), whoever asks.
        return yield* run(id, program, runOptions)
      })

    return {
      executorId,
      run,
      resume,
      events: Stream.fromPubSub(hub, { scoped: true }),
      inspect: (id) =>
        Effect.gen(function*() {
          const record = yield* store.run(id)
          if (Option.isNone(record)) return Option.none()
          return Option.some(reportOf(record.value, yield* store.steps(id)))
        }),
      list: (listOptions) => store.list({ status: listOptions?.status, limit: listOptions?.limit ?? 50 }),
      cancel: (id, cancelOptions) =>
        Effect.flatMap(checkRunId(id), () => Effect.flatMap(now, (t) => store.cancel(id, { now: t, reason: cancelOptions?.reason }))),
      prune: ({ includeUnfinished, olderThan }) =>
        Effect.flatMap(now, (t) => store.prune({ before: t - millis(olderThan), now: t, includeUnfinished: includeUnfinished === true }))
    }
  })

/**
 * The agent as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: AgentOptions = {}): Layer.Layer<Agent, never, CheckpointStore> => Layer.effect(Agent, make(options))

/**
 * The agent with options read from `Config` (for example `Config.all({ executorId: Config.string("AGENT_EXECUTOR_ID") })`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (config: Config.Config<AgentOptions>): Layer.Layer<Agent, ConfigError.ConfigError, CheckpointStore> =>
  Layer.effect(Agent, Effect.flatMap(config, make))

/**
 * Runs (or resumes) a run with the agent in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const run = <A, E, R>(
  id: string,
  program: Effect.Effect<A, E, R>,
  options?: RunOptions
): Effect.Effect<A, E | JournalError | IdempotencyConflict | RunLocked | InvalidRunId | PreflightRefused, Exclude<R, CurrentRun> | Agent> =>
  Effect.flatMap(Agent, (agent) => agent.run(id, program, options))

/**
 * Reads a run's record, journal, conversation and usage.
 *
 * @since 0.1.0
 * @category accessors
 */
export const inspect = (id: string): Effect.Effect<Option.Option<RunReport>, StoreError, Agent> =>
  Effect.flatMap(Agent, (agent) => agent.inspect(id))

/**
 * Deletes old runs (see {@link AgentShape.prune}).
 *
 * @since 0.1.0
 * @category accessors
 */
export const prune = (options: {
  readonly olderThan: Duration.DurationInput
  readonly includeUnfinished?: boolean | undefined
}): Effect.Effect<number, StoreError, Agent> => Effect.flatMap(Agent, (agent) => agent.prune(options))

/**
 * What one journal entry means, for operators and dashboards (`llm-resilience runs show` prints it).
 *
 * @since 0.2.0
 * @category models
 */
export interface StepView {
  readonly step: StepRecord
  /**
   * `done`; `tool-failed` (the tool's typed failure, recorded and handed to the agent as text);
   * `refused` (the degraded guard: not called, key unused); `unknown` (sent, outcome never established:
   * a human must check the callee); `claimed` (a tool call claimed whose outcome is not recorded: where
   * a stopped run stopped — what a resume does with it depends on the tool's effect kind).
   */
  readonly outcome: "done" | "tool-failed" | "refused" | "unknown" | "claimed"
  /** One sentence saying so (reasons and failure messages as journaled, already scrubbed). */
  readonly detail: string
  /** For a journaled model answer: who served it, after which attempts, at what cost. */
  readonly model: {
    readonly route: string
    readonly provider: string
    readonly model: string
    readonly degraded: boolean
    readonly repaired: boolean
    readonly attempts: ReadonlyArray<AttemptRecord>
    readonly usage: Usage
    readonly durationMs: number
  } | undefined
}

/**
 * Reads a journal entry for an operator (see {@link StepView}).
 *
 * @since 0.2.0
 * @category reports
 */
export const describeStep = (step: StepRecord): StepView => describeJournalStep(step)

/**
 * A stored run (from {@link inspect}) as a `Report.RunRecord`, so `Report.html` renders it: each
 * journaled model answer as a call with its attempts, each journal entry as a step (refused and
 * unknown tool calls noted), the cancel request and the final status as events. It shows what the
 * journal holds — model calls that failed are not journaled, and breaker transitions are not part of
 * a journal; a run recorded live with `Report.makeRecorder` shows both.
 *
 * @since 0.2.0
 * @category reports
 */
export const toReportRecord = (report: RunReport): Report.RunRecord => journalRecord(report)

/**
 * Continues an existing, unfinished run with the agent in context (see {@link AgentShape.resume}).
 *
 * @since 0.2.0
 * @category accessors
 */
export const resume = <A, E, R>(
  id: string,
  program: Effect.Effect<A, E, R>,
  options?: RunOptions
): Effect.Effect<
  A,
  E | JournalError | IdempotencyConflict | RunLocked | InvalidRunId | PreflightRefused | RunNotFound | RunAlreadyFinished,
  Exclude<R, CurrentRun> | Agent
> => Effect.flatMap(Agent, (agent) => agent.resume(id, program, options))

/**
 * Lists runs, most recently updated first (see {@link AgentShape.list}).
 *
 * @since 0.2.0
 * @category accessors
 */
export const list = (options?: {
  readonly status?: RunStatus | undefined
  readonly limit?: number | undefined
}): Effect.Effect<ReadonlyArray<RunSummary>, StoreError, Agent> => Effect.flatMap(Agent, (agent) => agent.list(options))

/**
 * Requests a run's cancellation (see {@link AgentShape.cancel}).
 *
 * @since 0.2.0
 * @category accessors
 */
export const cancel = (
  id: string,
  options?: { readonly reason?: string | undefined }
): Effect.Effect<RunRecord, RunNotFound | RunAlreadyFinished | InvalidRunId | StoreError, Agent> =>
  Effect.flatMap(Agent, (agent) => agent.cancel(id, options))

// ---------------------------------------------------------------------------------------------------
// Definitions (what `llm-resilience runs resume --agent` loads)
// ---------------------------------------------------------------------------------------------------

/**
 * Marks values made by {@link define}. A registered symbol, so that a definition made by one copy of
 * the package (the user's module) is recognised by another (the CLI).
 *
 * @since 0.2.0
 * @category symbols
 */
export const DefinitionTypeId: unique symbol = Symbol.for("effect-llm-resilience/agent/Definition")

/**
 * @since 0.2.0
 * @category symbols
 */
export type DefinitionTypeId = typeof DefinitionTypeId

/**
 * An agent as something that can be resumed without the code that started it: how to rebuild a run's
 * program from its id, with every service the program needs already provided (only `CurrentRun` is
 * left: the executor provides it), and the executor options to run it with.
 *
 * @since 0.2.0
 * @category models
 */
export interface Definition<A, E> {
  readonly [DefinitionTypeId]: DefinitionTypeId
  /**
   * The program of run `runId` — the same program the run was started with (rebuild its inputs from
   * the id, e.g. by looking the ticket up), its services provided (`Effect.provide(program, Live)`,
   * where `Live` has the `LlmClient` and what the tools need, but not the checkpoint store or the agent).
   */
  readonly program: (runId: string) => Effect.Effect<A, E, CurrentRun>
  /**
   * Executor options (lease, heartbeat, primary breaker, pre-flight). No `executorId`: whoever resumes
   * runs under an identity of its own, so the lease protocol keeps it off a run a live worker holds.
   */
  readonly options: Omit<AgentOptions, "executorId">
}

/**
 * Makes a {@link Definition}: export it from a module, and `llm-resilience runs resume <id> --agent
 * ./module.js#export` can continue your runs from the command line.
 *
 * @since 0.2.0
 * @category constructors
 */
export const define = <A, E>(definition: {
  readonly program: (runId: string) => Effect.Effect<A, E, CurrentRun>
  readonly options?: Omit<AgentOptions, "executorId"> | undefined
}): Definition<A, E> => ({ [DefinitionTypeId]: DefinitionTypeId, program: definition.program, options: definition.options ?? {} })

/**
 * Whether a value is a {@link Definition} (for loaders of user modules).
 *
 * @since 0.2.0
 * @category guards
 */
export const isDefinition = (u: unknown): u is Definition<unknown, unknown> =>
  typeof u === "object" && u !== null && DefinitionTypeId in u && "program" in u && typeof u.program === "function" &&
  "options" in u && typeof u.options === "object" && u.options !== null

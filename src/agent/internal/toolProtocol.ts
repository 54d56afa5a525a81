/**
 * The tool protocol behind `Agent.useTool`: claim (a committed `started` entry with the arguments'
 * hash) → confirm the lease (the fence: a stale executor stops here) → act with the step's idempotency
 * key and fencing token → record; on resume, the action the resume table of
 * docs/durable-agents.md prescribes for the entry's state and the tool's effect kind; the degraded
 * guard; and the text each outcome becomes for the agent.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { CircuitBreakers } from "../../CircuitBreaker.js"
import * as DegradedMode from "../../DegradedMode.js"
import { redact } from "../../internal/redact.js"
import type { Message } from "../../Provider.js"
import type { JournalError, ToolReply } from "../Agent.js"
import { IdempotencyConflict, type LeaseLost, type StoreError, ToolFailed, ToolOutcomeUnknown, ToolRefused } from "../AgentError.js"
import type { StepRecord, StepStatus } from "../CheckpointStore.js"
import type * as Tool from "../Tool.js"
import { argsHash, decodeJson, encodeJson } from "./codec.js"
import {
  adopt,
  claim,
  commit,
  completedEvent,
  confirmLease,
  entry,
  executing,
  now,
  replayedEvent,
  type RunState,
  siteOf,
  type Slot,
  withSlot
} from "./runState.js"

const outcomeSchema = <A, I>(success: Schema.Schema<A, I>) =>
  Schema.Union(
    Schema.TaggedStruct("Success", { value: success }),
    Schema.TaggedStruct("Failure", { errorTag: Schema.optional(Schema.String), message: Schema.String })
  )

const Reason = Schema.Struct({ reason: Schema.String })

const degradedReason = (state: RunState): Effect.Effect<Option.Option<string>> =>
  Effect.gen(function*() {
    if (state.route._tag === "fallback") return Option.some(`the run is on its fallback route (${state.route.reason})`)
    const ref = yield* Effect.serviceOption(DegradedMode.DegradedMode)
    if (Option.isSome(ref)) {
      const current = yield* SubscriptionRef.get(ref.value)
      if (current.degraded) return Option.some(current.reason ?? `answers come from fallback route ${current.route ?? "?"}`)
    }
    const key = state.primaryBreaker
    if (key !== undefined) {
      const registry = yield* Effect.serviceOption(CircuitBreakers)
      if (Option.isSome(registry)) {
        const breaker = yield* registry.value.lookup(key)
        if (Option.isSome(breaker)) {
          const breakerState = yield* breaker.value.state
          if (breakerState === "open" || breakerState === "isolated") {
            return Option.some(`the primary route's circuit breaker (${key}) is ${breakerState}`)
          }
        }
      }
    }
    return Option.none()
  })

export const texts = {
  failure: (tool: string, message: string) =>
    `Tool ${tool} is unavailable: ${message}. Proceed without it and note the limitation in your answer.`,
  refused: (tool: string, reason: string) =>
    `Tool ${tool} refused: ${reason}. Nothing was done. Irreversible actions are held while the system runs degraded; you may try again later.`,
  unknown: (tool: string, key: string, reason: string) =>
    `The outcome of ${tool} is unknown (${reason}): the call was sent but its result was never recorded, and repeating it could do it twice. Do not call it again for this request; tell the user it must be checked (reference ${key}).`
}

/** The reply for a journaled, final tool entry. */
const replyOf = <A>(
  tool: { readonly name: string; readonly render: ((value: A) => string) | undefined },
  state: RunState,
  record: StepRecord,
  outcome:
    | { readonly _tag: "Success"; readonly value: A }
    | { readonly _tag: "Failure"; readonly errorTag?: string | undefined; readonly message: string }
    | { readonly _tag: "Reason"; readonly reason: string }
): ToolReply<A> => {
  const base = { tool: tool.name, key: record.key }
  switch (outcome._tag) {
    case "Success": {
      const stored = record.result === null ? "null" : record.result
      const text = tool.render?.(outcome.value) ?? extractValueJson(stored)
      return { _tag: "Success", ...base, value: outcome.value, text }
    }
    case "Failure":
      return {
        _tag: "Failure",
        ...base,
        text: texts.failure(tool.name, outcome.message),
        error: new ToolFailed({ tool: tool.name, key: record.key, ...(outcome.errorTag === undefined ? {} : { errorTag: outcome.errorTag }), message: outcome.message })
      }
    case "Reason":
      return record.status === "refused"
        ? {
          _tag: "Refused",
          ...base,
          text: texts.refused(tool.name, outcome.reason),
          error: new ToolRefused({ tool: tool.name, reason: outcome.reason, message: `${tool.name} refused: ${outcome.reason}` })
        }
        : {
          _tag: "Unknown",
          ...base,
          text: texts.unknown(tool.name, record.key, outcome.reason),
          error: new ToolOutcomeUnknown({
            runId: state.runId,
            index: record.index,
            tool: tool.name,
            key: record.key,
            message: `run ${state.runId} step ${record.index}: the outcome of ${tool.name} is unknown (${outcome.reason})`
          })
        }
  }
}

/** The JSON of the stored value inside the stored `{"v":{"_tag":"Success","value":…}}` envelope. */
const extractValueJson = (stored: string): string => {
  try {
    const parsed: unknown = JSON.parse(stored)
    const value = typeof parsed === "object" && parsed !== null && "v" in parsed && typeof parsed.v === "object" && parsed.v !== null && "value" in parsed.v
      ? parsed.v.value
      : parsed
    return JSON.stringify(value) ?? "null"
  } catch {
    return stored
  }
}

/**
 * The contexts of a tool step's calls. Their `confirmLease` remembers the failure it gave the tool, so
 * that this failure, handed back as the tool's own, stops the run (`fenceFailure`) instead of being
 * recorded as the tool's outcome.
 */
const toolContexts = (state: RunState, slot: Slot) => {
  let given: LeaseLost | StoreError | undefined
  const confirm = Effect.tapError(confirmLease(state), (error) =>
    Effect.sync(() => {
      given = error
    }))
  return {
    context: (resend: boolean): Tool.ToolContext => ({
      runId: state.runId,
      index: slot.index,
      idempotencyKey: slot.key,
      resend,
      fencingToken: state.lease.epoch,
      confirmLease: confirm
    }),
    fenceFailure: (error: unknown): LeaseLost | StoreError | undefined => (given !== undefined && error === given ? given : undefined)
  }
}

/** Runs one tool call as a journaled step of `state`'s run (see `Agent.useTool`). */
export const runTool = <Args, ArgsI, A, AI, E, R>(
  state: RunState,
  tool: Tool.Tool<Args, ArgsI, A, AI, E, R>,
  args: Args,
  callId: string | undefined
): Effect.Effect<ToolReply<A>, JournalError | IdempotencyConflict, R> =>
  withSlot(state, tool.name, "tool", (slot) =>
    Effect.gen(function*() {
      const site = siteOf(state, slot, tool.name)
      const hash = yield* argsHash(tool.parameters, args, site)
      const Outcome = outcomeSchema(tool.success)
      const { context, fenceFailure } = toolContexts(state, slot)
      const withReply = (reply: ToolReply<A>): ReadonlyArray<Message> | undefined =>
        callId === undefined
          ? undefined
          : [...state.conversation, { role: "tool", content: reply.text, toolCallId: callId, name: tool.name }]
      const base = { name: tool.name, kind: "tool" as const, effect: tool.effect, argsHash: hash }

      /** Records a final entry (and the tool message) in one transaction. */
      const finish = (
        status: Exclude<StepStatus, "started">,
        result: string,
        outcome: Parameters<typeof replyOf<A>>[3],
        startedAt: number
      ) =>
        Effect.gen(function*() {
          const record = entry(state, slot, { ...base, status, result, startedAt, completedAt: yield* now })
          const reply = replyOf(tool, state, record, outcome)
          yield* commit(state, record, withReply(reply))
          yield* state.publish(completedEvent(state, record))
          return reply
        })

      const act = (resend: boolean, startedAt: number) =>
        Effect.gen(function*() {
          // The fence: an executor that lost its lease (paused past it, taken over) stops here with
          // LeaseLost and never calls the tool; after it, the lease is ours for another leaseMs.
          if (tool.effect !== "pure") yield* confirmLease(state)
          // `either` catches the tool's typed failure only: a defect or an interruption leaves the
          // claim `started` and propagates — the outcome is then unknown, never assumed.
          const outcome = yield* executing(state, slot, tool.name, Effect.either(tool.run(args, context(resend))))
          if (outcome._tag === "Right") {
            const stored = { _tag: "Success" as const, value: outcome.right }
            return yield* finish("completed", yield* encodeJson(Outcome, stored, site), stored, startedAt)
          }
          const error: unknown = outcome.left
          const fenced = fenceFailure(error)
          if (fenced !== undefined) return yield* fenced
          const errorTag = typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : undefined
          const stored = {
            _tag: "Failure" as const,
            ...(errorTag === undefined ? {} : { errorTag }),
            message: redact(tool.describeFailure(outcome.left))
          }
          return yield* finish("completed", yield* encodeJson(Outcome, stored, site), stored, startedAt)
        })

      const withReason = (status: "refused" | "unknown", reason: string, startedAt: number) =>
        Effect.flatMap(
          encodeJson(Reason, { reason }, site),
          (result) => finish(status, result, { _tag: "Reason", reason }, startedAt)
        )

      const refusal = tool.whenDegraded === "refuse" ? degradedReason(state) : Effect.succeed(Option.none<string>())

      const reconcileOr = (why: string, startedAt: number) =>
        Effect.gen(function*() {
          const reconcile = tool.reconcile
          if (reconcile === undefined) return yield* withReason("unknown", `${why}; no reconcile hook`, startedAt)
          const found = yield* executing(state, slot, tool.name, Effect.either(reconcile(args, context(true))))
          if (found._tag === "Left") {
            const fenced = fenceFailure(found.left)
            if (fenced !== undefined) return yield* fenced
            return yield* withReason("unknown", `${why}; reconcile failed: ${redact(tool.describeFailure(found.left))}`, startedAt)
          }
          switch (found.right._tag) {
            case "Applied": {
              const stored = { _tag: "Success" as const, value: found.right.value }
              return yield* finish("completed", yield* encodeJson(Outcome, stored, site), stored, startedAt)
            }
            case "Unknown":
              return yield* withReason("unknown", `${why}; reconcile: ${found.right.reason}`, startedAt)
            case "NotApplied": {
              // Never reached the callee: making the call now is a fresh action, so the guard applies.
              const refused = yield* refusal
              if (Option.isSome(refused)) return yield* withReason("refused", refused.value, startedAt)
              return yield* act(true, startedAt)
            }
          }
        })

      const existing = slot.existing
      if (existing !== undefined) {
        if (existing.argsHash !== hash) {
          return yield* new IdempotencyConflict({
            runId: state.runId,
            index: slot.index,
            tool: tool.name,
            key: slot.key,
            message: `run ${state.runId} step ${slot.index}: key ${slot.key} was used for ${tool.name} with different arguments; refusing to act under it`
          })
        }
        switch (existing.status) {
          case "completed": {
            const outcome = yield* decodeJson(Outcome, existing.result, site)
            const reply = replyOf(tool, state, existing, outcome)
            adopt(state, withReply(reply))
            yield* state.publish(replayedEvent(state, slot, existing))
            return reply
          }
          case "refused":
          case "unknown": {
            const { reason } = yield* decodeJson(Reason, existing.result, site)
            const reply = replyOf(tool, state, existing, { _tag: "Reason", reason })
            adopt(state, withReply(reply))
            yield* state.publish(replayedEvent(state, slot, existing))
            return reply
          }
          case "started": {
            yield* state.publish({ _tag: "StepStarted", runId: state.runId, index: slot.index, step: tool.name, kind: "tool" })
            const startedAt = existing.startedAt
            switch (tool.effect) {
              case "pure":
              case "idempotent":
                return yield* act(true, startedAt)
              case "keyed": {
                const age = (yield* now) - startedAt
                if (age < tool.keyRetentionMs) return yield* act(true, startedAt)
                return yield* reconcileOr(`claimed ${Math.round(age / 1000)} s ago, beyond the key retention of ${Math.round(tool.keyRetentionMs / 1000)} s`, startedAt)
              }
              case "irreversible":
                return yield* reconcileOr("an irreversible call was sent before the executor stopped", startedAt)
            }
          }
        }
      }

      const startedAt = yield* now
      const refused = yield* refusal
      if (Option.isSome(refused)) return yield* withReason("refused", refused.value, startedAt)
      yield* state.publish({ _tag: "StepStarted", runId: state.runId, index: slot.index, step: tool.name, kind: "tool" })
      if (tool.effect !== "pure") {
        yield* claim(state, entry(state, slot, { ...base, status: "started", startedAt, completedAt: null }))
      }
      return yield* act(false, startedAt)
    }))

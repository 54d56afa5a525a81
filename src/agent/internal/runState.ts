/**
 * The state of one executing run and the journal mechanics every step kind shares: allocate the next
 * index, match it against the journal, run with heartbeats, record with the conversation snapshot.
 *
 * One run executes its steps one at a time, in program order — that is what makes the index of a
 * step deterministic across executions — so the state is plain mutable fields owned by the run.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Fallback from "../../Fallback.js"
import type { Message } from "../../Provider.js"
import { type LeaseLost, RunCancelled, StepMismatch, type StoreError } from "../AgentError.js"
import type { CheckpointStoreShape, Lease, StepKind, StepRecord, StepStatus, WriteResult } from "../CheckpointStore.js"
import * as Heartbeat from "../Heartbeat.js"
import type { HealthChecks } from "../Preflight.js"
import { type StepSite, stepKey } from "./codec.js"

/** Where model calls go: the client in context, or (after a degraded pre-flight) the fallback chain. */
export type RouteMode =
  | { readonly _tag: "primary" }
  | {
    readonly _tag: "fallback"
    readonly chain: Fallback.Chain
    readonly checks: HealthChecks
    readonly recheckMs: number
    readonly checkedAt: number
    readonly reason: string
  }

/** Events the journal emits (the public union lives in Agent). */
export type JournalEvent =
  | { readonly _tag: "StepStarted"; readonly runId: string; readonly index: number; readonly step: string; readonly kind: StepKind }
  | {
    readonly _tag: "StepReplayed"
    readonly runId: string
    readonly index: number
    readonly step: string
    readonly kind: StepKind
    readonly status: StepStatus
  }
  | {
    readonly _tag: "StepCompleted"
    readonly runId: string
    readonly index: number
    readonly step: string
    readonly kind: StepKind
    readonly status: StepStatus
    readonly durationMs: number
  }
  | Heartbeat.StillWorking
  | { readonly _tag: "RouteChanged"; readonly runId: string; readonly mode: "primary" | "fallback"; readonly reason: string }

export interface RunState {
  readonly runId: string
  readonly lease: Lease
  /** The lease duration: what a confirmation extends the lease by. */
  readonly leaseMs: number
  readonly store: CheckpointStoreShape
  /** The journal as loaded at start, plus everything recorded since. */
  readonly journal: Map<number, StepRecord>
  readonly heartbeatMs: number | undefined
  readonly primaryBreaker: string | undefined
  readonly publish: (event: JournalEvent) => Effect.Effect<void>
  next: number
  busy: boolean
  conversation: ReadonlyArray<Message>
  /** The conversation changed since the last snapshot was written. */
  dirty: boolean
  route: RouteMode
  /**
   * A cancel request has been seen (in the answer of a journal write or a lease renewal): the run
   * stops at its next step boundary.
   */
  cancelRequested: boolean
}

/** Notes a cancel request a write or a renewal reported. */
export const observe = (state: RunState, result: WriteResult): void => {
  if (result.cancelRequested) state.cancelRequested = true
}

/** The failure a run stops with at a step boundary after a cancel request. */
export const stoppedByCancel = (state: RunState, before: string): RunCancelled =>
  new RunCancelled({
    runId: state.runId,
    message: `run ${state.runId} was cancelled: stopped at a step boundary, before step ${state.next} (${before})`
  })

/** A step's place: its index, key and what the journal already holds there. */
export interface Slot {
  readonly index: number
  readonly key: string
  readonly existing: StepRecord | undefined
}

/**
 * Takes the next index for the duration of `use` (one step at a time: a step started inside or
 * alongside another would be numbered by scheduling order, not program order — a defect). Fails
 * with `StepMismatch` when the journal holds a different step there (the program changed, or
 * branched on something that is not a step result), and with `RunCancelled` once a cancel request has
 * been seen — the step boundary, where stopping loses no work and leaves no call half made.
 */
export const withSlot = <A, E, R>(
  state: RunState,
  name: string,
  kind: StepKind,
  use: (slot: Slot) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | StepMismatch | RunCancelled, R> =>
  Effect.acquireUseRelease(
    Effect.suspend((): Effect.Effect<Slot, StepMismatch | RunCancelled> => {
      if (state.busy) {
        return Effect.dieMessage(`Agent: step "${name}" started while another step of run ${state.runId} is running; steps must run one at a time`)
      }
      if (state.cancelRequested) return Effect.fail(stoppedByCancel(state, name))
      const index = state.next++
      const existing = state.journal.get(index)
      if (existing !== undefined && (existing.name !== name || existing.kind !== kind)) {
        return Effect.fail(new StepMismatch({
          runId: state.runId,
          index,
          journaled: `${existing.kind} ${existing.name}`,
          requested: `${kind} ${name}`,
          message: `run ${state.runId} step ${index}: the journal holds ${existing.kind} "${existing.name}" but the program asked for ${kind} "${name}" (steps must be called in the same order on every execution)`
        }))
      }
      state.busy = true
      return Effect.succeed({ index, key: stepKey(state.runId, index, name), existing })
    }),
    use,
    () =>
      Effect.sync(() => {
        state.busy = false
      })
  )

/** Runs a step's own work, with "still working" heartbeats when it takes long. */
export const executing = <A, E, R>(
  state: RunState,
  slot: Slot,
  name: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const heartbeatMs = state.heartbeatMs
  return heartbeatMs === undefined
    ? effect
    : Heartbeat.during(effect, {
      interval: heartbeatMs,
      onBeat: (elapsedMs) => state.publish({ _tag: "StillWorking", runId: state.runId, index: slot.index, step: name, elapsedMs })
    })
}

/**
 * Writes a journal entry — with the conversation snapshot in the same transaction when the
 * conversation changed (`conversation` replaces it first) — then adopts both in memory.
 */
export const commit = (
  state: RunState,
  record: StepRecord,
  conversation?: ReadonlyArray<Message>
): Effect.Effect<void, LeaseLost | StoreError> =>
  Effect.suspend(() => {
    const next = conversation ?? state.conversation
    const snapshot = conversation !== undefined || state.dirty ? JSON.stringify(next) : undefined
    return Effect.map(state.store.record(state.lease, record, snapshot), (result) => {
      observe(state, result)
      state.journal.set(record.index, record)
      state.conversation = next
      state.dirty = false
    })
  })

/**
 * Commits the claim of a tool step (the committed intent, before the tool acts); `RunCancelled`, and
 * nothing claimed, after a cancel request.
 */
export const claim = (state: RunState, record: StepRecord): Effect.Effect<void, LeaseLost | RunCancelled | StoreError> =>
  Effect.map(state.store.claim(state.lease, record), () => {
    state.journal.set(record.index, record)
  })

/** Replays a journaled conversation change in memory (nothing is written: the snapshot already was). */
export const adopt = (state: RunState, conversation: ReadonlyArray<Message> | undefined): void => {
  if (conversation !== undefined) state.conversation = conversation
}

export const now: Effect.Effect<number> = Clock.currentTimeMillis

/**
 * The fence before an act: confirms in the store, at the Clock's current time, that the run's lease is
 * still this executor's and live, and extends it (see `CheckpointStoreShape.confirm`).
 */
export const confirmLease = (state: RunState): Effect.Effect<void, LeaseLost | StoreError> =>
  Effect.flatMap(now, (t) => state.store.confirm(state.lease, { now: t, leaseMs: state.leaseMs }))

/** A journal entry for this slot. */
export const entry = (
  state: RunState,
  slot: Slot,
  fields: {
    readonly name: string
    readonly kind: StepKind
    readonly status: StepStatus
    readonly effect?: string | null | undefined
    readonly argsHash?: string | null | undefined
    readonly result?: string | null | undefined
    readonly startedAt: number
    readonly completedAt: number | null
  }
): StepRecord => ({
  runId: state.runId,
  index: slot.index,
  name: fields.name,
  key: slot.key,
  kind: fields.kind,
  effect: fields.effect ?? null,
  status: fields.status,
  argsHash: fields.argsHash ?? null,
  result: fields.result ?? null,
  startedAt: fields.startedAt,
  completedAt: fields.completedAt
})

/** Where a step sits, for codec errors. */
export const siteOf = (state: RunState, slot: Slot, name: string): StepSite => ({ runId: state.runId, index: slot.index, step: name })

export const replayedEvent = (state: RunState, slot: Slot, record: StepRecord): JournalEvent => ({
  _tag: "StepReplayed",
  runId: state.runId,
  index: slot.index,
  step: record.name,
  kind: record.kind,
  status: record.status
})

export const completedEvent = (state: RunState, record: StepRecord): JournalEvent => ({
  _tag: "StepCompleted",
  runId: state.runId,
  index: record.index,
  step: record.name,
  kind: record.kind,
  status: record.status,
  durationMs: (record.completedAt ?? record.startedAt) - record.startedAt
})

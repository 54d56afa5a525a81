/**
 * The in-memory checkpoint store: the same contract as the SQL stores (leases, fencing, claims,
 * atomic record + snapshot, prune), over two maps. Every operation runs synchronously inside one
 * `Effect.sync`, which makes it atomic on the single JavaScript thread.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { LeaseLost, RunAlreadyFinished, RunCancelled, RunLocked, RunNotFound, StoreError } from "../AgentError.js"
import type { CheckpointStoreShape, Lease, RunRecord, RunSummary, StepCounts, StepRecord } from "../CheckpointStore.js"

/** The two maps every operation works on. */
interface State {
  readonly runs: Map<string, RunRecord>
  readonly journals: Map<string, Map<number, StepRecord>>
}

const lost = (lease: Lease) =>
  new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) was taken over` })

const expired = (lease: Lease, leaseUntil: number) =>
  new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) expired at ${leaseUntil}` })

const cancelled = (run: RunRecord) =>
  new RunCancelled({
    runId: run.runId,
    ...(run.cancelRequestedAt === null ? {} : { requestedAt: run.cancelRequestedAt }),
    ...(run.cancelReason === null ? {} : { reason: run.cancelReason }),
    message: `run ${run.runId} was cancelled${run.cancelReason === null ? "" : ` (${run.cancelReason})`}; a cancelled run is never resumed`
  })

const leasedAt = (run: RunRecord, now: number) => run.owner !== null && run.leaseUntil > now

const countsOf = (state: State, runId: string): StepCounts => {
  const counts = { total: 0, completed: 0, started: 0, refused: 0, unknown: 0 }
  for (const step of state.journals.get(runId)?.values() ?? []) {
    counts.total++
    counts[step.status]++
  }
  return counts
}

/** `CheckpointStoreShape.list`. */
const listRuns = (state: State, { limit, status }: { readonly limit: number; readonly status?: RunRecord["status"] | undefined }) =>
  Effect.sync(() =>
    Array.from(state.runs.values())
      .filter((run) => status === undefined || run.status === status)
      .sort((a, b) => b.updatedAt - a.updatedAt || (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0))
      .slice(0, Math.max(0, Math.floor(limit)))
      .map(({ conversation: _conversation, ...fields }): RunSummary => ({ ...fields, steps: countsOf(state, fields.runId) }))
  )

/** `CheckpointStoreShape.cancel`. */
const cancelRun = (
  state: State,
  runId: string,
  { now, reason }: { readonly now: number; readonly reason?: string | undefined }
): Effect.Effect<RunRecord, RunNotFound | RunAlreadyFinished> =>
  Effect.suspend((): Effect.Effect<RunRecord, RunNotFound | RunAlreadyFinished> => {
    const run = state.runs.get(runId)
    if (run === undefined) return Effect.fail(new RunNotFound({ runId, message: `there is no run ${runId} in this store` }))
    if (run.status === "completed" || run.status === "cancelled") {
      return Effect.fail(new RunAlreadyFinished({ runId, status: run.status, message: `run ${runId} is already ${run.status}; there is nothing to cancel` }))
    }
    const requested = {
      ...run,
      updatedAt: now,
      cancelRequestedAt: run.cancelRequestedAt ?? now,
      cancelReason: run.cancelReason ?? reason ?? null
    }
    const next: RunRecord = leasedAt(run, now) ? requested : { ...requested, status: "cancelled", owner: null, leaseUntil: 0 }
    state.runs.set(runId, next)
    return Effect.succeed(next)
  })

/** `CheckpointStoreShape.prune`. */
const pruneRuns = (
  state: State,
  { before, includeUnfinished, now }: { readonly before: number; readonly includeUnfinished: boolean; readonly now: number }
) =>
  Effect.sync(() => {
    let removed = 0
    for (const run of Array.from(state.runs.values())) {
      const finished = run.status === "completed" || run.status === "failed" || run.status === "cancelled"
      if (run.updatedAt < before && !leasedAt(run, now) && (includeUnfinished || finished)) {
        state.runs.delete(run.runId)
        state.journals.delete(run.runId)
        removed++
      }
    }
    return removed
  })

export const makeMemoryStore = (): CheckpointStoreShape => {
  const state: State = { runs: new Map(), journals: new Map() }
  const { journals, runs } = state

  /** The run row, if the lease is still ours. */
  const fenced = (lease: Lease): RunRecord | undefined => {
    const run = runs.get(lease.runId)
    return run !== undefined && run.epoch === lease.epoch && run.owner === lease.owner ? run : undefined
  }

  const journalOf = (runId: string): Map<number, StepRecord> => {
    let journal = journals.get(runId)
    if (journal === undefined) {
      journal = new Map()
      journals.set(runId, journal)
    }
    return journal
  }

  return {
    backend: "memory",
    settings: {},
    acquire: (runId, owner, { leaseMs, now }) =>
      Effect.suspend((): Effect.Effect<Lease, RunLocked | RunCancelled> => {
        const existing: RunRecord = runs.get(runId) ?? {
          runId,
          status: "running",
          owner: null,
          epoch: 0,
          leaseUntil: 0,
          createdAt: now,
          updatedAt: now,
          conversation: null,
          cancelRequestedAt: null,
          cancelReason: null
        }
        // As in the SQL stores: a cancel request bars the run (a completed run stays replayable), and a
        // run whose executor died before it could stop is cancelled on the way.
        if (existing.cancelRequestedAt !== null && existing.status !== "completed") {
          if (existing.status === "running" && !leasedAt(existing, now)) {
            runs.set(runId, { ...existing, status: "cancelled", owner: null, leaseUntil: 0, updatedAt: now })
          }
          return Effect.fail(cancelled(existing))
        }
        if (existing.owner !== null && existing.owner !== owner && existing.leaseUntil > now) {
          return Effect.fail(new RunLocked({
            runId,
            owner: existing.owner,
            leaseUntil: existing.leaseUntil,
            message: `run ${runId} is held by another executor until its lease expires`
          }))
        }
        const epoch = existing.epoch + 1
        runs.set(runId, { ...existing, owner, epoch, leaseUntil: now + leaseMs, status: "running", updatedAt: now })
        return Effect.succeed({ runId, owner, epoch })
      }),
    renew: (lease, { leaseMs, now }) =>
      Effect.suspend(() => {
        const run = fenced(lease)
        if (run === undefined) return Effect.fail(lost(lease))
        runs.set(lease.runId, { ...run, leaseUntil: now + leaseMs })
        return Effect.succeed({ cancelRequested: run.cancelRequestedAt !== null })
      }),
    confirm: (lease, { leaseMs, now }) =>
      Effect.suspend(() => {
        const run = fenced(lease)
        if (run === undefined) return Effect.fail(lost(lease))
        if (run.leaseUntil <= now) return Effect.fail(expired(lease, run.leaseUntil))
        runs.set(lease.runId, { ...run, leaseUntil: now + leaseMs })
        return Effect.void
      }),
    release: (lease, status, now) =>
      Effect.sync(() => {
        const run = fenced(lease)
        if (run === undefined) return
        const final = status !== "completed" && run.cancelRequestedAt !== null ? "cancelled" : status
        runs.set(lease.runId, { ...run, owner: null, leaseUntil: 0, status: final, updatedAt: now })
      }),
    run: (runId) => Effect.sync(() => Option.fromNullable(runs.get(runId))),
    list: (options) => listRuns(state, options),
    cancel: (runId, options) => cancelRun(state, runId, options),
    steps: (runId) =>
      Effect.sync(() => Array.from(journals.get(runId)?.values() ?? []).sort((a, b) => a.index - b.index)),
    claim: (lease, step) =>
      Effect.suspend((): Effect.Effect<void, LeaseLost | RunCancelled | StoreError> => {
        const run = fenced(lease)
        if (run === undefined) return Effect.fail(lost(lease))
        if (run.cancelRequestedAt !== null) return Effect.fail(cancelled(run))
        const journal = journalOf(step.runId)
        if (journal.has(step.index)) {
          return Effect.fail(new StoreError({ backend: "memory", operation: "claim", message: `step ${step.index} of run ${step.runId} is already journaled` }))
        }
        journal.set(step.index, step)
        runs.set(lease.runId, { ...run, updatedAt: step.startedAt })
        return Effect.void
      }),
    record: (lease, step, conversation) =>
      Effect.suspend(() => {
        const run = fenced(lease)
        if (run === undefined) return Effect.fail(lost(lease))
        const journal = journalOf(step.runId)
        // As in the SQL stores' upsert, a completion keeps the claim's start time.
        journal.set(step.index, { ...step, startedAt: journal.get(step.index)?.startedAt ?? step.startedAt })
        runs.set(lease.runId, {
          ...run,
          updatedAt: step.completedAt ?? step.startedAt,
          conversation: conversation ?? run.conversation
        })
        return Effect.succeed({ cancelRequested: run.cancelRequestedAt !== null })
      }),
    prune: (options) => pruneRuns(state, options)
  }
}

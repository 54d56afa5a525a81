/**
 * The in-memory checkpoint store: the same contract as the SQL stores (leases, fencing, claims,
 * atomic record + snapshot, prune), over two maps. Every operation runs synchronously inside one
 * `Effect.sync`, which makes it atomic on the single JavaScript thread.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { LeaseLost, RunLocked, StoreError } from "../AgentError.js"
import type { CheckpointStoreShape, Lease, RunRecord, StepRecord } from "../CheckpointStore.js"

export const makeMemoryStore = (): CheckpointStoreShape => {
  const runs = new Map<string, RunRecord>()
  const journals = new Map<string, Map<number, StepRecord>>()

  const lost = (lease: Lease) =>
    new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) was taken over` })

  const expired = (lease: Lease, leaseUntil: number) =>
    new LeaseLost({ runId: lease.runId, epoch: lease.epoch, message: `the lease on run ${lease.runId} (epoch ${lease.epoch}) expired at ${leaseUntil}` })

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
      Effect.suspend(() => {
        const existing = runs.get(runId) ??
          { runId, status: "running", owner: null, epoch: 0, leaseUntil: 0, createdAt: now, updatedAt: now, conversation: null }
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
        return Effect.void
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
        if (run !== undefined) runs.set(lease.runId, { ...run, owner: null, leaseUntil: 0, status, updatedAt: now })
      }),
    run: (runId) => Effect.sync(() => Option.fromNullable(runs.get(runId))),
    steps: (runId) =>
      Effect.sync(() => Array.from(journals.get(runId)?.values() ?? []).sort((a, b) => a.index - b.index)),
    claim: (lease, step) =>
      Effect.suspend((): Effect.Effect<void, LeaseLost | StoreError> => {
        const run = fenced(lease)
        if (run === undefined) return Effect.fail(lost(lease))
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
        return Effect.void
      }),
    prune: ({ before, includeUnfinished, now }) =>
      Effect.sync(() => {
        let removed = 0
        for (const run of Array.from(runs.values())) {
          const leased = run.owner !== null && run.leaseUntil > now
          const finished = run.status === "completed" || run.status === "failed"
          if (run.updatedAt < before && !leased && (includeUnfinished || finished)) {
            runs.delete(run.runId)
            journals.delete(run.runId)
            removed++
          }
        }
        return removed
      })
  }
}

/**
 * What journal entries mean to an operator ({@link describeStep}: the CLI's `runs show`, dashboards),
 * and a stored run as a `Report.RunRecord`, so that the one HTML renderer (`Report.html`) draws runs
 * read back from a checkpoint store too, not only runs recorded live. What the journal holds is what the
 * page shows: every journaled model answer is a call with its attempt history (route, outcome, status,
 * waits, durations, request ids, tokens), every entry a step; failed calls were never journaled (a
 * failing step is not), and breaker transitions are not part of a journal.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { AttemptRecord } from "../../Errors.js"
import { Usage } from "../../Provider.js"
import type * as Report from "../../Report.js"
import type { RunReport, StepView } from "../Agent.js"
import type { StepRecord } from "../CheckpointStore.js"

/** The part of a journaled model step (`Agent.ModelTurn`, in the codec's envelope) the report needs. */
const JournaledTurn = Schema.parseJson(Schema.Struct({
  v: Schema.Struct({
    route: Schema.String,
    degraded: Schema.Boolean,
    repaired: Schema.Boolean,
    usage: Usage,
    attempts: Schema.Array(AttemptRecord),
    durationMs: Schema.Number,
    response: Schema.Struct({ provider: Schema.String, model: Schema.String })
  })
}))

/** A journaled tool outcome (the tool protocol's envelope). */
const JournaledOutcome = Schema.parseJson(Schema.Struct({
  v: Schema.Union(
    Schema.Struct({ _tag: Schema.Literal("Success") }),
    Schema.Struct({ _tag: Schema.Literal("Failure"), errorTag: Schema.optional(Schema.String), message: Schema.String })
  )
}))

/** The reason of a refused or unknown tool entry. */
const JournaledReason = Schema.parseJson(Schema.Struct({ v: Schema.Struct({ reason: Schema.String }) }))

const decode = <A>(schema: Schema.Schema<A, string>, text: string | null): A | undefined =>
  text === null ? undefined : Either.getOrUndefined(Schema.decodeUnknownEither(schema)(text))

/** What a journal entry means (see `Agent.describeStep`). */
export const describeStep = (step: StepRecord): StepView => {
  switch (step.status) {
    case "started":
      return {
        step,
        outcome: "claimed",
        detail: `${step.effect ?? "tool"} call claimed, outcome not recorded: the run stopped here; a resume ${
          step.effect === "keyed" ? "re-sends it with the same key (within the key retention) or reconciles it" :
            step.effect === "irreversible" ? "reconciles it or marks it unknown, never re-sends it blindly" : "makes it again"
        }`,
        model: undefined
      }
    case "refused":
      return { step, outcome: "refused", detail: `refused: ${decode(JournaledReason, step.result)?.v.reason ?? "(no reason recorded)"}`, model: undefined }
    case "unknown":
      return {
        step,
        outcome: "unknown",
        detail: `outcome unknown (${decode(JournaledReason, step.result)?.v.reason ?? "not recorded"}); check the callee, reference ${step.key}`,
        model: undefined
      }
    case "completed": {
      if (step.kind === "tool") {
        const outcome = decode(JournaledOutcome, step.result)?.v
        return outcome?._tag === "Failure"
          ? {
            step,
            outcome: "tool-failed",
            detail: `the tool failed, and the agent was told: ${outcome.errorTag === undefined ? "" : `${outcome.errorTag}: `}${outcome.message}`,
            model: undefined
          }
          : { step, outcome: "done", detail: `${step.effect ?? "tool"} call made`, model: undefined }
      }
      const turn = step.kind === "model" ? decode(JournaledTurn, step.result)?.v : undefined
      if (turn === undefined) return { step, outcome: "done", detail: step.kind === "model" ? "answered" : "done", model: undefined }
      const sent = turn.attempts.filter((a) => a.outcome !== "Skipped" && a.attempt > 0).length
      return {
        step,
        outcome: "done",
        detail: `answered by ${turn.route} (${turn.response.model}) after ${sent} attempt(s)${turn.degraded ? ", degraded" : ""}${turn.repaired ? ", repaired" : ""}`,
        model: {
          route: turn.route,
          provider: turn.response.provider,
          model: turn.response.model,
          degraded: turn.degraded,
          repaired: turn.repaired,
          attempts: turn.attempts,
          usage: turn.usage,
          durationMs: turn.durationMs
        }
      }
    }
  }
}

/** A journal entry's outcome as a report step status. */
const reportStatus: Record<StepView["outcome"], Report.StepStatus> = {
  done: "done",
  "tool-failed": "failed",
  refused: "refused",
  unknown: "failed",
  claimed: "interrupted"
}

/** The report record of a stored run (times relative to the run's creation). */
export const journalRecord = (report: RunReport): Report.RunRecord => {
  const { run, steps } = report
  const since = (t: number) => Math.max(0, t - run.createdAt)
  const routes: Array<Report.RouteInfo> = []
  const calls: Array<Report.CallEntry> = []
  const attempts: Array<Report.AttemptEntry> = []
  const stepEntries: Array<Report.StepEntry> = []
  const notes: Array<Report.NoteEntry> = []
  const route = (name: string, served?: { readonly provider: string; readonly model: string }) => {
    const at = routes.findIndex((r) => r.name === name)
    // A route that never served an answer in this run is known by name only.
    const info = { name, provider: served?.provider ?? "", model: served?.model ?? "" }
    if (at === -1) routes.push(info)
    else if (served !== undefined && routes[at]!.provider === "") routes[at] = info
  }
  let end = since(run.updatedAt)

  for (const step of steps) {
    const startedAt = since(step.startedAt)
    const durationMs = step.completedAt === null ? 0 : Math.max(0, step.completedAt - step.startedAt)
    end = Math.max(end, startedAt + durationMs)
    const view = describeStep(step)
    stepEntries.push({ name: step.name, status: reportStatus[view.outcome], startedAt, durationMs, detail: view.detail })
    if (view.outcome === "unknown" || view.outcome === "refused" || view.outcome === "claimed") {
      notes.push({ at: startedAt + durationMs, kind: "tool", text: `${step.name} (step ${step.index}): ${view.detail}` })
    }
    const turn = view.model
    if (turn === undefined) continue
    const id = calls.length + 1
    for (const a of turn.attempts) route(a.route)
    route(turn.route, turn)
    calls.push({
      id,
      label: step.name,
      step: step.name,
      startedAt,
      durationMs: turn.durationMs,
      ok: true,
      route: turn.route,
      degraded: turn.degraded,
      repaired: turn.repaired,
      usage: turn.usage
    })
    // Attempts run one after another within a call: each starts after its wait, once the previous ended.
    let cursor = startedAt
    for (const a of turn.attempts) {
      attempts.push({ call: id, step: step.name, startedAt: cursor + a.delayMs, ...a })
      cursor += a.delayMs + a.durationMs
    }
  }

  if (run.epoch > 1) notes.push({ at: 0, kind: "info", text: `executed ${run.epoch} times (lease epoch ${run.epoch}): resumed from its checkpoint ${run.epoch - 1} time(s)` })
  if (run.cancelRequestedAt !== null) {
    notes.push({ at: since(run.cancelRequestedAt), kind: "incident", text: `cancel requested${run.cancelReason === null ? "" : `: ${run.cancelReason}`}` })
  }
  notes.push({ at: since(run.updatedAt), kind: "info", text: `run ${run.runId}: ${run.status}` })

  return {
    title: `run ${run.runId} (${run.status})`,
    startedAt: run.createdAt,
    durationMs: end,
    routes,
    calls,
    attempts: attempts.sort((a, b) => a.startedAt - b.startedAt),
    breakers: [],
    steps: stepEntries,
    notes: notes.sort((a, b) => a.at - b.at)
  }
}

/**
 * The attempt history of one chain call.
 *
 * Every route's retry loop appends each finished attempt to it (as the call's attempt observer); the
 * walker adds the routes it skipped and numbers repair calls after the route's earlier attempts. The
 * output gate runs inside the attempt and sees the response before the retry loop records the
 * attempt, so the usage of an answer — accepted or rejected — is noted first and attached to its
 * record here, for generated and streamed attempts alike, with its cost when the chain has prices.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { AttemptRecord } from "../Errors.js"
import { extend, type Mutable } from "../internal/object.js"
import { costOf, type PriceTable } from "../internal/spend.js"
import type { Acceptor } from "../Policy.js"
import type { GenerateResponse, Usage } from "../Provider.js"
import type { AttemptObserver } from "../Retry.js"

export const noUsage: Usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 }

const addUsage = (a: Usage, b: Usage): Usage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  totalTokens: a.totalTokens + b.totalTokens
})

export class AttemptLog {
  readonly records: Array<AttemptRecord> = []
  private readonly pendingUsage: Array<{ readonly requestId: string | undefined; readonly usage: Usage }> = []
  private attemptOffset = 0
  private note: string | undefined = undefined
  /** The model of the current provider call (what its usage is priced as). */
  private model: string | undefined = undefined

  /** `prices`: what each attempt's usage costs (the chain's, or the enclosing budget's); none = no cost. */
  constructor(private readonly prices: PriceTable | undefined = undefined) {}

  /**
   * The observer that writes the retry loop's records here. The loop calls it when the attempt has
   * ended (from the continuation that saw it end), so it writes at once and has nothing left to run.
   */
  readonly observe: AttemptObserver = (record) => {
    this.add(record)
    return Effect.void
  }

  /** Records of the next provider call on a route (to `model`) continue its attempt numbers, labelled `note`. */
  beginCall(route: string, model: string, note?: string): void {
    this.model = model
    let earlier = 0
    for (const record of this.records) if (record.route === route && record.attempt > 0) earlier++
    this.attemptOffset = earlier
    this.note = note
    // A response whose attempt then failed for another reason (a timeout after the gate) is not ours.
    this.pendingUsage.length = 0
  }

  /** The gate, noting the usage of every answer it judges (rejected answers cost tokens too). */
  metered(acceptor: Acceptor): Acceptor {
    return (response: GenerateResponse, request) => {
      this.pendingUsage.push({ requestId: response.requestId, usage: response.usage })
      return acceptor(response, request)
    }
  }

  add(record: AttemptRecord): void {
    const usage = record.outcome === "success" || record.outcome === "InvalidOutput" || record.outcome === "ContentFiltered"
      ? this.takeUsage(record.requestId)
      : undefined
    const message = this.note === undefined ? record.message : record.message === undefined ? this.note : `${this.note}: ${record.message}`
    const logged: Mutable<AttemptRecord> = extend(record, { attempt: record.attempt + this.attemptOffset })
    if (message !== undefined) logged.message = message
    if (usage !== undefined) {
      logged.usage = usage
      const cost = this.prices === undefined || this.model === undefined ? undefined : costOf(this.prices, this.model, usage)
      if (cost !== undefined) logged.costUsd = cost
    }
    this.records.push(logged)
  }

  skip(route: string, message: string): void {
    this.records.push({ route, attempt: 0, outcome: "Skipped", delayMs: 0, durationMs: 0, message })
  }

  totalUsage(): Usage {
    let total: Usage = noUsage
    for (const record of this.records) if (record.usage !== undefined) total = addUsage(total, record.usage)
    return total
  }

  /**
   * What the usage of every attempt cost, or `undefined` when no price is known — or when some attempt
   * reported usage on a model without a price (a partial sum would read as the whole cost).
   */
  totalCost(): number | undefined {
    if (this.prices === undefined) return undefined
    let total = 0
    for (const record of this.records) {
      if (record.usage === undefined) continue
      if (record.costUsd === undefined) return undefined
      total += record.costUsd
    }
    return total
  }

  /** One line per attempt, for messages: `route#attempt:outcome, …`. */
  summary(): string {
    return this.records.map((a) => `${a.route}#${a.attempt}:${a.outcome}`).join(", ") || "no attempt"
  }

  private takeUsage(requestId: string | undefined): Usage | undefined {
    // Match by request id where there is one (concurrent hedged attempts), else in arrival order.
    let index = requestId === undefined ? -1 : this.pendingUsage.findIndex((p) => p.requestId === requestId)
    if (index < 0) index = this.pendingUsage.findIndex((p) => p.requestId === undefined || requestId === undefined)
    if (index < 0) return undefined
    const [taken] = this.pendingUsage.splice(index, 1)
    return taken?.usage
  }
}

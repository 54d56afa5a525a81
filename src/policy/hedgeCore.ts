/**
 * The synchronous state of one hedger: its latency sketch, the delay it derives, and the counts and
 * metrics of the second attempts it started, won and skipped. `Hedge` runs the two attempts around it;
 * nothing here forks or allocates per call.
 *
 * @internal
 */
import type * as Metric from "effect/Metric"
import * as Metrics from "../internal/metrics.js"
import type { RetryBudget } from "../RetryBudget.js"

/** The options with their defaults applied (see `make` in Hedge.ts). */
export interface Resolved {
  readonly fixed: number | undefined
  readonly percentile: number
  readonly initialMs: number
  readonly minSamples: number
  readonly minMs: number
  readonly maxMs: number
  readonly samples: number
}

/**
 * A small latency sketch: the last `size` observations in a ring; the percentile is recomputed (a
 * sort of at most `size` numbers) only after a tenth of the ring changed, so reading it is O(1)
 * amortised.
 */
const makeSketch = (size: number) => {
  const ring = new Float64Array(size)
  let count = 0
  let next = 0
  let cached: number | undefined
  let changed = 0
  const refresh = Math.max(1, Math.floor(size / 10))
  return {
    record: (ms: number) => {
      ring[next] = ms
      next = (next + 1) % size
      if (count < size) count++
      changed++
    },
    count: () => count,
    quantile: (q: number): number | undefined => {
      if (count === 0) return undefined
      if (cached === undefined || changed >= refresh) {
        const sorted = ring.slice(0, count).sort()
        cached = sorted[Math.min(count - 1, Math.max(0, Math.ceil(q * count) - 1))]!
        changed = 0
      }
      return cached
    }
  }
}

/** The state of one hedger. */
export class HedgeCore {
  readonly sketch: ReturnType<typeof makeSketch>
  readonly counters: {
    readonly started: Metric.Metric.Counter<number>
    readonly won: Metric.Metric.Counter<number>
    readonly lost: Metric.Metric.Counter<number>
    readonly skipped: Metric.Metric.Counter<number>
  }
  started = 0
  won = 0
  skipped = 0

  constructor(
    readonly resolved: Resolved,
    readonly budget: RetryBudget | undefined,
    label: string
  ) {
    this.sketch = makeSketch(resolved.samples)
    const hedges = Metrics.counterFamily(
      "llm_hedges_total",
      "Hedged attempts by route and outcome (started, won, lost, skipped: budget spent)",
      { route: label },
      "outcome"
    )
    this.counters = { started: hedges("started"), won: hedges("won"), lost: hedges("lost"), skipped: hedges("skipped") }
  }

  delayMs(): number {
    const { fixed, initialMs, maxMs, minMs, minSamples, percentile } = this.resolved
    if (fixed !== undefined) return fixed
    if (this.sketch.count() < minSamples) return initialMs
    return Math.min(maxMs, Math.max(minMs, this.sketch.quantile(percentile) ?? initialMs))
  }

  /** Whether a second attempt may start now (spends one retry from the budget). */
  mayHedge(now: number): boolean {
    if (this.budget !== undefined && !this.budget.unsafeWithdraw(now)) {
      this.skipped++
      this.counters.skipped.unsafeUpdate(1, [])
      return false
    }
    this.started++
    this.counters.started.unsafeUpdate(1, [])
    return true
  }

  secondWon(): void {
    this.won++
    this.counters.won.unsafeUpdate(1, [])
  }

  /** The first attempt won a race the second one had joined. */
  firstWon(): void {
    this.counters.lost.unsafeUpdate(1, [])
  }
}

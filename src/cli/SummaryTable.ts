/**
 * The end-of-run summary table for the terminal, from `Report.summarize` (the same numbers the HTML
 * report shows).
 *
 * @since 0.1.0
 */
import { formatMs } from "../report/html.js"
import type { Summary } from "../Report.js"
import { formatUsd } from "../Spend.js"
import { stylesFor } from "./Shared.js"

const pad = (text: string, width: number, right = false) => (right ? text.padStart(width) : text.padEnd(width))

/**
 * Renders the summary (colour only on a colour terminal).
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (summary: Summary, stream: NodeJS.WriteStream = process.stdout): string => {
  const s = stylesFor(stream)
  const rows: ReadonlyArray<readonly [string, string]> = [
    ["calls", `${summary.calls} (${summary.succeeded} answered, ${summary.failed} failed)`],
    // Only with a response cache that answered: a hit made no provider call.
    ...(summary.cached > 0 ? [["cache hits", `${summary.cached} answered from the cache (no provider call)`] as const] : []),
    ["attempts", String(summary.attempts)],
    ["retries", String(summary.retries)],
    ["fallbacks", `${summary.fallbacks} route change(s); ${summary.degraded} degraded answer(s)`],
    ["rejected outputs", `${summary.rejectedOutputs} (InvalidOutput)`],
    ["breaker opens", String(summary.breakerOpens)],
    ["tokens", `${summary.tokens.totalTokens} (in ${summary.tokens.inputTokens} / out ${summary.tokens.outputTokens})`],
    // Only with a price table: a cost nobody configured is not shown as $0.
    ...(summary.costUsd === undefined
      ? []
      : [[
        "cost",
        `$${formatUsd(summary.costUsd)}${summary.unpricedCalls > 0 ? ` (without ${summary.unpricedCalls} call(s) on unpriced models)` : ""}`
      ] as const]),
    ["latency", `p50 ${formatMs(summary.latency.p50Ms)} · p95 ${formatMs(summary.latency.p95Ms)} · max ${formatMs(summary.latency.maxMs)}`],
    ...(summary.steps.total > 0
      ? [[
        "steps",
        `${summary.steps.total} (${summary.steps.done} done, ${summary.steps.replayed} replayed, ${summary.steps.refused} refused, ${summary.steps.failed} failed or interrupted)`
      ] as const]
      : [])
  ]
  const lines = [s.bold("Summary"), ...rows.map(([k, v]) => `  ${pad(k, 17)} ${v}`), ""]
  const header = ["route", "attempts", "ok", "failed", "retries", "p50"]
  const widths = [Math.max(10, ...summary.routes.map((r) => r.route.length)), 8, 5, 6, 7, 9]
  lines.push(`  ${header.map((h, i) => pad(h, widths[i]!, i > 0)).join("  ")}`)
  for (const r of summary.routes) {
    lines.push(
      `  ${[r.route, String(r.attempts), String(r.successes), String(r.failures), String(r.retries), formatMs(r.p50Ms)].map((c, i) => pad(c, widths[i]!, i > 0)).join("  ")}`
    )
  }
  const outcomes = Object.entries(summary.outcomes).sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o} ${n}`).join(", ")
  lines.push("", `  outcomes: ${outcomes || "none"}`)
  return `${lines.join("\n")}\n`
}

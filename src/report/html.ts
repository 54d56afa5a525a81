/**
 * The HTML page of a run record: inline SVG charts (attempt timeline, breaker states, latency
 * histogram) and tables, one self-contained file. Every text that comes from the run goes through
 * `escape(scrub(...))`.
 *
 * @internal
 */
import { formatUsd } from "../internal/spend.js"
import type { AttemptEntry, RunRecord, Summary } from "../Report.js"

type Scrub = (text: string) => string

const escapeHtml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;")

/** Colours per attempt outcome; unknown tags fall back to a neutral grey. */
export const outcomeColours: Readonly<Record<string, string>> = {
  success: "#2f9e44",
  RateLimited: "#f59f00",
  QuotaExhausted: "#a61e4d",
  Overloaded: "#e8590c",
  ServerError: "#c92a2a",
  BadRequest: "#862e9c",
  ContextLengthExceeded: "#862e9c",
  Unauthorized: "#5f3dc4",
  NotFound: "#5f3dc4",
  ContentFiltered: "#d6336c",
  Timeout: "#7048e8",
  ConnectionError: "#364fc7",
  StreamInterrupted: "#ae3ec9",
  InvalidOutput: "#fd7e14",
  ResponseTooLarge: "#fd7e14",
  CircuitOpen: "#868e96",
  RetryBudgetExhausted: "#495057",
  DeadlineExceeded: "#212529",
  BudgetExceeded: "#0b7285",
  cached: "#3bc9db"
}

const colourOf = (outcome: string): string => outcomeColours[outcome] ?? "#adb5bd"

const breakerColours: Readonly<Record<string, string>> = {
  closed: "#2f9e44",
  "half-open": "#f59f00",
  open: "#e03131",
  isolated: "#343a40"
}

/** Human duration: `850 ms`, `1.25 s`, `2 min 3 s`. */
export const formatMs = (ms: number): string => {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
  const minutes = Math.floor(ms / 60_000)
  return `${minutes} min ${Math.round((ms - minutes * 60_000) / 1000)} s`
}

/** A tick step of 1, 2 or 5 × 10^k giving about `target` ticks over `span`. */
const niceStep = (span: number, target: number): number => {
  const raw = Math.max(span / target, 1e-9)
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const normalised = raw / magnitude
  return (normalised <= 1 ? 1 : normalised <= 2 ? 2 : normalised <= 5 ? 5 : 10) * magnitude
}

const WIDTH = 1000
const LABEL = 170
/** What fits in the LABEL gutter at the chart's font size; longer names keep their full text in a tooltip. */
const LABEL_CHARS = 24

const laneLabel = (y: number, text: string): string => {
  const shown = text.length > LABEL_CHARS ? `${text.slice(0, LABEL_CHARS - 1)}…` : text
  return `<text x="${LABEL - 8}" y="${y + 14}" class="label" text-anchor="end"><title>${escapeHtml(text)}</title>${escapeHtml(shown)}</text>`
}
const ROW = 26
const AXIS = 28

const timeAxis = (total: number, x: (t: number) => number, top: number, bottom: number): string => {
  const step = niceStep(total, 8)
  const parts: Array<string> = []
  for (let t = 0; t <= total + 1e-9; t += step) {
    const px = x(t).toFixed(1)
    parts.push(
      `<line x1="${px}" y1="${top}" x2="${px}" y2="${bottom}" class="grid"/>`,
      `<text x="${px}" y="${bottom + 16}" class="tick" text-anchor="middle">${escapeHtml(formatMs(t))}</text>`
    )
  }
  return parts.join("")
}

const routeRows = (record: RunRecord): Array<string> => {
  const rows = record.routes.map((r) => r.name)
  for (const attempt of record.attempts) if (!rows.includes(attempt.route)) rows.push(attempt.route)
  return rows
}

/** The tooltip of an attempt's bar: every line of it scrubbed (route labels and steps are callers' text). */
const attemptTitle = (a: AttemptEntry, scrub: Scrub): string =>
  scrub([
    `${a.route} · call ${a.call}${a.step !== undefined ? ` (${a.step})` : ""} · attempt ${a.attempt}`,
    `${a.outcome}${a.status !== undefined ? ` (HTTP ${a.status})` : ""} · ${formatMs(a.durationMs)}`,
    ...(a.delayMs > 0 ? [`waited ${formatMs(a.delayMs)} before it`] : []),
    ...(a.requestId !== undefined ? [`request id ${a.requestId}`] : []),
    ...(a.message !== undefined ? [a.message] : [])
  ].join("\n"))

const timeline = (record: RunRecord, scrub: Scrub): string => {
  const sent = record.attempts.filter((a) => a.outcome !== "Skipped")
  const end = Math.max(record.durationMs, ...sent.map((a) => a.startedAt + a.durationMs), 1)
  const rows = routeRows(record)
  const hasSteps = record.steps.length > 0
  const lanes = (hasSteps ? 1 : 0) + rows.length
  const height = 10 + Math.max(1, lanes) * ROW + AXIS
  const bottom = 10 + Math.max(1, lanes) * ROW
  const x = (t: number) => LABEL + (t / end) * (WIDTH - LABEL - 12)
  const parts: Array<string> = [timeAxis(end, x, 6, bottom)]
  let lane = 0
  const laneY = (i: number) => 10 + i * ROW
  if (hasSteps) {
    const y = laneY(lane++)
    parts.push(`<text x="${LABEL - 8}" y="${y + 14}" class="label" text-anchor="end">agent steps</text>`)
    for (const step of record.steps.filter((s) => s.status !== "running")) {
      const w = Math.max(3, x(step.startedAt + step.durationMs) - x(step.startedAt))
      const fill = step.status === "done" ? "#74c0fc" : step.status === "replayed" ? "#a5d8ff" : step.status === "refused" ? "#ffa8a8" : "#ced4da"
      parts.push(
        `<rect class="step" x="${x(step.startedAt).toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${ROW - 8}" fill="${fill}" rx="3"><title>${
          escapeHtml(scrub(`${step.name}: ${step.status}${step.detail !== undefined ? ` — ${step.detail}` : ""} (${formatMs(step.durationMs)})`))
        }</title></rect>`
      )
    }
  }
  for (const route of rows) {
    const y = laneY(lane++)
    parts.push(
      laneLabel(y, scrub(route)),
      `<line x1="${LABEL}" y1="${y + ROW - 2}" x2="${WIDTH - 12}" y2="${y + ROW - 2}" class="lane"/>`
    )
    for (const a of sent.filter((s) => s.route === route)) {
      const w = Math.max(2, x(a.startedAt + a.durationMs) - x(a.startedAt))
      parts.push(
        `<rect class="attempt" data-outcome="${escapeHtml(a.outcome)}" x="${x(a.startedAt).toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${
          ROW - 8
        }" fill="${colourOf(a.outcome)}" rx="2"><title>${escapeHtml(attemptTitle(a, scrub))}</title></rect>`
      )
    }
  }
  for (const note of record.notes.filter((n) => n.kind === "crash" || n.kind === "resume" || n.kind === "incident")) {
    const px = x(note.at).toFixed(1)
    parts.push(
      `<line x1="${px}" y1="4" x2="${px}" y2="${bottom}" class="marker marker-${note.kind}"><title>${escapeHtml(scrub(note.text))}</title></line>`
    )
  }
  return `<svg id="timeline" class="chart" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="Attempt timeline per route">${parts.join("")}</svg>`
}

const breakerChart = (record: RunRecord, scrub: Scrub): string => {
  const keys = record.routes.map((r) => `${r.name}/${r.model}`)
  for (const b of record.breakers) if (!keys.includes(b.key)) keys.push(b.key)
  const end = Math.max(record.durationMs, ...record.breakers.map((b) => b.at), 1)
  const height = 10 + Math.max(1, keys.length) * ROW + AXIS
  const bottom = 10 + Math.max(1, keys.length) * ROW
  const x = (t: number) => LABEL + (t / end) * (WIDTH - LABEL - 12)
  const parts: Array<string> = [timeAxis(end, x, 6, bottom)]
  keys.forEach((key, i) => {
    const y = 10 + i * ROW
    parts.push(laneLabel(y, scrub(key)))
    const transitions = record.breakers.filter((b) => b.key === key).sort((a, b) => a.at - b.at)
    let state: string = transitions[0]?.from ?? "closed"
    let from = 0
    let reason = "initial state"
    const segment = (to: number) => {
      const w = Math.max(2, x(to) - x(from))
      parts.push(
        `<rect class="breaker" data-state="${state}" x="${x(from).toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${ROW - 8}" fill="${
          breakerColours[state] ?? "#adb5bd"
        }"><title>${escapeHtml(scrub(`${key}: ${state} from ${formatMs(from)} to ${formatMs(to)} (${reason})`))}</title></rect>`
      )
    }
    for (const t of transitions) {
      if (t.at > from) segment(t.at)
      state = t.to
      from = t.at
      reason = t.reason
    }
    segment(end)
  })
  return `<svg id="breakers" class="chart" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="Circuit breaker state over time">${parts.join("")}</svg>`
}

const histogram = (record: RunRecord): string => {
  const sent = record.attempts.filter((a) => a.outcome !== "Skipped" && a.attempt > 0)
  const height = 240
  const top = 14
  const bottom = height - 40
  const left = 50
  const right = WIDTH - 12
  const max = Math.max(1, ...sent.map((a) => a.durationMs))
  const width = niceStep(max, 12)
  const bins = Math.max(1, Math.ceil((max + 1e-9) / width))
  const ok = new Array<number>(bins).fill(0)
  const failed = new Array<number>(bins).fill(0)
  for (const a of sent) {
    const bin = Math.min(bins - 1, Math.floor(a.durationMs / width))
    if (a.outcome === "success") ok[bin]!++
    else failed[bin]!++
  }
  const peak = Math.max(1, ...ok.map((v, i) => v + failed[i]!))
  const yStep = Math.max(1, niceStep(peak, 4))
  const y = (count: number) => bottom - (count / Math.max(peak, yStep)) * (bottom - top)
  const barW = (right - left) / bins
  const parts: Array<string> = []
  for (let c = 0; c <= peak; c += yStep) {
    parts.push(
      `<line x1="${left}" y1="${y(c).toFixed(1)}" x2="${right}" y2="${y(c).toFixed(1)}" class="grid"/>`,
      `<text x="${left - 6}" y="${(y(c) + 4).toFixed(1)}" class="tick" text-anchor="end">${c}</text>`
    )
  }
  for (let i = 0; i < bins; i++) {
    const bx = left + i * barW + 2
    const okTop = y(ok[i]!)
    const failTop = y(ok[i]! + failed[i]!)
    const range = `${formatMs(i * width)}–${formatMs((i + 1) * width)}`
    if (ok[i]! > 0) {
      parts.push(`<rect class="bin bin-ok" data-count="${ok[i]}" x="${bx.toFixed(1)}" y="${okTop.toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${
        (bottom - okTop).toFixed(1)
      }" fill="${outcomeColours["success"]}"><title>${range}: ${ok[i]} successful</title></rect>`)
    }
    if (failed[i]! > 0) {
      parts.push(`<rect class="bin bin-failed" data-count="${failed[i]}" x="${bx.toFixed(1)}" y="${failTop.toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${
        (okTop - failTop).toFixed(1)
      }" fill="#e03131"><title>${range}: ${failed[i]} failed</title></rect>`)
    }
    if (bins <= 16 || i % 2 === 0) {
      parts.push(`<text x="${(bx + barW / 2).toFixed(1)}" y="${bottom + 16}" class="tick" text-anchor="middle">${escapeHtml(formatMs(i * width))}</text>`)
    }
  }
  parts.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" class="axis"/>`)
  parts.push(`<text x="${(left + right) / 2}" y="${height - 6}" class="tick" text-anchor="middle">attempt duration</text>`)
  return `<svg id="latency" class="chart" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="Latency histogram of attempts">${parts.join("")}</svg>`
}

const row = (metric: string, label: string, value: string | number) =>
  `<tr data-metric="${metric}"><th>${escapeHtml(label)}</th><td>${escapeHtml(String(value))}</td></tr>`

const summaryTable = (summary: Summary): string =>
  `<table id="summary" class="numbers"><tbody>${
    [
      row("calls", "Calls", summary.calls),
      row("succeeded", "Succeeded", summary.succeeded),
      row("failed", "Failed", summary.failed),
      row("degraded", "Degraded answers (fallback or repair)", summary.degraded),
      ...(summary.cached > 0 ? [row("cached", "Answered from the cache (no provider call)", summary.cached)] : []),
      row("attempts", "Attempts", summary.attempts),
      row("retries", "Retries", summary.retries),
      row("fallbacks", "Fallbacks (route changes)", summary.fallbacks),
      row("rejectedOutputs", "Rejected outputs (InvalidOutput)", summary.rejectedOutputs),
      row("breakerOpens", "Breaker opens", summary.breakerOpens),
      row("inputTokens", "Input tokens", summary.tokens.inputTokens),
      row("outputTokens", "Output tokens", summary.tokens.outputTokens),
      row("totalTokens", "Total tokens", summary.tokens.totalTokens),
      ...(summary.costUsd === undefined ? [] : [
        row(
          "costUsd",
          summary.unpricedCalls > 0 ? `Cost, USD (without ${summary.unpricedCalls} call(s) on unpriced models)` : "Cost, USD",
          formatUsd(summary.costUsd)
        )
      ]),
      row("p50", "Latency p50 (successful attempts)", formatMs(summary.latency.p50Ms)),
      row("p95", "Latency p95", formatMs(summary.latency.p95Ms)),
      row("max", "Latency max", formatMs(summary.latency.maxMs))
    ].join("")
  }</tbody></table>`

const routesTable = (summary: Summary, scrub: Scrub): string =>
  `<table id="routes"><thead><tr><th>route</th><th>attempts</th><th>successes</th><th>failures</th><th>retries</th><th>p50</th></tr></thead><tbody>${
    summary.routes.map((r) =>
      `<tr data-route="${escapeHtml(scrub(r.route))}"><td>${escapeHtml(scrub(r.route))}</td><td data-col="attempts">${r.attempts}</td><td data-col="successes">${r.successes}</td><td data-col="failures">${r.failures}</td><td data-col="retries">${r.retries}</td><td>${
        escapeHtml(formatMs(r.p50Ms))
      }</td></tr>`
    ).join("")
  }</tbody></table>`

const outcomesTable = (summary: Summary): string =>
  `<table id="outcomes"><thead><tr><th>outcome</th><th>attempts</th></tr></thead><tbody>${
    Object.entries(summary.outcomes).sort((a, b) => b[1] - a[1]).map(([outcome, count]) =>
      `<tr data-outcome="${escapeHtml(outcome)}"><td><span class="swatch" style="background:${colourOf(outcome)}"></span>${escapeHtml(outcome)}</td><td>${count}</td></tr>`
    ).join("")
  }</tbody></table>`

/**
 * One row per call with its tokens and cost — only when some call has a cost (a price table was set) or
 * was answered from the response cache (its `cached` badge).
 */
const callsTable = (record: RunRecord, scrub: Scrub): string => {
  const priced = record.calls.some((c) => c.costUsd !== undefined)
  const cached = record.calls.some((c) => c.cached === true)
  if (!priced && !cached) return ""
  return `<h2>${priced ? "Cost per call" : "Calls"}</h2><table id="calls"><thead><tr><th>call</th><th>label</th><th>step</th><th>outcome</th><th>route</th><th>tokens (in / out)</th><th>cost, USD</th></tr></thead><tbody>${
    record.calls.map((c) =>
      `<tr data-call="${c.id}"${c.cached === true ? ` class="cached"` : ""}><td>${c.id}</td><td>${escapeHtml(scrub(c.label))}</td><td>${escapeHtml(scrub(c.step ?? ""))}</td><td>${
        escapeHtml(c.ok ? "answered" : c.error?._tag ?? "failed")
      }${c.cached === true ? ` <span class="badge badge-cached" title="answered from the response cache: no provider call">cached</span>` : ""}</td><td>${
        escapeHtml(scrub(c.route ?? ""))
      }</td><td>${c.usage.totalTokens} (${c.usage.inputTokens} / ${c.usage.outputTokens})</td><td data-col="cost">${
        c.costUsd === undefined ? "" : escapeHtml(formatUsd(c.costUsd))
      }</td></tr>`
    ).join("")
  }</tbody></table>`
}

const stepsTable = (record: RunRecord, scrub: Scrub): string =>
  record.steps.length === 0 ? "" : `<h2>Agent steps</h2><table id="steps"><thead><tr><th>step</th><th>status</th><th>at</th><th>duration</th><th>detail</th></tr></thead><tbody>${
    record.steps.filter((s) => s.status !== "running").map((s) =>
      `<tr class="status-${s.status}"><td>${escapeHtml(scrub(s.name))}</td><td>${s.status}</td><td>${escapeHtml(formatMs(s.startedAt))}</td><td>${
        escapeHtml(formatMs(s.durationMs))
      }</td><td>${escapeHtml(scrub(s.detail ?? ""))}</td></tr>`
    ).join("")
  }</tbody></table>`

const attemptsTable = (record: RunRecord, scrub: Scrub): string =>
  `<table id="attempts"><thead><tr><th>at</th><th>call</th><th>step</th><th>route</th><th>#</th><th>outcome</th><th>status</th><th>waited</th><th>duration</th><th>request id</th><th>message</th></tr></thead><tbody>${
    record.attempts.map((a) =>
      `<tr><td>${escapeHtml(formatMs(a.startedAt))}</td><td>${a.call}</td><td>${escapeHtml(scrub(a.step ?? ""))}</td><td>${escapeHtml(scrub(a.route))}</td><td>${a.attempt}</td><td><span class="swatch" style="background:${
        colourOf(a.outcome)
      }"></span>${escapeHtml(a.outcome)}</td><td>${a.status ?? ""}</td><td>${a.delayMs > 0 ? escapeHtml(formatMs(a.delayMs)) : ""}</td><td>${
        escapeHtml(formatMs(a.durationMs))
      }</td><td><code>${escapeHtml(scrub(a.requestId ?? ""))}</code></td><td>${escapeHtml(scrub(a.message ?? ""))}</td></tr>`
    ).join("")
  }</tbody></table>`

const notesList = (record: RunRecord, scrub: Scrub): string =>
  record.notes.filter((n) => n.kind !== "heartbeat").length === 0 ? "" : `<h2>Events</h2><ul id="notes">${
    record.notes.filter((n) => n.kind !== "heartbeat").map((n) =>
      `<li class="note-${n.kind}"><span class="at">${escapeHtml(formatMs(n.at))}</span> <b>${n.kind}</b> ${escapeHtml(scrub(n.text))}</li>`
    ).join("")
  }</ul>`

const legend = (record: RunRecord): string => {
  const outcomes = [...new Set(record.attempts.filter((a) => a.outcome !== "Skipped").map((a) => a.outcome))]
  return `<p class="legend">${
    outcomes.map((o) => `<span><span class="swatch" style="background:${colourOf(o)}"></span>${escapeHtml(o)}</span>`).join(" ")
  }</p>`
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#212529;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dee2e6;padding-bottom:4px}
.meta{color:#495057;margin:0 0 16px}.verdict{font-weight:600}
.grid-2{display:grid;grid-template-columns:minmax(280px,1fr) 2fr;gap:24px;align-items:start}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e9ecef;vertical-align:top}
table.numbers td{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#f1f3f5}
.chart{width:100%;height:auto;background:#fff;border:1px solid #e9ecef;border-radius:6px}
.chart .label{font-size:12px;fill:#343a40}.chart .tick{font-size:11px;fill:#868e96}
.chart .grid{stroke:#f1f3f5}.chart .lane{stroke:#f1f3f5}.chart .axis{stroke:#adb5bd}
.marker{stroke-width:2;stroke-dasharray:4 3}.marker-crash{stroke:#e03131}.marker-resume{stroke:#2f9e44}.marker-incident{stroke:#f59f00}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:middle}
.legend span{margin-right:12px;white-space:nowrap}code{font-size:12px}
#attempts td{font-size:12px}.at{color:#868e96;font-variant-numeric:tabular-nums}
.status-refused td{background:#fff5f5}.status-replayed td{background:#f1f8ff}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;margin-left:4px}.badge-cached{background:#c5f6fa;color:#0b7285}
`

/** Renders the page. */
export const renderHtml = (record: RunRecord, summary: Summary, scrub: Scrub): string => {
  const title = scrub(record.title)
  const started = new Date(record.startedAt).toISOString()
  const verdict = summary.failed === 0
    ? `${summary.succeeded} of ${summary.calls} calls answered`
    : `${summary.failed} of ${summary.calls} calls failed`
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="meta">Started ${escapeHtml(started)} · lasted ${escapeHtml(formatMs(record.durationMs))} · <span class="verdict">${escapeHtml(verdict)}</span>${summary.cached > 0 ? ` (${summary.cached} from the cache)` : ""}, ${summary.retries} retries, ${summary.fallbacks} fallbacks, ${summary.tokens.totalTokens} tokens${
    summary.costUsd === undefined ? "" : `, $${escapeHtml(formatUsd(summary.costUsd))}`
  }</p>
<div class="grid-2"><div><h2>Summary</h2>${summaryTable(summary)}</div><div><h2>Routes</h2>${routesTable(summary, scrub)}<h2>Outcomes</h2>${outcomesTable(summary)}</div></div>
<h2>Timeline of every attempt</h2>${legend(record)}${timeline(record, scrub)}
<h2>Circuit breakers over time</h2><p class="legend"><span><span class="swatch" style="background:${breakerColours["closed"]}"></span>closed</span><span><span class="swatch" style="background:${breakerColours["half-open"]}"></span>half-open</span><span><span class="swatch" style="background:${breakerColours["open"]}"></span>open</span><span><span class="swatch" style="background:${breakerColours["isolated"]}"></span>isolated</span></p>${
    breakerChart(record, scrub)
  }
<h2>Latency of attempts</h2>${histogram(record)}
${callsTable(record, scrub)}
${stepsTable(record, scrub)}
${notesList(record, scrub)}
<h2>Every attempt</h2>${attemptsTable(record, scrub)}
<p class="meta">Generated by effect-llm-resilience.</p>
</body></html>
`
}

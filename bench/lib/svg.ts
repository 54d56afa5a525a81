/**
 * A tiny SVG plotter for the benchmark reports: line charts (x/y series, optional log scales and a
 * shaded band such as an outage window) and grouped bar charts. Dependency-free, deterministic output
 * (same data → same bytes), readable in any browser and on GitHub.
 */

const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

const W = 760
const H = 420
const M = { top: 40, right: 190, bottom: 52, left: 70 }
const plotW = W - M.left - M.right
const plotH = H - M.top - M.bottom

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
const num = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2))

/** A short, human tick label: 1200 → 1.2k, 0.005 → 0.005. */
const tickLabel = (v: number): string => {
  const a = Math.abs(v)
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`
  if (a === 0) return "0"
  if (a < 0.01) return v.toExponential(0)
  return String(+v.toFixed(2))
}

/** "Nice" linear ticks (1, 2, 5 × 10^k steps). */
const linearTicks = (min: number, max: number, count = 6): Array<number> => {
  if (max <= min) return [min]
  const raw = (max - min) / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw
  const ticks: Array<number> = []
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12))
  // One tick at or above the maximum, so the top of the data has headroom and a label.
  if (ticks.length === 0 || ticks[ticks.length - 1]! < max) ticks.push(+((Math.ceil(max / step)) * step).toPrecision(12))
  return ticks
}

const logTicks = (min: number, max: number): Array<number> => {
  const ticks: Array<number> = []
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) ticks.push(10 ** e)
  return ticks
}

interface Axis {
  readonly label: string
  readonly log?: boolean
  readonly min?: number
  readonly max?: number
}

const scale = (axis: Axis, values: ReadonlyArray<number>, pixels: number, invert: boolean) => {
  const finite = values.filter((v) => Number.isFinite(v) && (!axis.log || v > 0))
  let lo = axis.min ?? (axis.log ? Math.min(...finite) : Math.min(0, ...finite))
  let hi = axis.max ?? Math.max(...finite)
  if (!Number.isFinite(lo)) lo = axis.log ? 1 : 0
  if (!Number.isFinite(hi) || hi <= lo) hi = lo + (axis.log ? 10 : 1)
  const ticks = axis.log ? logTicks(lo, hi) : linearTicks(lo, hi)
  if (axis.log) {
    lo = Math.min(lo, ticks[0]!)
    hi = Math.max(hi, ticks[ticks.length - 1]!)
  } else if (axis.max === undefined) hi = Math.max(hi, ticks[ticks.length - 1]!)
  const f = axis.log
    ? (v: number) => (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
    : (v: number) => (v - lo) / (hi - lo)
  return { map: (v: number) => (invert ? pixels - f(v) * pixels : f(v) * pixels), ticks: ticks.filter((t) => t >= lo && t <= hi) }
}

const frame = (title: string, subtitle: string | undefined, body: Array<string>) =>
  [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${M.left}" y="20" font-size="15" font-weight="600">${esc(title)}</text>`,
    subtitle === undefined ? "" : `<text x="${M.left}" y="34" fill="#555">${esc(subtitle)}</text>`,
    ...body,
    "</svg>",
    ""
  ].join("\n")

const legend = (names: ReadonlyArray<string>) =>
  names.map((name, i) => {
    const y = M.top + 10 + i * 18
    const x = M.left + plotW + 16
    return `<rect x="${x}" y="${y - 9}" width="12" height="12" fill="${palette[i % palette.length]}"/><text x="${x + 18}" y="${y + 1}">${esc(name)}</text>`
  })

const axes = (
  x: { readonly label: string; readonly ticks: ReadonlyArray<{ readonly at: number; readonly text: string }> },
  y: { readonly label: string; readonly ticks: ReadonlyArray<{ readonly at: number; readonly text: string }> }
) => [
  `<g transform="translate(${M.left},${M.top})">`,
  ...y.ticks.map((t) =>
    `<line x1="0" x2="${plotW}" y1="${num(t.at)}" y2="${num(t.at)}" stroke="#eee"/><text x="-8" y="${num(t.at + 4)}" text-anchor="end">${esc(t.text)}</text>`
  ),
  ...x.ticks.map((t) =>
    `<line x1="${num(t.at)}" x2="${num(t.at)}" y1="${plotH}" y2="${plotH + 5}" stroke="#333"/><text x="${num(t.at)}" y="${plotH + 18}" text-anchor="middle">${esc(t.text)}</text>`
  ),
  `<line x1="0" x2="${plotW}" y1="${plotH}" y2="${plotH}" stroke="#333"/><line x1="0" x2="0" y1="0" y2="${plotH}" stroke="#333"/>`,
  `<text x="${plotW / 2}" y="${plotH + 40}" text-anchor="middle">${esc(x.label)}</text>`,
  `<text transform="translate(-52,${plotH / 2}) rotate(-90)" text-anchor="middle">${esc(y.label)}</text>`,
  "</g>"
]

/** One line of a line chart. */
export interface Series {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
  /** Draw a dashed line (e.g. a reference or published figure). */
  readonly dashed?: boolean
}

/** A line chart. `band` shades an x interval (e.g. an outage window) with a caption. */
export const lineChart = (options: {
  readonly title: string
  readonly subtitle?: string
  readonly x: Axis
  readonly y: Axis
  readonly series: ReadonlyArray<Series>
  readonly band?: { readonly from: number; readonly to: number; readonly label: string }
}): string => {
  const all = options.series.flatMap((s) => s.points)
  const sx = scale(options.x, [...all.map((p) => p[0]), ...(options.band ? [options.band.from, options.band.to] : [])], plotW, false)
  const sy = scale(options.y, all.map((p) => p[1]), plotH, true)
  const body: Array<string> = []
  if (options.band !== undefined) {
    const x0 = sx.map(options.band.from)
    const x1 = sx.map(options.band.to)
    body.push(
      `<g transform="translate(${M.left},${M.top})"><rect x="${num(x0)}" y="0" width="${num(x1 - x0)}" height="${plotH}" fill="#f3d5d5" opacity="0.6"/>` +
        `<text x="${num((x0 + x1) / 2)}" y="14" text-anchor="middle" fill="#a33">${esc(options.band.label)}</text></g>`
    )
  }
  body.push(...axes(
    { label: options.x.label, ticks: sx.ticks.map((t) => ({ at: sx.map(t), text: tickLabel(t) })) },
    { label: options.y.label, ticks: sy.ticks.map((t) => ({ at: sy.map(t), text: tickLabel(t) })) }
  ))
  options.series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]) && (!options.y.log || p[1] > 0))
    if (pts.length === 0) return
    const d = pts.map((p, j) => `${j === 0 ? "M" : "L"}${num(sx.map(p[0]))},${num(sy.map(p[1]))}`).join("")
    const color = palette[i % palette.length]
    body.push(
      `<g transform="translate(${M.left},${M.top})"><path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed === true ? " stroke-dasharray=\"6 4\"" : ""}/>` +
        (pts.length <= 24 ? pts.map((p) => `<circle cx="${num(sx.map(p[0]))}" cy="${num(sy.map(p[1]))}" r="2.5" fill="${color}"/>`).join("") : "") +
        "</g>"
    )
  })
  body.push(...legend(options.series.map((s) => s.name)))
  return frame(options.title, options.subtitle, body)
}

/** A grouped bar chart: one group per category, one bar per series. */
export const barChart = (options: {
  readonly title: string
  readonly subtitle?: string
  readonly categories: ReadonlyArray<string>
  readonly series: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyArray<number> }>
  readonly y: Axis
}): string => {
  const sy = scale(options.y, options.series.flatMap((s) => s.values), plotH, true)
  const groupW = plotW / Math.max(1, options.categories.length)
  const barW = (groupW * 0.8) / Math.max(1, options.series.length)
  const body = axes(
    { label: "", ticks: options.categories.map((c, i) => ({ at: groupW * (i + 0.5), text: c })) },
    { label: options.y.label, ticks: sy.ticks.map((t) => ({ at: sy.map(t), text: tickLabel(t) })) }
  )
  const bars: Array<string> = [`<g transform="translate(${M.left},${M.top})">`]
  options.series.forEach((s, si) => {
    s.values.forEach((v, ci) => {
      if (!Number.isFinite(v)) return
      const x = groupW * ci + groupW * 0.1 + barW * si
      const y = sy.map(v)
      bars.push(
        `<rect x="${num(x)}" y="${num(y)}" width="${num(barW - 2)}" height="${num(Math.max(0, plotH - y))}" fill="${palette[si % palette.length]}"/>` +
          `<text x="${num(x + barW / 2 - 1)}" y="${num(y - 3)}" text-anchor="middle" font-size="10">${esc(tickLabel(v))}</text>`
      )
    })
  })
  bars.push("</g>")
  body.push(...bars, ...legend(options.series.map((s) => s.name)))
  return frame(options.title, options.subtitle, body)
}

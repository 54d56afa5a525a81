/**
 * The live terminal view of a run, fed by a `Report.Recorder`'s events: progress per step, route
 * health (breaker state, attempts, last outcome), retries, fallbacks, the degraded flag and the
 * heartbeat. On a TTY a status panel is redrawn in place under a scrolling log; otherwise (a pipe, a
 * CI log) only plain, timestamped log lines are written — no escape codes.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { RouteInfo, RunEvent, StepStatus } from "../Report.js"
import { stylesFor } from "./Shared.js"

/**
 * Options.
 *
 * @since 0.1.0
 * @category models
 */
export interface LiveViewOptions {
  readonly title: string
  readonly routes: ReadonlyArray<RouteInfo>
  /** The steps the run is expected to take, in order (shown as a progress line). */
  readonly plannedSteps?: ReadonlyArray<string> | undefined
  /** Redraw a panel in place (a terminal) or only write log lines. Default: whether stdout is a TTY. */
  readonly tty?: boolean | undefined
  readonly stream?: NodeJS.WriteStream | undefined
}

interface RouteState {
  breaker: string
  attempts: number
  ok: number
  failed: number
  last: string
}

/**
 * A running view.
 *
 * @since 0.1.0
 * @category models
 */
export interface LiveView {
  /** Draws the final panel and stops the view (log lines stay). */
  readonly stop: Effect.Effect<void>
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2).padStart(6)}s`

/**
 * Starts the view in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (
  events: Stream.Stream<RunEvent>,
  options: LiveViewOptions
): Effect.Effect<LiveView, never, Scope.Scope> =>
  Effect.gen(function*() {
    const out = options.stream ?? process.stdout
    const tty = options.tty ?? out.isTTY === true
    const s = stylesFor(out)
    const startedAt = Date.now()
    const steps = new Map<string, StepStatus>()
    for (const name of options.plannedSteps ?? []) steps.set(name, "running")
    const pending = new Set(options.plannedSteps ?? [])
    const routes = new Map<string, RouteState>()
    const keyToRoute = new Map<string, string>()
    for (const route of options.routes) {
      routes.set(route.name, { breaker: "closed", attempts: 0, ok: 0, failed: 0, last: "—" })
      keyToRoute.set(`${route.name}/${route.model}`, route.name)
    }
    let retries = 0
    let fallbacks = 0
    let serving = "—"
    let degraded = false
    let lastHeartbeat: number | undefined
    let heartbeatText = ""
    const lastRouteOfCall = new Map<number, string>()
    let panelLines = 0

    const stepSymbol = (name: string, status: StepStatus | undefined): string => {
      if (status === undefined || pending.has(name)) return s.grey(`· ${name}`)
      switch (status) {
        case "running":
          return s.cyan(`▶ ${name}`)
        case "done":
          return s.green(`✔ ${name}`)
        case "replayed":
          return s.blue(`↺ ${name}`)
        case "refused":
          return s.yellow(`⊘ ${name}`)
        case "failed":
        case "interrupted":
          return s.red(`✘ ${name}`)
      }
    }
    const breakerText = (state: string) =>
      state === "closed" ? s.green("● closed   ") : state === "open" ? s.red("● open     ") : state === "half-open" ? s.yellow("● half-open") : s.red("● isolated ")

    const panel = (): Array<string> => {
      const elapsed = Date.now() - startedAt
      const beat = lastHeartbeat === undefined ? "" : `  ♥ ${((Date.now() - lastHeartbeat) / 1000).toFixed(1)}s ago${heartbeatText}`
      const names = [...steps.keys()]
      const finished = names.filter((n) => !pending.has(n) && steps.get(n) !== "running").length
      const lines = [
        s.bold(`── ${options.title} ── ${(elapsed / 1000).toFixed(1)}s`) + s.dim(beat),
        `${s.bold("steps ")}  ${names.map((n) => stepSymbol(n, steps.get(n))).join("  ")}  ${s.dim(`${finished}/${names.length}`)}`
      ]
      let first = true
      for (const [name, route] of routes) {
        lines.push(
          `${s.bold(first ? "routes" : "      ")}  ${name.padEnd(10)} ${breakerText(route.breaker)}  ${String(route.attempts).padStart(3)} attempts ${
            s.green(String(route.ok).padStart(3))
          } ok ${(route.failed > 0 ? s.red : s.dim)(String(route.failed).padStart(3))} failed   last: ${route.last}`
        )
        first = false
      }
      lines.push(
        `${s.bold("totals")}  retries ${retries} · fallbacks ${fallbacks} · ${degraded ? s.yellow(`DEGRADED (serving: ${serving})`) : s.green(`healthy (serving: ${serving})`)}`
      )
      return lines
    }

    const write = (text: string) => void out.write(text)
    const redraw = (logLines: ReadonlyArray<string>) => {
      if (!tty) {
        for (const line of logLines) write(`${line}\n`)
        return
      }
      // Move to the start of the panel, clear it, print the new log lines, then the panel again.
      let text = panelLines > 0 ? `\x1b[${panelLines}F\x1b[J` : ""
      for (const line of logLines) text += `${line}\n`
      const lines = panel()
      text += `${lines.join("\n")}\n`
      // A line wider than the terminal wraps: count the rows it really takes, or the next redraw
      // would start in the wrong place.
      const columns = out.columns ?? 0
      panelLines = lines.reduce((rows, line) => {
        const visible = line.replace(/\x1b\[[0-9;]*m/g, "").length
        return rows + (columns > 0 ? Math.max(1, Math.ceil(visible / columns)) : 1)
      }, 0)
      write(text)
    }

    const at = (ms: number) => s.dim(`[${seconds(ms)}]`)

    const onEvent = (event: RunEvent): Array<string> => {
      switch (event._tag) {
        case "Step": {
          const { name, status } = event.step
          pending.delete(name)
          steps.set(name, status)
          if (status === "running") return [`${at(event.step.startedAt)} ${s.cyan("step")} ▶ ${name}`]
          const detail = event.step.detail !== undefined ? ` — ${event.step.detail}` : ""
          const paint = status === "done" ? s.green : status === "replayed" ? s.blue : status === "refused" ? s.yellow : s.red
          return [`${at(event.step.startedAt + event.step.durationMs)} ${s.cyan("step")} ${paint(status)} ${name}${detail}`]
        }
        case "Attempt": {
          const a = event.attempt
          const route = routes.get(a.route) ?? { breaker: "closed", attempts: 0, ok: 0, failed: 0, last: "—" }
          routes.set(a.route, route)
          if (a.outcome === "cached") return [`${at(a.startedAt + a.durationMs)} ${a.route} ${s.blue("cached")}: ${a.message ?? ""}`]
          if (a.outcome === "Skipped" || a.attempt === 0) return [`${at(a.startedAt)} ${a.route} skipped: ${a.message ?? ""}`]
          route.attempts++
          if (a.outcome === "success") route.ok++
          else route.failed++
          route.last = a.outcome === "success" ? s.green("success") : s.red(a.outcome)
          if (a.attempt > 1) retries++
          const previous = lastRouteOfCall.get(a.call)
          if (previous !== undefined && previous !== a.route) fallbacks++
          lastRouteOfCall.set(a.call, a.route)
          const outcome = a.outcome === "success" ? s.green("success") : s.red(a.outcome)
          const status = a.status !== undefined ? ` ${a.status}` : ""
          const waited = a.delayMs > 0 ? s.dim(` after waiting ${Math.round(a.delayMs)} ms`) : ""
          const message = a.outcome === "success" || a.message === undefined ? "" : s.dim(` — ${a.message.length > 90 ? `${a.message.slice(0, 90)}…` : a.message}`)
          return [`${at(a.startedAt + a.durationMs)} ${a.route}#${a.attempt} ${outcome}${status} (${Math.round(a.durationMs)} ms)${waited}${message}`]
        }
        case "CallStarted":
          return []
        case "CallFinished": {
          const c = event.call
          if (c.ok) {
            serving = c.route ?? "—"
            degraded = c.degraded
            return [`${at(c.startedAt + c.durationMs)} ${s.bold("call")} ${c.label} ${s.green("answered")} ${c.cached === true ? "from the cache (first " : ""}by ${c.route}${c.cached === true ? ")" : ""}${c.degraded ? s.yellow(" (degraded)") : ""}${c.repaired ? s.yellow(" after a repair") : ""}`]
          }
          return [`${at(c.startedAt + c.durationMs)} ${s.bold("call")} ${c.label} ${s.red("failed")}: ${c.error?._tag ?? "?"} (${c.error?.reason ?? ""})`]
        }
        case "Breaker": {
          const t = event.transition
          const name = keyToRoute.get(t.key) ?? t.key.split("/")[0] ?? t.key
          const route = routes.get(name)
          if (route !== undefined) route.breaker = t.to
          const paint = t.to === "closed" ? s.green : t.to === "open" ? s.red : s.yellow
          return [`${at(t.at)} ${s.bold("breaker")} ${t.key} ${t.from} → ${paint(t.to)} (${t.reason})`]
        }
        case "Note": {
          const n = event.note
          if (n.kind === "heartbeat") {
            lastHeartbeat = Date.now()
            heartbeatText = ` (${n.text})`
            return tty ? [] : [`${at(n.at)} ♥ ${n.text}`]
          }
          const paint = n.kind === "crash" ? s.red : n.kind === "resume" ? s.green : n.kind === "incident" || n.kind === "degraded" ? s.yellow : s.magenta
          return [`${at(n.at)} ${paint(n.kind)} ${n.text}`]
        }
      }
    }

    const consumer = yield* Effect.forkScoped(Stream.runForEach(events, (event) => Effect.sync(() => redraw(onEvent(event)))))
    const ticker = tty ? yield* Effect.forkScoped(Effect.repeat(Effect.sync(() => redraw([])), Schedule.spaced("250 millis"))) : undefined
    if (tty) redraw([`${s.bold(options.title)}`])
    else write(`${options.title}\n`)
    return {
      stop: Effect.gen(function*() {
        // Let the events already published reach the view before the last frame.
        yield* Effect.sleep("50 millis")
        yield* Fiber.interrupt(consumer)
        if (ticker !== undefined) yield* Fiber.interrupt(ticker)
        if (tty) {
          redraw([])
          panelLines = 0
        }
      })
    }
  })

/**
 * The live view: plain lines without escape codes when the output is not a terminal; on a terminal, a
 * panel redrawn in place (cursor up over exactly the rows it took, wrapped rows included).
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import * as LiveView from "../../src/cli/LiveView.js"
import type { RunEvent } from "../../src/Report.js"

const events: ReadonlyArray<RunEvent> = [
  { _tag: "Step", step: { name: "plan", status: "running", startedAt: 0, durationMs: 0 } },
  { _tag: "Attempt", attempt: { call: 1, startedAt: 0, route: "primary", attempt: 1, outcome: "RateLimited", status: 429, delayMs: 0, durationMs: 12, message: "slow down" } },
  { _tag: "Attempt", attempt: { call: 1, startedAt: 700, route: "primary", attempt: 2, outcome: "success", delayMs: 700, durationMs: 40 } },
  { _tag: "Attempt", attempt: { call: 2, startedAt: 800, route: "primary", attempt: 1, outcome: "Overloaded", status: 529, delayMs: 0, durationMs: 9 } },
  { _tag: "Breaker", transition: { key: "primary/gpt-4o-mini", from: "closed", to: "open", at: 810, reason: "2 consecutive failures" } },
  { _tag: "Attempt", attempt: { call: 2, startedAt: 812, route: "secondary", attempt: 1, outcome: "success", delayMs: 0, durationMs: 30 } },
  {
    _tag: "CallFinished",
    call: { id: 2, label: "summarize", startedAt: 800, durationMs: 42, ok: true, route: "secondary", degraded: true, repaired: false, usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 } }
  },
  { _tag: "Note", note: { at: 900, kind: "heartbeat", text: "plan still running (0.7 s)" } },
  { _tag: "Step", step: { name: "plan", status: "done", startedAt: 0, durationMs: 950 } }
]

const fakeStream = (tty: boolean, columns: number) => {
  const writes: Array<string> = []
  const stream = { isTTY: tty, columns, write: (text: string) => writes.push(text) } as unknown as NodeJS.WriteStream
  return { stream, writes }
}

const show = (tty: boolean, columns = 200) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const { stream, writes } = fakeStream(tty, columns)
    const view = yield* LiveView.start(Stream.fromIterable(events), {
      title: "test run",
      routes: [{ name: "primary", provider: "openai", model: "gpt-4o-mini" }, { name: "secondary", provider: "anthropic", model: "claude" }],
      plannedSteps: ["plan", "search"],
      tty,
      stream
    })
    yield* view.stop
    return writes.join("")
  })))

describe("LiveView", () => {
  it("not a terminal: one plain line per event, no escape codes", async () => {
    const text = await show(false)
    expect(text).not.toContain("\x1b[")
    const lines = text.trim().split("\n")
    expect(lines[0]).toBe("test run")
    expect(text).toMatch(/\[ +0\.01s\] primary#1 RateLimited 429 \(12 ms\) — slow down/)
    expect(text).toMatch(/primary#2 success \(40 ms\) after waiting 700 ms/)
    expect(text).toMatch(/breaker primary\/gpt-4o-mini closed → open \(2 consecutive failures\)/)
    expect(text).toMatch(/call summarize answered by secondary \(degraded\)/)
    expect(text).toMatch(/♥ plan still running/)
    expect(text).toMatch(/step done plan/)
  })

  it("a terminal: the panel shows route health, retries, fallbacks and the degraded flag, redrawn in place", async () => {
    const text = await show(true)
    // Redraws move the cursor up over the previous panel and clear it.
    expect(text).toMatch(/\x1b\[5F\x1b\[J/)
    const plain = text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "")
    const lastPanel = plain.slice(plain.lastIndexOf("── test run"))
    expect(lastPanel).toMatch(/steps +✔ plan {2}· search {2}1\/2/)
    expect(lastPanel).toMatch(/primary +● open +3 attempts +1 ok +2 failed/)
    expect(lastPanel).toMatch(/secondary +● closed +1 attempts +1 ok +0 failed/)
    expect(lastPanel).toMatch(/retries 1 · fallbacks 1 · DEGRADED \(serving: secondary\)/)
    expect(lastPanel).toMatch(/♥ [\d.]+s ago \(plan still running/)
  })

  it("a narrow terminal: wrapped panel rows are counted when moving the cursor back", async () => {
    const text = await show(true, 40)
    // Five panel lines, several wider than 40 columns: the cursor must go up more than five rows.
    const ups = [...text.matchAll(/\x1b\[(\d+)F/g)].map((m) => Number(m[1]))
    expect(ups.length).toBeGreaterThan(0)
    expect(Math.max(...ups)).toBeGreaterThan(5)
  })
})

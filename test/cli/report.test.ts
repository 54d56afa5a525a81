/**
 * The HTML report of a real run (a chain over two routes on a ChaosServer, recorded by a
 * `Report.Recorder`), checked in headless Chromium: the charts render (non-empty SVG with the right
 * number of marks), the table numbers equal the ones computed here from the chain's own results, and a
 * screenshot is saved under .tmp/.
 *
 * Chromium is the Debian package at /usr/bin/chromium (.ci/run installs it). Without it the browser
 * test fails when CI=true and is skipped (with a message) otherwise.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as path from "node:path"
import { chromium } from "playwright-core"
import { beforeAll, describe, expect, it } from "vitest"
import * as DegradedMode from "../../src/DegradedMode.js"
import type { AllRoutesFailed } from "../../src/Errors.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as Report from "../../src/Report.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import * as Transport from "../../src/Transport.js"
import { root, tempDir } from "./helpers.js"

const CHROMIUM = "/usr/bin/chromium"
const chromiumPresent = fs.existsSync(CHROMIUM)
const inCi = process.env["CI"] === "true"

interface Run {
  readonly record: Report.RunRecord
  readonly results: ReadonlyArray<Fallback.ChainResult<string>>
  readonly failures: ReadonlyArray<AllRoutesFailed>
}

/** Four calls: a 429 then success, an overload that opens the primary's breaker, a fail-fast, a 400. */
const recordedRun: Effect.Effect<Run> = Effect.gen(function*() {
  const server = yield* Effect.orDie(ChaosServer.make({
    scenario: {
      routes: [
        {
          name: "primary",
          model: "gpt-primary",
          script: [{ kind: "rate_limit", retryAfterMs: 30 }, { kind: "ok" }, { kind: "overloaded" }]
        },
        { name: "secondary", model: "claude-secondary", script: [{ kind: "ok" }, { kind: "ok" }, { kind: "http_error", status: 400 }] }
      ]
    }
  }))
  const recorder = yield* Report.makeRecorder({
    title: "report test run",
    routes: [{ name: "primary", provider: "openai", model: "gpt-primary" }, { name: "secondary", provider: "anthropic", model: "claude-secondary" }]
  })
  yield* recorder.followBreakers
  const policy: Policy.PolicyOptions = { retry: { maxAttempts: 3, base: "5 millis", cap: "20 millis" }, breaker: { consecutiveFailures: 1, openDuration: "1 minute" } }
  const routes = recorder.instrument([
    { name: "primary", model: "gpt-primary", policy, provider: yield* OpenAi.make({ apiKey: Redacted.make("sk-report-test-1"), baseUrl: server.openAiBaseUrl }) },
    { name: "secondary", model: "claude-secondary", policy, provider: yield* Anthropic.make({ apiKey: Redacted.make("sk-ant-report-2"), baseUrl: server.anthropicBaseUrl }) }
  ])
  const chain = yield* Fallback.make({ routes })
  const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "hello" }], maxTokens: 64 }
  const results: Array<Fallback.ChainResult<string>> = []
  const failures: Array<AllRoutesFailed> = []
  for (const label of ["rate-limited", "overloaded", "fail-fast", "bad-request"]) {
    const outcome = yield* Effect.either(recorder.call(label, chain.generate(request)))
    if (outcome._tag === "Right") results.push(outcome.right)
    else failures.push(outcome.left)
  }
  yield* recorder.note("info", "four calls made")
  // The breaker subscriber runs on its own fiber: yield to it until it has seen the one transition
  // the run causes (no wall-clock wait, so no race with a slow machine).
  const record = yield* Effect.repeat(Effect.zipLeft(recorder.record, Effect.yieldNow()), { until: (r) => r.breakers.length > 0 })
  return { record, results, failures }
}).pipe(
  Effect.orDie,
  Effect.scoped,
  Effect.provide(Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer))
)

/** The expected numbers, from the chain's own attempt histories (not from `Report.summarize`). */
const expectedOf = (run: Run) => {
  const histories = [...run.results.map((r) => r.attempts), ...run.failures.map((f) => f.attempts)]
  const sent = histories.flat().filter((a) => a.outcome !== "Skipped")
  let fallbacks = 0
  for (const history of histories) {
    const routes = history.filter((a) => a.outcome !== "Skipped").map((a) => a.route)
    for (let i = 1; i < routes.length; i++) if (routes[i] !== routes[i - 1]) fallbacks++
  }
  return {
    calls: histories.length,
    succeeded: run.results.length,
    failed: run.failures.length,
    attempts: sent.length,
    retries: sent.filter((a) => a.attempt > 1).length,
    fallbacks,
    degraded: run.results.filter((r) => r.degraded).length,
    totalTokens: run.results.reduce((n, r) => n + r.usage.totalTokens, 0) +
      run.failures.reduce((n, f) => n + f.attempts.reduce((m, a) => m + (a.usage?.totalTokens ?? 0), 0), 0),
    perRoute: ["primary", "secondary"].map((route) => sent.filter((a) => a.route === route).length)
  }
}

let run: Run
let html: string
beforeAll(async () => {
  run = await Effect.runPromise(recordedRun)
  html = Report.html(run.record)
})

describe("Report: the run record and its summary", () => {
  it("records every attempt with its call, and the breaker opening", () => {
    const expected = expectedOf(run)
    // The scripted incident happened as planned.
    expect(expected).toMatchObject({ calls: 4, succeeded: 3, failed: 1, retries: 1, fallbacks: 3, degraded: 2 })
    expect(run.record.attempts.map((a) => [a.call, a.route, a.outcome])).toEqual([
      [1, "primary", "RateLimited"],
      [1, "primary", "success"],
      [2, "primary", "Overloaded"],
      [2, "secondary", "success"],
      [3, "primary", "CircuitOpen"],
      [3, "secondary", "success"],
      [4, "primary", "CircuitOpen"],
      [4, "secondary", "BadRequest"]
    ])
    expect(run.record.breakers.map((b) => [b.key, b.from, b.to])).toEqual([["primary/gpt-primary", "closed", "open"]])
    const summary = Report.summarize(run.record)
    expect(summary).toMatchObject({
      calls: expected.calls,
      succeeded: expected.succeeded,
      failed: expected.failed,
      attempts: expected.attempts,
      retries: expected.retries,
      fallbacks: expected.fallbacks,
      degraded: expected.degraded,
      breakerOpens: 1
    })
    expect(summary.tokens.totalTokens).toBe(expected.totalTokens)
    expect(summary.tokens.totalTokens).toBeGreaterThan(0)
  })

  it("the page is self-contained and carries no secret", () => {
    expect(html).not.toMatch(/<script|<link|src="http|url\(http/i)
    expect(html).not.toContain("sk-report-test-1")
    expect(html).not.toContain("sk-ant-report-2")
    // Free text a caller adds is scrubbed too.
    const withNote: Report.RunRecord = { ...run.record, notes: [{ at: 1, kind: "info", text: "key sk-live-abcdef123456 leaked <b>" }] }
    const page = Report.html(withNote, { secrets: [Redacted.make("abcdef123456")] })
    expect(page).not.toContain("abcdef123456")
    expect(page).toContain("&lt;b&gt;")
  })
})

describe("Report: rendered in headless Chromium", () => {
  if (!chromiumPresent) {
    console.warn(`[report test] ${CHROMIUM} is missing: the browser check is ${inCi ? "FAILING (CI=true)" : "skipped"}. Install it with: apt-get install -y chromium`)
  }
  it.runIf(chromiumPresent || inCi)("charts render, table numbers match the run, screenshot saved", async () => {
    expect(chromiumPresent, `${CHROMIUM} is required when CI=true`).toBe(true)
    const expected = expectedOf(run)
    const dir = tempDir("report")
    const file = path.join(dir, "report.html")
    fs.writeFileSync(file, html)
    const context = await chromium.launchPersistentContext(path.join(dir, "profile"), {
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ],
      viewport: { width: 1200, height: 900 }
    })
    try {
      const page = await context.newPage()
      const requests: Array<string> = []
      page.on("request", (request) => requests.push(request.url()))
      await page.goto(`file://${file}`)
      // Nothing but the file itself was loaded.
      expect(requests).toEqual([`file://${file}`])

      for (const id of ["timeline", "breakers", "latency"]) {
        const box = await page.locator(`svg#${id}`).boundingBox()
        expect(box, id).not.toBeNull()
        expect(box!.width).toBeGreaterThan(300)
        expect(box!.height).toBeGreaterThan(50)
      }
      expect(await page.locator("#timeline rect.attempt").count()).toBe(expected.attempts)
      expect(await page.locator('#timeline rect.attempt[data-outcome="CircuitOpen"]').count()).toBe(2)
      expect(await page.locator('#breakers rect.breaker[data-state="open"]').count()).toBe(1)
      const binCounts = await page.locator("#latency rect.bin").evaluateAll((rects) => rects.map((r) => Number(r.getAttribute("data-count"))))
      expect(binCounts.reduce((a, b) => a + b, 0)).toBe(expected.attempts)
      // Every mark has a real size on screen.
      const tiny = await page.locator("svg rect").evaluateAll((rects) => rects.filter((r) => r.getBoundingClientRect().width <= 0).length)
      expect(tiny).toBe(0)

      const cell = (metric: string) => page.locator(`#summary tr[data-metric="${metric}"] td`).innerText()
      expect(await cell("calls")).toBe(String(expected.calls))
      expect(await cell("succeeded")).toBe(String(expected.succeeded))
      expect(await cell("failed")).toBe(String(expected.failed))
      expect(await cell("attempts")).toBe(String(expected.attempts))
      expect(await cell("retries")).toBe(String(expected.retries))
      expect(await cell("fallbacks")).toBe(String(expected.fallbacks))
      expect(await cell("degraded")).toBe(String(expected.degraded))
      expect(await cell("totalTokens")).toBe(String(expected.totalTokens))
      expect(await cell("breakerOpens")).toBe("1")
      const perRoute = await Promise.all(
        ["primary", "secondary"].map((route) => page.locator(`#routes tr[data-route="${route}"] td[data-col="attempts"]`).innerText())
      )
      expect(perRoute).toEqual(expected.perRoute.map(String))
      expect(await page.locator("#attempts tbody tr").count()).toBe(run.record.attempts.length)

      const shots = path.join(root, ".tmp")
      fs.mkdirSync(shots, { recursive: true })
      await page.screenshot({ path: path.join(shots, "report-test.png"), fullPage: true })
      expect(fs.statSync(path.join(shots, "report-test.png")).size).toBeGreaterThan(10_000)
    } finally {
      await context.close()
    }
  })
})

/**
 * The library's status-page reader against a local fixture server (never the internet): statuspage.io
 * and Google Cloud bodies, what is not one, HTTP errors, a server that never answers, the cache (TTL,
 * shared in-flight reads, failures cached shorter) on `TestClock`, the pre-flight verdict, and the
 * breaker hint.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import { ServerError } from "../src/Errors.js"
import * as StatusPage from "../src/StatusPage.js"
import * as Transport from "../src/Transport.js"

const hits: Record<string, number> = {}
let body: Record<string, string> = {}
let server: http.Server
let base = ""

const google = (incidents: ReadonlyArray<Record<string, unknown>>) => JSON.stringify(incidents)
const vertexOutage = {
  external_desc: "Vertex Gemini API elevated error rates",
  begin: "2026-12-06T10:00:00+00:00",
  severity: "medium",
  status_impact: "SERVICE_OUTAGE",
  affected_products: [{ title: "Vertex Gemini API", id: "Z0FZJAMvEB4j3NbCJs6B" }]
}

beforeAll(async () => {
  body = {
    "/ok.json": JSON.stringify({ page: { name: "Acme" }, status: { indicator: "none", description: "All Systems Operational" } }),
    "/minor.json": JSON.stringify({ page: { name: "Acme" }, status: { indicator: "minor", description: "Minor Service Outage" } }),
    "/major.json": JSON.stringify({ page: { name: "Acme" }, status: { indicator: "major", description: "Partial System Outage" } }),
    "/html": "<html><body>Status</body></html>",
    "/odd.json": JSON.stringify({ status: { indicator: "purple" } }),
    "/gcp-quiet.json": google([
      { ...vertexOutage, end: "2026-12-06T11:00:00+00:00" }, // resolved
      { ...vertexOutage, affected_products: [{ title: "Cloud Storage" }] } // ongoing, another product
    ]),
    "/gcp-outage.json": google([vertexOutage, { ...vertexOutage, status_impact: "SERVICE_DISRUPTION", external_desc: "Slow tuning jobs" }]),
    "/gcp-critical.json": google([{ ...vertexOutage, severity: "high" }])
  }
  server = http.createServer((request, response) => {
    const path = request.url ?? "/"
    hits[path] = (hits[path] ?? 0) + 1
    if (path === "/hang") return // never answers
    if (path === "/500") {
      response.writeHead(500).end("oops")
      return
    }
    const text = body[path]
    if (text === undefined) response.writeHead(404).end()
    else response.writeHead(200, { "content-type": "application/json" }).end(text)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

const page = (path: string): StatusPage.StatusSource => ({ format: "statuspage", url: `${base}${path}` })
const gcp = (path: string): StatusPage.StatusSource => ({ format: "google-cloud", url: `${base}${path}`, products: ["Gemini"] })
/** The reader, alive for the test's scope (with its own connection pool). */
const pages = (options: StatusPage.StatusPageOptions = {}) =>
  Effect.map(Layer.build(StatusPage.layer(options).pipe(Layer.provide(Transport.layer()))), (context) => Context.get(context, StatusPage.StatusPage))

describe("StatusPage — formats", () => {
  it.scopedLive("statuspage.io: the indicator and description; major and critical are not operational", () =>
    Effect.gen(function*() {
      const reader = yield* pages()
      const ok = yield* reader.checkSource(page("/ok.json"))
      expect([ok.indicator, ok.operational, ok.description]).toEqual(["none", true, "All Systems Operational"])
      const minor = yield* reader.checkSource(page("/minor.json"))
      expect([minor.indicator, minor.operational]).toEqual(["minor", true])
      const major = yield* reader.checkSource(page("/major.json"))
      expect([major.indicator, major.operational, major.description]).toEqual(["major", false, "Partial System Outage"])
    }))

  it.scopedLive("Google Cloud: only ongoing incidents of the source's products count; outage major (critical at high severity), disruption minor", () =>
    Effect.gen(function*() {
      const reader = yield* pages()
      const quiet = yield* reader.checkSource(gcp("/gcp-quiet.json"))
      expect([quiet.indicator, quiet.operational, quiet.incidents]).toEqual(["none", true, []])
      const outage = yield* reader.checkSource(gcp("/gcp-outage.json"))
      expect([outage.indicator, outage.operational]).toEqual(["major", false])
      expect(outage.incidents).toEqual(["Vertex Gemini API elevated error rates", "Slow tuning jobs"])
      expect((yield* reader.checkSource(gcp("/gcp-critical.json"))).indicator).toBe("critical")
    }))

  it.scopedLive("what is not a status page is a typed error, never a defect: HTML, an unknown indicator, a 500, a 404, nobody listening, an unknown provider", () =>
    Effect.gen(function*() {
      const reader = yield* pages()
      const reasons = yield* Effect.forEach(
        [page("/html"), page("/odd.json"), page("/500"), page("/missing"), gcp("/ok.json"), { format: "statuspage", url: "http://127.0.0.1:1/status.json" } as const],
        (source) => Effect.map(Effect.flip(reader.checkSource(source)), (error) => [error._tag, error.reason])
      )
      expect(reasons).toEqual([
        ["StatusPageError", "format"],
        ["StatusPageError", "format"],
        ["StatusPageError", "http"],
        ["StatusPageError", "http"],
        ["StatusPageError", "format"],
        ["StatusPageError", "unreachable"]
      ])
      const unknown = yield* Effect.flip(reader.check("bedrock"))
      expect([unknown.reason, unknown.message]).toEqual(["unknown-provider", "no status page is known for provider \"bedrock\"; name one in the StatusPage sources"])
    }))

  it.scoped("a page that never answers fails after `timeout` (TestClock)", () =>
    Effect.gen(function*() {
      const reader = yield* pages({ timeout: "2 seconds" })
      const fiber = yield* Effect.fork(Effect.flip(reader.checkSource(page("/hang"))))
      yield* Effect.promise(() => waitFor(() => (hits["/hang"] ?? 0) > 0))
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(fiber)
      expect([error.reason, error.message]).toEqual(["unreachable", `${base}/hang did not answer within 2000 ms`])
    }))
})

/** Waits on real time (bounded) for the fixture server to have seen a request. */
const waitFor = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
}

describe("StatusPage — the cache (TestClock)", () => {
  it.scoped("one GET per source per ttl; concurrent checks share one; a failure is reused for errorTtl only", () =>
    Effect.gen(function*() {
      const reader = yield* pages({ sources: { acme: page("/ok.json"), broken: page("/500") }, ttl: "60 seconds", errorTtl: "10 seconds" })
      const before = hits["/ok.json"] ?? 0
      yield* Effect.all([reader.check("acme"), reader.check("acme"), reader.check("acme")], { concurrency: "unbounded" })
      yield* reader.check("acme")
      expect((hits["/ok.json"] ?? 0) - before).toBe(1)
      yield* TestClock.adjust("59 seconds")
      yield* reader.check("acme")
      expect((hits["/ok.json"] ?? 0) - before).toBe(1)
      yield* TestClock.adjust("2 seconds")
      yield* reader.check("acme")
      expect((hits["/ok.json"] ?? 0) - before).toBe(2)

      const failedBefore = hits["/500"] ?? 0
      yield* Effect.flip(reader.check("broken"))
      yield* Effect.flip(reader.check("broken"))
      expect((hits["/500"] ?? 0) - failedBefore).toBe(1)
      yield* TestClock.adjust("11 seconds")
      yield* Effect.flip(reader.check("broken"))
      expect((hits["/500"] ?? 0) - failedBefore).toBe(2)
    }))
})

describe("StatusPage — pre-flight and the breaker hint", () => {
  it.scoped("preflight: the verdict an agent run's pre-flight takes", () =>
    Effect.gen(function*() {
      const reader = yield* pages({ sources: { acme: page("/major.json"), fine: page("/ok.json") } })
      expect(yield* reader.preflight("acme")).toEqual({ operational: false, description: "major: Partial System Outage" })
      expect(yield* reader.preflight("fine")).toEqual({ operational: true, description: "none: All Systems Operational" })
    }))

  it.scoped("holdOpenDuringIncidents: an open breaker stays open while the page reports a major incident; a closed one is never opened", () =>
    Effect.gen(function*() {
      const reader = yield* pages({ sources: { down: page("/major.json") } })
      const context = Layer.succeed(StatusPage.StatusPage, reader)
      const breaker = yield* CircuitBreaker.make("down/m", { consecutiveFailures: 1, openDuration: "5 seconds" })
      const untouched = yield* CircuitBreaker.make("down/other", { consecutiveFailures: 1 })
      yield* StatusPage.holdOpenDuringIncidents(breaker, "down", "30 seconds").pipe(Effect.provide(context))
      yield* StatusPage.holdOpenDuringIncidents(untouched, "down", "30 seconds").pipe(Effect.provide(context))
      // Both hints have had their first look (the breakers were closed: nothing to do) and sleep.
      while ((yield* TestClock.sleeps()).length < 2) yield* Effect.yieldNow()
      const failure = new ServerError({ provider: "p", model: "m", route: "down", attempt: 1, status: 500, message: "boom" })
      yield* Effect.flatMap(breaker.acquire({ provider: "p", model: "m", route: "down", attempt: 1 }), (permit) => permit.failure(failure))
      expect(yield* breaker.state).toBe("open")
      // The first look happens at once (the breaker was closed then: nothing to do); the next one 30 s
      // later, past the 5 s open period (half-open by then): the page says major, so it opens again.
      yield* TestClock.adjust("30 seconds")
      // The look reads the page over real HTTP: wait (bounded, real time) for its verdict to land.
      const held = (events: ReadonlyArray<CircuitBreaker.BreakerEvent>) =>
        events.some((e) => e.to === "open" && e.reason === "status page: major — Partial System Outage")
      for (let i = 0; i < 500 && !held(yield* breaker.history); i++) yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
      expect(held(yield* breaker.history)).toBe(true)
      expect(yield* breaker.state).toBe("open")
      expect(yield* untouched.state).toBe("closed")
    }))
})

/**
 * The ChaosServer's control plane over real HTTP: capacity buckets, the concurrency cap, outage
 * windows, seeded mixes, scripts, route matching, stats, reset and the admin endpoints, and the timing
 * faults. Time is driven with TestClock (the server reads the Effect clock of the context it was made
 * in), so every timing assertion is exact and no test waits on the wall clock.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import { awaitServerSleep, BodyReader, chatBody, messagesBody, postJson, raw, rejection, sseData, sseEvents, tick } from "./helpers.js"

const serve = (scenario: Scenario.Scenario = {}) => ChaosServer.make({ scenario })
const chat = (server: ChaosServer.ChaosServerHandle, extra: Record<string, unknown> = {}) =>
  postJson(`${server.openAiBaseUrl}/chat/completions`, chatBody(extra))
const messages = (server: ChaosServer.ChaosServerHandle, extra: Record<string, unknown> = {}) =>
  postJson(`${server.anthropicBaseUrl}/v1/messages`, messagesBody(extra))

/** Polls (in event-loop turns, bounded) until the predicate holds on the server's stats. */
const eventually = (server: ChaosServer.ChaosServerHandle, predicate: (stats: ChaosServer.ChaosStats) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 5_000; i++) {
      if (predicate(yield* server.stats)) return
      yield* tick
    }
    return yield* Effect.dieMessage("condition never held")
  })

/** Starts a streaming request and returns a reader once the headers are in. */
const openStream = (url: string, body: unknown, signal?: AbortSignal) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      ...(signal === undefined ? {} : { signal })
    })
    return { response, reader: new BodyReader(response) }
  })

describe("capacity model", () => {
  it.scoped("rpm: the bucket answers 429 with the exact retry-after and headers, and refills with time", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { rpm: 2 } })
      const first = yield* chat(server)
      expect(first.status).toBe(200)
      expect(first.headers.get("x-ratelimit-limit-requests")).toBe("2")
      expect(first.headers.get("x-ratelimit-remaining-requests")).toBe("1")
      expect(first.headers.get("x-ratelimit-reset-requests")).toBe("30s")
      const second = yield* chat(server)
      expect(second.headers.get("x-ratelimit-remaining-requests")).toBe("0")
      expect(second.headers.get("x-ratelimit-reset-requests")).toBe("1m0s")
      const limited = yield* chat(server)
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("30")
      expect(limited.headers.get("x-ratelimit-remaining-requests")).toBe("0")
      const body = JSON.parse(limited.text) as { error: { type: string; code: string; message: string } }
      expect(body.error).toMatchObject({ type: "requests", code: "rate_limit_exceeded" })
      expect(body.error.message).toContain("Limit 2, Used 2, Requested 1. Please try again in 30s.")
      // 29.999 s later one request has not quite dripped back in; at 30 s it has.
      yield* TestClock.adjust("29999 millis")
      expect((yield* chat(server)).status).toBe(429)
      yield* TestClock.adjust("1 millis")
      expect((yield* chat(server)).status).toBe(200)
      const stats = yield* server.stats
      expect(stats.bySource).toEqual({ default: 3, capacity: 2 })
      expect(stats.byStatus).toEqual({ "200": 3, "429": 2 })
    }))

  it.scoped("tpm: prompt + max_tokens are charged; retry-after is the time until enough tokens; oversize never fits", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { tpm: 1_000 } })
      // "Say hello." is 3 tokens; with max_tokens 600 the request costs 603.
      const first = yield* chat(server, { max_tokens: 600 })
      expect(first.status).toBe(200)
      expect(first.headers.get("x-ratelimit-remaining-tokens")).toBe("397")
      const limited = yield* chat(server, { max_tokens: 600 })
      expect(limited.status).toBe(429)
      // 206 missing tokens at 1000/min = 12.36 s → 13.
      expect(limited.headers.get("retry-after")).toBe("13")
      expect(JSON.parse(limited.text).error.type).toBe("tokens")
      const tooLarge = yield* chat(server, { max_tokens: 5_000 })
      expect(tooLarge.status).toBe(429)
      expect(tooLarge.headers.get("retry-after")).toBeNull()
      expect(JSON.parse(limited.text).error.code).toBe("rate_limit_exceeded")
      expect(JSON.parse(tooLarge.text).error.message).toContain("Request too large")
      yield* TestClock.adjust("12360 millis")
      expect((yield* chat(server, { max_tokens: 600 })).status).toBe(200)
    }))

  it.scoped("Anthropic: the same bucket, with RFC 3339 resets and rate_limit_error", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { rpm: 60 } })
      const ok = yield* messages(server)
      expect(ok.headers.get("anthropic-ratelimit-requests-limit")).toBe("60")
      expect(ok.headers.get("anthropic-ratelimit-requests-remaining")).toBe("59")
      // TestClock starts at the epoch; one request drips back in after 1 s.
      expect(ok.headers.get("anthropic-ratelimit-requests-reset")).toBe("1970-01-01T00:00:01Z")
      for (let i = 0; i < 59; i++) yield* messages(server)
      const limited = yield* messages(server)
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("1")
      expect(JSON.parse(limited.text)).toMatchObject({ type: "error", error: { type: "rate_limit_error" } })
    }))

  it.scopedLive("concurrency: finished responses (JSON and streams) free their slot", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { concurrency: 1 } })
      for (let i = 0; i < 3; i++) {
        yield* eventually(server, (s) => s.inFlight === 0)
        expect((yield* chat(server)).status).toBe(200)
        yield* eventually(server, (s) => s.inFlight === 0)
        expect((yield* messages(server, { stream: true })).status).toBe(200)
      }
      expect((yield* server.stats).bySource).toEqual({ default: 6 })
    }))

  it.scopedLive("concurrency: one request over the cap gets 529 overloaded; the slot frees when the client leaves", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { concurrency: 1, script: [{ kind: "hang_before_headers" }] } })
      const controller = new AbortController()
      const hung = fetch(`${server.openAiBaseUrl}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(chatBody()),
        signal: controller.signal
      }).catch((error: unknown) => error)
      yield* eventually(server, (s) => s.inFlight === 1)
      const rejected = yield* chat(server)
      expect(rejected.status).toBe(529)
      expect(JSON.parse(rejected.text)).toEqual({
        error: { message: "The server is overloaded, please try again later.", type: "server_error", param: null, code: "overloaded" }
      })
      const anthropicRejected = yield* messages(server)
      expect(anthropicRejected.status).toBe(529)
      expect(JSON.parse(anthropicRejected.text).error.type).toBe("overloaded_error")
      controller.abort()
      yield* Effect.promise(() => hung)
      yield* eventually(server, (s) => s.inFlight === 0)
      expect((yield* chat(server)).status).toBe(200)
      expect((yield* server.stats).bySource).toEqual({ script: 1, concurrency: 2, default: 1 })
    }))
})

describe("outage windows", () => {
  it.scoped("answer with the default outage fault inside [fromMs, toMs), by the Effect clock", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { outage: { fromMs: 1_000, toMs: 2_000 } } })
      expect((yield* chat(server)).status).toBe(200)
      yield* TestClock.adjust("1 second")
      const during = yield* chat(server)
      expect(during.status).toBe(503)
      expect(JSON.parse(during.text).error.type).toBe("server_error")
      const anthropicDuring = yield* messages(server)
      expect(anthropicDuring.status).toBe(529)
      expect(JSON.parse(anthropicDuring.text).error.type).toBe("overloaded_error")
      yield* TestClock.adjust("999 millis")
      expect((yield* chat(server)).status).toBe(503)
      yield* TestClock.adjust("1 millis")
      expect((yield* chat(server)).status).toBe(200)
      // A reset restarts the outage clock.
      yield* server.reset
      yield* TestClock.adjust("1500 millis")
      expect((yield* chat(server)).status).toBe(503)
      expect((yield* server.stats).log.map((e) => [e.at, e.source])).toEqual([[1500, "outage"]])
    }))

  it.scoped("use the configured fault and do not consume the script", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          outage: { fromMs: 0, toMs: 3_600_000, fault: { kind: "http_error", status: 502 } },
          script: [{ kind: "http_error", status: 401 }]
        }
      })
      expect((yield* chat(server)).status).toBe(502)
      yield* TestClock.adjust("1 hour")
      expect((yield* chat(server)).status).toBe(401)
    }))
})

describe("fault selection", () => {
  const mixScenario = (seed: number): Scenario.Scenario => ({
    seed,
    default: {
      mix: [
        { fault: { kind: "rate_limit" }, rate: 0.2 },
        { fault: { kind: "overloaded" }, rate: 0.2 },
        { fault: { kind: "http_error", status: 500 }, rate: 0.1 }
      ]
    }
  })
  const faultsOf = (server: ChaosServer.ChaosServerHandle, n: number) =>
    Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* chat(server)
      return (yield* server.stats).log.map((e) => e.fault)
    })

  it.scopedLive("a seeded mix gives the same sequence on two server instances, and after a reset", () =>
    Effect.gen(function*() {
      const a = yield* faultsOf(yield* serve(mixScenario(42)), 40)
      const second = yield* serve(mixScenario(42))
      const b = yield* faultsOf(second, 40)
      expect(b).toEqual(a)
      expect(new Set(a).size).toBe(4)
      yield* second.reset
      expect(yield* faultsOf(second, 40)).toEqual(a)
      const other = yield* faultsOf(yield* serve(mixScenario(7)), 40)
      expect(other).not.toEqual(a)
    }))

  it.scopedLive("mix rates are respected (seeded, so this is exact, not flaky)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ seed: 3, default: { mix: [{ fault: { kind: "empty_content" }, rate: 0.5 }] } })
      const faults = yield* faultsOf(server, 200)
      const empty = faults.filter((f) => f === "empty_content").length
      expect(empty).toBeGreaterThan(70)
      expect(empty).toBeLessThan(130)
    }))

  it.scopedLive("a script is served in order, then the mix (or ok) takes over", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: {
          script: [{ kind: "rate_limit" }, { kind: "http_error", status: 500 }, { kind: "ok" }, { kind: "overloaded" }],
          mix: [{ fault: { kind: "billing" }, rate: 1 }]
        }
      })
      const faults = yield* faultsOf(server, 6)
      expect(faults).toEqual(["rate_limit", "http_error", "ok", "overloaded", "billing", "billing"])
      expect((yield* server.stats).log.map((e) => e.status)).toEqual([429, 500, 200, 529, 402, 402])
    }))

  it.scopedLive("routes match on api and model (with * globs), first match wins, else default", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        routes: [
          { name: "claude", api: "anthropic", script: [{ kind: "overloaded" }] },
          { name: "mini", api: "openai", model: "gpt-4o-mini*", script: [{ kind: "http_error", status: 500 }] },
          { name: "shadowed", model: "gpt-4o-mini", script: [{ kind: "http_error", status: 401 }] }
        ],
        default: { script: [{ kind: "http_error", status: 404 }] }
      })
      expect((yield* messages(server)).status).toBe(529)
      expect((yield* chat(server, { model: "gpt-4o-mini-2024-07-18" })).status).toBe(500)
      expect((yield* chat(server, { model: "gpt-4o" })).status).toBe(404)
      expect((yield* chat(server)).status).toBe(200) // "mini" again: its script is spent
      expect((yield* server.stats).byRoute).toEqual({ claude: 1, mini: 2, default: 1 })
    }))

  it.scoped("fixed latency delays the headers by exactly the configured time", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { latency: { kind: "fixed", ms: 250 } } })
      const pending = yield* Effect.fork(chat(server))
      yield* awaitServerSleep
      yield* TestClock.adjust("249 millis")
      for (let i = 0; i < 20; i++) yield* tick
      expect(Option.isNone(yield* Fiber.poll(pending))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const response = yield* pending.await.pipe(Effect.flatten)
      expect(response.status).toBe(200)
      expect(response.headers.get("openai-processing-ms")).toBe("250")
    }))
})

describe("timing faults (driven by TestClock)", () => {
  it.scoped("slow_first_token: headers and the role chunk promptly, content only after delayMs", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: [{ kind: "slow_first_token", delayMs: 5_000 }] } })
      const { reader, response } = yield* openStream(`${server.openAiBaseUrl}/chat/completions`, chatBody({ stream: true }))
      expect(response.status).toBe(200)
      const head = yield* Effect.promise(() => reader.until((t) => t.includes("\n\n")))
      expect(sseData(head)).toHaveLength(1)
      expect(JSON.parse(sseData(head)[0] ?? "").choices[0].delta).toEqual({ role: "assistant", content: "", refusal: null })
      yield* awaitServerSleep
      yield* TestClock.adjust("5 seconds")
      const all = yield* Effect.promise(() => reader.until(() => false))
      expect(sseData(all).pop()).toBe("[DONE]")
    }))

  it.scoped("slow_first_token on Anthropic: message_start and ping arrive before the delay", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: [{ kind: "slow_first_token", delayMs: 1_000 }] } })
      const { reader } = yield* openStream(`${server.anthropicBaseUrl}/v1/messages`, messagesBody({ stream: true }))
      const head = yield* Effect.promise(() => reader.until((t) => t.includes("event: ping")))
      expect(sseEvents(head)).toEqual(["message_start", "content_block_start", "ping"])
      yield* awaitServerSleep
      yield* TestClock.adjust("1 second")
      const all = yield* Effect.promise(() => reader.until(() => false))
      expect(sseEvents(all).pop()).toBe("message_stop")
    }))

  it.scoped("stall_mid_stream: N deltas, silence for delayMs, then the rest", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: [{ kind: "stall_mid_stream", afterDeltas: 2, delayMs: 30_000 }] } })
      const { reader } = yield* openStream(`${server.openAiBaseUrl}/chat/completions`, chatBody({ stream: true }))
      const before = yield* Effect.promise(() => reader.until((t) => sseData(t).length >= 3))
      expect(sseData(before)).toHaveLength(3)
      yield* awaitServerSleep
      yield* TestClock.adjust("30 seconds")
      const all = yield* Effect.promise(() => reader.until(() => false))
      expect(sseData(all).pop()).toBe("[DONE]")
    }))

  it.scoped("non-stream timing faults: slow_first_token delays the body, stall sends half then waits", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        default: { script: [{ kind: "slow_first_token", delayMs: 2_000 }, { kind: "stall_mid_stream", delayMs: 2_000 }] }
      })
      const slow = yield* Effect.fork(chat(server))
      yield* awaitServerSleep
      yield* TestClock.adjust("2 seconds")
      expect(JSON.parse((yield* Effect.flatten(slow.await)).text).object).toBe("chat.completion")
      const { reader, response } = yield* openStream(`${server.openAiBaseUrl}/chat/completions`, chatBody())
      expect(response.status).toBe(200)
      const half = yield* Effect.promise(() => reader.until((t) => t.length > 0))
      expect(() => JSON.parse(half)).toThrow()
      yield* awaitServerSleep
      yield* TestClock.adjust("2 seconds")
      const whole = yield* Effect.promise(() => reader.until(() => false))
      expect(JSON.parse(whole).object).toBe("chat.completion")
    }))
})

describe("lifecycle", () => {
  it.scopedLive("closing the scope closes the server and every socket, including hung and stalled ones", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* ChaosServer.make({
        scenario: { default: { script: [{ kind: "hang_before_headers" }, { kind: "stall_mid_stream", afterDeltas: 1 }] } }
      }).pipe(Scope.extend(scope))
      const hung = fetch(`${server.openAiBaseUrl}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(chatBody())
      }).then(() => "answered", () => "failed")
      yield* eventually(server, (s) => s.total === 1)
      const { reader } = yield* openStream(`${server.openAiBaseUrl}/chat/completions`, chatBody({ stream: true }))
      yield* Effect.promise(() => reader.until((t) => sseData(t).length >= 2))
      const stalled = reader.until(() => false).then(() => "ended", () => "failed")
      yield* Scope.close(scope, Exit.void)
      expect(yield* Effect.promise(() => hung)).toBe("failed")
      expect(yield* Effect.promise(() => stalled)).toBe("failed")
      expect(reader.text).not.toContain("[DONE]")
      const after = yield* rejection(() => fetch(`${server.url}/__chaos/stats`))
      expect(after).toBeInstanceOf(Error)
    }))

  it.effect("an invalid scenario fails make with a typed ChaosServerError naming the path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(ChaosServer.make({ scenario: { default: { mix: [{ fault: { kind: "ok" }, rate: 1.5 }] } } }))
      )
      expect(error._tag).toBe("ChaosServerError")
      expect(error.reason).toBe("InvalidScenario")
      expect(error.message).toContain("default.mix[0].rate")
    }))

  it.scopedLive("a port in use fails make with reason Listen", () =>
    Effect.gen(function*() {
      const first = yield* serve()
      const error = yield* Effect.flip(ChaosServer.make({ port: first.port }))
      expect(error.reason).toBe("Listen")
      expect(error.message).toContain(String(first.port))
      const invalid = yield* Effect.flip(ChaosServer.make({ port: 70_000 }))
      expect(invalid.reason).toBe("Listen")
    }))

  it.scopedLive("ChaosServer.layer provides the handle as a service", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.ChaosServer
      expect(server.url).toBe(`http://127.0.0.1:${server.port}`)
      expect(server.openAiBaseUrl).toBe(`${server.url}/v1`)
      expect(server.anthropicBaseUrl).toBe(server.url)
      expect((yield* chat(server)).status).toBe(200)
    }).pipe(Effect.provide(ChaosServer.layer())))
})

describe("stats and admin endpoints", () => {
  it.scopedLive("stats count per route, status, fault and source; the log is ordered; reset clears and restarts", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        routes: [{ name: "primary", api: "openai", script: [{ kind: "rate_limit" }, { kind: "ok" }] }]
      })
      yield* chat(server)
      yield* chat(server, { stream: true })
      yield* messages(server)
      const stats = yield* server.stats
      expect(stats.total).toBe(3)
      expect(stats.byApi).toEqual({ openai: 2, anthropic: 1 })
      expect(stats.byRoute).toEqual({ primary: 2, default: 1 })
      expect(stats.byStatus).toEqual({ "429": 1, "200": 2 })
      expect(stats.byFault).toEqual({ rate_limit: 1, ok: 2 })
      expect(stats.log.map((e) => [e.seq, e.api, e.model, e.fault, e.status, e.stream])).toEqual([
        [1, "openai", "gpt-4o-mini", "rate_limit", 429, false],
        [2, "openai", "gpt-4o-mini", "ok", 200, true],
        [3, "anthropic", "claude-haiku-4-5", "ok", 200, false]
      ])
      const overHttp = yield* raw(`${server.url}/__chaos/stats`)
      expect(JSON.parse(overHttp.text)).toEqual(stats)
      const reset = yield* raw(`${server.url}/__chaos/reset`, { method: "POST" })
      expect(reset.status).toBe(200)
      expect((yield* server.stats).total).toBe(0)
      expect((yield* chat(server)).status).toBe(429) // the script starts over
    }))

  it.scopedLive("POST /__chaos/scenario replaces the scenario, and rejects bad input with a readable 400", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const bad = yield* raw(`${server.url}/__chaos/scenario`, {
        method: "POST",
        body: JSON.stringify({ default: { script: [{ kind: "rate_limit", retryAfterSecs: 1 }] } })
      })
      expect(bad.status).toBe(400)
      const error = JSON.parse(bad.text).error as { message: string; issues: Array<{ path: string }> }
      expect(error.message).toContain("default.script[0].retryAfterSecs: is unexpected")
      expect(error.issues.map((i) => i.path)).toEqual(["default.script[0].retryAfterSecs"])
      const notJson = yield* raw(`${server.url}/__chaos/scenario`, { method: "POST", body: "{\n  \"seed\": }" })
      expect(notJson.status).toBe(400)
      expect(JSON.parse(notJson.text).error.message).toContain("line 2, column 11")
      const scenario = { default: { script: [{ kind: "http_error", status: 418 }] } }
      const good = yield* raw(`${server.url}/__chaos/scenario`, { method: "POST", body: JSON.stringify(scenario) })
      expect(good.status).toBe(200)
      expect(JSON.parse((yield* raw(`${server.url}/__chaos/scenario`)).text)).toEqual(scenario)
      expect((yield* chat(server)).status).toBe(418)
    }))

  it.scopedLive("setScenario validates and applies; a bad scenario is a typed ScenarioError", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const error = yield* Effect.flip(server.setScenario({ default: { rpm: -1 } }))
      expect(error._tag).toBe("ScenarioError")
      expect(error.message).toContain("default.rpm")
      yield* server.setScenario({ default: { script: [{ kind: "billing" }] } })
      expect((yield* chat(server)).status).toBe(402)
    }))
})

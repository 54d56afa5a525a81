/**
 * The ChaosProvider: the ChaosServer's fault engine executed in memory and decoded by the real
 * adapters, under TestClock. The fault table is the one test/e2e/faults.test.ts runs over real HTTP;
 * in-process it must give the same answers, at exact virtual instants, in no wall time.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Policy from "../../src/Policy.js"
import { Provider } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as ChaosProvider from "../../src/testing/ChaosProvider.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Timeline from "../../src/testing/Timeline.js"
import { chatBody, postJson } from "./helpers.js"
import { assertCase, caseTitle, defaultTimeouts, failureOf, faultCases } from "../utils/faultCases.js"

const Env = Layer.mergeAll(Policy.layerState, DegradedMode.layer)

const request = (model = "gpt-4o-mini") => ({ model, messages: [{ role: "user" as const, content: "Say hello." }], maxTokens: 64 })

for (const api of ["openai", "responses", "anthropic", "gemini", "bedrock"] as const) {
  describe(`ChaosProvider faults → typed errors in-process (${api})`, () => {
    it.effect.each(faultCases.map((c) => [caseTitle(c), c] as const))(
      "%s",
      ([, testCase]) =>
        Effect.gen(function*() {
          const chaos = yield* ChaosProvider.make({ api, scenario: { default: { script: [testCase.fault] } } })
          const run = yield* Timeline.run(failureOf(chaos, api, testCase))
          expect(Exit.isSuccess(run.exit)).toBe(true)
          if (!Exit.isSuccess(run.exit)) return
          assertCase(run.exit.value, api, testCase, "sk-chaos-in-process-key")
          // Timeouts fire at their exact virtual instant; everything else takes no virtual time.
          const error = run.exit.value
          const expectedMs = error._tag !== "Timeout" ? 0 : {
            attempt: defaultTimeouts.attempt,
            headers: defaultTimeouts.headers,
            "first-token": defaultTimeouts.firstToken,
            idle: defaultTimeouts.idle,
            connect: Number.NaN // no connect phase in memory
          }[error.phase]
          expect(run.elapsedMs).toBe(expectedMs)
          expect((yield* chaos.stats).log.map((entry) => entry.fault)).toEqual([testCase.fault.kind])
        }).pipe(Effect.provide(Env))
    )
  })
}

describe("ChaosProvider — healthy answers", () => {
  it.effect.each(["openai", "responses", "anthropic"] as const)("%s: JSON and stream carry the route's content, usage and request id", (api) =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({ api, scenario: { default: { content: { kind: "text", text: "one two three" } } } })
      const response = yield* chaos.generate(request())
      expect(response.text).toBe("one two three")
      expect(response.finishReason).toBe("stop")
      expect(response.provider).toBe(api)
      expect(response.usage.outputTokens).toBe(4)
      expect(response.requestId).toMatch(/^req_/)
      expect(response.rateLimit?.requests?.remaining).toBeGreaterThan(0)
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(chaos.stream(request())))
      expect(events[0]?._tag).toBe("Metadata")
      expect(events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))).toEqual(["one", " two", " three"])
      const finish = events[events.length - 1]
      expect(finish?._tag === "Finish" && finish.response.text).toBe("one two three")
    }))

  it.effect("echo and JSON content, and max_tokens cutting the answer with finish reason length", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({
        scenario: {
          routes: [
            { model: "echo-*", content: { kind: "echo" } },
            { model: "json", content: { kind: "json", value: { answer: 42 } } }
          ],
          default: { content: { kind: "text", text: "x".repeat(400) } }
        }
      })
      expect((yield* chaos.generate(request("echo-1"))).text).toBe("Say hello.")
      expect(JSON.parse((yield* chaos.generate(request("json"))).text)).toEqual({ answer: 42 })
      const capped = yield* chaos.generate({ ...request(), maxTokens: 10 })
      expect(capped.text).toBe("x".repeat(40))
      expect(capped.finishReason).toBe("length")
    }))
})

describe("ChaosProvider — time follows TestClock", () => {
  it.effect("fixed latency delays the answer by exactly its value; slow_first_token delays the first delta", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({
        scenario: {
          default: {
            latency: { kind: "fixed", ms: 250 },
            deltaDelayMs: 100,
            content: { kind: "text", text: "a b c" },
            script: [{ kind: "ok" }, { kind: "slow_first_token", delayMs: 5_000 }]
          }
        }
      })
      const first = yield* Timeline.run(chaos.generate(request()))
      expect(first.elapsedMs).toBe(250)
      const stamped = chaos.stream(request()).pipe(
        Stream.mapEffect((event) => Effect.map(TestClock.currentTimeMillis, (at) => [event._tag, at] as const))
      )
      const start = yield* TestClock.currentTimeMillis
      const second = yield* Timeline.run(Stream.runCollect(stamped))
      expect(Exit.isSuccess(second.exit)).toBe(true)
      if (!Exit.isSuccess(second.exit)) return
      const timeline = Chunk.toReadonlyArray(second.exit.value).map(([tag, at]) => [tag, at - start])
      // Headers after the latency; the first token 5 s later; then one delta every 100 ms.
      expect(timeline).toEqual([
        ["Metadata", 250],
        ["TextDelta", 5_250],
        ["TextDelta", 5_350],
        ["TextDelta", 5_450],
        ["Usage", 5_450],
        ["Finish", 5_450]
      ])
    }))

  it.effect("an outage window answers 529 from fromMs to toMs by the virtual clock", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({
        api: "anthropic",
        scenario: { default: { outage: { fromMs: 1_000, toMs: 3_000 } } }
      })
      const outcome = Effect.map(Effect.either(chaos.generate(request("claude-haiku-4-5"))), (r) => r._tag === "Right" ? "ok" : r.left._tag)
      const seen: Array<string> = []
      for (const at of [0, 999, 1_000, 2_999, 3_000]) {
        yield* TestClock.setTime(at)
        seen.push(`${at}:${yield* outcome}`)
      }
      expect(seen).toEqual(["0:ok", "999:ok", "1000:Overloaded", "2999:Overloaded", "3000:ok"])
      expect((yield* chaos.stats).bySource).toEqual({ default: 3, outage: 2 })
    }))

  it.effect("an rpm bucket answers 429 with the exact wait, and refills with virtual time", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({ scenario: { default: { rpm: 2 } } })
      yield* chaos.generate(request())
      yield* chaos.generate(request())
      const limited = yield* Effect.flip(chaos.generate(request()))
      expect(limited._tag).toBe("RateLimited")
      // One request refills every 30 s; the header is whole seconds.
      expect(limited._tag === "RateLimited" && limited.retryAfterMs).toBe(30_000)
      expect(limited._tag === "RateLimited" && limited.rateLimit?.requests?.remaining).toBe(0)
      yield* TestClock.adjust("29999 millis")
      expect((yield* Effect.flip(chaos.generate(request())))._tag).toBe("RateLimited")
      yield* TestClock.adjust("1 millis")
      expect((yield* chaos.generate(request())).finishReason).toBe("stop")
    }))

  it.effect("latency distributions: uniform stays in range, lognormal is capped, both reproducible by seed", () =>
    Effect.gen(function*() {
      const latencies = (seed: number, latency: Scenario.Latency) =>
        Effect.gen(function*() {
          const chaos = yield* ChaosProvider.make({ scenario: { seed, default: { latency } } })
          const out: Array<number> = []
          // Rounded to the microsecond: the virtual clock adds fractional sleeps in floating point.
          for (let i = 0; i < 20; i++) out.push(Math.round((yield* Timeline.run(chaos.generate(request()))).elapsedMs * 1000) / 1000)
          return out
        })
      const uniform = yield* latencies(3, { kind: "uniform", minMs: 100, maxMs: 200 })
      expect(uniform.every((ms) => ms >= 100 && ms <= 200)).toBe(true)
      expect(new Set(uniform).size).toBeGreaterThan(10)
      expect(yield* latencies(3, { kind: "uniform", minMs: 100, maxMs: 200 })).toEqual(uniform)
      const lognormal = yield* latencies(3, { kind: "lognormal", medianMs: 300, sigma: 1.5, maxMs: 1_000 })
      expect(lognormal.every((ms) => ms > 0 && ms <= 1_000)).toBe(true)
      expect(lognormal).toContain(1_000)
    }))
})

describe("ChaosProvider — scenario state", () => {
  const faultsOf = (chaos: ChaosProvider.ChaosProviderHandle) =>
    Effect.map(chaos.stats, (stats) => stats.log.map((entry) => entry.fault))

  const mix: Scenario.Scenario["default"] = {
    mix: [
      { fault: { kind: "overloaded" }, rate: 0.3 },
      { fault: { kind: "http_error", status: 500 }, rate: 0.2 },
      { fault: { kind: "rate_limit", retryAfterMs: 100 }, rate: 0.1 }
    ]
  }

  const drive = (chaos: ChaosProvider.ChaosProviderHandle, n: number) =>
    Effect.forEach(Array.from({ length: n }), () => Effect.either(chaos.generate(request())), { discard: true })

  it.effect("a seeded mix is reproducible: same seed → same fault sequence; another seed → another", () =>
    Effect.gen(function*() {
      const sequence = (seed: number) =>
        Effect.gen(function*() {
          const chaos = yield* ChaosProvider.make({ scenario: { seed, default: mix } })
          yield* drive(chaos, 60)
          return yield* faultsOf(chaos)
        })
      const a = yield* sequence(42)
      const b = yield* sequence(42)
      const c = yield* sequence(43)
      expect(a).toEqual(b)
      expect(a).not.toEqual(c)
      expect(new Set(a)).toEqual(new Set(["ok", "overloaded", "http_error", "rate_limit"]))
      // And after a reset the same provider replays the sequence from the start.
      const chaos = yield* ChaosProvider.make({ scenario: { seed: 42, default: mix } })
      yield* drive(chaos, 60)
      yield* chaos.reset
      yield* drive(chaos, 60)
      expect(yield* faultsOf(chaos)).toEqual(a)
    }))

  it.scopedLive("the in-process sequence is the ChaosServer's for the same seed (one fault engine)", () =>
    Effect.gen(function*() {
      const scenario: Scenario.Scenario = { seed: 7, default: mix }
      const server = yield* ChaosServer.make({ scenario })
      for (let i = 0; i < 40; i++) yield* postJson(`${server.openAiBaseUrl}/chat/completions`, chatBody())
      const overHttp = (yield* server.stats).log.map((entry) => entry.fault)
      const chaos = yield* ChaosProvider.make({ scenario })
      yield* drive(chaos, 40)
      expect(yield* faultsOf(chaos)).toEqual(overHttp)
      expect(new Set(overHttp).size).toBe(4)
    }))

  it.effect("a script is served in order, then the default answers", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({
        scenario: { default: { script: [{ kind: "overloaded" }, { kind: "http_error", status: 502 }] } }
      })
      const tags: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const result = yield* Effect.either(chaos.generate(request()))
        tags.push(result._tag === "Right" ? "ok" : result.left._tag)
      }
      expect(tags).toEqual(["Overloaded", "ServerError", "ok"])
    }))

  it.effect("the concurrency cap answers 529 and frees slots when calls finish or are interrupted", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({
        scenario: { default: { concurrency: 1, script: [{ kind: "hang_before_headers" }] } }
      })
      const hung = yield* Effect.fork(chaos.generate(request()))
      yield* TestClock.adjust(0)
      expect((yield* chaos.stats).inFlight).toBe(1)
      const rejected = yield* Effect.flip(chaos.generate(request()))
      expect(rejected._tag).toBe("Overloaded")
      expect(rejected.status).toBe(529)
      yield* Fiber.interrupt(hung)
      expect((yield* chaos.stats).inFlight).toBe(0)
      // A stream holds its slot until it is consumed to the end.
      const stream = yield* Effect.fork(Stream.runDrain(chaos.stream(request())))
      yield* Fiber.join(stream)
      expect((yield* chaos.stats).inFlight).toBe(0)
      // A JSON answer frees its slot as soon as it is delivered.
      for (let i = 0; i < 3; i++) expect((yield* chaos.generate(request())).finishReason).toBe("stop")
      expect((yield* chaos.stats).inFlight).toBe(0)
    }))

  it.effect("setScenario validates; a bad scenario is a typed ScenarioError naming the path", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(ChaosProvider.make({ scenario: { default: { script: [{ kind: "rate_limt" }] } } as unknown as Scenario.Scenario }))
      if (bad._tag !== "ScenarioError") return expect.unreachable(bad.message)
      expect(bad.issues[0]?.path).toBe("default.script[0].kind")
      expect(bad.message).toContain("ChaosProvider options.scenario")
      const chaos = yield* ChaosProvider.make()
      const rejected = yield* Effect.flip(chaos.setScenario({ default: { mix: [{ fault: { kind: "ok" }, rate: 1.5 }] } }))
      expect(rejected.issues.map((i) => i.path)).toEqual(["default.mix[0].rate"])
      yield* chaos.setScenario({ default: { script: [{ kind: "billing" }] } })
      expect((yield* Effect.flip(chaos.generate(request())))._tag).toBe("QuotaExhausted")
    }))
})

describe("ChaosProvider — layers and sharing", () => {
  it.effect("layer provides Provider (the chaos provider) and ChaosProvider (its handle)", () =>
    Effect.gen(function*() {
      const provider = yield* Provider
      const error = yield* Effect.flip(provider.generate(request("claude-haiku-4-5")))
      expect(error._tag).toBe("Overloaded")
      const handle = yield* ChaosProvider.ChaosProvider
      expect((yield* handle.stats).byFault).toEqual({ overloaded: 1 })
    }).pipe(Effect.provide(ChaosProvider.layer({ api: "anthropic", scenario: { default: { script: [{ kind: "overloaded" }] } } }))))

  it.effect("one engine serves both wire formats through httpClient, routed by api as on the server", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosProvider.make({
        scenario: {
          routes: [
            { name: "claude", api: "anthropic", script: [{ kind: "overloaded" }] },
            { name: "gpt", api: "openai", content: { kind: "text", text: "from gpt" } }
          ]
        }
      })
      const anthropic = yield* Anthropic.make({ apiKey: Redacted.make("k"), baseUrl: ChaosProvider.anthropicBaseUrl }).pipe(
        Effect.provideService(HttpClient.HttpClient, chaos.httpClient)
      )
      const openai = yield* OpenAi.make({ apiKey: Redacted.make("k"), baseUrl: ChaosProvider.openAiBaseUrl, name: "gpt-route" }).pipe(
        Effect.provideService(HttpClient.HttpClient, chaos.httpClient)
      )
      expect((yield* Effect.flip(anthropic.generate(request("claude-haiku-4-5"))))._tag).toBe("Overloaded")
      expect((yield* openai.generate(request())).text).toBe("from gpt")
      expect((yield* chaos.stats).byRoute).toEqual({ claude: 1, gpt: 1 })
    }))
})

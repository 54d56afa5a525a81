/**
 * One chain across wire formats over real HTTP — OpenAI Responses primary, Gemini secondary, Bedrock
 * Converse tertiary (SigV4-signed) — against the ChaosServer, routes matched by model. Each format's
 * failure is classified from its own wire (Responses 503, Gemini per-day RESOURCE_EXHAUSTED, Gemini
 * RetryInfo, an in-stream error) and the chain acts on the tag. Time is TestClock, shared by the server
 * and the chain.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as Bedrock from "../../src/providers/Bedrock.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { awaitSleepUntil, settle } from "../testing/helpers.js"

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number.pipe(Schema.positive()) })
const paris = { city: "Paris", population: 2_100_000 }
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Largest city in France, as JSON." }], maxTokens: 300 }
const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)

const HOUR = 3_600_000
const route = (name: string, api: Scenario.Api, extra: Partial<Scenario.Route> = {}): Scenario.Route => ({
  name,
  api,
  model: `${name}-model`,
  content: { kind: "json", value: paris },
  ...extra
})

const chainOf = (server: ChaosServer.ChaosServerHandle, options: Partial<Fallback.FallbackOptions> = {}) =>
  Effect.gen(function*() {
    const policy: Policy.PolicyOptions = { retry: { jitter: "none", base: "100 millis", maxAttempts: 2 } }
    const responses = yield* OpenAiResponses.make({ apiKey: Redacted.make("sk-cross-format"), baseUrl: server.openAiBaseUrl, name: "responses" })
    const gemini = yield* Gemini.make({ apiKey: Redacted.make("gemini-cross-format-key"), baseUrl: `${server.url}/v1beta` })
    const bedrock = yield* Bedrock.make({
      region: "eu-west-1",
      baseUrl: server.url,
      credentials: { accessKeyId: "AKIDCROSSFORMAT", secretAccessKey: Redacted.make("aws-secret-cross-format") }
    })
    return yield* Fallback.make({
      routes: [
        { name: "primary", provider: responses, model: "primary-model", policy },
        { name: "secondary", provider: gemini, model: "secondary-model", policy },
        { name: "tertiary", provider: bedrock, model: "tertiary-model", policy }
      ],
      ...options
    })
  })

describe("a chain across formats over HTTP (Responses → Gemini → Bedrock)", () => {
  it.scoped("primary down (503), Gemini's per-day quota spent → Bedrock answers; no waiting, history of all three", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [
            route("primary", "responses", { outage: { fromMs: 0, toMs: HOUR } }),
            route("secondary", "gemini", { script: [{ kind: "insufficient_quota" }] }),
            route("tertiary", "bedrock")
          ]
        }
      })
      const chain = yield* chainOf(server)
      const result = yield* settle(yield* Effect.fork(chain.generateObject(Answer, request)))
      expect(result.value).toEqual(paris)
      expect(result.route).toBe("tertiary")
      expect(result.degraded).toBe(true)
      // Overloaded reroutes at once; a spent daily quota is never retried.
      expect(result.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([
        ["primary", "Overloaded", 503],
        ["secondary", "QuotaExhausted", 429],
        ["tertiary", "success", undefined]
      ])
      expect(result.attempts[0]!.requestId).toMatch(/^req_/)
      expect(result.attempts[2]!.requestId).toMatch(/^[0-9a-f-]{36}$/)
      expect(result.response.provider).toBe("bedrock")
      expect(yield* SubscriptionRef.get(yield* DegradedMode.DegradedMode)).toMatchObject({ degraded: true, route: "tertiary" })
      expect((yield* server.stats).log.map((entry) => [entry.api, entry.route, entry.at])).toEqual([
        ["responses", "primary", 0],
        ["gemini", "secondary", 0],
        ["bedrock", "tertiary", 0]
      ])
    }).pipe(Effect.provide(Env)))

  it.scoped("Gemini's RetryInfo (2 s) is honoured to the millisecond on the TestClock, then Gemini answers", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [
            route("primary", "responses", { outage: { fromMs: 0, toMs: HOUR } }),
            route("secondary", "gemini", { script: [{ kind: "rate_limit", retryAfterSeconds: 2 }] }),
            route("tertiary", "bedrock")
          ]
        }
      })
      const chain = yield* chainOf(server)
      const fiber = yield* Effect.fork(chain.generateObject(Answer, request))
      yield* awaitSleepUntil(2_000)
      yield* TestClock.adjust("2 seconds")
      const result = yield* settle(fiber)
      expect(result.route).toBe("secondary")
      expect(result.attempts.map((a) => [a.route, a.outcome, a.status, a.delayMs])).toEqual([
        ["primary", "Overloaded", 503, 0],
        ["secondary", "RateLimited", 429, 0],
        ["secondary", "success", undefined, 2_000]
      ])
      expect((yield* server.stats).log.map((entry) => [entry.route, entry.at])).toEqual([["primary", 0], ["secondary", 0], ["secondary", 2_000]])
    }).pipe(Effect.provide(Env)))

  it.scoped("streamed: the primary's stream fails mid-answer (in-stream error) → restarted on Gemini, whose stream completes", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [
            route("primary", "responses", { script: [{ kind: "stream_error", afterDeltas: 2, error: "overloaded" }] }),
            route("secondary", "gemini"),
            route("tertiary", "bedrock")
          ]
        }
      })
      // Partial output already reached the consumer: re-running on the next route is opt-in.
      const chain = yield* chainOf(server, { onPartialOutputFailure: "restart" })
      const events = yield* settle(yield* Effect.fork(Stream.runCollect(chain.streamObject(Answer, request))))
      const tags = [...events].map((event) => event._tag)
      expect(tags).toContain("Restarted")
      const done = [...events].at(-1)
      expect(done?._tag === "Completed" ? [done.result.route, done.result.value] : undefined).toEqual(["secondary", paris])
      expect(done?._tag === "Completed" ? done.result.attempts.map((a) => [a.route, a.outcome]) : undefined).toEqual([
        ["primary", "StreamInterrupted"],
        ["secondary", "success"]
      ])
    }).pipe(Effect.provide(Env)))
})

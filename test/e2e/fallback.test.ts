/**
 * The fallback chain over real HTTP: the real adapters (OpenAI Chat Completions and Anthropic Messages
 * wire formats) on the undici transport, against the ChaosServer, with faults scripted per route
 * (matched by model). Time is TestClock: the server and the chain share it, so "waits 2 s on the
 * primary" and "moves on without sleeping" are exact statements about the clock, not wall-clock sleeps.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { awaitSleepUntil, routesFailed, settle } from "../testing/helpers.js"

type Api = "openai" | "anthropic"

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number.pipe(Schema.positive()) })
const paris = { city: "Paris", population: 2_100_000 }
const offContract = { city: "Paris", population: "lots" }
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Largest city in France, as JSON." }], maxTokens: 200 }

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)

/** A scenario route answering `paris` as JSON unless its script says otherwise. */
const chaosRoute = (name: string, api: Api, extra: Partial<Scenario.Route> = {}): Scenario.Route => ({
  name,
  api,
  model: `${name}-model`,
  content: { kind: "json", value: paris },
  ...extra
})

/** A chain route to the server, over the given wire format. */
const chainRoute = (server: ChaosServer.ChaosServerHandle, name: string, api: Api, policy: Policy.PolicyOptions = {}) =>
  Effect.map(
    api === "openai"
      ? OpenAi.make({ apiKey: Redacted.make("sk-e2e-fallback"), baseUrl: server.openAiBaseUrl })
      : Anthropic.make({ apiKey: Redacted.make("sk-ant-e2e-fallback"), baseUrl: server.anthropicBaseUrl }),
    (provider): Fallback.Route => ({
      name,
      provider,
      model: `${name}-model`,
      policy: { retry: { jitter: "none", base: "100 millis" }, ...policy }
    })
  )

const servedBy = (server: ChaosServer.ChaosServerHandle) =>
  Effect.map(server.stats, (stats) => stats.log.map((entry) => [entry.route, entry.at, entry.status] as const))

describe("Fallback over HTTP (ChaosServer)", () => {
  it.scoped("primary 529 → secondary (Anthropic wire) answers valid JSON → the secondary's value, degraded, 2 attempts", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: { routes: [chaosRoute("primary", "openai", { script: [{ kind: "overloaded" }] }), chaosRoute("secondary", "anthropic")] }
      })
      const chain = yield* Fallback.make({
        routes: [yield* chainRoute(server, "primary", "openai"), yield* chainRoute(server, "secondary", "anthropic")]
      })
      const result = yield* settle(yield* Effect.fork(chain.generateObject(Answer, request)))
      expect(result.value).toEqual(paris)
      expect(result.route).toBe("secondary")
      expect(result.degraded).toBe(true)
      expect(result.attempts).toHaveLength(2)
      expect(result.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([
        ["primary", "Overloaded", 529],
        ["secondary", "success", undefined]
      ])
      for (const attempt of result.attempts) expect(attempt.requestId).toMatch(/^req_/)
      expect(result.attempts[1]!.usage?.outputTokens).toBeGreaterThan(0)
      expect(result.response.provider).toBe("anthropic")
      expect(yield* SubscriptionRef.get(yield* DegradedMode.DegradedMode)).toMatchObject({ degraded: true, route: "secondary" })
      expect(yield* servedBy(server)).toEqual([["primary", 0, 529], ["secondary", 0, 200]])
    }).pipe(Effect.provide(Env)))

  describe("primary down, secondary answers 200 with schema-violating JSON", () => {
    const scenario = (tertiary: ReadonlyArray<Scenario.Route>): Scenario.Scenario => ({
      routes: [
        chaosRoute("primary", "openai", { outage: { fromMs: 0, toMs: 3_600_000 } }),
        chaosRoute("secondary", "anthropic", { script: [{ kind: "schema_violation", value: offContract }] }),
        ...tertiary
      ]
    })

    it.scoped("→ InvalidOutput → the tertiary answers valid JSON → accepted", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({ scenario: scenario([chaosRoute("tertiary", "openai")]) })
        const chain = yield* Fallback.make({
          routes: [
            yield* chainRoute(server, "primary", "openai"),
            yield* chainRoute(server, "secondary", "anthropic"),
            yield* chainRoute(server, "tertiary", "openai")
          ]
        })
        const result = yield* settle(yield* Effect.fork(chain.generateObject(Answer, request)))
        expect(result.value).toEqual(paris)
        expect(result.route).toBe("tertiary")
        expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([
          ["primary", "Overloaded"],
          ["secondary", "InvalidOutput"],
          ["tertiary", "success"]
        ])
        // The rejected answer cost tokens: its usage is recorded and counted.
        expect(result.attempts[1]!.usage?.outputTokens).toBeGreaterThan(0)
        expect(result.usage.totalTokens).toBe(result.attempts[1]!.usage!.totalTokens + result.attempts[2]!.usage!.totalTokens)
      }).pipe(Effect.provide(Env)))

    it.scoped("with no working tertiary → AllRoutesFailed listing all three outcomes, never the invalid value", () =>
      Effect.gen(function*() {
        // The tertiary's model is not deployed: 404.
        const server = yield* ChaosServer.make({
          scenario: scenario([chaosRoute("tertiary", "openai", { script: [{ kind: "http_error", status: 404 }] })])
        })
        const chain = yield* Fallback.make({
          routes: [
            yield* chainRoute(server, "primary", "openai"),
            yield* chainRoute(server, "secondary", "anthropic"),
            yield* chainRoute(server, "tertiary", "openai")
          ]
        })
        const error = yield* settle(yield* Effect.fork(routesFailed(chain.generateObject(Answer, request))))
        expect(error._tag).toBe("AllRoutesFailed")
        expect(error.reason).toBe("exhausted")
        expect(error.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([
          ["primary", "Overloaded", 503],
          ["secondary", "InvalidOutput", 200],
          ["tertiary", "NotFound", 404]
        ])
        expect(JSON.stringify(error)).not.toContain(JSON.stringify(offContract))
        expect(JSON.stringify(error)).not.toContain("lots\"}")
      }).pipe(Effect.provide(Env)))

    it.scoped("with no tertiary at all → AllRoutesFailed ending on the InvalidOutput, without the rejected value", () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({ scenario: scenario([]) })
        const chain = yield* Fallback.make({
          routes: [yield* chainRoute(server, "primary", "openai"), yield* chainRoute(server, "secondary", "anthropic")]
        })
        const error = yield* settle(yield* Effect.fork(routesFailed(chain.generateObject(Answer, request))))
        expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "Overloaded"], ["secondary", "InvalidOutput"]])
        const last = error.lastError
        expect(last?._tag === "InvalidOutput" && [last.reason, last.output]).toEqual(["schema", undefined])
        expect(JSON.stringify(error)).not.toContain(JSON.stringify(offContract))
      }).pipe(Effect.provide(Env)))
  })

  it.scoped("400 on the primary → the chain stops; no other route is called", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [chaosRoute("primary", "anthropic", { script: [{ kind: "http_error", status: 400 }] }), chaosRoute("secondary", "openai")]
        }
      })
      const chain = yield* Fallback.make({
        routes: [yield* chainRoute(server, "primary", "anthropic"), yield* chainRoute(server, "secondary", "openai")]
      })
      const error = yield* settle(yield* Effect.fork(routesFailed(chain.generateObject(Answer, request))))
      expect(error.reason).toBe("stopped")
      expect(error.lastError?._tag).toBe("BadRequest")
      expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "BadRequest"]])
      expect((yield* server.stats).byRoute).toEqual({ primary: 1 })
    }).pipe(Effect.provide(Env)))

  for (const api of ["openai", "anthropic"] as const) {
    it.scoped(`429 with retry-after 2 s inside a 10 s deadline → waits on the primary (${api})`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: {
            routes: [
              chaosRoute("primary", api, { script: [{ kind: "rate_limit", retryAfterSeconds: 2 }] }),
              chaosRoute("secondary", api === "openai" ? "anthropic" : "openai")
            ]
          }
        })
        const chain = yield* Fallback.make({
          routes: [
            yield* chainRoute(server, "primary", api),
            yield* chainRoute(server, "secondary", api === "openai" ? "anthropic" : "openai")
          ],
          deadline: "10 seconds"
        })
        const fiber = yield* Effect.fork(chain.generateObject(Answer, request))
        yield* awaitSleepUntil(2_000)
        expect(yield* servedBy(server)).toEqual([["primary", 0, 429]])
        yield* TestClock.adjust("2 seconds")
        const result = yield* settle(fiber)
        expect(result.route).toBe("primary")
        expect(result.degraded).toBe(false)
        expect(result.attempts.map((a) => [a.route, a.attempt, a.outcome, a.delayMs])).toEqual([
          ["primary", 1, "RateLimited", 0],
          ["primary", 2, "success", 2000]
        ])
        expect(result.durationMs).toBe(2000)
        expect(yield* servedBy(server)).toEqual([["primary", 0, 429], ["primary", 2000, 200]])
      }).pipe(Effect.provide(Env)))

    it.scoped(`429 with retry-after 120 s → moves on without sleeping (${api})`, () =>
      Effect.gen(function*() {
        const other: Api = api === "openai" ? "anthropic" : "openai"
        const server = yield* ChaosServer.make({
          scenario: {
            routes: [chaosRoute("primary", api, { script: [{ kind: "rate_limit", retryAfterSeconds: 120 }] }), chaosRoute("secondary", other)]
          }
        })
        const chain = yield* Fallback.make({
          routes: [yield* chainRoute(server, "primary", api), yield* chainRoute(server, "secondary", other)],
          deadline: "10 seconds"
        })
        const result = yield* settle(yield* Effect.fork(chain.generateObject(Answer, request)))
        expect(result.route).toBe("secondary")
        expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "RateLimited"], ["secondary", "success"]])
        expect(result.durationMs).toBe(0)
        expect(yield* Clock.currentTimeMillis).toBe(0)
        expect(yield* servedBy(server)).toEqual([["primary", 0, 429], ["secondary", 0, 200]])
      }).pipe(Effect.provide(Env)))

    it.scoped(`repair: the first answer is invalid, the repaired answer valid → accepted with the repair recorded (${api})`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: {
            routes: [
              chaosRoute("primary", api, { script: [{ kind: "schema_violation", value: offContract }] }),
              chaosRoute("secondary", api)
            ]
          }
        })
        const chain = yield* Fallback.make({
          routes: [yield* chainRoute(server, "primary", api), yield* chainRoute(server, "secondary", api)],
          repairAttempts: 1
        })
        const result = yield* settle(yield* Effect.fork(chain.generateObject(Answer, request)))
        expect(result.value).toEqual(paris)
        expect(result.route).toBe("primary")
        expect(result.repaired).toBe(true)
        expect(result.degraded).toBe(true)
        expect(result.attempts.map((a) => [a.route, a.attempt, a.outcome])).toEqual([
          ["primary", 1, "InvalidOutput"],
          ["primary", 2, "success"]
        ])
        expect(result.attempts[1]!.message).toBe("repair 1/1")
        expect((yield* server.stats).byRoute).toEqual({ primary: 2 })
      }).pipe(Effect.provide(Env)))
  }
})

describe("Fallback.stream over HTTP (ChaosServer)", () => {
  const collect = <E>(stream: Stream.Stream<Fallback.ChainStreamEvent, E>) =>
    Effect.map(Stream.runCollect(Stream.either(stream)), (chunk) => {
      const all = Chunk.toReadonlyArray(chunk)
      return {
        events: all.flatMap((e) => Either.isRight(e) ? [e.right] : []),
        failure: all.flatMap((e) => Either.isLeft(e) ? [e.left] : [])[0]
      }
    })
  const text = (events: ReadonlyArray<Fallback.ChainStreamEvent>) => events.map((e) => e._tag === "TextDelta" ? e.text : "").join("")
  const streamScenario = (primaryFault: Scenario.Fault): Scenario.Scenario => ({
    routes: [
      { name: "primary", api: "openai", model: "primary-model", content: { kind: "text", text: "The primary model speaks at length." }, script: [primaryFault] },
      { name: "secondary", api: "anthropic", model: "secondary-model", content: { kind: "text", text: "The secondary model answers." } }
    ]
  })
  const streamChain = (server: ChaosServer.ChaosServerHandle, mode: Fallback.PartialOutputFailure) =>
    Effect.flatMap(
      Effect.all([chainRoute(server, "primary", "openai"), chainRoute(server, "secondary", "anthropic")]),
      (routes) => Fallback.make({ routes, onPartialOutputFailure: mode })
    )

  it.scoped("a 529 before the first token falls over to the Anthropic route transparently", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: streamScenario({ kind: "overloaded" }) })
      const chain = yield* streamChain(server, "fail")
      const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
      expect(failure).toBeUndefined()
      expect(text(events)).toBe("The secondary model answers.")
      const last = events[events.length - 1]
      expect(last?._tag === "Completed" && [last.result.route, last.result.degraded]).toEqual(["secondary", true])
      expect(last?._tag === "Completed" && last.result.attempts.map((a) => a.outcome)).toEqual(["Overloaded", "success"])
    }).pipe(Effect.provide(Env)))

  it.scoped("a connection broken after partial output fails with the partial text (no splicing)", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: streamScenario({ kind: "stream_cut", afterDeltas: 2, abort: true }) })
      const chain = yield* streamChain(server, "fail")
      const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
      const partial = text(events)
      expect(partial.length).toBeGreaterThan(0)
      expect("The primary model speaks at length.".startsWith(partial)).toBe(true)
      expect(failure).toMatchObject({ _tag: "AllRoutesFailed", reason: "stopped" })
      const last = failure?.lastError
      expect(last?._tag).toBe("StreamInterrupted")
      expect(last?._tag === "StreamInterrupted" && [last.receivedContent, last.partialText]).toEqual([true, partial])
      expect((yield* server.stats).byRoute).toEqual({ primary: 1 })
    }).pipe(Effect.provide(Env)))

  it.scoped("restart mode: re-runs on the Anthropic route and signals the restart before its output", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: streamScenario({ kind: "stream_cut", afterDeltas: 2 }) })
      const chain = yield* streamChain(server, "restart")
      const { events, failure } = yield* settle(yield* Effect.fork(collect(chain.stream(request))))
      expect(failure).toBeUndefined()
      const restartAt = events.findIndex((e) => e._tag === "Restarted")
      expect(restartAt).toBeGreaterThan(0)
      const restarted = events[restartAt]
      expect(restarted?._tag === "Restarted" && [restarted.from, restarted.to, restarted.discardedText]).toEqual([
        "primary",
        "secondary",
        text(events.slice(0, restartAt))
      ])
      expect(text(events.slice(restartAt))).toBe("The secondary model answers.")
      const last = events[events.length - 1]
      expect(last?._tag === "Completed" && [last.result.value, last.result.degraded]).toEqual(["The secondary model answers.", true])
    }).pipe(Effect.provide(Env)))
})

/**
 * The policies over real HTTP: the real adapters (OpenAI and Anthropic wire formats) through
 * `@effect/platform` + undici against the ChaosServer. Outcomes, attempt counts and what the server
 * saw — not exact timelines (those are the TestClock tests'); the durations here are small and real.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type { AttemptRecord } from "../../src/Errors.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest, ProviderShape, StreamEvent } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"

type Api = "openai" | "anthropic"

const Env = Layer.merge(Transport.layer(), Layer.fresh(Policy.layerState))

const requestFor = (api: Api): GenerateRequest => ({
  model: api === "openai" ? "gpt-chaos" : "claude-chaos",
  messages: [{ role: "user", content: "hello there" }],
  maxTokens: 64
})

/** A chaos server serving `faults` in order (then `ok`), and the adapter of `api` pointed at it. */
const serve = (api: Api, faults: ReadonlyArray<Scenario.Fault>, extra: Partial<Scenario.DefaultRoute> = {}) =>
  Effect.gen(function*() {
    const server = yield* ChaosServer.make({ scenario: { default: { script: faults, ...extra } } })
    const provider: ProviderShape = api === "openai"
      ? yield* OpenAi.make({ apiKey: Redacted.make("sk-chaos-test-key"), baseUrl: server.openAiBaseUrl })
      : yield* Anthropic.make({ apiKey: Redacted.make("sk-ant-chaos-test"), baseUrl: server.anthropicBaseUrl })
    return { server, provider }
  })

/** `llm_timeouts_total{route, phase}` from the metric registry. */
const timeoutsOf = (route: string, phase: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const pair = pairs.find((p) =>
      p.metricKey.name === "llm_timeouts_total" &&
      p.metricKey.tags.some((t) => t.key === "route" && t.value === route) &&
      p.metricKey.tags.some((t) => t.key === "phase" && t.value === phase)
    )
    return pair === undefined ? 0 : (pair.metricState as unknown as { readonly count: number }).count
  })

let routes = 0
/** A fresh route label per test (metrics and breakers are keyed by it). */
const routeName = (label: string) => `e2e-${label}-${++routes}`

const recorder = () => {
  const records: Array<AttemptRecord> = []
  return { records, observe: (record: AttemptRecord) => Effect.sync(() => void records.push(record)) }
}

const textOf = (events: Chunk.Chunk<StreamEvent>) =>
  Chunk.toReadonlyArray(events).flatMap((e) => (e._tag === "TextDelta" ? [e.text] : [])).join("")

/** Waits (real time, bounded) until the server holds no request: the client really closed the socket. */
const settled = (server: ChaosServer.ChaosServerHandle) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      if ((yield* server.stats).inFlight === 0) return true
      yield* Effect.sleep("10 millis")
    }
    return false
  })

for (const api of ["openai", "anthropic"] as const) {
  describe(`Policies over real HTTP (${api})`, () => {
    it.live("a 429 with retry-after is waited out, then the call succeeds on the same route", () =>
      Effect.gen(function*() {
        const { provider, server } = yield* serve(api, [{ kind: "rate_limit", retryAfterMs: 300 }])
        const { records, observe } = recorder()
        const policy = Policy.make({ retry: { jitter: "none", base: "10 millis" }, observe })
        const wrapped = yield* Policy.apply(policy, provider, routeName("429"))
        const startedAt = yield* Clock.currentTimeMillis
        const response = yield* wrapped.generate(requestFor(api))
        const elapsed = (yield* Clock.currentTimeMillis) - startedAt
        expect(response.text.length).toBeGreaterThan(0)
        expect(records.map((r) => [r.attempt, r.outcome])).toEqual([[1, "RateLimited"], [2, "success"]])
        expect(records[1]!.delayMs).toBe(300) // max(backoff 10 ms, Retry-After 300 ms)
        expect(elapsed).toBeGreaterThanOrEqual(300)
        expect((yield* server.stats).total).toBe(2)
      }).pipe(Effect.scoped, Effect.provide(Env)))

    it.live("a 529 surfaces for reroute when another route exists (one call), one short retry when none does", () =>
      Effect.gen(function*() {
        const { provider, server } = yield* serve(api, [{ kind: "overloaded" }, { kind: "overloaded" }, { kind: "overloaded" }])
        const withAlternative = yield* Policy.apply(
          Policy.make({ retry: { hasAlternative: true, maxAttempts: 3 } }),
          provider,
          routeName("529-alt")
        )
        const error = yield* Effect.flip(withAlternative.generate(requestFor(api)))
        expect(error._tag).toBe("Overloaded")
        expect((yield* server.stats).total).toBe(1)

        const alone = yield* Policy.apply(Policy.make({ retry: { maxAttempts: 3, base: "10 millis" } }), provider, routeName("529"))
        const again = yield* Effect.flip(alone.generate(requestFor(api)))
        expect([again._tag, again.attempt]).toEqual(["Overloaded", 2])
        expect((yield* server.stats).total).toBe(3)
      }).pipe(Effect.scoped, Effect.provide(Env)))

    it.live("a 400 is attempted once", () =>
      Effect.gen(function*() {
        const { provider, server } = yield* serve(api, [{ kind: "http_error", status: 400 }])
        const wrapped = yield* Policy.apply(Policy.make({ retry: { maxAttempts: 5 } }), provider, routeName("400"))
        const error = yield* Effect.flip(wrapped.generate(requestFor(api)))
        expect(error._tag).toBe("BadRequest")
        expect((yield* server.stats).total).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(Env)))

    it.live("the breaker opens after consecutive 500s and then fails fast without a request", () =>
      Effect.gen(function*() {
        const fivehundred: Scenario.Fault = { kind: "http_error", status: 500 }
        const { provider, server } = yield* serve(api, [fivehundred, fivehundred, fivehundred])
        const wrapped = yield* Policy.apply(
          Policy.make({ retry: false, breaker: { consecutiveFailures: 3, openDuration: "1 minute" } }),
          provider,
          routeName("breaker")
        )
        const outcomes: Array<string> = []
        for (let i = 0; i < 5; i++) outcomes.push((yield* Effect.flip(wrapped.generate(requestFor(api))))._tag)
        expect(outcomes).toEqual(["ServerError", "ServerError", "ServerError", "CircuitOpen", "CircuitOpen"])
        expect((yield* server.stats).total).toBe(3)
      }).pipe(Effect.scoped, Effect.provide(Env)))

    it.live("a slow first token fires the first-token timeout (after the headers and metadata arrived) and closes the socket", () =>
      Effect.gen(function*() {
        const { provider, server } = yield* serve(api, [{ kind: "slow_first_token", delayMs: 5_000 }], { concurrency: 4 })
        const route = routeName("ttft")
        const wrapped = yield* Policy.apply(Policy.make({ retry: false, timeouts: { firstToken: "300 millis" } }), provider, route)
        const error = yield* Effect.flip(Stream.runDrain(wrapped.stream(requestFor(api))))
        expect(error._tag === "Timeout" && error.phase).toBe("first-token")
        expect(yield* settled(server)).toBe(true)
        expect(yield* timeoutsOf(route, "first-token")).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(Env)))

    it.live("a stream that stalls mid-way fires the idle timeout; after partial output it surfaces as StreamInterrupted", () =>
      Effect.gen(function*() {
        const { provider, server } = yield* serve(api, [{ kind: "stall_mid_stream", afterDeltas: 1 }], { concurrency: 4 })
        const wrapped = yield* Policy.apply(Policy.make({ timeouts: { idle: "300 millis" } }), provider, routeName("idle"))
        const error = yield* Effect.flip(Stream.runDrain(wrapped.stream(requestFor(api))))
        expect(error._tag).toBe("StreamInterrupted")
        if (error._tag === "StreamInterrupted") {
          expect(error.receivedContent).toBe(true)
          expect((error.partialText ?? "").length).toBeGreaterThan(0)
          expect(error.message).toContain("no stream event within 300 ms")
        }
        // Not retried: the consumer had seen text.
        expect((yield* server.stats).total).toBe(1)
        expect(yield* settled(server)).toBe(true)
      }).pipe(Effect.scoped, Effect.provide(Env)))

    it.live("hedging: a slow first token is hedged, the second request wins, the first one's socket is closed", () =>
      Effect.gen(function*() {
        const { provider, server } = yield* serve(api, [{ kind: "slow_first_token", delayMs: 10_000 }], { concurrency: 4 })
        const wrapped = yield* Policy.apply(Policy.make({ hedge: { delay: "200 millis" } }), provider, routeName("hedge"))
        const events = yield* Stream.runCollect(wrapped.stream(requestFor(api)))
        expect(textOf(events).length).toBeGreaterThan(0)
        expect(Chunk.toReadonlyArray(events).at(-1)?._tag).toBe("Finish")
        expect((yield* server.stats).total).toBe(2)
        expect(yield* settled(server)).toBe(true)

        const { provider: slow, server: slowServer } = yield* serve(api, [{ kind: "slow_first_token", delayMs: 10_000 }], { concurrency: 4 })
        const hedged = yield* Policy.apply(Policy.make({ hedge: { delay: "200 millis" } }), slow, routeName("hedge-generate"))
        const response = yield* hedged.generate(requestFor(api))
        expect(response.text.length).toBeGreaterThan(0)
        expect((yield* slowServer.stats).total).toBe(2)
        expect(yield* settled(slowServer)).toBe(true)
      }).pipe(Effect.scoped, Effect.provide(Env)))
  })
}

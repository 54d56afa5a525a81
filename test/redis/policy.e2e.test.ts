/**
 * Two policy stacks — two "worker processes", each with its own `SharedState` layer on its own Redis
 * connections — calling the ChaosServer over real HTTP with the OpenAI adapter. The server enforces an
 * RPM limit of its own, so what it answers shows whether the workers shared one budget. Redis at
 * 127.0.0.1:6379 (skipped with the reason when it is down, failing when CI=true).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as CircuitBreaker from "../../src/CircuitBreaker.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest } from "../../src/Provider.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as SharedState from "../../src/redis/SharedState.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { cleanup, eventually, redisGate, redisUrl, uniquePrefix } from "./helpers.js"

const request: GenerateRequest = { model: "gpt-chaos", messages: [{ role: "user", content: "hello there" }], maxTokens: 64 }

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

/** A chaos server with `route`, and one OpenAI adapter pointed at it. */
const serve = (route: Scenario.DefaultRoute) =>
  Effect.gen(function*() {
    const server = yield* ChaosServer.make({ scenario: { default: route } })
    const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-chaos-test-key"), baseUrl: server.openAiBaseUrl })
    return { server, provider }
  })

/** A worker's policy state, alive for the test's scope. */
const stateOf = (layer: Layer.Layer<Policy.PolicyState>) => Layer.build(layer)

const sharedState = (prefix: string, channel: string) =>
  stateOf(SharedState.layer({ url: redisUrl, rateLimiter: { prefix }, gossip: { channel } }))

/** Sends `n` calls at once through a policy-wrapped provider; the outcome tags. */
const burst = (stack: { readonly generate: (r: GenerateRequest) => Effect.Effect<unknown, { readonly _tag: string }> }, n: number) =>
  Effect.forEach(
    Array.from({ length: n }),
    () => Effect.match(stack.generate(request), { onFailure: (e) => e._tag, onSuccess: () => "success" }),
    { concurrency: "unbounded" }
  )

const count = (outcomes: ReadonlyArray<string>, tag: string) => outcomes.filter((o) => o === tag).length

const redisUp = await redisGate((name, fn) => describe("Policy over Redis", () => it(name, fn)))

describe.runIf(redisUp)("Policy with shared state, two workers, over real HTTP", () => {
  const policy = Policy.make({ retry: false, breaker: false, rateLimit: { requestsPerMinute: 6, maxWait: 0 } })

  it.scopedLive("two policy stacks share one Redis limiter: the server (RPM 6) answers 6 and never 429s", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("e2e")
      prefixes.push(prefix)
      const { provider, server } = yield* serve({ rpm: 6 })
      const workerA = yield* Policy.apply(policy, provider, "shared").pipe(Effect.provide(yield* sharedState(prefix, prefix)))
      const workerB = yield* Policy.apply(policy, provider, "shared").pipe(Effect.provide(yield* sharedState(prefix, prefix)))

      const outcomes = [...(yield* burst(workerA, 6)), ...(yield* burst(workerB, 6))]
      expect(count(outcomes, "success")).toBe(6)
      expect(count(outcomes, "RateLimited")).toBe(6) // refused on the client, before the wire
      const stats = yield* server.stats
      expect(stats.total).toBe(6)
      expect(stats.byStatus["429"] ?? 0).toBe(0)
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("control: with per-process limiters the same traffic reaches the server twice over and collects 429s", () =>
    Effect.gen(function*() {
      const { provider, server } = yield* serve({ rpm: 6 })
      const workerA = yield* Policy.apply(policy, provider, "shared").pipe(Effect.provide(yield* stateOf(Layer.fresh(Policy.layerState))))
      const workerB = yield* Policy.apply(policy, provider, "shared").pipe(Effect.provide(yield* stateOf(Layer.fresh(Policy.layerState))))
      const outcomes = [...(yield* burst(workerA, 6)), ...(yield* burst(workerB, 6))]
      expect(count(outcomes, "success")).toBe(6)
      const stats = yield* server.stats
      expect(stats.total).toBe(12)
      expect(stats.byStatus["429"]).toBe(6)
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("a breaker opened by worker A's failures stops worker B before it reaches the server", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("e2e")
      prefixes.push(prefix)
      const { provider, server } = yield* serve({ script: [{ kind: "http_error", status: 500 }] })
      const breaker = { consecutiveFailures: 1, openDuration: "30 seconds" } as const
      const breakerPolicy = Policy.make({ retry: false, breaker })
      const stateA = yield* sharedState(prefix, prefix)
      const stateB = yield* sharedState(prefix, prefix)
      const workerA = yield* Policy.apply(breakerPolicy, provider, "shared").pipe(Effect.provide(stateA))
      const workerB = yield* Policy.apply(breakerPolicy, provider, "shared").pipe(Effect.provide(stateB))
      // B's breaker for the route exists (as after B's first call), so the test can see when it opens.
      const inB = yield* Context.get(stateB, CircuitBreaker.CircuitBreakers).get("shared/gpt-chaos", breaker)

      expect((yield* Effect.flip(workerA.generate(request)))._tag).toBe("ServerError")
      yield* eventually(Effect.map(inB.state, (state) => state === "open"))
      const refused = yield* Effect.flip(workerB.generate(request))
      expect([refused._tag, refused.route]).toEqual(["CircuitOpen", "shared"])
      expect((yield* server.stats).total).toBe(1)
    }).pipe(Effect.provide(Transport.layer())))
})

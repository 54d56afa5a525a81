/**
 * Breaker gossip over a real Redis (127.0.0.1:6379; skipped with the reason when it is down, failing
 * when CI=true). Two `CircuitBreakers` registries, each decorated by its own gossip layer on its own
 * connections, stand for two worker processes; every test has its own channel. Waiting for pub/sub
 * delivery is a bounded poll on real time (`eventually`); nothing asserts a timing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CircuitBreaker from "../../src/CircuitBreaker.js"
import type { GenerateRequest } from "../../src/Provider.js"
import * as BreakerGossip from "../../src/redis/BreakerGossip.js"
import * as Mock from "../../src/testing/MockProvider.js"
import { eventually, listen, publishRaw, redisGate, redisUrl, uniquePrefix, unreachableUrl } from "./helpers.js"

const site: CircuitBreaker.Site = { provider: "mock", model: "m", route: "r", attempt: 1 }
const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const failing = () => Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500)) })
const tripOnFirstFailure: CircuitBreaker.CircuitBreakerOptions = { consecutiveFailures: 1, openDuration: "30 seconds" }

/** One "process": a breaker registry decorated with gossip on its own connections. */
const worker = (options: BreakerGossip.BreakerGossipLayerOptions) =>
  Effect.map(
    Layer.build(BreakerGossip.layer({ url: redisUrl, ...options }).pipe(Layer.provide(CircuitBreaker.layer))),
    (context) => Context.get(context, CircuitBreaker.CircuitBreakers)
  )

const stateOf = (registry: Context.Tag.Service<CircuitBreaker.CircuitBreakers>, key: string) =>
  Effect.flatMap(registry.lookup(key), (breaker) => (Option.isSome(breaker) ? breaker.value.state : Effect.succeed("none")))

const redisUp = await redisGate((name, fn) => describe("BreakerGossip", () => it(name, fn)))

describe.runIf(redisUp)("BreakerGossip", () => {
  it.scopedLive("a breaker that opens in one worker opens in the other: CircuitOpen without calling the provider", () =>
    Effect.gen(function*() {
      const channel = uniquePrefix("gossip")
      const heard = yield* listen(channel)
      const a = yield* worker({ channel, origin: "worker-a" })
      const b = yield* worker({ channel, origin: "worker-b" })
      const inA = yield* a.get("r/m", tripOnFirstFailure)
      const inB = yield* b.get("r/m", tripOnFirstFailure)

      yield* Effect.either(inA.execute(failing().generate(request), site))
      expect(yield* inA.state).toBe("open")
      yield* eventually(Effect.map(inB.state, (state) => state === "open"))

      const healthy = Mock.make()
      const rejected = yield* Effect.flip(inB.execute(healthy.generate(request), site))
      expect(rejected._tag).toBe("CircuitOpen")
      expect(healthy.calls.length).toBe(0)
      // Until the same moment (± delivery time), not for B's own open duration.
      const now = yield* Clock.currentTimeMillis
      const { openUntil } = yield* inB.stats
      expect(openUntil! - now).toBeGreaterThan(29_000)
      expect(openUntil! - now).toBeLessThanOrEqual(30_000)
      expect((yield* inB.history).map((e) => [e.to, e.reason])).toEqual([["open", "remote: 1 consecutive failures (from worker-a)"]])

      // No echo: B does not publish the open it was told about. B's next open of its own is published
      // after anything it published before, so once it is heard the channel holds all B ever said.
      const markerInB = yield* b.get("marker/m", tripOnFirstFailure)
      yield* Effect.either(markerInB.execute(failing().generate(request), site))
      yield* eventually(Effect.sync(() => heard.some((message) => message.includes("marker/m"))))
      const said = heard.map((message) => JSON.parse(message) as BreakerGossip.Message)
      expect(said.map((m) => [m.origin, m.key, m.reason])).toEqual([
        ["worker-a", "r/m", "1 consecutive failures"],
        ["worker-b", "marker/m", "1 consecutive failures"]
      ])
      expect(said[0]!.openForMs).toBe(30_000)
      expect((yield* inA.history).map((e) => e.to)).toEqual(["open"])
    }))

  it.scopedLive("a remote open reaches a breaker created later; own messages are ignored; a long open is capped", () =>
    Effect.gen(function*() {
      const channel = uniquePrefix("gossip")
      const a = yield* worker({ channel, origin: "worker-a" })
      const b = yield* worker({ channel, origin: "worker-b", maxOpenDuration: "10 seconds" })
      const marker = yield* b.get("marker/m")
      const message = (origin: string, key: string, openForMs: number) =>
        JSON.stringify({ origin, key, openUntil: Date.now() + openForMs, openForMs, reason: "test" })

      // In order on the channel: an open for a breaker B does not have yet, one claiming to come from
      // B itself, then one for the marker (B handles messages in order: once the marker is open, the
      // earlier ones were handled).
      yield* publishRaw(channel, [
        message("worker-a", "later/m", 3_600_000),
        message("worker-b", "own/m", 30_000),
        message("worker-a", "marker/m", 30_000)
      ])
      yield* eventually(Effect.map(marker.state, (state) => state === "open"))

      const later = yield* b.get("later/m", tripOnFirstFailure)
      expect(yield* later.state).toBe("open")
      const now = yield* Clock.currentTimeMillis
      expect((yield* later.stats).openUntil! - now).toBeLessThanOrEqual(10_000) // capped by maxOpenDuration
      expect(yield* (yield* b.get("own/m")).state).toBe("closed")
      // A published nothing and heard nothing of its own: it has no breakers.
      expect(yield* a.all).toEqual([])
    }))

  it.scopedLive("malformed messages on the channel are ignored, never a defect", () =>
    Effect.gen(function*() {
      const channel = uniquePrefix("gossip")
      const b = yield* worker({ channel, origin: "worker-b" })
      const victim = yield* b.get("victim/m")
      const marker = yield* b.get("marker/m")
      yield* publishRaw(channel, [
        "not json at all",
        "{\"key\": \"victim/m\"",
        JSON.stringify({ key: "victim/m" }),
        JSON.stringify({ origin: "x", key: "victim/m", openUntil: "soon", reason: "r" }),
        JSON.stringify({ origin: "x", key: "victim/m", openUntil: 1, openForMs: -5_000, reason: "r" }),
        JSON.stringify({ origin: "x", key: 42, openUntil: Date.now() + 30_000, reason: "r" }),
        JSON.stringify([1, 2, 3]),
        "null",
        JSON.stringify({ origin: "x", key: "marker/m", openUntil: Date.now() + 30_000, openForMs: 30_000, reason: "r" })
      ])
      yield* eventually(Effect.map(marker.state, (state) => state === "open"))
      expect(yield* victim.state).toBe("closed")
      expect(yield* stateOf(b, "42")).toBe("none")
      // The subscriber is still alive after all that.
      yield* publishRaw(channel, [JSON.stringify({ origin: "x", key: "victim/m", openUntil: 0, openForMs: 30_000, reason: "r" })])
      yield* eventually(Effect.map(victim.state, (state) => state === "open"))
    }))

  it.scopedLive("Redis unreachable: the layer builds and the breakers work locally", () =>
    Effect.gen(function*() {
      const registry = yield* worker({ url: unreachableUrl, connectTimeout: "200 millis", channel: uniquePrefix("gossip") })
      const breaker = yield* registry.get("r/m", tripOnFirstFailure)
      yield* Effect.either(breaker.execute(failing().generate(request), site)) // publishing fails: logged, not raised
      expect(yield* breaker.state).toBe("open")
      const rejected = yield* Effect.flip(breaker.execute(Mock.make().generate(request), site))
      expect(rejected._tag).toBe("CircuitOpen")
    }))
})

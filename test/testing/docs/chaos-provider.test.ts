import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { LlmClient } from "effect-llm-resilience"
import { ChaosProvider, Timeline } from "effect-llm-resilience/testing"

// The code under test: an app that talks to `LlmClient` (a fallback chain) and never to a provider.
const answer = (question: string) =>
  Effect.map(LlmClient.generate({ messages: [{ role: "user", content: question }], maxTokens: 200 }), (result) => ({
    text: result.value,
    route: result.route,
    degraded: result.degraded
  }))

describe("answer, against chaos in-process", () => {
  it.effect("the primary rate-limits, then is overloaded: the exact attempt timeline", () =>
    Effect.gen(function*() {
      const recorder = yield* Timeline.make
      const primary = yield* ChaosProvider.make({
        api: "anthropic",
        scenario: {
          default: {
            latency: { kind: "fixed", ms: 120 },
            script: [{ kind: "rate_limit", retryAfterMs: 1_500 }, { kind: "overloaded" }]
          }
        }
      })
      const fallback = yield* ChaosProvider.make({
        scenario: { default: { latency: { kind: "fixed", ms: 300 }, content: { kind: "text", text: "42" } } }
      })
      const client = LlmClient.layerWithState({
        routes: [
          { name: "primary", provider: recorder.wrap("primary", primary), model: "claude-sonnet-4-5" },
          { name: "fallback", provider: recorder.wrap("fallback", fallback), model: "gpt-4o-mini" }
        ]
      })

      const run = yield* Timeline.run(answer("What is six times seven?").pipe(Effect.provide(client)))

      expect(run.exit).toEqual(Exit.succeed({ text: "42", route: "fallback", degraded: true }))
      expect(Timeline.format(yield* recorder.entries)).toEqual([
        "0ms primary#1 RateLimited", // 120 ms of latency, then 429 with retry-after-ms: 1500
        "1620ms primary#2 Overloaded", // waited exactly the Retry-After; 529 means "go elsewhere"
        "1740ms fallback#1 success" // rerouted at once; answered after its 300 ms latency
      ])
      expect(run.elapsedMs).toBe(2_040) // virtual time: the test took a few milliseconds
    }))

  it.effect("a seeded mix is reproducible: same seed, same faults", () =>
    Effect.gen(function*() {
      const faults = (seed: number) =>
        Effect.gen(function*() {
          const chaos = yield* ChaosProvider.make({
            scenario: { seed, default: { mix: [{ fault: { kind: "overloaded" }, rate: 0.3 }] } }
          })
          for (let i = 0; i < 20; i++) {
            yield* Effect.either(chaos.generate({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], maxTokens: 10 }))
          }
          return (yield* chaos.stats).log.map((entry) => entry.fault)
        })
      expect(yield* faults(7)).toEqual(yield* faults(7))
      expect(yield* faults(7)).not.toEqual(yield* faults(8))
    }))
})

import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import { Provider } from "effect-llm-resilience"
import { MockProvider } from "effect-llm-resilience/testing"

// The code under test: your own pipeline. It uses whatever `Provider` is in context and, on a rate
// limit, waits what the provider asked for before trying once more.
const summarise = (text: string) =>
  Effect.gen(function*() {
    const llm = yield* Provider.Provider
    const call = llm.generate({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: `Summarise in one line: ${text}` }],
      maxTokens: 100
    })
    return yield* call.pipe(
      Effect.catchTag("RateLimited", (error) => Effect.zipRight(Effect.sleep(error.retryAfterMs ?? 1_000), call))
    )
  })

describe("summarise", () => {
  it.effect("waits exactly the provider's Retry-After, then answers", () =>
    Effect.gen(function*() {
      const mock = MockProvider.make({
        script: [MockProvider.fail(MockProvider.errors.rateLimited(2_000)), MockProvider.succeed("One line.")]
      })
      const fiber = yield* Effect.fork(summarise("a long incident report").pipe(Effect.provide(MockProvider.layer(mock))))
      yield* TestClock.adjust("1999 millis")
      expect(mock.calls).toHaveLength(1) // still waiting
      yield* TestClock.adjust("1 millis")
      const answer = yield* Fiber.join(fiber)
      expect(answer.text).toBe("One line.")
      expect(mock.calls.map((call) => call.at)).toEqual([0, 2_000])
    }))

  it.effect("does not retry a bad request: the typed error reaches the caller", () =>
    Effect.gen(function*() {
      const mock = MockProvider.make({ otherwise: MockProvider.fail(MockProvider.errors.badRequest()) })
      const error = yield* Effect.flip(summarise("x").pipe(Effect.provide(MockProvider.layer(mock))))
      expect(error._tag).toBe("BadRequest")
      expect(mock.calls).toHaveLength(1)
    }))
})

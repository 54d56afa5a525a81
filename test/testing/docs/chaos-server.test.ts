import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { fileURLToPath } from "node:url"
import { Errors, OpenAi, Provider, Transport } from "effect-llm-resilience"
import { ChaosServer, Scenario } from "effect-llm-resilience/testing"

const ask = Effect.flatMap(Provider.Provider, (llm) =>
  llm.generate({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Answer as JSON." }], maxTokens: 50 }))

// The real adapter over real sockets, pointed at the chaos server.
const openAiAt = (server: ChaosServer.ChaosServerHandle) =>
  OpenAi.layer({ apiKey: Redacted.make("sk-test"), baseUrl: server.openAiBaseUrl }).pipe(Layer.provide(Transport.layer()), Layer.orDie)

describe("the OpenAI adapter against the chaos server (real HTTP)", () => {
  it.scopedLive("a scripted 429 and 500 arrive as typed errors with the provider's request id", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          default: {
            script: [{ kind: "rate_limit", retryAfterSeconds: 2 }, { kind: "http_error", status: 500, shouldRetry: false }]
          }
        }
      })
      const first = yield* Effect.flip(ask.pipe(Effect.provide(openAiAt(server))))
      expect(first._tag).toBe("RateLimited")
      expect(Errors.retryAfterOf(first)).toBe(2_000)
      expect(first.requestId).toMatch(/^req_/)

      const second = yield* Effect.flip(ask.pipe(Effect.provide(openAiAt(server))))
      expect(second._tag).toBe("ServerError")
      expect(Errors.actionOf(second)).toBe("reroute") // x-should-retry: false beats the 500

      const third = yield* ask.pipe(Effect.provide(openAiAt(server)))
      expect(third.finishReason).toBe("stop")
      expect((yield* server.stats).byStatus).toEqual({ "429": 1, "500": 1, "200": 1 })
    }))

  it.scopedLive("a scenario file: validated on load, then served", () =>
    Effect.gen(function*() {
      const scenario = yield* Scenario.fromFile(fileURLToPath(new URL("flaky-openai.json", import.meta.url)))
      const server = yield* ChaosServer.make({ scenario })
      const outcomes: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const result = yield* Effect.either(ask.pipe(Effect.provide(openAiAt(server))))
        outcomes.push(result._tag === "Right" ? result.right.text : result.left._tag)
      }
      expect(outcomes).toEqual(["RateLimited", "ServerError", "{\"answer\":42}"])
      expect((yield* server.stats).byRoute).toEqual({ gpt: 3 })
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("a bad scenario file is a typed error naming the path and what was expected", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Scenario.fromJson(`{"default": {"script": [{"kind": "rate_limt"}]}}`, "my-scenario.json"))
      expect(error._tag).toBe("ScenarioError")
      expect(error.issues[0]?.path).toBe("default.script[0].kind")
      expect(error.message).toContain("Invalid scenario (my-scenario.json):")
      expect(error.message).toContain("actual \"rate_limt\"")
    }))
})

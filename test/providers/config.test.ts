import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import { Provider } from "../../src/Provider.js"
import * as Transport from "../../src/Transport.js"
import { json, wireServer } from "../utils/wireServer.js"

const fromEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("layerConfig", () => {
  it.live("OpenAI reads OPENAI_API_KEY / OPENAI_BASE_URL and sends the key only as the bearer header", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, { id: "c", model: "m", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] }))
      const provider = yield* Effect.provide(Provider, OpenAi.layerConfig.pipe(
        Layer.provide(fromEnv({ OPENAI_API_KEY: "sk-from-env-123456", OPENAI_BASE_URL: `${server.url}/v1` }))
      ))
      const response = yield* provider.generate({ model: "m", messages: [{ role: "user", content: "x" }], maxTokens: 4 })
      expect(response.text).toBe("ok")
      expect(server.requests[0]!.headers["authorization"]).toBe("Bearer sk-from-env-123456")
      expect(JSON.stringify(server.requests[0]!.body)).not.toContain("sk-from-env")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("Anthropic reads ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, { id: "msg", type: "message", role: "assistant", model: "c", content: [{ type: "text", text: "ok" }], stop_reason: "end_turn", usage: { input_tokens: 1, output_tokens: 1 } }))
      const provider = yield* Effect.provide(Provider, Anthropic.layerConfig.pipe(
        Layer.provide(fromEnv({ ANTHROPIC_API_KEY: "sk-ant-env-123456", ANTHROPIC_BASE_URL: server.url }))
      ))
      const response = yield* provider.generate({ model: "c", messages: [{ role: "user", content: "x" }], maxTokens: 4 })
      expect(response.text).toBe("ok")
      expect(server.requests[0]!.headers["x-api-key"]).toBe("sk-ant-env-123456")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.effect("a missing key is a typed ConfigError, not a defect", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(Provider, OpenAi.layerConfig.pipe(Layer.provide(fromEnv({})))))
      expect(error._tag === "InvalidOptions" ? error : error._op).toBe("MissingData")
      expect(String(error)).toContain("OPENAI_API_KEY")
    }).pipe(Effect.provide(Transport.layer())))
})

describe("keys from the environment (every layerConfig reads them through one rule)", () => {
  const failure = (env: Record<string, string>) =>
    Effect.flip(Effect.provide(Provider, Anthropic.layerConfig.pipe(Layer.provide(fromEnv(env))))).pipe(
      Effect.provide(Transport.layer())
    )

  it.effect("missing: a ConfigError whose message names the variable and says what to do", () =>
    Effect.gen(function*() {
      const error = yield* failure({})
      const text = String(error)
      expect(text).toContain("ANTHROPIC_API_KEY is not set")
      expect(text).not.toContain("<redacted>")
    }))

  it.effect("set but blank: a ConfigError naming the variable (an empty key would send no credentials)", () =>
    Effect.gen(function*() {
      const error = yield* failure({ ANTHROPIC_API_KEY: "   " })
      expect(error._tag === "InvalidOptions" ? error._tag : error._op).toBe("InvalidData")
      expect(String(error)).toContain("ANTHROPIC_API_KEY is set but empty")
    }))
})

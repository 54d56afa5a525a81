/**
 * The ChaosServer under Azure OpenAI's paths, parsed by the official `openai` SDK's `AzureOpenAI`
 * client (deployment path + `api-version`, `api-key` header) and by the plain client on the v1 path:
 * JSON, streams and tool calls, over real HTTP on 127.0.0.1.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import OpenAI, { AzureOpenAI } from "openai"
import * as ChaosServer from "../../src/testing/ChaosServer.js"

const weather = { city: "Paris", units: "celsius" }
const scenario = {
  routes: [
    { name: "east", model: "gpt-4o-east", content: { kind: "text", text: "Hello from the east." } },
    { name: "tools", model: "gpt-4o-tools", content: { kind: "tool_calls", calls: [{ name: "get_weather", arguments: weather }] } }
  ]
} as const

const azure = (server: ChaosServer.ChaosServerHandle, deployment?: string) =>
  new AzureOpenAI({
    endpoint: server.url,
    apiKey: "azure-key-test",
    apiVersion: "2024-10-21",
    maxRetries: 0,
    ...(deployment === undefined ? {} : { deployment })
  })

describe("ChaosServer with the openai SDK's AzureOpenAI client", () => {
  it.scopedLive("deployment path: the deployment is the model; JSON and stream, routed by the deployment", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario })
      const client = azure(server, "gpt-4o-east")
      const json = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "ignored-by-deployment", messages: [{ role: "user", content: "hi" }] })
      )
      expect(json.choices[0]?.message.content).toBe("Hello from the east.")
      const text = yield* Effect.promise(async () => {
        const stream = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: "hi" }], stream: true })
        let text = ""
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
        return text
      })
      expect(text).toBe("Hello from the east.")
      const stats = yield* server.stats
      expect(stats.log.map((entry) => [entry.route, entry.model])).toEqual([["east", "gpt-4o-east"], ["east", "gpt-4o-east"]])
    }))

  it.scopedLive("model-named deployments (no `deployment` option) and streamed tool calls", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario })
      const final = yield* Effect.promise(() =>
        azure(server).chat.completions.stream({
          model: "gpt-4o-tools",
          messages: [{ role: "user", content: "weather?" }],
          tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }]
        }).finalChatCompletion()
      )
      const call = final.choices[0]?.message.tool_calls?.[0]
      expect(final.choices[0]?.finish_reason).toBe("tool_calls")
      expect(call?.type === "function" ? [call.function.name, JSON.parse(call.function.arguments)] : undefined)
        .toEqual(["get_weather", weather])
    }))

  it.scopedLive("Responses through AzureOpenAI (`/openai/responses?api-version`) and the v1 path (`/openai/v1`)", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario })
      const viaAzure = yield* Effect.promise(() => azure(server).responses.create({ model: "gpt-4o-east", input: "hi" }))
      expect(viaAzure.output_text).toBe("Hello from the east.")
      const v1 = new OpenAI({ baseURL: `${server.url}/openai/v1`, apiKey: "azure-key-test", maxRetries: 0 })
      const viaV1 = yield* Effect.promise(() => v1.chat.completions.create({ model: "gpt-4o-east", messages: [{ role: "user", content: "hi" }] }))
      expect(viaV1.choices[0]?.message.content).toBe("Hello from the east.")
    }))

  it.scopedLive("a 429 on the deployment path is the SDK's RateLimitError with the retry-after header", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: { default: { script: [{ kind: "rate_limit", retryAfterMs: 1500 }] } } })
      const error = yield* Effect.flip(Effect.tryPromise(() =>
        azure(server, "gpt-4o").chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] })
      ))
      expect(error.cause).toBeInstanceOf(OpenAI.RateLimitError)
      expect((error.cause as InstanceType<typeof OpenAI.RateLimitError>).headers.get("retry-after-ms")).toBe("1500")
    }))
})

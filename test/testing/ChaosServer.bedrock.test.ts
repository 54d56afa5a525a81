/**
 * The ChaosServer's Bedrock Converse wire against the official `@aws-sdk/client-bedrock-runtime`
 * (`ConverseCommand`, `ConverseStreamCommand` with an endpoint override and fake credentials): JSON,
 * binary eventstream frames with text and tool use, modelled errors and in-stream exceptions — over
 * real HTTP on 127.0.0.1.
 */
import { BedrockRuntimeClient, ConverseCommand, type ConverseStreamOutput, ConverseStreamCommand } from "@aws-sdk/client-bedrock-runtime"
import { describe, expect, it } from "@effect/vitest"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import * as Effect from "effect/Effect"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"

const MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
const weather = { city: "Paris", units: "celsius" }

const sdk = (server: ChaosServer.ChaosServerHandle) =>
  new BedrockRuntimeClient({
    region: "us-east-1",
    endpoint: server.url,
    credentials: { accessKeyId: "AKIDCHAOSTEST", secretAccessKey: "chaos-secret" },
    // HTTP/1.1: the chaos server is an HTTP/1.1 server (the SDK's default Bedrock handler is HTTP/2).
    requestHandler: new NodeHttpHandler(),
    maxAttempts: 1
  })

const serve = (content: Scenario.Content, script: ReadonlyArray<Scenario.Fault> = []) =>
  ChaosServer.make({ scenario: { default: { content, script } } })

const user = [{ role: "user" as const, content: [{ text: "weather?" }] }]

const collect = async (stream: AsyncIterable<ConverseStreamOutput> | undefined) => {
  const events: Array<ConverseStreamOutput> = []
  for await (const event of stream ?? []) events.push(event)
  return events
}

describe("ChaosServer with the AWS SDK's Bedrock Runtime client", () => {
  it.scopedLive("ConverseCommand: the text, stop reason, usage and request id", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "text", text: "Hello from Bedrock." })
      const output = yield* Effect.promise(() => sdk(server).send(new ConverseCommand({ modelId: MODEL, messages: user })))
      expect(output.output?.message?.content?.[0]?.text).toBe("Hello from Bedrock.")
      expect(output.stopReason).toBe("end_turn")
      expect(output.usage?.outputTokens).toBeGreaterThan(0)
      expect(output.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/)
      expect((yield* server.stats).log.map((entry) => [entry.api, entry.model, entry.stream])).toEqual([["bedrock", MODEL, false]])
    }))

  it.scopedLive("ConverseStreamCommand: eventstream frames with text and a streamed toolUse, parsed by the SDK", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "tool_calls", text: "Checking.", calls: [{ name: "get_weather", arguments: weather }] })
      const events = yield* Effect.promise(async () => {
        const output = await sdk(server).send(new ConverseStreamCommand({ modelId: MODEL, messages: user }))
        return collect(output.stream)
      })
      const text = events.flatMap((e) => (e.contentBlockDelta?.delta?.text !== undefined ? [e.contentBlockDelta.delta.text] : [])).join("")
      const toolStart = events.find((e) => e.contentBlockStart?.start?.toolUse !== undefined)?.contentBlockStart?.start?.toolUse
      const input = events.flatMap((e) => (e.contentBlockDelta?.delta?.toolUse?.input !== undefined ? [e.contentBlockDelta.delta.toolUse.input] : []))
      expect(text).toBe("Checking.")
      expect(toolStart?.name).toBe("get_weather")
      expect(input.length).toBeGreaterThan(1)
      expect(JSON.parse(input.join(""))).toEqual(weather)
      expect(events.find((e) => e.messageStop !== undefined)?.messageStop?.stopReason).toBe("tool_use")
      expect(events.at(-1)?.metadata?.usage?.outputTokens).toBeGreaterThan(0)
    }))

  it.scopedLive("a 429 is the SDK's ThrottlingException; an outage is ServiceUnavailableException (503)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "text", text: "ok" }, [{ kind: "rate_limit" }, { kind: "overloaded" }])
      const client = sdk(server)
      const throttled = yield* Effect.flip(Effect.tryPromise(() => client.send(new ConverseCommand({ modelId: MODEL, messages: user }))))
      expect(throttled.cause).toMatchObject({ name: "ThrottlingException", $metadata: { httpStatusCode: 429 } })
      const unavailable = yield* Effect.flip(Effect.tryPromise(() => client.send(new ConverseCommand({ modelId: MODEL, messages: user }))))
      expect(unavailable.cause).toMatchObject({ name: "ServiceUnavailableException", $metadata: { httpStatusCode: 503 } })
    }))

  it.scopedLive("an in-stream fault is an exception frame the SDK throws mid-iteration, after the deltas before it", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "text", text: "one two three four" }, [{ kind: "stream_error", afterDeltas: 2, error: "overloaded" }])
      const seen: Array<string> = []
      const failure = yield* Effect.flip(Effect.tryPromise(async () => {
        const output = await sdk(server).send(new ConverseStreamCommand({ modelId: MODEL, messages: user }))
        for await (const event of output.stream ?? []) {
          if (event.contentBlockDelta?.delta?.text !== undefined) seen.push(event.contentBlockDelta.delta.text)
        }
      }))
      expect(seen.join("")).toBe("one two")
      expect(failure.cause).toMatchObject({ name: "ServiceUnavailableException" })
    }))
})

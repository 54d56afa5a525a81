/**
 * The ChaosServer's OpenAI Responses wire (`POST /v1/responses`) against the official `openai` SDK —
 * `responses.create`, `responses.stream` and its error classes — and against our `OpenAiResponses`
 * adapter, over real HTTP on 127.0.0.1.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import OpenAI from "openai"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { openai, rejection } from "./helpers.js"

const TEXT = "Hello there, chaos world!"
const serve = (scenario: Scenario.Scenario = {}) => ChaosServer.make({ scenario })
const textRoute = { content: { kind: "text", text: TEXT } } as const

describe("ChaosServer with the OpenAI SDK's Responses API", () => {
  it.scopedLive("responses.create: a completed response with output_text, usage and request id", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const { data, request_id } = yield* Effect.promise(() =>
        openai(server).responses.create({ model: "gpt-4.1-mini", input: "Say hello.", max_output_tokens: 100 }).withResponse()
      )
      expect(data.object).toBe("response")
      expect(data.id).toMatch(/^resp_[0-9a-f]{48}$/)
      expect(data.status).toBe("completed")
      expect(data.output_text).toBe(TEXT)
      expect(data.usage).toMatchObject({ input_tokens: 3, output_tokens: 7, total_tokens: 10 })
      expect(request_id).toMatch(/^req_[0-9a-f]{32}$/)
    }))

  it.scopedLive("responses.stream: typed events with sequence numbers, accumulated into the final response", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const { events, final } = yield* Effect.promise(async () => {
        const stream = openai(server).responses.stream({ model: "gpt-4.1-mini", input: "Say hello." })
        const events: Array<OpenAI.Responses.ResponseStreamEvent> = []
        for await (const event of stream) events.push(event)
        return { events, final: await stream.finalResponse() }
      })
      expect(events[0]?.type).toBe("response.created")
      expect(events.at(-1)?.type).toBe("response.completed")
      expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
      const deltas = events.flatMap((e) => (e.type === "response.output_text.delta" ? [e.delta] : []))
      expect(deltas.length).toBeGreaterThan(2)
      expect(deltas.join("")).toBe(TEXT)
      // The accumulated final response (the SDK adds `output_text` only to non-streamed responses).
      const message = final.output[0]
      expect(message?.type === "message" ? message.content[0] : undefined).toMatchObject({ type: "output_text", text: TEXT })
      expect(final.status).toBe("completed")
    }))

  it.scopedLive("a truncated answer is an incomplete response with reason max_output_tokens", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "truncated" }] } })
      const data = yield* Effect.promise(() => openai(server).responses.create({ model: "gpt-4.1-mini", input: "Say hello." }))
      expect(data.status).toBe("incomplete")
      expect(data.incomplete_details?.reason).toBe("max_output_tokens")
    }))

  it.scopedLive("a 429 is the SDK's RateLimitError, with the retry-after header", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { script: [{ kind: "rate_limit", retryAfterSeconds: 2 }] } })
      const error = yield* rejection(() => openai(server).responses.create({ model: "gpt-4.1-mini", input: "hi" }))
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      const rateLimited = error as InstanceType<typeof OpenAI.RateLimitError>
      expect(rateLimited.status).toBe(429)
      expect(rateLimited.headers.get("retry-after")).toBe("2")
    }))

  it.scopedLive("an in-stream failure is an `error` event the SDK hands over as one (code, message)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { ...textRoute, script: [{ kind: "stream_error", afterDeltas: 1, error: "server_error" }] } })
      const events = yield* Effect.promise(async () => {
        const stream = await openai(server).responses.create({ model: "gpt-4.1-mini", input: "Say hello.", stream: true })
        const out: Array<OpenAI.Responses.ResponseStreamEvent> = []
        for await (const event of stream) out.push(event)
        return out
      })
      expect(events.filter((e) => e.type === "response.output_text.delta")).toHaveLength(1)
      const failure = events.at(-1)
      expect(failure?.type).toBe("error")
      expect(failure).toMatchObject({ code: "server_error" })
    }))
})

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)
const adapter = (server: ChaosServer.ChaosServerHandle) =>
  OpenAiResponses.make({ apiKey: Redacted.make("sk-responses-test"), baseUrl: server.openAiBaseUrl })
const request = { model: "gpt-4.1-mini", messages: [{ role: "user" as const, content: "Say hello." }], maxTokens: 100, system: "Be brief." }

describe("OpenAiResponses over the ChaosServer", () => {
  it.scoped("generate and stream give the same answer, usage and request id", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: textRoute })
      const provider = yield* adapter(server)
      const generated = yield* provider.generate(request)
      expect(generated).toMatchObject({ text: TEXT, finishReason: "stop", usage: { inputTokens: 5, outputTokens: 7 } })
      expect(generated.requestId).toMatch(/^req_/)
      const events = yield* Stream.runCollect(provider.stream(request))
      const finish = [...events].find((e) => e._tag === "Finish")
      if (finish?._tag !== "Finish") return expect.unreachable("no Finish")
      expect(finish.response).toMatchObject({ text: TEXT, finishReason: "stop", usage: generated.usage })
      // The body it sent: input items, instructions, max_output_tokens, store off by default.
      const sent = (yield* server.stats).log[0]
      expect(sent?.model).toBe("gpt-4.1-mini")
    }).pipe(Effect.provide(Env)))

  it.scoped("structured output through a chain: text.format json_schema, decoded; streamObject too", () =>
    Effect.gen(function*() {
      const City = Schema.Struct({ city: Schema.String, population: Schema.Number })
      const server = yield* serve({ default: { content: { kind: "json", value: { city: "Paris", population: 2_100_000 } } } })
      const chain = yield* Fallback.make({ routes: [{ name: "responses", provider: yield* adapter(server), model: "gpt-4.1-mini" }] })
      const chainRequest = { messages: [{ role: "user" as const, content: "Largest city in France?" }], maxTokens: 100 }
      expect((yield* chain.generateObject(City, chainRequest)).value).toEqual({ city: "Paris", population: 2_100_000 })
      const events = yield* Stream.runCollect(chain.streamObject(City, chainRequest))
      const completed = [...events].at(-1)
      if (completed?._tag !== "Completed") return expect.unreachable("no Completed")
      expect(completed.result.value).toEqual({ city: "Paris", population: 2_100_000 })
    }).pipe(Effect.provide(Env)))

  it("encodes a conversation with tool calls as Responses input items", () => {
    const body = OpenAiResponses.encodeRequest(
      {
        model: "gpt-4.1",
        system: "You are terse.",
        messages: [
          { role: "user", content: "Weather in Paris?" },
          { role: "assistant", content: "", toolCalls: [{ id: "call_1", name: "weather", arguments: "{\"city\":\"Paris\"}" }] },
          { role: "tool", content: "{\"c\":21}", toolCallId: "call_1" }
        ],
        maxTokens: 50,
        tools: [{ name: "weather", parameters: { type: "object" } }],
        toolChoice: { name: "weather" },
        responseFormat: { type: "json_schema", name: "answer", schema: { type: "object" } }
      },
      { maxTokens: 50, store: false, sendMetadata: false },
      true
    )
    expect(body).toEqual({
      model: "gpt-4.1",
      input: [
        { role: "user", content: "Weather in Paris?" },
        { type: "function_call", call_id: "call_1", name: "weather", arguments: "{\"city\":\"Paris\"}" },
        { type: "function_call_output", call_id: "call_1", output: "{\"c\":21}" }
      ],
      instructions: "You are terse.",
      max_output_tokens: 50,
      store: false,
      tools: [{ type: "function", name: "weather", parameters: { type: "object" }, strict: false }],
      tool_choice: { type: "function", name: "weather" },
      text: { format: { type: "json_schema", name: "answer", schema: { type: "object" }, strict: true } },
      stream: true
    })
  })

  it("maps a response's status and incomplete reason to the finish reason", () => {
    expect(OpenAiResponses.finishReasonOf("completed", undefined, false, false)).toBe("stop")
    expect(OpenAiResponses.finishReasonOf("completed", undefined, true, false)).toBe("tool_calls")
    expect(OpenAiResponses.finishReasonOf("incomplete", "max_output_tokens", false, false)).toBe("length")
    expect(OpenAiResponses.finishReasonOf("incomplete", "content_filter", false, false)).toBe("content_filter")
    expect(OpenAiResponses.finishReasonOf("completed", undefined, false, true)).toBe("refusal")
  })
})

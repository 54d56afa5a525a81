/**
 * Tool calls from the ChaosServer in every wire format, JSON and streamed, parsed by the official SDKs
 * (`openai` Chat and Responses, `@anthropic-ai/sdk`) and by our adapters — including Anthropic's
 * `tool_use` answer to a forced tool, which is how real Anthropic answers our structured-output
 * requests. Real HTTP on 127.0.0.1.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type OpenAI from "openai"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Layer from "effect/Layer"
import { anthropic, openai } from "./helpers.js"

const weather = { city: "Paris", units: "celsius", days: [1, 2, 3] }
const search = { query: "effect retry schedules with jitter and budgets" }
const callsContent: Scenario.Content = {
  kind: "tool_calls",
  calls: [{ name: "get_weather", arguments: weather }, { name: "search_docs", arguments: search }]
}
const serve = (content: Scenario.Content, script: ReadonlyArray<Scenario.Fault> = []) =>
  ChaosServer.make({ scenario: { default: { content, script } } })

const functionTool = (name: string) => ({
  type: "function" as const,
  function: { name, description: `the ${name} tool`, parameters: { type: "object", properties: {} } }
})
const chatTools = [functionTool("get_weather"), functionTool("search_docs")]
const responsesTools = chatTools.map((tool) => ({ type: "function" as const, name: tool.function.name, parameters: tool.function.parameters, strict: false }))
const anthropicTools = chatTools.map((tool) => ({ name: tool.function.name, input_schema: { type: "object" as const, properties: {} } }))

const chatArgs = (calls: ReadonlyArray<OpenAI.Chat.ChatCompletionMessageToolCall> | undefined) =>
  (calls ?? []).map((call) => (call.type === "function" ? [call.function.name, JSON.parse(call.function.arguments)] : [call.type]))

describe("ChaosServer tool calls, parsed by the official SDKs", () => {
  it.scopedLive("Chat Completions: tool_calls with finish_reason tool_calls, JSON and streamed (the SDK accumulates the fragments)", () =>
    Effect.gen(function*() {
      const server = yield* serve(callsContent)
      const client = openai(server)
      const body = { model: "gpt-4o-mini", messages: [{ role: "user" as const, content: "weather?" }], tools: chatTools }
      const json = yield* Effect.promise(() => client.chat.completions.create(body))
      expect(json.choices[0]?.finish_reason).toBe("tool_calls")
      expect(json.choices[0]?.message.content).toBeNull()
      expect(chatArgs(json.choices[0]?.message.tool_calls)).toEqual([["get_weather", weather], ["search_docs", search]])
      expect(json.choices[0]?.message.tool_calls?.[0]?.id).toMatch(/^call_[A-Za-z0-9]+$/)

      const { fragments, final } = yield* Effect.promise(async () => {
        const stream = client.chat.completions.stream({ ...body, stream: true })
        let fragments = 0
        stream.on("tool_calls.function.arguments.delta", () => fragments++)
        return { fragments: await stream.done().then(() => fragments), final: await stream.finalChatCompletion() }
      })
      expect(fragments).toBeGreaterThan(2)
      expect(final.choices[0]?.finish_reason).toBe("tool_calls")
      expect(chatArgs(final.choices[0]?.message.tool_calls)).toEqual([["get_weather", weather], ["search_docs", search]])
    }))

  it.scopedLive("Chat Completions: a named tool_choice is answered with that tool, finish_reason stop (the API's own quirk)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "json", value: weather })
      const json = yield* Effect.promise(() =>
        openai(server).chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "weather?" }],
          tools: chatTools,
          tool_choice: { type: "function", function: { name: "get_weather" } }
        })
      )
      expect(json.choices[0]?.finish_reason).toBe("stop")
      expect(chatArgs(json.choices[0]?.message.tool_calls)).toEqual([["get_weather", weather]])
    }))

  it.scopedLive("Responses: function_call items, JSON and streamed (argument deltas, then the done item)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ ...callsContent, text: "Let me check." })
      const client = openai(server)
      const body = { model: "gpt-4.1-mini", input: "weather?", tools: responsesTools }
      const json = yield* Effect.promise(() => client.responses.create(body))
      expect(json.status).toBe("completed")
      expect(json.output_text).toBe("Let me check.")
      const calls = (output: ReadonlyArray<OpenAI.Responses.ResponseOutputItem>) =>
        output.flatMap((item) => (item.type === "function_call" ? [[item.name, JSON.parse(item.arguments), item.call_id]] : []))
      expect(calls(json.output).map(([name, args]) => [name, args])).toEqual([["get_weather", weather], ["search_docs", search]])

      const { events, final } = yield* Effect.promise(async () => {
        const stream = client.responses.stream(body)
        const events: Array<OpenAI.Responses.ResponseStreamEvent> = []
        for await (const event of stream) events.push(event)
        return { events, final: await stream.finalResponse() }
      })
      expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
      const deltas = events.flatMap((e) => (e.type === "response.function_call_arguments.delta" && e.output_index === 1 ? [e.delta] : []))
      expect(deltas.length).toBeGreaterThan(1)
      expect(JSON.parse(deltas.join(""))).toEqual(weather)
      const named = (output: ReadonlyArray<OpenAI.Responses.ResponseOutputItem>) => calls(output).map(([name, args]) => [name, args])
      expect(named(final.output)).toEqual(named(json.output))
      expect(calls(final.output).map(([, , id]) => id)).toEqual([expect.stringMatching(/^call_/), expect.stringMatching(/^call_/)])
    }))

  it.scopedLive("Anthropic: a forced tool is answered with tool_use (stop_reason tool_use), JSON and streamed as input_json_delta", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "json", value: weather })
      const client = anthropic(server)
      const body = {
        model: "claude-haiku-4-5",
        max_tokens: 512,
        messages: [{ role: "user" as const, content: "weather?" }],
        tools: anthropicTools,
        tool_choice: { type: "tool" as const, name: "get_weather" }
      }
      const json = yield* Effect.promise(() => client.messages.create(body))
      expect(json.stop_reason).toBe("tool_use")
      expect(json.content).toEqual([{ type: "tool_use", id: expect.stringMatching(/^toolu_01/), name: "get_weather", input: weather }])

      const { final, partials } = yield* Effect.promise(async () => {
        const stream = client.messages.stream(body)
        const partials: Array<string> = []
        stream.on("inputJson", (partial) => partials.push(partial))
        return { final: await stream.finalMessage(), partials }
      })
      expect(partials.length).toBeGreaterThan(1)
      expect(final.stop_reason).toBe("tool_use")
      expect(final.content).toMatchObject([{ type: "tool_use", name: "get_weather", input: weather }])
    }))

  it.scopedLive("Anthropic: text then two tool_use blocks, each block closed before the next opens", () =>
    Effect.gen(function*() {
      const server = yield* serve({ ...callsContent, text: "Checking." })
      const final = yield* Effect.promise(() =>
        anthropic(server).messages.stream({
          model: "claude-haiku-4-5",
          max_tokens: 512,
          messages: [{ role: "user", content: "weather?" }],
          tools: anthropicTools
        }).finalMessage()
      )
      expect(final.content.map((block) => block.type === "text" ? ["text", block.text] : block.type === "tool_use" ? [block.name, block.input] : [block.type]))
        .toEqual([["text", "Checking."], ["get_weather", weather], ["search_docs", search]])
    }))
})

const toolsRequest: GenerateRequest = {
  model: "m",
  messages: [{ role: "user", content: "weather?" }],
  maxTokens: 512,
  tools: [
    { name: "get_weather", parameters: { type: "object", properties: {} } },
    { name: "search_docs", parameters: { type: "object", properties: {} } }
  ]
}

const adapters = (server: ChaosServer.ChaosServerHandle) => ({
  openai: OpenAi.make({ apiKey: Redacted.make("sk-tools"), baseUrl: server.openAiBaseUrl }),
  responses: OpenAiResponses.make({ apiKey: Redacted.make("sk-tools"), baseUrl: server.openAiBaseUrl }),
  anthropic: Anthropic.make({ apiKey: Redacted.make("sk-ant-tools"), baseUrl: server.anthropicBaseUrl })
})

const finishOf = (provider: ProviderShape, request: GenerateRequest) =>
  Effect.map(Stream.runCollect(provider.stream(request)), (events) => {
    const finish = Chunk.findLast(events, (event) => event._tag === "Finish")
    return finish._tag === "Some" && finish.value._tag === "Finish" ? finish.value.response : undefined
  })

const callsOf = (response: GenerateResponse | undefined) =>
  (response?.toolCalls ?? []).map((call) => [call.name, JSON.parse(call.arguments)])

describe("our adapters read the server's tool calls in every format", () => {
  for (const format of ["openai", "responses", "anthropic"] as const) {
    it.scopedLive(`${format}: generate and stream give the same tool calls, finish tool_calls`, () =>
      Effect.gen(function*() {
        const server = yield* serve(callsContent)
        const provider = yield* adapters(server)[format]
        const generated = yield* provider.generate(toolsRequest)
        const streamed = yield* finishOf(provider, toolsRequest)
        for (const response of [generated, streamed]) {
          expect(response?.finishReason).toBe("tool_calls")
          expect(callsOf(response)).toEqual([["get_weather", weather], ["search_docs", search]])
        }
        // Ids differ per request (they are the server's), but are distinct within one answer.
        for (const response of [generated, streamed]) expect(new Set(response?.toolCalls.map((call) => call.id)).size).toBe(2)
      }).pipe(Effect.provide(Transport.layer())))
  }

  const Weather = Schema.Struct({ city: Schema.String, units: Schema.Literal("celsius", "fahrenheit"), days: Schema.Array(Schema.Number) })
  const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)
  const chainOf = (server: ChaosServer.ChaosServerHandle) =>
    Effect.flatMap(adapters(server).anthropic, (provider) =>
      Fallback.make({ routes: [{ name: "claude", provider, model: "claude-haiku-4-5", policy: { retry: { maxAttempts: 1 } } }] }))

  it.scopedLive("Anthropic structured output: generateObject and streamObject read the forced tool_use answer", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "json", value: weather })
      const chain = yield* chainOf(server)
      const request = { messages: [{ role: "user" as const, content: "weather?" }], maxTokens: 512 }
      expect((yield* chain.generateObject(Weather, request)).value).toEqual(weather)
      const streamed = yield* Stream.runCollect(chain.streamObject(Weather, request))
      const last = Chunk.last(streamed)
      expect(last._tag === "Some" && last.value._tag === "Completed" ? last.value.result.value : undefined).toEqual(weather)
      // What the server saw: a forced tool, answered as one.
      const log = (yield* server.stats).log
      expect(log.map((entry) => entry.status)).toEqual([200, 200])
    }).pipe(Effect.provide(Env)))

  it.scopedLive("Anthropic structured output cut by max_tokens is truncated JSON in a tool_use → InvalidOutput, never accepted", () =>
    Effect.gen(function*() {
      const server = yield* serve({ kind: "json", value: weather }, [{ kind: "truncated" }])
      const chain = yield* chainOf(server)
      const error = yield* Effect.flip(chain.generateObject(Weather, { messages: [{ role: "user", content: "weather?" }], maxTokens: 512 }))
      expect(error._tag).toBe("AllRoutesFailed")
      expect(JSON.stringify(error)).toContain("InvalidOutput")
    }).pipe(Effect.provide(Env)))
})

describe("faults inside a streamed tool call, in every format", () => {
  for (const format of ["openai", "responses", "anthropic"] as const) {
    it.scopedLive(`${format}: a cut in the arguments is StreamInterrupted with content; an error event there is classified`, () =>
      Effect.gen(function*() {
        const cut = yield* serve(callsContent, [{ kind: "stream_cut", afterDeltas: 3 }])
        const interrupted = yield* Effect.flip(finishOf(yield* adapters(cut)[format], toolsRequest))
        expect(interrupted).toMatchObject({ _tag: "StreamInterrupted", receivedContent: true })
        const failing = yield* serve(callsContent, [{ kind: "stream_error", afterDeltas: 3, error: "overloaded" }])
        const overloaded = yield* Effect.flip(finishOf(yield* adapters(failing)[format], toolsRequest))
        expect(overloaded._tag).toBe("Overloaded")
      }).pipe(Effect.provide(Transport.layer())))
  }
})

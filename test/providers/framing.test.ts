/**
 * Framing invariance, per wire format: however the network cuts a body — at every single byte
 * boundary (through multi-byte characters, SSE field names, line ends) or at random sets of points —
 * the adapter decodes exactly the answer it decodes from the body in one piece, in all five formats. The bodies are the
 * ChaosServer's renderings (text with multi-byte characters and two tool calls), which the official
 * SDKs parse (test/testing/ChaosServer.*.test.ts).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import fc from "fast-check"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as Bedrock from "../../src/providers/Bedrock.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import { anthropicWire } from "../../src/testing/internal/anthropicWire.js"
import { bedrockWire } from "../../src/testing/internal/bedrockWire.js"
import { splitDeltas } from "../../src/testing/internal/content.js"
import { geminiWire } from "../../src/testing/internal/geminiWire.js"
import { openaiWire } from "../../src/testing/internal/openaiWire.js"
import { responsesWire } from "../../src/testing/internal/responsesWire.js"
import type { Completion, Frame, Wire } from "../../src/testing/internal/wire.js"
import { chunkedReply, mockClient, type Reply, sseReply } from "../utils/reply.js"

// Short, so that decoding once per byte boundary stays fast; still multi-byte, escaped and split.
const text = "Grüße 👋🏽 ok"
const calls = [
  { name: "get_weather", args: JSON.stringify({ city: "Zürich ✓" }) },
  { name: "search", args: JSON.stringify({ q: "a\n\"b\"" }) }
]
const completion: Completion = {
  id: "resp_0123456789abcdef",
  model: "m",
  created: 1_765_000_000,
  text,
  deltas: splitDeltas(text),
  toolCalls: calls.map((call, i) => ({ id: `abc${i}`, name: call.name, arguments: call.args, argumentDeltas: splitDeltas(call.args) })),
  forcedTool: false,
  finish: "tool_calls",
  promptTokens: 5,
  completionTokens: 30
}

const request: GenerateRequest = {
  model: "m",
  messages: [{ role: "user", content: "hi" }],
  maxTokens: 256,
  tools: calls.map((call) => ({ name: call.name, parameters: { type: "object" } }))
}

interface Format {
  readonly wire: Wire
  readonly make: (client: HttpClient.HttpClient) => Effect.Effect<ProviderShape, unknown>
}

const withClient = <A, E>(make: Effect.Effect<A, E, HttpClient.HttpClient>) => (client: HttpClient.HttpClient) =>
  Effect.provideService(make, HttpClient.HttpClient, client)

const formats: Record<string, Format> = {
  openai: { wire: openaiWire, make: withClient(OpenAi.make({ apiKey: Redacted.make("k"), baseUrl: "http://mock.invalid" })) },
  responses: {
    wire: responsesWire,
    make: withClient(OpenAiResponses.make({ apiKey: Redacted.make("k"), baseUrl: "http://mock.invalid" }))
  },
  anthropic: { wire: anthropicWire, make: withClient(Anthropic.make({ apiKey: Redacted.make("k"), baseUrl: "http://mock.invalid" })) },
  gemini: { wire: geminiWire, make: withClient(Gemini.make({ apiKey: Redacted.make("k"), baseUrl: "http://mock.invalid/v1beta" })) },
  // Bedrock's stream is binary eventstream frames: cuts fall through preludes, headers and CRCs.
  bedrock: {
    wire: bedrockWire,
    make: withClient(Bedrock.make({ region: "us-east-1", apiKey: Redacted.make("k"), baseUrl: "http://mock.invalid" }))
  }
}

const encoder = new TextEncoder()
const bytesOf = (frames: ReadonlyArray<Frame>): Uint8Array => {
  const parts = frames.map((frame) => (typeof frame === "string" ? encoder.encode(frame) : frame))
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** `body` cut at `points` (sorted, distinct, inside the body). */
const cut = (body: Uint8Array, points: ReadonlyArray<number>): Array<Uint8Array> => {
  const pieces: Array<Uint8Array> = []
  let from = 0
  for (const point of points) {
    pieces.push(body.subarray(from, point))
    from = point
  }
  pieces.push(body.subarray(from))
  return pieces
}

/** The parts of a response that framing must not change. */
const essence = (response: GenerateResponse) => ({
  text: response.text,
  toolCalls: response.toolCalls.map((call) => [call.name, call.arguments]),
  finishReason: response.finishReason,
  usage: response.usage
})

const streamed = (format: Format, reply: Reply) =>
  Effect.flatMap(format.make(mockClient(reply)), (provider) =>
    Effect.map(Stream.runCollect(provider.stream(request)), (events) => {
      const finish = Chunk.findLast(events, (event) => event._tag === "Finish")
      if (finish._tag === "None" || finish.value._tag !== "Finish") throw new Error("no Finish")
      return essence(finish.value.response)
    }))

const generated = (format: Format, reply: Reply) =>
  Effect.flatMap(format.make(mockClient(reply)), (provider) => Effect.map(provider.generate(request), essence))

const sortedPoints = (length: number, maxLength: number) =>
  fc.uniqueArray(fc.integer({ min: 1, max: length - 1 }), { maxLength }).map((p) => [...p].sort((a, b) => a - b))

const everyByte = (body: Uint8Array) => Array.from({ length: body.length - 1 }, (_, i) => i + 1)

describe("framing invariance: a body cut anywhere decodes to the same answer", () => {
  for (const [name, format] of Object.entries(formats)) {
    const frames = format.wire.stream(completion, true)
    const sse = bytesOf([...frames.head, ...frames.deltas, ...frames.tail])
    const json = encoder.encode(format.wire.completion(completion))
    const jsonReply = (pieces: ReadonlyArray<Uint8Array>) => chunkedReply(200, pieces, { "content-type": "application/json" })

    it.effect(`${name}: one piece, one byte per chunk (every boundary at once), and random cuts (seeded) agree`, () =>
      Effect.gen(function*() {
        const whole = yield* streamed(format, sseReply([sse]))
        expect(whole.text).toBe(text)
        expect(whole.toolCalls).toEqual(calls.map((call) => [call.name, call.args]))
        expect(yield* generated(format, jsonReply([json]))).toEqual(whole)
        expect(yield* streamed(format, sseReply(cut(sse, everyByte(sse))))).toEqual(whole)
        expect(yield* generated(format, jsonReply(cut(json, everyByte(json))))).toEqual(whole)
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(sortedPoints(sse.length, 32), sortedPoints(json.length, 8), async (atSse, atJson) => {
              expect(await Effect.runPromise(streamed(format, sseReply(cut(sse, atSse))))).toEqual(whole)
              expect(await Effect.runPromise(generated(format, jsonReply(cut(json, atJson))))).toEqual(whole)
            }),
            { numRuns: 100, seed: 20261206 }
          )
        )
      }))
  }

  // The SSE decoder and the body reader are shared by every SSE format: a two-piece cut at each single
  // boundary, once, on the smallest bodies.
  it.effect("SSE (Anthropic's stream) and a JSON body (OpenAI's) cut in two at every byte boundary", () =>
    Effect.gen(function*() {
      const anthropic = formats["anthropic"]!
      const frames = anthropic.wire.stream(completion, true)
      const sse = bytesOf([...frames.head, ...frames.deltas, ...frames.tail])
      const whole = yield* streamed(anthropic, sseReply([sse]))
      for (let point = 1; point < sse.length; point++) {
        expect(yield* streamed(anthropic, sseReply(cut(sse, [point])))).toEqual(whole)
      }
      const openai = formats["openai"]!
      const json = encoder.encode(openai.wire.completion(completion))
      for (let point = 1; point < json.length; point++) {
        expect(yield* generated(openai, chunkedReply(200, cut(json, [point]), { "content-type": "application/json" }))).toEqual(whole)
      }
    }))
})

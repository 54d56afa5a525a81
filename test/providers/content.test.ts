/**
 * Images and files over real HTTP, per wire format: the exact parts each adapter sends (its native
 * shape, as the provider documents it — docs/providers.md "Images and files"), and what each refuses
 * before sending (`UnsupportedRequest`, with nothing on the wire).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { toPull } from "../../src/internal/pull.js"
import { actionOf, type InvalidOptions, isProviderHealthFailure, isRetryable, type ProviderError } from "../../src/Errors.js"
import { type ContentPart, filePart, type GenerateRequest, type Message, type ProviderShape } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as Bedrock from "../../src/providers/Bedrock.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as Transport from "../../src/Transport.js"
import { json, wireServer } from "../utils/wireServer.js"

const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
const PDF = Buffer.from("%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF").toString("base64")
const TEXT = Buffer.from("plain words").toString("base64")

const image = filePart({ mediaType: "image/png", data: PNG, detail: "low" })
const imageUrl = filePart({ mediaType: "image/jpeg", url: "https://example.com/cat.jpg" })
const pdf = filePart({ mediaType: "application/pdf", data: PDF, filename: "Q3 report.pdf" })
const pdfUrl = filePart({ mediaType: "application/pdf", url: "https://example.com/q3.pdf" })
const text: ContentPart = { _tag: "Text", text: "What is this?" }

const requestWith = (...messages: ReadonlyArray<Message>): GenerateRequest => ({ model: "m", messages, maxTokens: 32 })
const user = (...content: ReadonlyArray<ContentPart>): Message => ({ role: "user", content })

const KEY = Redacted.make("sk-test-0123456789")
type Adapter = (baseUrl: string) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient>
const adapters: Record<"openai" | "responses" | "anthropic" | "gemini" | "bedrock", Adapter> = {
  openai: (baseUrl) => OpenAi.make({ apiKey: KEY, baseUrl }),
  responses: (baseUrl) => OpenAiResponses.make({ apiKey: KEY, baseUrl }),
  anthropic: (baseUrl) => Anthropic.make({ apiKey: KEY, baseUrl }),
  gemini: (baseUrl) => Gemini.make({ apiKey: KEY, baseUrl }),
  bedrock: (baseUrl) => Bedrock.make({ region: "us-east-1", baseUrl, apiKey: KEY })
}

/** Sends `request` through the adapter and returns the body the server received (or the failure). */
const sent = (format: keyof typeof adapters, request: GenerateRequest) =>
  Effect.gen(function*() {
    // The answer is irrelevant here: only what was sent is checked.
    const server = yield* wireServer(json(200, {}))
    const provider = yield* adapters[format](server.url)
    const result = yield* Effect.either(provider.generate(request))
    return { bodies: server.requests.map((r) => r.body), result }
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const bodyOf = (format: keyof typeof adapters, request: GenerateRequest) =>
  Effect.map(sent(format, request), ({ bodies }) => {
    expect(bodies).toHaveLength(1)
    return bodies[0] as Record<string, unknown>
  })

describe("content parts — native encoding per wire format", () => {
  it.live("OpenAI Chat: text, image_url (data URL and https, with detail), file with file_data; a string stays a string", () =>
    Effect.gen(function*() {
      const body = yield* bodyOf("openai", requestWith(user(text, image, imageUrl, pdf), { role: "user", content: "plain" }))
      expect(body["messages"]).toEqual([
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: `data:image/png;base64,${PNG}`, detail: "low" } },
            { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
            { type: "file", file: { file_data: `data:application/pdf;base64,${PDF}`, filename: "Q3 report.pdf" } }
          ]
        },
        { role: "user", content: "plain" }
      ])
    }))

  it.live("OpenAI Responses: input_text, input_image (detail defaults to auto), input_file by data and by file_url, media in a function output", () =>
    Effect.gen(function*() {
      const body = yield* bodyOf(
        "responses",
        requestWith(
          user(text, image, imageUrl, pdf, pdfUrl),
          { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "shot", arguments: "{}" }] },
          { role: "tool", toolCallId: "c1", content: [{ _tag: "Text", text: "screenshot:" }, imageUrl] }
        )
      )
      expect(body["input"]).toEqual([
        {
          role: "user",
          content: [
            { type: "input_text", text: "What is this?" },
            { type: "input_image", image_url: `data:image/png;base64,${PNG}`, detail: "low" },
            { type: "input_image", image_url: "https://example.com/cat.jpg", detail: "auto" },
            { type: "input_file", file_data: `data:application/pdf;base64,${PDF}`, filename: "Q3 report.pdf" },
            { type: "input_file", file_url: "https://example.com/q3.pdf" }
          ]
        },
        { type: "function_call", call_id: "c1", name: "shot", arguments: "{}" },
        {
          type: "function_call_output",
          call_id: "c1",
          output: [{ type: "input_text", text: "screenshot:" }, { type: "input_image", image_url: "https://example.com/cat.jpg", detail: "auto" }]
        }
      ])
    }))

  it.live("Anthropic: image (base64 and url sources), document (base64 PDF with title, url PDF, plain text decoded), media in a tool_result", () =>
    Effect.gen(function*() {
      const note = filePart({ mediaType: "text/plain", data: TEXT })
      const body = yield* bodyOf(
        "anthropic",
        requestWith(
          user(text, image, imageUrl, pdf, pdfUrl, note),
          { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "shot", arguments: "{}" }] },
          { role: "tool", toolCallId: "c1", content: [image] }
        )
      )
      expect(body["messages"]).toEqual([
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
            { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } },
            { type: "document", source: { type: "base64", media_type: "application/pdf", data: PDF }, title: "Q3 report.pdf" },
            { type: "document", source: { type: "url", url: "https://example.com/q3.pdf" } },
            { type: "document", source: { type: "text", media_type: "text/plain", data: "plain words" } }
          ]
        },
        { role: "assistant", content: [{ type: "tool_use", id: "c1", name: "shot", input: {} }] },
        {
          role: "user",
          content: [{ type: "tool_result", tool_use_id: "c1", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: PNG } }] }]
        }
      ])
    }))

  it.live("Gemini: inlineData for bytes, fileData for URIs (https and gs://); image/jpg is sent as image/jpeg", () =>
    Effect.gen(function*() {
      const jpg = filePart({ mediaType: "image/jpg", data: PNG })
      const gs = filePart({ mediaType: "video/mp4", url: "gs://bucket/clip.mp4" })
      const body = yield* bodyOf("gemini", requestWith(user(text, image, jpg, pdfUrl, gs)))
      expect(body["contents"]).toEqual([{
        role: "user",
        parts: [
          { text: "What is this?" },
          { inlineData: { mimeType: "image/png", data: PNG } },
          { inlineData: { mimeType: "image/jpeg", data: PNG } },
          { fileData: { mimeType: "application/pdf", fileUri: "https://example.com/q3.pdf" } },
          { fileData: { mimeType: "video/mp4", fileUri: "gs://bucket/clip.mp4" } }
        ]
      }])
    }))

  it.live("Bedrock: image and document blocks with bytes and s3Location, document names cleaned to Converse's alphabet, media in a toolResult", () =>
    Effect.gen(function*() {
      const s3 = filePart({ mediaType: "image/webp", url: "s3://bucket/a.webp" })
      const sheet = filePart({ mediaType: "text/csv", data: TEXT, filename: "sales.2026 (EU)/v2.csv" })
      const body = yield* bodyOf(
        "bedrock",
        requestWith(
          user(text, image, s3, pdf, sheet),
          { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "shot", arguments: "{}" }] },
          { role: "tool", toolCallId: "c1", content: [pdf] }
        )
      )
      expect(body["messages"]).toEqual([
        {
          role: "user",
          content: [
            { text: "What is this?" },
            { image: { format: "png", source: { bytes: PNG } } },
            { image: { format: "webp", source: { s3Location: { uri: "s3://bucket/a.webp" } } } },
            { document: { format: "pdf", name: "Q3 report-pdf", source: { bytes: PDF } } },
            { document: { format: "csv", name: "sales-2026 (EU)-v2-csv", source: { bytes: TEXT } } }
          ]
        },
        { role: "assistant", content: [{ toolUse: { toolUseId: "c1", name: "shot", input: {} } }] },
        {
          role: "user",
          content: [{ toolResult: { toolUseId: "c1", content: [{ document: { format: "pdf", name: "Q3 report-pdf", source: { bytes: PDF } } }] } }]
        }
      ])
    }))

  it.live("a Uint8Array and a data: URL are both inline bytes", () =>
    Effect.gen(function*() {
      const bytes = filePart({ mediaType: "image/png", data: Buffer.from(PNG, "base64") })
      const dataUrl = filePart({ mediaType: "image/png", url: `data:image/png;base64,${PNG}` })
      const body = yield* bodyOf("anthropic", requestWith(user(bytes, dataUrl)))
      const inline = { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } }
      expect(body["messages"]).toEqual([{ role: "user", content: [inline, inline] }])
    }))
})

describe("content parts — refused before sending", () => {
  const cases: ReadonlyArray<readonly [keyof typeof adapters, GenerateRequest, string, RegExp]> = [
    ["openai", requestWith(user(text, pdfUrl)), "messages[0].content[1]", /takes files as bytes, not by URL/],
    ["openai", requestWith(user(filePart({ mediaType: "image/bmp", data: PNG }))), "messages[0].content[0]", /does not accept images of type 'image\/bmp'/],
    ["openai", requestWith(user(text), { role: "tool", toolCallId: "c", content: [image] }), "messages[1].content[0]", /tool messages/],
    ["responses", requestWith({ role: "system", content: [image] }), "messages[0].content[0]", /system messages/],
    ["anthropic", requestWith(user(text), { role: "assistant", content: [image] }), "messages[1].content[0]", /assistant messages/],
    ["anthropic", requestWith(user(filePart({ mediaType: "application/msword", data: TEXT }))), "messages[0].content[0]", /files of type 'application\/msword'/],
    ["anthropic", requestWith(user(filePart({ mediaType: "text/plain", url: "https://example.com/a.txt" }))), "messages[0].content[0]", /fetches only application\/pdf files by URL/],
    ["gemini", requestWith(user(filePart({ mediaType: "image/png", url: "ftp://example.com/a.png" }))), "messages[0].content[0]", /only from https: \/ http: \/ gs: URLs/],
    ["gemini", requestWith(user(text), { role: "tool", toolCallId: "c", content: [image] }), "messages[1].content[0]", /tool messages/],
    ["bedrock", requestWith(user(imageUrl)), "messages[0].content[0]", /only from s3: URLs/],
    ["bedrock", requestWith(user(filePart({ mediaType: "image/heic", data: PNG }))), "messages[0].content[0]", /images of type 'image\/heic'/]
  ]
  for (const [format, request, param, message] of cases) {
    it.live(`${format}: ${param} — ${message.source}`, () =>
      Effect.gen(function*() {
        const { bodies, result } = yield* sent(format, request)
        expect(bodies).toHaveLength(0)
        const error = Either.isLeft(result) ? result.left : undefined
        expect(error?._tag).toBe("UnsupportedRequest")
        if (error?._tag !== "UnsupportedRequest") return
        expect(error.param).toBe(param)
        expect(error.message).toMatch(message)
        expect(actionOf(error)).toBe("reroute")
        expect(isRetryable(error)).toBe(false)
        expect(isProviderHealthFailure(error)).toBe(false)
      }))
  }

  it.live("streams refuse the same way, before sending", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, {}))
      const provider = yield* OpenAi.make({ apiKey: KEY, baseUrl: server.url })
      const result = yield* Effect.either(Stream.runDrain(provider.stream(requestWith(user(pdfUrl)))))
      expect(Either.isLeft(result) && result.left._tag).toBe("UnsupportedRequest")
      expect(server.requests).toHaveLength(0)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))
})

describe("a stream whose exchange failed", () => {
  it.live("fails again when pulled again, without sending the request a second time", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(400, { error: { message: "bad", type: "invalid_request_error", param: null, code: null } }))
      const provider = yield* OpenAi.make({ apiKey: KEY, baseUrl: server.url })
      const pull = yield* toPull(provider.stream(requestWith(user(text))))
      const first = yield* Effect.flip(pull)
      const second = yield* Effect.flip(pull)
      expect([first, second].map((e) => Option.getOrUndefined(e)?._tag)).toEqual(["BadRequest", "BadRequest"])
      expect(server.requests).toHaveLength(1)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))
})

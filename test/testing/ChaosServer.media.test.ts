/**
 * Image and file content parts on every wire the ChaosServer serves, sent by each official SDK in its
 * own native shape (OpenAI `chat.completions` and `responses`, `@anthropic-ai/sdk` `messages`,
 * `@google/genai` `generateContent`, `@aws-sdk/client-bedrock-runtime` `ConverseCommand`): what the
 * server understood (`stats.log[…].media`), the 400s the real providers send for parts they refuse,
 * and media in the prompt-token estimate (usage and the route's `contextWindow`) — over real HTTP.
 */
import type Anthropic from "@anthropic-ai/sdk"
import { BedrockRuntimeClient, type ContentBlock, ConverseCommand, type Message as BedrockMessage } from "@aws-sdk/client-bedrock-runtime"
import { ApiError, GoogleGenAI } from "@google/genai"
import { describe, expect, it } from "@effect/vitest"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type { ChaosServerHandle, MediaSeen } from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import { anthropic, openai, rejection } from "./helpers.js"

type AnthropicApiError = InstanceType<typeof Anthropic.APIError>

/** A 1×1 PNG (its base64 ends in `==`). */
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
const PNG_BYTES = Buffer.from(PNG, "base64")
/** A tiny PDF (its base64 ends in a single `=`). */
const PDF_BYTES = Buffer.from("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
const PDF = PDF_BYTES.toString("base64")
const IMAGE_URL = "https://example.com/cat.png"
const PROMPT = "What is in this image and this file?"

const png: MediaSeen = { kind: "image", mediaType: "image/png", source: "base64", bytes: PNG_BYTES.length }
const pdf: MediaSeen = { kind: "file", mediaType: "application/pdf", source: "base64", bytes: PDF_BYTES.length }
const urlImage: MediaSeen = { kind: "image", mediaType: null, source: "url", bytes: null }

const serve = (scenario: Scenario.Scenario = {}) => ChaosServer.make({ scenario })
const lastMedia = (server: ChaosServerHandle) => Effect.map(server.stats, (stats) => stats.log.at(-1)?.media)

const genai = (server: ChaosServerHandle) => new GoogleGenAI({ apiKey: "AIza-chaos-test", httpOptions: { baseUrl: server.url } })

const bedrock = (server: ChaosServerHandle) =>
  new BedrockRuntimeClient({
    region: "us-east-1",
    endpoint: server.url,
    credentials: { accessKeyId: "AKIDCHAOSTEST", secretAccessKey: "chaos-secret" },
    requestHandler: new NodeHttpHandler(),
    maxAttempts: 1
  })
const BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"

describe("ChaosServer: what each SDK's image and file parts are understood as", () => {
  it.scopedLive("OpenAI chat.completions: a data-URL PNG, an image URL and a PDF file part", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* Effect.promise(() =>
        openai(server).chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{
            role: "user",
            content: [
              { type: "text", text: PROMPT },
              { type: "image_url", image_url: { url: `data:image/png;base64,${PNG}`, detail: "low" } },
              { type: "image_url", image_url: { url: IMAGE_URL } },
              { type: "file", file: { file_data: `data:application/pdf;base64,${PDF}`, filename: "report.pdf" } },
              { type: "file", file: { file_id: "file-abc123" } }
            ]
          }]
        })
      )
      expect(yield* lastMedia(server)).toEqual([png, urlImage, pdf, { kind: "file", mediaType: null, source: "file_id", bytes: null }])
    }))

  it.scopedLive("OpenAI responses: input_image (data URL, URL, file id) and input_file", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* Effect.promise(() =>
        openai(server).responses.create({
          model: "gpt-4.1-mini",
          input: [{
            role: "user",
            content: [
              { type: "input_text", text: PROMPT },
              { type: "input_image", image_url: `data:image/png;base64,${PNG}`, detail: "auto" },
              { type: "input_image", image_url: IMAGE_URL, detail: "high" },
              { type: "input_image", file_id: "file-img1", detail: "auto" },
              { type: "input_file", file_data: `data:application/pdf;base64,${PDF}`, filename: "report.pdf" },
              { type: "input_file", file_url: "https://example.com/report.pdf" }
            ]
          }]
        })
      )
      expect(yield* lastMedia(server)).toEqual([
        png,
        urlImage,
        { kind: "image", mediaType: null, source: "file_id", bytes: null },
        pdf,
        { kind: "file", mediaType: "application/pdf", source: "url", bytes: null }
      ])
    }))

  it.scopedLive("Anthropic messages: base64 and URL images, PDF and text documents, an image in a tool_result", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* Effect.promise(() =>
        anthropic(server).messages.create({
          model: "claude-haiku-4-5",
          max_tokens: 256,
          messages: [
            { role: "user", content: "Take a screenshot." },
            { role: "assistant", content: [{ type: "tool_use", id: "toolu_01", name: "screenshot", input: {} }] },
            {
              role: "user",
              content: [
                { type: "tool_result", tool_use_id: "toolu_01", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: PNG } }] },
                { type: "text", text: PROMPT },
                { type: "image", source: { type: "url", url: IMAGE_URL } },
                { type: "document", source: { type: "base64", media_type: "application/pdf", data: PDF }, title: "Report" },
                { type: "document", source: { type: "text", media_type: "text/plain", data: "héllo" } }
              ]
            }
          ]
        })
      )
      expect(yield* lastMedia(server)).toEqual([
        png,
        urlImage,
        pdf,
        { kind: "file", mediaType: "text/plain", source: "text", bytes: 6 }
      ])
    }))

  it.scopedLive("Gemini generateContent: inlineData image and PDF, fileData from the Files API and a URL", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* Effect.promise(() =>
        genai(server).models.generateContent({
          model: "gemini-2.5-flash",
          contents: [{
            role: "user",
            parts: [
              { text: PROMPT },
              { inlineData: { mimeType: "image/png", data: PNG } },
              { inlineData: { mimeType: "application/pdf", data: PDF } },
              { fileData: { mimeType: "image/jpeg", fileUri: "https://generativelanguage.googleapis.com/v1beta/files/abc123" } },
              { fileData: { mimeType: "video/mp4", fileUri: "https://www.youtube.com/watch?v=9hE5-98ZeCg" } }
            ]
          }]
        })
      )
      expect(yield* lastMedia(server)).toEqual([
        png,
        pdf,
        { kind: "image", mediaType: "image/jpeg", source: "file_id", bytes: null },
        { kind: "file", mediaType: "video/mp4", source: "url", bytes: null }
      ])
    }))

  it.scopedLive("Bedrock ConverseCommand: image and document bytes, an S3 image, an image in a toolResult", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const messages: Array<BedrockMessage> = [
        { role: "user", content: [{ text: "Take a screenshot." }] },
        { role: "assistant", content: [{ toolUse: { toolUseId: "tooluse_1", name: "screenshot", input: {} } }] },
        {
          role: "user",
          content: [
            { toolResult: { toolUseId: "tooluse_1", content: [{ image: { format: "png", source: { bytes: new Uint8Array(PNG_BYTES) } } }] } },
            { text: PROMPT },
            { document: { format: "pdf", name: "report", source: { bytes: new Uint8Array(PDF_BYTES) } } },
            { image: { format: "jpeg", source: { s3Location: { uri: "s3://bucket/cat.jpg" } } } }
          ]
        }
      ]
      yield* Effect.promise(() => bedrock(server).send(new ConverseCommand({ modelId: BEDROCK_MODEL, messages })))
      expect(yield* lastMedia(server)).toEqual([png, pdf, { kind: "image", mediaType: "image/jpeg", source: "s3", bytes: null }])
    }))
})

describe("ChaosServer: media parts the real providers refuse are 400s in their own shape", () => {
  it.scopedLive("Anthropic: an image/bmp image is a BadRequestError naming the allowed media types", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const bmp = { type: "image", source: { type: "base64", media_type: "image/bmp", data: PNG } } as unknown as Anthropic.ImageBlockParam
      const error = yield* rejection(() =>
        anthropic(server).messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: [{ role: "user", content: [bmp] }] })
      )
      const apiError = error as AnthropicApiError
      expect(apiError.status).toBe(400)
      expect(apiError.type).toBe("invalid_request_error")
      expect(apiError.apiMessage).toBe(
        "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
      )
      const entry = (yield* server.stats).log.at(-1)
      expect(entry).toMatchObject({ fault: "invalid_request", source: "server", status: 400, media: [] })
    }))

  it.scopedLive("Anthropic: base64 data that is not base64, in a tool_result", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const error = yield* rejection(() =>
        anthropic(server).messages.create({
          model: "claude-haiku-4-5",
          max_tokens: 64,
          messages: [{
            role: "user",
            content: [{
              type: "tool_result",
              tool_use_id: "toolu_01",
              content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "not base64!" } }]
            }]
          }]
        })
      )
      expect((error as AnthropicApiError).status).toBe(400)
      expect((error as AnthropicApiError).apiMessage).toBe("messages.0.content.0.tool_result.content.0.image.source.base64: invalid base64 data")
    }))

  it.scopedLive("Bedrock: a document without a name is a ValidationException (400)", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const messages: Array<BedrockMessage> = [{
        role: "user",
        content: [{ text: PROMPT }, { document: { format: "pdf", name: undefined, source: { bytes: new Uint8Array(PDF_BYTES) } } }]
      }]
      const error = yield* Effect.flip(Effect.tryPromise(() => bedrock(server).send(new ConverseCommand({ modelId: BEDROCK_MODEL, messages }))))
      expect(error.cause).toMatchObject({
        name: "ValidationException",
        $metadata: { httpStatusCode: 400 },
        message:
          "1 validation error detected: Value null at 'messages.1.member.content.2.member.document.name' failed to satisfy constraint: Member must not be null"
      })
    }))

  it.scopedLive("Bedrock: an image format outside png|jpeg|gif|webp is a ValidationException (400)", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const bmp = { image: { format: "bmp", source: { bytes: new Uint8Array(PNG_BYTES) } } } as unknown as ContentBlock
      const messages: Array<BedrockMessage> = [{ role: "user", content: [{ text: PROMPT }, bmp] }]
      const error = yield* Effect.flip(Effect.tryPromise(() => bedrock(server).send(new ConverseCommand({ modelId: BEDROCK_MODEL, messages }))))
      expect(error.cause).toMatchObject({ name: "ValidationException", $metadata: { httpStatusCode: 400 } })
      expect((error.cause as Error).message).toContain("Member must satisfy enum value set: [gif, jpeg, png, webp]")
    }))

  it.scopedLive("OpenAI: a data URL whose payload is not base64 is a BadRequestError with code invalid_value", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const error = yield* rejection(() =>
        openai(server).chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,@@@@" } }] }]
        })
      )
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      expect(error).toMatchObject({ status: 400, code: "invalid_value", param: "messages[0].content[0].image_url.url" })
    }))

  it.scopedLive("Gemini: inline data that is not base64 is an ApiError 400 INVALID_ARGUMENT", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const error = yield* rejection(() =>
        genai(server).models.generateContent({
          model: "gemini-2.5-flash",
          contents: [{ role: "user", parts: [{ text: PROMPT }, { inlineData: { mimeType: "image/png", data: "not base64!" } }] }]
        })
      )
      expect(error).toBeInstanceOf(ApiError)
      expect((error as ApiError).status).toBe(400)
      const body = JSON.parse((error as ApiError).message) as { readonly error: { readonly status: string; readonly message: string } }
      expect(body.error).toEqual({
        code: 400,
        status: "INVALID_ARGUMENT",
        message: "Invalid value at 'contents[0].parts[1].inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"not base64!\""
      })
    }))
})

describe("ChaosServer: media in the prompt-token estimate", () => {
  const withImages = (count: number): Array<Anthropic.ContentBlockParam> => [
    { type: "text", text: PROMPT },
    ...Array.from({ length: count }, () => ({ type: "image" as const, source: { type: "base64" as const, media_type: "image/png" as const, data: PNG } }))
  ]

  it.scopedLive("usage counts 1,600 input tokens per image on top of the text", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const client = anthropic(server)
      const send = (count: number) =>
        Effect.promise(() => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: [{ role: "user", content: withImages(count) }] }))
      const textOnly = yield* send(0)
      const twoImages = yield* send(2)
      expect(textOnly.usage.input_tokens).toBe(Math.ceil(PROMPT.length / 4))
      expect(twoImages.usage.input_tokens).toBe(textOnly.usage.input_tokens + 2 * 1600)
    }))

  it.scopedLive("a small contextWindow: the text fits, the text with images is the context-length 400", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { contextWindow: 2_000 } })
      const client = anthropic(server)
      const send = (count: number) => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: [{ role: "user", content: withImages(count) }] })
      const fits = yield* Effect.promise(() => send(0))
      expect(fits.content[0]?.type).toBe("text")
      const error = yield* rejection(() => send(2))
      const apiError = error as AnthropicApiError
      expect(apiError.status).toBe(400)
      expect(apiError.apiMessage).toBe(`prompt is too long: ${Math.ceil(PROMPT.length / 4) + 3_200 + 64} tokens > 2000 maximum`)
      const log = (yield* server.stats).log
      expect(log.map((e) => [e.status, e.fault, e.source])).toEqual([[200, "ok", "default"], [400, "http_error", "context"]])
      expect(log[1]?.media).toEqual([png, png])
    }))

  it.scopedLive("the same window on the OpenAI wire: context_length_exceeded once the images are added", () =>
    Effect.gen(function*() {
      const server = yield* serve({ default: { contextWindow: 1_000 } })
      const client = openai(server)
      const content = (images: number): Array<OpenAI.ChatCompletionContentPart> => [
        { type: "text", text: PROMPT },
        ...Array.from({ length: images }, () => ({ type: "image_url" as const, image_url: { url: IMAGE_URL } }))
      ]
      yield* Effect.promise(() => client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: content(0) }] }))
      const error = yield* rejection(() => client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: content(1) }] }))
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      expect(error).toMatchObject({ status: 400, code: "context_length_exceeded" })
    }))
})

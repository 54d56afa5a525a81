/**
 * Images and files end to end over real HTTP against the ChaosServer, which reads each wire format's
 * media parts in that format's own shape (taken from the official SDKs' types) and logs what it
 * understood: every adapter's parts arrive as sent, streamed or not; a route that cannot carry a part
 * is passed over without a request; the chain's context pre-check counts images.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import { filePart, type GenerateRequest, type Message, type ProviderShape } from "../../src/Provider.js"
import type { ProviderError } from "../../src/Errors.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as Bedrock from "../../src/providers/Bedrock.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { settle } from "../testing/helpers.js"

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)

/** A PNG header saying 2000×2000 (≈ 1,600 prompt tokens after the providers' downscaling), and a PDF. */
const pngOf = (width: number, height: number) => {
  const header = Buffer.alloc(33)
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]).copy(header)
  header.writeUInt32BE(width, 16)
  header.writeUInt32BE(height, 20)
  header[24] = 8
  header[25] = 6
  return header
}
const PNG = pngOf(2000, 2000)
const PDF = Buffer.from("%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF")

const question = (...parts: ReadonlyArray<ReturnType<typeof filePart>>): Message => ({
  role: "user",
  content: [{ _tag: "Text", text: "Describe these." }, ...parts]
})

type Format = "openai" | "responses" | "anthropic" | "gemini" | "bedrock"
const apiOf: Record<Format, Scenario.Api> = {
  openai: "openai",
  responses: "responses",
  anthropic: "anthropic",
  gemini: "gemini",
  bedrock: "bedrock"
}

const adapterOf = (format: Format, server: ChaosServer.ChaosServerHandle): Effect.Effect<ProviderShape<ProviderError>, unknown, HttpClient.HttpClient> => {
  const apiKey = Redacted.make("sk-content-e2e")
  const made = (() => {
    switch (format) {
      case "openai":
        return OpenAi.make({ apiKey, baseUrl: server.openAiBaseUrl })
      case "responses":
        return OpenAiResponses.make({ apiKey, baseUrl: server.openAiBaseUrl })
      case "anthropic":
        return Anthropic.make({ apiKey, baseUrl: server.anthropicBaseUrl })
      case "gemini":
        return Gemini.make({ apiKey, baseUrl: `${server.url}/v1beta` })
      case "bedrock":
        return Bedrock.make({
          region: "eu-west-1",
          baseUrl: server.url,
          credentials: { accessKeyId: "AKIDCONTENT", secretAccessKey: Redacted.make("aws-secret-content") }
        })
    }
  })()
  return made
}

const mediaLog = (server: ChaosServer.ChaosServerHandle) =>
  Effect.map(server.stats, (stats) => stats.log.map((entry) => entry.media.map((m) => [m.kind, m.mediaType, m.source, m.bytes])))

describe("images and files over HTTP, every wire format", () => {
  for (const format of ["openai", "responses", "anthropic", "gemini", "bedrock"] as const) {
    it.scoped(`${format}: an image and a PDF reach the server as sent, generate and stream; the usage counts the image`, () =>
      Effect.gen(function*() {
        const server = yield* ChaosServer.make({
          scenario: { routes: [{ name: "r", api: apiOf[format], model: "vision-model", content: { kind: "text", text: "A chart and a report." } }] }
        })
        const provider = yield* adapterOf(format, server)
        const request: GenerateRequest = {
          model: "vision-model",
          maxTokens: 64,
          messages: [question(
            filePart({ mediaType: "image/png", data: PNG }),
            filePart({ mediaType: "application/pdf", data: PDF, filename: "report.pdf" })
          )]
        }
        const answer = yield* provider.generate(request)
        expect(answer.text).toBe("A chart and a report.")
        // The server counts an image as its providers do (≥ 1,000 tokens), far above the text.
        expect(answer.usage.inputTokens).toBeGreaterThan(1000)
        const streamed = yield* Stream.runCollect(provider.stream(request))
        expect([...streamed].at(-1)?._tag).toBe("Finish")
        const parts = [["image", "image/png", "base64", PNG.length], ["file", "application/pdf", "base64", PDF.length]]
        expect(yield* mediaLog(server)).toEqual([parts, parts])
      }).pipe(Effect.provide(Env)))
  }
})

describe("images and files in a chain over HTTP", () => {
  it.scoped("a PDF by URL: Chat Completions cannot carry it (no request), Anthropic fetches it — answered by the fallback, history says why", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [
            { name: "primary", api: "openai", model: "primary-model", content: { kind: "text", text: "from primary" } },
            { name: "secondary", api: "anthropic", model: "secondary-model", content: { kind: "text", text: "from secondary" } }
          ]
        }
      })
      const chain = yield* Fallback.make({
        routes: [
          { name: "primary", provider: yield* adapterOf("openai", server), model: "primary-model" },
          { name: "secondary", provider: yield* adapterOf("anthropic", server), model: "secondary-model" }
        ]
      })
      const result = yield* settle(yield* Effect.fork(chain.generate({
        messages: [question(filePart({ mediaType: "application/pdf", url: "https://example.com/q3.pdf" }))],
        maxTokens: 64
      })))
      expect(result.value).toBe("from secondary")
      expect(result.degraded).toBe(true)
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "UnsupportedRequest"], ["secondary", "success"]])
      expect(result.attempts[0]?.message).toMatch(/OpenAI Chat Completions takes files as bytes, not by URL/)
      const stats = yield* server.stats
      expect(stats.log.map((entry) => [entry.route, entry.media.map((m) => [m.kind, m.source])])).toEqual([["secondary", [["file", "url"]]]])
    }).pipe(Effect.provide(Env)))

  it.scoped("no route can carry it: AllRoutesFailed with UnsupportedRequest last, and nothing sent", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: { routes: [{ name: "only", api: "bedrock", model: "only-model", content: { kind: "text", text: "x" } }] }
      })
      const chain = yield* Fallback.make({ routes: [{ name: "only", provider: yield* adapterOf("bedrock", server), model: "only-model" }] })
      const failure = yield* settle(yield* Effect.fork(Effect.flip(chain.generate({
        messages: [question(filePart({ mediaType: "image/png", url: "https://example.com/a.png" }))],
        maxTokens: 64
      }))))
      expect(failure._tag === "AllRoutesFailed" && [failure.lastError?._tag, failure.attempts.length]).toEqual(["UnsupportedRequest", 1])
      expect((yield* server.stats).total).toBe(0)
    }).pipe(Effect.provide(Env)))

  it.scoped("the context pre-check counts images: two 2000×2000 images do not fit a 3,000-token window, the larger route answers", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [
            { name: "small", api: "anthropic", model: "small-model", content: { kind: "text", text: "from small" } },
            { name: "large", api: "anthropic", model: "large-model", content: { kind: "text", text: "from large" } }
          ]
        }
      })
      const anthropic = yield* adapterOf("anthropic", server)
      const chain = yield* Fallback.make({
        routes: [
          { name: "small", provider: anthropic, model: "small-model", contextWindow: 3_000 },
          { name: "large", provider: anthropic, model: "large-model", contextWindow: 200_000 }
        ]
      })
      const image = () => filePart({ mediaType: "image/png", data: PNG })
      const twoImages = yield* settle(yield* Effect.fork(chain.generate({ messages: [question(image(), image())], maxTokens: 64 })))
      expect(twoImages.route).toBe("large")
      expect(twoImages.attempts.map((a) => [a.route, a.outcome])).toEqual([["small", "Skipped"], ["large", "success"]])
      expect(twoImages.attempts[0]?.message).toMatch(/context window 3000 cannot hold ~3\d{3} tokens/)
      // One image fits the small route: the estimate is per image, not per base64 character.
      const oneImage = yield* settle(yield* Effect.fork(chain.generate({ messages: [question(image())], maxTokens: 64 })))
      expect(oneImage.route).toBe("small")
    }).pipe(Effect.provide(Env)))
})

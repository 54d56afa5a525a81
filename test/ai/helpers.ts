/**
 * Shared fixtures of the @effect/ai bridge tests: @effect/ai's own OpenAI (Responses) and Anthropic
 * models pointed at a ChaosServer over real HTTP, on the library's undici transport.
 */
import { AnthropicClient, AnthropicLanguageModel } from "@effect/ai-anthropic"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type { ChaosServerHandle } from "../../src/testing/ChaosServer.js"
import * as Transport from "../../src/Transport.js"

export const OPENAI_KEY = "sk-ai-bridge-openai-0123456789"
export const ANTHROPIC_KEY = "sk-ant-ai-bridge-0123456789"

/** Which @effect/ai provider package serves a route. */
export type AiApi = "openai" | "anthropic"

/** @effect/ai-openai's Responses model against the server (`POST /v1/responses`). */
export const openAiModel = (server: ChaosServerHandle, model: string) =>
  OpenAiLanguageModel.model(model).pipe(
    Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make(OPENAI_KEY), apiUrl: server.openAiBaseUrl })),
    Layer.provide(Transport.layer())
  )

/** @effect/ai-anthropic's Messages model against the server. */
export const anthropicModel = (server: ChaosServerHandle, model: string) =>
  AnthropicLanguageModel.model(model).pipe(
    Layer.provide(AnthropicClient.layer({ apiKey: Redacted.make(ANTHROPIC_KEY), apiUrl: server.anthropicBaseUrl })),
    Layer.provide(Transport.layer())
  )

export const aiModel = (api: AiApi, server: ChaosServerHandle, model: string) =>
  api === "openai" ? openAiModel(server, model) : anthropicModel(server, model)

/** The ChaosServer `api` that @effect/ai's provider package speaks. */
export const chaosApi = (api: AiApi) => (api === "openai" ? "responses" as const : "anthropic" as const)

export const otherApi = (api: AiApi): AiApi => (api === "openai" ? "anthropic" : "openai")

/** `[route, at, status]` of every request the server saw, in order. */
export const servedBy = (server: ChaosServerHandle) =>
  Effect.map(server.stats, (stats) => stats.log.map((entry) => [entry.route, entry.at, entry.status] as const))

/** Runs a stream to its end, keeping the elements and the failure (if any). */
export const collectEither = <A, E, R>(stream: Stream.Stream<A, E, R>) =>
  Effect.map(Stream.runCollect(Stream.either(stream)), (chunk) => {
    const all = Chunk.toReadonlyArray(chunk)
    return {
      elements: all.flatMap((e) => (Either.isRight(e) ? [e.right] : [])),
      failure: all.flatMap((e) => (Either.isLeft(e) ? [e.left] : []))[0]
    }
  })

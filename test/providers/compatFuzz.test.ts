/**
 * Azure OpenAI and the OpenAI-compatible presets classify with their own rules on top of the shared
 * ones (`innererror`, `metadata.error_type`, `availability`, top-level vLLM errors, numeric codes): fed
 * arbitrary statuses, error objects whose every field is any JSON type, and SSE frames carrying them,
 * every outcome is a typed error or a valid answer — never a defect (seeded).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import fc from "fast-check"
import type { GenerateRequest, ProviderShape } from "../../src/Provider.js"
import * as AzureOpenAi from "../../src/providers/AzureOpenAi.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import { jsonReply, mockClient, type Reply, sseReply } from "../utils/reply.js"

const key = Redacted.make("sk-compat-fuzz-key")
const base = "http://mock.invalid/v1"

const adapters: Record<string, Effect.Effect<ProviderShape, unknown, HttpClient.HttpClient>> = {
  "azure chat": AzureOpenAi.make({ endpoint: "http://mock.invalid", apiKey: key }),
  "azure responses": AzureOpenAi.make({ endpoint: "http://mock.invalid", apiKey: key, api: "responses" }),
  openrouter: OpenAiCompatible.make("openrouter", { apiKey: key, baseUrl: base }),
  vllm: OpenAiCompatible.make("vllm", { baseUrl: base }),
  ollama: OpenAiCompatible.make("ollama", { baseUrl: base }),
  groq: OpenAiCompatible.make("groq", { apiKey: key, baseUrl: base }),
  together: OpenAiCompatible.make("together", { apiKey: key, baseUrl: base })
}

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }

const anyJson = fc.oneof(fc.json(), fc.constant("null"), fc.integer({ min: 100, max: 999 }).map(String))
/** An error object whose fields (the ones the rules read) hold any JSON type. */
const errorObject = fc.record({
  message: anyJson,
  type: anyJson,
  code: anyJson,
  metadata: fc.oneof(anyJson, anyJson.map((v) => `{"error_type":${v},"provider_code":${v},"raw":${v},"reasons":${v}}`)),
  innererror: fc.oneof(anyJson, anyJson.map((v) => `{"code":${v},"content_filter_result":${v}}`)),
  availability: fc.oneof(anyJson, anyJson.map((v) => `{"code":${v},"retry_after":${v}}`))
}).map((e) => `{"message":${e.message},"type":${e.type},"code":${e.code},"metadata":${e.metadata},"innererror":${e.innererror},"availability":${e.availability}}`)

const body = fc.oneof(
  errorObject.map((e) => `{"error":${e}}`),
  errorObject,
  errorObject.map((e) => `{"object":"error",${e.slice(1)}`),
  anyJson.map((v) => `{"error":${v}}`),
  errorObject.map((e) => `{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"partial"},"finish_reason":"error","error":${e}}]}`),
  fc.string()
)

const frame = fc.oneof(
  errorObject.map((e) => `data: {"error":${e},"choices":[{"delta":{"content":""},"finish_reason":"error"}]}\n\n`),
  errorObject.map((e) => `event: error\ndata: ${e}\n\n`),
  fc.constant(`data: {"id":"","model":"","choices":[{"delta":{"content":"hi"},"finish_reason":null,"content_filter_results":{}}]}\n\n`),
  fc.constant(`data: {"choices":[{"delta":{},"finish_reason":"content_filter"}]}\n\n`),
  fc.constant("data: [DONE]\n\n"),
  fc.string()
)

const reply: fc.Arbitrary<Reply> = fc.oneof(
  fc.tuple(fc.integer({ min: 200, max: 599 }), body, fc.dictionary(
    fc.constantFrom("retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-ratelimit-reset", "apim-request-id", "x-generation-id"),
    fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String))
  )).map(([status, b, headers]) => jsonReply(status, b, headers)),
  fc.tuple(fc.array(frame, { maxLength: 6 }), fc.boolean()).map(([frames, breakAfter]) => sseReply(frames, {}, { breakAfter }))
)

describe("Azure and the presets: arbitrary replies never become a defect", () => {
  for (const [name, make] of Object.entries(adapters)) {
    it(`${name}: generate and stream`, () =>
      fc.assert(
        fc.asyncProperty(reply, fc.boolean(), async (r, streamMode) => {
          const program = make.pipe(
            Effect.provideService(HttpClient.HttpClient, mockClient(r)),
            Effect.flatMap((provider) => (streamMode ? Stream.runDrain(provider.stream(request)) : Effect.asVoid(provider.generate(request))))
          )
          const exit = await Effect.runPromiseExit(program)
          if (Exit.isFailure(exit)) {
            expect(Cause.isDie(exit.cause)).toBe(false)
            expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
            expect(JSON.stringify(Cause.failureOption(exit.cause))).not.toContain("sk-compat-fuzz-key")
          }
        }),
        { numRuns: 150, seed: 20261206 }
      ))
  }
})

/**
 * The whole fault list of the ChaosServer, over real HTTP (undici sockets on 127.0.0.1), through the
 * real adapters: every fault maps to the right tag, action and retryability, for every wire format
 * (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages).
 * The same table runs in-process against the ChaosProvider in test/testing/ChaosProvider.test.ts.
 * (Outcomes only — timing is asserted under TestClock elsewhere; the phase timeouts here are short
 * real ones because sockets do not follow TestClock.)
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as Bedrock from "../../src/providers/Bedrock.js"
import * as Gemini from "../../src/providers/Gemini.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as OpenAiResponses from "../../src/providers/OpenAiResponses.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Timeouts from "../../src/Timeouts.js"
import * as Transport from "../../src/Transport.js"
import { type Api, assertCase, caseTitle, failureOf, faultCases } from "../utils/faultCases.js"

const SECRET = "sk-chaos-e2e-secret-key"

const providerFor = (api: Api, server: ChaosServer.ChaosServerHandle) => {
  switch (api) {
    case "openai":
      return OpenAi.make({ apiKey: Redacted.make(SECRET), baseUrl: server.openAiBaseUrl })
    case "responses":
      return OpenAiResponses.make({ apiKey: Redacted.make(SECRET), baseUrl: server.openAiBaseUrl, name: "responses" })
    case "anthropic":
      return Anthropic.make({ apiKey: Redacted.make(SECRET), baseUrl: server.anthropicBaseUrl })
    case "gemini":
      return Gemini.make({ apiKey: Redacted.make(SECRET), baseUrl: `${server.url}/v1beta`, name: "gemini" })
    case "bedrock":
      return Bedrock.make({
        region: "us-east-1",
        baseUrl: server.url,
        name: "bedrock",
        credentials: { accessKeyId: "AKIDCHAOSE2E", secretAccessKey: Redacted.make(SECRET) }
      })
  }
}

const timeouts: Timeouts.TimeoutOptions = { attempt: "1 second", headers: "500 millis", firstToken: "500 millis", idle: "500 millis" }

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)

for (const api of ["openai", "responses", "anthropic", "gemini", "bedrock"] as const) {
  describe(`ChaosServer faults → typed errors over real HTTP (${api})`, () => {
    it.live.each(faultCases.map((c) => [caseTitle(c), c] as const))(
      "%s",
      ([, testCase]) =>
        Effect.gen(function*() {
          const server = yield* ChaosServer.make({ scenario: { default: { script: [testCase.fault] } } })
          const provider = yield* providerFor(api, server)
          const error = yield* failureOf(provider, api, testCase, timeouts)
          assertCase(error, api, testCase, SECRET)
          const stats = yield* server.stats
          // Exactly one request reached the server, and it was the scripted fault.
          expect(stats.log.map((entry) => entry.fault)).toEqual([testCase.fault.kind])
        }).pipe(Effect.scoped, Effect.provide(Env))
    )
  })
}

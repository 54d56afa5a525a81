/**
 * Options are checked where a value is built: each bad option is a typed `InvalidOptions` naming the
 * component and the option, with a message a user can act on — never a defect, never a failure at the
 * first call, and never a retry. One case per option.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as DegradedMode from "../src/DegradedMode.js"
import * as Fallback from "../src/Fallback.js"
import * as Policy from "../src/Policy.js"
import * as Anthropic from "../src/providers/Anthropic.js"
import * as OpenAi from "../src/providers/OpenAi.js"
import * as Mock from "../src/testing/MockProvider.js"
import * as Transport from "../src/Transport.js"

const State = Layer.mergeAll(Policy.layerState, DegradedMode.layer, Transport.layer())
const mock = Mock.make({ otherwise: Mock.succeed("ok") })
const good: Fallback.Route = { name: "primary", provider: mock, model: "m" }

const chainCases: ReadonlyArray<{ readonly options: Fallback.FallbackOptions; readonly option: string; readonly message: string }> = [
  { options: { routes: [] }, option: "routes", message: "routes must list at least one route" },
  { options: { routes: [{ ...good, name: " " }] }, option: "routes[0].name", message: "routes[0].name must be a non-empty label" },
  { options: { routes: [good, { ...good }] }, option: "routes[1].name", message: `routes[1].name "primary" names another route too` },
  { options: { routes: [{ ...good, model: "" }] }, option: "routes[0].model", message: "routes[0].model must be a non-empty model id" },
  { options: { routes: [{ ...good, maxTokens: 0 }] }, option: "routes[0].maxTokens", message: "routes[0].maxTokens must be an integer ≥ 1, got 0" },
  { options: { routes: [{ ...good, maxTokens: 2.5 }] }, option: "routes[0].maxTokens", message: "routes[0].maxTokens must be an integer ≥ 1, got 2.5" },
  { options: { routes: [{ ...good, contextWindow: -1 }] }, option: "routes[0].contextWindow", message: "routes[0].contextWindow must be an integer ≥ 1, got -1" },
  { options: { routes: [{ ...good, weight: 0 }] }, option: "routes[0].weight", message: "routes[0].weight must be a positive number, got 0" },
  { options: { routes: [{ ...good, policy: { deadline: 0 } }] }, option: "routes[0].policy.deadline", message: "routes[0].policy.deadline must be positive" },
  { options: { routes: [good], deadline: 0 }, option: "deadline", message: "deadline must be positive" },
  { options: { routes: [good], deadline: "-5 seconds" as never }, option: "deadline", message: "deadline must be positive, got 0" },
  { options: { routes: [good], deadline: "30 secnds" as never }, option: "deadline", message: "deadline is not a duration" },
  { options: { routes: [good], repairAttempts: -1 }, option: "repairAttempts", message: "repairAttempts must be an integer ≥ 0, got -1" },
  { options: { routes: [good], passes: 0 }, option: "passes", message: "passes must be an integer ≥ 1, got 0" },
  { options: { routes: [good], routeShare: 0 }, option: "routeShare", message: "routeShare must be a number in (0, 1], got 0" },
  { options: { routes: [good], routeShare: 1.5 }, option: "routeShare", message: "routeShare must be a number in (0, 1], got 1.5" },
  {
    options: { routes: [good], onPartialOutputFailure: "retry" as never },
    option: "onPartialOutputFailure",
    message: `onPartialOutputFailure must be "fail" or "restart", got "retry"`
  },
  { options: { routes: [good], spend: { maxCostUsd: 1 } as never }, option: "spend", message: "spend must be a budget made by Spend.budget" },
  {
    options: { routes: [good], prices: { "gpt-4o": { inputPerMTok: 1, outputPerMTok: 1 } } as never },
    option: "prices",
    message: "prices must be a price table made by Spend.prices or Spend.pricesFromFile"
  },
  { options: { routes: [good], cache: { ttl: "1 hour" } as never }, option: "cache", message: "cache must be a response cache made by ResponseCache.make" },
  { options: { routes: [{ ...good, cache: "no" as never }] }, option: "routes[0].cache", message: `routes[0].cache must be a boolean, got "no"` }
]

describe("Fallback.make refuses options it cannot work with", () => {
  for (const { message, option, options } of chainCases) {
    it.effect(`${option}: ${message}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Fallback.make(options))
        expect(error).toMatchObject({ _tag: "InvalidOptions", component: "Fallback.make", option })
        expect(error.message.startsWith(message)).toBe(true)
        expect(mock.calls).toHaveLength(0)
      }).pipe(Effect.provide(State)))
  }

  it.effect("the same options, fixed, build a chain that answers", () =>
    Effect.gen(function*() {
      const chain = yield* Fallback.make({ routes: [good], deadline: "30 seconds", routeShare: 1, repairAttempts: 0, passes: 1 })
      expect((yield* chain.generate({ messages: [{ role: "user", content: "hi" }], maxTokens: 5 })).value).toBe("ok")
    }).pipe(Effect.provide(State)))
})

const key = Redacted.make("sk-construction-test-key-123456")
const adapterCases: ReadonlyArray<{ readonly options: Partial<OpenAi.OpenAiOptions>; readonly option: string; readonly message: string }> = [
  { options: { baseUrl: "not a url" }, option: "baseUrl", message: `baseUrl must be an absolute http:// or https:// URL, got "not a url"` },
  { options: { baseUrl: "ftp://example.com/v1" }, option: "baseUrl", message: "baseUrl must be an http:// or https:// URL" },
  { options: { baseUrl: "https://example.com/v1?x=1" }, option: "baseUrl", message: "baseUrl must not carry a query or fragment" },
  { options: { name: "" }, option: "name", message: "name must be a non-empty label" },
  { options: { maxTokensCap: 0 }, option: "maxTokensCap", message: "maxTokensCap must be a positive integer, got 0" },
  { options: { maxBodyBytes: -1 }, option: "maxBodyBytes", message: "maxBodyBytes must be a positive integer, got -1" },
  { options: { maxSseEventBytes: 1.5 }, option: "maxSseEventBytes", message: "maxSseEventBytes must be a positive integer, got 1.5" },
  { options: { idempotencyHeader: "bad header" }, option: "idempotencyHeader", message: "idempotencyHeader must be an HTTP header name" },
  { options: { headers: { "x-ok": "line\nbreak" } }, option: `headers["x-ok"]`, message: `headers["x-ok"] must be text that can be sent in an HTTP header` },
  { options: { apiKey: Redacted.make("sk-with\nnewline") }, option: "apiKey", message: "apiKey must be text that can be sent in an HTTP header" }
]

describe("the HTTP adapters refuse options they cannot work with", () => {
  for (const { message, option, options } of adapterCases) {
    for (const [component, make] of [
      ["OpenAi.make", (o: OpenAi.OpenAiOptions) => OpenAi.make(o)],
      ["Anthropic.make", (o: OpenAi.OpenAiOptions) => Anthropic.make(o)]
    ] as const) {
      it.effect(`${component} ${option}: ${message}`, () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(make({ apiKey: key, ...options }))
          expect(error).toMatchObject({ _tag: "InvalidOptions", option })
          expect(error.component).toContain(component.split(".")[0])
          expect(error.message.startsWith(message)).toBe(true)
          // Never the key, even when the bad value is beside it.
          expect(error.message).not.toContain("sk-construction-test-key")
        }).pipe(Effect.provide(State)))
    }
  }

  it.effect("a key pasted into the base URL is not echoed in the message", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(OpenAi.make({ apiKey: key, baseUrl: `https://example.com/v1?key=${Redacted.value(key)}` }))
      expect(error.option).toBe("baseUrl")
      expect(error.message).not.toContain(Redacted.value(key))
    }).pipe(Effect.provide(State)))
})

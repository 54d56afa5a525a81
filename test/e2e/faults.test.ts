/**
 * The whole fault list of the ChaosServer, over real HTTP, through the real adapters: every fault maps
 * to the right tag and action, for both wire formats. (Outcomes only — no timing assertions.)
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as DegradedMode from "../../src/DegradedMode.js"
import { actionOf, type ErrorAction, isRetryable } from "../../src/Errors.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Timeouts from "../../src/Timeouts.js"
import * as Transport from "../../src/Transport.js"

type Api = "openai" | "anthropic"
type Mode = "generate" | "object" | "stream"

interface Case {
  readonly fault: Scenario.Fault
  readonly mode: Mode
  readonly tag: string
  readonly action: ErrorAction
  readonly check?: (error: { readonly _tag: string } & Record<string, unknown>) => void
}

const Answer = Schema.Struct({ answer: Schema.String })

const cases: ReadonlyArray<Case> = [
  { fault: { kind: "rate_limit", retryAfterMs: 1500 }, mode: "generate", tag: "RateLimited", action: "wait", check: (e) => expect(e["retryAfterMs"]).toBe(1500) },
  { fault: { kind: "rate_limit", retryAfterSeconds: 3 }, mode: "generate", tag: "RateLimited", action: "wait", check: (e) => expect(e["retryAfterMs"]).toBe(3000) },
  { fault: { kind: "rate_limit", retryAfterDate: 30 }, mode: "generate", tag: "RateLimited", action: "wait", check: (e) => expect(e["retryAfterMs"]).toBeGreaterThan(25_000) },
  { fault: { kind: "insufficient_quota" }, mode: "generate", tag: "QuotaExhausted", action: "reroute" },
  { fault: { kind: "billing" }, mode: "generate", tag: "QuotaExhausted", action: "reroute" },
  { fault: { kind: "overloaded" }, mode: "generate", tag: "Overloaded", action: "reroute" },
  { fault: { kind: "http_error", status: 500 }, mode: "generate", tag: "ServerError", action: "wait" },
  { fault: { kind: "http_error", status: 502 }, mode: "generate", tag: "ServerError", action: "wait" },
  { fault: { kind: "http_error", status: 503 }, mode: "generate", tag: "Overloaded", action: "reroute" },
  { fault: { kind: "http_error", status: 504 }, mode: "generate", tag: "ServerError", action: "wait" },
  { fault: { kind: "http_error", status: 400 }, mode: "generate", tag: "BadRequest", action: "stop" },
  { fault: { kind: "http_error", status: 400, reason: "context_length" }, mode: "generate", tag: "ContextLengthExceeded", action: "stop" },
  { fault: { kind: "http_error", status: 401 }, mode: "generate", tag: "Unauthorized", action: "reroute" },
  { fault: { kind: "http_error", status: 403 }, mode: "generate", tag: "Unauthorized", action: "reroute" },
  { fault: { kind: "http_error", status: 404 }, mode: "generate", tag: "NotFound", action: "reroute" },
  { fault: { kind: "http_error", status: 413 }, mode: "generate", tag: "BadRequest", action: "stop" },
  { fault: { kind: "http_error", status: 422 }, mode: "generate", tag: "BadRequest", action: "stop" },
  {
    fault: { kind: "http_error", status: 500, shouldRetry: false },
    mode: "generate",
    tag: "ServerError",
    action: "reroute",
    check: (e) => expect(e["shouldRetry"]).toBe(false)
  },
  { fault: { kind: "connection_reset" }, mode: "generate", tag: "ConnectionError", action: "wait" },
  { fault: { kind: "hang_before_headers" }, mode: "generate", tag: "Timeout", action: "wait", check: (e) => expect(e["phase"]).toBe("attempt") },
  { fault: { kind: "hang_before_headers" }, mode: "stream", tag: "Timeout", action: "wait", check: (e) => expect(e["phase"]).toBe("headers") },
  { fault: { kind: "slow_first_token", delayMs: 5_000 }, mode: "stream", tag: "Timeout", action: "wait", check: (e) => expect(e["phase"]).toBe("first-token") },
  { fault: { kind: "stall_mid_stream", afterDeltas: 1 }, mode: "stream", tag: "Timeout", action: "wait", check: (e) => expect(e["phase"]).toBe("idle") },
  { fault: { kind: "stream_error", afterDeltas: 1 }, mode: "stream", tag: "Overloaded", action: "reroute" },
  { fault: { kind: "stream_error", afterDeltas: 1, error: "server_error" }, mode: "stream", tag: "ServerError", action: "wait" },
  { fault: { kind: "stream_cut", afterDeltas: 2 }, mode: "stream", tag: "StreamInterrupted", action: "wait" },
  { fault: { kind: "malformed_json" }, mode: "generate", tag: "InvalidOutput", action: "wait", check: (e) => expect(e["reason"]).toBe("malformed-response") },
  { fault: { kind: "empty_content" }, mode: "generate", tag: "InvalidOutput", action: "reroute", check: (e) => expect(e["reason"]).toBe("empty") },
  { fault: { kind: "schema_violation", value: { answer: 42 } }, mode: "object", tag: "InvalidOutput", action: "reroute", check: (e) => expect(e["reason"]).toBe("schema") },
  { fault: { kind: "truncated" }, mode: "generate", tag: "InvalidOutput", action: "reroute", check: (e) => expect(e["reason"]).toBe("truncated") },
  { fault: { kind: "content_filter" }, mode: "generate", tag: "ContentFiltered", action: "stop" }
]

const providerFor = (api: Api, server: ChaosServer.ChaosServerHandle) =>
  api === "openai"
    ? OpenAi.make({ apiKey: Redacted.make("sk-chaos-test-key"), baseUrl: server.openAiBaseUrl })
    : Anthropic.make({ apiKey: Redacted.make("sk-ant-chaos-test"), baseUrl: server.anthropicBaseUrl })

const timeouts: Timeouts.TimeoutOptions = { attempt: "1500 millis", headers: "700 millis", firstToken: "700 millis", idle: "700 millis" }

const outcomeOf = (api: Api, testCase: Case) =>
  Effect.gen(function*() {
    const server = yield* ChaosServer.make({ scenario: { default: { script: [testCase.fault] } } })
    const provider = yield* providerFor(api, server)
    const model = api === "openai" ? "gpt-chaos" : "claude-chaos"
    if (testCase.mode === "stream") {
      const guarded = Timeouts.make(timeouts).stream(provider.stream({ model, messages: [{ role: "user", content: "hello there" }], maxTokens: 64 }), {
        provider: api,
        model,
        route: "r",
        attempt: 1
      })
      return yield* Effect.flip(Stream.runDrain(guarded))
    }
    const chain = yield* Fallback.make({
      routes: [{ name: "r", provider, model, policy: { retry: false, breaker: false, timeouts } }]
    })
    const request = { messages: [{ role: "user" as const, content: "hello there" }], maxTokens: 64 }
    const failure = testCase.mode === "object"
      ? yield* Effect.flip(chain.generateObject(Answer, request))
      : yield* Effect.flip(chain.generate(request))
    expect(failure.attempts.length).toBe(1)
    return failure.lastError!
  }).pipe(Effect.scoped)

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)

for (const api of ["openai", "anthropic"] as const) {
  describe(`ChaosServer faults → typed errors (${api})`, () => {
    it.live.each(cases.map((c) => [`${c.fault.kind}${"status" in c.fault ? ` ${c.fault.status}` : ""} (${c.mode})`, c] as const))(
      "%s",
      ([, testCase]) =>
        Effect.gen(function*() {
          const error = yield* outcomeOf(api, testCase)
          expect(error._tag).toBe(testCase.tag)
          expect(actionOf(error)).toBe(testCase.action)
          expect(error.provider).toBe(api)
          if (testCase.tag !== "ContentFiltered" && testCase.tag !== "Timeout" && testCase.tag !== "ConnectionError" && testCase.tag !== "StreamInterrupted") {
            expect(error.requestId ?? "").toMatch(/^req_/)
          }
          expect(JSON.stringify(error)).not.toContain("chaos-test")
          testCase.check?.(error as unknown as { readonly _tag: string } & Record<string, unknown>)
          expect(typeof isRetryable(error)).toBe("boolean")
        }).pipe(Effect.provide(Env))
    )
  })
}

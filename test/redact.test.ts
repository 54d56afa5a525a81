import { it as effectIt } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import * as Tracer from "effect/Tracer"
import { describe, expect, it } from "vitest"
import { redact, redactAndTruncate } from "../src/internal/redact.js"
import * as OpenAi from "../src/providers/OpenAi.js"
import * as Transport from "../src/Transport.js"
import { json, wireServer } from "./utils/wireServer.js"

describe("redaction", () => {
  it("masks configured secrets and key-shaped tokens", () => {
    const text = "Incorrect API key provided: sk-proj-abcdef123456. Also my-secret-value and Bearer abc.def.ghi.jkl"
    const out = redact(text, ["my-secret-value"])
    expect(out).not.toContain("sk-proj-abcdef123456")
    expect(out).not.toContain("my-secret-value")
    expect(out).not.toContain("abc.def.ghi.jkl")
    expect(out).toContain("Incorrect API key provided")
  })
  it("masks api-key fields in echoed JSON", () => {
    expect(redact('{"x-api-key":"anthropic-key-123"}')).toBe('{"x-api-key":"<redacted>"}')
  })
  it("truncates to the bound and says how much was cut", () => {
    const out = redactAndTruncate("a".repeat(3000), [], 100)
    expect(out.startsWith("a".repeat(100))).toBe(true)
    expect(out).toContain("2900 more chars")
  })
})

describe("keys never leave through errors, spans or logs", () => {
  // A key-shaped secret that a provider echoes back in its error body (OpenAI-compatible servers do).
  const KEY = "sk-leak-check-0123456789abcdef"

  effectIt.live("an adapter call that fails with the key echoed: not in the error, its spans, or a logged cause", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.Span> = []
      const base = yield* Effect.tracer
      const capturing = Tracer.make({
        span: (...args) => {
          const span = base.span(...args)
          spans.push(span)
          return span
        },
        context: (f, fiber) => base.context(f, fiber)
      })
      const logs: Array<string> = []
      const logger = Logger.make(({ cause, message }) => {
        logs.push(`${JSON.stringify(message)} ${Cause.pretty(cause)}`)
      })
      const server = yield* wireServer(json(401, {
        error: { message: `Incorrect API key provided: ${KEY}.`, type: "invalid_request_error", param: null, code: "invalid_api_key" }
      }))
      const provider = yield* OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${server.url}/v1` })
      const error = yield* provider.generate({ model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 5 }).pipe(
        Effect.withSpan("my-app.call"),
        Effect.tapErrorCause((cause) => Effect.logError("model call failed", cause)),
        Effect.flip,
        Effect.withTracer(capturing),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      expect(error._tag).toBe("Unauthorized")
      // The request really carried the key (so the checks below are not vacuous).
      expect(server.requests[0]?.headers["authorization"]).toBe(`Bearer ${KEY}`)
      expect(spans.length).toBeGreaterThanOrEqual(2)
      // What an exporter ships: attributes, and for a failed span its cause.
      const spanText = JSON.stringify(spans.map((span) => ({
        name: span.name,
        attributes: [...span.attributes],
        failure: span.status._tag === "Ended" && Exit.isFailure(span.status.exit) ? Cause.pretty(span.status.exit.cause) : ""
      })))
      expect(spanText).toContain("http.request.header.authorization")
      expect(spanText).not.toContain(KEY)
      expect(logs.join("\n")).toContain("Unauthorized")
      expect(logs.join("\n")).not.toContain(KEY)
      expect(JSON.stringify(error)).not.toContain(KEY)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))
})

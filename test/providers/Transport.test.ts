/**
 * The undici transport: connections are reused (keep-alive) and bounded per origin by `connections`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Tracer from "effect/Tracer"
import * as OpenAi from "../../src/providers/OpenAi.js"
import type { GenerateRequest } from "../../src/Provider.js"
import * as Transport from "../../src/Transport.js"
import { type Handler, json, wireServer } from "../utils/wireServer.js"

const request: GenerateRequest = { model: "gpt-test", messages: [{ role: "user", content: "hi" }], maxTokens: 8 }
const ok = json(200, { id: "c", model: "m", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] })

describe("Transport", () => {
  it.live("reuses one keep-alive connection for sequential calls (retries pay no new handshake)", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(ok)
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-transport-1"), baseUrl: `${server.url}/v1` })
      for (let i = 0; i < 20; i++) yield* provider.generate(request)
      expect(server.requests).toHaveLength(20)
      // One socket carries them all, give or take one opened while the first was still being released
      // back to the pool (undici frees it just after the body is consumed).
      expect(server.sockets.opened).toBeLessThanOrEqual(2)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("never opens more than `connections` sockets to one origin, however many calls are in flight", () =>
    Effect.gen(function*() {
      // Answers only once several requests are queued, so the pool is really under pressure.
      const held: Array<() => void> = []
      const holding: Handler = (req, body, res) => {
        held.push(() => ok(req, body, res))
        if (held.length >= 2) for (const release of held.splice(0)) release()
      }
      const server = yield* wireServer(holding)
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-transport-2"), baseUrl: `${server.url}/v1` })
      yield* Effect.all(Array.from({ length: 8 }, () => provider.generate(request)), { concurrency: "unbounded" })
      expect(server.requests).toHaveLength(8)
      expect(server.sockets.maxOpen).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer({ connections: 2 }))))

  it.live("creates the platform's HTTP span (and sends traceparent) only under a real tracer, unless told", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(ok)
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-transport-3"), baseUrl: `${server.url}/v1` })
      const native = yield* Effect.tracer
      const spans: Array<string> = []
      // A tracer that is not Effect's built-in one, as an OpenTelemetry tracer would be.
      const recording = Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          spans.push(name)
          return native.span(name, parent, context, links, startTime, kind, options)
        },
        context: native.context
      })
      yield* provider.generate(request)
      expect(server.requests[0]!.headers["traceparent"]).toBeUndefined()
      yield* Effect.withTracer(provider.generate(request), recording)
      expect(server.requests[1]!.headers["traceparent"]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      expect(spans).toContain("http.client POST")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("`tracing: \"always\"` keeps the platform span under Effect's built-in tracer", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(ok)
      const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-transport-4"), baseUrl: `${server.url}/v1` })
      yield* provider.generate(request)
      expect(server.requests[0]!.headers["traceparent"]).toBeDefined()
    }).pipe(Effect.scoped, Effect.provide(Transport.layer({ tracing: "always" }))))
})

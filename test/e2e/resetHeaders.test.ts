/**
 * A 429 without `retry-after` still says when it ends: the reset of the window it reports as spent
 * (OpenAI `x-ratelimit-remaining-*: 0` + `x-ratelimit-reset-*` as a Go duration; Anthropic
 * `anthropic-ratelimit-*-remaining: 0` + `*-reset` as an RFC 3339 instant). With the default Policy the
 * retry lands exactly at that reset — over real HTTP, on the TestClock (the server does not sleep, so
 * the clock only moves when the test moves it).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { fromHttp } from "../../src/Classify.js"
import type { AttemptRecord } from "../../src/Errors.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as Transport from "../../src/Transport.js"
import { awaitSleepUntil, settle } from "../testing/helpers.js"
import { type Handler, wireServer } from "../utils/wireServer.js"

type Api = "openai" | "anthropic"

/** The 429's headers: the request window spent, resetting 20 s after the response (TestClock time 0). */
const spent = (api: Api): Record<string, string> =>
  api === "openai"
    ? { "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s", "x-ratelimit-remaining-tokens": "9000", "x-ratelimit-reset-tokens": "90ms" }
    : { "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "1970-01-01T00:00:20Z", "anthropic-ratelimit-tokens-remaining": "9000", "anthropic-ratelimit-tokens-reset": "1970-01-01T00:00:01Z" }

const rateLimitBody = (api: Api) =>
  api === "openai"
    ? { error: { message: "Rate limit reached for requests", type: "requests", param: null, code: "rate_limit_exceeded" } }
    : { type: "error", error: { type: "rate_limit_error", message: "Number of requests has exceeded your rate limit" } }

const answer = (api: Api) =>
  api === "openai"
    ? { id: "c", model: "m", choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }
    : { id: "m", type: "message", role: "assistant", model: "m", content: [{ type: "text", text: "hi" }], stop_reason: "end_turn", usage: { input_tokens: 1, output_tokens: 1 } }

/** First request: 429 with only the rate-limit headers; then 200. */
const handler = (api: Api): Handler => {
  let served = 0
  return (_req, _body, res) => {
    const first = served++ === 0
    res.writeHead(first ? 429 : 200, { "content-type": "application/json", ...(first ? spent(api) : {}) })
    res.end(JSON.stringify(first ? rateLimitBody(api) : answer(api)))
  }
}

const adapter = (api: Api, url: string) =>
  api === "openai"
    ? OpenAi.make({ apiKey: Redacted.make("sk-reset-test"), baseUrl: `${url}/v1` })
    : Anthropic.make({ apiKey: Redacted.make("sk-ant-reset-test"), baseUrl: url })

describe("rate-limit reset headers drive the wait of a 429 without retry-after", () => {
  it.effect.each(["openai", "anthropic"] as const)("%s: the default Policy retries at the spent window's reset", (api) =>
    Effect.gen(function*() {
      const server = yield* wireServer(handler(api))
      const records: Array<AttemptRecord> = []
      const provider = yield* Policy.apply(
        Policy.make({ observe: (record) => Effect.sync(() => records.push(record)) }),
        yield* adapter(api, server.url),
        `reset-${api}`
      )
      const call = yield* Effect.fork(provider.generate({ model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 8 }))
      yield* awaitSleepUntil(20_000)
      expect(server.requests).toHaveLength(1)
      yield* TestClock.adjust("20 seconds")
      const response = yield* settle(call)
      expect(response.text).toBe("hi")
      expect(server.requests).toHaveLength(2)
      expect(records.map((r) => [r.attempt, r.outcome, r.delayMs])).toEqual([[1, "RateLimited", 0], [2, "success", 20_000]])
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(Transport.layer(), Layer.fresh(Policy.layerState)))))

  it("only a spent window counts, Retry-After wins over it, and a spent window without a reset gives no hint", () => {
    const site = { provider: "openai", model: "m", route: "r", attempt: 1 }
    const classify = (headers: Record<string, string>) =>
      fromHttp({ site, status: 429, headers, body: JSON.stringify(rateLimitBody("openai")), now: 0 })
    const hint = (headers: Record<string, string>) => {
      const error = classify(headers)
      return error._tag === "RateLimited" ? error.retryAfterMs : "not RateLimited"
    }
    expect(hint(spent("openai"))).toBe(20_000)
    expect(hint({ ...spent("openai"), "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s" })).toBe(60_000)
    expect(hint({ ...spent("openai"), "retry-after": "3" })).toBe(3_000)
    expect(hint({ "x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "20s" })).toBeUndefined()
    expect(hint({ "x-ratelimit-remaining-requests": "0" })).toBeUndefined()
  })
})

/**
 * The Azure OpenAI adapter over real HTTP against a local server shaped like Azure: both URL shapes
 * and the Responses route, both credentials, Azure's failure semantics (content filter, the two 429s,
 * its wait and request-id headers), option checks at construction, and two regions as one chain.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as DegradedMode from "../../src/DegradedMode.js"
import { actionOf, type ProviderError } from "../../src/Errors.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest, StreamEvent } from "../../src/Provider.js"
import * as AzureOpenAi from "../../src/providers/AzureOpenAi.js"
import * as Transport from "../../src/Transport.js"
import { awaitSleepUntil, routesFailed, settle } from "../testing/helpers.js"
import { type Handler, json, sse, wireServer } from "../utils/wireServer.js"

const KEY = "azk-0123456789abcdef0123456789abcdef"
const TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-token-secret-value"
const request: GenerateRequest = { model: "gpt-4o", messages: [{ role: "user", content: "hi" }], maxTokens: 64 }

const completion = (content: string, finish = "stop", extra: Record<string, unknown> = {}) => ({
  id: "chatcmpl-az1",
  object: "chat.completion",
  created: 1,
  model: "gpt-4o-2024-08-06",
  prompt_filter_results: [{ prompt_index: 0, content_filter_results: { hate: { filtered: false, severity: "safe" } } }],
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finish, content_filter_results: {} }],
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  ...extra
})

/** Handlers served in turn, the last one repeating. */
const inTurn = (...handlers: ReadonlyArray<Handler>): Handler => {
  let next = 0
  return (req, body, res) => handlers[Math.min(next++, handlers.length - 1)]!(req, body, res)
}

type Options = Omit<AzureOpenAi.AzureOpenAiOptions, "endpoint">

const withAzure = <A, E>(
  handler: Handler,
  options: Options,
  use: (
    provider: Effect.Effect.Success<ReturnType<typeof AzureOpenAi.make>>,
    server: Effect.Effect.Success<ReturnType<typeof wireServer>>
  ) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const server = yield* wireServer(handler)
    const provider = yield* AzureOpenAi.make({ endpoint: server.url, ...options })
    return yield* use(provider, server)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const failureOf = (handler: Handler, options: Options = { apiKey: Redacted.make(KEY) }) =>
  withAzure(handler, options, (p) => Effect.flip(p.generate(request)))

const azureError = (status: number, error: Record<string, unknown>, headers: Record<string, string> = {}) =>
  json(status, { error }, { "apim-request-id": "5a1f3c2e-8d6b-4e0a-9f7c-1b2c3d4e5f60", ...headers })

const contentFilterBody = {
  message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
  type: null,
  param: "prompt",
  code: "content_filter",
  status: 400,
  innererror: {
    code: "ResponsibleAIPolicyViolation",
    content_filter_result: {
      hate: { filtered: false, severity: "safe" },
      self_harm: { filtered: true, severity: "medium" },
      sexual: { filtered: false, severity: "safe" },
      violence: { filtered: false, severity: "safe" }
    }
  }
}

describe("Azure OpenAI — URL shapes, credentials, bodies", () => {
  it.live("deployment path: /openai/deployments/{deployment}/chat/completions?api-version=2024-10-21 with api-key", () =>
    withAzure(json(200, completion("Hello!"), { "apim-request-id": "a1b2c3d4-0000-1111-2222-333344445555" }), {
      apiKey: Redacted.make(KEY),
      deployments: { "gpt-4o": "gpt4o-prod" }
    }, (provider, server) =>
      Effect.gen(function*() {
        const response = yield* provider.generate({ ...request, idempotencyKey: "idem-7" })
        expect(response.text).toBe("Hello!")
        expect(response.model).toBe("gpt-4o-2024-08-06")
        expect(response.provider).toBe("azure-openai")
        // No x-request-id on this response: Azure's own id is kept.
        expect(response.requestId).toBe("a1b2c3d4-0000-1111-2222-333344445555")
        const sent = server.requests[0]!
        expect(sent.path).toBe("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21")
        expect(sent.headers["api-key"]).toBe(KEY)
        expect(sent.headers["authorization"]).toBeUndefined()
        expect(sent.headers["idempotency-key"]).toBe("idem-7")
        expect(sent.body).toMatchObject({ model: "gpt4o-prod", max_completion_tokens: 64, messages: [{ role: "user", content: "hi" }] })
      })))

  it.live("a model not in the map is its own deployment, URL-encoded; apiVersion and a path prefix are kept", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(json(200, completion("ok")))
      const provider = yield* AzureOpenAi.make({
        endpoint: `${server.url}/apim/aoai/`,
        apiKey: Redacted.make(KEY),
        apiVersion: "2025-04-01-preview"
      })
      yield* provider.generate({ ...request, model: "gpt 4o:eu" })
      expect(server.requests[0]!.path).toBe("/apim/aoai/openai/deployments/gpt%204o%3Aeu/chat/completions?api-version=2025-04-01-preview")
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("v1 path: /openai/v1/chat/completions, no api-version, Entra bearer token, deployment in the body", () =>
    withAzure(json(200, completion("v1!")), {
      bearerToken: Redacted.make(TOKEN),
      urlShape: "v1",
      deployments: { "gpt-4o": "gpt4o-global" }
    }, (provider, server) =>
      Effect.gen(function*() {
        const response = yield* provider.generate(request)
        expect(response.text).toBe("v1!")
        const sent = server.requests[0]!
        expect(sent.path).toBe("/openai/v1/chat/completions")
        expect(sent.headers["authorization"]).toBe(`Bearer ${TOKEN}`)
        expect(sent.headers["api-key"]).toBeUndefined()
        expect(sent.body).toMatchObject({ model: "gpt4o-global" })
      })))

  it.live("api: responses → /openai/v1/responses with the Responses body, decoded as Responses", () =>
    withAzure(json(200, {
      id: "resp_1",
      object: "response",
      status: "completed",
      model: "gpt-4.1-nano",
      output: [{ type: "message", role: "assistant", content: [{ type: "output_text", text: "From Responses" }] }],
      usage: { input_tokens: 4, output_tokens: 3, total_tokens: 7 }
    }), { apiKey: Redacted.make(KEY), api: "responses", deployments: { "gpt-4o": "nano-dep" } }, (provider, server) =>
      Effect.gen(function*() {
        const response = yield* provider.generate({ ...request, system: "be brief" })
        expect(response.text).toBe("From Responses")
        expect(response.finishReason).toBe("stop")
        expect(response.usage.totalTokens).toBe(7)
        const sent = server.requests[0]!
        expect(sent.path).toBe("/openai/v1/responses")
        expect(sent.headers["api-key"]).toBe(KEY)
        expect(sent.body).toMatchObject({ model: "nano-dep", instructions: "be brief", max_output_tokens: 64, store: false })
      })))

  it.live("streamUsage: false drops stream_options (older api-versions reject it)", () =>
    withAzure(sse([`data: ${JSON.stringify({ id: "c", model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`, "data: [DONE]\n\n"]), {
      apiKey: Redacted.make(KEY),
      apiVersion: "2024-06-01",
      streamUsage: false
    }, (provider, server) =>
      Effect.gen(function*() {
        yield* Stream.runDrain(provider.stream(request))
        expect(server.requests[0]!.body).toMatchObject({ stream: true })
        expect(server.requests[0]!.body).not.toHaveProperty("stream_options")
      })))
})

describe("Azure OpenAI — failures classified by Azure's rules", () => {
  it.live("400 content_filter + ResponsibleAIPolicyViolation → ContentFiltered (stop), not BadRequest", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(azureError(400, contentFilterBody))
      expect(error._tag).toBe("ContentFiltered")
      if (error._tag !== "ContentFiltered") return
      expect(error.finishReason).toBe("content_filter")
      expect(error.status).toBe(400)
      expect(error.providerCode).toBe("content_filter")
      expect(error.requestId).toBe("5a1f3c2e-8d6b-4e0a-9f7c-1b2c3d4e5f60")
      expect(error.rawBody).toContain("ResponsibleAIPolicyViolation")
      expect(actionOf(error)).toBe("stop")
    }))

  it.live("the same content filter on the Responses route → ContentFiltered", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(azureError(400, contentFilterBody), { apiKey: Redacted.make(KEY), api: "responses" })
      expect(error._tag).toBe("ContentFiltered")
    }))

  it.live("an ordinary 400 stays BadRequest", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(azureError(400, { message: "Unrecognized request argument supplied: stream_options", type: "invalid_request_error", code: null }))
      expect(error._tag).toBe("BadRequest")
    }))

  it.live("429 with retry-after-ms → RateLimited waiting exactly that long; x-ratelimit-remaining read", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(azureError(429, {
        code: "429",
        message: "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds."
      }, { "retry-after-ms": "1500", "retry-after": "2", "x-ratelimit-remaining-requests": "12", "x-ratelimit-remaining-tokens": "0" }))
      expect(error._tag).toBe("RateLimited")
      if (error._tag !== "RateLimited") return
      expect(error.retryAfterMs).toBe(1500)
      expect(error.rateLimit?.tokens?.remaining).toBe(0)
      expect(error.rateLimit?.requests?.remaining).toBe(12)
      expect(actionOf(error)).toBe("wait")
    }))

  it.live("429 without any retry header → the wait in the message; x-ms-retry-after-ms when sent", () =>
    Effect.gen(function*() {
      const message = "Requests to the Responses_Create Operation have exceeded call rate limit. Please retry after 37 seconds."
      const fromMessage = yield* failureOf(azureError(429, { code: "429", message }))
      const fromMsHeader = yield* failureOf(azureError(429, { code: "429", message }, { "x-ms-retry-after-ms": "850" }))
      expect(fromMessage._tag === "RateLimited" && fromMessage.retryAfterMs).toBe(37_000)
      expect(fromMsHeader._tag === "RateLimited" && fromMsHeader.retryAfterMs).toBe(850)
    }))

  it.live("429 'high demand, cannot process your request' → Overloaded (reroute), keeping its wait", () =>
    Effect.gen(function*() {
      const error = yield* failureOf(azureError(429, {
        code: "429",
        message: "The system is currently experiencing high demand and cannot process your request. Please retry after 4 seconds."
      }, { "retry-after": "4" }))
      expect(error._tag).toBe("Overloaded")
      expect(error._tag === "Overloaded" && error.retryAfterMs).toBe(4000)
      expect(actionOf(error)).toBe("reroute")
    }))

  it.live.each([
    [401, { code: "401", message: "Access denied due to invalid subscription key or wrong API endpoint." }, "Unauthorized", "reroute"],
    [404, { code: "DeploymentNotFound", message: "The API deployment for this resource does not exist." }, "NotFound", "reroute"],
    [408, { code: "Timeout", message: "The operation was timeout." }, "ServerError", "wait"],
    [500, { code: "InternalServerError", message: "The server had an error while processing your request." }, "ServerError", "wait"],
    [503, { code: "ServiceUnavailable", message: "The service is temporarily unable to process your request." }, "Overloaded", "reroute"]
  ] as const)("%d %o → %s (%s)", ([status, body, tag, action]) =>
    Effect.gen(function*() {
      const error = yield* failureOf(azureError(status, body))
      expect(error._tag).toBe(tag)
      expect(error.status).toBe(status)
      expect(error.requestId).toBe("5a1f3c2e-8d6b-4e0a-9f7c-1b2c3d4e5f60")
      expect(actionOf(error)).toBe(action)
    }))

  it.live("the api-key and the bearer token never appear in errors, even when echoed", () =>
    Effect.gen(function*() {
      const echo = (secret: string): Handler =>
        azureError(401, { code: "401", message: `Access denied for key ${secret}` }, { "x-request-id": secret, "apim-request-id": secret })
      const keyed = yield* failureOf(echo(KEY))
      const bearer = yield* failureOf(echo(TOKEN), { bearerToken: Redacted.make(TOKEN) })
      expect(keyed._tag).toBe("Unauthorized")
      for (const [error, secret] of [[keyed, KEY], [bearer, TOKEN]] as const) {
        for (const text of [JSON.stringify(error), error.message, String(error), error.rawBody ?? ""]) expect(text).not.toContain(secret)
        expect(error.requestId).toBeUndefined()
      }
    }))
})

describe("Azure OpenAI — streams", () => {
  const chunk = (body: Record<string, unknown>) => `data: ${JSON.stringify(body)}\n\n`
  const filterResults = { hate: { filtered: false, severity: "safe" }, self_harm: { filtered: false, severity: "safe" } }
  /** Azure's stream: prompt annotations first (empty id/model), deltas, a filtered finish, annotations after. */
  const filteredStream = sse([
    chunk({ id: "", object: "", created: 0, model: "", prompt_filter_results: [{ prompt_index: 0, content_filter_results: filterResults }], choices: [] }),
    chunk({ id: "chatcmpl-s1", object: "chat.completion.chunk", created: 1, model: "gpt-4o-2024-08-06", choices: [{ index: 0, finish_reason: null, delta: { role: "assistant", content: "Hey" } }] }),
    chunk({ id: "chatcmpl-s1", object: "chat.completion.chunk", created: 1, model: "gpt-4o-2024-08-06", choices: [{ index: 0, finish_reason: null, delta: { content: " Jude" } }] }),
    chunk({ id: "", object: "", created: 0, model: "", choices: [{ index: 0, finish_reason: "content_filter", content_filter_results: { protected_material_text: { detected: true, filtered: true } }, content_filter_offsets: { check_offset: 65, start_offset: 65, end_offset: 1056 } }] }),
    "data: [DONE]\n\n"
  ], { headers: { "apim-request-id": "stream-req-1" } })

  it.live("a filtered stream ends with finish_reason content_filter and the partial text; empty annotation ids are ignored", () =>
    withAzure(filteredStream, { apiKey: Redacted.make(KEY) }, (provider) =>
      Effect.gen(function*() {
        const events = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(request)))
        const finish = events[events.length - 1]!
        expect(finish._tag).toBe("Finish")
        if (finish._tag !== "Finish") return
        expect(finish.response.finishReason).toBe("content_filter")
        expect(finish.response.text).toBe("Hey Jude")
        expect(finish.response.id).toBe("chatcmpl-s1")
        expect(finish.response.model).toBe("gpt-4o-2024-08-06")
        expect(finish.response.requestId).toBe("stream-req-1")
        expect(events.filter((e): e is Extract<StreamEvent, { _tag: "TextDelta" }> => e._tag === "TextDelta").map((e) => e.text)).toEqual(["Hey", " Jude"])
      })))

  it.scoped("through a chain, the filtered stream is ContentFiltered — never an accepted answer", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(filteredStream)
      const provider = yield* AzureOpenAi.make({ endpoint: server.url, apiKey: Redacted.make(KEY), name: "azure-eastus" })
      const chain = yield* Fallback.make({ routes: [{ name: "azure-eastus", provider, model: "gpt-4o" }] })
      const error = yield* settle(yield* Effect.fork(routesFailed(Stream.runDrain(chain.stream({ messages: request.messages, maxTokens: 64 })))))
      expect(error.lastError?._tag).toBe("ContentFiltered")
      expect(error.attempts.map((a) => [a.route, a.outcome])).toEqual([["azure-eastus", "ContentFiltered"]])
    }).pipe(Effect.provide(Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer))))

  it.live("an error chunk with code content_filter mid-stream → ContentFiltered without a status", () =>
    withAzure(sse([
      chunk({ id: "c", model: "m", choices: [{ index: 0, delta: { content: "par" }, finish_reason: null }] }),
      chunk({ error: { code: "content_filter", message: "The response was filtered", innererror: { code: "ResponsibleAIPolicyViolation" } } })
    ]), { apiKey: Redacted.make(KEY) }, (provider) =>
      Effect.gen(function*() {
        const error: ProviderError = yield* Effect.flip(Stream.runDrain(provider.stream(request)))
        expect(error._tag).toBe("ContentFiltered")
        expect(error.status).toBeUndefined()
      })))
})

describe("Azure OpenAI — options are checked at construction", () => {
  const invalid = (options: Record<string, unknown>) =>
    Effect.flip(AzureOpenAi.make(options as unknown as AzureOpenAi.AzureOpenAiOptions)).pipe(Effect.provide(Transport.layer()))

  it.effect.each([
    [{ apiKey: Redacted.make(KEY) }, "endpoint"],
    [{ endpoint: "contoso.openai.azure.com", apiKey: Redacted.make(KEY) }, "endpoint"],
    [{ endpoint: "ftp://contoso.openai.azure.com", apiKey: Redacted.make(KEY) }, "endpoint"],
    [{ endpoint: "https://contoso.openai.azure.com/openai/v1/", apiKey: Redacted.make(KEY) }, "endpoint"],
    [{ endpoint: "https://contoso.openai.azure.com?api-version=2024-10-21", apiKey: Redacted.make(KEY) }, "endpoint"],
    [{ endpoint: "https://contoso.openai.azure.com" }, "apiKey"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make("") }, "apiKey"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make(KEY), bearerToken: Redacted.make(TOKEN) }, "bearerToken"],
    [{ endpoint: "https://contoso.openai.azure.com", bearerToken: Redacted.make("line\nbreak") }, "bearerToken"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make(KEY), api: "completions" }, "api"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make(KEY), api: "responses", urlShape: "deployment" }, "urlShape"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make(KEY), apiVersion: "2024-10-21&x=1" }, "apiVersion"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make(KEY), deployments: { "gpt-4o": "a/b" } }, "deployments[\"gpt-4o\"]"],
    [{ endpoint: "https://contoso.openai.azure.com", apiKey: Redacted.make(KEY), name: " " }, "name"]
  ] as const)("%o → InvalidOptions naming %s", ([options, option]) =>
    Effect.gen(function*() {
      const error = yield* invalid(options)
      expect(error._tag).toBe("InvalidOptions")
      expect(error.component).toBe("AzureOpenAi.make")
      expect(error.option).toBe(option)
      expect(error.message.startsWith(option)).toBe(true)
      expect(JSON.stringify(error)).not.toContain(KEY)
      expect(JSON.stringify(error)).not.toContain(TOKEN)
    }))

  it.effect("layer names its own component", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(AzureOpenAi.layer({ endpoint: "https://x.openai.azure.com" }))).pipe(Effect.scoped)
      expect(error._tag === "InvalidOptions" && [error.component, error.option]).toEqual(["AzureOpenAi.layer", "apiKey"])
    }).pipe(Effect.provide(Transport.layer())))
})

describe("Azure OpenAI — regions as routes of one chain", () => {
  const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)
  const chainRequest: Fallback.ChainRequest = { messages: [{ role: "user", content: "hi" }], maxTokens: 64 }

  it.scoped("eastus overloaded (503) → swedencentral answers; each region got its own URL and key", () =>
    Effect.gen(function*() {
      const eastus = yield* wireServer(azureError(503, { code: "ServiceUnavailable", message: "The service is temporarily unable to process your request." }))
      const sweden = yield* wireServer(json(200, completion("Hej från Sverige"), { "x-request-id": "req-se-1" }))
      const region = (url: string, name: string, key: string) =>
        AzureOpenAi.make({ endpoint: url, apiKey: Redacted.make(key), name, deployments: { "gpt-4o": `gpt4o-${name}` } })
      const chain = yield* Fallback.make({
        routes: [
          { name: "azure-eastus", provider: yield* region(eastus.url, "azure-eastus", `${KEY}-east`), model: "gpt-4o" },
          { name: "azure-swedencentral", provider: yield* region(sweden.url, "azure-swedencentral", `${KEY}-sweden`), model: "gpt-4o" }
        ]
      })
      const result = yield* settle(yield* Effect.fork(chain.generate(chainRequest)))
      expect(result.value).toBe("Hej från Sverige")
      expect(result.route).toBe("azure-swedencentral")
      expect(result.degraded).toBe(true)
      expect(result.response.provider).toBe("azure-swedencentral")
      expect(result.attempts.map((a) => [a.route, a.outcome, a.status])).toEqual([
        ["azure-eastus", "Overloaded", 503],
        ["azure-swedencentral", "success", undefined]
      ])
      expect(eastus.requests.map((r) => [r.path, r.headers["api-key"]])).toEqual([
        ["/openai/deployments/gpt4o-azure-eastus/chat/completions?api-version=2024-10-21", `${KEY}-east`]
      ])
      expect(sweden.requests.map((r) => [r.path, r.headers["api-key"]])).toEqual([
        ["/openai/deployments/gpt4o-azure-swedencentral/chat/completions?api-version=2024-10-21", `${KEY}-sweden`]
      ])
    }).pipe(Effect.provide(Env)))

  it.scoped("a 429 with retry-after-ms 1500 waits exactly 1.5 s on the TestClock, then the same region answers", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(inTurn(
        azureError(429, { code: "429", message: "Rate limit is exceeded." }, { "retry-after-ms": "1500", "retry-after": "2" }),
        json(200, completion("after the wait"))
      ))
      const provider = yield* AzureOpenAi.make({ endpoint: server.url, apiKey: Redacted.make(KEY), name: "azure-eastus" })
      const chain = yield* Fallback.make({
        routes: [{ name: "azure-eastus", provider, model: "gpt-4o", policy: { retry: { jitter: "none", base: "100 millis" } } }],
        deadline: "30 seconds"
      })
      const fiber = yield* Effect.fork(chain.generate(chainRequest))
      yield* awaitSleepUntil(1500)
      expect(server.requests).toHaveLength(1)
      yield* TestClock.adjust("1500 millis")
      const result = yield* settle(fiber)
      expect(result.value).toBe("after the wait")
      expect(result.attempts.map((a) => a.outcome)).toEqual(["RateLimited", "success"])
      expect(server.requests).toHaveLength(2)
      expect(result.attempts[1]!.delayMs).toBe(1500)
    }).pipe(Effect.provide(Env)))
})

/**
 * Provider data nested far deeper than any real payload (5 000 levels, about 10 KB — `JSON.parse`
 * takes it, `JSON.stringify` and every recursive walker overflow the stack) must come out as a typed
 * failure, never a defect: over real HTTP, in both wire formats, in JSON bodies, error objects, SSE
 * events and tool inputs, and through a chain, which must reroute instead of dying.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { classify } from "../../src/Classify.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import { MAX_JSON_DEPTH, parseUntrusted } from "../../src/internal/json.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest, ProviderShape } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as Transport from "../../src/Transport.js"
import { anthropicEvent, type Handler, json, openAiChunk, sse, wireServer } from "../utils/wireServer.js"

type Api = "openai" | "anthropic"

const KEY = "sk-deep-json-0123456789"
/** A value 5 000 levels deep, as raw JSON text (the kind of bytes a hostile or broken server sends). */
const DEEP_ARRAY = "[".repeat(5_000) + "]".repeat(5_000)
const DEEP_OBJECT = "{\"a\":".repeat(5_000) + "1" + "}".repeat(5_000)

const request = (api: Api): GenerateRequest => ({
  model: api === "openai" ? "gpt-test" : "claude-test",
  messages: [{ role: "user", content: "hi" }],
  maxTokens: 32
})

const raw = (status: number, body: string): Handler => (_req, _body, res) => {
  res.writeHead(status, { "content-type": "application/json", "x-request-id": "req_deep" })
  res.end(body)
}

const adapter = (api: Api, url: string) =>
  api === "openai"
    ? OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${url}/v1` })
    : Anthropic.make({ apiKey: Redacted.make(KEY), baseUrl: url })

/** The outcome of one call: must be a typed failure (never a defect); returns its tag and reason. */
const typedFailure = (exit: Exit.Exit<unknown, { readonly _tag: string }>) => {
  expect(Exit.isFailure(exit)).toBe(true)
  if (Exit.isSuccess(exit)) return undefined
  expect(Cause.isDie(exit.cause)).toBe(false)
  const failure = Cause.failureOption(exit.cause)
  expect(Option.isSome(failure)).toBe(true)
  return Option.getOrUndefined(failure)
}

interface Case {
  readonly name: string
  readonly api: Api
  readonly mode: "generate" | "stream"
  readonly handler: Handler
  readonly tag: string
}

const openAiStart = openAiChunk({ role: "assistant", content: "" })

const cases: ReadonlyArray<Case> = [
  { name: "a 200 body that is one deep array", api: "openai", mode: "generate", handler: raw(200, DEEP_ARRAY), tag: "InvalidOutput" },
  {
    name: "a 200 completion with a deep field beside the message",
    api: "openai",
    mode: "generate",
    handler: raw(200, `{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop","extra":${DEEP_OBJECT}}]}`),
    tag: "InvalidOutput"
  },
  {
    name: "a 200 body carrying an error object with a deep field",
    api: "openai",
    mode: "generate",
    handler: raw(200, `{"error":{"message":"boom","type":"server_error","detail":${DEEP_ARRAY}}}`),
    tag: "InvalidOutput"
  },
  {
    name: "a 500 whose error object has a deep param (classified by status)",
    api: "openai",
    mode: "generate",
    handler: raw(500, `{"error":{"message":"boom","type":"server_error","param":${DEEP_OBJECT}}}`),
    tag: "ServerError"
  },
  {
    name: "a stream chunk with a deep field",
    api: "openai",
    mode: "stream",
    handler: sse([openAiStart, `data: {"choices":[{"index":0,"delta":{"content":"a"}}],"x":${DEEP_ARRAY}}\n\n`, "data: [DONE]\n\n"]),
    tag: "InvalidOutput"
  },
  {
    name: "a stream error chunk with a deep field",
    api: "openai",
    mode: "stream",
    handler: sse([openAiStart, `data: {"error":{"message":"overloaded","type":"server_error","detail":${DEEP_OBJECT}}}\n\n`]),
    tag: "InvalidOutput"
  },
  {
    name: "a message whose tool_use input is deep",
    api: "anthropic",
    mode: "generate",
    handler: raw(
      200,
      `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1},"content":[{"type":"tool_use","id":"toolu_1","name":"lookup","input":${DEEP_OBJECT}}]}`
    ),
    tag: "InvalidOutput"
  },
  {
    name: "an error body with a deep field (classified by status)",
    api: "anthropic",
    mode: "generate",
    handler: raw(529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded","detail":${DEEP_ARRAY}}}`),
    tag: "Overloaded"
  },
  {
    name: "an in-stream `event: error` whose payload is deep",
    api: "anthropic",
    mode: "stream",
    handler: sse([
      anthropicEvent("message_start", {
        message: { id: "msg_1", type: "message", role: "assistant", model: "claude-test", content: [], usage: { input_tokens: 1, output_tokens: 1 } }
      }),
      `event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded","detail":${DEEP_OBJECT}}}\n\n`
    ]),
    tag: "InvalidOutput"
  }
]

describe("deeply nested provider JSON is a typed failure, never a defect (real HTTP)", () => {
  it.live.each(cases.map((c) => [`${c.api} ${c.mode}: ${c.name} → ${c.tag}`, c] as const))("%s", ([, c]) =>
    Effect.gen(function*() {
      const server = yield* wireServer(c.handler)
      const provider = yield* adapter(c.api, server.url)
      const exit = yield* Effect.exit(
        c.mode === "generate" ? provider.generate(request(c.api)) : Stream.runDrain(provider.stream(request(c.api)))
      )
      const error = typedFailure(exit)
      expect(error?._tag).toBe(c.tag)
      if (error?._tag === "InvalidOutput") expect(JSON.stringify(error)).toContain(`deeper than ${MAX_JSON_DEPTH} levels`)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("a chain whose primary answers a deep body reroutes to the healthy secondary", () =>
    Effect.gen(function*() {
      const primary = yield* wireServer(raw(200, `{"choices":[],"detail":${DEEP_ARRAY}}`))
      const secondary = yield* wireServer(json(200, {
        id: "chatcmpl-2",
        model: "gpt-test",
        choices: [{ index: 0, message: { role: "assistant", content: "{\"ok\":true}" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
      }))
      const route = (name: string, provider: ProviderShape): Fallback.Route => ({ name, provider, model: "gpt-test", policy: { retry: { maxAttempts: 1 } } })
      const chain = yield* Fallback.make({
        routes: [route("primary", yield* adapter("openai", primary.url)), route("secondary", yield* adapter("openai", secondary.url))]
      })
      const result = yield* chain.generateObject(Schema.Struct({ ok: Schema.Boolean }), { messages: [{ role: "user", content: "hi" }], maxTokens: 16 })
      expect(result.value).toEqual({ ok: true })
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["primary", "InvalidOutput"], ["secondary", "success"]])
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer))
    ))

  it("the model's own JSON answer nested too deep fails the schema gate as unparsable, not as a defect", () =>
    Effect.gen(function*() {
      const deepAnswer: ProviderShape = {
        name: "deep",
        generate: () =>
          Effect.succeed({
            provider: "deep",
            model: "m",
            text: DEEP_ARRAY,
            toolCalls: [],
            finishReason: "stop",
            usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 }
          }),
        stream: () => Stream.empty
      }
      // A recursive schema: decoding walks the value, so an unbounded depth would overflow the stack.
      interface Tree { readonly children: ReadonlyArray<Tree> }
      const Tree: Schema.Schema<Tree> = Schema.Struct({ children: Schema.Array(Schema.suspend(() => Tree)) }).annotations({ identifier: "Tree" })
      const chain = yield* Fallback.make({ routes: [{ name: "only", provider: deepAnswer, model: "m", policy: { retry: { maxAttempts: 1 } } }] })
      const exit = yield* Effect.exit(chain.generateObject(Tree, { messages: [{ role: "user", content: "hi" }], maxTokens: 16 }))
      const error = typedFailure(exit)
      expect(error?._tag).toBe("AllRoutesFailed")
      expect(JSON.stringify(error)).toContain(`deeper than ${MAX_JSON_DEPTH} levels`)
    }).pipe(Effect.provide(Layer.mergeAll(Policy.layerState, DegradedMode.layer)), Effect.runPromise))

  it("classify is total on a caller's deep payload; the one JSON door refuses deep text and keeps wide text", () => {
    const deep = parseUntrusted(DEEP_ARRAY)
    expect(deep._tag).toBe("TooDeep")
    const payload = (parseUntrusted(`[${DEEP_OBJECT}]`)._tag === "TooDeep") ? JSON.parse(DEEP_OBJECT) as unknown : undefined
    const site = { provider: "p", model: "m", route: "r", attempt: 1 }
    const error = classify(site, { _tag: "StreamError", payload: { type: "error", error: { type: "overloaded_error", message: "x", detail: payload } } })
    expect(error._tag).toBe("Overloaded")
    expect(error.rawBody).toContain("unserialisable")
    const atLimit = "[".repeat(MAX_JSON_DEPTH) + "]".repeat(MAX_JSON_DEPTH)
    expect(parseUntrusted(atLimit)._tag).toBe("Json")
    expect(parseUntrusted(`[${atLimit}]`)._tag).toBe("TooDeep")
    const wide = JSON.stringify({ items: Array.from({ length: 200_000 }, (_, i) => ({ i, s: `v${i}` })) })
    const parsedWide = parseUntrusted(wide)
    expect(parsedWide._tag === "Json" && (parsedWide.value as { items: Array<unknown> }).items.length).toBe(200_000)
  })
})

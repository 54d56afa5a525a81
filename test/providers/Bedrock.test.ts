/**
 * The Bedrock Converse / ConverseStream adapter over real HTTP (a local node server), and the official
 * AWS SDK against the same server: the SDK must parse the event-stream bytes we decode, send the
 * bodies we encode, and sign the way our verifier checks.
 */
import { Sha256 } from "@aws-crypto/sha256-js"
import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand } from "@aws-sdk/client-bedrock-runtime"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { SignatureV4 } from "@smithy/signature-v4"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as fc from "fast-check"
import { createHash } from "node:crypto"
import type * as http from "node:http"
import { actionOf, isRetryable, type ProviderError } from "../../src/Errors.js"
import { type GenerateRequest, Provider, type ProviderShape, type StreamEvent } from "../../src/Provider.js"
import * as Bedrock from "../../src/providers/Bedrock.js"
import { encodeMessage, EventStreamDecoder } from "../../src/providers/internal/eventstream.js"
import { bedrockWire, parseBedrockRequest } from "../../src/testing/internal/bedrockWire.js"
import type { Completion, ErrorSpec } from "../../src/testing/internal/wire.js"
import * as Transport from "../../src/Transport.js"
import { type Handler, wireServer } from "../utils/wireServer.js"

// ---------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------

const KEY_ID = "AKIDEXAMPLE0123456789"
const SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
const SESSION = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0123456789"
const BEARER = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLTAxMjM0NTY3ODk="
const MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
const MODEL_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"

const request: GenerateRequest = { model: MODEL, messages: [{ role: "user", content: "hi" }], maxTokens: 64 }

const sigV4Options = (baseUrl: string, extra: Partial<Bedrock.BedrockOptions> = {}): Bedrock.BedrockOptions => ({
  region: "us-east-1",
  baseUrl,
  credentials: { accessKeyId: KEY_ID, secretAccessKey: Redacted.make(SECRET), sessionToken: Redacted.make(SESSION) },
  ...extra
})

type Adapter = ProviderShape<ProviderError>

const withServer = <A, E>(handler: Handler, use: (p: Adapter, server: Effect.Effect.Success<ReturnType<typeof wireServer>>) => Effect.Effect<A, E>, extra: Partial<Bedrock.BedrockOptions> = {}) =>
  Effect.gen(function*() {
    const server = yield* wireServer(handler)
    const provider = yield* Bedrock.make(sigV4Options(server.url, extra))
    return yield* use(provider, server)
  }).pipe(Effect.scoped, Effect.provide(Transport.layer()))

const utf8 = new TextEncoder()

/** An event-stream message as Bedrock sends it (headers, JSON payload), encoded with the SDK's codec. */
const event = (type: string, payload: Record<string, unknown>) =>
  encodeMessage({ ":message-type": "event", ":event-type": type, ":content-type": "application/json" }, utf8.encode(JSON.stringify(payload)))

const exception = (type: string, payload: Record<string, unknown>) =>
  encodeMessage({ ":message-type": "exception", ":exception-type": type, ":content-type": "application/json" }, utf8.encode(JSON.stringify(payload)))

const concatBytes = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

const textStream = (deltas: ReadonlyArray<string>) => [
  event("messageStart", { role: "assistant" }),
  ...deltas.map((text) => event("contentBlockDelta", { contentBlockIndex: 0, delta: { text }, p: "abcdefgh" })),
  event("contentBlockStop", { contentBlockIndex: 0 })
]

const toolStream = (index: number, id: string, name: string, fragments: ReadonlyArray<string>) => [
  event("contentBlockStart", { contentBlockIndex: index, start: { toolUse: { toolUseId: id, name } } }),
  ...fragments.map((input) => event("contentBlockDelta", { contentBlockIndex: index, delta: { toolUse: { input } } })),
  event("contentBlockStop", { contentBlockIndex: index })
]

const stop = (stopReason: string) => event("messageStop", { stopReason })
const metadata = event("metadata", { usage: { inputTokens: 12, outputTokens: 7, totalTokens: 19 }, metrics: { latencyMs: 321 } })

/** Replies with event-stream messages written one by one; `destroy` breaks the socket after them. */
const eventStream = (
  messages: ReadonlyArray<Uint8Array>,
  options: { readonly headers?: Record<string, string>; readonly destroy?: boolean; readonly chunks?: ReadonlyArray<Uint8Array> } = {}
): Handler =>
(_req, _body, res) => {
  res.writeHead(200, { "content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "req-stream-1", ...options.headers })
  res.flushHeaders()
  for (const bytes of options.chunks ?? messages) res.write(Buffer.from(bytes))
  if (options.destroy === true) res.write("", () => setImmediate(() => res.socket?.destroy()))
  else res.end()
}

const converseBody = (content: ReadonlyArray<Record<string, unknown>>, stopReason = "end_turn") => ({
  output: { message: { role: "assistant", content } },
  stopReason,
  usage: { inputTokens: 10, outputTokens: 4, totalTokens: 14 },
  metrics: { latencyMs: 100 }
})

const jsonReply = (status: number, body: unknown, headers: Record<string, string> = {}): Handler => (_req, _body, res) => {
  res.writeHead(status, { "content-type": "application/json", "x-amzn-requestid": "req-json-1", ...headers })
  res.end(typeof body === "string" ? body : JSON.stringify(body))
}

/** A Bedrock error answer: `x-amzn-errortype` as AWS sends it, and `{"message": …}`. */
const awsError = (status: number, code: string, message: string, headers: Record<string, string> = {}): Handler =>
  jsonReply(status, { message }, { "x-amzn-errortype": `${code}:http://internal.amazon.com/coral/com.amazon.bedrock/`, ...headers })

const collect = (p: Adapter, r: GenerateRequest = request) => Effect.map(Stream.runCollect(p.stream(r)), Chunk.toReadonlyArray)

const finishOf = (events: ReadonlyArray<StreamEvent>) => {
  const last = events[events.length - 1]
  if (last?._tag !== "Finish") throw new Error(`no Finish: ${events.map((e) => e._tag).join(",")}`)
  return last.response
}

// ---------------------------------------------------------------------------------------------------
// A SigV4 verifier, as AWS checks a signature: recompute it from the request as received
// ---------------------------------------------------------------------------------------------------

const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/

const amzDate = (text: string): Date => {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text)
  if (m === null) throw new Error(`bad x-amz-date ${text}`)
  return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])))
}

/** `ok` when the request's SigV4 signature is what the secret key (and session token) produce. */
const verifySigV4 = async (
  req: { readonly method: string; readonly url: string; readonly headers: http.IncomingHttpHeaders },
  body: string,
  secretAccessKey: string,
  sessionToken?: string
): Promise<{ readonly ok: boolean; readonly reason: string; readonly signedHeaders: ReadonlyArray<string> }> => {
  const authorization = String(req.headers["authorization"] ?? "")
  const m = AUTHORIZATION.exec(authorization)
  if (m === null) return { ok: false, reason: `authorization header shape: ${authorization}`, signedHeaders: [] }
  const [, keyId, , region, service, signedList] = m
  const signedHeaders = signedList!.split(";")
  const payloadHash = createHash("sha256").update(Buffer.from(body, "utf8")).digest("hex")
  if (req.headers["x-amz-content-sha256"] !== undefined && req.headers["x-amz-content-sha256"] !== payloadHash) {
    return { ok: false, reason: "x-amz-content-sha256 is not the body's hash", signedHeaders }
  }
  const headers: Record<string, string> = {}
  for (const name of signedHeaders) headers[name] = String(req.headers[name] ?? "")
  const url = new URL(req.url, `http://${String(req.headers["host"])}`)
  const signer = new SignatureV4({
    service: service!,
    region: region!,
    credentials: { accessKeyId: keyId!, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) },
    sha256: Sha256
  })
  const expected = await signer.sign({
    method: req.method,
    protocol: "http:",
    hostname: url.hostname,
    port: Number(url.port),
    path: req.url.split("?")[0]!,
    query: {},
    headers,
    body: Buffer.from(body, "utf8")
  }, { signingDate: amzDate(String(req.headers["x-amz-date"])) })
  return expected.headers["authorization"] === authorization
    ? { ok: true, reason: "", signedHeaders }
    : { ok: false, reason: `signature mismatch: expected ${expected.headers["authorization"]}`, signedHeaders }
}

/** A handler that records whether each request's signature verified, then answers with `then`. */
const verifying = (results: Array<{ ok: boolean; reason: string; signedHeaders: ReadonlyArray<string> }>, then: Handler): Handler =>
(req, body, res) => {
  verifySigV4({ method: req.method ?? "", url: req.url ?? "", headers: req.headers }, body, SECRET, SESSION).then(
    (result) => {
      results.push(result)
      then(req, body, res)
    },
    (error) => {
      results.push({ ok: false, reason: String(error), signedHeaders: [] })
      then(req, body, res)
    }
  )
}

// ---------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------

describe("Bedrock encoding", () => {
  it("encodes a conversation: system blocks, toolUse, merged toolResults, inferenceConfig, toolConfig", () => {
    const body = Bedrock.encodeRequest({
      model: MODEL,
      system: "be brief",
      messages: [
        { role: "system", content: "be kind" },
        { role: "user", content: "weather in Paris and Rome?" },
        {
          role: "assistant",
          content: "Checking.",
          toolCalls: [
            { id: "t1", name: "weather", arguments: "{\"city\":\"Paris\"}" },
            { id: "t2", name: "weather", arguments: "not json" }
          ]
        },
        { role: "tool", toolCallId: "t1", content: "sunny" },
        { role: "tool", toolCallId: "t2", content: "rain" },
        { role: "user", content: "thanks" }
      ],
      maxTokens: 100,
      temperature: 0.2,
      topP: 0.9,
      stop: ["END"],
      tools: [{ name: "weather", description: "Weather by city", parameters: { type: "object", properties: { city: { type: "string" } } } }],
      toolChoice: "required"
    }, { maxTokens: 50 })
    expect(body).toEqual({
      messages: [
        { role: "user", content: [{ text: "weather in Paris and Rome?" }] },
        {
          role: "assistant",
          content: [
            { text: "Checking." },
            { toolUse: { toolUseId: "t1", name: "weather", input: { city: "Paris" } } },
            { toolUse: { toolUseId: "t2", name: "weather", input: { _raw: "not json" } } }
          ]
        },
        {
          role: "user",
          content: [
            { toolResult: { toolUseId: "t1", content: [{ text: "sunny" }] } },
            { toolResult: { toolUseId: "t2", content: [{ text: "rain" }] } },
            { text: "thanks" }
          ]
        }
      ],
      system: [{ text: "be brief" }, { text: "be kind" }],
      inferenceConfig: { maxTokens: 50, temperature: 0.2, topP: 0.9, stopSequences: ["END"] },
      toolConfig: {
        tools: [{ toolSpec: { name: "weather", description: "Weather by city", inputSchema: { json: { type: "object", properties: { city: { type: "string" } } } } } }],
        toolChoice: { any: {} }
      }
    })
  })

  it("maps tool choices: auto, a named tool, and none (no tools unless the history holds tool blocks)", () => {
    const tools = [{ name: "f", parameters: { type: "object" } }]
    const choice = (toolChoice: GenerateRequest["toolChoice"], messages: GenerateRequest["messages"] = request.messages) =>
      Bedrock.encodeRequest({ ...request, messages, tools, ...(toolChoice !== undefined ? { toolChoice } : {}) }, { maxTokens: 8 })["toolConfig"]
    expect(choice("auto")).toEqual({ tools: [{ toolSpec: { name: "f", inputSchema: { json: { type: "object" } } } }], toolChoice: { auto: {} } })
    expect(choice({ name: "f" })).toMatchObject({ toolChoice: { tool: { name: "f" } } })
    expect(choice(undefined)).toEqual({ tools: [{ toolSpec: { name: "f", inputSchema: { json: { type: "object" } } } }] })
    expect(choice("none")).toBeUndefined()
    const history: GenerateRequest["messages"] = [
      { role: "user", content: "x" },
      { role: "assistant", content: "", toolCalls: [{ id: "a", name: "f", arguments: "{}" }] },
      { role: "tool", toolCallId: "a", content: "ok" }
    ]
    expect(choice("none", history)).toEqual({ tools: [{ toolSpec: { name: "f", inputSchema: { json: { type: "object" } } } }] })
  })

  it("json_schema is a forced tool by default, outputConfig.textFormat in native mode; json_object adds an instruction", () => {
    const schema = { type: "object", properties: { city: { type: "string" } } }
    const structured: GenerateRequest = { ...request, responseFormat: { type: "json_schema", name: "answer", schema } }
    const viaTool = Bedrock.encodeRequest(structured, { maxTokens: 8 })
    expect(viaTool["toolConfig"]).toEqual({
      tools: [{ toolSpec: { name: "answer", description: "Return the answer as this tool's input.", inputSchema: { json: schema } } }],
      toolChoice: { tool: { name: "answer" } }
    })
    expect(viaTool["outputConfig"]).toBeUndefined()
    const native = Bedrock.encodeRequest(structured, { maxTokens: 8, structuredOutput: "native" })
    expect(native["toolConfig"]).toBeUndefined()
    expect(native["outputConfig"]).toEqual({
      textFormat: { type: "json_schema", structure: { jsonSchema: { schema: JSON.stringify(schema), name: "answer" } } }
    })
    const jsonObject = Bedrock.encodeRequest({ ...request, responseFormat: { type: "json_object" } }, { maxTokens: 8 })
    expect(jsonObject["system"]).toEqual([{ text: "Respond with a single JSON object and nothing else." }])
  })

  it("paths encode the model id (and ARNs) as one segment, as the AWS SDK does", () => {
    expect(Bedrock.pathOf(MODEL, false)).toBe(`${MODEL_PATH}/converse`)
    expect(Bedrock.pathOf("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0", true))
      .toBe("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
    expect(Bedrock.endpointOf("eu-west-3")).toBe("https://bedrock-runtime.eu-west-3.amazonaws.com")
    expect(Bedrock.endpointOf("cn-north-1")).toBe("https://bedrock-runtime.cn-north-1.amazonaws.com.cn")
  })
})

// ---------------------------------------------------------------------------------------------------
// Converse over real HTTP, SigV4 and bearer
// ---------------------------------------------------------------------------------------------------

describe("Bedrock Converse — success", () => {
  it.live("sends a SigV4-signed Converse request (idempotency key and extra headers signed) and decodes it", () => {
    const verified: Array<{ ok: boolean; reason: string; signedHeaders: ReadonlyArray<string> }> = []
    const reply = jsonReply(200, converseBody([
      { text: "Let me check. " },
      { toolUse: { toolUseId: "tooluse_1", name: "weather", input: { city: "Paris" } } }
    ], "tool_use"))
    return withServer(verifying(verified, reply), (p, server) =>
      Effect.gen(function*() {
        const response = yield* p.generate({
          ...request,
          idempotencyKey: "idem-123",
          tools: [{ name: "weather", parameters: { type: "object" } }]
        })
        expect(response.text).toBe("Let me check. ")
        expect(response.toolCalls).toEqual([{ id: "tooluse_1", name: "weather", arguments: "{\"city\":\"Paris\"}" }])
        expect(response.finishReason).toBe("tool_calls")
        expect(response.rawFinishReason).toBe("tool_use")
        expect(response.usage).toEqual({ inputTokens: 10, outputTokens: 4, totalTokens: 14 })
        expect(response.requestId).toBe("req-json-1")
        expect(response.model).toBe(MODEL)
        const sent = server.requests[0]!
        expect(sent.path).toBe(`${MODEL_PATH}/converse`)
        expect(sent.headers["accept"]).toBe("application/json")
        expect(sent.headers["x-amz-security-token"]).toBe(SESSION)
        expect(sent.headers["x-amz-date"]).toMatch(/^\d{8}T\d{6}Z$/)
        expect(sent.headers["x-amz-content-sha256"]).toMatch(/^[0-9a-f]{64}$/)
        expect(verified[0]).toMatchObject({ ok: true })
        expect(verified[0]!.signedHeaders).toEqual(expect.arrayContaining([
          "host",
          "x-amz-date",
          "x-amz-content-sha256",
          "x-amz-security-token",
          "idempotency-key",
          "x-team",
          "content-type"
        ]))
        expect(JSON.stringify(sent.headers)).not.toContain(SECRET)
      }), { headers: { "x-team": "search" } })
  })

  it.live("the verifier is not vacuous: an altered body, header or secret fails it", () =>
    Effect.gen(function*() {
      const signer = new SignatureV4({ service: "bedrock", region: "us-east-1", credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET }, sha256: Sha256 })
      const signed = yield* Effect.promise(() =>
        signer.sign({
          method: "POST",
          protocol: "http:",
          hostname: "127.0.0.1",
          port: 8080,
          path: `${MODEL_PATH}/converse`,
          query: {},
          headers: { host: "127.0.0.1:8080", "content-type": "application/json", "x-team": "a" },
          body: Buffer.from("{}")
        }, { signingDate: new Date(Date.UTC(2026, 0, 1)) })
      )
      const received = { method: "POST", url: `${MODEL_PATH}/converse`, headers: signed.headers }
      const check = (req: typeof received, body: string, secret = SECRET) => Effect.promise(() => verifySigV4(req, body, secret))
      expect((yield* check(received, "{}")).ok).toBe(true)
      expect((yield* check(received, "{ }")).ok).toBe(false)
      expect((yield* check({ ...received, headers: { ...signed.headers, "x-team": "b" } }, "{}")).ok).toBe(false)
      expect((yield* check({ ...received, url: `${MODEL_PATH}/converse-stream` }, "{}")).ok).toBe(false)
      expect((yield* check(received, "{}", `${SECRET}x`)).ok).toBe(false)
    }))

  it.live("a Bedrock API key is sent as a bearer token and nothing is signed", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(jsonReply(200, converseBody([{ text: "ok" }])))
      const provider = yield* Bedrock.make({ region: "us-west-2", baseUrl: server.url, apiKey: Redacted.make(BEARER) })
      const response = yield* provider.generate(request)
      expect(response.text).toBe("ok")
      const sent = server.requests[0]!
      expect(sent.headers["authorization"]).toBe(`Bearer ${BEARER}`)
      expect(sent.headers["x-amz-date"]).toBeUndefined()
      expect(sent.headers["x-amz-content-sha256"]).toBeUndefined()
      expect(sent.body).toEqual({ messages: [{ role: "user", content: [{ text: "hi" }] }], inferenceConfig: { maxTokens: 64 } })
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.live("stop reasons: max_tokens and model_context_window_exceeded → length, guardrails → content_filter; structured tool → text", () =>
    Effect.gen(function*() {
      const reasons = ["max_tokens", "model_context_window_exceeded", "guardrail_intervened", "content_filtered", "stop_sequence", "malformed_tool_use"]
      const finishes: Array<string> = []
      for (const reason of reasons) {
        const response = yield* withServer(jsonReply(200, converseBody([{ text: "x" }], reason)), (p) => p.generate(request))
        finishes.push(response.finishReason)
      }
      expect(finishes).toEqual(["length", "length", "content_filter", "content_filter", "stop", "other"])
      const structured = yield* withServer(
        jsonReply(200, converseBody([{ toolUse: { toolUseId: "t", name: "answer", input: { city: "Paris" } } }], "tool_use")),
        (p) => p.generate({ ...request, responseFormat: { type: "json_schema", name: "answer", schema: { type: "object" } } })
      )
      expect(JSON.parse(structured.text)).toEqual({ city: "Paris" })
      expect(structured.toolCalls).toEqual([])
      expect(structured.finishReason).toBe("stop")
    }))

  it.live("a 200 body that is not a Converse response is InvalidOutput{malformed-response}", () =>
    Effect.gen(function*() {
      const error = yield* withServer(jsonReply(200, { output: { message: { content: "nope" } } }), (p) => Effect.flip(p.generate(request)))
      expect(error._tag).toBe("InvalidOutput")
      if (error._tag === "InvalidOutput") expect(error.reason).toBe("malformed-response")
      expect(error.requestId).toBe("req-json-1")
    }))

  it.effect("the signature's time is Effect's Clock (TestClock: deterministic x-amz-date, no real time)", () =>
    Effect.gen(function*() {
      const seen: Array<HttpClientRequest.HttpClientRequest> = []
      yield* TestClock.setTime(Date.UTC(2026, 2, 4, 5, 6, 7))
      const provider = yield* Bedrock.make(sigV4Options("https://bedrock.test")).pipe(
        Effect.provideService(HttpClient.HttpClient, binaryClient({ status: 200, body: [utf8.encode(JSON.stringify(converseBody([{ text: "ok" }])))] }, seen))
      )
      yield* provider.generate(request)
      expect(seen[0]!.headers["x-amz-date"]).toBe("20260304T050607Z")
      expect(seen[0]!.headers["authorization"]).toContain(`Credential=${KEY_ID}/20260304/us-east-1/bedrock/aws4_request`)
    }))
})

// ---------------------------------------------------------------------------------------------------
// ConverseStream
// ---------------------------------------------------------------------------------------------------

describe("Bedrock ConverseStream", () => {
  const fullStream = [
    ...textStream(["Hel", "lo"]),
    ...toolStream(1, "tooluse_9", "weather", ["{\"city\":", "\"Rome\"}"]),
    stop("tool_use"),
    metadata
  ]

  it.live("decodes text, toolUse and metadata, and finishes after metadata", () =>
    withServer(eventStream(fullStream), (p, server) =>
      Effect.gen(function*() {
        const events = yield* collect(p, { ...request, tools: [{ name: "weather", parameters: { type: "object" } }] })
        expect(events.map((e) => e._tag)).toEqual([
          "Metadata",
          "TextDelta",
          "TextDelta",
          "ToolCallDelta",
          "ToolCallDelta",
          "ToolCallDelta",
          "Usage",
          "Finish"
        ])
        const response = finishOf(events)
        expect(response.text).toBe("Hello")
        expect(response.toolCalls).toEqual([{ id: "tooluse_9", name: "weather", arguments: "{\"city\":\"Rome\"}" }])
        expect(response.finishReason).toBe("tool_calls")
        expect(response.usage).toEqual({ inputTokens: 12, outputTokens: 7, totalTokens: 19 })
        expect(response.requestId).toBe("req-stream-1")
        expect(server.requests[0]!.path).toBe(`${MODEL_PATH}/converse-stream`)
        expect(server.requests[0]!.headers["accept"]).toBe("application/vnd.amazon.eventstream")
      })))

  it.live("messages split at every byte boundary decode the same (one byte per write)", () => {
    const bytes = concatBytes(fullStream)
    const singles = Array.from(bytes, (b) => Uint8Array.of(b))
    return withServer(eventStream([], { chunks: singles }), (p) =>
      Effect.gen(function*() {
        const response = finishOf(yield* collect(p))
        expect(response.text).toBe("Hello")
        expect(response.toolCalls[0]!.arguments).toBe("{\"city\":\"Rome\"}")
      }))
  })

  it.live("structured output via the forced tool streams the tool input as text", () =>
    withServer(eventStream([...toolStream(0, "t", "answer", ["{\"a\":", "1}"]), stop("tool_use"), metadata]), (p) =>
      Effect.gen(function*() {
        const events = yield* collect(p, { ...request, responseFormat: { type: "json_schema", name: "answer", schema: { type: "object" } } })
        const response = finishOf(events)
        expect(response.text).toBe("{\"a\":1}")
        expect(response.toolCalls).toEqual([])
        expect(response.finishReason).toBe("stop")
        expect(events.filter((e) => e._tag === "ToolCallDelta")).toEqual([])
      })))

  it.live("metadata before messageStop is accepted: the answer is whole once both arrived", () =>
    withServer(eventStream([...textStream(["ok"]), metadata, stop("end_turn")]), (p) =>
      Effect.gen(function*() {
        const response = finishOf(yield* collect(p))
        expect(response.text).toBe("ok")
        expect(response.usage.totalTokens).toBe(19)
      })))

  it.live("a body that ends cleanly after messageStop without metadata is complete, with zero usage", () =>
    withServer(eventStream([...textStream(["done"]), stop("end_turn")]), (p) =>
      Effect.gen(function*() {
        const response = finishOf(yield* collect(p))
        expect(response.text).toBe("done")
        expect(response.finishReason).toBe("stop")
        expect(response.usage).toEqual({ inputTokens: 0, outputTokens: 0, totalTokens: 0 })
      })))

  it.live("a body that ends before messageStop is StreamInterrupted with the partial text", () =>
    withServer(eventStream(textStream(["par", "tial"])), (p) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(collect(p))
        expect(error._tag).toBe("StreamInterrupted")
        if (error._tag === "StreamInterrupted") {
          expect(error.partialText).toBe("partial")
          expect(error.receivedContent).toBe(true)
        }
      })))

  it.live("a stream cut mid-frame (socket destroyed) is StreamInterrupted", () => {
    const bytes = concatBytes([...textStream(["abc"]), stop("end_turn"), metadata])
    return withServer(eventStream([], { chunks: [bytes.subarray(0, bytes.length - 9)], destroy: true }), (p) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(collect(p))
        expect(error._tag).toBe("StreamInterrupted")
        expect(isRetryable(error)).toBe(true)
      }))
  })

  it.live("a body that ends cleanly inside a frame or inside a prelude (even after messageStop) is StreamInterrupted", () => {
    const bytes = concatBytes([...textStream(["abc"]), stop("end_turn"), metadata])
    const truncatedPrelude = concatBytes([...textStream(["abc"]), stop("end_turn"), metadata.subarray(0, 6)])
    return Effect.gen(function*() {
      for (const body of [bytes.subarray(0, bytes.length - 5), truncatedPrelude]) {
        const error = yield* withServer(eventStream([], { chunks: [body] }), (p) => Effect.flip(collect(p)))
        expect(error._tag).toBe("StreamInterrupted")
      }
    })
  })

  it.live("a corrupt message CRC is InvalidOutput{malformed-response}, retryable — after the deltas before it", () => {
    const good = textStream(["kept"])
    const bad = stop("end_turn").slice()
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff
    return withServer(eventStream([...good, bad, metadata]), (p) =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const error = yield* Effect.flip(Stream.runForEach(p.stream(request), (e) => Effect.sync(() => seen.push(e._tag))))
        expect(error._tag).toBe("InvalidOutput")
        if (error._tag === "InvalidOutput") expect(error.reason).toBe("malformed-response")
        expect(isRetryable(error)).toBe(true)
        expect(actionOf(error)).toBe("wait")
        expect(seen).toContain("TextDelta")
      }))
  })

  it.live("a corrupt prelude (a flipped length bit) is InvalidOutput, not a wait for bytes that never come", () => {
    const bad = event("messageStart", { role: "assistant" }).slice()
    bad[1] = bad[1]! ^ 0x40
    return withServer(eventStream([bad]), (p) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(collect(p))
        expect(error._tag).toBe("InvalidOutput")
        expect(error.message).toContain("prelude")
      }))
  })

  it.live("a message over maxSseEventBytes is ResponseTooLarge before it is buffered", () =>
    withServer(eventStream([event("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "x".repeat(5_000) } })]), (p) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(collect(p))
        expect(error._tag).toBe("ResponseTooLarge")
      }), { maxSseEventBytes: 1_024 }))
})

// ---------------------------------------------------------------------------------------------------
// Classification over real HTTP: x-amzn-errortype, and in-stream exceptions
// ---------------------------------------------------------------------------------------------------

describe("Bedrock failures — HTTP errors classified by x-amzn-errortype", () => {
  const failureOf = (handler: Handler) => withServer(handler, (p) => Effect.flip(p.generate(request)))

  it.live.each([
    [429, "ThrottlingException", "Too many tokens, please wait before trying again.", "RateLimited", "wait"],
    [429, "ThrottlingException", "Too many tokens per day, please wait before trying again.", "QuotaExhausted", "reroute"],
    [400, "ServiceQuotaExceededException", "Your request exceeds the service quota for your account.", "RateLimited", "wait"],
    [503, "ServiceUnavailableException", "Too many connections, please wait before trying again.", "Overloaded", "reroute"],
    [500, "InternalServerException", "An internal server error occurred.", "ServerError", "wait"],
    [424, "ModelErrorException", "The request failed due to an error while processing the model.", "ServerError", "wait"],
    [424, "ModelStreamErrorException", "A streaming error occurred. Retry your request.", "ServerError", "wait"],
    [429, "ModelNotReadyException", "The model is not ready to serve inference requests.", "ServerError", "wait"],
    [408, "ModelTimeoutException", "The request took too long to process.", "ServerError", "wait"],
    [400, "ValidationException", "Malformed input request: #: extraneous key [foo] is not permitted", "BadRequest", "stop"],
    [400, "ValidationException", "Input is too long for requested model.", "ContextLengthExceeded", "stop"],
    [400, "ValidationException", "The model returned the following errors: prompt is too long: 200049 tokens > 200000 maximum", "ContextLengthExceeded", "stop"],
    [403, "AccessDeniedException", "You don't have access to the model with the specified model ID.", "Unauthorized", "reroute"],
    [403, "AccessDeniedException", "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided.", "QuotaExhausted", "reroute"],
    [403, "UnrecognizedClientException", "The security token included in the request is invalid.", "Unauthorized", "reroute"],
    [403, "ExpiredTokenException", "The security token included in the request is expired", "Unauthorized", "reroute"],
    [403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided.", "Unauthorized", "reroute"],
    [404, "ResourceNotFoundException", "Model not found.", "NotFound", "reroute"]
  ] as const)("%d %s (%s) → %s (%s)", ([status, code, message, tag, action]) =>
    Effect.gen(function*() {
      const error = yield* failureOf(awsError(status, code, message))
      expect(error._tag).toBe(tag)
      expect(error.status).toBe(status)
      expect(error.providerType).toBe(code)
      expect(error.requestId).toBe("req-json-1")
      expect(error.message).toBe(message)
      expect(actionOf(error)).toBe(action)
      if (error._tag === "RateLimited") expect(error.retryAfterMs).toBeUndefined()
    }))

  it.live("the model's own status decides a Model*Exception (originalStatusCode 529 → Overloaded, 400 → BadRequest)", () =>
    Effect.gen(function*() {
      const overloaded = yield* failureOf(jsonReply(424, { message: "Overloaded", originalStatusCode: 529 }, { "x-amzn-errortype": "ModelErrorException" }))
      expect(overloaded._tag).toBe("Overloaded")
      expect(overloaded.providerCode).toBe("529")
      const rejected = yield* failureOf(jsonReply(424, { message: "bad input", originalStatusCode: 400 }, { "x-amzn-errortype": "ModelErrorException" }))
      expect(rejected._tag).toBe("BadRequest")
    }))

  it.live("without the header, the body's __type names the error (restJson1 order); a wait hint is honoured if sent", () =>
    Effect.gen(function*() {
      const typed = yield* failureOf(jsonReply(400, { __type: "com.amazonaws.bedrockruntime#ValidationException", message: "Input is too long for requested model." }))
      expect(typed._tag).toBe("ContextLengthExceeded")
      expect(typed.providerType).toBe("ValidationException")
      const hinted = yield* failureOf(awsError(429, "ThrottlingException", "Rate exceeded", { "x-amz-retry-after": "1500" }))
      expect(hinted._tag === "RateLimited" && hinted.retryAfterMs).toBe(1500)
      const retryAfter = yield* failureOf(awsError(429, "ThrottlingException", "Rate exceeded", { "retry-after": "3" }))
      expect(retryAfter._tag === "RateLimited" && retryAfter.retryAfterMs).toBe(3000)
    }))

  it.live("an unknown code or a non-JSON body falls back to the status", () =>
    Effect.gen(function*() {
      const unknown = yield* failureOf(awsError(502, "SomethingNewException", "boom"))
      expect(unknown._tag).toBe("ServerError")
      expect(unknown.providerType).toBe("SomethingNewException")
      const html = yield* failureOf((_req, _body, res) => {
        res.writeHead(503, { "content-type": "text/html" })
        res.end("<html>Service Unavailable</html>")
      })
      expect(html._tag).toBe("Overloaded")
      expect(html.rawBody).toContain("Service Unavailable")
    }))
})

describe("Bedrock failures — exceptions inside a 200 ConverseStream", () => {
  const streamFailure = (messages: ReadonlyArray<Uint8Array>) => withServer(eventStream(messages), (p) => Effect.flip(collect(p)))

  it.live.each([
    ["throttlingException", { message: "Too many tokens, please wait before trying again." }, "RateLimited", "wait"],
    ["serviceUnavailableException", { message: "Bedrock is unable to process your request." }, "Overloaded", "reroute"],
    ["modelStreamErrorException", { message: "A streaming error occurred.", originalStatusCode: 500 }, "ServerError", "wait"],
    ["modelStreamErrorException", { message: "Overloaded", originalStatusCode: 529, originalMessage: "{\"type\":\"overloaded_error\"}" }, "Overloaded", "reroute"],
    ["internalServerException", { message: "An internal server error occurred." }, "ServerError", "wait"],
    ["validationException", { message: "Input is too long for requested model." }, "ContextLengthExceeded", "stop"],
    ["validationException", { message: "messages.1.content: blank text" }, "BadRequest", "stop"],
    ["somethingNewException", { message: "??" }, "ServerError", "wait"]
  ] as const)("%s %j → %s (%s)", ([type, payload, tag, action]) =>
    Effect.gen(function*() {
      const error = yield* streamFailure([...textStream(["partial "]), exception(type, payload)])
      expect(error._tag).toBe(tag)
      expect(error.status).toBeUndefined()
      expect(error.providerType).toBe(type[0]!.toUpperCase() + type.slice(1))
      expect(error.requestId).toBe("req-stream-1")
      expect(actionOf(error)).toBe(action)
    }))

  it.live("an unmodelled `error` message (:error-code / :error-message) is classified too", () =>
    Effect.gen(function*() {
      const error = yield* streamFailure([
        encodeMessage({ ":message-type": "error", ":error-code": "ThrottlingException", ":error-message": "slow down" }, new Uint8Array(0))
      ])
      expect(error._tag).toBe("RateLimited")
      expect(error.message).toBe("slow down")
    }))

  it.live("deltas before an exception reach the consumer before the failure", () =>
    withServer(eventStream([...textStream(["a", "b"]), exception("throttlingException", { message: "x" })]), (p) =>
      Effect.gen(function*() {
        const texts: Array<string> = []
        const error = yield* Effect.flip(Stream.runForEach(p.stream(request), (e) => Effect.sync(() => e._tag === "TextDelta" && texts.push(e.text))))
        expect(texts).toEqual(["a", "b"])
        expect(error._tag).toBe("RateLimited")
      })))
})

// ---------------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------------

describe("Bedrock secrets never leave in an error", () => {
  const echo = `secret ${SECRET} token ${SESSION} bearer ${BEARER}`
  const assertClean = (error: unknown) => {
    const text = JSON.stringify(error) + String(error) + (error instanceof Error ? error.message : "")
    for (const secret of [SECRET, SESSION, BEARER]) expect(text).not.toContain(secret)
  }

  it.live("an error body and headers echoing the secret key, session token or bearer token are scrubbed (SigV4)", () =>
    Effect.gen(function*() {
      const http = yield* withServer(awsError(403, "InvalidSignatureException", echo, { "x-amzn-requestid": SESSION }), (p) => Effect.flip(p.generate(request)))
      assertClean(http)
      expect(http.message).toContain("<redacted>")
      const inStream = yield* withServer(eventStream([exception("validationException", { message: echo })]), (p) => Effect.flip(collect(p)))
      assertClean(inStream)
      const malformedBody = yield* withServer(jsonReply(200, `{"broken": "${SECRET}`), (p) => Effect.flip(p.generate(request)))
      assertClean(malformedBody)
    }))

  it.live("a secret split across two deltas of an interrupted stream is scrubbed from partialText", () =>
    Effect.gen(function*() {
      const half = Math.floor(SECRET.length / 2)
      const error = yield* withServer(eventStream(textStream(["key: ", SECRET.slice(0, half), SECRET.slice(half)])), (p) => Effect.flip(collect(p)))
      expect(error._tag).toBe("StreamInterrupted")
      assertClean(error)
    }))

  it.live("the bearer token is scrubbed too (API-key mode)", () =>
    Effect.gen(function*() {
      const server = yield* wireServer(awsError(403, "AccessDeniedException", `bearer ${BEARER}`, { "x-amzn-requestid": BEARER }))
      const provider = yield* Bedrock.make({ region: "us-east-1", baseUrl: server.url, apiKey: Redacted.make(BEARER) })
      const error = yield* Effect.flip(provider.generate(request))
      assertClean(error)
      expect(error.requestId).toBeUndefined()
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.effect("InvalidOptions never echo a credential", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(Bedrock.make({
        region: "us-east-1",
        credentials: { accessKeyId: KEY_ID, secretAccessKey: Redacted.make(`${SECRET}\n`), sessionToken: Redacted.make(SESSION) }
      }))
      expect(bad.option).toBe("credentials.secretAccessKey")
      assertClean(bad)
    }).pipe(Effect.provide(Transport.layer())))
})

// ---------------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------------

describe("Bedrock construction", () => {
  const optionOf = (options: Bedrock.BedrockOptions) =>
    Effect.map(Effect.flip(Bedrock.make(options)), (error) => `${error._tag}:${error.option}`)

  it.effect("bad region, missing or double credentials, unsendable values and bad endpoints are InvalidOptions", () =>
    Effect.gen(function*() {
      const credentials = { accessKeyId: KEY_ID, secretAccessKey: Redacted.make(SECRET) }
      expect(yield* optionOf({ region: "US East", credentials })).toBe("InvalidOptions:region")
      expect(yield* optionOf({ region: "us-east-1.evil.com/x", credentials })).toBe("InvalidOptions:region")
      expect(yield* optionOf({ region: "us-east-1" })).toBe("InvalidOptions:credentials")
      expect(yield* optionOf({ region: "us-east-1", credentials, apiKey: Redacted.make(BEARER) })).toBe("InvalidOptions:credentials")
      expect(yield* optionOf({ region: "us-east-1", credentials: { ...credentials, accessKeyId: "" } })).toBe("InvalidOptions:credentials.accessKeyId")
      expect(yield* optionOf({ region: "us-east-1", credentials: { ...credentials, sessionToken: Redacted.make("a\nb") } })).toBe("InvalidOptions:credentials.sessionToken")
      // A JS caller passing a plain string where a Redacted is expected gets a typed error, not a defect.
      const plain = { accessKeyId: KEY_ID, secretAccessKey: SECRET as unknown as Redacted.Redacted<string> }
      expect(yield* optionOf({ region: "us-east-1", credentials: plain })).toBe("InvalidOptions:credentials.secretAccessKey")
      expect(yield* optionOf({ region: "us-east-1", apiKey: Redacted.make("has space") })).toBe("InvalidOptions:apiKey")
      expect(yield* optionOf({ region: "us-east-1", credentials, baseUrl: "ftp://x" })).toBe("InvalidOptions:baseUrl")
      expect(yield* optionOf({ region: "us-east-1", credentials, maxSseEventBytes: 0 })).toBe("InvalidOptions:maxSseEventBytes")
      expect(yield* optionOf({ region: "us-east-1", credentials, headers: { "x-bad": "a\r\nb" } })).toBe("InvalidOptions:headers[\"x-bad\"]")
    }).pipe(Effect.provide(Transport.layer())))

  const fromEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.live("layerConfig reads the AWS variables: the bearer token wins; keys sign; the endpoint override is used", () =>
    Effect.gen(function*() {
      const verified: Array<{ ok: boolean; reason: string; signedHeaders: ReadonlyArray<string> }> = []
      const server = yield* wireServer(verifying(verified, jsonReply(200, converseBody([{ text: "ok" }]))))
      const sigv4 = yield* Effect.provide(Provider, Bedrock.layerConfig.pipe(Layer.provide(fromEnv({
        AWS_DEFAULT_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: KEY_ID,
        AWS_SECRET_ACCESS_KEY: SECRET,
        AWS_SESSION_TOKEN: SESSION,
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME: server.url
      }))))
      expect((yield* sigv4.generate(request)).text).toBe("ok")
      expect(verified[0]).toMatchObject({ ok: true })
      const bearer = yield* Effect.provide(Provider, Bedrock.layerConfig.pipe(Layer.provide(fromEnv({
        AWS_REGION: "us-east-1",
        AWS_BEARER_TOKEN_BEDROCK: BEARER,
        AWS_ACCESS_KEY_ID: KEY_ID,
        AWS_SECRET_ACCESS_KEY: SECRET,
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME: server.url
      }))))
      yield* bearer.generate(request)
      expect(server.requests[1]!.headers["authorization"]).toBe(`Bearer ${BEARER}`)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))

  it.effect("layerConfig: no credentials or half of them is InvalidOptions naming the variable; no region a ConfigError", () =>
    Effect.gen(function*() {
      const failure = (env: Record<string, string>) =>
        Effect.flip(Effect.provide(Provider, Bedrock.layerConfig.pipe(Layer.provide(fromEnv(env)))))
      const none = yield* failure({ AWS_REGION: "us-east-1" })
      expect(none._tag === "InvalidOptions" && none.option).toBe("AWS_ACCESS_KEY_ID")
      const half = yield* failure({ AWS_REGION: "us-east-1", AWS_ACCESS_KEY_ID: KEY_ID })
      expect(half._tag === "InvalidOptions" && half.option).toBe("AWS_SECRET_ACCESS_KEY")
      const badRegion = yield* failure({ AWS_REGION: "nowhere", AWS_BEARER_TOKEN_BEDROCK: BEARER })
      expect(badRegion._tag === "InvalidOptions" && badRegion.option).toBe("region")
      const noRegion = yield* failure({ AWS_BEARER_TOKEN_BEDROCK: BEARER })
      expect(noRegion._tag).not.toBe("InvalidOptions")
      expect(String(noRegion)).toContain("AWS_DEFAULT_REGION")
    }).pipe(Effect.provide(Transport.layer())))
})

// ---------------------------------------------------------------------------------------------------
// Fuzz: bad provider bytes never become defects
// ---------------------------------------------------------------------------------------------------

interface BinaryReply {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body: ReadonlyArray<Uint8Array>
  readonly breakAfter?: boolean
}

/** An in-memory HttpClient answering with these bytes (no socket), recording the requests it saw. */
const binaryClient = (reply: BinaryReply, seen: Array<HttpClientRequest.HttpClientRequest> = []): HttpClient.HttpClient =>
  HttpClient.make((req) => {
    seen.push(req)
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const b of reply.body) controller.enqueue(b)
        if (reply.breakAfter === true) controller.error(Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }))
        else controller.close()
      }
    })
    const nullBody = reply.status === 204 || reply.status === 205 || reply.status === 304
    return Effect.succeed(HttpClientResponse.fromWeb(req, new Response(nullBody ? null : body, { status: reply.status, headers: reply.headers ?? {} })))
  })

/** Runs generate or stream against a reply; fails the property on a defect. */
const neverDefects = async (reply: BinaryReply, streamMode: boolean) => {
  const program = Bedrock.make(sigV4Options("https://bedrock.test", { maxBodyBytes: 8_192, maxSseEventBytes: 2_048 })).pipe(
    Effect.provideService(HttpClient.HttpClient, binaryClient(reply)),
    Effect.flatMap((p) => streamMode ? Stream.runDrain(p.stream(request)) : Effect.asVoid(p.generate(request)))
  )
  const exit = await Effect.runPromiseExit(program)
  if (Exit.isFailure(exit)) {
    expect(Cause.isDie(exit.cause)).toBe(false)
    expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
  }
  return exit
}

/** Splits bytes at the given (sorted, de-duplicated) cut points. */
const splitAt = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let from = 0
  for (const at of [...points, bytes.length]) {
    if (at > from) out.push(bytes.subarray(from, at))
    from = Math.max(from, at)
  }
  return out
}

describe("Bedrock: bad provider bytes never become defects", () => {
  const streamHeaders = { "content-type": "application/vnd.amazon.eventstream" }
  const wrongTypes = fc.constantFrom(
    event("contentBlockDelta", { contentBlockIndex: "x", delta: { text: 7 } }),
    event("contentBlockDelta", { contentBlockIndex: 3, delta: { toolUse: { input: { not: "a string" } } } }),
    event("contentBlockStart", { contentBlockIndex: null, start: { toolUse: "nope" } }),
    event("messageStop", { stopReason: 42 }),
    event("metadata", { usage: { inputTokens: "many", outputTokens: null } }),
    encodeMessage({ ":message-type": "event", ":event-type": "contentBlockDelta" }, utf8.encode("[1,2,3]")),
    encodeMessage({ ":message-type": "event", ":event-type": "metadata" }, utf8.encode("not json")),
    encodeMessage({ ":message-type": "exception" }, utf8.encode("{}")),
    encodeMessage({ ":message-type": "surprise" }, new Uint8Array(0)),
    encodeMessage({}, new Uint8Array(0))
  )
  const validMessage = fc.constantFrom(...textStream(["a", "b"]), ...toolStream(1, "t", "f", ["{}"]), stop("end_turn"), metadata)
  const corrupted = fc.tuple(validMessage, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([m, at, flip]) => {
    const copy = m.slice()
    copy[at % copy.length] = copy[at % copy.length]! ^ flip
    return copy
  })
  const message = fc.oneof(validMessage, wrongTypes, corrupted, fc.uint8Array({ maxLength: 64 }))

  it.effect("event streams: valid, mistyped, corrupted and random messages, cut anywhere, ended or broken", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(message, { maxLength: 10 }),
          fc.array(fc.nat(), { maxLength: 12 }),
          fc.boolean(),
          async (messages, cuts, breakAfter) => {
            await neverDefects({ status: 200, headers: streamHeaders, body: splitAt(concatBytes(messages), cuts), breakAfter }, true)
          }
        ),
        { numRuns: 400, seed: 20260316 }
      )
    ))

  it.effect("any status, header and body on generate and stream", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 200, max: 599 }),
          fc.oneof(fc.string(), fc.json(), fc.constant("{\"message\":7,\"__type\":[],\"originalStatusCode\":\"x\"}")),
          fc.option(fc.string({ maxLength: 80 }), { nil: undefined }),
          fc.boolean(),
          async (status, body, errorType, streamMode) => {
            const headers: Record<string, string> = { "content-type": "application/json" }
            if (errorType !== undefined && /^[\t\x20-\x7e]*$/.test(errorType)) headers["x-amzn-errortype"] = errorType
            await neverDefects({ status, headers, body: [utf8.encode(body)] }, streamMode)
          }
        ),
        { numRuns: 300, seed: 20260317 }
      )
    ))

  it("the decoder yields the same messages however the bytes are split (every single cut point)", () => {
    const messages = [...textStream(["Hel", "lo"]), ...toolStream(1, "t", "f", ["{\"a\":1}"]), stop("tool_use"), metadata]
    const bytes = concatBytes(messages)
    const whole = new EventStreamDecoder(4_096).push(bytes)
    expect(whole.failure).toBeUndefined()
    expect(whole.messages.length).toBe(messages.length)
    for (let cut = 0; cut <= bytes.length; cut++) {
      const decoder = new EventStreamDecoder(4_096)
      const first = decoder.push(bytes.subarray(0, cut))
      const second = decoder.push(bytes.subarray(cut))
      expect(first.failure ?? second.failure).toBeUndefined()
      expect([...first.messages, ...second.messages]).toEqual(whole.messages)
      expect(decoder.pending).toBe(0)
    }
  })

  it("every corrupted byte of a message is caught (CRC), never a defect or a silent pass", () => {
    const bytes = stop("end_turn")
    for (let at = 0; at < bytes.length; at++) {
      const copy = bytes.slice()
      copy[at] = copy[at]! ^ 0x01
      const decoded = new EventStreamDecoder(4_096).push(copy)
      // Caught as corrupt, or (a length made longer that still passes no check) waiting for bytes: never a pass.
      expect(decoded.messages).toEqual([])
    }
  })
})

// ---------------------------------------------------------------------------------------------------
// The official SDK against the same wire: our framing and encoding are the real ones
// ---------------------------------------------------------------------------------------------------

describe("interop with @aws-sdk/client-bedrock-runtime", () => {
  const sdk = (endpoint: string) =>
    new BedrockRuntimeClient({
      region: "us-east-1",
      endpoint,
      credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET, sessionToken: SESSION },
      // HTTP/1.1 to the local server (the SDK's default Bedrock handler is HTTP/2), one attempt.
      requestHandler: new NodeHttpHandler(),
      maxAttempts: 1
    })

  const conversation: GenerateRequest = {
    model: MODEL,
    system: "be brief",
    messages: [
      { role: "user", content: "weather?" },
      { role: "assistant", content: "", toolCalls: [{ id: "t1", name: "weather", arguments: "{\"city\":\"Paris\"}" }] },
      { role: "tool", toolCallId: "t1", content: "sunny" }
    ],
    maxTokens: 100,
    temperature: 0.5,
    stop: ["END"],
    tools: [{ name: "weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } } }],
    toolChoice: "auto"
  }

  it.live("the SDK parses the event-stream bytes our decoder reads, to the same text, tool call and usage", () => {
    const messages = [...textStream(["Hel", "lo"]), ...toolStream(1, "tooluse_9", "weather", ["{\"city\":", "\"Rome\"}"]), stop("tool_use"), metadata]
    return withServer(eventStream(messages), (p, server) =>
      Effect.gen(function*() {
        const ours = finishOf(yield* collect(p))
        const theirs = yield* Effect.promise(async () => {
          const output = await sdk(server.url).send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: "user", content: [{ text: "hi" }] }] }))
          let text = ""
          let input = ""
          let toolName = ""
          let stopReason = ""
          let totalTokens = 0
          for await (const ev of output.stream ?? []) {
            if (ev.contentBlockDelta?.delta?.text !== undefined) text += ev.contentBlockDelta.delta.text
            if (ev.contentBlockDelta?.delta?.toolUse?.input !== undefined) input += ev.contentBlockDelta.delta.toolUse.input
            if (ev.contentBlockStart?.start?.toolUse?.name !== undefined) toolName = ev.contentBlockStart.start.toolUse.name
            if (ev.messageStop?.stopReason !== undefined) stopReason = ev.messageStop.stopReason
            if (ev.metadata?.usage?.totalTokens !== undefined) totalTokens = ev.metadata.usage.totalTokens
          }
          return { text, input, toolName, stopReason, totalTokens }
        })
        expect(theirs).toEqual({ text: ours.text, input: ours.toolCalls[0]!.arguments, toolName: ours.toolCalls[0]!.name, stopReason: ours.rawFinishReason, totalTokens: ours.usage.totalTokens })
        // The SDK asked for the same path as we do.
        expect(server.requests[1]!.path).toBe(server.requests[0]!.path)
      }))
  })

  it.live("the SDK sends the Converse body we encode, on the same path, signed the way our verifier checks", () => {
    const verified: Array<{ ok: boolean; reason: string; signedHeaders: ReadonlyArray<string> }> = []
    return withServer(verifying(verified, jsonReply(200, converseBody([{ text: "ok" }]))), (p, server) =>
      Effect.gen(function*() {
        yield* p.generate(conversation)
        const sdkResponse = yield* Effect.promise(() =>
          sdk(server.url).send(new ConverseCommand({
            modelId: MODEL,
            system: [{ text: "be brief" }],
            messages: [
              { role: "user", content: [{ text: "weather?" }] },
              { role: "assistant", content: [{ toolUse: { toolUseId: "t1", name: "weather", input: { city: "Paris" } } }] },
              { role: "user", content: [{ toolResult: { toolUseId: "t1", content: [{ text: "sunny" }] } }] }
            ],
            inferenceConfig: { maxTokens: 100, temperature: 0.5, stopSequences: ["END"] },
            toolConfig: {
              tools: [{ toolSpec: { name: "weather", description: "Weather", inputSchema: { json: { type: "object", properties: { city: { type: "string" } } } } } }],
              toolChoice: { auto: {} }
            }
          }))
        )
        expect(sdkResponse.output?.message?.content?.[0]?.text).toBe("ok")
        const [ours, theirs] = [server.requests[0]!, server.requests[1]!]
        expect(ours.body).toEqual(theirs.body)
        expect(ours.path).toBe(theirs.path)
        expect(ours.headers["content-type"]).toBe(theirs.headers["content-type"])
        // The verifier accepts the official SDK's signature (so it checks what AWS checks) and ours.
        expect(verified.map((v) => v.ok)).toEqual([true, true])
      }))
  })

  it.live("for every exception, the SDK's error name is our providerType (HTTP and in-stream)", () =>
    Effect.gen(function*() {
      const codes = [
        ["ThrottlingException", 429],
        ["ServiceUnavailableException", 503],
        ["ValidationException", 400],
        ["InternalServerException", 500],
        ["ModelStreamErrorException", 424],
        ["AccessDeniedException", 403],
        ["ResourceNotFoundException", 404],
        ["ModelTimeoutException", 408]
      ] as const
      for (const [code, status] of codes) {
        const ours = yield* withServer(awsError(status, code, "m"), (p) => Effect.flip(p.generate(request)))
        const theirs = yield* withServer(awsError(status, code, "m"), (_p, server) =>
          Effect.promise(() =>
            sdk(server.url).send(new ConverseCommand({ modelId: MODEL, messages: [{ role: "user", content: [{ text: "hi" }] }] })).then(
              () => "no error",
              (e: unknown) => (e instanceof Error ? e.name : String(e))
            )
          ))
        expect(ours.providerType).toBe(theirs)
      }
      for (const type of ["throttlingException", "serviceUnavailableException", "validationException", "internalServerException", "modelStreamErrorException"]) {
        const ours = yield* withServer(eventStream([exception(type, { message: "m" })]), (p) => Effect.flip(collect(p)))
        const theirs = yield* withServer(eventStream([exception(type, { message: "m" })]), (_p, server) =>
          Effect.promise(async () => {
            try {
              const output = await sdk(server.url).send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: "user", content: [{ text: "hi" }] }] }))
              for await (const _ of output.stream ?? []) { /* drain */ }
              return "no error"
            } catch (e) {
              return e instanceof Error ? e.name : String(e)
            }
          }))
        expect(ours.providerType).toBe(theirs)
      }
    }))
})

// ---------------------------------------------------------------------------------------------------
// The chaos server's Bedrock rendering (src/testing/internal/bedrockWire.ts) speaks what we decode
// ---------------------------------------------------------------------------------------------------

describe("bedrockWire renders what the adapter decodes", () => {
  const completion: Completion = {
    id: "c1",
    model: MODEL,
    created: 0,
    text: "Hello",
    deltas: ["Hel", "lo"],
    toolCalls: [{ id: "abc", name: "weather", arguments: "{\"city\":\"Rome\"}", argumentDeltas: ["{\"city\":", "\"Rome\"}"] }],
    forcedTool: false,
    finish: "tool_calls",
    promptTokens: 11,
    completionTokens: 5
  }
  const frames = bedrockWire.stream(completion, false)
  const bytes = [...frames.head, ...frames.deltas, ...frames.tail].map((f) => (typeof f === "string" ? utf8.encode(f) : f))

  it.live("a rendered stream and body decode to the completion", () =>
    Effect.gen(function*() {
      const streamed = yield* withServer(eventStream(bytes), (p) => Effect.map(collect(p), finishOf))
      const whole = yield* withServer(jsonReply(200, bedrockWire.completion(completion)), (p) => p.generate(request))
      for (const response of [streamed, whole]) {
        expect(response.text).toBe("Hello")
        expect(response.toolCalls).toEqual([{ id: "tooluse_abc", name: "weather", arguments: "{\"city\":\"Rome\"}" }])
        expect(response.finishReason).toBe("tool_calls")
        expect(response.usage).toEqual({ inputTokens: 11, outputTokens: 5, totalTokens: 16 })
      }
    }))

  it.live("rendered errors classify as intended, over HTTP and in the stream", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ErrorSpec, string]> = [
        [{ kind: "rate_limit", limitType: "tokens", model: MODEL, limit: 1, used: 1, requested: 1, waitMs: 1000, tooLarge: false }, "RateLimited"],
        [{ kind: "insufficient_quota" }, "QuotaExhausted"],
        [{ kind: "billing" }, "QuotaExhausted"],
        [{ kind: "overloaded", status: 503 }, "Overloaded"],
        [{ kind: "context_length", requestedTokens: 300_000, contextWindow: 200_000 }, "ContextLengthExceeded"],
        [{ kind: "server_error" }, "ServerError"],
        [{ kind: "http", status: 404, model: MODEL }, "NotFound"],
        [{ kind: "invalid_request", message: "bad", param: null }, "BadRequest"]
      ]
      for (const [spec, tag] of cases) {
        const rendered = bedrockWire.error(spec, "req")
        const http = yield* withServer(jsonReply(rendered.status, rendered.body, { ...rendered.headers }), (p) => Effect.flip(p.generate(request)))
        expect(http._tag).toBe(tag)
        const frame = bedrockWire.streamError(spec, "req")
        const inStream = yield* withServer(eventStream([typeof frame === "string" ? utf8.encode(frame) : frame]), (p) => Effect.flip(collect(p)))
        // In-stream, only the five ConverseStream exceptions exist; auth/not-found have no stream form.
        if (spec.kind !== "http" && spec.kind !== "billing") expect(inStream._tag).toBe(tag)
      }
    }))

  it("parseBedrockRequest reads what the adapter encodes (model and mode from the path)", () => {
    const body = Bedrock.encodeRequest({
      ...request,
      system: "sys",
      responseFormat: { type: "json_schema", name: "answer", schema: { type: "object" } }
    }, { maxTokens: 42 })
    const parsed = parseBedrockRequest(JSON.stringify(body), { model: MODEL, stream: true })
    expect(parsed._tag === "Right" && parsed.request).toMatchObject({
      api: "bedrock",
      model: MODEL,
      stream: true,
      maxTokens: 42,
      promptText: "sys\nhi",
      lastUserText: "hi",
      forcedTool: "answer"
    })
    expect(parseBedrockRequest("{", { model: MODEL })._tag).toBe("Left")
    expect(parseBedrockRequest("{}", { model: MODEL })._tag).toBe("Left")
  })
})

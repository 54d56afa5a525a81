/**
 * Issue 14, defect 2: an API key echoed by the server must not survive anywhere. A hostile server (a
 * proxy, a misconfigured gateway, a hostile endpoint) reads the key from the request (`authorization`
 * for OpenAI Chat, `x-api-key` for Anthropic Messages) and echoes it into everything it answers: the
 * request-id headers (plain and as `req_<key>`, where no word boundary precedes `sk-`), Anthropic's
 * body `request_id`, error `type` / `code` / `param` / `message`, a success body's `id`, `model`,
 * `system_fingerprint`, text, tool calls and object keys, every SSE event (error events included), and
 * the JSON `\u`-escaped form of the key. Real sockets on 127.0.0.1, both wire formats, no sleeps.
 *
 * Every output family is then scanned for the key and for distinctive pieces of it (also after JSON
 * unescaping): adapter results and typed errors, chain results and `AllRoutesFailed`, SQLite and
 * Postgres checkpoint rows, `Report.html`, `call --json`, captured logs and span attributes — what
 * docs/providers.md ("Secrets") promises.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Agent from "../../src/agent/Agent.js"
import type { StoreError } from "../../src/agent/AgentError.js"
import type * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as PgCheckpointStore from "../../src/agent/PgCheckpointStore.js"
import * as SqliteCheckpointStore from "../../src/agent/SqliteCheckpointStore.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as LlmClient from "../../src/LlmClient.js"
import * as Policy from "../../src/Policy.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as Report from "../../src/Report.js"
import * as Transport from "../../src/Transport.js"
import { pgConfig, postgresGate } from "../agent/backends.js"
import { onlyJson, runCli } from "../cli/helpers.js"

// --- The scan ---

const KEY = "sk-proj-HOSTILE-ECHO-7f3a9c2b1d4e5f60718293a4b5c6d7e8"
/** The key and two distinctive pieces of it (≥ 12 characters): a truncated or partly escaped echo leaks too. */
const NEEDLES = [KEY, "HOSTILE-ECHO-7f3a9c2b", "1d4e5f60718293a4b5c6d7e8"]

const unescapeJson = (text: string) => text.replace(/\\u([0-9a-fA-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
const hasKey = (text: string) => [text, unescapeJson(text)].some((t) => NEEDLES.some((needle) => t.includes(needle)))

/** Every place in `value` where the key shows: each own property (enumerable or not) and Map entry, recursively, then its JSON and `String`. */
const leaks = (label: string, value: unknown): Array<string> => {
  const found: Array<string> = []
  const seen = new Set<object>()
  const walk = (v: unknown, at: string): void => {
    if (typeof v === "string" && hasKey(v)) found.push(`${at} = ${v.slice(0, 160)}`)
    if (typeof v !== "object" || v === null || seen.has(v)) return
    seen.add(v)
    const entries: Array<[string, unknown]> = v instanceof Map
      ? [...v.entries()].map(([k, x]) => [String(k), x])
      : Object.getOwnPropertyNames(v).map((k) => [k, Reflect.get(v, k)])
    for (const [k, x] of entries) {
      if (hasKey(k)) found.push(`${at} has the key ${k.slice(0, 160)}`)
      walk(x, `${at}.${k}`)
    }
  }
  walk(value, label)
  if (hasKey(JSON.stringify(value, (_, v: unknown) => typeof v === "bigint" ? String(v) : v) ?? "")) found.push(`JSON.stringify(${label})`)
  if (hasKey(String(value))) found.push(`String(${label})`)
  return found
}

/** Request ids anywhere in a value's JSON: every one the server sent carries the key, so none may be kept. */
const requestIds = (value: unknown) => JSON.stringify(value).match(/"requestId":"[^"]*"/g) ?? []

// --- The hostile server: the request's `model` picks the scenario, its path the wire format ---

type Api = "openai" | "anthropic"
type Scenario = "ok" | "rate" | "server" | "bad" | "event-error" | "bad-event-name"
const STATUS: Record<Scenario, number> = { ok: 200, rate: 429, server: 500, bad: 400, "event-error": 200, "bad-event-name": 200 }

/** Replaced in the JSON text by the key with one character `\u`-escaped (`sk-\u0070roj-…`). */
const ESC = "@ESCAPED-KEY@"
const jsonOf = (value: unknown, k: string) =>
  JSON.stringify(value).split(ESC).join(`${k.slice(0, 3)}\\u${k.charCodeAt(3).toString(16).padStart(4, "0")}${k.slice(4)}`)
const event = (value: Record<string, unknown>, k: string, name?: string) => `${name === undefined ? "" : `event: ${name}\n`}data: ${jsonOf(value, k)}\n\n`

const errorObject = (k: string) => ({ message: `Incorrect API key provided: ${k}`, type: ESC, code: `req_${k}`, param: k })
const anthropicError = (k: string, type: string) => ({ type: "error", error: { ...errorObject(k), type }, request_id: ESC })
const text = (k: string) => `echo: ${k} / ${ESC}`
const args = (k: string) => JSON.stringify({ key: k })

const toolCall = (k: string) => ({ id: `call_${k}`, type: "function", function: { name: "lookup", arguments: args(k) } })
const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }

const openAiBody = (k: string) => ({
  id: k, object: "chat.completion", created: 1, model: `req_${k}`, system_fingerprint: ESC, [k]: ESC, usage,
  choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: text(k), tool_calls: [toolCall(k)] } }]
})

const anthropicBody = (k: string) => ({
  id: k, type: "message", role: "assistant", model: `req_${k}`, stop_reason: "end_turn", stop_sequence: ESC, [k]: ESC,
  content: [{ type: "text", text: text(k) }, { type: "tool_use", id: `toolu_${k}`, name: "lookup", input: { key: k, [k]: ESC } }],
  usage: { input_tokens: 1, output_tokens: 1 }
})

const openAiStream = (k: string, scenario: Scenario): Array<string> => {
  const chunk = (choice: Record<string, unknown>) =>
    event({ id: k, object: "chat.completion.chunk", created: 1, model: `req_${k}`, system_fingerprint: ESC, choices: [{ index: 0, ...choice }] }, k)
  const start = [`: keep-alive ${k}\n\n`, `id: ${k}\n${chunk({ delta: { role: "assistant", content: "" }, finish_reason: null })}`]
  if (scenario === "event-error") return [...start, event({ error: errorObject(k) }, k)]
  return [
    ...start,
    chunk({ delta: { content: text(k) }, finish_reason: null }),
    // The key split across deltas too short to hold a scanned fragment: each delta is what the consumer
    // sees as it arrives (scrubbed one by one, see docs/providers.md), the assembled answer must be clean.
    chunk({ delta: { content: ` split: ${k.slice(0, 18)}` }, finish_reason: null }),
    chunk({ delta: { content: k.slice(18, 36) }, finish_reason: null }),
    chunk({ delta: { content: k.slice(36) }, finish_reason: null }),
    chunk({ delta: { tool_calls: [{ index: 0, ...toolCall(k) }] }, finish_reason: null }),
    chunk({ delta: {}, finish_reason: "stop" }),
    event({ id: k, choices: [], usage }, k),
    "data: [DONE]\n\n"
  ]
}

const anthropicStream = (k: string, scenario: Scenario): Array<string> => {
  const ev = (type: string, data: Record<string, unknown>) => event({ type, ...data }, k, type)
  const start = ev("message_start", { message: { id: k, type: "message", role: "assistant", model: `req_${k}`, content: [], usage: { input_tokens: 1, output_tokens: 0 } } })
  if (scenario === "event-error") return [start, `: ${k}\n\n`, event(anthropicError(k, "overloaded_error"), k, "error")]
  // An event named with the key whose data is not JSON: an unknown event, skipped unread — its name
  // (the key) must not surface anywhere, e.g. in the error of the stream that then ends too early.
  if (scenario === "bad-event-name") return [start, `event: ${k}\ndata: not json\n\n`]
  return [
    start,
    ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
    ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: text(k) } }),
    ev("content_block_stop", { index: 0 }),
    ev("content_block_start", { index: 1, content_block: { type: "tool_use", id: `toolu_${k}`, name: "lookup", input: {} } }),
    ev("content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: args(k) } }),
    ev("content_block_stop", { index: 1 }),
    ev("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: ESC }, usage: { output_tokens: 2 } }),
    ev("message_stop", {})
  ]
}

const answer = (req: http.IncomingMessage, body: string, res: http.ServerResponse, seen: Array<string>) => {
  const api: Api = (req.url ?? "").endsWith("/messages") ? "anthropic" : "openai"
  const k = api === "openai" ? (req.headers.authorization ?? "").replace(/^Bearer /, "") : String(req.headers["x-api-key"] ?? "")
  seen.push(k)
  const { model, stream } = JSON.parse(body) as { readonly model: Scenario; readonly stream?: boolean }
  const status = STATUS[model]
  const headers = {
    [api === "openai" ? "x-request-id" : "request-id"]: model === "ok" || model === "bad" ? `req_${k}` : k,
    "x-echo-authorization": `Bearer ${k}`,
    // Names the span has no reason to hide, holding the key anyway.
    "x-correlation-id": k,
    via: `1.1 ${k}`,
    "content-type": stream === true && status === 200 ? "text/event-stream" : "application/json"
  }
  res.writeHead(status, headers)
  if (status !== 200) {
    res.end(jsonOf(api === "openai" ? { error: errorObject(k) } : { type: "error", error: errorObject(k), request_id: `req_${k}` }, k))
  } else if (stream === true) res.end((api === "openai" ? openAiStream : anthropicStream)(k, model).join(""))
  else if (model === "event-error") res.end(jsonOf(api === "openai" ? { error: errorObject(k) } : anthropicError(k, "overloaded_error"), k))
  else res.end(jsonOf(api === "openai" ? openAiBody(k) : anthropicBody(k), k))
}

/** The server, with the credential of every request it received. */
interface Hostile { readonly url: string; readonly seen: Array<string>; readonly close: () => Promise<void> }
const startHostile = () =>
  new Promise<Hostile>((resolve) => {
    const seen: Array<string> = []
    const server = http.createServer((req, res) => {
      let body = ""
      req.setEncoding("utf8").on("data", (chunk: string) => (body += chunk)).on("end", () => answer(req, body, res, seen))
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      const close = () => new Promise<void>((done) => (server.closeAllConnections(), server.close(() => done())))
      resolve({ url: `http://127.0.0.1:${port}`, seen, close })
    })
  })

let hostile: Hostile
beforeAll(async () => void (hostile = await startHostile()))
afterAll(() => hostile.close())

// --- Running calls: a capturing logger and a recording tracer around everything ---

const logs: Array<string> = []
const spans: Array<Tracer.Span> = []
const native = Effect.runSync(Effect.tracer)
const recordingTracer = Tracer.make({ span: (...params) => spans[spans.push(native.span(...params)) - 1]!, context: native.context })

const Env = Layer.mergeAll(
  Transport.layer(),
  Policy.layerState,
  DegradedMode.layer,
  Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (line) => void logs.push(line))),
  Logger.minimumLogLevel(LogLevel.All)
)
type Env = Layer.Layer.Success<typeof Env> | Scope.Scope
const run = <A, E>(effect: Effect.Effect<A, E, Env>) =>
  Effect.runPromise(effect.pipe(Effect.scoped, Effect.provide(Env), Effect.withTracer(recordingTracer)))
const once = <A>(make: () => Promise<A>) => {
  let memo: Promise<A> | undefined
  return () => (memo ??= make())
}

type Outcome = Either.Either<unknown, { readonly events: ReadonlyArray<unknown>; readonly error: { readonly _tag: string } }>

/** A call's success or typed failure (with the stream events before it), logged as an application would. */
const settle = <A, E extends { readonly _tag: string }, R>(label: string, effect: Effect.Effect<A, E, R>, events: ReadonlyArray<unknown> = []) =>
  effect.pipe(
    Effect.tap((value) => Effect.logInfo(label, value)),
    Effect.tapErrorCause((cause) => Effect.logError(label, cause)),
    Effect.mapError((error) => ({ events, error })),
    Effect.either
  ) as Effect.Effect<Outcome, never, R>
const drain = <A, E, R>(stream: Stream.Stream<A, E, R>, events: Array<unknown>) =>
  Stream.runForEach(stream, (e) => Effect.sync(() => void events.push(e))).pipe(Effect.as(events))
const tagOf = (outcome: Outcome) => Either.match(outcome, { onRight: () => "success", onLeft: (l) => l.error._tag })

const adapter = (api: Api) =>
  api === "openai"
    ? OpenAi.make({ apiKey: Redacted.make(KEY), baseUrl: `${hostile.url}/v1` })
    : Anthropic.make({ apiKey: Redacted.make(KEY), baseUrl: hostile.url })
const route = (name: string, api: Api, scenario: Scenario) =>
  Effect.map(adapter(api), (provider): Fallback.Route => ({ name, provider, model: scenario, policy: { retry: { maxAttempts: 1 } } }))
const messages = [{ role: "user" as const, content: "hi" }]

// --- Adapters: every scenario, both wire formats, generate and stream ---

const SCENARIOS = ["ok", "rate", "server", "bad", "event-error"] as const
const CASES = (["openai", "anthropic"] as const).flatMap((api) =>
  SCENARIOS.flatMap((scenario) => (["generate", "stream"] as const).map((mode) => ({ api, scenario, mode, label: `${api} ${mode} ${scenario}` })))
)
const expectedTag = (api: Api, scenario: Scenario) =>
  ({ ok: "success", rate: "RateLimited", server: "ServerError", bad: "BadRequest", "event-error": api === "openai" ? "ServerError" : "Overloaded", "bad-event-name": "StreamInterrupted" })[scenario]

const adapterOutcomes = once(() =>
  run(Effect.forEach(CASES, (c) =>
    Effect.flatMap(adapter(c.api), (provider) => {
      const request = { model: c.scenario, messages, maxTokens: 32 }
      const events: Array<unknown> = []
      return c.mode === "generate" ? settle(c.label, provider.generate(request)) : settle(c.label, drain(provider.stream(request), events), events)
    })))
)

describe("an Anthropic stream event named with the key, whose data is not JSON", () => {
  it("is skipped unread (an unknown event); the stream then ends too early, and nothing quotes the key", async () => {
    const outcome = await run(Effect.flatMap(adapter("anthropic"), (provider) => {
      const events: Array<unknown> = []
      return settle("bad event name", drain(provider.stream({ model: "bad-event-name", messages, maxTokens: 32 }), events), events)
    }))
    expect(tagOf(outcome)).toBe("StreamInterrupted")
    expect(leaks("bad event name", outcome)).toEqual([])
  })
})

describe("adapter results and typed errors (both wire formats, generate and stream)", () => {
  it.each(CASES)("$label", async (c) => {
    const outcome = (await adapterOutcomes())[CASES.indexOf(c)]!
    expect(tagOf(outcome)).toBe(expectedTag(c.api, c.scenario))
    expect(leaks(c.label, outcome)).toEqual([])
    expect(requestIds(outcome)).toEqual([])
    // The echo arrived and was scrubbed (the scan is not vacuous), with the key the adapter sent.
    expect(JSON.stringify(outcome)).toContain("<redacted>")
    expect(new Set(hostile.seen)).toEqual(new Set([KEY]))
  })
})

// --- Fallback chains, recorded for the report ---

interface ChainCase {
  readonly label: string
  readonly mode: "generate" | "stream"
  readonly routes: ReadonlyArray<readonly [Api, Scenario]>
  readonly outcomes: ReadonlyArray<string>
}
const CHAINS: ReadonlyArray<ChainCase> = [
  { label: "openai 429 → anthropic answers", mode: "generate", routes: [["openai", "rate"], ["anthropic", "ok"]], outcomes: ["RateLimited", "success"] },
  { label: "anthropic 429 → openai answers", mode: "generate", routes: [["anthropic", "rate"], ["openai", "ok"]], outcomes: ["RateLimited", "success"] },
  { label: "openai 500, anthropic 400 → AllRoutesFailed", mode: "generate", routes: [["openai", "server"], ["anthropic", "bad"]], outcomes: ["ServerError", "BadRequest"] },
  { label: "anthropic 500, openai 400 → AllRoutesFailed", mode: "generate", routes: [["anthropic", "server"], ["openai", "bad"]], outcomes: ["ServerError", "BadRequest"] },
  { label: "stream: openai error event → anthropic streams", mode: "stream", routes: [["openai", "event-error"], ["anthropic", "ok"]], outcomes: ["ServerError", "success"] },
  { label: "stream: anthropic error event → openai streams", mode: "stream", routes: [["anthropic", "event-error"], ["openai", "ok"]], outcomes: ["Overloaded", "success"] },
  { label: "stream: both error events → AllRoutesFailed", mode: "stream", routes: [["openai", "event-error"], ["anthropic", "event-error"]], outcomes: ["ServerError", "Overloaded"] }
]

/** Every chain, recorded by one Report recorder (call n is CHAINS[n - 1]). */
const chainOutcomes = once(() =>
  run(Effect.gen(function*() {
    const recorder = yield* Report.makeRecorder({
      title: "hostile echo",
      routes: [{ name: "primary", provider: "openai", model: "any" }, { name: "secondary", provider: "anthropic", model: "any" }]
    })
    const outcomes: Array<Outcome> = []
    for (const c of CHAINS) {
      const routes = yield* Effect.forEach(c.routes, ([api, scenario], i) => route(i === 0 ? "primary" : "secondary", api, scenario))
      const chain = yield* Fallback.make({ routes: recorder.instrument(routes) })
      const events: Array<unknown> = []
      outcomes.push(
        c.mode === "generate"
          ? yield* settle(c.label, recorder.call(c.label, chain.generate({ messages, maxTokens: 32 })))
          : yield* settle(c.label, drain(recorder.callStream(c.label, chain.stream({ messages, maxTokens: 32 })), events), events)
      )
    }
    return { outcomes, record: yield* recorder.record }
  }))
)

describe("fallback chains: ChainResult, stream events, AllRoutesFailed (attempts, message, lastError)", () => {
  it.each(CHAINS)("$label", async (c) => {
    const { outcomes, record } = await chainOutcomes()
    const n = CHAINS.indexOf(c)
    const outcome = outcomes[n]!
    expect(record.attempts.filter((a) => a.call === n + 1).map((a) => a.outcome)).toEqual(c.outcomes)
    expect(leaks(c.label, outcome)).toEqual([])
    expect(requestIds(outcome)).toEqual([])
    expect(JSON.stringify(outcome)).toContain("<redacted>")
  })
})

// --- Durable agent runs: what the checkpoint stores keep ---

/** A durable run whose one model step fails over from an echoing 429 to an echoing answer. */
const agentRun = (store: Layer.Layer<CheckpointStore.CheckpointStore, StoreError>, runId: string) =>
  run(Effect.gen(function*() {
    const routes = [yield* route("primary", "openai", "rate"), yield* route("secondary", "anthropic", "ok")]
    const program = Effect.gen(function*() {
      yield* Agent.addMessages({ role: "user", content: "hi" })
      return yield* Agent.turn({ maxTokens: 32 })
    })
    return yield* Agent.run(runId, program).pipe(
      Effect.provide(Layer.mergeAll(Agent.layer(), LlmClient.layerWithState({ routes })).pipe(Layer.provideMerge(store)))
    )
  }))

/** Every column of every row, as text. */
const asText = (table: string, rows: ReadonlyArray<Record<string, unknown>>) =>
  rows.map((row) => ({ table, ...Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === null ? null : String(v)])) }))

const expectCleanRows = (label: string, rows: ReadonlyArray<Record<string, unknown>>) => {
  expect(rows.some((r) => r["table"]?.toString().endsWith("steps") && String(r["result"]).includes("RateLimited"))).toBe(true)
  expect(JSON.stringify(rows)).toContain("<redacted>")
  expect(leaks(label, rows)).toEqual([])
}

describe("checkpoint rows: SQLite", () => {
  it("every column of every table, and the file's bytes", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llmr-secrets-"))
    try {
      const filename = path.join(dir, "checkpoints.sqlite")
      const turn = await agentRun(SqliteCheckpointStore.layer({ filename }), "secret-echo-sqlite")
      expect(turn.attempts.map((a) => a.outcome)).toEqual(["RateLimited", "success"])
      const rows = await Effect.runPromise(Effect.gen(function*() {
        const sql = yield* SqliteClient.make({ filename, disableWAL: true })
        const tables = yield* sql.unsafe<{ readonly name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        return (yield* Effect.forEach(tables, ({ name }) => Effect.map(sql.unsafe<Record<string, unknown>>(`SELECT * FROM "${name}"`), (r) => asText(name, r)))).flat()
      }).pipe(Effect.scoped, Effect.provide(Reactivity.layer)))
      expectCleanRows("sqlite", rows)
      const bytes = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)).toString("latin1")).join("")
      expect(leaks("sqlite file bytes", bytes)).toEqual([])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

const postgresUp = await postgresGate((name, fn) => describe("checkpoint rows: Postgres", () => it(name, fn)))
describe.runIf(postgresUp)("checkpoint rows: Postgres", () => {
  it("every column of every table", async () => {
    const prefix = `llmr_secrets_${process.pid}_${Date.now().toString(36)}_`
    const withPg = <A, E>(use: (sql: PgClient.PgClient) => Effect.Effect<A, E>) =>
      Effect.runPromise(Effect.scoped(Effect.flatMap(PgClient.make(pgConfig), use)).pipe(Effect.provide(Reactivity.layer)))
    try {
      const turn = await agentRun(PgCheckpointStore.layer({ ...pgConfig, tablePrefix: prefix, maxConnections: 2 }), "secret-echo-pg")
      expect(turn.attempts.map((a) => a.outcome)).toEqual(["RateLimited", "success"])
      const rows = await withPg((sql) =>
        Effect.gen(function*() {
          const tables = yield* sql<{ readonly table_name: string }>`SELECT table_name FROM information_schema.tables WHERE starts_with(table_name, ${prefix})`
          expect(tables.length).toBeGreaterThanOrEqual(2)
          return (yield* Effect.forEach(tables, ({ table_name }) => Effect.map(sql.unsafe<Record<string, unknown>>(`SELECT * FROM "${table_name}"`), (r) => asText(table_name, r)))).flat()
        }))
      expectCleanRows("postgres", rows)
    } finally {
      await withPg((sql) => sql.unsafe(`DROP TABLE IF EXISTS ${prefix}steps, ${prefix}runs, ${prefix}migrations`))
    }
  })
})

// --- The HTML report of the recorded chains ---

describe("Report.html (attempts table, SVG tooltips) and its RunRecord", () => {
  it("renders the recorded chains without the key (no secrets option given)", async () => {
    const { record } = await chainOutcomes()
    const page = Report.html(record)
    expect(page).toContain("<svg")
    expect(page).toContain("RateLimited")
    expect(page).toContain("&lt;redacted&gt;") // the echoed messages reached the page, scrubbed
    expect(leaks("Report.html", page)).toEqual([])
    expect(leaks("RunRecord", record)).toEqual([])
  })
})

// --- The CLI, spawned against the hostile server ---

const CLI_CASES: ReadonlyArray<{ readonly name: string; readonly api: Api; readonly model: Scenario; readonly flags: ReadonlyArray<string>; readonly code: number }> = [
  { name: "openai answer", api: "openai", model: "ok", flags: [], code: 0 },
  { name: "anthropic answer, streamed", api: "anthropic", model: "ok", flags: ["--stream"], code: 0 },
  { name: "openai 429", api: "openai", model: "rate", flags: ["--max-attempts", "1"], code: 1 },
  { name: "anthropic 400", api: "anthropic", model: "bad", flags: [], code: 1 },
  { name: "openai error event in a stream", api: "openai", model: "event-error", flags: ["--stream", "--max-attempts", "1"], code: 1 },
  { name: "anthropic error event in a stream", api: "anthropic", model: "event-error", flags: ["--stream", "--max-attempts", "1"], code: 1 }
]

describe.concurrent("CLI: call --json (stdout and stderr)", () => {
  it.each(CLI_CASES)("$name", async (c) => {
    const baseUrl = c.api === "openai" ? `${hostile.url}/v1` : hostile.url
    const cli = await runCli(["call", "--provider", c.api, "--base-url", baseUrl, "--model", c.model, "--prompt", "hi", "--json", ...c.flags], {
      env: { OPENAI_API_KEY: KEY, ANTHROPIC_API_KEY: KEY },
      timeoutMs: 50_000
    })
    expect(cli.code, cli.stderr).toBe(c.code)
    const out = onlyJson(cli.stdout)
    expect(out["ok"]).toBe(c.code === 0)
    if (c.code === 0) expect(String(out["output"])).toContain("<redacted>")
    else expect(out["error"]).toMatchObject({ requestId: null })
    expect(leaks(`call ${c.name}`, { stdout: cli.stdout, stderr: cli.stderr })).toEqual([])
  }, 60_000)
})

// --- Telemetry of every call above ---

describe("telemetry: captured logs and span attributes", () => {
  it("logs of every call (results and causes, at every level)", async () => {
    await adapterOutcomes()
    await chainOutcomes()
    expect(logs.length).toBeGreaterThanOrEqual(CASES.length + CHAINS.length)
    expect(logs.join("\n")).toContain("<redacted>")
    expect(leaks("logs", logs)).toEqual([])
  })

  it("span attributes, events and recorded failures (http.client and llm.attempt spans)", async () => {
    await adapterOutcomes()
    await chainOutcomes()
    const recorded = spans.map((span) => ({
      name: span.name,
      attributes: Object.fromEntries(span.attributes),
      events: (span as { readonly events?: unknown }).events,
      // What an exporter records of a failed span: the cause, rendered.
      failure: span.status._tag === "Ended" && Exit.isFailure(span.status.exit) ? Cause.pretty(span.status.exit.cause) : undefined
    }))
    expect(recorded.map((s) => s.name)).toEqual(expect.arrayContaining(["http.client POST", "llm.attempt"]))
    // The platform span records response headers: x-request-id / request-id are among them, redacted.
    const headerAttributes = recorded.flatMap((s) => Object.keys(s.attributes)).filter((k) => k.startsWith("http.response.header."))
    expect(headerAttributes).toEqual(expect.arrayContaining(["http.response.header.x-request-id", "http.response.header.request-id", "http.response.header.x-correlation-id", "http.response.header.via"]))
    expect(leaks("spans", recorded)).toEqual([])
  })
})

/**
 * The streaming bench's server: paced SSE completions in two wire formats, as cheaply as a server can
 * send them, so the clients under test are what is measured.
 *
 * - `POST /v1/chat/completions` (`stream: true`): `chat.completion.chunk` events, then `[DONE]`.
 * - `POST /v1/responses` (`stream: true`): the typed Responses events (created, output item and
 *   content part added, `response.output_text.delta` per chunk, the closing events, completed).
 *
 * Each stream sends `CHUNKS` deltas (argv[3], default 200), one every `INTERVAL_MS` (argv[4], default
 * 10), each in its own write — as model APIs send tokens. One 1 ms ticker serves every stream; the
 * streams' phases are spread over the interval so 512 streams do not all write in the same tick. Every
 * delta's text is the send time (`performance.timeOrigin + performance.now()`, ms, 3 decimals) and a
 * space, so any client that surfaces text deltas can measure how long each took to reach its
 * consumer. A model named `json…` streams a JSON object instead (`{"t":[…]}`, one number per delta),
 * for structured-output clients.
 *
 * Prints `READY <port>`. Run in its own process, pinned to its own core (see bench/stream.ts).
 */
import * as http from "node:http"
import { serve } from "./serve.js"

const CHUNKS = Number(process.argv[3] ?? 200)
const INTERVAL_MS = Number(process.argv[4] ?? 10)

const now = () => performance.timeOrigin + performance.now()

interface Format {
  readonly head: (model: string) => string
  readonly delta: (text: string, seq: number) => string
  readonly tail: (model: string, text: string, seq: number) => string
}

const chatChunk = (delta: Record<string, unknown>, finish: string | null) =>
  `data: ${
    JSON.stringify({
      id: "chatcmpl-bench",
      object: "chat.completion.chunk",
      created: 1_700_000_000,
      model: "gpt-4o-mini",
      system_fingerprint: "fp_bench",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }]
    })
  }\n\n`

const chat: Format = {
  head: () => chatChunk({ role: "assistant", content: "", refusal: null }, null),
  // The hot path: one template, the text spliced in (JSON-escaped: it is digits, a dot and a space).
  delta: (text) =>
    `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":{"content":${
      JSON.stringify(text)
    }},"logprobs":null,"finish_reason":null}]}\n\n`,
  tail: () =>
    chatChunk({}, "stop") +
    `data: ${
      JSON.stringify({
        id: "chatcmpl-bench",
        object: "chat.completion.chunk",
        created: 1_700_000_000,
        model: "gpt-4o-mini",
        choices: [],
        usage: { prompt_tokens: 12, completion_tokens: CHUNKS, total_tokens: 12 + CHUNKS }
      })
    }\n\n` +
    "data: [DONE]\n\n"
}

const responseObject = (model: string, status: "in_progress" | "completed", text: string | undefined) => ({
  id: "resp_bench",
  object: "response",
  created_at: 1_700_000_000,
  status,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model,
  output: text === undefined
    ? []
    : [{ id: "msg_bench", type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [], logprobs: [] }] }],
  parallel_tool_calls: true,
  previous_response_id: null,
  reasoning: { effort: null, summary: null },
  store: false,
  temperature: 1,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  top_p: 1,
  truncation: "disabled",
  usage: text === undefined
    ? null
    : { input_tokens: 12, input_tokens_details: { cached_tokens: 0 }, output_tokens: CHUNKS, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 12 + CHUNKS },
  user: null,
  metadata: {}
})

const typed = (type: string, seq: number, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq, ...data })}\n\n`

const item = { item_id: "msg_bench", output_index: 0, content_index: 0 }
const part = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] })

const responses: Format = {
  head: (model) =>
    typed("response.created", 0, { response: responseObject(model, "in_progress", undefined) }) +
    typed("response.in_progress", 1, { response: responseObject(model, "in_progress", undefined) }) +
    typed("response.output_item.added", 2, {
      output_index: 0,
      item: { id: "msg_bench", type: "message", status: "in_progress", role: "assistant", content: [] }
    }) +
    typed("response.content_part.added", 3, { ...item, part: part("") }),
  delta: (text, seq) =>
    `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":${seq},"item_id":"msg_bench","output_index":0,"content_index":0,"delta":${
      JSON.stringify(text)
    },"logprobs":[]}\n\n`,
  tail: (model, text, seq) =>
    typed("response.output_text.done", seq, { ...item, text, logprobs: [] }) +
    typed("response.content_part.done", seq + 1, { ...item, part: part(text) }) +
    typed("response.output_item.done", seq + 2, {
      output_index: 0,
      item: { id: "msg_bench", type: "message", status: "completed", role: "assistant", content: [part(text)] }
    }) +
    typed("response.completed", seq + 3, { response: responseObject(model, "completed", text) })
}

/** One stream in flight. */
interface Active {
  readonly res: http.ServerResponse
  readonly format: Format
  readonly model: string
  readonly json: boolean
  /** When the next delta is due (performance.now() ms). */
  nextAt: number
  sent: number
  text: string
  closed: boolean
}

const active = new Set<Active>()

const deltaText = (stream: Active): string => {
  const stamp = now().toFixed(3)
  if (!stream.json) return `${stamp} `
  const first = stream.sent === 0 ? "{\"t\":[" : ""
  return stream.sent === CHUNKS - 1 ? `${first}${stamp}]}` : `${first}${stamp},`
}

setInterval(() => {
  const t = performance.now()
  for (const stream of active) {
    if (stream.closed) {
      active.delete(stream)
      continue
    }
    if (stream.nextAt > t) continue
    // Due times advance by the interval, not from now: a late tick is caught up, not dropped.
    stream.nextAt += INTERVAL_MS
    const text = deltaText(stream)
    stream.text += text
    // Responses sequence numbers: 4 head events before the first delta.
    stream.res.write(stream.format.delta(text, 4 + stream.sent))
    stream.sent++
    if (stream.sent === CHUNKS) {
      stream.res.end(stream.format.tail(stream.model, stream.text, 4 + CHUNKS))
      active.delete(stream)
    }
  }
}, 1).unref()

let streams = 0
const server = http.createServer((req, res) => {
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    const format = req.url?.endsWith("/responses") ? responses : req.url?.endsWith("/chat/completions") ? chat : undefined
    let model = "gpt-4o-mini"
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { model?: unknown }
      if (typeof body.model === "string") model = body.model
    } catch {
      // A body that is not JSON still gets a stream: the bench's clients all send JSON.
    }
    if (format === undefined) {
      res.writeHead(404, { "content-type": "application/json" })
      res.end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error", param: null, code: null } }))
      return
    }
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-request-id": "req_bench" })
    res.write(format.head(model))
    const phase = (streams++ % INTERVAL_MS) + 1
    const stream: Active = { res, format, model, json: model.startsWith("json"), nextAt: performance.now() + phase, sent: 0, text: "", closed: false }
    res.on("close", () => {
      stream.closed = true
    })
    active.add(stream)
  })
})
// Rounds run for minutes: a pooled connection must not meet the server's idle close on reuse (the
// keep-alive race would fail a client that has no retry — the bare adapter — for the bench's reasons).
server.keepAliveTimeout = 600_000
server.headersTimeout = 605_000

serve(server)

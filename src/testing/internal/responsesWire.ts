/**
 * OpenAI Responses on the wire (`POST /v1/responses`): `response` objects whose `output` holds a
 * `message` item of `output_text` parts, `status` `completed` or `incomplete` with
 * `incomplete_details.reason` (`max_output_tokens`, `content_filter`), and typed SSE events
 * (`event: response.output_text.delta` …, each `data` carrying its `type` and `sequence_number`)
 * ending with `response.completed` / `response.incomplete` — no `[DONE]`. Errors, request ids and
 * rate-limit headers are Chat Completions' (the same API platform); an in-stream failure is an
 * `error` event. Shapes follow the API reference (platform.openai.com/docs/api-reference/responses)
 * and the `openai` SDK's `ResponseStreamEvent` types, and the SDK's `responses.stream` parses them.
 *
 * @internal
 */
import { errorObject, openaiWire } from "./openaiWire.js"
import type { Completion, StreamFrames, Wire } from "./wire.js"

const usage = (c: Completion) => ({
  input_tokens: c.promptTokens,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: c.completionTokens,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: c.promptTokens + c.completionTokens
})

const messageIdOf = (c: Completion) => `msg_${c.id.replace(/^resp_/, "")}`

const textPart = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] })

const messageItem = (c: Completion, status: "in_progress" | "completed" | "incomplete", text: string | undefined) => ({
  id: messageIdOf(c),
  type: "message",
  status,
  role: "assistant",
  content: text === undefined ? [] : [textPart(text)]
})

/** The `response` object: in progress (no output yet) or finished. */
const responseObject = (c: Completion, state: "in_progress" | "done") => {
  const status = state === "in_progress" ? "in_progress" : c.finish === "stop" ? "completed" : "incomplete"
  return {
    id: c.id,
    object: "response",
    created_at: c.created,
    status,
    error: null,
    incomplete_details: status !== "incomplete" ? null : { reason: c.finish === "length" ? "max_output_tokens" : "content_filter" },
    instructions: null,
    max_output_tokens: null,
    model: c.model,
    output: state === "in_progress" ? [] : [messageItem(c, status === "completed" ? "completed" : "incomplete", c.text)],
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
    usage: state === "in_progress" ? null : usage(c),
    user: null,
    metadata: {}
  }
}

/** One typed SSE event (`event:` line and `data.type` agree, as the API sends them). */
const event = (type: string, sequence: number, data: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...data })}\n\n`

/** The Responses wire format. */
export const responsesWire: Wire = {
  ...openaiWire,
  api: "responses",
  responseId: (rng) => `resp_${rng.hex(24)}`,

  streamError: (spec) => {
    const { error } = errorObject(spec)
    return event("error", 0, { code: error.code ?? error.type, message: error.message, param: error.param })
  },

  completion: (c) => JSON.stringify(responseObject(c, "done"), null, 2),

  stream: (c): StreamFrames => {
    let sequence = 0
    const next = (type: string, data: Record<string, unknown>) => event(type, sequence++, data)
    const item = { item_id: messageIdOf(c), output_index: 0 }
    const head = [
      next("response.created", { response: responseObject(c, "in_progress") }),
      next("response.in_progress", { response: responseObject(c, "in_progress") }),
      next("response.output_item.added", { output_index: 0, item: messageItem(c, "in_progress", undefined) }),
      next("response.content_part.added", { ...item, content_index: 0, part: textPart("") })
    ]
    const deltas = c.deltas.map((delta) => next("response.output_text.delta", { ...item, content_index: 0, delta, logprobs: [] }))
    const done = responseObject(c, "done")
    const tail = [
      next("response.output_text.done", { ...item, content_index: 0, text: c.text, logprobs: [] }),
      next("response.content_part.done", { ...item, content_index: 0, part: textPart(c.text) }),
      next("response.output_item.done", { output_index: 0, item: done.output[0] }),
      next(done.status === "completed" ? "response.completed" : "response.incomplete", { response: done })
    ]
    return { head, deltas, tail }
  },

  malformedBody: (c) => `{"id":"${c.id}","object":"response","created_at":${c.created},"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"`,

  malformedFrame: (c) => `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"${messageIdOf(c)}","delta":\n\n`
}

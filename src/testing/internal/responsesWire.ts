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
import { errorObject, openaiWire, toolCallId } from "./openaiWire.js"
import type { Completion, CompletionToolCall, StreamFrames, Wire } from "./wire.js"

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

const functionCallItem = (call: CompletionToolCall, status: "in_progress" | "completed", args: string) => ({
  id: `fc_${call.id}`,
  type: "function_call",
  status,
  arguments: args,
  call_id: toolCallId(call),
  name: call.name
})

/** Whether the answer has a message item: when it has text, or when it has nothing else. */
const hasMessage = (c: Completion): boolean => c.text !== "" || c.toolCalls.length === 0

/** The finished `output`: the message item (if any), then one `function_call` item per call. */
const outputOf = (c: Completion, status: "completed" | "incomplete") => [
  ...(hasMessage(c) ? [messageItem(c, status, c.text)] : []),
  ...c.toolCalls.map((call) => functionCallItem(call, "completed", call.arguments))
]

/** The `response` object: in progress (no output yet) or finished. */
const responseObject = (c: Completion, state: "in_progress" | "done") => {
  const status = state === "in_progress"
    ? "in_progress"
    : c.finish === "stop" || c.finish === "tool_calls"
    ? "completed"
    : "incomplete"
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
    output: state === "in_progress" ? [] : outputOf(c, status === "completed" ? "completed" : "incomplete"),
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
    const message = hasMessage(c)
    const item = { item_id: messageIdOf(c), output_index: 0 }
    const head = [
      next("response.created", { response: responseObject(c, "in_progress") }),
      next("response.in_progress", { response: responseObject(c, "in_progress") }),
      ...(message
        ? [
          next("response.output_item.added", { output_index: 0, item: messageItem(c, "in_progress", undefined) }),
          next("response.content_part.added", { ...item, content_index: 0, part: textPart("") })
        ]
        : [])
    ]
    // Sequence numbers follow the order frames are sent: the message's deltas, its closing events,
    // then each function call (added, argument deltas, done).
    const textDeltas = c.deltas.map((delta) => next("response.output_text.delta", { ...item, content_index: 0, delta, logprobs: [] }))
    const done = responseObject(c, "done")
    const messageDone = message
      ? [
        next("response.output_text.done", { ...item, content_index: 0, text: c.text, logprobs: [] }),
        next("response.content_part.done", { ...item, content_index: 0, part: textPart(c.text) }),
        next("response.output_item.done", { output_index: 0, item: done.output[0] })
      ]
      : []
    const firstCall = message ? 1 : 0
    const callFrames = c.toolCalls.flatMap((call, k) => {
      const output_index = firstCall + k
      const item_id = `fc_${call.id}`
      return [
        next("response.output_item.added", { output_index, item: functionCallItem(call, "in_progress", "") }),
        ...call.argumentDeltas.map((delta) => next("response.function_call_arguments.delta", { item_id, output_index, delta })),
        next("response.function_call_arguments.done", { item_id, output_index, arguments: call.arguments }),
        next("response.output_item.done", { output_index, item: functionCallItem(call, "completed", call.arguments) })
      ]
    })
    const tail = [next(done.status === "completed" ? "response.completed" : "response.incomplete", { response: done })]
    // A message's closing events sit between its text and the calls; with no calls they open the tail.
    return c.toolCalls.length === 0
      ? { head, deltas: textDeltas, tail: [...messageDone, ...tail] }
      : { head, deltas: [...textDeltas, ...messageDone, ...callFrames], tail }
  },

  malformedBody: (c) => `{"id":"${c.id}","object":"response","created_at":${c.created},"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"`,

  malformedFrame: (c) => `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"${messageIdOf(c)}","delta":\n\n`,

  rawFrame: (payload) => `data: ${payload}\n\n`
}

/**
 * What the chaos server says: the answer text for a route's `content`, its split into stream deltas,
 * partial prefixes for truncation faults, and the token estimate used for `usage` and `tpm`.
 *
 * @internal
 */
import type { Content, Fault } from "../Scenario.js"

/** The answer when a route configures no content. */
export const DEFAULT_TEXT = "This is a deterministic test response from the effect-llm-resilience chaos server."

/**
 * The documented token estimate: UTF-16 code units divided by 4, rounded up (about right for English
 * with BPE tokenizers, and deterministic, which is what tests need).
 */
export const estimateTokens = (text: string): number => Math.ceil(text.length / 4)

/** The answer text for `content`, given the last user message (for `echo`). */
export const resolveText = (content: Content | undefined, lastUserText: string): string => {
  if (content === undefined) return DEFAULT_TEXT
  switch (content.kind) {
    case "text":
      return content.text
    case "echo":
      return lastUserText
    case "json":
      return JSON.stringify(content.value) ?? "null"
    case "tool_calls":
      return content.text ?? ""
  }
}

/** The longest delta, in code points: long words and whitespace-free JSON are split further. */
const MAX_DELTA = 16

/**
 * Splits text into stream deltas the way model streams look: a word with its leading whitespace per
 * delta (`"Hello"`, `" world"`), long runs cut into pieces of at most 16 code points. Joining the
 * deltas gives back the text exactly; empty text has no deltas.
 */
export const splitDeltas = (text: string): Array<string> => {
  const words: Array<string> = [...(text.match(/\s*\S+/g) ?? [])]
  const consumed = words.reduce((n, w) => n + w.length, 0)
  const trailing = text.slice(consumed)
  if (trailing !== "") {
    if (words.length === 0) words.push(trailing)
    else words[words.length - 1] = `${words[words.length - 1] ?? ""}${trailing}`
  }
  const out: Array<string> = []
  for (const word of words) {
    const points = Array.from(word)
    for (let i = 0; i < points.length; i += MAX_DELTA) out.push(points.slice(i, i + MAX_DELTA).join(""))
  }
  return out
}

/** The first `fraction` of the deltas (at least one when `fraction > 0` and there is text). */
export const prefixDeltas = (deltas: ReadonlyArray<string>, fraction: number): Array<string> => {
  if (fraction <= 0 || deltas.length === 0) return []
  const count = Math.min(deltas.length, Math.max(1, Math.floor(deltas.length * fraction)))
  return deltas.slice(0, count)
}

/**
 * Applies the request's `max_tokens` as the real APIs do: an answer longer than the budget is cut to
 * `maxTokens · 4` code units and finishes with `length` / `max_tokens`.
 */
export const capToMaxTokens = (
  text: string,
  maxTokens: number | undefined
): { readonly text: string; readonly capped: boolean } => {
  if (maxTokens === undefined || estimateTokens(text) <= maxTokens) return { text, capped: false }
  const points = Array.from(text)
  let out = ""
  for (const point of points) {
    if (out.length + point.length > maxTokens * 4) break
    out += point
  }
  return { text: out, capped: true }
}

/** A tool call the answer makes: the function and its arguments as JSON text. */
export interface PlannedCall {
  readonly name: string
  readonly arguments: string
}

/** What one answer says, after its fault: the text, the tool calls, and how it ended. */
export interface Answer {
  readonly text: string
  readonly calls: ReadonlyArray<PlannedCall>
  readonly finish: "stop" | "length" | "filtered" | "tool_calls"
}

/**
 * The arguments a forced tool is called with: the answer itself when it is JSON (a structured-output
 * answer), else the text wrapped as `{"text": …}` — a model forced into a tool always calls it with
 * an object.
 */
const asToolArguments = (text: string): string => {
  try {
    JSON.parse(text)
    return text
  } catch {
    return JSON.stringify({ text })
  }
}

/** The request's facts an answer depends on. */
export interface AnswerRequest {
  readonly lastUserText: string
  readonly maxTokens: number | undefined
  /** The one tool the request forces (a named `tool_choice`), if any. */
  readonly forcedTool: string | undefined
}

/**
 * The answer to a request with `content`, shaped by a content-bearing fault. Faults act on the one
 * string the answer is made of — the text, or, when the request forces a tool, that tool's arguments
 * (so a truncated structured-output answer is truncated JSON, as a real one is). A `tool_calls`
 * content keeps its text; truncation and filtering cut its last call's arguments.
 */
export const answerFor = (content: Content | undefined, fault: Fault, request: AnswerRequest): Answer => {
  if (content?.kind === "tool_calls" && fault.kind !== "schema_violation" && fault.kind !== "empty_content") {
    return toolCallsAnswer(content.calls, resolveText(content, ""), fault)
  }
  const forced = request.forcedTool
  const shape = (raw: string): string => (forced === undefined ? raw : asToolArguments(raw))
  const done = (body: string, finish: Answer["finish"]): Answer =>
    forced === undefined
      ? { text: body, calls: [], finish }
      : { text: "", calls: body === "" ? [] : [{ name: forced, arguments: body }], finish }
  switch (fault.kind) {
    case "empty_content":
      return { text: "", calls: [], finish: "stop" }
    case "schema_violation":
      // The point is valid JSON of the wrong shape: never cut it with max_tokens.
      return done(JSON.stringify(fault.value) ?? "null", "stop")
    case "truncated":
    case "content_filter": {
      const fraction = fault.fraction ?? (fault.kind === "truncated" ? 0.5 : 0)
      const kept = prefixDeltas(splitDeltas(shape(resolveText(content, request.lastUserText))), fraction).join("")
      return done(kept, fault.kind === "truncated" ? "length" : "filtered")
    }
    default: {
      const capped = capToMaxTokens(shape(resolveText(content, request.lastUserText)), request.maxTokens)
      return done(capped.text, capped.capped ? "length" : "stop")
    }
  }
}

const toolCallsAnswer = (
  calls: ReadonlyArray<{ readonly name: string; readonly arguments: unknown }>,
  text: string,
  fault: Fault
): Answer => {
  const planned = calls.map((call) => ({ name: call.name, arguments: JSON.stringify(call.arguments) ?? "null" }))
  if (fault.kind !== "truncated" && fault.kind !== "content_filter") return { text, calls: planned, finish: "tool_calls" }
  const fraction = fault.fraction ?? (fault.kind === "truncated" ? 0.5 : 0)
  const last = planned[planned.length - 1]!
  const kept = prefixDeltas(splitDeltas(last.arguments), fraction).join("")
  return {
    text,
    calls: kept === "" ? planned.slice(0, -1) : [...planned.slice(0, -1), { name: last.name, arguments: kept }],
    finish: fault.kind === "truncated" ? "length" : "filtered"
  }
}

/**
 * What the chaos server says: the answer text for a route's `content`, its split into stream deltas,
 * partial prefixes for truncation faults, and the token estimate used for `usage` and `tpm`.
 *
 * @internal
 */
import type { Content } from "../Scenario.js"

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

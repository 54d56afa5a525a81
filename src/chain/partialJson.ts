/**
 * Best-effort values from the prefix of a JSON answer, for `streamObject`'s `PartialObject` events.
 * They are a preview — never decoded against the schema, never the result: the complete answer goes
 * through the same gate as `generateObject`'s.
 *
 * @internal
 */
import { parseUntrusted } from "../internal/json.js"

/** Past this length a preview is not worth re-parsing the whole prefix on every delta. */
export const MAX_PREVIEW_CHARS = 256 * 1024

/**
 * The prefix closed so that it may parse: an open string ended, open arrays and objects closed; and,
 * as a second candidate, the prefix cut back to its last complete member (for a dangling key, colon
 * or half-written literal).
 */
const candidates = (text: string): ReadonlyArray<string> => {
  const closers: Array<string> = []
  let inString = false
  let escaped = false
  let safeAt = -1
  let safeClosers = ""
  const markSafe = (at: number) => {
    safeAt = at
    safeClosers = closers.slice().reverse().join("")
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (escaped) escaped = false
      else if (c === 0x5c) escaped = true
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      closers.push(c === 0x7b ? "}" : "]")
      markSafe(i + 1)
    } else if (c === 0x7d || c === 0x5d) {
      closers.pop()
      markSafe(i + 1)
    } else if (c === 0x2c) markSafe(i)
  }
  if (closers.length === 0 && !inString) return [text]
  const head = inString ? `${escaped ? text.slice(0, -1) : text}"` : text
  const out = [head + closers.slice().reverse().join("")]
  if (safeAt >= 0) out.push(text.slice(0, safeAt) + safeClosers)
  return out
}

/**
 * The object or array a JSON prefix (a Markdown fence allowed) shows so far, with the text it was
 * parsed from (to tell a new preview from the last), or `undefined` when nothing usable parses yet.
 */
export const preview = (text: string): { readonly value: unknown; readonly source: string } | undefined => {
  if (text.length > MAX_PREVIEW_CHARS) return undefined
  const start = text.search(/[[{]/)
  if (start < 0) return undefined
  for (const candidate of candidates(text.slice(start))) {
    const parsed = parseUntrusted(candidate)
    if (parsed._tag === "Json" && typeof parsed.value === "object" && parsed.value !== null) {
      return { value: parsed.value, source: candidate }
    }
  }
  return undefined
}

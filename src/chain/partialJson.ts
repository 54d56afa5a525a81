/**
 * Best-effort values from the prefix of a JSON answer, for `streamObject`'s `PartialObject` events.
 * They are a preview — never decoded against the schema, never the result: the complete answer goes
 * through the same gate as `generateObject`'s.
 *
 * Incremental: the prefix grows by deltas, and each delta is scanned once (open strings, open arrays
 * and objects, the last complete member), so an answer of n deltas costs one pass over its text for
 * the scan, not n — only the closed candidate is parsed per delta.
 *
 * @internal
 */
import { parseUntrusted } from "../internal/json.js"

/** Past this length a preview is not worth re-parsing the whole prefix on every delta. */
export const MAX_PREVIEW_CHARS = 256 * 1024

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c

/** The JSON prefix of one answer (a Markdown fence or prose before it allowed), fed delta by delta. */
export class JsonPrefix {
  private text = ""
  /** Where the JSON starts: the first `[` or `{`; -1 until one arrived. */
  private start = -1
  private scanned = 0
  private readonly closers: Array<string> = []
  private inString = false
  private escaped = false
  /** The end of the last complete member (absolute), and the closers that were open there. */
  private safeAt = -1
  private safeClosers = ""

  push(delta: string): void {
    this.text += delta
    if (this.text.length <= MAX_PREVIEW_CHARS) this.scan()
  }

  private scan(): void {
    const text = this.text
    let i = this.scanned
    if (this.start < 0) {
      const found = text.slice(i).search(/[[{]/)
      this.scanned = text.length
      if (found < 0) return
      this.start = i + found
      i = this.start
    }
    const closers = this.closers
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (c === BACKSLASH) this.escaped = true
        else if (c === QUOTE) this.inString = false
        continue
      }
      if (c === QUOTE) this.inString = true
      else if (c === 0x7b || c === 0x5b) {
        closers.push(c === 0x7b ? "}" : "]")
        this.markSafe(i + 1)
      } else if (c === 0x7d || c === 0x5d) {
        closers.pop()
        this.markSafe(i + 1)
      } else if (c === COMMA) this.markSafe(i)
    }
    this.scanned = text.length
  }

  private markSafe(at: number): void {
    this.safeAt = at
    this.safeClosers = this.closers.slice().reverse().join("")
  }

  /**
   * The prefix closed so that it may parse: an open string ended, open arrays and objects closed; and,
   * as a second candidate, the prefix cut back to its last complete member (for a dangling key, colon
   * or half-written literal).
   */
  private candidates(): ReadonlyArray<string> {
    const body = this.text.slice(this.start)
    if (this.closers.length === 0 && !this.inString) return [body]
    const head = this.inString ? `${this.escaped ? body.slice(0, -1) : body}"` : body
    const out = [head + this.closers.slice().reverse().join("")]
    if (this.safeAt >= 0) out.push(this.text.slice(this.start, this.safeAt) + this.safeClosers)
    return out
  }

  /**
   * The object or array the prefix shows so far, with the text it was parsed from (to tell a new
   * preview from the last), or `undefined` when nothing usable parses yet.
   */
  preview(): { readonly value: unknown; readonly source: string } | undefined {
    if (this.start < 0 || this.text.length > MAX_PREVIEW_CHARS) return undefined
    for (const candidate of this.candidates()) {
      const parsed = parseUntrusted(candidate)
      if (parsed._tag === "Json" && typeof parsed.value === "object" && parsed.value !== null) {
        return { value: parsed.value, source: candidate }
      }
    }
    return undefined
  }
}

/**
 * Total accessors for untrusted JSON: a provider body is `unknown` until proven otherwise, and a
 * missing or mistyped field must yield `undefined`, never a TypeError.
 *
 * It is also the one door provider JSON comes in through ({@link parseUntrusted}): `JSON.parse`
 * accepts any nesting (a million levels parse fine), but everything that walks the value afterwards
 * — `JSON.stringify`, Schema decoding, a caller's own code — recurses and dies with a RangeError a
 * few thousand levels down. So depth is bounded here, once, and every string that echoes one of the
 * route's secrets is scrubbed in the same pass, before any value reaches a result, an error, a store
 * or a report.
 *
 * @internal
 */
import { scrubSecrets } from "./redact.js"

export type JsonRecord = { readonly [key: string]: unknown }

export const isRecord = (u: unknown): u is JsonRecord => typeof u === "object" && u !== null && !Array.isArray(u)

export const record = (u: unknown): JsonRecord | undefined => (isRecord(u) ? u : undefined)

export const string = (u: unknown): string | undefined => (typeof u === "string" ? u : undefined)

export const number = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)

export const array = (u: unknown): ReadonlyArray<unknown> | undefined => (Array.isArray(u) ? u : undefined)

/** `{ [key]: value }` when value is defined, else `{}` — for building objects under exactOptionalPropertyTypes. */
export const opt = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/**
 * The deepest nesting of arrays and objects accepted from a provider. Real payloads stay far below it
 * (OpenAI's structured outputs allow 10 levels of schema nesting); `JSON.stringify` overflows Node's
 * stack near 5 000, and Schema decoding of a recursive schema much sooner.
 */
export const MAX_JSON_DEPTH = 128

/** What {@link parseUntrusted} makes of a text. */
export type Untrusted =
  | { readonly _tag: "Json"; readonly value: unknown; /** Whether a secret was scrubbed from it. */ readonly scrubbed: boolean }
  | { readonly _tag: "NotJson" }
  | { readonly _tag: "TooDeep" }

const NOT_JSON: Untrusted = { _tag: "NotJson" }
const TOO_DEEP: Untrusted = { _tag: "TooDeep" }

/** -1 when the value nests deeper than the bound, else how many strings (and keys) were scrubbed. */
const TOO_DEEP_MARK = -1

/**
 * Walks a freshly parsed value without recursion: checks its depth and scrubs, in place (the value
 * is ours — it was just parsed), every string and key that contains one of `secrets`.
 */
const sanitize = (root: object, secrets: ReadonlyArray<string>): number => {
  const nodes: Array<object> = [root]
  const depths: Array<number> = [1]
  let scrubbed = 0
  const clean = (text: string): string => {
    const out = scrubSecrets(text, secrets)
    if (out !== text) scrubbed++
    return out
  }
  while (nodes.length > 0) {
    const node = nodes.pop()!
    const depth = depths.pop()!
    if (depth > MAX_JSON_DEPTH) return TOO_DEEP_MARK
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const item: unknown = node[i]
        if (typeof item === "string") {
          if (secrets.length > 0) node[i] = clean(item)
        } else if (typeof item === "object" && item !== null) {
          nodes.push(item)
          depths.push(depth + 1)
        }
      }
      continue
    }
    const fields = node as Record<string, unknown>
    for (const key of Object.keys(fields)) {
      const item = fields[key]
      if (typeof item === "string") {
        if (secrets.length > 0) fields[key] = clean(item)
      } else if (typeof item === "object" && item !== null) {
        nodes.push(item)
        depths.push(depth + 1)
      }
      if (secrets.length > 0) {
        const cleanKey = clean(key)
        if (cleanKey !== key) {
          fields[cleanKey] = fields[key]
          delete fields[key]
        }
      }
    }
  }
  return scrubbed
}

/** Whether the text holds more than {@link MAX_JSON_DEPTH} brackets at all: an upper bound on its depth. */
const mayNestTooDeep = (text: string): boolean => {
  if (text.length <= 2 * MAX_JSON_DEPTH) return false
  let brackets = 0
  for (const open of ["[", "{"]) {
    for (let at = text.indexOf(open); at !== -1; at = text.indexOf(open, at + 1)) {
      if (++brackets > MAX_JSON_DEPTH) return true
    }
  }
  return false
}

/** Characters JSON may escape other than with `\u`: a secret holding one could hide behind `\"`, `\\`, `\n`… */
const ESCAPABLE = /["\\\u0000-\u001f]/

/**
 * Whether a parsed string could contain a secret: the text holds it literally, or holds a `\u` or
 * `\/` escape that could spell it (or a secret has characters JSON escapes otherwise, and any escape
 * could).
 */
const secretMayHide = (text: string, secrets: ReadonlyArray<string>): boolean => {
  for (const secret of secrets) {
    if (secret.length >= 4 && text.includes(secret)) return true
    if (ESCAPABLE.test(secret) && text.includes("\\")) return true
  }
  return text.includes("\\u") || text.includes("\\/")
}

/**
 * Parses JSON that came from outside: not JSON, nested deeper than {@link MAX_JSON_DEPTH}, or the
 * value with every echo of `secrets` replaced by `<redacted>`. Never throws.
 */
export const parseUntrusted = (text: string, secrets: ReadonlyArray<string> = []): Untrusted => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return NOT_JSON
  }
  if (typeof value === "string") {
    const clean = scrubSecrets(value, secrets)
    return { _tag: "Json", value: clean, scrubbed: clean !== value }
  }
  if (typeof value !== "object" || value === null) return { _tag: "Json", value, scrubbed: false }
  // The walk is skipped when the text itself proves it has nothing to find (the common case: an
  // answer or a stream chunk with a handful of brackets and no echo), so the hot path pays two
  // native substring scans instead of a walk.
  const mustScrub = secrets.length > 0 && secretMayHide(text, secrets)
  if (!mustScrub && !mayNestTooDeep(text)) return { _tag: "Json", value, scrubbed: false }
  const scrubbed = sanitize(value, mustScrub ? secrets : [])
  return scrubbed === TOO_DEEP_MARK ? TOO_DEEP : { _tag: "Json", value, scrubbed: scrubbed > 0 }
}

/** Why an untrusted text was refused, for messages. */
export const refusedBecause = (parsed: Untrusted): string =>
  parsed._tag === "TooDeep" ? `JSON nested deeper than ${MAX_JSON_DEPTH} levels` : "not JSON"

/**
 * `JSON.stringify` that never throws: a value too deep (or cyclic, or holding a BigInt) to serialise
 * becomes a short placeholder. For values the library did not parse itself (a caller's payload).
 */
export const safeStringify = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch (error) {
    return `[unserialisable value: ${error instanceof Error ? error.name : "error"}]`
  }
}

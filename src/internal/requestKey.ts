/**
 * A canonical hash of a request: equal for requests that ask the provider the same thing, whatever
 * the order of their object keys or the encoding of their bytes — the identity that request
 * coalescing and the response cache key on. Structural: objects by sorted keys, arrays in order,
 * bytes by content, `undefined` fields as absent; every value is tagged with its type so that `"1"` and
 * `1`, or `[]` and `{}`, never collide. The per-attempt `idempotencyKey` is left out (it names an
 * attempt, not a question).
 *
 * @internal
 */
import { createHash, type Hash } from "node:crypto"
import type { GenerateRequest } from "../Provider.js"

const feed = (hash: Hash, value: unknown): void => {
  if (value === undefined) return void hash.update("u")
  if (value === null) return void hash.update("n")
  switch (typeof value) {
    case "string":
      hash.update(`s${value.length}:`)
      // As UTF-16 code units: a lone surrogate (text cut inside an emoji) would become U+FFFD in UTF-8
      // and collide with a real U+FFFD.
      hash.update(Buffer.from(value, "utf16le"))
      return
    case "number":
      hash.update(`d${Object.is(value, -0) ? "0" : String(value)};`)
      return
    case "boolean":
      hash.update(value ? "T" : "F")
      return
    case "bigint":
      hash.update(`i${value.toString()};`)
      return
    default:
      break
  }
  if (value instanceof Uint8Array) {
    hash.update(`b${value.byteLength}:`)
    hash.update(value)
    return
  }
  if (Array.isArray(value)) {
    hash.update(`a${value.length}[`)
    for (const item of value) feed(hash, item)
    hash.update("]")
    return
  }
  if (typeof value === "object") {
    const record = value as Record<string, unknown>
    const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort()
    hash.update(`o${keys.length}{`)
    for (const key of keys) {
      feed(hash, key)
      feed(hash, record[key])
    }
    hash.update("}")
    return
  }
  // Functions and symbols are not request data: they hash by kind only.
  hash.update(`x${typeof value};`)
}

/** The canonical hash of any request-shaped value (`extra` joins it: a schema's identity, a scope). @internal */
export const canonicalHash = (value: unknown, extra?: unknown): string => {
  const hash = createHash("sha256")
  feed(hash, value)
  if (extra !== undefined) feed(hash, extra)
  return hash.digest("base64url")
}

/**
 * The identity of a request: everything but its idempotency key. A chain's request (no `model`: each
 * route has its own) is keyed the same way. @internal
 */
export const requestKey = (request: Omit<GenerateRequest, "model"> & { readonly model?: string | undefined }, extra?: unknown): string => {
  const { idempotencyKey: _attempt, ...question } = request
  return canonicalHash(question, extra)
}

/**
 * How step values become journal text and back: Schema encode → secret check → JSON, and the
 * canonical arguments hash that binds an idempotency key to one set of arguments.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { CheckpointCodecError, UnsafeCheckpoint } from "../AgentError.js"

/** Where a step sits, for error messages. */
export interface StepSite {
  readonly runId: string
  readonly index: number
  readonly step: string
}

/**
 * The path of the first `Redacted` value inside `value`, if any. Runs on the *decoded* value:
 * `Schema.Redacted` encodes to the plain secret, so after encoding it could no longer be told apart.
 */
export const findSecret = (value: unknown, path = "", seen = new WeakSet<object>()): string | undefined => {
  if (Redacted.isRedacted(value)) return path === "" ? "(root)" : path
  if (typeof value !== "object" || value === null) return undefined
  if (seen.has(value)) return undefined
  seen.add(value)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findSecret(value[i], `${path}[${i}]`, seen)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const found = findSecret(v, `${path}[${String(k)}]`, seen)
      if (found !== undefined) return found
    }
    return undefined
  }
  for (const key of Object.keys(value)) {
    const found = findSecret((value as Record<string, unknown>)[key], path === "" ? key : `${path}.${key}`, seen)
    if (found !== undefined) return found
  }
  return undefined
}

/** Encodes `value` with `schema` to JSON text, refusing secrets. */
export const encodeJson = <A, I>(
  schema: Schema.Schema<A, I>,
  value: A,
  site: StepSite
): Effect.Effect<string, CheckpointCodecError | UnsafeCheckpoint> => {
  const secret = findSecret(value)
  if (secret !== undefined) {
    return Effect.fail(new UnsafeCheckpoint({
      ...site,
      path: secret,
      message: `step ${site.index} (${site.step}) of run ${site.runId}: refusing to checkpoint a Redacted secret at ${secret}`
    }))
  }
  return Schema.encode(schema)(value).pipe(
    Effect.mapError((error) =>
      new CheckpointCodecError({ ...site, direction: "encode", message: ParseResult.TreeFormatter.formatErrorSync(error) })
    ),
    Effect.flatMap((encoded) =>
      Effect.try({
        // An envelope, so that `undefined` (a void step) and `null` stay distinct.
        try: () => JSON.stringify(encoded === undefined ? {} : { v: encoded }),
        catch: (cause) =>
          new CheckpointCodecError({ ...site, direction: "encode", message: `the encoded value is not JSON: ${String(cause)}` })
      })
    )
  )
}

/** Decodes journal text with `schema`. */
export const decodeJson = <A, I>(
  schema: Schema.Schema<A, I>,
  text: string | null,
  site: StepSite
): Effect.Effect<A, CheckpointCodecError> =>
  Effect.try({
    try: (): unknown => {
      const envelope: unknown = JSON.parse(text ?? "{}")
      if (typeof envelope !== "object" || envelope === null) throw new Error("not an envelope")
      return "v" in envelope ? envelope.v : undefined
    },
    catch: () => new CheckpointCodecError({ ...site, direction: "decode", message: "the stored result is not a JSON envelope" })
  }).pipe(
    Effect.flatMap((json) =>
      Effect.mapError(
        Schema.decodeUnknown(schema)(json),
        (error) => new CheckpointCodecError({ ...site, direction: "decode", message: ParseResult.TreeFormatter.formatErrorSync(error) })
      )
    )
  )

/** JSON with object keys sorted at every level: equal values, equal text. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return v
    const sorted: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
    return sorted
  }) ?? "null"

export const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex")

/** The hash of a tool's Schema-encoded arguments. */
export const argsHash = <A, I>(
  schema: Schema.Schema<A, I>,
  args: A,
  site: StepSite
): Effect.Effect<string, CheckpointCodecError> =>
  Schema.encode(schema)(args).pipe(
    Effect.map((encoded) => sha256(canonicalJson(encoded))),
    Effect.mapError((error) =>
      new CheckpointCodecError({ ...site, direction: "encode", message: `arguments: ${ParseResult.TreeFormatter.formatErrorSync(error)}` })
    )
  )

/**
 * The deterministic key of a step: run + index + name. Callees (Stripe: 255 characters) bound key
 * length, so a longer key is replaced by its hash.
 */
export const stepKey = (runId: string, index: number, name: string): string => {
  const key = `${runId}:${index}:${name}`
  return key.length <= 255 ? key : `sha256:${sha256(key)}`
}

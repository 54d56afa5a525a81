/**
 * Total accessors for untrusted JSON: a provider body is `unknown` until proven otherwise, and a
 * missing or mistyped field must yield `undefined`, never a TypeError.
 *
 * @internal
 */

export type JsonRecord = { readonly [key: string]: unknown }

export const isRecord = (u: unknown): u is JsonRecord => typeof u === "object" && u !== null && !Array.isArray(u)

export const record = (u: unknown): JsonRecord | undefined => (isRecord(u) ? u : undefined)

export const string = (u: unknown): string | undefined => (typeof u === "string" ? u : undefined)

export const number = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)

export const array = (u: unknown): ReadonlyArray<unknown> | undefined => (Array.isArray(u) ? u : undefined)

/** `{ [key]: value }` when value is defined, else `{}` — for building objects under exactOptionalPropertyTypes. */
export const opt = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/**
 * `call --schema file.json`: a JSON Schema (the subset structured-output APIs accept) turned into an
 * `effect/Schema`, so the chain's output gate decodes the model's answer with it and the provider
 * receives the equivalent JSON Schema. Keywords that would change what is accepted but are not
 * supported are rejected with their path (exit 2) rather than ignored: a gate that silently accepts
 * more than the file says is worse than no gate.
 *
 * Supported: `type` (one or a list), `properties`, `required`, `additionalProperties: false`, `items`,
 * `minItems`, `maxItems`, `enum`, `const`, `anyOf` / `oneOf`, `minLength`, `maxLength`, `pattern`,
 * `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`; annotations (`title`, `description`,
 * `$schema`, `$id`, `examples`, `default`, `format`) are ignored.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { ConfigFileError } from "./CliError.js"

type Any = Schema.Schema<unknown, unknown>

const ANNOTATIONS = new Set(["title", "description", "$schema", "$id", "examples", "default", "format", "$comment", "strict"])
const SUPPORTED = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "minItems",
  "maxItems",
  "enum",
  "const",
  "anyOf",
  "oneOf",
  "minLength",
  "maxLength",
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum"
])

type Problem = { readonly path: string; readonly message: string }

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const join = (path: string, key: string | number) =>
  typeof key === "number" ? `${path}[${key}]` : path === "" ? key : `${path}.${key}`

const where = (path: string) => (path === "" ? "(root)" : path)

const numberOf = (node: Record<string, unknown>, key: string, path: string, problems: Array<Problem>): number | undefined => {
  const value = node[key]
  if (value === undefined) return undefined
  if (typeof value === "number" && Number.isFinite(value)) return value
  problems.push({ path: where(join(path, key)), message: "Expected a number" })
  return undefined
}

const convert = (node: unknown, path: string, problems: Array<Problem>): Any => {
  if (node === true || (isRecord(node) && Object.keys(node).every((k) => ANNOTATIONS.has(k)))) return Schema.Unknown
  if (!isRecord(node)) {
    problems.push({ path: where(path), message: "Expected a JSON Schema object" })
    return Schema.Unknown
  }
  for (const key of Object.keys(node)) {
    if (!SUPPORTED.has(key) && !ANNOTATIONS.has(key)) {
      problems.push({ path: where(join(path, key)), message: `unsupported JSON Schema keyword "${key}"` })
    }
  }
  if (node["const"] !== undefined) return literalOf([node["const"]], join(path, "const"), problems)
  if (node["enum"] !== undefined) {
    const values = node["enum"]
    if (!Array.isArray(values) || values.length === 0) {
      problems.push({ path: where(join(path, "enum")), message: "Expected a non-empty array" })
      return Schema.Unknown
    }
    return literalOf(values, join(path, "enum"), problems)
  }
  const alternatives = node["anyOf"] ?? node["oneOf"]
  if (alternatives !== undefined) {
    const key = node["anyOf"] !== undefined ? "anyOf" : "oneOf"
    if (!Array.isArray(alternatives) || alternatives.length === 0) {
      problems.push({ path: where(join(path, key)), message: "Expected a non-empty array of schemas" })
      return Schema.Unknown
    }
    return Schema.Union(...alternatives.map((alt, i) => convert(alt, join(join(path, key), i), problems))) as Any
  }
  const type = node["type"]
  if (Array.isArray(type)) {
    return Schema.Union(...type.map((t, i) => typed(node, t, join(join(path, "type"), i), path, problems))) as Any
  }
  if (type === undefined) {
    problems.push({ path: where(path), message: "a schema needs a `type`, `enum`, `const` or `anyOf`" })
    return Schema.Unknown
  }
  return typed(node, type, join(path, "type"), path, problems)
}

const literalOf = (values: ReadonlyArray<unknown>, path: string, problems: Array<Problem>): Any => {
  const literals: Array<string | number | boolean | null> = []
  for (const value of values) {
    if (value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean") literals.push(value)
    else problems.push({ path: where(path), message: "only string, number, boolean and null literals are supported" })
  }
  return literals.length === 0 ? Schema.Unknown : (Schema.Literal(...literals) as Any)
}

const typed = (
  node: Record<string, unknown>,
  type: unknown,
  typePath: string,
  path: string,
  problems: Array<Problem>
): Any => {
  switch (type) {
    case "string": {
      let schema: Schema.Schema<string> = Schema.String
      const min = numberOf(node, "minLength", path, problems)
      const max = numberOf(node, "maxLength", path, problems)
      if (min !== undefined) schema = schema.pipe(Schema.minLength(min))
      if (max !== undefined) schema = schema.pipe(Schema.maxLength(max))
      const pattern = node["pattern"]
      if (typeof pattern === "string") {
        try {
          schema = schema.pipe(Schema.pattern(new RegExp(pattern, "u")))
        } catch {
          problems.push({ path: where(join(path, "pattern")), message: "not a valid regular expression" })
        }
      }
      return schema as Any
    }
    case "number":
    case "integer": {
      let schema: Schema.Schema<number> = type === "integer" ? Schema.Int : Schema.Number
      const minimum = numberOf(node, "minimum", path, problems)
      const maximum = numberOf(node, "maximum", path, problems)
      const exclusiveMinimum = numberOf(node, "exclusiveMinimum", path, problems)
      const exclusiveMaximum = numberOf(node, "exclusiveMaximum", path, problems)
      if (minimum !== undefined) schema = schema.pipe(Schema.greaterThanOrEqualTo(minimum))
      if (maximum !== undefined) schema = schema.pipe(Schema.lessThanOrEqualTo(maximum))
      if (exclusiveMinimum !== undefined) schema = schema.pipe(Schema.greaterThan(exclusiveMinimum))
      if (exclusiveMaximum !== undefined) schema = schema.pipe(Schema.lessThan(exclusiveMaximum))
      return schema as Any
    }
    case "boolean":
      return Schema.Boolean as Any
    case "null":
      return Schema.Null as Any
    case "array": {
      let schema: Schema.Schema<ReadonlyArray<unknown>, ReadonlyArray<unknown>> = Schema.Array(
        node["items"] === undefined ? Schema.Unknown : convert(node["items"], join(path, "items"), problems)
      )
      const min = numberOf(node, "minItems", path, problems)
      const max = numberOf(node, "maxItems", path, problems)
      if (min !== undefined) schema = schema.pipe(Schema.minItems(min))
      if (max !== undefined) schema = schema.pipe(Schema.maxItems(max))
      return schema as Any
    }
    case "object": {
      const properties = node["properties"] ?? {}
      if (!isRecord(properties)) {
        problems.push({ path: where(join(path, "properties")), message: "Expected an object" })
        return Schema.Unknown
      }
      const requiredList = node["required"] ?? []
      if (!Array.isArray(requiredList) || requiredList.some((r) => typeof r !== "string")) {
        problems.push({ path: where(join(path, "required")), message: "Expected an array of property names" })
      }
      const required = new Set(Array.isArray(requiredList) ? requiredList.filter((r): r is string => typeof r === "string") : [])
      for (const name of required) {
        if (!(name in properties)) problems.push({ path: where(join(path, "required")), message: `"${name}" is required but not in properties` })
      }
      const additional = node["additionalProperties"]
      if (additional !== undefined && additional !== false && additional !== true) {
        problems.push({ path: where(join(path, "additionalProperties")), message: "only true or false is supported" })
      }
      const fields: Record<string, Schema.Schema.All | Schema.PropertySignature.All> = {}
      for (const [name, child] of Object.entries(properties)) {
        const schema = convert(child, join(join(path, "properties"), name), problems)
        fields[name] = required.has(name) ? schema : Schema.optionalWith(schema, { exact: true })
      }
      return Schema.Struct(fields) as unknown as Any
    }
    default:
      problems.push({ path: where(typePath), message: `Expected "string" | "number" | "integer" | "boolean" | "null" | "array" | "object", actual ${JSON.stringify(type)}` })
      return Schema.Unknown
  }
}

/**
 * Converts a parsed JSON Schema, or fails with every unsupported or malformed part.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toSchema = (jsonSchema: unknown, source: string): Schema.Schema<unknown, unknown> | ConfigFileError => {
  const problems: Array<Problem> = []
  const schema = convert(jsonSchema, "", problems)
  if (problems.length === 0) return schema
  return new ConfigFileError({
    source,
    issues: problems,
    message: [`Unusable JSON Schema ${source}:`, ...problems.map((p) => `  - ${p.path}: ${p.message}`)].join("\n")
  })
}

/**
 * The output gate: what an answer must be before the chain accepts it. It runs inside the route's
 * attempt (the policy calls it on the response, or on a stream's `Finish` before that chunk goes out),
 * so a rejection is a failure of that attempt — seen by the breaker, the metrics and the history.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as JSONSchema from "effect/JSONSchema"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { ContentFiltered, InvalidOptions, InvalidOutput, type InvalidOutputReason, type RouteError } from "../Errors.js"
import { parseUntrusted, refusedBecause } from "../internal/json.js"
import type { Validator } from "../Fallback.js"
import type { Acceptor } from "../Policy.js"
import type { GenerateRequest, GenerateResponse } from "../Provider.js"

/** The longest rejected output kept on an `InvalidOutput` (for a repair prompt and diagnosis). */
const MAX_KEPT_OUTPUT = 4000

export const invalid = (
  response: GenerateResponse,
  request: GenerateRequest,
  reason: InvalidOutputReason,
  message: string,
  issues?: string
) =>
  new InvalidOutput({
    provider: response.provider,
    model: request.model,
    route: "*",
    attempt: 1,
    status: 200,
    ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
    reason,
    message,
    ...(issues !== undefined ? { issues } : {}),
    output: response.text.length > MAX_KEPT_OUTPUT ? `${response.text.slice(0, MAX_KEPT_OUTPUT)}…` : response.text
  }, true)

/**
 * Why an answer fails what every answer must pass — refused or filtered, truncated (unless
 * accepted), empty — or `undefined`.
 */
const basicRejection = (
  response: GenerateResponse,
  request: GenerateRequest,
  acceptTruncated: boolean
): InvalidOutput | ContentFiltered | undefined => {
  if (response.finishReason === "content_filter" || response.finishReason === "refusal") {
    return new ContentFiltered({
      provider: response.provider,
      model: request.model,
      route: "*",
      attempt: 1,
      status: 200,
      ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
      finishReason: response.finishReason,
      message: response.refusal ?? `the model's output was ${response.finishReason === "refusal" ? "a refusal" : "filtered"}`
    }, true)
  }
  if (response.finishReason === "length" && !acceptTruncated) {
    return invalid(response, request, "truncated", "the output was cut by the token limit")
  }
  if (response.text.trim().length === 0 && response.toolCalls.length === 0) {
    return invalid(response, request, "empty", "the output was empty")
  }
  return undefined
}

/** What every answer must pass: not refused or filtered, not truncated (unless accepted), not empty. */
export const basicGate = (acceptTruncated: boolean): Acceptor => (response, request) => {
  const rejected = basicRejection(response, request, acceptTruncated)
  return rejected === undefined ? Effect.succeed(response) : Effect.fail(rejected)
}

/** The model's JSON answer, through the same depth-bounded door as provider bodies. */
const parseAnswer = (text: string) => {
  const trimmed = text.trim()
  // Models often wrap JSON in a Markdown fence despite instructions; unwrapping it is not guessing.
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/i.exec(trimmed)
  return parseUntrusted(fenced?.[1] ?? trimmed)
}


/** A schema's decoder and JSON Schema, built once per schema (applications reuse theirs on every call). */
export interface Compiled<A> {
  readonly decode: (input: unknown) => Effect.Effect<A, ParseResult.ParseError>
  readonly jsonSchema: Record<string, unknown>
}

const compiledSchemas = new WeakMap<Schema.Schema.Any, Compiled<unknown>>()

/**
 * The schema compiled for structured output, or `InvalidOptions` when it has no JSON Schema (a
 * `Schema.suspend` without an identifier, a declared type with no JSON form): a mistake in the caller's
 * code, said plainly instead of a defect at the first call.
 */
export const compile = <A, I>(schema: Schema.Schema<A, I>, component: string): Either.Either<Compiled<A>, InvalidOptions> => {
  const cached = compiledSchemas.get(schema)
  if (cached !== undefined) return Either.right(cached as Compiled<A>)
  try {
    const entry: Compiled<unknown> = {
      decode: Schema.decodeUnknown(schema) as (input: unknown) => Effect.Effect<unknown, ParseResult.ParseError>,
      jsonSchema: JSONSchema.make(schema) as unknown as Record<string, unknown>
    }
    compiledSchemas.set(schema, entry)
    return Either.right(entry as Compiled<A>)
  } catch (error) {
    return Either.left(
      new InvalidOptions({
        component,
        option: "schema",
        message: `the schema has no JSON Schema for structured output: ${error instanceof Error ? error.message : String(error)}`
      })
    )
  }
}

/**
 * The structured-output gate: the basic gate, then JSON, then the schema, then the caller's validator.
 * Each accepted answer's decoded value is kept in `decoded` (keyed by the response object) for the
 * chain to return.
 *
 * A schema that decodes synchronously (most do) hands back its result as an `Either`, which is an
 * effect too; the gate reads it at once rather than running it as one, with the same handlers.
 */
export const objectGate = <A>(
  compiled: Compiled<A>,
  validate: Validator<A> | undefined,
  decoded: WeakMap<GenerateResponse, A>
): Acceptor =>
(response, request) => {
  const rejected = basicRejection(response, request, false)
  if (rejected !== undefined) return Effect.fail(rejected)
  const parsed = parseAnswer(response.text)
  if (parsed._tag !== "Json") {
    const why = refusedBecause(parsed)
    return Effect.fail(invalid(response, request, "unparsable", `the output is ${why}`, `expected a single JSON value, got ${why}`))
  }
  const mismatch = (error: ParseResult.ParseError) => {
    const issues = ParseResult.TreeFormatter.formatErrorSync(error)
    return Effect.fail(invalid(response, request, "schema", "the output does not match the schema", issues))
  }
  const accept = (value: A): Effect.Effect<GenerateResponse, InvalidOutput> => {
    if (validate === undefined) {
      decoded.set(response, value)
      return Effect.succeed(response)
    }
    return Effect.mapBoth(validate(value), {
      onFailure: (issue) => invalid(response, request, "validator", `rejected by the validator: ${issue}`, issue),
      onSuccess: () => {
        decoded.set(response, value)
        return response
      }
    })
  }
  const result: unknown = compiled.decode(parsed.value)
  if (Either.isEither(result)) {
    const settled = result as Either.Either<A, ParseResult.ParseError>
    return Either.isRight(settled) ? accept(settled.right) : mismatch(settled.left)
  }
  return Effect.matchEffect(result as Effect.Effect<A, ParseResult.ParseError>, { onFailure: mismatch, onSuccess: accept })
}

/** Reasons a repair can fix: the model can read what was wrong and answer again. */
export const isRepairable = (error: RouteError): error is InvalidOutput =>
  error._tag === "InvalidOutput" && (error.reason === "unparsable" || error.reason === "schema" || error.reason === "validator")

/** The follow-up that feeds the decode errors back to the same route. */
export const repairRequest = (request: GenerateRequest, error: InvalidOutput): GenerateRequest => ({
  ...request,
  messages: [
    ...request.messages,
    { role: "assistant", content: error.output ?? "" },
    {
      role: "user",
      content: `Your previous answer was rejected: ${error.message}.${error.issues !== undefined ? `\nProblems:\n${error.issues}` : ""}\nReply again with only the corrected JSON.`
    }
  ]
})

/**
 * The chain's failure never carries a rejected answer: the history says what each attempt did, the
 * decode issues say why the output was refused, but the off-contract value itself stays out.
 */
export const withoutRejectedOutput = (error: RouteError): RouteError => {
  if (error._tag !== "InvalidOutput" || error.output === undefined) return error
  // `message` is an own non-enumerable property of an Error, so a spread alone would drop it.
  const { output: _output, ...rest } = error
  return new InvalidOutput({ ...rest, message: error.message }, true)
}

/** Decode issues in one line each, joined — all of them, each cut short — for the chain's message. */
export const briefIssues = (issues: string): string => {
  const lines = issues.split("\n").map((line) => line.trim().replace(/^[└├─│\s]+/, "")).filter((line) => line.length > 0)
  const brief = lines.map((line) => (line.length > 120 ? `${line.slice(0, 117)}…` : line)).join("; ")
  return brief.length > 1_000 ? `${brief.slice(0, 997)}…` : brief
}

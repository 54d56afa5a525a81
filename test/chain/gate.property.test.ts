/**
 * The structured-output gate reads a schema's synchronous result (an `Either`) at once instead of
 * running it as an effect; an asynchronous schema's result is run. Both go through the same handlers,
 * and this property holds them to one semantics: on random answers (valid, off-schema, unparsable,
 * fenced, empty, truncated, refused) and with or without a validator, the gate gives the same verdict —
 * the same accepted value, or the same error with the same reason, message and issues — whether the
 * decoder's result comes back settled or as an effect to run.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { type Compiled, compile, objectGate } from "../../src/chain/gate.js"
import type { Validator } from "../../src/Fallback.js"
import type { GenerateRequest, GenerateResponse } from "../../src/Provider.js"

const Triage = Schema.Struct({
  severity: Schema.Literal("low", "high"),
  summary: Schema.String.pipe(Schema.minLength(3)),
  count: Schema.optional(Schema.Number.pipe(Schema.int()))
})
type Triage = typeof Triage.Type

const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "triage" }], maxTokens: 100 }

/** Answers a model may give: mostly JSON near the schema, some of it off, some not JSON at all. */
const arbValue = fc.oneof(
  fc.record({
    severity: fc.constantFrom("low", "high", "medium", 3),
    summary: fc.oneof(fc.string({ maxLength: 8 }), fc.constant(null)),
    count: fc.option(fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 3 })), { nil: undefined })
  }, { requiredKeys: [] }),
  fc.jsonValue({ maxDepth: 2 })
)
const arbText = fc.oneof(
  arbValue.map((value) => JSON.stringify(value) ?? "null"),
  arbValue.map((value) => "```json\n" + (JSON.stringify(value) ?? "null") + "\n```"),
  fc.string({ maxLength: 12 }),
  fc.constant("")
)
const arbResponse = fc.record({
  text: arbText,
  finishReason: fc.constantFrom<GenerateResponse["finishReason"]>("stop", "stop", "stop", "length", "content_filter", "refusal"),
  requestId: fc.option(fc.constant("req-1"), { nil: undefined })
}).map(({ finishReason, requestId, text }): GenerateResponse => ({
  provider: "p",
  model: "m",
  text,
  toolCalls: [],
  finishReason,
  usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 },
  ...(requestId !== undefined ? { requestId } : {})
}))

/** The caller's validator: none, or one that rejects some decoded values. */
const validators: ReadonlyArray<Validator<Triage> | undefined> = [
  undefined,
  (value) => value.summary.startsWith("x") ? Effect.fail("summary starts with x") : Effect.void
]

/** The same compiled schema, with its decoder's result handed back as an effect to run (never settled). */
const asEffect = (compiled: Compiled<Triage>): Compiled<Triage> => ({
  ...compiled,
  decode: (input) => Effect.suspend(() => compiled.decode(input) as Effect.Effect<Triage, ParseResult.ParseError>)
})

/** The gate's verdict, in comparable terms. */
const verdict = (compiled: Compiled<Triage>, validate: Validator<Triage> | undefined, response: GenerateResponse) =>
  Effect.runPromise(Effect.gen(function*() {
    const decoded = new WeakMap<GenerateResponse, Triage>()
    const result = yield* Effect.either(objectGate(compiled, validate, decoded)(response, request))
    return Either.match(result, {
      onRight: (accepted) => ({ accepted: accepted === response, value: decoded.get(response) }),
      onLeft: (error) => ({
        tag: error._tag,
        reason: error._tag === "InvalidOutput" ? error.reason : undefined,
        message: error.message,
        issues: error._tag === "InvalidOutput" ? error.issues : undefined,
        output: error._tag === "InvalidOutput" ? error.output : undefined,
        requestId: error.requestId
      })
    })
  }))

describe("the object gate: a settled decode and an effectful one are one semantics", () => {
  it("the same verdict on random answers, with and without a validator", async () => {
    const compiled = Either.getOrThrow(compile(Triage, "test"))
    // The schema decodes synchronously: the gate takes the settled path for it.
    expect(Either.isEither(compiled.decode({ severity: "low", summary: "abc" }))).toBe(true)
    const effectful = asEffect(compiled)
    await fc.assert(
      fc.asyncProperty(arbResponse, fc.constantFrom(...validators), async (response, validate) => {
        expect(await verdict(compiled, validate, response)).toEqual(await verdict(effectful, validate, response))
      }),
      { numRuns: 400, seed: 20261207 }
    )
  })
})

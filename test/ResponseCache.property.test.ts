/**
 * A cache hit never hands out a value the caller's schema rejects (property).
 *
 * Schemas that send the same JSON Schema — the same question to the model, so the same cache key — may
 * still accept different values (a refinement without a JSON Schema form, a validator), and a store may
 * hold anything under a key (an older answer, another process's, a file written by hand). So each run
 * draws a stored answer — either written through a chain with a random writer schema and validator
 * (stored only when *that* gate accepted it), or put straight into the store, bypassing every gate —
 * and a reader with another random schema and validator over the same key. The reader's result must be
 * a hit exactly when its own gate, computed independently here, accepts the stored answer; a hit's
 * value is that answer decoded by the reader's schema and passes its validator; anything else is a
 * miss that asks the provider.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as JSONSchema from "effect/JSONSchema"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as DegradedMode from "../src/DegradedMode.js"
import * as Fallback from "../src/Fallback.js"
import * as Policy from "../src/Policy.js"
import type { FinishReason } from "../src/Provider.js"
import * as ResponseCache from "../src/ResponseCache.js"
import * as Mock from "../src/testing/MockProvider.js"

/** Refinements without a JSON Schema form: every combination sends the same JSON Schema. */
const numberRules: ReadonlyArray<(n: number) => boolean> = [() => true, Number.isInteger, (n) => n > 0, (n) => n < 100, (n) => n % 2 === 0]
const stringRules: ReadonlyArray<(s: string) => boolean> = [() => true, (s) => s.length > 0, (s) => s.startsWith("a"), (s) => s.length < 4]
const schemaOf = (n: number, s: number) =>
  Schema.Struct({ n: Schema.Number.pipe(Schema.filter(numberRules[n]!)), s: Schema.String.pipe(Schema.filter(stringRules[s]!)) })
type Value = { readonly n: number; readonly s: string }

/** The callers' validators: none, or one that refuses some decoded values. */
const validatorRules: ReadonlyArray<((value: Value) => boolean) | undefined> = [undefined, (v) => v.n <= 50, (v) => v.s !== "ab"]
const optionsOf = (rule: ((value: Value) => boolean) | undefined): Fallback.ObjectOptions<Value> =>
  rule === undefined ? {} : { validate: (value) => (rule(value) ? Effect.void : Effect.fail("refused by the test's validator")) }

/** An answer every reader accepts: what the provider says on a miss. */
const SAFE = JSON.stringify({ n: 2, s: "a" })

/** Answers near the contract (most of them decode for some reader, not for others), some off it, some not JSON. */
const arbAnswer = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      n: fc.oneof(fc.integer({ min: -5, max: 120 }), fc.double({ min: -10, max: 200, noNaN: true })),
      s: fc.constantFrom("", "a", "ab", "abc", "abcd", "b", "bcd")
    }).map((value) => JSON.stringify(value))
  },
  {
    weight: 2,
    arbitrary: fc.record({
      n: fc.oneof(fc.integer({ min: -5, max: 120 }), fc.constant("2"), fc.constant(null)),
      s: fc.oneof(fc.constantFrom("a", "ab"), fc.integer())
    }, { requiredKeys: [] }).map((value) => JSON.stringify(value))
  },
  { weight: 1, arbitrary: fc.constantFrom("", "not json", "{\"n\": 1, \"s\": \"a\"", "[]", "null", "42") }
)
const arbSample = fc.record({
  text: arbAnswer,
  fenced: fc.boolean(),
  finishReason: fc.constantFrom<FinishReason>("stop", "stop", "stop", "stop", "length", "content_filter", "tool_calls"),
  /** Written through a writer chain (its gate decides), or put straight into the store. */
  direct: fc.boolean(),
  writer: fc.tuple(fc.nat({ max: numberRules.length - 1 }), fc.nat({ max: stringRules.length - 1 }), fc.nat({ max: validatorRules.length - 1 })),
  reader: fc.tuple(fc.nat({ max: numberRules.length - 1 }), fc.nat({ max: stringRules.length - 1 }), fc.nat({ max: validatorRules.length - 1 }))
})

/** The gate's verdict, computed here independently of the library: JSON (a Markdown fence unwrapped), the schema, the validator. */
const accepts = (schema: Schema.Schema<Value>, rule: ((value: Value) => boolean) | undefined, text: string, finishReason: FinishReason): boolean => {
  if (finishReason === "length" || finishReason === "content_filter" || finishReason === "refusal") return false
  const trimmed = text.trim()
  const unfenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/i.exec(trimmed)?.[1] ?? trimmed
  let json: unknown
  try {
    json = JSON.parse(unfenced)
  } catch {
    return false
  }
  const decoded = Schema.decodeUnknownEither(schema)(json)
  return Either.isRight(decoded) && (rule === undefined || rule(decoded.right))
}

const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "a value" }], maxTokens: 50, temperature: 0 }
const noPolicy: Policy.PolicyOptions = { retry: false, breaker: false }

describe("ResponseCache — property", () => {
  it.scoped("a hit never returns a value the caller's schema (or validator) rejects, and returns every stored answer it accepts", () =>
    Effect.gen(function*() {
      const samples = fc.sample(arbSample, { numRuns: 300, seed: 20_261_208 })
      let hits = 0
      let misses = 0
      for (const [i, sample] of samples.entries()) {
        const text = sample.fenced ? "```json\n" + sample.text + "\n```" : sample.text
        const cache = yield* ResponseCache.make({ namespace: `p${i}` })
        const [wn, ws, wv] = sample.writer
        const [rn, rs, rv] = sample.reader
        const writerSchema = schemaOf(wn, ws)
        const readerSchema = schemaOf(rn, rs)
        let stored: boolean
        if (sample.direct) {
          // Straight into the store under the reader's key, whatever the answer: no gate saw it.
          const jsonSchema = JSONSchema.make(readerSchema) as unknown as Record<string, unknown>
          const plan = yield* cache.plan(
            { ...request, responseFormat: { type: "json_schema", name: "response", schema: jsonSchema, strict: false } },
            undefined,
            [["m", null]]
          )
          if (plan._tag !== "Use") return expect.fail("a temperature-0 call must use the cache")
          const usage = { inputTokens: 3, outputTokens: 4, totalTokens: 7 }
          yield* Effect.orDie(cache.store.set(plan.key, {
            v: 1,
            response: { provider: "mock", model: "m", text, toolCalls: [], finishReason: sample.finishReason, usage },
            route: "elsewhere",
            degraded: false,
            repaired: false,
            usage,
            storedAt: 0
          }, 60_000))
          stored = true
        } else {
          const writer = yield* Fallback.make({
            routes: [{ name: "w", provider: Mock.make({ script: [Mock.succeed(text, { finishReason: sample.finishReason })] }), model: "m", policy: noPolicy }],
            cache
          })
          const written = yield* Effect.either(writer.generateObject(writerSchema, request, optionsOf(validatorRules[wv])))
          stored = Either.isRight(written)
          expect(stored).toBe(accepts(writerSchema, validatorRules[wv], text, sample.finishReason))
        }

        const provider = Mock.make({ otherwise: Mock.succeed(SAFE) })
        const reader = yield* Fallback.make({ routes: [{ name: "r", provider, model: "m", policy: noPolicy }], cache })
        const rule = validatorRules[rv]
        const result = yield* reader.generateObject(readerSchema, request, optionsOf(rule))
        const expectHit = stored && accepts(readerSchema, rule, text, sample.finishReason)
        expect(result.cached === true, JSON.stringify({ i, sample })).toBe(expectHit)
        if (result.cached === true) {
          hits++
          // The value is the stored answer as the reader's schema decodes it, and the reader's rules hold.
          expect(Schema.is(readerSchema)(result.value)).toBe(true)
          expect(rule === undefined || rule(result.value)).toBe(true)
          expect(result.response.text).toBe(text)
          expect(provider.calls).toHaveLength(0)
        } else {
          misses++
          expect(result.value).toEqual(JSON.parse(SAFE))
          expect(provider.calls).toHaveLength(1)
        }
      }
      // The draw exercises both sides.
      expect(hits).toBeGreaterThan(30)
      expect(misses).toBeGreaterThan(30)
    }).pipe(Effect.provide(Layer.mergeAll(Policy.layerState, DegradedMode.layer, ResponseCache.layerMemory()))))
})

/**
 * Request coalescing over real HTTP: OpenAI adapters under the default policy against the ChaosServer,
 * which answers after a latency on the TestClock the test drives (sockets are real; every wait is the
 * server's, so "in flight" is as long as the test says).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Coalesce from "../src/Coalesce.js"
import * as Deadline from "../src/Deadline.js"
import { requestKey } from "../src/internal/requestKey.js"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest } from "../src/Provider.js"
import * as OpenAi from "../src/providers/OpenAi.js"
import * as ChaosServer from "../src/testing/ChaosServer.js"
import type * as Scenario from "../src/testing/Scenario.js"
import * as Transport from "../src/Transport.js"
import { awaitSleepUntil, settle } from "./testing/helpers.js"

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState)
const request: GenerateRequest = { model: "gpt-chaos", messages: [{ role: "user", content: "What is 2 + 2?" }], maxTokens: 32 }

/** A server answering after 1 s (TestClock), and a coalesced, policy-wrapped OpenAI adapter pointed at it. */
const setup = (route: Partial<Scenario.DefaultRoute> = {}) =>
  Effect.gen(function*() {
    const server = yield* ChaosServer.make({ scenario: { default: { latency: { kind: "fixed", ms: 1_000 }, content: { kind: "text", text: "4" }, ...route } } })
    const adapter = yield* OpenAi.make({ apiKey: Redacted.make("sk-coalesce"), baseUrl: server.openAiBaseUrl })
    const coalescer = yield* Coalesce.make
    const llm = Coalesce.provider(coalescer, yield* Policy.apply(Policy.default, adapter, "openai"))
    return { server, llm, coalescer }
  })

const outcome = <A>(effect: Effect.Effect<A, { readonly _tag: string }>) =>
  Effect.match(effect, { onFailure: (e) => e._tag, onSuccess: () => "success" })

describe("Coalesce — over real HTTP", () => {
  it.scoped("100 concurrent identical calls → 1 provider call; every caller gets the answer", () =>
    Effect.gen(function*() {
      const { coalescer, llm, server } = yield* setup()
      const fibers = yield* Effect.forEach(Array.from({ length: 100 }), () => Effect.fork(llm.generate(request)))
      yield* awaitSleepUntil(1_000) // the server holds the one request
      expect(yield* coalescer.inFlight).toBe(1)
      yield* TestClock.adjust("1 second")
      const answers = yield* Effect.forEach(fibers, settle)
      expect(answers.map((a) => a.text)).toEqual(Array.from({ length: 100 }, () => "4"))
      expect((yield* server.stats).total).toBe(1)
      expect(yield* coalescer.inFlight).toBe(0)
      // Done means done: the next identical call is a new one.
      const next = yield* Effect.fork(llm.generate(request))
      yield* awaitSleepUntil(2_000)
      yield* TestClock.adjust("1 second")
      yield* settle(next)
      expect((yield* server.stats).total).toBe(2)
    }).pipe(Effect.provide(Env)))

  it.scoped("interrupting one caller does not fail the others; the call ends only when nobody waits", () =>
    Effect.gen(function*() {
      const { coalescer, llm, server } = yield* setup()
      const [first, second, third] = yield* Effect.forEach([1, 2, 3], () => Effect.fork(outcome(llm.generate(request))))
      yield* awaitSleepUntil(1_000)
      yield* Fiber.interrupt(first!)
      expect(yield* coalescer.inFlight).toBe(1)
      yield* TestClock.adjust("1 second")
      expect([yield* settle(second!), yield* settle(third!)]).toEqual(["success", "success"])
      expect((yield* server.stats).total).toBe(1)

      // Everyone leaves: the shared call is interrupted, nothing stays in flight.
      const gone = yield* Effect.forEach([1, 2], () => Effect.fork(llm.generate({ ...request, maxTokens: 33 })))
      yield* awaitSleepUntil(2_000)
      yield* Effect.forEach(gone, Fiber.interrupt)
      expect(yield* coalescer.inFlight).toBe(0)
      const again = yield* Effect.fork(llm.generate({ ...request, maxTokens: 33 }))
      // The server has admitted it (real sockets: a bounded wait on real time), then answers after 1 s.
      for (let i = 0; i < 1_000 && (yield* server.stats).total < 3; i++) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
      yield* TestClock.adjust("1 second")
      expect((yield* settle(again)).text).toBe("4")
      expect((yield* server.stats).total).toBe(3) // the first group's, the abandoned one's, this one's
    }).pipe(Effect.provide(Env)))

  it.scoped("each caller keeps its own deadline: a short one fails with DeadlineExceeded, the others get the answer", () =>
    Effect.gen(function*() {
      const { llm, server } = yield* setup()
      const hurried = yield* Effect.fork(outcome(Deadline.withDeadline(llm.generate(request), "500 millis")))
      const patient = yield* Effect.fork(outcome(llm.generate(request)))
      yield* awaitSleepUntil(1_000)
      yield* TestClock.adjust("500 millis")
      expect(yield* settle(hurried)).toBe("DeadlineExceeded")
      yield* TestClock.adjust("500 millis")
      expect(yield* settle(patient)).toBe("success")
      expect((yield* server.stats).total).toBe(1)
    }).pipe(Effect.provide(Env)))

  it.scoped("a failure is shared too (one 400 for everyone); different requests are different calls", () =>
    Effect.gen(function*() {
      const { llm, server } = yield* setup({ mix: [{ fault: { kind: "http_error", status: 400 }, rate: 1 }] })
      const same = yield* Effect.forEach([1, 2, 3], () => Effect.fork(outcome(llm.generate(request))))
      const other = yield* Effect.fork(outcome(llm.generate({ ...request, temperature: 0.2 })))
      yield* awaitSleepUntil(1_000)
      yield* TestClock.adjust("1 second")
      expect(yield* Effect.forEach([...same, other], settle)).toEqual(["BadRequest", "BadRequest", "BadRequest", "BadRequest"])
      expect((yield* server.stats).total).toBe(2)
    }).pipe(Effect.provide(Env)))
})

describe("requestKey", () => {
  const value = fc.letrec((tie) => ({
    leaf: fc.oneof(fc.string({ unit: "binary" }), fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.constant(null), fc.uint8Array({ maxLength: 8 })),
    node: fc.oneof({ depthSize: "small" }, tie("leaf"), fc.array(tie("node"), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 4 }), tie("node"), { maxKeys: 4 }))
  })).node

  /** A key-order-free rendering with types kept apart, to know when two values really differ. */
  const canonical = (v: unknown): string => {
    if (v instanceof Uint8Array) return `b[${Array.from(v).join(",")}]`
    if (Array.isArray(v)) return `a[${v.map(canonical).join(",")}]`
    if (v !== null && typeof v === "object") {
      return `o{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(",")}}`
    }
    return `${typeof v}:${Object.is(v, -0) ? "0" : JSON.stringify(v)}`
  }

  /** The same value with every object's keys in reverse order. */
  const reordered = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(reordered)
    if (v instanceof Uint8Array || v === null || typeof v !== "object") return v
    return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reordered(x)]))
  }

  it("ignores object key order and the idempotency key; tells different requests apart (property)", () => {
    fc.assert(fc.property(value, (metadata) => {
      const a = { ...request, metadata: { x: JSON.stringify(metadata) }, tools: [{ name: "t", description: "d", parameters: { meta: metadata } }] } as unknown as GenerateRequest
      const b = reordered({ ...a, idempotencyKey: "attempt-7" }) as GenerateRequest
      return requestKey(a) === requestKey(b)
    }), { seed: 20_261_207, numRuns: 300 })
    fc.assert(fc.property(value, value, (x, y) => {
      fc.pre(canonical(x) !== canonical(y))
      const keyOf = (v: unknown) => requestKey({ ...request, tools: [{ name: "t", description: "d", parameters: { v } }] } as unknown as GenerateRequest)
      return keyOf(x) !== keyOf(y)
    }), { seed: 20_261_207, numRuns: 300 })
    // Types never collide: "1" vs 1, [] vs {}, bytes vs their text.
    const keyOf = (v: unknown) => requestKey({ ...request, tools: [{ name: "t", description: "d", parameters: { v } }] } as unknown as GenerateRequest)
    expect(new Set([keyOf("1"), keyOf(1), keyOf([]), keyOf({}), keyOf(new Uint8Array([49])), keyOf(null)]).size).toBe(6)
    // A lone surrogate is not U+FFFD (text cut inside an emoji).
    expect(keyOf("a\uD83D")).not.toBe(keyOf("a\uFFFD"))
    expect(keyOf("\uDC00")).not.toBe(keyOf("\uD800"))

  })
})

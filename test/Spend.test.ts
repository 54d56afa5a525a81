/**
 * Cost ceilings in-process (MockProvider under a Policy, TestClock): price tables (exact, prefix,
 * longest prefix; in code and from a file; bad entries are typed errors naming them), budget options,
 * the reservation arithmetic (worst case held while in flight, replaced by reported usage, kept when a
 * sent attempt reported none, released when nothing was sent), refusals before sending (no call
 * reaches the provider, no breaker verdict, the limiter's permit refunded), nested budgets, unknown
 * models, and a property: parallel attempts never over-admit. Over real HTTP: test/e2e/spend.test.ts.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Ai from "../src/Ai.js"
import { CircuitBreakers } from "../src/CircuitBreaker.js"
import * as Coalesce from "../src/Coalesce.js"
import * as SummaryTable from "../src/cli/SummaryTable.js"
import * as DegradedMode from "../src/DegradedMode.js"
import { actionOf, BudgetExceeded, InvalidOptions } from "../src/Errors.js"
import * as Fallback from "../src/Fallback.js"
import { estimatePromptTokens } from "../src/internal/estimateTokens.js"
import { BUDGET_REFUSED_TYPE } from "../src/internal/unsent.js"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest } from "../src/Provider.js"
import * as Report from "../src/Report.js"
import * as Spend from "../src/Spend.js"
import * as Mock from "../src/testing/MockProvider.js"

const State = Policy.layerState
const request: GenerateRequest = { model: "m-1", messages: [{ role: "user", content: "x".repeat(40) }], maxTokens: 100 }
/** The worst case of `request`: its estimated prompt plus its whole `maxTokens`. */
const worst = estimatePromptTokens(request) + request.maxTokens
/** What the mock reports for a 4-character answer to `request`: 10 prompt tokens + 1 output token. */
const answered = { inputTokens: 10, outputTokens: 1, totalTokens: 11 }

const table = (entries: Readonly<Record<string, Spend.Price>>) => Effect.runSync(Spend.prices(entries))

const invalidOf = <A>(effect: Effect.Effect<A, InvalidOptions>): InvalidOptions => {
  const result = Effect.runSync(Effect.either(effect))
  if (Either.isRight(result)) throw new Error("expected InvalidOptions")
  return result.left
}

/** A policy-wrapped mock (no retries unless asked: each call is one attempt). */
const route = (mock: Mock.MockProvider, policy: Policy.PolicyOptions = { retry: false }) => Policy.apply(policy, mock, "r")

describe("price tables", () => {
  const prices = table({
    "gpt-4o": { inputPerMTok: 1, outputPerMTok: 2 },
    "gpt-4o*": { inputPerMTok: 3, outputPerMTok: 4 },
    "gpt-4o-mini*": { inputPerMTok: 5, outputPerMTok: 6 }
  })

  it("the exact id wins, then the longest matching prefix; an unknown model has no price", () => {
    expect(prices.priceOf("gpt-4o")).toEqual({ inputPerMTok: 1, outputPerMTok: 2 })
    expect(prices.priceOf("gpt-4o-2024-08-06")).toEqual({ inputPerMTok: 3, outputPerMTok: 4 })
    expect(prices.priceOf("gpt-4o-mini-2024-07-18")).toEqual({ inputPerMTok: 5, outputPerMTok: 6 })
    expect(prices.priceOf("gpt-4")).toBeUndefined()
    expect(prices.priceOf("claude-haiku-4-5")).toBeUndefined()
    expect(table({ "*": { inputPerMTok: 1, outputPerMTok: 1 } }).priceOf("anything")).toEqual({ inputPerMTok: 1, outputPerMTok: 1 })
  })

  it("prices usage per million tokens", () => {
    const usage = { inputTokens: 1_000, outputTokens: 500, totalTokens: 1_500 }
    expect(Spend.costOf(table({ m: { inputPerMTok: 2.5, outputPerMTok: 10 } }), "m", usage)).toBeCloseTo(0.0075, 12)
    expect(Spend.costOf(prices, "unknown", usage)).toBeUndefined()
  })

  const bad: ReadonlyArray<readonly [string, unknown, string, string]> = [
    ["a negative price", { m: { inputPerMTok: -1, outputPerMTok: 1 } }, "m.inputPerMTok", "Expected a non-negative number, actual -1"],
    ["an infinite price", { m: { inputPerMTok: 1, outputPerMTok: Number.POSITIVE_INFINITY } }, "m.outputPerMTok", "Infinity"],
    ["NaN", { m: { inputPerMTok: Number.NaN, outputPerMTok: 1 } }, "m.inputPerMTok", "NaN"],
    ["a missing price", { m: { inputPerMTok: 1 } }, "m.outputPerMTok", "is missing"],
    ["an unknown field", { m: { inputPerMTok: 1, outputPerMTok: 1, cachedPerMTok: 1 } }, "m.cachedPerMTok", "is unexpected"],
    ["a * inside a pattern", { "gpt-*-mini": { inputPerMTok: 1, outputPerMTok: 1 } }, `["gpt-*-mini"]`, `a prefix ending in a single "*"`],
    ["no model at all", {}, "(root)", "must price at least one model"]
  ]
  for (const [what, entries, option, message] of bad) {
    it(`refuses ${what} with InvalidOptions naming the entry`, () => {
      const error = invalidOf(Spend.prices(entries as Readonly<Record<string, Spend.Price>>))
      expect(error).toMatchObject({ _tag: "InvalidOptions", component: "Spend.prices", option })
      expect(error.message).toContain(message)
    })
  }

  describe("from a JSON file", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llmr-prices-"))
    const write = (name: string, text: string) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, text)
      return file
    }
    const load = (file: string) => Effect.runPromise(Effect.either(Spend.pricesFromFile(file).pipe(Effect.provide(NodeFileSystem.layer))))

    it("loads a dated table", async () => {
      const file = write("good.json", JSON.stringify({
        asOf: "2026-01-01",
        source: "example figures, not a provider's",
        models: { "gpt-4o-mini*": { inputPerMTok: 0.15, outputPerMTok: 0.6 }, "claude-haiku-4-5": { inputPerMTok: 1, outputPerMTok: 5 } }
      }))
      const loaded = await load(file)
      expect(Either.isRight(loaded) && loaded.right.priceOf("gpt-4o-mini-2024-07-18")).toEqual({ inputPerMTok: 0.15, outputPerMTok: 0.6 })
      expect(Either.isRight(loaded) && loaded.right.priceOf("claude-haiku-4-5")).toEqual({ inputPerMTok: 1, outputPerMTok: 5 })
    })

    it("a negative price fails naming the file and the entry", async () => {
      const file = write("negative.json", JSON.stringify({ models: { "gpt-4o*": { inputPerMTok: -2.5, outputPerMTok: 10 } } }))
      const loaded = await load(file)
      expect(Either.isLeft(loaded) && loaded.left).toMatchObject({
        _tag: "InvalidOptions",
        component: "Spend.pricesFromFile",
        option: `models["gpt-4o*"].inputPerMTok`
      })
      expect(Either.isLeft(loaded) && loaded.left.message).toBe(`${file}: models["gpt-4o*"].inputPerMTok: Expected a non-negative number, actual -2.5`)
    })

    it("malformed JSON, a missing `models` and an unreadable file are typed errors naming the file", async () => {
      const malformed = await load(write("malformed.json", `{"models": {"m": {"inputPerMTok": 1,}}}`))
      expect(Either.isLeft(malformed) && malformed.left.message).toMatch(/malformed\.json: not valid JSON/)
      const noModels = await load(write("flat.json", JSON.stringify({ m: { inputPerMTok: 1, outputPerMTok: 1 } })))
      expect(Either.isLeft(noModels) && noModels.left.message).toMatch(/flat\.json: .*models: is missing/)
      const missing = await load(path.join(dir, "absent.json"))
      expect(Either.isLeft(missing) && missing.left.message).toMatch(/absent\.json: cannot read the file/)
    })
  })
})

describe("budget options are checked where the budget is built", () => {
  const prices = table({ m: { inputPerMTok: 1, outputPerMTok: 1 } })
  const cases: ReadonlyArray<readonly [Spend.BudgetOptions, string, string]> = [
    [{ maxCostUsd: 0, prices }, "maxCostUsd", "maxCostUsd must be a positive finite number of USD, got 0"],
    [{ maxCostUsd: -1, prices }, "maxCostUsd", "got -1"],
    [{ maxCostUsd: Number.POSITIVE_INFINITY, prices }, "maxCostUsd", "got Infinity"],
    [{ maxTokens: 0 }, "maxTokens", "maxTokens must be an integer ≥ 1, got 0"],
    [{ maxTokens: 1.5 }, "maxTokens", "got 1.5"],
    [{ maxCostUsd: 1 }, "prices", "a maxCostUsd limit needs prices"],
    [{ unknownModel: "refuse" }, "prices", `unknownModel "refuse" without prices would refuse every attempt`],
    [{ unknownModel: "free" as never, prices }, "unknownModel", `unknownModel must be "refuse" or "count-tokens-only", got "free"`],
    [{ prices: { priceOf: () => undefined } as never }, "prices", "prices must be a table made by Spend.prices"],
    [{ name: " " }, "name", "name must be a non-empty label"]
  ]
  for (const [options, option, message] of cases) {
    it(`${option}: ${message}`, () => {
      const error = invalidOf(Spend.budget(options))
      expect(error).toMatchObject({ _tag: "InvalidOptions", component: "Spend.budget", option })
      expect(error.message).toContain(message)
    })
  }

  it("a budget without a limit is a meter; the defaults are named", () => {
    const meter = Effect.runSync(Spend.budget({}))
    expect(meter).toMatchObject({ name: "budget", maxCostUsd: undefined, maxTokens: undefined, unknownModel: "count-tokens-only" })
    expect(Effect.runSync(Spend.budget({ maxCostUsd: 1, prices })).unknownModel).toBe("refuse")
  })
})

describe("reservation and settlement", () => {
  it.effect("the worst case is held while the attempt is in flight, then replaced by the reported usage", () =>
    Effect.gen(function*() {
      const prices = table({ "m-*": { inputPerMTok: 2, outputPerMTok: 4 } })
      const budget = yield* Spend.budget({ maxTokens: 10_000, maxCostUsd: 1, prices })
      const llm = yield* route(Mock.make({ script: [Mock.succeed("four", { delay: "1 second" })] }))
      const fiber = yield* Effect.fork(Spend.within(budget)(llm.generate(request)))
      yield* TestClock.adjust("500 millis")
      const held = yield* Spend.snapshot(budget)
      expect(held).toMatchObject({ inFlight: 1, reservedTokens: worst, tokens: 0, costUsd: 0, calls: 0 })
      expect(held.reservedCostUsd).toBeCloseTo(((worst - 100) * 2 + 100 * 4) / 1e6, 15)
      yield* TestClock.adjust("500 millis")
      yield* Fiber.join(fiber)
      const settled = yield* Spend.snapshot(budget)
      expect(settled).toMatchObject({ inFlight: 0, reservedTokens: 0, reservedCostUsd: 0, tokens: 11, calls: 1, unreported: 0, refused: 0 })
      expect(settled.costUsd).toBeCloseTo((10 * 2 + 1 * 4) / 1e6, 15)
      expect(settled.routes).toEqual({ r: { calls: 1, tokens: 11, costUsd: settled.costUsd } })
    }).pipe(Effect.provide(State)))

  it.effect("retries are attempts: each is reserved and charged (a failure after sending keeps its worst case)", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({})
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.serverError()), Mock.fail(Mock.errors.serverError())] })
      const llm = yield* route(mock, { retry: { maxAttempts: 3, jitter: "none", base: "100 millis" } })
      const fiber = yield* Effect.fork(Spend.within(budget)(llm.generate(request)))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(mock.calls).toHaveLength(3)
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 3, unreported: 2, tokens: 2 * worst + answered.totalTokens, reservedTokens: 0 })
    }).pipe(Effect.provide(State)))

  it.effect("a failure that is surely not billed releases the reservation; one that may be keeps its worst case, as an interrupted attempt does", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({})
      // Never sent (connection refused), or refused by the provider at admission (429, 400, 529).
      const unbilled = [Mock.errors.connection("refused"), Mock.errors.rateLimited(), Mock.errors.badRequest(), Mock.errors.overloaded()]
      for (const error of unbilled) {
        yield* Effect.either(Spend.within(budget)((yield* route(Mock.make({ script: [Mock.fail(error)] }))).generate(request)))
      }
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 0, tokens: 0, reservedTokens: 0, inFlight: 0 })
      const reset = yield* route(Mock.make({ script: [Mock.fail(Mock.errors.connection("reset"))] }))
      yield* Effect.either(Spend.within(budget)(reset.generate(request)))
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 1, tokens: worst, unreported: 1 })
      const hung = yield* route(Mock.make({ otherwise: Mock.hang }))
      const fiber = yield* Effect.fork(Spend.within(budget)(hung.generate(request)))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 2, tokens: 2 * worst, unreported: 2, inFlight: 0, reservedTokens: 0 })
    }).pipe(Effect.provide(State)))

  it.effect("a stream is settled with its Usage at its Finish", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({})
      const llm = yield* route(Mock.make({ script: [Mock.stream(["fo", "ur"])] }))
      yield* Stream.runDrain(Spend.withinStream(budget)(llm.stream(request)))
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 1, tokens: answered.totalTokens, reservedTokens: 0, unreported: 0 })
      // Cut before its terminator: sent, nothing reported — the worst case stays spent.
      const cut = yield* route(Mock.make({ script: [Mock.stream(["fo"], { cut: true })] }))
      yield* Effect.either(Stream.runDrain(Spend.withinStream(budget)(cut.stream(request))))
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 2, tokens: answered.totalTokens + worst, unreported: 1 })
    }).pipe(Effect.provide(State)))
})

describe("refusal before sending", () => {
  it.effect("the attempt that does not fit is refused with BudgetExceeded and never reaches the provider; no retry, no breaker verdict", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ name: "run", maxTokens: worst * 2 + 5 })
      const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
      // This breaker counts every failure and opens at the third; a retry would follow a retryable failure.
      const llm = yield* route(mock, {
        retry: { maxAttempts: 5, jitter: "none", base: "100 millis" },
        breaker: { consecutiveFailures: 3, isFailure: () => true }
      })
      const fiber = yield* Effect.fork(Effect.flip(Spend.within(budget)(llm.generate(request))))
      yield* TestClock.adjust("10 seconds")
      const error = yield* Fiber.join(fiber)
      expect(mock.calls).toHaveLength(2)
      expect(error).toBeInstanceOf(BudgetExceeded)
      expect(error).toMatchObject({
        _tag: "BudgetExceeded",
        budget: "run",
        limit: "tokens",
        reason: "over-limit",
        max: worst * 2 + 5,
        spent: worst * 2,
        reserved: 0,
        requested: worst,
        route: "r",
        model: "m-1",
        attempt: 3
      })
      expect(error.message).toContain(`spend budget "run" cannot fit this attempt`)
      // Two ServerErrors counted; the refusal, which sent nothing, gave no verdict (a third failure would open it).
      const breaker = Option.getOrThrow(yield* (yield* CircuitBreakers).lookup("r/m-1"))
      expect(yield* breaker.state).toBe("closed")
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 2, refused: 1, reservedTokens: 0 })
    }).pipe(Effect.provide(State)))

  it.effect("a refused attempt gives its rate-limit permit back", () =>
    Effect.gen(function*() {
      const tight = yield* Spend.budget({ maxTokens: worst - 1 })
      const mock = Mock.make({})
      const llm = yield* route(mock, { retry: false, rateLimit: { requestsPerMinute: 1, maxWait: "1 millis" } })
      expect((yield* Effect.flip(Spend.within(tight)(llm.generate(request))))._tag).toBe("BudgetExceeded")
      // The minute's one request is still there for a call the budget admits.
      expect((yield* llm.generate(request)).text).toBe("ok")
      expect(mock.calls).toHaveLength(1)
    }).pipe(Effect.provide(State)))

  it.effect("nested budgets all apply: the inner one refuses, and the outer one is not charged for it", () =>
    Effect.gen(function*() {
      const outer = yield* Spend.budget({ name: "client", maxTokens: 100_000 })
      const inner = yield* Spend.budget({ name: "run", maxTokens: worst + 1 })
      const mock = Mock.make({})
      const llm = yield* route(mock)
      const both = <A, E, R>(effect: Effect.Effect<A, E, R>) => Spend.within(outer)(Spend.within(inner)(effect))
      yield* both(llm.generate(request))
      const refused = yield* Effect.flip(both(llm.generate(request)))
      expect(refused).toMatchObject({ _tag: "BudgetExceeded", budget: "run" })
      expect(mock.calls).toHaveLength(1)
      expect(yield* Spend.snapshot(outer)).toMatchObject({ calls: 1, tokens: answered.totalTokens, refused: 0, reservedTokens: 0 })
      expect(yield* Spend.snapshot(inner)).toMatchObject({ calls: 1, tokens: answered.totalTokens, refused: 1 })
      // The same budget applied twice counts once.
      yield* Spend.within(outer)(Spend.within(outer)(llm.generate(request)))
      expect((yield* Spend.snapshot(outer)).calls).toBe(2)
    }).pipe(Effect.provide(State)))

  it.effect("Spend.layer puts a budget over everything it is provided to", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ maxTokens: worst })
      const mock = Mock.make({})
      const llm = yield* route(mock)
      const program = Effect.zip(llm.generate(request), Effect.flip(llm.generate(request)))
      const [first, second] = yield* program.pipe(Effect.provide(Spend.layer(budget)))
      expect(first.text).toBe("ok")
      expect(second._tag).toBe("BudgetExceeded")
      expect(mock.calls).toHaveLength(1)
    }).pipe(Effect.provide(State)))
})

describe("coalesced calls", () => {
  it.scoped("identical calls in flight under the same budgets share one provider call, paid once", () =>
    Effect.gen(function*() {
      const run = yield* Spend.budget({ name: "run" })
      const mock = Mock.make({ otherwise: Mock.succeed("four", { delay: "1 second" }) })
      const llm = Coalesce.provider(yield* Coalesce.make, yield* route(mock))
      const a = yield* Effect.fork(Spend.within(run)(llm.generate(request)))
      yield* TestClock.adjust("10 millis")
      const b = yield* Effect.fork(Spend.within(run)(llm.generate(request)))
      yield* TestClock.adjust("1 second")
      expect([(yield* Fiber.join(a)).text, (yield* Fiber.join(b)).text]).toEqual(["four", "four"])
      expect(mock.calls).toHaveLength(1)
      expect(yield* Spend.snapshot(run)).toMatchObject({ calls: 1, tokens: answered.totalTokens })
    }).pipe(Effect.provide(State)))

  it.scoped("callers under different budgets never share a call: each tenant pays its own", () =>
    Effect.gen(function*() {
      const first = yield* Spend.budget({ name: "first" })
      const second = yield* Spend.budget({ name: "second" })
      const mock = Mock.make({ otherwise: Mock.succeed("four", { delay: "1 second" }) })
      const llm = Coalesce.provider(yield* Coalesce.make, yield* route(mock))
      const a = yield* Effect.fork(Spend.within(first)(llm.generate(request)))
      yield* TestClock.adjust("10 millis")
      const b = yield* Effect.fork(Spend.within(second)(llm.generate(request)))
      // Without a budget: a third set (the empty one).
      const c = yield* Effect.fork(llm.generate(request))
      yield* TestClock.adjust("1 second")
      expect([(yield* Fiber.join(a)).text, (yield* Fiber.join(b)).text, (yield* Fiber.join(c)).text]).toEqual(["four", "four", "four"])
      expect(mock.calls).toHaveLength(3)
      expect(yield* Spend.snapshot(first)).toMatchObject({ calls: 1, tokens: answered.totalTokens })
      expect(yield* Spend.snapshot(second)).toMatchObject({ calls: 1, tokens: answered.totalTokens })
    }).pipe(Effect.provide(State)))

  it.scoped("one tenant's refusal is never shared with a tenant on another budget", () =>
    Effect.gen(function*() {
      const estimateTokens = () => 40
      // Room for one worst case (40 + 100): the first attempt's 500 keeps it spent, its retry is refused.
      const tenantA = yield* Spend.budget({ name: "tenant-A", maxTokens: 150, estimateTokens })
      const tenantB = yield* Spend.budget({ name: "tenant-B", estimateTokens })
      const mock = Mock.make({ script: [Mock.fail(Mock.errors.serverError())] })
      const llm = Coalesce.provider(yield* Coalesce.make, yield* route(mock, { retry: { maxAttempts: 3, jitter: "none", base: "100 millis" } }))
      const a = yield* Effect.fork(Effect.either(Spend.within(tenantA)(llm.generate(request))))
      yield* TestClock.adjust("50 millis")
      const b = yield* Effect.fork(Effect.either(Spend.within(tenantB)(llm.generate(request))))
      yield* TestClock.adjust("1 second")
      const [ra, rb] = [yield* Fiber.join(a), yield* Fiber.join(b)]
      expect(Either.isLeft(ra) && ra.left).toMatchObject({ _tag: "BudgetExceeded", budget: "tenant-A" })
      expect(Either.isRight(rb) && rb.right.text).toBe("ok")
      expect(yield* Spend.snapshot(tenantB)).toMatchObject({ calls: 1, refused: 0 })
      expect(yield* Spend.snapshot(tenantA)).toMatchObject({ calls: 1, refused: 1, unreported: 1 })
    }).pipe(Effect.provide(State)))
})

describe("unknown models", () => {
  const prices = table({ "priced-*": { inputPerMTok: 1, outputPerMTok: 1 } })

  it.effect("with a cost limit, an unpriced model is refused (not passed as free)", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ maxCostUsd: 1, prices })
      const mock = Mock.make({})
      const error = yield* Effect.flip(Spend.within(budget)((yield* route(mock)).generate(request)))
      expect(error).toMatchObject({ _tag: "BudgetExceeded", limit: "cost", reason: "unpriced-model", max: 1 })
      expect(error.message).toContain("has no price for model m-1")
      expect(mock.calls).toHaveLength(0)
    }).pipe(Effect.provide(State)))

  it.effect("in a chain, an unpriced model's refusal moves on to the next route (priced); an over-limit one stops", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ name: "run", maxCostUsd: 1, prices })
      const unpriced = Mock.make({})
      const priced = Mock.make({})
      const chain = yield* Fallback.make({
        routes: [
          { name: "unpriced", provider: unpriced, model: "m-1", policy: { retry: false } },
          { name: "priced", provider: priced, model: "priced-1", policy: { retry: false } }
        ],
        spend: budget
      })
      const result = yield* chain.generate({ messages: request.messages, maxTokens: 100 })
      expect(result.route).toBe("priced")
      expect(result.attempts.map((a) => [a.route, a.outcome])).toEqual([["unpriced", "BudgetExceeded"], ["priced", "success"]])
      expect([unpriced.calls.length, priced.calls.length]).toEqual([0, 1])
      // Streamed too.
      const events = yield* Stream.runCollect(chain.stream({ messages: request.messages, maxTokens: 100 }))
      expect([...events].some((event) => event._tag === "Completed")).toBe(true)
      expect([unpriced.calls.length, priced.calls.length]).toEqual([0, 2])

      const spent = yield* Spend.budget({ name: "spent", maxTokens: 10, prices, unknownModel: "count-tokens-only" })
      const other = Mock.make({})
      const stopping = yield* Fallback.make({
        routes: [
          { name: "a", provider: Mock.make({}), model: "priced-1", policy: { retry: false } },
          { name: "b", provider: other, model: "priced-2", policy: { retry: false } }
        ],
        spend: spent
      })
      const failure = yield* Effect.flip(stopping.generate({ messages: request.messages, maxTokens: 100 }))
      expect(failure).toMatchObject({ reason: "budget", lastError: { _tag: "BudgetExceeded", reason: "over-limit" } })
      expect(other.calls).toHaveLength(0)
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))

  it.effect("when every route is unpriced, the call ends with AllRoutesFailed{budget}; actionOf says reroute / stop by reason", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ name: "run", maxCostUsd: 1, prices })
      const mock = Mock.make({})
      const chain = yield* Fallback.make({
        routes: [
          { name: "x", provider: mock, model: "m-1", policy: { retry: false } },
          { name: "y", provider: mock, model: "m-2", policy: { retry: false } }
        ],
        spend: budget,
        passes: 2
      })
      const failure = yield* Effect.flip(chain.generate({ messages: request.messages, maxTokens: 100 }))
      expect(failure).toMatchObject({ reason: "budget", lastError: { _tag: "BudgetExceeded", reason: "unpriced-model", route: "y" } })
      expect(mock.calls).toHaveLength(0)
      const site = { provider: "p", model: "m", route: "r", attempt: 1, budget: "b", limit: "cost", spent: 0, reserved: 0, message: "no" } as const
      expect(actionOf(new BudgetExceeded({ ...site, reason: "unpriced-model" }))).toBe("reroute")
      expect(actionOf(new BudgetExceeded({ ...site, reason: "over-limit", max: 1, requested: 2 }))).toBe("stop")
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))

  it.effect("count-tokens-only admits it, counts its tokens (also against maxTokens) and says it was unpriced", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ maxCostUsd: 1, maxTokens: 1_000, prices, unknownModel: "count-tokens-only" })
      yield* Spend.within(budget)((yield* route(Mock.make({}))).generate(request))
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 1, unpriced: 1, tokens: answered.totalTokens, costUsd: 0 })
    }).pipe(Effect.provide(State)))
})

describe("parallel attempts never over-admit", () => {
  /** `n` attempts start at once under a budget with room for `k` (and a bit); all hang. */
  const run = (n: number, k: number, slack: number) =>
    Effect.runPromise(Effect.gen(function*() {
      const budget = yield* Spend.budget({ maxTokens: k * worst + slack })
      const mock = Mock.make({ otherwise: Mock.hang })
      const llm = yield* route(mock)
      const fibers = yield* Effect.forEach(Array.from({ length: n }), () => Effect.fork(Spend.within(budget)(llm.generate(request))))
      yield* TestClock.adjust("1 second")
      const refused = (yield* Effect.forEach(fibers, Fiber.poll)).filter((exit) => exit._tag === "Some" && Exit.isFailure(exit.value)).length
      const held = yield* Spend.snapshot(budget)
      yield* Effect.forEach(fibers, Fiber.interrupt)
      return { refused, calls: mock.calls.length, held, after: yield* Spend.snapshot(budget) }
    }).pipe(Effect.provide(Layer.merge(State, TestContext.TestContext))))

  it("the admitted are exactly the ones that fit; the rest are refused before sending", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: worst - 1 }), async (n, k, slack) => {
        const { after, calls, held, refused } = await run(n, k, slack)
        const admitted = Math.min(n, k)
        expect(calls).toBe(admitted)
        expect(refused).toBe(n - admitted)
        expect(held.reservedTokens).toBe(admitted * worst)
        expect(held.reservedTokens).toBeLessThanOrEqual(k * worst + slack)
        // Interrupted after sending: each keeps its worst case.
        expect(after).toMatchObject({ inFlight: 0, reservedTokens: 0, tokens: admitted * worst, calls: admitted, refused: n - admitted })
      }),
      { numRuns: 60, seed: 20261207 }
    )
  })
})

describe("a stream's budget covers the stream's own sends, not its consumer's", () => {
  it.effect("Spend.withinStream: a downstream mapEffect's calls are not charged; the stream's own attempt is", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ name: "stream-only" })
      const streamer = yield* Policy.apply({ retry: false }, Mock.make({ otherwise: Mock.stream(["a", "b", "c"]) }), "streamer")
      const other = yield* Policy.apply({ retry: false }, Mock.make({}), "other")
      const outside = yield* Spend.budget({ name: "outside" })
      yield* Spend.withinStream(budget)(streamer.stream(request)).pipe(
        Stream.filter((event) => event._tag === "TextDelta"),
        Stream.mapEffect(() => other.generate(request)),
        Stream.runDrain,
        Spend.within(outside)
      )
      const spent = yield* Spend.snapshot(budget)
      expect(Object.keys(spent.routes)).toEqual(["streamer"])
      expect(spent).toMatchObject({ calls: 1, reservedTokens: 0, inFlight: 0 })
      // The enclosing budget still sees everything, the stream's attempt and the three downstream calls.
      expect(yield* Spend.snapshot(outside)).toMatchObject({ calls: 4, routes: { streamer: { calls: 1 }, other: { calls: 3 } } })
    }).pipe(Effect.provide(State)))

  it.effect("a chain's own spend on stream and streamObject: its attempts (a fallback opened mid-stream included), not the consumer's calls", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ name: "client" })
      const primary = Mock.make({ otherwise: Mock.fail(Mock.errors.rateLimited()) })
      const secondary = Mock.make({ otherwise: Mock.stream(['{"a":', "1}"]) })
      const chain = yield* Fallback.make({
        routes: [
          { name: "p", provider: primary, model: "m-1", policy: { retry: false } },
          { name: "q", provider: secondary, model: "m-2", policy: { retry: false } }
        ],
        spend: budget
      })
      const other = yield* Policy.apply({ retry: false }, Mock.make({}), "other")
      const downstream = <A, E>(stream: Stream.Stream<A, E>) =>
        stream.pipe(Stream.mapEffect(() => other.generate(request)), Stream.runDrain)
      yield* downstream(chain.stream({ messages: request.messages, maxTokens: 100 }))
      yield* downstream(chain.streamObject(Schema.Struct({ a: Schema.Number }), { messages: request.messages, maxTokens: 100 }))
      const spent = yield* Spend.snapshot(budget)
      expect(Object.keys(spent.routes)).toEqual(["q"])
      // p's 429s were released (not billed); q answered twice.
      expect(spent).toMatchObject({ calls: 2, routes: { q: { calls: 2 } }, reservedTokens: 0, inFlight: 0 })
      expect([primary.calls.length, secondary.calls.length]).toEqual([2, 2])
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))
})

describe("a chain nested as a route through the @effect/ai bridge", () => {
  /** An outer policy over a provider made from a one-route chain's LanguageModel. */
  const nested = (mock: Mock.MockProvider, policy: Policy.PolicyOptions = { retry: false }) =>
    Effect.gen(function*() {
      const inner = yield* Fallback.make({ routes: [{ name: "inner", provider: mock, model: "m-1", policy: { retry: false } }] })
      return yield* Policy.apply(policy, Ai.providerFrom(yield* Ai.fromChain(inner, { maxTokens: 100 })), "outer")
    })

  it.effect("is charged once, by the inner chain's attempts (generate and stream)", () =>
    Effect.gen(function*() {
      const meter = yield* Spend.budget({ name: "meter" })
      const mock = Mock.make({ script: [Mock.succeed("four"), Mock.stream(["fo", "ur"])] })
      const outer = yield* nested(mock)
      yield* Spend.within(meter)(outer.generate(request))
      yield* Spend.withinStream(meter)(outer.stream(request)).pipe(Stream.runDrain)
      expect(mock.calls).toHaveLength(2)
      expect(yield* Spend.snapshot(meter)).toMatchObject({ calls: 2, routes: { inner: { calls: 2 } }, reservedTokens: 0, inFlight: 0 })
      expect(Object.keys((yield* Spend.snapshot(meter)).routes)).toEqual(["inner"])
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))

  it.effect("an inner refusal stays unsent: not charged, the outer limiter's permit refunded, no outer breaker verdict", () =>
    Effect.gen(function*() {
      const tight = yield* Spend.budget({ name: "tight", maxTokens: 50, estimateTokens: () => 40 })
      const mock = Mock.make({})
      const outer = yield* nested(mock, {
        retry: false,
        rateLimit: { requestsPerMinute: 1, maxWait: "1 millis" },
        breaker: { consecutiveFailures: 1, isFailure: () => true }
      })
      const refused = yield* Effect.flip(Spend.within(tight)(outer.generate(request)))
      expect(refused).toMatchObject({ _tag: "QuotaExhausted", providerType: BUDGET_REFUSED_TYPE, route: "outer" })
      expect(refused.status).toBeUndefined()
      expect(mock.calls).toHaveLength(0)
      expect(yield* Spend.snapshot(tight)).toMatchObject({ calls: 0, tokens: 0, refused: 1, unreported: 0, reservedTokens: 0, inFlight: 0 })
      // The breaker (which counts every failure, and opens at the first) gave no verdict, and the
      // minute's one request is still there for a call that fits.
      expect(yield* (Option.getOrThrow(yield* (yield* CircuitBreakers).lookup("outer/m-1"))).state).toBe("closed")
      expect((yield* outer.generate(request)).text).toBe("ok")
      expect(mock.calls).toHaveLength(1)
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))

  it.scoped("wrapped where the bridge cannot be recognised (Coalesce), the inner refusal still releases the outer reservation", () =>
    Effect.gen(function*() {
      const inner = yield* Fallback.make({ routes: [{ name: "inner", provider: Mock.make({}), model: "m-1", policy: { retry: false } }] })
      const bridged = Coalesce.provider(yield* Coalesce.make, Ai.providerFrom(yield* Ai.fromChain(inner, { maxTokens: 100 })))
      const outer = yield* Policy.apply({ retry: false }, bridged, "outer")
      // The outer reservation (140) fits; the inner one, on top of it, does not.
      const budget = yield* Spend.budget({ name: "b", maxTokens: 150, estimateTokens: () => 40 })
      const refused = yield* Effect.flip(Spend.within(budget)(outer.generate(request)))
      expect(refused).toMatchObject({ _tag: "QuotaExhausted", providerType: BUDGET_REFUSED_TYPE })
      expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 0, tokens: 0, unreported: 0, refused: 1, reservedTokens: 0 })
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))
})

describe("estimateTokens is checked on every reservation", () => {
  for (const [what, estimate] of [["NaN", Number.NaN], ["undefined", undefined], ["a negative count", -5], ["Infinity", Infinity]] as const) {
    it.effect(`${what}: the attempt dies naming the option, nothing is sent or reserved`, () =>
      Effect.gen(function*() {
        const budget = yield* Spend.budget({ name: "b", maxTokens: 50, estimateTokens: (() => estimate) as unknown as () => number })
        const mock = Mock.make({ otherwise: Mock.stream(["a"]) })
        const llm = yield* route(mock)
        const exits: ReadonlyArray<Exit.Exit<unknown, unknown>> = [
          yield* Effect.exit(Spend.within(budget)(llm.generate(request))),
          yield* Effect.exit(Stream.runDrain(Spend.withinStream(budget)(llm.stream(request))))
        ]
        for (const exit of exits) {
          expect(Exit.isFailure(exit)).toBe(true)
          const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
          expect(defect).toBeInstanceOf(InvalidOptions)
          expect(defect).toMatchObject({ component: "Spend.budget", option: "estimateTokens" })
          expect((defect as InvalidOptions).message).toContain(`estimateTokens returned ${String(estimate)}`)
        }
        expect(mock.calls).toHaveLength(0)
        expect(yield* Spend.snapshot(budget)).toMatchObject({ calls: 0, tokens: 0, reservedTokens: 0, inFlight: 0 })
      }).pipe(Effect.provide(State)))
  }

  it.effect("a fractional or zero estimate is fine", () =>
    Effect.gen(function*() {
      const budget = yield* Spend.budget({ maxTokens: 1_000, estimateTokens: () => 0.5 })
      yield* Spend.within(budget)((yield* route(Mock.make({}))).generate(request))
      expect((yield* Spend.snapshot(budget)).calls).toBe(1)
    }).pipe(Effect.provide(State)))
})

describe("llm_cost_usd_total", () => {
  /** The value of a counter in the global registry with exactly these tags (0 when absent). */
  const counter = (name: string, tags: Record<string, string>) =>
    Effect.map(Metric.snapshot, (pairs) => {
      for (const pair of pairs) {
        if (pair.metricKey.name !== name) continue
        const labels = new Map(pair.metricKey.tags.map((label) => [label.key, label.value]))
        if (labels.size !== Object.keys(tags).length || !Object.entries(tags).every(([k, v]) => labels.get(k) === v)) continue
        return (pair.metricState as unknown as { readonly count: number }).count
      }
      return 0
    })

  it.effect("carries the fiber's metric labels, like the route's other counters", () =>
    Effect.gen(function*() {
      const prices = table({ "m-*": { inputPerMTok: 1_000, outputPerMTok: 1_000 } })
      const budget = yield* Spend.budget({ prices })
      const llm = yield* Policy.apply({ retry: false }, Mock.make({}), "cost-labels")
      yield* Spend.within(budget)(llm.generate(request)).pipe(Effect.tagMetrics("tenant", "acme"))
      const cost = (yield* Spend.snapshot(budget)).costUsd
      expect(cost).toBeGreaterThan(0)
      expect(yield* counter("llm_cost_usd_total", { route: "cost-labels", tenant: "acme" })).toBeCloseTo(cost, 12)
      expect(yield* counter("llm_attempts_total", { route: "cost-labels", outcome: "success", tenant: "acme" })).toBe(1)
    }).pipe(Effect.provide(State)))
})

describe("cost in results, the run record, the terminal summary and the HTML report", () => {
  it.effect("a chain with prices: per attempt, per call, in total", () =>
    Effect.gen(function*() {
      const prices = table({ "m-*": { inputPerMTok: 3, outputPerMTok: 15 } })
      const recorder = yield* Report.makeRecorder({ title: "spend", routes: [{ name: "primary", provider: "mock", model: "m-1" }] })
      const chain = yield* Fallback.make({
        routes: recorder.instrument([
          // An empty answer is rejected, and still costs its usage.
          { name: "primary", provider: Mock.make({ script: [Mock.succeed("")] }), model: "m-1" },
          { name: "secondary", provider: Mock.make({}), model: "m-2" }
        ]),
        prices
      })
      const result = yield* recorder.call("first", chain.generate({ messages: request.messages, maxTokens: 100 }))
      const perAttempt = result.attempts.map((a) => a.costUsd)
      // The rejected empty answer (10 prompt tokens) and the accepted one (10 + 1).
      expect(perAttempt[0]).toBeCloseTo((10 * 3) / 1e6, 15)
      expect(perAttempt[1]).toBeCloseTo((10 * 3 + 15) / 1e6, 15)
      expect(result.costUsd).toBeCloseTo((20 * 3 + 15) / 1e6, 15)

      const summary = Report.summarize(yield* recorder.record)
      expect(summary.costUsd).toBeCloseTo(result.costUsd!, 15)
      expect(summary.unpricedCalls).toBe(0)
      expect(SummaryTable.render(summary)).toContain(`cost              $${Spend.formatUsd(result.costUsd!)}\n`)
      const page = Report.html(yield* recorder.record)
      expect(page).toContain(`<tr data-metric="costUsd"><th>Cost, USD</th><td>${Spend.formatUsd(result.costUsd!)}</td></tr>`)
      expect(page).toContain(`<table id="calls">`)
      expect(page).toContain(`<td data-col="cost">${Spend.formatUsd(result.costUsd!)}</td>`)
    }).pipe(Effect.provide(Layer.merge(State, DegradedMode.layer))))

  it("without prices nothing shows a cost (no $0 that nobody configured)", () => {
    const summary = Report.summarize({ title: "t", startedAt: 0, durationMs: 1, routes: [], calls: [], attempts: [], breakers: [], steps: [], notes: [] })
    expect(summary.costUsd).toBeUndefined()
    expect(SummaryTable.render(summary)).not.toContain("cost")
    expect(Report.html({ title: "t", startedAt: 0, durationMs: 1, routes: [], calls: [], attempts: [], breakers: [], steps: [], notes: [] })).not.toContain("Cost")
  })
})

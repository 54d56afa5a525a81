/**
 * Spend budgets over real HTTP: the real adapters (OpenAI Chat Completions and Anthropic Messages
 * wire formats) on the undici transport, against the ChaosServer, which counts every request it
 * receives — so "refused before it was sent" is a statement about the server's log, not about our own
 * bookkeeping. Time is TestClock (the server's latencies and the policies' backoffs and hedge delays
 * all follow it); sockets are real.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { CircuitBreakers } from "../../src/CircuitBreaker.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as Policy from "../../src/Policy.js"
import type { GenerateRequest } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as Spend from "../../src/Spend.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { awaitSleepUntil, routesFailed, settle, tick } from "../testing/helpers.js"

const Env = Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)

const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number.pipe(Schema.positive()) })
const paris = { city: "Paris", population: 2_100_000 }
const request: Fallback.ChainRequest = { messages: [{ role: "user", content: "Largest city in France, as JSON." }], maxTokens: 200 }

/** Example prices for the test's made-up models (USD per million tokens). */
const prices = Spend.prices({ "primary-*": { inputPerMTok: 1, outputPerMTok: 2 }, "secondary-*": { inputPerMTok: 1, outputPerMTok: 2 } })
/**
 * Every reservation is 100 prompt tokens (a fixed estimate keeps the arithmetic exact) + 200 output:
 * (100 × 1 + 200 × 2) / 1e6 = $0.0005 per attempt.
 */
const WORST_USD = 0.0005

/**
 * Waits for a forked call while moving the TestClock only to short waits (a retry's backoff, a hedge's
 * delay, a server latency under a second): never to a timeout's far bound, and only when nothing else
 * can happen (the sockets get real event-loop turns in between).
 */
const drive = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      const exit = fiber.unsafePoll()
      if (exit !== null) return yield* exit
      const now = yield* TestClock.currentTimeMillis
      const next = Chunk.toReadonlyArray(yield* TestClock.sleeps()).filter((at) => at <= now + 1_000).sort((a, b) => a - b)[0]
      // A sleep is due soon: let in-flight I/O land first (a few turns), then move the clock to it.
      if (next !== undefined && i % 20 === 19) yield* TestClock.setTime(next)
      yield* tick
    }
    return yield* Effect.dieMessage("the call did not finish")
  })

const chaosRoute = (name: string, api: "openai" | "anthropic", script: ReadonlyArray<Scenario.Fault>): Scenario.Route => ({
  name,
  api,
  model: `${name}-model`,
  content: { kind: "json", value: paris },
  script
})

describe("a spend budget over real HTTP (ChaosServer)", () => {
  it.scoped("refuses before the call across a chain with retries, a fallback and a repair: the server never sees it; BudgetExceeded; the breaker gives it no verdict", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({
        scenario: {
          routes: [
            chaosRoute("primary", "openai", [{ kind: "http_error", status: 500 }, { kind: "http_error", status: 500 }]),
            chaosRoute("secondary", "anthropic", [{ kind: "schema_violation", value: { city: "Paris", population: "lots" } }, {
              kind: "http_error",
              status: 500
            }])
          ]
        }
      })
      const retry = { maxAttempts: 2, jitter: "none", base: "100 millis" } as const
      // The secondary's breaker counts every failure and opens at the third: a refusal counted as one would open it.
      const secondaryBreaker = { consecutiveFailures: 3, isFailure: () => true }
      const budget = yield* Spend.budget({ name: "nightly", maxCostUsd: 0.0019, prices: yield* prices, estimateTokens: () => 100 })
      const chain = yield* Fallback.make({
        routes: [
          {
            name: "primary",
            provider: yield* OpenAi.make({ apiKey: Redacted.make("sk-e2e-spend"), baseUrl: server.openAiBaseUrl }),
            model: "primary-model",
            policy: { retry }
          },
          {
            name: "secondary",
            provider: yield* Anthropic.make({ apiKey: Redacted.make("sk-ant-e2e-spend"), baseUrl: server.anthropicBaseUrl }),
            model: "secondary-model",
            policy: { retry, breaker: secondaryBreaker }
          }
        ],
        repairAttempts: 1,
        spend: budget
      })
      const error = yield* drive(yield* Effect.fork(routesFailed(chain.generateObject(Answer, request))))

      // primary: 500, retried, 500 → fallback to secondary: an off-contract answer → its repair: 500,
      // retried → refused by the budget, before sending.
      expect(error.reason).toBe("budget")
      expect(error.attempts.map((a) => [a.route, a.attempt, a.outcome])).toEqual([
        ["primary", 1, "ServerError"],
        ["primary", 2, "ServerError"],
        ["secondary", 1, "InvalidOutput"],
        ["secondary", 2, "ServerError"],
        ["secondary", 3, "BudgetExceeded"]
      ])
      expect(error.attempts[4]!.message).toMatch(/^repair 1\/1: spend budget "nightly" cannot fit this attempt/)
      expect(error.attempts[4]!.status).toBeUndefined()
      // The server saw the four sent attempts, and nothing after.
      const stats = yield* server.stats
      expect(stats.total).toBe(4)
      expect(stats.byRoute).toEqual({ primary: 2, secondary: 2 })
      expect(stats.log.map((entry) => [entry.route, entry.status])).toEqual([["primary", 500], ["primary", 500], ["secondary", 200], ["secondary", 500]])

      // The rejected answer reported its usage, and it is priced; the three failed sends reported none.
      const rejected = error.attempts[2]!
      const rejectedUsd = (rejected.usage!.inputTokens * 1 + rejected.usage!.outputTokens * 2) / 1e6
      expect(rejected.costUsd).toBeCloseTo(rejectedUsd, 15)
      expect(rejectedUsd).toBeLessThan(0.0004) // what lets the repair's first attempt fit (below)
      const last = error.lastError
      expect(last?._tag).toBe("BudgetExceeded")
      if (last?._tag !== "BudgetExceeded") return
      expect(last).toMatchObject({ budget: "nightly", limit: "cost", reason: "over-limit", max: 0.0019, reserved: 0, route: "secondary" })
      expect(last.requested).toBeCloseTo(WORST_USD, 15)
      expect(last.spent).toBeCloseTo(3 * WORST_USD + rejectedUsd, 15)
      // Conservative: each send that reported nothing is charged its worst case.
      const spent = yield* Spend.snapshot(budget)
      expect(spent).toMatchObject({ calls: 4, refused: 1, unreported: 3, inFlight: 0, reservedTokens: 0, reservedCostUsd: 0 })
      expect(spent.costUsd).toBeCloseTo(3 * WORST_USD + rejectedUsd, 15)
      expect(spent.routes["primary"]?.calls).toBe(2)
      expect(spent.routes["secondary"]?.calls).toBe(2)

      const breaker = Option.getOrThrow(yield* (yield* CircuitBreakers).lookup("secondary/secondary-model"))
      expect(yield* breaker.state).toBe("closed")
    }).pipe(Effect.provide(Env)))

  it.scoped("a hedged call counts both legs; a leg the budget refuses is not sent and the other one still answers", () =>
    Effect.gen(function*() {
      const slowFirst = (): Scenario.Scenario => ({
        default: { script: [{ kind: "slow_first_token", delayMs: 10_000 }], content: { kind: "text", text: "hedged answer" }, concurrency: 4 }
      })
      const generateRequest: GenerateRequest = { model: "gpt-hedge", messages: [{ role: "user", content: "hello" }], maxTokens: 64 }
      const worstTokens = 100 + generateRequest.maxTokens

      // Room for both legs: both are sent and both are charged — the winner what it reported, the
      // interrupted loser its worst case (it was sent; the provider may bill it).
      const server = yield* ChaosServer.make({ scenario: slowFirst() })
      const openai = yield* OpenAi.make({ apiKey: Redacted.make("sk-e2e-hedge"), baseUrl: server.openAiBaseUrl })
      const hedged = yield* Policy.apply({ hedge: { delay: "200 millis" }, retry: false }, openai, "spend-hedge")
      const meter = yield* Spend.budget({ name: "meter", estimateTokens: () => 100 })
      const fiber = yield* Effect.fork(Spend.within(meter)(hedged.generate(generateRequest)))
      yield* awaitSleepUntil(200)
      yield* TestClock.adjust("200 millis")
      const response = yield* settle(fiber)
      expect(response.text).toBe("hedged answer")
      expect((yield* server.stats).total).toBe(2)
      expect(yield* Spend.snapshot(meter)).toMatchObject({ calls: 2, unreported: 1, tokens: response.usage.totalTokens + worstTokens, inFlight: 0 })

      // Room for one leg: the hedge is refused before sending, and the first leg answers after its slow start.
      const oneLeg = yield* ChaosServer.make({ scenario: slowFirst() })
      const openaiOne = yield* OpenAi.make({ apiKey: Redacted.make("sk-e2e-hedge"), baseUrl: oneLeg.openAiBaseUrl })
      const hedgedOne = yield* Policy.apply({ hedge: { delay: "200 millis" }, retry: false }, openaiOne, "spend-hedge-one")
      const tight = yield* Spend.budget({ name: "one leg", maxTokens: worstTokens + 50, estimateTokens: () => 100 })
      const start = yield* TestClock.currentTimeMillis
      const one = yield* Effect.fork(Spend.within(tight)(hedgedOne.generate(generateRequest)))
      yield* awaitSleepUntil(start + 200)
      yield* TestClock.adjust("200 millis")
      yield* awaitSleepUntil(start + 10_000)
      expect((yield* Spend.snapshot(tight)).refused).toBe(1)
      yield* TestClock.adjust("10 seconds")
      expect((yield* settle(one)).text).toBe("hedged answer")
      expect((yield* oneLeg.stats).total).toBe(1)
      expect(yield* Spend.snapshot(tight)).toMatchObject({ calls: 1, refused: 1, unreported: 0, inFlight: 0 })
    }).pipe(Effect.provide(Env)))

  it.scoped("a stream is charged the usage its Usage event reported, and its cost is the chain's", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: { routes: [chaosRoute("primary", "openai", [])] } })
      const budget = yield* Spend.budget({ name: "stream", maxCostUsd: 1, prices: yield* prices })
      const chain = yield* Fallback.make({
        routes: [{
          name: "primary",
          provider: yield* OpenAi.make({ apiKey: Redacted.make("sk-e2e-spend"), baseUrl: server.openAiBaseUrl }),
          model: "primary-model"
        }],
        spend: budget
      })
      const events = Chunk.toReadonlyArray(yield* settle(yield* Effect.fork(Stream.runCollect(chain.streamObject(Answer, request)))))
      const usage = events.flatMap((event) => (event._tag === "Usage" ? [event.usage] : []))
      expect(usage).toHaveLength(1)
      const completed = events.at(-1)
      expect(completed?._tag).toBe("Completed")
      if (completed?._tag !== "Completed") return
      expect(completed.result.value).toEqual(paris)
      const expectedUsd = (usage[0]!.inputTokens * 1 + usage[0]!.outputTokens * 2) / 1e6
      expect(completed.result.costUsd).toBeCloseTo(expectedUsd, 15)
      const spent = yield* Spend.snapshot(budget)
      expect(spent).toMatchObject({ calls: 1, unreported: 0, tokens: usage[0]!.totalTokens, reservedTokens: 0 })
      expect(spent.costUsd).toBeCloseTo(expectedUsd, 15)
    }).pipe(Effect.provide(Env)))
})

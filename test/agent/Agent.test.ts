/**
 * Agent behaviour that does not depend on the backend (memory store): heartbeats under TestClock,
 * pre-flight health, the toolkit, events, and misuse.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as Agent from "../../src/agent/Agent.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as Tool from "../../src/agent/Tool.js"
import * as CircuitBreaker from "../../src/CircuitBreaker.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as Fallback from "../../src/Fallback.js"
import * as LlmClient from "../../src/LlmClient.js"
import * as Policy from "../../src/Policy.js"
import * as Mock from "../../src/testing/MockProvider.js"
import { makeCallee } from "./conformance.js"

const env = (options: Agent.AgentOptions = {}) =>
  Layer.mergeAll(Agent.layer({ executorId: "test", ...options }), DegradedMode.layer, Policy.layerState).pipe(
    Layer.provideMerge(CheckpointStore.layerMemory)
  )

/** Collects every event from now on into an array (read it after driving the clock). */
const recordEvents = Effect.gen(function*() {
  const agent = yield* Agent.Agent
  const stream = yield* agent.events
  const seen: Array<Agent.AgentEvent> = []
  yield* Effect.forkScoped(Stream.runForEach(stream, (event) => Effect.sync(() => seen.push(event))))
  yield* Effect.yieldNow()
  return seen
})

describe("Heartbeat", () => {
  it.scoped("a step longer than the interval emits 'still working' every interval, and stops when it ends", () =>
    Effect.gen(function*() {
      const seen = yield* recordEvents
      const fiber = yield* Effect.fork(Agent.run("hb-1", Agent.step("crawl", Schema.String, Effect.as(Effect.sleep("95 seconds"), "done"))))
      yield* TestClock.adjust("95 seconds")
      expect(yield* Fiber.join(fiber)).toBe("done")
      yield* TestClock.adjust("5 minutes")
      const beats = seen.filter((e) => e._tag === "StillWorking")
      expect(beats).toEqual([30_000, 60_000, 90_000].map((elapsedMs) => ({ _tag: "StillWorking", runId: "hb-1", index: 0, step: "crawl", elapsedMs })))
    }).pipe(Effect.provide(env())))

  it.scoped("a step shorter than the interval emits none; the interval is configurable; false switches it off", () =>
    Effect.gen(function*() {
      const seen = yield* recordEvents
      const program = Effect.gen(function*() {
        yield* Agent.step("quick", Schema.Void, Effect.sleep("29 seconds"))
        yield* Agent.step("long", Schema.Void, Effect.sleep("25 seconds"))
      })
      const fiber = yield* Effect.fork(Agent.run("hb-2", program))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      expect(seen.filter((e) => e._tag === "StillWorking").map((e) => e._tag === "StillWorking" && [e.step, e.elapsedMs])).toEqual([])

      const quiet = yield* Agent.make({ heartbeatInterval: false })
      const fast = yield* Agent.make({ heartbeatInterval: "10 seconds" })
      const quietEvents = yield* quiet.events
      const fastEvents = yield* fast.events
      const quietSeen = yield* Effect.fork(Stream.runCollect(Stream.takeUntil(quietEvents, (e) => e._tag === "RunFinished")))
      const fastSeen = yield* Effect.fork(Stream.runCollect(Stream.takeUntil(fastEvents, (e) => e._tag === "RunFinished")))
      yield* Effect.yieldNow()
      const runs = yield* Effect.fork(Effect.all([
        quiet.run("hb-3", Agent.step("long", Schema.Void, Effect.sleep("25 seconds"))),
        fast.run("hb-4", Agent.step("long", Schema.Void, Effect.sleep("25 seconds")))
      ], { concurrency: 2 }))
      yield* TestClock.adjust("25 seconds")
      yield* Fiber.join(runs)
      const beatsOf = (events: Chunk.Chunk<Agent.AgentEvent>) =>
        Chunk.toReadonlyArray(events).flatMap((e) => (e._tag === "StillWorking" ? [e.elapsedMs] : []))
      expect(beatsOf(yield* Fiber.join(quietSeen))).toEqual([])
      expect(beatsOf(yield* Fiber.join(fastSeen))).toEqual([10_000, 20_000])
    }).pipe(Effect.provide(env())))
})

describe("Events", () => {
  it.scoped("runs report start, steps (executed or replayed) and finish", () =>
    Effect.gen(function*() {
      const seen = yield* recordEvents
      const program = Agent.step("a", Schema.Number, Effect.succeed(1))
      yield* Agent.run("ev-1", program)
      yield* Agent.run("ev-1", program)
      yield* Effect.yieldNow()
      expect(seen.map((e) => `${e._tag}${"step" in e ? `:${e.step}` : ""}`)).toEqual([
        "RunStarted",
        "StepStarted:a",
        "StepCompleted:a",
        "RunFinished",
        "RunStarted",
        "StepReplayed:a",
        "RunFinished"
      ])
    }).pipe(Effect.provide(env())))
})

describe("Misuse", () => {
  it.effect("invalid run ids are typed errors; nested steps are a defect with a clear message", () =>
    Effect.gen(function*() {
      expect((yield* Effect.flip(Agent.run("", Effect.void)))._tag).toBe("InvalidRunId")
      expect((yield* Effect.flip(Agent.run("x".repeat(201), Effect.void)))._tag).toBe("InvalidRunId")
      expect((yield* Effect.flip(Agent.run("a\nb", Effect.void)))._tag).toBe("InvalidRunId")
      const nested = Agent.step("outer", Schema.Number, Agent.step("inner", Schema.Number, Effect.succeed(1)))
      const exit = yield* Effect.exit(Agent.run("nested", nested))
      expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map(String), Option.getOrElse(() => ""))).toContain(
        "steps must run one at a time"
      )
      const concurrent = Effect.all(
        [Agent.step("a", Schema.Number, Effect.as(Effect.yieldNow(), 1)), Agent.step("b", Schema.Number, Effect.as(Effect.yieldNow(), 2))],
        { concurrency: 2 }
      )
      const exit2 = yield* Effect.exit(Agent.run("concurrent", concurrent))
      expect(Exit.isFailure(exit2) && Exit.causeOption(exit2).pipe(Option.map(String), Option.getOrElse(() => ""))).toContain(
        "steps must run one at a time"
      )
    }).pipe(Effect.provide(env())))
})

describe("Toolkit", () => {
  it.effect("dispatches model tool calls, answering in the conversation; unknown tools and bad arguments get text", () =>
    Effect.gen(function*() {
      const callee = makeCallee()
      const lookup = Tool.make({
        name: "lookup_order",
        description: "Find an order",
        effect: "pure",
        parameters: Schema.Struct({ id: Schema.Int }),
        success: Schema.Struct({ status: Schema.String }),
        run: ({ id }) => Effect.succeed({ status: `order ${id} shipped` })
      })
      const refund = Tool.make({
        name: "refund",
        effect: "keyed",
        parameters: Schema.Struct({ id: Schema.Int, cents: Schema.Int }),
        success: Schema.String,
        run: ({ id }, { idempotencyKey }) => callee.performKeyed(idempotencyKey, String(id)),
        render: (receipt) => `refunded (${receipt})`
      })
      const tools = Agent.toolkit.add(lookup).add(refund)
      expect(tools.definitions.map((d) => d.name)).toEqual(["lookup_order", "refund"])
      expect(tools.definitions[0]!.parameters).toMatchObject({ type: "object", required: ["id"] })
      const program = Effect.gen(function*() {
        const replies = [
          yield* tools.dispatch({ id: "c1", name: "lookup_order", arguments: "{\"id\":42}" }),
          yield* tools.dispatch({ id: "c2", name: "refund", arguments: "{\"id\":42,\"cents\":1000}" }),
          yield* tools.dispatch({ id: "c3", name: "refund", arguments: "{\"id\":\"forty-two\"}" }),
          yield* tools.dispatch({ id: "c4", name: "delete_everything", arguments: "{}" })
        ]
        yield* Agent.step("end", Schema.Void, Effect.void)
        return replies.map((r) => [r._tag, r.text])
      })
      const replies = yield* Agent.run("kit-1", program)
      expect(replies[0]).toEqual(["Success", "{\"status\":\"order 42 shipped\"}"])
      expect(replies[1]).toEqual(["Success", "refunded (done:42#1)"])
      expect(replies[2]![0]).toBe("Failure")
      expect(replies[2]![1]).toContain("invalid arguments for refund")
      expect(replies[3]![1]).toContain("there is no tool named delete_everything")
      const report = Option.getOrThrow(yield* Agent.inspect("kit-1"))
      expect(report.conversation.map((m) => [m.role, m.toolCallId, m.name])).toEqual([
        ["tool", "c1", "lookup_order"],
        ["tool", "c2", "refund"],
        ["tool", "c3", "refund"],
        ["tool", "c4", "delete_everything"]
      ])
      // Only the two valid calls became steps.
      expect(report.steps.map((s) => s.name)).toEqual(["lookup_order", "refund", "end"])
      expect(yield* Agent.run("kit-1", program)).toEqual(replies)
      expect(callee.effects.length).toBe(1)
    }).pipe(Effect.provide(env())))
})

describe("Pre-flight health", () => {
  const primary = Mock.make({ otherwise: Mock.succeed("from primary") })
  const llm = LlmClient.layer({ routes: [{ name: "primary", provider: primary, model: "m", policy: { retry: false } }] })

  it.effect("refuses to start when the primary's breaker is open, a probe fails or the status page reports an incident", () =>
    Effect.gen(function*() {
      const breakers = yield* CircuitBreaker.CircuitBreakers
      const breaker = yield* breakers.get("primary/m")
      yield* breaker.isolate
      const refused = yield* Effect.flip(Agent.run("pf-1", Effect.void, { preflight: { onDegraded: "refuse", primaryBreaker: "primary/m" } }))
      expect(refused._tag).toBe("PreflightRefused")
      if (refused._tag === "PreflightRefused") {
        expect(refused.findings).toContainEqual({ source: "breaker", healthy: false, detail: "breaker primary/m is isolated" })
      }
      expect(Option.isNone(yield* Agent.inspect("pf-1"))).toBe(true)
      yield* breaker.reset

      const probeFails = yield* Effect.flip(Agent.run("pf-2", Effect.void, {
        preflight: { onDegraded: "refuse", probe: Effect.fail("503 overloaded") }
      }))
      expect(probeFails._tag === "PreflightRefused" && probeFails.message).toContain("probe: the probe failed: 503 overloaded")

      const hangs = yield* Effect.fork(Effect.flip(Agent.run("pf-3", Effect.void, {
        preflight: { onDegraded: "refuse", probe: Effect.never, probeTimeout: "2 seconds" }
      })))
      yield* TestClock.adjust("2 seconds")
      const timedOut = yield* Fiber.join(hangs)
      expect(timedOut._tag === "PreflightRefused" && timedOut.message).toContain("no answer within 2s")

      const incident = yield* Effect.flip(Agent.run("pf-4", Effect.void, {
        preflight: { onDegraded: "refuse", statusPage: Effect.succeed({ operational: false, description: "Elevated error rates" }) }
      }))
      expect(incident._tag === "PreflightRefused" && incident.message).toContain("status-page: Elevated error rates")

      // An unreachable status page says nothing about the API: the run starts.
      const started = yield* Agent.run("pf-5", Agent.step("a", Schema.Number, Effect.succeed(1)), {
        preflight: { onDegraded: "refuse", statusPage: Effect.fail("ENOTFOUND"), probe: Effect.void }
      })
      expect(started).toBe(1)
    }).pipe(Effect.provide(env())))

  it.scoped("starts on the fallback when configured, refuses irreversible tools there, and returns to the primary after a healthy re-check", () =>
    Effect.gen(function*() {
      const backup = Mock.make({ otherwise: Mock.succeed("from backup") })
      const fallback = yield* Fallback.make({ routes: [{ name: "backup", provider: backup, model: "b", policy: { retry: false } }] })
      const breakers = yield* CircuitBreaker.CircuitBreakers
      const breaker = yield* breakers.get("primary/m")
      yield* breaker.isolate
      const degraded = yield* DegradedMode.DegradedMode
      yield* SubscriptionRef.set(degraded, { degraded: true, route: "primary", reason: "primary is down" })
      const seen = yield* recordEvents
      const callee = makeCallee()
      const pay = Tool.make({
        name: "pay",
        effect: "irreversible",
        parameters: Schema.Struct({ cents: Schema.Int }),
        success: Schema.String,
        run: ({ cents }, { idempotencyKey }) => callee.perform(idempotencyKey, String(cents))
      })
      const program = Effect.gen(function*() {
        const first = yield* Agent.generate({ messages: [{ role: "user", content: "hi" }], maxTokens: 10 })
        const refused = yield* Agent.useTool(pay, { cents: 100 })
        // The fallback chain must not announce the system healthy (its own first route is the backup).
        const stillDegraded = (yield* SubscriptionRef.get(degraded)).degraded
        yield* Agent.step("wait", Schema.Void, Effect.zipRight(breaker.reset, TestClock.adjust("61 seconds")))
        const second = yield* Agent.generate({ messages: [{ role: "user", content: "hi" }], maxTokens: 10 })
        const paid = yield* Agent.useTool(pay, { cents: 100 })
        return { first: first.text, refused: refused._tag, refusedText: refused.text, stillDegraded, second: second.text, paid: paid._tag }
      })
      const result = yield* Agent.run("pf-6", program, {
        preflight: { onDegraded: "fallback", fallback, primaryBreaker: "primary/m" }
      }).pipe(Effect.provide(llm))
      expect(result).toMatchObject({ first: "from backup", refused: "Refused", stillDegraded: true, second: "from primary", paid: "Success" })
      expect(result.refusedText).toContain("on its fallback route")
      expect(callee.effects.length).toBe(1)
      expect(seen.filter((e) => e._tag === "RouteChanged")).toEqual([
        { _tag: "RouteChanged", runId: "pf-6", mode: "primary", reason: "the primary passed its health re-check" }
      ])
      expect((yield* SubscriptionRef.get(degraded)).degraded).toBe(false)
    }).pipe(Effect.provide(env())))
})

/**
 * The checkpoint conformance suite: the same tests — store contract, step journal, model steps, the
 * tool protocol in every state × effect kind, degraded guard, fencing, secrets, retention — against a
 * given backend. `conformance.test.ts` runs it on memory, SQLite and Postgres.
 *
 * A crash is simulated in-process by interrupting the run while a tool is parked between claim and act
 * or between act and record: interruption writes nothing, so the journal is left exactly as a SIGKILL
 * would leave it (the real SIGKILL test is crash.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as Agent from "../../src/agent/Agent.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as Tool from "../../src/agent/Tool.js"
import * as CircuitBreaker from "../../src/CircuitBreaker.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as LlmClient from "../../src/LlmClient.js"
import * as Mock from "../../src/testing/MockProvider.js"
import type { Backend } from "./backends.js"


/** An external service with an effect ledger; `keyed` calls are deduplicated by key, like Stripe. */
export const makeCallee = () => {
  const effects: Array<{ readonly key: string; readonly item: string }> = []
  const byKey = new Map<string, string>()
  let dedupeHits = 0
  return {
    effects,
    get dedupeHits() {
      return dedupeHits
    },
    perform: (key: string, item: string) =>
      Effect.sync(() => {
        effects.push({ key, item })
        return `done:${item}#${effects.length}`
      }),
    performKeyed: (key: string, item: string) =>
      Effect.sync(() => {
        const prior = byKey.get(key)
        if (prior !== undefined) {
          dedupeHits++
          return prior
        }
        effects.push({ key, item })
        const result = `done:${item}#${effects.length}`
        byKey.set(key, result)
        return result
      }),
    lookup: (key: string) => Effect.sync(() => effects.find((e) => e.key === key))
  }
}

type Crash = "none" | "before-act" | "after-act"

const Args = Schema.Struct({ item: Schema.String })

/**
 * A tool over the callee whose `run` can be parked (forever) before or after the effect, to simulate a
 * crash at that point. `contexts` records every ToolContext the tool was called with.
 */
const makeCrashableTool = (
  effect: Tool.EffectKind,
  callee: ReturnType<typeof makeCallee>,
  options: { readonly reconcile?: boolean; readonly reconcileAnswer?: "lookup" | "unknown" } = {}
) => {
  const control = { crash: "none" as Crash, parked: Effect.runSync(Deferred.make<void>()) }
  const contexts: Array<Tool.ToolContext> = []
  const tool = Tool.make({
    name: `${effect}_tool`,
    effect,
    parameters: Args,
    success: Schema.String,
    run: ({ item }, context) =>
      Effect.gen(function*() {
        contexts.push(context)
        if (control.crash === "before-act") {
          yield* Deferred.succeed(control.parked, undefined)
          return yield* Effect.never
        }
        const result = effect === "keyed" ? yield* callee.performKeyed(context.idempotencyKey, item) : yield* callee.perform(context.idempotencyKey, item)
        if (control.crash === "after-act") {
          yield* Deferred.succeed(control.parked, undefined)
          return yield* Effect.never
        }
        return result
      }),
    reconcile: options.reconcile === true
      ? (_args, context) =>
        options.reconcileAnswer === "unknown"
          ? Effect.succeed(Tool.unknown("the callee has no lookup for this call"))
          : Effect.map(callee.lookup(context.idempotencyKey), (found) =>
            found === undefined ? Tool.notApplied : Tool.applied(`reconciled:${found.item}`))
      : undefined
  })
  return { tool, control, contexts }
}

/** Forks the run, waits until the tool is parked at its crash point, then interrupts ("kills") it. */
const crashRun = <A, E, R>(runId: string, program: Effect.Effect<A, E, R>, parked: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const agent = yield* Agent.Agent
    const fiber = yield* Effect.fork(agent.run(runId, program))
    yield* Deferred.await(parked)
    yield* Fiber.interrupt(fiber)
  })

const journalOf = (runId: string) => Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.steps(runId))

export const conformance = (backend: Backend) => {
  /** A fresh store with an agent (executor `exec-a`) and a DegradedMode. */
  const env = (options: Agent.AgentOptions = {}) =>
    Layer.mergeAll(Agent.layer({ executorId: "exec-a", ...options }), DegradedMode.layer).pipe(
      Layer.provideMerge(backend.layer())
    )

  describe(`CheckpointStore contract — ${backend.name}`, () => {
    const step = (runId: string, index: number, status: CheckpointStore.StepStatus, at: number): CheckpointStore.StepRecord => ({
      runId,
      index,
      name: `s${index}`,
      key: `${runId}:${index}:s${index}`,
      kind: "tool",
      effect: "irreversible",
      status,
      argsHash: "h",
      result: status === "started" ? null : JSON.stringify({ v: index }),
      startedAt: at,
      completedAt: status === "started" ? null : at
    })

    it.effect("leases: one holder at a time, takeover after expiry, the old holder fenced off", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const a = yield* store.acquire("run-1", "a", { now: 1_000, leaseMs: 10_000 })
        expect(a.epoch).toBe(1)
        const locked = yield* Effect.flip(store.acquire("run-1", "b", { now: 5_000, leaseMs: 10_000 }))
        expect(locked._tag).toBe("RunLocked")
        if (locked._tag === "RunLocked") expect(locked).toMatchObject({ owner: "a", leaseUntil: 11_000 })
        // The same owner may take its lease again (a restarted worker with a stable id): new epoch.
        const again = yield* store.acquire("run-1", "a", { now: 6_000, leaseMs: 10_000 })
        expect(again.epoch).toBe(2)
        // The old epoch is fenced even for the same owner.
        expect((yield* Effect.flip(store.record(a, step("run-1", 0, "completed", 6_000), undefined)))._tag).toBe("LeaseLost")
        // Renewal keeps it; after expiry another owner takes over and the previous holder is fenced off.
        yield* store.renew(again, { now: 15_000, leaseMs: 10_000 })
        expect((yield* Effect.flip(store.acquire("run-1", "b", { now: 20_000, leaseMs: 10_000 })))._tag).toBe("RunLocked")
        const b = yield* store.acquire("run-1", "b", { now: 25_001, leaseMs: 10_000 })
        expect(b.epoch).toBe(3)
        expect((yield* Effect.flip(store.claim(again, step("run-1", 0, "started", 25_002))))._tag).toBe("LeaseLost")
        expect((yield* Effect.flip(store.renew(again, { now: 25_002, leaseMs: 10_000 })))._tag).toBe("LeaseLost")
        expect(yield* store.steps("run-1")).toEqual([])
        // Releasing with a stale lease changes nothing; the holder's release frees the run.
        yield* store.release(again, "failed", 25_003)
        expect(Option.getOrThrow(yield* store.run("run-1"))).toMatchObject({ owner: "b", status: "running", epoch: 3 })
        yield* store.release(b, "completed", 25_004)
        expect(Option.getOrThrow(yield* store.run("run-1"))).toMatchObject({ owner: null, status: "completed" })
        const c = yield* store.acquire("run-1", "c", { now: 25_005, leaseMs: 10_000 })
        expect(c.epoch).toBe(4)
      }).pipe(Effect.provide(backend.layer())))

    it.effect("confirm: a live lease is confirmed and extended; an expired, taken-over or released one is LeaseLost", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const leaseUntil = Effect.map(store.run("run-c"), (run) => Option.getOrThrow(run).leaseUntil)
        const a = yield* store.acquire("run-c", "a", { now: 1_000, leaseMs: 10_000 })
        yield* store.confirm(a, { now: 5_000, leaseMs: 10_000 })
        expect(yield* leaseUntil).toBe(15_000)
        // The extension holds the run: without it the lease would have expired at 11 000.
        expect((yield* Effect.flip(store.acquire("run-c", "b", { now: 14_000, leaseMs: 10_000 })))._tag).toBe("RunLocked")
        // Expired (even though nobody took it over): no confirmation, nothing changes.
        expect((yield* Effect.flip(store.confirm(a, { now: 15_000, leaseMs: 10_000 })))._tag).toBe("LeaseLost")
        expect(yield* leaseUntil).toBe(15_000)
        // Taken over: the old epoch is fenced off; the new holder confirms.
        const b = yield* store.acquire("run-c", "b", { now: 16_000, leaseMs: 10_000 })
        const stale = yield* Effect.flip(store.confirm(a, { now: 16_001, leaseMs: 10_000 }))
        expect(stale).toMatchObject({ _tag: "LeaseLost", runId: "run-c", epoch: 1 })
        yield* store.confirm(b, { now: 16_001, leaseMs: 10_000 })
        expect(Option.getOrThrow(yield* store.run("run-c"))).toMatchObject({ owner: "b", epoch: 2, leaseUntil: 26_001 })
        // The same owner under an older epoch is fenced too; a released lease confirms nothing.
        const again = yield* store.acquire("run-c", "b", { now: 17_000, leaseMs: 10_000 })
        expect((yield* Effect.flip(store.confirm(b, { now: 17_001, leaseMs: 10_000 })))._tag).toBe("LeaseLost")
        yield* store.release(again, "running", 17_002)
        expect((yield* Effect.flip(store.confirm(again, { now: 17_003, leaseMs: 10_000 })))._tag).toBe("LeaseLost")
        expect(Option.getOrThrow(yield* store.run("run-c"))).toMatchObject({ owner: null, epoch: 3, leaseUntil: 0 })
      }).pipe(Effect.provide(backend.layer())))

    it.effect("claim commits a started entry once; record completes it with the snapshot in one write", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const lease = yield* store.acquire("run-2", "a", { now: 0, leaseMs: 60_000 })
        yield* store.claim(lease, step("run-2", 0, "started", 10))
        const duplicate = yield* Effect.flip(store.claim(lease, step("run-2", 0, "started", 11)))
        expect(duplicate._tag).toBe("StoreError")
        expect((yield* store.steps("run-2")).map((s) => [s.index, s.status, s.result])).toEqual([[0, "started", null]])
        yield* store.record(lease, step("run-2", 0, "completed", 20), JSON.stringify([{ role: "user", content: "hi" }]))
        yield* store.record(lease, step("run-2", 1, "completed", 30), undefined)
        const steps = yield* store.steps("run-2")
        expect(steps.map((s) => [s.index, s.status, s.result, s.completedAt])).toEqual([
          [0, "completed", "{\"v\":0}", 20],
          [1, "completed", "{\"v\":1}", 30]
        ])
        expect(steps[0]).toMatchObject({ key: "run-2:0:s0", kind: "tool", effect: "irreversible", argsHash: "h", startedAt: 10 })
        // No snapshot given: the previous one stays.
        const run = Option.getOrThrow(yield* store.run("run-2"))
        expect(run.conversation).toBe(JSON.stringify([{ role: "user", content: "hi" }]))
        expect(run.updatedAt).toBe(30)
      }).pipe(Effect.provide(backend.layer())))

    it.effect("a fenced write leaves neither the step nor the snapshot", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const old = yield* store.acquire("run-3", "a", { now: 0, leaseMs: 1_000 })
        yield* store.record(old, step("run-3", 0, "completed", 1), "[\"first\"]")
        yield* store.acquire("run-3", "b", { now: 5_000, leaseMs: 1_000 })
        const lost = yield* Effect.flip(store.record(old, step("run-3", 1, "completed", 5_001), "[\"second\"]"))
        expect(lost._tag).toBe("LeaseLost")
        expect((yield* store.steps("run-3")).map((s) => s.index)).toEqual([0])
        expect(Option.getOrThrow(yield* store.run("run-3")).conversation).toBe("[\"first\"]")
      }).pipe(Effect.provide(backend.layer())))

    it.effect("prune removes old finished runs with their journals; keeps recent, unfinished and leased ones", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const finish = (runId: string, at: number, status: CheckpointStore.RunStatus) =>
          Effect.gen(function*() {
            const lease = yield* store.acquire(runId, "a", { now: at, leaseMs: 1_000 })
            yield* store.record(lease, step(runId, 0, "completed", at), undefined)
            if (status !== "running") yield* store.release(lease, status, at)
          })
        yield* finish("old-done", 1_000, "completed")
        yield* finish("old-failed", 1_000, "failed")
        yield* finish("old-unfinished", 1_000, "running") // lease expired at 2 000
        yield* finish("new-done", 90_000, "completed")
        const leased = yield* store.acquire("old-leased", "a", { now: 1_000, leaseMs: 1_000_000 })
        expect(leased.epoch).toBe(1)
        expect(yield* store.prune({ before: 50_000, now: 100_000, includeUnfinished: false })).toBe(2)
        expect(Option.isNone(yield* store.run("old-done"))).toBe(true)
        expect(yield* store.steps("old-done")).toEqual([])
        expect(Option.isSome(yield* store.run("old-unfinished"))).toBe(true)
        expect(yield* store.prune({ before: 50_000, now: 100_000, includeUnfinished: true })).toBe(1)
        expect(Option.isNone(yield* store.run("old-unfinished"))).toBe(true)
        expect(Option.isSome(yield* store.run("old-leased"))).toBe(true)
        expect(Option.isSome(yield* store.run("new-done"))).toBe(true)
        expect((yield* store.steps("new-done")).length).toBe(1)
      }).pipe(Effect.provide(backend.layer())))
  })

  describe(`Agent journal — ${backend.name}`, () => {
    const Event = Schema.Struct({ id: Schema.Number, at: Schema.Date, tags: Schema.Array(Schema.String), amount: Schema.BigInt })

    it.effect("completed steps return their stored, Schema-decoded results on resume and never run again", () =>
      Effect.gen(function*() {
        const runs = { fetch: 0, enrich: 0, publish: 0 }
        let failPublish = true
        const program = Effect.gen(function*() {
          const event = yield* Agent.step("fetch", Event, Effect.sync(() => {
            runs.fetch++
            return { id: 7, at: new Date("2025-01-02T03:04:05.000Z"), tags: ["a", "b"], amount: 12345678901234567890n }
          }))
          const enriched = yield* Agent.step("enrich", Schema.Option(Schema.String), Effect.sync(() => {
            runs.enrich++
            return Option.some(`event-${event.id}`)
          }))
          yield* Agent.step("publish", Schema.Void, Effect.suspend(() => {
            runs.publish++
            return failPublish ? Effect.fail("publish failed" as const) : Effect.void
          }))
          return { event, enriched }
        })
        const first = yield* Effect.flip(Agent.run("journal-1", program))
        expect(first).toBe("publish failed")
        failPublish = false
        const resumed = yield* Agent.run("journal-1", program)
        expect(resumed.event.at).toBeInstanceOf(Date)
        expect(resumed.event.at.toISOString()).toBe("2025-01-02T03:04:05.000Z")
        expect(resumed.event.amount).toBe(12345678901234567890n)
        expect(resumed.enriched).toEqual(Option.some("event-7"))
        expect(runs).toEqual({ fetch: 1, enrich: 1, publish: 2 })
        // A finished run replays entirely from the journal.
        const replayed = yield* Agent.run("journal-1", program)
        expect(replayed).toEqual(resumed)
        expect(runs).toEqual({ fetch: 1, enrich: 1, publish: 2 })
        const journal = yield* journalOf("journal-1")
        expect(journal.map((s) => [s.index, s.name, s.key, s.status])).toEqual([
          [0, "fetch", "journal-1:0:fetch", "completed"],
          [1, "enrich", "journal-1:1:enrich", "completed"],
          [2, "publish", "journal-1:2:publish", "completed"]
        ])
        const report = Option.getOrThrow(yield* Agent.inspect("journal-1"))
        expect(report.run.status).toBe("completed")
      }).pipe(Effect.provide(env())))

    it.effect("a program that changed order fails with StepMismatch instead of diverging", () =>
      Effect.gen(function*() {
        yield* Agent.run("journal-2", Agent.step("a", Schema.Number, Effect.succeed(1)))
        const error = yield* Effect.flip(Agent.run("journal-2", Agent.step("b", Schema.Number, Effect.succeed(2))))
        expect(error._tag).toBe("StepMismatch")
        if (error._tag === "StepMismatch") expect(error).toMatchObject({ index: 0, journaled: "step a", requested: "step b" })
      }).pipe(Effect.provide(env())))

    it.effect("a Redacted secret is never checkpointed: UnsafeCheckpoint, nothing written", () =>
      Effect.gen(function*() {
        const Credentials = Schema.Struct({ user: Schema.String, apiKey: Schema.Redacted(Schema.String) })
        const error = yield* Effect.flip(Agent.run(
          "secret-1",
          Agent.step("login", Credentials, Effect.succeed({ user: "u", apiKey: Redacted.make("sk-live-very-secret-123") }))
        ))
        expect(error._tag).toBe("UnsafeCheckpoint")
        if (error._tag === "UnsafeCheckpoint") expect(error.path).toBe("apiKey")
        expect(JSON.stringify(error)).not.toContain("very-secret")
        expect(yield* journalOf("secret-1")).toEqual([])
      }).pipe(Effect.provide(env())))

    it.effect("model steps store response and usage: a resume makes no model call and sees the same answers", () =>
      Effect.gen(function*() {
        const mock = Mock.make({ script: [Mock.succeed("first answer"), Mock.succeed("second answer")], otherwise: Mock.succeed("re-billed!") })
        const llm = LlmClient.layerWithState({ routes: [{ name: "primary", provider: mock, model: "m", policy: { retry: false } }] })
        let crash = true
        const program = Effect.gen(function*() {
          yield* Agent.addMessages({ role: "system", content: "be brief" }, { role: "user", content: "hello" })
          const one = yield* Agent.turn({ maxTokens: 50 })
          yield* Agent.addMessages({ role: "user", content: "and?" })
          const two = yield* Agent.turn({ maxTokens: 50 })
          if (crash) return yield* Effect.fail("crashed after the second turn" as const)
          return [one.text, two.text, two.usage.totalTokens]
        }).pipe(Effect.provide(llm))
        yield* Effect.flip(Agent.run("model-1", program))
        expect(mock.calls.length).toBe(2)
        // The idempotency key sent to the provider is the step key.
        expect(mock.calls.map((c) => c.request.idempotencyKey)).toEqual(["model-1:0:model", "model-1:1:model"])
        crash = false
        const answer = yield* Agent.run("model-1", program)
        expect(mock.calls.length).toBe(2)
        expect(answer.slice(0, 2)).toEqual(["first answer", "second answer"])
        const report = Option.getOrThrow(yield* Agent.inspect("model-1"))
        expect(report.conversation.map((m) => `${m.role}:${m.content}`)).toEqual([
          "system:be brief",
          "user:hello",
          "assistant:first answer",
          "user:and?",
          "assistant:second answer"
        ])
        const usage = mock.calls.map((c) => Math.ceil(c.request.messages.reduce((n, m) => n + m.content.length, 0) / 4))
        expect(report.usage.inputTokens).toBe(usage[0]! + usage[1]!)
        expect(report.usage.outputTokens).toBe(Math.ceil("first answer".length / 4) + Math.ceil("second answer".length / 4))
        const journal = yield* journalOf("model-1")
        expect(journal.map((s) => [s.kind, s.status])).toEqual([["model", "completed"], ["model", "completed"]])
        expect(journal[0]!.result).not.toContain("\"raw\"")
      }).pipe(Effect.provide(env())))

    it.effect("the conversation snapshot is written with the step that completed it, never ahead of it", () =>
      Effect.gen(function*() {
        const parked = yield* Deferred.make<void>()
        const mock = Mock.make({ script: [Mock.succeed("one"), Mock.hang] })
        const llm = LlmClient.layerWithState({ routes: [{ name: "primary", provider: mock, model: "m", policy: { retry: false, timeouts: false } }] })
        const program = Effect.gen(function*() {
          yield* Agent.addMessages({ role: "user", content: "q1" })
          yield* Agent.turn({ maxTokens: 10 })
          yield* Agent.addMessages({ role: "user", content: "q2 (not yet journaled)" })
          yield* Deferred.succeed(parked, undefined)
          yield* Agent.turn({ maxTokens: 10 })
        }).pipe(Effect.provide(llm))
        yield* crashRun("snapshot-1", program, parked)
        const report = Option.getOrThrow(yield* Agent.inspect("snapshot-1"))
        expect(report.conversation.map((m) => m.content)).toEqual(["q1", "one"])
        expect(report.steps.length).toBe(1)
      }).pipe(Effect.provide(env())))

    it.effect("one live executor per run: a second gets RunLocked; a fenced-off executor stops with LeaseLost", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const first = yield* Agent.Agent
        const second = yield* Agent.make({ executorId: "exec-b" })
        const inside = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const program = Effect.gen(function*() {
          yield* Agent.step("one", Schema.Number, Effect.succeed(1))
          yield* Deferred.succeed(inside, undefined)
          yield* Deferred.await(release)
          return yield* Agent.step("two", Schema.Number, Effect.succeed(2))
        })
        const fiber = yield* Effect.fork(first.run("fenced-1", program))
        yield* Deferred.await(inside)
        const locked = yield* Effect.flip(second.run("fenced-1", program))
        expect(locked._tag).toBe("RunLocked")
        const again = yield* Effect.flip(first.run("fenced-1", program))
        expect(again._tag).toBe("RunLocked")
        // Another executor takes the run over (as after an expired lease): the first one's next write is fenced.
        yield* store.acquire("fenced-1", "exec-c", { now: 1e15, leaseMs: 1 })
        yield* Deferred.succeed(release, undefined)
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map((c) => JSON.stringify(c)), Option.getOrElse(() => ""))).toContain("LeaseLost")
        expect((yield* journalOf("fenced-1")).map((s) => s.name)).toEqual(["one"])
      }).pipe(Effect.provide(env())))

    it.effect("prune({ olderThan }) drops finished runs past retention", () =>
      Effect.gen(function*() {
        yield* Agent.run("prune-old", Agent.step("a", Schema.Number, Effect.succeed(1)))
        yield* TestClock.adjust("31 days")
        yield* Agent.run("prune-new", Agent.step("a", Schema.Number, Effect.succeed(1)))
        expect(yield* Agent.prune({ olderThan: "30 days" })).toBe(1)
        expect(Option.isNone(yield* Agent.inspect("prune-old"))).toBe(true)
        expect(Option.isSome(yield* Agent.inspect("prune-new"))).toBe(true)
      }).pipe(Effect.provide(env())))
  })

  describe(`Cancellation and listing — ${backend.name}`, () => {
    const step = (runId: string, index: number, status: CheckpointStore.StepStatus, at: number): CheckpointStore.StepRecord => ({
      runId,
      index,
      name: `s${index}`,
      key: `${runId}:${index}:s${index}`,
      kind: "tool",
      effect: "irreversible",
      status,
      argsHash: "h",
      result: status === "started" ? null : JSON.stringify({ v: { reason: "r" } }),
      startedAt: at,
      completedAt: status === "started" ? null : at
    })

    it.effect("cancel: a leased run keeps its executor until it stops; no claim after the request; released as cancelled, never acquired again", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const runOf = (id: string) => Effect.map(store.run(id), Option.getOrThrow)
        const a = yield* store.acquire("run-x", "a", { now: 0, leaseMs: 10_000 })
        expect(yield* store.record(a, step("run-x", 0, "completed", 500), undefined)).toEqual({ cancelRequested: false })
        const requested = yield* store.cancel("run-x", { now: 1_000, reason: "operator: wrong ticket" })
        expect(requested).toMatchObject({ status: "running", owner: "a", cancelRequestedAt: 1_000, cancelReason: "operator: wrong ticket" })
        // A second request keeps the first one's time and reason.
        expect(yield* store.cancel("run-x", { now: 2_000, reason: "again" })).toMatchObject({ cancelRequestedAt: 1_000, cancelReason: "operator: wrong ticket" })
        // The executor learns of it from the answers of its own writes and renewals…
        expect(yield* store.record(a, step("run-x", 1, "completed", 2_100), undefined)).toEqual({ cancelRequested: true })
        expect(yield* store.renew(a, { now: 2_200, leaseMs: 10_000 })).toEqual({ cancelRequested: true })
        // …and can no longer claim a tool call: nothing is written.
        const claim = yield* Effect.flip(store.claim(a, step("run-x", 2, "started", 2_300)))
        expect(claim).toMatchObject({ _tag: "RunCancelled", runId: "run-x", requestedAt: 1_000, reason: "operator: wrong ticket" })
        expect((yield* store.steps("run-x")).map((s) => s.index)).toEqual([0, 1])
        // Nobody else gets the run meanwhile — refused as cancelled, not as locked.
        expect((yield* Effect.flip(store.acquire("run-x", "b", { now: 3_000, leaseMs: 10_000 })))._tag).toBe("RunCancelled")
        expect(yield* runOf("run-x")).toMatchObject({ status: "running", owner: "a" })
        // However the executor ends (here: interrupted), a requested cancel is what the run becomes.
        yield* store.release(a, "running", 4_000)
        expect(yield* runOf("run-x")).toMatchObject({ status: "cancelled", owner: null, cancelRequestedAt: 1_000 })
        expect((yield* Effect.flip(store.acquire("run-x", "a", { now: 5_000, leaseMs: 10_000 })))._tag).toBe("RunCancelled")
        expect(yield* Effect.flip(store.cancel("run-x", { now: 6_000, reason: undefined }))).toMatchObject({ _tag: "RunAlreadyFinished", status: "cancelled" })
      }).pipe(Effect.provide(backend.layer())))

    it.effect("cancel: unleased runs at once (fencing off a stale executor); completed runs and unknown ids are typed errors", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const runOf = (id: string) => Effect.map(store.run(id), Option.getOrThrow)
        // Unknown id: an error, and nothing is created.
        expect(yield* Effect.flip(store.cancel("nope", { now: 0, reason: undefined }))).toMatchObject({ _tag: "RunNotFound", runId: "nope" })
        expect(Option.isNone(yield* store.run("nope"))).toBe(true)
        // Completed: final, nothing changes.
        const done = yield* store.acquire("done", "a", { now: 0, leaseMs: 10_000 })
        yield* store.release(done, "completed", 10)
        expect(yield* Effect.flip(store.cancel("done", { now: 20, reason: undefined }))).toMatchObject({ _tag: "RunAlreadyFinished", status: "completed" })
        expect(yield* runOf("done")).toMatchObject({ status: "completed", cancelRequestedAt: null })
        // Failed (resumable until now): cancelled at once.
        const failed = yield* store.acquire("failed", "a", { now: 0, leaseMs: 10_000 })
        yield* store.release(failed, "failed", 10)
        expect(yield* store.cancel("failed", { now: 20, reason: undefined })).toMatchObject({ status: "cancelled", cancelRequestedAt: 20, cancelReason: null })
        // An expired lease: cancelled at once and voided — the executor still running on it is fenced off.
        const stale = yield* store.acquire("stale", "a", { now: 0, leaseMs: 1_000 })
        expect(yield* store.cancel("stale", { now: 5_000, reason: "stuck" })).toMatchObject({ status: "cancelled", owner: null, leaseUntil: 0 })
        expect((yield* Effect.flip(store.record(stale, step("stale", 0, "completed", 5_001), undefined)))._tag).toBe("LeaseLost")
        expect((yield* Effect.flip(store.confirm(stale, { now: 5_001, leaseMs: 1_000 })))._tag).toBe("LeaseLost")
        expect(yield* store.steps("stale")).toEqual([])
        // An executor that died after a request (its lease ran out): the next acquisition cancels the run.
        yield* store.acquire("died", "a", { now: 0, leaseMs: 1_000 })
        expect(yield* store.cancel("died", { now: 500, reason: undefined })).toMatchObject({ status: "running" })
        expect((yield* Effect.flip(store.acquire("died", "b", { now: 2_000, leaseMs: 1_000 })))._tag).toBe("RunCancelled")
        expect(yield* runOf("died")).toMatchObject({ status: "cancelled", owner: null })
        // A request that came too late: the run completed first, stays completed and replayable.
        const late = yield* store.acquire("late", "a", { now: 0, leaseMs: 10_000 })
        yield* store.cancel("late", { now: 100, reason: undefined })
        yield* store.release(late, "completed", 200)
        expect(yield* runOf("late")).toMatchObject({ status: "completed", cancelRequestedAt: 100 })
        expect((yield* store.acquire("late", "b", { now: 300, leaseMs: 10_000 })).epoch).toBe(2)
      }).pipe(Effect.provide(backend.layer())))

    it.effect("list: most recently updated first, filtered by status, limited, with the journal's counts", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const a = yield* store.acquire("list-a", "w", { now: 1_000, leaseMs: 60_000 })
        yield* store.record(a, { ...step("list-a", 0, "completed", 1_100), kind: "model", effect: null }, undefined)
        yield* store.record(a, step("list-a", 1, "refused", 1_200), undefined)
        yield* store.claim(a, step("list-a", 2, "started", 1_300))
        const b = yield* store.acquire("list-b", "w", { now: 2_000, leaseMs: 60_000 })
        yield* store.record(b, step("list-b", 0, "unknown", 2_100), undefined)
        yield* store.release(b, "completed", 2_200)
        const c = yield* store.acquire("list-c", "w", { now: 3_000, leaseMs: 60_000 })
        yield* store.release(c, "failed", 3_100)
        const all = yield* store.list({ limit: 10 })
        expect(all.map((r) => [r.runId, r.status])).toEqual([["list-c", "failed"], ["list-b", "completed"], ["list-a", "running"]])
        expect(all[2]).toMatchObject({ owner: "w", epoch: 1, leaseUntil: 61_000, createdAt: 1_000, updatedAt: 1_300, cancelRequestedAt: null })
        expect(all[2]!.steps).toEqual({ total: 3, completed: 1, started: 1, refused: 1, unknown: 0 })
        expect(all[1]!.steps).toEqual({ total: 1, completed: 0, started: 0, refused: 0, unknown: 1 })
        expect(all[0]!.steps).toEqual({ total: 0, completed: 0, started: 0, refused: 0, unknown: 0 })
        expect("conversation" in all[0]!).toBe(false)
        expect((yield* store.list({ limit: 10, status: "completed" })).map((r) => r.runId)).toEqual(["list-b"])
        expect((yield* store.list({ limit: 2 })).map((r) => r.runId)).toEqual(["list-c", "list-b"])
        expect(yield* store.list({ limit: 10, status: "cancelled" })).toEqual([])
      }).pipe(Effect.provide(backend.layer())))

    it.effect("a cancel while a step runs: the step finishes and is recorded, the run stops at the next boundary, cancelled for good", () =>
      Effect.gen(function*() {
        const inside = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        const ran: Array<string> = []
        const program = Effect.gen(function*() {
          yield* Agent.step("one", Schema.String, Effect.sync(() => (ran.push("one"), "1")))
          yield* Agent.step("two", Schema.String, Effect.gen(function*() {
            yield* Deferred.succeed(inside, undefined)
            yield* Deferred.await(gate)
            ran.push("two")
            return "2"
          }))
          yield* Agent.step("three", Schema.String, Effect.sync(() => (ran.push("three"), "3")))
          return "finished"
        })
        const fiber = yield* Effect.fork(Agent.run("cancel-1", program))
        yield* Deferred.await(inside)
        const requested = yield* Agent.cancel("cancel-1", { reason: "customer withdrew" })
        expect(requested).toMatchObject({ status: "running", owner: "exec-a", cancelReason: "customer withdrew" })
        yield* Deferred.succeed(gate, undefined)
        const error = yield* Effect.flip(Fiber.join(fiber))
        expect(error).toMatchObject({ _tag: "RunCancelled", runId: "cancel-1" })
        expect(ran).toEqual(["one", "two"])
        expect((yield* journalOf("cancel-1")).map((s) => [s.name, s.status])).toEqual([["one", "completed"], ["two", "completed"]])
        const report = Option.getOrThrow(yield* Agent.inspect("cancel-1"))
        expect(report.run).toMatchObject({ status: "cancelled", owner: null, cancelReason: "customer withdrew" })
        // Never resumed by accident: the same call an application makes on restart is refused, as is a resume.
        expect(yield* Effect.flip(Agent.run("cancel-1", program))).toMatchObject({ _tag: "RunCancelled", reason: "customer withdrew" })
        expect((yield* Effect.flip(Agent.resume("cancel-1", program)))._tag).toBe("RunCancelled")
        expect(ran).toEqual(["one", "two"])
        expect((yield* Effect.flip(Agent.cancel("cancel-1")))._tag).toBe("RunAlreadyFinished")
      }).pipe(Effect.provide(env())))

    it.effect("a cancel committed before a tool's claim: the tool is never claimed nor called", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const callee = makeCallee()
        const { contexts, tool } = makeCrashableTool("irreversible", callee)
        const program = Effect.gen(function*() {
          yield* Agent.step("prepare", Schema.Number, Effect.succeed(1))
          // Between the step's record and the tool's claim (as if requested by another process right then).
          yield* Effect.orDie(Effect.flatMap(Agent.runId, (id) => store.cancel(id, { now: 1, reason: undefined })))
          return yield* Agent.useTool(tool, { item: "x" })
        })
        const error = yield* Effect.flip(Agent.run("cancel-2", program))
        expect(error._tag).toBe("RunCancelled")
        expect(contexts).toEqual([])
        expect(callee.effects).toEqual([])
        expect((yield* journalOf("cancel-2")).map((s) => s.name)).toEqual(["prepare"])
        expect(Option.getOrThrow(yield* store.run("cancel-2")).status).toBe("cancelled")
      }).pipe(Effect.provide(env())))

    it.effect("a program waiting between steps stops at its next lease renewal", () =>
      Effect.gen(function*() {
        const waiting = yield* Deferred.make<void>()
        let after = 0
        const program = Effect.gen(function*() {
          yield* Agent.step("one", Schema.Number, Effect.succeed(1))
          yield* Deferred.succeed(waiting, undefined)
          yield* Effect.never // waiting for something outside the journal (a human, a webhook)
          after++
        })
        const fiber = yield* Effect.fork(Agent.run("cancel-3", program))
        yield* Deferred.await(waiting)
        yield* Agent.cancel("cancel-3")
        // The lease (30 s) is renewed every 10 s; that renewal reports the request.
        yield* TestClock.adjust("10 seconds")
        expect(yield* Effect.flip(Fiber.join(fiber))).toMatchObject({ _tag: "RunCancelled", runId: "cancel-3" })
        expect(after).toBe(0)
        expect(Option.getOrThrow(yield* Agent.inspect("cancel-3")).run.status).toBe("cancelled")
      }).pipe(Effect.provide(env({ leaseDuration: "30 seconds" }))))

    it.effect("resume: continues an unfinished run; RunNotFound creates nothing; a completed run is RunAlreadyFinished", () =>
      Effect.gen(function*() {
        let fail = true
        const program = Effect.gen(function*() {
          yield* Agent.step("a", Schema.Number, Effect.succeed(1))
          return yield* Agent.step("b", Schema.Number, fail ? Effect.fail("b failed" as const) : Effect.succeed(2))
        })
        expect(yield* Effect.flip(Agent.resume("resume-1", program))).toMatchObject({ _tag: "RunNotFound", runId: "resume-1" })
        expect(Option.isNone(yield* Agent.inspect("resume-1"))).toBe(true)
        expect(yield* Effect.flip(Agent.run("resume-1", program))).toBe("b failed")
        fail = false
        expect(yield* Agent.resume("resume-1", program)).toBe(2)
        expect(yield* Effect.flip(Agent.resume("resume-1", program))).toMatchObject({ _tag: "RunAlreadyFinished", status: "completed" })
        expect((yield* Agent.list({ status: "completed" })).map((r) => r.runId)).toEqual(["resume-1"])
      }).pipe(Effect.provide(env())))
  })

  describe(`Tool protocol — ${backend.name}`, () => {
    interface ResumeCase {
      readonly name: string
      readonly effect: Tool.EffectKind
      readonly crash: Exclude<Crash, "none">
      readonly reconcile?: "lookup" | "unknown"
      readonly advanceHours?: number
      readonly reply: Agent.ToolReply<string>["_tag"]
      readonly effects: number
      readonly dedupeHits?: number
      /** What the resumed call's tool context says (undefined: the tool is not called on resume). */
      readonly resend?: boolean
      readonly value?: string
    }

    const cases: ReadonlyArray<ResumeCase> = [
      { name: "pure, between claim and act → re-run", effect: "pure", crash: "before-act", reply: "Success", effects: 1, resend: false },
      { name: "idempotent, between act and record → re-run", effect: "idempotent", crash: "after-act", reply: "Success", effects: 2, resend: true },
      {
        name: "keyed, between act and record, within retention → re-sent with the same key, deduped by the callee",
        effect: "keyed",
        crash: "after-act",
        reply: "Success",
        effects: 1,
        dedupeHits: 1,
        resend: true,
        value: "done:x#1"
      },
      { name: "keyed, past retention, no reconcile → unknown", effect: "keyed", crash: "after-act", advanceHours: 25, reply: "Unknown", effects: 1 },
      {
        name: "keyed, past retention, reconcile finds it not applied → made once",
        effect: "keyed",
        crash: "before-act",
        advanceHours: 25,
        reconcile: "lookup",
        reply: "Success",
        effects: 1,
        resend: true
      },
      { name: "irreversible, between act and record, no reconcile → unknown, never re-sent", effect: "irreversible", crash: "after-act", reply: "Unknown", effects: 1 },
      { name: "irreversible, between claim and act, no reconcile → unknown, never sent", effect: "irreversible", crash: "before-act", reply: "Unknown", effects: 0 },
      {
        name: "irreversible, reconcile finds it applied → recorded from the callee, not re-sent",
        effect: "irreversible",
        crash: "after-act",
        reconcile: "lookup",
        reply: "Success",
        effects: 1,
        value: "reconciled:x"
      },
      {
        name: "irreversible, reconcile finds it not applied → made once",
        effect: "irreversible",
        crash: "before-act",
        reconcile: "lookup",
        reply: "Success",
        effects: 1,
        resend: true
      },
      { name: "irreversible, reconcile cannot tell → unknown", effect: "irreversible", crash: "after-act", reconcile: "unknown", reply: "Unknown", effects: 1 }
    ]

    it.effect.each(cases)("resume: $name", (c) =>
      Effect.gen(function*() {
        const callee = makeCallee()
        const { contexts, control, tool } = makeCrashableTool(c.effect, callee, c.reconcile === undefined ? {} : { reconcile: true, reconcileAnswer: c.reconcile })
        const program = Agent.useTool(tool, { item: "x" })
        control.crash = c.crash
        yield* crashRun("tool-run", program, control.parked)
        const journal = yield* journalOf("tool-run")
        expect(journal.map((s) => s.status)).toEqual([c.effect === "pure" ? undefined : "started"].filter((s) => s !== undefined))
        if (c.advanceHours !== undefined) yield* TestClock.adjust(`${c.advanceHours} hours`)
        control.crash = "none"
        const callsBefore = contexts.length
        const reply = yield* Agent.run("tool-run", program)
        expect(reply._tag).toBe(c.reply)
        expect(callee.effects.length).toBe(c.effects)
        expect(callee.dedupeHits).toBe(c.dedupeHits ?? 0)
        const resumedCalls = contexts.slice(callsBefore)
        if (c.resend === undefined) expect(resumedCalls).toEqual([])
        else {
          expect(resumedCalls.map((ctx) => ctx.resend)).toEqual([c.resend])
          // Every call of the step carries the same deterministic key.
          expect(new Set(contexts.map((ctx) => ctx.idempotencyKey))).toEqual(new Set(["tool-run:0:" + tool.name]))
        }
        // ... and the fencing token of the lease it ran under: epoch 1, then 2 after the resume's acquisition.
        expect(contexts.map((ctx) => ctx.fencingToken)).toEqual(contexts.map((_, i) => i + 1))
        if (c.value !== undefined && reply._tag === "Success") expect(reply.value).toBe(c.value)
        if (reply._tag === "Unknown") {
          expect(reply.error._tag).toBe("ToolOutcomeUnknown")
          expect(reply.text).toContain("unknown")
          expect(reply.text).toContain("Do not call it again")
        }
        const final = yield* journalOf("tool-run")
        expect(final.map((s) => s.status)).toEqual([c.reply === "Unknown" ? "unknown" : "completed"])
        // A later resume replays the recorded outcome and calls nothing.
        const callsAfter = contexts.length
        const again = yield* Agent.run("tool-run", program)
        expect(again).toEqual(reply)
        expect(contexts.length).toBe(callsAfter)
        expect(callee.effects.length).toBe(c.effects)
        // The strict variant surfaces an unknown outcome as the typed error.
        if (c.reply === "Unknown") {
          const strict = yield* Effect.flip(Agent.run("tool-run", Agent.callTool(tool, { item: "x" })))
          expect(strict._tag).toBe("ToolOutcomeUnknown")
        }
      }).pipe(Effect.provide(env())))

    it.effect("the same key with different arguments fails loudly, whether claimed or completed", () =>
      Effect.gen(function*() {
        const callee = makeCallee()
        const { control, tool } = makeCrashableTool("keyed", callee)
        control.crash = "after-act"
        yield* crashRun("conflict-1", Agent.useTool(tool, { item: "x" }), control.parked)
        control.crash = "none"
        const claimed = yield* Effect.flip(Agent.run("conflict-1", Agent.useTool(tool, { item: "y" })))
        expect(claimed._tag).toBe("IdempotencyConflict")
        if (claimed._tag === "IdempotencyConflict") expect(claimed.key).toBe("conflict-1:0:keyed_tool")
        yield* Agent.run("conflict-2", Agent.useTool(tool, { item: "x" }))
        const completed = yield* Effect.flip(Agent.run("conflict-2", Agent.useTool(tool, { item: "z" })))
        expect(completed._tag).toBe("IdempotencyConflict")
        expect(callee.effects.map((e) => e.item)).toEqual(["x", "x"])
      }).pipe(Effect.provide(env())))

    it.effect("the fence before the act: an executor taken over while reconciling never calls the tool", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const callee = makeCallee()
        const { contexts, control, tool } = makeCrashableTool("irreversible", callee)
        control.crash = "before-act"
        yield* crashRun("fence-1", Agent.useTool(tool, { item: "x" }), control.parked)
        control.crash = "none"
        // The resume reconciles; meanwhile (a pause past the lease) another executor takes the run over.
        const reconciling = Tool.make({
          ...tool,
          reconcile: () => Effect.as(Effect.orDie(store.acquire("fence-1", "exec-c", { now: 1e15, leaseMs: 1 })), Tool.notApplied)
        })
        const error = yield* Effect.flip(Agent.run("fence-1", Agent.useTool(reconciling, { item: "x" })))
        expect(error).toMatchObject({ _tag: "LeaseLost", runId: "fence-1", epoch: 2 })
        expect(contexts.length).toBe(1) // the first life's call, parked before its effect; none since
        expect(callee.effects).toEqual([])
        expect((yield* journalOf("fence-1")).map((s) => s.status)).toEqual(["started"])
      }).pipe(Effect.provide(env())))

    it.effect("confirmLease right before the effect: a tool whose executor was taken over stops with LeaseLost, unrecorded", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        const callee = makeCallee()
        const tokens: Array<number> = []
        const charge = (takeOver: boolean) =>
          Tool.make({
            name: "charge",
            effect: "irreversible",
            parameters: Args,
            success: Schema.String,
            run: ({ item }, context) =>
              Effect.gen(function*() {
                tokens.push(context.fencingToken)
                // Work before the effect, during which the executor is paused past its lease and replaced.
                if (takeOver) yield* Effect.orDie(store.acquire(context.runId, "exec-c", { now: 1e15, leaseMs: 1 }))
                yield* context.confirmLease
                return yield* callee.perform(context.idempotencyKey, item)
              })
          })
        const error = yield* Effect.flip(Agent.run("fence-2", Agent.useTool(charge(true), { item: "x" })))
        expect(error).toMatchObject({ _tag: "LeaseLost", runId: "fence-2", epoch: 1 })
        expect(callee.effects).toEqual([])
        // Not recorded as the tool's failure: the claim stays for whoever holds the run now.
        expect((yield* journalOf("fence-2")).map((s) => s.status)).toEqual(["started"])
        // While the lease is held, the confirmation passes and the tool acts once.
        const reply = yield* Agent.run("fence-3", Agent.useTool(charge(false), { item: "y" }))
        expect(reply._tag).toBe("Success")
        expect(callee.effects.map((e) => e.item)).toEqual(["y"])
        expect(tokens).toEqual([1, 1])
      }).pipe(Effect.provide(env())))

    it.effect("a tool's typed failure becomes text for the agent and is recorded; interruption is not swallowed", () =>
      Effect.gen(function*() {
        class SearchDown extends Schema.TaggedError<SearchDown>()("SearchDown", { message: Schema.String }) {}
        let calls = 0
        const search = Tool.make({
          name: "web_search",
          effect: "idempotent",
          parameters: Schema.Struct({ q: Schema.String }),
          success: Schema.Array(Schema.String),
          run: () =>
            Effect.suspend(() => {
              calls++
              return Effect.fail(new SearchDown({ message: "upstream returned 503" }))
            })
        })
        const program = Effect.gen(function*() {
          const reply = yield* Agent.useTool(search, { q: "effect" })
          const after = yield* Agent.step("after", Schema.String, Effect.succeed("continued"))
          return { reply, after }
        })
        const { after, reply } = yield* Agent.run("degrade-1", program)
        expect(after).toBe("continued")
        expect(reply._tag).toBe("Failure")
        expect(reply.text).toContain("web_search is unavailable: SearchDown: upstream returned 503")
        expect(reply.text).toContain("note the limitation")
        if (reply._tag === "Failure") expect(reply.error).toMatchObject({ _tag: "ToolFailed", errorTag: "SearchDown" })
        const replayed = yield* Agent.run("degrade-1", program)
        expect(replayed.reply).toEqual(reply)
        expect(calls).toBe(1)
        const strict = yield* Effect.flip(Agent.run("degrade-2", Agent.callTool(search, { q: "x" })))
        expect(strict._tag).toBe("ToolFailed")

        const interrupted = Tool.make({
          name: "slow",
          effect: "irreversible",
          parameters: Schema.Struct({}),
          success: Schema.String,
          run: () => Effect.interrupt
        })
        const exit = yield* Effect.exit(Agent.run("degrade-3", Agent.useTool(interrupted, {})))
        expect(Exit.isInterrupted(exit)).toBe(true)
        expect((yield* journalOf("degrade-3")).map((s) => s.status)).toEqual(["started"])
      }).pipe(Effect.provide(env())))

    it.effect("degraded guard: irreversible tools refuse without using their key, and run after recovery exactly once", () =>
      Effect.gen(function*() {
        const callee = makeCallee()
        const { contexts, tool: transfer } = makeCrashableTool("irreversible", callee)
        const { tool: keyed } = makeCrashableTool("keyed", callee)
        const forced = Tool.make({ ...transferOptions(callee), whenDegraded: "proceed" })
        const degraded = yield* DegradedMode.DegradedMode
        const program = Effect.gen(function*() {
          const refused = yield* Agent.useTool(transfer, { item: "t1" })
          const keyedReply = yield* Agent.useTool(keyed, { item: "k1" })
          const forcedReply = yield* Agent.useTool(forced, { item: "f1" })
          yield* Agent.step("recover", Schema.Void, SubscriptionRef.set(degraded, { degraded: false }))
          const retried = yield* Agent.useTool(transfer, { item: "t1" })
          return [refused, keyedReply, forcedReply, retried]
        })
        yield* SubscriptionRef.set(degraded, { degraded: true, route: "backup", reason: "served by fallback route backup" })
        const replies = yield* Agent.run("guard-1", program)
        expect(replies.map((r) => r._tag)).toEqual(["Refused", "Success", "Success", "Success"])
        const refusal = replies[0]!
        expect(refusal.text).toContain("refused: served by fallback route backup")
        if (refusal._tag === "Refused") expect(refusal.error._tag).toBe("ToolRefused")
        // The refused call never reached the tool, and its key was never sent anywhere.
        expect(contexts.map((c) => c.idempotencyKey)).toEqual(["guard-1:4:irreversible_tool"])
        expect(callee.effects.map((e) => e.item)).toEqual(["k1", "f1", "t1"])
        const journal = yield* journalOf("guard-1")
        expect(journal.map((s) => s.status)).toEqual(["refused", "completed", "completed", "completed", "completed"])
        // A replay (degraded again) shows the same refusal and executes nothing.
        yield* SubscriptionRef.set(degraded, { degraded: true })
        const replay = yield* Agent.run("guard-1", program)
        expect(replay).toEqual(replies)
        expect(callee.effects.length).toBe(3)
      }).pipe(Effect.provide(env())))

    it.effect("degraded guard: the primary's breaker open also refuses", () =>
      Effect.gen(function*() {
        const callee = makeCallee()
        const { tool } = makeCrashableTool("irreversible", callee)
        const breakers = yield* CircuitBreaker.CircuitBreakers
        const breaker = yield* breakers.get("primary/gpt-x")
        yield* breaker.isolate
        const reply = yield* Agent.run("guard-2", Agent.useTool(tool, { item: "x" }))
        expect(reply._tag).toBe("Refused")
        expect(reply.text).toContain("circuit breaker (primary/gpt-x) is isolated")
        yield* breaker.reset
        const next = yield* Agent.run("guard-3", Agent.useTool(tool, { item: "x" }))
        expect(next._tag).toBe("Success")
        expect(callee.effects.length).toBe(1)
      }).pipe(Effect.provide(Layer.merge(env({ primaryBreaker: "primary/gpt-x" }), CircuitBreaker.layer))))
  })
}

/** An irreversible transfer tool's options over the callee (for variants made with `Tool.make`). */
const transferOptions = (callee: ReturnType<typeof makeCallee>) => ({
  name: "forced_transfer",
  effect: "irreversible" as const,
  parameters: Args,
  success: Schema.String,
  run: ({ item }: { readonly item: string }, context: Tool.ToolContext) => callee.perform(context.idempotencyKey, item)
})

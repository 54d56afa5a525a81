/**
 * The outage test, over real HTTP: a durable agent whose primary route (OpenAI wire) goes down
 * mid-run keeps going on the fallback (Anthropic wire) — both served by the ChaosServer — while its
 * irreversible transfer is refused; once the primary is back the transfer runs, exactly once, and a
 * replay of the finished run neither calls a model nor the tool again.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Agent from "../../src/agent/Agent.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as Tool from "../../src/agent/Tool.js"
import * as DegradedMode from "../../src/DegradedMode.js"
import * as LlmClient from "../../src/LlmClient.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import type * as Scenario from "../../src/testing/Scenario.js"
import * as Transport from "../../src/Transport.js"
import { makeCallee } from "./conformance.js"

const scenario = (primaryDown: boolean): Scenario.Scenario => ({
  routes: [
    {
      name: "primary",
      model: "primary-model",
      content: { kind: "echo" },
      ...(primaryDown ? { mix: [{ fault: { kind: "overloaded" }, rate: 1 }] } : {})
    },
    { name: "backup", model: "backup-model", content: { kind: "echo" } }
  ]
})

describe("Outage mid-run", () => {
  it.live("continues on the fallback, refuses the irreversible tool while degraded, runs it once after recovery", () =>
    Effect.gen(function*() {
      const server = yield* ChaosServer.make({ scenario: scenario(false) })
      const primary = yield* OpenAi.make({ apiKey: Redacted.make("sk-outage-test"), baseUrl: server.openAiBaseUrl })
      const backup = yield* Anthropic.make({ apiKey: Redacted.make("sk-ant-outage-test"), baseUrl: server.anthropicBaseUrl })
      const callee = makeCallee()
      const transfer = Tool.make({
        name: "transfer_funds",
        effect: "irreversible",
        parameters: Schema.Struct({ to: Schema.String, cents: Schema.Int }),
        success: Schema.String,
        run: ({ cents, to }, { idempotencyKey }) => callee.perform(idempotencyKey, `${cents} to ${to}`)
      })

      // The agent: five turns; from turn 2 on it tries the pending transfer after each turn until it goes through.
      const program = (control: (turn: number) => Effect.Effect<void>) =>
        Effect.gen(function*() {
          yield* Agent.addMessages({ role: "user", content: "Pay the invoice of ACME: 12000 cents." })
          const routes: Array<string> = []
          const transfers: Array<string> = []
          let paid = false
          for (let turn = 1; turn <= 5; turn++) {
            yield* control(turn)
            const reply = yield* Agent.turn({ maxTokens: 200 })
            routes.push(reply.route)
            if (turn >= 2 && !paid) {
              const outcome = yield* Agent.useTool(transfer, { to: "ACME", cents: 12_000 }, { callId: `call-${turn}` })
              transfers.push(outcome._tag)
              paid = outcome._tag === "Success"
            }
            yield* Agent.addMessages({ role: "user", content: `turn ${turn} done` })
          }
          return { routes, transfers }
        })

      const outage = (turn: number) =>
        turn === 2 ? server.setScenario(scenario(true)).pipe(Effect.orDie) : turn === 4 ? server.setScenario(scenario(false)).pipe(Effect.orDie) : Effect.void

      const env = Layer.mergeAll(
        Agent.layer({ executorId: "outage-test" }),
        LlmClient.layerWithState({
          routes: [
            // The breaker is off so that every call during the outage hits the primary (no open-period timing in the test).
            { name: "primary", provider: primary, model: "primary-model", policy: { retry: { maxAttempts: 1 }, breaker: false } },
            { name: "backup", provider: backup, model: "backup-model", policy: { retry: { maxAttempts: 2, base: "10 millis" } } }
          ]
        })
      ).pipe(Layer.provideMerge(CheckpointStore.layerMemory))

      yield* Effect.gen(function*() {
        const result = yield* Agent.run("outage-1", program(outage))
        expect(result.routes).toEqual(["primary", "backup", "backup", "primary", "primary"])
        expect(result.transfers).toEqual(["Refused", "Refused", "Success"])
        expect(callee.effects).toEqual([{ key: "outage-1:6:transfer_funds", item: "12000 to ACME" }])
        expect((yield* SubscriptionRef.get(yield* DegradedMode.DegradedMode)).degraded).toBe(false)

        const report = Option.getOrThrow(yield* Agent.inspect("outage-1"))
        expect(report.steps.map((s) => `${s.kind}:${s.status}`)).toEqual([
          "model:completed",
          "model:completed",
          "tool:refused",
          "model:completed",
          "tool:refused",
          "model:completed",
          "tool:completed",
          "model:completed"
        ])
        // The refusals were told to the model: the conversation holds them as tool messages.
        const toolMessages = report.conversation.filter((m) => m.role === "tool").map((m) => m.content)
        expect(toolMessages[0]).toContain("transfer_funds refused")
        expect(toolMessages[2]).toBe("\"done:12000 to ACME#1\"")

        // A replay of the finished run: no model call, no transfer.
        const served = (yield* server.stats).total
        const replay = yield* Agent.run("outage-1", program(() => Effect.void))
        expect(replay).toEqual(result)
        expect((yield* server.stats).total).toBe(served)
        expect(callee.effects.length).toBe(1)
      }).pipe(Effect.provide(env))
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))
})

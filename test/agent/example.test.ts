/**
 * The complete example agent of docs/durable-agents.md, run as written (the model is a scripted
 * provider that asks for tools, since the ChaosServer does not produce tool calls): a support agent
 * that looks an order up (pure), refunds it (keyed), emails the customer (irreversible, reconciled)
 * and answers — then is "crashed" between the refund and the email, and resumed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Agent from "../../src/agent/Agent.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as Tool from "../../src/agent/Tool.js"
import * as LlmClient from "../../src/LlmClient.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../../src/Provider.js"

// --- The services the tools talk to (in the docs: your order system, payment provider, mailer) ----
const refunds = new Map<string, number>()
const emails: Array<{ readonly key: string; readonly to: string }> = []
let emailGate: Deferred.Deferred<void> | undefined
let emailParked: Deferred.Deferred<void> | undefined
const orders = {
  get: (id: string) => Effect.succeed({ id, customer: "ada@example.com", cents: 4_200, status: "delivered" })
}
const payments = {
  // Keyed: the payment provider dedupes by idempotency key (like Stripe).
  refund: (orderId: string, cents: number, idempotencyKey: string) =>
    Effect.sync(() => {
      if (!refunds.has(idempotencyKey)) refunds.set(idempotencyKey, cents)
      return { refundId: `re_${orderId}`, cents }
    })
}
const mailer = {
  send: (to: string, idempotencyKey: string) =>
    Effect.gen(function*() {
      emails.push({ key: idempotencyKey, to })
      if (emailParked !== undefined && emailGate !== undefined) {
        yield* Deferred.succeed(emailParked, undefined)
        yield* Deferred.await(emailGate)
      }
      return { messageId: `msg_${emails.length}` }
    }),
  findByKey: (idempotencyKey: string) => Effect.sync(() => emails.find((e) => e.key === idempotencyKey))
}

// --- The example, as in docs/durable-agents.md ---------------------------------------------------
const lookupOrder = Tool.make({
  name: "lookup_order",
  description: "Look an order up by id",
  effect: "pure",
  parameters: Schema.Struct({ orderId: Schema.String }),
  success: Schema.Struct({ id: Schema.String, customer: Schema.String, cents: Schema.Int, status: Schema.String }),
  run: ({ orderId }) => orders.get(orderId)
})

const refundOrder = Tool.make({
  name: "refund_order",
  description: "Refund an order in full",
  effect: "keyed", // the payment API dedupes by idempotency key for 24 h
  parameters: Schema.Struct({ orderId: Schema.String, cents: Schema.Int }),
  success: Schema.Struct({ refundId: Schema.String, cents: Schema.Int }),
  run: ({ cents, orderId }, { idempotencyKey }) => payments.refund(orderId, cents, idempotencyKey)
})

const emailCustomer = Tool.make({
  name: "email_customer",
  description: "Email the customer",
  effect: "irreversible", // a second email is a second email
  parameters: Schema.Struct({ to: Schema.String, body: Schema.String }),
  success: Schema.Struct({ messageId: Schema.String }),
  run: ({ to }, { idempotencyKey }) => mailer.send(to, idempotencyKey),
  // After a crash between "sent" and "recorded": ask the mailer whether it went out.
  reconcile: (_args, { idempotencyKey }) =>
    Effect.map(mailer.findByKey(idempotencyKey), (sent) =>
      sent === undefined ? Tool.notApplied : Tool.applied({ messageId: "msg_reconciled" }))
})

const tools = Agent.toolkit.add(lookupOrder).add(refundOrder).add(emailCustomer)

/** The agent loop: model turns, each tool call dispatched as a durable step, until the model answers. */
const support = (ticket: string) =>
  Effect.gen(function*() {
    yield* Agent.addMessages(
      { role: "system", content: "You are a support agent. Use the tools; refund only delivered orders." },
      { role: "user", content: ticket }
    )
    for (let turn = 0; turn < 8; turn++) {
      const reply = yield* Agent.turn({ maxTokens: 800, tools: tools.definitions })
      if (reply.response.toolCalls.length === 0) return reply.text
      for (const call of reply.response.toolCalls) yield* tools.dispatch(call)
    }
    return "I could not finish this ticket; a colleague will follow up."
  })

// --- A scripted model for the test --------------------------------------------------------------
const calls: Array<GenerateRequest> = []
const scripted: ProviderShape = {
  name: "scripted",
  generate: (request) =>
    Effect.sync((): GenerateResponse => {
      calls.push(request)
      const toolCall = (name: string, args: unknown) => ({ id: `call_${calls.length}`, name, arguments: JSON.stringify(args) })
      const step = request.messages.filter((m) => m.role === "assistant").length
      const toolCalls = [
        [toolCall("lookup_order", { orderId: "A-17" })],
        [toolCall("refund_order", { orderId: "A-17", cents: 4_200 }), toolCall("email_customer", { to: "ada@example.com", body: "Refunded." })],
        []
      ][step] ?? []
      return {
        provider: "scripted",
        model: request.model,
        text: toolCalls.length === 0 ? "Order A-17 was refunded (42.00) and Ada was emailed." : "",
        toolCalls,
        finishReason: toolCalls.length === 0 ? "stop" : "tool_calls",
        usage: { inputTokens: 100, outputTokens: 20, totalTokens: 120 }
      }
    }),
  stream: () => {
    throw new Error("not used")
  }
}

describe("docs/durable-agents.md example", () => {
  it.effect("runs the support agent, survives a crash between refund and email, and never repeats either", () =>
    Effect.gen(function*() {
      emailParked = yield* Deferred.make<void>()
      emailGate = yield* Deferred.make<void>()
      const agent = yield* Agent.Agent
      const first = yield* Effect.fork(agent.run("ticket-1234", support("Order A-17 arrived broken, please refund.")))
      yield* Deferred.await(emailParked)
      yield* Fiber.interrupt(first) // the process "dies" after the email was handed to the mailer
      emailParked = undefined
      emailGate = undefined

      const answer = yield* Agent.run("ticket-1234", support("Order A-17 arrived broken, please refund."))
      expect(answer).toBe("Order A-17 was refunded (42.00) and Ada was emailed.")
      expect(refunds.size).toBe(1)
      expect(emails.length).toBe(1) // reconciled, not re-sent
      expect(calls.length).toBe(3) // two turns journaled before the crash were not asked again

      const report = Option.getOrThrow(yield* Agent.inspect("ticket-1234"))
      expect(report.steps.map((s) => `${s.name}:${s.status}`)).toEqual([
        "model:completed",
        "lookup_order:completed",
        "model:completed",
        "refund_order:completed",
        "email_customer:completed",
        "model:completed"
      ])
      expect(report.usage.totalTokens).toBe(360)
      expect(report.conversation.at(-1)).toMatchObject({ role: "assistant", content: answer })
    }).pipe(Effect.provide(
      Layer.mergeAll(
        Agent.layer({ primaryBreaker: "primary/gpt-4o" }),
        LlmClient.layerWithState({ routes: [{ name: "primary", provider: scripted, model: "gpt-4o" }] })
      ).pipe(Layer.provideMerge(CheckpointStore.layerMemory))
    )))
})

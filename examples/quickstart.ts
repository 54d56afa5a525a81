import { Config, Effect, Layer, Schema } from "effect"
import { Anthropic, LlmClient, OpenAi, Transport } from "effect-llm-resilience"

const Triage = Schema.Struct({ severity: Schema.Literal("low", "high"), summary: Schema.String })

const Llm = Layer.unwrapEffect(Effect.gen(function*() {
  const openai = yield* OpenAi.make({ apiKey: yield* Config.redacted("OPENAI_API_KEY") })
  const anthropic = yield* Anthropic.make({ apiKey: yield* Config.redacted("ANTHROPIC_API_KEY") })
  return LlmClient.layerWithState({
    deadline: "30 seconds", // one wall clock for every retry, wait and fallback; a hung primary hands over at 15 s
    repairAttempts: 1, // re-ask a route once with the decode errors before moving on
    routes: [
      { name: "primary", provider: openai, model: "gpt-4o-mini" },
      { name: "fallback", provider: anthropic, model: "claude-sonnet-4-5" }
    ]
  })
})).pipe(Layer.provide(Transport.layer()))

const program = LlmClient.generateObject(Triage, {
  messages: [{ role: "user", content: "Triage: checkout returns 502 for 3% of users." }],
  maxTokens: 300
}).pipe(
  // A 200 is not success: the value decoded against Triage, or the chain moved on.
  Effect.tap((r) => Effect.log(`${r.route}${r.degraded ? " (degraded)" : ""}: ${r.value.summary}`)),
  Effect.catchTag("AllRoutesFailed", (e) => Effect.logError(e.attempts.map((a) => `${a.route}#${a.attempt} ${a.outcome}`)))
)

Effect.runPromise(program.pipe(Effect.provide(Llm)))

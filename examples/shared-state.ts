// N workers behind one API key: one RPM / TPM budget, one 429 cooldown and shared breaker opens,
// through Redis. Typechecked with the tests (see docs/policies/shared-state.md).
import { Config, Effect, Layer } from "effect"
import { LlmClient, OpenAi, Transport } from "effect-llm-resilience"
import { SharedState } from "effect-llm-resilience/redis"

// Policy's whole state (limiters, breakers, retry budgets) — shared instead of per process.
const State = SharedState.layerConfig(Config.all({
  url: Config.redacted("REDIS_URL"), // redis://:password@host:6379 — kept Redacted
  rateLimiter: Config.succeed({ prefix: "acme-prod:", onRedisError: "fail-open" as const, fallbackShare: 1 / 8 })
}))

const Llm = Layer.unwrapEffect(Effect.gen(function*() {
  const openai = yield* OpenAi.make({ apiKey: yield* Config.redacted("OPENAI_API_KEY") })
  return LlmClient.layer({
    routes: [{
      name: "primary",
      provider: openai,
      model: "gpt-4o-mini",
      // Every worker configures the same limits: they are the org's, not the process's.
      policy: { rateLimit: { requestsPerMinute: 500, tokensPerMinute: 200_000, maxConcurrency: 16, maxWait: "5 seconds" } }
    }]
  })
})).pipe(Layer.provide(State), Layer.provide(Transport.layer()))

const program = LlmClient.generate({ messages: [{ role: "user", content: "hi" }], maxTokens: 64 }).pipe(
  Effect.tap((r) => Effect.log(r.response.text))
)

Effect.runPromise(program.pipe(Effect.provide(Llm)))

/**
 * docs/effect-ai.md stays true: every TypeScript block in it (imports aside) appears verbatim in this
 * file, which the typecheck compiles — so the guide's code is code that builds against the current
 * API. (The behaviour it describes is exercised by the other tests in this folder.)
 */
import { Chat, LanguageModel, Tool, Toolkit } from "@effect/ai"
import { AnthropicClient, AnthropicLanguageModel } from "@effect/ai-anthropic"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { describe, expect, it } from "@effect/vitest"
import { Config, Effect, ExecutionPlan, Layer, Option, Redacted, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Ai from "../../src/Ai.js"
import { Anthropic, Fallback, OpenAiResponses, Policy, Transport } from "../../src/index.js"

export const theChainAsALanguageModel = () => {
  // The @effect/ai program — unchanged.
  const GetWeather = Tool.make("GetWeather", {
    parameters: { city: Schema.String },
    success: Schema.Struct({ city: Schema.String, tempC: Schema.Number })
  })
  const WeatherToolkit = Toolkit.make(GetWeather)
  const WeatherHandlers = WeatherToolkit.toLayer({ GetWeather: ({ city }) => Effect.succeed({ city, tempC: 21 }) })
  const Forecast = Schema.Struct({ city: Schema.String, summary: Schema.String })

  const program = Effect.gen(function*() {
    const chat = yield* Chat.empty
    yield* chat.generateText({ prompt: "What is the weather in Paris?", toolkit: WeatherToolkit })
    const forecast = yield* chat.generateObject({ prompt: "Summarise it as JSON.", schema: Forecast })
    // Optional: how the answer was obtained.
    const outcome = Ai.resilienceOf(forecast)
    if (Option.isSome(outcome) && outcome.value.degraded) yield* Effect.logWarning(`answered by ${outcome.value.route}`)
    return forecast.value
  })

  // The one Layer that changes.
  const ResilientModel = Layer.unwrapEffect(Effect.gen(function*() {
    const openai = yield* OpenAiResponses.make({ apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") })
    const anthropic = yield* Anthropic.make({ apiKey: Redacted.make(process.env.ANTHROPIC_API_KEY ?? "") })
    return Ai.layer({
      routes: [
        { name: "primary", provider: openai, model: "gpt-4o-mini" },
        { name: "fallback", provider: anthropic, model: "claude-haiku-4-5" }
      ],
      deadline: "30 seconds",
      repairAttempts: 1,
      defaults: { maxTokens: 1024 }
    })
  })).pipe(Layer.provide(Layer.merge(Policy.layerState, Transport.layer())))

  const main = program.pipe(Effect.provide(WeatherHandlers), Effect.provide(ResilientModel))
  return main satisfies Effect.Effect<{ readonly city: string; readonly summary: string }, unknown>
}

export const modelsAsRoutes = () => {
  // No `transformClient` that retries: the route's policy is the only retry layer.
  const Clients = Layer.mergeAll(
    OpenAiClient.layerConfig({ apiKey: Config.redacted("OPENAI_API_KEY") }),
    AnthropicClient.layerConfig({ apiKey: Config.redacted("ANTHROPIC_API_KEY") })
  ).pipe(Layer.provide(Transport.layer()))

  const chain = Effect.gen(function*() {
    const primary = yield* Ai.route({
      name: "primary",
      model: "gpt-4o-mini",
      languageModel: OpenAiLanguageModel.model("gpt-4o-mini"),
      configure: (request) => OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.maxTokens })
    })
    const fallback = yield* Ai.route({
      name: "fallback",
      model: "claude-haiku-4-5",
      languageModel: AnthropicLanguageModel.model("claude-haiku-4-5"),
      configure: (request) => AnthropicLanguageModel.withConfigOverride({ max_tokens: request.maxTokens })
    })
    return yield* Fallback.make({ routes: [primary, fallback], deadline: "30 seconds" })
  }).pipe(Effect.provide(Clients))
  return chain
}

export const errorMapping = () => {
  const reported = LanguageModel.generateText({ prompt: "Say hello." }).pipe(
    Effect.catchTag("HttpResponseError", (error) => {
      const failure = Ai.failureOf(error)
      return Effect.fail(
        Option.isSome(failure) && failure.value._tag === "AllRoutesFailed"
          ? `${failure.value.reason} after ${failure.value.attempts.length} attempts (last: HTTP ${error.response.status})`
          : error.message
      )
    })
  )
  return reported
}

export const fromExecutionPlan = () => {
  const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number })
  const ask = LanguageModel.generateObject({ prompt: "Largest city in France, as JSON.", schema: Answer })

  const Clients = Layer.mergeAll(
    OpenAiClient.layerConfig({ apiKey: Config.redacted("OPENAI_API_KEY") }),
    AnthropicClient.layerConfig({ apiKey: Config.redacted("ANTHROPIC_API_KEY") })
  ).pipe(Layer.provide(Transport.layer()))

  const Plan = ExecutionPlan.make(
    { provide: OpenAiLanguageModel.model("gpt-4o-mini"), attempts: 3, schedule: Schedule.exponential("500 millis") },
    { provide: AnthropicLanguageModel.model("claude-haiku-4-5"), attempts: 2 }
  )

  const before = ask.pipe(Effect.withExecutionPlan(Plan), Effect.provide(Clients))

  const ResilientModel = Layer.unwrapScoped(Effect.gen(function*() {
    const primary = yield* Ai.route({
      name: "primary",
      model: "gpt-4o-mini",
      languageModel: OpenAiLanguageModel.model("gpt-4o-mini"),
      configure: (request) => OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.maxTokens })
    })
    const fallback = yield* Ai.route({
      name: "fallback",
      model: "claude-haiku-4-5",
      languageModel: AnthropicLanguageModel.model("claude-haiku-4-5"),
      configure: (request) => AnthropicLanguageModel.withConfigOverride({ max_tokens: request.maxTokens })
    })
    return Ai.layer({ routes: [primary, fallback], deadline: "30 seconds", repairAttempts: 1 })
  })).pipe(Layer.provide(Layer.merge(Clients, Policy.layerState)))

  const after = ask.pipe(Effect.provide(ResilientModel))
  // Same success type: only the way the LanguageModel is provided changed.
  return [before, after] satisfies ReadonlyArray<Effect.Effect<{ readonly value: typeof Answer.Type }, unknown>>
}

/** A block's lines that carry code, trimmed (indentation differs inside the wrappers above). */
const codeLines = (text: string): ReadonlyArray<string> =>
  text.split("\n").map((line) => line.trim()).filter((line) => line.length > 0 && !line.startsWith("import "))

describe("docs/effect-ai.md", () => {
  const root = path.resolve(import.meta.dirname, "../..")
  const doc = fs.readFileSync(path.join(root, "docs/effect-ai.md"), "utf8")
  const blocks = Array.from(doc.matchAll(/```ts\n([\s\S]*?)```/g), (match) => match[1]!)
  const source = codeLines(fs.readFileSync(path.join(root, "test/ai/docs.test.ts"), "utf8")).join("\n")

  it("has its five TypeScript examples", () => {
    expect(blocks).toHaveLength(5)
  })

  blocks.forEach((block, index) => {
    it(`example ${index + 1} is typechecked code in this file`, () => {
      expect(source).toContain(codeLines(block).join("\n"))
    })
  })

  it("links only to files that exist", () => {
    for (const [, target] of doc.matchAll(/\]\(([a-z][^)#:]*\.md)/g)) {
      expect(fs.existsSync(path.join(root, "docs", target!)), target).toBe(true)
    }
  })
})

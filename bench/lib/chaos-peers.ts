/**
 * The clients bench:chaos drives through the same chaos scenario. Each is configured the way its
 * documentation (or, for the bare SDK, the usual blog post) shows, with the same budgets wherever the
 * client has a knob for them: a per-attempt timeout, two retries per model, a primary and a fallback
 * model, and the caller's overall deadline (an AbortSignal for promise clients).
 *
 * A peer's `call` resolves with whatever object the client hands to application code; the harness
 * checks it against the contract itself, so "accepted an invalid output" is measured, not assumed.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { createOpenAI } from "@ai-sdk/openai"
import { generateObject } from "ai"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import OpenAI from "openai"
import { z } from "zod"
import * as Ai from "../../src/Ai.js"
import * as LlmClient from "../../src/LlmClient.js"
import * as ResponseCache from "../../src/ResponseCache.js"
import * as Spend from "../../src/Spend.js"
import type * as Policy from "../../src/Policy.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as Transport from "../../src/Transport.js"
import { packageFile, portOr, start } from "./child.js"

/** The output contract every peer is asked for. */
export const Answer = Schema.Struct({ city: Schema.String, population: Schema.Number.pipe(Schema.positive()) })
export const isAnswer = Schema.is(Answer)
const AnswerZod = z.object({ city: z.string(), population: z.number().positive() })

export const PRIMARY = "primary-model"
export const FALLBACK = "fallback-model"
const prompt = "What is the largest city in France and its population? Answer as JSON {city, population}."
/** The `--repeat` variant's prompts: the shared one, numbered (the chaos server answers every one alike). */
export const promptNumber = (n: number): string => `${prompt} (question ${n})`

/**
 * EXAMPLE prices for the chaos models (USD per million tokens), shaped like a small model's list price
 * — illustrative, not a quote: the bench compares spend with and without the cache, not a bill.
 */
export const EXAMPLE_PRICES = { inputPerMTok: 0.15, outputPerMTok: 0.6 } as const
const messages = [{ role: "user" as const, content: prompt }]
const MAX_TOKENS = 200

/** What every peer is given. */
export interface Budget {
  /** The chaos server's root URL (`http://127.0.0.1:PORT`). */
  readonly chaosUrl: string
  readonly attemptTimeoutMs: number
  readonly deadlineMs: number
  /** The `--repeat` variant: our rows meter their spend (`Spend`, {@link EXAMPLE_PRICES}); off in the main run. */
  readonly spendMeter?: boolean
}

export interface PeerClient {
  readonly call: (signal: AbortSignal) => Promise<unknown>
  /**
   * The `--repeat` variant: asks `prompt` (at temperature 0) and says whether the answer came from a
   * response cache. Only our chain's rows have it.
   */
  readonly ask?: (signal: AbortSignal, prompt: string) => Promise<{ readonly value: unknown; readonly cached: boolean }>
  /** What the run spent, by the client's spend meter (`Spend`, with {@link EXAMPLE_PRICES}). */
  readonly spent?: () => Promise<{ readonly costUsd: number; readonly tokens: number; readonly unreported: number }>
  readonly close: () => Promise<void>
}

export interface Peer {
  readonly name: string
  /** Short label for plots. */
  readonly short: string
  /** How it is configured, for the report. */
  readonly config: (budget: Budget) => string
  readonly setup: (budget: Budget) => Promise<PeerClient>
}

/**
 * A failed Effect as an Error whose name is the failure's tag (AllRoutesFailed shows its last error).
 * Through `Ai.layer` the chain's failure arrives wrapped in an AiError (`cause`): it is unwrapped so the
 * "@effect/ai + our layer" row reports the same labels as ours, prefixed by the AiError's tag.
 */
const failureOf = (cause: Cause.Cause<unknown>): Error => {
  const squashed = Cause.squash(cause)
  const tagOf = (u: unknown) => (typeof u === "object" && u !== null && "_tag" in u ? String(u._tag) : "Defect")
  const chain = Option.getOrUndefined(Ai.failureOf(squashed))
  const inner: unknown = chain ?? squashed
  const tag = tagOf(inner)
  const error = new Error(squashed instanceof Error ? squashed.message : String(squashed))
  const name = tag === "AllRoutesFailed" ? `${tag}(${causeOf(inner as ChainFailureShape)})` : tag
  error.name = chain === undefined ? name : `${tagOf(squashed)}: ${name}`
  return error
}

/** What the bench reads of an `AllRoutesFailed`. */
interface ChainFailureShape {
  readonly reason: string
  readonly lastError?: { readonly _tag: string } | undefined
  readonly attempts: ReadonlyArray<{ readonly route: string; readonly outcome: string; readonly message?: string | undefined }>
}

/**
 * Why a chain call failed, as one label: the chain's stop reason, then how each route's last attempt
 * ended (`deadline — primary: CircuitOpen, fallback: Timeout`), so a run's failures group by cause.
 */
const causeOf = (failure: ChainFailureShape): string => {
  const lastByRoute = new Map<string, string>()
  for (const attempt of failure.attempts) {
    // A skipped route says why (its retry budget, a failed repair, its context window).
    lastByRoute.set(attempt.route, attempt.outcome === "Skipped" && attempt.message !== undefined ? `Skipped (${attempt.message})` : attempt.outcome)
  }
  const routes = [...lastByRoute].map(([route, outcome]) => `${route}: ${outcome}`).join(", ")
  return `${failure.reason} — ${routes.length > 0 ? routes : `no attempt; last ${failure.lastError?._tag ?? "none"}`}`
}

const runWith = <R>(runtime: ManagedRuntime.ManagedRuntime<R, unknown>) =>
<A, E>(effect: Effect.Effect<A, E, R>, signal: AbortSignal): Promise<A> =>
  runtime.runPromiseExit(effect, { signal }).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value
    throw failureOf(exit.cause)
  })

/** The official SDK with its default retries, and the try-the-next-model fallback blog posts show. */
const openaiSdk: Peer = {
  name: "openai SDK + hand-written fallback",
  short: "openai SDK",
  config: (b) =>
    `openai@6 \`maxRetries: 2\` (default), \`timeout: ${b.attemptTimeoutMs}\` ms per attempt; for each model in [primary, fallback]: ` +
    "`chat.completions.create` with `response_format: json_object`, then `JSON.parse(content)`; on any throw try the next model; the caller's AbortSignal is the deadline",
  setup: async (b) => {
    const client = new OpenAI({ baseURL: `${b.chaosUrl}/v1`, apiKey: "sk-bench", maxRetries: 2, timeout: b.attemptTimeoutMs })
    return {
      call: async (signal) => {
        let last: unknown
        for (const model of [PRIMARY, FALLBACK]) {
          try {
            const completion = await client.chat.completions.create(
              { model, messages, max_tokens: MAX_TOKENS, response_format: { type: "json_object" } },
              { signal }
            )
            return JSON.parse(completion.choices[0]?.message.content ?? "") as unknown
          } catch (error) {
            last = error
            if (signal.aborted) break
          }
        }
        throw last
      },
      close: async () => {}
    }
  }
}

/** Vercel AI SDK v6: generateObject with a zod schema and maxRetries; it has no model fallback of its own. */
const vercelAi: Peer = {
  name: "Vercel ai generateObject (maxRetries 2)",
  short: "Vercel ai",
  config: () =>
    "ai@6 `generateObject({ model: createOpenAI({ baseURL }).chat(primary), schema: zod, maxRetries: 2, abortSignal })`; " +
    "no fallback model (the SDK has none built in); no per-attempt timeout knob (only the total, = the caller's signal)",
  setup: async (b) => {
    const provider = createOpenAI({ baseURL: `${b.chaosUrl}/v1`, apiKey: "sk-bench" })
    const model = provider.chat(PRIMARY)
    return {
      call: async (signal) => {
        const result = await generateObject({ model, schema: AnswerZod, prompt, maxRetries: 2, maxOutputTokens: MAX_TOKENS, abortSignal: signal })
        return result.object
      },
      close: async () => {}
    }
  }
}

/**
 * The @effect/ai program both @effect/ai rows run, unchanged between them: `generateObject` with the
 * contract's Schema and the shared prompt, handing the decoded value to the application. Only what
 * surrounds it differs — an ExecutionPlan in one row, our chain as the `LanguageModel` in the other.
 */
const askEffectAi = LanguageModel.generateObject({ prompt, schema: Answer }).pipe(Effect.map((response) => response.value))

/**
 * @effect/ai with an ExecutionPlan (primary → fallback, 3 attempts each, exponential schedule), on
 * @effect/ai-openai's native wire: the Responses API (`POST /v1/responses`, the only one 0.41 speaks),
 * which the chaos server serves; its routes match by model whatever the wire, so the same seeded fault
 * streams answer every peer. `generateObject` sends a `json_schema` text format and decodes the answer
 * with the Schema, so a schema-invalid body fails the attempt (`MalformedOutput`) and the plan moves on.
 * @effect/ai's client has no per-attempt timeout, so each planned attempt is bounded by
 * `Effect.timeout`, like the other peers' per-attempt knobs. HTTP: `NodeHttpClient.layerUndici`, what an
 * @effect/ai user provides.
 */
const effectAi: Peer = {
  name: "@effect/ai + ExecutionPlan (Responses wire)",
  short: "@effect/ai",
  config: (b) =>
    "@effect/ai 0.37 + @effect/ai-openai 0.41 (Responses): `ExecutionPlan.make({ provide: OpenAiLanguageModel.model(primary), attempts: 3, schedule: exponential(500 ms) }, { provide: model(fallback), attempts: 3, schedule: exponential(500 ms) })` " +
    `around \`LanguageModel.generateObject({ prompt, schema: Answer })\` + \`Effect.timeout(${b.attemptTimeoutMs} ms)\`; whole call \`Effect.timeout(${b.deadlineMs} ms)\`; HTTP: NodeHttpClient.layerUndici`,
  setup: async (b) => {
    const runtime = ManagedRuntime.make(
      OpenAiClient.layer({ apiKey: Redacted.make("sk-bench"), apiUrl: `${b.chaosUrl}/v1` }).pipe(Layer.provide(NodeHttpClient.layerUndici))
    )
    const step = (model: string) => ({
      provide: OpenAiLanguageModel.model(model, { max_output_tokens: MAX_TOKENS }),
      attempts: 3,
      schedule: Schedule.exponential("500 millis")
    })
    const plan = ExecutionPlan.make(step(PRIMARY), step(FALLBACK))
    const program = askEffectAi.pipe(
      Effect.timeout(b.attemptTimeoutMs),
      Effect.withExecutionPlan(plan),
      Effect.timeout(b.deadlineMs)
    )
    const run = runWith(runtime)
    return { call: (signal) => run(program, signal), close: () => runtime.dispose() }
  }
}

/**
 * The same @effect/ai program, with our chain as its `LanguageModel` (`Ai.layerWithState`) and
 * @effect/ai-openai's own Responses models as the chain's routes (`Ai.route`). Mirrors the "ours" row:
 * routes [primary, fallback], each `Policy` default except the 2 s attempt timeout, chain deadline 15 s,
 * `repairAttempts: 1`, HTTP over `Transport.layer()`. What differs from "ours": the wire (Responses via
 * @effect/ai-openai instead of our Chat Completions adapter), the bridge (@effect/ai's request and decode
 * around each attempt, and @effect/ai decoding the accepted answer again), and what a wrapped model
 * cannot expose — no rate-limit headers on successes (the limiter learns only from 429s) and no
 * idempotency key on retries. What differs from the ExecutionPlan row: only the Layer provided (and the
 * HTTP client, whose pool is sized; the scenario never has 64 calls in flight to one origin).
 */
const effectAiOurs: Peer = {
  name: "@effect/ai + our layer (Responses wire)",
  short: "@effect/ai + ours",
  config: (b) =>
    "the @effect/ai row's `LanguageModel.generateObject({ prompt, schema: Answer })`, whole call `Effect.timeout(" +
    `${b.deadlineMs} ms)\`, provided \`Ai.layerWithState({ routes: [primary, fallback], deadline: ${b.deadlineMs} ms, repairAttempts: 1, defaults: { maxTokens: ${MAX_TOKENS} } })\` ` +
    "whose routes are `Ai.route({ languageModel: OpenAiLanguageModel.model(…), configure: max_output_tokens })` over `OpenAiClient.layer({ apiUrl })` + `Transport.layer()`, " +
    `each route \`Policy\` default except \`timeouts: { attempt: ${b.attemptTimeoutMs} ms }\``,
  setup: async (b) => {
    const policy: Policy.PolicyOptions = { timeouts: { attempt: `${b.attemptTimeoutMs} millis` } }
    const route = (name: string, model: string) =>
      Ai.route({
        name,
        model,
        languageModel: OpenAiLanguageModel.model(model),
        policy,
        // @effect/ai's calls carry no max-tokens option: the chain's request reaches the provider config here.
        configure: (request) => OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.maxTokens })
      })
    const model = Layer.unwrapScoped(
      Effect.gen(function*() {
        const routes = [yield* route("primary", PRIMARY), yield* route("fallback", FALLBACK)]
        return Ai.layerWithState({ routes, deadline: `${b.deadlineMs} millis`, repairAttempts: 1, defaults: { maxTokens: MAX_TOKENS } })
      })
    ).pipe(
      Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make("sk-bench"), apiUrl: `${b.chaosUrl}/v1` })),
      Layer.provide(Transport.layer())
    )
    const runtime = ManagedRuntime.make(model)
    const program = askEffectAi.pipe(Effect.timeout(b.deadlineMs))
    const run = runWith(runtime)
    return { call: (signal) => run(program, signal), close: () => runtime.dispose() }
  }
}

/** The Portkey gateway, run locally; the application talks to it with the openai SDK. */
const portkey: Peer = {
  name: "Portkey gateway (fallback + retry config)",
  short: "Portkey",
  config: (b) =>
    "@portkey-ai/gateway 1.15 run locally (`node build/start-server.js --headless`), config `{ strategy: { mode: \"fallback\" }, targets: [primary, fallback] }`, " +
    `each target \`custom_host\` = the chaos server, \`retry: { attempts: 2, on_status_codes: [429,500,502,503,504,529], use_retry_after_header: true }\`, \`request_timeout: ${b.attemptTimeoutMs}\`; ` +
    "client: openai SDK with `maxRetries: 0` (no second retry layer) and `JSON.parse(content)`",
  setup: async (b) => {
    const port = await portOr(8787)
    const gateway = await start(process.execPath, [packageFile("@portkey-ai/gateway/build/start-server.js"), `--port=${port}`, "--headless"], {
      ready: /(Ready for connections)/,
      timeoutMs: 30_000
    })
    const target = (model: string) => ({
      provider: "openai",
      api_key: "sk-bench",
      custom_host: `${b.chaosUrl}/v1`,
      override_params: { model },
      retry: { attempts: 2, on_status_codes: [429, 500, 502, 503, 504, 529], use_retry_after_header: true },
      request_timeout: b.attemptTimeoutMs
    })
    const config = { strategy: { mode: "fallback" }, targets: [target(PRIMARY), target(FALLBACK)] }
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${port}/v1`,
      apiKey: "sk-bench",
      maxRetries: 0,
      defaultHeaders: { "x-portkey-config": JSON.stringify(config) }
    })
    return {
      call: async (signal) => {
        const completion = await client.chat.completions.create(
          { model: PRIMARY, messages, max_tokens: MAX_TOKENS, response_format: { type: "json_object" } },
          { signal }
        )
        return JSON.parse(completion.choices[0]?.message.content ?? "") as unknown
      },
      close: () => gateway.stop()
    }
  }
}

/** Ours: the schema-gated chain over two routes of the OpenAI adapter. */
type Variant = "default" | "no-breaker" | "one-pass" | "hedged" | "cached"
const variants: Record<Variant, {
  readonly name: string
  readonly short: string
  readonly note: string
  readonly policy: Policy.PolicyOptions
  readonly passes?: number
  readonly cache?: boolean
}> = {
  default: { name: "ours: LlmClient chain (defaults)", short: "ours", note: "", policy: {} },
  "no-breaker": {
    name: "ours: LlmClient chain, breaker off",
    short: "ours, no breaker",
    note: ", `breaker: false`",
    policy: { breaker: false }
  },
  "one-pass": {
    name: "ours: LlmClient chain, one pass",
    short: "ours, one pass",
    note: ", chain `passes: 1` (no second walk of the chain within the deadline)",
    policy: {},
    passes: 1
  },
  hedged: {
    name: "ours: LlmClient chain, hedging on",
    short: "ours, hedged",
    note: ", `hedge: true` (a second attempt after the route's observed p95, paid from the retry budget)",
    policy: { hedge: true }
  },
  cached: {
    name: "ours: LlmClient chain + response cache (memory)",
    short: "ours + cache",
    note: ", chain `cache: ResponseCache.make({ ttl: 1 hour })` over `ResponseCache.layerMemory()`",
    policy: {},
    cache: true
  }
}

const ours = (variant: Variant): Peer => ({
  name: variants[variant].name,
  short: variants[variant].short,
  config: (b) =>
    "`LlmClient.generateObject(Answer)` over routes [primary, fallback] (OpenAi adapter, Transport defaults), each `Policy` default except " +
    `\`timeouts: { attempt: ${b.attemptTimeoutMs} ms }\`` +
    variants[variant].note +
    `; chain \`deadline: ${b.deadlineMs} ms\`, \`repairAttempts: 1\`` +
    (b.spendMeter === true ? "; a `Spend.budget` meter (no limits, example prices) as `spend`" : ""),
  setup: async (b) => {
    const policy: Policy.PolicyOptions = {
      timeouts: { attempt: `${b.attemptTimeoutMs} millis` },
      ...variants[variant].policy
    }
    // The --repeat variant: a spend meter (no limits) on the chain — what it spent, at the example prices.
    const meter = b.spendMeter === true
      ? Effect.runSync(Effect.flatMap(Spend.prices({ [PRIMARY]: EXAMPLE_PRICES, [FALLBACK]: EXAMPLE_PRICES }), (prices) => Spend.budget({ name: "bench", prices })))
      : undefined
    const client = Layer.unwrapScoped(
      Effect.gen(function*() {
        const provider = yield* OpenAi.make({ apiKey: Redacted.make("sk-bench"), baseUrl: `${b.chaosUrl}/v1`, name: "chaos" })
        const cache = variants[variant].cache === true ? yield* ResponseCache.make({ ttl: "1 hour", namespace: "bench" }) : undefined
        return LlmClient.layerWithState({
          routes: [
            { name: "primary", provider, model: PRIMARY, policy },
            { name: "fallback", provider, model: FALLBACK, policy }
          ],
          deadline: `${b.deadlineMs} millis`,
          repairAttempts: 1,
          ...(meter === undefined ? {} : { spend: meter }),
          ...(variants[variant].passes === undefined ? {} : { passes: variants[variant].passes }),
          ...(cache === undefined ? {} : { cache })
        })
      })
    ).pipe(Layer.provide(Transport.layer()), Layer.provide(ResponseCache.layerMemory()))
    const runtime = ManagedRuntime.make(client)
    const program = Effect.map(LlmClient.generateObject(Answer, { messages, maxTokens: MAX_TOKENS }), (result) => result.value)
    const asking = (question: string) =>
      Effect.map(
        LlmClient.generateObject(Answer, { messages: [{ role: "user", content: question }], maxTokens: MAX_TOKENS, temperature: 0 }),
        (result) => ({ value: result.value as unknown, cached: result.cached === true })
      )
    const run = runWith(runtime)
    return {
      call: (signal) => run(program, signal),
      ask: (signal, question) => run(asking(question), signal),
      ...(meter === undefined
        ? {}
        : { spent: () => Effect.runPromise(Effect.map(Spend.snapshot(meter), (s) => ({ costUsd: s.costUsd, tokens: s.tokens, unreported: s.unreported }))) }),
      close: () => runtime.dispose()
    }
  }
})

/** The `--repeat` variant's rows: our chain without and with a response cache, on the same prompts. */
export const repeatPeers: ReadonlyArray<Peer> = [ours("default"), ours("cached")]

/** Every peer, in report order. */
export const peers: ReadonlyArray<Peer> = [
  openaiSdk,
  vercelAi,
  effectAi,
  effectAiOurs,
  portkey,
  ours("default"),
  ours("no-breaker"),
  ours("one-pass"),
  ours("hedged")
]

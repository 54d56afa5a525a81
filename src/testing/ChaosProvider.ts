/**
 * The chaos server's fault model as an in-process `Provider`: the same scenarios (scripts, seeded
 * mixes, capacity buckets, concurrency caps, outage windows, latency distributions), the same bytes,
 * decoded by the real OpenAI or Anthropic adapter — but over an in-memory `HttpClient` instead of a
 * socket. Use it for fast `TestClock` tests of a whole pipeline; use `ChaosServer` when the thing under
 * test must open a real connection (an SDK, a CLI, a proxy).
 *
 * Because the adapter is the real one, every fault produces exactly the typed error it produces over
 * HTTP (`rate_limit` → `RateLimited` with `retryAfterMs` and the rate-limit snapshot, `stream_error` →
 * `Overloaded` mid-stream, `connection_reset` → `ConnectionError`, …). Because time comes from the
 * calling fiber's `Clock`, latencies, slow first tokens, stalls, outage windows and bucket refills
 * follow `TestClock.adjust` — and `Timeline.run` drives them for you.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { InvalidOptions, ProviderError } from "../Errors.js"
import { Provider, type ProviderShape } from "../Provider.js"
import * as Anthropic from "../providers/Anthropic.js"
import * as Bedrock from "../providers/Bedrock.js"
import * as Gemini from "../providers/Gemini.js"
import type { CommonOptions } from "../providers/internal/adapter.js"
import * as OpenAi from "../providers/OpenAi.js"
import * as OpenAiResponses from "../providers/OpenAiResponses.js"
import type { ChaosStats } from "./ChaosServer.js"
import { Engine } from "./internal/engine.js"
import { MEMORY_ORIGIN, memoryClient } from "./internal/memoryClient.js"
import { controlsOf } from "./internal/serve.js"
import * as Scenario from "./Scenario.js"

/**
 * Options. Everything but `api` and the adapter bounds means what it means for `ChaosServer`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChaosProviderOptions {
  /** Which wire format the provider speaks (and which adapter decodes it). Default `openai`. */
  readonly api?: Scenario.Api | undefined
  /** The scenario (validated); default `Scenario.empty` (every call answered ok). */
  readonly scenario?: Scenario.Scenario | undefined
  /** The provider label in errors and responses. Default `openai` / `anthropic`, like the real adapters. */
  readonly name?: string | undefined
  /** How many log entries `stats` keeps. Default 10 000. */
  readonly logLimit?: number | undefined
  /** The adapter's body bound (see docs/providers.md). Default 8 MiB. */
  readonly maxBodyBytes?: number | undefined
  /** The adapter's SSE event bound. Default 1 MiB. */
  readonly maxSseEventBytes?: number | undefined
}

/**
 * An in-process chaos provider: a `Provider` plus the same controls as a `ChaosServerHandle`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChaosProviderHandle extends ProviderShape<ProviderError> {
  readonly api: Scenario.Api
  /** What was served, in the ChaosServer's format (`log[i].at` is ms since `make` or the last reset). */
  readonly stats: Effect.Effect<ChaosStats>
  /** Clears stats and restarts scripts, PRNG streams, buckets and the outage clock. */
  readonly reset: Effect.Effect<void>
  /** Validates and installs a new scenario, restarting its state (stats are kept). */
  readonly setScenario: (scenario: Scenario.Scenario) => Effect.Effect<void, Scenario.ScenarioError>
  readonly scenario: Effect.Effect<Scenario.Scenario>
  /**
   * The in-memory transport, answering both wire formats from this provider's engine: give it to your
   * own adapter configuration (`OpenAi.make` with `baseUrl: ChaosProvider.openAiBaseUrl`, or
   * `Anthropic.make` with `baseUrl: ChaosProvider.anthropicBaseUrl`) to share one scenario between routes.
   */
  readonly httpClient: HttpClient.HttpClient
}

/**
 * The `baseUrl` for an OpenAI adapter running on {@link ChaosProviderHandle.httpClient}.
 *
 * @since 0.1.0
 * @category constants
 */
export const openAiBaseUrl = `${MEMORY_ORIGIN}/v1`

/**
 * The `baseUrl` for an Anthropic adapter running on {@link ChaosProviderHandle.httpClient}.
 *
 * @since 0.1.0
 * @category constants
 */
export const anthropicBaseUrl = MEMORY_ORIGIN

/**
 * The handle as a service (provided by {@link layer} next to `Provider`), for tests that need `stats`.
 *
 * @since 0.1.0
 * @category tags
 */
export class ChaosProvider extends Context.Tag("effect-llm-resilience/testing/ChaosProvider")<
  ChaosProvider,
  ChaosProviderHandle
>() {}

// A key-shaped value, so the adapters' redaction is exercised in-process exactly as over HTTP.
const IN_PROCESS_KEY = Redacted.make("sk-chaos-in-process-key")

/**
 * Builds a chaos provider. An invalid scenario fails with a `ScenarioError` naming each bad path; an
 * adapter bound the real adapter refuses (`maxBodyBytes: 0`, an empty `name`) with the adapter's own
 * `InvalidOptions`, whose message names the option.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ChaosProviderOptions = {}
): Effect.Effect<ChaosProviderHandle, Scenario.ScenarioError | InvalidOptions> =>
  Effect.gen(function*() {
    const scenario = yield* Scenario.decodeUnknown(options.scenario ?? Scenario.empty, "ChaosProvider options.scenario")
    const clock = yield* Effect.clock
    const engine = new Engine(scenario, yield* clock.currentTimeMillis, options.logLimit ?? 10_000)
    const httpClient = memoryClient(engine)
    const api = options.api ?? "openai"
    const adapter = {
      apiKey: IN_PROCESS_KEY,
      // The Responses adapter is labelled `openai` like Chat Completions; in-process, name the format.
      ...(options.name !== undefined ? { name: options.name } : api === "responses" ? { name: "responses" } : {}),
      ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
      ...(options.maxSseEventBytes !== undefined ? { maxSseEventBytes: options.maxSseEventBytes } : {})
    }
    const provider = yield* adapterOf(api, adapter).pipe(Effect.provideService(HttpClient.HttpClient, httpClient))
    return {
      ...provider,
      api,
      ...controlsOf(engine, clock),
      httpClient
    } satisfies ChaosProviderHandle
  })

/** The real adapter of each format, pointed at the in-memory server (Bedrock with a bearer key: nothing to sign). */
const adapterOf = (api: Scenario.Api, adapter: CommonOptions) => {
  switch (api) {
    case "openai":
      return OpenAi.make({ ...adapter, baseUrl: openAiBaseUrl })
    case "responses":
      return OpenAiResponses.make({ ...adapter, baseUrl: openAiBaseUrl })
    case "anthropic":
      return Anthropic.make({ ...adapter, baseUrl: anthropicBaseUrl })
    case "gemini":
      return Gemini.make({ ...adapter, baseUrl: `${MEMORY_ORIGIN}/v1beta` })
    case "bedrock":
      return Bedrock.make({ ...adapter, region: "us-east-1", baseUrl: MEMORY_ORIGIN })
  }
}

/**
 * The chaos provider as the `Provider` of a program, with its handle as `ChaosProvider`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ChaosProviderOptions = {}
): Layer.Layer<Provider | ChaosProvider, Scenario.ScenarioError | InvalidOptions> =>
  Layer.effectContext(
    Effect.map(make(options), (handle) => Context.make(ChaosProvider, handle).pipe(Context.add(Provider, handle)))
  )

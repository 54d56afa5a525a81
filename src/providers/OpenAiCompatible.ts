/**
 * Presets for servers that speak OpenAI's Chat Completions: vLLM, Ollama, OpenRouter, Groq and
 * Together. Each preset knows the server's default base URL, its token-cap field, whether it needs a
 * key, and — what a bare `baseUrl` cannot give — how it fails:
 *
 * | preset | default base URL | token field | key | failures read beyond OpenAI's rules |
 * |---|---|---|---|---|
 * | `vllm` | `http://localhost:8000/v1` | `max_tokens` | optional | the pre-0.10 top-level `{"object":"error",…}` body; `{"error":{…,"code":400}}` streamed mid-answer |
 * | `ollama` | `http://localhost:11434/v1` | `max_tokens` | none | (its `/v1` errors are OpenAI-shaped; 404 unknown model, 503 "server busy" queue full) |
 * | `openrouter` | `https://openrouter.ai/api/v1` | `max_tokens` | required | `error.metadata.error_type`; 402 credits; per-day vs provider-routed 429; moderation 403; unknown model 400 → NotFound; mid-stream `error` chunks; `x-generation-id` |
 * | `groq` | `https://api.groq.com/openai/v1` | `max_completion_tokens` | required | 498 `capacity_exceeded` (flex tier full) → Overloaded; 413 "Request too large … (TPM)" (sent with code `rate_limit_exceeded`) → QuotaExhausted |
 * | `together` | `https://api.together.xyz/v1` | `max_tokens` | required | 403 "tokens + max_new_tokens must be <= N" → ContextLengthExceeded; legacy 400 `rate_limit` |
 *
 * Sources for every row are in the OpenAI-compatible notes (docs). Anything else about the server
 * goes through the options: `baseUrl` for a remote vLLM or Ollama, `headers` for OpenRouter's
 * `HTTP-Referer` / `X-Title` attribution.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { OpenAiCompatible, Transport } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const openrouter = yield* OpenAiCompatible.make("openrouter", {
 *     apiKey: Redacted.make(process.env.OPENROUTER_API_KEY ?? "")
 *   })
 *   const local = yield* OpenAiCompatible.make("ollama")
 *   return [openrouter, local]
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { InvalidOptions, type ProviderError } from "../Errors.js"
import { Provider, type ProviderShape } from "../Provider.js"
import { type CommonOptions, makeHttpAdapter, resolve } from "./internal/adapter.js"
import {
  groqHttp,
  groqStreamError,
  openRouterHttp,
  openRouterStreamError,
  statusCodedStreamError,
  togetherHttp,
  togetherStreamError,
  vllmHttp
} from "./internal/compatErrors.js"
import type { HttpClassifier } from "./internal/wire.js"
import { chatFormat, type StreamErrorClassifier } from "./OpenAi.js"

/**
 * Presets that run on your own machines: no key needed (vLLM checks one only when started with
 * `--api-key`; Ollama ignores it).
 *
 * @since 0.2.0
 * @category models
 */
export type LocalPreset = "vllm" | "ollama"

/**
 * Hosted presets: an API key is required.
 *
 * @since 0.2.0
 * @category models
 */
export type HostedPreset = "openrouter" | "groq" | "together"

/**
 * @since 0.2.0
 * @category models
 */
export type PresetName = LocalPreset | HostedPreset

/**
 * What a preset defaults to.
 *
 * @since 0.2.0
 * @category models
 */
export interface Preset {
  readonly baseUrl: string
  readonly maxTokensField: "max_tokens" | "max_completion_tokens"
  readonly apiKey: "required" | "optional" | "none"
}

/**
 * Every preset's defaults.
 *
 * @since 0.2.0
 * @category constants
 */
export const presets: { readonly [P in PresetName]: Preset } = {
  // `vllm serve` listens on port 8000; `max_tokens` is accepted by every vLLM release (newer ones
  // also take `max_completion_tokens`).
  vllm: { baseUrl: "http://localhost:8000/v1", maxTokensField: "max_tokens", apiKey: "optional" },
  // Ollama's /v1 request type has `max_tokens` only.
  ollama: { baseUrl: "http://localhost:11434/v1", maxTokensField: "max_tokens", apiKey: "none" },
  openrouter: { baseUrl: "https://openrouter.ai/api/v1", maxTokensField: "max_tokens", apiKey: "required" },
  // Groq deprecates `max_tokens` in favour of `max_completion_tokens`.
  groq: { baseUrl: "https://api.groq.com/openai/v1", maxTokensField: "max_completion_tokens", apiKey: "required" },
  together: { baseUrl: "https://api.together.xyz/v1", maxTokensField: "max_tokens", apiKey: "required" }
}

/** How each preset's failures are classified (`undefined`: OpenAI's rules). */
const classifiers: {
  readonly [P in PresetName]: { readonly http?: HttpClassifier; readonly stream: StreamErrorClassifier }
} = {
  vllm: { http: vllmHttp, stream: statusCodedStreamError },
  ollama: { stream: statusCodedStreamError },
  openrouter: { http: openRouterHttp, stream: openRouterStreamError },
  groq: { http: groqHttp, stream: groqStreamError },
  together: { http: togetherHttp, stream: togetherStreamError }
}

/**
 * Options of a preset; every default comes from the preset ({@link presets}).
 *
 * @since 0.2.0
 * @category models
 */
export interface OpenAiCompatibleOptions extends Omit<CommonOptions, "apiKey"> {
  /** Sent as `authorization: Bearer …` when given. Required for the hosted presets. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** The API root including `/v1`. Default: the preset's. */
  readonly baseUrl?: string | undefined
  /** Label in errors, spans and metrics. Default: the preset's name. */
  readonly name?: string | undefined
  /** The token-cap field. Default: the preset's. */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens" | undefined
  /** Ask for usage on streams (`stream_options`). Default true. */
  readonly streamUsage?: boolean | undefined
  /** Forward `request.metadata` in the body. Default false. */
  readonly sendMetadata?: boolean | undefined
}

const presetProblem = (preset: unknown, options: OpenAiCompatibleOptions): { option: string; message: string } | undefined => {
  if (typeof preset !== "string" || !Object.prototype.hasOwnProperty.call(presets, preset)) {
    return { option: "preset", message: `must be one of ${Object.keys(presets).join(", ")}, got ${JSON.stringify(String(preset)).slice(0, 80)}` }
  }
  const key = options.apiKey === undefined ? undefined : Redacted.value(options.apiKey)
  if (presets[preset as PresetName].apiKey === "required" && (typeof key !== "string" || key.length === 0)) {
    return { option: "apiKey", message: `is required for ${preset}` }
  }
  return undefined
}

const build = (component: string) =>
(preset: PresetName, options: OpenAiCompatibleOptions = {}): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> => {
  const problem = presetProblem(preset, options)
  if (problem !== undefined) {
    return Effect.fail(new InvalidOptions({ component, option: problem.option, message: `${problem.option} ${problem.message}` }))
  }
  const defaults = presets[preset]
  const apiKey = options.apiKey ?? Redacted.make("")
  const key = Redacted.value(apiKey)
  const format = chatFormat({
    path: () => "/chat/completions",
    authHeaders: key.length > 0 ? { authorization: `Bearer ${key}` } : {},
    maxTokensField: options.maxTokensField ?? defaults.maxTokensField,
    sendMetadata: options.sendMetadata,
    streamUsage: options.streamUsage,
    classify: classifiers[preset].http,
    classifyStreamError: classifiers[preset].stream
  })
  return Effect.flatMap(
    resolve(component, { ...options, apiKey }, { name: preset, baseUrl: defaults.baseUrl }),
    (resolved) => Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, resolved, format))
  )
}

/**
 * Builds a preset's adapter from an `HttpClient` in context. Fails with `InvalidOptions` naming the
 * option when it cannot work: an unknown preset, a hosted preset without `apiKey`, and the shared
 * checks (`baseUrl`, bounds, headers, `name`).
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { OpenAiCompatible, Transport } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const groq = yield* OpenAiCompatible.make("groq", { apiKey: Redacted.make(process.env.GROQ_API_KEY ?? "") })
 *   const vllm = yield* OpenAiCompatible.make("vllm", { baseUrl: "http://gpu-box:8000/v1" })
 *   return yield* groq.generate({ model: "llama-3.3-70b-versatile", messages: [{ role: "user", content: "hi" }], maxTokens: 64 })
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: {
  (preset: LocalPreset, options?: OpenAiCompatibleOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient>
  (
    preset: HostedPreset,
    options: OpenAiCompatibleOptions & { readonly apiKey: Redacted.Redacted<string> }
  ): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient>
} = build("OpenAiCompatible.make")

/**
 * A preset's adapter as a `Provider` layer (fails with `InvalidOptions` like {@link make}).
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import { OpenAiCompatible } from "effect-llm-resilience"
 *
 * const TogetherLive = OpenAiCompatible.layer("together", { apiKey: Redacted.make(process.env.TOGETHER_API_KEY ?? "") })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: {
  (preset: LocalPreset, options?: OpenAiCompatibleOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient>
  (
    preset: HostedPreset,
    options: OpenAiCompatibleOptions & { readonly apiKey: Redacted.Redacted<string> }
  ): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient>
} = (preset: PresetName, options?: OpenAiCompatibleOptions) => Layer.effect(Provider, build("OpenAiCompatible.layer")(preset, options))

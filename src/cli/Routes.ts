/**
 * From route descriptions (config file entries or `--provider/--base-url/--model` flags) to the
 * library's adapters and `Fallback.Route`s. Keys are read from the environment variable each route
 * names, as `Redacted` values, through Effect's `Config` (so tests can swap the `ConfigProvider`).
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { InvalidOptions } from "../Errors.js"
import type * as Fallback from "../Fallback.js"
import type * as Policy from "../Policy.js"
import type { ProviderShape } from "../Provider.js"
import * as Anthropic from "../providers/Anthropic.js"
import * as AzureOpenAi from "../providers/AzureOpenAi.js"
import * as Bedrock from "../providers/Bedrock.js"
import * as Gemini from "../providers/Gemini.js"
import * as OpenAi from "../providers/OpenAi.js"
import * as OpenAiCompatible from "../providers/OpenAiCompatible.js"
import * as OpenAiResponses from "../providers/OpenAiResponses.js"
import { UsageError } from "./CliError.js"
import type { ProviderKind } from "./ConfigFile.js"

/**
 * A route, resolved: its policy is a `Policy.PolicyOptions`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteSpec {
  readonly name: string
  readonly provider: ProviderKind
  readonly model: string
  readonly baseUrl?: string | undefined
  readonly apiKeyEnv?: string | undefined
  readonly statusPage?: string | false | undefined
  readonly contextWindow?: number | undefined
  readonly maxTokens?: number | undefined
  readonly group?: string | undefined
  readonly weight?: number | undefined
  readonly policy: Policy.PolicyOptions
}

/**
 * The environment variable a provider's key is read from by default. Bedrock's is its API key; without
 * one, its SigV4 credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
 * `AWS_SESSION_TOKEN` (and the region from `AWS_REGION`).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultKeyEnv: Readonly<Record<ProviderKind, string>> = {
  openai: "OPENAI_API_KEY",
  "openai-responses": "OPENAI_API_KEY",
  anthropic: "ANTHROPIC_API_KEY",
  "openai-compatible": "OPENAI_API_KEY",
  "azure-openai": "AZURE_OPENAI_API_KEY",
  gemini: "GEMINI_API_KEY",
  bedrock: "AWS_BEARER_TOKEN_BEDROCK",
  vllm: "VLLM_API_KEY",
  ollama: "OLLAMA_API_KEY",
  openrouter: "OPENROUTER_API_KEY",
  groq: "GROQ_API_KEY",
  together: "TOGETHER_API_KEY"
}

/** Other variables that hold a route's secrets (scrubbed from everything the CLI prints). */
const otherSecretEnvs: Partial<Record<ProviderKind, ReadonlyArray<string>>> = {
  bedrock: ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
}

/**
 * The API root a route calls, when it has one (`/v1` included for the OpenAI format, as the official
 * SDKs take it). Bedrock's depends on the region: `undefined` lets the adapter pick it.
 *
 * @since 0.1.0
 * @category getters
 */
export const baseUrlOf = (spec: Pick<RouteSpec, "provider" | "baseUrl">): string => {
  const given = spec.baseUrl?.replace(/\/+$/, "")
  if (given !== undefined) return given
  switch (spec.provider) {
    case "anthropic":
      return Anthropic.DEFAULT_BASE_URL
    case "gemini":
      return Gemini.DEFAULT_BASE_URL
    case "bedrock":
      return "https://bedrock-runtime.{AWS_REGION}.amazonaws.com"
    case "vllm":
    case "ollama":
    case "openrouter":
    case "groq":
    case "together":
      return OpenAiCompatible.presets[spec.provider].baseUrl
    default:
      return OpenAi.DEFAULT_BASE_URL
  }
}

/**
 * The environment variable of a route's key.
 *
 * @since 0.1.0
 * @category getters
 */
export const keyEnvOf = (spec: Pick<RouteSpec, "provider" | "apiKeyEnv">): string => spec.apiKeyEnv ?? defaultKeyEnv[spec.provider]

const secretOf = (name: string): Effect.Effect<Option.Option<Redacted.Redacted<string>>> =>
  Config.option(Config.redacted(name)).pipe(
    Effect.map(Option.filter((key) => Redacted.value(key).trim().length > 0)),
    // A variable that cannot be read is a variable that is not set.
    Effect.orElseSucceed(() => Option.none<Redacted.Redacted<string>>())
  )

/**
 * The route's key, if its variable is set and not empty.
 *
 * @since 0.1.0
 * @category getters
 */
export const apiKeyOf = (spec: Pick<RouteSpec, "provider" | "apiKeyEnv">): Effect.Effect<Option.Option<Redacted.Redacted<string>>> =>
  secretOf(keyEnvOf(spec))

/**
 * Every secret a route may read (its key and, for Bedrock, the AWS secret key and session token).
 *
 * @since 0.2.0
 * @category getters
 */
export const secretsOf = (spec: Pick<RouteSpec, "provider" | "apiKeyEnv">): Effect.Effect<ReadonlyArray<Redacted.Redacted<string>>> =>
  Effect.map(
    Effect.forEach([keyEnvOf(spec), ...(otherSecretEnvs[spec.provider] ?? [])], secretOf),
    (found) => found.flatMap(Option.toArray)
  )

/** The adapter of a route, by kind (before its `InvalidOptions` become usage errors). */
const adapterOf = (
  spec: RouteSpec,
  apiKey: Redacted.Redacted<string>,
  key: Option.Option<Redacted.Redacted<string>>
): Effect.Effect<ProviderShape, InvalidOptions | ConfigError.ConfigError, HttpClient.HttpClient> => {
  const baseUrl = baseUrlOf(spec)
  switch (spec.provider) {
    case "anthropic":
      return Anthropic.make({ apiKey, baseUrl })
    case "openai":
      return OpenAi.make({ apiKey, baseUrl })
    case "openai-responses":
      return OpenAiResponses.make({ apiKey, baseUrl, name: "openai-responses" })
    case "openai-compatible":
      return OpenAi.make({ apiKey, baseUrl, name: "openai-compatible", maxTokensField: "max_tokens" })
    case "azure-openai":
      return AzureOpenAi.make({ endpoint: baseUrl, apiKey })
    case "gemini":
      return Gemini.make({ apiKey, baseUrl })
    case "bedrock":
      // The API key if set, else SigV4 credentials and the region from the standard AWS variables.
      return Option.isSome(key)
        ? Effect.flatMap(Config.string("AWS_REGION").pipe(Config.orElse(() => Config.string("AWS_DEFAULT_REGION"))), (region) =>
          Bedrock.make({ region, apiKey: key.value, ...(spec.baseUrl !== undefined ? { baseUrl } : {}) }))
        : Bedrock.makeConfig({ ...(spec.baseUrl !== undefined ? { baseUrl } : {}) })
    case "vllm":
    case "ollama":
      return OpenAiCompatible.make(spec.provider, { baseUrl, ...(Option.isSome(key) ? { apiKey } : {}) })
    case "openrouter":
    case "groq":
    case "together":
      return OpenAiCompatible.make(spec.provider, { baseUrl, apiKey })
  }
}

/**
 * The adapter of a route (a missing key sends no credentials: fine for local servers; `doctor` says so).
 * Options the adapter refuses (a base URL that does not parse, a key with a line break) are the
 * user's to fix, so they fail as a `UsageError` naming the route and the option (exit 2), not as an
 * internal error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const providerOf = (
  spec: RouteSpec,
  key: Option.Option<Redacted.Redacted<string>>
): Effect.Effect<ProviderShape, UsageError, HttpClient.HttpClient> => {
  const apiKey = Option.getOrElse(key, () => Redacted.make(""))
  return Effect.mapError(adapterOf(spec, apiKey, key), (error) => {
    if (error._tag !== "InvalidOptions") {
      return new UsageError({ message: `route "${spec.name}": ${String(error)} (set the variable, or give the route what it needs)` })
    }
    // The user set the key through a variable, not an option: name the variable.
    const where = error.option === "apiKey" ? ` (the key in ${keyEnvOf(spec)})` : ""
    return new UsageError({ message: `route "${spec.name}"${where}: ${error.message}` })
  })
}

/**
 * The chain route of a spec and its adapter.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toRoute = (spec: RouteSpec, provider: ProviderShape): Fallback.Route => ({
  name: spec.name,
  provider,
  model: spec.model,
  policy: spec.policy,
  ...(spec.contextWindow !== undefined ? { contextWindow: spec.contextWindow } : {}),
  ...(spec.maxTokens !== undefined ? { maxTokens: spec.maxTokens } : {}),
  ...(spec.group !== undefined ? { group: spec.group } : {}),
  ...(spec.weight !== undefined ? { weight: spec.weight } : {})
})

/**
 * Kinds that may run without a key: local servers (vLLM without `--api-key`, Ollama) and Bedrock,
 * whose SigV4 credentials come from other variables (checked by the adapter).
 */
const KEY_OPTIONAL: ReadonlySet<ProviderKind> = new Set(["vllm", "ollama", "bedrock"])

/**
 * Builds every route (adapter + chain route) and returns the keys it read, for redaction. A route
 * whose key variable is unset fails as a `UsageError` naming the variable — an unauthenticated
 * request is refused unless `allowNoAuth` (the `--no-auth` flag, or the embedded chaos server).
 *
 * @since 0.1.0
 * @category constructors
 */
export const buildRoutes = (
  specs: ReadonlyArray<RouteSpec>,
  options: { readonly allowNoAuth: boolean }
): Effect.Effect<
  { readonly routes: ReadonlyArray<Fallback.Route>; readonly secrets: ReadonlyArray<Redacted.Redacted<string>> },
  UsageError,
  HttpClient.HttpClient
> =>
  Effect.gen(function*() {
    const routes: Array<Fallback.Route> = []
    const secrets: Array<Redacted.Redacted<string>> = []
    for (const spec of specs) {
      const key = yield* apiKeyOf(spec)
      if (Option.isNone(key) && !options.allowNoAuth && !KEY_OPTIONAL.has(spec.provider)) {
        return yield* new UsageError({
          message: `route "${spec.name}": ${keyEnvOf(spec)} is not set — set it to your key, or pass --no-auth for a server that needs none`
        })
      }
      secrets.push(...(yield* secretsOf(spec)))
      routes.push(toRoute(spec, yield* providerOf(spec, key)))
    }
    return { routes, secrets }
  })

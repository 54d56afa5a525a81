/**
 * From route descriptions (config file entries or `--provider/--base-url/--model` flags) to the
 * library's adapters and `Fallback.Route`s. Keys are read from the environment variable each route
 * names, as `Redacted` values, through Effect's `Config` (so tests can swap the `ConfigProvider`).
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { InvalidOptions } from "../Errors.js"
import type * as Fallback from "../Fallback.js"
import type * as Policy from "../Policy.js"
import type { ProviderShape } from "../Provider.js"
import * as Anthropic from "../providers/Anthropic.js"
import * as OpenAi from "../providers/OpenAi.js"
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
 * The environment variable a provider's key is read from by default.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultKeyEnv: Readonly<Record<ProviderKind, string>> = {
  openai: "OPENAI_API_KEY",
  "openai-responses": "OPENAI_API_KEY",
  anthropic: "ANTHROPIC_API_KEY",
  "openai-compatible": "OPENAI_API_KEY"
}

/**
 * The public statuspage.io endpoints of the providers.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultStatusPage: Readonly<Record<ProviderKind, string | undefined>> = {
  openai: "https://status.openai.com/api/v2/status.json",
  "openai-responses": "https://status.openai.com/api/v2/status.json",
  anthropic: "https://status.anthropic.com/api/v2/status.json",
  "openai-compatible": undefined
}

/**
 * The API root a route calls (`/v1` included for the OpenAI format, as the official SDKs take it).
 *
 * @since 0.1.0
 * @category getters
 */
export const baseUrlOf = (spec: Pick<RouteSpec, "provider" | "baseUrl">): string =>
  (spec.baseUrl ?? (spec.provider === "anthropic" ? Anthropic.DEFAULT_BASE_URL : OpenAi.DEFAULT_BASE_URL)).replace(/\/+$/, "")

/**
 * The environment variable of a route's key.
 *
 * @since 0.1.0
 * @category getters
 */
export const keyEnvOf = (spec: Pick<RouteSpec, "provider" | "apiKeyEnv">): string => spec.apiKeyEnv ?? defaultKeyEnv[spec.provider]

/**
 * The route's key, if its variable is set and not empty.
 *
 * @since 0.1.0
 * @category getters
 */
export const apiKeyOf = (spec: Pick<RouteSpec, "provider" | "apiKeyEnv">): Effect.Effect<Option.Option<Redacted.Redacted<string>>> =>
  Config.option(Config.redacted(keyEnvOf(spec))).pipe(
    Effect.map(Option.filter((key) => Redacted.value(key).trim().length > 0)),
    // A variable that cannot be read is a variable that is not set.
    Effect.orElseSucceed(() => Option.none<Redacted.Redacted<string>>())
  )

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
  const adapter = spec.provider === "anthropic"
    ? Anthropic.make({ apiKey, baseUrl: baseUrlOf(spec) })
    : spec.provider === "openai"
    ? OpenAi.make({ apiKey, baseUrl: baseUrlOf(spec) })
    : spec.provider === "openai-responses"
    ? OpenAiResponses.make({ apiKey, baseUrl: baseUrlOf(spec), name: "openai-responses" })
    : OpenAi.make({ apiKey, baseUrl: baseUrlOf(spec), name: "openai-compatible", maxTokensField: "max_tokens" })
  return Effect.mapError(adapter, (error: InvalidOptions) => {
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
 * Builds every route (adapter + chain route) and returns the keys it read, for redaction.
 *
 * @since 0.1.0
 * @category constructors
 */
export const buildRoutes = (
  specs: ReadonlyArray<RouteSpec>
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
      if (Option.isSome(key)) secrets.push(key.value)
      routes.push(toRoute(spec, yield* providerOf(spec, key)))
    }
    return { routes, secrets }
  })

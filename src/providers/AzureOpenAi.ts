/**
 * Azure OpenAI as a {@link Provider}: OpenAI's Chat Completions and Responses wire formats on an Azure
 * resource, with Azure's URLs, credentials and failure semantics.
 *
 * Two URL shapes (Microsoft's "API version lifecycle" page):
 * - the classic deployment path `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
 *   (the default for Chat Completions; `api-version` defaults to {@link DEFAULT_API_VERSION}, the
 *   latest GA dated version), and
 * - the v1 path `{endpoint}/openai/v1/chat/completions` / `{endpoint}/openai/v1/responses`, which needs
 *   no `api-version` and names the deployment in the body's `model` (the Responses API is GA only
 *   there, so `api: "responses"` always uses it).
 *
 * The deployment is the request's model unless `deployments` maps it (`{ "gpt-4o": "gpt4o-prod-eu" }`);
 * errors and routes keep the model name the caller asked for. Credentials are an `api-key` (header
 * `api-key`) or a Microsoft Entra ID token (`authorization: Bearer …`), both `Redacted` and scrubbed
 * from everything kept. Failures are classified by Azure's own rules first (content-filter 400s are
 * `ContentFiltered`, the "high demand" 429 is `Overloaded`, `x-ms-retry-after-ms`, `apim-request-id`),
 * then OpenAI's.
 *
 * Several regions are several adapters, one route each — `name` labels the route in errors, spans,
 * metrics and breaker state:
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { AzureOpenAi, Fallback } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const eastus = yield* AzureOpenAi.make({
 *     endpoint: "https://contoso-eastus.openai.azure.com",
 *     apiKey: Redacted.make(process.env.AZURE_EASTUS_KEY ?? ""),
 *     name: "azure-eastus"
 *   })
 *   const swedencentral = yield* AzureOpenAi.make({
 *     endpoint: "https://contoso-sweden.openai.azure.com",
 *     apiKey: Redacted.make(process.env.AZURE_SWEDEN_KEY ?? ""),
 *     name: "azure-swedencentral"
 *   })
 *   return yield* Fallback.make({
 *     routes: [
 *       { name: "azure-eastus", provider: eastus, model: "gpt-4o" },
 *       { name: "azure-swedencentral", provider: swedencentral, model: "gpt-4o" }
 *     ]
 *   })
 * })
 * ```
 *
 * @since 0.2.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { InvalidOptions, type ProviderError } from "../Errors.js"
import { apiKeyConfig } from "../internal/config.js"
import { type GenerateRequest, Provider, type ProviderShape } from "../Provider.js"
import { azureHttp, azureStreamError, refineResponsesError } from "./internal/azureErrors.js"
import { type CommonOptions, makeHttpAdapter, resolve, type WireFormat } from "./internal/adapter.js"
import type { StreamProtocol } from "./internal/streaming.js"
import { chatFormat } from "./OpenAi.js"
import * as OpenAiResponses from "./OpenAiResponses.js"

/**
 * Options of the Azure OpenAI adapter.
 *
 * @since 0.2.0
 * @category models
 */
export interface AzureOpenAiOptions extends Omit<CommonOptions, "apiKey" | "baseUrl"> {
  /**
   * The resource's root, `https://{resource}.openai.azure.com` (or `…services.ai.azure.com`, or an API
   * Management front). The adapter appends `/openai/…`; a path that already ends in `/openai` is refused.
   */
  readonly endpoint: string
  /** The resource key, sent as the `api-key` header. One of `apiKey` and `bearerToken` is required. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /**
   * A Microsoft Entra ID access token (scope `https://cognitiveservices.azure.com/.default`), sent as
   * `authorization: Bearer …`. Fixed at construction: rebuild the layer when it is refreshed.
   */
  readonly bearerToken?: Redacted.Redacted<string> | undefined
  /** Which API: Chat Completions or Responses. Default `chat`. */
  readonly api?: "chat" | "responses" | undefined
  /** Which URL shape. Default `deployment` for `chat`; `responses` is served on `v1` only. */
  readonly urlShape?: "deployment" | "v1" | undefined
  /**
   * The `api-version` query parameter. Default {@link DEFAULT_API_VERSION} on the deployment path;
   * none on the v1 path (where a value such as `preview` is still sent when given).
   */
  readonly apiVersion?: string | undefined
  /** Deployment names by model name; a model not listed is its own deployment name. */
  readonly deployments?: Readonly<Record<string, string>> | undefined
  /** Label in errors, spans and metrics — one per region or resource. Default `azure-openai`. */
  readonly name?: string | undefined
  /** Chat Completions: the token-cap field. Default `max_completion_tokens` (the o-series accept only it). */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens" | undefined
  /**
   * Chat Completions streams: ask for usage (`stream_options`). Default true; api-versions before
   * `2024-09-01-preview` reject the field ("Unrecognized request argument supplied: stream_options").
   */
  readonly streamUsage?: boolean | undefined
  /** Responses: let Azure keep the response (`store`). Default false. */
  readonly store?: boolean | undefined
  /** Forward `request.metadata` in the body. Default false. */
  readonly sendMetadata?: boolean | undefined
}

/**
 * The default `api-version` of the deployment path: `2024-10-21`, the latest GA (non-preview) dated
 * version of the inference API (Azure REST API specs, `inference/stable/2024-10-21`). It accepts
 * `max_completion_tokens`, `stream_options` and structured outputs.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_API_VERSION = "2024-10-21"

/**
 * The default label.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_NAME = "azure-openai"

// ---------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------

/** A character undici refuses in a header value (the same rule as the shared option checks). */
const BAD_HEADER_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/
const API_VERSION = /^[A-Za-z0-9._-]{1,64}$/

const endpointProblem = (endpoint: unknown): string | undefined => {
  if (typeof endpoint !== "string" || endpoint.trim().length === 0) {
    return "is required: the resource root, https://{resource}.openai.azure.com"
  }
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    return "must be an absolute http:// or https:// URL such as https://{resource}.openai.azure.com"
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "must be an http:// or https:// URL"
  if (url.search.length > 0 || url.hash.length > 0) return "must not carry a query or fragment (the adapter adds api-version)"
  // A pasted SDK base URL (`…/openai/`, `…/openai/v1/`) would double the segment the adapter appends.
  if (/(^|\/)openai(\/|$)/i.test(url.pathname)) {
    return "is the resource root without /openai (the adapter appends /openai/deployments/… or /openai/v1/…)"
  }
  return undefined
}

const credentialProblem = (
  options: AzureOpenAiOptions
): { readonly option: "apiKey" | "bearerToken"; readonly message: string } | undefined => {
  if (options.apiKey === undefined && options.bearerToken === undefined) {
    return { option: "apiKey", message: "or bearerToken is required (an api-key, or a Microsoft Entra ID token)" }
  }
  if (options.apiKey !== undefined && options.bearerToken !== undefined) {
    return { option: "bearerToken", message: "and apiKey are mutually exclusive (send one credential)" }
  }
  for (const option of ["apiKey", "bearerToken"] as const) {
    const secret = options[option]
    if (secret === undefined) continue
    const value: unknown = Redacted.isRedacted(secret) ? Redacted.value(secret) : undefined
    if (typeof value !== "string" || value.length === 0 || BAD_HEADER_VALUE_CHAR.test(value)) {
      return { option, message: "must be a non-empty Redacted string that can be sent in an HTTP header" }
    }
  }
  return undefined
}

const deploymentsProblem = (deployments: AzureOpenAiOptions["deployments"]): { option: string; message: string } | undefined => {
  if (deployments === undefined) return undefined
  if (typeof deployments !== "object" || deployments === null) return { option: "deployments", message: "must map model names to deployment names" }
  for (const [model, deployment] of Object.entries(deployments)) {
    if (typeof deployment !== "string" || deployment.trim().length === 0 || /[\s/?#]/.test(deployment)) {
      return { option: `deployments["${model.slice(0, 100)}"]`, message: "must be a deployment name (no spaces, /, ? or #)" }
    }
  }
  return undefined
}

/** The first Azure-specific problem with the options, naming the option (the shared ones follow). */
const azureProblem = (options: AzureOpenAiOptions): { readonly option: string; readonly message: string } | undefined => {
  const endpoint = endpointProblem(options.endpoint)
  if (endpoint !== undefined) return { option: "endpoint", message: endpoint }
  const credential = credentialProblem(options)
  if (credential !== undefined) return credential
  if (options.api !== undefined && options.api !== "chat" && options.api !== "responses") {
    return { option: "api", message: `must be "chat" or "responses", got ${JSON.stringify(options.api)}` }
  }
  if (options.urlShape !== undefined && options.urlShape !== "deployment" && options.urlShape !== "v1") {
    return { option: "urlShape", message: `must be "deployment" or "v1", got ${JSON.stringify(options.urlShape)}` }
  }
  if (options.api === "responses" && options.urlShape === "deployment") {
    return { option: "urlShape", message: "must be \"v1\" for the Responses API (served at /openai/v1/responses)" }
  }
  if (options.apiVersion !== undefined && (typeof options.apiVersion !== "string" || !API_VERSION.test(options.apiVersion))) {
    return { option: "apiVersion", message: `must look like "2024-10-21" or "2025-04-01-preview", got ${JSON.stringify(String(options.apiVersion)).slice(0, 80)}` }
  }
  return deploymentsProblem(options.deployments)
}

// ---------------------------------------------------------------------------------------------------
// The wire format
// ---------------------------------------------------------------------------------------------------

/** Where a request goes under `endpoint` (path and query). */
const pathOf = (options: AzureOpenAiOptions, deploymentOf: (model: string) => string) => {
  const api = options.api ?? "chat"
  const shape = options.urlShape ?? (api === "responses" ? "v1" : "deployment")
  if (shape === "v1") {
    const query = options.apiVersion !== undefined ? `?api-version=${encodeURIComponent(options.apiVersion)}` : ""
    const path = api === "responses" ? "/openai/v1/responses" : "/openai/v1/chat/completions"
    return () => path + query
  }
  const version = encodeURIComponent(options.apiVersion ?? DEFAULT_API_VERSION)
  return (request: GenerateRequest) =>
    `/openai/deployments/${encodeURIComponent(deploymentOf(request.model))}/chat/completions?api-version=${version}`
}

const refinedProtocol = (protocol: StreamProtocol, refine: (error: ProviderError) => ProviderError): StreamProtocol => ({
  builder: protocol.builder,
  onEvent: (event, out) => {
    const failure = protocol.onEvent(event, out)
    return failure === undefined ? undefined : refine(failure)
  }
})

const authHeadersOf = (options: AzureOpenAiOptions): Readonly<Record<string, string>> =>
  options.apiKey !== undefined
    ? { "api-key": Redacted.value(options.apiKey) }
    : { authorization: `Bearer ${Redacted.value(options.bearerToken ?? Redacted.make(""))}` }

const wireFormat = (options: AzureOpenAiOptions): WireFormat => {
  const deployments = options.deployments ?? {}
  const deploymentOf = (model: string) => (Object.prototype.hasOwnProperty.call(deployments, model) ? deployments[model]! : model)
  const path = pathOf(options, deploymentOf)
  const authHeaders = authHeadersOf(options)
  const responses = options.api === "responses"
  const base = responses
    ? OpenAiResponses.wireFormat(
      { apiKey: Redacted.make(""), store: options.store, sendMetadata: options.sendMetadata },
      { path, authHeaders, classify: azureHttp }
    )
    : chatFormat({
      path,
      authHeaders,
      maxTokensField: options.maxTokensField ?? "max_completion_tokens",
      sendMetadata: options.sendMetadata,
      streamUsage: options.streamUsage,
      classify: azureHttp,
      classifyStreamError: azureStreamError
    })
  // The Responses protocol classifies in-stream errors with OpenAI's rules; Azure's codes refine them.
  const refine = responses ? refineResponsesError : (error: ProviderError) => error
  return {
    ...base,
    // The body names the deployment: the v1 API routes on it (the deployment path ignores it).
    encode: (request, call) => base.encode({ ...request, model: deploymentOf(request.model) }, call),
    decode: (exchange, body) => Effect.mapError(base.decode(exchange, body), refine),
    protocol: (exchange) => refinedProtocol(base.protocol(exchange), refine)
  }
}

const build = (component: string) =>
(options: AzureOpenAiOptions): Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> => {
  const problem = azureProblem(options)
  if (problem !== undefined) {
    return Effect.fail(new InvalidOptions({ component, option: problem.option, message: `${problem.option} ${problem.message}` }))
  }
  const credential = options.apiKey ?? options.bearerToken ?? Redacted.make("")
  const endpoint = options.endpoint.trim()
  return Effect.flatMap(
    resolve(component, { ...options, apiKey: credential, baseUrl: endpoint }, { name: DEFAULT_NAME, baseUrl: endpoint }),
    (resolved) => Effect.map(HttpClient.HttpClient, (client) => makeHttpAdapter(client, resolved, wireFormat(options)))
  )
}

/**
 * Builds the adapter from an `HttpClient` in context. Fails with `InvalidOptions` naming the option
 * when it cannot work: an `endpoint` that is not the resource root, no credential or two, a Responses
 * API on the deployment path, an `apiVersion` or deployment name that cannot go in a URL, and the
 * shared checks (bounds, headers, `name`).
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { AzureOpenAi, Transport } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const azure = yield* AzureOpenAi.make({
 *     endpoint: "https://contoso.openai.azure.com",
 *     apiKey: Redacted.make(process.env.AZURE_OPENAI_API_KEY ?? ""),
 *     deployments: { "gpt-4o": "gpt4o-prod" }
 *   })
 *   return yield* azure.generate({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], maxTokens: 64 })
 * }).pipe(Effect.provide(Transport.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: (options: AzureOpenAiOptions) => Effect.Effect<ProviderShape<ProviderError>, InvalidOptions, HttpClient.HttpClient> =
  build("AzureOpenAi.make")

/**
 * The adapter as a `Provider` layer (fails with `InvalidOptions` like {@link make}).
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import { AzureOpenAi } from "effect-llm-resilience"
 *
 * const AzureLive = AzureOpenAi.layer({
 *   endpoint: "https://contoso.openai.azure.com",
 *   bearerToken: Redacted.make(process.env.AZURE_OPENAI_AD_TOKEN ?? ""),
 *   urlShape: "v1"
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: AzureOpenAiOptions): Layer.Layer<Provider, InvalidOptions, HttpClient.HttpClient> =>
  Layer.effect(Provider, build("AzureOpenAi.layer")(options))

/**
 * The adapter configured from the environment variables the `openai` SDK's `AzureOpenAI` client
 * reads: `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY` (redacted) and optional `OPENAI_API_VERSION`.
 *
 * @example
 * ```ts
 * import { AzureOpenAi } from "effect-llm-resilience"
 *
 * const AzureLive = AzureOpenAi.layerConfig
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Provider, ConfigError.ConfigError | InvalidOptions, HttpClient.HttpClient> = Layer.effect(
  Provider,
  Effect.flatMap(
    Config.all({
      endpoint: Config.string("AZURE_OPENAI_ENDPOINT"),
      apiKey: apiKeyConfig("AZURE_OPENAI_API_KEY"),
      apiVersion: Config.option(Config.string("OPENAI_API_VERSION"))
    }),
    (config) =>
      build("AzureOpenAi.layerConfig")({
        endpoint: config.endpoint,
        apiKey: config.apiKey,
        apiVersion: config.apiVersion._tag === "Some" ? config.apiVersion.value : undefined
      })
  )
)

/**
 * Options and plumbing common to every HTTP adapter, so that OpenAI and Anthropic differ only in
 * their wire shapes.
 *
 * @internal
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Redacted from "effect/Redacted"
import type { CallSite } from "../Classify.js"
import type { GenerateRequest } from "../Provider.js"
import type { WireLimits } from "./wire.js"

/** Options every HTTP adapter takes (documented on the public option types). */
export interface CommonOptions {
  readonly apiKey: Redacted.Redacted<string>
  readonly baseUrl?: string | undefined
  readonly name?: string | undefined
  readonly maxTokensCap?: number | undefined
  readonly maxBodyBytes?: number | undefined
  readonly maxSseEventBytes?: number | undefined
  readonly idempotencyHeader?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/** Defaults: 8 MiB bodies (an LLM answer is far smaller; a runaway proxy page is not), 1 MiB events. */
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
export const DEFAULT_MAX_SSE_EVENT_BYTES = 1024 * 1024
export const DEFAULT_IDEMPOTENCY_HEADER = "idempotency-key"

export interface Resolved {
  readonly name: string
  readonly baseUrl: string
  readonly limits: WireLimits
  readonly secrets: ReadonlyArray<string>
  readonly maxTokensCap: number | undefined
  readonly idempotencyHeader: string
  readonly headers: Readonly<Record<string, string>>
}

/** Extra headers whose names say they carry a credential (a gateway's key, a bearer token). */
const CREDENTIAL_HEADER = /auth|key|token|secret|password|cookie/i

/**
 * What to scrub from everything kept: the API key and the value of every extra header that carries
 * a credential (gateways such as Portkey or an Azure APIM front take their own key as a header).
 */
const secretsOf = (key: string, headers: Readonly<Record<string, string>>): ReadonlyArray<string> => {
  const secrets = key.length > 0 ? [key] : []
  for (const [name, value] of Object.entries(headers)) {
    if (CREDENTIAL_HEADER.test(name) && value.length >= 4) secrets.push(value.replace(/^(Bearer|Basic)\s+/i, ""))
  }
  return secrets
}

export const resolve = (options: CommonOptions, defaults: { readonly name: string; readonly baseUrl: string }): Resolved => {
  const key = Redacted.value(options.apiKey)
  return {
    name: options.name ?? defaults.name,
    baseUrl: (options.baseUrl ?? defaults.baseUrl).replace(/\/+$/, ""),
    limits: {
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      maxSseEventBytes: options.maxSseEventBytes ?? DEFAULT_MAX_SSE_EVENT_BYTES
    },
    secrets: secretsOf(key, options.headers ?? {}),
    maxTokensCap: options.maxTokensCap,
    idempotencyHeader: (options.idempotencyHeader ?? DEFAULT_IDEMPOTENCY_HEADER).toLowerCase(),
    headers: options.headers ?? {}
  }
}

export const siteOf = (resolved: Resolved, request: GenerateRequest): CallSite => ({
  provider: resolved.name,
  model: request.model,
  route: `${resolved.name}/${request.model}`,
  attempt: 1,
  secrets: resolved.secrets
})

export const cappedMaxTokens = (resolved: Resolved, request: GenerateRequest): number =>
  resolved.maxTokensCap === undefined ? request.maxTokens : Math.min(request.maxTokens, resolved.maxTokensCap)

/** A JSON POST with the adapter's auth headers and, when the call has one, its idempotency key. */
export const post = (
  resolved: Resolved,
  path: string,
  authHeaders: Readonly<Record<string, string>>,
  request: GenerateRequest,
  body: unknown,
  stream: boolean
): HttpClientRequest.HttpClientRequest =>
  HttpClientRequest.post(resolved.baseUrl + path).pipe(
    HttpClientRequest.setHeaders({
      ...resolved.headers,
      ...authHeaders,
      accept: stream ? "text/event-stream" : "application/json",
      ...(request.idempotencyKey !== undefined ? { [resolved.idempotencyHeader]: request.idempotencyKey } : {})
    }),
    HttpClientRequest.bodyUnsafeJson(body)
  )

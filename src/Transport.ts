/**
 * The HTTP transport the adapters run on: `@effect/platform`'s HttpClient over an undici `Agent` with
 * a sized keep-alive pool and a connect timeout of its own.
 *
 * Why a dedicated dispatcher: model calls are long (seconds to minutes) and bursty, so the pool size
 * bounds concurrency per origin, keep-alive saves the TLS handshake on every retry, and a short connect
 * timeout (separate from the long response phases) turns a black-holed endpoint into a fast, typed
 * `Timeout{phase:"connect"}` instead of a stall. Response-phase timeouts (headers, first token, idle,
 * attempt, deadline) are policies (see `Timeouts`), not transport settings.
 *
 * @since 0.1.0
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Undici from "@effect/platform-node/Undici"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { spansOn } from "./internal/tracing.js"

/**
 * Transport options. Defaults are listed in docs/providers.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportOptions {
  /** Maximum sockets per origin. Default 64. */
  readonly connections?: number | undefined
  /** TCP + TLS connect timeout in milliseconds. Default 10 000. */
  readonly connectTimeoutMs?: number | undefined
  /** How long an idle keep-alive socket is kept, in milliseconds. Default 30 000. */
  readonly keepAliveTimeoutMs?: number | undefined
  /**
   * The platform's per-request `http.client` span (and its `traceparent` header): `auto` (default)
   * creates it only when a real tracer is installed (e.g. `@effect/opentelemetry`) — an unexported span
   * still costs a noticeable share of a request's CPU time (bench:throughput); `always` / `never`.
   */
  readonly tracing?: "auto" | "always" | "never" | undefined
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = { connections: 64, connectTimeoutMs: 10_000, keepAliveTimeoutMs: 30_000, tracing: "auto" } as const

/**
 * A scoped undici dispatcher with these options (closed with its scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeDispatcher = (options: TransportOptions = {}) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new Undici.Agent({
        connections: options.connections ?? defaults.connections,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? defaults.keepAliveTimeoutMs,
        connect: { timeout: options.connectTimeoutMs ?? defaults.connectTimeoutMs }
      })
    ),
    (agent) => Effect.promise(() => agent.destroy())
  )

/**
 * An `HttpClient` layer backed by a dedicated, sized undici pool.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: TransportOptions = {}): Layer.Layer<HttpClient.HttpClient> => {
  const base = NodeHttpClient.layerUndiciWithoutDispatcher.pipe(
    Layer.provide(Layer.scoped(NodeHttpClient.Dispatcher, makeDispatcher(options)))
  )
  const tracing = options.tracing ?? defaults.tracing
  return Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      HttpClient.transform(client, (effect) =>
        Effect.tracerWith((tracer) =>
          spansOn(tracing, tracer)
            ? Effect.locally(effect, Headers.currentRedactedNames, spanRedactedHeaders)
            : Effect.locally(effect, HttpClient.currentTracerDisabledWhen, disabled)
        )))
  ).pipe(Layer.provide(base))
}

const disabled = () => true

/**
 * Headers whose values the platform's `http.client` span must not carry as attributes: every header
 * but a short list of standard, credential-free ones and the rate-limit headers an operator needs. A
 * server or proxy that echoes the key can put it in any response header it likes (`x-request-id`,
 * `x-correlation-id`, `via`, a name of its own), and the span records response headers verbatim, so
 * the rule is an allow-list, not a list of names to hide. The library's own `llm.attempt` span
 * carries the request id once it has been checked (`llm.request_id`). A custom HttpClient layer
 * should set the same on `Headers.currentRedactedNames`.
 */
export const spanRedactedHeaders: ReadonlyArray<string | RegExp> = [
  /^(?!(?:content-type|content-length|content-encoding|transfer-encoding|date|connection|keep-alive|accept|accept-encoding|user-agent|retry-after|retry-after-ms|x-should-retry|x-ratelimit-[a-z-]+|anthropic-ratelimit-[a-z-]+|openai-processing-ms|openai-version)$)/i
]

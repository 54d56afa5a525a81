/**
 * effect-llm-resilience — the reliability layer between AI agents and model APIs, for Effect.
 *
 * @since 0.1.0
 */

/**
 * Which wire responses map to which failure, and how (status, headers, body, stream error events).
 *
 * @since 0.1.0
 */
export * as Classify from "./Classify.js"

/**
 * The failure taxonomy: tagged errors with `action` and `retryable`.
 *
 * @since 0.1.0
 */
export * as Errors from "./Errors.js"

/**
 * The provider-neutral request/response/stream model and the `Provider` service.
 *
 * @since 0.1.0
 */
export * as Provider from "./Provider.js"

/**
 * Normalised rate-limit headroom read from response headers.
 *
 * @since 0.1.0
 */
export * as RateLimitSnapshot from "./RateLimitSnapshot.js"

/**
 * The undici-backed HttpClient the adapters run on.
 *
 * @since 0.1.0
 */
export * as Transport from "./Transport.js"

/**
 * OpenAI Chat Completions (and OpenAI-compatible servers).
 *
 * @since 0.1.0
 */
export * as OpenAi from "./providers/OpenAi.js"

/**
 * Anthropic Messages.
 *
 * @since 0.1.0
 */
export * as Anthropic from "./providers/Anthropic.js"

/**
 * The schema-gated fallback chain: routes, action routing, output gate, repair, attempt history.
 *
 * @since 0.1.0
 */
export * as Fallback from "./Fallback.js"

/**
 * The client service over a fallback chain (`generate`, `generateObject`, `stream`).
 *
 * @since 0.1.0
 */
export * as LlmClient from "./LlmClient.js"

/**
 * Whether answers currently come from a fallback route or a repair (a `SubscriptionRef`).
 *
 * @since 0.1.0
 */
export * as DegradedMode from "./DegradedMode.js"

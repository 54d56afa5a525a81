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
 * The OpenAI Responses adapter (`POST /responses`): typed SSE events, `incomplete_details`, `text.format`.
 *
 * @since 0.2.0
 */
export * as OpenAiResponses from "./providers/OpenAiResponses.js"

/**
 * Azure OpenAI: the deployment path with `api-version`, or the v1 path (Chat Completions and
 * Responses); `api-key` or an Entra bearer token; content-filter refusals as `ContentFiltered`.
 *
 * @since 0.2.0
 */
export * as AzureOpenAi from "./providers/AzureOpenAi.js"

/**
 * OpenAI-compatible servers with their quirks: vLLM, Ollama, OpenRouter, Groq, Together.
 *
 * @since 0.2.0
 */
export * as OpenAiCompatible from "./providers/OpenAiCompatible.js"

/**
 * Anthropic Messages.
 *
 * @since 0.1.0
 */
export * as Anthropic from "./providers/Anthropic.js"

/**
 * Google Gemini (Generative Language API `generateContent` / `streamGenerateContent`): `RetryInfo`
 * waits, per-day quotas, safety finishes.
 *
 * @since 0.2.0
 */
export * as Gemini from "./providers/Gemini.js"

// AWS Bedrock is its own entry point, `effect-llm-resilience/Bedrock`: its SigV4 signer and
// eventstream codec (@smithy/*) load only for applications that call Bedrock.

/**
 * Retries driven by the failure's action (wait / reroute / stop), honouring Retry-After, with jitter.
 *
 * @since 0.1.0
 */
export * as Retry from "./Retry.js"

/**
 * A per-route retry budget (retries ≤ a share of requests + a small reserve) against retry storms.
 *
 * @since 0.1.0
 */
export * as RetryBudget from "./RetryBudget.js"

/**
 * Phase timeouts per attempt: headers, first content token, idle gap, whole attempt.
 *
 * @since 0.1.0
 */
export * as Timeouts from "./Timeouts.js"

/**
 * A wall-clock deadline per logical call, visible to every layer under it.
 *
 * @since 0.1.0
 */
export * as Deadline from "./Deadline.js"

/**
 * A circuit breaker per route and model, counting only provider-health failures.
 *
 * @since 0.1.0
 */
export * as CircuitBreaker from "./CircuitBreaker.js"

/**
 * A client-side, header-aware rate limiter (RPM / TPM buckets, concurrency bulkhead).
 *
 * @since 0.1.0
 */
export * as RateLimiter from "./RateLimiter.js"

/**
 * Latency hedging: a second attempt when the first has produced no content after a delay.
 *
 * @since 0.1.0
 */
export * as Hedge from "./Hedge.js"

/**
 * The per-route policy: the strategies composed in a fixed order, as a function or a Layer.
 *
 * @since 0.1.0
 */
export * as Policy from "./Policy.js"

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

/**
 * Durable agent runs: the step journal, model steps, tools and their resume rules.
 *
 * @since 0.1.0
 */
export * as Agent from "./agent/Agent.js"

/**
 * The failures of durable runs.
 *
 * @since 0.1.0
 */
export * as AgentError from "./agent/AgentError.js"

/**
 * Where durable runs keep their journal: memory, SQLite, Postgres.
 *
 * @since 0.1.0
 */
export * as CheckpointStore from "./agent/CheckpointStore.js"

/**
 * "Still working" events for long agent steps.
 *
 * @since 0.1.0
 */
export * as Heartbeat from "./agent/Heartbeat.js"

/**
 * Pre-flight health checks before a durable run.
 *
 * @since 0.1.0
 */
export * as Preflight from "./agent/Preflight.js"

/**
 * Agent tools and their effect kinds (pure, idempotent, keyed, irreversible).
 *
 * @since 0.1.0
 */
export * as Tool from "./agent/Tool.js"

/**
 * A run as data (calls, attempts, breaker transitions, steps), its recorder, summary and HTML report.
 *
 * @since 0.1.0
 */
export * as Report from "./Report.js"

/**
 * The providers' public status pages (statuspage.io, Google Cloud), cached: an agent run's pre-flight
 * check and a hint to a circuit breaker.
 *
 * @since 0.2.0
 */
export * as StatusPage from "./StatusPage.js"

/**
 * Request coalescing: identical requests in flight at the same moment share one provider call, each
 * caller keeping its own deadline and interruption.
 *
 * @since 0.2.0
 */
export * as Coalesce from "./Coalesce.js"

/**
 * Cost ceilings: a price table per model, the cost of every attempt, call and run, and spend budgets
 * (`maxCostUsd`, `maxTokens`) that refuse the next provider call with `BudgetExceeded` before it is sent.
 *
 * @since 0.2.0
 */
export * as Spend from "./Spend.js"

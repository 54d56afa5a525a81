/**
 * The demo's scripted incident: three routes on the in-process ChaosServer and what each one answers,
 * request by request. The agent's steps run one at a time, so the order of requests per route — and
 * so the whole incident — is deterministic:
 *
 * | step | primary (OpenAI format) | secondary (Anthropic format) | tertiary (small model) |
 * |---|---|---|---|
 * | plan | 429 (retry-after-ms 700), 429 (retry-after 1 s), ok | | |
 * | summarize-1 | 529 overloaded → reroute | ok | |
 * | summarize-2 | 503 → reroute; breaker opens (2 in a row) | ok | |
 * | post_draft | — irreversible tool refused: degraded — | | |
 * | draft (stream) | breaker open: fail fast | first token, then silence → idle timeout | restart here: ok |
 * | extract-facts | breaker open | 529 → reroute | schema-invalid JSON → repair → ok |
 * | write-report | breaker open | slow answer… the process "crashes" mid-call | |
 * | (resume) | steps replayed from the checkpoint; fresh breaker; ok | | |
 * | publish_report | — irreversible tool runs: healthy again — | | |
 *
 * @since 0.1.0
 */
import type * as Policy from "../../Policy.js"
import type * as Scenario from "../../testing/Scenario.js"

/**
 * The demo's routes: names and models.
 *
 * @since 0.1.0
 * @category constants
 */
export const routes = {
  primary: { name: "primary", provider: "openai", model: "gpt-4o-mini" },
  secondary: { name: "secondary", provider: "anthropic", model: "claude-sonnet-4-5" },
  tertiary: { name: "tertiary", provider: "openai-compatible", model: "tiny-json-1b" }
} as const

/**
 * The steps of the research agent, in order (for the progress line).
 *
 * @since 0.1.0
 * @category constants
 */
export const plannedSteps: ReadonlyArray<string> = [
  "plan",
  "web_search",
  "summarize-1",
  "summarize-2",
  "post_draft",
  "draft",
  "extract-facts",
  "write-report",
  "publish_report"
]

/**
 * The step during which the first "process" crashes.
 *
 * @since 0.1.0
 * @category constants
 */
export const crashStep = "write-report"

/**
 * What a healthy model answers: one JSON document holding every field the agent's steps ask for (each
 * step's Schema reads its own fields), so any route can serve any step.
 *
 * @since 0.1.0
 * @category constants
 */
export const answer = {
  topic: "Why LLM API calls fail in production, and how agents survive it",
  queries: ["429 rate limits and Retry-After", "529 overloaded and failover", "streams that stall after the first token"],
  summary: "Provider failures are routine: rate limits, overload, stalled streams and off-contract output each need a different response.",
  confidence: 0.82,
  facts: [
    { claim: "A 429 carries Retry-After; waiting for it beats blind exponential backoff.", source: "provider docs" },
    { claim: "A 529 means the provider sheds load: move to another route instead of retrying.", source: "incident reviews" },
    { claim: "A stream can stall after its first token; only an idle timeout notices.", source: "chaos tests" }
  ]
}

const latency: Scenario.Latency = { kind: "lognormal", medianMs: 90, sigma: 0.35, maxMs: 400 }

/**
 * The incident, as a ChaosServer scenario.
 *
 * @since 0.1.0
 * @category constants
 */
export const scenario: Scenario.Scenario = {
  description: "effect-llm-resilience demo: the scripted incident",
  seed: 7,
  routes: [
    {
      name: routes.primary.name,
      api: "openai",
      model: routes.primary.model,
      content: { kind: "json", value: answer },
      latency,
      deltaDelayMs: 15,
      script: [
        { kind: "rate_limit", retryAfterMs: 700 },
        { kind: "rate_limit", retryAfterSeconds: 1 },
        { kind: "ok" },
        { kind: "overloaded" },
        { kind: "http_error", status: 503 }
      ]
    },
    {
      name: routes.secondary.name,
      api: "anthropic",
      model: routes.secondary.model,
      content: { kind: "json", value: answer },
      latency,
      deltaDelayMs: 15,
      script: [
        { kind: "ok" },
        { kind: "ok" },
        { kind: "stall_mid_stream", afterDeltas: 1 },
        { kind: "overloaded" },
        { kind: "ok", latency: { kind: "fixed", ms: 4_000 } }
      ]
    },
    {
      name: routes.tertiary.name,
      api: "openai",
      model: routes.tertiary.model,
      content: { kind: "json", value: answer },
      latency: { kind: "lognormal", medianMs: 40, sigma: 0.3, maxMs: 200 },
      deltaDelayMs: 10,
      script: [
        { kind: "ok" },
        { kind: "schema_violation", value: { facts: "none found" } }
      ],
      // A small model: sometimes valid JSON of the wrong shape.
      mix: [{ fault: { kind: "schema_violation", value: { facts: "none found" } }, rate: 0.25 }]
    }
  ]
}

/**
 * The policies of the demo's routes: short timeouts and backoff so the incident plays out in seconds;
 * the primary's breaker opens after two provider failures in a row.
 *
 * @since 0.1.0
 * @category constants
 */
export const policies: Readonly<Record<"primary" | "secondary" | "tertiary", Policy.PolicyOptions>> = {
  primary: {
    retry: { maxAttempts: 3, base: "100 millis", cap: "1 second" },
    timeouts: { headers: "3 seconds", firstToken: "3 seconds", idle: "1 second", attempt: "8 seconds" },
    breaker: { consecutiveFailures: 2, openDuration: "60 seconds" }
  },
  secondary: {
    retry: { maxAttempts: 3, base: "100 millis", cap: "1 second" },
    timeouts: { headers: "3 seconds", firstToken: "3 seconds", idle: "1 second", attempt: "8 seconds" },
    breaker: { consecutiveFailures: 4 }
  },
  tertiary: {
    retry: { maxAttempts: 2, base: "100 millis", cap: "1 second" },
    timeouts: { headers: "3 seconds", firstToken: "3 seconds", idle: "1 second", attempt: "8 seconds" }
  }
}

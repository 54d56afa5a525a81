/**
 * What every rate limiter implementation shares (the in-process one in `RateLimiter.ts` and the
 * Redis-backed one in `redis/RedisRateLimiter.ts`): the request cost estimate, the metrics, small
 * number helpers. One definition, so both limiters charge and report alike.
 *
 * @internal
 */
import * as MetricBoundaries from "effect/MetricBoundaries"
import { RateLimited } from "../Errors.js"
import type { GenerateRequest } from "../Provider.js"
import { estimatePromptTokens } from "./estimateTokens.js"
import * as Metrics from "./metrics.js"

/** `value` when it is a finite positive number, else `fallback`. */
export const positiveOr = (value: number | undefined, fallback: number): number =>
  value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback

export const formatMs = (ms: number): string => (Number.isFinite(ms) ? `${Math.ceil(ms)} ms` : "an unbounded time")

/** What one request is charged before it is sent, per dimension. */
export interface RequestCosts {
  readonly requests: number
  readonly tokens: number
  readonly inputTokens: number
  readonly outputTokens: number
}

/**
 * The up-front charge of a request: one request; the custom estimate, else prompt estimate +
 * `maxTokens`; the prompt estimate as input tokens. Output is charged when it is known (at the end):
 * providers count it as it is generated.
 */
export const requestCosts = (
  request: GenerateRequest,
  estimate: ((request: GenerateRequest) => number) | undefined
): RequestCosts => {
  const prompt = estimatePromptTokens(request)
  const tokens = estimate === undefined ? prompt + request.maxTokens : positiveOr(estimate(request), 0)
  return { requests: 1, tokens, inputTokens: prompt, outputTokens: 0 }
}

const waitBoundaries = MetricBoundaries.exponential({ start: 1, factor: 2, count: 18 })

/** The limiter metrics of one key (tagged once per limiter, see metrics.ts). */
export const limiterMetrics = (key: string) => ({
  wait: Metrics.histogram(
    "llm_ratelimiter_wait_ms",
    "Milliseconds callers waited for client-side rate-limit capacity (callers that had to wait)",
    waitBoundaries,
    { key }
  ),
  rejections: Metrics.counterFamily(
    "llm_ratelimiter_rejections_total",
    "Callers the client-side rate limiter failed fast, by key and reason",
    { key },
    "reason"
  )
})

/** Where a limited call runs, for the error. */
export interface LimiterSite {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
}

/**
 * The `RateLimited` a client-side limiter fails a caller with (`providerType: "client_rate_limit"`,
 * so nothing mistakes it for the provider's own 429), carrying the wait it computed when it knows one.
 */
export const clientRateLimited = (
  site: LimiterSite,
  detail: string,
  waitMs: number,
  providerCode?: string
): RateLimited =>
  new RateLimited({
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    message: `client-side rate limit: ${detail}`,
    providerType: "client_rate_limit",
    ...(providerCode !== undefined ? { providerCode } : {}),
    ...(Number.isFinite(waitMs) && waitMs > 0 ? { retryAfterMs: Math.ceil(waitMs) } : {})
  }, true)

/**
 * What a provider told us about our rate-limit headroom, read from its response headers.
 *
 * Both providers publish limits on every response (success or failure): OpenAI as
 * `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` with Go-style durations, Anthropic as
 * `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` with
 * RFC 3339 instants. We normalise both into one shape with resets expressed relative to the moment the
 * response was observed, so a client-side limiter can slow down *before* the provider answers 429.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * One limit window (requests, tokens, …). Every field is optional because providers omit headers freely.
 *
 * @since 0.1.0
 * @category models
 */
export const RateLimitWindow = Schema.Struct({
  limit: Schema.optional(Schema.Number),
  remaining: Schema.optional(Schema.Number),
  /** Milliseconds after `observedAt` when the window is fully replenished. */
  resetAfterMs: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 * @category models
 */
export type RateLimitWindow = typeof RateLimitWindow.Type

/**
 * The rate-limit state a single response reported.
 *
 * @since 0.1.0
 * @category models
 */
export const RateLimitSnapshot = Schema.Struct({
  requests: Schema.optional(RateLimitWindow),
  tokens: Schema.optional(RateLimitWindow),
  inputTokens: Schema.optional(RateLimitWindow),
  outputTokens: Schema.optional(RateLimitWindow),
  /** The provider's own wait hint (`retry-after-ms` / `retry-after`), when it sent one. */
  retryAfterMs: Schema.optional(Schema.Number),
  /** Epoch milliseconds (from Effect's `Clock`) when the headers were read. */
  observedAt: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type RateLimitSnapshot = typeof RateLimitSnapshot.Type

/**
 * The tightest window in a snapshot: the one with the lowest remaining fraction. `undefined` when the
 * snapshot carries no usable limit.
 *
 * @since 0.1.0
 * @category utils
 */
export const tightest = (
  snapshot: RateLimitSnapshot
): { readonly name: "requests" | "tokens" | "inputTokens" | "outputTokens"; readonly window: RateLimitWindow } | undefined => {
  let best: { name: "requests" | "tokens" | "inputTokens" | "outputTokens"; window: RateLimitWindow; ratio: number } | undefined
  for (const name of ["requests", "tokens", "inputTokens", "outputTokens"] as const) {
    const window = snapshot[name]
    if (window?.limit === undefined || window.remaining === undefined || window.limit <= 0) continue
    const ratio = window.remaining / window.limit
    if (best === undefined || ratio < best.ratio) best = { name, window, ratio }
  }
  return best === undefined ? undefined : { name: best.name, window: best.window }
}

/**
 * How long until every window the snapshot reports as spent (`remaining` 0) is replenished, in
 * milliseconds after `observedAt`: the wait a 429 implies when it carries no `retry-after` (OpenAI's
 * `x-ratelimit-reset-*`, Anthropic's `anthropic-ratelimit-*-reset`), and how long a client-side
 * limiter stays blocked after a response that spent a window. `undefined` when no spent window gave a
 * reset — then nothing in the headers says how long to wait.
 *
 * @since 0.2.0
 * @category utils
 */
export const spentWindowsResetMs = (snapshot: RateLimitSnapshot): number | undefined => {
  let wait: number | undefined
  for (const name of ["requests", "tokens", "inputTokens", "outputTokens"] as const) {
    const window = snapshot[name]
    if (window?.remaining === undefined || window.remaining > 0 || window.resetAfterMs === undefined) continue
    wait = Math.max(wait ?? 0, window.resetAfterMs)
  }
  return wait
}

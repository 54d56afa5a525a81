/** Responses for the rate limiter tests (local and Redis-backed): a usage split and a minimal answer. */
import type { GenerateResponse, Usage } from "../../src/Provider.js"
import type { RateLimitSnapshot } from "../../src/RateLimitSnapshot.js"

export const usageOf = (totalTokens: number): Usage => ({
  inputTokens: Math.floor(totalTokens / 2),
  outputTokens: Math.ceil(totalTokens / 2),
  totalTokens
})

export const response = (options: { readonly usage?: Usage; readonly rateLimit?: RateLimitSnapshot } = {}): GenerateResponse => ({
  provider: "p",
  model: "m",
  text: "ok",
  toolCalls: [],
  finishReason: "stop",
  usage: options.usage ?? usageOf(10),
  ...(options.rateLimit !== undefined ? { rateLimit: options.rateLimit } : {})
})

/**
 * OpenTelemetry GenAI semantic-convention attributes for the spans the CLI puts around chain calls
 * (the library's own `llm.attempt` spans carry the per-attempt ones). Kept apart from `Telemetry` so
 * that code adding spans does not load the OpenTelemetry SDK. Prompts and answers are never recorded.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { AllRoutesFailed, InvalidOptions } from "../Errors.js"
import type { ChainResult } from "../Fallback.js"

/**
 * GenAI semantic-convention attributes of a chain call's request. Never the prompt.
 *
 * @since 0.1.0
 * @category attributes
 */
export const requestAttributes = (input: {
  readonly provider: string
  readonly model: string
  readonly maxTokens: number
}): Record<string, string | number> => ({
  "gen_ai.operation.name": "chat",
  "gen_ai.provider.name": input.provider,
  "gen_ai.request.model": input.model,
  "gen_ai.request.max_tokens": input.maxTokens
})

/**
 * The attributes of a chain call's outcome.
 *
 * @since 0.1.0
 * @category attributes
 */
export const outcomeAttributes = (
  outcome: { readonly _tag: "Right"; readonly result: ChainResult<unknown> } | { readonly _tag: "Left"; readonly error: AllRoutesFailed }
): Record<string, string | number | boolean | ReadonlyArray<string>> => {
  if (outcome._tag === "Left") {
    return {
      "error.type": outcome.error.lastError?._tag ?? outcome.error._tag,
      "llm.chain.stop": outcome.error.reason,
      "llm.attempts": outcome.error.attempts.length
    }
  }
  const { response } = outcome.result
  return {
    "gen_ai.provider.name": response.provider,
    "gen_ai.response.model": response.model,
    ...(response.id !== undefined ? { "gen_ai.response.id": response.id } : {}),
    "gen_ai.response.finish_reasons": [response.finishReason],
    "gen_ai.usage.input_tokens": outcome.result.usage.inputTokens,
    "gen_ai.usage.output_tokens": outcome.result.usage.outputTokens,
    "llm.route": outcome.result.route,
    "llm.degraded": outcome.result.degraded,
    "llm.attempts": outcome.result.attempts.length,
    ...(outcome.result.cached === true ? { "llm.cached": true } : {})
  }
}

/**
 * Runs a chain call in a `chat {model}` client span (the GenAI span name) with the request
 * attributes, and annotates the outcome.
 *
 * @since 0.1.0
 * @category spans
 */
export const withChatSpan = <A, E extends AllRoutesFailed | InvalidOptions, R>(
  request: { readonly provider: string; readonly model: string; readonly maxTokens: number; readonly label?: string | undefined },
  effect: Effect.Effect<ChainResult<A>, E, R>
): Effect.Effect<ChainResult<A>, E, R> =>
  effect.pipe(
    Effect.tapBoth({
      onSuccess: (result) => Effect.annotateCurrentSpan(outcomeAttributes({ _tag: "Right", result })),
      onFailure: (error) =>
        error._tag === "AllRoutesFailed" ? Effect.annotateCurrentSpan(outcomeAttributes({ _tag: "Left", error })) : Effect.void
    }),
    Effect.withSpan(`chat ${request.model}`, {
      kind: "client",
      attributes: { ...requestAttributes(request), ...(request.label !== undefined ? { "llm.step": request.label } : {}) }
    })
  )

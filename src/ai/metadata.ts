/**
 * How the chain's outcome travels inside an @effect/ai response: the finish part's provider metadata,
 * under one namespaced key. @effect/ai keeps a finish part's provider metadata on every response it
 * returns (`generateText`, `generateObject`, `Chat` calls) and in every stream, so the route, the
 * degraded flag and the attempt history go wherever the answer goes and need no service of their own.
 *
 * @internal
 */
import type * as Response from "@effect/ai/Response"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { AttemptRecord } from "../Errors.js"
import type { ChainResult } from "../Fallback.js"
import { Usage } from "../Provider.js"

/** The provider-metadata key of the chain's outcome on a finish part. */
export const METADATA_KEY = "effect-llm-resilience"

/**
 * The chain's outcome of one @effect/ai call: the route that served it, whether that was degraded
 * (a fallback route, a repair), every attempt, and what they cost.
 */
export const Resilience = Schema.Struct({
  /** The route that served the answer. */
  route: Schema.String,
  /** Served by a route outside the chain's first position, or after a repair. */
  degraded: Schema.Boolean,
  repaired: Schema.Boolean,
  /** Every attempt on every route, in order (skipped routes included). */
  attempts: Schema.Array(AttemptRecord),
  /** Tokens summed over every attempt (rejected answers cost tokens too); the finish part's `usage` is the served answer's. */
  usage: Usage,
  durationMs: Schema.Number,
  /** The serving provider and the model id it reported. */
  provider: Schema.String,
  model: Schema.String,
  requestId: Schema.optional(Schema.String),
  /** Answered from the chain's response cache (no provider call); absent otherwise. */
  cached: Schema.optional(Schema.Boolean)
})

/** @see Resilience */
export type Resilience = typeof Resilience.Type

/** The metadata value for a chain result: plain JSON-safe data, so it can be logged or stored with the answer. */
export const resilienceOfResult = (result: ChainResult<unknown>): Resilience => ({
  route: result.route,
  degraded: result.degraded,
  repaired: result.repaired,
  attempts: result.attempts,
  usage: result.usage,
  durationMs: result.durationMs,
  provider: result.response.provider,
  model: result.response.model,
  ...(result.response.requestId !== undefined ? { requestId: result.response.requestId } : {}),
  ...(result.cached === true ? { cached: true } : {})
})

const decodeResilience = Schema.decodeUnknownOption(Resilience)

/** What {@link resilienceOf} reads: a response, its parts, or a finish part. */
export type ResilienceSource =
  | { readonly content: ReadonlyArray<Response.AnyPart> }
  | ReadonlyArray<Response.AnyPart | Response.AnyPartEncoded>
  | Response.FinishPart

const finishMetadataOf = (source: ResilienceSource): unknown => {
  const parts: ReadonlyArray<Response.AnyPart | Response.AnyPartEncoded> = Array.isArray(source)
    ? source
    : "content" in source
    ? source.content
    : [source]
  for (let i = parts.length - 1; i >= 0; i--) {
    const part = parts[i]!
    if (part.type === "finish") return part.metadata?.[METADATA_KEY]
  }
  return undefined
}

/**
 * The chain's outcome carried by an @effect/ai response served by the chain's LanguageModel — its
 * route, degraded flag, repair flag and attempt history — or `None` when the response did not come
 * through the chain (or its metadata was stripped).
 */
export const resilienceOf = (source: ResilienceSource): Option.Option<Resilience> => {
  const metadata = finishMetadataOf(source)
  return metadata === undefined ? Option.none() : decodeResilience(metadata)
}

/** The @effect/ai models served by a chain (`fromChain`): their every send is a policy attempt of the chain's routes. */
const chainBacked = new WeakSet<object>()

/** Marks `model` as served by a chain (see {@link isChainBacked}). */
export const markChainBacked = <M extends object>(model: M): M => {
  chainBacked.add(model)
  return model
}

/**
 * Whether an @effect/ai model is a chain served by `fromChain` — used as a provider of another chain
 * (the bridge), its routes' attempts already reserve in the caller's spend budgets.
 */
export const isChainBacked = (model: object): boolean => chainBacked.has(model)

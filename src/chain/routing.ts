/**
 * Where the chain goes next: the order of routes for one call, whether a route can take a request,
 * what a failure means for the walk, and how many walks (passes) a call gets.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import { actionOf, type AttemptRecord, type RouteError } from "../Errors.js"
import { extend } from "../internal/object.js"
import type { GenerateRequest } from "../Provider.js"
import type { ChainRequest, Route } from "../Fallback.js"

/** The chain's positions: a lone route, or a run of consecutive routes sharing a group. */
export const positions = (routes: ReadonlyArray<Route>): Array<ReadonlyArray<Route>> => {
  const out: Array<ReadonlyArray<Route>> = []
  let i = 0
  while (i < routes.length) {
    const group = routes[i]!.group
    let j = i + 1
    while (group !== undefined && j < routes.length && routes[j]!.group === group) j++
    out.push(routes.slice(i, j))
    i = j
  }
  return out
}

/**
 * Orders routes for one call: groups are shuffled by weight, everything else keeps its place. A chain
 * without groups has one order, built once (and returned as it is, not as an effect).
 */
export const routeOrder = (routes: ReadonlyArray<Route>): ReadonlyArray<Route> | Effect.Effect<ReadonlyArray<Route>> => {
  const grouped = positions(routes)
  return grouped.every((members) => members.length === 1) ? routes : shuffled(grouped)
}

const shuffled = (grouped: ReadonlyArray<ReadonlyArray<Route>>): Effect.Effect<ReadonlyArray<Route>> =>
  Effect.gen(function*() {
    const out: Array<Route> = []
    for (const members of grouped) {
      // Weighted shuffle without replacement (Efraimidis–Spirakis keys), drawn from Effect's Random.
      const keyed: Array<{ readonly route: Route; readonly key: number }> = []
      for (const route of members) {
        const u = members.length === 1 ? 0.5 : yield* Random.next
        keyed.push({ route, key: Math.pow(u, 1 / Math.max(1e-9, route.weight ?? 1)) })
      }
      keyed.sort((a, b) => b.key - a.key)
      for (const { route } of keyed) out.push(route)
    }
    return out
  })

/** Whether a route can take the request, and the request it gets. */
export type Preflight =
  | { readonly _tag: "Call"; readonly request: GenerateRequest }
  | { readonly _tag: "Skip"; readonly message: string }

/**
 * The route's request (its model, its `maxTokens` bound), or why it is skipped: its declared context
 * window cannot hold the prompt plus the output, or is no larger than one that already overflowed.
 */
export const preflight = (
  route: Route,
  request: ChainRequest,
  minContextWindow: number,
  estimate: (request: GenerateRequest) => number
): Preflight => {
  const maxTokens = route.maxTokens === undefined ? request.maxTokens : Math.min(request.maxTokens, route.maxTokens)
  const routeRequest: GenerateRequest = extend(request, { model: route.model, maxTokens })
  if (route.contextWindow !== undefined) {
    const needed = estimate(routeRequest) + maxTokens
    if (needed > route.contextWindow) {
      return { _tag: "Skip", message: `context window ${route.contextWindow} cannot hold ~${needed} tokens` }
    }
    if (route.contextWindow <= minContextWindow) {
      return { _tag: "Skip", message: `context window ${route.contextWindow} is not larger than the one that overflowed (${minContextWindow})` }
    }
  } else if (minContextWindow > 0) {
    return { _tag: "Skip", message: "no declared context window larger than the one that overflowed" }
  }
  return { _tag: "Call", request: routeRequest }
}

/** What the walk does after a route's failure: on (with the smallest context window still worth trying), or stop. */
export type Next =
  | { readonly _tag: "Next"; readonly minContextWindow: number }
  | { readonly _tag: "Stop"; readonly summary: string }

export const nextAfter = (
  error: RouteError,
  route: Route,
  minContextWindow: number,
  rerouteOnContentFilter: boolean
): Next => {
  // A route's own policy deadline is a per-route bound: the chain moves on while the call has time.
  if (error._tag === "DeadlineExceeded") return { _tag: "Next", minContextWindow }
  if (error._tag === "ContextLengthExceeded") {
    return { _tag: "Next", minContextWindow: Math.max(minContextWindow, route.contextWindow ?? 1) }
  }
  if (error._tag === "ContentFiltered" && rerouteOnContentFilter) return { _tag: "Next", minContextWindow }
  if (actionOf(error) === "stop") return { _tag: "Stop", summary: `${error._tag} on ${route.name}: no route will do better` }
  return { _tag: "Next", minContextWindow }
}

/** Failures another walk of the chain may cure: the provider may be healthy again in a moment. */
export const transientTags: ReadonlySet<RouteError["_tag"]> = new Set<RouteError["_tag"]>([
  "Overloaded",
  "ServerError",
  "RateLimited",
  "Timeout",
  "ConnectionError",
  "StreamInterrupted",
  "CircuitOpen",
  "InvalidOutput",
  "DeadlineExceeded"
])

/** Defaults of the chain's passes (see `FallbackOptions.passes`). */
export const PASSES_WITH_DEADLINE = 3
export const PASS_BACKOFF_BASE_MS = 500
export const PASS_BACKOFF_CAP_MS = 5_000

/** Walks per call: the option when given (validated ≥ 1 at construction), else the default for the call's deadline. */
export const passesOf = (option: number | undefined, hasDeadline: boolean): number =>
  option !== undefined ? Math.floor(option) : hasDeadline ? PASSES_WITH_DEADLINE : 1

/** Every route that was tried refused at its breaker: no provider has been asked anything. */
export const onlyBreakerRefusals = (records: ReadonlyArray<AttemptRecord>): boolean => {
  let refused = false
  for (const record of records) {
    if (record.outcome === "CircuitOpen") refused = true
    else if (record.outcome !== "Skipped") return false
  }
  return refused
}

/**
 * The schema-gated fallback chain. Gateways fall back on status codes, so when the frontier model is
 * down and traffic spills to a weaker one, a 200 whose output breaks the contract passes as success.
 * Here an answer is accepted only when it decodes: empty output, truncation (`length`/`max_tokens`),
 * refusals, unparsable JSON and Schema failures are `InvalidOutput` failures *of that attempt* —
 * counted by the route's breaker and metrics, recorded in the history, and cascaded.
 *
 * Routing follows each failure's action: `wait` is handled inside the route (its Retry waits while the
 * provider's Retry-After fits the deadline, else surfaces); `reroute` moves on at once (529, breaker
 * open, quota, auth, unknown model, invalid output); `stop` ends the chain (a bad request is bad
 * everywhere), except that a `ContextLengthExceeded` moves on to routes declared with a larger context
 * window. Routes whose window cannot hold the prompt plus `maxTokens` are skipped without a call.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as JSONSchema from "effect/JSONSchema"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Deadline from "./Deadline.js"
import * as DegradedMode from "./DegradedMode.js"
import {
  actionOf,
  AllRoutesFailed,
  type AttemptRecord,
  ContentFiltered,
  InvalidOutput,
  type InvalidOutputReason,
  type RouteError
} from "./Errors.js"
import { estimatePromptTokens } from "./internal/estimateTokens.js"
import { millisOf } from "./internal/timer.js"
import * as Policy from "./Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape, Usage } from "./Provider.js"
import { RetryBudgets } from "./RetryBudget.js"

/**
 * One route: a provider, the model to ask, its policy and its limits.
 *
 * @since 0.1.0
 * @category models
 */
export interface Route {
  /** Label in results, errors, spans and metrics; keys the route's breaker, limiter and budget. */
  readonly name: string
  readonly provider: ProviderShape
  readonly model: string
  /** Default: `Policy.default`. */
  readonly policy?: Policy.PolicyOptions | undefined
  /** Prompt + output tokens the model can hold; routes that cannot fit a request are skipped. */
  readonly contextWindow?: number | undefined
  /** Upper bound on `maxTokens` for this route. */
  readonly maxTokens?: number | undefined
  /**
   * Consecutive routes with the same group share one position in the chain and spread load by
   * `weight` (several keys or deployments of one model); the others in the group remain fallbacks.
   */
  readonly group?: string | undefined
  /** Default 1. */
  readonly weight?: number | undefined
}

/**
 * Chain options. Defaults in docs/fallback.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface FallbackOptions {
  readonly routes: ReadonlyArray<Route>
  /** Wall-clock deadline per call, across every route. Default: none. */
  readonly deadline?: Duration.DurationInput | undefined
  /** Re-ask the same route with the decode errors this many times before moving on. Default 0. */
  readonly repairAttempts?: number | undefined
  /** Move to the next route on a refusal / content filter instead of stopping. Default false. */
  readonly rerouteOnContentFilter?: boolean | undefined
  /** Accept `length`-truncated text from `generate` (never from `generateObject`). Default false. */
  readonly acceptTruncated?: boolean | undefined
}

/**
 * A chain request: a `GenerateRequest` without `model` (each route supplies its own).
 *
 * @since 0.1.0
 * @category models
 */
export type ChainRequest = Omit<GenerateRequest, "model">

/**
 * An accepted answer and how it was obtained.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChainResult<A> {
  readonly value: A
  readonly response: GenerateResponse
  /** The route that served it. */
  readonly route: string
  /** Served by a route other than the chain's first, or only after a repair. */
  readonly degraded: boolean
  readonly repaired: boolean
  /** Every attempt on every route, in order (including skipped routes). */
  readonly attempts: ReadonlyArray<AttemptRecord>
  /** Usage summed over every attempt that reported it. */
  readonly usage: Usage
  readonly durationMs: number
}

/**
 * Extra acceptance rule for decoded values: fail with a message to reject.
 *
 * @since 0.1.0
 * @category models
 */
export type Validator<A> = (value: A) => Effect.Effect<void, string>

/**
 * The chain.
 *
 * @since 0.1.0
 * @category models
 */
export interface Chain {
  readonly generate: (request: ChainRequest) => Effect.Effect<ChainResult<string>, AllRoutesFailed>
  readonly generateObject: <A, I>(
    schema: Schema.Schema<A, I>,
    request: ChainRequest,
    options?: { readonly name?: string; readonly validate?: Validator<A> }
  ) => Effect.Effect<ChainResult<A>, AllRoutesFailed>
}

/** The attempt log of the current call: Policy's `observe` appends to it. */
const currentLog = FiberRef.unsafeMake<Option.Option<Array<AttemptRecord>>>(Option.none())

const logAttempt = (record: AttemptRecord): Effect.Effect<void> =>
  Effect.map(FiberRef.get(currentLog), (log) => {
    if (Option.isSome(log)) log.value.push(record)
  })

const invalid = (
  response: GenerateResponse,
  request: GenerateRequest,
  reason: InvalidOutputReason,
  message: string,
  issues?: string
) =>
  new InvalidOutput({
    provider: response.provider,
    model: request.model,
    route: "*",
    attempt: 1,
    status: 200,
    ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
    reason,
    message,
    ...(issues !== undefined ? { issues } : {}),
    output: response.text.length > 4000 ? `${response.text.slice(0, 4000)}…` : response.text
  }, true)

/** What every answer must pass: not empty, not truncated, not refused. */
const basicGate = (acceptTruncated: boolean): Policy.Acceptor => (response, request) => {
  if (response.finishReason === "content_filter" || response.finishReason === "refusal") {
    return Effect.fail(
      new ContentFiltered({
        provider: response.provider,
        model: request.model,
        route: "*",
        attempt: 1,
        status: 200,
        ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
        finishReason: response.finishReason,
        message: response.refusal ?? `the model's output was ${response.finishReason === "refusal" ? "a refusal" : "filtered"}`
      }, true)
    )
  }
  if (response.finishReason === "length" && !acceptTruncated) {
    return Effect.fail(invalid(response, request, "truncated", "the output was cut by the token limit"))
  }
  if (response.text.trim().length === 0 && response.toolCalls.length === 0) {
    return Effect.fail(invalid(response, request, "empty", "the output was empty"))
  }
  return Effect.succeed(response)
}

const parseJson = (text: string): Option.Option<unknown> => {
  const trimmed = text.trim()
  // Models often wrap JSON in a Markdown fence despite instructions; unwrapping it is not guessing.
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/i.exec(trimmed)
  try {
    return Option.some(JSON.parse(fenced?.[1] ?? trimmed))
  } catch {
    return Option.none()
  }
}

const addUsage = (a: Usage, b: Usage): Usage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  totalTokens: a.totalTokens + b.totalTokens
})

/** Orders routes for one call: groups are shuffled by weight, everything else keeps its place. */
const orderRoutes = (routes: ReadonlyArray<Route>): Effect.Effect<ReadonlyArray<Route>> =>
  Effect.gen(function*() {
    const out: Array<Route> = []
    let i = 0
    while (i < routes.length) {
      const group = routes[i]!.group
      let j = i + 1
      while (group !== undefined && j < routes.length && routes[j]!.group === group) j++
      const members = routes.slice(i, j)
      // Weighted shuffle without replacement (Efraimidis–Spirakis keys), drawn from Effect's Random.
      const keyed: Array<{ readonly route: Route; readonly key: number }> = []
      for (const route of members) {
        const u = members.length === 1 ? 0.5 : yield* Random.next
        keyed.push({ route, key: Math.pow(u, 1 / Math.max(1e-9, route.weight ?? 1)) })
      }
      keyed.sort((a, b) => b.key - a.key)
      for (const { route } of keyed) out.push(route)
      i = j
    }
    return out
  })

/**
 * Builds a chain. Each route's policy is applied once (its breaker, limiter and budget live in
 * `Policy.layerState`, shared by every caller).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: FallbackOptions): Effect.Effect<Chain, never, Policy.PolicyState> =>
  Effect.gen(function*() {
    if (options.routes.length === 0) return yield* Effect.dieMessage("Fallback.make: at least one route is required")
    const budgets = yield* RetryBudgets
    const primary = options.routes[0]!.name
    const repairAttempts = Math.max(0, options.repairAttempts ?? 0)
    const deadline = millisOf(options.deadline)
    const wrapped = new Map<string, ProviderShape>()
    for (const [index, route] of options.routes.entries()) {
      const base = route.policy ?? {}
      const hasAlternative = index < options.routes.length - 1 || options.routes.some((r, j) => j !== index && r.group !== undefined && r.group === route.group)
      const policy: Policy.PolicyOptions = {
        ...base,
        retry: base.retry === false ? false : { ...base.retry, hasAlternative: hasAlternative || base.retry?.hasAlternative === true },
        observe: base.observe === undefined ? logAttempt : (record) => Effect.zipRight(logAttempt(record), base.observe!(record))
      }
      wrapped.set(route.name, yield* Policy.apply(policy, route.provider, route.name))
    }

    const run = <A>(
      request: ChainRequest,
      acceptor: Policy.Acceptor,
      extract: (response: GenerateResponse) => A,
      repairable: boolean
    ): Effect.Effect<ChainResult<A>, AllRoutesFailed> =>
      Effect.suspend(() => {
        // One log per call: Policy's `observe` appends every attempt to it (through `currentLog`),
        // and the chain adds the routes it skipped, so the history is complete and in order.
        const log: Array<AttemptRecord> = []
        let lastError: RouteError | undefined
        const fail = (reason: AllRoutesFailed["reason"], summary: string) =>
          new AllRoutesFailed({
            reason,
            attempts: log,
            ...(lastError !== undefined ? { lastError } : {}),
            message: `${summary} (${log.map((a) => `${a.route}#${a.attempt}:${a.outcome}`).join(", ") || "no attempt"})`
          })
        const body = Effect.gen(function*() {
          const startedAt = yield* Clock.currentTimeMillis
          const routes = yield* orderRoutes(options.routes)
          let usage: Usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 }
          let minContextWindow = 0
          const skip = (route: Route, message: string) =>
            log.push({ route: route.name, attempt: 0, outcome: "Skipped", delayMs: 0, durationMs: 0, message })

          for (const route of routes) {
            const maxTokens = route.maxTokens === undefined ? request.maxTokens : Math.min(request.maxTokens, route.maxTokens)
            let routeRequest: GenerateRequest = { ...request, model: route.model, maxTokens }
            if (route.contextWindow !== undefined) {
              const needed = estimatePromptTokens(routeRequest) + maxTokens
              if (needed > route.contextWindow || route.contextWindow <= minContextWindow) {
                skip(route, `context window ${route.contextWindow} cannot hold ~${needed} tokens`)
                continue
              }
            } else if (minContextWindow > 0) {
              skip(route, "no declared context window larger than the one that overflowed")
              continue
            }
            const provider = wrapped.get(route.name)!
            let repairsLeft = repairable ? repairAttempts : 0
            let error: RouteError
            while (true) {
              const outcome = yield* Effect.either(provider.generate(routeRequest))
              if (outcome._tag === "Right") {
                const response = outcome.right
                usage = addUsage(usage, response.usage)
                const repaired = repairsLeft < (repairable ? repairAttempts : 0)
                const now = yield* Clock.currentTimeMillis
                const degraded = route.name !== primary || repaired
                yield* DegradedMode.publish({
                  degraded,
                  route: route.name,
                  ...(degraded ? { reason: repaired ? `repaired on ${route.name}` : `served by fallback route ${route.name}` } : {})
                }, now)
                return {
                  value: extract(response),
                  response,
                  route: route.name,
                  degraded,
                  repaired,
                  attempts: log,
                  usage,
                  durationMs: now - startedAt
                }
              }
              error = outcome.left
              lastError = error
              if (error._tag === "DeadlineExceeded") return yield* Effect.fail(fail("deadline", "the deadline passed"))
              const canRepair = error._tag === "InvalidOutput" && repairsLeft > 0 &&
                (error.reason === "unparsable" || error.reason === "schema" || error.reason === "validator")
              if (!canRepair) break
              // A repair is a retry: it spends the route's retry budget like one.
              const budget = yield* budgets.get(route.name)
              if (!(yield* budget.withdraw)) break
              repairsLeft--
              routeRequest = repairRequest(routeRequest, error as InvalidOutput)
            }
            if (error._tag === "ContextLengthExceeded") {
              minContextWindow = Math.max(minContextWindow, route.contextWindow ?? 1)
              continue
            }
            if (error._tag === "ContentFiltered" && options.rerouteOnContentFilter === true) continue
            if (actionOf(error) === "stop") {
              return yield* Effect.fail(fail("stopped", `${error._tag} on ${route.name}: no route will do better`))
            }
          }
          if (lastError === undefined) return yield* Effect.fail(fail("no-route", "no route could take the request"))
          return yield* Effect.fail(fail("exhausted", "every route failed"))
        })
        const bounded = deadline === undefined ? body : Effect.catchTag(
          Deadline.withDeadline(body, deadline, { provider: "*", model: "*", route: "*" }),
          "DeadlineExceeded",
          (error) => {
            lastError = error
            return Effect.fail(fail("deadline", "the deadline passed"))
          }
        )
        return bounded.pipe(
          Effect.locally(currentLog, Option.some(log)),
          Effect.locally(Policy.currentAcceptor, Option.some(acceptor))
        )
      })

    const generate: Chain["generate"] = (request) =>
      run(request, basicGate(options.acceptTruncated === true), (response) => response.text, false)

    const generateObject: Chain["generateObject"] = (schema, request, objectOptions) => {
      const decode = Schema.decodeUnknown(schema)
      const name = objectOptions?.name ?? "response"
      const jsonSchema = JSONSchema.make(schema) as unknown as Record<string, unknown>
      const validate = objectOptions?.validate
      const decoded = new WeakMap<GenerateResponse, unknown>()
      const base = basicGate(false)
      const acceptor: Policy.Acceptor = (response, routeRequest) =>
        Effect.flatMap(base(response, routeRequest), (accepted) => {
          const parsed = parseJson(accepted.text)
          if (Option.isNone(parsed)) return Effect.fail(invalid(accepted, routeRequest, "unparsable", "the output is not JSON", "expected a single JSON value"))
          return decode(parsed.value).pipe(
            Effect.mapError((error) =>
              invalid(accepted, routeRequest, "schema", "the output does not match the schema", ParseResult.TreeFormatter.formatErrorSync(error))
            ),
            Effect.flatMap((value) =>
              validate === undefined
                ? Effect.succeed(value)
                : Effect.as(
                  Effect.mapError(validate(value), (issue) => invalid(accepted, routeRequest, "validator", `rejected by the validator: ${issue}`, issue)),
                  value
                )
            ),
            Effect.map((value) => {
              decoded.set(accepted, value)
              return accepted
            })
          )
        })
      return run(
        { ...request, responseFormat: { type: "json_schema", name, schema: jsonSchema, strict: false } },
        acceptor,
        // The acceptor decoded this very response object before the chain accepted it.
        (response) => decoded.get(response) as typeof schema.Type,
        true
      )
    }

    return { generate, generateObject }
  })

/** The follow-up that feeds the decode errors back to the same route. */
const repairRequest = (request: GenerateRequest, error: InvalidOutput): GenerateRequest => ({
  ...request,
  messages: [
    ...request.messages,
    { role: "assistant", content: error.output ?? "" },
    {
      role: "user",
      content: `Your previous answer was rejected: ${error.message}.${error.issues !== undefined ? `\nProblems:\n${error.issues}` : ""}\nReply again with only the corrected JSON.`
    }
  ]
})


/**
 * Spend accounting: price tables, budgets, and the guard every provider send of a policy passes
 * through (`policy/routeContext.ts` applies it, once, for generated and streamed attempts alike).
 *
 * The rule, in one place:
 *
 * - **Reserve before sending.** An attempt's worst case is its estimated prompt (the budget's
 *   `estimateTokens`, by default the limiter's characters/4 estimate) plus its `maxTokens` of output,
 *   priced with the budget's table. Every active budget (nested scopes all apply) must have room for
 *   it next to what it has spent and what attempts in flight hold reserved; the check and the
 *   reservation are one synchronous step (no other fiber runs in between, so parallel hedges cannot
 *   both take the last room). One budget without room refuses with `BudgetExceeded` and nothing is
 *   sent, reserved or charged anywhere.
 * - **Settle when the attempt ends.** The reservation is replaced by what the provider reported
 *   (`GenerateResponse.usage`, a stream's `Usage` event or its `Finish`). A failure that is surely
 *   not billed (`notBilled`: nothing was sent, or the provider refused the request at admission with
 *   a 4xx or a 503 / 529) releases it. Any other attempt that reported nothing — a 5xx, a timeout or
 *   reset after the request left, a cut or failed stream, an interrupted hedge leg, an answer without
 *   usage — keeps its worst case as spent: the provider may bill it, and a budget must not under-count.
 *
 * A reported usage above the reservation (a prompt estimate that was low) is charged in full: the
 * limit is enforced at admission, so a budget can end above its limit by the estimation error of the
 * attempts in flight at that moment — and then refuses everything after.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import type * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { BudgetExceeded, type BudgetLimit, InvalidOptions } from "../Errors.js"
import type { GenerateRequest, GenerateResponse, StreamEvent, Usage } from "../Provider.js"
import { estimatePromptTokens } from "./estimateTokens.js"
import * as Metrics from "./metrics.js"
import { fromPull, toPull } from "./pull.js"
import { formatPath, issuesOf } from "./schemaIssues.js"
import { isUnsent } from "./unsent.js"

// ---------------------------------------------------------------------------------------------------
// Prices
// ---------------------------------------------------------------------------------------------------

/** USD per million tokens, input (prompt) and output (completion). */
export interface Price {
  readonly inputPerMTok: number
  readonly outputPerMTok: number
}

/** A validated table: model id → price, where a key ending in `*` is a prefix. */
export class PriceTable {
  readonly _tag = "PriceTable"
  private readonly exact = new Map<string, Price>()
  /** Prefix patterns, longest first: the most specific pattern wins. */
  private readonly prefixes: ReadonlyArray<readonly [string, Price]>

  constructor(readonly entries: Readonly<Record<string, Price>>) {
    const prefixes: Array<readonly [string, Price]> = []
    for (const [pattern, price] of Object.entries(entries)) {
      if (pattern.endsWith("*")) prefixes.push([pattern.slice(0, -1), price])
      else this.exact.set(pattern, price)
    }
    this.prefixes = prefixes.sort((a, b) => b[0].length - a[0].length)
  }

  /** The model's price: its exact entry, else the longest matching prefix, else `undefined`. */
  priceOf(model: string): Price | undefined {
    const exact = this.exact.get(model)
    if (exact !== undefined) return exact
    for (const [prefix, price] of this.prefixes) if (model.startsWith(prefix)) return price
    return undefined
  }
}

/** USD of `input` prompt tokens and `output` completion tokens at `price`. */
export const priceTokens = (price: Price, input: number, output: number): number =>
  (input * price.inputPerMTok + output * price.outputPerMTok) / 1_000_000

/** Whether a usage was reported at all (adapters fill zeros when a response carried none). */
export const isReported = (usage: Usage): boolean => usage.totalTokens > 0 || usage.inputTokens > 0 || usage.outputTokens > 0

/** The tokens a usage counts against a token limit. */
const tokensOf = (usage: Usage): number => Math.max(usage.totalTokens, usage.inputTokens + usage.outputTokens)

/** The cost of a usage on `model`, or `undefined` when the table has no price for it. */
export const costOf = (table: PriceTable, model: string, usage: Usage): number | undefined => {
  const price = table.priceOf(model)
  return price === undefined ? undefined : priceTokens(price, usage.inputTokens, usage.outputTokens)
}

// ---------------------------------------------------------------------------------------------------
// Budgets
// ---------------------------------------------------------------------------------------------------

/** What happens to an attempt on a model the price table does not know. */
export type UnknownModel = "refuse" | "count-tokens-only"

/** One route's share of a budget's spend. */
export interface RouteSpend {
  calls: number
  tokens: number
  costUsd: number
}

/** Where an attempt is: what a refusal names. */
export interface SpendSite {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
}

/** A budget's state. Plain counters, changed only by the synchronous steps below. */
export class BudgetCore {
  readonly _tag = "Budget"
  /** Unique in the process: what tells two budgets apart where they must not share (coalescing keys). */
  readonly id = ++budgetIds
  spentCost = 0
  spentTokens = 0
  reservedCost = 0
  reservedTokens = 0
  inFlight = 0
  calls = 0
  refused = 0
  unreported = 0
  unpriced = 0
  readonly routes = new Map<string, RouteSpend>()

  constructor(
    readonly name: string,
    readonly maxCostUsd: number | undefined,
    readonly maxTokens: number | undefined,
    readonly prices: PriceTable | undefined,
    readonly unknownModel: UnknownModel,
    readonly estimateTokens: (request: GenerateRequest) => number
  ) {}

  /** Why an attempt of `tokens` tokens costing `cost` (no `price`: unpriced) does not fit, or `undefined`. */
  refusal(site: SpendSite, tokens: number, price: Price | undefined, cost: number): BudgetExceeded | undefined {
    if (this.maxTokens !== undefined && this.spentTokens + this.reservedTokens + tokens > this.maxTokens) {
      return this.refuse(site, "tokens", "over-limit", this.maxTokens, this.spentTokens, this.reservedTokens, tokens)
    }
    if (price === undefined) {
      if (this.unknownModel !== "refuse") return undefined
      return this.refuse(site, "cost", "unpriced-model", this.maxCostUsd, this.spentCost, this.reservedCost, undefined)
    }
    if (this.maxCostUsd !== undefined && this.spentCost + this.reservedCost + cost > this.maxCostUsd) {
      return this.refuse(site, "cost", "over-limit", this.maxCostUsd, this.spentCost, this.reservedCost, cost)
    }
    return undefined
  }

  private refuse(
    site: SpendSite,
    limit: BudgetLimit,
    reason: "over-limit" | "unpriced-model",
    max: number | undefined,
    spent: number,
    reserved: number,
    requested: number | undefined
  ): BudgetExceeded {
    this.refused++
    const unit = (n: number) => (limit === "cost" ? `$${formatUsd(n)}` : `${Math.round(n)} tokens`)
    const message = reason === "unpriced-model"
      ? `spend budget "${this.name}" has no price for model ${site.model}${max === undefined ? "" : ` and limits cost to ${unit(max)}`}: not sent`
      : `spend budget "${this.name}" cannot fit this attempt: ${unit(spent)} spent + ${unit(reserved)} reserved + ${unit(requested ?? 0)} worst case > ${
        unit(max ?? 0)
      }: not sent`
    return new BudgetExceeded({
      ...site,
      budget: this.name,
      limit,
      reason,
      ...(max !== undefined ? { max } : {}),
      spent,
      reserved,
      ...(requested !== undefined ? { requested } : {}),
      message
    }, true)
  }

  hold(tokens: number, cost: number): void {
    this.inFlight++
    this.reservedTokens += tokens
    this.reservedCost += cost
  }

  /** Ends a hold: charged `tokens` / `cost` when the attempt may have been billed, released otherwise. */
  release(route: string, held: Hold, charged: { readonly tokens: number; readonly cost: number } | undefined, reported: boolean): void {
    this.inFlight--
    this.reservedTokens -= held.tokens
    this.reservedCost -= held.cost
    // Sums of floats drift: with nothing in flight, nothing is reserved.
    if (this.inFlight === 0) {
      this.reservedTokens = 0
      this.reservedCost = 0
    }
    if (charged === undefined) return
    this.calls++
    if (!reported) this.unreported++
    if (held.price === undefined) this.unpriced++
    this.spentTokens += charged.tokens
    this.spentCost += charged.cost
    let spend = this.routes.get(route)
    if (spend === undefined) {
      spend = { calls: 0, tokens: 0, costUsd: 0 }
      this.routes.set(route, spend)
    }
    spend.calls++
    spend.tokens += charged.tokens
    spend.costUsd += charged.cost
  }
}

let budgetIds = 0

/** Dollars with enough digits for a single cheap call (`0.000123`) and none too many for a big one. */
export const formatUsd = (usd: number): string =>
  usd === 0 ? "0" : usd >= 1 ? usd.toFixed(2) : usd >= 0.01 ? usd.toFixed(4) : usd.toPrecision(3)

/** The budgets every provider send in this fiber must fit, outermost first. */
export const currentBudgets: FiberRef.FiberRef<ReadonlyArray<BudgetCore>> = FiberRef.unsafeMake<ReadonlyArray<BudgetCore>>([])

/** The budgets with `budget` added innermost (once: a budget applied twice counts once). */
export const withBudget = (budget: BudgetCore) => (budgets: ReadonlyArray<BudgetCore>): ReadonlyArray<BudgetCore> =>
  budgets.includes(budget) ? budgets : [...budgets, budget]

/**
 * `stream` under `budget` while the stream itself runs — its opening and each of its pulls, and so
 * whatever it forks from them — and not while its consumer runs its own work between pulls (a
 * `Stream.mapEffect` downstream is not charged to it). A scoped FiberRef (`locallyScopedWith`) would
 * set the budget on the consumer's fiber for the stream's whole life instead.
 */
export const withinStream = <A, E, R>(budget: BudgetCore, stream: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> => {
  const add = withBudget(budget)
  return fromPull(
    Effect.map(Effect.locallyWith(toPull(stream), currentBudgets, add), (pull) => Effect.locallyWith(pull, currentBudgets, add))
  ) as Stream.Stream<A, E, R>
}

/**
 * The identity of the active budget set, for keys that must not be shared across budgets: `""` when
 * none is active, else the budgets' ids in order.
 */
export const budgetsKey = (budgets: ReadonlyArray<BudgetCore>): string => budgets.map((budget) => budget.id).join(",")

/**
 * Providers whose own sends are guarded already, in the same fiber's budgets: a chain served as an
 * @effect/ai model and used as a provider (the bridge). Each of its routes' attempts reserves in every
 * active budget, so a reservation around the whole call would count the same request twice — and
 * charge the worst case of a request that its inner chain refused before sending.
 */
const selfGuarded = new WeakSet<object>()

/** Marks `provider` as guarding its own sends (see {@link isSelfGuarded}). */
export const markSelfGuarded = <P extends object>(provider: P): P => {
  selfGuarded.add(provider)
  return provider
}

/** Whether `provider`'s sends are guarded by policies of its own (a chain behind the bridge). */
export const isSelfGuarded = (provider: object): boolean => selfGuarded.has(provider)

/** The price table of the innermost active budget that has one (what a chain prices attempts with). */
export const innermostPrices = (fiber: Fiber.RuntimeFiber<unknown, unknown>): PriceTable | undefined => {
  const budgets = fiber.getFiberRef(currentBudgets)
  for (let i = budgets.length - 1; i >= 0; i--) {
    const prices = budgets[i]!.prices
    if (prices !== undefined) return prices
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------------

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const PerMTok = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())

/** Why a key is not a model id or a prefix pattern (`*` only as the last character), or `undefined`. */
const patternProblem = (pattern: string): string | undefined => {
  if (pattern.length === 0) return "Expected a model id or a prefix ending in \"*\", actual \"\""
  const star = pattern.indexOf("*")
  return star === -1 || star === pattern.length - 1
    ? undefined
    : `Expected a model id, or a prefix ending in a single "*", actual ${JSON.stringify(pattern)}`
}

/** One model's price, USD per million tokens. */
export const PriceSchema = Schema.Struct({ inputPerMTok: PerMTok, outputPerMTok: PerMTok })

/**
 * Model id or prefix pattern → price. The keys are checked by a filter on the whole record (not a
 * key schema) so that a bad pattern is reported at its own path with its own message.
 */
export const PricesSchema = Schema.Record({ key: Schema.String, value: PriceSchema }).pipe(
  Schema.filter((models) => {
    const issues: Array<Schema.FilterIssue> = []
    for (const key of Object.keys(models)) {
      const problem = patternProblem(key)
      if (problem !== undefined) issues.push({ path: [key], message: problem })
    }
    return issues
  })
)

/** A price file: the table under `models`, and where and when its prices were read (free text). */
export const PriceFileSchema = Schema.Struct({
  asOf: opt(Schema.String),
  source: opt(Schema.String),
  models: PricesSchema
})

const invalid = (component: string, option: string, message: string) => new InvalidOptions({ component, option, message })

const decodeOptions = { errors: "all", onExcessProperty: "error" } as const

/**
 * A failed decode, named by the path of its first problem (`option`); the message lists the first
 * three (`where` prefixes it, e.g. the file), so a table written without its `models` wrapper says
 * both that its models are unexpected there and that `models` is missing.
 */
const problemOf = (error: ParseResult.ParseError, component: string, where: string): InvalidOptions => {
  const issues = issuesOf(error)
  const option = issues[0] === undefined ? "(root)" : formatPath(issues[0].path)
  const described = issues.slice(0, 3).map((issue) => `${formatPath(issue.path)}: ${issue.message}`).join("; ")
  return invalid(component, option, `${where}${described.length > 0 ? described : `${option}: is not a price table`}`)
}

const tableOf = (
  models: Readonly<Record<string, Price>>,
  component: string,
  option: string,
  where: string
): Either.Either<PriceTable, InvalidOptions> =>
  Object.keys(models).length === 0
    ? Either.left(invalid(component, option, `${where}a price table must price at least one model`))
    : Either.right(new PriceTable(models))

/** A price table from model patterns → prices (what `Spend.prices` takes), or its first problem. */
export const decodePrices = (value: unknown, component: string, where: string): Either.Either<PriceTable, InvalidOptions> =>
  Either.match(Schema.decodeUnknownEither(PricesSchema, decodeOptions)(value), {
    onLeft: (error) => Either.left(problemOf(error, component, where)),
    onRight: (models) => tableOf(models, component, "(root)", where)
  })

/** A price table from a price file's contents (`{ asOf?, source?, models }`), or its first problem. */
export const decodePriceFile = (value: unknown, component: string, where: string): Either.Either<PriceTable, InvalidOptions> =>
  Either.match(Schema.decodeUnknownEither(PriceFileSchema, decodeOptions)(value), {
    onLeft: (error) => Either.left(problemOf(error, component, where)),
    onRight: (file) => tableOf(file.models, component, "models", where)
  })

/** What a budget is built from (documented as `Spend.BudgetOptions`). */
export interface BudgetOptions {
  /** Names it in `BudgetExceeded.budget` and messages. Default `budget`. */
  readonly name?: string | undefined
  /** USD the scope may spend, settled spend plus in-flight reservations. Needs `prices`. */
  readonly maxCostUsd?: number | undefined
  /** Tokens (input + output) the scope may spend, counted the same way. */
  readonly maxTokens?: number | undefined
  readonly prices?: PriceTable | undefined
  /** Default: `refuse` when `maxCostUsd` is set (an unpriced model must not pass as free), else `count-tokens-only`. */
  readonly unknownModel?: UnknownModel | undefined
  /**
   * The prompt-token estimate of a reservation. Default: the rate limiter's characters/4 + framing
   * estimate (docs/policies.md); plug a tokenizer in here for exact counts. It must return a finite
   * number ≥ 0: anything else (NaN, `undefined`, a negative count) is a defect of the attempt — an
   * `InvalidOptions` naming `estimateTokens` — rather than a budget that silently admits everything.
   */
  readonly estimateTokens?: ((request: GenerateRequest) => number) | undefined
}

/** A budget from its options, or the first option it cannot work with. */
export const makeBudget = (options: BudgetOptions): Either.Either<BudgetCore, InvalidOptions> => {
  const component = "Spend.budget"
  const { maxCostUsd, maxTokens, prices, unknownModel } = options
  if (options.name !== undefined && (typeof options.name !== "string" || options.name.trim().length === 0)) {
    return Either.left(invalid(component, "name", "name must be a non-empty label"))
  }
  if (maxCostUsd !== undefined && !(typeof maxCostUsd === "number" && Number.isFinite(maxCostUsd) && maxCostUsd > 0)) {
    return Either.left(invalid(component, "maxCostUsd", `maxCostUsd must be a positive finite number of USD, got ${String(maxCostUsd)}`))
  }
  if (maxTokens !== undefined && !(Number.isSafeInteger(maxTokens) && maxTokens >= 1)) {
    return Either.left(invalid(component, "maxTokens", `maxTokens must be an integer ≥ 1, got ${String(maxTokens)}`))
  }
  if (prices !== undefined && !(prices instanceof PriceTable)) {
    return Either.left(invalid(component, "prices", "prices must be a table made by Spend.prices or Spend.pricesFromFile"))
  }
  if (unknownModel !== undefined && unknownModel !== "refuse" && unknownModel !== "count-tokens-only") {
    return Either.left(invalid(component, "unknownModel", `unknownModel must be "refuse" or "count-tokens-only", got ${JSON.stringify(unknownModel)}`))
  }
  if (maxCostUsd !== undefined && prices === undefined) {
    return Either.left(invalid(component, "prices", "a maxCostUsd limit needs prices: without a price table no attempt has a cost to check"))
  }
  if (unknownModel === "refuse" && prices === undefined) {
    return Either.left(invalid(component, "prices", `unknownModel "refuse" without prices would refuse every attempt`))
  }
  if (options.estimateTokens !== undefined && typeof options.estimateTokens !== "function") {
    return Either.left(invalid(component, "estimateTokens", "estimateTokens must be a function of the request"))
  }
  return Either.right(
    new BudgetCore(
      options.name ?? "budget",
      maxCostUsd,
      maxTokens,
      prices,
      // With a cost limit, an unpriced model must not pass as free: refused unless said otherwise.
      unknownModel ?? (maxCostUsd !== undefined ? "refuse" : "count-tokens-only"),
      options.estimateTokens ?? estimatePromptTokens
    )
  )
}

/** What a budget has spent and holds (documented as `Spend.SpendSnapshot`). */
export interface SpendSnapshot {
  readonly name: string
  /** USD settled (priced models only). */
  readonly costUsd: number
  /** Tokens settled (input + output). */
  readonly tokens: number
  /** USD held by attempts in flight. */
  readonly reservedCostUsd: number
  readonly reservedTokens: number
  /** Attempts in flight now. */
  readonly inFlight: number
  /** Provider calls charged: answered, or sent and possibly billed (refused or surely unbilled attempts are not calls). */
  readonly calls: number
  /** Attempts this budget refused (`BudgetExceeded`). */
  readonly refused: number
  /** Calls charged their worst case because no usage was reported (a 5xx, a timeout, a cut stream, an interrupted hedge leg). */
  readonly unreported: number
  /** Calls on a model the table does not price (`count-tokens-only`): their cost is not in `costUsd`. */
  readonly unpriced: number
  readonly maxCostUsd: number | undefined
  readonly maxTokens: number | undefined
  /** The same, per route label. */
  readonly routes: Readonly<Record<string, { readonly calls: number; readonly tokens: number; readonly costUsd: number }>>
}

export const snapshotOf = (budget: BudgetCore): SpendSnapshot => {
  const routes: Record<string, { readonly calls: number; readonly tokens: number; readonly costUsd: number }> = {}
  for (const [route, spend] of budget.routes) routes[route] = { calls: spend.calls, tokens: spend.tokens, costUsd: spend.costUsd }
  return {
    name: budget.name,
    costUsd: budget.spentCost,
    tokens: budget.spentTokens,
    reservedCostUsd: budget.reservedCost,
    reservedTokens: budget.reservedTokens,
    inFlight: budget.inFlight,
    calls: budget.calls,
    refused: budget.refused,
    unreported: budget.unreported,
    unpriced: budget.unpriced,
    maxCostUsd: budget.maxCostUsd,
    maxTokens: budget.maxTokens,
    routes
  }
}

// ---------------------------------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------------------------------

/** One budget's part of a reservation. */
interface Hold {
  readonly budget: BudgetCore
  readonly input: number
  readonly tokens: number
  readonly cost: number
  readonly price: Price | undefined
}

/** An attempt's reservation in every active budget, settled exactly once. */
export interface Reservation {
  readonly route: string
  readonly holds: ReadonlyArray<Hold>
  /** The fiber's metric labels where the attempt was sent, as the route's other counters use them. */
  readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  settled: boolean
}

/**
 * The budget's prompt estimate of `request`. A user's `estimateTokens` that returns anything but a
 * finite number ≥ 0 (NaN, `undefined`, a negative count) would make every comparison false and the
 * budget admit everything for good: it is a defect naming the option instead.
 */
const estimateOf = (budget: BudgetCore, request: GenerateRequest): number => {
  const input: unknown = budget.estimateTokens(request)
  if (typeof input === "number" && Number.isFinite(input) && input >= 0) return input
  throw new InvalidOptions({
    component: "Spend.budget",
    option: "estimateTokens",
    message: `spend budget "${budget.name}": estimateTokens returned ${
      typeof input === "number" ? String(input) : typeof input === "string" ? JSON.stringify(input) : String(input)
    } for model ${request.model}; it must return a finite number of tokens ≥ 0`
  })
}

/**
 * Checks every active budget, then reserves the attempt's worst case in all of them — or refuses
 * without reserving anything. Synchronous: the check and the reservation are one step. Throws (a
 * defect, in the effects that call it) when a budget's `estimateTokens` returns no usable number.
 */
export const reserve = (
  budgets: ReadonlyArray<BudgetCore>,
  site: SpendSite,
  request: GenerateRequest,
  labels: ReadonlyArray<MetricLabel.MetricLabel> = []
): Reservation | BudgetExceeded => {
  const holds: Array<Hold> = []
  for (const budget of budgets) {
    const input = estimateOf(budget, request)
    const tokens = input + request.maxTokens
    const price = budget.prices?.priceOf(request.model)
    const cost = price === undefined ? 0 : priceTokens(price, input, request.maxTokens)
    const refusal = budget.refusal(site, tokens, price, cost)
    if (refusal !== undefined) return refusal
    holds.push({ budget, input, tokens, cost, price })
  }
  for (const held of holds) held.budget.hold(held.tokens, held.cost)
  return { route: site.route, holds, labels, settled: false }
}

const costCounter = (route: string): Metric.Metric.Counter<number> => {
  let counter = costCounters.get(route)
  if (counter === undefined) {
    counter = Metrics.counter("llm_cost_usd_total", "USD charged to spend budgets, by route (reported usage, else the worst case)", {
      route
    })
    costCounters.set(route, counter)
  }
  return counter
}
const costCounters = new Map<string, Metric.Metric.Counter<number>>()

/**
 * Settles a reservation: `usage` when the provider reported one; else, when the attempt may have been
 * billed (`billable`), its worst case; else nothing (released). Idempotent.
 */
export const settle = (reservation: Reservation, usage: Usage | undefined, billable: boolean): void => {
  if (reservation.settled) return
  reservation.settled = true
  const reported = usage !== undefined && isReported(usage)
  // The route's cost metric counts once, priced by the innermost budget that knows the model.
  let metered: number | undefined
  for (const held of reservation.holds) {
    if (!billable && !reported) {
      held.budget.release(reservation.route, held, undefined, false)
      continue
    }
    const charged = reported
      ? { tokens: tokensOf(usage), cost: held.price === undefined ? 0 : priceTokens(held.price, usage.inputTokens, usage.outputTokens) }
      : { tokens: held.tokens, cost: held.cost }
    held.budget.release(reservation.route, held, charged, reported)
    if (held.price !== undefined) metered = charged.cost
  }
  if (metered !== undefined && metered > 0) costCounter(reservation.route).unsafeUpdate(metered, reservation.labels)
}

/**
 * Whether a failed attempt is surely not billed, so its reservation is released rather than charged:
 *
 * - nothing was sent — refused before sending (`isUnsent`: `UnsupportedRequest`, an inner
 *   `BudgetExceeded`, a nested chain's refusal), or a connection that was never made (refused, DNS,
 *   TLS, a connect timeout);
 * - or the provider refused the request at admission with an error response instead of an answer —
 *   a 4xx (rate limit, quota, bad request, context length, auth, unknown model, a filtered prompt) or
 *   a load-shedding 503 / 529 — so no token was processed or generated.
 *
 * Anything else may have been billed and keeps its worst case: a 500 / 502 / 504 (the model may have
 * run before the failure), a timeout or reset after the request left, an error or a cut inside a 200
 * stream, a 200 that could not be read.
 */
export const notBilled = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  if (isUnsent(error)) return true
  const e = error as { readonly _tag?: unknown; readonly reason?: unknown; readonly phase?: unknown; readonly status?: unknown }
  switch (e._tag) {
    case "ConnectionError":
      return e.reason === "refused" || e.reason === "dns" || e.reason === "tls"
    case "Timeout":
      return e.phase === "connect"
    default:
      return typeof e.status === "number" && ((e.status >= 400 && e.status < 500) || e.status === 503 || e.status === 529)
  }
}

/** Settles a reservation from the exit of a non-streamed send. */
const settleExit = (reservation: Reservation, exit: Exit.Exit<GenerateResponse, unknown>): void => {
  if (Exit.isSuccess(exit)) return settle(reservation, exit.value.usage, true)
  const failure = Cause.failureOption(exit.cause)
  settle(reservation, undefined, !(Option.isSome(failure) && notBilled(failure.value)))
}

// ---------------------------------------------------------------------------------------------------
// The guard
// ---------------------------------------------------------------------------------------------------

/**
 * `send` under the budgets: refused with `BudgetExceeded` before it runs when one has no room, else
 * run with its worst case reserved and settled when it ends (whatever ends it).
 */
export const guardGenerate = <E, R>(
  budgets: ReadonlyArray<BudgetCore>,
  site: SpendSite,
  request: GenerateRequest,
  send: Effect.Effect<GenerateResponse, E, R>,
  labels: ReadonlyArray<MetricLabel.MetricLabel> = []
): Effect.Effect<GenerateResponse, E | BudgetExceeded, R> =>
  // Uninterruptible from the reservation until its release is installed: a reservation never leaks.
  Effect.uninterruptibleMask((restore) =>
    Effect.suspend((): Effect.Effect<GenerateResponse, E | BudgetExceeded, R> => {
      const reservation = reserve(budgets, site, request, labels)
      if (reservation instanceof BudgetExceeded) return Effect.fail(reservation)
      return Effect.onExit(restore(send), (exit) => Effect.sync(() => settleExit(reservation, exit)))
    })
  )

/**
 * The streamed form: the reservation is taken when the stream starts and settled at its `Finish`
 * with the usage it reported (the last `Usage` event, or the `Finish` response's), or when it ends
 * otherwise — failed, cut, or stopped by its consumer.
 */
export const guardStream = <E, R>(
  budgets: ReadonlyArray<BudgetCore>,
  site: SpendSite,
  request: GenerateRequest,
  send: Stream.Stream<StreamEvent, E, R>,
  labels: ReadonlyArray<MetricLabel.MetricLabel> = []
): Stream.Stream<StreamEvent, E | BudgetExceeded, R> =>
  Stream.unwrapScoped(Effect.uninterruptible(Effect.suspend((): Effect.Effect<Stream.Stream<StreamEvent, E, R>, BudgetExceeded, Scope.Scope> => {
    const reservation = reserve(budgets, site, request, labels)
    if (reservation instanceof BudgetExceeded) return Effect.fail(reservation)
    let usage: Usage | undefined
    let failure: unknown = undefined
    const watched = send.pipe(
      Stream.mapChunks((chunk) => {
        for (const event of chunk) {
          if (event._tag === "Usage" && isReported(event.usage)) usage = event.usage
          else if (event._tag === "Finish") {
            if (isReported(event.response.usage)) usage = event.response.usage
            settle(reservation, usage, true)
          }
        }
        return chunk
      }),
      Stream.tapError((error) => Effect.sync(() => (failure = error)))
    )
    return Effect.as(
      Effect.addFinalizer(() => Effect.sync(() => settle(reservation, usage, !notBilled(failure)))),
      watched
    )
  })))

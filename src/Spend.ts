/**
 * Cost ceilings: a price table per model, the usage and cost of every attempt, call and run, and
 * spend budgets (`maxCostUsd`, `maxTokens`) that refuse the next provider call with a typed
 * `BudgetExceeded` **before it is sent**.
 *
 * - **Prices** ({@link prices}, {@link pricesFromFile}): USD per million input and output tokens per
 *   model id, or per prefix (`gpt-4o*` matches dated snapshots; the exact id wins, then the longest
 *   prefix). No prices ship with the library — providers change them; docs/cost.md shows a dated
 *   example table and where to read the real ones.
 * - **Budgets** ({@link budget}): every attempt — each retry, hedge leg, repair, later pass and
 *   fallback route, i.e. every HTTP send of a policy-wrapped route — first reserves its worst case
 *   (estimated prompt + `maxTokens` of output, priced) in every active budget; a budget without room
 *   refuses and nothing is sent. When the attempt ends, the reservation becomes what the provider
 *   reported. A failure that is surely not billed releases it: nothing was sent, or the provider
 *   refused the request at admission (a 4xx, a load-shedding 503 / 529). Any other attempt that
 *   reported nothing (a 5xx, a timeout or reset after the request left, a cut stream, an interrupted
 *   hedge leg) keeps its worst case as spent — conservative on purpose.
 * - **Scope** ({@link within}, {@link withinStream}, {@link layer}, or a chain's `spend` option for a
 *   whole client): budgets nest, and every active one must admit an attempt — a run budget and a
 *   client budget both apply. {@link snapshot} reads what a budget spent, holds and refused. A chain
 *   nested as a route of another through the @effect/ai bridge is charged once, by its own attempts;
 *   coalesced calls (`Coalesce`) are shared only among callers under the same budgets.
 *
 * The check lives in one place, where a policy's attempt calls its provider (for generated and
 * streamed attempts alike), so nothing that sends can bypass it. A provider called outside any
 * `Policy` (a bare adapter) is not guarded; neither is a breaker's optional background health probe.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LlmClient, Spend } from "effect-llm-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const prices = yield* Spend.prices({
 *     "gpt-4o-mini*": { inputPerMTok: 0.15, outputPerMTok: 0.6 } // example figures: check the provider's page
 *   })
 *   const budget = yield* Spend.budget({ name: "nightly-run", maxCostUsd: 2, prices })
 *   const answer = yield* LlmClient.generate({ messages: [{ role: "user", content: "hi" }], maxTokens: 200 }).pipe(
 *     Spend.within(budget)
 *   )
 *   yield* Effect.log(answer.costUsd, yield* Spend.snapshot(budget))
 * })
 * ```
 *
 * @since 0.2.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { InvalidOptions } from "./Errors.js"
import * as Internal from "./internal/spend.js"
import type { Usage } from "./Provider.js"

/**
 * A model's price: USD per million input (prompt) tokens and per million output (completion) tokens.
 *
 * @since 0.2.0
 * @category models
 */
export interface Price {
  readonly inputPerMTok: number
  readonly outputPerMTok: number
}

/**
 * A validated price table. `priceOf(model)` is the exact entry, else the longest matching prefix
 * pattern (`claude-sonnet-4*`), else `undefined`.
 *
 * @since 0.2.0
 * @category models
 */
export type PriceTable = Internal.PriceTable

/**
 * What an attempt on a model the price table does not know does: `refuse` (`BudgetExceeded` with
 * `reason: "unpriced-model"`) or `count-tokens-only` (admitted; its tokens count, its cost as 0, and
 * the snapshot's `unpriced` says how many such calls there were).
 *
 * @since 0.2.0
 * @category models
 */
export type UnknownModel = Internal.UnknownModel

/**
 * The schema of a price table in code: model id or `prefix*` → price. Negative or non-finite prices,
 * unknown fields and a `*` anywhere but at the end are refused.
 *
 * @since 0.2.0
 * @category schemas
 */
export const PricesSchema = Internal.PricesSchema

/**
 * The schema of a price file: `{ "asOf"?: string, "source"?: string, "models": { … } }` — `asOf` and
 * `source` record when and where the prices were read (prices change; a table should say its date).
 *
 * @since 0.2.0
 * @category schemas
 */
export const PriceFileSchema = Internal.PriceFileSchema

/**
 * A price table from code, validated: a bad entry fails with `InvalidOptions` naming it.
 *
 * @example
 * ```ts
 * const table = yield* Spend.prices({
 *   "gpt-4o-mini*": { inputPerMTok: 0.15, outputPerMTok: 0.6 },
 *   "claude-haiku-4-5*": { inputPerMTok: 1, outputPerMTok: 5 }
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const prices = (entries: Readonly<Record<string, Price>>): Effect.Effect<PriceTable, InvalidOptions> =>
  Effect.suspend(() => Internal.decodePrices(entries, "Spend.prices", ""))

/**
 * A price table from a JSON file (see {@link PriceFileSchema} and docs/cost.md). An unreadable file,
 * invalid JSON or a bad entry fails with `InvalidOptions` whose message names the file and the entry.
 *
 * @example
 * ```ts
 * const table = yield* Spend.pricesFromFile("prices.json")
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const pricesFromFile = (path: string): Effect.Effect<PriceTable, InvalidOptions, FileSystem.FileSystem> => {
  const component = "Spend.pricesFromFile"
  return Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError((error) => new InvalidOptions({ component, option: "(file)", message: `${path}: cannot read the file: ${error.message}` })),
    Effect.flatMap((text) => {
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch (cause) {
        const detail = cause instanceof Error ? cause.message : String(cause)
        return Effect.fail(new InvalidOptions({ component, option: "(root)", message: `${path}: not valid JSON: ${detail}` }))
      }
      return Internal.decodePriceFile(value, component, `${path}: `)
    })
  )
}

/**
 * The cost in USD of `usage` on `model`, or `undefined` when the table has no price for it.
 *
 * @since 0.2.0
 * @category getters
 */
export const costOf = (table: PriceTable, model: string, usage: Usage): number | undefined => Internal.costOf(table, model, usage)

/**
 * A spend budget. Build it with {@link budget}; apply it with {@link within}, {@link withinStream},
 * {@link layer} or a chain's `spend` option; read it with {@link snapshot}.
 *
 * @since 0.2.0
 * @category models
 */
export interface Budget {
  readonly _tag: "Budget"
  readonly name: string
  readonly maxCostUsd: number | undefined
  readonly maxTokens: number | undefined
  readonly prices: PriceTable | undefined
  readonly unknownModel: UnknownModel
}

/**
 * Options of {@link budget}. Without a limit, a budget is a meter: it accounts and never refuses.
 *
 * @since 0.2.0
 * @category models
 */
export type BudgetOptions = Internal.BudgetOptions

/**
 * Builds a budget, checking its options: a limit that is not a positive number, a cost limit without
 * prices, … fail with `InvalidOptions` naming the option.
 *
 * @example
 * ```ts
 * const budget = yield* Spend.budget({ name: "run-42", maxCostUsd: 0.5, maxTokens: 200_000, prices: table })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const budget = (options: BudgetOptions): Effect.Effect<Budget, InvalidOptions> =>
  Effect.suspend(() => Internal.makeBudget(options))

/** The budget's state, or a defect naming the mistake (a `Budget` not made by {@link budget}). */
const coreOf = (value: Budget): Internal.BudgetCore => {
  if (value instanceof Internal.BudgetCore) return value
  throw new TypeError("Spend: a Budget must be made by Spend.budget")
}

/**
 * Runs `effect` under `budget` (in addition to any enclosing budget): every provider send of a
 * policy-wrapped route inside it reserves in it first, and is refused with `BudgetExceeded` when it
 * does not fit.
 *
 * @example
 * ```ts
 * const run = agentRun.pipe(Spend.within(runBudget))
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const within = (budget: Budget) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => Effect.locallyWith(effect, Internal.currentBudgets, Internal.withBudget(coreOf(budget))))

/**
 * {@link within} for a stream: the sends of `stream` itself — made while it opens and while each of
 * its elements is pulled, on any fiber it forks — and nothing else. Work its consumer does between
 * pulls (a `Stream.mapEffect` after it, a stream it is zipped or concatenated with) is not charged
 * to `budget`.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withinStream = (budget: Budget) => <A, E, R>(stream: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> =>
  Stream.suspend(() => Internal.withinStream(coreOf(budget), stream))

/**
 * The budget for everything the layer is provided to (e.g. a whole program, or a worker).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (budget: Budget): Layer.Layer<never> =>
  Layer.scopedDiscard(Effect.suspend(() => Effect.locallyScopedWith(Internal.currentBudgets, Internal.withBudget(coreOf(budget)))))

/**
 * What a budget has spent and holds. Amounts are settled spend: the provider's reported usage, or
 * the worst case of an attempt that was sent and reported none (`unreported` counts those).
 *
 * @since 0.2.0
 * @category models
 */
export type SpendSnapshot = Internal.SpendSnapshot

/**
 * What `budget` has spent, holds and refused, now.
 *
 * @since 0.2.0
 * @category getters
 */
export const snapshot = (budget: Budget): Effect.Effect<SpendSnapshot> => Effect.sync(() => Internal.snapshotOf(coreOf(budget)))

/**
 * Whether a value is a {@link Budget} made by {@link budget}.
 *
 * @since 0.2.0
 * @category guards
 */
export const isBudget = (value: unknown): value is Budget => value instanceof Internal.BudgetCore

/**
 * Whether a value is a {@link PriceTable} made by {@link prices} or {@link pricesFromFile}.
 *
 * @since 0.2.0
 * @category guards
 */
export const isPriceTable = (value: unknown): value is PriceTable => value instanceof Internal.PriceTable

/**
 * Dollars for people: `0.000123`, `0.0456`, `12.30`.
 *
 * @since 0.2.0
 * @category rendering
 */
export const formatUsd = (usd: number): string => Internal.formatUsd(usd)

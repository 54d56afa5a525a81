/**
 * Tools an agent can call, each declaring what calling it twice would do — its *effect kind* — so
 * that a durable run knows what it may safely repeat after a crash:
 *
 * | kind | calling twice | after a crash between "sent" and "recorded" |
 * |---|---|---|
 * | `pure` | harmless (no side effect) | re-run |
 * | `idempotent` | same result, no extra effect (a PUT, an upsert) | re-run |
 * | `keyed` | the callee dedupes by the idempotency key (Stripe, payment APIs) | re-sent with the same key within `keyRetention`; then `reconcile`, else unknown |
 * | `irreversible` | a second effect (an email, a transfer without a key) | `reconcile`, else unknown — never re-sent blindly |
 *
 * The protocol around every call (see `Agent.useTool`): claim the step (a committed `started` row
 * with the arguments' hash), confirm the lease (a paused executor that was taken over stops here),
 * call `run` with the step's idempotency key and fencing token, record the outcome.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as JSONSchema from "effect/JSONSchema"
import * as Schema from "effect/Schema"
import type { ToolDefinition } from "../Provider.js"
import type { LeaseLost, StoreError } from "./AgentError.js"

/**
 * What calling the tool twice would do.
 *
 * @since 0.1.0
 * @category models
 */
export const EffectKind = Schema.Literal("pure", "idempotent", "keyed", "irreversible")

/**
 * @since 0.1.0
 * @category models
 */
export type EffectKind = typeof EffectKind.Type

/**
 * What a tool learns about the call it is serving.
 *
 * @since 0.1.0
 * @category models
 */
export interface ToolContext {
  readonly runId: string
  /** The step's index in the run. */
  readonly index: number
  /** Deterministic (run + index + tool name): send it to the callee as its idempotency key. */
  readonly idempotencyKey: string
  /** This call repeats one that was claimed before a crash (same key, same arguments). */
  readonly resend: boolean
  /**
   * The fencing token: the epoch of the run's lease this executor holds. It grows with every
   * acquisition, so a stale executor (paused past its lease and taken over) holds a smaller one than
   * the executor that replaced it. It is deliberately *not* part of `idempotencyKey`, which must stay
   * the same when another executor re-sends the call after a takeover. A callee that can make a
   * conditional write should store the highest token it has seen for the key (or the resource) and
   * reject a request carrying a smaller one — that closes the window `confirmLease` leaves.
   */
  readonly fencingToken: number
  /**
   * Confirms in the store — one atomic write, fenced by `fencingToken` — that this executor still holds
   * a live lease on the run, and extends it by the lease duration; fails with `LeaseLost` (or
   * `StoreError` when the store cannot answer) otherwise. The protocol does this immediately before
   * calling `run` (for every kind but `pure`); a tool that does work (or waits) before its side effect
   * should `yield*` it once more right before the effect and let its failure propagate: that failure
   * is not recorded as the tool's outcome — the run stops and the step stays claimed for whoever holds
   * the run now. What remains is a pause *between* this check and the effect longer than the lease.
   */
  readonly confirmLease: Effect.Effect<void, LeaseLost | StoreError>
}

/**
 * What a `reconcile` hook found out about a claimed call whose outcome was never recorded.
 *
 * @since 0.1.0
 * @category models
 */
export type Reconciliation<A> =
  | { readonly _tag: "Applied"; readonly value: A }
  | { readonly _tag: "NotApplied" }
  | { readonly _tag: "Unknown"; readonly reason: string }

/**
 * The call happened; `value` is its result (as the callee reports it now).
 *
 * @since 0.1.0
 * @category constructors
 */
export const applied = <A>(value: A): Reconciliation<A> => ({ _tag: "Applied", value })

/**
 * The call never reached the callee: it is safe to make it now (with the same key).
 *
 * @since 0.1.0
 * @category constructors
 */
export const notApplied: Reconciliation<never> = { _tag: "NotApplied" }

/**
 * The hook cannot tell: the step is escalated as unknown.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknown = (reason: string): Reconciliation<never> => ({ _tag: "Unknown", reason })

/**
 * What to do with the tool while the system is degraded (answers from a fallback route, or the
 * primary's breaker open): `refuse` (the default for `irreversible`) or `proceed` (the default for
 * every other kind).
 *
 * @since 0.1.0
 * @category models
 */
export type WhenDegraded = "refuse" | "proceed"

/**
 * A tool.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tool<Args, ArgsI, A, AI, E, R> {
  readonly name: string
  readonly description: string | undefined
  readonly effect: EffectKind
  /** The arguments (decoded from the model's JSON; encoded for the arguments hash). */
  readonly parameters: Schema.Schema<Args, ArgsI>
  /** The result (encoded into the journal). */
  readonly success: Schema.Schema<A, AI>
  readonly run: (args: Args, context: ToolContext) => Effect.Effect<A, E, R>
  readonly reconcile: ((args: Args, context: ToolContext) => Effect.Effect<Reconciliation<A>, E, R>) | undefined
  /** How long the callee keeps idempotency keys (`keyed` tools). */
  readonly keyRetentionMs: number
  readonly whenDegraded: WhenDegraded
  /** The failure as text the agent can reason about. */
  readonly describeFailure: (error: E) => string
  /** The result as text for the agent; default: the encoded result as JSON. */
  readonly render: ((value: A) => string) | undefined
  /** The definition to offer the model (JSON Schema of the parameters). */
  readonly definition: ToolDefinition
}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ToolOptions<Args, ArgsI, A, AI, E, R> {
  readonly name: string
  readonly description?: string | undefined
  readonly effect: EffectKind
  readonly parameters: Schema.Schema<Args, ArgsI>
  readonly success: Schema.Schema<A, AI>
  readonly run: (args: Args, context: ToolContext) => Effect.Effect<A, E, R>
  /** Looks the call up at the callee after a crash (by `context.idempotencyKey`). */
  readonly reconcile?: ((args: Args, context: ToolContext) => Effect.Effect<Reconciliation<A>, E, R>) | undefined
  /** `keyed` tools: how long the callee remembers keys. Default 24 hours (Stripe's retention). */
  readonly keyRetention?: Duration.DurationInput | undefined
  /** Default: `refuse` for `irreversible`, `proceed` otherwise. */
  readonly whenDegraded?: WhenDegraded | undefined
  readonly describeFailure?: ((error: E) => string) | undefined
  readonly render?: ((value: A) => string) | undefined
}

/**
 * The defaults of {@link make}.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  keyRetentionMs: 24 * 60 * 60 * 1000
} as const

/** A failure's own words: its `message` (and `_tag`), else its JSON. */
const describeDefault = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const tag = "_tag" in error && typeof error._tag === "string" ? error._tag : undefined
    const message = "message" in error && typeof error.message === "string" && error.message !== "" ? error.message : undefined
    if (tag !== undefined || message !== undefined) return [tag, message].filter((s) => s !== undefined).join(": ")
  }
  if (typeof error === "string") return error
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}

/**
 * Defines a tool.
 *
 * ```ts
 * const chargeCard = Tool.make({
 *   name: "charge_card",
 *   effect: "keyed",
 *   parameters: Schema.Struct({ customer: Schema.String, cents: Schema.Int }),
 *   success: Schema.Struct({ chargeId: Schema.String }),
 *   run: (args, { idempotencyKey }) => payments.charge(args, idempotencyKey)
 * })
 *
 * // A tool that prepares before its effect confirms the lease again right before it:
 * const sendWire = Tool.make({
 *   name: "send_wire",
 *   effect: "irreversible",
 *   parameters: Schema.Struct({ to: Schema.String, cents: Schema.Int }),
 *   success: Schema.Struct({ wireId: Schema.String }),
 *   run: (args, { confirmLease, fencingToken, idempotencyKey }) =>
 *     Effect.gen(function*() {
 *       const quote = yield* bank.quote(args)
 *       yield* confirmLease
 *       return yield* bank.send(quote, { reference: idempotencyKey, fence: fencingToken })
 *     })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <Args, ArgsI, A, AI, E = never, R = never>(
  options: ToolOptions<Args, ArgsI, A, AI, E, R>
): Tool<Args, ArgsI, A, AI, E, R> => ({
  name: options.name,
  description: options.description,
  effect: options.effect,
  parameters: options.parameters,
  success: options.success,
  run: options.run,
  reconcile: options.reconcile,
  keyRetentionMs: options.keyRetention === undefined
    ? defaults.keyRetentionMs
    : Duration.toMillis(Duration.decode(options.keyRetention)),
  whenDegraded: options.whenDegraded ?? (options.effect === "irreversible" ? "refuse" : "proceed"),
  describeFailure: options.describeFailure ?? describeDefault,
  render: options.render,
  definition: {
    name: options.name,
    ...(options.description === undefined ? {} : { description: options.description }),
    parameters: JSONSchema.make(options.parameters) as unknown as Record<string, unknown>
  }
})

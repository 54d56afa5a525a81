/**
 * The one rule of "nothing was sent": a failure raised before the request left. Breakers give it no
 * verdict (it says nothing of the provider's health), limiters refund its permit and spend budgets
 * release its reservation (nothing was spent).
 *
 * @internal
 */

/**
 * The `providerType` of a `QuotaExhausted` that stands for a spend budget's refusal inside a nested
 * chain (a chain used as a route of another through the @effect/ai bridge): for the outer chain that
 * route cannot pay now (action `reroute`), and, like the `BudgetExceeded` it stands for, nothing was
 * sent. Namespaced, so that no provider's own error type can be taken for it.
 */
export const BUDGET_REFUSED_TYPE = "effect-llm-resilience/budget-exceeded"

/**
 * Whether a failure was raised before the request left: a part the route's wire cannot carry
 * (`UnsupportedRequest`), a spend budget's refusal (`BudgetExceeded`), or that refusal as a nested
 * chain's route reports it (`QuotaExhausted` with {@link BUDGET_REFUSED_TYPE}).
 */
export const isUnsent = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  const e = error as { readonly _tag?: unknown; readonly providerType?: unknown }
  switch (e._tag) {
    case "UnsupportedRequest":
    case "BudgetExceeded":
      return true
    case "QuotaExhausted":
      return e.providerType === BUDGET_REFUSED_TYPE
    default:
      return false
  }
}

/**
 * The gate of the tests that need a local service (Postgres, Redis): when the service is down, in CI
 * (`CI=true`) that is one failing test carrying the reason; elsewhere the tests are skipped and the
 * reason printed.
 */

/** Whether a service answers, and why not. */
export interface Probe {
  readonly available: boolean
  readonly reason: string
}

/**
 * Registers the gate of `service`; returns whether to run its tests. `register` adds the failing test
 * (e.g. `(name, fn) => describe("Postgres", () => it(name, fn))`); `label` prefixes the skip message.
 */
export const serviceGate = async (
  service: string,
  label: string,
  probe: () => Promise<Probe>,
  register: (name: string, fn: () => void) => void
): Promise<boolean> => {
  const result = await probe()
  if (result.available) return true
  if (process.env["CI"] === "true") {
    register(`${service} is reachable (required when CI=true)`, () => {
      throw new Error(result.reason)
    })
  } else {
    console.warn(`[${label}] skipping the ${service} tests: ${result.reason} (set CI=true to make this a failure)`)
  }
  return false
}

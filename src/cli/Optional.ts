/**
 * Parts of the CLI that need packages a user may not have installed (telemetry, the SQL checkpoint
 * stores): loaded on use, and a missing package is a usage error that says what to install — never an
 * "internal error" from deep inside Node's module loader.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import { UsageError } from "./CliError.js"

/** Node's "package not found" (ESM and CommonJS), naming the package it looked for. */
const missingPackageOf = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  const code = (error as { readonly code?: unknown }).code
  if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") return undefined
  const message = String((error as { readonly message?: unknown }).message ?? "")
  return /Cannot find (?:package|module) '([^']+)'/.exec(message)?.[1] ?? "a package"
}

/**
 * Loads a module for `feature`. When a package it needs is not installed, fails with a `UsageError`
 * naming the feature, the missing package and the install command; any other failure is a defect.
 *
 * @since 0.2.0
 * @category loading
 */
export const loadOptional = <A>(
  load: () => Promise<A>,
  feature: string,
  packages: ReadonlyArray<string>
): Effect.Effect<A, UsageError> =>
  Effect.tryPromise({ try: load, catch: (error) => error }).pipe(
    Effect.catchAll((error) => {
      const missing = missingPackageOf(error)
      return missing === undefined
        ? Effect.die(error)
        : Effect.fail(
          new UsageError({ message: `${feature} needs ${missing}, which is not installed: npm i ${packages.join(" ")}` })
        )
    })
  )

/**
 * What `--otel` and its siblings load (the versions of the Effect 3 line this package is built with).
 *
 * @since 0.2.0
 * @category loading
 */
export const TELEMETRY_PACKAGES: ReadonlyArray<string> = [
  "@effect/opentelemetry@^0.64",
  "@opentelemetry/api@^1.9",
  "@opentelemetry/sdk-trace-base@^2",
  "@opentelemetry/sdk-metrics@^2",
  "@opentelemetry/exporter-trace-otlp-http@^0.223",
  "@opentelemetry/exporter-metrics-otlp-http@^0.223"
]

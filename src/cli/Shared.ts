/**
 * What every command shares: the `--config` and `--otel*` flags, loading the config file, the
 * telemetry layer, and terminal output helpers (colour only on a TTY without `NO_COLOR`).
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { type ConfigFileError, UsageError } from "./CliError.js"
import * as ConfigFile from "./ConfigFile.js"
import { loadOptional, TELEMETRY_PACKAGES } from "./Optional.js"
import * as Routes from "./Routes.js"

/**
 * `--config FILE`.
 *
 * @since 0.1.0
 * @category options
 */
export const configOption = Options.text("config").pipe(
  Options.withDescription("A config file (JSON, or YAML for .yaml/.yml): routes, policies, deadline, store, telemetry"),
  Options.optional
)

/**
 * The `--otel*` flags.
 *
 * @since 0.1.0
 * @category options
 */
export const otelOptions = {
  otel: Options.boolean("otel").pipe(Options.withDescription("Export spans and metrics with OpenTelemetry (OTLP/HTTP unless --otel-console/--otel-file only)")),
  otelEndpoint: Options.text("otel-endpoint").pipe(
    Options.withDescription("OTLP/HTTP endpoint root (default: OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318); implies --otel"),
    Options.optional
  ),
  otelConsole: Options.boolean("otel-console").pipe(Options.withDescription("Print one line per span on stderr; implies --otel")),
  otelFile: Options.text("otel-file").pipe(Options.withDescription("Write spans as JSON lines to this file; implies --otel"), Options.optional)
}

/**
 * The parsed `--otel*` flags.
 *
 * @since 0.1.0
 * @category models
 */
export interface OtelFlags {
  readonly otel: boolean
  readonly otelEndpoint: Option.Option<string>
  readonly otelConsole: boolean
  readonly otelFile: Option.Option<string>
}

/**
 * The flags describing one route (`call`, `doctor`).
 *
 * @since 0.1.0
 * @category options
 */
export const routeOptions = {
  provider: Options.choice("provider", ConfigFile.ProviderKind.literals).pipe(
    Options.withDescription("Wire format of the route given by flags"),
    Options.optional
  ),
  baseUrl: Options.text("base-url").pipe(
    Options.withDescription("API root as the SDKs take it: http://host:port/v1 for OpenAI-format, http://host:port for Anthropic"),
    Options.optional
  ),
  model: Options.text("model").pipe(Options.withDescription("Model id of the route given by flags"), Options.optional),
  apiKeyEnv: Options.text("api-key-env").pipe(
    Options.withDescription("Environment variable holding the key (default OPENAI_API_KEY / ANTHROPIC_API_KEY)"),
    Options.optional
  )
}

/**
 * The parsed route flags.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteFlags {
  readonly provider: Option.Option<ConfigFile.ProviderKind>
  readonly baseUrl: Option.Option<string>
  readonly model: Option.Option<string>
  readonly apiKeyEnv: Option.Option<string>
}

/**
 * Fails with a usage error when an optional integer flag is not positive.
 *
 * @since 0.1.0
 * @category options
 */
export const positive = (name: string, value: Option.Option<number>): Effect.Effect<Option.Option<number>, UsageError> =>
  Option.isSome(value) && value.value <= 0
    ? Effect.fail(new UsageError({ message: `--${name} must be a positive integer, got ${value.value}` }))
    : Effect.succeed(value)

/**
 * The route specs of a command: the flag route (if any) then the config's routes, with `--max-attempts`
 * applied to every route.
 *
 * @since 0.1.0
 * @category config
 */
export const routeSpecs = (
  flags: RouteFlags & { readonly maxAttempts?: Option.Option<number> },
  config: ConfigFile.Config
): Effect.Effect<ReadonlyArray<Routes.RouteSpec>, UsageError> =>
  Effect.gen(function*() {
    const specs: Array<Routes.RouteSpec> = []
    const given = [flags.provider, flags.baseUrl, flags.model].filter(Option.isSome).length
    if (given > 0) {
      if (Option.isNone(flags.provider) || Option.isNone(flags.model)) {
        return yield* new UsageError({ message: "a route given by flags needs both --provider and --model (and usually --base-url)" })
      }
      if (ConfigFile.needsBaseUrl(flags.provider.value) && Option.isNone(flags.baseUrl)) {
        return yield* new UsageError({ message: `--provider ${flags.provider.value} needs --base-url` })
      }
      if (Option.isSome(flags.baseUrl) && !/^https?:\/\/\S+$/.test(flags.baseUrl.value)) {
        return yield* new UsageError({ message: `--base-url must be an http:// or https:// URL, got "${flags.baseUrl.value}"` })
      }
      specs.push({
        name: flags.provider.value,
        provider: flags.provider.value,
        model: flags.model.value,
        baseUrl: Option.getOrUndefined(flags.baseUrl),
        apiKeyEnv: Option.getOrUndefined(flags.apiKeyEnv),
        policy: ConfigFile.policyOf(config, {})
      })
    }
    for (const route of config.routes ?? []) {
      if (specs.some((s) => s.name === route.name)) {
        return yield* new UsageError({ message: `route name "${route.name}" is used both by the flags and by the config file` })
      }
      specs.push({ ...route, policy: ConfigFile.policyOf(config, route) })
    }
    if (specs.length === 0) {
      return yield* new UsageError({ message: "no route to call: give --provider, --model and --base-url, or --config with routes" })
    }
    const maxAttempts = yield* positive("max-attempts", flags.maxAttempts ?? Option.none())
    if (Option.isNone(maxAttempts)) return specs
    return specs.map((spec) => ({
      ...spec,
      policy: {
        ...spec.policy,
        retry: { ...(spec.policy.retry === false ? {} : spec.policy.retry), maxAttempts: maxAttempts.value }
      }
    }))
  })

/**
 * Loads `--config` if given.
 *
 * @since 0.1.0
 * @category config
 */
export const loadConfig = (
  path: Option.Option<string>
): Effect.Effect<ConfigFile.Config, ConfigFileError, FileSystem.FileSystem> =>
  Option.match(path, { onNone: () => Effect.succeed(ConfigFile.empty), onSome: ConfigFile.load })

/**
 * The values of every key a run may read (the routes' variables and the two defaults), for scrubbing.
 *
 * @since 0.1.0
 * @category config
 */
export const knownSecrets = (specs: ReadonlyArray<Routes.RouteSpec>): Effect.Effect<ReadonlyArray<Redacted.Redacted<string>>> =>
  Effect.map(
    Effect.forEach([...specs, { provider: "openai" as const }, { provider: "anthropic" as const }], Routes.secretsOf),
    (secrets) => secrets.flat()
  )

/**
 * The telemetry layer the flags and the config ask for (empty when off). The OpenTelemetry SDK is
 * loaded only when telemetry is on, so the other commands start fast.
 *
 * @since 0.1.0
 * @category telemetry
 */
export const telemetryLayer = (
  flags: OtelFlags,
  config: ConfigFile.Config,
  secrets: ReadonlyArray<Redacted.Redacted<string>>
): Layer.Layer<never, UsageError> => {
  const endpoint = Option.getOrUndefined(flags.otelEndpoint) ?? config.telemetry?.endpoint
  const file = Option.getOrUndefined(flags.otelFile)
  const console = flags.otelConsole || config.telemetry?.console === true
  const enabled = flags.otel || endpoint !== undefined || file !== undefined || flags.otelConsole
  if (!enabled) return Layer.empty
  const otlp = endpoint !== undefined || (!console && file === undefined)
  return Layer.unwrapEffect(
    Effect.map(
      loadOptional(() => import("./Telemetry.js"), "telemetry (--otel, --otel-console, --otel-file)", TELEMETRY_PACKAGES),
      (Telemetry) =>
        Telemetry.layer({
          endpoint,
          otlp,
          console,
          file,
          serviceName: config.telemetry?.serviceName ?? "llm-resilience",
          secrets
        })
    )
  )
}

// ---------------------------------------------------------------------------------------------------
// Terminal output
// ---------------------------------------------------------------------------------------------------

/**
 * Writes to stdout as is.
 *
 * @since 0.1.0
 * @category output
 */
export const writeOut = (text: string): Effect.Effect<void> => Effect.sync(() => void process.stdout.write(text))

/**
 * Writes to stderr as is.
 *
 * @since 0.1.0
 * @category output
 */
export const writeErr = (text: string): Effect.Effect<void> => Effect.sync(() => void process.stderr.write(text))

const colourOn = (stream: NodeJS.WriteStream) => stream.isTTY === true && process.env["NO_COLOR"] === undefined

/** ANSI SGR sequences (colour, bold): what @effect/cli's help and error texts are styled with. */
const ANSI_STYLE = /\x1b\[[0-9;]*m/g

const unstyled = (args: ReadonlyArray<unknown>): Array<unknown> =>
  args.map((arg) => (typeof arg === "string" ? arg.replace(ANSI_STYLE, "") : arg))

/**
 * The console the CLI runs with: Effect's own, except that text printed to a stream that is not a
 * colour terminal (a pipe, a file, `NO_COLOR` set) loses its ANSI styles. @effect/cli styles its help
 * and validation messages unconditionally; this is where they are made plain. Use it over a program
 * with {@link withCliConsole}.
 *
 * @since 0.2.0
 * @category output
 */
export const cliConsole = (base: Console.Console): Console.Console => {
  const plainOut = !colourOn(process.stdout)
  const plainErr = !colourOn(process.stderr)
  if (!plainOut && !plainErr) return base
  return {
    ...base,
    log: (...args) => base.log(...(plainOut ? unstyled(args) : args)),
    info: (...args) => base.info(...(plainOut ? unstyled(args) : args)),
    error: (...args) => base.error(...(plainErr ? unstyled(args) : args)),
    warn: (...args) => base.warn(...(plainErr ? unstyled(args) : args))
  }
}

/**
 * Runs `effect` with {@link cliConsole} over the current console.
 *
 * @since 0.2.0
 * @category output
 */
export const withCliConsole = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((base) => Console.withConsole(effect, cliConsole(base)))

/**
 * ANSI styles that are no-ops when the stream is not a colour terminal.
 *
 * @since 0.1.0
 * @category output
 */
export const stylesFor = (stream: NodeJS.WriteStream) => {
  const on = colourOn(stream)
  const wrap = (code: string) => (text: string) => (on ? `\x1b[${code}m${text}\x1b[0m` : text)
  return {
    bold: wrap("1"),
    dim: wrap("2"),
    red: wrap("31"),
    green: wrap("32"),
    yellow: wrap("33"),
    blue: wrap("34"),
    magenta: wrap("35"),
    cyan: wrap("36"),
    grey: wrap("90")
  }
}

/**
 * A key's value, for scrubbing (the only place the CLI unwraps a key, and only to remove it).
 *
 * @since 0.1.0
 * @category output
 */
export const secretValues = (secrets: ReadonlyArray<Redacted.Redacted<string>>): ReadonlyArray<string> => secrets.map(Redacted.value)

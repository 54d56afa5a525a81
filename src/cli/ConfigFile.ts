/**
 * The CLI's config file (JSON, or YAML for any other extension): routes, named policies, the chain
 * deadline, the checkpoint store, telemetry, model prices and a spend budget, decoded with `effect/Schema`. Unknown fields are
 * errors (a typo must not silently fall back to a default), and every problem is reported with its
 * path, its line and column, and what was expected:
 *
 * ```
 * Invalid config file llm.yaml:
 *   - routes[0].provider (line 3, column 15): Expected "openai" | "openai-responses" | "anthropic" | "openai-compatible" | "azure-openai" | "gemini" | "bedrock" | "vllm" | "ollama" | "openrouter" | "groq" | "together", actual "openia"
 * ```
 *
 * API keys are never in the file: a route names the environment variable that holds its key
 * (`apiKeyEnv`), so the file can be committed and shared.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { LineCounter, parseDocument } from "yaml"
import { formatPath, issuesOf, mergeIssues } from "../internal/schemaIssues.js"
import type { InvalidOptions } from "../Errors.js"
import type * as Policy from "../Policy.js"
import * as Spend from "../Spend.js"
import { ConfigFileError } from "./CliError.js"

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })
const NonEmpty = Schema.String.pipe(Schema.minLength(1))
const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const NonNegative = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
const HttpUrl = Schema.String.pipe(
  Schema.filter((s) => /^https?:\/\/[^\s]+$/.test(s), { message: () => "Expected an http:// or https:// URL" })
)

/**
 * A duration: a number of milliseconds, or text such as `"500 millis"`, `"30 seconds"`, `"2 minutes"`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationValue = Schema.transformOrFail(Schema.Union(Schema.Number, Schema.String), Schema.DurationFromSelf, {
  strict: true,
  decode: (input, _, ast) => {
    if (typeof input === "number") {
      return input >= 0 && Number.isFinite(input)
        ? ParseResult.succeed(Duration.millis(input))
        : ParseResult.fail(new ParseResult.Type(ast, input, `Expected a non-negative number of milliseconds, actual ${input}`))
    }
    return Option.match(Duration.decodeUnknown(input), {
      onNone: () =>
        ParseResult.fail(
          new ParseResult.Type(ast, input, `Expected a duration such as "500 millis", "30 seconds" or "2 minutes", actual ${JSON.stringify(input)}`)
        ),
      onSome: ParseResult.succeed
    })
  },
  encode: (duration) => ParseResult.succeed(Duration.toMillis(duration))
})

/**
 * Retry options (see `Retry.RetryOptions`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RetryConfig = Schema.Struct({
  maxAttempts: opt(PositiveInt),
  base: opt(DurationValue),
  cap: opt(DurationValue),
  jitter: opt(Schema.Literal("full", "equal", "decorrelated", "none")),
  maxRetryAfter: opt(DurationValue),
  rerouteRetries: opt(NonNegativeInt)
})

/**
 * Phase timeouts (see `Timeouts.TimeoutOptions`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const TimeoutsConfig = Schema.Struct({
  attempt: opt(DurationValue),
  headers: opt(DurationValue),
  firstToken: opt(DurationValue),
  idle: opt(DurationValue)
})

/**
 * Circuit breaker options (see `CircuitBreaker.CircuitBreakerOptions`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const BreakerConfig = Schema.Struct({
  consecutiveFailures: opt(PositiveInt),
  failureRate: opt(Schema.Number.pipe(Schema.between(0, 1))),
  minimumThroughput: opt(PositiveInt),
  window: opt(DurationValue),
  openDuration: opt(DurationValue),
  backoffFactor: opt(Schema.Number.pipe(Schema.greaterThanOrEqualTo(1))),
  maxOpenDuration: opt(DurationValue),
  honourRetryAfter: opt(Schema.Boolean),
  halfOpenProbes: opt(PositiveInt),
  countRateLimited: opt(Schema.Boolean)
})

/**
 * Retry budget options (see `RetryBudget.RetryBudgetOptions`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const BudgetConfig = Schema.Struct({
  ratio: opt(NonNegative),
  minPerSecond: opt(NonNegative),
  window: opt(DurationValue)
})

/**
 * Client-side rate limiter options (see `RateLimiter.RateLimiterOptions`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RateLimitConfig = Schema.Struct({
  requestsPerMinute: opt(Schema.Number.pipe(Schema.positive())),
  tokensPerMinute: opt(Schema.Number.pipe(Schema.positive())),
  maxConcurrency: opt(PositiveInt),
  maxQueue: opt(NonNegativeInt),
  maxWait: opt(DurationValue),
  learnFromHeaders: opt(Schema.Boolean)
})

const orOff = <S extends Schema.Schema.Any>(schema: S) => Schema.Union(Schema.Literal(false), schema)

/**
 * A per-route policy (see `Policy.PolicyOptions`): each strategy's options, or `false` to switch it off.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PolicyConfig = Schema.Struct({
  retry: opt(orOff(RetryConfig)),
  budget: opt(orOff(BudgetConfig)),
  timeouts: opt(orOff(TimeoutsConfig)),
  breaker: opt(orOff(BreakerConfig)),
  rateLimit: opt(orOff(RateLimitConfig)),
  deadline: opt(DurationValue)
})

/**
 * @since 0.1.0
 * @category models
 */
export type PolicyConfig = typeof PolicyConfig.Type

/**
 * The wire format a route speaks.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ProviderKind = Schema.Literal(
  "openai",
  "openai-responses",
  "anthropic",
  "openai-compatible",
  "azure-openai",
  "gemini",
  "bedrock",
  "vllm",
  "ollama",
  "openrouter",
  "groq",
  "together"
)

/**
 * @since 0.1.0
 * @category models
 */
export type ProviderKind = typeof ProviderKind.Type

/**
 * Whether a route of this kind has no default URL (an OpenAI-compatible server, an Azure resource).
 *
 * @since 0.2.0
 * @category schemas
 */
export const needsBaseUrl = (provider: ProviderKind): boolean => provider === "openai-compatible" || provider === "azure-openai"

/**
 * One route of the chain, in order.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RouteConfig = Schema.Struct({
  name: NonEmpty,
  provider: ProviderKind,
  model: NonEmpty,
  /** The API root as the official SDKs take it (OpenAI: including `/v1`). */
  baseUrl: opt(HttpUrl),
  /** The environment variable holding the key (default `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`). */
  apiKeyEnv: opt(Schema.String.pipe(Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    message: () => "Expected the name of an environment variable (letters, digits, _), not a key"
  }))),
  /** A statuspage.io `status.json` URL for `doctor` (default per provider), or `false`. */
  statusPage: opt(Schema.Union(Schema.Literal(false), HttpUrl)),
  contextWindow: opt(PositiveInt),
  maxTokens: opt(PositiveInt),
  /** A name from `policies`, or an inline policy (merged over `policies.default`). */
  policy: opt(Schema.Union(NonEmpty, PolicyConfig)),
  group: opt(NonEmpty),
  weight: opt(Schema.Number.pipe(Schema.positive()))
})

/**
 * @since 0.1.0
 * @category models
 */
export type RouteConfig = typeof RouteConfig.Type

/**
 * Where durable runs keep their checkpoints.
 *
 * @since 0.1.0
 * @category schemas
 */
export const StoreConfig = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("memory") }),
  Schema.Struct({ kind: Schema.Literal("sqlite"), path: NonEmpty }),
  // The URL may carry a password: it stays Redacted from here on.
  Schema.Struct({ kind: Schema.Literal("postgres"), url: Schema.Redacted(NonEmpty) })
)

/**
 * @since 0.1.0
 * @category models
 */
export type StoreConfig = typeof StoreConfig.Type

/**
 * OpenTelemetry settings (the `--otel*` flags override them).
 *
 * @since 0.1.0
 * @category schemas
 */
export const TelemetryConfig = Schema.Struct({
  /** OTLP/HTTP endpoint root (`/v1/traces` and `/v1/metrics` are appended). */
  endpoint: opt(HttpUrl),
  /** Print spans to the terminal. */
  console: opt(Schema.Boolean),
  serviceName: opt(NonEmpty)
})

/**
 * A spend budget for a command's calls (`call`: its one call; `demo`: the agent run), see `Spend.budget`.
 *
 * @since 0.2.0
 * @category schemas
 */
export const SpendConfig = Schema.Struct({
  maxCostUsd: opt(Schema.Number.pipe(Schema.finite(), Schema.positive())),
  maxTokens: opt(PositiveInt),
  unknownModel: opt(Schema.Literal("refuse", "count-tokens-only"))
})

/**
 * @since 0.2.0
 * @category models
 */
export type SpendConfig = typeof SpendConfig.Type

const ConfigFields = Schema.Struct({
  routes: opt(Schema.Array(RouteConfig)),
  policies: opt(Schema.Record({ key: NonEmpty, value: PolicyConfig })),
  /** Wall-clock deadline of one call across every route. */
  deadline: opt(DurationValue),
  /** Re-ask a route with the decode errors this many times before moving on (structured output). */
  repairAttempts: opt(NonNegativeInt),
  store: opt(StoreConfig),
  telemetry: opt(TelemetryConfig),
  /** Model id or `prefix*` → USD per million input / output tokens: cost in summaries, reports and `spend`. */
  prices: opt(Spend.PricesSchema),
  spend: opt(SpendConfig)
})

/**
 * The whole file. Cross-field rules: route names are unique, a policy named by a route exists, and an
 * `openai-compatible` route has a `baseUrl`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Config = ConfigFields.pipe(Schema.filter((config) => {
  const issues: Array<Schema.FilterIssue> = []
  const seen = new Set<string>()
  const policies = Object.keys(config.policies ?? {})
  if (config.spend?.maxCostUsd !== undefined && config.prices === undefined) {
    issues.push({ path: ["spend", "maxCostUsd"], message: "needs a `prices` table (without prices no call has a cost to check)" })
  }
  config.routes?.forEach((route, i) => {
    if (seen.has(route.name)) issues.push({ path: ["routes", i, "name"], message: `duplicate route name "${route.name}"` })
    seen.add(route.name)
    if (typeof route.policy === "string" && !policies.includes(route.policy)) {
      issues.push({
        path: ["routes", i, "policy"],
        message: `unknown policy "${route.policy}"; defined: ${policies.length === 0 ? "none (add a `policies` map)" : policies.join(", ")}`
      })
    }
    if (needsBaseUrl(route.provider) && route.baseUrl === undefined) {
      issues.push({ path: ["routes", i, "baseUrl"], message: `is missing (an ${route.provider} route needs the server's URL)` })
    }
  })
  return issues
}))

/**
 * @since 0.1.0
 * @category models
 */
export type Config = typeof Config.Type

/**
 * The empty config (no file given).
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: Config = {}

/**
 * The policy of a route: a named policy, or its inline policy over `policies.default` (strategy by
 * strategy), or `policies.default`, or the library's default.
 *
 * @since 0.1.0
 * @category getters
 */
export const policyOf = (config: Config, route: Pick<RouteConfig, "policy">): Policy.PolicyOptions => {
  const base = config.policies?.["default"] ?? {}
  if (route.policy === undefined) return base
  if (typeof route.policy === "string") return config.policies?.[route.policy] ?? base
  return { ...base, ...route.policy }
}

/**
 * The config's price table and spend budget, built (the file was validated when it was decoded).
 *
 * @since 0.2.0
 * @category getters
 */
export const spendOf = (
  config: Config
): Effect.Effect<{ readonly prices: Spend.PriceTable | undefined; readonly budget: Spend.Budget | undefined }, InvalidOptions> =>
  Effect.gen(function*() {
    const prices = config.prices === undefined ? undefined : yield* Spend.prices(config.prices)
    const spend = config.spend
    const budget = spend === undefined ? undefined : yield* Spend.budget({
      name: "config spend",
      ...(spend.maxCostUsd !== undefined ? { maxCostUsd: spend.maxCostUsd } : {}),
      ...(spend.maxTokens !== undefined ? { maxTokens: spend.maxTokens } : {}),
      ...(spend.unknownModel !== undefined ? { unknownModel: spend.unknownModel } : {}),
      ...(prices !== undefined ? { prices } : {})
    })
    return { prices, budget }
  })

// ---------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------

type Locate = (path: ReadonlyArray<PropertyKey>) => string

const describe = (source: string, issues: ReadonlyArray<{ readonly path: string; readonly message: string }>) =>
  [`Invalid config file ${source}:`, ...issues.map((i) => `  - ${i.path}: ${i.message}`)].join("\n")

const fail = (source: string, issues: ReadonlyArray<{ readonly path: string; readonly message: string }>) =>
  new ConfigFileError({ source, issues, message: describe(source, issues) })

/** Line and column (1-based) of a character offset. */
const lineColumnOf = (text: string, offset: number) => {
  const before = text.slice(0, Math.max(0, offset))
  const line = before.split("\n").length
  return { line, column: offset - before.lastIndexOf("\n") }
}

/** Parses the text (JSON for `.json`, else YAML) and returns the value and a locator of paths. */
const parse = (text: string, source: string): Effect.Effect<{ readonly value: unknown; readonly locate: Locate }, ConfigFileError> =>
  Effect.suspend(() => {
    const lineCounter = new LineCounter()
    const document = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true })
    const locate: Locate = (path) => {
      // The deepest node that exists on the path (a missing key is reported at its parent).
      for (let depth = path.length; depth >= 0; depth--) {
        const node: unknown = depth === 0 ? document.contents : document.getIn(path.slice(0, depth), true)
        const range = typeof node === "object" && node !== null && "range" in node ? (node as { readonly range?: unknown }).range : undefined
        if (Array.isArray(range) && typeof range[0] === "number") {
          const { col, line } = lineCounter.linePos(range[0])
          return ` (line ${line}, column ${col})`
        }
      }
      return ""
    }
    if (/\.json$/i.test(source)) {
      try {
        return Effect.succeed({ value: JSON.parse(text) as unknown, locate })
      } catch (cause) {
        const detail = cause instanceof Error ? cause.message : String(cause)
        const position = /position (\d+)/.exec(detail)
        const where = position === null ? "" : (() => {
          const { column, line } = lineColumnOf(text, Number(position[1]))
          return ` at line ${line}, column ${column}`
        })()
        return Effect.fail(fail(source, [{ path: "(root)", message: `not valid JSON${where}: ${detail}` }]))
      }
    }
    const error = document.errors[0]
    if (error !== undefined) {
      const where = error.linePos?.[0] !== undefined ? ` at line ${error.linePos[0].line}, column ${error.linePos[0].col}` : ""
      return Effect.fail(fail(source, [{ path: "(root)", message: `not valid YAML${where}: ${(error.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?\s*$/, "")}` }]))
    }
    return Effect.succeed({ value: document.toJS() as unknown, locate })
  })

/**
 * Decodes an already-parsed value (what a file holds), locating issues with `locate`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (
  value: unknown,
  source: string,
  locate: Locate = () => ""
): Effect.Effect<Config, ConfigFileError> =>
  Schema.decodeUnknown(Config, { errors: "all", onExcessProperty: "error" })(value ?? {}).pipe(
    Effect.mapError((error) => {
      const raw = issuesOf(error)
      // `retry: { … }` failing inside also fails the `false` member of `false | { … }`: the inner
      // problems are the useful ones, so the "Expected false" line is dropped when they exist.
      const useful = raw.filter((issue) =>
        !(issue.message.startsWith("Expected false,") &&
          raw.some((other) => other.path.length > issue.path.length && issue.path.every((key, i) => other.path[i] === key)))
      )
      const issues = mergeIssues(
        useful.map((issue) => ({ path: `${formatPath(issue.path)}${locate(issue.path)}`, message: issue.message }))
      )
      return fail(source, issues)
    })
  )

/**
 * Reads, parses and decodes a config file.
 *
 * @since 0.1.0
 * @category decoding
 */
export const load = (path: string): Effect.Effect<Config, ConfigFileError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError((error) => fail(path, [{ path: "(root)", message: `cannot read the file: ${error.message}` }])),
    Effect.flatMap((text) => parse(text, path)),
    Effect.flatMap(({ locate, value }) => decode(value, path, locate))
  )

/**
 * Reads a JSON or YAML file as plain data (for `--schema`), with the same syntax error messages.
 *
 * @since 0.1.0
 * @category decoding
 */
export const readData = (path: string): Effect.Effect<unknown, ConfigFileError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError((error) => fail(path, [{ path: "(root)", message: `cannot read the file: ${error.message}` }])),
    Effect.flatMap((text) => parse(text, path)),
    Effect.map(({ value }) => value)
  )

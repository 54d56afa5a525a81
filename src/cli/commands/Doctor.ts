/**
 * `llm-resilience doctor`: for each configured route, what to check first at 2 a.m., one verdict per
 * line with the remedy:
 *
 * - `key`: the variable is set, and the provider accepted it (401/403 → what to do);
 * - `model`: the model id exists (404 → the ids `GET /v1/models` lists, and the closest one);
 * - `latency`: a one-token request's round trip (and what a 429/529/timeout/refused connection means);
 * - `headroom`: rate-limit headroom from the response headers (the tightest window);
 * - `status`: the provider's status page, read by the library's `StatusPage` (statuspage.io `status.json`
 *   or Google Cloud's incidents; configurable; unreachable = `unknown`).
 *
 * Exit 0 when nothing failed (warnings and unknowns included), 1 when a check failed, 2 on bad usage.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { RouteError } from "../../Errors.js"
import { redact } from "../../internal/redact.js"
import type { GenerateResponse } from "../../Provider.js"
import * as Anthropic from "../../providers/Anthropic.js"
import * as StatusPage from "../../StatusPage.js"
import { type RateLimitSnapshot, tightest } from "../../RateLimitSnapshot.js"
import * as Timeouts from "../../Timeouts.js"
import * as Transport from "../../Transport.js"
import { CommandFailed, UsageError } from "../CliError.js"
import * as Routes from "../Routes.js"
import { configOption, loadConfig, routeOptions, routeSpecs, stylesFor, writeOut } from "../Shared.js"

/**
 * A check's verdict.
 *
 * @since 0.1.0
 * @category models
 */
export type Verdict = "ok" | "warn" | "fail" | "unknown"

/**
 * One line of the report.
 *
 * @since 0.1.0
 * @category models
 */
export interface CheckResult {
  readonly check: "key" | "model" | "latency" | "headroom" | "status"
  readonly verdict: Verdict
  readonly detail: string
  readonly remedy?: string | undefined
}

/**
 * The checks of one route.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteReport {
  readonly route: string
  readonly provider: string
  readonly model: string
  readonly baseUrl: string
  readonly checks: ReadonlyArray<CheckResult>
}

const keyPages: Readonly<Record<string, string>> = {
  openai: "https://platform.openai.com/api-keys",
  anthropic: "https://console.anthropic.com/settings/keys"
}

/** Edit distance, for "did you mean". */
const distance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]!
}

/** Kinds whose `GET {base}/models` is OpenAI's list with a bearer key. */
const LISTS_MODELS_AS_OPENAI: ReadonlySet<string> = new Set([
  "openai",
  "openai-responses",
  "openai-compatible",
  "vllm",
  "ollama",
  "openrouter",
  "groq",
  "together"
])

/**
 * The model ids an endpoint lists (`GET /v1/models`, both wire formats answer `{ data: [{ id }] }`).
 *
 * The adapters have no model listing (a `Provider` is about calls); doctor needs one, so it lives here.
 */
const listModels = (
  spec: Routes.RouteSpec,
  key: Option.Option<Redacted.Redacted<string>>
): Effect.Effect<ReadonlyArray<string>, string, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    if (!LISTS_MODELS_AS_OPENAI.has(spec.provider) && spec.provider !== "anthropic") {
      return yield* Effect.fail(`listing ${spec.provider} models is not supported here`)
    }
    const client = yield* HttpClient.HttpClient
    const base = Routes.baseUrlOf(spec)
    const url = spec.provider === "anthropic" ? `${base}/v1/models` : `${base}/models`
    const secret = Option.map(key, Redacted.value)
    const headers: Record<string, string> = spec.provider === "anthropic"
      ? { "anthropic-version": Anthropic.DEFAULT_VERSION, ...(Option.isSome(secret) ? { "x-api-key": secret.value } : {}) }
      : Option.isSome(secret) ? { authorization: `Bearer ${secret.value}` } : {}
    const response = yield* client.execute(HttpClientRequest.get(url).pipe(HttpClientRequest.setHeaders(headers)))
    if (response.status !== 200) return yield* Effect.fail(`GET ${url} answered ${response.status}`)
    const body = yield* response.json
    const data = typeof body === "object" && body !== null && "data" in body ? (body as { readonly data: unknown }).data : undefined
    if (!Array.isArray(data)) return yield* Effect.fail(`GET ${url} did not return a model list`)
    return data.flatMap((item: unknown) =>
      typeof item === "object" && item !== null && "id" in item && typeof (item as { readonly id: unknown }).id === "string"
        ? [(item as { readonly id: string }).id]
        : []
    )
  }).pipe(
    Effect.scoped,
    Effect.timeoutFail({ duration: Duration.seconds(5), onTimeout: () => "the model list did not arrive within 5 s" }),
    Effect.catchAll((error) => Effect.fail(typeof error === "string" ? error : `the model list could not be read (${error._tag})`))
  )

/**
 * Reads a statuspage.io `status.json`: `{ status: { indicator: none|minor|major|critical|maintenance, description } }`.
 *
 * @since 0.1.0
 * @category checks
 */
export const statusCheck = (
  source: StatusPage.StatusSource | undefined,
  timeoutMs: number
): Effect.Effect<CheckResult, never, HttpClient.HttpClient> => {
  if (source === undefined) {
    return Effect.succeed({ check: "status", verdict: "unknown", detail: "no status page configured for this route", remedy: "set `statusPage` on the route (a statuspage.io status.json URL) or pass --status-url" })
  }
  return StatusPage.fetchStatus(source, timeoutMs).pipe(
    // The verdict follows the library's reading: not operational → fail, an incident short of that → warn.
    Effect.map((status): CheckResult =>
      !status.operational
        ? {
          check: "status",
          verdict: "fail",
          detail: `${status.indicator} outage: ${status.description || "the provider reports an outage"}`,
          remedy: "route traffic to another provider until the incident is resolved (put a fallback route first)"
        }
        : status.indicator !== "none"
        ? {
          check: "status",
          verdict: "warn",
          detail: `${status.indicator}: ${status.description || "degraded"}`,
          remedy: "expect elevated errors; keep a fallback route in the chain"
        }
        : { check: "status", verdict: "ok", detail: status.description || "all systems operational" }
    ),
    Effect.catchAll((error) =>
      Effect.succeed<CheckResult>({
        check: "status",
        verdict: "unknown",
        detail: `status page ${error.message}`,
        remedy: "check the provider's status page in a browser; this does not block calls"
      }))
  )
}

const headroomCheck = (snapshot: RateLimitSnapshot | undefined): CheckResult => {
  const window = snapshot === undefined ? undefined : tightest(snapshot)
  if (window === undefined) {
    return { check: "headroom", verdict: "unknown", detail: "the response carried no rate-limit headers" }
  }
  const { limit = 0, remaining = 0, resetAfterMs } = window.window
  const reset = resetAfterMs === undefined ? "" : `; full again in ${resetAfterMs < 1000 ? `${Math.round(resetAfterMs)} ms` : `${(resetAfterMs / 1000).toFixed(1)} s`}`
  const detail = `${window.name}: ${remaining} of ${limit} left in the current window${reset}`
  return remaining / Math.max(1, limit) < 0.1
    ? { check: "headroom", verdict: "warn", detail, remedy: "you are close to the limit: slow down, add `policy.rateLimit`, or ask the provider for a higher tier" }
    : { check: "headroom", verdict: "ok", detail }
}

/** What the tiny request's failure says about each check. */
const fromFailure = (
  spec: Routes.RouteSpec,
  error: RouteError,
  keyEnv: string,
  keySet: boolean,
  models: Effect.Effect<ReadonlyArray<string>, string, HttpClient.HttpClient>,
  timeoutMs: number
): Effect.Effect<ReadonlyArray<CheckResult>, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const status = error.status !== undefined ? ` (HTTP ${error.status}${error.providerCode !== undefined ? ` ${error.providerCode}` : ""})` : ""
    const notMeasured = (what: CheckResult["check"]): CheckResult => ({
      check: what,
      verdict: "unknown",
      detail: `not checked: the request failed with ${error._tag}${status}`
    })
    const keyAccepted: CheckResult = keySet
      ? { check: "key", verdict: "ok", detail: `${keyEnv} is set and was accepted` }
      : { check: "key", verdict: "warn", detail: `${keyEnv} is not set; the endpoint did not ask for a key (a local or keyless server?)` }
    switch (error._tag) {
      case "Unauthorized":
        return [
          {
            check: "key",
            verdict: "fail",
            detail: keySet ? `the key in ${keyEnv} was rejected${status}: ${error.message}` : `${keyEnv} is not set and the endpoint requires a key${status}`,
            remedy: `${keySet ? "replace" : "set"} ${keyEnv} with a valid key${keyPages[spec.provider] !== undefined ? ` (${keyPages[spec.provider]})` : ""}; check for stray spaces, a revoked key, or a key from another organisation/project; a 403 means the key lacks access to this model or region`
          },
          notMeasured("model"),
          notMeasured("latency")
        ]
      case "NotFound": {
        const listed = yield* Effect.either(models)
        const remedy = listed._tag === "Left"
          ? `check the model id; the list of valid ids could not be read (${listed.left})`
          : listed.right.length === 0
          ? "the endpoint lists no models for this key"
          : (() => {
            const closest = [...listed.right].sort((a, b) => distance(spec.model, a) - distance(spec.model, b))[0]!
            return `use one of: ${listed.right.join(", ")} (closest: "${closest}")`
          })()
        return [
          keyAccepted,
          { check: "model", verdict: "fail", detail: `model "${spec.model}" does not exist on this endpoint${status}`, remedy },
          notMeasured("latency")
        ]
      }
      case "RateLimited":
        return [keyAccepted, { check: "model", verdict: "ok", detail: `"${spec.model}" exists (the provider rate-limited the request)` }, {
          check: "latency",
          verdict: "warn",
          detail: `rate limited right now${status}${error.retryAfterMs !== undefined ? `; retry after ${Math.ceil(error.retryAfterMs / 1000)} s` : ""}`,
          remedy: "lower the request rate, add `policy.rateLimit` (client-side limiter), or put a fallback route in the chain"
        }]
      case "QuotaExhausted":
        return [keyAccepted, notMeasured("model"), {
          check: "latency",
          verdict: "fail",
          detail: `the account cannot pay for this route${status}: ${error.message}`,
          remedy: "add credits or fix billing for this key's organisation; until then route to another key or provider"
        }]
      case "Overloaded":
      case "ServerError":
        return [keyAccepted, notMeasured("model"), {
          check: "latency",
          verdict: "warn",
          detail: `the provider is failing right now: ${error._tag}${status}`,
          remedy: "transient on the provider's side: keep retries and a fallback route; check the status line below"
        }]
      case "Timeout":
        return [{ check: "key", verdict: "unknown", detail: "not checked: no answer" }, notMeasured("model"), {
          check: "latency",
          verdict: "fail",
          detail: `no answer within ${timeoutMs} ms (${error.phase})`,
          remedy: "check network, proxy and firewall to the base URL; raise --timeout-ms if the provider is just slow"
        }]
      case "ConnectionError":
        return [{ check: "key", verdict: "unknown", detail: "not checked: no connection" }, notMeasured("model"), {
          check: "latency",
          verdict: "fail",
          detail: `cannot connect to ${Routes.baseUrlOf(spec)} (${error.reason}${error.code !== undefined ? ` ${error.code}` : ""})`,
          remedy: "check the base URL (OpenAI-format roots end in /v1), that the server is up, DNS, proxy (HTTPS_PROXY) and firewall"
        }]
      case "BadRequest":
      case "ContextLengthExceeded":
        return [keyAccepted, notMeasured("model"), {
          check: "latency",
          verdict: "fail",
          detail: `the provider rejected a minimal request${status}: ${error.message}`,
          remedy: "the base URL may point at a different API than the route's provider format (OpenAI-format vs Anthropic-format)"
        }]
      default:
        return [keyAccepted, notMeasured("model"), {
          check: "latency",
          verdict: "fail",
          detail: `the request failed: ${error._tag}${status}: ${error.message}`,
          remedy: "check that the base URL is the API root of a provider speaking this route's wire format"
        }]
    }
  })

/**
 * Runs every check of one route. Fails only when the route's adapter cannot be built from its options
 * (a `UsageError` naming the route and the option): that is the user's configuration, not a provider
 * finding.
 *
 * @since 0.1.0
 * @category checks
 */
export const checkRoute = (
  spec: Routes.RouteSpec,
  options: { readonly timeoutMs: number; readonly statusUrl: Option.Option<string> }
): Effect.Effect<RouteReport, UsageError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const key = yield* Routes.apiKeyOf(spec)
    const keyEnv = Routes.keyEnvOf(spec)
    const provider = yield* Routes.providerOf(spec, key)
    const site = { provider: provider.name, model: spec.model, route: spec.name, attempt: 1 }
    const started = yield* Clock.currentTimeMillis
    const outcome = yield* Effect.either(
      Timeouts.make({ attempt: Duration.millis(options.timeoutMs) }).generate(
        provider.generate({ model: spec.model, messages: [{ role: "user", content: "ping" }], maxTokens: 1 }),
        site
      )
    )
    const elapsed = (yield* Clock.currentTimeMillis) - started
    let checks: ReadonlyArray<CheckResult>
    let snapshot: RateLimitSnapshot | undefined
    if (outcome._tag === "Right") {
      const response: GenerateResponse = outcome.right
      snapshot = response.rateLimit
      checks = [
        Option.isSome(key)
          ? { check: "key", verdict: "ok", detail: `${keyEnv} is set and was accepted` }
          : { check: "key", verdict: "warn", detail: `${keyEnv} is not set; the endpoint answered without a key (a local or keyless server?)`, remedy: `set ${keyEnv} if this provider needs a key` },
        { check: "model", verdict: "ok", detail: `"${spec.model}" answered${response.model !== spec.model ? ` (as "${response.model}")` : ""}` },
        elapsed > 5_000
          ? { check: "latency", verdict: "warn", detail: `a 1-token request took ${elapsed} ms`, remedy: "slow for a 1-token request: check the network path, region or provider load; set `timeouts.headers`/`firstToken` accordingly" }
          : { check: "latency", verdict: "ok", detail: `a 1-token request took ${elapsed} ms${response.requestId !== undefined ? ` (request id ${response.requestId})` : ""}` }
      ]
    } else {
      const error = outcome.left
      snapshot = error._tag === "RateLimited" ? error.rateLimit : undefined
      checks = yield* fromFailure(spec, error, keyEnv, Option.isSome(key), listModels(spec, key), options.timeoutMs)
    }
    const statusUrl = Option.getOrUndefined(options.statusUrl) ?? spec.statusPage
    const source: StatusPage.StatusSource | undefined = statusUrl === false
      ? undefined
      : statusUrl !== undefined
      ? { format: "statuspage", url: statusUrl }
      : StatusPage.defaultSources[spec.provider]
    const status = yield* statusCheck(source, Math.min(options.timeoutMs, 5_000))
    const secrets = Option.toArray(Option.map(key, Redacted.value))
    const scrub = (check: CheckResult): CheckResult => ({
      ...check,
      detail: redact(check.detail, secrets),
      ...(check.remedy !== undefined ? { remedy: redact(check.remedy, secrets) } : {})
    })
    return {
      route: spec.name,
      provider: spec.provider,
      model: spec.model,
      baseUrl: Routes.baseUrlOf(spec),
      checks: [...checks, headroomCheck(snapshot), status].map(scrub)
    }
  })

const options = {
  ...routeOptions,
  config: configOption,
  statusUrl: Options.text("status-url").pipe(
    Options.withDescription("statuspage.io status.json URL to check for every route (default: the provider's)"),
    Options.optional
  ),
  timeoutMs: Options.integer("timeout-ms").pipe(Options.withDescription("Timeout of each probe"), Options.withDefault(15_000)),
  json: Options.boolean("json").pipe(Options.withDescription("Print one JSON object: { ok, routes: [{ route, checks }] }"))
}

const symbols: Readonly<Record<Verdict, string>> = { ok: "✔", warn: "!", fail: "✘", unknown: "?" }

const render = (reports: ReadonlyArray<RouteReport>): string => {
  const s = stylesFor(process.stdout)
  const paint: Readonly<Record<Verdict, (text: string) => string>> = { ok: s.green, warn: s.yellow, fail: s.red, unknown: s.grey }
  const lines: Array<string> = []
  for (const report of reports) {
    lines.push(`${s.bold(report.route)} — ${report.provider} ${report.model} at ${report.baseUrl}`)
    for (const check of report.checks) {
      lines.push(`  ${paint[check.verdict](`${symbols[check.verdict]} ${check.verdict.padEnd(7)}`)} ${check.check.padEnd(9)} ${check.detail}`)
      if (check.remedy !== undefined && check.verdict !== "ok") lines.push(`  ${" ".repeat(9)} ${" ".repeat(9)} ${s.dim(`→ ${check.remedy}`)}`)
    }
    lines.push("")
  }
  const all = reports.flatMap((r) => r.checks)
  const failed = all.filter((c) => c.verdict === "fail").length
  const warned = all.filter((c) => c.verdict === "warn").length
  lines.push(
    failed > 0
      ? `${s.red(s.bold("verdict: FAIL"))} — ${failed} check(s) failed; fix the lines marked ✘ first`
      : warned > 0
      ? `${s.yellow(s.bold("verdict: OK with warnings"))} — ${warned} warning(s)`
      : `${s.green(s.bold("verdict: OK"))} — every route answered`
  )
  return `${lines.join("\n")}\n`
}

const run = (flags: Command.Command.ParseConfig<typeof options>) =>
  Effect.gen(function*() {
    if (flags.timeoutMs <= 0) return yield* new UsageError({ message: `--timeout-ms must be positive, got ${flags.timeoutMs}` })
    const config = yield* loadConfig(flags.config)
    const specs = yield* routeSpecs(flags, config)
    const reports = yield* Effect.gen(function*() {
      // Every route's options are checked before any probe goes out, so a bad one is a usage error
      // (exit 2, nothing attempted) rather than a failure that interrupts other routes' probes.
      yield* Effect.forEach(specs, (spec) => Effect.flatMap(Routes.apiKeyOf(spec), (key) => Routes.providerOf(spec, key)), {
        discard: true
      })
      return yield* Effect.forEach(specs, (spec) => checkRoute(spec, flags), { concurrency: 4 })
    }).pipe(Effect.provide(Transport.layer({ connectTimeoutMs: Math.min(flags.timeoutMs, 10_000) })))
    const ok = reports.every((r) => r.checks.every((c) => c.verdict !== "fail"))
    yield* writeOut(flags.json ? `${JSON.stringify({ ok, routes: reports })}\n` : render(reports))
    if (!ok) return yield* new CommandFailed({ message: "doctor found failing checks" })
  })

/**
 * The command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("doctor", options, run).pipe(
  Command.withDescription("Check each provider: key, model id, latency, rate-limit headroom, status page — with a remedy per line")
)

/**
 * The providers' public status pages, read by the library: a `StatusPage` service that fetches and
 * parses them (with a cache and a timeout), usable as an agent run's pre-flight check
 * (`preflight`) and as a hint to a circuit breaker ({@link holdOpenDuringIncidents}).
 *
 * Two formats, each read with `Schema` (anything else is a typed `StatusPageError`, never a defect):
 *
 * - **statuspage.io** `GET /api/v2/status.json` — `{ status: { indicator, description } }`, indicator
 *   `none` | `minor` | `major` | `critical` (and `maintenance`): OpenAI, Anthropic, OpenRouter, Groq.
 * - **Google Cloud** `GET https://status.cloud.google.com/incidents.json` — every incident with its
 *   `affected_products`, `status_impact` (`SERVICE_INFORMATION` / `SERVICE_DISRUPTION` /
 *   `SERVICE_OUTAGE`), `severity` and an `end` once resolved. The ongoing incidents (no `end`) of the
 *   products named in the source (default: `Vertex Gemini API`) decide: an outage is `major`
 *   (`critical` at `severity: high`), a disruption `minor`, information `none`.
 *
 * AWS documents no unauthenticated status API for Bedrock (its Health API needs credentials and a
 * support plan), so Bedrock has no default source; Azure OpenAI neither. Any statuspage.io or Google
 * Cloud page can be named in `sources`.
 *
 * A check costs one GET per source per `ttl` (60 s): concurrent checks share one request, answers and
 * failures are cached (failures for `errorTtl`, 10 s), and each GET is bounded by `timeout` (5 s).
 *
 * @since 0.2.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { StatusPageVerdict } from "./agent/Preflight.js"
import type { CircuitBreaker } from "./CircuitBreaker.js"
import { millisOf } from "./internal/timer.js"

/**
 * How bad it is, in statuspage.io's words (Google Cloud's impacts are mapped onto them).
 *
 * @since 0.2.0
 * @category models
 */
export type Indicator = "none" | "maintenance" | "minor" | "major" | "critical"

/**
 * Where a provider's status is read.
 *
 * @since 0.2.0
 * @category models
 */
export type StatusSource =
  | { readonly format: "statuspage"; readonly url: string }
  | {
    readonly format: "google-cloud"
    readonly url: string
    /** Products whose ongoing incidents count (matched case-insensitively as substrings of a product's title). */
    readonly products: ReadonlyArray<string>
  }

/**
 * What a status page says now.
 *
 * @since 0.2.0
 * @category models
 */
export interface ProviderStatus {
  readonly source: string
  readonly indicator: Indicator
  /** `true` unless the page reports a major or critical incident (minor ones and maintenance do not stop a run). */
  readonly operational: boolean
  readonly description: string
  /** The ongoing incidents that counted (Google Cloud); empty for statuspage.io's summary. */
  readonly incidents: ReadonlyArray<string>
  /** Clock time (ms) of the fetch this answer comes from. */
  readonly checkedAt: number
}

/**
 * A status page that could not be read: `unreachable` (connection or timeout), `http` (not a 200),
 * `format` (not the format its source names), `unknown-provider` (no source for it).
 *
 * @since 0.2.0
 * @category errors
 */
export class StatusPageError extends Schema.TaggedError<StatusPageError>()("StatusPageError", {
  source: Schema.String,
  reason: Schema.Literal("unreachable", "http", "format", "unknown-provider"),
  message: Schema.String
}) {}

/**
 * The sources used when none is given for a provider (by the provider names the adapters and the CLI
 * use).
 *
 * @since 0.2.0
 * @category constants
 */
export const defaultSources: Readonly<Record<string, StatusSource>> = {
  openai: { format: "statuspage", url: "https://status.openai.com/api/v2/status.json" },
  "openai-responses": { format: "statuspage", url: "https://status.openai.com/api/v2/status.json" },
  anthropic: { format: "statuspage", url: "https://status.anthropic.com/api/v2/status.json" },
  openrouter: { format: "statuspage", url: "https://status.openrouter.ai/api/v2/status.json" },
  groq: { format: "statuspage", url: "https://groqstatus.com/api/v2/status.json" },
  gemini: { format: "google-cloud", url: "https://status.cloud.google.com/incidents.json", products: ["Vertex Gemini API"] }
}

/**
 * Options.
 *
 * @since 0.2.0
 * @category models
 */
export interface StatusPageOptions {
  /** Sources by provider name, over {@link defaultSources}. */
  readonly sources?: Readonly<Record<string, StatusSource>> | undefined
  /** How long an answer is reused. Default 60 seconds. */
  readonly ttl?: Duration.DurationInput | undefined
  /** How long a failure to read a page is reused. Default 10 seconds. */
  readonly errorTtl?: Duration.DurationInput | undefined
  /** The longest one GET may take. Default 5 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * The defaults.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults = { ttlMs: 60_000, errorTtlMs: 10_000, timeoutMs: 5_000 } as const

// ---- parsing ----

const StatuspageBody = Schema.Struct({
  status: Schema.Struct({
    indicator: Schema.Literal("none", "minor", "major", "critical", "maintenance"),
    description: Schema.optionalWith(Schema.String, { default: () => "" })
  })
})

const GoogleIncident = Schema.Struct({
  external_desc: Schema.optional(Schema.String),
  end: Schema.optional(Schema.NullOr(Schema.String)),
  severity: Schema.optional(Schema.String),
  status_impact: Schema.optional(Schema.String),
  affected_products: Schema.optional(Schema.Array(Schema.Struct({ title: Schema.String })))
})

const GoogleBody = Schema.Array(GoogleIncident)

const decodeStatuspage = Schema.decodeUnknownEither(Schema.parseJson(StatuspageBody))
const decodeGoogle = Schema.decodeUnknownEither(Schema.parseJson(GoogleBody))

const rank: Readonly<Record<Indicator, number>> = { none: 0, maintenance: 1, minor: 2, major: 3, critical: 4 }

const googleIndicator = (incident: typeof GoogleIncident.Type): Indicator => {
  switch (incident.status_impact) {
    case "SERVICE_OUTAGE":
      return incident.severity === "high" ? "critical" : "major"
    case "SERVICE_DISRUPTION":
      return "minor"
    default:
      return "none"
  }
}

/**
 * Parses a page's body as its source's format: the status, or why it is not one.
 *
 * @since 0.2.0
 * @category parsing
 */
export const parse = (source: StatusSource, body: string, checkedAt: number): Either.Either<ProviderStatus, StatusPageError> => {
  const status = (indicator: Indicator, description: string, incidents: ReadonlyArray<string>): ProviderStatus => ({
    source: source.url,
    indicator,
    operational: rank[indicator] < rank.major,
    description,
    incidents,
    checkedAt
  })
  const malformed = () => new StatusPageError({ source: source.url, reason: "format", message: `${source.url} did not answer ${source.format === "statuspage" ? "statuspage.io JSON" : "Google Cloud incidents JSON"}` })
  if (source.format === "statuspage") {
    return Either.match(decodeStatuspage(body), {
      onLeft: () => Either.left(malformed()),
      onRight: (page) => Either.right(status(page.status.indicator, page.status.description, []))
    })
  }
  return Either.match(decodeGoogle(body), {
    onLeft: () => Either.left(malformed()),
    onRight: (incidents) => {
      const wanted = source.products.map((p) => p.toLowerCase())
      const ongoing = incidents.filter((incident) =>
        (incident.end === undefined || incident.end === null) &&
        (incident.affected_products ?? []).some((product) => wanted.some((w) => product.title.toLowerCase().includes(w)))
      )
      let worst: Indicator = "none"
      for (const incident of ongoing) if (rank[googleIndicator(incident)] > rank[worst]) worst = googleIndicator(incident)
      const names = ongoing.map((incident) => incident.external_desc ?? "an ongoing incident")
      return Either.right(status(worst, names.length === 0 ? "no ongoing incident" : names.join("; "), names))
    }
  })
}

/**
 * One uncached read of a source, bounded by `timeoutMs`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fetchStatus = (
  source: StatusSource,
  timeoutMs: number = defaults.timeoutMs
): Effect.Effect<ProviderStatus, StatusPageError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(HttpClientRequest.get(source.url).pipe(HttpClientRequest.acceptJson))
    if (response.status !== 200) {
      return yield* new StatusPageError({ source: source.url, reason: "http", message: `${source.url} answered HTTP ${response.status}` })
    }
    const body = yield* response.text
    const now = yield* Clock.currentTimeMillis
    return yield* parse(source, body, now)
  }).pipe(
    Effect.scoped,
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () => new StatusPageError({ source: source.url, reason: "unreachable", message: `${source.url} did not answer within ${timeoutMs} ms` })
    }),
    Effect.catchTag("RequestError", "ResponseError", (error) =>
      Effect.fail(new StatusPageError({ source: source.url, reason: "unreachable", message: `${source.url} is unreachable (${error.reason})` })))
  )

// ---- the service ----

/**
 * The status pages, cached.
 *
 * @since 0.2.0
 * @category tags
 */
export class StatusPage extends Context.Tag("effect-llm-resilience/StatusPage")<StatusPage, {
  /** The status of `provider` (a name in the sources: `openai`, `anthropic`, `gemini`, …). */
  readonly check: (provider: string) => Effect.Effect<ProviderStatus, StatusPageError>
  /** The status at a source of your own. */
  readonly checkSource: (source: StatusSource) => Effect.Effect<ProviderStatus, StatusPageError>
  /**
   * The check an agent run's pre-flight takes (`preflight.statusPage`): `{ operational, description }`.
   * A page that cannot be read fails, and the pre-flight reports it without declaring the provider
   * degraded (an unreachable status page says nothing about the API).
   */
  readonly preflight: (provider: string) => Effect.Effect<StatusPageVerdict, StatusPageError>
}>() {}

/**
 * Builds the service over the `HttpClient` in context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options: StatusPageOptions = {}
): Effect.Effect<typeof StatusPage.Service, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const scope = yield* Effect.scope
    const sources = { ...defaultSources, ...options.sources }
    const timeoutMs = millisOf(options.timeout) ?? defaults.timeoutMs
    const ttlMs = millisOf(options.ttl) ?? defaults.ttlMs
    const errorTtlMs = millisOf(options.errorTtl) ?? defaults.errorTtlMs
    // One read per source at a time, shared: the read runs in the service's scope and every caller
    // joins it, so an interrupted caller leaves the others (and the cached answer) alone. Keyed by the
    // source's JSON: one URL read as two formats (or two product lists) is two entries.
    interface Read {
      fiber: Fiber.RuntimeFiber<ProviderStatus, StatusPageError> | undefined
      expiresAt: number
    }
    const reads = new Map<string, Read>()
    const checkSource = (source: StatusSource): Effect.Effect<ProviderStatus, StatusPageError> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const key = JSON.stringify(source)
        const known = reads.get(key)
        if (known?.fiber !== undefined && known.expiresAt > now) return Fiber.join(known.fiber)
        for (const [k, read] of reads) if (read.expiresAt <= now) reads.delete(k)
        // Registered before the read starts, so the read's end always finds it: until then it never expires.
        const entry: Read = { fiber: undefined, expiresAt: Number.POSITIVE_INFINITY }
        reads.set(key, entry)
        const read = fetchStatus(source, timeoutMs).pipe(
          Effect.provideService(HttpClient.HttpClient, client),
          Effect.onExit((exit) =>
            Effect.map(Clock.currentTimeMillis, (done) => void (entry.expiresAt = done + (Exit.isSuccess(exit) ? ttlMs : errorTtlMs))))
        )
        // Forked from an uninterruptible step: the read itself stays interruptible (its timeout needs that).
        return Effect.flatMap(Effect.uninterruptible(Effect.forkIn(Effect.interruptible(read), scope)), (fiber) => {
          entry.fiber = fiber
          return Fiber.join(fiber)
        })
      })
    const check = (provider: string) => {
      const source = sources[provider]
      return source === undefined
        ? Effect.fail(new StatusPageError({ source: provider, reason: "unknown-provider", message: `no status page is known for provider "${provider}"; name one in the StatusPage sources` }))
        : checkSource(source)
    }
    return StatusPage.of({
      checkSource,
      check,
      preflight: (provider) =>
        Effect.map(check(provider), (status) => ({ operational: status.operational, description: `${status.indicator}: ${status.description}` }))
    })
  })

/**
 * The service as a layer (over the `HttpClient` in context, e.g. `Transport.layer()`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: StatusPageOptions = {}): Layer.Layer<StatusPage, never, HttpClient.HttpClient> =>
  Layer.scoped(StatusPage, make(options))

/**
 * A status page as a hint to a breaker, in the current scope: every `every` (default 30 s), while the
 * breaker is open or half-open and the provider's page reports a major or critical incident, the
 * breaker's open period is extended past the next look (`every` plus the page's read timeout) — no probe
 * is spent on a provider that says it is down. It never opens a closed breaker (the state is read again
 * right before extending: a probe that succeeded during the read wins; pages lag, and an incident often
 * concerns other models or regions than the route's), and a page that cannot be read changes nothing.
 *
 * @since 0.2.0
 * @category combinators
 */
export const holdOpenDuringIncidents = (
  breaker: CircuitBreaker,
  provider: string,
  every: Duration.DurationInput = "30 seconds",
  readTimeout: Duration.DurationInput = Duration.millis(defaults.timeoutMs)
): Effect.Effect<void, never, StatusPage | Scope.Scope> =>
  Effect.flatMap(StatusPage, (pages) => {
    const intervalMs = millisOf(every) ?? 30_000
    const holdMs = intervalMs + (millisOf(readTimeout) ?? defaults.timeoutMs)
    const isOpen = Effect.map(breaker.state, (state) => state === "open" || state === "half-open")
    const look = Effect.flatMap(isOpen, (open) =>
      open
        ? Effect.flatMap(pages.check(provider), (status) =>
          status.operational ? Effect.void : Effect.flatMap(Effect.zip(isOpen, Clock.currentTimeMillis), ([stillOpen, now]) =>
            stillOpen ? breaker.tripUntil(now + holdMs, `status page: ${status.indicator} — ${status.description}`) : Effect.void))
        : Effect.void)
    // Whatever a look meets (an unreadable page, an interruption of a shared read), the loop goes on.
    const safeLook = Effect.catchAllCause(look, () => Effect.void)
    return Effect.asVoid(Effect.forkScoped(Effect.forever(Effect.zipRight(safeLook, Effect.sleep(Duration.millis(intervalMs))))))
  })

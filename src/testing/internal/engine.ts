/**
 * The chaos server's state machine: route matching, the outage window, the concurrency cap, the
 * RPM/TPM buckets, script and seeded-mix fault selection, latency draws, and the stats log.
 *
 * All methods are synchronous and are called from `Effect.sync` blocks. Node runs them on one thread
 * and nothing inside yields, so each admission (check capacity, consume the script, record stats) is
 * atomic without locks — the same guarantee a `Ref.modify` would give, with less allocation on a path
 * that runs for every request.
 *
 * @internal
 */
import type { ChaosLogEntry, ChaosStats, FaultSource } from "../ChaosServer.js"
import type { Api, DefaultRoute, Fault, Latency, Route, Scenario } from "../Scenario.js"
import { Bucket } from "./bucket.js"
import { type ChatRequest, promptTokens } from "./request.js"
import { Prng } from "./prng.js"
import type { RateLimitView } from "./wire.js"

/** Models `GET /v1/models` always lists, besides the scenario's. */
export const DEFAULT_MODELS: ReadonlyArray<string> = [
  "gpt-4o",
  "gpt-4o-mini",
  "gpt-4.1-mini",
  "claude-sonnet-4-5",
  "claude-haiku-4-5"
]

/** Nominal windows shown when a route has no `rpm` / `tpm`: generous, and never enforced. */
const NOMINAL_RPM = 10_000
const NOMINAL_TPM = 2_000_000

/** A capacity (RPM/TPM) rejection, with the numbers the error message and headers need. */
export interface CapacityRejection {
  readonly limitType: "requests" | "tokens"
  readonly limit: number
  readonly used: number
  readonly requested: number
  /** Time until the request fits; undefined when it never will (larger than the bucket). */
  readonly waitMs: number | undefined
  readonly tooLarge: boolean
}

/** The decision for one model call. */
export interface Admission {
  readonly seq: number
  /** Milliseconds since start (or the last reset). */
  readonly at: number
  readonly route: RouteState
  readonly fault: Fault
  readonly source: FaultSource
  readonly view: RateLimitView
  readonly capacity: CapacityRejection | undefined
  /** Delay before headers. */
  readonly latencyMs: number
  /** Estimated prompt tokens + max_tokens. */
  readonly tokensRequested: number
  /** Frees the concurrency slot (idempotent); call when the response closes. */
  readonly release: () => void
}

const globToRegExp = (glob: string): RegExp =>
  new RegExp(`^${glob.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`)

/** Per-route mutable state: script cursor, PRNG streams, buckets, slots. */
export class RouteState {
  scriptIndex = 0
  inFlight = 0
  readonly faultRng: Prng
  readonly latencyRng: Prng
  readonly requests: Bucket | undefined
  readonly tokens: Bucket | undefined
  private readonly modelPattern: RegExp | undefined

  constructor(
    readonly name: string,
    readonly config: DefaultRoute,
    readonly api: Api | undefined,
    model: string | undefined,
    seed: number,
    stream: string,
    now: number
  ) {
    // Separate streams for faults and latency: adding a latency to a route must not change which
    // faults it serves.
    this.faultRng = new Prng(seed, `${stream}/faults`)
    this.latencyRng = new Prng(seed, `${stream}/latency`)
    this.requests = config.rpm === undefined ? undefined : new Bucket(config.rpm, now)
    this.tokens = config.tpm === undefined ? undefined : new Bucket(config.tpm, now)
    this.modelPattern = model === undefined ? undefined : globToRegExp(model)
  }

  matches(api: Api, model: string): boolean {
    return (this.api === undefined || this.api === api) &&
      (this.modelPattern === undefined || this.modelPattern.test(model))
  }
}

/** Draws a delay from a latency distribution. */
export const sampleLatency = (latency: Latency | undefined, rng: Prng): number => {
  if (latency === undefined) return 0
  switch (latency.kind) {
    case "fixed":
      return latency.ms
    case "uniform":
      return latency.minMs + rng.next() * (latency.maxMs - latency.minMs)
    case "lognormal": {
      const ms = latency.medianMs * Math.exp(latency.sigma * rng.nextGaussian())
      return latency.maxMs === undefined ? ms : Math.min(ms, latency.maxMs)
    }
  }
}

const defaultOutageFault = (api: Api): Fault =>
  api === "anthropic" ? { kind: "overloaded" } : { kind: "http_error", status: 503 }

const window = (bucket: Bucket | undefined, nominal: number, spent: number) =>
  bucket === undefined
    ? { limit: nominal, remaining: Math.max(0, nominal - spent), resetMs: (spent * 60_000) / nominal }
    : { limit: bucket.capacity, remaining: bucket.remaining, resetMs: bucket.msUntilFull }

interface Counters {
  total: number
  byApi: Record<string, number>
  byRoute: Record<string, number>
  byStatus: Record<string, number>
  byFault: Record<string, number>
  bySource: Record<string, number>
  log: Array<ChaosLogEntry>
  logDropped: number
}

const emptyCounters = (): Counters => ({
  total: 0,
  byApi: {},
  byRoute: {},
  byStatus: {},
  byFault: {},
  bySource: {},
  log: [],
  logDropped: 0
})

const bump = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1
}

/** The whole mutable state of one server. */
export class Engine {
  private routes: Array<RouteState> = []
  private fallback!: RouteState
  private startMs = 0
  private seq = 0
  private counters = emptyCounters()
  /** Request and response ids; seeded so runs are reproducible. */
  idRng!: Prng

  constructor(private current: Scenario, now: number, private readonly logLimit: number) {
    this.restart(now)
  }

  get scenario(): Scenario {
    return this.current
  }

  /** Restarts scripts, PRNG streams, buckets and the outage clock (stats are kept). */
  private restart(now: number): void {
    const seed = this.current.seed ?? 1
    this.startMs = now
    this.idRng = new Prng(seed, "ids")
    this.routes = (this.current.routes ?? []).map((route: Route, i) =>
      new RouteState(route.name ?? `routes[${i}]`, route, route.api, route.model, seed, `routes[${i}]`, now)
    )
    this.fallback = new RouteState("default", this.current.default ?? {}, undefined, undefined, seed, "default", now)
  }

  /** `POST /__chaos/reset`: clears stats and restarts everything. */
  reset(now: number): void {
    this.counters = emptyCounters()
    this.seq = 0
    this.restart(now)
  }

  /** Replaces the scenario and restarts its state; stats are kept (they describe traffic, not config). */
  setScenario(scenario: Scenario, now: number): void {
    this.current = scenario
    this.restart(now)
  }

  /** The ids `GET /v1/models` lists: defaults, `models`, and every route's exact (non-glob) model. */
  models(): Array<string> {
    const named = (this.current.routes ?? []).flatMap((r) => (r.model !== undefined && !r.model.includes("*") ? [r.model] : []))
    return [...new Set([...DEFAULT_MODELS, ...(this.current.models ?? []), ...named])]
  }

  private match(api: Api, model: string): RouteState {
    return this.routes.find((r) => r.matches(api, model)) ?? this.fallback
  }

  /** Decides what one model call gets. */
  admit(request: ChatRequest, now: number): Admission {
    const route = this.match(request.api, request.model)
    const seq = ++this.seq
    const at = now - this.startMs
    const config = route.config
    const tokensRequested = promptTokens(request) + (request.maxTokens ?? 0)
    route.requests?.refill(now)
    route.tokens?.refill(now)
    const view = (spentTokens: number): RateLimitView => ({
      requests: window(route.requests, NOMINAL_RPM, 1),
      tokens: window(route.tokens, NOMINAL_TPM, spentTokens)
    })
    let released = false
    const noSlot = () => {}
    const decided = (
      fault: Fault,
      source: FaultSource,
      options: { readonly capacity?: CapacityRejection; readonly holdsSlot?: boolean; readonly spent?: number } = {}
    ): Admission => {
      const holdsSlot = options.holdsSlot === true
      if (holdsSlot) route.inFlight++
      // Rejections by the server's own machinery are immediate, like a gateway's; latency models the model.
      const latency = "latency" in fault && fault.latency !== undefined
        ? fault.latency
        : source === "script" || source === "mix" || source === "default"
        ? config.latency
        : undefined
      return {
        seq,
        at,
        route,
        fault,
        source,
        view: view(options.spent ?? 0),
        capacity: options.capacity,
        latencyMs: fault.kind === "hang_before_headers" ? 0 : sampleLatency(latency, route.latencyRng),
        tokensRequested,
        release: holdsSlot
          ? () => {
            if (!released) {
              released = true
              route.inFlight--
            }
          }
          : noSlot
      }
    }

    // 1. Outage window.
    const outage = config.outage
    if (outage !== undefined && at >= outage.fromMs && at < outage.toMs) {
      return decided(outage.fault ?? defaultOutageFault(request.api), "outage")
    }
    // 2. The context window: a prompt (text + media) plus max_tokens that cannot fit is a 400 before
    //    any capacity is taken — both providers refuse `prompt + max_tokens > window` up front.
    const contextWindow = config.contextWindow
    if (contextWindow !== undefined && tokensRequested > contextWindow) {
      return decided({ kind: "http_error", status: 400, reason: "context_length", contextWindow }, "context")
    }
    // 3. Concurrency cap.
    if (config.concurrency !== undefined && route.inFlight >= config.concurrency) {
      return decided({ kind: "overloaded" }, "concurrency")
    }
    // 4. Capacity: one request and the estimated tokens must both fit; nothing is taken otherwise.
    const requestsWait = route.requests?.msUntil(1) ?? 0
    const tokensWait = route.tokens?.msUntil(tokensRequested) ?? 0
    if (requestsWait > 0 || tokensWait > 0) {
      const limitType = requestsWait > 0 ? "requests" : "tokens"
      const bucket = limitType === "requests" ? route.requests : route.tokens
      const waitMs = Math.max(requestsWait, tokensWait)
      const capacity: CapacityRejection = {
        limitType,
        limit: bucket?.capacity ?? 0,
        used: bucket?.used ?? 0,
        requested: limitType === "requests" ? 1 : tokensRequested,
        waitMs: Number.isFinite(waitMs) ? waitMs : undefined,
        tooLarge: !Number.isFinite(waitMs)
      }
      return decided({ kind: "rate_limit", limitType }, "capacity", { capacity })
    }
    route.requests?.take(1)
    route.tokens?.take(tokensRequested)

    // 5. Script, then seeded mix, then ok.
    const script = config.script ?? []
    const scripted = script[route.scriptIndex]
    if (scripted !== undefined) {
      route.scriptIndex++
      return decided(scripted, "script", { holdsSlot: true, spent: tokensRequested })
    }
    const mix = config.mix ?? []
    if (mix.length > 0) {
      const draw = route.faultRng.next()
      let cumulative = 0
      for (const entry of mix) {
        cumulative += entry.rate
        if (draw < cumulative) return decided(entry.fault, "mix", { holdsSlot: true, spent: tokensRequested })
      }
    }
    return decided({ kind: "ok" }, "default", { holdsSlot: true, spent: tokensRequested })
  }

  /** Allocates a sequence number for a request that never reaches `admit` (bad body, unknown path). */
  nextSeq(): number {
    return ++this.seq
  }

  /** Milliseconds since start (or the last reset). */
  since(now: number): number {
    return now - this.startMs
  }

  /** Records one served request in the counters and the (bounded) log. */
  record(entry: ChaosLogEntry): void {
    const c = this.counters
    c.total++
    bump(c.byApi, entry.api)
    bump(c.byRoute, entry.route)
    bump(c.byStatus, entry.status === null ? "none" : String(entry.status))
    bump(c.byFault, entry.fault)
    bump(c.bySource, entry.source)
    c.log.push(entry)
    if (c.log.length > this.logLimit) {
      // Drop in batches so a full log costs amortised O(1) per request.
      const drop = Math.max(1, Math.floor(this.logLimit / 10))
      c.log.splice(0, drop)
      c.logDropped += drop
    }
  }

  inFlight(): number {
    return this.routes.reduce((n, r) => n + r.inFlight, this.fallback.inFlight)
  }

  stats(): ChaosStats {
    const c = this.counters
    return {
      total: c.total,
      inFlight: this.inFlight(),
      byApi: { ...c.byApi },
      byRoute: { ...c.byRoute },
      byStatus: { ...c.byStatus },
      byFault: { ...c.byFault },
      bySource: { ...c.bySource },
      log: [...c.log],
      logDropped: c.logDropped
    }
  }
}

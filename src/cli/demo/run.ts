/**
 * The implementation of `llm-resilience demo` (loaded on use; see `commands/Demo.ts`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as CheckpointStore from "../../agent/CheckpointStore.js"
import * as Report from "../../Report.js"
import * as Spend from "../../Spend.js"
import * as ChaosServer from "../../testing/ChaosServer.js"
import * as Transport from "../../Transport.js"
import { CommandFailed, UsageError } from "../CliError.js"
import { loadOptional } from "../Optional.js"
import type * as ConfigFile from "../ConfigFile.js"
import * as ConfigFileModule from "../ConfigFile.js"
import { runResearchAgent } from "./agent.js"
import * as DemoScenario from "./scenario.js"
import * as LiveView from "../LiveView.js"
import * as Routes from "../Routes.js"
import { type DemoFlags, DEFAULT_REPORT, DEFAULT_STORE } from "../commands/Demo.js"
import { knownSecrets, loadConfig, stylesFor, telemetryLayer, writeOut } from "../Shared.js"
import * as SummaryTable from "../SummaryTable.js"

/** The routes of the scripted demo, on the in-process chaos server. */
const chaosSpecs = (server: ChaosServer.ChaosServerHandle): ReadonlyArray<Routes.RouteSpec> => [
  { ...DemoScenario.routes.primary, baseUrl: server.openAiBaseUrl, apiKeyEnv: "OPENAI_API_KEY", policy: DemoScenario.policies.primary },
  { ...DemoScenario.routes.secondary, baseUrl: server.anthropicBaseUrl, apiKeyEnv: "ANTHROPIC_API_KEY", policy: DemoScenario.policies.secondary },
  { ...DemoScenario.routes.tertiary, baseUrl: server.openAiBaseUrl, apiKeyEnv: "OPENAI_API_KEY", policy: DemoScenario.policies.tertiary }
]

/** The routes of `--live`: the config's, or a default trio on the real APIs. */
const liveSpecs = (config: ConfigFile.Config): ReadonlyArray<Routes.RouteSpec> =>
  config.routes !== undefined && config.routes.length > 0
    ? config.routes.map((route) => ({ ...route, policy: ConfigFileModule.policyOf(config, route) }))
    : [
      { name: "primary", provider: "openai", model: "gpt-4o-mini", policy: ConfigFileModule.policyOf(config, {}) },
      { name: "secondary", provider: "anthropic", model: "claude-haiku-4-5", policy: ConfigFileModule.policyOf(config, {}) },
      { name: "tertiary", provider: "openai", model: "gpt-4.1-nano", policy: ConfigFileModule.policyOf(config, {}) }
    ]

interface StoreChoice {
  readonly layer: Layer.Layer<CheckpointStore.CheckpointStore, CommandFailed | UsageError>
  readonly label: string
  /** Runs once before the demo (creates the directory, clears the demo's own file). */
  readonly prepare: Effect.Effect<void, CommandFailed | UsageError>
  /** Build the layer once for both "processes" (a memory store lives only as long as its layer). */
  readonly shared?: boolean
}

const storeLayer = (flags: DemoFlags, config: ConfigFile.Config): StoreChoice => {
  const store = config.store
  const mapError = Layer.mapError((error: { readonly message: string }) => new CommandFailed({ message: `checkpoint store: ${error.message}` }))
  if (store?.kind === "memory") {
    // One store shared by both "processes" (a second fresh memory store would have no journal).
    return { layer: CheckpointStore.layerMemory, label: "memory (shared by both processes)", prepare: Effect.void, shared: true }
  }
  if (store?.kind === "postgres") {
    const pg = loadOptional(() => import("../../agent/PgCheckpointStore.js"), "the postgres checkpoint store", ["@effect/sql-pg@^0.53"])
    return { layer: Layer.unwrapEffect(Effect.map(pg, (Pg) => Pg.layer({ url: store.url }).pipe(mapError))), label: "postgres", prepare: Effect.asVoid(pg) }
  }
  const filename = store?.kind === "sqlite" ? store.path : Option.getOrElse(flags.store, () => DEFAULT_STORE)
  const sqlite = loadOptional(
    () => import("../../agent/SqliteCheckpointStore.js"),
    "the SQLite checkpoint store (the demo's default; a config file with `store: { kind: memory }` needs none)",
    ["@effect/sql-sqlite-node@^0.53"]
  )
  return {
    // Built once per "process" of the demo: both open the same file.
    layer: Layer.unwrapEffect(Effect.map(sqlite, (Sqlite) => Sqlite.layer({ filename }).pipe(mapError))),
    label: filename,
    // The driver is checked before the demo starts: a missing one is the user's to install (exit 2).
    prepare: Effect.zipRight(
      sqlite,
      Effect.try({
        try: () => {
          fs.mkdirSync(path.dirname(path.resolve(filename)), { recursive: true })
          // The default file belongs to the demo: each demo starts from an empty journal.
          if (store === undefined && Option.isNone(flags.store)) {
            for (const suffix of ["", "-wal", "-shm", "-journal"]) fs.rmSync(`${filename}${suffix}`, { force: true })
          }
        },
        catch: (error) => new CommandFailed({ message: `cannot prepare the checkpoint file ${filename}: ${String(error)}` })
      })
    )
  }
}

/**
 * Runs the demo.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (flags: DemoFlags) =>
  Effect.gen(function*() {
    const config = yield* loadConfig(flags.config)
    const out = stylesFor(process.stdout)
    const server = flags.live ? undefined : yield* ChaosServer.make({ scenario: DemoScenario.scenario }).pipe(
      Effect.mapError((error) => new CommandFailed({ message: `cannot start the chaos server: ${error.message}` }))
    )
    const specs = server === undefined ? liveSpecs(config) : chaosSpecs(server)
    if (flags.live) {
      const missing: Array<string> = []
      for (const spec of specs) {
        if (Option.isNone(yield* Routes.apiKeyOf(spec))) missing.push(Routes.keyEnvOf(spec))
      }
      if (missing.length > 0) {
        return yield* new UsageError({ message: `--live needs ${[...new Set(missing)].join(" and ")} (or run the demo without --live: offline, on the chaos server)` })
      }
    }
    const secrets = yield* knownSecrets(specs)
    const store = storeLayer(flags, config)
    yield* store.prepare
    const title = flags.live ? "effect-llm-resilience demo (live APIs)" : "effect-llm-resilience demo: a research agent through a scripted incident"

    const work = Effect.gen(function*() {
      const recorder = yield* Report.makeRecorder({
        title,
        routes: specs.map((s) => ({ name: s.name, provider: s.provider, model: s.model }))
      })
      const view = yield* LiveView.start(yield* recorder.events, {
        title,
        routes: specs.map((s) => ({ name: s.name, provider: s.provider, model: s.model })),
        plannedSteps: DemoScenario.plannedSteps,
        ...(flags.plain ? { tty: false } : {})
      })
      if (server !== undefined) {
        yield* recorder.note("info", `chaos server on ${server.url}: primary ${DemoScenario.routes.primary.model} (OpenAI format), secondary ${DemoScenario.routes.secondary.model} (Anthropic format), tertiary ${DemoScenario.routes.tertiary.model}`)
      }
      // The embedded chaos server takes no key; live runs checked theirs above.
      const { routes } = yield* Routes.buildRoutes(specs, { allowNoAuth: server !== undefined })
      const primary = specs[0]!
      // The config's `spend` budget covers the whole agent run; with `prices` alone, a meter (no
      // limit) still prices every call for the summary and the report.
      const { budget, prices } = yield* ConfigFileModule.spendOf(config).pipe(
        Effect.mapError((error) => new UsageError({ message: error.message }))
      )
      const meter = budget ?? (prices === undefined ? undefined : yield* Spend.budget({ name: "demo run", prices }).pipe(
        Effect.mapError((error) => new UsageError({ message: error.message }))
      ))
      const agentRun = runResearchAgent({
        runId: `research-${Date.now().toString(36)}`,
        recorder,
        routes: recorder.instrument(routes),
        store: store.shared === true ? yield* Layer.memoize(store.layer) : store.layer,
        primaryBreaker: `${primary.name}/${primary.model}`
      })
      const outcome = yield* Effect.either(meter === undefined ? agentRun : Spend.within(meter)(agentRun))
      yield* view.stop
      const record = yield* recorder.record
      const summary = Report.summarize(record)
      yield* writeOut(`\n${SummaryTable.render(summary)}`)
      if (outcome._tag === "Right") {
        const { posted, result } = outcome.right
        yield* writeOut(
          [
            "",
            out.bold("Agent result"),
            `  topic            ${result.topic}`,
            `  facts            ${result.facts}`,
            `  draft post       ${result.draftRefused ? "refused while degraded (irreversible tool)" : "posted"}`,
            `  report published ${result.published ? "yes, after recovery" : "no"}${posted.length > 0 ? ` (${posted.length} post(s) made)` : ""}`,
            `  checkpoints      ${store.label}`,
            ""
          ].join("\n")
        )
      }
      if (!flags.noReport) {
        const file = path.resolve(Option.getOrElse(flags.report, () => DEFAULT_REPORT))
        yield* Effect.try({
          try: () => {
            fs.mkdirSync(path.dirname(file), { recursive: true })
            fs.writeFileSync(file, Report.html(record, { secrets }))
          },
          catch: (error) => new CommandFailed({ message: `cannot write the report to ${file}: ${String(error)}` })
        })
        yield* writeOut(`${out.bold("Report")}   ${pathToFileURL(file).href}\n`)
      }
      if (outcome._tag === "Left") {
        const error = outcome.left
        const message = "message" in error && typeof error.message === "string" ? error.message : String(error)
        return yield* new CommandFailed({ message: `the agent run failed: ${error._tag}: ${message}` })
      }
      yield* writeOut(`${out.green("✔")} demo complete in ${(record.durationMs / 1000).toFixed(1)} s\n`)
    })
    return yield* work.pipe(
      Effect.scoped,
      Effect.provide(Transport.layer()),
      Effect.provide(telemetryLayer(flags, config, secrets))
    )
  }).pipe(
    Effect.scoped,
    Effect.tapError((error) =>
      error._tag === "CommandFailed" ? Effect.sync(() => void process.stderr.write(`${stylesFor(process.stderr).red("✘")} ${error.message}\n`)) : Effect.void
    )
  )


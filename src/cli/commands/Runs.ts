/**
 * `llm-resilience runs list | show | cancel | resume`: operating durable agent runs in a checkpoint
 * store (a SQLite file or Postgres) from the command line, through the library's own `Agent` API —
 * the CLI adds no journal logic of its own.
 *
 * - `list` — runs, most recently updated first: status, steps done, owner and lease, times.
 * - `show <id>` — a run and its journal (what each step means: served by which route after how many
 *   attempts, refused, unknown, claimed); `--html FILE` writes `Report.html` of the stored run.
 * - `cancel <id>` — a durable cancel request: a run no executor holds is cancelled at once; a running
 *   one stops at its next step boundary, in whatever process executes it, and is never resumed.
 * - `resume <id> --agent FILE[#export]` — the CLI does not have your agent's code, so it loads it: a
 *   module exporting an `Agent.define({ program, options })`; the run continues under the lease
 *   protocol with an executor identity of the CLI's own (a run a live worker holds is `RunLocked`).
 *
 * The store: `--store sqlite:FILE` (or a plain path), `--store postgres://user@host/db`, the
 * `LLM_RESILIENCE_STORE` variable (keeps a password off the command line), or the config file's
 * `store`. The value stays `Redacted`: what is printed is the URL without its password, and every
 * message is scrubbed of it. The store is opened with `create: false`: a wrong path, database or
 * prefix is an error, never a new empty journal.
 *
 * Exit codes: 0 done; 1 a typed failure (no such run, a finished run, a locked or cancelled run, the
 * store failed, the resumed run failed); 2 bad usage (flags, a store value that is not one, a missing
 * database file, an agent module that cannot be loaded or exports no definition).
 *
 * @since 0.2.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import { hostname } from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { randomUUID } from "node:crypto"
import type * as Agent from "../../agent/Agent.js"
import type { StoreError } from "../../agent/AgentError.js"
import * as CheckpointStore from "../../agent/CheckpointStore.js"
import { redact } from "../../internal/redact.js"
import { CommandFailed, type ConfigFileError, UsageError } from "../CliError.js"
import { loadOptional } from "../Optional.js"
import { configOption, loadConfig, stylesFor, writeErr, writeOut } from "../Shared.js"

// ---------------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------------

/**
 * Where the runs are, as given on the command line (the Postgres URL stays `Redacted`).
 *
 * @since 0.2.0
 * @category models
 */
export type StoreSpec =
  | { readonly kind: "sqlite"; readonly filename: string; readonly label: string }
  | {
    readonly kind: "postgres"
    readonly url: Redacted.Redacted<string>
    /** The URL without its password or query, for printing. */
    readonly label: string
  }

/**
 * The environment variable read when `--store` is not given.
 *
 * @since 0.2.0
 * @category constants
 */
export const STORE_ENV = "LLM_RESILIENCE_STORE"

const usage = (message: string) => new UsageError({ message })

/** A Postgres URL, checked and labelled without its secret parts. */
const postgresSpec = (url: Redacted.Redacted<string>): Effect.Effect<StoreSpec, UsageError> =>
  Effect.suspend(() => {
    let parsed: URL
    try {
      parsed = new URL(Redacted.value(url))
    } catch {
      // Never echo the value: it may hold a password.
      return Effect.fail(usage("the Postgres store is not a valid URL (expected postgres://user@host:5432/database)"))
    }
    if (parsed.hostname === "") return Effect.fail(usage("the Postgres store URL names no host (expected postgres://user@host:5432/database)"))
    const label = `${parsed.protocol}//${parsed.username === "" ? "" : `${decodeURIComponent(parsed.username)}@`}${parsed.host}${parsed.pathname}`
    return Effect.succeed({ kind: "postgres", url, label } as const)
  })

/** A SQLite file that must exist (opening a missing one would create an empty journal). */
const sqliteSpec = (filename: string): Effect.Effect<StoreSpec, UsageError> =>
  Effect.suspend(() => {
    if (filename === "") return Effect.fail(usage("the SQLite store needs a file: --store sqlite:./runs.db"))
    const stat = fs.statSync(filename, { throwIfNoEntry: false })
    if (stat === undefined) return Effect.fail(usage(`no checkpoint database at ${filename}`))
    if (!stat.isFile()) return Effect.fail(usage(`${filename} is not a file`))
    return Effect.succeed({ kind: "sqlite", filename, label: filename } as const)
  })

/**
 * Reads a `--store` value: `postgres://…` / `postgresql://…`, `sqlite:FILE`, or a path to a SQLite
 * file. Anything else with a scheme is a usage error (its value never echoed).
 *
 * @since 0.2.0
 * @category store
 */
export const parseStore = (value: Redacted.Redacted<string>): Effect.Effect<StoreSpec, UsageError> => {
  const text = Redacted.value(value).trim()
  if (/^postgres(ql)?:\/\//i.test(text)) return postgresSpec(Redacted.make(text))
  if (/^sqlite:/i.test(text)) return sqliteSpec(text.slice("sqlite:".length).replace(/^\/\/(?=\/)/, ""))
  if (text === "memory" || /^memory:/i.test(text)) {
    return Effect.fail(usage("a memory store lives only inside its process: there is nothing to operate from the command line"))
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)
  if (scheme !== null) {
    return Effect.fail(usage(`unsupported store "${scheme[1]}://…": use sqlite:FILE, a file path, or postgres://user@host:5432/database`))
  }
  return sqliteSpec(text)
}

const storeOptions = {
  store: Options.redacted("store").pipe(
    Options.withDescription(`The checkpoint store: sqlite:FILE (or a file path) or postgres://user@host:5432/db (default: $${STORE_ENV}, then the config's store)`),
    Options.withFallbackConfig(Config.redacted(STORE_ENV)),
    Options.optional
  ),
  tablePrefix: Options.text("table-prefix").pipe(Options.withDescription("Prefix of the journal's tables (default llmr_)"), Options.optional),
  config: configOption
}

type StoreFlags = Command.Command.ParseConfig<typeof storeOptions>

const resolveStore = (flags: StoreFlags) =>
  Effect.gen(function*() {
    if (Option.isSome(flags.store)) return yield* parseStore(flags.store.value)
    const store = (yield* loadConfig(flags.config)).store
    if (store === undefined) {
      return yield* usage(`which store? Give --store sqlite:FILE | FILE | postgres://user@host/db, set ${STORE_ENV}, or --config with a store`)
    }
    if (store.kind === "memory") return yield* parseStore(Redacted.make("memory"))
    return yield* store.kind === "sqlite" ? sqliteSpec(store.path) : postgresSpec(store.url)
  })

/** Secret values to scrub from every message (the whole URL and its password). */
const secretsOf = (spec: StoreSpec): ReadonlyArray<string> => {
  if (spec.kind === "sqlite") return []
  const url = Redacted.value(spec.url)
  try {
    const password = decodeURIComponent(new URL(url).password)
    return password === "" ? [url] : [url, password]
  } catch {
    return [url]
  }
}

/**
 * The checkpoint store of `spec`, opened without creating anything. The SQLite file is opened with its
 * exclusive lock, like a worker: while a worker runs on it, it is in use ("one process per file"), and
 * once it is free, leases its dead executors left are released.
 */
const storeLayer = (spec: StoreSpec, tablePrefix: string | undefined): Layer.Layer<CheckpointStore.CheckpointStore, StoreError | UsageError> =>
  spec.kind === "postgres"
    ? Layer.unwrapEffect(Effect.map(
      loadOptional(() => import("../../agent/PgCheckpointStore.js"), "the Postgres checkpoint store", ["@effect/sql-pg@^0.53"]),
      (Pg) => Pg.layer({ url: spec.url, tablePrefix, create: false, maxConnections: 2, connectTimeout: "5 seconds" })
    ))
    : Layer.unwrapEffect(Effect.map(
      loadOptional(() => import("../../agent/SqliteCheckpointStore.js"), "the SQLite checkpoint store", ["@effect/sql-sqlite-node@^0.53"]),
      (Sqlite) => Sqlite.layer({ filename: spec.filename, tablePrefix, create: false, busyTimeoutMs: 1_000 })
    ))

// ---------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------

/** A typed failure as printed: `_tag` and message. */
interface Failure {
  readonly _tag: string
  readonly message: string
}

const failureOf = (error: unknown): Failure =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? { _tag: error._tag, message: "message" in error && typeof error.message === "string" ? error.message : error._tag }
    : { _tag: "Error", message: String(error) }

/**
 * Reports a typed failure once (one JSON object on stdout with `--json`, a line on stderr otherwise)
 * and fails with `CommandFailed` (exit 1).
 */
const reportFailure = (json: boolean, secrets: ReadonlyArray<string>, error: unknown, extra: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const failure = failureOf(error)
    const message = redact(failure.message, secrets)
    if (json) yield* writeOut(`${JSON.stringify({ ok: false, ...extra, error: { _tag: failure._tag, message } })}\n`)
    else yield* writeErr(`${stylesFor(process.stderr).red("✘")} ${failure._tag}: ${message}\n`)
    return yield* new CommandFailed({ message: `${failure._tag}: ${message}` })
  })

const time = (ms: number | null): string => (ms === null ? "-" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z"))

const duration = (ms: number): string => (ms < 1_000 ? `${Math.round(ms)} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 60_000).toFixed(1)} min`)

/** Who holds the run, and until when, as seen at `now`. */
const leaseText = (run: { readonly owner: string | null; readonly leaseUntil: number }, now: number): string =>
  run.owner === null
    ? "none"
    : run.leaseUntil > now
    ? `${run.owner} until ${time(run.leaseUntil)} (live, ${duration(run.leaseUntil - now)} left)`
    : `${run.owner} until ${time(run.leaseUntil)} (expired: its executor stopped renewing)`

const statusText = (run: { readonly status: CheckpointStore.RunStatus; readonly cancelRequestedAt: number | null }): string =>
  run.status === "running" && run.cancelRequestedAt !== null ? "cancelling" : run.status

/** A fixed-width table (the last column is not padded). */
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n") + "\n"
}

/** JSON of values a program may return (bigints as strings; what JSON cannot hold, as text). */
const toJson = (value: unknown): unknown => {
  try {
    const text = JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v))
    return text === undefined ? null : JSON.parse(text)
  } catch {
    return String(value)
  }
}

/** A journaled result (the codec's `{"v": …}` envelope) as JSON, or the raw text. */
const resultJson = (text: string | null): unknown => {
  if (text === null) return null
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === "object" && parsed !== null && "v" in parsed ? parsed.v : null
  } catch {
    return text
  }
}

// ---------------------------------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------------------------------

/** The agent runtime and the report renderer, loaded on use: the other commands do not pay for them. */
const loadModules = Effect.promise(() => Promise.all([import("../../agent/Agent.js"), import("../../Report.js")])).pipe(
  Effect.map(([Agent, Report]) => ({ Agent, Report }))
)

type Modules = Effect.Effect.Success<typeof loadModules>

const jsonOption = Options.boolean("json").pipe(Options.withDescription("Print exactly one JSON object on stdout"))
const runIdArg = Args.text({ name: "run-id" }).pipe(Args.withDescription("The run's id"))

/**
 * Opens the store and runs `work` with an agent over it (the library's API: list, inspect, cancel,
 * resume), reporting every typed failure once.
 */
const withAgent = <A>(
  flags: StoreFlags & { readonly json: boolean },
  options: Agent.AgentOptions,
  work: (agent: Agent.AgentShape, spec: StoreSpec, secrets: ReadonlyArray<string>, modules: Modules) => Effect.Effect<A, unknown>
): Effect.Effect<A, UsageError | CommandFailed | ConfigFileError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const spec = yield* resolveStore(flags)
    const secrets = secretsOf(spec)
    const tablePrefix = Option.getOrUndefined(flags.tablePrefix)
    const modules = yield* loadModules
    const outcome = yield* Effect.either(
      Effect.flatMap(modules.Agent.make(options), (agent) => work(agent, spec, secrets, modules)).pipe(
        Effect.provide(storeLayer(spec, tablePrefix)),
        Effect.scoped
      )
    )
    if (outcome._tag === "Right") return outcome.right
    const error = outcome.left
    if (error instanceof UsageError || error instanceof CommandFailed) return yield* error
    return yield* reportFailure(flags.json, secrets, error)
  })

// --- list -------------------------------------------------------------------------------------------

const listOptions = {
  ...storeOptions,
  status: Options.choice("status", CheckpointStore.RunStatus.literals).pipe(Options.withDescription("Only runs with this status"), Options.optional),
  limit: Options.integer("limit").pipe(Options.withDescription("At most this many runs (1–1000)"), Options.withDefault(50)),
  json: jsonOption
}

const list = Command.make("list", listOptions, (flags) =>
  Effect.gen(function*() {
    if (!Number.isInteger(flags.limit) || flags.limit < 1 || flags.limit > 1000) {
      return yield* usage(`--limit must be between 1 and 1000, got ${flags.limit}`)
    }
    yield* withAgent(flags, {}, (agent, spec) =>
      Effect.gen(function*() {
        const runs = yield* agent.list({ status: Option.getOrUndefined(flags.status), limit: flags.limit })
        const truncated = runs.length === flags.limit
        if (flags.json) return yield* writeOut(`${JSON.stringify({ ok: true, store: spec.label, runs, limit: flags.limit, truncated })}\n`)
        if (runs.length === 0) {
          return yield* writeOut(`no runs${Option.isSome(flags.status) ? ` with status ${flags.status.value}` : ""} in ${spec.label}\n`)
        }
        const now = Date.now()
        const rows = runs.map((run) => {
          const flagged = [
            run.steps.started > 0 ? `${run.steps.started} claimed` : "",
            run.steps.refused > 0 ? `${run.steps.refused} refused` : "",
            run.steps.unknown > 0 ? `${run.steps.unknown} unknown` : ""
          ].filter((s) => s !== "")
          return [
            run.runId,
            statusText(run),
            `${run.steps.completed}/${run.steps.total}${flagged.length > 0 ? ` (${flagged.join(", ")})` : ""}`,
            time(run.createdAt),
            time(run.updatedAt),
            leaseText(run, now)
          ]
        })
        yield* writeOut(table(["RUN", "STATUS", "STEPS DONE", "STARTED", "UPDATED", "LEASE"], rows))
        if (truncated) yield* writeErr(`(the first ${flags.limit}; --limit N for more)\n`)
      }))
  })).pipe(Command.withDescription("List runs, most recently updated first: status, steps done, lease, times"))

// --- show -------------------------------------------------------------------------------------------

const showOptions = {
  ...storeOptions,
  json: jsonOption,
  html: Options.text("html").pipe(Options.withDescription("Also write the run's HTML report to this file"), Options.optional)
}

const show = Command.make("show", { runId: runIdArg, ...showOptions }, (flags) =>
  withAgent(flags, {}, (agent, spec, secrets, { Agent, Report }) =>
    Effect.gen(function*() {
      const found = yield* agent.inspect(flags.runId)
      if (Option.isNone(found)) return yield* reportFailure(flags.json, secrets, { _tag: "RunNotFound", message: `there is no run ${flags.runId} in ${spec.label}` })
      const report = found.value
      const { conversation: _conversation, ...run } = report.run
      const views = report.steps.map(Agent.describeStep)
      if (flags.json) {
        yield* writeOut(`${
          JSON.stringify({
            ok: true,
            store: spec.label,
            run,
            usage: report.usage,
            conversation: report.conversation,
            steps: views.map((view) => ({
              index: view.step.index,
              name: view.step.name,
              kind: view.step.kind,
              effect: view.step.effect,
              key: view.step.key,
              status: view.step.status,
              outcome: view.outcome,
              detail: view.detail,
              startedAt: view.step.startedAt,
              completedAt: view.step.completedAt,
              durationMs: view.step.completedAt === null ? null : view.step.completedAt - view.step.startedAt,
              attempts: view.model === undefined ? null : view.model.attempts,
              route: view.model?.route ?? null,
              usage: view.model?.usage ?? null,
              result: resultJson(view.step.result)
            }))
          })
        }\n`)
      } else {
        const s = stylesFor(process.stdout)
        const now = Date.now()
        const count = (outcome: Agent.StepView["outcome"]) => views.filter((v) => v.outcome === outcome).length
        const header = [
          `${s.bold(`run ${run.runId}`)} — ${statusText(run)}`,
          `  store         ${spec.label}`,
          `  started       ${time(run.createdAt)}`,
          `  updated       ${time(run.updatedAt)}`,
          `  lease         ${leaseText(run, now)}`,
          `  executions    ${run.epoch} (the lease epoch: each start or resume takes a new one)`,
          ...(run.cancelRequestedAt === null
            ? []
            : [`  cancel        requested ${time(run.cancelRequestedAt)}${run.cancelReason === null ? "" : `: ${run.cancelReason}`}`]),
          `  steps         ${views.length} journaled: ${count("done")} done, ${count("tool-failed")} tool failure(s), ${count("refused")} refused, ${count("unknown")} unknown, ${count("claimed")} claimed`,
          `  usage         ${report.usage.totalTokens} tokens (in ${report.usage.inputTokens} / out ${report.usage.outputTokens})`,
          `  conversation  ${report.conversation.length} message(s)`,
          ""
        ]
        yield* writeOut(header.join("\n") + "\n")
        if (views.length > 0) {
          const rows = views.map((view) => [
            String(view.step.index),
            view.step.kind,
            view.step.name,
            view.step.effect ?? "",
            view.step.status,
            view.model === undefined ? "-" : String(view.model.attempts.filter(Report.isSentAttempt).length),
            time(view.step.startedAt),
            view.step.completedAt === null ? "-" : duration(view.step.completedAt - view.step.startedAt),
            redact(view.detail, secrets)
          ])
          yield* writeOut(table(["#", "KIND", "NAME", "EFFECT", "STATUS", "ATTEMPTS", "STARTED", "TOOK", "DETAIL"], rows))
        }
        // The tool calls an operator must know about: not made, or made with an outcome nobody knows.
        const attention = views.filter((v) => v.outcome === "unknown" || v.outcome === "claimed" || v.outcome === "refused")
        if (attention.length > 0) {
          yield* writeOut(
            `\n${s.bold("Refused or unknown tool calls")}\n${
              attention.map((v) => `  step ${v.step.index} ${v.step.name} (${v.step.effect ?? "tool"}, key ${v.step.key}): ${redact(v.detail, secrets)}\n`).join("")
            }`
          )
        }
      }
      if (Option.isSome(flags.html)) {
        const file = path.resolve(flags.html.value)
        yield* Effect.try({
          try: () => {
            fs.mkdirSync(path.dirname(file), { recursive: true })
            fs.writeFileSync(file, Report.html(Agent.toReportRecord(report)))
          },
          catch: (error) => ({ _tag: "ReportNotWritten", message: `cannot write the report to ${file}: ${String(error)}` })
        })
        yield* writeErr(`Report ${pathToFileURL(file).href}\n`)
      }
    }))).pipe(Command.withDescription("Show a run and its journal; --html FILE writes its HTML report"))

// --- cancel -----------------------------------------------------------------------------------------

const cancelOptions = {
  ...storeOptions,
  reason: Options.text("reason").pipe(Options.withDescription("Why (kept with the run)"), Options.optional),
  waitMs: Options.integer("wait-ms").pipe(
    Options.withDescription("Wait up to this long for a running run's executor to stop (0: do not wait)"),
    Options.withDefault(0)
  ),
  json: jsonOption
}

const cancel = Command.make("cancel", { runId: runIdArg, ...cancelOptions }, (flags) =>
  Effect.gen(function*() {
    if (!Number.isInteger(flags.waitMs) || flags.waitMs < 0) return yield* usage(`--wait-ms must be 0 or more, got ${flags.waitMs}`)
    yield* withAgent(flags, {}, (agent, _spec, secrets) =>
      Effect.gen(function*() {
        let run = yield* agent.cancel(flags.runId, { reason: Option.getOrUndefined(flags.reason) })
        const requested = run.status === "running"
        if (requested && !flags.json) {
          yield* writeOut(
            `cancel requested for run ${run.runId}: ${run.owner ?? "its executor"} holds it; it stops at its next step boundary (a step in progress is finished and recorded first)\n`
          )
        }
        if (requested && flags.waitMs > 0) {
          const deadline = Date.now() + flags.waitMs
          while (run.status === "running" && Date.now() < deadline) {
            yield* Effect.sleep(Duration.millis(Math.min(250, Math.max(1, deadline - Date.now()))))
            const current = yield* agent.inspect(flags.runId)
            if (Option.isNone(current)) break
            run = current.value.run
            // Its executor died before it could stop: nothing holds the run any more, so cancel it now.
            if (run.status === "running" && (run.owner === null || run.leaseUntil <= Date.now())) {
              run = yield* Effect.catchTag(agent.cancel(flags.runId), "RunAlreadyFinished", () => Effect.succeed(run))
            }
          }
        }
        const { conversation: _conversation, ...fields } = run
        const stopped = run.status !== "running"
        if (!stopped && flags.waitMs > 0) {
          return yield* reportFailure(flags.json, secrets, {
            _tag: "StillRunning",
            message: `run ${run.runId} is still held by ${run.owner ?? "its executor"} after ${flags.waitMs} ms; the request stands`
          }, { stopped, run: fields })
        }
        if (flags.json) return yield* writeOut(`${JSON.stringify({ ok: true, stopped, run: fields })}\n`)
        if (run.status === "cancelled") return yield* writeOut(`${stylesFor(process.stdout).green("✔")} run ${run.runId} cancelled\n`)
        // Requested (already said so above), or too late: the run finished first.
        if (stopped) yield* writeOut(`run ${run.runId} ${run.status} before it could stop (the cancel request came too late)\n`)
      }))
  })).pipe(Command.withDescription("Cancel a run: at once if no executor holds it, else at its executor's next step boundary"))

// --- resume -----------------------------------------------------------------------------------------

const resumeOptions = {
  ...storeOptions,
  agent: Options.text("agent").pipe(
    Options.withDescription("The module exporting your Agent.define(...) definition: FILE[#export] (default export: default)")
  ),
  json: jsonOption
}

/** Loads `FILE[#export]` and checks that it is an `Agent.define` definition. */
const loadDefinition = (spec: string): Effect.Effect<Agent.Definition<unknown, unknown>, UsageError> =>
  Effect.gen(function*() {
    const { Agent } = yield* loadModules
    const hash = spec.lastIndexOf("#")
    const file = hash === -1 ? spec : spec.slice(0, hash)
    const name = hash === -1 || hash === spec.length - 1 ? "default" : spec.slice(hash + 1)
    const absolute = path.resolve(file)
    const stat = fs.statSync(absolute, { throwIfNoEntry: false })
    if (stat === undefined || !stat.isFile()) return yield* usage(`--agent: no such file ${file}`)
    const module = yield* Effect.tryPromise({
      try: (): Promise<unknown> => import(pathToFileURL(absolute).href),
      catch: (error) => usage(`--agent: cannot load ${file}: ${error instanceof Error ? error.message : String(error)}`)
    })
    const exported: unknown = typeof module === "object" && module !== null && name in module ? (module as Record<string, unknown>)[name] : undefined
    if (Agent.isDefinition(exported)) return exported
    const found = typeof module === "object" && module !== null
      ? Object.entries(module).filter(([, value]) => Agent.isDefinition(value)).map(([key]) => key)
      : []
    return yield* usage(
      `--agent: ${file} ${exported === undefined ? `has no export "${name}"` : `export "${name}" is not an agent definition (make it with Agent.define)`}${
        found.length > 0 ? `; definitions it exports: ${found.join(", ")} (use ${file}#${found[0]})` : ""
      }`
    )
  })

const resume = Command.make("resume", { runId: runIdArg, ...resumeOptions }, (flags) =>
  Effect.gen(function*() {
    const definition = yield* loadDefinition(flags.agent)
    const err = stylesFor(process.stderr)
    const counts = { replayed: 0, executed: 0 }
    const started = Date.now()
    // Never the worker's own identity: a run a live worker holds must stay locked to us.
    const executorId = `llm-resilience/${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`
    const onEvent = (event: Agent.AgentEvent): Effect.Effect<void> => {
      const at = `[${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s]`
      switch (event._tag) {
        case "RunStarted":
          return writeErr(`${at} run ${event.runId}: lease epoch ${event.epoch}, ${event.journaled} journaled step(s) (as ${executorId})\n`)
        case "StepReplayed":
          counts.replayed++
          return writeErr(`${at} step ${event.index} ${event.kind} ${event.step}: replayed from the journal (${event.status})\n`)
        case "StepStarted":
          return writeErr(`${at} step ${event.index} ${event.kind} ${event.step}: running\n`)
        case "StepCompleted":
          counts.executed++
          return writeErr(`${at} step ${event.index} ${event.kind} ${event.step}: ${event.status} in ${duration(event.durationMs)}\n`)
        case "StillWorking":
          return writeErr(`${at} step ${event.index} ${event.step}: still working (${duration(event.elapsedMs)})\n`)
        case "RouteChanged":
          return writeErr(`${at} model steps now use the ${event.mode} route: ${event.reason}\n`)
        case "RunFinished":
          return writeErr(`${at} run ${event.runId}: ${event.outcome}\n`)
      }
    }
    yield* withAgent(flags, { ...definition.options, executorId, onEvent: combine(definition.options.onEvent, onEvent) }, (agent, _spec, secrets) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(agent.resume(flags.runId, definition.program(flags.runId)))
        if (Exit.isSuccess(exit)) {
          const result = toJson(exit.value)
          if (flags.json) {
            return yield* writeOut(`${JSON.stringify({ ok: true, runId: flags.runId, status: "completed", steps: counts, result, error: null })}\n`)
          }
          yield* writeOut(`${JSON.stringify(result, null, 2)}\n`)
          return yield* writeErr(`${err.green("✔")} run ${flags.runId} completed: ${counts.replayed} step(s) replayed, ${counts.executed} executed\n`)
        }
        // Ctrl-C: the run was interrupted (and stays resumable); the CLI stops cleanly.
        if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.interrupt
        const status = Option.match(yield* Effect.option(agent.inspect(flags.runId)), {
          onNone: () => null,
          onSome: (found) => Option.match(found, { onNone: () => null, onSome: (r) => r.run.status })
        })
        const failure = Option.match(Cause.failureOption(exit.cause), {
          onSome: failureOf,
          // A defect in the agent's program (or a tool): reported as the program's, not as the CLI's.
          onNone: () => ({ _tag: "Defect", message: Cause.pretty(exit.cause) })
        })
        return yield* reportFailure(flags.json, secrets, failure, { runId: flags.runId, status, steps: counts, result: null })
      }))
  })).pipe(Command.withDescription("Continue an unfinished run with your agent's code: --agent FILE[#export] (an Agent.define)"))

const combine = (
  first: ((event: Agent.AgentEvent) => Effect.Effect<void>) | undefined,
  second: (event: Agent.AgentEvent) => Effect.Effect<void>
) => first === undefined ? second : (event: Agent.AgentEvent) => Effect.zipRight(first(event), second(event))

// ---------------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------------

/**
 * The command.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Command.make("runs", {}, () =>
  writeOut(
    [
      "llm-resilience runs — durable agent runs in a checkpoint store (--store sqlite:FILE | postgres://…)",
      "",
      "  list            runs, most recently updated first (--status, --limit, --json)",
      "  show <id>       a run and its journal (--json, --html FILE)",
      "  cancel <id>     cancel a run durably (--reason, --wait-ms)",
      "  resume <id>     continue an unfinished run with your agent: --agent FILE[#export]",
      "",
      "Run `llm-resilience runs <command> --help` for the flags. Docs: docs/cli.md#runs",
      ""
    ].join("\n")
  )).pipe(
    Command.withDescription("Operate durable agent runs: list, show, cancel, resume"),
    Command.withSubcommands([list, show, cancel, resume])
  )

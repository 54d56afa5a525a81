/**
 * `llm-resilience runs list | show | cancel | resume` end to end: the real executable, spawned, on a
 * SQLite checkpoint file and on Postgres tables written by a real agent run in this process
 * (test/agent/fixtures/runs-agent.ts, whose side effects append to a ledger file). With `--json`,
 * stdout is exactly one JSON object; exit 0 / 1 / 2; a Postgres password never appears.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Agent from "../../src/agent/Agent.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as SqliteCheckpointStore from "../../src/agent/SqliteCheckpointStore.js"
import * as Backends from "../agent/backends.js"
import { program } from "../agent/fixtures/runs-agent.js"
import { onlyJson, root, runCli as spawnCli, startCli, tempDir } from "./helpers.js"

/** Each spawn compiles the CLI from source: on a loaded machine that alone can take tens of seconds. */
const runCli = (args: ReadonlyArray<string>, options: { readonly env?: Record<string, string> } = {}) =>
  spawnCli(args, { ...options, timeoutMs: 120_000 })

const AGENT = `${path.join(root, "test", "agent", "fixtures", "runs-agent.ts")}#agent`
let dir: string
let db: string
let ledger: string
const env = () => ({ RUNS_LEDGER: ledger })
const ledgerLines = () => (fs.existsSync(ledger) ? fs.readFileSync(ledger, "utf8").trim().split("\n").filter((l) => l !== "") : [])

/** Runs the fixture agent to its failing `publish` step, in this process, on `store`. */
const failedRun = (runId: string, store: Layer.Layer<CheckpointStore.CheckpointStore, unknown>) =>
  Effect.runPromise(
    Effect.flip(Agent.run(runId, program(runId, { failAt: "publish" }))).pipe(
      Effect.provide(Agent.layer().pipe(Layer.provideMerge(store)))
    )
  )

/** Every run in the SQLite file, as this process reads it (after the CLI has exited). */
const storedRuns = () =>
  Effect.runPromise(
    Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.list({ limit: 100 })).pipe(
      Effect.provide(SqliteCheckpointStore.layer({ filename: db, create: false }))
    )
  )

beforeAll(async () => {
  dir = tempDir("runs")
  db = path.join(dir, "runs.db")
  ledger = path.join(dir, "ledger.txt")
  process.env["RUNS_LEDGER"] = ledger
  for (const id of ["run-a", "run-b"]) {
    const error = await failedRun(id, SqliteCheckpointStore.layer({ filename: db }))
    expect(error).toMatchObject({ _tag: "PublishFailed" })
  }
})

afterAll(() => {
  delete process.env["RUNS_LEDGER"]
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("runs on SQLite", () => {
  it("list: every run with its status, steps done and lease; --status and --limit; --json is one object", async () => {
    const table = await runCli(["runs", "list", "--store", `sqlite:${db}`])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/^RUN\s+STATUS\s+STEPS DONE\s+STARTED\s+UPDATED\s+LEASE/)
    expect(table.stdout).toMatch(/run-b\s+failed\s+3\/4 \(1 refused\)/)
    expect(table.stdout.indexOf("run-b")).toBeLessThan(table.stdout.indexOf("run-a")) // most recent first

    const json = onlyJson((await runCli(["runs", "list", "--store", db, "--json", "--limit", "1"])).stdout)
    expect(json).toMatchObject({ ok: true, store: db, limit: 1, truncated: true })
    expect(json["runs"]).toEqual([
      expect.objectContaining({
        runId: "run-b",
        status: "failed",
        owner: null,
        epoch: 1,
        cancelRequestedAt: null,
        steps: { total: 4, completed: 3, started: 0, refused: 1, unknown: 0 }
      })
    ])
    const none = onlyJson((await runCli(["runs", "list", "--store", db, "--json", "--status", "cancelled"])).stdout)
    expect(none).toMatchObject({ ok: true, runs: [], truncated: false })
  }, 240_000)

  it("show: the journal as an operator reads it (attempts, refused tool), and --html writes Report.html of the stored run", async () => {
    const human = await runCli(["runs", "show", "run-a", "--store", db])
    expect(human.code).toBe(0)
    expect(human.stdout).toContain("run run-a — failed")
    expect(human.stdout).toMatch(/1\s+model\s+draft\s+completed\s+2\s+.*answered by backup \(claude-mock\) after 2 attempt\(s\), degraded/)
    expect(human.stdout).toMatch(/2\s+tool\s+notify_ops\s+irreversible\s+refused\s+-\s+.*refused: served by fallback route backup/)
    expect(human.stdout).toContain("Refused or unknown tool calls")

    const html = path.join(dir, "reports", "run-a.html")
    const json = await runCli(["runs", "show", "run-a", "--store", db, "--json", "--html", html])
    expect(json.code).toBe(0)
    const shown = onlyJson(json.stdout)
    expect(shown["run"]).toMatchObject({ runId: "run-a", status: "failed", epoch: 1 })
    expect(shown["usage"]).toMatchObject({ totalTokens: 12 })
    const steps = shown["steps"] as ReadonlyArray<Record<string, unknown>>
    expect(steps.map((s) => [s["index"], s["kind"], s["name"], s["status"], s["outcome"]])).toEqual([
      [0, "step", "fetch", "completed", "done"],
      [1, "model", "draft", "completed", "done"],
      [2, "tool", "notify_ops", "refused", "refused"],
      [3, "tool", "file_incident", "completed", "done"]
    ])
    expect(steps[1]!["attempts"]).toEqual([
      expect.objectContaining({ route: "primary", attempt: 1, outcome: "Overloaded", status: 529 }),
      expect.objectContaining({ route: "backup", attempt: 1, outcome: "success" })
    ])
    expect(steps[0]!["result"]).toBe("incident run-a")
    expect(json.stderr).toContain(`Report file://`)
    const page = fs.readFileSync(html, "utf8")
    expect(page).toContain("run run-a (failed)")
    expect(page).toContain("Agent steps")
    expect(page).toMatch(/notify_ops<\/td><td[^>]*>refused/)
    expect(page).toContain("Overloaded")
    expect(page).not.toContain("<script")
  }, 240_000)

  it("resume: the user's definition continues the run from the store; journaled steps are replayed, not executed", async () => {
    const before = ledgerLines()
    const resumed = await runCli(["runs", "resume", "run-a", "--store", db, "--agent", AGENT, "--json"], { env: env() })
    expect(resumed.code).toBe(0)
    expect(onlyJson(resumed.stdout)).toEqual({
      ok: true,
      runId: "run-a",
      status: "completed",
      steps: { replayed: 4, executed: 2 },
      result: { topic: "incident run-a", draft: "a short draft", notified: "Refused", filed: "INC-1", published: "published", after: "archived" },
      error: null
    })
    expect(resumed.stderr).toContain("replayed from the journal")
    // Only the two steps that never completed ran: no second fetch, no second filing.
    expect(ledgerLines().slice(before.length)).toEqual(["publish run-a", "archive run-a"])
    // Nothing left to resume or cancel.
    const again = await runCli(["runs", "resume", "run-a", "--store", db, "--agent", AGENT], { env: env() })
    expect(again.code).toBe(1)
    expect(again.stderr).toContain("RunAlreadyFinished: run run-a already completed")
    const cancel = await runCli(["runs", "cancel", "run-a", "--store", db])
    expect(cancel.code).toBe(1)
    expect(cancel.stderr).toContain("RunAlreadyFinished")
  }, 240_000)

  it("cancel: a run no executor holds is cancelled at once, for good — resume refuses it and executes nothing", async () => {
    const cancelled = await runCli(["runs", "cancel", "run-b", "--store", db, "--reason", "superseded", "--json"])
    expect(cancelled.code).toBe(0)
    expect(onlyJson(cancelled.stdout)).toMatchObject({ ok: true, stopped: true, run: { runId: "run-b", status: "cancelled", cancelReason: "superseded" } })
    const before = ledgerLines()
    const resumed = await runCli(["runs", "resume", "run-b", "--store", db, "--agent", AGENT, "--json"], { env: env() })
    expect(resumed.code).toBe(1)
    expect(onlyJson(resumed.stdout)).toMatchObject({ ok: false, runId: "run-b", status: "cancelled", error: { _tag: "RunCancelled" } })
    expect(ledgerLines()).toEqual(before)
    const twice = await runCli(["runs", "cancel", "run-b", "--store", db])
    expect(twice.code).toBe(1)
    expect(twice.stderr).toContain("run run-b is already cancelled")
    const listed = onlyJson((await runCli(["runs", "list", "--store", db, "--status", "cancelled", "--json"])).stdout)
    expect((listed["runs"] as ReadonlyArray<{ readonly runId: string }>).map((r) => r.runId)).toEqual(["run-b"])
  }, 240_000)

  it("bad input: unknown run (1), missing file, bad store, no store, bad agent module (2) — nothing written", async () => {
    const before = await storedRuns()
    const broken = path.join(dir, "broken.mjs")
    fs.writeFileSync(broken, "export const agent = ;\n")
    // These fail before opening the store, so they can run side by side (the file admits one process).
    const [missing, scheme, noStore, noFile, notDefinition, unloadable] = await Promise.all([
      runCli(["runs", "list", "--store", path.join(dir, "missing.db")]),
      runCli(["runs", "list", "--store", "mysql://admin:hunter2-secret@db.internal/app"]),
      runCli(["runs", "list"]),
      runCli(["runs", "resume", "run-b", "--store", db, "--agent", path.join(dir, "agent.mjs")]),
      runCli(["runs", "resume", "run-b", "--store", db, "--agent", AGENT.replace("#agent", "#notAnAgent")]),
      runCli(["runs", "resume", "run-b", "--store", db, "--agent", broken])
    ])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("no checkpoint database at")
    expect(fs.existsSync(path.join(dir, "missing.db"))).toBe(false)
    expect(scheme.code).toBe(2)
    expect(scheme.stderr).toContain("unsupported store")
    expect(scheme.stderr + scheme.stdout).not.toContain("hunter2")
    expect(noStore.code).toBe(2)
    expect(noStore.stderr).toContain("which store?")
    expect(noFile.code).toBe(2)
    expect(noFile.stderr).toContain("--agent: no such file")
    expect(notDefinition.code).toBe(2)
    expect(notDefinition.stderr).toContain("is not an agent definition")
    expect(notDefinition.stderr).toContain("#agent")
    expect(unloadable.code).toBe(2)
    expect(unloadable.stderr).toContain("--agent: cannot load")

    const unknown = await runCli(["runs", "show", "nope", "--store", db, "--json"])
    expect(unknown.code).toBe(1)
    expect(onlyJson(unknown.stdout)).toMatchObject({ ok: false, error: { _tag: "RunNotFound" } })
    const resumeUnknown = await runCli(["runs", "resume", "nope", "--store", db, "--agent", AGENT], { env: env() })
    expect(resumeUnknown.code).toBe(1)
    expect(resumeUnknown.stderr).toContain("RunNotFound")
    expect(await storedRuns()).toEqual(before)
  }, 240_000)

  it("the store from LLM_RESILIENCE_STORE or the config file; a foreign database is refused and left as it was", async () => {
    const fromEnv = await runCli(["runs", "list", "--json"], { env: { LLM_RESILIENCE_STORE: `sqlite:${db}` } })
    expect(fromEnv.code).toBe(0)
    expect(onlyJson(fromEnv.stdout)["store"]).toBe(db)
    const config = path.join(dir, "llm.yaml")
    fs.writeFileSync(config, `store: { kind: sqlite, path: ${JSON.stringify(db)} }\n`)
    const fromConfig = await runCli(["runs", "show", "run-b", "--config", config, "--json"])
    expect(onlyJson(fromConfig.stdout)).toMatchObject({ ok: true, run: { status: "cancelled" } })

    const foreign = path.join(dir, "app.db")
    const tables = (sql: string) =>
      Effect.runPromise(
        Effect.scoped(Effect.flatMap(SqliteClient.make({ filename: foreign }), (client) => client.unsafe<{ readonly name: string }>(sql))).pipe(
          Effect.provide(Reactivity.layer)
        )
      )
    await tables("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    const refused = await runCli(["runs", "list", "--store", foreign])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain("holds no checkpoint journal")
    expect((await tables("SELECT name FROM sqlite_master WHERE type = 'table'")).map((t) => t.name)).toEqual(["users"])
    // Another prefix is another journal: refused the same way.
    const prefix = await runCli(["runs", "list", "--store", db, "--table-prefix", "other_"])
    expect(prefix.code).toBe(1)
    expect(prefix.stderr).toContain("no table other_migrations")
  }, 240_000)

  it("a file a worker has open is in use (one process per file): a typed failure, not a wait", async () => {
    const scope = Effect.runSync(Scope.make())
    await Effect.runPromise(Layer.buildWithScope(SqliteCheckpointStore.layer({ filename: db }), scope))
    try {
      const busy = await runCli(["runs", "list", "--store", db])
      expect(busy.code).toBe(1)
      expect(busy.stderr).toContain("one process per file")
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 240_000)
})

const postgres = await Backends.postgresGate((name, fn) => describe("Postgres", () => it(name, fn)))

describe.runIf(postgres)("runs on Postgres", () => {
  const prefix = `llmr_cli${Date.now().toString(36)}_`
  const password = "pw-never-printed-7f3a"
  const url = `postgres://postgres:${password}@${Backends.pgConfig.host}:${Backends.pgConfig.port}/test`
  const tables = Backends.postgresTables(prefix)
  const flags = ["--store", url, "--table-prefix", prefix]
  afterAll(() => tables.cleanup())

  it("an executor in another process: not stolen by resume, stopped by cancel at its next step boundary, never resumed", async () => {
    await failedRun("pg-seed", tables.layer()) // creates the tables
    const inside = Effect.runSync(Deferred.make<void>())
    const release = Effect.runSync(Deferred.make<void>())
    const runtime = Agent.layer({ executorId: "worker-1" }).pipe(Layer.provideMerge(tables.layer()))
    const worker = Effect.runFork(
      Agent.run("pg-live", program("pg-live", { inside, release })).pipe(Effect.provide(runtime))
    )
    await Effect.runPromise(Deferred.await(inside)) // the worker is inside `publish`, holding the lease
    const before = ledgerLines()

    const listed = onlyJson((await runCli(["runs", "list", ...flags, "--json"])).stdout)
    expect((listed["runs"] as ReadonlyArray<Record<string, unknown>>).find((r) => r["runId"] === "pg-live")).toMatchObject({
      status: "running",
      owner: "worker-1",
      steps: { total: 4, completed: 3, refused: 1 }
    })
    const stolen = await runCli(["runs", "resume", "pg-live", ...flags, "--agent", AGENT], { env: env() })
    expect(stolen.code).toBe(1)
    expect(stolen.stderr).toContain("RunLocked")

    const cancelling = await startCli(["runs", "cancel", "pg-live", ...flags, "--reason", "operator", "--wait-ms", "20000"], /cancel requested/, { timeoutMs: 120_000 })
    expect(cancelling.output()).toContain("worker-1 holds it")
    await Effect.runPromise(Deferred.succeed(release, undefined))
    const cancelled = await cancelling.exit
    expect(cancelled.code).toBe(0)
    expect(cancelled.stdout).toContain("run pg-live cancelled")

    const exit = await Effect.runPromise(Fiber.await(worker))
    expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("RunCancelled")
    // The step in progress finished and was recorded; the next one never started.
    expect(ledgerLines().slice(before.length)).toEqual(["publish pg-live"])
    const shown = onlyJson((await runCli(["runs", "show", "pg-live", ...flags, "--json"])).stdout)
    expect(shown["run"]).toMatchObject({ status: "cancelled", owner: null, cancelReason: "operator" })
    expect((shown["steps"] as ReadonlyArray<Record<string, unknown>>).map((s) => s["name"])).toEqual(["fetch", "draft", "notify_ops", "file_incident", "publish"])
    const resumed = await runCli(["runs", "resume", "pg-live", ...flags, "--agent", AGENT], { env: env() })
    expect(resumed.code).toBe(1)
    expect(resumed.stderr).toContain("RunCancelled")
    expect(ledgerLines().slice(before.length)).toEqual(["publish pg-live"])

    for (const run of [listed, shown, stolen.stdout + stolen.stderr, cancelled.stdout + cancelled.stderr, resumed.stdout + resumed.stderr]) {
      expect(JSON.stringify(run)).not.toContain(password)
    }
    expect(JSON.stringify(listed)).toContain(`postgres://postgres@${Backends.pgConfig.host}:${Backends.pgConfig.port}/test`)
  }, 240_000)

  it("resume on Postgres completes the run; a bad URL or an unreachable server is a clear error without the password", async () => {
    const before = ledgerLines()
    const resumed = await runCli(["runs", "resume", "pg-seed", ...flags, "--agent", AGENT, "--json"], { env: env() })
    expect(resumed.code).toBe(0)
    expect(onlyJson(resumed.stdout)).toMatchObject({ ok: true, status: "completed", steps: { replayed: 4, executed: 2 } })
    expect(ledgerLines().slice(before.length)).toEqual(["publish pg-seed", "archive pg-seed"])
    const unreachable = await runCli(["runs", "list", "--store", `postgres://postgres:${password}@127.0.0.1:1/test`])
    expect(unreachable.code).toBe(1)
    expect(unreachable.stderr).toContain("StoreError")
    const malformed = await runCli(["runs", "list", "--store", `postgres://postgres:${password}@:/`])
    expect(malformed.code).toBe(2)
    for (const out of [resumed, unreachable, malformed]) expect(out.stdout + out.stderr).not.toContain(password)
  }, 240_000)
})

/**
 * What only the SQLite store promises: WAL with `synchronous=FULL` read back, one process per file
 * (enforced by the exclusive lock, released with the process), stale leases released at open — and
 * that nothing secret reaches the file when a real provider with a Redacted key runs a durable agent.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Agent from "../../src/agent/Agent.js"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as SqliteCheckpointStore from "../../src/agent/SqliteCheckpointStore.js"
import * as Tool from "../../src/agent/Tool.js"
import * as LlmClient from "../../src/LlmClient.js"
import * as OpenAi from "../../src/providers/OpenAi.js"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import * as Transport from "../../src/Transport.js"
import { scratchDir } from "./backends.js"

const dir = scratchDir("sqlite-only")
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
let files = 0
const freshFile = () => path.join(dir, `db-${files++}.sqlite`)

/** Reads a pragma through a plain, non-exclusive connection (after the store has closed). */
const readPragma = (filename: string, name: string) =>
  Effect.scoped(Effect.flatMap(SqliteClient.make({ filename, disableWAL: true }), (sql) => sql.unsafe<Record<string, unknown>>(`PRAGMA ${name}`))).pipe(
    Effect.map((rows) => rows[0]?.[name]),
    Effect.provide(Reactivity.layer)
  )

describe("SQLite store", () => {
  it.effect("opens in WAL with synchronous=FULL (read back) and the exclusive lock", () =>
    Effect.gen(function*() {
      const filename = freshFile()
      const settings = yield* Effect.map(CheckpointStore.CheckpointStore, (store) => store.settings).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename }))
      )
      expect(settings).toEqual({ journal_mode: "wal", synchronous: "FULL", locking_mode: "exclusive" })
      // WAL is a property of the file: a later plain connection sees it.
      expect(yield* readPragma(filename, "journal_mode")).toBe("wal")
      const shared = yield* Effect.map(CheckpointStore.CheckpointStore, (store) => store.settings).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename, exclusive: false }))
      )
      expect(shared.locking_mode).toBe("normal")
    }))

  it.effect("one process per file: a second opener fails with a typed error while the first lives", () =>
    Effect.gen(function*() {
      const filename = freshFile()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(SqliteCheckpointStore.layer({ filename }))
        const second = yield* Effect.flip(Layer.build(SqliteCheckpointStore.layer({ filename, busyTimeoutMs: 50 })))
        expect(second._tag).toBe("StoreError")
        expect(second.message).toContain("one process per file")
        expect(second.message).toMatch(/locked|busy/i)
      }))
      // Closed (as when the process dies): the file opens again.
      const reopened = yield* Effect.map(CheckpointStore.CheckpointStore, (s) => s.backend).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename, busyTimeoutMs: 50 }))
      )
      expect(reopened).toBe("sqlite")
    }))

  it.effect("leases left by a dead process are released at open (the file lock proves it is gone)", () =>
    Effect.gen(function*() {
      const filename = freshFile()
      yield* Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.acquire("r", "dead-worker", { now: 0, leaseMs: 3_600_000 })).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename }))
      )
      const lease = yield* Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.acquire("r", "new-worker", { now: 1, leaseMs: 60_000 })).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename }))
      )
      expect(lease).toEqual({ runId: "r", owner: "new-worker", epoch: 2 })
      // Without the exclusive lock nothing proves the holder dead: the lease stands.
      const filename2 = freshFile()
      yield* Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.acquire("r", "worker-1", { now: 0, leaseMs: 3_600_000 })).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename: filename2, exclusive: false }))
      )
      const locked = yield* Effect.flip(Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.acquire("r", "worker-2", { now: 1, leaseMs: 60_000 })).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename: filename2, exclusive: false }))
      ))
      expect(locked._tag).toBe("RunLocked")
    }))

  it.effect("a bad table prefix or an unusable path is a typed StoreError", () =>
    Effect.gen(function*() {
      const prefix = yield* Effect.flip(Layer.build(SqliteCheckpointStore.layer({ filename: freshFile(), tablePrefix: "x; DROP TABLE" })).pipe(Effect.scoped))
      expect(prefix.message).toContain("invalid table prefix")
      const missing = yield* Effect.flip(Layer.build(SqliteCheckpointStore.layer({ filename: path.join(dir, "no", "such", "dir", "x.db") })).pipe(Effect.scoped))
      expect(missing._tag).toBe("StoreError")
    }))

  it.live("secrets never reach the file: a real provider with a Redacted key, model and tool steps", () =>
    Effect.gen(function*() {
      const secret = "sk-proj-SECRETKEY-0123456789abcdef"
      const filename = freshFile()
      const server = yield* ChaosServer.make({ scenario: { default: { content: { kind: "echo" } } } })
      const provider = yield* OpenAi.make({ apiKey: Redacted.make(secret), baseUrl: server.openAiBaseUrl })
      const notify = Tool.make({
        name: "notify",
        effect: "keyed",
        parameters: Schema.Struct({ to: Schema.String }),
        success: Schema.String,
        run: ({ to }) => Effect.succeed(`sent to ${to}`)
      })
      const program = Effect.gen(function*() {
        yield* Agent.addMessages({ role: "user", content: "say something" })
        const reply = yield* Agent.turn({ maxTokens: 100 })
        yield* Agent.useTool(notify, { to: "ops" }, { callId: "call-1" })
        return reply.text
      })
      const text = yield* Agent.run("secret-run", program).pipe(
        Effect.provide(Layer.mergeAll(
          Agent.layer(),
          LlmClient.layerWithState({ routes: [{ name: "primary", provider, model: "gpt-test" }] })
        ).pipe(Layer.provideMerge(SqliteCheckpointStore.layer({ filename }))))
      )
      expect(text).toBe("say something")
      const bytes = [filename, `${filename}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f).toString("latin1")).join("")
      expect(bytes).toContain("say something")
      expect(bytes).not.toContain(secret)
      expect(bytes).not.toContain("SECRETKEY")
      const report = yield* Effect.flatMap(CheckpointStore.CheckpointStore, (store) => store.steps("secret-run")).pipe(
        Effect.provide(SqliteCheckpointStore.layer({ filename }))
      )
      expect(report.map((s) => s.kind)).toEqual(["model", "tool"])
      expect(Option.isSome(Option.fromNullable(report[0]!.result))).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(Transport.layer())))
})

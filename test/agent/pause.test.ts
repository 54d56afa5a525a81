/**
 * Pause and takeover on Postgres (issue 14, defect 3): worker A claims an irreversible charge and is
 * frozen with SIGSTOP inside the tool, before the effect (as by a GC pause or a VM freeze); its lease
 * (1 s here) expires; worker B takes the run over, its reconcile hook finds the charge not applied, so
 * B charges and completes the run; then A is resumed with SIGCONT right where it stopped. A must not
 * charge: the tool confirms the lease (`confirmLease`, fenced by the epoch) immediately before its
 * effect, so A stops with `LeaseLost` instead. Over PAUSE_RUNS runs (default 20): every charge lands
 * at the ledger exactly once.
 *
 * Two real processes (fixtures/pause-agent.ts) against a real Postgres (127.0.0.1:5432, database
 * `test`; the test is skipped with the reason when it is down, and fails when CI=true). Real time
 * is unavoidable here (a lease expiring across processes); the lease is kept short.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as CheckpointStore from "../../src/agent/CheckpointStore.js"
import * as Backends from "./backends.js"
import type { PauseConfig } from "./fixtures/pause-agent.js"

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "pause-agent.ts")
const runs = Number(process.env["PAUSE_RUNS"] ?? 20)
const leaseMs = 1_000

/** The callee: an irreversible charge (every request is a new charge) and a lookup by key. */
const startLedger = async () => {
  const charges: Array<{ readonly key: string }> = []
  const server = http.createServer((req, res) => {
    let body = ""
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString("utf8")
    })
    req.on("end", () => {
      const input = JSON.parse(body === "" ? "{}" : body) as { readonly key: string; readonly cents?: number }
      let out: unknown
      if (req.url === "/charge") {
        charges.push({ key: input.key })
        out = { charged: input.cents ?? 0 }
      } else {
        const found = charges.find((c) => c.key === input.key)
        out = found === undefined ? { found: false } : { found: true, charged: 100 }
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    charges,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

/** A worker process and the lines it has printed. */
const startWorker = (config: PauseConfig) => {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ["--import", "tsx", fixture], {
    env: { ...process.env, PAUSE_CONFIG: JSON.stringify(config) },
    stdio: ["pipe", "pipe", "pipe"]
  })
  const seen: Array<string> = []
  const waiters: Array<() => void> = []
  let stderr = ""
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-3000)
  })
  readline.createInterface({ input: child.stdout }).on("line", (line) => {
    seen.push(line)
    for (const wake of waiters.splice(0)) wake()
  })
  child.on("exit", () => {
    for (const wake of waiters.splice(0)) wake()
  })
  /** The first line (from now on or already seen) starting with one of `prefixes`. */
  const waitFor = (prefixes: ReadonlyArray<string>, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`no ${prefixes.join(" | ")} within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs)
      const check = () => {
        const found = seen.find((line) => prefixes.some((p) => line.startsWith(p)))
        if (found !== undefined) {
          clearTimeout(deadline)
          return resolve(found)
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          clearTimeout(deadline)
          return reject(new Error(`worker exited (${child.exitCode ?? child.signalCode}); stderr: ${stderr}`))
        }
        waiters.push(check)
      }
      check()
    })
  return {
    waitFor,
    send: (line: string) => child.stdin.write(`${line}\n`),
    signal: (signal: NodeJS.Signals) => child.kill(signal),
    stop: () => {
      child.kill("SIGCONT")
      child.kill("SIGKILL")
    }
  }
}

const tablePrefix = `llmr_pause${Date.now().toString(36)}_`


const postgresUp = await Backends.postgresGate((name, fn) => describe("Pause and takeover (Postgres)", () => it(name, fn)))

describe.runIf(postgresUp)("Pause and takeover (Postgres, SIGSTOP/SIGCONT)", () => {
  const cleanup: Array<() => Promise<void> | void> = []
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step()
  })

  it(`a worker frozen inside an irreversible tool and taken over never acts: ${runs} runs, 0 double charges`, async () => {
    const started = Date.now()
    const ledger = await startLedger()
    cleanup.push(ledger.close)
    const store = Backends.postgresTables(tablePrefix)
    cleanup.push(store.cleanup)
    const config: PauseConfig = { host: Backends.pgConfig.host, port: Backends.pgConfig.port, tablePrefix, ledgerUrl: ledger.url, leaseMs }
    // One after the other: the first one creates the tables.
    const a = startWorker(config)
    cleanup.push(a.stop)
    await a.waitFor(["READY"], 30_000)
    const b = startWorker(config)
    cleanup.push(b.stop)
    await b.waitFor(["READY"], 30_000)

    const doubles: Array<string> = []
    const outcomes: Record<string, number> = {}
    for (let i = 0; i < runs; i++) {
      const runId = `pause-${i}`
      a.send(`RUN ${runId} 1`)
      await a.waitFor([`PARKED ${runId}`], 10_000)
      // Frozen inside the tool, before the effect: no renewals from here on.
      a.signal("SIGSTOP")
      b.send(`RUN ${runId} 0`)
      const bDone = await b.waitFor([`FINAL ${runId} `, `FAILED ${runId} `], 15_000)
      expect(bDone, "the worker that took over completes the run").toBe(`FINAL ${runId} {"charged":100}`)
      // A resumes exactly where it stopped: about to charge.
      a.send(`GO ${runId}`)
      a.signal("SIGCONT")
      const aDone = await a.waitFor([`FINAL ${runId} `, `FAILED ${runId} `], 15_000)
      const outcome = aDone.split(" ").slice(2).join(" ")
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
      const key = `${runId}:0:charge_card`
      const n = ledger.charges.filter((c) => c.key === key).length
      if (n !== 1) doubles.push(`${runId}: charged ${n} times`)
    }
    const journals = await Effect.runPromise(
      Effect.flatMap(CheckpointStore.CheckpointStore, (s) =>
        Effect.forEach(Array.from({ length: runs }, (_, i) => `pause-${i}`), (id) => s.steps(id))).pipe(
          Effect.provide(store.layer())
        )
    )
    console.log(
      `[pause test] ${runs} runs in ${Date.now() - started} ms (lease ${leaseMs} ms): ${doubles.length} double charges; the frozen worker ended with ${JSON.stringify(outcomes)}`
    )
    expect(doubles).toEqual([])
    expect(ledger.charges.length).toBe(runs)
    expect(outcomes).toEqual({ LeaseLost: runs })
    expect(journals.map((j) => j.map((s) => `${s.name}:${s.status}`))).toEqual(Array.from({ length: runs }, () => ["charge_card:completed"]))
  }, 120_000)
})

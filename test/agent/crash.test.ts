/**
 * The crash test: a 20-turn durable agent (model calls against the ChaosServer, an irreversible
 * charge, a keyed email, an idempotent status update, a pure digest) in a child process, killed with
 * SIGKILL at ≥ 50 seeded points — parked between claim and act, between act and record, after a
 * model response before its record, at the n-th pause point of a life, or after a random delay — and
 * restarted each time. See fixtures/crashHarness.ts for every check; bench/crash-soak.ts runs more.
 *
 * CRASH_KILLS and CRASH_SEED override the size and the seed.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import { postgresGate, postgresTables, scratchDir } from "./backends.js"
import { requiredLabels, runCampaign } from "./fixtures/crashHarness.js"

const dir = scratchDir("crash")
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const kills = Number(process.env["CRASH_KILLS"] ?? 50)
const seed = Number(process.env["CRASH_SEED"] ?? 20_251_122)

/** What every campaign must show, whatever the store. */
const expectSurvived = (result: Awaited<ReturnType<typeof runCampaign>>, label: string) => {
  expect(result.violations).toEqual([])
  expect(result.kills).toBeGreaterThanOrEqual(kills)
  for (const at of requiredLabels) expect(result.killsAt[at] ?? 0, `kills at ${at}`).toBeGreaterThan(0)
  expect(result.runs).toBeGreaterThanOrEqual(1)
  expect(result.finals.every((final) => final === result.reference)).toBe(true)
  expect(JSON.parse(result.reference)).toMatchObject({ messages: 1 + 20 * 2 + 15 })
  // Every run's 5 charges and 5 emails reached the ledger exactly once (reference run included).
  expect(result.ledger).toMatchObject({ chargeDuplicates: 0, emailDuplicates: 0 })
  expect(result.ledger.charges).toBe(5 * (result.runs + 1))
  expect(result.ledger.emails).toBe(5 * (result.runs + 1))
  // Model calls are journaled once each; only calls cut off before their record (and 500s) were re-sent.
  expect(result.modelSteps).toBe(20 * (result.runs + 1))
  console.log(`[crash test, ${label}] ${result.kills} kills over ${result.lives} lives, ${result.runs} runs, ${result.durationMs} ms; kills at ${JSON.stringify(result.killsAt)}; keyed re-sends deduped by the callee: ${result.ledger.emailResends}`)
}

describe("Crash test (SIGKILL)", () => {
  it(`survives ${kills} SIGKILLs: no lost or repeated step, no duplicate effect, the uninterrupted answer`, async () => {
    expectSurvived(await runCampaign({ kills, seed, dir: `${dir}/campaign` }), "SQLite")
  }, 600_000)

  it("catches a blind re-run: the same campaign with the charge declared idempotent double-charges", async () => {
    const result = await runCampaign({
      kills: 2,
      seed,
      dir: `${dir}/sabotage`,
      sabotage: { chargeEffect: "idempotent", killAt: "after-act:charge_card" }
    })
    expect(result.ledger.chargeDuplicates).toBeGreaterThan(0)
    expect(result.violations.some((v) => /charge_card \S+ applied [2-9] times at the ledger/.test(v))).toBe(true)
  }, 300_000)
})

const runPostgres = await postgresGate((name, fn) => describe("Crash test (SIGKILL), Postgres store", () => it(name, fn)))

describe.runIf(runPostgres)("Crash test (SIGKILL), Postgres store", () => {
  const tables = postgresTables(`llmr_crash_${process.pid}_`)
  afterAll(() => tables.cleanup())

  it(`survives ${kills} SIGKILLs on the single-machine Postgres store: the same checks`, async () => {
    expectSurvived(
      await runCampaign({ kills, seed, dir: `${dir}/postgres`, store: { kind: "postgres", tablePrefix: `llmr_crash_${process.pid}_` } }),
      "Postgres"
    )
  }, 600_000)
})

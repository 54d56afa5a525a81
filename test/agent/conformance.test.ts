/**
 * The conformance suite on every backend. Postgres (127.0.0.1:5432, database `test`) must be up when
 * CI=true; elsewhere its tests are skipped with the reason printed.
 */
import { afterAll, describe, it } from "@effect/vitest"
import * as Backends from "./backends.js"
import { conformance } from "./conformance.js"

const sqlite = Backends.sqlite()
const postgres = Backends.postgres()
afterAll(async () => {
  await sqlite.cleanup()
  await postgres.cleanup()
})

conformance(Backends.memory)
conformance(sqlite)

const postgresUp = await Backends.postgresGate((name, fn) => describe("Postgres", () => it(name, fn)))
describe.runIf(postgresUp)("Postgres", () => conformance(postgres))

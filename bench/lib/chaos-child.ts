/**
 * Runs the library's ChaosServer in its own process for bench:chaos: the scenario comes from the JSON
 * file given as the first argument; prints `READY <port>` once listening and serves until SIGTERM.
 * The bench drives it over HTTP (`/__chaos/reset`, `/__chaos/stats`), as any client would.
 */
import { readFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as ChaosServer from "../../src/testing/ChaosServer.js"
import * as Scenario from "../../src/testing/Scenario.js"

const program = Effect.gen(function*() {
  const scenario = yield* Scenario.fromJson(readFileSync(process.argv[2]!, "utf8"), process.argv[2])
  const server = yield* ChaosServer.make({ scenario, port: Number(process.argv[3] ?? 0), logLimit: 1_000_000 })
  yield* Effect.sync(() => console.log(`READY ${server.port}`))
  return yield* Effect.never
})

const fiber = Effect.runFork(Effect.scoped(program))
fiber.addObserver((exit) => {
  if (exit._tag === "Failure") {
    console.error(String(exit.cause))
    process.exit(1)
  }
})
const shutdown = () => {
  Effect.runPromise(Fiber.interrupt(fiber)).finally(() => process.exit(0))
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)

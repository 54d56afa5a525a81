/**
 * bench:overhead — success-path cost per call that each resilience layer adds on top of a bare call.
 *
 * Same run, same machine, same no-op "provider" (a resolved promise / a succeeded Effect):
 *   - bare async function; cockatiel wrap(retry, circuitBreaker, timeout) around it
 *   - bare Effect provider call; our per-route Policy (retry + budget + timeouts + breaker [+ limiter])
 * Overhead = median(wrapped) − median(bare) of the same family. Ratios compare overheads.
 *
 * Run: npm run bench:overhead            (full)
 *      npm run bench:overhead -- --quick (smoke, a few seconds)
 */
import { ConsecutiveBreaker, handleAll, circuitBreaker, retry, timeout, TimeoutStrategy, wrap, ExponentialBackoff } from "cockatiel"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { measure } from "mitata"
import { mkdirSync, writeFileSync } from "node:fs"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest, GenerateResponse, ProviderShape } from "../src/Provider.js"
import * as Stream from "effect/Stream"

const quick = process.argv.includes("--quick")
const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }
const response: GenerateResponse = {
  provider: "noop",
  model: "m",
  text: "ok",
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 }
}

const bareAsync = () => Promise.resolve(response)
const cockatielPolicy = wrap(
  retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
  circuitBreaker(handleAll, { halfOpenAfter: 5_000, breaker: new ConsecutiveBreaker(5) }),
  timeout(600_000, TimeoutStrategy.Aggressive)
)

const noop: ProviderShape = {
  name: "noop",
  generate: () => Effect.succeed(response),
  stream: () => Stream.succeed({ _tag: "Finish", response } as const)
}

const runtime = ManagedRuntime.make(Layer.empty)
const stateRuntime = ManagedRuntime.make(Policy.layerState)

const fullPolicy = Policy.make({ rateLimit: { requestsPerMinute: 1e9, tokensPerMinute: 1e12, maxConcurrency: 1e6 } })
const defaultPolicy = Policy.make({})
const noTimers = Policy.make({ timeouts: false })

const apply = (policy: Policy.PolicyOptions) => stateRuntime.runPromise(Policy.apply(policy, noop, "bench"))

interface Row {
  readonly name: string
  readonly p50ns: number
  readonly p99ns: number
  readonly avgns: number
  readonly heapBytes: number | undefined
}

const options = quick
  ? { min_cpu_time: 50 * 1e6, max_samples: 2_000 }
  : { min_cpu_time: 1_000 * 1e6, max_samples: 1e6 }

const row = async (name: string, fn: () => Promise<unknown>): Promise<Row> => {
  const stats = await measure(fn, { ...options, heap: () => process.memoryUsage().heapUsed })
  return { name, p50ns: stats.p50, p99ns: stats.p99, avgns: stats.avg, heapBytes: stats.heap?.avg }
}

const main = async () => {
  const full = await apply(fullPolicy)
  const byDefault = await apply(defaultPolicy)
  const withoutTimers = await apply(noTimers)
  const rows: Array<Row> = []
  rows.push(await row("async: bare call", bareAsync))
  rows.push(await row("async: cockatiel wrap(retry, breaker, timeout)", () => cockatielPolicy.execute(bareAsync)))
  rows.push(await row("effect: bare provider call", () => runtime.runPromise(noop.generate(request))))
  rows.push(await row("effect: Policy.default (retry+budget+timeouts+breaker)", () => stateRuntime.runPromise(byDefault.generate(request))))
  rows.push(await row("effect: full policy (+ rate limiter)", () => stateRuntime.runPromise(full.generate(request))))
  rows.push(await row("effect: policy without timeouts", () => stateRuntime.runPromise(withoutTimers.generate(request))))

  const p50 = (name: string) => rows.find((r) => r.name.startsWith(name))!.p50ns
  const cockatielOverhead = p50("async: cockatiel") - p50("async: bare")
  const overhead = (name: string) => p50(name) - p50("effect: bare")
  const summary = {
    date: new Date().toISOString(),
    node: process.version,
    quick,
    cockatielOverheadUs: cockatielOverhead / 1000,
    defaultOverheadUs: overhead("effect: Policy.default") / 1000,
    fullOverheadUs: overhead("effect: full policy") / 1000,
    noTimersOverheadUs: overhead("effect: policy without timeouts") / 1000,
    fullVsCockatiel: overhead("effect: full policy") / cockatielOverhead,
    rows
  }
  console.log("\nbench:overhead — per call (median p50, p99), heap delta per call")
  console.log("| case | p50 µs | p99 µs | overhead vs its bare p50 (µs) |")
  console.log("|---|---|---|---|")
  for (const r of rows) {
    const base = r.name.startsWith("async") ? p50("async: bare") : p50("effect: bare")
    console.log(`| ${r.name} | ${(r.p50ns / 1000).toFixed(2)} | ${(r.p99ns / 1000).toFixed(2)} | ${((r.p50ns - base) / 1000).toFixed(2)} |`)
  }
  console.log(`\nfull policy overhead / cockatiel overhead = ${summary.fullVsCockatiel.toFixed(2)}x`)
  mkdirSync("bench/results", { recursive: true })
  writeFileSync(`bench/results/overhead${quick ? "-quick" : ""}.json`, JSON.stringify(summary, null, 2))
  await runtime.dispose()
  await stateRuntime.dispose()
}

main()

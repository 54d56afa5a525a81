/**
 * bench:throughput — HTTP requests per second, 64 concurrent, against a minimal OpenAI-shaped server
 * in a separate process (pinned to CPU 1 with taskset; this process pinned to CPU 0).
 *
 * Every client sends the same POST /v1/chat/completions body, reads the whole response and parses
 * the JSON. Rows: raw undici (Agent with 64 connections); @effect/platform HttpClient over the same
 * undici Agent; the official openai SDK (maxRetries 0, its default fetch); our OpenAi adapter alone;
 * our adapter under Policy.default (retry + budget + timeouts + breaker); and the full policy (+ rate
 * limiter). Many short rounds, interleaved (the order rotates each round); the ratios are taken per
 * round — between clients measured seconds apart — and their median is reported, so drift from a
 * busy machine cancels out of the ratios even where it moves the absolute figures.
 *
 * Run: npm run bench:throughput            (8 rounds × 2 s per client, ~2.5 min)
 *      npm run bench:throughput -- --quick (1 round × 0.5 s)
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import OpenAI from "openai"
import { Agent, request as undiciRequest } from "undici"
// The library as it ships (compiled dist/, built by the npm script; see bench/overhead.ts for why).
import * as Policy from "effect-llm-resilience/Policy"
import type { GenerateRequest, ProviderShape } from "effect-llm-resilience/Provider"
import * as OpenAi from "effect-llm-resilience/OpenAi"
import * as Transport from "effect-llm-resilience/Transport"
import { startTs } from "./lib/child.js"
import { banner, fmt, median, percentile, pinSelf, quick, table, writeResults } from "./lib/report.js"
import { barChart } from "./lib/svg.js"

const CONCURRENCY = 64
const ROUNDS = quick ? 1 : 8
const WARMUP_MS = quick ? 300 : 500
const WINDOW_MS = quick ? 500 : 2_000

const model = "gpt-4o-mini"
const messages = [{ role: "user" as const, content: "Reply with a JSON object holding the answer." }]
const payload = JSON.stringify({ model, messages, max_tokens: 64 })
const request: GenerateRequest = { model, messages, maxTokens: 64 }

interface Sample {
  readonly count: number
  readonly errors: number
  readonly latencies: Array<number>
}

/** A client under test: runs `CONCURRENCY` loops until `stopAt` (performance.now()). */
interface Client {
  readonly name: string
  readonly run: (stopAt: number, record: boolean) => Promise<Sample>
  readonly close: () => Promise<void>
}

const expectContent = (content: unknown) => {
  if (typeof content !== "string") throw new Error("no choices[0].message.content")
}

/** `CONCURRENCY` promise loops around `call`. */
const promiseLoops = (call: () => Promise<void>) => async (stopAt: number, record: boolean): Promise<Sample> => {
  const latencies: Array<number> = []
  let count = 0
  let errors = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < stopAt) {
      const t0 = performance.now()
      try {
        await call()
        count++
        if (record) latencies.push(performance.now() - t0)
      } catch {
        errors++
      }
    }
  }))
  return { count, errors, latencies }
}

/** `CONCURRENCY` fibers around `call`, in one runtime call (how an Effect program would do it). */
const fiberLoops = <R>(runtime: ManagedRuntime.ManagedRuntime<R, never>, call: Effect.Effect<void, unknown, R>) =>
(stopAt: number, record: boolean): Promise<Sample> => {
  const latencies: Array<number> = []
  let count = 0
  let errors = 0
  const loop = Effect.gen(function*() {
    while (performance.now() < stopAt) {
      const t0 = performance.now()
      const outcome = yield* Effect.either(call)
      if (outcome._tag === "Right") {
        count++
        if (record) latencies.push(performance.now() - t0)
      } else errors++
    }
  })
  return runtime.runPromise(
    Effect.forEach(Array.from({ length: CONCURRENCY }), () => loop, { concurrency: "unbounded", discard: true })
  ).then(() => ({ count, errors, latencies }))
}

const clients = (baseUrl: string): { readonly clients: Array<Client>; readonly close: () => Promise<void> } => {
  const url = `${baseUrl}/chat/completions`
  const headers = { "content-type": "application/json", authorization: "Bearer sk-bench" }

  const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 30_000 })
  const undici: Client = {
    name: "undici request (raw)",
    run: promiseLoops(async () => {
      const res = await undiciRequest(url, { method: "POST", dispatcher: agent, headers, body: payload })
      const json = (await res.body.json()) as { choices: Array<{ message: { content: unknown } }> }
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`)
      expectContent(json.choices[0]?.message.content)
    }),
    close: () => agent.close()
  }

  const transport = Transport.layer({ connections: CONCURRENCY })
  const platformRuntime = ManagedRuntime.make(transport)
  const platformRequest = HttpClientRequest.post(url).pipe(
    HttpClientRequest.setHeaders(headers),
    HttpClientRequest.bodyText(payload, "application/json")
  )
  const platformCall = Effect.flatMap(HttpClient.HttpClient, (client) => client.execute(platformRequest)).pipe(
    Effect.flatMap((response) => response.json),
    Effect.flatMap((json) =>
      Effect.try(() => expectContent((json as { choices: Array<{ message: { content: unknown } }> }).choices[0]?.message.content))
    )
  )
  const platform: Client = {
    name: "@effect/platform HttpClient",
    run: fiberLoops(platformRuntime, platformCall),
    close: () => platformRuntime.dispose()
  }

  // The same client with the per-request span switched off: what the platform's tracing costs.
  const platformNoSpans: Client = {
    name: "@effect/platform HttpClient, spans off",
    run: fiberLoops(platformRuntime, Effect.withTracerEnabled(platformCall, false)),
    close: async () => {}
  }

  const sdk = new OpenAI({ baseURL: baseUrl, apiKey: "sk-bench", maxRetries: 0 })
  const openai: Client = {
    name: "openai SDK (maxRetries 0)",
    run: promiseLoops(async () => {
      const completion = await sdk.chat.completions.create({ model, messages, max_tokens: 64 })
      expectContent(completion.choices[0]?.message.content)
    }),
    close: async () => {}
  }

  // Ours: the adapter over the Transport, then the policies on top, all sharing one runtime.
  const oursRuntime = ManagedRuntime.make(Layer.merge(transport, Policy.layerState))
  const adapter = OpenAi.make({ apiKey: Redacted.make("sk-bench"), baseUrl, name: "openai" })
  const ours = (name: string, policy: Policy.PolicyOptions | undefined): Client => {
    let provider: ProviderShape | undefined
    const call = Effect.suspend(() => provider!.generate(request)).pipe(Effect.map((r) => expectContent(r.text)))
    return {
      name,
      run: async (stopAt, record) => {
        provider ??= await oursRuntime.runPromise(
          Effect.flatMap(adapter, (bare) => (policy === undefined ? Effect.succeed(bare) : Policy.apply(policy, bare, "bench")))
        )
        return fiberLoops(oursRuntime, call)(stopAt, record)
      },
      close: async () => {}
    }
  }

  const all = [
    undici,
    platform,
    platformNoSpans,
    openai,
    ours("ours: OpenAi adapter, no policy", undefined),
    ours("ours: adapter + Policy.default", Policy.default),
    ours("ours: adapter + full policy (+ rate limiter)", {
      rateLimit: { requestsPerMinute: 1e9, tokensPerMinute: 1e12, maxConcurrency: 1e6 }
    })
  ]
  return {
    clients: all,
    close: async () => {
      for (const client of all) await client.close()
      await oursRuntime.dispose()
    }
  }
}

const main = async () => {
  banner("throughput", `requests/s, ${CONCURRENCY} concurrent, minimal server in a child process`)
  const server = await startTs("minimal-server.ts", [], { ready: /READY (\d+)/, cpu: 1 })
  const selfCpu = pinSelf(0)
  console.log(`server pid ${server.process.pid} pinned to CPU ${server.pinnedTo ?? "(not pinned)"}; client pinned to CPU ${selfCpu ?? "(not pinned)"}`)
  const baseUrl = `http://127.0.0.1:${server.ready}/v1`
  const { clients: measured, close } = clients(baseUrl)
  const rounds = new Map<string, Array<{ rps: number; errors: number; p50: number; p99: number }>>()
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so no client always runs first (cold) or last (hot machine).
      const order = measured.map((_, i) => measured[(i + round) % measured.length]!)
      for (const client of order) {
        await client.run(performance.now() + WARMUP_MS, false)
        const t0 = performance.now()
        const sample = await client.run(t0 + WINDOW_MS, true)
        const elapsed = (performance.now() - t0) / 1000
        const entry = {
          rps: sample.count / elapsed,
          errors: sample.errors,
          p50: percentile(sample.latencies, 50),
          p99: percentile(sample.latencies, 99)
        }
        rounds.set(client.name, [...(rounds.get(client.name) ?? []), entry])
        console.log(`round ${round + 1}/${ROUNDS} ${client.name}: ${entry.rps.toFixed(0)} req/s, errors ${entry.errors}`)
      }
    }
  } finally {
    await close()
    await server.stop()
  }

  // Per-round ratios: a client against the baseline measured in the same round.
  const perRoundRatio = (name: string, baseline: string) => {
    const mine = rounds.get(name)!
    const base = rounds.get(baseline)!
    return median(mine.map((r, i) => r.rps / base[i]!.rps))
  }
  const undiciName = measured.find((c) => c.name.startsWith("undici"))!.name
  const sdkName = measured.find((c) => c.name.startsWith("openai SDK"))!.name
  const rows = measured.map((c) => {
    const rs = rounds.get(c.name)!
    const rps = median(rs.map((r) => r.rps))
    return {
      name: c.name,
      rps,
      rounds: rs.map((r) => +r.rps.toFixed(0)),
      errors: rs.reduce((n, r) => n + r.errors, 0),
      p50Ms: median(rs.map((r) => r.p50)),
      p99Ms: median(rs.map((r) => r.p99)),
      vsUndici: perRoundRatio(c.name, undiciName),
      vsOpenAiSdk: perRoundRatio(c.name, sdkName)
    }
  })
  console.log("")
  table(
    ["client", "req/s (median of rounds)", "min–max of rounds", "p50 ms", "p99 ms", "errors", "× raw undici", "× openai SDK"],
    rows.map((r) => [
      r.name,
      fmt(r.rps, 0),
      `${Math.min(...r.rounds)}–${Math.max(...r.rounds)}`,
      fmt(r.p50Ms, 2),
      fmt(r.p99Ms, 2),
      String(r.errors),
      fmt(r.vsUndici, 2),
      fmt(r.vsOpenAiSdk, 2)
    ])
  )
  const full = rows.find((r) => r.name.startsWith("ours: adapter + full"))!
  const targets = {
    oursFullVsUndici: full.vsUndici,
    oursFullVsOpenAiSdk: full.vsOpenAiSdk,
    meetsUndiciTarget: full.vsUndici >= 0.8,
    meetsSdkTarget: full.vsOpenAiSdk >= 2
  }
  console.log(
    `\nratios are medians of per-round ratios. ours (full policy) = ${targets.oursFullVsUndici.toFixed(2)}× raw undici (target ≥ 0.8: ${targets.meetsUndiciTarget ? "met" : "NOT met"}), ` +
      `${targets.oursFullVsOpenAiSdk.toFixed(2)}× openai SDK (target ≥ 2: ${targets.meetsSdkTarget ? "met" : "NOT met"})`
  )
  const svg = barChart({
    title: "bench:throughput — requests/s, 64 concurrent (higher is better)",
    subtitle: `median of ${ROUNDS} interleaved round(s) × ${WINDOW_MS / 1000} s; server in a separate process`,
    categories: ["undici", "platform", "no spans", "openai SDK", "ours bare", "ours default", "ours full"],
    series: [{ name: "req/s", values: rows.map((r) => r.rps) }],
    y: { label: "requests / second" }
  })
  writeResults("throughput", {
    concurrency: CONCURRENCY,
    rounds: ROUNDS,
    warmupMs: WARMUP_MS,
    windowMs: WINDOW_MS,
    serverPinnedTo: server.pinnedTo ?? null,
    clientPinnedTo: selfCpu ?? null,
    rows,
    targets
  }, svg)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

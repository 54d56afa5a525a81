/**
 * bench:stream — what a streamed chunk costs the process that consumes it, per client, at 64 and 512
 * concurrent streams.
 *
 * The server (bench/lib/stream-server.ts) runs in another process pinned to CPU 1; this process is
 * pinned to CPU 0. Each stream is 200 SSE deltas, one every 10 ms, each in its own write — how model
 * APIs send tokens — so the clients are measured at a realistic pace, not at a blast no provider sends.
 * Every delta's text is the server's send time, so each client's consumer can tell how late the text
 * reaches it.
 *
 * Per client and concurrency: **chunks per client CPU-second** (the deltas consumed ÷ this process's
 * user+system CPU time over the run — what one core could sustain), **CPU µs per chunk** (its
 * inverse), the **delivery delay** p50/p99 (send → the consumer's callback; the floor's is the network
 * and event loop, the rest is what a client adds), and the heap's peak growth. Clients run in
 * interleaved rounds (order rotating), and the ratios are taken per round against the baseline measured
 * in the same round, then the median — drift on a busy machine cancels out of the ratios.
 *
 * Run: npm run bench:stream            (3 rounds, 64 and 512 streams × 200 chunks; ~3 min)
 *      npm run bench:stream -- --quick (1 round, 16 and 64 streams × 40 chunks)
 *      npm run bench:stream -- --only="ours default" --streams=64 --rounds=5  (a subset, for iterating;
 *        the baselines always run, and results go to stream-only.json)
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { createOpenAI } from "@ai-sdk/openai"
import { streamText } from "ai"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createParser } from "eventsource-parser"
import type * as HttpClient from "@effect/platform/HttpClient"
import OpenAI from "openai"
import { Agent, request as undiciRequest } from "undici"
// The library as it ships (compiled dist/, built by the npm script; see bench/overhead.ts for why).
import * as Fallback from "effect-llm-resilience/Fallback"
import * as Policy from "effect-llm-resilience/Policy"
import type { GenerateRequest, ProviderShape } from "effect-llm-resilience/Provider"
import * as OpenAi from "effect-llm-resilience/OpenAi"
import * as Transport from "effect-llm-resilience/Transport"
import { startTs } from "./lib/child.js"
import { banner, fmt, median, percentile, pinSelf, quick, table, writeResults } from "./lib/report.js"
import { barChart } from "./lib/svg.js"

const flag = (name: string) => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
const CHUNKS = quick ? 40 : 200
const INTERVAL_MS = 10
const CONCURRENCIES = flag("streams")?.split(",").map(Number) ?? (quick ? [16, 64] : [64, 512])
const ROUNDS = Number(flag("rounds") ?? (quick ? 1 : 3))
/** `--only=floor,ours bare`: a subset of clients by short label (the floor, SDK and bare adapter always run: they are the baselines). */
const ONLY = flag("only")?.split(",").map((s) => s.trim())

const model = "gpt-4o-mini"
const prompt = "Stream a long answer."
const messages = [{ role: "user" as const, content: prompt }]

/** A client under test: `run` streams one completion and hands every text delta to `onText`. */
interface Client {
  readonly name: string
  readonly short: string
  /** Runs `n` streams at once; resolves when all have ended. */
  readonly runAll: (n: number, onText: (text: string) => void) => Promise<void>
}

const sendTimesIn = (text: string): Array<number> => {
  const out: Array<number> = []
  for (const token of text.split(/[\s,[\]{}":t]+/)) {
    if (token.length === 0) continue
    const value = Number(token)
    if (Number.isFinite(value)) out.push(value)
  }
  return out
}

const now = () => performance.timeOrigin + performance.now()

/** `n` promise-returning streams at once. */
const promises = (stream: (onText: (text: string) => void) => Promise<void>) => (n: number, onText: (text: string) => void) =>
  Promise.all(Array.from({ length: n }, () => stream(onText))).then(() => undefined)

/** `n` Effect streams at once, as fibers of one runtime (how an Effect program runs them). */
const fibers = <R>(runtime: ManagedRuntime.ManagedRuntime<R, never>, stream: (onText: (text: string) => void) => Effect.Effect<void, unknown, R>) =>
(n: number, onText: (text: string) => void) =>
  runtime.runPromise(Effect.forEach(Array.from({ length: n }), () => stream(onText), { concurrency: "unbounded", discard: true }))

const clients = (baseUrl: string): { readonly clients: ReadonlyArray<Client>; readonly close: () => Promise<void> } => {
  const headers = { "content-type": "application/json", authorization: "Bearer sk-bench" }
  const agent = new Agent({ connections: 1024, keepAliveTimeout: 30_000 })
  const undici: Client = {
    name: "undici + eventsource-parser (floor)",
    short: "floor",
    runAll: promises(async (onText) => {
      const res = await undiciRequest(`${baseUrl}/chat/completions`, {
        method: "POST",
        dispatcher: agent,
        headers,
        body: JSON.stringify({ model, messages, max_tokens: 1024, stream: true })
      })
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`)
      const decoder = new TextDecoder()
      const parser = createParser({
        onEvent: (event) => {
          if (event.data === "[DONE]") return
          const chunk = JSON.parse(event.data) as { choices: Array<{ delta?: { content?: string } }> }
          const content = chunk.choices[0]?.delta?.content
          if (content !== undefined && content.length > 0) onText(content)
        }
      })
      for await (const bytes of res.body) parser.feed(decoder.decode(bytes as Uint8Array, { stream: true }))
    })
  }

  const sdk = new OpenAI({ baseURL: baseUrl, apiKey: "sk-bench", maxRetries: 0 })
  const openai: Client = {
    name: "openai SDK chat.completions stream",
    short: "openai SDK",
    runAll: promises(async (onText) => {
      const stream = await sdk.chat.completions.create({ model, messages, max_tokens: 1024, stream: true })
      for await (const chunk of stream) {
        const content = chunk.choices[0]?.delta?.content
        if (content !== undefined && content !== null && content.length > 0) onText(content)
      }
    }),
  }

  const vercel = createOpenAI({ baseURL: baseUrl, apiKey: "sk-bench" })
  const vercelAi: Client = {
    name: "Vercel ai streamText (@ai-sdk/openai chat)",
    short: "Vercel ai",
    runAll: promises(async (onText) => {
      const result = streamText({ model: vercel.chat(model), prompt, maxRetries: 0, maxOutputTokens: 1024 })
      for await (const text of result.textStream) onText(text)
    }),
  }

  const effectAiRuntime = ManagedRuntime.make(
    OpenAiLanguageModel.model(model, { max_output_tokens: 1024 }).pipe(
      Layer.provideMerge(OpenAiClient.layer({ apiKey: Redacted.make("sk-bench"), apiUrl: baseUrl })),
      Layer.provide(NodeHttpClient.layerUndici)
    )
  )
  const effectAi: Client = {
    name: "@effect/ai streamText (@effect/ai-openai, Responses)",
    short: "@effect/ai",
    runAll: fibers(effectAiRuntime, (onText) =>
      Stream.runForEach(LanguageModel.streamText({ prompt }), (part) =>
        Effect.sync(() => {
          if (part.type === "text-delta") onText(part.delta)
        }))),
  }

  // Ours, all sharing one runtime: the adapter alone, under Policy.default, a two-route chain.
  const oursRuntime = ManagedRuntime.make(Layer.merge(Transport.layer({ connections: 1024 }), Policy.layerState))
  const request: GenerateRequest = { model, messages, maxTokens: 1024 }
  const adapter = OpenAi.make({ apiKey: Redacted.make("sk-bench"), baseUrl, name: "openai" })
  const lazily = <A>(build: Effect.Effect<A, unknown, Policy.PolicyState | HttpClient.HttpClient>) => {
    let built: Promise<A> | undefined
    return () => (built ??= oursRuntime.runPromise(build))
  }
  type Event = { readonly _tag: string; readonly text?: string }
  /** A client of ours: `n` fibers, each running the stream `open` builds from what `built` resolves to. */
  const oursClient = <A>(name: string, short: string, built: () => Promise<A>, open: (a: A) => Stream.Stream<Event, unknown>): Client => ({
    name,
    short,
    runAll: async (n, onText) => {
      const a = await built()
      return fibers(oursRuntime, (deliver) =>
        Stream.runForEach(open(a), (event) =>
          Effect.sync(() => {
            if (event._tag === "TextDelta" && event.text !== undefined) deliver(event.text)
          })))(n, onText)
    }
  })
  const provider = (policy: Policy.PolicyOptions | undefined) =>
    lazily(Effect.flatMap(adapter, (bare): Effect.Effect<ProviderShape, unknown, Policy.PolicyState> =>
      policy === undefined ? Effect.succeed(bare) : Policy.apply(policy, bare, "bench")))
  const chainOf = (primary: string, secondary: string) =>
    lazily(Effect.flatMap(adapter, (bare) =>
      Fallback.make({
        routes: [
          { name: "primary", provider: bare, model: primary },
          { name: "secondary", provider: bare, model: secondary }
        ],
        deadline: "60 seconds"
      })))
  const Times = Schema.Struct({ t: Schema.Array(Schema.Number) })

  return {
    clients: [
      undici,
      openai,
      vercelAi,
      effectAi,
      oursClient("ours: OpenAi adapter alone", "ours bare", provider(undefined), (p) => p.stream(request)),
      oursClient("ours: adapter + Policy.default", "ours default", provider(Policy.default), (p) => p.stream(request)),
      oursClient("ours: two-route chain, 60 s deadline (chain.stream)", "ours chain", chainOf(model, "gpt-4o"), (c) =>
        c.stream({ messages, maxTokens: 1024 })),
      // The server streams a JSON object to a model named json…: `{"t":[…]}`, one number per delta.
      oursClient("ours: chain.streamObject (JSON deltas, partial previews, schema gate)", "ours streamObject", chainOf("json-bench", "json-bench-secondary"), (c) =>
        c.streamObject(Times, { messages, maxTokens: 1024 }))
    ],
    close: async () => {
      await agent.close()
      await effectAiRuntime.dispose()
      await oursRuntime.dispose()
    }
  }
}

interface Run {
  readonly chunks: number
  readonly expected: number
  readonly cpuMs: number
  readonly wallMs: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly heapPeakMb: number
  readonly errors: number
}

const measure = async (client: Client, n: number): Promise<Run> => {
  const delays: Array<number> = []
  let chunks = 0
  const onText = (text: string) => {
    const at = now()
    for (const sentAt of sendTimesIn(text)) {
      chunks++
      delays.push(at - sentAt)
    }
  }
  ;(globalThis as { gc?: () => void }).gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  let heapPeak = heapBefore
  const sampler = setInterval(() => {
    heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
  }, 20)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let errors = 0
  await client.runAll(n, onText).catch((error: unknown) => {
    errors++
    console.error(`${client.name}: ${error instanceof Error ? error.message : String(error)}`)
  })
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  clearInterval(sampler)
  return {
    chunks,
    expected: n * CHUNKS,
    cpuMs: (cpu.user + cpu.system) / 1000,
    wallMs,
    p50Ms: percentile(delays, 50),
    p99Ms: percentile(delays, 99),
    heapPeakMb: (heapPeak - heapBefore) / 1024 / 1024,
    errors: errors + (chunks < n * CHUNKS ? 1 : 0)
  }
}

const main = async () => {
  banner("stream", `SSE chunks consumed per client CPU-second, ${CONCURRENCIES.join(" and ")} streams × ${CHUNKS} chunks every ${INTERVAL_MS} ms`)
  const server = await startTs("stream-server.ts", ["0", String(CHUNKS), String(INTERVAL_MS)], { ready: /READY (\d+)/, cpu: 1 })
  const selfCpu = pinSelf(0)
  console.log(`server pid ${server.process.pid} pinned to CPU ${server.pinnedTo ?? "(not pinned)"}; client pinned to CPU ${selfCpu ?? "(not pinned)"}`)
  const { clients: all, close } = clients(`http://127.0.0.1:${server.ready}/v1`)
  const baselines = ["floor", "openai SDK", "ours bare"]
  const measured = ONLY === undefined ? all : all.filter((c) => baselines.includes(c.short) || ONLY.includes(c.short))
  const runs = new Map<string, Array<Run>>()
  const key = (client: Client, n: number) => `${client.name}@${n}`
  try {
    // Warm-up: every client once, small, so no round pays JIT and connection setup.
    for (const client of measured) await measure(client, 4)
    for (let round = 0; round < ROUNDS; round++) {
      const order = measured.map((_, i) => measured[(i + round) % measured.length]!)
      for (const n of CONCURRENCIES) {
        for (const client of order) {
          const run = await measure(client, n)
          runs.set(key(client, n), [...(runs.get(key(client, n)) ?? []), run])
          console.log(
            `round ${round + 1}/${ROUNDS} ${n} streams ${client.short}: ${fmt(run.chunks / (run.cpuMs / 1000), 0)} chunks/CPU-s, ` +
              `${fmt((run.cpuMs * 1000) / Math.max(1, run.chunks), 1)} µs/chunk, p50 ${fmt(run.p50Ms, 2)} ms, p99 ${fmt(run.p99Ms, 2)} ms, errors ${run.errors}`
          )
        }
      }
    }
  } finally {
    await close()
    await server.stop()
  }

  const floor = measured[0]!
  const sdk = measured.find((c) => c.short === "openai SDK")!
  const bare = measured.find((c) => c.short === "ours bare")!
  const rows = CONCURRENCIES.flatMap((n) =>
    measured.map((client) => {
      const rs = runs.get(key(client, n))!
      const perCore = rs.map((r) => r.chunks / (r.cpuMs / 1000))
      const ratio = (base: Client) => median(rs.map((r, i) => (r.chunks / r.cpuMs) / (runs.get(key(base, n))![i]!.chunks / runs.get(key(base, n))![i]!.cpuMs)))
      const usPerChunk = rs.map((r) => (r.cpuMs * 1000) / Math.max(1, r.chunks))
      const bareUs = runs.get(key(bare, n))!.map((r) => (r.cpuMs * 1000) / Math.max(1, r.chunks))
      return {
        name: client.name,
        short: client.short,
        streams: n,
        chunksPerCpuSecond: median(perCore),
        chunksPerCpuSecondRange: [Math.min(...perCore), Math.max(...perCore)],
        cpuUsPerChunk: median(usPerChunk),
        cpuUsOverBareAdapter: median(usPerChunk.map((us, i) => us - bareUs[i]!)),
        p50DelayMs: median(rs.map((r) => r.p50Ms)),
        p99DelayMs: median(rs.map((r) => r.p99Ms)),
        heapPeakMb: median(rs.map((r) => r.heapPeakMb)),
        errors: rs.reduce((s, r) => s + r.errors, 0),
        vsFloor: ratio(floor),
        vsOpenAiSdk: ratio(sdk)
      }
    })
  )
  for (const n of CONCURRENCIES) {
    console.log(`\n${n} concurrent streams`)
    table(
      ["client", "chunks / CPU-s (median)", "min–max", "CPU µs / chunk", "µs over bare adapter", "delay p50 ms", "delay p99 ms", "heap peak MB", "× floor", "× openai SDK", "errors"],
      rows.filter((r) => r.streams === n).map((r) => [
        r.name,
        fmt(r.chunksPerCpuSecond, 0),
        `${fmt(r.chunksPerCpuSecondRange[0], 0)}–${fmt(r.chunksPerCpuSecondRange[1], 0)}`,
        fmt(r.cpuUsPerChunk, 1),
        r.short.startsWith("ours") ? fmt(r.cpuUsOverBareAdapter, 1) : "–",
        fmt(r.p50DelayMs, 2),
        fmt(r.p99DelayMs, 2),
        fmt(r.heapPeakMb, 1),
        fmt(r.vsFloor, 2),
        fmt(r.vsOpenAiSdk, 2),
        String(r.errors)
      ])
    )
  }
  const targets = CONCURRENCIES.map((n) => {
    const policy = rows.find((r) => r.streams === n && r.short === "ours default")!
    return {
      streams: n,
      policyVsOpenAiSdk: policy.vsOpenAiSdk,
      policyVsFloor: policy.vsFloor,
      policyUsOverBare: policy.cpuUsOverBareAdapter,
      meetsSdkTarget: policy.vsOpenAiSdk >= 2,
      meetsFloorTarget: policy.vsFloor >= 0.5,
      meetsPolicyCostTarget: policy.cpuUsOverBareAdapter <= 5
    }
  })
  for (const t of targets) {
    console.log(
      `${t.streams} streams: Policy.default = ${t.policyVsOpenAiSdk.toFixed(2)}× openai SDK (target ≥ 2: ${t.meetsSdkTarget ? "met" : "NOT met"}), ` +
        `${t.policyVsFloor.toFixed(2)}× floor (target ≥ 0.5: ${t.meetsFloorTarget ? "met" : "NOT met"}), ` +
        `policy ${t.policyUsOverBare.toFixed(1)} µs/chunk over the bare adapter (target ≤ 5: ${t.meetsPolicyCostTarget ? "met" : "NOT met"})`
    )
  }
  const svg = barChart({
    title: "bench:stream — chunks consumed per client CPU-second (higher is better)",
    subtitle: `${CHUNKS} chunks/stream every ${INTERVAL_MS} ms; median of ${ROUNDS} interleaved round(s); server in a separate process`,
    categories: measured.map((c) => c.short),
    series: CONCURRENCIES.map((n) => ({ name: `${n} streams`, values: rows.filter((r) => r.streams === n).map((r) => r.chunksPerCpuSecond) })),
    y: { label: "chunks / CPU-second" }
  })
  writeResults(ONLY === undefined ? "stream" : "stream-only", {
    chunksPerStream: CHUNKS,
    intervalMs: INTERVAL_MS,
    concurrencies: CONCURRENCIES,
    rounds: ROUNDS,
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

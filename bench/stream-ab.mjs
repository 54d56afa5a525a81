/**
 * A/B of two builds of this package on the stream rows of bench:overhead: CPU time per 100-chunk stream
 * (bare, through Policy.default, through a two-route chain with a 30 s deadline), 7 interleaved rounds
 * of 500 streams each, printed per round. Process CPU time is less sensitive than mitata's wall-clock
 * medians to other work on a shared machine.
 *
 *   git worktree add /tmp/before <rev> && (cd /tmp/before && ln -s $PWD/node_modules . && npm run build)
 *   npm run build && node bench/stream-ab.mjs /tmp/before .
 */
import { Effect, Stream, Layer } from "effect"
import * as path from "node:path"
const load = async (root) => ({
  Fallback: await import(path.resolve(root) + "/dist/Fallback.js"),
  Policy: await import(path.resolve(root) + "/dist/Policy.js"),
  DegradedMode: await import(path.resolve(root) + "/dist/DegradedMode.js")
})
const [before, after] = process.argv.slice(2)
if (before === undefined || after === undefined) {
  console.error("usage: node bench/stream-ab.mjs <checkout before> <checkout after>   (each with dist/ built)")
  process.exit(2)
}
const variants = { old: await load(before), new: await load(after) }
const response = { provider: "p", model: "m", text: "x".repeat(100), toolCalls: [], finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } }
const chunks = () => Stream.concat(Stream.concat(Stream.succeed({ _tag: "Metadata" }),
  Stream.mapEffect(Stream.range(1, 100), () => Effect.promise(() => Promise.resolve({ _tag: "TextDelta", text: "x" })))),
  Stream.succeed({ _tag: "Finish", response }))
const setups = {}
for (const [name, v] of Object.entries(variants)) {
  const provider = { name: "p", generate: () => Effect.succeed(response), stream: chunks }
  const env = Layer.merge(v.Policy.layerState, v.DegradedMode.layer)
  const rt = await Effect.runPromise(Effect.scoped(Layer.toRuntime(env)))
  const runP = (e) => Effect.runPromiseExit(Effect.provide(e, rt))
  const chain = (await runP(v.Fallback.make({ deadline: "30 seconds", routes: [{ name: "a", provider, model: "a" }, { name: "b", provider, model: "b" }] }))).value
  const policy = (await runP(v.Policy.apply({}, provider, "s"))).value
  setups[name] = {
    chain: () => runP(Stream.runDrain(chain.stream({ messages: [{ role: "user", content: "hi" }], maxTokens: 10 }))),
    policy: () => runP(Stream.runDrain(policy.stream({ model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 10 }))),
    bare: () => runP(Stream.runDrain(chunks()))
  }
}
const measure = async (f, n) => { for (let i = 0; i < 50; i++) await f(); const c = process.cpuUsage(); const t = performance.now(); for (let i = 0; i < n; i++) await f(); const d = process.cpuUsage(c); return { wall: (performance.now() - t) / n * 1000, cpu: (d.user + d.system) / n } }
const out = {}
for (let round = 0; round < 7; round++) for (const name of ["old", "new"]) for (const row of ["bare", "policy", "chain"]) {
  const r = await measure(setups[name][row], 500); (out[`${name} ${row}`] ??= []).push(r.cpu.toFixed(0))
}
for (const [k, v] of Object.entries(out)) console.log(k.padEnd(12), v.join(" "))

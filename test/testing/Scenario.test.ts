/**
 * Scenario decoding: valid files decode unchanged, every fault kind is accepted, and every kind of
 * mistake gives a typed `ScenarioError` whose message names the path and what was expected.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Scenario from "../../src/testing/Scenario.js"

const full: Scenario.Scenario = {
  description: "primary is flaky, fallback is slow",
  seed: 42,
  models: ["my-finetune"],
  routes: [
    {
      name: "primary",
      api: "openai",
      model: "gpt-4o*",
      content: { kind: "json", value: { answer: 42 } },
      latency: { kind: "lognormal", medianMs: 80, sigma: 0.5, maxMs: 2_000 },
      deltaDelayMs: 5,
      script: [{ kind: "rate_limit", retryAfterMs: 10 }, { kind: "ok", content: { kind: "echo" } }],
      mix: [{ fault: { kind: "overloaded", shouldRetry: false }, rate: 0.1 }, { fault: { kind: "stream_cut" }, rate: 0.05 }],
      rpm: 60,
      tpm: 100_000,
      concurrency: 4,
      outage: { fromMs: 60_000, toMs: 120_000, fault: { kind: "http_error", status: 503 } }
    }
  ],
  default: { content: { kind: "text", text: "fallback" }, latency: { kind: "uniform", minMs: 10, maxMs: 20 } }
}

/** One example of every fault kind, with its options. */
const everyFault: ReadonlyArray<Scenario.Fault> = [
  { kind: "ok", latency: { kind: "fixed", ms: 1 }, content: { kind: "text", text: "hi" } },
  {
    kind: "rate_limit",
    limitType: "tokens",
    retryAfterSeconds: 2,
    retryAfterMs: 2_000,
    shouldRetry: true,
    message: "slow down"
  },
  { kind: "rate_limit", retryAfterDate: "Wed, 21 Oct 2015 07:28:00 GMT" },
  { kind: "rate_limit", retryAfterDate: 30 },
  { kind: "insufficient_quota", shouldRetry: false },
  { kind: "billing" },
  { kind: "overloaded", status: 503, retryAfterSeconds: 1 },
  {
    kind: "http_error",
    status: 502,
    errorType: "cf_bad_gateway",
    errorCode: null,
    param: null,
    body: "<html>502</html>",
    contentType: "text/html",
    retryAfterSeconds: 1
  },
  { kind: "http_error", status: 400, reason: "context_length", contextWindow: 8_192 },
  { kind: "connection_reset" },
  { kind: "hang_before_headers" },
  { kind: "slow_first_token", delayMs: 3_000 },
  { kind: "stall_mid_stream", afterDeltas: 3, delayMs: 10_000 },
  { kind: "stall_mid_stream" },
  { kind: "stream_error", afterDeltas: 0, error: "rate_limit", errorType: "rate_limit_error", errorCode: "x", message: "m" },
  { kind: "stream_cut", afterDeltas: 2, abort: true },
  { kind: "malformed_json", body: "<html>" },
  { kind: "empty_content" },
  { kind: "schema_violation", value: { answer: "not a number" } },
  { kind: "truncated", fraction: 0.25 },
  { kind: "content_filter", fraction: 0 }
]

const decode = (input: unknown) => Scenario.decodeUnknown(input, "test.json")
const messageOf = (input: unknown) => Effect.map(Effect.flip(decode(input)), (e) => e.message)

describe("Scenario decoding", () => {
  it.effect("a full scenario decodes to itself (the decoded type is the JSON shape)", () =>
    Effect.gen(function*() {
      expect(yield* decode(full)).toEqual(full)
      expect(yield* Scenario.fromJson(JSON.stringify(full))).toEqual(full)
      expect(yield* decode({})).toEqual(Scenario.empty)
    }))

  it.effect("every fault kind decodes, and faultKinds lists exactly the kinds", () =>
    Effect.gen(function*() {
      const decoded = yield* decode({ default: { script: everyFault } })
      expect(decoded.default?.script).toEqual(everyFault)
      expect(new Set(everyFault.map((f) => f.kind))).toEqual(new Set(Scenario.faultKinds))
    }))

  it.effect("an unknown kind lists the valid ones", () =>
    Effect.gen(function*() {
      const message = yield* messageOf({ routes: [{ script: [{ kind: "rate_limt" }] }] })
      expect(message).toContain("Invalid scenario (test.json):")
      expect(message).toContain("routes[0].script[0].kind: Expected \"ok\" | \"rate_limit\"")
      expect(message).toContain("actual \"rate_limt\"")
      expect(message.split("\n")).toHaveLength(2)
    }))

  it.effect("a misspelt option is an error, not silently ignored", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decode({ default: { script: [{ kind: "rate_limit", retryAfterSecs: 3 }] } }))
      expect(error.reason).toBe("Schema")
      expect(error.issues).toHaveLength(1)
      expect(error.issues[0]?.path).toBe("default.script[0].retryAfterSecs")
      expect(error.issues[0]?.message).toContain("is unexpected")
      expect(error.issues[0]?.message).toContain("\"retryAfterSeconds\"")
    }))

  it.effect("wrong types, ranges and cross-field rules name their path", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ default: { script: [{ kind: "http_error", status: "500" }] } }, "default.script[0].status: Expected number, actual \"500\""],
        [{ default: { script: [{ kind: "http_error", status: 600 }] } }, "default.script[0].status"],
        [{ default: { script: [{ kind: "http_error", status: 500, reason: "context_length" }] } }, "default.script[0].status: reason \"context_length\" is a 400 error"],
        [{ default: { script: [{ kind: "rate_limit", retryAfterSeconds: 1, retryAfterDate: 5 }] } }, "default.script[0].retryAfterDate: retryAfterSeconds and retryAfterDate"],
        [{ default: { script: [{ kind: "rate_limit", retryAfterDate: "tomorrow" }] } }, "default.script[0].retryAfterDate: Expected an HTTP-date"],
        [{ default: { mix: [{ fault: { kind: "ok" }, rate: 0.7 }, { fault: { kind: "billing" }, rate: 0.6 }] } }, "default.mix: the rates of a mix must add up to at most 1"],
        [{ default: { mix: [{ fault: { kind: "ok" }, rate: 2 }] } }, "default.mix[0].rate"],
        [{ routes: [{ outage: { fromMs: 10, toMs: 5 } }] }, "routes[0].outage.toMs: toMs must be greater than fromMs"],
        [{ routes: [{ latency: { kind: "uniform", minMs: 5, maxMs: 1 } }] }, "routes[0].latency.maxMs: maxMs must be at least minMs"],
        [{ routes: [{ api: "cohere" }] }, "routes[0].api: Expected \"openai\" | \"anthropic\" | \"responses\" | \"gemini\" | \"bedrock\", actual \"cohere\""],
        [{ routes: [{ rpm: 0 }] }, "routes[0].rpm"],
        [{ routes: [{ concurrency: 1.5 }] }, "routes[0].concurrency"],
        [{ default: { name: "x" } }, "default.name: is unexpected"],
        [{ routes: {} }, "routes: Expected ReadonlyArray<Route>, actual {}"],
        [[], "(root): Expected Scenario, actual []"],
        [{ default: { script: ["ok"] } }, "default.script[0]: Expected Fault, actual \"ok\""],
        [{ default: { latency: "fast" } }, "default.latency: Expected Latency, actual \"fast\""],
        [{ default: { script: [{ kind: "ok", content: "hi" }] } }, "default.script[0].content: Expected Content, actual \"hi\""],
        [{ default: { mix: [{ rate: 0.5 }] } }, "default.mix[0].fault: is missing"]
      ]
      for (const [input, expected] of cases) {
        expect(yield* messageOf(input), JSON.stringify(input)).toContain(expected)
      }
    }))

  it.effect("a value of the wrong type names a short expected type, never the whole schema", () =>
    Effect.gen(function*() {
      const wrongTypes: ReadonlyArray<unknown> = [
        [1, 2],
        "scenario",
        { routes: {} },
        { routes: [{ script: {} }] },
        { default: { mix: [1] } },
        { default: { outage: { fromMs: 1, toMs: 2, fault: "down" } } },
        { default: { script: [{ kind: "ok", latency: [] }] } }
      ]
      for (const input of wrongTypes) {
        const error = yield* Effect.flip(decode(input))
        for (const issue of error.issues) expect(issue.message.length, JSON.stringify(input)).toBeLessThan(200)
      }
    }))

  it.effect("several problems are all reported", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decode({ seed: 1.5, routes: [{ rpm: -1 }, { concurrency: 0 }] }))
      expect(error.issues.map((i) => i.path)).toEqual(["seed", "routes[0].rpm", "routes[1].concurrency"])
    }))

  it.effect("JSON syntax errors give line and column", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Scenario.fromJson("{\n  \"seed\": 1,\n  \"routes\": [ }\n}", "bad.json"))
      expect(error.reason).toBe("Json")
      expect(error.source).toBe("bad.json")
      expect(error.message).toContain("Invalid scenario (bad.json):")
      expect(error.message).toContain("not valid JSON at line 3, column 15")
    }))

  it.effect("a bad scenario is a typed failure, never a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Scenario.fromJson("not json"))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        expect(Option.isSome(Cause.failureOption(exit.cause))).toBe(true)
        expect(Cause.isDie(exit.cause)).toBe(false)
      }
    }))
})

describe("Scenario.fromFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "chaos-scenario-"))

  it.effect("reads and decodes a file", () =>
    Effect.gen(function*() {
      const path = join(dir, "good.json")
      writeFileSync(path, JSON.stringify(full, null, 2))
      expect(yield* Scenario.fromFile(path)).toEqual(full)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("names the file in decoding errors", () =>
    Effect.gen(function*() {
      const path = join(dir, "bad.json")
      writeFileSync(path, JSON.stringify({ default: { script: [{ kind: "nope" }] } }))
      const error = yield* Effect.flip(Scenario.fromFile(path))
      expect(error.source).toBe(path)
      expect(error.message).toContain(`Invalid scenario (${path}):`)
      expect(error.message).toContain("default.script[0].kind")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("a missing file is a Read error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Scenario.fromFile(join(dir, "missing.json")))
      expect(error.reason).toBe("Read")
      expect(error.message).toContain("cannot read the file")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("every scenario example in docs/chaos-server.md decodes", () =>
    Effect.gen(function*() {
      const doc = readFileSync(new URL("../../docs/chaos-server.md", import.meta.url), "utf8")
      const blocks = [...doc.matchAll(/```json scenario\n([\s\S]*?)```/g)].map((m) => m[1] ?? "")
      expect(blocks.length).toBeGreaterThan(3)
      for (const [i, block] of blocks.entries()) {
        yield* Scenario.fromJson(block, `docs example #${i + 1}`)
      }
    }))
})

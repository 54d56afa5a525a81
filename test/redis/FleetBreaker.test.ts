/**
 * The fleet breaker over a real Redis (127.0.0.1:6379; skipped with the reason when it is down,
 * failing when CI=true). Two or three `FleetBreaker` registries, each on its own connections, stand
 * for worker processes; every test has its own key prefix and channel. The fleet's open periods are
 * timed by Redis' own clock, so the tests use short ones and wait for them with bounded polls on real
 * time (`eventually`); nothing asserts a timing. The 4-process test is fleet.processes.test.ts.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { Redis } from "ioredis"
import * as CircuitBreaker from "../../src/CircuitBreaker.js"
import { ServerError } from "../../src/Errors.js"
import * as FleetBreaker from "../../src/redis/FleetBreaker.js"
import { cleanup, eventually as within, publishRaw, redisGate, redisUrl, uniquePrefix, unreachableUrl } from "./helpers.js"

const site: CircuitBreaker.Site = { provider: "mock", model: "m", route: "r", attempt: 1 }
const failure = new ServerError({ provider: "mock", model: "m", route: "r", attempt: 1, status: 500, message: "boom" })
const options: CircuitBreaker.CircuitBreakerOptions = { consecutiveFailures: 1, openDuration: "40 millis" }
const KEY = "r/m"

/** Pub/sub delivery and short open periods on a loaded machine: a bounded poll of up to 10 s. */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>) => within(check, 1_000)

const prefixes: Array<string> = []
afterAll(() => cleanup(prefixes))

/** A fresh fleet: its prefix and channel. */
const fleet = () => {
  const prefix = uniquePrefix("fleet")
  prefixes.push(prefix)
  return { prefix, channel: `${prefix}channel` }
}

/** One "process": a fleet breaker registry on its own connections. */
const worker = (at: { readonly prefix: string; readonly channel: string }, origin: string, url = redisUrl) =>
  Effect.map(
    Layer.build(FleetBreaker.layer({ url, prefix: at.prefix, channel: at.channel, origin, connectTimeout: "300 millis" })),
    (context) => Context.get(context, CircuitBreaker.CircuitBreakers)
  )

/** A fresh fleet of two processes, A and B, and their breakers for KEY. */
const twoWorkers = Effect.gen(function*() {
  const at = fleet()
  const inA = yield* Effect.flatMap(worker(at, "worker-a"), (r) => r.get(KEY, options))
  const inB = yield* Effect.flatMap(worker(at, "worker-b"), (r) => r.get(KEY, options))
  return { at, inA, inB }
})

/** The fleet's record of a key, as Redis holds it. */
const record = (prefix: string) =>
  Effect.promise(async () => {
    const client = new Redis(redisUrl)
    try {
      return await client.hgetall(FleetBreaker.stateKey(prefix, KEY))
    } finally {
      client.disconnect()
    }
  })

/** Asks for a permit until the breaker gives one or refuses with something other than an open period (bounded). */
const permitOnceOpenEnds = (breaker: CircuitBreaker.CircuitBreaker) =>
  Effect.gen(function*() {
    for (let i = 0; i < 300; i++) {
      const result = yield* Effect.either(breaker.acquire(site))
      if (Either.isRight(result)) return result.right
      if (!result.left.message.includes("is open for another")) return yield* Effect.die(result.left)
      yield* Effect.sleep("5 millis")
    }
    return yield* Effect.die(new Error("no permit within 1.5 s"))
  })

const trip = (breaker: CircuitBreaker.CircuitBreaker) => Effect.flatMap(breaker.acquire(site), (permit) => permit.failure(failure))

const is = (breaker: CircuitBreaker.CircuitBreaker, state: CircuitBreaker.BreakerState) => Effect.map(breaker.state, (s) => s === state)

const redisUp = await redisGate((name, fn) => describe("FleetBreaker", () => it(name, fn)))

describe.runIf(redisUp)("FleetBreaker", () => {
  it.scopedLive("one probe for the fleet: the first process to ask probes, the other is refused, and the probe's success closes both", () =>
    Effect.gen(function*() {
      const { at, inA, inB } = yield* twoWorkers

      yield* trip(inA)
      yield* eventually(is(inB, "open"))
      expect((yield* record(at.prefix))["s"]).toBe("t")

      const probe = yield* permitOnceOpenEnds(inA)
      expect((yield* record(at.prefix))["p"]).toMatch(/^worker-a#/)
      yield* eventually(is(inB, "half-open"))
      const refused = yield* Effect.flip(inB.acquire(site))
      expect(refused._tag).toBe("CircuitOpen")
      expect(refused.message).toContain("half-open")

      yield* probe.success
      expect(yield* inA.state).toBe("closed")
      yield* eventually(is(inB, "closed"))
      expect((yield* inB.history).map((e) => [e.to, e.reason.replace(/\(from .*\)/, "(from …)")])).toEqual([
        ["open", "remote: 1 consecutive failures (from …)"],
        ["half-open", "open period ended"],
        ["closed", "remote: probes succeeded (from …)"]
      ])
      expect((yield* record(at.prefix))["s"]).toBe("c")
    }))

  it.scopedLive("a failed probe opens the whole fleet again; the next period's probe may be anyone's", () =>
    Effect.gen(function*() {
      const { at, inA, inB } = yield* twoWorkers
      yield* trip(inA)
      yield* eventually(is(inB, "open"))
      const firstEpoch = Number((yield* record(at.prefix))["e"])

      const probe = yield* permitOnceOpenEnds(inA)
      yield* probe.failure(failure)
      const failedAt = Date.now()
      expect(yield* inA.state).toBe("open")
      yield* eventually(Effect.map(record(at.prefix), (r) => Number(r["e"]) > firstEpoch && r["p"] === undefined))
      // B hears the re-open (a newer epoch) and is open for the new period, whatever it was: its first
      // period (from the first trip) ended before A could probe, so an open period reaching past
      // failedAt + 30 ms can only come from the second trip.
      yield* eventually(Effect.map(inB.stats, (stats) => stats.state === "open" && (stats.openUntil ?? 0) >= failedAt + 30))

      const second = yield* permitOnceOpenEnds(inB)
      expect((yield* record(at.prefix))["p"]).toMatch(/^worker-b#/)
      expect((yield* Effect.flip(inA.acquire(site)))._tag).toBe("CircuitOpen")
      yield* second.success
      yield* eventually(is(inA, "closed"))
    }))

  it.scopedLive("a probe that ends without a verdict (interrupted) gives its claim back: another process probes at once", () =>
    Effect.gen(function*() {
      const { at, inA, inB } = yield* twoWorkers
      yield* trip(inA)
      const probe = yield* permitOnceOpenEnds(inA)
      yield* probe.cancel
      expect((yield* record(at.prefix))["p"]).toBeUndefined()
      const other = yield* permitOnceOpenEnds(inB)
      expect((yield* record(at.prefix))["p"]).toMatch(/^worker-b#/)
      yield* other.success
      yield* eventually(is(inA, "closed"))
    }))

  it.scopedLive("news older than a process has heard is ignored: a stale close does not close it, a newer one does", () =>
    Effect.gen(function*() {
      const at = fleet()
      const long = { consecutiveFailures: 1, openDuration: "30 seconds" } as const
      const inA = yield* Effect.flatMap(worker(at, "worker-a"), (r) => r.get(KEY, long))
      const b = yield* worker(at, "worker-b")
      const inB = yield* b.get(KEY, long)
      const marker = yield* b.get("marker/m")
      yield* trip(inA)
      yield* eventually(is(inB, "open"))
      const epoch = Number((yield* record(at.prefix))["e"])
      const closed = (e: number) => JSON.stringify({ origin: "ghost", key: KEY, openUntil: 0, reason: "probes succeeded", kind: "closed", epoch: e })
      yield* publishRaw(at.channel, [closed(epoch - 1), closed(epoch)])
      // A marker after them: once B applied it, it applied the two closes before it (one channel, in order).
      yield* publishRaw(at.channel, [JSON.stringify({ origin: "ghost", key: "marker/m", openUntil: 0, openForMs: 30_000, reason: "marker" })])
      yield* eventually(is(marker, "open"))
      expect(yield* inB.state).toBe("open")
      expect(yield* inA.state).toBe("open")
      yield* publishRaw(at.channel, [closed(epoch + 1)])
      yield* eventually(is(inB, "closed"))
      yield* eventually(is(inA, "closed"))
    }))

  it.scopedLive("a trip the fleet never recorded (opened on news alone, Redis' record gone): the claim records it and that process probes", () =>
    Effect.gen(function*() {
      const { at, inA, inB } = yield* twoWorkers
      // A remote open (not recorded in Redis: news is never re-recorded) — then the open period ends.
      yield* inA.tripUntil(Date.now() + 40, "remote: from a process that has gone")
      expect(yield* record(at.prefix)).toEqual({})
      const probe = yield* permitOnceOpenEnds(inA)
      expect((yield* record(at.prefix))["p"]).toMatch(/^worker-a#/)
      yield* inB.tripUntil(Date.now() + 1, "remote: same news")
      yield* eventually(is(inB, "half-open"))
      expect((yield* Effect.flip(inB.acquire(site)))._tag).toBe("CircuitOpen")
      yield* probe.success
      yield* eventually(is(inB, "closed"))
    }))

  it.scopedLive("Redis unreachable: the layer builds, breakers trip and probe locally", () =>
    Effect.gen(function*() {
      const at = fleet()
      const breaker = yield* Effect.flatMap(worker(at, "alone", unreachableUrl), (r) => r.get(KEY, options))
      yield* trip(breaker)
      expect(yield* breaker.state).toBe("open")
      const probe = yield* permitOnceOpenEnds(breaker)
      yield* probe.success
      expect(yield* breaker.state).toBe("closed")
    }))
})

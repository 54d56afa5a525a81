import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import { ServerError, UnsupportedRequest } from "../src/Errors.js"
import * as Policy from "../src/Policy.js"
import type { GenerateRequest } from "../src/Provider.js"
import * as Mock from "../src/testing/MockProvider.js"

const site: CircuitBreaker.Site = { provider: "mock", model: "m", route: "r", attempt: 1 }
const request: GenerateRequest = { model: "m", messages: [{ role: "user", content: "hi" }], maxTokens: 16 }

/** Calls the mock through the breaker once; returns the outcome's tag. */
const callThrough = (breaker: CircuitBreaker.CircuitBreaker, mock: Mock.MockProvider) =>
  breaker.execute(mock.generate(request), site).pipe(
    Effect.match({ onFailure: (error) => error._tag, onSuccess: () => "success" })
  )

const repeat = <A>(n: number, effect: Effect.Effect<A>) => Effect.forEach(Array.from({ length: n }), () => effect)

describe("CircuitBreaker — state machine", () => {
  it.effect("opens after the configured consecutive failures and rejects without calling the provider", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 3 })
      const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500)) })
      expect(yield* repeat(2, callThrough(breaker, mock))).toEqual(["ServerError", "ServerError"])
      expect(yield* breaker.state).toBe("closed")
      expect(yield* callThrough(breaker, mock)).toBe("ServerError")
      expect(yield* breaker.state).toBe("open")
      const rejected = yield* Effect.flip(breaker.execute(mock.generate(request), site))
      expect(rejected._tag === "CircuitOpen" && rejected.retryAfterMs).toBe(5_000)
      expect(mock.calls.length).toBe(3)
    }))

  it.effect("lets N probes through half-open, closes when all succeed", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, halfOpenProbes: 2, openDuration: "10 seconds" })
      const failing = Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded()) })
      yield* callThrough(breaker, failing)
      yield* TestClock.adjust("9999 millis")
      expect(yield* breaker.state).toBe("open")
      yield* TestClock.adjust("1 millis")
      expect(yield* breaker.state).toBe("half-open")

      // Two slow probes in flight: a third caller is refused; the provider sees only the probes.
      const slow = Mock.make({ otherwise: Mock.succeed("ok", { delay: "1 second" }) })
      const probes = yield* Effect.forEach([1, 2], () => Effect.fork(callThrough(breaker, slow)))
      yield* Effect.yieldNow()
      expect(yield* callThrough(breaker, slow)).toBe("CircuitOpen")
      yield* TestClock.adjust("1 second")
      expect(yield* Effect.forEach(probes, Fiber.join)).toEqual(["success", "success"])
      expect(slow.calls.length).toBe(2)
      expect(yield* breaker.state).toBe("closed")
    }))

  it.effect("a request refused before it was sent (UnsupportedRequest) is no verdict: it neither closes a half-open breaker nor resets the failure count", () =>
    Effect.gen(function*() {
      const unsent = Effect.fail(new UnsupportedRequest({ provider: "mock", model: "m", route: "r", attempt: 1, param: "messages[0].content[1]", message: "no PDFs by URL" }))
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 2, openDuration: "10 seconds" })
      const failing = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(500)) })
      // Closed (the ticket path): failure, unsent, failure → two consecutive failures: open.
      yield* callThrough(breaker, failing)
      const ticket = breaker.unsafeTryAdmit()
      expect(ticket).toBeDefined()
      yield* breaker.unsafeReport(ticket!, yield* Effect.exit(unsent), 0)
      yield* callThrough(breaker, failing)
      expect(yield* breaker.state).toBe("open")
      yield* TestClock.adjust("10 seconds")
      expect(yield* breaker.state).toBe("half-open")
      // Half-open (the permit path): the unsent "probe" frees its slot and leaves the breaker half-open.
      expect((yield* Effect.flip(breaker.execute(unsent, site)))._tag).toBe("UnsupportedRequest")
      expect(yield* breaker.state).toBe("half-open")
      // A real answer still closes it.
      expect(yield* callThrough(breaker, Mock.make({ otherwise: Mock.succeed("ok") }))).toBe("success")
      expect(yield* breaker.state).toBe("closed")
    }))

  it.effect("re-opens on a probe failure, each time for longer, up to the cap", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", {
        consecutiveFailures: 1,
        openDuration: "1 second",
        backoffFactor: 2,
        maxOpenDuration: "3 seconds"
      })
      const failing = Mock.make({ otherwise: Mock.fail(Mock.errors.timeout("first-token")) })
      const openPeriods: Array<number> = []
      yield* callThrough(breaker, failing)
      for (let i = 0; i < 4; i++) {
        const stats = yield* breaker.stats
        const now = yield* TestClock.currentTimeMillis
        openPeriods.push(stats.openUntil! - now)
        yield* TestClock.adjust(stats.openUntil! - now)
        expect(yield* callThrough(breaker, failing)).toBe("Timeout") // the probe ran and failed
      }
      expect(openPeriods).toEqual([1000, 2000, 3000, 3000])
      const history = yield* breaker.history
      expect(history.map((e) => e.to)).toEqual(["open", "half-open", "open", "half-open", "open", "half-open", "open", "half-open", "open"])
      expect(history.filter((e) => e.reason === "probe failed").length).toBe(4)
    }))

  it.effect("stays open at least as long as the tripping failure's Retry-After", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, openDuration: "1 second" })
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.overloaded(20_000)) }))
      const stats = yield* breaker.stats
      expect(stats.openUntil).toBe(20_000)
    }))

  it.effect("counts only provider-health failures: 400s, 401s and rate limits (by default) do not trip it", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 2 })
      for (const error of [Mock.errors.badRequest(), Mock.errors.unauthorized(), Mock.errors.rateLimited(), Mock.errors.notFound()]) {
        yield* repeat(3, callThrough(breaker, Mock.make({ otherwise: Mock.fail(error) })))
      }
      expect(yield* breaker.state).toBe("closed")
      const strict = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 2, countRateLimited: true })
      yield* repeat(2, callThrough(strict, Mock.make({ otherwise: Mock.fail(Mock.errors.rateLimited()) })))
      expect(yield* strict.state).toBe("open")
    }))

  it.effect("trips on the failure rate over the window once the minimum throughput is reached", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", {
        consecutiveFailures: Number.POSITIVE_INFINITY,
        failureRate: 0.5,
        minimumThroughput: 10,
        window: "10 seconds"
      })
      // Alternating failures never make 2 in a row, but half of the calls fail.
      const script = Array.from({ length: 9 }, (_, i) => i % 2 === 0 ? Mock.fail(Mock.errors.serverError()) : Mock.succeed("ok"))
      const mock = Mock.make({ script, otherwise: Mock.fail(Mock.errors.serverError()) })
      yield* repeat(9, callThrough(breaker, mock))
      expect(yield* breaker.state).toBe("closed") // 9 calls: under the minimum throughput
      yield* callThrough(breaker, mock)
      expect(yield* breaker.state).toBe("open") // 10 calls, 6 failed
    }))

  it.effect("forgets failures that slid out of the window", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", {
        consecutiveFailures: Number.POSITIVE_INFINITY,
        minimumThroughput: 4,
        window: "10 seconds"
      })
      const failing = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) })
      const ok = Mock.make()
      yield* repeat(3, callThrough(breaker, failing))
      yield* TestClock.adjust("11 seconds")
      yield* repeat(2, callThrough(breaker, ok))
      yield* callThrough(breaker, failing)
      yield* callThrough(breaker, ok)
      // Window now: 1 failure of 4 calls.
      expect(yield* breaker.stats).toMatchObject({ state: "closed", calls: 4, failures: 1 })
    }))

  it.effect("an answer that arrives after the breaker moved on is ignored", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, openDuration: "1 second" })
      const late = yield* breaker.acquire(site) // taken while closed
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) }))
      expect(yield* breaker.state).toBe("open")
      yield* late.success // stale evidence: must not close the open breaker
      expect(yield* breaker.state).toBe("open")
    }))

  it.effect("an interrupted probe frees its slot without a verdict", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, openDuration: "1 second" })
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) }))
      yield* TestClock.adjust("1 second")
      const fiber = yield* Effect.fork(callThrough(breaker, Mock.make({ otherwise: Mock.hang })))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(fiber)
      expect(yield* breaker.state).toBe("half-open")
      expect(yield* callThrough(breaker, Mock.make())).toBe("success")
      expect(yield* breaker.state).toBe("closed")
    }))

  it.scoped("isolate holds it open until reset; transitions arrive on the events stream", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m")
      const collected = yield* Effect.fork(Stream.runCollect(Stream.take(yield* breaker.events, 2)))
      yield* breaker.isolate
      yield* TestClock.adjust("1 hour")
      expect(yield* callThrough(breaker, Mock.make())).toBe("CircuitOpen")
      yield* breaker.reset
      expect(yield* callThrough(breaker, Mock.make())).toBe("success")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(collected))
      expect(events.map((e) => [e.from, e.to, e.reason])).toEqual([
        ["closed", "isolated", "manual isolate"],
        ["isolated", "closed", "manual reset"]
      ])
    }))
})

describe("CircuitBreaker — health probe", () => {
  it.effect("a background probe closes an open breaker before its open period ends, without a user's request", () =>
    Effect.gen(function*() {
      const breakers = yield* CircuitBreaker.CircuitBreakers
      let healthy = false
      let probes = 0
      const probe = Effect.suspend(() => {
        probes++
        return healthy ? Effect.void : Effect.fail(Mock.errors.serverError()({ provider: "mock", model: "m", route: "r", attempt: 0 }))
      })
      const breaker = yield* breakers.get("r/m", {
        consecutiveFailures: 1,
        openDuration: "1 minute",
        healthProbe: { interval: "1 second" }
      }, probe)
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) }))
      yield* TestClock.adjust("2 seconds")
      // Two probes found the provider still down: the breaker stays open, its period unchanged.
      expect(probes).toBe(2)
      expect(yield* breaker.stats).toMatchObject({ state: "open", openUntil: 60_000 })
      healthy = true
      yield* TestClock.adjust("1 second")
      expect(probes).toBe(3)
      expect(yield* breaker.state).toBe("closed")
      const history = yield* breaker.history
      expect(history.at(-1)).toMatchObject({ to: "closed", at: 3_000, reason: "health probe succeeded" })
      // Closed: the probe stops running.
      yield* TestClock.adjust("5 seconds")
      expect(probes).toBe(3)
    }).pipe(Effect.provide(CircuitBreaker.layer)))
})

describe("CircuitBreaker — tripUntil (evidence from elsewhere)", () => {
  it.effect("opens a closed breaker until the given time without calling the provider, then probes as usual", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { openDuration: "1 second" })
      yield* breaker.tripUntil(10_000, "remote: 5 consecutive failures")
      const mock = Mock.make()
      const rejected = yield* Effect.flip(breaker.execute(mock.generate(request), site))
      expect(rejected._tag === "CircuitOpen" && rejected.retryAfterMs).toBe(10_000)
      expect(mock.calls.length).toBe(0)
      expect(yield* breaker.stats).toMatchObject({ state: "open", openUntil: 10_000 })
      yield* TestClock.adjust("10 seconds")
      expect(yield* callThrough(breaker, mock)).toBe("success")
      expect((yield* breaker.history).map((e) => [e.to, e.reason])).toEqual([
        ["open", "remote: 5 consecutive failures"],
        ["half-open", "open period ended"],
        ["closed", "probes succeeded"]
      ])
    }))

  it.effect("extends an open period that would end sooner (no new event), never shortens one, ignores the past", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, openDuration: "5 seconds" })
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) }))
      yield* breaker.tripUntil(3_000, "remote: shorter")
      expect((yield* breaker.stats).openUntil).toBe(5_000)
      yield* breaker.tripUntil(8_000, "remote: longer")
      expect((yield* breaker.stats).openUntil).toBe(8_000)
      yield* TestClock.adjust("8 seconds")
      yield* breaker.tripUntil(8_000, "remote: already over")
      expect(yield* breaker.state).toBe("half-open")
      expect((yield* breaker.history).map((e) => e.to)).toEqual(["open", "half-open"])
    }))

  it.effect("a half-open breaker re-opens and its probe in flight loses its vote; an isolated one is left alone", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, openDuration: "1 second" })
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) }))
      yield* TestClock.adjust("1 second")
      const probe = yield* Effect.fork(callThrough(breaker, Mock.make({ otherwise: Mock.succeed("ok", { delay: "1 second" }) })))
      yield* Effect.yieldNow()
      yield* breaker.tripUntil(11_000, "remote: failure rate 60% of 20 calls")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(probe)).toBe("success") // the call succeeded…
      expect(yield* breaker.stats).toMatchObject({ state: "open", openUntil: 11_000 }) // …but could not close it

      const isolated = yield* CircuitBreaker.make("r/n")
      yield* isolated.isolate
      yield* isolated.tripUntil(60_000, "remote: x")
      expect(yield* isolated.state).toBe("isolated")
      yield* isolated.reset
      expect(yield* isolated.state).toBe("closed")
    }))
})

describe("CircuitBreaker — panic", () => {
  it.effect("in panic an open breaker admits one call as a half-open probe; outside panic it refuses", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("r/m", { consecutiveFailures: 1, openDuration: "1 minute" })
      yield* callThrough(breaker, Mock.make({ otherwise: Mock.fail(Mock.errors.serverError()) }))
      const healthy = Mock.make()
      expect(yield* callThrough(breaker, healthy)).toBe("CircuitOpen")
      expect(healthy.calls.length).toBe(0)
      expect(yield* Effect.locally(callThrough(breaker, healthy), CircuitBreaker.currentPanic, true)).toBe("success")
      expect(healthy.calls.length).toBe(1)
      expect(yield* breaker.state).toBe("closed")
      expect((yield* breaker.history).map((e) => e.reason)).toEqual([
        "1 consecutive failures",
        "panic: every route's breaker is open",
        "probes succeeded"
      ])
    }))
})

describe("CircuitBreaker — inside Policy", () => {
  const State = Layer.fresh(Policy.layerState)

  it.effect("the policy's breaker is shared per route/model and ends the retry loop once open", () =>
    Effect.gen(function*() {
      const mock = Mock.make({ otherwise: Mock.fail(Mock.errors.serverError(502)) })
      const policy = Policy.make({ retry: { maxAttempts: 10, jitter: "none", base: "10 millis" }, budget: false, breaker: { consecutiveFailures: 3 } })
      const provider = yield* Policy.apply(policy, mock, "primary")
      const fiber = yield* Effect.fork(Effect.flip(provider.generate(request)))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("CircuitOpen")
      expect(mock.calls.length).toBe(3)

      // Another caller of the same route meets the open breaker without reaching the provider.
      const other = yield* Policy.apply(policy, mock, "primary")
      const rejected = yield* Effect.flip(other.generate(request))
      expect(rejected._tag).toBe("CircuitOpen")
      expect(mock.calls.length).toBe(3)
      const breakers = yield* CircuitBreaker.CircuitBreakers
      const stored = yield* breakers.lookup("primary/m")
      expect(stored._tag).toBe("Some")
    }).pipe(Effect.provide(State)))

  it.effect("a stream attempt reports success on Finish and releases its half-open slot when abandoned", () =>
    Effect.gen(function*() {
      const mock = Mock.make({
        script: [Mock.fail(Mock.errors.serverError())],
        otherwise: Mock.stream(["a", "b"])
      })
      const provider = yield* Policy.apply(Policy.make({ retry: false, breaker: { consecutiveFailures: 1, openDuration: "1 second" } }), mock, "s")
      yield* Effect.exit(provider.generate(request))
      yield* TestClock.adjust("1 second")
      // Half-open: the consumer takes one event and walks away — no verdict, the slot is free again.
      yield* Stream.runDrain(Stream.take(provider.stream(request), 1))
      const breakers = yield* CircuitBreaker.CircuitBreakers
      const breaker = yield* Effect.flatten(breakers.lookup("s/m"))
      expect(yield* breaker.state).toBe("half-open")
      yield* Stream.runDrain(provider.stream(request))
      expect(yield* breaker.state).toBe("closed")
    }).pipe(Effect.provide(State)))
})

describe("CircuitBreaker — a coordinator for the fleet's half-open probes", () => {
  const serverFailure = new ServerError({ provider: "mock", model: "m", route: "r", attempt: 1, status: 500, message: "boom" })
  /** A coordinator that answers from a script and records what it was asked and given back. */
  const scripted = (answers: Array<"Granted" | "Closed" | "Open" | "Busy">, gate?: Deferred.Deferred<void>) => {
    const log: Array<string> = []
    const coordinator: CircuitBreaker.BreakerCoordinator = {
      claimProbe: (key) =>
        Effect.gen(function*() {
          log.push(`claim ${key}`)
          if (gate !== undefined) yield* Deferred.await(gate)
          const answer = answers.shift() ?? "Busy"
          switch (answer) {
            case "Granted":
              return { _tag: "Granted", release: Effect.sync(() => void log.push("release")) } as const
            case "Closed":
              return { _tag: "Closed", reason: "remote: closed elsewhere" } as const
            case "Open":
              return { _tag: "Open", forMs: 3_000, reason: "remote: still open elsewhere" } as const
            case "Busy":
              return { _tag: "Busy", forMs: 700 } as const
          }
        })
    }
    return { coordinator, log }
  }
  const halfOpenBreaker = (coordinator: CircuitBreaker.BreakerCoordinator) =>
    Effect.gen(function*() {
      const registry = yield* CircuitBreaker.makeRegistry({ coordinator })
      const breaker = yield* registry.get("r/m", { consecutiveFailures: 1, openDuration: "1 second" })
      yield* Effect.flatMap(breaker.acquire(site), (permit) => permit.failure(serverFailure))
      yield* TestClock.adjust("1 second")
      expect(yield* breaker.state).toBe("half-open")
      return breaker
    })

  it.scoped("only the half-open path asks; a granted claim is the probe, and concurrent callers wait on it as on a probe in flight", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { coordinator, log } = scripted(["Granted"], gate)
      const breaker = yield* halfOpenBreaker(coordinator)
      const first = yield* Effect.fork(breaker.acquire(site))
      yield* Effect.yieldNow()
      // While the claim is in flight the slot is taken: no second claim from this process.
      expect((yield* Effect.flip(breaker.acquire(site)))._tag).toBe("CircuitOpen")
      expect(log).toEqual(["claim r/m"])
      yield* Deferred.succeed(gate, undefined)
      const permit = yield* Fiber.join(first)
      yield* permit.success
      expect(yield* breaker.state).toBe("closed")
      // Closed: no more claims.
      yield* Effect.flatMap(breaker.acquire(site), (p) => p.success)
      expect(log).toEqual(["claim r/m"])
    }))

  it.scoped("Busy refuses with the claim's time left; Open opens here for the fleet's time; Closed closes here and admits", () =>
    Effect.gen(function*() {
      const { coordinator, log } = scripted(["Busy", "Open", "Closed"])
      const breaker = yield* halfOpenBreaker(coordinator)
      const busy = yield* Effect.flip(breaker.acquire(site))
      expect([busy._tag, busy.retryAfterMs]).toEqual(["CircuitOpen", 700])
      expect(yield* breaker.state).toBe("half-open")
      expect((yield* Effect.flip(breaker.acquire(site)))._tag).toBe("CircuitOpen")
      expect(yield* breaker.state).toBe("open")
      expect((yield* breaker.stats).openUntil).toBe(1_000 + 3_000)
      yield* TestClock.adjust("3 seconds")
      const permit = yield* breaker.acquire(site)
      expect(yield* breaker.state).toBe("closed")
      yield* permit.success
      expect(log).toEqual(["claim r/m", "claim r/m", "claim r/m"])
      expect((yield* breaker.history).map((e) => [e.to, e.reason])).toEqual([
        ["open", "1 consecutive failures"],
        ["half-open", "open period ended"],
        ["open", "remote: still open elsewhere"],
        ["half-open", "open period ended"],
        ["closed", "remote: closed elsewhere"]
      ])
    }))

  it.scoped("a probe that ends without a verdict gives the claim back; one with a verdict does not (its transition tells the fleet)", () =>
    Effect.gen(function*() {
      const { coordinator, log } = scripted(["Granted", "Granted"])
      const breaker = yield* halfOpenBreaker(coordinator)
      yield* Effect.flatMap(breaker.acquire(site), (permit) => permit.cancel)
      expect(log).toEqual(["claim r/m", "release"])
      yield* Effect.flatMap(breaker.acquire(site), (permit) => permit.failure(serverFailure))
      expect(log).toEqual(["claim r/m", "release", "claim r/m"])
      expect(yield* breaker.state).toBe("open")
    }))

  it.scoped("a caller interrupted while its claim is asked never strands the claim: it is given back once granted", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { coordinator, log } = scripted(["Granted", "Granted"], gate)
      const breaker = yield* halfOpenBreaker(coordinator)
      const caller = yield* Effect.fork(breaker.execute(Effect.never, site))
      while (log.length === 0) yield* Effect.yieldNow()
      // The interruption waits for the claim's answer (one uninterruptible step), then cancels the probe.
      const interrupting = yield* Effect.fork(Fiber.interrupt(caller))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(interrupting)
      expect(log).toEqual(["claim r/m", "release"])
      expect(yield* breaker.state).toBe("half-open")
      // The slot is free again: the next caller claims.
      const permit = yield* breaker.acquire(site)
      yield* permit.success
      expect(yield* breaker.state).toBe("closed")
    }))

  it.scoped("panic bypasses the coordinator: every alternative is down, this process probes on its own", () =>
    Effect.gen(function*() {
      const { coordinator, log } = scripted([])
      const breaker = yield* halfOpenBreaker(coordinator)
      const permit = yield* Effect.locally(breaker.acquire(site), CircuitBreaker.currentPanic, true)
      yield* permit.success
      expect(log).toEqual([])
      expect(yield* breaker.state).toBe("closed")
    }))
})

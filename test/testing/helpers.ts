/**
 * Shared helpers for the ChaosServer tests: SDK clients pointed at a server, raw HTTP calls, and a way
 * to wait for the server to park on a TestClock sleep (so tests drive time, never the wall clock).
 */
import Anthropic from "@anthropic-ai/sdk"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type { AllRoutesFailed, InvalidOptions } from "../../src/Errors.js"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import OpenAI from "openai"
import type { ChaosServerHandle } from "../../src/testing/ChaosServer.js"

export const openai = (server: ChaosServerHandle, options: { readonly maxRetries?: number; readonly timeout?: number } = {}) =>
  new OpenAI({
    baseURL: server.openAiBaseUrl,
    apiKey: "sk-test",
    maxRetries: options.maxRetries ?? 0,
    ...(options.timeout === undefined ? {} : { timeout: options.timeout })
  })

export const anthropic = (server: ChaosServerHandle, options: { readonly maxRetries?: number } = {}) =>
  new Anthropic({ baseURL: server.anthropicBaseUrl, apiKey: "sk-ant-test", maxRetries: options.maxRetries ?? 0 })

/** Runs a promise that must reject, and returns what it rejected with. */
export const rejection = <A>(run: () => Promise<A>): Effect.Effect<unknown> =>
  Effect.flatMap(
    Effect.either(Effect.tryPromise({ try: run, catch: (error) => error })),
    (result) => result._tag === "Left" ? Effect.succeed(result.left) : Effect.dieMessage("expected the call to fail")
  )

export const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello." }],
  ...extra
})

export const messagesBody = (extra: Record<string, unknown> = {}) => ({
  model: "claude-haiku-4-5",
  max_tokens: 256,
  messages: [{ role: "user", content: "Say hello." }],
  ...extra
})

export interface RawResponse {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** A plain HTTP call (undici fetch) that reads the whole body. */
export const raw = (url: string, init: RequestInit = {}): Effect.Effect<RawResponse> =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, headers: response.headers, text: await response.text() }
  })

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  raw(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })

/** The `data:` payloads of an SSE body, in order. */
export const sseData = (text: string): Array<string> =>
  text.split("\n\n").filter((frame) => frame.trim() !== "").flatMap((frame) =>
    frame.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6))
  )

/** The `event:` names of an SSE body, in order. */
export const sseEvents = (text: string): Array<string> =>
  text.split("\n\n").filter((frame) => frame.trim() !== "").flatMap((frame) =>
    frame.split("\n").filter((line) => line.startsWith("event: ")).map((line) => line.slice(7))
  )

/** Lets the event loop run (a real macrotask turn), so sockets make progress under TestClock. */
export const tick = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * Waits (in event-loop turns, bounded) until some fiber sleeps on the TestClock — i.e. the server
 * reached the delay a test wants to skip — so `TestClock.adjust` lands after the sleep was scheduled.
 */
export const awaitServerSleep = Effect.gen(function*() {
  for (let i = 0; i < 2_000; i++) {
    const sleeps = yield* TestClock.sleeps()
    if (sleeps.length > 0) return
    yield* tick
  }
  return yield* Effect.dieMessage("the server never started sleeping")
})

/**
 * Waits for a forked call to finish while the clock stands still (a call that tries to sleep never
 * finishes here), giving the sockets real event-loop turns.
 */
export const settle = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      const exit = yield* Fiber.poll(fiber)
      if (Option.isSome(exit)) return yield* exit.value
      yield* tick
    }
    return yield* Effect.dieMessage("the call did not finish without the clock moving")
  })

/** Waits until some fiber sleeps until exactly `at` on the TestClock (a retry's Retry-After wait). */
export const awaitSleepUntil = (at: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      if (Chunk.toReadonlyArray(yield* TestClock.sleeps()).includes(at)) return
      yield* tick
    }
    return yield* Effect.dieMessage(`nothing slept until ${at}`)
  })

/** Reads an SSE response body chunk by chunk, accumulating text. */
export class BodyReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>
  private readonly decoder = new TextDecoder()
  text = ""
  done = false

  constructor(response: Response) {
    if (response.body === null) throw new Error("no body")
    this.reader = response.body.getReader()
  }

  /** Reads until `predicate(text)` holds or the body ends. */
  until(predicate: (text: string) => boolean): Promise<string> {
    const loop = async (): Promise<string> => {
      while (!predicate(this.text) && !this.done) {
        const { done, value } = await this.reader.read()
        if (done) this.done = true
        else this.text += this.decoder.decode(value, { stream: true })
      }
      return this.text
    }
    return loop()
  }

  cancel(): Promise<void> {
    return this.reader.cancel()
  }
}

/**
 * The chain's failure of a call that must reach the routes: `AllRoutesFailed`. An `InvalidOptions`
 * (a schema with no JSON Schema) would be a mistake in the test itself, so it is a defect here.
 */
export const routesFailed = <A, R>(
  effect: Effect.Effect<A, AllRoutesFailed | InvalidOptions, R>
): Effect.Effect<AllRoutesFailed, never, R> =>
  Effect.matchEffect(effect, {
    onSuccess: () => Effect.dieMessage("expected the call to fail"),
    onFailure: (error) =>
      error._tag === "AllRoutesFailed" ? Effect.succeed(error) : Effect.dieMessage(`unexpected ${error._tag}: ${error.message}`)
  })

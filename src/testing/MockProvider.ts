/**
 * A scripted in-process `Provider` for tests: each call takes the next step of a script (succeed,
 * fail with a typed error, stream events with delays, hang), optionally after a delay. Delays use
 * `Effect.sleep`, so a test drives them with `TestClock` and asserts exact timelines — no network,
 * no wall clock.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type * as Duration from "effect/Duration"
import * as Clock from "effect/Clock"
import {
  BadRequest,
  ConnectionError,
  ContentFiltered,
  ContextLengthExceeded,
  InvalidOutput,
  NotFound,
  Overloaded,
  type ProviderError,
  QuotaExhausted,
  RateLimited,
  ServerError,
  StreamInterrupted,
  Timeout,
  Unauthorized
} from "../Errors.js"
import {
  type FinishReason,
  type GenerateRequest,
  type GenerateResponse,
  Provider,
  type ProviderShape,
  type StreamEvent,
  textOf
} from "../Provider.js"

/**
 * Builds a typed error for the request being served (provider/model/route filled in).
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorFactory = (context: {
  readonly provider: string
  readonly model: string
  readonly route: string
  readonly attempt: number
}) => ProviderError

/**
 * One scripted outcome.
 *
 * @since 0.1.0
 * @category models
 */
export type Step =
  | {
    readonly _tag: "Succeed"
    readonly text: string
    readonly finishReason?: FinishReason
    readonly delay?: Duration.DurationInput
  }
  | { readonly _tag: "Fail"; readonly error: ErrorFactory; readonly delay?: Duration.DurationInput }
  | {
    readonly _tag: "Stream"
    /** Events with the delay before each; a `Finish` is appended unless `cut` or `failWith` is set. */
    readonly chunks: ReadonlyArray<{ readonly text: string; readonly delay?: Duration.DurationInput }>
    /** Delay before the initial `Metadata` event (time to headers). */
    readonly headersDelay?: Duration.DurationInput
    /** End the stream after the chunks without a terminator (→ StreamInterrupted). */
    readonly cut?: boolean
    readonly failWith?: ErrorFactory
  }
  | { readonly _tag: "Hang" }

/**
 * Step constructors.
 *
 * @since 0.1.0
 * @category constructors
 */
export const succeed = (text: string, options: { readonly finishReason?: FinishReason; readonly delay?: Duration.DurationInput } = {}): Step => ({
  _tag: "Succeed",
  text,
  ...options
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const fail = (error: ErrorFactory, options: { readonly delay?: Duration.DurationInput } = {}): Step => ({
  _tag: "Fail",
  error,
  ...options
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const stream = (
  chunks: ReadonlyArray<string | { readonly text: string; readonly delay?: Duration.DurationInput }>,
  options: { readonly headersDelay?: Duration.DurationInput; readonly cut?: boolean; readonly failWith?: ErrorFactory } = {}
): Step => ({
  _tag: "Stream",
  chunks: chunks.map((chunk) => (typeof chunk === "string" ? { text: chunk } : chunk)),
  ...options
})

/**
 * A call that never answers (until interrupted).
 *
 * @since 0.1.0
 * @category constructors
 */
export const hang: Step = { _tag: "Hang" }

/**
 * Typed error factories, one per failure a provider can produce.
 *
 * @since 0.1.0
 * @category errors
 */
export const errors = {
  rateLimited: (retryAfterMs?: number): ErrorFactory => (c) =>
    new RateLimited({ ...c, status: 429, message: "rate limited", ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }),
  quotaExhausted: (): ErrorFactory => (c) => new QuotaExhausted({ ...c, status: 429, providerCode: "insufficient_quota", message: "quota" }),
  overloaded: (retryAfterMs?: number): ErrorFactory => (c) =>
    new Overloaded({ ...c, status: 529, message: "overloaded", ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }),
  serverError: (status = 500): ErrorFactory => (c) => new ServerError({ ...c, status, message: "server error" }),
  badRequest: (): ErrorFactory => (c) => new BadRequest({ ...c, status: 400, message: "bad request" }),
  contextLength: (): ErrorFactory => (c) => new ContextLengthExceeded({ ...c, status: 400, message: "context length" }),
  unauthorized: (): ErrorFactory => (c) => new Unauthorized({ ...c, status: 401, message: "unauthorized" }),
  notFound: (): ErrorFactory => (c) => new NotFound({ ...c, status: 404, message: "model not found" }),
  contentFiltered: (): ErrorFactory => (c) => new ContentFiltered({ ...c, finishReason: "content_filter", message: "filtered" }),
  timeout: (phase: Timeout["phase"] = "headers"): ErrorFactory => (c) => new Timeout({ ...c, phase, message: `timeout (${phase})` }),
  connection: (reason: ConnectionError["reason"] = "reset"): ErrorFactory => (c) =>
    new ConnectionError({ ...c, reason, message: `connection ${reason}` }),
  streamInterrupted: (): ErrorFactory => (c) => new StreamInterrupted({ ...c, receivedContent: false, message: "interrupted" }),
  malformed: (): ErrorFactory => (c) =>
    new InvalidOutput({ ...c, status: 200, reason: "malformed-response", message: "malformed response" })
} as const

/**
 * One call the mock received.
 *
 * @since 0.1.0
 * @category models
 */
export interface MockCall {
  readonly request: GenerateRequest
  readonly kind: "generate" | "stream"
  /** Clock time (ms) when the call arrived. */
  readonly at: number
  /** Which step served it (index into the script; -1 for the fallback step). */
  readonly step: number
}

/**
 * A mock provider and what it saw.
 *
 * @since 0.1.0
 * @category models
 */
export interface MockProvider extends ProviderShape<ProviderError> {
  readonly calls: ReadonlyArray<MockCall>
}

/**
 * Options: the script, consumed one step per call, then `otherwise` (default: succeed "ok").
 *
 * @since 0.1.0
 * @category models
 */
export interface MockOptions {
  readonly name?: string
  readonly script?: ReadonlyArray<Step>
  readonly otherwise?: Step
}

const usageFor = (request: GenerateRequest, text: string) => {
  const inputTokens = Math.ceil(request.messages.reduce((n, m) => n + textOf(m.content).length, 0) / 4)
  const outputTokens = Math.ceil(text.length / 4)
  return { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens }
}

const responseFor = (name: string, request: GenerateRequest, text: string, finishReason: FinishReason): GenerateResponse => ({
  provider: name,
  model: request.model,
  id: "mock",
  text,
  toolCalls: [],
  finishReason,
  usage: usageFor(request, text)
})

/**
 * Builds a mock provider (not a Layer; see {@link layer}). The script is shared by `generate` and
 * `stream`; a `Stream` step served to `generate` yields its assembled text.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MockOptions = {}): MockProvider => {
  const name = options.name ?? "mock"
  const script = options.script ?? []
  const otherwise = options.otherwise ?? succeed("ok")
  const calls: Array<MockCall> = []
  const next = (request: GenerateRequest, kind: MockCall["kind"]) =>
    Effect.map(Clock.currentTimeMillis, (at) => {
      const index = calls.length < script.length ? calls.length : -1
      calls.push({ request, kind, at, step: index })
      const context = { provider: name, model: request.model, route: `${name}/${request.model}`, attempt: 1 }
      return { step: index >= 0 ? script[index]! : otherwise, context }
    })

  const generate = (request: GenerateRequest): Effect.Effect<GenerateResponse, ProviderError> =>
    Effect.flatMap(next(request, "generate"), ({ context, step }) => {
      switch (step._tag) {
        case "Succeed": {
          const result = Effect.succeed(responseFor(name, request, step.text, step.finishReason ?? "stop"))
          return step.delay === undefined ? result : Effect.delay(result, step.delay)
        }
        case "Fail": {
          const result = Effect.fail(step.error(context))
          return step.delay === undefined ? result : Effect.delay(result, step.delay)
        }
        case "Stream":
          return streamOf(request, step, context).pipe(
            Stream.runLast,
            Effect.flatMap((last) =>
              last._tag === "Some" && last.value._tag === "Finish"
                ? Effect.succeed(last.value.response)
                : Effect.fail(errors.streamInterrupted()(context))
            )
          )
        case "Hang":
          return Effect.never
      }
    })

  const streamOf = (
    request: GenerateRequest,
    step: Extract<Step, { _tag: "Stream" }>,
    context: Parameters<ErrorFactory>[0]
  ): Stream.Stream<StreamEvent, ProviderError> => {
    const events: Stream.Stream<StreamEvent, ProviderError> = Stream.concat(
      Stream.fromEffect(
        Effect.as(step.headersDelay === undefined ? Effect.void : Effect.sleep(step.headersDelay), {
          _tag: "Metadata",
          id: "mock"
        } as const)
      ),
      Stream.mapEffect(Stream.fromIterable(step.chunks), (chunk) =>
        Effect.as(chunk.delay === undefined ? Effect.void : Effect.sleep(chunk.delay), { _tag: "TextDelta", text: chunk.text } as const))
    )
    const text = step.chunks.map((chunk) => chunk.text).join("")
    if (step.failWith !== undefined) return Stream.concat(events, Stream.fail(step.failWith(context)))
    if (step.cut === true) {
      return Stream.concat(
        events,
        Stream.fail(new StreamInterrupted({ ...context, receivedContent: text.length > 0, partialText: text, message: "cut" }))
      )
    }
    return Stream.concat(events, Stream.succeed({ _tag: "Finish", response: responseFor(name, request, text, "stop") } as const))
  }

  const streamCall = (request: GenerateRequest): Stream.Stream<StreamEvent, ProviderError> =>
    Stream.unwrap(Effect.map(next(request, "stream"), ({ context, step }) => {
      switch (step._tag) {
        case "Stream":
          return streamOf(request, step, context)
        case "Succeed":
          // A short answer arrives in one read: its text and its end in one chunk, after the metadata.
          return Stream.concat(
            Stream.fromEffect(Effect.as(step.delay === undefined ? Effect.void : Effect.sleep(step.delay), { _tag: "Metadata", id: "mock" } as const)),
            Stream.fromIterable<StreamEvent>([
              ...(step.text.length > 0 ? [{ _tag: "TextDelta", text: step.text } as const] : []),
              { _tag: "Finish", response: responseFor(name, request, step.text, step.finishReason ?? "stop") }
            ])
          )
        case "Fail":
          return Stream.fail(step.error(context))
        case "Hang":
          return Stream.never
      }
    }))

  return { name, generate, stream: streamCall, calls }
}

/**
 * The mock as a `Provider` layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (mock: MockProvider): Layer.Layer<Provider> => Layer.succeed(Provider, mock)

/**
 * The retry loop of one streamed call (`Retry.make(...).stream`): a single stage whose pull runs each
 * attempt's own pull and, on a failure before content, closes that attempt, sleeps and opens the next.
 * The decisions (`decide`), the records and the call's limits come from the `Retry` that owns it, so
 * the rules are the ones `generate` follows.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { restamp, type RetryBudgetExhausted, type RouteError, StreamInterrupted } from "../Errors.js"
import { fromPull, toPull } from "../internal/pull.js"
import { clockOf } from "../internal/timer.js"
import type { GenerateRequest, StreamEvent } from "../Provider.js"
import type { AttemptObserver, CallOptions } from "../Retry.js"

/** How an attempt ended, for its record. */
export interface AttemptOutcome {
  readonly tag: string
  readonly error?: RouteError
  readonly requestId?: string | undefined
}

/** What the stream loop takes from its `Retry`: the one decision rule and the call's bookkeeping. */
export interface RetryCore {
  /** The delay before the next attempt, or the error to surface instead. */
  readonly decide: <E extends RouteError>(
    error: E,
    attempt: number,
    previousDelay: number,
    reroutesUsed: number,
    waitLimit: number,
    clock: Clock.Clock
  ) => Effect.Effect<{ readonly delay: number; readonly reroute: boolean }, E | RetryBudgetExhausted>
  readonly record: (
    observer: AttemptObserver | undefined,
    clock: Clock.Clock,
    attempt: number,
    delayMs: number,
    startedAt: number,
    outcome: AttemptOutcome
  ) => Effect.Effect<void>
  readonly observersOf: (call: CallOptions | undefined) => AttemptObserver | undefined
  readonly waitLimitOf: (fiber: Fiber.RuntimeFiber<unknown, unknown>, call: CallOptions | undefined) => number
  /** Starts a logical call: one budget deposit and one idempotency key. */
  readonly begin: (request: GenerateRequest, now: number) => GenerateRequest
}

/**
 * A stream failure after content reached the consumer becomes StreamInterrupted with the partial text
 * — unless it is the output gate's verdict on a complete answer.
 */
const afterContent = <E extends RouteError>(error: E, attempt: number, text: string): E | StreamInterrupted =>
  // A stream that ended and whose whole answer the output gate then refused was not interrupted: the
  // gate's verdict is the attempt's real outcome (the consumer has the text it saw).
  error._tag === "StreamInterrupted" || error._tag === "InvalidOutput" || error._tag === "ContentFiltered"
    ? error
    : new StreamInterrupted({
      provider: error.provider,
      model: error.model,
      route: error.route,
      attempt,
      ...(error.status !== undefined ? { status: error.status } : {}),
      ...(error.requestId !== undefined ? { requestId: error.requestId } : {}),
      receivedContent: true,
      ...(text.length > 0 ? { partialText: text } : {}),
      message: `stream failed after partial output: ${error._tag}: ${error.message}`
    }, true)


/**
 * One logical streamed call as a single stage: the pull below runs each attempt's own pull and, on a
 * failure before content, closes that attempt, sleeps and opens the next — rather than a stream
 * operator per concern (each one a stage of the channel executor, paid on every chunk).
 */
export const retryStream = <E extends RouteError, R>(
core: RetryCore,
request: GenerateRequest,
attempt: (request: GenerateRequest, attempt: number, delayMs: number) => Stream.Stream<StreamEvent, E, R>,
call?: CallOptions
): Stream.Stream<StreamEvent, E | RetryBudgetExhausted | StreamInterrupted, R> =>
  fromPull(Effect.withFiberRuntime((fiber) => {
    type Failure = E | RetryBudgetExhausted | StreamInterrupted
    type Pull = Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<Failure>, R>
    const clock = clockOf(fiber)
    const waitLimit = core.waitLimitOf(fiber, call)
    const observer = core.observersOf(call)
    const keyed = core.begin(request, clock.unsafeCurrentTimeMillis())
    return Effect.map(Effect.scope, (scope): Pull => {
      let n = 1
      let delayMs = 0
      let reroutesUsed = 0
      let startedAt = 0
      let partial: Array<string> = []
      let sawContent = false
      let current: { readonly pull: Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<E>, R>; readonly scope: Scope.CloseableScope } | undefined

      // Each attempt runs in a scope of its own, closed as soon as it failed (its socket and timer go
      // before the backoff sleep), or with the stream's when the consumer is done.
      const open = Effect.flatMap(Scope.fork(scope, ExecutionStrategy.sequential), (attemptScope) => {
        startedAt = clock.unsafeCurrentTimeMillis()
        partial = []
        sawContent = false
        return Effect.map(Scope.extend(toPull(attempt(keyed, n, delayMs)), attemptScope), (attemptPull) => {
          current = { pull: attemptPull, scope: attemptScope }
          return attemptPull
        })
      })

      const onChunk = (chunk: Chunk.Chunk<StreamEvent>): Effect.Effect<Chunk.Chunk<StreamEvent>> => {
        let finished: StreamEvent | undefined
        for (const event of chunk) {
          if (event._tag === "TextDelta") {
            sawContent = true
            partial.push(event.text)
          } else if (event._tag === "ToolCallDelta") sawContent = true
          else if (event._tag === "Finish") finished = event
        }
        return finished?._tag === "Finish" && observer !== undefined
          ? Effect.as(core.record(observer, clock, n, delayMs, startedAt, { tag: "success", requestId: finished.response.requestId }), chunk)
          : Effect.succeed(chunk)
      }

      const onError = (raw: E): Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<Failure>, R> => {
        const error = restamp(raw, { attempt: n })
        if (sawContent) {
          // The consumer has seen output: a transparent retry would splice two answers.
          const surfaced = afterContent(error, n, partial.join(""))
          return Effect.zipRight(
            core.record(observer, clock, n, delayMs, startedAt, { tag: surfaced._tag, error: surfaced }),
            Effect.fail(Option.some(surfaced))
          )
        }
        return Effect.zipRight(
          core.record(observer, clock, n, delayMs, startedAt, { tag: error._tag, error }),
          Effect.matchEffect(core.decide(error, n, delayMs, reroutesUsed, waitLimit, clock), {
            onFailure: (surfaced) => Effect.fail(Option.some(surfaced)),
            onSuccess: ({ delay, reroute }) => {
              const failed = current
              current = undefined
              n += 1
              delayMs = delay
              reroutesUsed += reroute ? 1 : 0
              return Effect.zipRight(
                failed === undefined ? Effect.void : Scope.close(failed.scope, Exit.void),
                Effect.zipRight(Effect.sleep(Duration.millis(delay)), pull)
              )
            }
          })
        )
      }

      const step = (attemptPull: Effect.Effect<Chunk.Chunk<StreamEvent>, Option.Option<E>, R>): Pull =>
        Effect.matchCauseEffect(attemptPull, {
          onSuccess: onChunk,
          onFailure: (cause): Pull => {
            const failure = Cause.failureOption(cause)
            // The end of the stream, an interruption or a defect: nothing to retry.
            if (Option.isNone(failure) || Option.isNone(failure.value)) return Effect.failCause(cause)
            return onError(failure.value.value)
          }
        })

      const pull: Pull = Effect.suspend(() => current === undefined ? Effect.flatMap(open, step) : step(current.pull))
      return pull
    })
  }))

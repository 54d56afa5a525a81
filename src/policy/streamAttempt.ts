/**
 * One streamed attempt through a route's strategies, with the same two forms as a non-streamed one:
 * a fast path that runs the timeouts' pull and does the breaker's verdict, the metrics, the output
 * gate and the route stamp per chunk in that same pull, and the layered form (each concern its own
 * stream operator) taken when a rate limiter is set, spans are on or the breaker is not closed.
 * `test/chain/walk.property.test.ts` holds them equal on random outcome sequences.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { CircuitBreaker } from "../CircuitBreaker.js"
import { type CircuitOpen, restamp, type RouteError } from "../Errors.js"
import { fromPull, toPull } from "../internal/pull.js"
import { clockOf } from "../internal/timer.js"
import { spansOn } from "../internal/tracing.js"
import type { GenerateRequest, StreamEvent } from "../Provider.js"
import type * as Timeouts from "../Timeouts.js"
import { attributesOf, type ModelState, type RouteContext, sendStream, siteOf, type StreamContext } from "./routeContext.js"

/** The streamed-attempt builder of a route. */
export const makeStreamAttempt = (ctx: RouteContext) => {
  const { guard, metrics, route, tracing } = ctx

  /** The general form: limiter ▸ breaker ▸ gate ▸ timeouts, each through its own stream operators. */
  const layered = (
    state: ModelState,
    request: GenerateRequest,
    attempt: number,
    delayMs: number,
    hedged: boolean,
    context: StreamContext,
    fiber: Fiber.RuntimeFiber<unknown, unknown>
  ): Stream.Stream<StreamEvent, RouteError> => {
    const site = siteOf(ctx, request, attempt)
    const { acceptor } = context
    let call: Stream.Stream<StreamEvent, RouteError> = guard.stream(sendStream(ctx, fiber, request, site), site, context.handOverAt)
    if (acceptor !== undefined) {
      // The same verdict as the fast path's, as a stage of its own.
      call = Stream.mapChunksEffect(call, (chunk) => {
        const finish = finishOf(chunk)
        return finish === undefined ? Effect.succeed(chunk) : Effect.as(acceptor(finish.response, request), chunk)
      })
    }
    if (state.breaker !== undefined) call = guardStream(state.breaker, call, site)
    if (state.limiter !== undefined) call = state.limiter.stream(request, call, site)
    let outcome = "cancelled"
    const counted = call.pipe(
      Stream.mapError((error) => restamp(error, { route, attempt })),
      Stream.tapError((error) => {
        outcome = error._tag
        return metrics.countEffect(attempt, error)
      }),
      Stream.mapChunksEffect((chunk) => {
        if (finishOf(chunk) === undefined) return Effect.succeed(chunk)
        outcome = "success"
        return Effect.as(metrics.countEffect(attempt, undefined), chunk)
      })
    )
    return Stream.unwrap(Effect.tracerWith((tracer) =>
      !spansOn(tracing, tracer) ? Effect.succeed(counted) : Effect.map(
        attributesOf(ctx, state, request, attempt, delayMs, hedged, true),
        (attributes) =>
          Stream.withSpan(
            Stream.ensuring(counted, Effect.suspend(() => Effect.annotateCurrentSpan("llm.outcome", outcome))),
            "llm.attempt",
            { kind: "client", attributes }
          )
      )
    ))
  }

  /**
   * The attempt as one stage: without an operator (a stage of the channel executor, paid on every
   * chunk) per concern.
   */
  return (
    state: ModelState,
    request: GenerateRequest,
    attempt: number,
    delayMs: number,
    hedged: boolean,
    context: StreamContext
  ): Stream.Stream<StreamEvent, RouteError> =>
    fromPull(Effect.withFiberRuntime((fiber) => {
      const { breaker } = state
      const ticket = breaker?.unsafeTryAdmit()
      if (
        state.limiter !== undefined || (breaker !== undefined && ticket === undefined) ||
        spansOn(tracing, fiber.currentTracer)
      ) return toPull(layered(state, request, attempt, delayMs, hedged, context, fiber))
      const clock = clockOf(fiber)
      const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
      // The attempt's verdict is given once: at `Finish`, or at its failure. A stream that ends
      // otherwise (the consumer stopped, an interruption) gives none, as the layered form's cancel.
      let settled = false
      const settle = (error: RouteError | undefined): Effect.Effect<void> => {
        settled = true
        metrics.count(attempt, error, labels)
        return breaker === undefined || ticket === undefined
          ? Effect.void
          : breaker.unsafeReport(ticket, error === undefined ? Exit.void : Exit.fail(error), clock.unsafeCurrentTimeMillis())
      }
      const failWith = (raw: RouteError) => {
        const error = restamp(raw, { route, attempt })
        const failed = Effect.fail(Option.some(error))
        if (settled) return failed
        const announced = settle(error)
        return announced === Effect.void ? failed : Effect.zipRight(announced, failed)
      }
      const accepted = (chunk: Chunk.Chunk<StreamEvent>) => {
        const announced = settle(undefined)
        return announced === Effect.void ? Effect.succeed(chunk) : Effect.as(announced, chunk)
      }
      const site = siteOf(ctx, request, attempt)
      return Effect.map(guard.streamPull(sendStream(ctx, fiber, request, site), site, context.handOverAt), (pull) =>
        Effect.matchCauseEffect(pull, {
          onSuccess: (chunk) => {
            if (settled) return Effect.succeed(chunk)
            const finish = finishOf(chunk)
            if (finish === undefined) return Effect.succeed(chunk)
            if (context.acceptor === undefined) return accepted(chunk)
            // The answer is judged before the chunk that completes it goes out: a rejection is this
            // attempt's failure, seen by the breaker, the metrics, the retry loop and the history.
            return Effect.matchEffect(context.acceptor(finish.response, request), { onFailure: failWith, onSuccess: () => accepted(chunk) })
          },
          onFailure: (cause) => {
            const failure = Cause.failureOption(cause)
            if (Option.isNone(failure) || Option.isNone(failure.value)) return Effect.failCause(cause)
            return failWith(failure.value.value)
          }
        }))
    }))
}

/** The `Finish` event of a chunk, if it holds one. */
const finishOf = (chunk: Chunk.Chunk<StreamEvent>): Extract<StreamEvent, { readonly _tag: "Finish" }> | undefined => {
  for (const event of chunk) if (event._tag === "Finish") return event
  return undefined
}

/**
 * Runs a stream through a breaker: one permit per attempt, reported exactly once — success on
 * `Finish`, failure on error, cancel when the consumer stops early or is interrupted.
 */
const guardStream = <E extends RouteError>(
  breaker: CircuitBreaker,
  call: Stream.Stream<StreamEvent, E>,
  site: Timeouts.Site
): Stream.Stream<StreamEvent, E | CircuitOpen> =>
  Stream.unwrap(Effect.map(breaker.acquire(site), (permit) => {
    let reported = false
    const report = (effect: Effect.Effect<void>) =>
      Effect.suspend(() => {
        if (reported) return Effect.void
        reported = true
        return effect
      })
    return call.pipe(
      Stream.tapError((error) => report(permit.failure(error))),
      Stream.mapChunksEffect((chunk) => (finishOf(chunk) === undefined ? Effect.succeed(chunk) : Effect.as(report(permit.success), chunk))),
      Stream.ensuring(report(permit.cancel))
    )
  }))

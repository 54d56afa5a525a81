/**
 * One non-streamed attempt through a route's strategies: limiter ▸ breaker ▸ timeouts ▸ provider ▸
 * output gate, counted and stamped with the route. Two forms with one semantics — a fast path that
 * admits, guards and settles synchronously around the attempt's exit, and the layered form (each
 * strategy through its own Effect API) taken when spans are on, the breaker is not closed or the
 * limiter has to queue. `test/chain/walk.property.test.ts` holds them equal on random outcome sequences.
 *
 * The retry loop runs an attempt on its own fiber as its next step, so it is built on that fiber
 * (`attemptOn`) rather than in an effect step that would look the fiber up; a hedge, which may run
 * an attempt on a fiber of its own, gets the attempt as an effect (`attempt`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Deadline from "../Deadline.js"
import { restamp, type RouteError } from "../Errors.js"
import { clockOf } from "../internal/timer.js"
import { spansOn } from "../internal/tracing.js"
import type { GenerateRequest, GenerateResponse } from "../Provider.js"
import type * as Timeouts from "../Timeouts.js"
import {
  attributesOf,
  currentAcceptor,
  inherited,
  type ModelState,
  outcomeAttributes,
  type ResolvedCall,
  type RouteContext,
  sendGenerate,
  siteOf
} from "./routeContext.js"

/** The attempt builders of a route. */
export const makeGenerateAttempt = (ctx: RouteContext) => {
  const { guard, metrics, route, tracing } = ctx

  /** Counts a finished attempt and stamps its failure with the route and attempt number. */
  const finish = (
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    attempt: number,
    exit: Exit.Exit<GenerateResponse, RouteError>
  ): Effect.Effect<GenerateResponse, RouteError> => {
    const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
    if (Exit.isSuccess(exit)) {
      metrics.count(attempt, undefined, labels)
      return exit
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) return exit
    const error = restamp(failure.value, { route, attempt })
    metrics.count(attempt, error, labels)
    return Effect.fail(error)
  }

  /** In a span of its own, annotated with the outcome. */
  const traced = (
    state: ModelState,
    request: GenerateRequest,
    attempt: number,
    delayMs: number,
    hedged: boolean,
    counted: Effect.Effect<GenerateResponse, RouteError>
  ) =>
    Effect.flatMap(
      attributesOf(ctx, state, request, attempt, delayMs, hedged, false),
      (attributes) =>
        Effect.withSpan(
          Effect.tapBoth(counted, {
            onFailure: (error) => Effect.annotateCurrentSpan(outcomeAttributes(error._tag, error.requestId)),
            onSuccess: (response) => Effect.annotateCurrentSpan(outcomeAttributes("success", response.requestId))
          }),
          "llm.attempt",
          { kind: "client", attributes }
        )
    )

  /** The attempt, on the fiber that runs it (it runs the returned effect at once). */
  const attemptOn = (
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    state: ModelState,
    request: GenerateRequest,
    attempt: number,
    delayMs: number,
    hedged: boolean,
    context: ResolvedCall
  ): Effect.Effect<GenerateResponse, RouteError> => {
    const site = siteOf(ctx, request, attempt)
    const acceptor = context === inherited ? Option.getOrUndefined(fiber.getFiberRef(currentAcceptor)) : context.acceptor
    let unguarded: Effect.Effect<GenerateResponse, RouteError> = sendGenerate(ctx, fiber, request, site)
    if (acceptor !== undefined) unguarded = Effect.flatMap(unguarded, (response) => acceptor(response, request))
    const done = (exit: Exit.Exit<GenerateResponse, RouteError>) => finish(fiber, attempt, exit)
    /** The general form; its waits (a limiter's queue) read the deadline from the fiber. */
    const general = () =>
      published(
        fiber,
        context.deadline,
        layered(state, request, guard.generate(unguarded, site, context.deadline, undefined, context.handOverAt), site)
      )

    if (spansOn(tracing, fiber.currentTracer)) {
      return traced(state, request, attempt, delayMs, hedged, onExit(general(), done))
    }

    // The fast path: the breaker closed and the limiter with capacity now, checked and settled
    // synchronously around the attempt's exit — the same semantics as `layered`, without an effect
    // step per strategy. Anything else (open breaker, a queue) takes the general form.
    const { breaker, limiter } = state
    const ticket = breaker?.unsafeTryAdmit()
    if (breaker !== undefined && ticket === undefined) return onExit(general(), done)
    const clock = clockOf(fiber)
    const settle = (exit: Exit.Exit<GenerateResponse, RouteError>, now: number) => {
      const announced = breaker === undefined || ticket === undefined ? Effect.void : breaker.unsafeReport(ticket, exit, now)
      return announced === Effect.void ? done(exit) : Effect.zipRight(announced, done(exit))
    }
    if (limiter === undefined) {
      return onExit(
        guard.generate(unguarded, site, context.deadline, undefined, context.handOverAt),
        (exit) => settle(exit, clock.unsafeCurrentTimeMillis())
      )
    }
    // Uninterruptible from taking the limiter's slot until the call's exit is seen: it is always freed.
    return Effect.uninterruptibleMask((restore) => {
      const admitted = limiter.unsafeTryAdmit(request, clock.unsafeCurrentTimeMillis())
      if (admitted === undefined) return onExit(restore(general()), done)
      // The attempt waits interruptibly inside this region rather than in one of its own.
      return onExit(guard.generate(unguarded, site, context.deadline, restore, context.handOverAt), (exit) => {
        const now = clock.unsafeCurrentTimeMillis()
        limiter.unsafeRelease(admitted, exit, now)
        return settle(exit, now)
      })
    })
  }

  return {
    attemptOn,
    /** The attempt as an effect, for whoever runs it (a hedge may run it on a fiber of its own). */
    attempt: (
      state: ModelState,
      request: GenerateRequest,
      attempt: number,
      delayMs: number,
      hedged: boolean,
      context: ResolvedCall
    ): Effect.Effect<GenerateResponse, RouteError> =>
      Effect.withFiberRuntime((fiber) => attemptOn(fiber, state, request, attempt, delayMs, hedged, context))
  }
}

/**
 * `f` of the effect's exit: `Effect.flatMap(Effect.exit(effect), f)` in one step (the same handlers,
 * one continuation instead of two).
 */
const onExit = <A, E, R, B, E2, R2>(
  effect: Effect.Effect<A, E, R>,
  f: (exit: Exit.Exit<A, E>) => Effect.Effect<B, E2, R2>
): Effect.Effect<B, E2, R | R2> =>
  Effect.matchCauseEffect(effect, {
    onFailure: (cause) => f(Exit.failCause(cause)),
    onSuccess: (value) => f(Exit.succeed(value))
  })

/** The general form: limiter ▸ breaker ▸ guarded call, each through its own Effect API. */
const layered = (state: ModelState, request: GenerateRequest, call: Effect.Effect<GenerateResponse, RouteError>, site: Timeouts.Site) => {
  let layeredCall = call
  if (state.breaker !== undefined) layeredCall = state.breaker.execute(layeredCall, site)
  if (state.limiter !== undefined) layeredCall = state.limiter.generate(request, layeredCall, site)
  return layeredCall
}

/**
 * Runs `effect` with `deadline` published as the fiber's current deadline when it is the tighter one
 * (for the general attempt path, whose waits read it there).
 */
const published = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  deadline: number | undefined,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  deadline !== undefined && deadline < Deadline.unsafeOf(fiber)
    ? Effect.locally(effect, Deadline.currentDeadline, Option.some(deadline))
    : effect

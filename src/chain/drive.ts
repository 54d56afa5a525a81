/**
 * The two drivers of the walk: one runs an attempt as an effect (`generate`, `generateObject`), the
 * other as a stream (`stream`, `streamObject`). Neither decides anything — the walk does; a driver
 * only runs the attempt it is given and tells the walk how it ended.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as CircuitBreaker from "../CircuitBreaker.js"
import * as Deadline from "../Deadline.js"
import type { AllRoutesFailed, RouteError } from "../Errors.js"
import type { ChainResult, ChainStreamEvent, PartialObject } from "../Fallback.js"
import { extend } from "../internal/object.js"
import { innermostPrices } from "../internal/spend.js"
import { clockOf } from "../internal/timer.js"
import type { GenerateResponse } from "../Provider.js"
import { isContentEvent, type StreamEvent } from "../Provider.js"
import { JsonPrefix } from "./partialJson.js"
import { type CallSpec, type ChainConfig, isStep, type Step, type Stepped, stepEffect, Walk } from "./walk.js"

/**
 * One call's spec, made when the call starts (a gate may keep per-call state), or the reason the call
 * cannot be made (a schema with no JSON Schema).
 */
export type Prepare<A, E> = () => Either.Either<CallSpec<A>, E>

/** Runs a call whose attempts are effects. */
export const generate = <A, E = never>(
  config: ChainConfig,
  prepare: Prepare<A, E>
): Effect.Effect<ChainResult<A>, AllRoutesFailed | E> =>
  Effect.withFiberRuntime((fiber) => {
    const spec = prepare()
    if (Either.isLeft(spec)) return Effect.fail(spec.left)
    const walk = new Walk(config, spec.right, clockOf(fiber), config.prices ?? innermostPrices(fiber))
    const step = (next: Step): Effect.Effect<ChainResult<A>, AllRoutesFailed> => {
      if (next._tag === "Stop") return Effect.fail(next.error)
      // Run at once on this fiber — but under panic, with the flag set on it first.
      const call = next.panic
        ? Effect.locally(next.policy.generate(next.request, next.context), CircuitBreaker.currentPanic, true)
        : next.policy.generateOn(fiber, next.request, next.context)
      return Effect.matchEffect(call, ended)
    }
    const proceed = (next: Stepped) => isStep(next) ? step(next) : Effect.flatMap(next, step)
    const ended = {
      onFailure: (error: RouteError) => proceed(walk.failed(error, undefined)),
      onSuccess: (response: GenerateResponse) => {
        const { publish, result } = walk.answered(response)
        return Effect.as(publish, result)
      }
    }
    return proceed(walk.begin(Deadline.unsafeOf(fiber)))
  })

/**
 * Previews of an answer as its text arrives (`streamObject`'s `PartialObject`s): a fresh session per
 * attempt, fed each text delta; each preview has a key telling it from the last one emitted, and
 * `undefined` means nothing new to show.
 */
export type Previewer<P> = () => (delta: string) => { readonly event: P; readonly key: string } | undefined

/** `streamObject`'s previewer: the JSON prefix, closed and parsed. */
export const objectPreviews: Previewer<PartialObject> = () => {
  const prefix = new JsonPrefix()
  return (delta) => {
    prefix.push(delta)
    const seen = prefix.preview()
    return seen === undefined ? undefined : { event: { _tag: "PartialObject", value: seen.value }, key: seen.source }
  }
}

/** Runs a call whose attempts are streams, with previews of the answer when `previewer` is given. */
export const stream = <A, E = never, P = never>(
  config: ChainConfig,
  prepare: Prepare<A, E>,
  previewer?: Previewer<P>
): Stream.Stream<ChainStreamEvent<A> | P, AllRoutesFailed | E> =>
  Stream.unwrapScoped(Effect.withFiberRuntime((fiber) => {
    const spec = prepare()
    if (Either.isLeft(spec)) return Effect.fail(spec.left)
    const walk = new Walk(config, spec.right, clockOf(fiber), config.prices ?? innermostPrices(fiber))
    return Effect.flatMap(stepEffect(walk.begin(Deadline.unsafeOf(fiber))), (first) => {
      const events = fromStep(walk, previewer, first)
      // The call's deadline is published once for the whole stream, not watched by a producer of its
      // own: every attempt's watch is clipped to it (it fails with DeadlineExceeded at that instant,
      // after the events already received) and every wait between attempts refuses to cross it.
      return walk.until < Number.POSITIVE_INFINITY
        ? Effect.as(Effect.locallyScoped(Deadline.currentDeadline, Option.some(walk.until)), events)
        : Effect.succeed(events)
    })
  }))

const fromStep = <A, P>(
  walk: Walk<A>,
  previewer: Previewer<P> | undefined,
  step: Step
): Stream.Stream<ChainStreamEvent<A> | P, AllRoutesFailed> => {
  if (step._tag === "Stop") return Stream.fail(step.error)
  return Stream.suspend(() => {
    const attempt = new StreamedAttempt(walk, previewer, step)
    const events = step.policy.stream(step.request, step.context)
    const admitted = step.panic
      ? Stream.unwrapScoped(Effect.as(Effect.locallyScoped(CircuitBreaker.currentPanic, true), events))
      : events
    return admitted.pipe(
      Stream.mapChunksEffect((chunk) => attempt.onChunk(chunk)),
      Stream.catchAll((error) => {
        const next = walk.failed(error, attempt.delivered())
        return isStep(next) ? fromStep(walk, previewer, next) : Stream.unwrap(Effect.map(next, (step) => fromStep(walk, previewer, step)))
      })
    )
  })
}

/**
 * One streamed attempt as the consumer sees it. Events before the first content (metadata, usage)
 * are held back, so that an attempt failing before content leaves no trace in the consumer's stream;
 * a pending `Restarted` goes out just before the attempt's first output.
 */
class StreamedAttempt<A, P> {
  private readonly held: Array<ChainStreamEvent<A> | P> = []
  private readonly text: Array<string> = []
  private flowing = false
  private lastPreview = ""
  private readonly previews: ReturnType<Previewer<P>> | undefined

  constructor(
    private readonly walk: Walk<A>,
    previewer: Previewer<P> | undefined,
    private readonly step: Extract<Step, { readonly _tag: "Attempt" }>
  ) {
    this.previews = previewer?.()
  }

  /** The text that reached the consumer, or `undefined` when no output did. */
  delivered(): string | undefined {
    return this.flowing ? this.text.join("") : undefined
  }

  /** A chunk at a time, synchronously but for the `Finish` (one stage, not one effect per event). */
  onChunk(chunk: Chunk.Chunk<StreamEvent>): Effect.Effect<Chunk.Chunk<ChainStreamEvent<A> | P>, RouteError> {
    const events = Chunk.toReadonlyArray(chunk)
    const out: Array<ChainStreamEvent<A> | P> = []
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      if (event._tag === "Finish") {
        // The policy's gate passed this answer inside the attempt; the walk makes it the result.
        const { publish, result } = this.walk.answered(event.response)
        return Effect.map(publish, () => {
          this.release(out)
          out.push(event)
          // Whatever the provider sent after its terminator in the same chunk, then the chain's last word.
          for (let j = i + 1; j < events.length; j++) if (events[j]!._tag !== "Finish") out.push(events[j]!)
          out.push({ _tag: "Completed", result })
          return Chunk.unsafeFromArray(out)
        })
      }
      if (isContentEvent(event)) {
        this.release(out)
        out.push(event)
        if (event._tag === "TextDelta") {
          this.text.push(event.text)
          if (this.previews !== undefined) this.preview(this.previews, event.text, out)
        }
      } else if (this.flowing) out.push(event)
      else this.held.push(event)
    }
    return Effect.succeed(Chunk.unsafeFromArray(out))
  }

  private release(out: Array<ChainStreamEvent<A> | P>): void {
    if (this.flowing) return
    this.flowing = true
    const restarted = this.step.restartedFrom
    if (restarted !== undefined) out.push(extend(restarted, { to: this.step.route.name }))
    for (const event of this.held) out.push(event)
    this.held.length = 0
  }

  private preview(previews: ReturnType<Previewer<P>>, delta: string, out: Array<ChainStreamEvent<A> | P>): void {
    const seen = previews(delta)
    if (seen === undefined || seen.key === this.lastPreview) return
    this.lastPreview = seen.key
    out.push(seen.event)
  }
}

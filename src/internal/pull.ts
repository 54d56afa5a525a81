/**
 * Streams made of one pull, and taking that pull back without a round trip through the channel
 * executor.
 *
 * Effect's stream cost is per chunk *and per stage*: `Stream.toPull(Stream.fromPull(make))` runs the
 * chunks of `make`'s pull through a second executor for nothing. The stages of this library that are
 * a pull (an adapter's decoded body, one policy attempt) are built with {@link fromPull}, which
 * remembers the pull factory of the stream it returns; a consumer of such a stream inside this library
 * (the retry loop, the timeouts' producer) takes it with {@link toPull}, which returns that factory
 * itself — the same pull the stream would run — and falls back to `Stream.toPull` for any other
 * stream (a user's provider, a test double). So there is one stream semantics, and a stage fewer per
 * chunk where both ends are ours.
 *
 * @internal
 */
import type * as Chunk from "effect/Chunk"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** A pull over a stream's chunks: a chunk, `None` at its end, `Some(error)` when it fails. */
export type Pull<A, E, R = never> = Effect.Effect<Chunk.Chunk<A>, Option.Option<E>, R>

/** What builds a stream's pull, in the scope of its run. */
export type MakePull<A, E, R = never> = Effect.Effect<Pull<A, E, R>, never, R | Scope.Scope>

// Streams are immutable values: the factory a stream was made from never changes.
const factories = new WeakMap<object, MakePull<unknown, unknown, unknown>>()

/** `Stream.fromPull`, remembering `make` for {@link toPull}. */
export const fromPull = <A, E, R>(make: MakePull<A, E, R>): Stream.Stream<A, E, Exclude<R, Scope.Scope>> => {
  const stream = Stream.fromPull(make) as Stream.Stream<A, E, Exclude<R, Scope.Scope>>
  factories.set(stream, make as MakePull<unknown, unknown, unknown>)
  return stream
}

/** `Stream.toPull`: the stream's own pull when it was made by {@link fromPull}. */
export const toPull = <A, E, R>(stream: Stream.Stream<A, E, R>): MakePull<A, E, R> =>
  (factories.get(stream) as MakePull<A, E, R> | undefined) ?? Stream.toPull(stream)

/**
 * When spans are worth creating. A span costs microseconds even when nothing exports it, so the
 * library's own spans (per attempt, per HTTP request) are created only when a real tracer (e.g.
 * `@effect/opentelemetry`) replaced Effect's built-in one — unless a caller asks otherwise.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Tracer from "effect/Tracer"

/** `auto`: only under a real tracer; `always` / `never`: as said. */
export type Tracing = "auto" | "always" | "never"

/** Effect's built-in tracer, which records spans but exports nothing. */
const nativeTracer = Effect.runSync(Effect.tracer)

/** Whether spans are worth creating under `tracer`. */
export const spansOn = (tracing: Tracing | undefined, tracer: Tracer.Tracer): boolean =>
  tracing === "always" || (tracing !== "never" && tracer !== nativeTracer)

/**
 * Turns an admission (route + fault) into the exact bytes and timing to send: a complete body, a
 * chunked body made of writes, sleeps and an optional abort, a connection reset, or a hang. Pure — the
 * HTTP layer only executes the plan — so every fault's wire output is testable without a socket.
 *
 * @internal
 */
import type { Fault } from "../Scenario.js"
import { answerFor, estimateTokens, splitDeltas } from "./content.js"
import type { Admission } from "./engine.js"
import { type ChatRequest, promptTokens } from "./request.js"
import { httpDate } from "./timeFormat.js"
import type { Completion, CompletionToolCall, ErrorSpec, Frame, RateLimitView, Wire } from "./wire.js"

/** One step of a chunked body. */
export type Step =
  | { readonly _tag: "Write"; readonly data: Frame }
  | { readonly _tag: "Sleep"; readonly ms: number }
  /** Silence until the client or the server closes the connection. */
  | { readonly _tag: "Forever" }
  /** End the TCP connection mid-body (after flushing what was written). */
  | { readonly _tag: "Abort" }

/** What to do for one request. */
export type Plan =
  | { readonly _tag: "Reset" }
  | { readonly _tag: "Hang" }
  | {
    readonly _tag: "Body"
    readonly status: number
    readonly contentType: string
    readonly headers: Readonly<Record<string, string>>
    readonly body: string
    /** Extra delay before the response (slow_first_token on a non-stream request). */
    readonly delayMs: number
  }
  | {
    readonly _tag: "Chunked"
    readonly status: number
    readonly contentType: string
    readonly headers: Readonly<Record<string, string>>
    readonly steps: ReadonlyArray<Step>
  }

/** The HTTP status a plan answers with, or null when no response is sent. */
export const statusOf = (plan: Plan): number | null => plan._tag === "Reset" || plan._tag === "Hang" ? null : plan.status

/** Everything a plan depends on. */
export interface PlanInput {
  readonly wire: Wire
  readonly request: ChatRequest
  readonly admission: Admission
  readonly requestId: string
  readonly responseId: string
  /** Effect-clock time of the decision (epoch ms): `created`, HTTP-dates, RFC 3339 resets. */
  readonly nowMs: number
}

const JSON_TYPE = "application/json"
const SSE_TYPE = "text/event-stream; charset=utf-8"

const write = (data: Frame): Step => ({ _tag: "Write", data })

/** Seconds as a header value: integers stay integers, fractions keep up to three decimals. */
const seconds = (s: number): string => String(Math.round(s * 1000) / 1000)

/** Builds the answer (text and tool calls) for a content-bearing fault. */
const completionFor = (input: PlanInput, fault: Fault): Completion => {
  const { admission, request } = input
  const routeContent = admission.route.config.content
  const content = fault.kind === "ok" && fault.content !== undefined ? fault.content : routeContent
  const answer = answerFor(content, fault, request)
  // Neutral, seeded ids: each wire adds its provider's prefix.
  const idBase = input.responseId.replace(/[^A-Za-z0-9]/g, "").slice(-16)
  const toolCalls: Array<CompletionToolCall> = answer.calls.map((call, i) => ({
    id: `${idBase}${i}`,
    name: call.name,
    arguments: call.arguments,
    argumentDeltas: splitDeltas(call.arguments)
  }))
  return {
    id: input.responseId,
    model: request.model,
    created: Math.floor(input.nowMs / 1000),
    text: answer.text,
    deltas: splitDeltas(answer.text),
    toolCalls,
    forcedTool: request.forcedTool !== undefined,
    finish: answer.finish,
    promptTokens: promptTokens(request),
    completionTokens: estimateTokens(answer.text) + toolCalls.reduce((n, call) => n + estimateTokens(call.arguments), 0)
  }
}

/** Rate-limit headers plus request id and versions, as every model-call response carries them. */
const baseHeaders = (input: PlanInput, view: RateLimitView): Record<string, string> => ({
  [input.wire.requestIdHeader]: input.requestId,
  ...input.wire.headers(view, input.nowMs, input.admission.latencyMs)
})

const withShouldRetry = (headers: Record<string, string>, fault: Fault): Record<string, string> =>
  "shouldRetry" in fault && fault.shouldRetry !== undefined
    ? { ...headers, "x-should-retry": String(fault.shouldRetry) }
    : headers

const errorPlan = (
  input: PlanInput,
  spec: ErrorSpec,
  view: RateLimitView,
  extraHeaders: Record<string, string>
): Plan => {
  const rendered = input.wire.error(spec, input.requestId)
  return {
    _tag: "Body",
    status: rendered.status,
    contentType: JSON_TYPE,
    headers: { ...baseHeaders(input, view), ...rendered.headers, ...extraHeaders },
    body: rendered.body,
    delayMs: 0
  }
}

/** The wait hint of a scripted `rate_limit` fault, in ms, for the reset headers and the message. */
const hintMs = (fault: Extract<Fault, { kind: "rate_limit" }>, nowMs: number): number | undefined => {
  if (fault.retryAfterMs !== undefined) return fault.retryAfterMs
  if (fault.retryAfterSeconds !== undefined) return fault.retryAfterSeconds * 1000
  if (typeof fault.retryAfterDate === "number") return fault.retryAfterDate * 1000
  if (typeof fault.retryAfterDate === "string") return Math.max(0, Date.parse(fault.retryAfterDate) - nowMs)
  return undefined
}

/** The HTTP error a stream-only error fault becomes on a non-stream request. */
const streamErrorSpec = (
  input: PlanInput,
  fault: Extract<Fault, { kind: "stream_error" }>,
  view: RateLimitView
): ErrorSpec => {
  const overrides = { message: fault.message, type: fault.errorType, code: fault.errorCode }
  switch (fault.error ?? "overloaded") {
    case "overloaded":
      return { kind: "overloaded", status: 529, ...overrides }
    case "server_error":
      return { kind: "server_error", ...overrides }
    case "rate_limit":
      return {
        kind: "rate_limit",
        limitType: "requests",
        model: input.request.model,
        limit: view.requests.limit,
        used: view.requests.limit,
        requested: 1,
        waitMs: 1000,
        tooLarge: false,
        ...overrides
      }
  }
}

const zeroed = (view: RateLimitView, limitType: "requests" | "tokens", resetMs: number): RateLimitView => ({
  ...view,
  [limitType]: { limit: view[limitType].limit, remaining: 0, resetMs }
})

/** Plans the response for an admitted model call. */
export const planResponse = (input: PlanInput): Plan => {
  const { admission, request, wire } = input
  const fault = admission.fault
  const view = admission.view
  switch (fault.kind) {
    case "connection_reset":
      return { _tag: "Reset" }
    case "hang_before_headers":
      return { _tag: "Hang" }
    case "rate_limit": {
      const limitType = fault.limitType ?? "requests"
      const capacity = admission.capacity
      if (capacity !== undefined) {
        // The bucket said no: the message, retry-after and headers all come from the real bucket.
        const headers: Record<string, string> = capacity.waitMs === undefined
          ? {}
          : { "retry-after": String(Math.max(1, Math.ceil(capacity.waitMs / 1000))) }
        const spec: ErrorSpec = { kind: "rate_limit", model: request.model, ...capacity }
        return errorPlan(input, spec, view, withShouldRetry(headers, fault))
      }
      const wait = hintMs(fault, input.nowMs)
      const headers: Record<string, string> = {}
      if (fault.retryAfterMs !== undefined) headers["retry-after-ms"] = seconds(fault.retryAfterMs)
      if (fault.retryAfterSeconds !== undefined) headers["retry-after"] = seconds(fault.retryAfterSeconds)
      if (typeof fault.retryAfterDate === "string") headers["retry-after"] = fault.retryAfterDate
      if (typeof fault.retryAfterDate === "number") {
        headers["retry-after"] = httpDate(input.nowMs + fault.retryAfterDate * 1000)
      }
      const shown = zeroed(view, limitType, wait ?? 1000)
      const spec: ErrorSpec = {
        kind: "rate_limit",
        limitType,
        model: request.model,
        limit: shown[limitType].limit,
        used: shown[limitType].limit,
        requested: limitType === "requests" ? 1 : admission.tokensRequested,
        waitMs: wait ?? 1000,
        tooLarge: false,
        message: fault.message
      }
      return errorPlan(input, spec, shown, withShouldRetry(headers, fault))
    }
    case "insufficient_quota":
      return errorPlan(input, { kind: "insufficient_quota", message: fault.message }, view, withShouldRetry({}, fault))
    case "billing":
      return errorPlan(input, { kind: "billing", message: fault.message }, view, withShouldRetry({}, fault))
    case "overloaded": {
      const headers: Record<string, string> = fault.retryAfterSeconds === undefined
        ? {}
        : { "retry-after": seconds(fault.retryAfterSeconds) }
      const spec: ErrorSpec = { kind: "overloaded", status: fault.status ?? 529, message: fault.message }
      return errorPlan(input, spec, view, withShouldRetry(headers, fault))
    }
    case "http_error": {
      const headers: Record<string, string> = fault.retryAfterSeconds === undefined
        ? {}
        : { "retry-after": seconds(fault.retryAfterSeconds) }
      if (fault.body !== undefined) {
        return {
          _tag: "Body",
          status: fault.status,
          contentType: fault.contentType ?? "text/plain; charset=utf-8",
          headers: withShouldRetry({ ...baseHeaders(input, view), ...headers }, fault),
          body: fault.body,
          delayMs: 0
        }
      }
      const overrides = { message: fault.message, type: fault.errorType, code: fault.errorCode, param: fault.param }
      const spec: ErrorSpec = fault.reason === "context_length"
        ? (() => {
          const contextWindow = fault.contextWindow ?? wire.defaultContextWindow
          // Report a size over the window even though our estimate is small: the message must make sense.
          const requestedTokens = Math.max(admission.tokensRequested, contextWindow + 1)
          return { kind: "context_length" as const, contextWindow, requestedTokens, ...overrides }
        })()
        : { kind: "http", status: fault.status, model: request.model, ...overrides }
      return errorPlan(input, spec, view, withShouldRetry(headers, fault))
    }
    case "stream_error":
      if (!request.stream) return errorPlan(input, streamErrorSpec(input, fault, view), view, {})
      break
    default:
      break
  }
  return request.stream ? planStream(input, fault) : planJson(input, fault)
}

const half = (body: string): readonly [string, string] => {
  const cut = Math.floor(body.length / 2)
  return [body.slice(0, cut), body.slice(cut)]
}

const planJson = (input: PlanInput, fault: Fault): Plan => {
  const completion = completionFor(input, fault)
  const headers = baseHeaders(input, input.admission.view)
  const body = input.wire.completion(completion)
  const chunked = (steps: ReadonlyArray<Step>): Plan => ({
    _tag: "Chunked",
    status: 200,
    contentType: JSON_TYPE,
    headers,
    steps
  })
  switch (fault.kind) {
    case "slow_first_token":
      return { _tag: "Body", status: 200, contentType: JSON_TYPE, headers, body, delayMs: fault.delayMs }
    case "stall_mid_stream": {
      const [first, rest] = half(body)
      const pause: Step = fault.delayMs === undefined ? { _tag: "Forever" } : { _tag: "Sleep", ms: fault.delayMs }
      return chunked([write(first), pause, write(rest)])
    }
    case "stream_cut": {
      const [first] = half(body)
      return chunked(fault.abort === true ? [write(first), { _tag: "Abort" }] : [write(first)])
    }
    case "malformed_json":
      return {
        _tag: "Body",
        status: 200,
        contentType: JSON_TYPE,
        headers,
        body: fault.body ?? input.wire.malformedBody(completion),
        delayMs: 0
      }
    default:
      return { _tag: "Body", status: 200, contentType: JSON_TYPE, headers, body, delayMs: 0 }
  }
}

const planStream = (input: PlanInput, fault: Fault): Plan => {
  const { admission, request, wire } = input
  const completion = completionFor(input, fault)
  const frames = wire.stream(completion, request.includeUsage)
  const gap = admission.route.config.deltaDelayMs ?? 0
  const deltas = (from: number, to?: number): Array<Step> =>
    frames.deltas.slice(from, to).flatMap((frame, i) => (gap > 0 && (i > 0 || from > 0) ? [{ _tag: "Sleep", ms: gap } as const, write(frame)] : [write(frame)]))
  const head = frames.head.map(write)
  const tail = frames.tail.map(write)
  const afterDeltas = fault.kind === "stall_mid_stream" || fault.kind === "stream_error" || fault.kind === "stream_cut"
    ? fault.afterDeltas ?? 1
    : 0
  const after = Math.min(afterDeltas, frames.deltas.length)
  let steps: Array<Step>
  switch (fault.kind) {
    case "slow_first_token":
      steps = [...head, { _tag: "Sleep", ms: fault.delayMs }, ...deltas(0), ...tail]
      break
    case "stall_mid_stream":
      steps = [
        ...head,
        ...deltas(0, after),
        fault.delayMs === undefined ? { _tag: "Forever" } : { _tag: "Sleep", ms: fault.delayMs },
        ...deltas(after),
        ...tail
      ]
      break
    case "stream_error": {
      const spec = streamErrorSpec(input, fault, admission.view)
      steps = [...head, ...deltas(0, after), write(wire.streamError(spec, input.requestId))]
      break
    }
    case "stream_cut":
      steps = [...head, ...deltas(0, after), ...(fault.abort === true ? [{ _tag: "Abort" } as const] : [])]
      break
    case "malformed_json":
      steps = [
        ...head,
        ...deltas(0, Math.min(1, frames.deltas.length)),
        write(fault.body === undefined ? wire.malformedFrame(completion) : wire.rawFrame(fault.body))
      ]
      break
    default:
      steps = [...head, ...deltas(0), ...tail]
  }
  return {
    _tag: "Chunked",
    status: 200,
    contentType: wire.streamContentType ?? SSE_TYPE,
    headers: { ...baseHeaders(input, admission.view), "cache-control": "no-cache" },
    steps
  }
}

/**
 * The transport-independent half of answering a request: parse the body, admit it through the engine
 * (route, outage, capacity, script/mix), plan the bytes, and record it in the stats — in one
 * synchronous step. The ChaosServer executes the result on a Node socket; the ChaosProvider executes
 * the very same result in memory. Keeping this here is what makes both speak one fault model.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { type Api, decodeUnknown, type Scenario, type ScenarioError } from "../Scenario.js"
import { anthropicWire } from "./anthropicWire.js"
import { bedrockWire } from "./bedrockWire.js"
import type { Admission, Engine } from "./engine.js"
import { geminiWire } from "./geminiWire.js"
import { openaiWire } from "./openaiWire.js"
import { responsesWire } from "./responsesWire.js"
import { type Plan, planResponse, statusOf, type Step } from "./plan.js"
import { parseChatRequest, type PathFacts } from "./request.js"
import type { ErrorSpec, Wire } from "./wire.js"

const wires: Readonly<Record<Api, Wire>> = {
  openai: openaiWire,
  responses: responsesWire,
  anthropic: anthropicWire,
  gemini: geminiWire,
  bedrock: bedrockWire
}

/** The wire format of an API. */
export const wireOf = (api: Api): Wire => wires[api]

/** A model call as its URL names it: the wire format, and what the path says (model, streaming). */
export interface ModelCall {
  readonly api: Api
  readonly path: PathFacts
}

const AZURE_DEPLOYMENT = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/
/** `models/{model}:generateContent` under any API version (`v1beta`, `v1`). */
const GEMINI = /^\/v1[a-z0-9]*\/models\/([^/:]+):(generateContent|streamGenerateContent)$/
const BEDROCK = /^\/model\/([^/]+)\/(converse|converse-stream)$/

const decodeSegment = (segment: string): string | undefined => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

/**
 * The model call a `POST` to `path` (without its query) is, or `undefined` when the path serves none.
 * One table for the socket server and the in-memory client: OpenAI Chat and Responses (also under
 * Azure's `/openai/v1/`, `/openai/` and `/openai/deployments/{deployment}/` paths — where the
 * `AzureOpenAI` client sends them —, the deployment standing for the model), Anthropic Messages,
 * Gemini `/v1beta/models/{model}:generateContent` / `:streamGenerateContent` and Bedrock
 * `/model/{modelId}/converse` / `/converse-stream` (model and streaming mode from the path).
 */
export const modelCallOf = (method: string, path: string): ModelCall | undefined => {
  if (method !== "POST") return undefined
  switch (path) {
    case "/v1/chat/completions":
    case "/openai/v1/chat/completions":
      return { api: "openai", path: {} }
    case "/v1/responses":
    case "/openai/v1/responses":
    case "/openai/responses":
      return { api: "responses", path: {} }
    case "/v1/messages":
      return { api: "anthropic", path: {} }
  }
  const deployment = AZURE_DEPLOYMENT.exec(path)?.[1]
  if (deployment !== undefined) {
    const model = decodeSegment(deployment)
    return model === undefined ? undefined : { api: "openai", path: { model } }
  }
  const gemini = GEMINI.exec(path)
  if (gemini !== null) {
    const model = decodeSegment(gemini[1]!)
    return model === undefined ? undefined : { api: "gemini", path: { model, stream: gemini[2] === "streamGenerateContent" } }
  }
  const bedrock = BEDROCK.exec(path)
  if (bedrock !== null) {
    const model = decodeSegment(bedrock[1]!)
    return model === undefined ? undefined : { api: "bedrock", path: { model, stream: bedrock[2] === "converse-stream" } }
  }
  return undefined
}

/** The format to answer a request that is no model call in (a model list, a 404): Anthropic's when its headers say so. */
export const apiOfOtherRequest = (path: string, headers: Readonly<Record<string, string | undefined>>): Api =>
  path.startsWith("/v1/messages") || headers["anthropic-version"] !== undefined ? "anthropic" : "openai"

/** A complete response decided without the fault model (bad body, unknown path, model list). */
export interface Immediate {
  readonly _tag: "Immediate"
  readonly status: number
  readonly contentType: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** A model call the engine admitted: what to send, and the slot to free when the response is done. */
export interface Admitted {
  readonly _tag: "Admitted"
  readonly admission: Admission
  readonly plan: Plan
}

const JSON_TYPE = "application/json"
const encoder = new TextEncoder()

/** Records a request the server answered itself (source `server`, no route). */
const recordServerAnswer = (
  engine: Engine,
  api: Api,
  fault: "invalid_request" | "unknown_path" | "models",
  status: number,
  requestId: string,
  nowMs: number
): void =>
  engine.record({
    seq: engine.nextSeq(),
    at: engine.since(nowMs),
    api,
    route: "(server)",
    model: null,
    fault,
    source: "server",
    status,
    stream: false,
    requestId,
    media: []
  })

const immediateJson = (
  wire: Wire,
  status: number,
  requestId: string,
  body: string,
  headers?: Readonly<Record<string, string>>
): Immediate => ({
  _tag: "Immediate",
  status,
  contentType: JSON_TYPE,
  headers: { [wire.requestIdHeader]: requestId, ...headers },
  body
})

/** A request the server answers itself, in the provider's error shape. */
export const rejectRequest = (
  engine: Engine,
  api: Api,
  fault: "invalid_request" | "unknown_path",
  spec: ErrorSpec,
  nowMs: number
): Immediate => {
  const wire = wireOf(api)
  const requestId = wire.requestId(engine.idRng)
  const rendered = wire.error(spec, requestId)
  recordServerAnswer(engine, api, fault, rendered.status, requestId, nowMs)
  return immediateJson(wire, rendered.status, requestId, rendered.body, rendered.headers)
}

/** `GET /v1/models` in the API's list format (recorded with fault `models`). */
export const listModels = (engine: Engine, api: Api, nowMs: number): Immediate => {
  const wire = wireOf(api)
  const requestId = wire.requestId(engine.idRng)
  recordServerAnswer(engine, api, "models", 200, requestId, nowMs)
  return immediateJson(wire, 200, requestId, wire.models(engine.models(), nowMs))
}

/** A path the server does not serve: 404 in the format the path or headers suggest. */
export const unknownPath = (engine: Engine, api: Api, method: string, path: string, nowMs: number): Immediate =>
  rejectRequest(engine, api, "unknown_path", { kind: "unknown_path", method, path }, nowMs)

/**
 * Decides the answer to a chat request body (`POST /v1/chat/completions` or `/v1/messages`). The caller
 * must eventually call `admission.release()` (idempotent) when the response is finished or abandoned.
 */
export const serveChat = (engine: Engine, call: ModelCall, body: string, nowMs: number): Immediate | Admitted => {
  const api = call.api
  const parsed = parseChatRequest(api, body, call.path)
  if (parsed._tag === "Left") {
    return rejectRequest(engine, api, "invalid_request", { kind: "invalid_request", ...parsed.problem }, nowMs)
  }
  const request = parsed.request
  const wire = wireOf(api)
  const admission = engine.admit(request, nowMs)
  const requestId = wire.requestId(engine.idRng)
  const plan = planResponse({
    wire,
    request,
    admission,
    requestId,
    responseId: wire.responseId(engine.idRng),
    nowMs
  })
  engine.record({
    seq: admission.seq,
    at: admission.at,
    api,
    route: admission.route.name,
    model: request.model,
    fault: admission.fault.kind,
    source: admission.source,
    status: statusOf(plan),
    stream: request.stream,
    requestId,
    media: request.media
  })
  return { _tag: "Admitted", admission, plan }
}

/**
 * A chunked body from its steps. `abort` is how the transport breaks a connection mid-body (the server
 * closes its socket; the in-memory client fails the body stream the way undici reports it).
 */
export const chunkedBody = <E>(steps: ReadonlyArray<Step>, abort: () => Stream.Stream<never, E>): Stream.Stream<Uint8Array, E> =>
  Stream.flatMap(Stream.fromIterable(steps), (step): Stream.Stream<Uint8Array, E> => {
    switch (step._tag) {
      case "Write":
        return Stream.succeed(typeof step.data === "string" ? encoder.encode(step.data) : step.data)
      case "Sleep":
        return Stream.drain(Stream.fromEffect(Effect.sleep(Duration.millis(step.ms))))
      case "Forever":
        return Stream.never
      case "Abort":
        return abort()
    }
  })

/** The controls both kits expose over an engine (stats, reset, scenario), with time from `clock`. */
export const controlsOf = (engine: Engine, clock: Clock.Clock) => {
  const nowMs = clock.currentTimeMillis
  return {
    stats: Effect.sync(() => engine.stats()),
    reset: Effect.flatMap(nowMs, (t) => Effect.sync(() => engine.reset(t))),
    setScenario: (next: Scenario): Effect.Effect<void, ScenarioError> =>
      Effect.flatMap(
        decodeUnknown(next, "setScenario"),
        (decoded) => Effect.flatMap(nowMs, (t) => Effect.sync(() => engine.setScenario(decoded, t)))
      ),
    scenario: Effect.sync(() => engine.scenario)
  }
}

/**
 * A local HTTP server that speaks the real OpenAI Chat Completions, OpenAI Responses and Anthropic
 * Messages wire formats
 * and fails on demand: rate limits with real Retry-After and rate-limit headers, quota and billing
 * errors, overload, any 4xx/5xx in the provider's shape, connection resets, hangs, slow first tokens,
 * stalls, errors inside 200 streams, streams cut before their terminator, malformed and off-contract
 * bodies — chosen per route by a script, a seeded random mix, a token-bucket capacity model, a
 * concurrency cap and outage windows (see `Scenario` and docs/chaos-server.md).
 *
 * Point any client at it (`openAiBaseUrl` for OpenAI SDKs — `chat.completions` and `responses` —,
 * `anthropicBaseUrl` for Anthropic SDKs) and
 * read what it served from `stats` or `GET /__chaos/stats`.
 *
 * Time comes from the Effect `Clock` in the context where `make` runs: under `TestClock` the outage
 * windows, bucket refills and latencies follow `TestClock.adjust`.
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as http from "node:http"
import { Engine } from "./internal/engine.js"
import type { Plan } from "./internal/plan.js"
import {
  apiOfOtherRequest,
  chunkedBody,
  controlsOf,
  type Immediate,
  listModels,
  type ModelCall,
  modelCallOf,
  serveChat,
  unknownPath
} from "./internal/serve.js"
import * as Scenario from "./Scenario.js"

// ---------------------------------------------------------------------------------------------------
// Public model
// ---------------------------------------------------------------------------------------------------

/**
 * Where a served fault came from: the route's `script`, its random `mix`, the `default` (ok), the
 * capacity model (`rpm`/`tpm`), the `concurrency` cap, an `outage` window, the route's `contextWindow`
 * (a prompt that does not fit), or the `server` itself (bad request body, unknown path, model list).
 *
 * @since 0.1.0
 * @category models
 */
export type FaultSource = "script" | "mix" | "default" | "capacity" | "concurrency" | "outage" | "context" | "server"

/**
 * An image or file content part the server understood in a request, in any of the wire formats:
 * OpenAI `image_url` / `file` (Chat) and `input_image` / `input_file` (Responses), Anthropic `image` /
 * `document` (also inside `tool_result`), Gemini `inlineData` / `fileData`, Bedrock `image` / `document`
 * (also inside `toolResult`).
 *
 * - `mediaType`: as the request states it (a `data:` URL's type, `media_type`, `mimeType`, Bedrock's
 *   `format` as a media type), else what a file name's extension implies, else null.
 * - `source`: `base64` (inline data, OpenAI `data:` URLs included), `url`, `file_id` (an uploaded file:
 *   OpenAI / Anthropic file ids, Gemini Files API URIs), `s3` (Bedrock `s3Location`), or `text` (an
 *   inline plain-text document: Anthropic `text` / `content` sources, Bedrock `text` / `content`).
 * - `bytes`: the decoded size of base64 data, computed from its length and padding (never decoded);
 *   the UTF-8 size of inline text; null when the server never sees the bytes (URL, file id, S3).
 *
 * @since 0.1.0
 * @category models
 */
export interface MediaSeen {
  readonly kind: "image" | "file"
  readonly mediaType: string | null
  readonly source: "url" | "base64" | "file_id" | "s3" | "text"
  readonly bytes: number | null
}

/**
 * What a log entry says was served: a scenario fault kind, or `invalid_request` (a body the provider
 * would reject), `unknown_path` (404), `models` (`GET /v1/models`).
 *
 * @since 0.1.0
 * @category models
 */
export type ServedKind = Scenario.FaultKind | "invalid_request" | "unknown_path" | "models"

/**
 * One served request.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChaosLogEntry {
  /** 1-based, in admission order; restarts at 1 after a reset. */
  readonly seq: number
  /** Milliseconds since the server started (or was last reset), by the Effect clock. */
  readonly at: number
  readonly api: Scenario.Api
  /** The route's name (`routes[i]` when unnamed, `default`, or `(server)`). */
  readonly route: string
  readonly model: string | null
  readonly fault: ServedKind
  readonly source: FaultSource
  /** The HTTP status sent, or null when none was (connection reset, hang). */
  readonly status: number | null
  readonly stream: boolean
  readonly requestId: string | null
  /** The image and file parts the server understood in the request (empty for bodies it rejected). */
  readonly media: ReadonlyArray<MediaSeen>
}

/**
 * Counters and the ordered log of what was served (the log keeps the last `logLimit` entries).
 *
 * @since 0.1.0
 * @category models
 */
export interface ChaosStats {
  readonly total: number
  /** Requests holding a concurrency slot right now. */
  readonly inFlight: number
  readonly byApi: Readonly<Record<string, number>>
  readonly byRoute: Readonly<Record<string, number>>
  /** Keyed by status code as a string, `none` for resets and hangs. */
  readonly byStatus: Readonly<Record<string, number>>
  readonly byFault: Readonly<Record<string, number>>
  readonly bySource: Readonly<Record<string, number>>
  readonly log: ReadonlyArray<ChaosLogEntry>
  /** Entries dropped from the front of the log because of `logLimit`. */
  readonly logDropped: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ChaosServerOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  readonly port?: number
  /** Interface to bind; default `127.0.0.1`. */
  readonly host?: string
  /** The initial scenario (validated); default `Scenario.empty` (every call answered ok). */
  readonly scenario?: Scenario.Scenario
  /** How many log entries `stats` keeps (default 10 000). */
  readonly logLimit?: number
}

/**
 * A running chaos server.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChaosServerHandle {
  readonly port: number
  /** `http://HOST:PORT` */
  readonly url: string
  /** `url + "/v1"`, the OpenAI SDK's `baseURL`. */
  readonly openAiBaseUrl: string
  /** `url`, the Anthropic SDK's `baseURL`. */
  readonly anthropicBaseUrl: string
  readonly stats: Effect.Effect<ChaosStats>
  /** Clears stats and restarts scripts, PRNG streams, buckets and the outage clock. */
  readonly reset: Effect.Effect<void>
  /** Validates and installs a new scenario, restarting its state (stats are kept). */
  readonly setScenario: (scenario: Scenario.Scenario) => Effect.Effect<void, Scenario.ScenarioError>
  readonly scenario: Effect.Effect<Scenario.Scenario>
}

/**
 * The server could not start: the port could not be bound (`Listen`) or the scenario is invalid.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChaosServerError extends Schema.TaggedError<ChaosServerError>()("ChaosServerError", {
  reason: Schema.Literal("Listen", "InvalidScenario"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * The chaos server as a service, for tests that provide it with `layer`.
 *
 * @since 0.1.0
 * @category tags
 */
export class ChaosServer extends Context.Tag("effect-llm-resilience/testing/ChaosServer")<
  ChaosServer,
  ChaosServerHandle
>() {}

// ---------------------------------------------------------------------------------------------------
// HTTP handlers
// ---------------------------------------------------------------------------------------------------

const jsonResponse = (status: number, value: unknown) =>
  HttpServerResponse.text(JSON.stringify(value, null, 2), { status, contentType: "application/json" })

const immediate = (answer: Immediate) =>
  HttpServerResponse.text(answer.body, { status: answer.status, contentType: answer.contentType, headers: answer.headers })

/** Waits for the Node response to close (client gone, socket destroyed, or server shut down). */
const awaitClose = (res: http.ServerResponse): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (res.socket === null || res.socket.destroyed) return resume(Effect.void)
    const onClose = () => resume(Effect.void)
    res.once("close", onClose)
    return Effect.sync(() => res.off("close", onClose))
  })

/** Turns a plan into a response (or into a reset / hang, which never return one). */
const execute = (plan: Plan, request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    switch (plan._tag) {
      case "Reset": {
        const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
        // RST rather than FIN: the client sees ECONNRESET, like a dropped load-balancer connection.
        // `resetAndDestroy` throws on non-TCP handles; plain destruction is the next best thing.
        yield* Effect.sync(() => {
          try {
            socket.resetAndDestroy()
          } catch {
            socket.destroy()
          }
        })
        return yield* Effect.never
      }
      case "Hang":
        // Interrupted by the platform when the client goes away, or by the scope closing the sockets.
        return yield* Effect.never
      case "Body":
        if (plan.delayMs > 0) yield* Effect.sleep(Duration.millis(plan.delayMs))
        return HttpServerResponse.text(plan.body, {
          status: plan.status,
          contentType: plan.contentType,
          headers: plan.headers
        })
      case "Chunked": {
        const res = NodeHttpServerRequest.toServerResponse(request)
        // `end()` on the socket flushes what was written, then closes the TCP connection in the middle
        // of the chunked body: the client sees the body break (not a clean end of stream).
        const abort = () =>
          Stream.drain(Stream.fromEffect(Effect.zipRight(Effect.sync(() => res.socket?.end()), awaitClose(res)))).pipe(
            Stream.concat(Stream.never)
          )
        const body = chunkedBody(plan.steps, abort)
        return HttpServerResponse.stream(body, {
          status: plan.status,
          contentType: plan.contentType,
          headers: plan.headers
        })
      }
    }
  })

const readBody = (request: HttpServerRequest.HttpServerRequest) => Effect.orElseSucceed(request.text, () => "")

const makeApp = (engine: Engine) => {
  const now = Effect.clockWith((clock) => clock.currentTimeMillis)

  const chat = (call: ModelCall, request: HttpServerRequest.HttpServerRequest) =>
    Effect.gen(function*() {
      const body = yield* readBody(request)
      const nowMs = yield* now
      const res = NodeHttpServerRequest.toServerResponse(request)
      const answer = yield* Effect.sync(() => {
        const answer = serveChat(engine, call, body, nowMs)
        if (answer._tag === "Admitted") {
          // The slot is held until the response is finished or the connection drops, whichever the fault
          // (`release` is idempotent; `finish` comes first on a clean end, `close` on a dropped connection).
          const release = answer.admission.release
          res.once("finish", release)
          res.once("close", release)
          if (res.socket === null || res.socket.destroyed) release()
        }
        return answer
      })
      if (answer._tag === "Immediate") return immediate(answer)
      if (answer.admission.latencyMs > 0) yield* Effect.sleep(Duration.millis(answer.admission.latencyMs))
      return yield* execute(answer.plan, request)
    })

  const models = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const api = apiOfOtherRequest("/v1/models", request.headers)
    const nowMs = yield* now
    return immediate(yield* Effect.sync(() => listModels(engine, api, nowMs)))
  })

  /** Every other request: a model call when `modelCallOf` knows its path, else a 404 in the format it suggests. */
  const dispatch = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const path = request.url.split("?")[0] ?? request.url
    const call = modelCallOf(request.method, path)
    if (call !== undefined) return yield* chat(call, request)
    const api = apiOfOtherRequest(path, request.headers)
    const nowMs = yield* now
    return immediate(yield* Effect.sync(() => unknownPath(engine, api, request.method, path, nowMs)))
  })

  const setScenarioRoute = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const body = yield* readBody(request)
    const nowMs = yield* now
    return yield* Scenario.fromJson(body, "POST /__chaos/scenario").pipe(
      Effect.flatMap((scenario) => Effect.sync(() => engine.setScenario(scenario, nowMs))),
      Effect.as(jsonResponse(200, { ok: true })),
      Effect.catchTag("ScenarioError", (error) =>
        Effect.succeed(jsonResponse(400, { error: { message: error.message, issues: error.issues } })))
    )
  })

  return HttpRouter.empty.pipe(
    HttpRouter.get("/v1/models", models),
    HttpRouter.get("/__chaos/stats", Effect.sync(() => jsonResponse(200, engine.stats()))),
    HttpRouter.get("/__chaos/scenario", Effect.sync(() => jsonResponse(200, engine.scenario))),
    HttpRouter.post(
      "/__chaos/reset",
      Effect.flatMap(now, (nowMs) => Effect.sync(() => engine.reset(nowMs))).pipe(Effect.as(jsonResponse(200, { ok: true })))
    ),
    HttpRouter.post("/__chaos/scenario", setScenarioRoute),
    HttpRouter.all("*", dispatch)
  )
}

// ---------------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------------

/**
 * Starts a chaos server on `options.port` (default: a free port) on 127.0.0.1. Closing the scope stops
 * it and destroys every connection, including ones a `hang_before_headers` or stalled stream holds.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ChaosServerOptions = {}
): Effect.Effect<ChaosServerHandle, ChaosServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const scenario = yield* Scenario.decodeUnknown(options.scenario ?? Scenario.empty, "ChaosServer options.scenario").pipe(
      Effect.mapError((cause) => new ChaosServerError({ reason: "InvalidScenario", message: cause.message, cause }))
    )
    const clock = yield* Effect.clock
    const engine = new Engine(scenario, yield* clock.currentTimeMillis, options.logLimit ?? 10_000)
    const host = options.host ?? "127.0.0.1"
    const requestedPort = options.port ?? 0
    if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65_535) {
      // Node throws synchronously on a bad port; make it a typed failure, not a defect.
      return yield* new ChaosServerError({ reason: "Listen", message: `invalid port: ${requestedPort}` })
    }

    let nodeServer: http.Server | undefined
    const server = yield* NodeHttpServer.make(() => {
      nodeServer = http.createServer()
      return nodeServer
    }, { port: requestedPort, host }).pipe(
      Effect.mapError((error) =>
        new ChaosServerError({
          reason: "Listen",
          message: `cannot listen on ${host}:${requestedPort}: ${String(error.cause)}`,
          cause: error
        })
      )
    )
    // Runs before the platform's own finalizer (finalizers run in reverse): stop accepting, then destroy
    // every socket, so `server.close` does not wait forever on hung or stalled responses.
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        const s = nodeServer
        if (s === undefined || !s.listening) return resume(Effect.void)
        s.close(() => resume(Effect.void))
        s.closeAllConnections()
      })
    )
    yield* server.serve(makeApp(engine))

    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`
    return {
      port,
      url,
      openAiBaseUrl: `${url}/v1`,
      anthropicBaseUrl: url,
      ...controlsOf(engine, clock)
    } satisfies ChaosServerHandle
  })

/**
 * A scoped layer providing `ChaosServer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ChaosServerOptions = {}): Layer.Layer<ChaosServer, ChaosServerError> =>
  Layer.scoped(ChaosServer, make(options))

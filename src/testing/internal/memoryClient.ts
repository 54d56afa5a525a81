/**
 * An `HttpClient` that answers from the chaos engine without a socket: the same admission and plan as
 * the ChaosServer (see `serve.ts`), executed in memory. Delays are `Effect.sleep`s on the caller's
 * clock, so under `TestClock` every latency, slow first token and stall moves only with the test.
 *
 * Transport faults become what undici reports for them, so the adapters classify them exactly as they
 * do over a real socket: a reset before headers is `ECONNRESET`, a body aborted mid-way is
 * `UND_ERR_SOCKET` ("other side closed"), a hang is a request that never answers.
 *
 * @internal
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Engine } from "./engine.js"
import type { Plan } from "./plan.js"
import { apiOfOtherRequest, chunkedBody, type Immediate, listModels, modelCallOf, serveChat, unknownPath } from "./serve.js"

/** The origin the in-memory client answers for (any origin works; this one reads well in errors). */
export const MEMORY_ORIGIN = "http://chaos.invalid"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A Node-style socket error, shaped like the ones undici raises (what `Classify.fromTransport` reads). */
const socketError = (code: string, message: string): Error => Object.assign(new Error(message), { code })

const requestText = (request: HttpClientRequest.HttpClientRequest): string => {
  const body = request.body
  switch (body._tag) {
    case "Uint8Array":
      return decoder.decode(body.body)
    case "Raw":
      return typeof body.body === "string" ? body.body : ""
    default:
      // Form data and streamed bodies are never what a chat API accepts: answered as unparsable JSON.
      return ""
  }
}

const respond = (
  request: HttpClientRequest.HttpClientRequest,
  status: number,
  headers: Readonly<Record<string, string>>,
  body: string | ReadableStream<Uint8Array>
): HttpClientResponse.HttpClientResponse =>
  HttpClientResponse.fromWeb(request, new Response(body, { status, headers }))

const immediate = (request: HttpClientRequest.HttpClientRequest, answer: Immediate) =>
  respond(request, answer.status, {
    ...answer.headers,
    "content-type": answer.contentType,
    "content-length": String(encoder.encode(answer.body).length)
  }, answer.body)

const execute = (
  request: HttpClientRequest.HttpClientRequest,
  plan: Plan,
  release: () => void
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> => {
  switch (plan._tag) {
    case "Reset":
      return Effect.zipRight(
        Effect.sync(release),
        Effect.fail(
          new HttpClientError.RequestError({ request, reason: "Transport", cause: socketError("ECONNRESET", "read ECONNRESET") })
        )
      )
    case "Hang":
      return Effect.never
    case "Body": {
      const answer = Effect.sync(() => {
        release()
        return respond(request, plan.status, {
          ...plan.headers,
          "content-type": plan.contentType,
          "content-length": String(encoder.encode(plan.body).length)
        }, plan.body)
      })
      return plan.delayMs > 0 ? Effect.zipRight(Effect.sleep(Duration.millis(plan.delayMs)), answer) : answer
    }
    case "Chunked": {
      const body = chunkedBody(plan.steps, () => Stream.fail(socketError("UND_ERR_SOCKET", "other side closed"))).pipe(
        Stream.ensuring(Effect.sync(release))
      )
      // The body runs on the caller's runtime (its Clock, so TestClock drives the steps' sleeps).
      return Effect.map(
        Stream.toReadableStreamEffect(body),
        (readable) => respond(request, plan.status, { ...plan.headers, "content-type": plan.contentType }, readable)
      )
    }
  }
}

/**
 * The in-memory client over `engine`. Paths are the ChaosServer's (`modelCallOf`, and `GET /v1/models`).
 */
export const memoryClient = (engine: Engine): HttpClient.HttpClient =>
  HttpClient.make((request, url, signal) =>
    Effect.flatMap(Clock.currentTimeMillis, (nowMs) => {
      const path = url.pathname
      const call = modelCallOf(request.method, path)
      if (call === undefined) {
        const api = apiOfOtherRequest(path, request.headers)
        const answer = request.method === "GET" && path === "/v1/models"
          ? listModels(engine, api, nowMs)
          : unknownPath(engine, api, request.method, path, nowMs)
        return Effect.succeed(immediate(request, answer))
      }
      const answer = serveChat(engine, call, requestText(request), nowMs)
      if (answer._tag === "Immediate") return Effect.succeed(immediate(request, answer))
      const release = answer.admission.release
      // Freed when the response is complete, or when the caller gives up (interrupt or abandoned body).
      signal.addEventListener("abort", release, { once: true })
      const latency = answer.admission.latencyMs
      const response = execute(request, answer.plan, release)
      return (latency > 0 ? Effect.zipRight(Effect.sleep(Duration.millis(latency)), response) : response).pipe(
        Effect.onInterrupt(() => Effect.sync(release))
      )
    })
  )

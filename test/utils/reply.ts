/**
 * One description of "what the wire sends back", executable on two transports: a mock `HttpClient`
 * (no socket; the adapter is fed a web `Response`) and a real local HTTP server (undici over TCP).
 * The core's must-show tests run every case on both, so a classification can never depend on which
 * client produced the bytes.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import type { Handler } from "./wireServer.js"

export type Reply =
  | {
    readonly _tag: "Http"
    readonly status: number
    readonly headers: Readonly<Record<string, string>>
    /** Written one by one (SSE frames, or pieces of a body; bytes as they are). */
    readonly chunks: ReadonlyArray<string | Uint8Array>
    /** Send `content-length` (a fixed-size body) instead of chunked transfer. */
    readonly declareLength: boolean
    /** Break the connection after the chunks instead of ending the body. */
    readonly breakAfter: boolean
  }
  | { readonly _tag: "Refused" }

export const jsonReply = (status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): Reply => ({
  _tag: "Http",
  status,
  headers: { "content-type": "application/json", ...headers },
  chunks: [typeof body === "string" ? body : JSON.stringify(body)],
  declareLength: true,
  breakAfter: false
})

export const chunkedReply = (status: number, chunks: ReadonlyArray<string | Uint8Array>, headers: Readonly<Record<string, string>> = {}): Reply => ({
  _tag: "Http",
  status,
  headers: { "content-type": "application/json", ...headers },
  chunks,
  declareLength: false,
  breakAfter: false
})

export const sseReply = (
  frames: ReadonlyArray<string | Uint8Array>,
  headers: Readonly<Record<string, string>> = {},
  options: { readonly breakAfter?: boolean } = {}
): Reply => ({
  _tag: "Http",
  status: 200,
  headers: { "content-type": "text/event-stream", ...headers },
  chunks: frames,
  declareLength: false,
  breakAfter: options.breakAfter === true
})

export const refused: Reply = { _tag: "Refused" }

const encoder = new TextEncoder()

/** A node-style socket error, as undici raises it. */
const socketError = (code: string, message: string) => Object.assign(new Error(message), { code })

/** The reply as an in-memory `HttpClient`. `requests` collects the URLs it was asked for. */
export const mockClient = (reply: Reply, requests: Array<string> = []): HttpClient.HttpClient =>
  HttpClient.make((request) => {
    requests.push(request.url)
    if (reply._tag === "Refused") {
      return Effect.fail(
        new HttpClientError.RequestError({
          request,
          reason: "Transport",
          cause: new TypeError("fetch failed", { cause: socketError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1") })
        })
      )
    }
    const bytes = reply.chunks.map((chunk) => (typeof chunk === "string" ? encoder.encode(chunk) : chunk))
    const total = bytes.reduce((n, b) => n + b.length, 0)
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const b of bytes) controller.enqueue(b)
        if (reply.breakAfter) controller.error(socketError("UND_ERR_SOCKET", "other side closed"))
        else controller.close()
      }
    })
    const headers = reply.declareLength ? { ...reply.headers, "content-length": String(total) } : reply.headers
    // 204/205/304 cannot carry a body; a client drops it, as undici does.
    const nullBody = reply.status === 204 || reply.status === 205 || reply.status === 304
    return Effect.succeed(HttpClientResponse.fromWeb(request, new Response(nullBody ? null : body, { status: reply.status, headers })))
  })

/** The reply as a handler for `wireServer`. */
export const toHandler = (reply: Reply): Handler => (_req, _body, res) => {
  if (reply._tag === "Refused") {
    res.socket?.destroy()
    return
  }
  const bytes = reply.chunks.map((chunk) => (typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk))
  const total = bytes.reduce((n, b) => n + b.length, 0)
  res.writeHead(reply.status, reply.declareLength ? { ...reply.headers, "content-length": String(total) } : reply.headers)
  res.flushHeaders()
  for (const b of bytes) res.write(b)
  // Break only once the chunks are flushed, so the client sees a body that breaks, not a reset.
  if (reply.breakAfter) res.write("", () => setImmediate(() => res.socket?.destroy()))
  else res.end()
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export const closedPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * A tiny scripted HTTP server for adapter tests: each test says exactly which bytes come back.
 * (End-to-end fault coverage runs against the ChaosServer; this keeps core tests independent of it.)
 */
import * as Effect from "effect/Effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void

export interface WireServer {
  readonly url: string
  /** Bodies of the requests received, parsed as JSON when possible. */
  readonly requests: Array<{ readonly path: string; readonly headers: http.IncomingHttpHeaders; readonly body: unknown }>
  /** TCP connections accepted so far, and the most that were open at once. */
  readonly sockets: { opened: number; open: number; maxOpen: number }
}

export const wireServer = (handler: Handler) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; state: WireServer }>((resume) => {
      const requests: WireServer["requests"] = []
      const sockets = { opened: 0, open: 0, maxOpen: 0 }
      const server = http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {
            // keep text
          }
          requests.push({ path: req.url ?? "", headers: req.headers, body })
          handler(req, text, res)
        })
      })
      server.on("connection", (socket) => {
        sockets.opened++
        sockets.open++
        sockets.maxOpen = Math.max(sockets.maxOpen, sockets.open)
        socket.once("close", () => sockets.open--)
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ server, state: { url: `http://127.0.0.1:${port}`, requests, sockets } }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ state }) => state))

/** Replies with a JSON body. */
export const json = (status: number, body: unknown, headers: Record<string, string> = {}): Handler => (_req, _body, res) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(typeof body === "string" ? body : JSON.stringify(body))
}

/** Replies with SSE frames written one by one; `end: false` leaves the socket open and then destroys it. */
export const sse = (frames: ReadonlyArray<string>, options: { readonly headers?: Record<string, string>; readonly destroy?: boolean } = {}): Handler =>
  (_req, _body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", ...options.headers })
    res.flushHeaders()
    for (const frame of frames) res.write(frame)
    // Destroy only once the frames are flushed, so the client sees a body that breaks, not a reset.
    if (options.destroy === true) res.write("", () => setImmediate(() => res.socket?.destroy()))
    else res.end()
  }

export const openAiChunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "gpt-test", choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`

export const anthropicEvent = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`

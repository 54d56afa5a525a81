/**
 * How the benches' child servers start and stop: listen on 127.0.0.1 (port from argv[2], default any),
 * print `READY <port>` for the parent (bench/lib/child.ts waits for it), and close every connection on
 * SIGTERM / SIGINT.
 */
import type * as http from "node:http"

export const serve = (server: http.Server): void => {
  server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
    const address = server.address()
    console.log(`READY ${typeof address === "object" && address !== null ? address.port : 0}`)
  })
  const shutdown = () => {
    server.closeAllConnections()
    server.close(() => process.exit(0))
  }
  process.on("SIGTERM", shutdown)
  process.on("SIGINT", shutdown)
}

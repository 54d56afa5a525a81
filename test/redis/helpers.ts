/**
 * The Redis the tests use (127.0.0.1:6379 unless REDIS_URL says otherwise; `.ci/run` starts one), its
 * gate (skip with the reason when it is down, fail when CI=true — the shared `serviceGate`), and unique
 * key prefixes / channels per test, removed afterwards.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import * as net from "node:net"
import { type Probe, serviceGate } from "../utils/serviceGate.js"

export const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"

/** A port nothing listens on: Redis "down". */
export const unreachableUrl = "redis://127.0.0.1:1"

/** A short-lived client for probing and cleaning up (not the code under test). */
const adminClient = () => {
  const client = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on("error", () => {})
  return client
}

export const probeRedis = async (): Promise<Probe> => {
  const client = adminClient()
  let cause = "" // ioredis rejects `connect()` with "Connection is closed."; the socket error says why
  client.on("error", (error: Error) => (cause = error.message))
  try {
    await client.connect()
    await client.ping()
    return { available: true, reason: "" }
  } catch (error) {
    return { available: false, reason: `Redis at ${redisUrl} is unreachable: ${cause || (error instanceof Error ? error.message : String(error))}` }
  } finally {
    client.disconnect()
  }
}

export const redisGate = (register: (name: string, fn: () => void) => void): Promise<boolean> =>
  serviceGate("Redis", "test/redis", probeRedis, register)

let counter = 0
const run = `${process.pid}-${Date.now().toString(36)}`

/** A key prefix (or channel) no other test or run uses. */
export const uniquePrefix = (label: string): string => `llmr-test:${run}:${label}:${++counter}:`

/** Deletes every key under the prefixes (SCAN, not KEYS). */
export const cleanup = async (prefixes: ReadonlyArray<string>): Promise<void> => {
  if (prefixes.length === 0) return
  const client = adminClient()
  try {
    await client.connect()
    for (const prefix of prefixes) {
      let cursor = "0"
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 100)
        if (keys.length > 0) await client.del(...keys)
        cursor = next
      } while (cursor !== "0")
    }
  } finally {
    client.disconnect()
  }
}

/** The keys under a prefix (to check that cleanup-free expiry and key layout are as documented). */
export const keysUnder = (prefix: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const client = adminClient()
    try {
      await client.connect()
      return await client.keys(`${prefix}*`)
    } finally {
      client.disconnect()
    }
  })

/** The remaining time to live (ms) of a key. */
export const pttl = (key: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    const client = adminClient()
    try {
      await client.connect()
      return await client.pttl(key)
    } finally {
      client.disconnect()
    }
  })

/** Publishes raw text on a channel (as a foreign process would). */
export const publishRaw = (channel: string, messages: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.promise(async () => {
    const client = adminClient()
    try {
      await client.connect()
      for (const message of messages) await client.publish(channel, message)
    } finally {
      client.disconnect()
    }
  })

/**
 * Waits — on real time, bounded — until `check` holds. For pub/sub delivery only: the tests assert
 * outcomes, never timings. Fails after `attempts` × 10 ms.
 */
export const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, attempts = 300): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function*() {
    for (let i = 0; i < attempts; i++) {
      if (yield* check) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.fail(new Error(`condition not met within ${attempts * 10} ms`))
  })

/** Records every message on a channel from now on, for the scope's lifetime (a raw subscriber). */
export const listen = (channel: string): Effect.Effect<ReadonlyArray<string>, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.promise(async () => {
        const client = adminClient()
        const heard: Array<string> = []
        client.on("message", (from: string, message: string) => {
          if (from === channel) heard.push(message)
        })
        await client.connect()
        await client.subscribe(channel)
        return { client, heard }
      }),
      ({ client }) => Effect.sync(() => client.disconnect())
    ),
    ({ heard }) => heard
  )

/**
 * A TCP proxy in front of the test Redis whose connection the test can break: `cut` closes the
 * listening socket and destroys every proxied connection (the client sees its connection reset and
 * every reconnect refused — Redis "gone" as a network failure, not an in-process `disconnect()`);
 * `restore` listens again on the same port (the client reconnects on its own). Closed with the scope.
 */
export interface RedisProxy {
  /** The Redis URL through the proxy (the test Redis' URL with the proxy's host and port). */
  readonly url: string
  readonly cut: Effect.Effect<void>
  readonly restore: Effect.Effect<void>
}

export const redisProxy: Effect.Effect<RedisProxy, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(async () => {
    const target = new URL(redisUrl)
    const sockets = new Set<net.Socket>()
    const server = net.createServer((downstream) => {
      const upstream = net.connect(Number(target.port || 6379), target.hostname)
      for (const socket of [downstream, upstream]) {
        sockets.add(socket)
        socket.on("error", () => {})
        socket.on("close", () => {
          sockets.delete(socket)
          downstream.destroy()
          upstream.destroy()
        })
      }
      downstream.pipe(upstream)
      upstream.pipe(downstream)
    })
    const listen = (port: number) =>
      new Promise<number>((resolve, reject) => {
        server.once("error", reject)
        server.listen(port, "127.0.0.1", () => {
          server.off("error", reject)
          const address = server.address()
          resolve(typeof address === "object" && address !== null ? address.port : port)
        })
      })
    const port = await listen(0)
    const cut = () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve()
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
    const proxied = new URL(redisUrl)
    proxied.hostname = "127.0.0.1"
    proxied.port = String(port)
    return { url: proxied.toString(), cut, restore: () => listen(port).then(() => undefined) }
  }),
  ({ cut }) => Effect.promise(cut)
).pipe(Effect.map(({ cut, restore, url }) => ({ url, cut: Effect.promise(cut), restore: Effect.promise(restore) })))

/**
 * Waits on the real clock (not Effect's: it works under `TestClock` too), bounded, until `check`
 * holds — for a client to notice a cut or a restored connection. Fails after `attempts` × 10 ms.
 */
export const untilReal = (check: () => boolean, attempts = 500): Effect.Effect<void, Error> =>
  Effect.tryPromise({
    try: async () => {
      for (let i = 0; i < attempts; i++) {
        if (check()) return
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      throw new Error(`condition not met within ${attempts * 10} ms`)
    },
    catch: (error) => (error instanceof Error ? error : new Error(String(error)))
  })

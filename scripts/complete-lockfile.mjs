#!/usr/bin/env node
// Completes package-lock.json with the platform-specific optional packages that `npm install` could not
// resolve from the registry this repo was locked against (a mirror that serves only some platforms' binaries
// answers 404 for the rest, and npm then silently leaves them out of the lock). `npm ci` compares the lock with
// every package's declared optionalDependencies and refuses a lock that lacks any of them, so each missing one
// is recorded here with the os / cpu / libc that its name encodes: `npm ci` skips it on any other platform and,
// on a platform that needs it, fetches it from the configured registry by name and version.
//
// Run after every `npm install` that changes the lock:  node scripts/complete-lockfile.mjs
import { readFileSync, writeFileSync } from "node:fs"

const OSES = new Set(["aix", "android", "darwin", "freebsd", "linux", "netbsd", "openbsd", "openharmony", "sunos", "win32"])
const CPUS = new Set(["arm", "arm64", "ia32", "loong64", "mips64el", "ppc64", "riscv64", "s390x", "x64", "wasm32"])

const platformOf = (name) => {
  const tokens = name.split("/").pop().split("-")
  const os = tokens.find((t) => OSES.has(t))
  const cpu = tokens.find((t) => CPUS.has(t))
  if (os === undefined || cpu === undefined) return undefined
  const tail = tokens.slice(tokens.indexOf(cpu) + 1).join("-")
  const libc = os !== "linux" ? undefined : tail.startsWith("musl") ? "musl" : tail.startsWith("gnu") || tail === "" ? "glibc" : undefined
  return { os, cpu, libc }
}

const path = new URL("../package-lock.json", import.meta.url)
const lock = JSON.parse(readFileSync(path, "utf8"))
const packages = lock.packages
let added = 0
for (const [location, pkg] of Object.entries(packages)) {
  for (const [dep, range] of Object.entries(pkg.optionalDependencies ?? {})) {
    const nested = `${location}/node_modules/${dep}`
    const hoisted = `node_modules/${dep}`
    if (packages[nested] !== undefined || packages[hoisted] !== undefined) continue
    const platform = platformOf(dep)
    if (platform === undefined) continue // not a platform binary (e.g. fsevents): npm tolerates it missing
    if (!/^\d+\.\d+\.\d+/.test(range)) continue // only exact pins are platform binaries we can record
    packages[hoisted] = {
      version: range,
      cpu: [platform.cpu],
      ...(pkg.dev ? { dev: true } : {}),
      ...(platform.libc ? { libc: [platform.libc] } : {}),
      optional: true,
      os: [platform.os]
    }
    added++
  }
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0)))
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n")
console.log(`complete-lockfile: recorded ${added} platform package(s) the registry did not serve`)

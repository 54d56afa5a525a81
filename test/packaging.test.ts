/**
 * What a user of the package gets: every entry point of `exports` exists, and the root entry point
 * loads nothing beyond the required peers (`effect`, `@effect/platform`, `@effect/platform-node`) — the
 * SQL drivers, Redis (ioredis), the CLI and telemetry packages are optional peers, reachable only from
 * their own entry points, so an application that never uses them need not install them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
  readonly exports: Record<string, string>
  readonly peerDependencies: Record<string, string>
  readonly devDependencies: Record<string, string>
  readonly peerDependenciesMeta: Record<string, { readonly optional?: boolean }>
}

/** Value imports (not `import type`) of a module: relative paths resolved, bare specifiers as written. */
const importsOf = (file: string): { readonly local: Array<string>; readonly bare: Array<string> } => {
  const source = fs.readFileSync(file, "utf8")
  const local: Array<string> = []
  const bare: Array<string> = []
  const pattern = /^\s*(?:import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']/gm
  for (const match of source.matchAll(pattern)) {
    if (match[1] !== undefined) continue
    const specifier = match[2]!
    if (specifier.startsWith(".")) local.push(path.resolve(path.dirname(file), specifier.replace(/\.js$/, ".ts")))
    else bare.push(specifier)
  }
  return { local, bare }
}

/** The packages (`@scope/name` or `name`) reachable through value imports from `entry`. */
const packagesReachableFrom = (entry: string): Set<string> => {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const queue = [entry]
  while (queue.length > 0) {
    const file = queue.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    const { bare, local } = importsOf(file)
    for (const specifier of bare) {
      if (specifier.startsWith("node:")) continue
      const parts = specifier.split("/")
      packages.add(specifier.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!)
    }
    queue.push(...local)
  }
  return packages
}

describe("packaging", () => {
  it("every entry point in package.json exports exists", () => {
    for (const [name, target] of Object.entries(pkg.exports)) {
      expect(fs.existsSync(path.join(root, target)), `${name} → ${target}`).toBe(true)
    }
  })

  it("the root entry point reaches only the required peers", () => {
    const required = Object.keys(pkg.peerDependencies).filter((name) => pkg.peerDependenciesMeta[name]?.optional !== true)
    const reached = [...packagesReachableFrom(path.join(root, pkg.exports["."]!))].sort()
    expect(reached.filter((name) => !required.includes(name))).toEqual([])
    expect(reached).toContain("effect")
  })

  it("the SQL backends are reachable only from their own entry points", () => {
    expect(packagesReachableFrom(path.join(root, pkg.exports["./agent"]!))).not.toContain("@effect/sql-pg")
    expect(packagesReachableFrom(path.join(root, pkg.exports["./agent/sqlite"]!))).toContain("@effect/sql-sqlite-node")
    expect(packagesReachableFrom(path.join(root, pkg.exports["./agent/postgres"]!))).toContain("@effect/sql-pg")
  })

  it("ioredis is an optional peer, reachable only from ./redis", () => {
    expect(pkg.peerDependencies["ioredis"]).toBe(pkg.devDependencies["ioredis"])
    expect(pkg.peerDependenciesMeta["ioredis"]?.optional).toBe(true)
    expect(packagesReachableFrom(path.join(root, pkg.exports["."]!))).not.toContain("ioredis")
    const redis = packagesReachableFrom(path.join(root, pkg.exports["./redis"]!))
    expect(redis).toContain("ioredis")
    const allowed = new Set([...Object.keys(pkg.peerDependencies)])
    expect([...redis].filter((name) => !allowed.has(name))).toEqual([])
  })
})

/**
 * What a user of the package gets: every entry point of `exports` ships compiled JavaScript and
 * declarations (dist/, built by `npm test` and by `prepack` before a pack — the published manifest
 * has no install script) that load in plain Node,
 * and the root entry point
 * loads nothing beyond the required peers (`effect`, `@effect/platform`, `@effect/platform-node`) — the
 * SQL drivers, Redis (ioredis), the CLI and telemetry packages are optional peers, reachable only from
 * their own entry points, so an application that never uses them need not install them.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
/** One entry point: the TypeScript source (for this repository's own tools) and what consumers load. */
interface Entry {
  readonly "llmr-source": string
  readonly types: string
  readonly default: string
}

const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
  readonly exports: Record<string, Entry>
  readonly scripts: Record<string, string>
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

const sourceOf = (name: string): string => pkg.exports[name]!["llmr-source"]

describe("packaging", () => {
  it("every entry point maps a source file to its compiled JavaScript and declarations", () => {
    // No install script in the manifest (npm flags one; tsconfig.build.json is not shipped anyway).
    expect(pkg.scripts["prepare"]).toBeUndefined()
    expect(pkg.scripts["prepack"]).toBe("npm run build")
    for (const [name, entry] of Object.entries(pkg.exports)) {
      const compiled = entry["llmr-source"].replace(/^\.\/src\//, "./dist/").replace(/\.ts$/, "")
      expect(fs.existsSync(path.join(root, entry["llmr-source"])), `${name} → ${entry["llmr-source"]}`).toBe(true)
      expect(entry.default, name).toBe(`${compiled}.js`)
      expect(entry.types, name).toBe(`${compiled}.d.ts`)
      for (const file of [entry.default, entry.types]) {
        expect(fs.existsSync(path.join(root, file)), `${name} → ${file} (missing: run npm run build)`).toBe(true)
      }
    }
  })

  it("the compiled root entry point loads in plain Node (no TypeScript loader)", () => {
    const out = execFileSync(
      process.execPath,
      ["--input-type=module", "-e", "const m = await import('effect-llm-resilience'); console.log(typeof m.Policy.apply, typeof m.LlmClient.make)"],
      { cwd: root, encoding: "utf8" }
    )
    expect(out.trim()).toBe("function function")
  })

  it("the root entry point reaches only the required peers", () => {
    const required = Object.keys(pkg.peerDependencies).filter((name) => pkg.peerDependenciesMeta[name]?.optional !== true)
    const reached = [...packagesReachableFrom(path.join(root, sourceOf(".")))].sort()
    expect(reached.filter((name) => !required.includes(name))).toEqual([])
    expect(reached).toContain("effect")
  })

  it("the SQL backends are reachable only from their own entry points", () => {
    expect(packagesReachableFrom(path.join(root, sourceOf("./agent")))).not.toContain("@effect/sql-pg")
    expect(packagesReachableFrom(path.join(root, sourceOf("./agent/sqlite")))).toContain("@effect/sql-sqlite-node")
    expect(packagesReachableFrom(path.join(root, sourceOf("./agent/postgres")))).toContain("@effect/sql-pg")
  })

  it("Bedrock's signer and eventstream codec are dependencies, reachable only from ./Bedrock (not the root)", () => {
    const bedrock = packagesReachableFrom(path.join(root, sourceOf("./Bedrock")))
    expect(bedrock).toContain("@smithy/signature-v4")
    expect(bedrock).toContain("@smithy/eventstream-codec")
    const dependencies = (pkg as unknown as { readonly dependencies: Record<string, string> }).dependencies
    for (const name of [...bedrock].filter((name) => name.startsWith("@smithy/") || name.startsWith("@aws-crypto/"))) {
      expect(dependencies[name], name).toBeDefined()
    }
    expect([...packagesReachableFrom(path.join(root, sourceOf(".")))].filter((name) => name.startsWith("@smithy/"))).toEqual([])
  })

  it("the response cache needs @effect/experimental (an optional peer), only from its own entry points; its Redis store alone needs ioredis", () => {
    expect(pkg.peerDependenciesMeta["@effect/experimental"]?.optional).toBe(true)
    expect(packagesReachableFrom(path.join(root, sourceOf(".")))).not.toContain("@effect/experimental")
    const cache = packagesReachableFrom(path.join(root, sourceOf("./ResponseCache")))
    expect(cache).toContain("@effect/experimental")
    expect(cache).not.toContain("ioredis")
    const redis = packagesReachableFrom(path.join(root, sourceOf("./redis/ResponseCache")))
    expect(redis).toContain("@effect/experimental")
    expect(redis).toContain("ioredis")
    // The Redis-backed policies do not need @effect/experimental.
    expect(packagesReachableFrom(path.join(root, sourceOf("./redis")))).not.toContain("@effect/experimental")
  })

  it("ioredis is an optional peer, reachable only from ./redis", () => {
    expect(pkg.peerDependencies["ioredis"]).toBe(pkg.devDependencies["ioredis"])
    expect(pkg.peerDependenciesMeta["ioredis"]?.optional).toBe(true)
    expect(packagesReachableFrom(path.join(root, sourceOf(".")))).not.toContain("ioredis")
    const redis = packagesReachableFrom(path.join(root, sourceOf("./redis")))
    expect(redis).toContain("ioredis")
    const allowed = new Set([...Object.keys(pkg.peerDependencies)])
    expect([...redis].filter((name) => !allowed.has(name))).toEqual([])
  })

  it("the cluster engine's packages are optional peers at their devDependency versions, reachable only from ./workflow", () => {
    const workflow = packagesReachableFrom(path.join(root, sourceOf("./workflow")))
    for (const name of ["@effect/cluster", "@effect/workflow"]) {
      expect(pkg.peerDependencies[name], name).toBe(pkg.devDependencies[name])
      expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true)
      expect(workflow, name).toContain(name)
      expect(packagesReachableFrom(path.join(root, sourceOf("."))), name).not.toContain(name)
      expect(packagesReachableFrom(path.join(root, sourceOf("./agent"))), name).not.toContain(name)
    }
    const allowed = new Set(Object.keys(pkg.peerDependencies))
    expect([...workflow].filter((name) => !allowed.has(name))).toEqual([])
  })
})

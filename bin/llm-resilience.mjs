#!/usr/bin/env node
// The `llm-resilience` executable. From a clone the sources are TypeScript: we register tsx's ESM
// loader in this process (no second process, so signals, stdio and exit codes pass straight through)
// and import the entry point. A build (`npm run build`, also run by `npm test` and by `prepack`, so a
// published package always has it) puts compiled JavaScript in dist/, which is used instead when present, unless
// LLM_RESILIENCE_FROM_SOURCE=1 asks for the sources (the CLI tests do: they test the code, not a build).
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const compiled = join(root, "dist", "cli", "main.js")

if (existsSync(compiled) && process.env.LLM_RESILIENCE_FROM_SOURCE !== "1") {
  await import(pathToFileURL(compiled).href)
} else {
  let register
  try {
    ;({ register } = await import("tsx/esm/api"))
  } catch {
    process.stderr.write(
      "llm-resilience: running from source needs the dev dependencies (tsx). Run `npm ci` in the clone, or `npm run build`.\n"
    )
    process.exit(2)
  }
  register()
  await import(pathToFileURL(join(root, "src", "cli", "main.ts")).href)
}

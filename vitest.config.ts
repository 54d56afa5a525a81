import { defineConfig } from "vitest/config"

export default defineConfig({
  // The package's own name resolves to its TypeScript sources in tests (the `llmr-source` export condition),
  // so the docs tests exercise the code under test, not a stale build.
  resolve: { conditions: ["llmr-source"] },
  ssr: { resolve: { conditions: ["llmr-source"], externalConditions: ["llmr-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    sequence: { concurrent: false }
  }
})

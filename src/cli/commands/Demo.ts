/**
 * `llm-resilience demo` (what `npm start` runs): the ChaosServer in-process on a free port, a fallback
 * chain of three routes (OpenAI-format primary, Anthropic-format secondary, a small OpenAI-compatible
 * model that sometimes answers JSON of the wrong shape), and a durable research agent driven through a
 * scripted incident (see `demo/scenario.ts`): a 429 burst with Retry-After, a primary outage that opens
 * its breaker and reroutes traffic (an irreversible tool is refused meanwhile), a stream that stalls
 * after its first token, a fallback answering schema-invalid JSON, a crash and a resume.
 *
 * A live view while it runs, a summary table at the end, and a self-contained HTML report (default
 * `reports/demo-report.html`). Offline, no keys. With `--live` (and `OPENAI_API_KEY` +
 * `ANTHROPIC_API_KEY`), the same agent runs against the real APIs (routes from `--config` if given).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import { configOption, otelOptions } from "../Shared.js"

/**
 * Where the report goes by default.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_REPORT = path.join("reports", "demo-report.html")

/**
 * The checkpoint file of the demo's agent run by default (recreated each run).
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_STORE = path.join(".tmp", "demo", "checkpoints.sqlite")

/**
 * The flags.
 *
 * @since 0.1.0
 * @category options
 */
export const options = {
  report: Options.text("report").pipe(Options.withDescription(`Where to write the HTML report (default ${DEFAULT_REPORT})`), Options.optional),
  noReport: Options.boolean("no-report").pipe(Options.withDescription("Do not write the HTML report")),
  store: Options.text("store").pipe(
    Options.withDescription(`SQLite checkpoint file of the agent run (default ${DEFAULT_STORE}, recreated each run; the config's \`store\` wins)`),
    Options.optional
  ),
  live: Options.boolean("live").pipe(
    Options.withDescription("Run against the real APIs (needs OPENAI_API_KEY and ANTHROPIC_API_KEY; routes from --config if given)")
  ),
  plain: Options.boolean("plain").pipe(Options.withDescription("Plain log lines even on a terminal (no redrawn panel)")),
  config: configOption,
  ...otelOptions
}

/**
 * The parsed flags.
 *
 * @since 0.1.0
 * @category models
 */
export type DemoFlags = Command.Command.ParseConfig<typeof options>

/**
 * The command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "demo",
  options,
  // Loaded on use: the agent runtime, the checkpoint store and the chaos server are only the demo's.
  (flags) => Effect.flatMap(Effect.promise(() => import("../demo/run.js")), (demo) => demo.run(flags))
).pipe(
  Command.withDescription("A durable research agent through a scripted incident on the built-in chaos server (offline), with a live view and an HTML report")
)

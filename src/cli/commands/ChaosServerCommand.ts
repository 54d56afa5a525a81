/**
 * `llm-resilience chaos-server --port 8080 --scenario file.json`: the ChaosServer standalone, for a
 * team's own tests and for the benchmarks. Runs until interrupted (Ctrl-C / SIGTERM).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { CommandFailed, ConfigFileError, UsageError } from "../CliError.js"
import { stylesFor, writeOut } from "../Shared.js"

const options = {
  port: Options.integer("port").pipe(Options.withDescription("Port to listen on (0 = a free port)"), Options.withDefault(8080)),
  host: Options.text("host").pipe(Options.withDescription("Interface to bind"), Options.withDefault("127.0.0.1")),
  scenario: Options.text("scenario").pipe(Options.withDescription("A scenario JSON file (see docs/chaos-server.md); default: every call ok"), Options.optional)
}

const run = (flags: Command.Command.ParseConfig<typeof options>) =>
  Effect.gen(function*() {
    if (!Number.isInteger(flags.port) || flags.port < 0 || flags.port > 65_535) {
      return yield* new UsageError({ message: `--port must be between 0 and 65535, got ${flags.port}` })
    }
    // Loaded on use, so the other commands do not pay for the HTTP server at startup.
    const [ChaosServer, Scenario] = yield* Effect.promise(() =>
      Promise.all([import("../../testing/ChaosServer.js"), import("../../testing/Scenario.js")])
    )
    const scenario = yield* Option.match(flags.scenario, {
      onNone: () => Effect.succeed(Scenario.empty),
      onSome: (path) =>
        Scenario.fromFile(path).pipe(
          Effect.mapError((error) => new ConfigFileError({ source: error.source, issues: error.issues, message: error.message }))
        )
    })
    const server = yield* ChaosServer.make({ port: flags.port, host: flags.host, scenario }).pipe(
      Effect.mapError((error) =>
        error.reason === "InvalidScenario"
          ? new ConfigFileError({ source: Option.getOrElse(flags.scenario, () => "scenario"), issues: [], message: error.message })
          : new CommandFailed({ message: error.message })
      )
    )
    const s = stylesFor(process.stdout)
    yield* writeOut(
      [
        `${s.bold("chaos server")} listening on ${server.url}${Option.isSome(flags.scenario) ? ` (scenario ${flags.scenario.value})` : ""}`,
        `  OpenAI-format base URL     ${server.openAiBaseUrl}`,
        `  Anthropic-format base URL  ${server.anthropicBaseUrl}`,
        `  stats                      ${server.url}/__chaos/stats`,
        "Press Ctrl-C to stop.",
        ""
      ].join("\n")
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)

/**
 * The command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("chaos-server", options, run).pipe(
  Command.withDescription("Run the chaos server (OpenAI and Anthropic wire formats, scripted faults) until interrupted")
)

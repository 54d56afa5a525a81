/**
 * The `llm-resilience` command line: `demo`, `doctor`, `call`, `chaos-server`, `runs`.
 *
 * Exit codes: 0 success (and a clean Ctrl-C), 1 a typed failure of the work, 2 bad usage or a bad
 * config file. Effect logs go to stderr, so stdout carries only what a command prints (one JSON object
 * with `--json`).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { type CliError, ExitCode, exitCodeOf } from "./CliError.js"
import * as Call from "./commands/Call.js"
import * as ChaosServerCommand from "./commands/ChaosServerCommand.js"
import * as Demo from "./commands/Demo.js"
import * as Doctor from "./commands/Doctor.js"
import * as Runs from "./commands/Runs.js"
import { stylesFor, withCliConsole, writeErr, writeOut } from "./Shared.js"

const root = Command.make("llm-resilience", {}, () =>
  writeOut(
    [
      "llm-resilience — typed, resilient LLM calls on Effect",
      "",
      "  demo           the scripted incident on the built-in chaos server (offline; what `npm start` runs)",
      "  doctor         check keys, models, latency, rate-limit headroom and status pages of your providers",
      "  call           one resilient call; --json prints one JSON object",
      "  chaos-server   run the chaos server standalone",
      "  runs           operate durable agent runs in a checkpoint store: list, show, cancel, resume",
      "",
      "Run `llm-resilience <command> --help` for the flags. Docs: docs/cli.md",
      ""
    ].join("\n")
  )).pipe(
    Command.withDescription("Typed, resilient LLM calls: demo, doctor, call, chaos-server, runs"),
    Command.withSubcommands([Demo.command, Doctor.command, Call.command, ChaosServerCommand.command, Runs.command])
  )

const cli = Command.run(root, { name: "llm-resilience", version: "0.1.0" })

const isCliError = (error: unknown): error is CliError =>
  typeof error === "object" && error !== null && "_tag" in error &&
  (error._tag === "UsageError" || error._tag === "ConfigFileError" || error._tag === "CommandFailed")

/** Every failure becomes an exit code; the message is printed once, here (or already by the command). */
const program = (argv: ReadonlyArray<string>): Effect.Effect<number, never, NodeContext.NodeContext> =>
  cli(argv).pipe(
    Effect.as<number>(ExitCode.ok),
    Effect.catchAll((error: unknown) => {
      // @effect/cli has already printed what was wrong with the command line.
      if (ValidationError.isValidationError(error)) return Effect.succeed<number>(ExitCode.usage)
      if (isCliError(error)) {
        const s = stylesFor(process.stderr)
        const print = error._tag === "CommandFailed"
          ? Effect.void // the command reported the failure in its own format
          : writeErr(`${s.red("error:")} ${error.message}\n`)
        return Effect.as(print, exitCodeOf(error) as number)
      }
      return Effect.as(writeErr(`error: ${String(error)}\n`), ExitCode.failure as number)
    }),
    Effect.catchAllDefect((defect) =>
      Effect.as(writeErr(`internal error (please report it): ${Cause.pretty(Cause.die(defect))}\n`), ExitCode.failure as number)
    )
  )

const Logging = Layer.mergeAll(
  Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)),
  Logger.minimumLogLevel(LogLevel.Warning)
)

NodeRuntime.runMain(program(process.argv).pipe(withCliConsole, Effect.provide(Layer.merge(NodeContext.layer, Logging))), {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) => {
    const code = Exit.isSuccess(exit)
      ? Number(exit.value)
      : Cause.isInterruptedOnly(exit.cause)
      ? ExitCode.ok // Ctrl-C on a long-running command (chaos-server, demo) is a clean stop
      : ExitCode.failure
    onExit(code)
    // Exit now even if a library left a timer or socket behind: the command's work is done.
    process.exit(code)
  }
})

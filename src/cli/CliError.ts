/**
 * The CLI's own failures and its exit codes: 0 success, 1 a typed failure of the work itself (a call
 * that failed, a failing doctor check, a server that cannot listen), 2 bad usage or a bad config file
 * (nothing was attempted; fix the command line or the file).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * Exit codes.
 *
 * @since 0.1.0
 * @category constants
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode]

/**
 * The command line is wrong (a missing or conflicting flag, an unreadable input file). Exit 2.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

/**
 * A config (or schema, or scenario) file is unusable: where and what was expected. Exit 2.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigFileError extends Schema.TaggedError<ConfigFileError>()("ConfigFileError", {
  /** The file path. */
  source: Schema.String,
  issues: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })),
  message: Schema.String
}) {}

/**
 * The work was done and failed (the failure has already been reported). Exit 1.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommandFailed extends Schema.TaggedError<CommandFailed>()("CommandFailed", {
  message: Schema.String
}) {}

/**
 * Every CLI failure.
 *
 * @since 0.1.0
 * @category models
 */
export type CliError = UsageError | ConfigFileError | CommandFailed

/**
 * The exit code of a failure.
 *
 * @since 0.1.0
 * @category getters
 */
export const exitCodeOf = (error: CliError): ExitCode => error._tag === "CommandFailed" ? ExitCode.failure : ExitCode.usage

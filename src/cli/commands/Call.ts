/**
 * `llm-resilience call`: one resilient call from the command line, through the same chain a program
 * would use (policies per route, fallback, output gate).
 *
 * Routes: the `--provider/--base-url/--model` route first (when given), then the config file's routes
 * as fallbacks. With `--json`, stdout carries exactly one JSON object:
 *
 * ```json
 * { "ok": true, "output": "…", "route": "openai", "degraded": false, "error": null,
 *   "attempts": [{ "route": "openai", "attempt": 1, "outcome": "success", "status": null, "delayMs": 0, "durationMs": 41 }] }
 * ```
 *
 * Exit 0 on an answer, 1 on a typed failure, 2 on bad usage or config.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as DegradedMode from "../../DegradedMode.js"
import { actionOf, type AllRoutesFailed, type AttemptRecord, type InvalidOptions } from "../../Errors.js"
import * as Fallback from "../../Fallback.js"
import * as Policy from "../../Policy.js"
import { formatUsd } from "../../Spend.js"
import * as Transport from "../../Transport.js"
import { CommandFailed, UsageError } from "../CliError.js"
import * as ConfigFile from "../ConfigFile.js"
import * as GenAi from "../GenAi.js"
import * as JsonSchema from "../JsonSchema.js"
import * as Routes from "../Routes.js"
import {
  configOption,
  knownSecrets,
  loadConfig,
  otelOptions,
  positive,
  routeOptions,
  routeSpecs,
  stylesFor,
  telemetryLayer,
  writeErr,
  writeOut
} from "../Shared.js"

/**
 * The `--json` output.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOutput {
  readonly ok: boolean
  readonly output: unknown
  readonly route: string | null
  readonly degraded: boolean
  readonly error: {
    readonly _tag: string
    readonly action: string
    readonly status: number | null
    readonly requestId: string | null
  } | null
  readonly attempts: ReadonlyArray<{
    readonly route: string
    readonly attempt: number
    readonly outcome: string
    readonly status: number | null
    readonly delayMs: number
    readonly durationMs: number
  }>
  /** What the call's reported usage cost in USD — only when the config has `prices`. */
  readonly costUsd?: number
}

const attemptsOf = (records: ReadonlyArray<AttemptRecord>): CallOutput["attempts"] =>
  records.map((a) => ({
    route: a.route,
    attempt: a.attempt,
    outcome: a.outcome,
    status: a.status ?? null,
    delayMs: Math.round(a.delayMs),
    durationMs: Math.round(a.durationMs)
  }))

/**
 * The `--json` object of a failed call.
 *
 * @since 0.1.0
 * @category output
 */
export const failureOutput = (error: AllRoutesFailed): CallOutput => {
  const last = error.lastError
  return {
    ok: false,
    output: null,
    route: null,
    degraded: false,
    error: last === undefined
      ? { _tag: error._tag, action: "stop", status: null, requestId: null }
      : { _tag: last._tag, action: actionOf(last), status: last.status ?? null, requestId: last.requestId ?? null },
    attempts: attemptsOf(error.attempts)
  }
}

/**
 * The `--json` object of an answered call.
 *
 * @since 0.1.0
 * @category output
 */
export const successOutput = (result: Fallback.ChainResult<unknown>): CallOutput => ({
  ok: true,
  output: result.value,
  route: result.route,
  degraded: result.degraded,
  error: null,
  attempts: attemptsOf(result.attempts),
  ...(result.costUsd !== undefined ? { costUsd: result.costUsd } : {})
})

const options = {
  ...routeOptions,
  prompt: Options.text("prompt").pipe(Options.withDescription("The user message")),
  system: Options.text("system").pipe(Options.withDescription("A system prompt"), Options.optional),
  stream: Options.boolean("stream").pipe(
    Options.withDescription("Stream the answer as it arrives (with --schema: the JSON text, checked whole at the end)")
  ),
  schema: Options.text("schema").pipe(
    Options.withDescription("A JSON Schema file (JSON or YAML): the answer must be JSON that fits it"),
    Options.optional
  ),
  maxAttempts: Options.integer("max-attempts").pipe(Options.withDescription("Attempts per route, the first included"), Options.optional),
  deadlineMs: Options.integer("deadline-ms").pipe(Options.withDescription("Deadline of the whole call across routes, in ms"), Options.optional),
  maxTokens: Options.integer("max-tokens").pipe(Options.withDescription("Output token cap"), Options.withDefault(1024)),
  config: configOption,
  json: Options.boolean("json").pipe(Options.withDescription("Print exactly one JSON object on stdout")),
  noAuth: Options.boolean("no-auth").pipe(
    Options.withDescription("Allow routes whose key variable is unset to send no credentials (a local server that needs none)")
  ),
  ...otelOptions
}

type CallFlags = Command.Command.ParseConfig<typeof options>

const describeAttempt = (a: AttemptRecord) =>
  `${a.route}#${a.attempt} ${a.outcome}${a.status !== undefined ? ` ${a.status}` : ""}${a.delayMs > 0 ? ` after ${Math.round(a.delayMs)} ms` : ""} (${Math.round(a.durationMs)} ms)`

/**
 * A chain stream printed as it arrives (text deltas on stdout unless `--json`; a restart noted on
 * stderr), ending with the call's result.
 */
const printed = <A>(
  events: Stream.Stream<Fallback.ChainStreamEvent<A> | Fallback.PartialObject, AllRoutesFailed | InvalidOptions>,
  json: boolean
): Effect.Effect<Fallback.ChainResult<A>, AllRoutesFailed | InvalidOptions> =>
  events.pipe(
    Stream.runFoldEffect(undefined as Fallback.ChainResult<A> | undefined, (done, event) => {
      if (event._tag === "TextDelta") return Effect.as(json ? Effect.void : writeOut(event.text), done)
      if (event._tag === "Restarted") {
        return Effect.as(json ? Effect.void : writeErr(`\n[${event.from} failed after partial output (${event.error._tag}); restarting on ${event.to}]\n`), done)
      }
      if (event._tag === "Completed") return Effect.succeed(event.result)
      return Effect.succeed(done)
    }),
    Effect.flatMap((result) => result === undefined ? Effect.dieMessage("the chain stream ended without Completed") : Effect.succeed(result))
  )

const run = (flags: CallFlags) =>
  Effect.gen(function*() {
    const config = yield* loadConfig(flags.config)
    const specs = yield* routeSpecs(flags, config)
    const deadlineMs = yield* positive("deadline-ms", flags.deadlineMs)
    if (flags.maxTokens <= 0) return yield* new UsageError({ message: `--max-tokens must be a positive integer, got ${flags.maxTokens}` })
    let schema: Option.Option<Schema.Schema<unknown, unknown>> = Option.none()
    if (Option.isSome(flags.schema)) {
      const converted = JsonSchema.toSchema(yield* ConfigFile.readData(flags.schema.value), flags.schema.value)
      if (converted instanceof Error) return yield* converted
      schema = Option.some(converted)
    }
    const secrets = yield* knownSecrets(specs)
    const deadline = Option.match(deadlineMs, { onNone: () => config.deadline, onSome: (ms) => Duration.millis(ms) })

    const work = Effect.gen(function*() {
      const { routes } = yield* Routes.buildRoutes(specs, { allowNoAuth: flags.noAuth })
      const toUsage = Effect.mapError((error: InvalidOptions) => new UsageError({ message: error.message }))
      const { budget, prices } = yield* ConfigFile.spendOf(config).pipe(toUsage)
      const chain = yield* Fallback.make({
        routes,
        ...(deadline !== undefined ? { deadline } : {}),
        ...(config.repairAttempts !== undefined ? { repairAttempts: config.repairAttempts } : {}),
        ...(prices !== undefined ? { prices } : {}),
        ...(budget !== undefined ? { spend: budget } : {})
      }).pipe(toUsage)
      const request: Fallback.ChainRequest = {
        messages: [{ role: "user", content: flags.prompt }],
        maxTokens: flags.maxTokens,
        ...(Option.isSome(flags.system) ? { system: flags.system.value } : {})
      }
      const call: Effect.Effect<Fallback.ChainResult<unknown>, AllRoutesFailed | InvalidOptions> = flags.stream
        ? printed(Option.isSome(schema) ? chain.streamObject(schema.value, request) : chain.stream(request), flags.json)
        : Option.isSome(schema)
        ? chain.generateObject(schema.value, request)
        : chain.generate(request)
      const outcome = yield* Effect.either(
        GenAi.withChatSpan({ provider: specs[0]!.provider, model: specs[0]!.model, maxTokens: flags.maxTokens }, call)
      )
      if (outcome._tag === "Right") {
        const result = outcome.right
        if (flags.json) return yield* writeOut(`${JSON.stringify(successOutput(result))}\n`)
        const text = typeof result.value === "string" ? result.value : JSON.stringify(result.value, null, 2)
        if (!flags.stream) yield* writeOut(`${text}\n`)
        else yield* writeOut("\n")
        const err = stylesFor(process.stderr)
        yield* writeErr(
          `${err.green("✔")} served by ${result.route}${result.degraded ? err.yellow(" (degraded)") : ""} in ${result.attempts.filter((a) => a.attempt > 0).length} attempt(s), ${Math.round(result.durationMs)} ms, ${result.usage.totalTokens} tokens${
            result.costUsd !== undefined ? `, $${formatUsd(result.costUsd)}` : ""
          }\n`
        )
        if (result.attempts.length > 1) yield* writeErr(result.attempts.map((a) => `  ${describeAttempt(a)}\n`).join(""))
        return
      }
      const error = outcome.left
      // A schema the chain cannot use for structured output is the caller's mistake, not a failed call.
      if (error._tag === "InvalidOptions") return yield* new UsageError({ message: `--schema: ${error.message}` })
      if (flags.json) yield* writeOut(`${JSON.stringify(failureOutput(error))}\n`)
      else {
        const err = stylesFor(process.stderr)
        const last = error.lastError
        yield* writeErr(
          [
            `${err.red("✘")} ${last?._tag ?? error._tag}${last !== undefined ? ` (${actionOf(last)})` : ""}: ${last?.message ?? error.message}`,
            ...(last?.status !== undefined ? [`  status ${last.status}${last.requestId !== undefined ? `, request id ${last.requestId}` : ""}`] : []),
            `  chain: ${error.reason}`,
            ...error.attempts.map((a) => `  ${describeAttempt(a)}`)
          ].join("\n") + "\n"
        )
      }
      return yield* new CommandFailed({ message: `call failed: ${error.lastError?._tag ?? error.reason}` })
    })

    return yield* work.pipe(
      Effect.provide(Layer.mergeAll(Transport.layer(), Policy.layerState, DegradedMode.layer)),
      Effect.provide(telemetryLayer(flags, config, secrets))
    )
  })

/**
 * The command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("call", options, run).pipe(
  Command.withDescription("Make one resilient call (retries, breaker, fallback, output gate) and print the answer")
)

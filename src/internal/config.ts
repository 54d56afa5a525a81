/**
 * Reading credentials from the environment. Effect's `Config.redacted` reports a missing variable as
 * `(Missing data at OPENAI_API_KEY: "<redacted>")` — it hides its own message — and accepts an empty
 * one, which then sends no credentials. Keys are read here instead: missing or blank is a
 * `ConfigError` whose message names the variable (a name is not a secret) and never the value.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"

/** The key in environment variable `name`, redacted; missing or blank fails naming the variable. */
export const apiKeyConfig = (name: string): Config.Config<Redacted.Redacted<string>> =>
  Config.option(Config.string(name)).pipe(
    Config.mapOrFail((value) =>
      Option.isNone(value)
        ? Either.left(ConfigError.MissingData([name], `${name} is not set: set it to your API key, or pass apiKey to the adapter`))
        : value.value.trim().length === 0
        ? Either.left(ConfigError.InvalidData([name], `${name} is set but empty: set it to your API key`))
        : Either.right(Redacted.make(value.value))
    )
  )

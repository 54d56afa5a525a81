/**
 * Turning a Schema `ParseError` into a list of `{ path, message }` issues a person can act on:
 * `routes[0].provider: Expected "openai" | "anthropic", actual "openia"`. A union fails once per member;
 * those failures are merged into one line, and exact duplicates dropped.
 *
 * @internal
 */
import * as ParseResult from "effect/ParseResult"

export interface Issue {
  readonly path: string
  readonly message: string
}

/** `routes[0].policy.retry` from a property path; `(root)` for the empty path. */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`
    else if (typeof key === "string" && /^[A-Za-z_$][\w$-]*$/.test(key)) out += out === "" ? key : `.${key}`
    else out += `[${JSON.stringify(String(key))}]`
  }
  return out === "" ? "(root)" : out
}

const EXPECTED = /^Expected (.+), actual (.+)$/s

/** One issue per path and problem; a union's "Expected A … / Expected B …" become "Expected A | B". */
export const mergeIssues = <I extends Issue>(issues: ReadonlyArray<I>): Array<I> => {
  const out: Array<I> = []
  for (const issue of issues) {
    const match = EXPECTED.exec(issue.message)
    const previous = out.find((o) => o.path === issue.path)
    if (previous !== undefined) {
      if (previous.message === issue.message) continue
      const prevMatch = EXPECTED.exec(previous.message)
      if (match !== null && prevMatch !== null && match[2] === prevMatch[2]) {
        out[out.indexOf(previous)] = { ...previous, message: `Expected ${prevMatch[1]} | ${match[1]}, actual ${match[2]}` }
        continue
      }
    }
    out.push(issue)
  }
  return out
}

/** The issues of a parse error, with raw property paths (for locating them in a source file). */
export const issuesOf = (
  error: ParseResult.ParseError
): Array<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({ path: issue.path, message: issue.message }))

/**
 * Finds where JSON text first goes wrong, as line and column. `JSON.parse` on Node 20 often reports
 * only a snippet ("Unexpected token '}', …"), which is not enough to fix a scenario file by hand; this
 * small scanner walks the grammar and stops at the first offending character.
 *
 * @internal
 */

class Stop {
  constructor(readonly offset: number, readonly expected: string) {}
}

/** The offset of the first syntax error and what was expected there, or `undefined` if the text is JSON. */
export const firstJsonError = (text: string): { readonly offset: number; readonly expected: string } | undefined => {
  let i = 0
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i] ?? "")) i++
  }
  const fail = (expected: string): never => {
    throw new Stop(i, expected)
  }
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length
    else fail(`"${word}"`)
  }
  const string = () => {
    if (text[i] !== "\"") fail("a string")
    i++
    while (i < text.length) {
      const c = text[i] ?? ""
      if (c === "\"") {
        i++
        return
      }
      if (c === "\\") {
        const e = text[i + 1] ?? ""
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
            i += 2
            fail("four hex digits after \\u")
          }
          i += 6
        } else if ("\"\\/bfnrt".includes(e) && e !== "") i += 2
        else {
          i++
          fail("a valid escape")
        }
      } else if (c < " ") fail("no control character inside a string")
      else i++
    }
    fail("the closing quote of a string")
  }
  const number = () => {
    const match = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i))
    if (match === null) fail("a value")
    else i += match[0].length
  }
  const value = (): void => {
    ws()
    const c = text[i]
    if (c === "{") {
      i++
      ws()
      if (text[i] === "}") {
        i++
        return
      }
      for (;;) {
        ws()
        string()
        ws()
        if (text[i] !== ":") fail("':'")
        i++
        value()
        ws()
        if (text[i] === ",") {
          i++
          continue
        }
        if (text[i] === "}") {
          i++
          return
        }
        fail("',' or '}'")
      }
    }
    if (c === "[") {
      i++
      ws()
      if (text[i] === "]") {
        i++
        return
      }
      for (;;) {
        value()
        ws()
        if (text[i] === ",") {
          i++
          continue
        }
        if (text[i] === "]") {
          i++
          return
        }
        fail("',' or ']'")
      }
    }
    if (c === "\"") return string()
    if (c === "t") return literal("true")
    if (c === "f") return literal("false")
    if (c === "n") return literal("null")
    return number()
  }
  try {
    value()
    ws()
    if (i < text.length) fail("the end of the text")
    return undefined
  } catch (e) {
    if (e instanceof Stop) return { offset: e.offset, expected: e.expected }
    throw e
  }
}

/** 1-based line and column of an offset. */
export const lineColumn = (text: string, offset: number): { readonly line: number; readonly column: number } => {
  const before = text.slice(0, offset)
  const line = before.split("\n").length
  return { line, column: offset - before.lastIndexOf("\n") }
}

/**
 * Scrubbing of secrets from text that leaves the library (error messages, raw bodies kept for
 * diagnosis). Provider error bodies sometimes echo the key they rejected; proxies echo headers.
 *
 * @internal
 */

/** Key-shaped tokens: OpenAI `sk-…`/`sk-proj-…`, Anthropic `sk-ant-…`, and bearer credentials. */
const KEY_PATTERNS: ReadonlyArray<RegExp> = [
  /\bsk-[A-Za-z0-9_*-]{6,}/g,
  /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi,
  /("?(?:x-api-key|api[_-]?key|authorization)"?\s*[:=]\s*"?)[^"\s,}]{4,}/gi
]

/** Bound on kept raw text: enough to diagnose, small enough to log, store and ship in spans. */
export const MAX_KEPT_BODY = 2048

/**
 * Replaces every occurrence of the given secret values and of key-shaped tokens with `<redacted>`.
 * Secrets shorter than 4 characters are ignored (masking "a" would destroy the text, and such a
 * value is not a real credential).
 */
export const redact = (text: string, secrets: ReadonlyArray<string> = []): string => {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 4 && out.includes(secret)) out = out.split(secret).join("<redacted>")
  }
  for (const pattern of KEY_PATTERNS) {
    out = out.replace(pattern, (match, prefix: unknown) =>
      typeof prefix === "string" && /[:=]/.test(prefix) ? `${prefix}<redacted>` :
        typeof prefix === "string" && /^(bearer|basic)$/i.test(prefix) ? `${prefix} <redacted>` :
        match.length > 0 ? "<redacted>" : match)
  }
  return out
}

/** Redacts, then truncates to `max` characters with a marker saying how much was cut. */
export const redactAndTruncate = (text: string, secrets: ReadonlyArray<string> = [], max = MAX_KEPT_BODY): string => {
  const clean = redact(text, secrets)
  return clean.length <= max ? clean : `${clean.slice(0, max)}…[${clean.length - max} more chars]`
}

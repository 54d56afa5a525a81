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
 * Replaces every occurrence of the given secret values (and nothing else) with `<redacted>`: the
 * cheap half of {@link redact}, applied to every string parsed from a provider. Secrets shorter than
 * 4 characters are ignored.
 */
export const scrubSecrets = (text: string, secrets: ReadonlyArray<string>): string => {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 4 && out.includes(secret)) out = out.split(secret).join("<redacted>")
  }
  return out
}

/**
 * Replaces every occurrence of the given secret values and of key-shaped tokens with `<redacted>`.
 * Secrets shorter than 4 characters are ignored (masking "a" would destroy the text, and such a
 * value is not a real credential).
 */
export const redact = (text: string, secrets: ReadonlyArray<string> = []): string => {
  let out = scrubSecrets(text, secrets)
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

/** Bound on a short field kept from the wire (a provider's error type, code or param). */
export const MAX_KEPT_FIELD = 256

/** A short field from the wire (error type, code, param): redacted, and cut to {@link MAX_KEPT_FIELD}. */
export const redactField = (text: string | undefined, secrets: ReadonlyArray<string>): string | undefined =>
  text === undefined ? undefined : redactAndTruncate(text, secrets, MAX_KEPT_FIELD)

/** What a request id looks like: `req_…`, `chatcmpl-…`, a UUID, a base64-ish token; 128 characters at most. */
const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}$/

/**
 * A provider's request id (a header or a body field), kept only when it looks like one and carries
 * no secret or key-shaped token: it is copied into results, attempt histories, stored checkpoints and
 * reports, so a server that echoes credentials into it must not get them there.
 */
export const cleanRequestId = (value: string | undefined, secrets: ReadonlyArray<string>): string | undefined => {
  if (value === undefined) return undefined
  const id = value.trim()
  return REQUEST_ID.test(id) && redact(id, secrets) === id ? id : undefined
}

/**
 * AWS Signature Version 4 for the adapter skeleton's `sign` hook, with the signer the AWS SDK itself
 * uses (`@smithy/signature-v4` over `@aws-crypto/sha256-js`), service `bedrock`.
 *
 * The hook runs last, on the request exactly as it will be sent: its final URL, every header already
 * set (extra headers, `accept`, the idempotency key, `content-type`/`content-length`), and its body
 * bytes. So everything the adapter adds is covered by the signature; headers the HTTP client adds
 * afterwards (`user-agent`, `traceparent`) are simply not in `SignedHeaders`, which SigV4 allows.
 * The signing time is Effect's `Clock`, so tests under `TestClock` sign deterministically.
 *
 * @internal
 */
import { Sha256 } from "@aws-crypto/sha256-js"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SignatureV4 } from "@smithy/signature-v4"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { CallSite } from "../../Classify.js"
import { type ProviderError, Unauthorized } from "../../Errors.js"
import { redact } from "../../internal/redact.js"

/** Static AWS credentials (what `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` hold). */
export interface AwsCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string | undefined
}

/** The headers SigV4 adds; everything else on the request is left as it was. */
const SIGNATURE_HEADERS = ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] as const

/** The body's bytes: the adapter sends JSON, which `@effect/platform` holds as a `Uint8Array` body. */
const bodyBytes = (request: HttpClientRequest.HttpClientRequest): Uint8Array | undefined => {
  const body = request.body
  if (body._tag === "Uint8Array") return body.body
  if (body._tag === "Empty") return new Uint8Array(0)
  return undefined
}

const signingFailure = (site: CallSite, detail: string): ProviderError =>
  new Unauthorized({
    provider: site.provider,
    model: site.model,
    route: site.route,
    attempt: site.attempt,
    message: redact(`could not sign the request with SigV4: ${detail}`, site.secrets ?? [])
  }, true)

/**
 * A `sign` hook for `service` in `region` with these credentials. A request that cannot be signed (a
 * streamed body, which the adapter never sends) fails as `Unauthorized`: it could not be authenticated.
 */
export const sigV4Signer = (region: string, credentials: AwsCredentials, service = "bedrock") => {
  const signer = new SignatureV4({
    service,
    region,
    credentials: {
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      ...(credentials.sessionToken !== undefined && credentials.sessionToken.length > 0 ? { sessionToken: credentials.sessionToken } : {})
    },
    sha256: Sha256,
    // Bedrock, like every AWS service but S3, signs the URI-escaped path.
    uriEscapePath: true
  })
  return (
    request: HttpClientRequest.HttpClientRequest,
    site: CallSite
  ): Effect.Effect<HttpClientRequest.HttpClientRequest, ProviderError> => {
    const body = bodyBytes(request)
    if (body === undefined) return Effect.fail(signingFailure(site, `a ${request.body._tag} body cannot be signed`))
    let url: URL
    try {
      url = new URL(request.url)
    } catch {
      return Effect.fail(signingFailure(site, "the request URL does not parse"))
    }
    const query: Record<string, string> = {}
    for (const [name, value] of url.searchParams) query[name] = value
    for (const [name, value] of request.urlParams) query[name] = value
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.tryPromise({
        try: () =>
          signer.sign({
            method: request.method,
            protocol: url.protocol,
            hostname: url.hostname,
            ...(url.port.length > 0 ? { port: Number(url.port) } : {}),
            // The path exactly as it goes on the wire (the model id already percent-encoded in it):
            // the signer escapes it once more, as AWS does when it checks the signature.
            path: url.pathname,
            query,
            // `host` is signed (SigV4 requires it) but not set on the request: undici derives the same
            // value (`hostname[:port]`) from the URL.
            headers: { ...request.headers, host: url.host },
            body
          }, { signingDate: new Date(now) }),
        catch: (error) => signingFailure(site, error instanceof Error ? error.message : String(error))
      }).pipe(
        Effect.map((signed) => {
          const added: Record<string, string> = {}
          for (const name of SIGNATURE_HEADERS) {
            const value = signed.headers[name]
            if (value !== undefined) added[name] = value
          }
          return HttpClientRequest.setHeaders(request, added)
        })
      ))
  }
}

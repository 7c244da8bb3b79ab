/**
 * GitHub webhook signatures (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`). Pure.
 *
 * node:crypto directly rather than @octokit/webhooks-methods: that package takes the payload as a
 * string, and decoding the bytes to a string (and re-encoding them to hash) is exactly the step
 * that can change them (invalid UTF-8 becomes U+FFFD). GitHub signs bytes, so we verify bytes.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const HEADER_RE = /^sha256=[0-9a-f]{64}$/;

/** The `X-Hub-Signature-256` value GitHub would send for `body` signed with `secret`. */
export function signGithubPayload(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** True only when `header` is exactly `sha256=` + 64 lowercase hex and matches the raw body's HMAC. */
export function verifyGithubSignature(secret: string, rawBody: Buffer, header: string | undefined): boolean {
  // An empty key is a key anyone can use: treat it as "no secret configured", never as valid.
  if (secret.length === 0 || typeof header !== 'string' || !HEADER_RE.test(header)) return false;
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  const given = Buffer.from(header.slice('sha256='.length), 'hex');
  // Both are 32 bytes after the format check; the length test keeps timingSafeEqual from throwing.
  return given.length === expected.length && timingSafeEqual(given, expected);
}

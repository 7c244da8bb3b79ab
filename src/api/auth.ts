/**
 * Tokens. The admin token (CLI, dashboard) and the join token (agents) live in $PILOT_HOME as files
 * with mode 0600, generated on first start. Nodes get their own credential at registration; only
 * its sha256 is stored. Every comparison is constant-time on fixed-length digests.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

export function newToken(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Constant-time equality of two secrets of any length (compares their sha256). */
export function tokensEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** Read the token file, creating it (0600) with a fresh token if absent. `created` says which. */
export function loadOrCreateToken(file: string, prefix: string): { token: string; created: boolean } {
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length >= 16) {
      chmodSync(file, 0o600);
      return { token, created: false };
    }
  }
  const token = newToken(prefix);
  writeFileSync(file, token + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return { token, created: true };
}

/** The bearer token of an Authorization header, or undefined. */
export function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

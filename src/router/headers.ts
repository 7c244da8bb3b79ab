/**
 * Header rewriting between client and upstream (RFC 9110 §7.6.1): hop-by-hop headers describe one
 * connection, so they are dropped on each side and the proxy's own connection management applies.
 */
import type { OutgoingHttpHeaders } from 'node:http';

/** Parsed response headers as undici hands them over: lowercased names, arrays for repeats. */
export type HeaderRecord = Readonly<Record<string, string | string[] | undefined>>;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const NONE: ReadonlySet<string> = new Set();
const PLAIN_CONNECTION = /^\s*(?:keep-alive|close)\s*$/i;

/** Header names listed in Connection header values (lowercased), which are hop-by-hop too. */
export function connectionTokens(values: string | readonly string[] | undefined): ReadonlySet<string> {
  // Hot path: almost every message says just "keep-alive" or "close", which name no header.
  if (values === undefined || (typeof values === 'string' && PLAIN_CONNECTION.test(values))) return NONE;
  const out = new Set<string>();
  for (const v of typeof values === 'string' ? [values] : values) {
    for (const t of v.split(',')) {
      const token = t.trim().toLowerCase();
      if (token !== '') out.add(token);
    }
  }
  return out;
}

/** True for a header that must not cross the proxy (given the tokens of the Connection header). */
export function isHopByHop(lowerName: string, listed: ReadonlySet<string>): boolean {
  return HOP_BY_HOP.has(lowerName) || lowerName.startsWith('proxy-') || listed.has(lowerName);
}

export interface Forwarded {
  /** The client's address, as the router's socket sees it. */
  readonly for: string;
  /** "http" or "https": the scheme the client used to reach the router. */
  readonly proto: string;
}

/** A socket's remote address without the IPv4-mapped prefix ("::ffff:127.0.0.1" → "127.0.0.1"). */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return 'unknown';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

/**
 * The headers to send upstream, as a flat [name, value, ...] list: the client's raw headers in
 * order and case, minus hop-by-hop ones, plus X-Forwarded-For (appended to the client's, like
 * nginx's $proxy_add_x_forwarded_for), X-Forwarded-Proto and X-Forwarded-Host (replaced: the
 * router is the edge, so a client must not be able to claim another scheme or host). Host is kept.
 * `keepUpgrade` keeps Connection/Upgrade for WebSocket pass-through. Expect is dropped because Node
 * has already answered "100 Continue" to the client.
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  fwd: Forwarded,
  keepUpgrade = false,
): string[] {
  let connection: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') (connection ??= []).push(rawHeaders[i + 1]!);
  }
  const listed = connectionTokens(connection);
  const out: string[] = [];
  let xff: string | undefined;
  let host: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      // Routing used the first Host; a second one must not reach the app and mean something else.
      if (host !== undefined) continue;
      host = value;
    } else if (lower === 'x-forwarded-for') {
      xff = xff === undefined ? value : `${xff}, ${value}`;
      continue;
    } else if (lower === 'x-forwarded-proto' || lower === 'x-forwarded-host' || lower === 'expect') {
      continue;
    } else if (keepUpgrade && (lower === 'connection' || lower === 'upgrade')) {
      // Forwarded as-is below in canonical form, once.
      continue;
    } else if (isHopByHop(lower, listed)) {
      continue;
    }
    out.push(name, value);
  }
  if (keepUpgrade) {
    const upgrade = rawHeaders.findIndex((v, i) => i % 2 === 0 && v.toLowerCase() === 'upgrade');
    out.push('Connection', 'Upgrade');
    if (upgrade !== -1) out.push('Upgrade', rawHeaders[upgrade + 1]!);
  }
  out.push('X-Forwarded-For', xff === undefined ? fwd.for : `${xff}, ${fwd.for}`);
  out.push('X-Forwarded-Proto', fwd.proto);
  if (host !== undefined) out.push('X-Forwarded-Host', host);
  return out;
}

/** The upstream's response headers minus hop-by-hop ones, ready for `res.writeHead`. */
export function clientResponseHeaders(headers: HeaderRecord): OutgoingHttpHeaders {
  const listed = connectionTokens(headers['connection']);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (isHopByHop(name, listed)) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * Header rewriting between client and upstream (RFC 9110 §7.6.1): hop-by-hop headers describe one
 * connection, so they are dropped on each side and the proxy's own connection management applies.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { fail } from '../core/errors.js';

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
  /**
   * The client is a proxy listed in --trusted-proxy: its X-Forwarded-* / Forwarded / X-Real-IP
   * are kept (X-Forwarded-For appended to). Otherwise they are the client's own claims: dropped.
   */
  readonly trusted?: boolean;
}

/** Client headers that claim where a request came from; only a trusted proxy may send them. */
const CLAIMS = new Set(['forwarded', 'x-real-ip']);

/**
 * The proxies whose forwarding headers the router believes (`--trusted-proxy`,
 * PILOT_TRUSTED_PROXIES): addresses or CIDRs, IPv4 or IPv6, comma-separated.
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly entries: readonly string[];

  /** Parse "10.0.0.0/8, 127.0.0.1, ::1"; a bad entry is a bad_request naming `source`. */
  constructor(spec: string | readonly string[] | undefined, source = '--trusted-proxy') {
    const items = (typeof spec === 'string' ? [spec] : (spec ?? []))
      .flatMap((s) => s.split(','))
      .map((s) => s.trim())
      .filter((s) => s !== '');
    for (const item of items) {
      const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(item);
      const family = m ? isIP(m[1]!) : 0;
      const bits = m?.[2] === undefined ? (family === 6 ? 128 : 32) : Number(m[2]);
      if (!m || family === 0 || bits > (family === 6 ? 128 : 32)) {
        throw fail.invalidTrustedProxy({ source, item: item.slice(0, 80) });
      }
      this.list.addSubnet(m[1]!, bits, family === 6 ? 'ipv6' : 'ipv4');
    }
    this.entries = items;
  }

  /** Whether `address` (as clientAddress gives it) is one of the trusted proxies. */
  has(address: string): boolean {
    if (this.entries.length === 0) return false;
    const family = isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** A socket's remote address without the IPv4-mapped prefix ("::ffff:127.0.0.1" → "127.0.0.1"). */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return 'unknown';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

/** The request header that pins a request to one revision of the app (lowercase, as Node gives it). */
export const PIN_HEADER = 'x-pilot-revision';

/**
 * The revision a request is pinned to by `X-Pilot-Revision: N` (a positive integer), for testing a
 * revision directly, whatever its weight; undefined without the header or with anything else in
 * it (then the request is balanced as usual).
 */
export function pinnedRevision(headers: IncomingHttpHeaders): number | undefined {
  const v = headers[PIN_HEADER];
  if (typeof v !== 'string') return undefined;
  const m = /^\s*([1-9]\d{0,8})\s*$/.exec(v);
  return m === null ? undefined : Number(m[1]);
}

/**
 * The headers to send upstream, as a flat [name, value, ...] list: the client's raw headers in
 * order and case, minus hop-by-hop ones, plus X-Forwarded-For, X-Forwarded-Proto and
 * X-Forwarded-Host set by the router. A client's own X-Forwarded-*, Forwarded and X-Real-IP are
 * claims anyone can make: dropped, so an app can tell a client's address from a spoofed one.
 * Only from a trusted proxy (`fwd.trusted`) are they kept, X-Forwarded-For appended to (like
 * nginx's $proxy_add_x_forwarded_for) and its X-Forwarded-Proto / -Host believed. Host is kept.
 * `keepUpgrade` keeps Connection/Upgrade for WebSocket pass-through. Expect is dropped because the
 * router has already answered "100 Continue" to the client (proxy.ts). X-Pilot-Revision is the router's own
 * instruction (see `pinnedRevision`) and is dropped too.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], fwd: Forwarded, keepUpgrade = false): string[] {
  let connection: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') (connection ??= []).push(rawHeaders[i + 1]!);
  }
  const listed = connectionTokens(connection);
  const out: string[] = [];
  let xff: string | undefined;
  let host: string | undefined;
  let proto: string | undefined;
  let fwdHost: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      // Routing used the first Host; a second one must not reach the app and mean something else.
      if (host !== undefined) continue;
      host = value;
    } else if (lower === 'x-forwarded-for') {
      if (fwd.trusted === true) xff = xff === undefined ? value : `${xff}, ${value}`;
      continue;
    } else if (lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') {
      if (fwd.trusted === true) {
        if (lower === 'x-forwarded-proto') proto ??= value;
        else fwdHost ??= value;
      }
      continue;
    } else if (lower.startsWith('x-forwarded-') || CLAIMS.has(lower)) {
      if (fwd.trusted !== true) continue;
    } else if (lower === 'expect' || lower === PIN_HEADER) {
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
  out.push('X-Forwarded-Proto', proto ?? fwd.proto);
  if (fwdHost !== undefined || host !== undefined) out.push('X-Forwarded-Host', (fwdHost ?? host)!);
  return out;
}

/** The upstream's response headers minus hop-by-hop ones (Trailer kept), ready for `res.writeHead`. */
export function clientResponseHeaders(headers: HeaderRecord): OutgoingHttpHeaders {
  const listed = connectionTokens(headers['connection']);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    // Trailer announces the trailer fields of this response (RFC 9110 §6.6.2): end to end, kept.
    if (isHopByHop(name, listed) && name !== 'trailer') continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

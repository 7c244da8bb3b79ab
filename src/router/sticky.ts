/**
 * Sticky assignment of a request to a variant (core/experiment.ts holds the hash and the bucket
 * rule): where the user key comes from, and the cookie the router sets on a first visit.
 *
 *   route.sticky absent ───────────────────────────► weighted split (no key)
 *   pinned (X-Pilot-Revision) ─────────────────────► the pin wins; no key read, no cookie set
 *   by cookie NAME: Cookie has NAME=v (v ≠ "") ────► bucket(seed, v)
 *                   no such cookie ────────────────► fresh random id → bucket(seed, id), and the
 *                                                    response carries Set-Cookie NAME=id
 *   by header NAME: header present, not empty ─────► bucket(seed, value)
 *                   absent ────────────────────────► weighted split (no key, nothing set)
 *
 * Any cookie or header value is a key, whatever its length or bytes (Node bounds the whole head at
 * 16 KiB): it is only hashed, never echoed, logged or forwarded differently.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { STICKY_COOKIE_MAX_AGE_S, stickyBucket, type Sticky } from '../core/experiment.js';

/** What the balancer and the response need of a sticky route for one request. */
export interface Affinity {
  /** The user's bucket 0–99; undefined: no key (weighted split). */
  readonly bucket: number | undefined;
  /** A Set-Cookie value to add to the app's response (a first visit), if any. */
  readonly setCookie: string | undefined;
}

const NONE: Affinity = { bucket: undefined, setCookie: undefined };

/** The value of cookie `name` in the request's Cookie header(s), if present and not empty. */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const all = Array.isArray(header) ? header.join('; ') : header;
  let from = 0;
  while (from < all.length) {
    let end = all.indexOf(';', from);
    if (end === -1) end = all.length;
    const eq = all.indexOf('=', from);
    if (eq !== -1 && eq < end && all.slice(from, eq).trim() === name) {
      let v = all.slice(eq + 1, end).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      if (v !== '') return v;
    }
    from = end + 1;
  }
  return undefined;
}

/** A new visitor id: 128 random bits, base64url (cookie-safe, no quoting needed). */
export function newVisitorId(): string {
  return randomBytes(16).toString('base64url');
}

/** The Set-Cookie value that keeps a visitor on their variant. */
export function stickyCookie(name: string, id: string, secure: boolean): string {
  return `${name}=${id}; Path=/; Max-Age=${STICKY_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/**
 * The affinity of a request for `sticky` (undefined: an ordinary route). `pinned`: the request
 * carries a pin, which wins: nothing is read or assigned. `secure`: the client came over TLS.
 */
export function affinityOf(sticky: Sticky | undefined, headers: IncomingHttpHeaders, pinned: boolean, secure = false): Affinity {
  if (sticky === undefined || pinned) return NONE;
  if ('cookie' in sticky.by) {
    const name = sticky.by.cookie;
    const v = readCookie(headers.cookie, name);
    if (v !== undefined) return { bucket: stickyBucket(sticky.seed, v), setCookie: undefined };
    const id = newVisitorId();
    return { bucket: stickyBucket(sticky.seed, id), setCookie: stickyCookie(name, id, secure) };
  }
  const raw = headers[sticky.by.header.toLowerCase()];
  const v = Array.isArray(raw) ? raw.join(', ') : raw;
  return v === undefined || v === '' ? NONE : { bucket: stickyBucket(sticky.seed, v), setCookie: undefined };
}

/** The app's response headers with our Set-Cookie added after the app's own (never replacing them). */
export function withSetCookie(headers: OutgoingHttpHeaders, cookie: string | undefined): OutgoingHttpHeaders {
  if (cookie === undefined) return headers;
  const own = headers['set-cookie'];
  const list = own === undefined ? [] : Array.isArray(own) ? own : [String(own)];
  return { ...headers, 'set-cookie': [...list, cookie] };
}

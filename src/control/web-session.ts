/**
 * Dashboard sessions: an admin token is exchanged once (`POST /api/v1/session`) for a random session
 * id kept in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS); the token itself never reaches
 * the browser's storage or a URL. Sessions live in memory: a restart, sign-out, the idle limit or
 * the absolute limit ends them (the dashboard then shows sign-in again).
 *
 * CSRF: a request that authenticates with the cookie and changes state (any method but GET/HEAD/
 * OPTIONS) must carry the session's CSRF token in `x-pilot-csrf` (a synchronizer token: the server
 * keeps it, the page reads it from `GET /api/v1/session` into memory; a cross-site page can neither
 * read it nor set a custom header without a CORS preflight this API never approves), and its
 * Origin, when sent, must be the API's own; `Sec-Fetch-Site: cross-site|same-site` is refused on
 * every cookie request. Either proof alone would do in today's browsers; both are checked so one
 * browser bug or a same-site sibling (another app on a subdomain) is not enough. Bearer tokens never
 * go through here: scripts and the CLI are unchanged.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { fail } from '../core/errors.js';
import { tokensEqual } from '../api/auth.js';

export const SESSION_COOKIE = 'pilot_session';
export const CSRF_HEADER = 'x-pilot-csrf';

export interface SessionSettings {
  /** A session ends this long after sign-in whatever happens (default 12 h). */
  maxAgeMs: number;
  /** ...and this long after its last request (default 2 h). */
  idleMs: number;
  /** Sessions kept at most; the oldest goes first (a flood of sign-ins cannot grow memory). */
  max: number;
}

export const DEFAULT_SESSIONS: SessionSettings = { maxAgeMs: 12 * 3600_000, idleMs: 2 * 3600_000, max: 1000 };

interface Session {
  readonly csrf: string;
  readonly createdAt: number;
  lastSeen: number;
  /** The token it was made from: a session outlives no change of that token. */
  readonly token: string;
}

export interface SessionView {
  csrf: string;
  expiresAt: string;
}

const idKey = (id: string): string => createHash('sha256').update(id).digest('hex');

/** The sessions of this control plane process (in memory). */
export class WebSessions {
  private readonly sessions = new Map<string, Session>();

  constructor(
    /** Whether a token still opens the API (the admin token now). */
    private readonly valid: (token: string) => boolean,
    readonly settings: SessionSettings = DEFAULT_SESSIONS,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new session for a valid token: its id (for the cookie) and what the page may read. */
  create(token: string): { id: string; view: SessionView } {
    if (!this.valid(token)) throw fail.invalidToken();
    while (this.sessions.size >= this.settings.max) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    const s: Session = { csrf: randomBytes(32).toString('base64url'), createdAt: this.now(), lastSeen: this.now(), token };
    this.sessions.set(idKey(id), s);
    return { id, view: this.view(s) };
  }

  /** The live session of a cookie value (its idle clock restarted), or undefined: unknown, expired, or its token no longer valid. */
  touch(id: string): Session | undefined {
    const key = idKey(id);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.createdAt > this.settings.maxAgeMs || t - s.lastSeen > this.settings.idleMs || !this.valid(s.token)) {
      this.sessions.delete(key);
      return undefined;
    }
    s.lastSeen = t;
    return s;
  }

  view(s: Session): SessionView {
    const end = Math.min(s.createdAt + this.settings.maxAgeMs, s.lastSeen + this.settings.idleMs);
    return { csrf: s.csrf, expiresAt: new Date(end).toISOString() };
  }

  end(id: string): void {
    this.sessions.delete(idKey(id));
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** A cookie's value from a Cookie header, or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}

/**
 * Whether the browser talks HTTPS: directly, by a publicUrl that says so, or through a TLS proxy
 * (X-Forwarded-Proto). Only the cookie's Secure flag depends on it: a client that claims HTTPS
 * falsely only loses its own cookie.
 */
export function isHttps(req: FastifyRequest, publicUrl: string): boolean {
  return req.protocol === 'https' || publicUrl.startsWith('https:') || req.headers['x-forwarded-proto'] === 'https';
}

/** Whether an Origin names this server: the host the request was sent to (behind a TLS proxy the scheme differs), or publicUrl. */
function ownOrigin(origin: string, req: FastifyRequest, publicUrl: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (a sandboxed frame, a file) or garbage
  }
  if ((url.protocol === 'http:' || url.protocol === 'https:') && url.host === req.headers.host) return true;
  return publicUrl !== '' && url.origin === new URL(publicUrl).origin;
}

/** The Set-Cookie value of a session (or of its removal, with id ''). */
export function sessionCookie(id: string, secure: boolean, maxAgeMs: number): string {
  const age = id === '' ? 0 : Math.floor(maxAgeMs / 1000);
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${age}${secure ? '; Secure' : ''}`;
}

const STATE_CHANGE = (method: string): boolean => !['GET', 'HEAD', 'OPTIONS'].includes(method);

/**
 * Refuse a cookie-authenticated request that did not come from the dashboard's own origin: a
 * cross-site or same-site fetch (Sec-Fetch-Site), an Origin that is not this API's (the Host it
 * was asked on, or publicUrl), and for a state change, a missing or wrong CSRF token.
 */
export function assertSameOrigin(req: FastifyRequest, publicUrl: string, csrf?: string): void {
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') throw fail.csrfRefused({ why: `Sec-Fetch-Site is ${site}` });
  const origin = req.headers.origin;
  if (origin !== undefined && STATE_CHANGE(req.method) && !ownOrigin(origin, req, publicUrl)) {
    throw fail.csrfRefused({ why: `Origin ${JSON.stringify(origin.slice(0, 200))} is not this server's` });
  }
  if (csrf !== undefined && STATE_CHANGE(req.method)) {
    const sent = req.headers[CSRF_HEADER];
    if (typeof sent !== 'string' || sent === '') throw fail.csrfRefused({ why: `no ${CSRF_HEADER} header` });
    if (!tokensEqual(sent, csrf)) throw fail.csrfRefused({ why: `wrong ${CSRF_HEADER} header` });
  }
}

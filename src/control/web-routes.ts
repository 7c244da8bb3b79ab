/**
 * The dashboard on the API port: its built files (`web/`, built by Vite into `dist/web`) at `/`,
 * the session routes (`/api/v1/session`: sign in, who am I, sign out), the security headers of
 * every answer, and `authenticate`, which the server's auth hook asks when a request carries no
 * bearer token (web-session.ts: the cookie, and CSRF proof for state changes).
 */
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import { assertSameOrigin, isHttps, readCookie, SESSION_COOKIE, sessionCookie, type WebSessions } from './web-session.js';

/** The dashboard's policy: its own bundled files only; no inline script or style element, no eval, never framed. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');
/** Everything else the API answers (JSON, logs, blobs) is data, never a document. */
const DATA_CSP = "default-src 'none'; frame-ancestors 'none'";

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

/** Paths the dashboard never answers for (the API's own 404 stays JSON there). */
const notDashboard = (path: string): boolean =>
  path.startsWith('/api/') || path.startsWith('/hooks/') || path === '/metrics' || path === '/healthz';

/** GET/HEAD paths the dashboard serves without a credential (its files; the data comes through the API). */
export function isDashboardPath(method: string, path: string): boolean {
  return (method === 'GET' || method === 'HEAD') && !notDashboard(path);
}

export interface WebRoutes {
  /**
   * For a request without a bearer token: true when its session cookie opens it (CSRF-checked),
   * false when it has no cookie; throws when the cookie's session ended or the CSRF proof fails.
   */
  authenticate(req: FastifyRequest): boolean;
}

export function registerWebRoutes(api: FastifyInstance, deps: { sessions: WebSessions; root: string; publicUrl: () => string }): WebRoutes {
  const { sessions, root } = deps;

  api.addHook('onSend', async (req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    if (!reply.hasHeader('content-security-policy')) reply.header('content-security-policy', DATA_CSP);
    return payload;
  });

  const setCookie = (req: FastifyRequest, reply: FastifyReply, id: string): void => {
    void reply.header('set-cookie', sessionCookie(id, isHttps(req, deps.publicUrl()), sessions.settings.maxAgeMs));
  };

  // Sign in: the token in the body (never a URL), checked like a bearer token.
  api.post<{ Body: { token: string } }>(
    '/api/v1/session',
    { schema: { body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false }) } },
    async (req, reply) => {
      assertSameOrigin(req, deps.publicUrl()); // no login CSRF: a foreign page cannot sign a browser in
      const { id, view } = sessions.create(req.body.token.trim());
      setCookie(req, reply, id);
      void reply.header('cache-control', 'no-store').status(201);
      return view;
    },
  );
  api.get('/api/v1/session', async (req, reply) => {
    const id = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) throw fail.missingToken();
    const s = sessions.touch(id);
    if (!s) {
      setCookie(req, reply, '');
      throw fail.sessionExpired();
    }
    assertSameOrigin(req, deps.publicUrl());
    void reply.header('cache-control', 'no-store');
    return sessions.view(s);
  });
  // Sign out: a live session must prove it is the dashboard asking (else a foreign page could sign you out).
  api.delete('/api/v1/session', async (req, reply) => {
    const id = readCookie(req.headers.cookie, SESSION_COOKIE);
    const s = id === undefined ? undefined : sessions.touch(id);
    if (id !== undefined && s) {
      assertSameOrigin(req, deps.publicUrl(), s.csrf);
      sessions.end(id);
    }
    setCookie(req, reply, '');
    return reply.status(204).send();
  });

  const page = async (reply: FastifyReply): Promise<FastifyReply> => {
    let html: Buffer;
    try {
      html = await readFile(join(root, 'index.html'));
    } catch {
      throw fail.dashboardNotBuilt({ dir: root });
    }
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', DASHBOARD_CSP)
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .send(html);
  };
  api.get('/', { schema: { hide: true } }, async (_req, reply) => page(reply));
  // Built files are content-hashed (assets/index-3f2a.js): cached for good. Any other page path
  // is the dashboard's own route (/apps/shop): the same index.html, the page routes itself.
  api.get('/*', { schema: { hide: true } }, async (req, reply) => {
    const path = req.url.split('?')[0]!;
    if (notDashboard(path)) throw fail.noRoute({ method: req.method, url: path });
    const asset = /^\/assets\/([A-Za-z0-9_.-]+)$/.exec(path)?.[1];
    if (asset === undefined) return page(reply);
    const type = TYPES[extname(asset)];
    let body: Buffer | undefined;
    if (type !== undefined && !asset.startsWith('.')) body = await readFile(join(root, 'assets', asset)).catch(() => undefined);
    if (body === undefined) throw fail.noRoute({ method: req.method, url: path });
    return reply.type(type!).header('cache-control', 'public, max-age=31536000, immutable').send(body);
  });

  return {
    authenticate(req) {
      const id = readCookie(req.headers.cookie, SESSION_COOKIE);
      if (id === undefined) return false;
      const s = sessions.touch(id);
      if (!s) throw fail.sessionExpired();
      assertSameOrigin(req, deps.publicUrl(), s.csrf);
      return true;
    },
  };
}

/**
 * Slow clients never hold the server: request headers must arrive within HEADERS_TIMEOUT_MS, and a
 * parsed body (JSON: API calls and webhooks) within BODY_TIMEOUT_MS of the request's start, else the
 * connection is cut. Node's own limits are 60 s for headers (checked every 30 s) and none for a
 * body under Fastify (requestTimeout 0), so a client trickling one byte per second held a socket for
 * minutes. Streamed bodies (artifact uploads, application/octet-stream) are handed to their route
 * before they arrive, so a large upload over a slow link is not cut by this deadline.
 */
import type { FastifyInstance } from 'fastify';
import type { ServerOptions } from 'node:http';

export const HEADERS_TIMEOUT_MS = 10_000;
export const BODY_TIMEOUT_MS = 30_000;

/** Options for http.createServer (Fastify's `http` option): headers deadline, checked every second. */
export const slowClientServerOptions: ServerOptions = { headersTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1000 };

/** Cut a request whose body has not been parsed BODY_TIMEOUT_MS after it started. */
export function installBodyDeadline(app: FastifyInstance, timeoutMs = BODY_TIMEOUT_MS): void {
  const timers = new WeakMap<object, NodeJS.Timeout>();
  const clear = (raw: object): void => {
    const t = timers.get(raw);
    if (t) clearTimeout(t);
    timers.delete(raw);
  };
  app.addHook('onRequest', async (req) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return;
    const raw = req.raw;
    const t = setTimeout(() => {
      timers.delete(raw);
      req.log.warn({ url: req.url.split('?')[0], ms: timeoutMs }, 'request body too slow: connection cut');
      raw.socket?.destroy();
    }, timeoutMs);
    t.unref();
    timers.set(raw, t);
    raw.once('close', () => clear(raw));
  });
  app.addHook('preValidation', async (req) => clear(req.raw));
  app.addHook('onResponse', async (req) => clear(req.raw));
}

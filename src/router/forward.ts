/**
 * One proxied request: send it to an upstream through that upstream's pool, stream the response
 * back with backpressure, retry once elsewhere when that is safe, and record the outcome.
 *
 * Retry rule: only an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE) without a request body,
 * only when the upstream failed to connect or dropped the connection before any response byte
 * (so the app either never saw the request or may safely see it twice), and only once. A POST is
 * never retried: it may have been acted upon even though no answer came back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Dispatcher } from '../http/undici.js';
import type { Balancer } from './balancer.js';
import { BodyTooLargeError, limitBody } from './body-limit.js';
import { sendError, sendTooLarge, upstreamFailed } from './error-responses.js';
import {
  clientAddress,
  clientResponseHeaders,
  type HeaderRecord,
  pinnedRevision,
  type TrustedProxies,
  upstreamRequestHeaders,
} from './headers.js';
import { CLIENT_CLOSED, type RevisionRecorder, type TrafficSink } from './metrics.js';
import type { TableRoute, Upstream } from './routing-table.js';
import type { UpstreamPools } from './upstream-pools.js';
import { errno } from '../core/errno.js';
import { withSetCookie, type Affinity } from './sticky.js';

/** What a forwarded request needs from the router. */
export interface ForwardDeps {
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  readonly metrics: TrafficSink;
  /** The current route for a Host header: a retry goes by the table as it is now, not as it was. */
  readonly lookup: (host: string) => TableRoute | undefined;
  /** Clients whose forwarding headers are believed (--trusted-proxy); none when absent. */
  readonly trusted?: TrustedProxies;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
/** Failures that happen before the app could have answered: nothing, or nothing usable, came back. */
const CONNECTION_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);
/** Failures of an established connection (typically a keep-alive one the app had just closed). */
const DROPPED = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

class ClientGoneError extends Error {
  readonly code = 'PILOT_CLIENT_GONE';
  constructor() {
    super('the client closed the connection');
  }
}

/** Proxy `req` for `route` to `first`; everything after this is driven by events. */
export function forward(
  deps: ForwardDeps,
  req: IncomingMessage,
  res: ServerResponse,
  route: TableRoute,
  first: Upstream,
  startedAt: number,
  affinity?: Affinity,
): void {
  new Exchange(deps, req, res, route, startedAt, affinity).attempt(first);
}

class Exchange {
  readonly deps: ForwardDeps;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly app: string;
  readonly startedAt: number;
  readonly headers: string[];
  readonly body: IncomingMessage | Readable | null;
  /** The route's own timeouts (pilot.yaml `http:`), when it sets them; else the pools' defaults. */
  readonly timeouts: { headersTimeout?: number; bodyTimeout?: number };
  readonly maxBody: number | undefined;
  readonly retryable: boolean;
  readonly tried = new Set<string>();
  attempts = 0;
  current: Attempt | undefined;
  /** Where the outcome is counted: the revision of the upstream tried last (kept, not looked up per request). */
  recorder: RevisionRecorder | undefined;
  /** The router has finished with the response (ended, answered an error, or cut it short). */
  done = false;
  clientGone = false;
  /** A sticky route's bucket (a retry keeps it) and the cookie to set on a first visit. */
  readonly affinity: Affinity | undefined;

  constructor(deps: ForwardDeps, req: IncomingMessage, res: ServerResponse, route: TableRoute, startedAt: number, affinity?: Affinity) {
    this.deps = deps;
    this.affinity = affinity;
    this.req = req;
    this.res = res;
    this.app = route.app;
    this.startedAt = startedAt;
    const cl = req.headers['content-length'];
    const hasBody = req.headers['transfer-encoding'] !== undefined || (cl !== undefined && Number(cl) !== 0);
    // No body: nothing to stream, and the request can be sent twice. With one, the body is streamed
    // straight from the client socket and cannot be replayed.
    // A chunked body is counted against the app's limit as it streams (a Content-Length over it was
    // refused in proxy.ts before anything was read).
    this.maxBody = route.http?.maxBodyBytes;
    const chunked = req.headers['transfer-encoding'] !== undefined;
    this.body = !hasBody ? null : chunked && this.maxBody !== undefined ? limitBody(req, this.maxBody) : req;
    const http = route.http;
    this.timeouts = {
      ...(http?.requestTimeoutMs === undefined ? {} : { headersTimeout: http.requestTimeoutMs }),
      ...(http?.idleTimeoutMs === undefined ? {} : { bodyTimeout: http.idleTimeoutMs }),
    };
    this.retryable = !hasBody && IDEMPOTENT.has(req.method ?? '');
    const encrypted = 'encrypted' in req.socket && req.socket.encrypted === true;
    const from = clientAddress(req.socket.remoteAddress);
    this.headers = upstreamRequestHeaders(req.rawHeaders, {
      for: from,
      proto: encrypted ? 'https' : 'http',
      trusted: deps.trusted?.has(from) ?? false,
    });
    res.once('close', () => this.onClose());
  }

  attempt(upstream: Upstream): void {
    this.tried.add(upstream.id);
    this.attempts++;
    this.recorder = this.deps.metrics.revision(upstream);
    const attempt = new Attempt(this, upstream);
    this.current = attempt;
    this.deps.pools.acquire(upstream.id);
    this.deps.pools
      .pool(upstream)
      .dispatch(
        { path: this.req.url ?? '/', method: this.req.method ?? 'GET', headers: this.headers, body: this.body, ...this.timeouts },
        attempt,
      );
  }

  /** An attempt failed before completing: retry, answer 502/504, or cut the response short. */
  failed(attempt: Attempt, err: Error): void {
    if (this.clientGone || this.done) return; // our own abort, or nobody left to answer
    if (err instanceof BodyTooLargeError) {
      // The client's fault, not the app's: 413 (the app saw a cut request and is not counted as failing).
      this.done = true;
      if (!this.res.headersSent) sendTooLarge(this.req.headers, this.res, this.app, err.limit);
      else this.res.destroy();
      return;
    }
    this.deps.metrics.upstreamError(this.app);
    const code = errno(err);
    if (!attempt.responded && this.retryable && this.attempts === 1 && code !== undefined && CONNECTION_FAILURES.has(code)) {
      const next = this.nextUpstream(code);
      if (next !== undefined) {
        this.attempt(next);
        return;
      }
    }
    this.done = true;
    if (!this.res.headersSent) sendError(this.req.headers, this.res, upstreamFailed(this.app, err));
    // The status line is gone already: the only honest signal left is an incomplete response.
    else this.res.destroy();
  }

  /** Another upstream if there is one; the same one again only after a dropped connection. */
  private nextUpstream(code: string): Upstream | undefined {
    const route = this.deps.lookup(this.req.headers.host ?? '');
    if (route === undefined || route.app !== this.app) return undefined;
    const pin = pinnedRevision(this.req.headers);
    const bucket = this.affinity?.bucket;
    const other = this.deps.balancer.pick(route, this.deps.pools.inflight, this.tried, pin, bucket);
    if (other !== undefined || !DROPPED.has(code)) return other;
    return this.deps.balancer.pick(route, this.deps.pools.inflight, undefined, pin, bucket);
  }

  private onClose(): void {
    if (!this.res.writableFinished && !this.done) {
      // The client left before the end: stop the upstream work it no longer waits for.
      this.clientGone = true;
      this.current?.abort();
    }
    const code = this.clientGone ? CLIENT_CLOSED : this.res.statusCode;
    const now = performance.now();
    this.recorder?.record(code, now - this.startedAt, now);
  }
}

/** The undici handler of one attempt at one upstream; it owns that attempt's in-flight count. */
class Attempt implements Dispatcher.DispatchHandler {
  readonly #ex: Exchange;
  readonly #upstream: Upstream;
  #controller: Dispatcher.DispatchController | undefined;
  #released = false;
  /** The upstream sent something back (a status line), so the request must not be retried. */
  responded = false;

  constructor(ex: Exchange, upstream: Upstream) {
    this.#ex = ex;
    this.#upstream = upstream;
  }

  abort(): void {
    // Before onRequestStart there is no controller yet; onRequestStart checks clientGone instead.
    this.#controller?.abort(new ClientGoneError());
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#ex.clientGone) controller.abort(new ClientGoneError());
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: HeaderRecord, statusMessage?: string): void {
    this.responded = true;
    // 1xx: Node has already answered "Expect: 100-continue" itself; other interim responses
    // (103 Early Hints) are optional and dropped.
    if (statusCode < 200) return;
    const res = this.#ex.res;
    try {
      const out = withSetCookie(clientResponseHeaders(headers), this.#ex.affinity?.setCookie);
      if (statusMessage) res.writeHead(statusCode, statusMessage, out);
      else res.writeHead(statusCode, out);
    } catch (err) {
      controller.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#ex.res;
    if (!res.write(chunk) && !controller.paused && !res.destroyed) {
      // Backpressure: the client reads slower than the app writes; stop reading the upstream.
      controller.pause();
      res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: HeaderRecord): void {
    this.#release();
    this.#ex.done = true;
    // Trailers go out after the last chunk (Node sends them only on a chunked response, the only
    // kind that can carry them).
    let out: Record<string, string | string[]> | undefined;
    for (const name in trailers) {
      const v = trailers[name];
      if (v !== undefined) (out ??= {})[name] = v;
    }
    if (out !== undefined) {
      try {
        this.#ex.res.addTrailers(out);
      } catch {
        // A trailer Node refuses (an invalid name or value) is dropped; the body is complete.
      }
    }
    this.#ex.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#release();
    this.#ex.failed(this, err);
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#ex.deps.pools.release(this.#upstream.id);
  }
}

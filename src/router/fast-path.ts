/**
 * The fast engine (`PILOT_ROUTER_ENGINE=fast`, experimental): the router's HTTP listener accepts
 * with `net` and serves the common exchange below node:http: it parses the request head itself
 * (fast-head.ts, strict), writes one buffer per head on a pooled keep-alive socket to the app, and
 * passes body bytes through as they come (a chunked response is scanned for its end, not
 * re-chunked). Anything else is handed, before a byte of it is consumed, to the router's node:http
 * server on the same socket (`socket.unshift` + `server.emit('connection')`), which then owns the
 * connection to its end: see "The fast engine" in src/router/README.md for what goes where.
 *
 * The rules are the node path's (forward.ts): the same balancer, in-flight counts (drains), header
 * rules, retry rule, timeouts, error answers and traffic figures.
 *
 * Concurrency: one exchange per client connection at a time (pipelined requests wait in the
 * connection's buffer); one exchange per upstream socket at a time (no pipelining to apps).
 */
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { errno } from '../core/errno.js';
import { assignedRevision, type Balancer } from './balancer.js';
import { renderError, upstreamFailed, type RouterError } from './error-responses.js';
import { ChunkedScanner, parseRequestHead, parseResponseHead, type Framing } from './fast-head.js';
import { clientAddress, clientResponseHeaders, pinnedRevision, upstreamRequestHeaders, type TrustedProxies } from './headers.js';
import { CLIENT_CLOSED, type RevisionRecorder, type TrafficSink } from './metrics.js';
import type { TableRoute, Upstream } from './routing-table.js';
import { affinityOf, withSetCookie, type Affinity } from './sticky.js';
import { ACME_CHALLENGE_PREFIX, hostOnly, type AcmeChallenges, type CertificateStore } from './tls.js';
import type { UpstreamPools } from './upstream-pools.js';
import { RawPools, type UpConn, type UpstreamUser } from './fast-upstream.js';

export interface FastDeps {
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  readonly metrics: TrafficSink;
  readonly lookup: (host: string) => TableRoute | undefined;
  readonly trusted?: TrustedProxies;
  readonly headersMs: number;
  readonly bodyMs: number;
  readonly connectMs: number;
  readonly certs?: CertificateStore;
  readonly challenges?: AcmeChallenges;
  /** Give the connection to node:http (the bytes not consumed are back in the socket). */
  readonly handOff: (socket: net.Socket) => void;
}

/** node:http's default keep-alive timeout: an idle client connection is closed after it. */
const CLIENT_IDLE_MS = 5_000;
/** Pipelined bytes a client may pile up while an exchange runs before its socket is paused. */
const MAX_BUFFERED = 64 * 1024;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
const CONNECTION_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);
const DROPPED = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const KEEP_ALIVE = `Connection: keep-alive\r\nKeep-Alive: timeout=${CLIENT_IDLE_MS / 1000}\r\n`;

function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

let dateText = '';
let dateAt = 0;
/** The Date header, computed at most once per second (as node:http does). */
function httpDate(): string {
  const now = Date.now();
  if (now - dateAt >= 1000) {
    dateAt = now - (now % 1000);
    dateText = new Date(dateAt).toUTCString();
  }
  return dateText;
}

/** The fast engine of one listener: its client connections and its upstream sockets. */
export class FastPath {
  readonly deps: FastDeps;
  readonly upstreams = new RawPools();
  readonly #conns = new Set<ClientConn>();
  /** Sockets handed to node:http, destroyed at close (that server never listened: it does not track them). */
  readonly #handed = new Set<net.Socket>();
  closing = false;
  /** Exchanges running now (the router's close waits for them). */
  busy = 0;
  /** Requests the fast path served itself, and connections it handed to node:http. */
  readonly stats = { served: 0, handedOff: 0 };
  onIdle: (() => void) | undefined;

  constructor(deps: FastDeps) {
    this.deps = deps;
  }

  /** The net server's connection listener. */
  accept = (socket: net.Socket): void => {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.#conns.add(new ClientConn(this, socket));
  };

  forget(conn: ClientConn): void {
    this.#conns.delete(conn);
  }

  handOff(conn: ClientConn, socket: net.Socket): void {
    this.#conns.delete(conn);
    this.#handed.add(socket);
    this.stats.handedOff++;
    socket.once('close', () => this.#handed.delete(socket));
    this.deps.handOff(socket);
  }

  exchangeEnded(): void {
    if (--this.busy === 0) this.onIdle?.();
  }

  /** Stop taking requests: idle connections close now, busy ones after their exchange. */
  stop(): void {
    this.closing = true;
    for (const c of this.#conns) if (c.ex === undefined) c.socket.destroy();
  }

  /** Cut every connection still open (the end of the close grace), and every upstream socket. */
  destroyAll(): void {
    for (const c of this.#conns) c.socket.destroy();
    for (const s of this.#handed) s.destroy();
    this.upstreams.closeAll();
  }
}

/** One client connection served by the fast path (until it is handed to node:http). */
class ClientConn {
  readonly fp: FastPath;
  readonly socket: net.Socket;
  buf: Buffer | undefined;
  ex: Exchange | undefined;
  paused = false;
  /** The connection is ending: nothing more is read from it. */
  over = false;

  constructor(fp: FastPath, socket: net.Socket) {
    this.fp = fp;
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setTimeout(CLIENT_IDLE_MS);
    socket.on('data', this.onData);
    socket.on('timeout', this.onTimeout);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  onData = (chunk: Buffer): void => {
    if (this.over) return;
    let rest: Buffer | undefined = chunk;
    if (this.ex !== undefined && this.ex.bodyLeft > 0) rest = this.ex.requestBody(chunk);
    if (rest === undefined || rest.length === 0) return;
    this.buf = this.buf === undefined ? rest : Buffer.concat([this.buf, rest]);
    if (this.ex === undefined) this.next();
    else if (this.buf.length > MAX_BUFFERED && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  };

  // Idle between requests: close, as node:http does. During an exchange the app may be slow: its own timeouts apply.
  onTimeout = (): void => {
    if (this.ex === undefined) this.socket.destroy();
  };

  onError = (): void => {
    // A reset by the client; 'close' follows and does the accounting.
  };

  onClose = (): void => {
    this.fp.forget(this);
    this.ex?.clientLeft();
  };

  /** Serve the requests waiting in the buffer, one at a time. */
  next(): void {
    while (this.ex === undefined && this.buf !== undefined && !this.socket.destroyed) {
      const head = parseRequestHead(this.buf);
      if (head.kind === 'incomplete') return;
      if (head.kind === 'fallback') return this.handOff();
      const d = this.fp.deps;
      if (d.challenges !== undefined && head.target.startsWith(ACME_CHALLENGE_PREFIX)) return this.handOff();
      if (d.certs !== undefined && d.certs.policy(hostOnly(head.host)) !== undefined) return this.handOff();
      const route = d.lookup(head.host);
      if (route === undefined) return this.handOff();
      const maxBody = route.http?.maxBodyBytes;
      if (maxBody !== undefined && head.contentLength > maxBody) return this.handOff();
      const pin = pinnedRevision(head.headers as IncomingHttpHeaders);
      const affinity = affinityOf(route.sticky, head.headers as IncomingHttpHeaders, pin !== undefined, false);
      const upstream = d.balancer.pick(route, d.pools.inflight, undefined, pin, affinity.bucket);
      if (upstream === undefined) {
        // node:http answers the 502 (and counts it) exactly as the node engine does.
        return this.handOff();
      }
      if (route.sticky !== undefined) {
        const assigned = assignedRevision(route, affinity.bucket);
        if (assigned !== undefined && assigned !== upstream.revision) d.metrics.stickyFallback?.(route.app);
      }
      const after = this.buf.subarray(head.end);
      const bodyNow = Math.min(head.contentLength, after.length);
      const body = bodyNow > 0 ? after.subarray(0, bodyNow) : undefined;
      this.buf = after.length > bodyNow ? after.subarray(bodyNow) : undefined;
      this.ex = new Exchange(this, head, route, affinity, body, pin);
      this.fp.busy++;
      this.fp.stats.served++;
      this.ex.attempt(upstream);
    }
    if (this.paused && this.ex === undefined) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** The exchange is over; `keep`: the connection may serve the next request. */
  ended(keep: boolean): void {
    this.ex = undefined;
    this.fp.exchangeEnded();
    if (!keep || this.fp.closing) {
      this.over = true;
      this.buf = undefined;
      this.socket.destroySoon();
      return;
    }
    this.next();
  }

  handOff(): void {
    const s = this.socket;
    s.off('data', this.onData);
    s.off('timeout', this.onTimeout);
    s.off('error', this.onError);
    s.off('close', this.onClose);
    s.setTimeout(0);
    // A paused socket handed over stalls node:http's parser (seen on Node 20): flowing again first;
    // no 'data' can be emitted before the server's listener is on (resume acts on the next tick).
    if (this.paused || s.isPaused()) s.resume();
    if (this.buf !== undefined) s.unshift(this.buf);
    this.buf = undefined;
    this.fp.handOff(this, s);
  }
}

type Head = Extract<ReturnType<typeof parseRequestHead>, { kind: 'ok' }>;

/** One request on the fast path, through one or two attempts at upstreams. */
class Exchange implements UpstreamUser {
  readonly conn: ClientConn;
  readonly head: Head;
  readonly app: string;
  readonly startedAt = performance.now();
  readonly affinity: Affinity;
  readonly pin: number | undefined;
  readonly retryable: boolean;
  readonly headersMs: number;
  readonly bodyMs: number;
  /** The head sent upstream (the same on a retry). */
  readonly upHead: string;
  /** The part of the body that came with the head (sent with it). */
  readonly firstBody: Buffer | undefined;
  /** Request body bytes still to come from the client. */
  bodyLeft: number;
  readonly tried = new Set<string>();
  attempts = 0;
  up: UpConn | undefined;
  upstream: Upstream | undefined;
  recorder: RevisionRecorder | undefined;
  acquired = false;
  /** Response state. */
  rbuf: Buffer | undefined;
  responded = false;
  headSent = false;
  status = 0;
  framing: Framing = 'none';
  left = 0;
  reusable = false;
  scanner: ChunkedScanner | undefined;
  done = false;
  clientGone = false;

  constructor(conn: ClientConn, head: Head, route: TableRoute, affinity: Affinity, body: Buffer | undefined, pin: number | undefined) {
    this.conn = conn;
    this.head = head;
    this.app = route.app;
    this.affinity = affinity;
    this.pin = pin;
    this.firstBody = body;
    this.bodyLeft = head.contentLength - (body?.length ?? 0);
    this.retryable = head.contentLength === 0 && IDEMPOTENT.has(head.method);
    const d = conn.fp.deps;
    this.headersMs = route.http?.requestTimeoutMs ?? d.headersMs;
    this.bodyMs = route.http?.idleTimeoutMs ?? d.bodyMs;
    const from = clientAddress(conn.socket.remoteAddress);
    const out = upstreamRequestHeaders(head.raw, { for: from, proto: 'http', trusted: d.trusted?.has(from) ?? false });
    let s = `${head.method} ${head.target} HTTP/1.1\r\n`;
    for (let i = 0; i < out.length; i += 2) s += `${out[i]}: ${out[i + 1]}\r\n`;
    this.upHead = `${s}\r\n`;
  }

  attempt(upstream: Upstream): void {
    const d = this.conn.fp.deps;
    this.tried.add(upstream.id);
    this.attempts++;
    this.upstream = upstream;
    this.recorder = d.metrics.revision(upstream);
    d.pools.acquire(upstream.id);
    this.acquired = true;
    const up = this.conn.fp.upstreams.take(upstream, d.connectMs);
    this.up = up;
    up.ex = this;
    if (up.connected) up.socket.setTimeout(this.headersMs);
    const s = up.socket;
    if (this.firstBody === undefined) s.write(this.upHead, 'latin1');
    else {
      s.cork();
      s.write(this.upHead, 'latin1');
      s.write(this.firstBody);
      s.uncork();
    }
  }

  /** Client bytes of the request body: sent on; what is past the body is returned. */
  requestBody(chunk: Buffer): Buffer | undefined {
    const take = Math.min(this.bodyLeft, chunk.length);
    this.bodyLeft -= take;
    const part = take === chunk.length ? chunk : chunk.subarray(0, take);
    const up = this.up;
    if (up !== undefined && !this.done && !up.socket.destroyed && !up.socket.write(part)) {
      const client = this.conn.socket;
      client.pause();
      up.socket.once('drain', () => {
        if (!this.conn.paused) client.resume();
      });
    }
    return take === chunk.length ? undefined : chunk.subarray(take);
  }

  upConnected(): void {
    this.up?.socket.setTimeout(this.headersMs);
  }

  upData(chunk: Buffer): void {
    if (this.responded) return this.body(chunk);
    // `chunk` may be a view of the shared read buffer: parsed now, copied if the head is incomplete.
    this.rbuf = this.rbuf === undefined ? chunk : Buffer.concat([this.rbuf, chunk]);
    for (;;) {
      const h = parseResponseHead(this.rbuf, this.head.method);
      if (h.kind === 'incomplete') {
        if (this.rbuf === chunk) this.rbuf = Buffer.from(chunk);
        return;
      }
      if (h.kind === 'bad') return this.failed(coded(h.why, 'HPE_INVALID_RESPONSE'), true);
      if (h.status < 200) {
        // 1xx: interim (103 Early Hints…), dropped as the node engine drops them; 101 was never asked for.
        if (h.status === 101) return this.failed(coded('unexpected 101', 'HPE_INVALID_RESPONSE'), true);
        this.rbuf = h.end < this.rbuf.length ? this.rbuf.subarray(h.end) : undefined;
        if (this.rbuf === undefined) return;
        chunk = this.rbuf; // still possibly a view: copied above if it stays incomplete
        continue;
      }
      this.responded = true;
      this.status = h.status;
      this.framing = h.framing;
      this.left = h.length;
      this.reusable = h.reusable;
      if (h.framing === 'chunked') this.scanner = new ChunkedScanner();
      const rest = h.end < this.rbuf.length ? this.rbuf.subarray(h.end) : undefined;
      this.rbuf = undefined;
      this.up?.socket.setTimeout(this.bodyMs);
      this.writeHead(h.status, h.reason, h.headers, rest);
      return;
    }
  }

  /** The response head to the client, with the first body bytes when they came with it. */
  writeHead(status: number, reason: string, record: Record<string, string | string[]>, rest: Buffer | undefined): void {
    const out = withSetCookie(clientResponseHeaders(record), this.affinity.setCookie);
    // The length is the framing's business: an app that sent both keeps no Content-Length.
    if (this.framing !== 'length' && this.framing !== 'none') delete out['content-length'];
    let s = `HTTP/1.1 ${status} ${reason || STATUS_CODES[status] || 'unknown'}\r\n`;
    for (const name in out) {
      const v = out[name];
      if (Array.isArray(v)) for (const one of v) s += `${name}: ${one}\r\n`;
      else if (v !== undefined) s += `${name}: ${v}\r\n`;
    }
    if (out['date'] === undefined) s += `Date: ${httpDate()}\r\n`;
    if (this.framing === 'chunked') s += 'Transfer-Encoding: chunked\r\n';
    s += this.keepClient() ? `${KEEP_ALIVE}\r\n` : 'Connection: close\r\n\r\n';
    this.headSent = true;
    const client = this.conn.socket;
    if (rest === undefined) {
      client.write(s, 'latin1');
      if (this.framing === 'none' || (this.framing === 'length' && this.left === 0)) this.finish();
      return;
    }
    if (this.framing === 'length' && rest.length >= this.left) {
      // The common small response: head and whole body in one buffer, one write (one syscall).
      const body = rest.length > this.left ? rest.subarray(0, this.left) : rest;
      if (rest.length > this.left) this.reusable = false;
      const out = Buffer.allocUnsafe(s.length + body.length);
      out.write(s, 0, 'latin1');
      body.copy(out, s.length);
      this.left = 0;
      client.write(out);
      this.finish();
      return;
    }
    client.cork();
    client.write(s, 'latin1');
    this.body(rest);
    client.uncork();
  }

  /** Whether the client connection can serve another request after this one. */
  keepClient(): boolean {
    return !this.head.close && this.framing !== 'close' && !this.conn.fp.closing;
  }

  body(chunk: Buffer): void {
    if (this.done) return;
    let part = chunk;
    let end = false;
    switch (this.framing) {
      case 'none':
        // Bytes after a body-less response: the app is confused; do not reuse its connection.
        this.reusable = false;
        return this.finish();
      case 'length':
        if (chunk.length >= this.left) {
          if (chunk.length > this.left) this.reusable = false;
          part = chunk.subarray(0, this.left);
          this.left = 0;
          end = true;
        } else this.left -= chunk.length;
        break;
      case 'chunked': {
        let at: number;
        try {
          at = this.scanner!.feed(chunk);
        } catch {
          // A malformed chunked body from the app: the client's response is cut short.
          return this.cut(coded('malformed chunked body', 'HPE_INVALID_CHUNK_SIZE'));
        }
        if (at !== -1) {
          if (at < chunk.length) this.reusable = false;
          part = at < chunk.length ? chunk.subarray(0, at) : chunk;
          end = true;
        }
        break;
      }
      case 'close':
        break;
    }
    const client = this.conn.socket;
    // A copy: `part` may be a view of the shared read buffer, and a write keeps its buffer until sent.
    if (part.length > 0 && !client.write(Buffer.from(part)) && !end) {
      // Backpressure: the client reads slower than the app writes; stop reading the app.
      const up = this.up!;
      up.socket.pause();
      client.once('drain', () => {
        if (up.ex === this) up.socket.resume();
      });
    }
    if (end) this.finish();
  }

  /** The response is complete. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    const up = this.up;
    this.up = undefined;
    if (up !== undefined) {
      up.ex = undefined;
      this.conn.fp.upstreams.release(up, this.reusable && this.bodyLeft === 0);
    }
    this.release();
    this.record(this.status);
    this.conn.ended(this.keepClient() && this.bodyLeft === 0);
  }

  /** The app's socket closed while this exchange used it. */
  upClosed(err: Error | undefined): void {
    if (this.done) return;
    this.up = undefined;
    if (this.responded && this.framing === 'close' && err === undefined) {
      this.release();
      this.done = true;
      this.record(this.status);
      this.conn.ended(false);
      return;
    }
    if (this.responded) return this.cut(err ?? coded('the app closed the connection mid-response', 'UND_ERR_SOCKET'));
    this.failed(err ?? coded('the app closed the connection', 'UND_ERR_SOCKET'), false);
  }

  upTimeout(): void {
    if (this.done) return;
    const up = this.up;
    if (up !== undefined && !up.connected) return this.failed(coded('connect timeout', 'UND_ERR_CONNECT_TIMEOUT'), true);
    if (!this.responded) return this.failed(coded('headers timeout', 'UND_ERR_HEADERS_TIMEOUT'), true);
    this.cut(coded('body timeout', 'UND_ERR_BODY_TIMEOUT'));
  }

  /** A failure after the status line went out: the only honest signal left is an incomplete response. */
  cut(_err: Error): void {
    if (this.done) return;
    this.conn.fp.deps.metrics.upstreamError(this.app);
    this.dropUpstream();
    this.done = true;
    this.record(this.status);
    this.conn.socket.destroy();
    this.conn.ended(false);
  }

  /** An attempt failed before the response: retry once when safe, else answer 502/504. */
  failed(err: Error, destroy: boolean): void {
    if (this.done) return;
    if (destroy) this.dropUpstream();
    else {
      this.up = undefined;
      this.release();
    }
    const d = this.conn.fp.deps;
    d.metrics.upstreamError(this.app);
    const code = errno(err);
    if (!this.responded && this.retryable && this.attempts === 1 && code !== undefined && CONNECTION_FAILURES.has(code)) {
      const next = this.nextUpstream(code);
      if (next !== undefined) return this.attempt(next);
    }
    this.done = true;
    this.answer(upstreamFailed(this.app, err));
  }

  private nextUpstream(code: string): Upstream | undefined {
    const d = this.conn.fp.deps;
    const route = d.lookup(this.head.host);
    if (route === undefined || route.app !== this.app) return undefined;
    const bucket = this.affinity.bucket;
    const other = d.balancer.pick(route, d.pools.inflight, this.tried, this.pin, bucket);
    if (other !== undefined || !DROPPED.has(code)) return other;
    return d.balancer.pick(route, d.pools.inflight, undefined, this.pin, bucket);
  }

  /** The router's own answer (as error-responses.ts's sendError writes it). */
  answer(e: RouterError): void {
    const { type, body } = renderError(this.head.headers as IncomingHttpHeaders, e);
    const keep = !this.head.close && this.bodyLeft === 0 && !this.conn.fp.closing;
    const text =
      `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'unknown'}\r\ncontent-type: ${type}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nx-pilot-error: ${e.error.code}\r\n` +
      `Date: ${httpDate()}\r\n${keep ? KEEP_ALIVE : 'Connection: close\r\n'}\r\n`;
    this.headSent = true;
    this.conn.socket.write(Buffer.concat([Buffer.from(text, 'latin1'), Buffer.from(body, 'utf8')]));
    this.record(e.status);
    this.conn.ended(keep);
  }

  /** The client went away: stop the app's work it no longer waits for. */
  clientLeft(): void {
    if (this.done) return;
    this.done = true;
    this.clientGone = true;
    this.dropUpstream();
    this.record(CLIENT_CLOSED);
    this.conn.fp.exchangeEnded();
    this.conn.ex = undefined;
  }

  private dropUpstream(): void {
    const up = this.up;
    this.up = undefined;
    if (up !== undefined) {
      up.ex = undefined;
      up.socket.destroy();
    }
    this.release();
  }

  private release(): void {
    if (!this.acquired) return;
    this.acquired = false;
    this.conn.fp.deps.pools.release(this.upstream!.id);
  }

  private record(code: number): void {
    const now = performance.now();
    this.recorder?.record(code, now - this.startedAt, now);
  }
}

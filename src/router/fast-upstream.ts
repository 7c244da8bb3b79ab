/**
 * The fast engine's sockets to apps (fast-path.ts): one exchange at a time per socket (no
 * pipelining, as undici's `pipelining: 1`), kept alive between exchanges, per upstream id.
 */
import net from 'node:net';
import type { Upstream } from './routing-table.js';

/** An idle upstream socket is closed after this (below Node's 5 s server keep-alive, as undici's 4 s). */
const UPSTREAM_IDLE_MS = 4_000;

/** The exchange using a socket, told what happens on it. */
export interface UpstreamUser {
  /** Bytes from the app: possibly a view of a shared buffer, valid only during the call. */
  upData(chunk: Buffer): void;
  upConnected(): void;
  upTimeout(): void;
  upClosed(err: Error | undefined): void;
}

/** One socket to an app, serving one exchange at a time, kept alive between them. */
export class UpConn {
  readonly pool: RawPool;
  readonly socket: net.Socket;
  ex: UpstreamUser | undefined;
  connected = false;
  #err: Error | undefined;

  #onRead = (n: number, buf: Uint8Array): boolean => {
    // A view of the shared buffer: used up (or copied) before this returns.
    if (this.ex !== undefined) this.ex.upData((buf as Buffer).subarray(0, n));
    else this.socket.destroy(); // bytes nobody asked for: the connection cannot be trusted
    return true;
  };

  constructor(pool: RawPool, connectMs: number) {
    this.pool = pool;
    const u = pool.upstream;
    // Reads land in one shared buffer (no Buffer and no stream push per read): each chunk is
    // consumed before the callback returns, and copied where it is kept or written (Exchange).
    this.socket = net.connect({ host: u.host, port: u.port, noDelay: true, onread: { buffer: READ_BUFFER, callback: this.#onRead } });
    this.socket.setTimeout(connectMs);
    this.socket.on('connect', () => {
      this.connected = true;
      this.ex?.upConnected();
    });
    this.socket.on('timeout', () => {
      if (this.ex !== undefined) this.ex.upTimeout();
      else this.socket.destroy(); // idle too long
    });
    this.socket.on('error', (err) => {
      this.#err = err;
    });
    this.socket.on('close', () => {
      this.pool.forget(this);
      const ex = this.ex;
      this.ex = undefined;
      ex?.upClosed(this.#err);
    });
  }
}

/** Where every upstream socket's reads land (see UpConn): a view of it is valid until the read callback returns. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** The idle sockets to one upstream. */
class RawPool {
  readonly upstream: Upstream;
  readonly idle: UpConn[] = [];
  retired = false;

  constructor(upstream: Upstream) {
    this.upstream = upstream;
  }

  forget(c: UpConn): void {
    const i = this.idle.indexOf(c);
    if (i !== -1) this.idle.splice(i, 1);
  }
}

/**
 * Keep-alive sockets per upstream id. Retiring an upstream closes its idle sockets at once; a busy
 * one is closed when its exchange ends (its in-flight count is in UpstreamPools, which drains read).
 */
export class RawPools {
  readonly #pools = new Map<string, RawPool>();
  #closed = false;

  take(upstream: Upstream, connectMs: number): UpConn {
    let pool = this.#pools.get(upstream.id);
    if (pool !== undefined && (pool.upstream.host !== upstream.host || pool.upstream.port !== upstream.port)) {
      this.retire(pool.upstream);
      pool = undefined;
    }
    if (pool === undefined) {
      pool = new RawPool(upstream);
      this.#pools.set(upstream.id, pool);
    }
    // Most recently used first: the socket least likely to have been closed by the app meanwhile.
    const c = pool.idle.pop();
    return c ?? new UpConn(pool, connectMs);
  }

  release(c: UpConn, reusable: boolean): void {
    if (!reusable || c.pool.retired || this.#closed || c.socket.destroyed) {
      c.socket.destroy();
      return;
    }
    c.socket.setTimeout(UPSTREAM_IDLE_MS);
    c.pool.idle.push(c);
  }

  /** No new exchange on this upstream; its idle sockets close now. */
  retire(upstream: Upstream): void {
    const pool = this.#pools.get(upstream.id);
    if (pool === undefined || pool.upstream.host !== upstream.host || pool.upstream.port !== upstream.port) return;
    this.#pools.delete(upstream.id);
    pool.retired = true;
    for (const c of pool.idle.splice(0)) c.socket.destroy();
  }

  closeAll(): void {
    this.#closed = true;
    for (const pool of this.#pools.values()) {
      pool.retired = true;
      for (const c of pool.idle.splice(0)) c.socket.destroy();
    }
    this.#pools.clear();
  }
}

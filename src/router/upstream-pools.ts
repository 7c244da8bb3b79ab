/**
 * One keep-alive undici Pool per upstream, and the in-flight request count per upstream id.
 *
 * Concurrency rules: a pool is created on the first request to an upstream and reused after that.
 * When the upstream leaves the table it is retired: the balancer no longer sees it (the table is
 * already new), and its pool is closed gracefully, so requests already dispatched on it run to
 * completion while the pool accepts nothing new. In-flight counts are kept by id, outside the
 * pools, so they stay observable during the drain and survive an id that comes back.
 */
import { Pool } from '../http/undici.js';
import type { Upstream } from './routing-table.js';

export interface PoolTimeouts {
  /** Time to wait for the upstream's response headers. */
  readonly headersMs: number;
  /** Longest silence allowed between two chunks of the upstream's response body. */
  readonly bodyMs: number;
  /** Time to wait for a TCP connection to the upstream. */
  readonly connectMs: number;
}

interface Entry {
  readonly upstream: Upstream;
  readonly pool: Pool;
}

/** The pools of the router's upstreams and their in-flight counts. */
export class UpstreamPools {
  readonly #timeouts: PoolTimeouts;
  readonly #active = new Map<string, Entry>();
  readonly #retiring = new Set<Pool>();
  readonly #inflight = new Map<string, number>();

  constructor(timeouts: PoolTimeouts) {
    this.#timeouts = timeouts;
  }

  /** The pool to send requests for this upstream to, created on first use. */
  pool(upstream: Upstream): Pool {
    const entry = this.#active.get(upstream.id);
    if (entry !== undefined && entry.upstream.host === upstream.host && entry.upstream.port === upstream.port) {
      return entry.pool;
    }
    if (entry !== undefined) this.retire(entry.upstream);
    const host = upstream.host.includes(':') && !upstream.host.startsWith('[') ? `[${upstream.host}]` : upstream.host;
    const pool = new Pool(`http://${host}:${upstream.port}`, {
      headersTimeout: this.#timeouts.headersMs,
      bodyTimeout: this.#timeouts.bodyMs,
      connect: { timeout: this.#timeouts.connectMs },
      // One request per connection at a time: pipelining would let a slow response hold up the
      // ones queued behind it, which least-in-flight balancing is there to avoid.
      pipelining: 1,
    });
    this.#active.set(upstream.id, { upstream, pool });
    return pool;
  }

  /** Send no new request to this upstream; close its pool once the requests in flight are done. */
  retire(upstream: Upstream): void {
    const entry = this.#active.get(upstream.id);
    if (entry === undefined || entry.upstream.host !== upstream.host || entry.upstream.port !== upstream.port) return;
    this.#active.delete(upstream.id);
    this.#retiring.add(entry.pool);
    // close() waits for queued and running requests; their own handlers report their errors.
    entry.pool.close().then(
      () => this.#retiring.delete(entry.pool),
      () => this.#retiring.delete(entry.pool),
    );
  }

  /** Count a request as in flight to this upstream (until `release`). */
  acquire(id: string): void {
    this.#inflight.set(id, (this.#inflight.get(id) ?? 0) + 1);
  }

  /** The request counted by `acquire` has finished, one way or another. */
  release(id: string): void {
    const n = (this.#inflight.get(id) ?? 0) - 1;
    if (n > 0) this.#inflight.set(id, n);
    else this.#inflight.delete(id);
  }

  /** Every upstream id with requests in flight (in the table or draining), and how many. */
  inflightAll(): Record<string, number> {
    return Object.fromEntries(this.#inflight);
  }

  /** Requests in flight to this upstream id, whether it is still in the table or draining. */
  inflight = (id: string): number => this.#inflight.get(id) ?? 0;

  /** Close every pool; after `graceMs`, destroy those still busy (their requests fail). */
  async closeAll(graceMs: number): Promise<void> {
    const pools = [...[...this.#active.values()].map((e) => e.pool), ...this.#retiring];
    this.#active.clear();
    let timer: NodeJS.Timeout | undefined;
    const graceful = Promise.allSettled(pools.map((p) => p.close()));
    const deadline = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    });
    const outcome = await Promise.race([graceful, deadline]);
    clearTimeout(timer);
    if (outcome === 'late') await Promise.allSettled(pools.map((p) => p.destroy()));
    this.#retiring.clear();
  }
}

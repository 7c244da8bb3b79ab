/**
 * The router's metrics as they were before the traffic windows (issue #12 part 5): a prom-client
 * counter and histogram with labels, incremented per request. Kept only so that bench/router.ts can
 * measure the old path against the new one in the same run; nothing in src/ uses it.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import type { RevisionRecorder, TrafficSink } from '../src/router/metrics.js';
import type { Upstream } from '../src/router/routing-table.js';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class LegacyPromMetrics implements TrafficSink {
  readonly #requests: Counter<'app' | 'revision' | 'code'>;
  readonly #duration: Histogram<'app' | 'revision'>;
  readonly #upstreamErrors: Counter<'app'>;

  constructor(readonly registry: Registry = new Registry()) {
    this.#requests = new Counter({
      name: 'pilot_router_requests_total',
      help: 'requests',
      labelNames: ['app', 'revision', 'code'] as const,
      registers: [registry],
    });
    this.#duration = new Histogram({
      name: 'pilot_router_request_duration_seconds',
      help: 'latency',
      labelNames: ['app', 'revision'] as const,
      buckets: BUCKETS,
      registers: [registry],
    });
    this.#upstreamErrors = new Counter({
      name: 'pilot_router_upstream_errors_total',
      help: 'errors',
      labelNames: ['app'] as const,
      registers: [registry],
    });
  }

  readonly #recorders = new WeakMap<Upstream, RevisionRecorder>();

  /** The old call shape behind the new interface: each record builds and hashes the labels, as `request` did. */
  revision(upstream: Upstream): RevisionRecorder {
    let r = this.#recorders.get(upstream);
    if (r === undefined) {
      r = { record: (code, latencyMs) => this.request(upstream.app, upstream.revision, code, latencyMs / 1000) };
      this.#recorders.set(upstream, r);
    }
    return r;
  }

  request(app: string, revision: number | undefined, code: number, seconds: number): void {
    const rev = revision === undefined ? '' : String(revision);
    this.#requests.inc({ app, revision: rev, code: String(code) });
    if (revision !== undefined) this.#duration.observe({ app, revision: rev }, seconds);
  }

  upstreamError(app: string): void {
    this.#upstreamErrors.inc({ app });
  }
}

/**
 * Traffic metrics, labelled per app and revision so that canary analysis can compare the error rate
 * and latency of a new revision with the old one's, and the autoscaler can read request rates.
 */
import { Counter, Histogram, Registry } from 'prom-client';

/** Latency buckets (seconds): fine below 100 ms where web apps live, coarse up to the 60 s timeout. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Status code recorded when the client went away before the response was complete (nginx's 499). */
export const CLIENT_CLOSED = 499;

/** The router's metrics, registered in the given registry (or a private one). */
export class RouterMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<'app' | 'revision' | 'code'>;
  readonly #duration: Histogram<'app' | 'revision'>;
  readonly #upstreamErrors: Counter<'app'>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    // Reuse metrics already registered (a second router on the same registry, as in tests) instead
    // of failing on the duplicate name.
    this.#requests = reuse(registry, 'pilot_router_requests_total', () => new Counter({
      name: 'pilot_router_requests_total',
      help: 'HTTP requests answered by the router, by app, revision and status code (app="" for unknown hosts, revision="" when no instance was chosen, code 499 when the client left first).',
      labelNames: ['app', 'revision', 'code'] as const,
      registers: [registry],
    }));
    this.#duration = reuse(registry, 'pilot_router_request_duration_seconds', () => new Histogram({
      name: 'pilot_router_request_duration_seconds',
      help: 'Time from the request reaching the router to the end of its response, by app and revision.',
      labelNames: ['app', 'revision'] as const,
      buckets: BUCKETS,
      registers: [registry],
    }));
    this.#upstreamErrors = reuse(registry, 'pilot_router_upstream_errors_total', () => new Counter({
      name: 'pilot_router_upstream_errors_total',
      help: 'Failed attempts to get a response from an instance (refused, reset, timed out), retried ones included, by app.',
      labelNames: ['app'] as const,
      registers: [registry],
    }));
  }

  /** Record one answered request. `revision` is undefined when no instance was chosen. */
  request(app: string, revision: number | undefined, code: number, seconds: number): void {
    const rev = revision === undefined ? '' : String(revision);
    this.#requests.inc({ app, revision: rev, code: String(code) });
    // Requests that never reached an app would skew its latency distribution toward zero.
    if (revision !== undefined) this.#duration.observe({ app, revision: rev }, seconds);
  }

  /** Record one failed attempt at an upstream of `app`. */
  upstreamError(app: string): void {
    this.#upstreamErrors.inc({ app });
  }
}

function reuse<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

/**
 * Traffic figures per app and revision, readable in the process (sliding windows: requests, status
 * classes, latency percentiles over the last N seconds, core/traffic-window.ts) and exported to
 * Prometheus under the same names as before, for canary analysis and the autoscaler.
 *
 * Hot path: an exchange asks once, when it picks an upstream, for that upstream's revision
 * recorder (`revision(upstream)`, a WeakMap hit on the upstream object) and keeps the reference;
 * recording is then a few increments on typed arrays allocated when the revision was first seen.
 * No label strings are built or hashed per request: Prometheus reads the running totals through
 * collect callbacks when it scrapes.
 *
 * Keys that saw no request for an hour are dropped at the next read (their counters start again
 * from zero if they come back, which Prometheus's rate() reads as a counter reset).
 */
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { TrafficWindow, type TrafficSummary, type TrafficWindowOptions } from '../core/traffic-window.js';
import type { Upstream } from './routing-table.js';

/** Latency buckets (seconds): fine below 100 ms where web apps live, coarse up to the 60 s timeout. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** A key untouched this long is forgotten at the next read. */
const IDLE_MS = 3_600_000;

/** Status code recorded when the client went away before the response was complete (nginx's 499). */
export const CLIENT_CLOSED = 499;

/** Where one request of one revision is counted. `now` and the latency are milliseconds of performance.now(). */
export interface RevisionRecorder {
  record(code: number, latencyMs: number, now: number): void;
}

/** What the router records into (tests and the bench may swap in another implementation). */
export interface TrafficSink {
  /** The recorder of an upstream's (app, revision): ask once per attempt, keep the reference. */
  revision(upstream: Upstream): RevisionRecorder;
  /** A request counted by labels (the router's own answers, upgrades). `revision` undefined: no instance was chosen. */
  request(app: string, revision: number | undefined, code: number, seconds: number): void;
  /** One failed attempt at an upstream of `app`. */
  upstreamError(app: string): void;
  /** A sticky request served by another variant than its own, which had no ready instance. */
  stickyFallback?(app: string): void;
}

/** The figures of one (app, revision) over a window, as the router serves them. */
export interface RevisionTraffic {
  readonly app: string;
  /** null: requests for which no instance was chosen (no ready instance). */
  readonly revision: number | null;
  readonly summary: TrafficSummary;
}

/** One (app, revision): its window and the running totals Prometheus reads. */
class RevisionCounters implements RevisionRecorder {
  readonly window: TrafficWindow;
  /** Requests by exact status code (100-999; anything else at 0). */
  readonly codes = new Float64Array(1000);
  /** Latency histogram for Prometheus: one count per BUCKETS entry, then +Inf (not cumulative). */
  readonly buckets = new Float64Array(BUCKETS.length + 1);
  latencySum = 0;
  latencyCount = 0;
  /** Dropped as idle: an upstream still holding it asks for a fresh one. */
  pruned = false;

  constructor(
    readonly app: string,
    readonly revision: number | undefined,
    now: number,
    opts: TrafficWindowOptions | undefined,
  ) {
    this.window = new TrafficWindow(now, opts);
  }

  record(code: number, latencyMs: number, now: number): void {
    this.window.record(now, code, latencyMs);
    this.codes[code >= 100 && code <= 999 ? code : 0]!++;
    const seconds = latencyMs / 1000;
    let b = 0;
    while (b < BUCKETS.length && seconds > BUCKETS[b]!) b++;
    this.buckets[b]!++;
    this.latencySum += seconds;
    this.latencyCount++;
  }

  /** A request that reached no instance: counted, without a latency (it would skew the app's toward zero). */
  recordWithoutLatency(code: number, now: number): void {
    this.window.record(now, code);
    this.codes[code >= 100 && code <= 999 ? code : 0]!++;
  }
}

class AppCounters {
  readonly revisions = new Map<number, RevisionCounters>();
  /** Requests of this app for which no instance was chosen. */
  none: RevisionCounters | undefined;
  upstreamErrors = 0;
  lastErrorAt = 0;
  /** Sticky requests served by the other variant because their own had no ready instance. */
  stickyFallbacks = 0;
}

/** Every RouterMetrics feeding one registry: a registry's collectors add them all up (several routers in one process). */
const feeds = new WeakMap<Registry, Set<RouterMetrics>>();

/** The router's traffic figures, registered in the given registry (or a private one). */
export class RouterMetrics implements TrafficSink {
  readonly registry: Registry;
  readonly #apps = new Map<string, AppCounters>();
  readonly #byUpstream = new WeakMap<Upstream, RevisionCounters>();
  readonly #now: () => number;
  readonly #window: TrafficWindowOptions | undefined;

  constructor(registry: Registry = new Registry(), opts: { now?: () => number; window?: TrafficWindowOptions } = {}) {
    this.registry = registry;
    this.#now = opts.now ?? (() => performance.now());
    this.#window = opts.window;
    let set = feeds.get(registry);
    if (set === undefined) {
      set = new Set();
      feeds.set(registry, set);
      registerCollectors(registry, set);
    }
    set.add(this);
  }

  revision(upstream: Upstream): RevisionRecorder {
    let r = this.#byUpstream.get(upstream);
    if (r === undefined || r.pruned) {
      r = this.#counters(upstream.app, upstream.revision);
      this.#byUpstream.set(upstream, r);
    }
    return r;
  }

  request(app: string, revision: number | undefined, code: number, seconds: number): void {
    const now = this.#now();
    const r = this.#counters(app, revision);
    if (revision === undefined) r.recordWithoutLatency(code, now);
    else r.record(code, seconds * 1000, now);
  }

  upstreamError(app: string): void {
    const a = this.#app(app);
    a.upstreamErrors++;
    a.lastErrorAt = this.#now();
  }

  stickyFallback(app: string): void {
    this.#app(app).stickyFallbacks++;
  }

  /** Sticky fallbacks so far, by app (only apps that had one). */
  stickyFallbackTotals(): Iterable<[string, number]> {
    return [...this.#apps].filter(([, a]) => a.stickyFallbacks > 0).map(([name, a]) => [name, a.stickyFallbacks]);
  }

  /** The figures of every revision of `app` (every app when undefined) over the last `windowMs`. */
  traffic(windowMs: number, app?: string): RevisionTraffic[] {
    const now = this.#now();
    this.#prune(now);
    const out: RevisionTraffic[] = [];
    for (const [name, a] of this.#apps) {
      if (app !== undefined && name !== app) continue;
      for (const [rev, r] of a.revisions) out.push({ app: name, revision: rev, summary: r.window.summary(now, windowMs) });
      if (a.none) out.push({ app: name, revision: null, summary: a.none.window.summary(now, windowMs) });
    }
    return out;
  }

  /** Running totals, for the collectors. */
  *counters(): Iterable<RevisionCounters> {
    for (const a of this.#apps.values()) {
      yield* a.revisions.values();
      if (a.none) yield a.none;
    }
  }

  upstreamErrorTotals(): Iterable<[string, number]> {
    return [...this.#apps].filter(([, a]) => a.upstreamErrors > 0).map(([name, a]) => [name, a.upstreamErrors]);
  }

  #app(app: string): AppCounters {
    let a = this.#apps.get(app);
    if (a === undefined) {
      a = new AppCounters();
      this.#apps.set(app, a);
    }
    return a;
  }

  #counters(app: string, revision: number | undefined): RevisionCounters {
    const a = this.#app(app);
    if (revision === undefined) return (a.none ??= new RevisionCounters(app, undefined, this.#now(), this.#window));
    let r = a.revisions.get(revision);
    if (r === undefined) {
      r = new RevisionCounters(app, revision, this.#now(), this.#window);
      a.revisions.set(revision, r);
    }
    return r;
  }

  /**
   * Forget keys idle for an hour. An upstream object still in the table keeps its recorder through
   * the WeakMap and records into it; it is just no longer listed (its revision has been idle an hour).
   */
  #prune(now: number): void {
    for (const [name, a] of this.#apps) {
      for (const [rev, r] of a.revisions) {
        if (now - r.window.lastAt <= IDLE_MS) continue;
        r.pruned = true;
        a.revisions.delete(rev);
      }
      if (a.none && now - a.none.window.lastAt > IDLE_MS) {
        a.none.pruned = true;
        a.none = undefined;
      }
      if (a.revisions.size === 0 && a.none === undefined && now - a.lastErrorAt > IDLE_MS) this.#apps.delete(name);
    }
  }
}

interface MetricValue {
  readonly metricName?: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

/**
 * The three pilot_router_* metrics as prom-client metric objects whose values are read from the
 * running totals at scrape time (the shape Registry.getMetricsAsString and getSingleMetric().get() expect).
 */
function registerCollectors(registry: Registry, sources: Set<RouterMetrics>): void {
  const collector = (name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValue[]) => {
    const metric = {
      name,
      help,
      type,
      aggregator: 'sum' as const,
      get: async () => ({ name, help, type, aggregator: 'sum' as const, values: values() }),
    };
    registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  };
  collector(
    'pilot_router_requests_total',
    'HTTP requests answered by the router, by app, revision and status code (app="" for unknown hosts, revision="" when no instance was chosen, code 499 when the client left first).',
    'counter',
    () => {
      const sum = new Map<string, MetricValue>();
      for (const m of sources) {
        for (const r of m.counters()) {
          const revision = r.revision === undefined ? '' : String(r.revision);
          r.codes.forEach((n, code) => {
            if (n === 0) return;
            const key = `${r.app}\0${revision}\0${code}`;
            sum.set(key, { labels: { app: r.app, revision, code: String(code) }, value: (sum.get(key)?.value ?? 0) + n });
          });
        }
      }
      return [...sum.values()];
    },
  );
  collector(
    'pilot_router_request_duration_seconds',
    'Time from the request reaching the router to the end of its response, by app and revision.',
    'histogram',
    () => {
      // Summed by (app, revision): two routers feeding one registry give one series each.
      const series = new Map<string, { app: string; revision: string; buckets: Float64Array; sum: number; count: number }>();
      for (const m of sources) {
        for (const r of m.counters()) {
          if (r.revision === undefined || r.latencyCount === 0) continue;
          const key = `${r.app}\0${r.revision}`;
          let s = series.get(key);
          if (s === undefined) {
            s = { app: r.app, revision: String(r.revision), buckets: new Float64Array(BUCKETS.length + 1), sum: 0, count: 0 };
            series.set(key, s);
          }
          for (let i = 0; i < s.buckets.length; i++) s.buckets[i]! += r.buckets[i]!;
          s.sum += r.latencySum;
          s.count += r.latencyCount;
        }
      }
      const out: MetricValue[] = [];
      for (const s of series.values()) {
        const labels = { app: s.app, revision: s.revision };
        let cumulative = 0;
        BUCKETS.forEach((le, i) => {
          cumulative += s.buckets[i]!;
          out.push({ metricName: 'pilot_router_request_duration_seconds_bucket', labels: { ...labels, le }, value: cumulative });
        });
        out.push({ metricName: 'pilot_router_request_duration_seconds_bucket', labels: { ...labels, le: '+Inf' }, value: s.count });
        out.push({ metricName: 'pilot_router_request_duration_seconds_sum', labels, value: s.sum });
        out.push({ metricName: 'pilot_router_request_duration_seconds_count', labels, value: s.count });
      }
      return out;
    },
  );
  collector(
    'pilot_router_upstream_errors_total',
    'Failed attempts to get a response from an instance (refused, reset, timed out), retried ones included, by app.',
    'counter',
    () => {
      const sum = new Map<string, number>();
      for (const m of sources) for (const [app, n] of m.upstreamErrorTotals()) sum.set(app, (sum.get(app) ?? 0) + n);
      return [...sum].map(([app, value]) => ({ labels: { app }, value }));
    },
  );
  collector(
    'pilot_router_sticky_fallbacks_total',
    'Requests of an A/B experiment served by the other variant because their own had no ready instance, by app.',
    'counter',
    () => {
      const sum = new Map<string, number>();
      for (const m of sources) for (const [app, n] of m.stickyFallbackTotals()) sum.set(app, (sum.get(app) ?? 0) + n);
      return [...sum].map(([app, value]) => ({ labels: { app }, value }));
    },
  );
}

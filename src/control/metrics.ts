/**
 * The control plane's own Prometheus metrics (besides prom-client's process defaults and, with the
 * embedded router, the pilot_router_* ones), registered in one place so `/metrics` and
 * docs/metrics.md (cli/metrics-doc.ts) read the same definitions. Values are read at scrape time.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AutoscaleStatus } from './autoscaler.js';

/** Where the gauges read their values when Prometheus scrapes. */
export interface ControlMetricSources {
  /** The state of every instance the store knows. */
  instanceStates(): Promise<readonly string[]>;
  /** Autoscaled apps and their autoscaler status. */
  autoscaled(): Promise<readonly { readonly app: string; readonly status: AutoscaleStatus }[]>;
  /** Notification attempts since the start, by result (control/notifications.ts). */
  notifyAttempts(): ReadonlyMap<string, number>;
  /** This replica's leadership (control/leadership.ts); absent: always the leader. */
  leadership?(): { leading: boolean; changes: number; refusedWrites: number };
}

/** `pilot_store_call_seconds`: each store call's time seen by its caller, by method (control-store.ts `timedStore`). */
export function storeCallHistogram(registry: Registry): Histogram<'method'> {
  return new Histogram({
    name: 'pilot_store_call_seconds',
    help: 'Time of a call to the state store (SQLite or PostgreSQL) as its caller sees it (queueing included), by method',
    labelNames: ['method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
}

/** Register the control plane's gauges in `registry`. */
export function registerControlMetrics(registry: Registry, src: ControlMetricSources): void {
  new Gauge({
    name: 'pilot_instances',
    help: 'Instances known to the control plane, by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const state of await src.instanceStates()) this.inc({ state });
    },
  });
  // Autoscaled apps: the count the autoscaler set and the load it last read (in the target's unit).
  new Gauge({
    name: 'pilot_autoscale_replicas',
    help: 'Replica count of autoscaled apps, with their min and max',
    labelNames: ['app', 'bound'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { app, status: st } of await src.autoscaled()) {
        this.set({ app, bound: 'current' }, st.replicas);
        this.set({ app, bound: 'min' }, st.min);
        this.set({ app, bound: 'max' }, st.max);
      }
    },
  });
  new Gauge({
    name: 'pilot_autoscale_load',
    help: "Autoscaled apps' load at the last decision, per instance, in the target's unit (metric: rps or cpu)",
    labelNames: ['app', 'metric'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { app, status: st } of await src.autoscaled()) {
        if (st.current?.perInstance !== null && st.current?.perInstance !== undefined)
          this.set({ app, metric: st.target.metric }, st.current.perInstance);
      }
    },
  });
  new Gauge({
    name: 'pilot_leader',
    help: 'Whether this control-plane replica leads (1) or follows (0); with SQLite always 1',
    registers: [registry],
    collect() {
      this.set(src.leadership ? (src.leadership().leading ? 1 : 0) : 1);
    },
  });
  new Counter({
    name: 'pilot_leader_changes_total',
    help: 'Times this replica started or stopped leading since it started',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.leadership?.().changes ?? 0);
    },
  });
  new Counter({
    name: 'pilot_fenced_writes_total',
    help: 'Writes this replica made as leader that the store refused because its fencing token was no longer current',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.leadership?.().refusedWrites ?? 0);
    },
  });
  new Counter({
    name: 'pilot_notify_attempts_total',
    help: 'Notification delivery attempts since the control plane started, by result: delivered, retry (will be tried again), failed (given up)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [result, n] of src.notifyAttempts()) this.inc({ result }, n);
    },
  });
}

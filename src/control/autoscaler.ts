/**
 * The autoscaler loop: every few seconds, for each app with pilot.yaml `autoscale`, read its
 * figures, ask the pure decision (core/autoscale.ts) for a count, and when it differs set it the
 * way `pilot scale` does (the replica count, source `autoscaler`), so the reconciler places or
 * drains. Every change is an `autoscale.changed` event (from, to, reason) written with it.
 *
 *   tick ─► apps with autoscale ─► figures (router: req/s of every revision; agents: CPU)
 *        ─► decideReplicas(spec, count, figures, fleet room, recent recommendations, now)
 *        ─► count changed? ─► store.setAutoscaledReplicas (only from the count decided on) ─► enqueue(app)
 *
 * Ordering and concurrency: the write goes through the single writer (`serial`) and only applies
 * if the count is still the one the decision saw: a deploy, a removal or a rollout that landed in
 * between wins, and the next tick decides again on the new state. Recommendations live in memory;
 * after a restart the first tick seeds them with the current count, so nothing scales down before
 * a full scale-down window has been observed.
 *
 * During a rollout the count stays the app's: the rollout planner sizes its sets from it and only
 * splits it between revisions (core/rollout.ts), so the autoscaler and the rollout never both own it.
 */
import type { Logger } from 'pino';
import {
  decideReplicas,
  type AutoscaleCapacity,
  type AutoscaleDecision,
  type AutoscaleObservation,
  type Recommendation,
} from '../core/autoscale.js';
import type { AutoscaleSpec } from '../core/autoscale-config.js';
import { figures, mergeSummaries, type TrafficSummary } from '../core/traffic-window.js';
import { schedule } from '../core/scheduler.js';
import { isPilotError } from '../core/errors.js';
import type { AppRecord, InstanceRecord, Store } from '../store/store.js';
import type { Reconciler } from './reconciler.js';
import type { TrafficSource } from './traffic-routes.js';

/** Per-instance CPU figures (percent of the instance's allowance) of an app's instances, by instance id. */
export type CpuSource = (app: AppRecord, instances: readonly InstanceRecord[]) => Promise<ReadonlyMap<string, number>>;

export interface AutoscalerSettings {
  /** How often the loop decides. Default 3 s. */
  readonly intervalMs: number;
  /** The window of router figures a decision reads (10 s buckets: it covers 10-20 s). Default 10 s. */
  readonly windowMs: number;
}

export const DEFAULT_AUTOSCALER_SETTINGS: AutoscalerSettings = { intervalMs: 3000, windowMs: 10_000 };

export interface AutoscalerDeps {
  readonly store: Store;
  readonly reconciler: Pick<
    Reconciler,
    'serial' | 'enqueue' | 'schedulerSnapshot' | 'revision' | 'volumeRequest' | 'everyNodeIsolates' | 'nodeStatus'
  >;
  readonly traffic: TrafficSource;
  readonly cpu?: CpuSource | undefined;
  readonly log: Logger;
  readonly settings?: Partial<AutoscalerSettings> | undefined;
  /** Monotonic milliseconds (default performance.now). */
  readonly now?: (() => number) | undefined;
}

/** What `pilot status` and the app API show of an autoscaled app. */
export interface AutoscaleStatus {
  readonly min: number;
  readonly max: number;
  readonly target: AutoscaleSpec['target'];
  readonly scaleUpWindowSeconds: number;
  readonly scaleDownWindowSeconds: number;
  readonly replicas: number;
  /** The metric at the last decision: the app's load and per instance, in the target's unit. */
  readonly current: { readonly load: number | null; readonly perInstance: number | null; readonly measured: number } | null;
  readonly lastDecision: {
    readonly at: number;
    readonly replicas: number;
    readonly recommendation: number;
    readonly limitedBy: AutoscaleDecision['limitedBy'];
    readonly reason: string;
  } | null;
  /** The last change the loop made since this control plane started (the event feed holds them all). */
  readonly lastChange: { readonly at: number; readonly from: number; readonly to: number; readonly reason: string } | null;
}

interface AppState {
  history: readonly Recommendation[];
  observation?: AutoscaleObservation;
  decision?: AutoscaleDecision & { at: number };
  change?: { at: number; from: number; to: number; reason: string };
}

export class Autoscaler {
  readonly #deps: AutoscalerDeps;
  readonly #settings: AutoscalerSettings;
  readonly #now: () => number;
  readonly #apps = new Map<string, AppState>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #warnedAt = -Infinity;

  constructor(deps: AutoscalerDeps) {
    this.#deps = deps;
    this.#settings = { ...DEFAULT_AUTOSCALER_SETTINGS, ...deps.settings };
    this.#now = deps.now ?? (() => performance.now());
  }

  start(): void {
    if (this.#timer) return;
    const loop = (): void => {
      this.#running = this.tick()
        .catch((err: unknown) => this.#deps.log.error({ err }, 'autoscaler pass failed'))
        .finally(() => {
          this.#running = undefined;
          if (this.#timer) this.#timer = setTimeout(loop, this.#settings.intervalMs).unref();
        });
    };
    this.#timer = setTimeout(loop, this.#settings.intervalMs).unref();
  }

  /** Stop the loop; resolves once a pass in flight has ended. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One pass over every autoscaled app. */
  async tick(): Promise<void> {
    const apps = (await this.#deps.store.listApps()).filter((a) => a.config.autoscale !== undefined && a.activeRevision !== undefined);
    for (const name of this.#apps.keys()) if (!apps.some((a) => a.name === name)) this.#apps.delete(name);
    if (apps.length === 0) return;
    let rows: Awaited<ReturnType<TrafficSource>> | undefined;
    const rpsApps = apps.filter((a) => a.config.autoscale!.target.metric === 'rps');
    if (rpsApps.length > 0) {
      try {
        // One app: ask for its rows only (a router process answers less); several: every app's at once.
        rows = await this.#deps.traffic(this.#settings.windowMs, rpsApps.length === 1 ? rpsApps[0]!.name : undefined);
      } catch (err) {
        // Without figures every rps decision holds (never scales on a router that does not answer).
        this.#warn(err, 'no traffic figures from the router: autoscaled counts are held');
      }
    }
    for (const app of apps) {
      try {
        await this.#decide(app, rows);
      } catch (err) {
        this.#deps.log.error({ err, app: app.name }, 'autoscale decision failed');
      }
    }
  }

  /** The autoscale part of an app's status; undefined when the app has no `autoscale`. */
  status(app: AppRecord): AutoscaleStatus | undefined {
    const spec = app.config.autoscale;
    if (!spec) return undefined;
    const st = this.#apps.get(app.name);
    const d = st?.decision;
    return {
      min: spec.min,
      max: spec.max,
      target: spec.target,
      scaleUpWindowSeconds: spec.scaleUpWindowMs / 1000,
      scaleDownWindowSeconds: spec.scaleDownWindowMs / 1000,
      replicas: app.replicas,
      current: st?.observation
        ? { load: round(st.observation.load), perInstance: round(d?.perInstance ?? undefined), measured: st.observation.measured }
        : null,
      lastDecision: d
        ? { at: d.at, replicas: d.replicas, recommendation: d.recommendation, limitedBy: d.limitedBy, reason: d.reason }
        : null,
      lastChange: st?.change ?? null,
    };
  }

  async #decide(app: AppRecord, rows: Awaited<ReturnType<TrafficSource>> | undefined): Promise<void> {
    const spec = app.config.autoscale!;
    const now = this.#now();
    let st = this.#apps.get(app.name);
    if (!st) {
      // First sight (or a restart): what runs now counts as recommended now, so a scale-down waits a full window.
      st = { history: [{ at: now, replicas: app.replicas }] };
      this.#apps.set(app.name, st);
    }
    const observation = await this.#observe(app, spec, rows);
    const input = { spec, current: app.replicas, observation, history: st.history, now };
    let d = decideReplicas(input);
    // The fleet's room costs a read of every instance: only asked when the count would grow.
    if (d.replicas > app.replicas) d = decideReplicas({ ...input, capacity: await this.#capacity(app, d.replicas) });
    st.history = d.history;
    st.observation = observation;
    st.decision = { ...d, at: Date.now() };
    if (d.replicas === app.replicas) return;
    const change = { from: app.replicas, to: d.replicas, reason: d.reason };
    const applied = await this.#deps.reconciler.serial(() => this.#deps.store.setAutoscaledReplicas(app.name, change, Date.now()));
    if (!applied) return; // the count moved since it was read (a deploy, a removal): the next pass decides again
    st.change = { at: Date.now(), ...change };
    this.#deps.log.info({ app: app.name, from: change.from, to: change.to }, `autoscale: ${change.reason}`);
    this.#deps.reconciler.enqueue(app.name);
  }

  /** The app's load in the target's unit, and over how many instances it was measured. */
  async #observe(app: AppRecord, spec: AutoscaleSpec, rows: Awaited<ReturnType<TrafficSource>> | undefined): Promise<AutoscaleObservation> {
    if (spec.target.metric === 'rps') {
      if (rows === undefined) return { load: undefined, measured: 0 };
      // Every revision's requests (a rollout splits them), and those no instance was ready for: demand all the same,
      // while some instance serves. When none served any (all crashing, or none started yet), more of them would not
      // help and the demand says nothing of how many are needed: hold.
      let sum: TrafficSummary | undefined;
      let served = 0;
      for (const r of rows) {
        if (r.app !== app.name) continue;
        sum = sum === undefined ? r.summary : mergeSummaries(sum, r.summary);
        if (r.revision !== null) served += r.summary.requests;
      }
      if (sum !== undefined && sum.requests > 0 && served === 0) {
        return { load: undefined, measured: 0, unavailable: 'no instance served a request in the window (none was ready for them)' };
      }
      return { load: sum === undefined ? 0 : figures(sum).rps, measured: app.replicas };
    }
    const cpu = this.#deps.cpu;
    if (!cpu) return { load: undefined, measured: 0 };
    const serving = (await this.#deps.store.listInstances({ app: app.name })).filter(
      (i) => i.kind !== 'release' && i.desired === 'run' && i.state === 'ready',
    );
    let figuresOf: ReadonlyMap<string, number>;
    try {
      figuresOf = await cpu(app, serving);
    } catch (err) {
      this.#warn(err, 'no CPU figures from the agents: autoscaled counts are held');
      return { load: undefined, measured: 0 };
    }
    let load = 0;
    let measured = 0;
    for (const i of serving) {
      const v = figuresOf.get(i.id);
      if (v === undefined) continue;
      load += v;
      measured++;
    }
    return { load: measured === 0 ? undefined : load, measured };
  }

  /**
   * How many instances of the app the fleet can hold, up to `wanted`: those placed, plus what the
   * scheduler could add (its reason, when not all, says "N of M instances placed: …" of the M more).
   */
  async #capacity(app: AppRecord, wanted: number): Promise<AutoscaleCapacity | undefined> {
    const r = this.#deps.reconciler;
    const rev = app.activeRevision === undefined ? undefined : await r.revision(app.name, app.activeRevision);
    if (!rev) return undefined;
    const placed = (await this.#deps.store.listInstances({ app: app.name })).filter(
      (i) =>
        i.kind !== 'release' &&
        i.desired === 'run' &&
        i.state !== 'stopped' &&
        i.revision === rev.number &&
        r.nodeStatus(i.nodeId) !== 'down',
    ).length;
    const want = wanted - placed;
    if (want <= 0) return { replicas: placed, reason: undefined };
    const nodes = await r.schedulerSnapshot();
    const c = rev.config;
    const ownNetns = c.port !== undefined && c.runtime === 'process' && (await r.everyNodeIsolates());
    const p = schedule(nodes, {
      app: app.name,
      count: want,
      fixedPort: ownNetns ? undefined : c.port,
      cpu: c.resources.cpu,
      memoryMb: c.resources.memoryMb,
      constraints: c.constraints,
      artifact: rev.artifact,
      runtime: c.runtime,
      volumes: await r.volumeRequest(
        app.name,
        c.volumes.map((v) => v.name),
        nodes,
      ),
    });
    return { replicas: placed + p.nodeIds.length, reason: p.reason };
  }

  /** A warning at most once a minute (a silent router would otherwise log every pass). */
  #warn(err: unknown, msg: string): void {
    const now = this.#now();
    if (now - this.#warnedAt < 60_000) return;
    this.#warnedAt = now;
    this.#deps.log.warn({ err: isPilotError(err) ? err.message : err }, msg);
  }
}

const round = (v: number | undefined): number | null => (v === undefined ? null : Math.round(v * 100) / 100);

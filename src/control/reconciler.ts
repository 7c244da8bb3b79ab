/**
 * Reconcile per app, driven by a work queue keyed by app name (work-queue.ts, the shape of
 * controller-runtime). Every change to instances, rollouts and the active revision goes through
 * `serial()` (single-writer.ts), and so does every app's reconcile, so decisions never interleave
 * with API writes or with each other.
 *
 *   API write (deploy, scale, rollback, remove) ─► enqueue(app)
 *   agent report changing instances ────────────► enqueue(their apps)          ┌─► reconcile(app) inside serial():
 *   node status / scheduling / registration ────► enqueue(apps on it + unplaced) │   re-read the app, planApp, apply;
 *   a rollout or a drain in progress ───────────► requeue after intervalMs ─────┤   requeue while not settled
 *   resync every resyncMs (safety net) ─────────► every app                     └─► queue drained and a route input
 *                                                                                   changed ─► publishRoutes (whole table)
 *
 * An app whose reconcile fails backs off alone (exponential, capped); an error the catalogue calls
 * not retryable parks it until the next change of that app. Timers (rollout deadlines, drains, node
 * liveness) use the monotonic clock, kept in memory: after a restart of the control plane they start
 * again, which only ever lengthens a wait.
 */
import type { Logger } from 'pino';
import { basisOf, planAppChanges, type AppSnapshot, type Plan } from '../core/plan.js';
import type { PlacementRequest, SchedulerNode } from '../core/scheduler.js';
import type { NodeStatus } from '../core/types.js';
import type { AppRecord, InstanceRecord, RevisionRecord, Store } from '../store/store.js';
import { desiredRoutes, type Route, type RouteState } from '../core/routes.js';
import { experimentSeed } from '../core/experiment.js';
import { AgentWaiters } from './agent-waiters.js';
import { applyPlan, type ApplyResult } from './applier.js';
import { NodeLiveness, type NodeHealthSource } from './node-liveness.js';
import { OrphanRegistry, type OrphanInstance, type ReportedOrphan } from './orphans.js';
import { RevisionCache } from './revision-cache.js';
import { everyNodeIsolates, schedulerSnapshot } from './scheduler-snapshot.js';
import { SingleWriter } from './single-writer.js';
import { WorkQueue, systemClock, type Clock, type FailureInfo, type ReconcileResult } from './work-queue.js';
import type { AnalysisFigures } from '../core/analysis.js';
import { emptySummary, mergeSummaries, quantileMs, type TrafficSummary } from '../core/traffic-window.js';
import type { RevisionTraffic } from '../router/metrics.js';
import type { RolloutRecord } from '../store/store.js';

export { nodeIsolates } from './scheduler-snapshot.js';
export type { OrphanInstance } from './orphans.js';

/** What the reconciler needs of the router. */
export interface RoutingSink {
  set(routes: Route[]): void;
  inflight(upstreamId: string): number;
}

export interface ReconcilerSettings {
  /** How soon an app that is not settled (a rollout, a drain, an unplaced instance) is reconciled again. */
  intervalMs: number;
  maxDrainMs: number;
  crashLoopRestarts: number;
  /** Every app is reconciled this often whatever happened (a safety net for a missed change); default 30 s. */
  resyncMs?: number | undefined;
  /** Back-off cap of a failing app (default 30 s; the first retry after intervalMs). */
  maxBackoffMs?: number | undefined;
  /** The queue's clock (tests); the planner's elapsed times keep using the monotonic clock. */
  clock?: Clock | undefined;
  /** Called when a pass fails because the database is damaged: nothing can be decided any more. */
  onFatal?: ((err: unknown) => void) | undefined;
  /** The routers' traffic figures of one app (canary analysis); absent: a canary waits, saying it has no figures. */
  traffic?: ((windowMs: number, app: string) => Promise<readonly RevisionTraffic[]>) | undefined;
  /**
   * Several replicas (control/leadership.ts): while this one follows, a change is sent to the
   * leader (`app:NAME`, `node:ID`, `all`; the leader hands it to `forwarded`), and the routing table
   * is published again from the store after every batch of events (its routers and agents' routers
   * sync here). Absent: one process, always leading.
   */
  forward?: ((what: string) => void) | undefined;
}

/** Events of writes the leader's own reconcile does not make: the leader reconciles their app (a follower wrote them). */
const FROM_ELSEWHERE: ReadonlySet<string> = new Set([
  'rollout.started',
  'rollout.command',
  'instance.state',
  'instance.removed',
  'deploy.revision',
  'node.registered',
  'node.scheduling',
  'experiment.started',
  'experiment.ended',
]);

/** SQLite saying its file is damaged or gone: retrying cannot help. */
function isFatalStoreError(err: unknown): boolean {
  const code = String((err as { code?: unknown } | undefined)?.code ?? '');
  return code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_IOERR');
}

const monoNow = (): number => performance.now();

/** What of an app's instances the routing table depends on: a change of it means publishing again. */
function routeInputs(app: AppRecord | undefined, instances: readonly InstanceRecord[], rollout: RolloutRecord | undefined): string {
  const up = instances
    .filter((i) => i.desired === 'run' && i.state === 'ready')
    .map((i) => `${i.id}@${i.nodeId}:${i.address ?? ''}:${i.port ?? ''}:${i.revision}`)
    .sort();
  return `${app?.activeRevision ?? '-'}|${rollout ? `${rollout.toRevision}@${rollout.progress?.weight ?? 0}` : '-'}|${up.join(',')}`;
}

/** What canary analysis reads of a revision's summary. */
function analysisFigures(s: TrafficSummary): AnalysisFigures {
  return { requests: s.requests, errors: s.status[4], p99Ms: quantileMs(s, 0.99) };
}

export class Reconciler {
  private readonly rolloutStart = new Map<number, number>();
  private readonly drainStart = new Map<string, number>();
  /** Instance id → since when (monotonic) it has been ready without a break (rolling minReady). */
  private readonly readySince = new Map<string, number>();
  /** Rollout id → whether it is its revision's first (release phase); rollouts are immutable in that respect. */
  private readonly firstRollout = new Map<number, boolean>();
  private readonly writer = new SingleWriter();
  private readonly waiters = new AgentWaiters();
  private readonly liveness = new NodeLiveness();
  private readonly revisions: RevisionCache;
  private readonly orphanRegistry = new OrphanRegistry(() => this.wakeAgents());
  private readonly queue: WorkQueue<string>;
  private readonly clock: Clock;
  private resyncTimer: unknown;
  private started = false;
  /** Draining node ids, read once and kept until a node's scheduling changes (or the next resync). */
  private draining: ReadonlySet<string> | undefined;
  /** A route input changed since the table was last published. */
  private routesDirty = true;
  private publishQueued = false;
  /** Why part of an app's route is left out of the table (logged once per change, shown by status). */
  private problems = new Map<string, string[]>();
  private lastPublishError: string | undefined;
  /** Per app: the last failure logged (an app failing the same way is logged once, then when it changes). */
  private readonly lastFailure = new Map<string, string>();
  private readonly unplaced = new Map<string, { count: number; reason: string }>();
  private unfollowEvents: (() => void) | undefined;
  /** Whether this replica leads (always, with one process): a follower plans nothing and writes nothing. */
  private leading = true;

  constructor(
    private readonly store: Store,
    private readonly routing: RoutingSink,
    private readonly log: Logger,
    private readonly settings: ReconcilerSettings,
  ) {
    this.revisions = new RevisionCache(store);
    this.clock = settings.clock ?? systemClock;
    this.queue = new WorkQueue<string>({
      clock: this.clock,
      baseBackoffMs: Math.max(settings.intervalMs, 50),
      maxBackoffMs: settings.maxBackoffMs ?? 30_000,
      // Traffic figures (canary analysis) are read before taking the writer: a slow router never holds it.
      reconcile: async (app) => {
        if (!this.leading) {
          this.routesDirty = true; // a follower only keeps its routing table current
          return {};
        }
        const figures = await this.figuresFor(app);
        return this.serial(() => this.reconcile(app, figures));
      },
      onError: (app, err, info) => this.failed(app, err, info),
      onIdle: () => this.publishSoon(),
    });
    this.followEvents();
  }

  /**
   * Agents' long polls are woken by the event feed: the store publishes an instance's events after
   * the commit that made them (placed, desired, removed), whoever wrote it (a plan, an app removal).
   */
  private followEvents(): void {
    this.unfollowEvents ??= this.store.subscribeEvents((batch) => {
      if (batch.some((e) => e.kind === 'instance.placed' || e.kind === 'instance.desired' || e.kind === 'instance.removed'))
        this.wakeAgents();
      if (this.settings.forward === undefined) return;
      // Several replicas: whoever wrote it, the routing table may have changed; the leader
      // reconciles the apps that changes made elsewhere name (an app's scale is forwarded instead).
      this.routesDirty = true;
      if (!this.leading) return this.publishSoon();
      let any = false;
      for (const e of batch) {
        if (!FROM_ELSEWHERE.has(e.kind)) continue;
        if (e.kind.startsWith('node.')) this.draining = undefined;
        if (e.app !== undefined) this.queue.enqueue(e.app);
        else if (e.kind === 'node.registered' || e.kind === 'node.scheduling') for (const a of this.unplaced.keys()) this.queue.enqueue(a);
        any = true;
      }
      if (!any) this.publishSoon();
    });
  }

  /** Run `fn` after every write queued before it: the single-writer rule. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.writer.serial(fn);
  }

  /** Start the periodic resync (the safety net); changes are reconciled whether started or not. */
  start(): void {
    const every = this.settings.resyncMs ?? 30_000;
    this.followEvents();
    this.started = true;
    const loop = (): void => {
      if (!this.started) return; // stopped while a resync ran
      this.resyncTimer = this.clock.setTimer(() => {
        this.resyncAll()
          .then(() => this.lastFailure.delete('(resync)'))
          .catch((err: unknown) => this.failed('(resync)', err, undefined))
          .finally(loop);
      }, every);
    };
    loop();
  }

  stop(): void {
    this.unfollowEvents?.();
    this.unfollowEvents = undefined;
    this.started = false;
    if (this.resyncTimer !== undefined) this.clock.clearTimer(this.resyncTimer);
    this.resyncTimer = undefined;
    this.queue.stop();
  }

  /** Something about this app changed (an API write): reconcile it soon (on the leader). */
  enqueue(app: string): void {
    if (!this.leading) this.settings.forward?.(`app:${app}`);
    this.queue.enqueue(app);
  }

  /**
   * Lead or follow (control/leadership.ts). A new leader reconciles every app at once (tick): what
   * the previous one left half done is level-triggered state, picked up from the store.
   */
  setLeading(on: boolean): void {
    this.leading = on;
    this.routesDirty = true;
  }

  get isLeading(): boolean {
    return this.leading;
  }

  /** A change a follower forwarded (see `forward`): `app:NAME`, `node:ID` or `all`. */
  forwarded(what: string): void {
    if (!this.leading) return;
    if (what.startsWith('app:')) this.queue.enqueue(what.slice(4));
    else if (what.startsWith('node:')) this.nodeChanged(what.slice(5)).catch((err: unknown) => this.failed('(routes)', err, undefined));
    else if (what === 'all') this.nudge();
  }

  /** Agents reported changes to these apps' instances: reconcile them, and the routing table may change. */
  appsChanged(apps: Iterable<string>): void {
    this.routesDirty = true;
    let any = false;
    for (const a of apps) {
      if (!this.leading) this.settings.forward?.(`app:${a}`);
      this.queue.enqueue(a);
      any = true;
    }
    if (!any) this.publishSoon();
  }

  /**
   * A node's status, scheduling, registration or runtimes changed: the apps with instances on it are
   * reconciled (lost or moving instances), and so are apps still waiting for room (`pendingOf`).
   */
  async nodeChanged(nodeId: string): Promise<void> {
    if (!this.leading) this.settings.forward?.(`node:${nodeId}`);
    this.draining = undefined;
    this.routesDirty = true;
    const apps = new Set([...this.unplaced.keys()]);
    for (const i of await this.store.listInstances({ nodeId })) apps.add(i.app);
    for (const a of apps) this.queue.enqueue(a);
    if (apps.size === 0) this.publishSoon();
  }

  /** Reconcile every app soon (something that concerns all of them changed, e.g. a node's runtimes). */
  nudge(): void {
    if (!this.leading) this.settings.forward?.('all');
    this.resyncAll(true).catch((err: unknown) => this.failed('(resync)', err, undefined));
  }

  /** One full pass: every app reconciled, removed apps purged, the routing table published. */
  async tick(): Promise<void> {
    await this.resyncAll(true);
    await this.queue.whenIdle();
    await this.serial(() => this.publishRoutes());
    this.routesDirty = false;
  }

  /** Queue every app (a change: also the ones parked by a terminal error, when `asChange`). */
  private async resyncAll(asChange = false): Promise<void> {
    this.draining = undefined;
    this.routesDirty = true;
    if (this.leading) await this.purgeRemoved(); // a write: the leader's
    const apps = await this.store.listApps();
    for (const a of apps) {
      if (asChange) this.queue.enqueue(a.name);
      else this.queue.resync(a.name);
    }
    if (apps.length === 0) this.publishSoon();
  }

  private async purgeRemoved(): Promise<void> {
    this.forgetPurged(await this.serial(() => this.store.purgeRemovedApps()));
  }

  /** Apps whose rows were purged: nothing of them is kept here either (a new app may take the name). */
  private forgetPurged(gone: readonly string[]): void {
    for (const name of gone) {
      this.log.info({ app: name }, 'app removed: its last instance stopped');
      this.revisions.forgetApp(name);
      this.queue.forget(name);
      this.unplaced.delete(name);
      this.lastFailure.delete(name);
    }
  }

  /**
   * Reconcile one app (the work queue's handler; runs inside `serial()`): re-read it, plan, apply,
   * and say when to look again. Settled apps are not looked at again until something changes.
   */
  async reconcile(name: string, figures?: CanaryFigures): Promise<ReconcileResult> {
    const app = await this.store.getApp(name);
    if (!app) {
      // Removed (its rows go once its last instance stopped) or never existed.
      if ((await this.store.removingApps()).includes(name)) this.forgetPurged(await this.store.purgeRemovedApps());
      this.unplaced.delete(name);
      this.lastFailure.delete(name);
      this.routesDirty = true;
      return {};
    }
    const before = routeInputs(app, await this.store.listInstances({ app: name }), await this.store.activeRollout(name));
    this.draining ??= new Set((await this.store.listNodes()).filter((n) => n.scheduling === 'draining').map((n) => n.id));
    const draining = this.draining;
    const keep = await this.reconcileApp(app, draining, figures);
    if (this.lastFailure.delete(name)) this.log.info({ app: name }, 'app reconciles again');
    const after = await this.store.listInstances({ app: name });
    const rollout = await this.store.activeRollout(name);
    const appAfter = await this.store.getApp(name);
    if (routeInputs(appAfter, after, rollout) !== before) this.routesDirty = true;
    // Not settled: a rollout (deadlines), a drain (in-flight requests, drain time), instances on a
    // draining node, or instances that found no room are looked at again soon, as the loop did.
    const busy =
      this.unplaced.has(name) ||
      after.some((i) => i.desired === 'drain' || (i.desired === 'run' && draining.has(i.nodeId))) ||
      rollout !== undefined;
    if (busy) return { requeueAfterMs: this.settings.intervalMs };
    // Blue/green keepPrevious: looked at again when the previous set's time is up. The pass that
    // finished the rollout planned while it still ran (its snapshot kept nothing): look it up now, or
    // the kept set would wait for the next resync (30 s) whatever keepPrevious says.
    const kept = keep ?? (rollout === undefined && appAfter ? await this.keptPrevious(name, appAfter.activeRevision) : undefined);
    return kept === undefined ? {} : { requeueAfterMs: Math.max(this.settings.intervalMs, kept.untilMs - Date.now() + 50) };
  }

  /**
   * A canary with traffic: its figures and the stable revision's over the analysis window, read
   * from the routers. undefined: no canary, or no figures (the planner then waits and says so).
   */
  private async figuresFor(app: string): Promise<CanaryFigures> {
    const read = this.settings.traffic;
    const r = await this.store.activeRollout(app);
    const analysis = r?.strategy?.analysis;
    if (!read || !r || !analysis || (r.progress?.weight ?? 0) === 0) return undefined;
    try {
      const rows = await read(analysis.windowMs, app);
      const sum = (rev: number | undefined): TrafficSummary | undefined => {
        let acc: TrafficSummary | undefined;
        for (const row of rows) if (row.app === app && row.revision === rev) acc = acc ? mergeSummaries(acc, row.summary) : row.summary;
        return acc;
      };
      const stable = r.fromRevision === undefined ? undefined : sum(r.fromRevision);
      return {
        rollout: r.id,
        canary: analysisFigures(sum(r.toRevision) ?? emptySummary()),
        stable: stable && analysisFigures(stable),
      };
    } catch (err) {
      this.log.debug({ app, err: (err as Error).message }, 'no traffic figures for canary analysis');
      return undefined;
    }
  }

  /** The routing table is published once the queue has drained, if a route input changed. */
  private publishSoon(): void {
    if (!this.routesDirty || this.publishQueued) return;
    this.publishQueued = true;
    this.serial(async () => {
      this.publishQueued = false;
      if (!this.routesDirty) return;
      this.routesDirty = false;
      await this.publishRoutes();
    }).catch((err: unknown) => {
      this.routesDirty = true;
      this.failed('(routes)', err, undefined);
    });
  }

  /** An app failing the same way again is logged once, then again when the error changes. */
  private failed(app: string, err: unknown, info: FailureInfo | undefined): void {
    const msg = (err as Error)?.message ?? String(err);
    if (msg !== this.lastFailure.get(app)) {
      if (info?.terminal) this.log.error({ app, err }, 'reconcile failed: not retried until the app changes');
      else this.log.error({ app, err, retryInMs: info?.retryInMs }, 'reconcile failed');
    } else {
      this.log.debug({ app, err: msg, attempt: info?.attempt }, 'reconcile failed again');
    }
    this.lastFailure.set(app, msg);
    if (isFatalStoreError(err)) this.settings.onFatal?.(err);
  }

  /** Resolve when desired instances change (for any node), or after `ms`: agents long-poll on this. */
  waitForChange(ms: number): Promise<void> {
    return this.waiters.wait(ms);
  }

  /** Wake every long-polling agent: desired state changed. */
  private wakeAgents(): void {
    this.waiters.wakeAll();
  }

  /** Answer every held long poll now (shutdown). */
  releasePolls(): void {
    this.wakeAgents();
  }

  attachMonitor(m: NodeHealthSource): void {
    this.liveness.attach(m);
  }

  nodeHeardFrom(nodeId: string): void {
    this.liveness.heardFrom(nodeId);
  }

  /** A node's long poll is open (see NodeMonitor.pollOpened); call the returned function when it ends. */
  nodePolling(nodeId: string): () => void {
    return this.liveness.polling(nodeId);
  }

  nodeStatus(nodeId: string): NodeStatus {
    return this.liveness.status(nodeId);
  }

  isNodeLive(nodeId: string): boolean {
    return this.liveness.isLive(nodeId);
  }

  revision(app: string, n: number): Promise<RevisionRecord | undefined> {
    return this.revisions.get(app, n);
  }

  /** Work queue figures (tests, benches). */
  get queueStats(): WorkQueue<string>['stats'] {
    return this.queue.stats;
  }

  /** Resolves once no app waits or is being reconciled (tests, benches). */
  whenIdle(): Promise<void> {
    return this.queue.whenIdle();
  }

  /**
   * Plan the app (core/plan.ts) and hand the plan to the applier. A plan rejected as stale (its
   * rows changed while it was made: an agent reported) is made again from the new state, up to
   * three times; then the next pass tries again.
   */
  private async reconcileApp(app: AppRecord, draining: ReadonlySet<string>, figures: CanaryFigures): Promise<KeepPrevious | undefined> {
    const unplacedBefore = this.unplaced.get(app.name);
    this.unplaced.delete(app.name); // level-triggered: set again below while instances cannot be placed
    for (let attempt = 1; attempt <= 3; attempt++) {
      const s = await this.snapshotOf(app.name, draining, unplacedBefore, figures);
      if (!s) return undefined;
      const plan = await this.planFor(s);
      const r = await this.apply(plan);
      if (r.committed) return s.keep;
      if (attempt === 3) this.log.warn({ app: app.name, reason: r.reason }, 'plan stale three times in a row; the next pass plans again');
    }
    return undefined;
  }

  /** The app's snapshot, as the pure planner takes it. undefined: the app is gone. */
  async snapshotOf(
    name: string,
    draining: ReadonlySet<string>,
    unplacedBefore?: { count: number; reason: string },
    figures?: CanaryFigures,
  ): Promise<(AppSnapshot & { keep: KeepPrevious | undefined }) | undefined> {
    const app = await this.store.getApp(name);
    if (!app) return undefined;
    const rollout = await this.store.activeRollout(name);
    const keep = rollout ? undefined : await this.keptPrevious(name, app.activeRevision);
    const wallNow = Date.now();
    const all = await this.store.listInstances({ app: name });
    const basis = basisOf({ app: { activeRevision: app.activeRevision, replicas: app.replicas }, rolloutId: rollout?.id, instances: all });
    const now = monoNow();
    let readyTimeoutMs = 60_000;
    let fixedPort: number | undefined;
    const target = rollout?.toRevision ?? app.activeRevision;
    const rev = target === undefined ? undefined : await this.revision(app.name, target);
    if (rev) {
      readyTimeoutMs = rev.config.deploy.readyTimeoutMs;
      fixedPort = rev.config.port;
      // Each instance in its own network namespace (every ready node can): the port is no longer
      // shared, so the switch is start-new / probe / switch / drain, not recreate.
      if (fixedPort !== undefined && rev.config.runtime === 'process' && (await this.everyNodeIsolates())) fixedPort = undefined;
    }
    const releaseCmd =
      rollout && (await this.firstRolloutOf(rollout)) ? (await this.revision(app.name, rollout.toRevision))?.config.release : undefined;
    if (rollout && !this.rolloutStart.has(rollout.id)) this.rolloutStart.set(rollout.id, now);
    const progress = rollout?.progress;
    const experiment = await this.store.activeExperiment(name); // A/B: the variant keeps instances
    return {
      keep,
      app: {
        name: app.name,
        replicas: app.replicas,
        activeRevision: app.activeRevision,
        keepRevision: keep?.revision,
        experiment: experiment && { revision: experiment.variant, split: experiment.split },
      },
      rollout: rollout && {
        id: rollout.id,
        toRevision: rollout.toRevision,
        elapsedMs: now - this.rolloutStart.get(rollout.id)!,
        readyTimeoutMs,
        release: releaseCmd !== undefined && releaseCmd.length > 0,
        releaseTimeoutMs: rev?.config.deploy.releaseTimeoutMs,
        strategy: rollout.strategy,
        progress: progress && {
          step: progress.step,
          weight: progress.weight,
          // Wall clock: recorded, so a restarted control plane resumes what is left of a pause.
          sinceMs: progress.since === undefined ? undefined : Math.max(0, wallNow - progress.since),
          command: progress.command,
          verdict: progress.verdict,
        },
        figures: figures?.rollout === rollout.id ? figures : undefined,
      },
      instances: all.map((i) => ({
        id: i.id,
        nodeId: i.nodeId,
        revision: i.revision,
        desired: i.desired,
        state: i.state,
        restarts: i.restarts,
        lastError: i.lastError,
        drainingForMs: i.desired === 'drain' ? now - (this.drainStart.get(i.id) ?? (this.drainStart.set(i.id, now), now)) : undefined,
        inflight: this.routing.inflight(i.id),
        kind: i.kind,
        logTail: i.logTail,
        readyForMs: this.readyFor(i, now),
        nodeDown: this.nodeStatus(i.nodeId) === 'down',
        nodeDraining: draining.has(i.nodeId),
      })),
      fixedPort,
      placement: {
        cpu: rev?.config.resources?.cpu,
        memoryMb: rev?.config.resources?.memoryMb,
        constraints: rev?.config.constraints,
        artifact: rev?.artifact,
        runtime: rev?.config.runtime,
      },
      nodes: [],
      drainMs: rev?.config.deploy.drainMs ?? 1000,
      maxDrainMs: this.settings.maxDrainMs,
      crashLoopRestarts: this.settings.crashLoopRestarts,
      unplacedBefore,
      basis,
    };
  }

  /**
   * The app's plan. The cluster snapshot costs a read of every instance, so it is taken only when
   * the plan places something (planned first without nodes: any placement then shows as unplaced).
   */
  private async planFor(s: AppSnapshot): Promise<Plan> {
    const name = s.app.name;
    const dry = planAppChanges(s);
    if (dry.unplaced === undefined) return dry;
    const nodes = await this.schedulerSnapshot();
    const rev = s.rollout?.toRevision ?? s.app.activeRevision;
    const names = rev === undefined ? [] : ((await this.revision(name, rev))?.config.volumes ?? []).map((v) => v.name);
    return planAppChanges({ ...s, nodes, placement: { ...s.placement, volumes: await this.volumeRequest(name, names, nodes) } });
  }

  /** Commit a plan through the applier, then what lives in memory: drain clocks, agents' wake-up, routes. */
  private async apply(plan: Plan): Promise<ApplyResult> {
    const r = await applyPlan({ store: this.store, log: this.log, isNodeLive: (id) => this.isNodeLive(id) }, plan);
    if (!r.committed) return r;
    for (const d of plan.desired) {
      if (d.desired === 'drain') this.drainStart.set(d.id, monoNow());
      else this.drainStart.delete(d.id);
    }
    if (plan.unplaced) this.unplaced.set(plan.app, plan.unplaced);
    if (plan.finish && plan.rolloutId !== undefined) this.rolloutStart.delete(plan.rolloutId);
    // A switch or a weight change reaches the router at once.
    if (plan.activate !== undefined || plan.progress !== undefined || plan.finish !== undefined) await this.publishRoutes();
    return r;
  }

  /** How long the instance has been ready without a break (monotonic; a restart of the control plane starts it again). */
  private readyFor(i: InstanceRecord, now: number): number | undefined {
    if (i.state !== 'ready' || i.desired !== 'run') {
      this.readySince.delete(i.id);
      return undefined;
    }
    let since = this.readySince.get(i.id);
    if (since === undefined) this.readySince.set(i.id, (since = now));
    return now - since;
  }

  /**
   * Blue/green keepPrevious: after a successful switch, the previous revision's instances stay up
   * (out of the table) until the strategy's keepPrevious has passed since the switch.
   */
  private async keptPrevious(app: string, active: number | undefined): Promise<KeepPrevious | undefined> {
    const last = (await this.store.listRollouts(app, 1))[0];
    if (!last || last.status !== 'succeeded' || last.strategy?.type !== 'blue-green' || last.finishedAt === undefined) return undefined;
    if (last.fromRevision === undefined || last.fromRevision === active || last.toRevision !== active) return undefined;
    const untilMs = last.finishedAt + last.strategy.keepPreviousMs;
    return untilMs > Date.now() ? { revision: last.fromRevision, untilMs } : undefined;
  }

  /** The scheduler's view of the app's volumes: undefined without volumes; with the node that holds them once placed. */
  async volumeRequest(app: string, names: readonly string[], snapshot: readonly SchedulerNode[]): Promise<PlacementRequest['volumes']> {
    if (names.length === 0) return undefined;
    const held = (await this.store.listVolumePlacements(app)).find((p) => names.includes(p.name));
    if (!held) return { names };
    return { names, node: { id: held.nodeId, name: snapshot.find((n) => n.id === held.nodeId)?.name ?? held.nodeId } };
  }

  /** Instances of the app that the last pass could not place, and why (shown by `pilot status`). */
  pendingOf(app: string): { count: number; reason: string } | undefined {
    return this.unplaced.get(app);
  }

  /** Nodes and what runs on them, as the pure scheduler sees them (scheduler-snapshot.ts). */
  schedulerSnapshot(): Promise<SchedulerNode[]> {
    return schedulerSnapshot({ store: this.store, revision: (a, n) => this.revision(a, n), nodeStatus: (id) => this.nodeStatus(id) });
  }

  /**
   * Compute the full routing table from the store (core/routes.ts desiredRoutes) and hand it to the
   * router. Built per app: an app whose entry is wrong loses that entry, with its reason, and every
   * other app keeps routing. The first app to claim a host (oldest) keeps it.
   */
  async publishRoutes(): Promise<void> {
    const nodes = await this.store.listNodes();
    const apps: RouteState['apps'][number][] = [];
    for (const app of await this.store.listApps()) {
      const active = app.activeRevision === undefined ? undefined : await this.revision(app.name, app.activeRevision);
      const rollout = await this.store.activeRollout(app.name);
      // A/B: the variant's share and the sticky key, also while the rollout that keeps b runs.
      const e = (await this.store.activeExperiment(app.name)) ?? (rollout && (await this.keepingB(app.name, rollout)));
      apps.push({
        name: app.name,
        createdAt: app.createdAt,
        activeRevision: active?.number,
        hosts: active?.config.hosts ?? [],
        targetRevision: rollout?.toRevision,
        targetWeight: rollout?.progress?.weight ?? 0,
        experiment: e && { revision: e.variant, split: e.split, sticky: { by: e.by, seed: experimentSeed(e.app, e.id) } },
        http: active?.config.http,
      });
    }
    const { routes, problems } = desiredRoutes({
      apps,
      instances: await this.store.listInstances(),
      nodes: nodes.map((n) => ({ id: n.id, address: n.address, down: this.nodeStatus(n.id) === 'down' })),
    });
    const next = new Map<string, string[]>();
    for (const p of problems) next.set(p.app, [...(next.get(p.app) ?? []), p.message]);
    for (const [app, list] of next) {
      if (JSON.stringify(this.problems.get(app)) !== JSON.stringify(list))
        this.log.error({ app, problems: list }, "part of the app's route is left out of the routing table");
    }
    for (const app of this.problems.keys()) if (!next.has(app)) this.log.info({ app }, "app's route is whole again");
    this.problems = next;
    try {
      this.routing.set(routes);
      if (this.lastPublishError !== undefined) this.log.info('routing table accepted again');
      this.lastPublishError = undefined;
    } catch (err) {
      // Logged once per distinct error, not on every pass.
      const msg = (err as Error).message;
      if (msg !== this.lastPublishError) this.log.error({ err }, 'routing table not published');
      this.lastPublishError = msg;
    }
  }

  /** The experiment a running rollout keeps b of (`experiment end --keep b`: one transaction, one time), if it is one. */
  private async keepingB(app: string, r: { toRevision: number; fromRevision: number | undefined; startedAt: number }) {
    const [last] = await this.store.listExperiments(app, 1);
    const handover = last?.kept === 'b' && last.variant === r.toRevision && last.control === r.fromRevision && last.endedAt === r.startedAt;
    return handover ? last : undefined;
  }

  /** Record what a node reported about instances the store does not know; returns the ids that are new. */
  reportOrphans(nodeId: string, node: string, reported: readonly ReportedOrphan[]): string[] {
    return this.orphanRegistry.report(nodeId, node, reported);
  }

  orphans(): OrphanInstance[] {
    return this.orphanRegistry.all();
  }

  isOrphan(nodeId: string, id: string): boolean {
    return this.orphanRegistry.has(nodeId, id);
  }

  /** Tell the orphan's node to stop it (with its next sync); undefined if no node reports it. */
  stopOrphan(id: string): OrphanInstance | undefined {
    return this.orphanRegistry.stop(id);
  }

  /** Orphans of this node that it must stop. */
  orphansToStop(nodeId: string): string[] {
    return this.orphanRegistry.toStop(nodeId);
  }

  /** Wake every long-polling agent (something they must act on changed). */
  wake(): void {
    this.wakeAgents();
  }

  /** Why parts of this app's route are left out of the table (empty: none). */
  routeProblems(app: string): readonly string[] {
    return this.problems.get(app) ?? [];
  }

  /**
   * Whether a rollout is the first to its revision (the deploy that made it): only then does the
   * revision's release phase run. A rollback to it, or back to it, does not run it again (Heroku).
   */
  private async firstRolloutOf(r: { id: number; app: string; toRevision: number }): Promise<boolean> {
    let first = this.firstRollout.get(r.id);
    if (first === undefined) {
      first = !(await this.store.listRollouts(r.app, 10_000)).some((o) => o.toRevision === r.toRevision && o.id < r.id);
      this.firstRollout.set(r.id, first);
      if (this.firstRollout.size > 1000) this.firstRollout.delete(this.firstRollout.keys().next().value!);
    }
    return first;
  }

  /** Whether every ready node gives fixed-port instances their own network namespace (scheduler-snapshot.ts). */
  everyNodeIsolates(): Promise<boolean> {
    return everyNodeIsolates({ store: this.store, nodeStatus: (id) => this.nodeStatus(id) });
  }

  forgetInstance(i: InstanceRecord): void {
    this.drainStart.delete(i.id);
    this.readySince.delete(i.id);
  }
}

/** A canary's figures over its analysis window, for the rollout they were read for. */
type CanaryFigures =
  { readonly rollout: number; readonly canary: AnalysisFigures; readonly stable: AnalysisFigures | undefined } | undefined;

/** The previous revision kept up after a blue/green switch, and until when (wall clock ms). */
interface KeepPrevious {
  readonly revision: number;
  readonly untilMs: number;
}

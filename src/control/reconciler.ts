/**
 * The reconcile loop and the single writer. Every change to instances, rollouts and the active
 * revision goes through `serial()`, so decisions never interleave. Each pass re-reads the state of
 * every app, asks the pure planner (core/rollout.ts) what to do, applies it, then publishes the
 * whole routing table (level-triggered: the router always gets the full desired table).
 * Timers (rollout deadlines, drains, node liveness) use the monotonic clock, kept in memory: after
 * a restart of the control plane they start again, which only ever lengthens a wait.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { planApp, type PlannerAction } from '../core/rollout.js';
import { schedule, type PlacementRequest, type SchedulerInstance, type SchedulerNode } from '../core/scheduler.js';
import type { NodeStatus } from '../core/types.js';
import type { AppRecord, InstanceRecord, RevisionRecord, Store } from '../store/store.js';
import type { NodeMonitor } from './node-monitor.js';

export interface RouteUpstream { id: string; app: string; revision: number; host: string; port: number }
export interface RouteEntry { app: string; hosts: string[]; upstreams: RouteUpstream[] }

/** What the reconciler needs of the router. */
export interface RoutingSink {
  set(routes: RouteEntry[]): void;
  inflight(upstreamId: string): number;
}

export interface ReconcilerSettings {
  intervalMs: number;
  maxDrainMs: number;
  crashLoopRestarts: number;
}

const monoNow = (): number => performance.now();
const DOCKER: ReadonlySet<string> = new Set(['docker']);

export class Reconciler {
  private readonly rolloutStart = new Map<number, number>();
  private readonly drainStart = new Map<string, number>();
  private monitor: NodeMonitor | undefined;
  private readonly revisions = new Map<string, RevisionRecord>();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  private readonly waiters = new Set<() => void>();
  private readonly unplaced = new Map<string, { count: number; reason: string }>();

  constructor(
    private readonly store: Store,
    private readonly routing: RoutingSink,
    private readonly log: Logger,
    private readonly settings: ReconcilerSettings,
  ) {}

  /** Run `fn` after every write queued before it: the single-writer rule. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  start(): void {
    const loop = (): void => {
      this.timer = setTimeout(() => {
        this.tick().catch((err: unknown) => this.log.error({ err }, 'reconcile pass failed')).finally(loop);
      }, this.settings.intervalMs);
      this.timer.unref();
    };
    loop();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Ask for a pass soon (after an API change or an agent report); coalesces bursts. */
  nudge(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.tick().catch((err: unknown) => this.log.error({ err }, 'reconcile pass failed'));
    });
  }

  /** Resolve when desired instances change (for any node), or after `ms`: agents long-poll on this. */
  waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /** Wake every long-polling agent: desired state changed. */
  private wakeAgents(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Answer every held long poll now (shutdown). */
  releasePolls(): void {
    this.wakeAgents();
  }

  attachMonitor(m: NodeMonitor): void {
    this.monitor = m;
  }

  nodeHeardFrom(nodeId: string): void {
    this.monitor?.heardFrom(nodeId);
  }

  /** A node's long poll is open (see NodeMonitor.pollOpened); call the returned function when it ends. */
  nodePolling(nodeId: string): () => void {
    this.monitor?.pollOpened(nodeId);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.monitor?.pollClosed(nodeId);
    };
  }

  nodeStatus(nodeId: string): NodeStatus {
    return this.monitor?.status(nodeId) ?? 'ready';
  }

  isNodeLive(nodeId: string): boolean {
    return this.nodeStatus(nodeId) === 'ready';
  }

  async revision(app: string, n: number): Promise<RevisionRecord | undefined> {
    const key = `${app}/${n}`;
    const cached = this.revisions.get(key);
    if (cached) return cached;
    const r = await this.store.getRevision(app, n);
    if (r) this.revisions.set(key, r); // revisions are immutable
    return r;
  }

  /** One full pass over every app, then the routing table. */
  tick(): Promise<void> {
    return this.serial(async () => {
      const draining = new Set((await this.store.listNodes()).filter((n) => n.scheduling === 'draining').map((n) => n.id));
      for (const app of await this.store.listApps()) await this.reconcileApp(app, draining);
      await this.publishRoutes();
    });
  }

  private async reconcileApp(app: AppRecord, draining: ReadonlySet<string>): Promise<void> {
    const unplacedBefore = this.unplaced.get(app.name);
    this.unplaced.delete(app.name); // level-triggered: set again below while instances cannot be placed
    const rollout = await this.store.activeRollout(app.name);
    const all = await this.store.listInstances({ app: app.name });
    // Instances of a down node are lost: stop them (a node that comes back is told so) and plan
    // without them, so replacements are placed on live nodes.
    for (const i of all) {
      if (i.desired !== 'stop' && this.nodeStatus(i.nodeId) === 'down') {
        await this.store.setInstanceDesired(i.id, 'stop', Date.now());
        this.log.warn({ app: app.name, instance: i.id, node: i.nodeId }, 'instance lost with its node; replacing it');
      }
    }
    // Instances on a draining node keep serving until replacements are ready elsewhere: the planner
    // does not see them (so it places replacements), and they are retired below once it is safe.
    const movers = all.filter((i) => draining.has(i.nodeId) && i.desired === 'run' && this.nodeStatus(i.nodeId) !== 'down');
    const instances = all.filter((i) => this.nodeStatus(i.nodeId) !== 'down' && !movers.includes(i));
    const now = monoNow();
    let readyTimeoutMs = 60_000;
    let fixedPort: number | undefined;
    const target = rollout?.toRevision ?? app.activeRevision;
    const rev = target === undefined ? undefined : await this.revision(app.name, target);
    if (rev) {
      readyTimeoutMs = rev.config.deploy.readyTimeoutMs;
      fixedPort = rev.config.port;
    }
    if (rollout && !this.rolloutStart.has(rollout.id)) this.rolloutStart.set(rollout.id, now);
    const actions = planApp({
      replicas: app.replicas,
      activeRevision: app.activeRevision,
      fixedPort: fixedPort !== undefined,
      rollout: rollout && { toRevision: rollout.toRevision, elapsedMs: now - this.rolloutStart.get(rollout.id)!, readyTimeoutMs },
      instances: instances.map((i) => ({
        id: i.id,
        revision: i.revision,
        desired: i.desired,
        state: i.state,
        restarts: i.restarts,
        lastError: i.lastError,
        drainingForMs: i.desired === 'drain' ? now - (this.drainStart.get(i.id) ?? (this.drainStart.set(i.id, now), now)) : undefined,
        inflight: this.routing.inflight(i.id),
      })),
      drainMs: rev?.config.deploy.drainMs ?? 1000,
      maxDrainMs: this.settings.maxDrainMs,
      crashLoopRestarts: this.settings.crashLoopRestarts,
    });
    for (const a of actions) {
      // A rollout that timed out because instances could not be placed says why (e.g. the volume's node is down).
      const explained = a.type === 'finish' && a.status === 'failed' && unplacedBefore && /was not ready within/.test(a.reason ?? '')
        ? { ...a, reason: `${a.reason}: ${unplacedBefore.count} instance(s) could not be placed: ${unplacedBefore.reason}` }
        : a;
      await this.apply(app, rollout?.id, explained, fixedPort);
    }
    if (movers.length > 0) {
      const current = await this.store.getApp(app.name);
      const readyElsewhere = (await this.store.listInstances({ app: app.name }))
        .filter((i) => !draining.has(i.nodeId) && i.desired === 'run' && i.state === 'ready' && i.revision === current?.activeRevision).length;
      if (readyElsewhere >= (current?.replicas ?? 0)) {
        for (const m of movers) await this.apply(app, undefined, { type: 'desire', id: m.id, desired: 'drain' }, fixedPort);
      }
    }
  }

  private async apply(app: AppRecord, rolloutId: number | undefined, a: PlannerAction, fixedPort: number | undefined): Promise<void> {
    const wall = Date.now();
    switch (a.type) {
      case 'create': {
        const rev = await this.revision(app.name, a.revision);
        const snapshot = await this.schedulerSnapshot();
        const volumes = rev ? await this.volumeRequest(app.name, rev.config.volumes.map((v) => v.name), snapshot) : undefined;
        const placement = schedule(snapshot, {
          app: app.name, count: a.count, fixedPort, cpu: rev?.config.resources?.cpu, memoryMb: rev?.config.resources?.memoryMb,
          constraints: rev?.config.constraints, artifact: rev?.artifact, runtime: rev?.config.runtime, volumes,
        });
        // The first placement of an app with volumes decides where they live, for good (until `pilot volumes forget`).
        if (volumes && placement.nodeIds.length > 0) await this.store.placeVolumes(app.name, volumes.names, placement.nodeIds[0]!, wall);
        if (placement.unplaced > 0) this.unplaced.set(app.name, { count: placement.unplaced, reason: placement.reason ?? 'no room' });
        for (const nodeId of placement.nodeIds) {
          const id = `${app.name}-${a.revision}-${randomBytes(3).toString('hex')}`;
          await this.store.createInstance({ id, app: app.name, revision: a.revision, nodeId, desired: 'run', createdAt: wall });
          this.log.info({ app: app.name, revision: a.revision, instance: id, node: nodeId }, 'instance placed');
        }
        if (placement.nodeIds.length > 0) this.wakeAgents();
        if (placement.reason) this.log.warn({ app: app.name, unplaced: placement.unplaced }, placement.reason);
        return;
      }
      case 'desire':
        await this.store.setInstanceDesired(a.id, a.desired, wall);
        if (a.desired === 'drain') this.drainStart.set(a.id, monoNow());
        else this.drainStart.delete(a.id);
        if (a.desired === 'stop') this.wakeAgents();
        this.log.info({ app: app.name, instance: a.id, desired: a.desired }, 'instance desired state');
        return;
      case 'activate':
        await this.store.setActiveRevision(app.name, a.revision, wall);
        this.log.info({ app: app.name, revision: a.revision }, 'revision active');
        await this.publishRoutes();
        return;
      case 'finish':
        if (rolloutId === undefined) return;
        await this.store.finishRollout(rolloutId, a.status, a.reason, wall);
        await this.store.finishRolloutRuns(rolloutId, a.status, a.reason, wall);
        this.rolloutStart.delete(rolloutId);
        this.log.info({ app: app.name, rollout: rolloutId, status: a.status, reason: a.reason }, 'rollout finished');
        return;
    }
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

  /** Nodes and what runs on them, as the pure scheduler sees them. Down or stopped instances use nothing. */
  async schedulerSnapshot(): Promise<SchedulerNode[]> {
    const nodes = await this.store.listNodes();
    const all = await this.store.listInstances();
    const byNode = new Map<string, SchedulerInstance[]>();
    // A node that runs (or ran, while its record lasts) an instance of an artifact has it unpacked.
    const artifacts = new Map<string, Set<string>>();
    for (const i of all) {
      const r = await this.revision(i.app, i.revision);
      if (r) artifacts.set(i.nodeId, (artifacts.get(i.nodeId) ?? new Set()).add(r.artifact));
      if (i.state === 'stopped' || this.nodeStatus(i.nodeId) === 'down') continue;
      const list = byNode.get(i.nodeId) ?? [];
      list.push({ app: i.app, fixedPort: r?.config.port, cpu: r?.config.resources?.cpu, memoryMb: r?.config.resources?.memoryMb });
      byNode.set(i.nodeId, list);
    }
    return nodes.map((n) => ({
      id: n.id,
      name: n.name,
      schedulable: this.isNodeLive(n.id) && n.scheduling === 'eligible',
      cpus: n.cpus,
      memoryMb: n.memoryMb,
      labels: n.labels,
      runtimes: n.runtimes.docker?.available ? DOCKER : undefined,
      artifacts: artifacts.get(n.id),
      instances: byNode.get(n.id) ?? [],
    }));
  }

  /** Compute the full routing table from the store and hand it to the router. */
  async publishRoutes(): Promise<void> {
    const nodes = new Map((await this.store.listNodes()).map((n) => [n.id, n]));
    const byApp = new Map<string, InstanceRecord[]>();
    for (const i of await this.store.listInstances()) byApp.set(i.app, [...(byApp.get(i.app) ?? []), i]);
    const routes: RouteEntry[] = [];
    for (const app of await this.store.listApps()) {
      const active = app.activeRevision === undefined ? undefined : await this.revision(app.name, app.activeRevision);
      const hosts = [`${app.name}.localhost`, ...(active?.config.hosts ?? [])];
      const upstreams: RouteUpstream[] = [];
      for (const i of byApp.get(app.name) ?? []) {
        const node = nodes.get(i.nodeId);
        if (!active || !node || this.nodeStatus(node.id) === 'down' || i.revision !== active.number || i.desired !== 'run' || i.state !== 'ready' || i.port === undefined) continue;
        upstreams.push({ id: i.id, app: app.name, revision: i.revision, host: node.address, port: i.port });
      }
      routes.push({ app: app.name, hosts, upstreams });
    }
    this.routing.set(routes);
  }

  forgetInstance(i: InstanceRecord): void {
    this.drainStart.delete(i.id);
  }
}

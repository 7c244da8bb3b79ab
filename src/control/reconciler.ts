/**
 * The reconcile loop and the single writer. Every change to instances, rollouts and the active
 * revision goes through `serial()`, so decisions never interleave. Each pass re-reads the state of
 * every app, asks the pure planner (core/rollout.ts) what to do, applies it, then publishes the
 * whole routing table (level-triggered: the router always gets the full desired table).
 * Timers (rollout deadlines, drains, node liveness) use the monotonic clock, kept in memory: after
 * a restart of the control plane they start again, which only ever lengthens a wait.
 */
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import { basisOf, planAppChanges, type AppSnapshot, type Plan } from '../core/plan.js';
import type { PlacementRequest, SchedulerInstance, SchedulerNode } from '../core/scheduler.js';
import type { NodeStatus } from '../core/types.js';
import type { AppRecord, InstanceRecord, NodeRecord, RevisionRecord, Store } from '../store/store.js';
import type { NodeMonitor } from './node-monitor.js';
import { admitRoutes } from '../router/routing-table.js';
import { applyPlan, type ApplyResult } from './applier.js';

export interface RouteUpstream { id: string; app: string; revision: number; host: string; port: number }
export interface RouteEntry { app: string; hosts: string[]; upstreams: RouteUpstream[] }

/** What the reconciler needs of the router. */
export interface RoutingSink {
  set(routes: RouteEntry[]): void;
  inflight(upstreamId: string): number;
}

/** An instance an agent runs that the control plane has no record of (kept running; see agent.converge). */
export interface OrphanInstance {
  readonly id: string;
  readonly nodeId: string;
  readonly node: string;
  readonly app: string | undefined;
  readonly revision: number | undefined;
  readonly state: string;
  readonly port: number | undefined;
  readonly pid: number | undefined;
  /** Wall clock ms when this control plane first heard of it. */
  readonly since: number;
  /** `pilot orphans stop ID` was asked: the node is told to stop it. */
  readonly stopping: boolean;
}

export interface ReconcilerSettings {
  intervalMs: number;
  maxDrainMs: number;
  crashLoopRestarts: number;
  /** Called when a pass fails because the database is damaged: nothing can be decided any more. */
  onFatal?: ((err: unknown) => void) | undefined;
}

/** SQLite saying its file is damaged or gone: retrying cannot help. */
function isFatalStoreError(err: unknown): boolean {
  const code = String((err as { code?: unknown } | undefined)?.code ?? '');
  return code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_IOERR');
}

const monoNow = (): number => performance.now();

let local: { at: number; addresses: Set<string> } | undefined;
/** This machine's own addresses (the router runs here, in the control plane's process); re-read every 10 s. */
function localAddresses(): Set<string> {
  const now = monoNow();
  if (!local || now - local.at > 10_000) local = { at: now, addresses: new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address))) };
  return local.addresses;
}

/**
 * Whether a node's fixed-port instances get their own network namespace: its agent can (root on
 * Linux, reported as runtimes.netns), and the router can reach a namespace's address, which exists
 * only on that machine: the node is on the router's machine (a loopback or a local address).
 */
export function nodeIsolates(node: Pick<NodeRecord, 'address' | 'runtimes'>): boolean {
  if (node.runtimes.netns?.available !== true) return false;
  const a = node.address;
  return a.startsWith('127.') || a === '::1' || a === 'localhost' || localAddresses().has(a);
}
const DOCKER: ReadonlySet<string> = new Set(['docker']);

export class Reconciler {
  private readonly rolloutStart = new Map<number, number>();
  private readonly drainStart = new Map<string, number>();
  /** Rollout id → whether it is its revision's first (release phase); rollouts are immutable in that respect. */
  private readonly firstRollout = new Map<number, boolean>();
  private monitor: NodeMonitor | undefined;
  private readonly revisions = new Map<string, RevisionRecord>();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  private readonly waiters = new Set<() => void>();
  /** Why part of an app's route is left out of the table (logged once per change, shown by status). */
  private problems = new Map<string, string[]>();
  private lastPublishError: string | undefined;
  private lastFailure: string | undefined;
  /** Orphans by node, as last reported (memory only: every agent reports them again after a restart). */
  private readonly orphanMap = new Map<string, Map<string, OrphanInstance>>();
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
        this.tick().catch((err: unknown) => this.failed(err)).finally(loop);
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
      this.tick().catch((err: unknown) => this.failed(err));
    });
  }

  /** A pass that fails the same way every 250 ms is logged once, then again when the error changes. */
  private failed(err: unknown): void {
    const msg = (err as Error)?.message ?? String(err);
    if (msg !== this.lastFailure) this.log.error({ err }, 'reconcile pass failed');
    else this.log.debug({ err: msg }, 'reconcile pass failed again');
    this.lastFailure = msg;
    if (isFatalStoreError(err)) this.settings.onFatal?.(err);
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
      for (const name of await this.store.purgeRemovedApps()) this.log.info({ app: name }, 'app removed: its last instance stopped');
      await this.publishRoutes();
      if (this.lastFailure !== undefined) this.log.info('reconcile passes succeed again');
      this.lastFailure = undefined;
    });
  }

  /**
   * Plan the app (core/plan.ts) and hand the plan to the applier. A plan rejected as stale (its
   * rows changed while it was made: an agent reported) is made again from the new state, up to
   * three times; then the next pass tries again.
   */
  private async reconcileApp(app: AppRecord, draining: ReadonlySet<string>): Promise<void> {
    const unplacedBefore = this.unplaced.get(app.name);
    this.unplaced.delete(app.name); // level-triggered: set again below while instances cannot be placed
    for (let attempt = 1; attempt <= 3; attempt++) {
      const plan = await this.planFor(app.name, draining, unplacedBefore);
      if (!plan) return;
      const r = await this.apply(plan);
      if (r.committed) return;
      if (attempt === 3) this.log.warn({ app: app.name, reason: r.reason }, 'plan stale three times in a row; the next pass plans again');
    }
  }

  /** The app's snapshot, as the pure planner takes it. undefined: the app is gone. */
  async snapshotOf(name: string, draining: ReadonlySet<string>, unplacedBefore?: { count: number; reason: string }): Promise<AppSnapshot | undefined> {
    const app = await this.store.getApp(name);
    if (!app) return undefined;
    const rollout = await this.store.activeRollout(name);
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
      if (fixedPort !== undefined && rev.config.runtime === 'process' && await this.everyNodeIsolates()) fixedPort = undefined;
    }
    const releaseCmd = rollout && await this.firstRolloutOf(rollout) ? (await this.revision(app.name, rollout.toRevision))?.config.release : undefined;
    if (rollout && !this.rolloutStart.has(rollout.id)) this.rolloutStart.set(rollout.id, now);
    return {
      app: { name: app.name, replicas: app.replicas, activeRevision: app.activeRevision },
      rollout: rollout && {
        id: rollout.id, toRevision: rollout.toRevision, elapsedMs: now - this.rolloutStart.get(rollout.id)!, readyTimeoutMs,
        release: releaseCmd !== undefined && releaseCmd.length > 0, releaseTimeoutMs: rev?.config.deploy.releaseTimeoutMs,
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
        nodeDown: this.nodeStatus(i.nodeId) === 'down',
        nodeDraining: draining.has(i.nodeId),
      })),
      fixedPort,
      placement: {
        cpu: rev?.config.resources?.cpu, memoryMb: rev?.config.resources?.memoryMb, constraints: rev?.config.constraints,
        artifact: rev?.artifact, runtime: rev?.config.runtime,
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
  private async planFor(name: string, draining: ReadonlySet<string>, unplacedBefore?: { count: number; reason: string }): Promise<Plan | undefined> {
    const s = await this.snapshotOf(name, draining, unplacedBefore);
    if (!s) return undefined;
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
    if (plan.placements.length > 0 || plan.desired.some((d) => d.desired === 'stop')) this.wakeAgents();
    if (plan.finish && plan.rolloutId !== undefined) this.rolloutStart.delete(plan.rolloutId);
    if (plan.activate !== undefined) await this.publishRoutes();
    return r;
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
    const nodeById = new Map(nodes.map((n) => [n.id, n]));
    const all = await this.store.listInstances();
    const byNode = new Map<string, SchedulerInstance[]>();
    // A node that runs (or ran, while its record lasts) an instance of an artifact has it unpacked.
    const artifacts = new Map<string, Set<string>>();
    for (const i of all) {
      const r = await this.revision(i.app, i.revision);
      if (r) artifacts.set(i.nodeId, (artifacts.get(i.nodeId) ?? new Set()).add(r.artifact));
      if (i.state === 'stopped' || this.nodeStatus(i.nodeId) === 'down') continue;
      const list = byNode.get(i.nodeId) ?? [];
      // In its own network namespace a fixed port takes nothing of the node's ports.
      const node = nodeById.get(i.nodeId);
      const ownNetns = r?.config.runtime === 'process' && node !== undefined && nodeIsolates(node);
      list.push({ app: i.app, fixedPort: i.kind === 'release' || ownNetns ? undefined : r?.config.port, cpu: r?.config.resources?.cpu, memoryMb: r?.config.resources?.memoryMb });
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

  /**
   * Compute the full routing table from the store and hand it to the router. Built per app
   * (router/routing-table.ts admitRoutes): an app whose entry is wrong loses that entry, with its
   * reason, and every other app keeps routing. The first app to claim a host (oldest) keeps it.
   */
  async publishRoutes(): Promise<void> {
    const nodes = new Map((await this.store.listNodes()).map((n) => [n.id, n]));
    const byApp = new Map<string, InstanceRecord[]>();
    for (const i of await this.store.listInstances()) byApp.set(i.app, [...(byApp.get(i.app) ?? []), i]);
    const candidates: RouteEntry[] = [];
    const apps = (await this.store.listApps()).sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
    for (const app of apps) {
      const active = app.activeRevision === undefined ? undefined : await this.revision(app.name, app.activeRevision);
      const hosts = [`${app.name}.localhost`, ...(active?.config.hosts ?? [])];
      const upstreams: RouteUpstream[] = [];
      for (const i of byApp.get(app.name) ?? []) {
        const node = nodes.get(i.nodeId);
        if (!active || !node || this.nodeStatus(node.id) === 'down' || i.revision !== active.number || i.desired !== 'run' || i.state !== 'ready' || i.port === undefined) continue;
        upstreams.push({ id: i.id, app: app.name, revision: i.revision, host: i.address ?? node.address, port: i.port });
      }
      candidates.push({ app: app.name, hosts, upstreams });
    }
    const { routes, problems } = admitRoutes(candidates);
    const next = new Map<string, string[]>();
    for (const p of problems) next.set(p.app, [...(next.get(p.app) ?? []), p.message]);
    for (const [app, list] of next) {
      if (JSON.stringify(this.problems.get(app)) !== JSON.stringify(list)) this.log.error({ app, problems: list }, 'part of the app\'s route is left out of the routing table');
    }
    for (const app of this.problems.keys()) if (!next.has(app)) this.log.info({ app }, 'app\'s route is whole again');
    this.problems = next;
    try {
      this.routing.set(routes as RouteEntry[]);
      if (this.lastPublishError !== undefined) this.log.info('routing table accepted again');
      this.lastPublishError = undefined;
    } catch (err) {
      // Logged once per distinct error, not on every pass.
      const msg = (err as Error).message;
      if (msg !== this.lastPublishError) this.log.error({ err }, 'routing table not published');
      this.lastPublishError = msg;
    }
  }

  /** Record what a node reported about instances the store does not know; returns the ids that are new. */
  reportOrphans(nodeId: string, node: string, reported: readonly Omit<OrphanInstance, 'nodeId' | 'node' | 'since' | 'stopping'>[]): string[] {
    const before = this.orphanMap.get(nodeId) ?? new Map<string, OrphanInstance>();
    const next = new Map<string, OrphanInstance>();
    const fresh: string[] = [];
    for (const r of reported) {
      const old = before.get(r.id);
      if (!old) fresh.push(r.id);
      next.set(r.id, { ...r, nodeId, node, since: old?.since ?? Date.now(), stopping: old?.stopping ?? false });
    }
    if (next.size > 0) this.orphanMap.set(nodeId, next);
    else this.orphanMap.delete(nodeId);
    return fresh;
  }

  orphans(): OrphanInstance[] {
    return [...this.orphanMap.values()].flatMap((m) => [...m.values()]);
  }

  isOrphan(nodeId: string, id: string): boolean {
    return this.orphanMap.get(nodeId)?.has(id) ?? false;
  }

  /** Tell the orphan's node to stop it (with its next sync); false if no node reports it. */
  stopOrphan(id: string): OrphanInstance | undefined {
    for (const m of this.orphanMap.values()) {
      const o = m.get(id);
      if (o) {
        const s = { ...o, stopping: true };
        m.set(id, s);
        this.wakeAgents();
        return s;
      }
    }
    return undefined;
  }

  /** Orphans of this node that it must stop. */
  orphansToStop(nodeId: string): string[] {
    return [...(this.orphanMap.get(nodeId)?.values() ?? [])].filter((o) => o.stopping).map((o) => o.id);
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

  /**
   * Whether every ready node gives fixed-port instances their own network namespace (agents that
   * run as root on Linux report `runtimes.netns`). One node without it means recreate for all.
   */
  async everyNodeIsolates(): Promise<boolean> {
    const live = (await this.store.listNodes()).filter((n) => this.isNodeLive(n.id));
    return live.length > 0 && live.every(nodeIsolates);
  }

  forgetInstance(i: InstanceRecord): void {
    this.drainStart.delete(i.id);
  }
}

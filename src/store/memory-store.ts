/**
 * The Store in memory: plain maps with the same behaviour as the SQLite store, checked by the same
 * contract suite (store-contract.ts). For unit tests and as a test double behind the `Store`
 * interface; `pilot up` and `pilot server` never use it (nothing survives the process).
 *
 * Every method does its whole work synchronously before it returns its promise, so each one is
 * atomic with respect to every other call, as one SQLite transaction is: two claims of the run
 * queue started together cannot both see the same queued run. Records are copied in and out
 * (structuredClone): a caller that changes an object it passed or got back changes nothing stored.
 *
 * `MemoryState` is the "database": a second MemoryStore over the same state is another connection
 * to it (a restarted server, or a second one), and `backup` writes it as JSON that
 * `MemoryStore.fromBackup` reads back.
 */
import { formatStickyBy } from '../core/experiment.js';
import type { RolloutCommand } from '../core/rollout-types.js';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AppConfig } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import type { EventKind, NewEvent, PilotEvent } from '../core/events.js';
import { basisOf } from '../core/plan.js';
import type { ReplicasSource } from '../core/replicas.js';
import type { ArtifactMeta, InstanceKind, RunRecord, StepRecord } from '../core/types.js';
import type {
  AppRecord,
  AppSource,
  EnqueueResult,
  EventBounds,
  ExperimentRecord,
  InstanceDesired,
  InstanceRecord,
  InstanceStatusUpdate,
  JoinTokenRecord,
  NodeRecord,
  NodeRuntimeRecord,
  NodeScheduling,
  PlanCommit,
  PlanVerdict,
  RegistryRecord,
  TargetRecord,
  RevisionRecord,
  RolloutRecord,
  RunPatch,
  SecretRecord,
  CertificateRecord,
  SecretScope,
  Store,
  VolumePlacement,
  WebhookPush,
  NewNotifyDelivery,
  NotifyAttemptRecord,
  NotifyDeliveryRecord,
  NotifyDeliveryStatus,
  NotifyEndpointRecord,
} from './store.js';
import { MemoryNotify, emptyNotifyState, type MemoryNotifyState } from './memory-notify.js';
import { runChanged } from './store.js';
import { MemoryEventLog, emptyMemoryFeed, type MemoryFeed } from './memory-events.js';
import { planEventPayload } from './plan-event.js';

interface AppRow extends AppRecord {
  readonly removedAt: number | undefined;
}
interface JoinTokenRow extends JoinTokenRecord {
  readonly hash: string;
}
interface SecretRow extends SecretRecord {
  readonly app: string;
}
/** `seq` keeps the insertion order, which an update does not change (SQLite's rowid). */
interface RegistryRow extends RegistryRecord {
  readonly seq: number;
}

/** The tables, as maps in insertion order. */
export interface MemoryState {
  apps: Map<string, AppRow>;
  /** Key `app\0number`. */
  revisions: Map<string, RevisionRecord>;
  rollouts: Map<number, RolloutRecord>;
  experiments: Map<number, ExperimentRecord>;
  instances: Map<string, InstanceRecord>;
  nodes: Map<string, NodeRecord>;
  joinTokens: Map<string, JoinTokenRow>;
  runs: Map<number, RunRecord>;
  /** Key `app\0name`. */
  secrets: Map<string, SecretRow>;
  registries: Map<string, RegistryRow>;
  /** Key `app\0name`. */
  volumes: Map<string, VolumePlacement>;
  /** Key `version\0platform`. */
  nodeRuntimes: Map<string, NodeRuntimeRecord>;
  artifacts: Map<string, ArtifactMeta>;
  certificates: Map<string, CertificateRecord>;
  /** ACME directory URL → sealed account key. */
  acmeAccounts: Map<string, string>;
  // A new table is one more Map here (and in emptyMemoryState); backup and fromBackup carry every Map.
  notifyEndpoints: MemoryNotifyState['notifyEndpoints'];
  notifyDeliveries: MemoryNotifyState['notifyDeliveries'];
  notifyMeta: MemoryNotifyState['notifyMeta'];
  /** Deploy targets by name (optional: a state made before targets existed has none). */
  targets?: Map<string, TargetRecord>;
  /** Last ids given (AUTOINCREMENT: never reused, even after a delete). */
  seq: { rollout: number; run: number; registry: number; experiment?: number };
  /** The event feed (the `events` table): every store over this state reads the same. */
  feed: MemoryFeed;
}

/** An empty database. */
export function emptyMemoryState(): MemoryState {
  return {
    apps: new Map(),
    certificates: new Map(),
    acmeAccounts: new Map(),
    revisions: new Map(),
    rollouts: new Map(),
    experiments: new Map(),
    instances: new Map(),
    nodes: new Map(),
    joinTokens: new Map(),
    runs: new Map(),
    secrets: new Map(),
    registries: new Map(),
    targets: new Map(),
    volumes: new Map(),
    nodeRuntimes: new Map(),
    artifacts: new Map(),
    ...emptyNotifyState(),
    seq: { rollout: 0, run: 0, registry: 0, experiment: 0 },
    feed: emptyMemoryFeed(),
  };
}

const WEBHOOK_STEPS: readonly StepRecord[] = (['source', 'build', 'package', 'publish', 'deploy'] as const).map((name) => ({
  name,
  status: 'pending',
}));
const copy = <T>(v: T): T => structuredClone(v);
/** What a JSON column gives back (a field set to undefined is absent), as SQLite's and PostgreSQL's do. */
const json = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const key = (a: string, b: string | number): string => `${a}\0${b}`;
/** SQLite's BINARY collation for the ASCII names Pilot stores. */
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A record read from a backup: its top-level null fields were undefined (JSON columns inside stay as written). */
function recordFromJson(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, x === null ? undefined : x]));
}

function appRecord(r: AppRow): AppRecord {
  const { removedAt: _removedAt, ...rec } = r;
  // A stored config written before `volumes` existed reads as no volumes (as the SQLite store does).
  return copy(rec.config.volumes === undefined ? { ...rec, config: { ...rec.config, volumes: [] } } : rec);
}

/** An event before its id, as the SQLite store writes it (`event(kind, app, time, payload)`). */
const ev = (kind: EventKind, app: string | undefined, time: number, payload: Record<string, unknown>): NewEvent => ({
  kind,
  app,
  time,
  payload,
});

export class MemoryStore implements Store {
  private closed = false;
  private readonly events: MemoryEventLog;
  private readonly notify = new MemoryNotify(() => this.open());

  constructor(private readonly db: MemoryState = emptyMemoryState()) {
    this.events = new MemoryEventLog(db.feed);
  }

  /** Append the events of one change (the whole method's: one batch, as one SQLite transaction). */
  private emit(batch: NewEvent[]): void {
    this.events.append(...batch);
  }

  /** A node's name for an event (its id when unknown), as the SQLite store says it. */
  private nodeName(id: string): string {
    return this.db.nodes.get(id)?.name ?? id;
  }

  /** A store over the state a `backup` wrote. */
  static fromBackup(file: string): MemoryStore {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const state = emptyMemoryState();
    for (const [k, v] of Object.entries(raw)) {
      if (k === 'seq') state.seq = v as MemoryState['seq'];
      else if (k === 'feed') state.feed = v as MemoryFeed;
      else if (k in state)
        (state as unknown as Record<string, Map<unknown, unknown>>)[k] = new Map(
          (v as [unknown, unknown][]).map(([id, rec]) => [id, recordFromJson(rec)]),
        );
    }
    return new MemoryStore(state);
  }

  /** The database, for a second store over it (another connection, a restarted server). */
  get state(): MemoryState {
    return this.db;
  }

  private open(): MemoryState {
    if (this.closed) throw fail.storeClosed();
    return this.db;
  }

  private liveApp(name: string): AppRow | undefined {
    const a = this.open().apps.get(name);
    return a && a.removedAt === undefined ? a : undefined;
  }

  private assertNotRemoving(name: string): void {
    if (this.open().apps.get(name)?.removedAt !== undefined) {
      throw fail.appRemoving({ name });
    }
  }

  // apps

  async upsertApp(name: string, config: AppConfig, now: number): Promise<AppRecord> {
    this.assertNotRemoving(name);
    const db = this.open();
    const old = db.apps.get(name);
    db.apps.set(
      name,
      old
        ? { ...old, config: json(config), updatedAt: now }
        : {
            name,
            config: json(config),
            replicas: config.replicas,
            replicasSource: 'config',
            activeRevision: undefined,
            createdAt: now,
            updatedAt: now,
            repo: undefined,
            branch: undefined,
            webhookSecret: undefined,
            githubToken: undefined,
            statusApiUrl: undefined,
            removedAt: undefined,
          },
    );
    return appRecord(db.apps.get(name)!);
  }
  async getApp(name: string): Promise<AppRecord | undefined> {
    const a = this.liveApp(name);
    return a && appRecord(a);
  }
  async listApps(): Promise<AppRecord[]> {
    return [...this.open().apps.values()]
      .filter((a) => a.removedAt === undefined)
      .sort((a, b) => cmp(a.name, b.name))
      .map(appRecord);
  }
  async setActiveRevision(app: string, revision: number | undefined, now: number): Promise<void> {
    const a = this.open().apps.get(app);
    if (!a) return;
    this.db.apps.set(app, { ...a, activeRevision: revision, updatedAt: now });
    if (a.activeRevision !== revision)
      this.emit([ev('deploy.activated', app, now, { revision: revision ?? null, previous: a.activeRevision ?? null })]);
  }
  async setReplicas(app: string, replicas: number, now: number, source: ReplicasSource = 'scale'): Promise<void> {
    const a = this.open().apps.get(app);
    if (a) this.db.apps.set(app, { ...a, replicas, replicasSource: source, updatedAt: now });
  }
  async setAutoscaledReplicas(app: string, change: { from: number; to: number; reason: string }, now: number): Promise<boolean> {
    const a = this.open().apps.get(app);
    if (!a || a.removedAt !== undefined || a.replicas !== change.from) return false;
    this.db.apps.set(app, { ...a, replicas: change.to, replicasSource: 'autoscaler', updatedAt: now });
    await this.events.appendEvent({ kind: 'autoscale.changed', app, time: now, payload: { ...change } });
    return true;
  }
  async removingApps(): Promise<string[]> {
    return [...this.open().apps.values()]
      .filter((a) => a.removedAt !== undefined)
      .map((a) => a.name)
      .sort(cmp);
  }
  async removeApp(name: string, now: number): Promise<boolean> {
    const db = this.open();
    const a = this.liveApp(name);
    if (!a) return false;
    db.apps.set(name, {
      ...a,
      removedAt: now,
      repo: undefined,
      branch: undefined,
      webhookSecret: undefined,
      githubToken: undefined,
      statusApiUrl: undefined,
      updatedAt: now,
    });
    const batch: NewEvent[] = [];
    for (const i of db.instances.values()) {
      if (i.app !== name) continue;
      if (i.desired !== 'stop')
        batch.push(ev('instance.desired', name, now, { instance: i.id, revision: i.revision, desired: 'stop', reason: 'app removed' }));
      db.instances.set(i.id, { ...i, desired: 'stop', updatedAt: now });
    }
    for (const r of db.rollouts.values()) {
      if (r.app === name && r.status === 'running') {
        batch.push(ev('rollout.finished', name, now, { rollout: r.id, toRevision: r.toRevision, status: 'failed', reason: 'app removed' }));
        db.rollouts.set(r.id, { ...r, status: 'failed', reason: 'app removed', finishedAt: now });
      }
    }
    this.endRunningExperiments(name, 'app removed', now);
    for (const r of db.runs.values()) {
      if (r.app === name && r.status === 'queued') {
        batch.push(ev('run.status', name, now, { run: r.id, status: 'cancelled', error: 'the app was removed' }));
        db.runs.set(r.id, { ...r, status: 'cancelled', error: 'the app was removed', finishedAt: now });
      }
    }
    for (const [k, s] of db.secrets) if (s.app === name) db.secrets.delete(k);
    this.notify.deleteAppEndpoints(name, now);
    this.emit(batch);
    return true;
  }
  async purgeRemovedApps(): Promise<string[]> {
    const db = this.open();
    const busy = new Set([...db.instances.values()].map((i) => i.app));
    const gone = [...db.apps.values()]
      .filter((a) => a.removedAt !== undefined && !busy.has(a.name))
      .map((a) => a.name)
      .sort(cmp);
    for (const name of gone) {
      for (const r of db.rollouts.values()) if (r.app === name) db.rollouts.delete(r.id);
      for (const e of db.experiments.values()) if (e.app === name) db.experiments.delete(e.id);
      for (const [k, r] of db.revisions) if (r.app === name) db.revisions.delete(k);
      for (const [k, s] of db.secrets) if (s.app === name) db.secrets.delete(k);
      db.apps.delete(name);
    }
    return gone;
  }
  async setAppSource(name: string, defaults: AppConfig, source: AppSource, now: number): Promise<AppRecord> {
    this.assertNotRemoving(name);
    if (!this.db.apps.has(name)) await this.upsertApp(name, defaults, now);
    const a = this.db.apps.get(name)!;
    this.db.apps.set(name, {
      ...a,
      repo: source.repo,
      branch: source.branch,
      webhookSecret: source.webhookSecret,
      githubToken: source.githubToken,
      statusApiUrl: source.statusApiUrl,
      updatedAt: now,
    });
    return appRecord(this.db.apps.get(name)!);
  }

  // revisions: numbered per app, never changed once written

  async createRevision(r: Omit<RevisionRecord, 'number'>): Promise<RevisionRecord> {
    const db = this.open();
    if (!db.apps.has(r.app)) throw fail.appNotFound({ app: r.app });
    let max = 0;
    for (const x of db.revisions.values()) if (x.app === r.app && x.number > max) max = x.number;
    const rec: RevisionRecord = {
      app: r.app,
      number: max + 1,
      artifact: r.artifact,
      commit: r.commit,
      dirty: r.dirty,
      config: json(r.config),
      runId: r.runId,
      createdAt: r.createdAt,
      image: r.image && json(r.image),
      nodeRuntime: r.nodeRuntime && json(r.nodeRuntime),
    };
    db.revisions.set(key(r.app, rec.number), rec);
    this.emit([
      ev('deploy.revision', r.app, r.createdAt, {
        revision: rec.number,
        commit: r.commit,
        dirty: r.dirty,
        artifact: r.artifact,
        run: r.runId ?? null,
      }),
    ]);
    return copy(rec);
  }
  async getRevision(app: string, number: number): Promise<RevisionRecord | undefined> {
    const r = this.open().revisions.get(key(app, number));
    return r && copy(r);
  }
  async listRevisions(app: string): Promise<RevisionRecord[]> {
    return [...this.open().revisions.values()]
      .filter((r) => r.app === app)
      .sort((a, b) => b.number - a.number)
      .map(copy);
  }

  // rollouts

  async createRollout(r: Omit<RolloutRecord, 'id' | 'status' | 'reason' | 'finishedAt' | 'progress'>): Promise<RolloutRecord> {
    const db = this.open();
    if (!db.apps.has(r.app)) throw fail.appNotFound({ app: r.app });
    const rec: RolloutRecord = {
      id: ++db.seq.rollout,
      app: r.app,
      fromRevision: r.fromRevision,
      toRevision: r.toRevision,
      status: 'running',
      reason: undefined,
      startedAt: r.startedAt,
      finishedAt: undefined,
      // Stored as data, as a database would: a field left undefined is absent.
      strategy: r.strategy && (JSON.parse(JSON.stringify(r.strategy)) as RolloutRecord['strategy']),
      progress: { step: 0, weight: 0, since: undefined, command: undefined, verdict: undefined },
    };
    db.rollouts.set(rec.id, rec);
    this.endRunningExperiments(
      r.app,
      `a rollout to revision ${r.toRevision} started (a deploy or a rollback ends an experiment)`,
      r.startedAt,
    );
    this.emit([
      ev('rollout.started', r.app, r.startedAt, {
        rollout: rec.id,
        fromRevision: r.fromRevision ?? null,
        toRevision: r.toRevision,
        strategy: r.strategy?.type ?? 'blue-green',
      }),
    ]);
    return copy(rec);
  }
  async setRolloutCommand(id: number, command: RolloutCommand, now: number): Promise<boolean> {
    const r = this.open().rollouts.get(id);
    if (r?.status !== 'running') return false;
    this.db.rollouts.set(id, { ...r, progress: { ...progressOf(r), command } });
    this.emit([ev('rollout.command', r.app, now, { rollout: id, toRevision: r.toRevision, command })]);
    return true;
  }

  private endRunningExperiments(app: string, reason: string, now: number): void {
    for (const e of this.db.experiments.values()) {
      if (e.app === app && e.status === 'running') {
        this.db.experiments.set(e.id, { ...e, status: 'ended', endedAt: now, reason });
        this.emit([ev('experiment.ended', app, now, { experiment: e.id, kept: null, keptRevision: null, reason })]);
      }
    }
  }

  // experiments

  async startExperiment(e: Omit<ExperimentRecord, 'id' | 'status' | 'endedAt' | 'kept' | 'reason'>): Promise<ExperimentRecord> {
    const db = this.open();
    const running = [...db.experiments.values()].find((x) => x.app === e.app && x.status === 'running');
    if (running) throw fail.experimentAlreadyRunningInStore({ app: e.app, id: running.id });
    db.seq.experiment = (db.seq.experiment ?? 0) + 1;
    const rec: ExperimentRecord = {
      id: db.seq.experiment,
      app: e.app,
      control: e.control,
      variant: e.variant,
      split: e.split,
      by: json(e.by),
      status: 'running',
      startedAt: e.startedAt,
      endedAt: undefined,
      kept: undefined,
      reason: undefined,
    };
    db.experiments.set(rec.id, rec);
    this.emit([
      ev('experiment.started', e.app, e.startedAt, {
        experiment: rec.id,
        control: e.control,
        variant: e.variant,
        split: e.split,
        by: formatStickyBy(e.by),
      }),
    ]);
    return copy(rec);
  }
  async activeExperiment(app: string): Promise<ExperimentRecord | undefined> {
    const running = [...this.open().experiments.values()].filter((e) => e.app === app && e.status === 'running');
    return running.length === 0 ? undefined : copy(running.reduce((a, b) => (b.id > a.id ? b : a)));
  }
  async listExperiments(app: string, limit: number): Promise<ExperimentRecord[]> {
    return [...this.open().experiments.values()]
      .filter((e) => e.app === app)
      .sort((a, b) => b.id - a.id)
      .slice(0, Math.max(0, limit))
      .map(copy);
  }
  async endExperiment(
    id: number,
    e: {
      readonly kept: 'a' | 'b' | undefined;
      readonly reason: string | undefined;
      readonly now: number;
      readonly rollout?: { readonly fromRevision: number | undefined; readonly toRevision: number } | undefined;
    },
  ): Promise<{ experiment: ExperimentRecord; rollout: RolloutRecord | undefined }> {
    const db = this.open();
    const before = db.experiments.get(id);
    if (!before || before.status !== 'running') throw fail.experimentNotRunning({ id });
    const ended: ExperimentRecord = { ...before, status: 'ended', endedAt: e.now, kept: e.kept, reason: e.reason };
    db.experiments.set(id, ended);
    const keptRevision = e.kept === 'a' ? before.control : e.kept === 'b' ? before.variant : null;
    const batch = [
      ev('experiment.ended', before.app, e.now, { experiment: id, kept: e.kept ?? null, keptRevision, reason: e.reason ?? null }),
    ];
    let rollout: RolloutRecord | undefined;
    if (e.rollout) {
      rollout = {
        id: ++db.seq.rollout,
        app: before.app,
        fromRevision: e.rollout.fromRevision,
        toRevision: e.rollout.toRevision,
        status: 'running',
        reason: undefined,
        startedAt: e.now,
        finishedAt: undefined,
        strategy: undefined,
        progress: { step: 0, weight: 0, since: undefined, command: undefined, verdict: undefined },
      };
      db.rollouts.set(rollout.id, rollout);
      batch.push(
        ev('rollout.started', before.app, e.now, {
          rollout: rollout.id,
          fromRevision: e.rollout.fromRevision ?? null,
          toRevision: e.rollout.toRevision,
          strategy: 'blue-green',
        }),
      );
    }
    this.emit(batch);
    return { experiment: copy(ended), rollout: rollout && copy(rollout) };
  }
  async finishRollout(id: number, status: 'succeeded' | 'failed', reason: string | undefined, now: number): Promise<void> {
    const r = this.open().rollouts.get(id);
    if (!r) return;
    this.db.rollouts.set(id, { ...r, status, reason, finishedAt: now });
    if (r.status !== status)
      this.emit([ev('rollout.finished', r.app, now, { rollout: id, toRevision: r.toRevision, status, reason: reason ?? null })]);
  }
  async getRollout(id: number): Promise<RolloutRecord | undefined> {
    const r = this.open().rollouts.get(id);
    return r && copy(r);
  }
  async activeRollout(app: string): Promise<RolloutRecord | undefined> {
    const running = [...this.open().rollouts.values()].filter((r) => r.app === app && r.status === 'running');
    return running.length === 0 ? undefined : copy(running.reduce((a, b) => (b.id > a.id ? b : a)));
  }
  async listRollouts(app: string, limit: number): Promise<RolloutRecord[]> {
    return [...this.open().rollouts.values()]
      .filter((r) => r.app === app)
      .sort((a, b) => b.id - a.id)
      .slice(0, Math.max(0, limit))
      .map(copy);
  }

  // instances

  async createInstance(
    i: Omit<
      InstanceRecord,
      'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt' | 'containerId' | 'updatedAt' | 'logTail' | 'address' | 'kind'
    > & { readonly kind?: InstanceKind },
  ): Promise<void> {
    const db = this.open();
    if (db.instances.has(i.id)) throw fail.instanceAlreadyExists({ id: i.id });
    if (!db.apps.has(i.app)) throw fail.appNotFound({ app: i.app });
    if (!db.nodes.has(i.nodeId)) throw fail.nodeIdNotFound({ nodeId: i.nodeId });
    db.instances.set(i.id, {
      id: i.id,
      app: i.app,
      revision: i.revision,
      nodeId: i.nodeId,
      desired: i.desired,
      state: 'pending',
      port: undefined,
      pid: undefined,
      restarts: 0,
      lastError: undefined,
      startedAt: undefined,
      containerId: undefined,
      logTail: undefined,
      address: undefined,
      kind: i.kind ?? 'web',
      createdAt: i.createdAt,
      updatedAt: i.createdAt,
    });
    this.emit([
      ev('instance.placed', i.app, i.createdAt, {
        instance: i.id,
        revision: i.revision,
        node: this.nodeName(i.nodeId),
        kind: i.kind ?? 'web',
        desired: i.desired,
      }),
    ]);
  }
  async setInstanceDesired(id: string, desired: InstanceDesired, now: number): Promise<void> {
    const i = this.open().instances.get(id);
    if (!i) return;
    this.db.instances.set(id, { ...i, desired, updatedAt: now });
    if (i.desired !== desired) this.emit([ev('instance.desired', i.app, now, { instance: id, revision: i.revision, desired })]);
  }
  /** Replaces every reported field: one left out (containerId, logTail, address) is cleared. */
  async updateInstanceStatus(id: string, s: InstanceStatusUpdate, now: number): Promise<void> {
    const i = this.open().instances.get(id);
    if (!i) return;
    this.db.instances.set(id, {
      ...i,
      state: s.state,
      port: s.port,
      pid: s.pid,
      restarts: s.restarts,
      lastError: s.lastError,
      startedAt: s.startedAt,
      containerId: s.containerId,
      logTail: s.logTail,
      address: s.address,
      updatedAt: now,
    });
    // What a watcher sees change (as the SQLite store decides it); a new pid alone is not news.
    if (
      i.state !== s.state ||
      i.port !== s.port ||
      i.restarts !== s.restarts ||
      i.lastError !== s.lastError ||
      i.address !== s.address ||
      i.logTail !== s.logTail
    ) {
      this.emit([
        ev('instance.state', i.app, now, {
          instance: id,
          revision: i.revision,
          node: this.nodeName(i.nodeId),
          state: s.state,
          from: i.state,
          port: s.port ?? null,
          restarts: s.restarts,
          lastError: s.lastError ?? null,
          address: s.address ?? null,
        }),
      ]);
    }
  }
  async deleteInstance(id: string): Promise<void> {
    const i = this.open().instances.get(id);
    if (!i) return;
    this.db.instances.delete(id);
    this.emit([ev('instance.removed', i.app, Date.now(), { instance: id, revision: i.revision })]);
  }
  async listInstances(filter: { app?: string; nodeId?: string } = {}): Promise<InstanceRecord[]> {
    return [...this.open().instances.values()]
      .filter((i) => (filter.app === undefined || i.app === filter.app) && (filter.nodeId === undefined || i.nodeId === filter.nodeId))
      .sort((a, b) => a.createdAt - b.createdAt || cmp(a.id, b.id))
      .map(copy);
  }

  // nodes

  /** A node seen again keeps its name, registration time and scheduling state; the rest is replaced. */
  async upsertNode(n: NodeRecord): Promise<void> {
    const db = this.open();
    const old = db.nodes.get(n.id);
    if (!old && [...db.nodes.values()].some((x) => x.name === n.name)) {
      throw fail.nodeNameTakenInStore({ name: n.name });
    }
    const rec: NodeRecord = {
      id: n.id,
      name: old?.name ?? n.name,
      address: n.address,
      apiUrl: n.apiUrl,
      credentialHash: n.credentialHash,
      agentToken: n.agentToken,
      registeredAt: old?.registeredAt ?? n.registeredAt,
      lastSeenAt: n.lastSeenAt,
      scheduling: old?.scheduling ?? n.scheduling,
      cpus: n.cpus,
      memoryMb: n.memoryMb,
      labels: json(n.labels),
      runtimes: json(n.runtimes),
    };
    db.nodes.set(n.id, rec);
    if (!old) this.emit([ev('node.registered', undefined, n.registeredAt, { node: n.name, address: n.address })]);
  }
  async getNodeByName(name: string): Promise<NodeRecord | undefined> {
    const n = [...this.open().nodes.values()].find((x) => x.name === name);
    return n && copy(n);
  }
  async getNodeByCredentialHash(hash: string): Promise<NodeRecord | undefined> {
    const n = [...this.open().nodes.values()].find((x) => x.credentialHash === hash);
    return n && copy(n);
  }
  async listNodes(): Promise<NodeRecord[]> {
    return [...this.open().nodes.values()].sort((a, b) => cmp(a.name, b.name)).map(copy);
  }
  async touchNode(id: string, now: number): Promise<void> {
    const n = this.open().nodes.get(id);
    if (n) this.db.nodes.set(id, { ...n, lastSeenAt: now });
  }
  async setNodeScheduling(id: string, scheduling: NodeScheduling): Promise<void> {
    const n = this.open().nodes.get(id);
    if (!n) return;
    this.db.nodes.set(id, { ...n, scheduling });
    if (n.scheduling !== scheduling)
      this.emit([ev('node.scheduling', undefined, Date.now(), { node: n.name, scheduling, from: n.scheduling })]);
  }

  // join tokens

  async createJoinToken(id: string, hash: string, now: number): Promise<void> {
    const db = this.open();
    if (db.joinTokens.has(id) || [...db.joinTokens.values()].some((t) => t.hash === hash)) throw fail.joinTokenAlreadyExists({ id });
    db.joinTokens.set(id, { id, hash, createdAt: now, revokedAt: undefined });
  }
  async findJoinToken(hash: string): Promise<JoinTokenRecord | undefined> {
    const t = [...this.open().joinTokens.values()].find((x) => x.hash === hash && x.revokedAt === undefined);
    return t && { id: t.id, createdAt: t.createdAt, revokedAt: undefined };
  }
  async revokeJoinToken(id: string, now: number): Promise<boolean> {
    const t = this.open().joinTokens.get(id);
    if (!t || t.revokedAt !== undefined) return false;
    this.db.joinTokens.set(id, { ...t, revokedAt: now });
    return true;
  }
  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return [...this.open().joinTokens.values()]
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((t) => ({ id: t.id, createdAt: t.createdAt, revokedAt: t.revokedAt }));
  }

  // runs and the durable run queue

  private insertRun(r: Omit<RunRecord, 'id'>): RunRecord {
    const rec: RunRecord = { ...r, steps: json(r.steps), id: ++this.db.seq.run };
    this.db.runs.set(rec.id, rec);
    return rec;
  }

  async createRun(r: {
    app: string;
    trigger: RunRecord['trigger'];
    commit: string | undefined;
    dirty: boolean;
    steps: readonly StepRecord[];
    now: number;
  }): Promise<RunRecord> {
    this.open();
    const run = this.insertRun({
      app: r.app,
      trigger: r.trigger,
      commit: r.commit,
      dirty: r.dirty,
      status: 'running',
      steps: r.steps,
      artifact: undefined,
      revision: undefined,
      error: undefined,
      createdAt: r.now,
      finishedAt: undefined,
      startedAt: r.now,
      deliveryId: undefined,
      branch: undefined,
      message: undefined,
      author: undefined,
      fence: undefined,
      attempt: 1,
      retryOf: undefined,
      supersededBy: undefined,
      rolloutId: undefined,
      repoFullName: undefined,
    });
    this.emit([ev('run.created', r.app, r.now, { run: run.id, trigger: r.trigger, commit: r.commit ?? null, status: 'running' })]);
    return copy(run);
  }
  /** Sets the fields given; `error: null` clears the error. */
  async updateRun(id: number, p: RunPatch): Promise<RunRecord> {
    const run = this.open().runs.get(id);
    if (!run) throw fail.runNotFound({ id });
    if (p.ifStatus !== undefined && run.status !== p.ifStatus) throw runChanged(id, p.ifStatus, run.status);
    const next: { -readonly [K in keyof RunRecord]: RunRecord[K] } = { ...run };
    if (p.status !== undefined) next.status = p.status;
    if (p.steps !== undefined) next.steps = json(p.steps);
    if (p.artifact !== undefined) next.artifact = p.artifact;
    if (p.revision !== undefined) next.revision = p.revision;
    if (p.error !== undefined) next.error = p.error ?? undefined;
    if (p.finishedAt !== undefined) next.finishedAt = p.finishedAt;
    if (p.commit !== undefined) next.commit = p.commit;
    if (p.dirty !== undefined) next.dirty = p.dirty;
    if (p.startedAt !== undefined) next.startedAt = p.startedAt;
    if (p.rolloutId !== undefined) next.rolloutId = p.rolloutId;
    if (p.supersededBy !== undefined) next.supersededBy = p.supersededBy;
    this.db.runs.set(id, next);
    const now = p.finishedAt ?? Date.now();
    const batch: NewEvent[] = [];
    if (p.steps !== undefined && JSON.stringify(next.steps) !== JSON.stringify(run.steps))
      batch.push(ev('run.steps', run.app, now, { run: id, steps: p.steps.map((st) => ({ name: st.name, status: st.status })) }));
    if (p.status !== undefined && p.status !== run.status) {
      batch.push(
        ev('run.status', run.app, now, {
          run: id,
          status: p.status,
          from: run.status,
          error: typeof p.error === 'string' ? p.error.split('\n')[0] : null,
          revision: p.revision ?? null,
          rollout: p.rolloutId ?? null,
        }),
      );
    }
    this.emit(batch);
    return copy(next);
  }
  async getRun(id: number): Promise<RunRecord | undefined> {
    const r = this.open().runs.get(id);
    return r && copy(r);
  }
  async listRuns(filter: { app?: string; limit: number }): Promise<RunRecord[]> {
    return [...this.open().runs.values()]
      .filter((r) => filter.app === undefined || r.app === filter.app)
      .sort((a, b) => b.id - a.id)
      .slice(0, Math.max(0, filter.limit))
      .map(copy);
  }

  async enqueueWebhookRun(p: WebhookPush): Promise<EnqueueResult> {
    const db = this.open();
    const runs = [...db.runs.values()];
    const byDelivery = runs.find((r) => r.deliveryId === p.deliveryId);
    if (byDelivery) return { outcome: 'duplicate-delivery', run: copy(byDelivery) };
    const same = runs.filter((r) => r.app === p.app && r.commit === p.commit && (r.status === 'queued' || r.status === 'running')).at(-1);
    if (same) return { outcome: 'duplicate-commit', run: copy(same) };
    const fence = runs.reduce((m, r) => (r.app === p.app && r.fence !== undefined && r.fence > m ? r.fence : m), 0) + 1;
    const run = this.insertRun({
      app: p.app,
      trigger: 'webhook',
      commit: p.commit,
      dirty: false,
      status: 'queued',
      steps: WEBHOOK_STEPS,
      artifact: undefined,
      revision: undefined,
      error: undefined,
      createdAt: p.now,
      finishedAt: undefined,
      startedAt: undefined,
      deliveryId: p.deliveryId,
      branch: p.branch,
      message: p.message,
      author: p.author,
      fence,
      attempt: 0,
      retryOf: undefined,
      supersededBy: undefined,
      rolloutId: undefined,
      repoFullName: p.repoFullName,
    });
    const older = runs.filter((r) => r.app === p.app && r.branch === p.branch && r.status === 'queued');
    const batch = [
      ev('run.created', p.app, p.now, { run: run.id, trigger: 'webhook', commit: p.commit, status: 'queued', branch: p.branch }),
    ];
    for (const o of older) {
      batch.push(ev('run.status', p.app, p.now, { run: o.id, status: 'superseded', from: 'queued', supersededBy: run.id }));
      db.runs.set(o.id, {
        ...o,
        status: 'superseded',
        supersededBy: run.id,
        finishedAt: p.now,
        error: `superseded by run #${run.id} (a newer push to ${p.branch})`,
      });
    }
    this.emit(batch);
    return { outcome: 'queued', run: copy(run), superseded: older.map((o) => o.id) };
  }

  async claimNextRun(excludeApps: ReadonlySet<string>, now: number, queuedBefore = now): Promise<RunRecord | undefined> {
    const runs = [...this.open().runs.values()].sort((a, b) => a.id - b.id);
    const busy = new Set(
      runs.filter((r) => r.status === 'running' && r.trigger === 'webhook' && r.rolloutId === undefined).map((r) => r.app),
    );
    const next = runs.find((r) => r.status === 'queued' && r.createdAt <= queuedBefore && !busy.has(r.app) && !excludeApps.has(r.app));
    if (!next) return undefined;
    const claimed: RunRecord = { ...next, status: 'running', startedAt: now, attempt: next.attempt === 0 ? 1 : next.attempt };
    this.db.runs.set(next.id, claimed);
    this.emit([ev('run.status', next.app, now, { run: next.id, status: 'running', from: 'queued' })]);
    return copy(claimed);
  }

  async recoverInterruptedRuns(now: number): Promise<RunRecord[]> {
    const running = [...this.open().runs.values()].filter((r) => r.status === 'running').sort((a, b) => a.id - b.id);
    const webhook = running.filter((r) => r.trigger === 'webhook');
    const batch: NewEvent[] = [];
    for (const r of webhook) {
      const attempt = r.attempt || 1;
      let retryNote = 'not retried: it was already a retry';
      if (attempt < 2) {
        const retry = this.insertRun({
          app: r.app,
          trigger: 'webhook',
          commit: r.commit,
          dirty: false,
          status: 'queued',
          steps: WEBHOOK_STEPS,
          artifact: undefined,
          revision: undefined,
          error: undefined,
          createdAt: now,
          finishedAt: undefined,
          startedAt: undefined,
          deliveryId: undefined,
          branch: r.branch,
          message: r.message,
          author: r.author,
          fence: r.fence,
          attempt: attempt + 1,
          retryOf: r.id,
          supersededBy: undefined,
          rolloutId: undefined,
          repoFullName: r.repoFullName,
        });
        retryNote = `retried as run #${retry.id}`;
        batch.push(
          ev('run.created', r.app, now, { run: retry.id, trigger: 'webhook', commit: r.commit ?? null, status: 'queued', retryOf: r.id }),
        );
      }
      this.db.runs.set(r.id, {
        ...r,
        status: 'interrupted',
        finishedAt: now,
        error: `interrupted: the server stopped while it ran; ${retryNote}`,
      });
      batch.push(
        ev('run.status', r.app, now, {
          run: r.id,
          status: 'interrupted',
          from: 'running',
          error: `interrupted: the server stopped while it ran; ${retryNote}`,
        }),
      );
    }
    const cli = running.filter((r) => r.trigger === 'cli');
    for (const r of cli) {
      this.db.runs.set(r.id, {
        ...r,
        status: 'interrupted',
        finishedAt: now,
        error: 'interrupted: the server stopped while it ran; run `pilot run` again',
      });
      batch.push(
        ev('run.status', r.app, now, {
          run: r.id,
          status: 'interrupted',
          from: 'running',
          error: 'interrupted: the server stopped while it ran',
        }),
      );
    }
    this.emit(batch);
    return [...webhook, ...cli].map((r) => copy(this.db.runs.get(r.id)!));
  }

  async finishRolloutRuns(rolloutId: number, status: 'succeeded' | 'failed', error: string | undefined, now: number): Promise<void> {
    const batch: NewEvent[] = [];
    for (const r of this.open().runs.values()) {
      if (r.rolloutId === rolloutId && r.trigger === 'rollback' && r.status === 'running') {
        this.db.runs.set(r.id, { ...r, status, error, finishedAt: now, steps: [{ name: 'deploy', status, finishedAt: now }] });
        batch.push(
          ev('run.status', r.app, now, { run: r.id, status, from: 'running', error: error?.split('\n')[0] ?? null, rollout: rolloutId }),
        );
      }
    }
    this.emit(batch);
  }
  async revisionOfFence(app: string, fence: number, commit: string): Promise<RevisionRecord | undefined> {
    const db = this.open();
    const made = [...db.revisions.values()].filter((r) => {
      const run = r.runId === undefined ? undefined : db.runs.get(r.runId);
      return r.app === app && run?.app === app && run.fence === fence && r.commit === commit;
    });
    return made.length === 0 ? undefined : copy(made.reduce((a, b) => (b.number > a.number ? b : a)));
  }
  async interruptForegroundRuns(now: number): Promise<number> {
    let n = 0;
    const batch: NewEvent[] = [];
    for (const r of this.open().runs.values()) {
      if (r.status === 'running' && r.trigger !== 'webhook' && r.trigger !== 'rollback') {
        batch.push(
          ev('run.status', r.app, now, {
            run: r.id,
            status: 'interrupted',
            from: 'running',
            error: 'interrupted: the server restarted while it ran',
          }),
        );
        this.db.runs.set(r.id, {
          ...r,
          status: 'interrupted',
          finishedAt: now,
          error: 'interrupted: the server restarted while it ran (its rollout goes on and ends by itself)',
        });
        n++;
      }
    }
    this.emit(batch);
    return n;
  }
  async latestDeployedFence(app: string): Promise<number | undefined> {
    const db = this.open();
    let max: number | undefined;
    for (const r of db.revisions.values()) {
      const fence = r.app === app && r.runId !== undefined ? db.runs.get(r.runId)?.fence : undefined;
      if (fence !== undefined && (max === undefined || fence > max)) max = fence;
    }
    return max;
  }

  // secrets: values arrive sealed and are kept exactly as given

  async putCertificate(c: CertificateRecord): Promise<void> {
    this.open().certificates.set(c.host, { ...c });
  }
  async getCertificate(host: string): Promise<CertificateRecord | undefined> {
    const c = this.open().certificates.get(host);
    return c ? { ...c } : undefined;
  }
  async listCertificates(): Promise<CertificateRecord[]> {
    return [...this.open().certificates.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0)).map((c) => ({ ...c }));
  }
  async deleteCertificate(host: string): Promise<boolean> {
    return this.open().certificates.delete(host);
  }
  async addNotifyEndpoint(e: Omit<NotifyEndpointRecord, 'id'>): Promise<NotifyEndpointRecord> {
    return this.notify.addEndpoint(e);
  }
  async listNotifyEndpoints(app?: string): Promise<NotifyEndpointRecord[]> {
    return this.notify.listEndpoints(app);
  }
  async deleteNotifyEndpoint(app: string, id: number, now: number): Promise<boolean> {
    return this.notify.deleteEndpoint(app, id, now);
  }
  async notifyCursor(): Promise<number | undefined> {
    return this.notify.cursor();
  }
  async enqueueNotifications(d: readonly NewNotifyDelivery[], cursor: number | undefined, now: number): Promise<NotifyDeliveryRecord[]> {
    return this.notify.enqueue(d, cursor, now);
  }
  async dueNotifications(now: number, limit: number): Promise<NotifyDeliveryRecord[]> {
    return this.notify.due(now, limit);
  }
  async nextNotificationDue(): Promise<number | undefined> {
    return this.notify.nextDue();
  }
  async recordNotifyAttempt(
    id: number,
    a: NotifyAttemptRecord,
    next: { status: NotifyDeliveryStatus; nextAttemptAt: number },
  ): Promise<void> {
    this.notify.recordAttempt(id, a, next);
  }
  async listNotifyDeliveries(
    app: string,
    limit: number,
  ): Promise<(NotifyDeliveryRecord & { readonly log: readonly NotifyAttemptRecord[] })[]> {
    return this.notify.deliveries(app, limit);
  }
  async getAcmeAccountKey(directoryUrl: string): Promise<string | undefined> {
    return this.open().acmeAccounts.get(directoryUrl);
  }
  async putAcmeAccountKey(directoryUrl: string, sealedKey: string): Promise<void> {
    this.open().acmeAccounts.set(directoryUrl, sealedKey);
  }

  async setSecret(app: string, name: string, sealed: string, now: number, scope: SecretScope = 'run'): Promise<void> {
    this.open().secrets.set(key(app, name), { app, name, value: sealed, updatedAt: now, scope });
  }
  async deleteSecret(app: string, name: string): Promise<boolean> {
    return this.open().secrets.delete(key(app, name));
  }
  async listSecrets(app: string): Promise<SecretRecord[]> {
    return [...this.open().secrets.values()]
      .filter((s) => s.app === app)
      .sort((a, b) => cmp(a.name, b.name))
      .map((s) => ({ name: s.name, value: s.value, updatedAt: s.updatedAt, scope: s.scope }));
  }

  // container registries

  async putRegistry(r: RegistryRecord): Promise<void> {
    const db = this.open();
    const seq = db.registries.get(r.url)?.seq ?? ++db.seq.registry;
    db.registries.set(r.url, { url: r.url, username: r.username, password: r.password, updatedAt: r.updatedAt, seq });
  }
  async deleteRegistry(url: string): Promise<boolean> {
    return this.open().registries.delete(url);
  }
  async listRegistries(): Promise<RegistryRecord[]> {
    return [...this.open().registries.values()]
      .sort((a, b) => b.updatedAt - a.updatedAt || b.seq - a.seq)
      .map((r) => ({ url: r.url, username: r.username, password: r.password, updatedAt: r.updatedAt }));
  }

  // deploy targets

  async addTarget(t: TargetRecord): Promise<boolean> {
    const db = this.open();
    db.targets ??= new Map();
    if (db.targets.has(t.name)) return false;
    db.targets.set(t.name, copy(t));
    return true;
  }
  async deleteTarget(name: string): Promise<boolean> {
    return this.open().targets?.delete(name) ?? false;
  }
  async listTargets(): Promise<TargetRecord[]> {
    return [...(this.open().targets?.values() ?? [])].sort((a, b) => (a.name < b.name ? -1 : 1)).map(copy);
  }

  // volumes

  async listVolumePlacements(app?: string): Promise<VolumePlacement[]> {
    return [...this.open().volumes.values()]
      .filter((v) => app === undefined || v.app === app)
      .sort((a, b) => cmp(a.app, b.app) || cmp(a.name, b.name))
      .map(copy);
  }
  async placeVolumes(app: string, names: readonly string[], nodeId: string, now: number): Promise<void> {
    const db = this.open();
    for (const name of names) if (!db.volumes.has(key(app, name))) db.volumes.set(key(app, name), { app, name, nodeId, createdAt: now });
  }
  async forgetVolumes(app: string, name?: string): Promise<number> {
    let n = 0;
    for (const [k, v] of this.open().volumes) {
      if (v.app === app && (name === undefined || v.name === name)) {
        this.db.volumes.delete(k);
        n++;
      }
    }
    return n;
  }

  // artifact metadata and Node.js runtimes: the first record of a key stays

  async putNodeRuntime(r: NodeRuntimeRecord): Promise<NodeRuntimeRecord> {
    const db = this.open();
    const k = key(r.version, r.platform);
    if (!db.nodeRuntimes.has(k)) {
      db.nodeRuntimes.set(k, {
        version: r.version,
        platform: r.platform,
        digest: r.digest,
        integrity: r.integrity,
        size: r.size,
        origin: r.origin,
        createdAt: r.createdAt,
      });
    }
    return copy(db.nodeRuntimes.get(k)!);
  }
  async getNodeRuntime(version: string, platform: string): Promise<NodeRuntimeRecord | undefined> {
    const r = this.open().nodeRuntimes.get(key(version, platform));
    return r && copy(r);
  }
  async listNodeRuntimes(): Promise<NodeRuntimeRecord[]> {
    return [...this.open().nodeRuntimes.values()].sort((a, b) => a.createdAt - b.createdAt).map(copy);
  }
  putArtifactMeta(m: ArtifactMeta): void {
    const db = this.open();
    if (!db.artifacts.has(m.digest))
      db.artifacts.set(m.digest, { digest: m.digest, size: m.size, app: m.app, commit: m.commit, createdAt: m.createdAt });
  }
  getArtifactMeta(digest: string): ArtifactMeta | undefined {
    const m = this.open().artifacts.get(digest);
    return m && copy(m);
  }
  listArtifactMeta(app?: string): ArtifactMeta[] {
    return [...this.open().artifacts.values()]
      .filter((m) => app === undefined || m.app === app)
      .sort((a, b) => b.createdAt - a.createdAt)
      .map(copy);
  }
  forgetBlob(digest: string): void {
    const db = this.open();
    db.artifacts.delete(digest);
    for (const [k, r] of db.nodeRuntimes) if (r.digest === digest) db.nodeRuntimes.delete(k);
  }

  /** The whole state as JSON (mode 0600: it holds sealed secrets and agent tokens); `fromBackup` reads it. */
  async backup(file: string): Promise<void> {
    const db = this.open();
    const out: Record<string, unknown> = {};
    // A record's undefined field is written as null (JSON would drop it) and read back as undefined.
    const fields = (rec: unknown): unknown =>
      rec !== null && typeof rec === 'object' && !Array.isArray(rec)
        ? Object.fromEntries(Object.entries(rec).map(([k, x]) => [k, x === undefined ? null : x]))
        : rec;
    for (const [k, v] of Object.entries(db)) out[k] = v instanceof Map ? [...v.entries()].map(([id, rec]) => [id, fields(rec)]) : v;
    writeFileSync(file, JSON.stringify(out), { mode: 0o600 });
  }

  /** All or nothing, like SQLite's transaction: every check before the first write, no await between. */
  async commitPlan(c: PlanCommit): Promise<PlanVerdict> {
    const { plan, now } = c;
    if (c.instanceIds.length !== plan.placements.length) throw new Error('commitPlan: one instance id per placement');
    const db = this.open();
    const app = this.liveApp(plan.app);
    const running = [...db.rollouts.values()].filter((r) => r.app === plan.app && r.status === 'running');
    const newest = running.length === 0 ? undefined : running.reduce((a, b) => (b.id > a.id ? b : a));
    const rolloutId = newest?.id;
    const instances = [...db.instances.values()].filter((i) => i.app === plan.app);
    const basis = basisOf({ app: app && { activeRevision: app.activeRevision, replicas: app.replicas }, rolloutId, instances });
    if (basis !== plan.basis) return { committed: false, reason: `the state of app "${plan.app}" changed since the plan was made` };
    for (const nodeId of new Set(plan.placements.map((p) => p.nodeId))) {
      const n = db.nodes.get(nodeId);
      if (!n) return { committed: false, reason: `node ${nodeId} is no longer registered` };
      if (n.scheduling !== 'eligible') return { committed: false, reason: `node ${nodeId} is no longer eligible (${n.scheduling})` };
    }
    // The plan itself first, then the events of each change it makes (the SQLite store's order).
    const batch: NewEvent[] = [
      ev(
        'deploy.plan',
        plan.app,
        now,
        planEventPayload(c, (id) => this.nodeName(id)),
      ),
    ];
    if (plan.volumes) {
      for (const name of plan.volumes.names)
        if (!db.volumes.has(key(plan.app, name)))
          db.volumes.set(key(plan.app, name), { app: plan.app, name, nodeId: plan.volumes.nodeId, createdAt: now });
    }
    plan.placements.forEach((p, k) => {
      const id = c.instanceIds[k]!;
      db.instances.set(id, {
        id,
        app: plan.app,
        revision: p.revision,
        nodeId: p.nodeId,
        desired: 'run',
        state: 'pending',
        port: undefined,
        pid: undefined,
        restarts: 0,
        lastError: undefined,
        startedAt: undefined,
        containerId: undefined,
        logTail: undefined,
        address: undefined,
        kind: p.kind,
        createdAt: now,
        updatedAt: now,
      });
      batch.push(
        ev('instance.placed', plan.app, now, {
          instance: id,
          revision: p.revision,
          node: this.nodeName(p.nodeId),
          kind: p.kind,
          desired: 'run',
        }),
      );
    });
    const before = new Map(instances.map((i) => [i.id, i]));
    for (const d of plan.desired) {
      const i = db.instances.get(d.id);
      if (i) db.instances.set(d.id, { ...i, desired: d.desired, updatedAt: now });
      const was = before.get(d.id);
      if (was && was.desired !== d.desired)
        batch.push(ev('instance.desired', plan.app, now, { instance: d.id, revision: was.revision, desired: d.desired }));
    }
    if (plan.activate !== undefined && app) {
      db.apps.set(plan.app, { ...app, activeRevision: plan.activate, updatedAt: now });
      if (app.activeRevision !== plan.activate)
        batch.push(ev('deploy.activated', plan.app, now, { revision: plan.activate, previous: app.activeRevision ?? null }));
    }
    const ro = plan.rolloutId === undefined ? undefined : db.rollouts.get(plan.rolloutId);
    if (plan.progress && ro) {
      const g = plan.progress;
      const was = progressOf(ro);
      db.rollouts.set(ro.id, {
        ...ro,
        progress: {
          step: g.step,
          weight: g.weight,
          since: g.restart ? now : was.since,
          command: g.clearCommand ? undefined : was.command,
          verdict: g.verdict ?? was.verdict,
        },
      });
      if (was.step !== g.step || was.weight !== g.weight)
        batch.push(
          ev('rollout.step', plan.app, now, {
            rollout: ro.id,
            toRevision: ro.toRevision,
            step: g.step,
            weight: g.weight,
            previousWeight: was.weight,
          }),
        );
      if (g.verdict)
        batch.push(
          ev('rollout.analysis', plan.app, now, {
            rollout: ro.id,
            toRevision: ro.toRevision,
            verdict: g.verdict.verdict,
            reason: g.verdict.reason,
          }),
        );
    }
    if (plan.finish && plan.rolloutId !== undefined) {
      const f = plan.finish;
      const r = db.rollouts.get(plan.rolloutId);
      if (r) db.rollouts.set(r.id, { ...r, status: f.status, reason: f.reason, finishedAt: now });
      batch.push(
        ev('rollout.finished', plan.app, now, {
          rollout: plan.rolloutId,
          toRevision: newest?.id === plan.rolloutId ? newest.toRevision : null,
          status: f.status,
          reason: f.reason ?? null,
        }),
      );
      for (const run of db.runs.values()) {
        if (run.rolloutId === plan.rolloutId && run.trigger === 'rollback' && run.status === 'running') {
          db.runs.set(run.id, {
            ...run,
            status: f.status,
            error: f.reason,
            finishedAt: now,
            steps: [{ name: 'deploy', status: f.status, finishedAt: now }],
          });
          batch.push(
            ev('run.status', plan.app, now, {
              run: run.id,
              status: f.status,
              from: 'running',
              error: f.reason?.split('\n')[0] ?? null,
              rollout: plan.rolloutId,
            }),
          );
        }
      }
    }
    this.emit(batch);
    return { committed: true };
  }

  // events: the log of store/memory-events.ts over this state's feed. Every write above appends the
  // events the SQLite store's same write appends (kinds, payloads, order), as one batch.
  appendEvent(e: NewEvent): Promise<PilotEvent> {
    return this.events.appendEvent(e);
  }
  readEvents(q: {
    after: number;
    app?: string | undefined;
    limit: number;
    kinds?: readonly EventKind[] | undefined;
  }): Promise<PilotEvent[]> {
    return this.events.readEvents(q);
  }
  latestEvents(q: { app?: string | undefined; limit: number }): Promise<PilotEvent[]> {
    return this.events.latestEvents(q);
  }
  eventBounds(): Promise<EventBounds> {
    return this.events.eventBounds();
  }
  trimEvents(p: { keep: number; before: number }): Promise<number> {
    return this.events.trimEvents(p);
  }
  subscribeEvents(listener: (events: readonly PilotEvent[]) => void): () => void {
    return this.events.subscribeEvents(listener);
  }

  close(): void {
    this.closed = true;
  }
}

/** A rollout's progress, the start when none is recorded. */
function progressOf(r: RolloutRecord): NonNullable<RolloutRecord['progress']> {
  return r.progress ?? { step: 0, weight: 0, since: undefined, command: undefined, verdict: undefined };
}

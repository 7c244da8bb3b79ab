/** The Store on SQLite (better-sqlite3): one file, WAL, versioned migrations. */
import type { RolloutCommand } from '../core/rollout-types.js';
import Database from 'better-sqlite3';
import type { AppConfig } from '../core/app-config.js';

import { type PilotError, fail } from '../core/errors.js';
import type { ArtifactMeta, InstanceKind, RunRecord, StepRecord } from '../core/types.js';
import { basisOf } from '../core/plan.js';
import type { ReplicasSource } from '../core/replicas.js';
import type { EventKind, NewEvent, PilotEvent } from '../core/events.js';
import { EventBus } from './event-bus.js';
import { MIGRATIONS } from './migrations.js';
import { SqliteNotify } from './sqlite-notify.js';
import { formatStickyBy } from '../core/experiment.js';
import type {
  NewNotifyDelivery,
  NotifyAttemptRecord,
  NotifyDeliveryRecord,
  NotifyDeliveryStatus,
  NotifyEndpointRecord,
  ExperimentRecord,
  AppSource,
  EnqueueResult,
  EventBounds,
  JoinTokenRecord,
  RegistryRecord,
  TargetRecord,
  SecretRecord,
  CertificateRecord,
  SecretScope,
  WebhookPush,
  AppRecord,
  InstanceDesired,
  InstanceRecord,
  InstanceStatusUpdate,
  NodeRecord,
  NodeRuntimeRecord,
  RevisionRecord,
  PlanCommit,
  PlanVerdict,
  RolloutRecord,
  RunPatch,
  Store,
  VolumePlacement,
} from './store.js';
import {
  type Row,
  opt,
  certificateFrom,
  appFrom,
  revisionFrom,
  experimentFrom,
  rolloutFrom,
  instanceFrom,
  nodeFrom,
  runFrom,
  artifactFrom,
  eventFrom,
  nodeRuntimeFrom,
  targetFrom,
} from './rows.js';
import { runChanged } from './store.js';
import { planEventPayload } from './plan-event.js';

const PIPELINE_STEPS = JSON.stringify(['source', 'build', 'package', 'publish', 'deploy'].map((name) => ({ name, status: 'pending' })));

/** Open (creating if needed) and migrate the database at `file`. */
export function openSqliteStore(file: string): SqliteStore {
  return new SqliteStore(file);
}

/** A database that cannot be opened, said plainly with the way out. */
export function databaseError(file: string, err: unknown): PilotError {
  const code = String((err as { code?: unknown }).code ?? '');
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return fail.databaseDamaged({ file, message: (err as Error).message }, { cause: err });
  }
  return fail.databaseUnopenable({ file, message: (err as Error).message }, { cause: err });
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private pendingPushes: { p: WebhookPush; resolve: (r: EnqueueResult) => void; reject: (e: unknown) => void }[] = [];
  private readonly bus = new EventBus();
  /** Events appended by the write in progress: published once its transaction committed, dropped if it rolled back. */
  private unpublished: PilotEvent[] = [];
  private writeDepth = 0;
  private readonly notify: SqliteNotify;

  constructor(file: string, opts: { mustExist?: boolean } = {}) {
    try {
      this.db = new Database(file, { fileMustExist: opts.mustExist ?? false });
      // Reads every page's structure: a damaged file is refused here, before anything starts.
      const check = this.db.pragma('quick_check', { simple: true }) as string;
      if (check !== 'ok') throw Object.assign(new Error(`integrity check failed: ${check}`), { code: 'SQLITE_CORRUPT' });
    } catch (err) {
      throw databaseError(file, err);
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    this.notify = new SqliteNotify(this.db, (sql) => this.stmt(sql));
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw fail.databaseTooNew({ current, migrationsCount: MIGRATIONS.length });
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** A prepared statement, prepared once: the hot paths (sync, enqueue) run the same SQL all day. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /**
   * A write and the events it appends, in one transaction; the events are published on the bus
   * after the outermost write committed (never for a write that rolled back).
   */
  private write<T>(fn: () => T): T {
    this.writeDepth++;
    let out: T;
    try {
      out = this.db.transaction(fn)();
    } catch (err) {
      if (--this.writeDepth === 0) this.unpublished = [];
      throw err;
    }
    if (--this.writeDepth === 0 && this.unpublished.length > 0) {
      const batch = this.unpublished;
      this.unpublished = [];
      this.bus.publish(batch);
    }
    return out;
  }

  /** Append an event inside the current write (call only within `write`). */
  private event(kind: EventKind, app: string | undefined, time: number, payload: Record<string, unknown>): void {
    const info = this.stmt('INSERT INTO events (time, app, kind, payload) VALUES (?, ?, ?, ?)').run(
      time,
      app ?? null,
      kind,
      JSON.stringify(payload),
    );
    this.unpublished.push({ id: Number(info.lastInsertRowid), time, app, kind, payload });
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** A removed app's row stays until purged: writing to it would hand its leftovers to a new app of that name. */
  private assertNotRemoving(name: string): void {
    if (this.stmt('SELECT 1 FROM apps WHERE name = ? AND removed_at IS NOT NULL').get(name) !== undefined) {
      throw fail.appRemoving({ name });
    }
  }

  async upsertApp(name: string, config: AppConfig, now: number): Promise<AppRecord> {
    this.assertNotRemoving(name);
    this.stmt(
      `INSERT INTO apps (name, config, replicas, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at`,
    ).run(name, JSON.stringify(config), config.replicas, now, now);
    return (await this.getApp(name))!;
  }
  async getApp(name: string): Promise<AppRecord | undefined> {
    const r = this.stmt('SELECT * FROM apps WHERE name = ? AND removed_at IS NULL').get(name) as Row | undefined;
    return r && appFrom(r);
  }
  async listApps(): Promise<AppRecord[]> {
    return (this.stmt('SELECT * FROM apps WHERE removed_at IS NULL ORDER BY name').all() as Row[]).map(appFrom);
  }
  async removingApps(): Promise<string[]> {
    return (this.stmt('SELECT name FROM apps WHERE removed_at IS NOT NULL ORDER BY name').all() as { name: string }[]).map((r) => r.name);
  }
  async removeApp(name: string, now: number): Promise<boolean> {
    return this.write((): boolean => {
      const done =
        this.stmt(
          `UPDATE apps SET removed_at = ?, repo = NULL, branch = NULL, webhook_secret = NULL, github_token = NULL, status_api_url = NULL, updated_at = ?
                               WHERE name = ? AND removed_at IS NULL`,
        ).run(now, now, name).changes > 0;
      if (!done) return false;
      for (const i of this.stmt(`SELECT id, revision FROM instances WHERE app = ? AND desired <> 'stop'`).all(name) as Row[]) {
        this.event('instance.desired', name, now, { instance: i.id, revision: i.revision, desired: 'stop', reason: 'app removed' });
      }
      this.stmt(`UPDATE instances SET desired = 'stop', updated_at = ? WHERE app = ?`).run(now, name);
      for (const r of this.stmt(`SELECT id, to_revision FROM rollouts WHERE app = ? AND status = 'running'`).all(name) as Row[]) {
        this.event('rollout.finished', name, now, { rollout: r.id, toRevision: r.to_revision, status: 'failed', reason: 'app removed' });
      }
      this.stmt(`UPDATE rollouts SET status = 'failed', reason = 'app removed', finished_at = ? WHERE app = ? AND status = 'running'`).run(
        now,
        name,
      );
      this.endRunningExperiments(name, 'app removed', now);
      for (const r of this.stmt(`SELECT id FROM runs WHERE app = ? AND status = 'queued'`).all(name) as Row[]) {
        this.event('run.status', name, now, { run: r.id, status: 'cancelled', error: 'the app was removed' });
      }
      this.stmt(
        `UPDATE runs SET status = 'cancelled', error = 'the app was removed', finished_at = ? WHERE app = ? AND status = 'queued'`,
      ).run(now, name);
      this.stmt('DELETE FROM secrets WHERE app = ?').run(name);
      this.notify.deleteAppEndpoints(name, now);
      return true;
    });
  }
  async purgeRemovedApps(): Promise<string[]> {
    return this.db.transaction((): string[] => {
      const gone = (
        this.stmt(
          `SELECT name FROM apps WHERE removed_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM instances WHERE instances.app = apps.name) ORDER BY name`,
        ).all() as { name: string }[]
      ).map((r) => r.name);
      for (const name of gone) {
        this.stmt('DELETE FROM rollouts WHERE app = ?').run(name);
        this.stmt('DELETE FROM experiments WHERE app = ?').run(name);
        this.stmt('DELETE FROM revisions WHERE app = ?').run(name);
        this.stmt('DELETE FROM secrets WHERE app = ?').run(name);
        this.stmt('DELETE FROM apps WHERE name = ?').run(name);
      }
      return gone;
    })();
  }
  async setActiveRevision(app: string, revision: number | undefined, now: number): Promise<void> {
    this.write(() => {
      const before = this.stmt('SELECT active_revision FROM apps WHERE name = ?').get(app) as Row | undefined;
      if (!before) return;
      this.stmt('UPDATE apps SET active_revision = ?, updated_at = ? WHERE name = ?').run(revision ?? null, now, app);
      if ((before.active_revision ?? null) !== (revision ?? null)) {
        this.event('deploy.activated', app, now, { revision: revision ?? null, previous: before.active_revision ?? null });
      }
    });
  }
  async setReplicas(app: string, replicas: number, now: number, source: ReplicasSource = 'scale'): Promise<void> {
    this.stmt('UPDATE apps SET replicas = ?, replicas_source = ?, updated_at = ? WHERE name = ?').run(replicas, source, now, app);
  }

  async setAutoscaledReplicas(app: string, change: { from: number; to: number; reason: string }, now: number): Promise<boolean> {
    return this.write(() => {
      const r = this.stmt(
        `UPDATE apps SET replicas = ?, replicas_source = 'autoscaler', updated_at = ? WHERE name = ? AND replicas = ? AND removed_at IS NULL`,
      ).run(change.to, now, app, change.from);
      if (r.changes === 0) return false;
      this.event('autoscale.changed', app, now, { ...change });
      return true;
    });
  }

  async setAppSource(name: string, defaults: AppConfig, src: AppSource, now: number): Promise<AppRecord> {
    this.assertNotRemoving(name);
    this.db.transaction(() => {
      this.stmt('INSERT OR IGNORE INTO apps (name, config, replicas, created_at, updated_at) VALUES (?, ?, ?, ?, ?)').run(
        name,
        JSON.stringify(defaults),
        defaults.replicas,
        now,
        now,
      );
      this.stmt(
        'UPDATE apps SET repo = ?, branch = ?, webhook_secret = ?, github_token = ?, status_api_url = ?, updated_at = ? WHERE name = ?',
      ).run(src.repo, src.branch, src.webhookSecret, src.githubToken ?? null, src.statusApiUrl ?? null, now, name);
    })();
    return (await this.getApp(name))!;
  }

  async createRevision(r: Omit<RevisionRecord, 'number'>): Promise<RevisionRecord> {
    const number = this.write(() => {
      const max = this.stmt('SELECT MAX(number) AS n FROM revisions WHERE app = ?').get(r.app) as { n: number | null };
      const n = (max.n ?? 0) + 1;
      this.stmt(
        'INSERT INTO revisions (app, number, artifact, commit_sha, dirty, config, run_id, created_at, image, node_runtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ).run(
        r.app,
        n,
        r.artifact,
        r.commit,
        r.dirty ? 1 : 0,
        JSON.stringify(r.config),
        r.runId ?? null,
        r.createdAt,
        r.image ? JSON.stringify(r.image) : null,
        r.nodeRuntime ? JSON.stringify(r.nodeRuntime) : null,
      );
      this.event('deploy.revision', r.app, r.createdAt, {
        revision: n,
        commit: r.commit,
        dirty: r.dirty,
        artifact: r.artifact,
        run: r.runId ?? null,
      });
      return n;
    });
    // What was stored, read back (not the caller's object): the same record getRevision gives.
    return (await this.getRevision(r.app, number))!;
  }
  async getRevision(app: string, number: number): Promise<RevisionRecord | undefined> {
    const r = this.stmt('SELECT * FROM revisions WHERE app = ? AND number = ?').get(app, number) as Row | undefined;
    return r && revisionFrom(r);
  }
  async listRevisions(app: string): Promise<RevisionRecord[]> {
    return (this.stmt('SELECT * FROM revisions WHERE app = ? ORDER BY number DESC').all(app) as Row[]).map(revisionFrom);
  }

  async createRollout(r: Omit<RolloutRecord, 'id' | 'status' | 'reason' | 'finishedAt' | 'progress'>): Promise<RolloutRecord> {
    const id = this.write(() => {
      const info = this.stmt(
        `INSERT INTO rollouts (app, from_revision, to_revision, status, started_at, strategy) VALUES (?, ?, ?, 'running', ?, ?)`,
      ).run(r.app, r.fromRevision ?? null, r.toRevision, r.startedAt, r.strategy === undefined ? null : JSON.stringify(r.strategy));
      const id = Number(info.lastInsertRowid);
      this.endRunningExperiments(
        r.app,
        `a rollout to revision ${r.toRevision} started (a deploy or a rollback ends an experiment)`,
        r.startedAt,
      );
      this.event('rollout.started', r.app, r.startedAt, {
        rollout: id,
        fromRevision: r.fromRevision ?? null,
        toRevision: r.toRevision,
        strategy: r.strategy?.type ?? 'blue-green',
      });
      return id;
    });
    return (await this.getRollout(id))!;
  }
  async setRolloutCommand(id: number, command: RolloutCommand, now: number): Promise<boolean> {
    return this.write(() => {
      const r = this.stmt(`SELECT app, to_revision FROM rollouts WHERE id = ? AND status = 'running'`).get(id) as Row | undefined;
      if (!r) return false;
      this.stmt('UPDATE rollouts SET command = ? WHERE id = ?').run(command, id);
      this.event('rollout.command', r.app as string, now, { rollout: id, toRevision: r.to_revision, command });
      return true;
    });
  }

  /** End the app's running experiment, if any, with no variant kept (inside a write). */
  private endRunningExperiments(app: string, reason: string, now: number): void {
    for (const e of this.stmt(`SELECT id FROM experiments WHERE app = ? AND status = 'running'`).all(app) as Row[]) {
      this.stmt(`UPDATE experiments SET status = 'ended', ended_at = ?, reason = ? WHERE id = ?`).run(now, reason, e.id);
      this.event('experiment.ended', app, now, { experiment: e.id, kept: null, keptRevision: null, reason });
    }
  }

  async startExperiment(e: Omit<ExperimentRecord, 'id' | 'status' | 'endedAt' | 'kept' | 'reason'>): Promise<ExperimentRecord> {
    const id = this.write(() => {
      const running = this.stmt(`SELECT id FROM experiments WHERE app = ? AND status = 'running'`).get(e.app) as Row | undefined;
      if (running) throw fail.experimentAlreadyRunningInStore({ app: e.app, id: Number(running.id) });
      const kind = 'cookie' in e.by ? 'cookie' : 'header';
      const name = 'cookie' in e.by ? e.by.cookie : e.by.header;
      const info = this.stmt(
        `INSERT INTO experiments (app, control_revision, variant_revision, split, by_kind, by_name, status, started_at)
           VALUES (?, ?, ?, ?, ?, ?, 'running', ?)`,
      ).run(e.app, e.control, e.variant, e.split, kind, name, e.startedAt);
      const id = Number(info.lastInsertRowid);
      this.event('experiment.started', e.app, e.startedAt, {
        experiment: id,
        control: e.control,
        variant: e.variant,
        split: e.split,
        by: formatStickyBy(e.by),
      });
      return id;
    });
    return experimentFrom(this.stmt('SELECT * FROM experiments WHERE id = ?').get(id) as Row);
  }
  async activeExperiment(app: string): Promise<ExperimentRecord | undefined> {
    const r = this.stmt(`SELECT * FROM experiments WHERE app = ? AND status = 'running' ORDER BY id DESC LIMIT 1`).get(app) as
      Row | undefined;
    return r && experimentFrom(r);
  }
  async listExperiments(app: string, limit: number): Promise<ExperimentRecord[]> {
    return (this.stmt('SELECT * FROM experiments WHERE app = ? ORDER BY id DESC LIMIT ?').all(app, limit) as Row[]).map(experimentFrom);
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
    const rolloutId = this.write((): number | undefined => {
      const before = this.stmt('SELECT * FROM experiments WHERE id = ?').get(id) as Row | undefined;
      if (!before || before.status !== 'running') throw fail.experimentNotRunning({ id });
      this.stmt(`UPDATE experiments SET status = 'ended', ended_at = ?, kept = ?, reason = ? WHERE id = ?`).run(
        e.now,
        e.kept ?? null,
        e.reason ?? null,
        id,
      );
      const keptRevision = e.kept === 'a' ? before.control_revision : e.kept === 'b' ? before.variant_revision : null;
      this.event('experiment.ended', before.app as string, e.now, {
        experiment: id,
        kept: e.kept ?? null,
        keptRevision,
        reason: e.reason ?? null,
      });
      if (!e.rollout) return undefined;
      const info = this.stmt(
        `INSERT INTO rollouts (app, from_revision, to_revision, status, started_at) VALUES (?, ?, ?, 'running', ?)`,
      ).run(before.app, e.rollout.fromRevision ?? null, e.rollout.toRevision, e.now);
      const rid = Number(info.lastInsertRowid);
      this.event('rollout.started', before.app as string, e.now, {
        rollout: rid,
        fromRevision: e.rollout.fromRevision ?? null,
        toRevision: e.rollout.toRevision,
        strategy: 'blue-green',
      });
      return rid;
    });
    const experiment = experimentFrom(this.stmt('SELECT * FROM experiments WHERE id = ?').get(id) as Row);
    return { experiment, rollout: rolloutId === undefined ? undefined : await this.getRollout(rolloutId) };
  }
  async finishRollout(id: number, status: 'succeeded' | 'failed', reason: string | undefined, now: number): Promise<void> {
    this.write(() => {
      const before = this.stmt('SELECT app, to_revision, status FROM rollouts WHERE id = ?').get(id) as Row | undefined;
      this.stmt('UPDATE rollouts SET status = ?, reason = ?, finished_at = ? WHERE id = ?').run(status, reason ?? null, now, id);
      if (before && before.status !== status) {
        this.event('rollout.finished', before.app as string, now, {
          rollout: id,
          toRevision: before.to_revision,
          status,
          reason: reason ?? null,
        });
      }
    });
  }
  async getRollout(id: number): Promise<RolloutRecord | undefined> {
    const r = this.stmt('SELECT * FROM rollouts WHERE id = ?').get(id) as Row | undefined;
    return r && rolloutFrom(r);
  }
  async activeRollout(app: string): Promise<RolloutRecord | undefined> {
    const r = this.stmt(`SELECT * FROM rollouts WHERE app = ? AND status = 'running' ORDER BY id DESC LIMIT 1`).get(app) as Row | undefined;
    return r && rolloutFrom(r);
  }
  async listRollouts(app: string, limit: number): Promise<RolloutRecord[]> {
    return (this.stmt('SELECT * FROM rollouts WHERE app = ? ORDER BY id DESC LIMIT ?').all(app, limit) as Row[]).map(rolloutFrom);
  }

  async createInstance(
    i: Omit<
      InstanceRecord,
      'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt' | 'containerId' | 'updatedAt' | 'logTail' | 'address' | 'kind'
    > & { readonly kind?: InstanceKind },
  ): Promise<void> {
    this.write(() => {
      this.stmt(
        `INSERT INTO instances (id, app, revision, node_id, desired, state, kind, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)`,
      ).run(i.id, i.app, i.revision, i.nodeId, i.desired, i.kind ?? 'web', i.createdAt, i.createdAt);
      this.event('instance.placed', i.app, i.createdAt, {
        instance: i.id,
        revision: i.revision,
        node: this.nodeName(i.nodeId),
        kind: i.kind ?? 'web',
        desired: i.desired,
      });
    });
  }
  async setInstanceDesired(id: string, desired: InstanceDesired, now: number): Promise<void> {
    this.write(() => {
      const before = this.stmt('SELECT app, revision, desired FROM instances WHERE id = ?').get(id) as Row | undefined;
      this.stmt('UPDATE instances SET desired = ?, updated_at = ? WHERE id = ?').run(desired, now, id);
      if (before && before.desired !== desired)
        this.event('instance.desired', before.app as string, now, { instance: id, revision: before.revision, desired });
    });
  }
  async updateInstanceStatus(id: string, s: InstanceStatusUpdate, now: number): Promise<void> {
    this.write(() => {
      const b = this.stmt(
        'SELECT app, revision, node_id, state, port, restarts, last_error, address, log_tail FROM instances WHERE id = ?',
      ).get(id) as Row | undefined;
      this.stmt(
        'UPDATE instances SET state = ?, port = ?, pid = ?, restarts = ?, last_error = ?, started_at = ?, container_id = ?, log_tail = ?, address = ?, updated_at = ? WHERE id = ?',
      ).run(
        s.state,
        s.port ?? null,
        s.pid ?? null,
        s.restarts,
        s.lastError ?? null,
        s.startedAt ?? null,
        s.containerId ?? null,
        s.logTail ?? null,
        s.address ?? null,
        now,
        id,
      );
      // What a watcher sees change (state, where it listens, restarts, its error, the last output a
      // failing instance left: `pilot run` prints it); a new pid alone is not news. The tail itself
      // stays out of the event (it is long): a watcher reads it from the instance.
      if (
        b &&
        (b.state !== s.state ||
          b.port !== (s.port ?? null) ||
          b.restarts !== s.restarts ||
          b.last_error !== (s.lastError ?? null) ||
          b.address !== (s.address ?? null) ||
          b.log_tail !== (s.logTail ?? null))
      ) {
        this.event('instance.state', b.app as string, now, {
          instance: id,
          revision: b.revision,
          node: this.nodeName(b.node_id as string),
          state: s.state,
          from: b.state,
          port: s.port ?? null,
          restarts: s.restarts,
          lastError: s.lastError ?? null,
          address: s.address ?? null,
        });
      }
    });
  }
  async deleteInstance(id: string): Promise<void> {
    this.write(() => {
      const b = this.stmt('SELECT app, revision FROM instances WHERE id = ?').get(id) as Row | undefined;
      if (this.stmt('DELETE FROM instances WHERE id = ?').run(id).changes > 0 && b)
        this.event('instance.removed', b.app as string, Date.now(), { instance: id, revision: b.revision });
    });
  }

  /** A node's name for an event (its id when unknown). */
  private nodeName(id: string): string {
    return this.nodeCache().byId.get(id)?.name ?? id;
  }
  async listInstances(filter: { app?: string; nodeId?: string } = {}): Promise<InstanceRecord[]> {
    const rows = this.stmt(
      'SELECT * FROM instances WHERE (@app IS NULL OR app = @app) AND (@node IS NULL OR node_id = @node) ORDER BY created_at, id',
    ).all({ app: filter.app ?? null, node: filter.nodeId ?? null }) as Row[];
    return rows.map(instanceFrom);
  }

  /**
   * Every node, in memory: the node monitor, the reconciler and each agent sync read them several
   * times a second, and this store is the only writer, so every write keeps it current in place.
   */
  private nodes:
    { order: string[]; byId: Map<string, NodeRecord>; byHash: Map<string, NodeRecord>; byName: Map<string, NodeRecord> } | undefined;

  private nodeCache(): NonNullable<SqliteStore['nodes']> {
    if (!this.nodes) {
      const list = (this.stmt('SELECT * FROM nodes ORDER BY name').all() as Row[]).map(nodeFrom);
      this.nodes = { order: [], byId: new Map(), byHash: new Map(), byName: new Map() };
      for (const n of list) this.cacheNode(n);
    }
    return this.nodes;
  }

  /** Put a node's current record into the cache (when there is one). */
  private cacheNode(n: NodeRecord): void {
    const c = this.nodes;
    if (!c) return;
    const old = c.byId.get(n.id);
    if (old) {
      c.byHash.delete(old.credentialHash);
      c.byName.delete(old.name);
    }
    c.byId.set(n.id, n);
    c.byHash.set(n.credentialHash, n);
    c.byName.set(n.name, n);
    if (!old) {
      // Keep `order` sorted by name, as ORDER BY name would (names are ASCII).
      let lo = 0;
      let hi = c.order.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (c.byId.get(c.order[mid]!)!.name < n.name) lo = mid + 1;
        else hi = mid;
      }
      c.order.splice(lo, 0, n.id);
    } else if (old.name !== n.name) {
      c.order.sort((a, b) => (c.byId.get(a)!.name < c.byId.get(b)!.name ? -1 : 1));
    }
  }

  async upsertNode(n: NodeRecord): Promise<void> {
    // On conflict the row keeps its name, registration time and scheduling state; so does the cache.
    const known = this.nodeCache().byId.has(n.id);
    this.write(() => {
      this.stmt(
        `INSERT INTO nodes (id, name, address, api_url, credential_hash, agent_token, registered_at, last_seen_at, scheduling, cpus, memory_mb, labels, runtimes)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET address = excluded.address, api_url = excluded.api_url, credential_hash = excluded.credential_hash,
         agent_token = excluded.agent_token, last_seen_at = excluded.last_seen_at, cpus = excluded.cpus, memory_mb = excluded.memory_mb, labels = excluded.labels, runtimes = excluded.runtimes`,
      ).run(
        n.id,
        n.name,
        n.address,
        n.apiUrl,
        n.credentialHash,
        n.agentToken,
        n.registeredAt,
        n.lastSeenAt,
        n.scheduling,
        n.cpus ?? null,
        n.memoryMb ?? null,
        JSON.stringify(n.labels),
        JSON.stringify(n.runtimes),
      );
      if (!known) this.event('node.registered', undefined, n.registeredAt, { node: n.name, address: n.address });
    });
    const old = this.nodes?.byId.get(n.id);
    this.cacheNode(old === undefined ? n : { ...n, name: old.name, registeredAt: old.registeredAt, scheduling: old.scheduling });
  }
  async setNodeScheduling(id: string, scheduling: NodeRecord['scheduling']): Promise<void> {
    const before = this.nodeCache().byId.get(id);
    this.write(() => {
      this.stmt('UPDATE nodes SET scheduling = ? WHERE id = ?').run(scheduling, id);
      if (before && before.scheduling !== scheduling)
        this.event('node.scheduling', undefined, Date.now(), { node: before.name, scheduling, from: before.scheduling });
    });
    const n = this.nodes?.byId.get(id);
    if (n) this.cacheNode({ ...n, scheduling });
  }
  async createJoinToken(id: string, hash: string, now: number): Promise<void> {
    this.stmt('INSERT INTO join_tokens (id, hash, created_at) VALUES (?, ?, ?)').run(id, hash, now);
  }
  async findJoinToken(hash: string): Promise<JoinTokenRecord | undefined> {
    const r = this.stmt('SELECT * FROM join_tokens WHERE hash = ? AND revoked_at IS NULL').get(hash) as Row | undefined;
    return r && { id: r.id as string, createdAt: r.created_at as number, revokedAt: undefined };
  }
  async revokeJoinToken(id: string, now: number): Promise<boolean> {
    return this.stmt('UPDATE join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes > 0;
  }
  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return (this.stmt('SELECT * FROM join_tokens ORDER BY created_at').all() as Row[]).map((r) => ({
      id: r.id as string,
      createdAt: r.created_at as number,
      revokedAt: opt<number>(r.revoked_at),
    }));
  }
  async getNodeByName(name: string): Promise<NodeRecord | undefined> {
    return this.nodeCache().byName.get(name);
  }
  async getNodeByCredentialHash(hash: string): Promise<NodeRecord | undefined> {
    return this.nodeCache().byHash.get(hash);
  }
  async listNodes(): Promise<NodeRecord[]> {
    const c = this.nodeCache();
    return c.order.map((id) => c.byId.get(id)!);
  }
  async touchNode(id: string, now: number): Promise<void> {
    this.stmt('UPDATE nodes SET last_seen_at = ? WHERE id = ?').run(now, id);
    const n = this.nodes?.byId.get(id);
    if (n) this.cacheNode({ ...n, lastSeenAt: now });
  }

  async createRun(r: {
    app: string;
    trigger: RunRecord['trigger'];
    commit: string | undefined;
    dirty: boolean;
    steps: readonly StepRecord[];
    now: number;
  }): Promise<RunRecord> {
    const id = this.write(() => {
      const info = this.stmt(
        `INSERT INTO runs (app, trigger, commit_sha, dirty, status, steps, created_at, started_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)`,
      ).run(r.app, r.trigger, r.commit ?? null, r.dirty ? 1 : 0, JSON.stringify(r.steps), r.now, r.now);
      const id = Number(info.lastInsertRowid);
      this.event('run.created', r.app, r.now, { run: id, trigger: r.trigger, commit: r.commit ?? null, status: 'running' });
      return id;
    });
    return (await this.getRun(id))!;
  }
  async updateRun(id: number, p: RunPatch): Promise<RunRecord> {
    const sets: string[] = [];
    const args: unknown[] = [];
    const set = (col: string, v: unknown): void => {
      sets.push(`${col} = ?`);
      args.push(v);
    };
    if (p.status !== undefined) set('status', p.status);
    if (p.steps !== undefined) set('steps', JSON.stringify(p.steps));
    if (p.artifact !== undefined) set('artifact', p.artifact);
    if (p.revision !== undefined) set('revision', p.revision);
    if (p.error !== undefined) set('error', p.error);
    if (p.finishedAt !== undefined) set('finished_at', p.finishedAt);
    if (p.commit !== undefined) set('commit_sha', p.commit);
    if (p.dirty !== undefined) set('dirty', p.dirty ? 1 : 0);
    if (p.startedAt !== undefined) set('started_at', p.startedAt);
    if (p.rolloutId !== undefined) set('rollout_id', p.rolloutId);
    if (p.supersededBy !== undefined) set('superseded_by', p.supersededBy);
    if (sets.length > 0) {
      this.write(() => {
        const b = this.stmt('SELECT app, status, steps FROM runs WHERE id = ?').get(id) as Row | undefined;
        if (b && p.ifStatus !== undefined && b.status !== p.ifStatus) throw runChanged(id, p.ifStatus, b.status as string);
        this.stmt(`UPDATE runs SET ${sets.join(', ')} WHERE id = ?`).run(...args, id);
        if (!b) return;
        const now = p.finishedAt ?? Date.now();
        if (p.steps !== undefined && JSON.stringify(p.steps) !== b.steps) {
          this.event('run.steps', b.app as string, now, { run: id, steps: p.steps.map((st) => ({ name: st.name, status: st.status })) });
        }
        if (p.status !== undefined && p.status !== b.status) {
          this.event('run.status', b.app as string, now, {
            run: id,
            status: p.status,
            from: b.status,
            error: typeof p.error === 'string' ? p.error.split('\n')[0] : null,
            revision: p.revision ?? null,
            rollout: p.rolloutId ?? null,
          });
        }
      });
    }
    const run = await this.getRun(id);
    if (!run) throw fail.runNotFound({ id });
    return run;
  }
  async getRun(id: number): Promise<RunRecord | undefined> {
    const r = this.stmt('SELECT * FROM runs WHERE id = ?').get(id) as Row | undefined;
    return r && runFrom(r);
  }
  async listRuns(filter: { app?: string; limit: number }): Promise<RunRecord[]> {
    const rows = this.stmt('SELECT * FROM runs WHERE (@app IS NULL OR app = @app) ORDER BY id DESC LIMIT @limit').all({
      app: filter.app ?? null,
      limit: filter.limit,
    }) as Row[];
    return rows.map(runFrom);
  }

  /**
   * Group commit: every push that arrives in one event-loop turn is written in one transaction with
   * synchronous=FULL, so N concurrent deliveries cost one fsync, and each caller is answered only
   * after that commit.
   */
  enqueueWebhookRun(p: WebhookPush): Promise<EnqueueResult> {
    return new Promise((resolve, reject) => {
      this.pendingPushes.push({ p, resolve, reject });
      if (this.pendingPushes.length === 1) setImmediate(() => this.flushPushes());
    });
  }

  private flushPushes(): void {
    const batch = this.pendingPushes;
    this.pendingPushes = [];
    let results: EnqueueResult[];
    this.db.pragma('synchronous = FULL');
    try {
      results = this.write(() => batch.map((b) => this.enqueueOne(b.p)));
    } catch (err) {
      for (const b of batch) b.reject(err);
      return;
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
    batch.forEach((b, i) => b.resolve(results[i]!));
  }

  private enqueueOne(p: WebhookPush): EnqueueResult {
    const byDelivery = this.stmt('SELECT * FROM runs WHERE delivery_id = ?').get(p.deliveryId) as Row | undefined;
    if (byDelivery) return { outcome: 'duplicate-delivery', run: runFrom(byDelivery) };
    const same = this.stmt(
      `SELECT * FROM runs WHERE app = ? AND commit_sha = ? AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1`,
    ).get(p.app, p.commit) as Row | undefined;
    if (same) return { outcome: 'duplicate-commit', run: runFrom(same) };
    const max = this.stmt('SELECT MAX(fence) AS f FROM runs WHERE app = ?').get(p.app) as { f: number | null };
    const info = this.stmt(
      `INSERT INTO runs (app, trigger, commit_sha, dirty, status, steps, created_at, delivery_id, branch, message, author, fence, attempt, repo_full_name)
         VALUES (?, 'webhook', ?, 0, 'queued', ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
    ).run(p.app, p.commit, PIPELINE_STEPS, p.now, p.deliveryId, p.branch, p.message, p.author, (max.f ?? 0) + 1, p.repoFullName ?? null);
    const id = Number(info.lastInsertRowid);
    this.event('run.created', p.app, p.now, { run: id, trigger: 'webhook', commit: p.commit, status: 'queued', branch: p.branch });
    const older = this.stmt(`SELECT id FROM runs WHERE app = ? AND branch = ? AND status = 'queued' AND id <> ?`).all(
      p.app,
      p.branch,
      id,
    ) as { id: number }[];
    for (const o of older) {
      this.event('run.status', p.app, p.now, { run: o.id, status: 'superseded', from: 'queued', supersededBy: id });
      this.stmt(`UPDATE runs SET status = 'superseded', superseded_by = ?, finished_at = ?, error = ? WHERE id = ?`).run(
        id,
        p.now,
        `superseded by run #${id} (a newer push to ${p.branch})`,
        o.id,
      );
    }
    return {
      outcome: 'queued',
      run: runFrom(this.stmt('SELECT * FROM runs WHERE id = ?').get(id) as Row),
      superseded: older.map((o) => o.id),
    };
  }

  async claimNextRun(excludeApps: ReadonlySet<string>, now: number, queuedBefore = now): Promise<RunRecord | undefined> {
    return this.write((): RunRecord | undefined => {
      const busy = new Set(
        (
          this.stmt(`SELECT DISTINCT app FROM runs WHERE status = 'running' AND trigger = 'webhook' AND rollout_id IS NULL`).all() as {
            app: string;
          }[]
        ).map((r) => r.app),
      );
      const queued = this.stmt(`SELECT * FROM runs WHERE status = 'queued' AND created_at <= ? ORDER BY id`).all(queuedBefore) as Row[];
      const next = queued.find((r) => !busy.has(r.app as string) && !excludeApps.has(r.app as string));
      if (!next) return undefined;
      this.stmt(
        `UPDATE runs SET status = 'running', started_at = ?, attempt = attempt + (CASE WHEN attempt = 0 THEN 1 ELSE 0 END) WHERE id = ?`,
      ).run(now, next.id);
      this.event('run.status', next.app as string, now, { run: next.id, status: 'running', from: 'queued' });
      return runFrom(this.stmt('SELECT * FROM runs WHERE id = ?').get(next.id) as Row);
    });
  }

  async recoverInterruptedRuns(now: number): Promise<RunRecord[]> {
    this.db.pragma('synchronous = FULL');
    try {
      return this.write((): RunRecord[] => {
        const rows = this.stmt(`SELECT * FROM runs WHERE status = 'running' AND trigger = 'webhook'`).all() as Row[];
        for (const r of rows) {
          const attempt = (r.attempt as number) || 1;
          let retryNote = 'not retried: it was already a retry';
          if (attempt < 2) {
            const info = this.db
              .prepare(
                `INSERT INTO runs (app, trigger, commit_sha, dirty, status, steps, created_at, branch, message, author, fence, attempt, retry_of, repo_full_name)
                 VALUES (?, 'webhook', ?, 0, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
              )
              .run(r.app, r.commit_sha, PIPELINE_STEPS, now, r.branch, r.message, r.author, r.fence, attempt + 1, r.id, r.repo_full_name);
            retryNote = `retried as run #${Number(info.lastInsertRowid)}`;
            this.event('run.created', r.app as string, now, {
              run: Number(info.lastInsertRowid),
              trigger: 'webhook',
              commit: r.commit_sha,
              status: 'queued',
              retryOf: r.id,
            });
          }
          this.stmt(`UPDATE runs SET status = 'interrupted', finished_at = ?, error = ? WHERE id = ?`).run(
            now,
            `interrupted: the server stopped while it ran; ${retryNote}`,
            r.id,
          );
          this.event('run.status', r.app as string, now, {
            run: r.id,
            status: 'interrupted',
            from: 'running',
            error: `interrupted: the server stopped while it ran; ${retryNote}`,
          });
        }
        // A `pilot run` from a terminal reports through this server: when the server died, the CLI's
        // next report failed and it gave up, so its run would say "running" forever. Not retried:
        // the user re-runs it (a CLI somehow still going has its later reports refused by the run ledger).
        const cli = this.stmt(`SELECT * FROM runs WHERE status = 'running' AND trigger = 'cli'`).all() as Row[];
        for (const r of cli) {
          this.stmt(`UPDATE runs SET status = 'interrupted', finished_at = ?, error = ? WHERE id = ?`).run(
            now,
            'interrupted: the server stopped while it ran; run `pilot run` again',
            r.id,
          );
          this.event('run.status', r.app as string, now, {
            run: r.id,
            status: 'interrupted',
            from: 'running',
            error: 'interrupted: the server stopped while it ran',
          });
        }
        return [...rows, ...cli].map((r) => runFrom(this.stmt('SELECT * FROM runs WHERE id = ?').get(r.id) as Row));
      });
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  async finishRolloutRuns(rolloutId: number, status: 'succeeded' | 'failed', error: string | undefined, now: number): Promise<void> {
    this.write(() => {
      const rows = this.stmt(`SELECT id, app FROM runs WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`).all(
        rolloutId,
      ) as Row[];
      this.stmt(
        `UPDATE runs SET status = ?, error = ?, finished_at = ?, steps = json_array(json_object('name', 'deploy', 'status', ?, 'finishedAt', ?))
                  WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`,
      ).run(status, error ?? null, now, status, now, rolloutId);
      for (const r of rows)
        this.event('run.status', r.app as string, now, {
          run: r.id,
          status,
          from: 'running',
          error: error?.split('\n')[0] ?? null,
          rollout: rolloutId,
        });
    });
  }

  async revisionOfFence(app: string, fence: number, commit: string): Promise<RevisionRecord | undefined> {
    const r = this.stmt(
      `SELECT revisions.* FROM revisions JOIN runs ON runs.id = revisions.run_id
                         WHERE revisions.app = ? AND runs.app = ? AND runs.fence = ? AND revisions.commit_sha = ? ORDER BY revisions.number DESC LIMIT 1`,
    ).get(app, app, fence, commit) as Row | undefined;
    return r && revisionFrom(r);
  }
  async interruptForegroundRuns(now: number): Promise<number> {
    return this.write(() => {
      const rows = this.stmt(`SELECT id, app FROM runs WHERE status = 'running' AND trigger NOT IN ('webhook', 'rollback')`).all() as Row[];
      for (const r of rows)
        this.event('run.status', r.app as string, now, {
          run: r.id,
          status: 'interrupted',
          from: 'running',
          error: 'interrupted: the server restarted while it ran',
        });
      return this.stmt(
        `UPDATE runs SET status = 'interrupted', finished_at = ?, error = 'interrupted: the server restarted while it ran (its rollout goes on and ends by itself)'
                        WHERE status = 'running' AND trigger NOT IN ('webhook', 'rollback')`,
      ).run(now).changes;
    });
  }
  async latestDeployedFence(app: string): Promise<number | undefined> {
    const r = this.stmt('SELECT MAX(runs.fence) AS f FROM revisions JOIN runs ON runs.id = revisions.run_id WHERE revisions.app = ?').get(
      app,
    ) as { f: number | null };
    return r.f ?? undefined;
  }

  async setSecret(app: string, name: string, sealed: string, now: number, scope: SecretScope = 'run'): Promise<void> {
    this.stmt(
      'INSERT INTO secrets (app, name, value, updated_at, scope) VALUES (?, ?, ?, ?, ?) ON CONFLICT(app, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, scope = excluded.scope',
    ).run(app, name, sealed, now, scope);
  }
  async deleteSecret(app: string, name: string): Promise<boolean> {
    return this.stmt('DELETE FROM secrets WHERE app = ? AND name = ?').run(app, name).changes > 0;
  }
  async listSecrets(app: string): Promise<SecretRecord[]> {
    return (this.stmt('SELECT name, value, updated_at, scope FROM secrets WHERE app = ? ORDER BY name').all(app) as Row[]).map((r) => ({
      name: r.name as string,
      value: r.value as string,
      updatedAt: r.updated_at as number,
      scope: r.scope === 'build' ? 'build' : 'run',
    }));
  }

  async putCertificate(c: CertificateRecord): Promise<void> {
    this.stmt(
      `INSERT INTO certificates (host, source, cert_sealed, key_sealed, issuer, not_after, state, last_error, attempts, next_attempt_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(host) DO UPDATE SET source = excluded.source, cert_sealed = excluded.cert_sealed, key_sealed = excluded.key_sealed,
         issuer = excluded.issuer, not_after = excluded.not_after, state = excluded.state, last_error = excluded.last_error,
         attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at`,
    ).run(
      c.host,
      c.source,
      c.certSealed ?? null,
      c.keySealed ?? null,
      c.issuer ?? null,
      c.notAfter ?? null,
      c.state,
      c.lastError ?? null,
      c.attempts,
      c.nextAttemptAt ?? null,
      c.updatedAt,
    );
  }
  async getCertificate(host: string): Promise<CertificateRecord | undefined> {
    const r = this.stmt('SELECT * FROM certificates WHERE host = ?').get(host) as Row | undefined;
    return r ? certificateFrom(r) : undefined;
  }
  async listCertificates(): Promise<CertificateRecord[]> {
    return (this.stmt('SELECT * FROM certificates ORDER BY host').all() as Row[]).map(certificateFrom);
  }
  async deleteCertificate(host: string): Promise<boolean> {
    return this.stmt('DELETE FROM certificates WHERE host = ?').run(host).changes > 0;
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
    const r = this.stmt('SELECT key_sealed FROM acme_accounts WHERE directory = ?').get(directoryUrl) as Row | undefined;
    return r ? (r.key_sealed as string) : undefined;
  }
  async putAcmeAccountKey(directoryUrl: string, sealedKey: string, now: number): Promise<void> {
    this.stmt(
      'INSERT INTO acme_accounts (directory, key_sealed, created_at) VALUES (?, ?, ?) ON CONFLICT(directory) DO UPDATE SET key_sealed = excluded.key_sealed',
    ).run(directoryUrl, sealedKey, now);
  }

  async putNodeRuntime(r: NodeRuntimeRecord): Promise<NodeRuntimeRecord> {
    this.stmt(
      'INSERT OR IGNORE INTO node_runtimes (version, platform, digest, integrity, size, origin, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(r.version, r.platform, r.digest, r.integrity ?? null, r.size, r.origin, r.createdAt);
    return (await this.getNodeRuntime(r.version, r.platform))!;
  }
  async getNodeRuntime(version: string, platform: string): Promise<NodeRuntimeRecord | undefined> {
    const r = this.stmt('SELECT * FROM node_runtimes WHERE version = ? AND platform = ?').get(version, platform) as Row | undefined;
    return r && nodeRuntimeFrom(r);
  }
  async listNodeRuntimes(): Promise<NodeRuntimeRecord[]> {
    return (this.stmt('SELECT * FROM node_runtimes ORDER BY created_at').all() as Row[]).map(nodeRuntimeFrom);
  }
  async putRegistry(r: RegistryRecord): Promise<void> {
    this.stmt(
      'INSERT INTO registries (url, username, password, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET username = excluded.username, password = excluded.password, updated_at = excluded.updated_at',
    ).run(r.url, r.username ?? null, r.password ?? null, r.updatedAt);
  }
  async deleteRegistry(url: string): Promise<boolean> {
    return this.stmt('DELETE FROM registries WHERE url = ?').run(url).changes > 0;
  }
  async addTarget(t: TargetRecord): Promise<boolean> {
    return (
      this.stmt(
        'INSERT INTO targets (name, kind, docker, ports_from, ports_to, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING',
      ).run(t.name, t.kind, t.docker, t.ports.from, t.ports.to, t.createdAt).changes > 0
    );
  }
  async deleteTarget(name: string): Promise<boolean> {
    return this.stmt('DELETE FROM targets WHERE name = ?').run(name).changes > 0;
  }
  async listTargets(): Promise<TargetRecord[]> {
    return (this.stmt('SELECT * FROM targets ORDER BY name').all() as Row[]).map(targetFrom);
  }
  async listRegistries(): Promise<RegistryRecord[]> {
    return (
      this.stmt('SELECT url, username, password, updated_at FROM registries ORDER BY updated_at DESC, rowid DESC').all() as Row[]
    ).map((r) => ({
      url: r.url as string,
      username: opt<string>(r.username),
      password: opt<string>(r.password),
      updatedAt: r.updated_at as number,
    }));
  }

  async listVolumePlacements(app?: string): Promise<VolumePlacement[]> {
    return (
      this.stmt('SELECT * FROM volume_placements WHERE (@app IS NULL OR app = @app) ORDER BY app, name').all({ app: app ?? null }) as Row[]
    ).map((r) => ({ app: r.app as string, name: r.name as string, nodeId: r.node_id as string, createdAt: r.created_at as number }));
  }
  async placeVolumes(app: string, names: readonly string[], nodeId: string, now: number): Promise<void> {
    this.db.transaction(() => {
      for (const name of names)
        this.stmt('INSERT OR IGNORE INTO volume_placements (app, name, node_id, created_at) VALUES (?, ?, ?, ?)').run(
          app,
          name,
          nodeId,
          now,
        );
    })();
  }
  async forgetVolumes(app: string, name?: string): Promise<number> {
    return this.stmt('DELETE FROM volume_placements WHERE app = @app AND (@name IS NULL OR name = @name)').run({ app, name: name ?? null })
      .changes;
  }

  async commitPlan(c: PlanCommit): Promise<PlanVerdict> {
    const { plan, now } = c;
    if (c.instanceIds.length !== plan.placements.length) throw new Error('commitPlan: one instance id per placement');
    // One transaction, and the same events as the single writes it stands for (instance placed and
    // desired, revision activated, rollout finished, a rollback's run ended).
    return this.write((): PlanVerdict => {
      const app = this.stmt('SELECT * FROM apps WHERE name = ? AND removed_at IS NULL').get(plan.app) as Row | undefined;
      const rollout = this.stmt(`SELECT id, to_revision FROM rollouts WHERE app = ? AND status = 'running' ORDER BY id DESC LIMIT 1`).get(
        plan.app,
      ) as { id: number; to_revision: number } | undefined;
      const instances = (this.stmt('SELECT * FROM instances WHERE app = ? ORDER BY created_at, id').all(plan.app) as Row[]).map(
        instanceFrom,
      );
      const a = app && appFrom(app);
      const basis = basisOf({ app: a && { activeRevision: a.activeRevision, replicas: a.replicas }, rolloutId: rollout?.id, instances });
      if (basis !== plan.basis) return { committed: false, reason: `the state of app "${plan.app}" changed since the plan was made` };
      for (const nodeId of new Set(plan.placements.map((p) => p.nodeId))) {
        const n = this.stmt('SELECT scheduling FROM nodes WHERE id = ?').get(nodeId) as { scheduling: string } | undefined;
        if (!n) return { committed: false, reason: `node ${nodeId} is no longer registered` };
        if (n.scheduling !== 'eligible') return { committed: false, reason: `node ${nodeId} is no longer eligible (${n.scheduling})` };
      }
      // The plan itself first, then the events of each change it makes.
      this.event(
        'deploy.plan',
        plan.app,
        now,
        planEventPayload(c, (id) => this.nodeName(id)),
      );
      if (plan.volumes) {
        for (const name of plan.volumes.names)
          this.stmt('INSERT OR IGNORE INTO volume_placements (app, name, node_id, created_at) VALUES (?, ?, ?, ?)').run(
            plan.app,
            name,
            plan.volumes.nodeId,
            now,
          );
      }
      plan.placements.forEach((p, k) => {
        const id = c.instanceIds[k]!;
        this.stmt(
          `INSERT INTO instances (id, app, revision, node_id, desired, state, kind, created_at, updated_at) VALUES (?, ?, ?, ?, 'run', 'pending', ?, ?, ?)`,
        ).run(id, plan.app, p.revision, p.nodeId, p.kind, now, now);
        this.event('instance.placed', plan.app, now, {
          instance: id,
          revision: p.revision,
          node: this.nodeName(p.nodeId),
          kind: p.kind,
          desired: 'run',
        });
      });
      const byId = new Map(instances.map((i) => [i.id, i]));
      for (const d of plan.desired) {
        this.stmt('UPDATE instances SET desired = ?, updated_at = ? WHERE id = ?').run(d.desired, now, d.id);
        const before = byId.get(d.id);
        if (before && before.desired !== d.desired)
          this.event('instance.desired', plan.app, now, { instance: d.id, revision: before.revision, desired: d.desired });
      }
      if (plan.activate !== undefined) {
        this.stmt('UPDATE apps SET active_revision = ?, updated_at = ? WHERE name = ?').run(plan.activate, now, plan.app);
        if ((a?.activeRevision ?? null) !== plan.activate)
          this.event('deploy.activated', plan.app, now, { revision: plan.activate, previous: a?.activeRevision ?? null });
      }
      if (plan.progress && plan.rolloutId !== undefined) {
        const g = plan.progress;
        const before = this.stmt('SELECT step, weight, to_revision FROM rollouts WHERE id = ?').get(plan.rolloutId) as Row | undefined;
        this.stmt(
          `UPDATE rollouts SET step = ?, weight = ?, step_since = CASE WHEN ? THEN ? ELSE step_since END,
                  command = CASE WHEN ? THEN NULL ELSE command END, verdict = COALESCE(?, verdict) WHERE id = ?`,
        ).run(
          g.step,
          g.weight,
          g.restart ? 1 : 0,
          now,
          g.clearCommand ? 1 : 0,
          g.verdict ? JSON.stringify(g.verdict) : null,
          plan.rolloutId,
        );
        if (before && (before.step !== g.step || before.weight !== g.weight))
          this.event('rollout.step', plan.app, now, {
            rollout: plan.rolloutId,
            toRevision: before.to_revision,
            step: g.step,
            weight: g.weight,
            previousWeight: before.weight,
          });
        if (g.verdict)
          this.event('rollout.analysis', plan.app, now, {
            rollout: plan.rolloutId,
            toRevision: before?.to_revision ?? null,
            verdict: g.verdict.verdict,
            reason: g.verdict.reason,
          });
      }
      if (plan.finish && plan.rolloutId !== undefined) {
        const f = plan.finish;
        this.stmt('UPDATE rollouts SET status = ?, reason = ?, finished_at = ? WHERE id = ?').run(
          f.status,
          f.reason ?? null,
          now,
          plan.rolloutId,
        );
        this.event('rollout.finished', plan.app, now, {
          rollout: plan.rolloutId,
          toRevision: rollout?.id === plan.rolloutId ? rollout.to_revision : null,
          status: f.status,
          reason: f.reason ?? null,
        });
        const runs = this.stmt(`SELECT id FROM runs WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`).all(
          plan.rolloutId,
        ) as { id: number }[];
        this.stmt(
          `UPDATE runs SET status = ?, error = ?, finished_at = ?, steps = json_array(json_object('name', 'deploy', 'status', ?, 'finishedAt', ?))
                    WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`,
        ).run(f.status, f.reason ?? null, now, f.status, now, plan.rolloutId);
        for (const r of runs)
          this.event('run.status', plan.app, now, {
            run: r.id,
            status: f.status,
            from: 'running',
            error: f.reason?.split('\n')[0] ?? null,
            rollout: plan.rolloutId,
          });
      }
      return { committed: true };
    });
  }

  putArtifactMeta(m: ArtifactMeta): void {
    this.stmt('INSERT OR IGNORE INTO artifacts (digest, size, app, commit_sha, created_at) VALUES (?, ?, ?, ?, ?)').run(
      m.digest,
      m.size,
      m.app ?? null,
      m.commit ?? null,
      m.createdAt,
    );
  }
  getArtifactMeta(digest: string): ArtifactMeta | undefined {
    const r = this.stmt('SELECT * FROM artifacts WHERE digest = ?').get(digest) as Row | undefined;
    return r && artifactFrom(r);
  }
  listArtifactMeta(app?: string): ArtifactMeta[] {
    return (
      this.stmt('SELECT * FROM artifacts WHERE (@app IS NULL OR app = @app) ORDER BY created_at DESC').all({ app: app ?? null }) as Row[]
    ).map(artifactFrom);
  }

  forgetBlob(digest: string): void {
    this.db.transaction(() => {
      this.stmt('DELETE FROM artifacts WHERE digest = ?').run(digest);
      this.stmt('DELETE FROM node_runtimes WHERE digest = ?').run(digest);
    })();
  }

  async appendEvent(e: NewEvent): Promise<PilotEvent> {
    return this.write(() => {
      this.event(e.kind, e.app, e.time, { ...e.payload });
      return this.unpublished[this.unpublished.length - 1]!;
    });
  }
  async readEvents(q: {
    after: number;
    app?: string | undefined;
    limit: number;
    kinds?: readonly EventKind[] | undefined;
  }): Promise<PilotEvent[]> {
    const rows = (
      q.app === undefined
        ? this.stmt('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?').all(q.after, q.limit)
        : this.stmt('SELECT * FROM events WHERE app = ? AND id > ? ORDER BY id LIMIT ?').all(q.app, q.after, q.limit)
    ) as Row[];
    const events = rows.map(eventFrom);
    return q.kinds === undefined ? events : events.filter((e) => q.kinds!.includes(e.kind));
  }
  async latestEvents(q: { app?: string | undefined; limit: number }): Promise<PilotEvent[]> {
    const rows = (
      q.app === undefined
        ? this.stmt('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(q.limit)
        : this.stmt('SELECT * FROM events WHERE app = ? ORDER BY id DESC LIMIT ?').all(q.app, q.limit)
    ) as Row[];
    return rows.map(eventFrom).reverse();
  }
  async eventBounds(): Promise<EventBounds> {
    // sqlite_sequence keeps the highest AUTOINCREMENT id ever given, even once its row is deleted.
    const seq = this.stmt(`SELECT seq FROM sqlite_sequence WHERE name = 'events'`).get() as { seq: number } | undefined;
    const trim = this.stmt('SELECT through FROM event_trim WHERE one = 1').get() as { through: number } | undefined;
    return { lastId: seq?.seq ?? 0, trimmedThrough: trim?.through ?? 0 };
  }
  async trimEvents(p: { keep: number; before: number }): Promise<number> {
    return this.write(() => {
      const last = (this.stmt(`SELECT seq FROM sqlite_sequence WHERE name = 'events'`).get() as { seq: number } | undefined)?.seq ?? 0;
      const byCount = last - p.keep;
      const byTime = (this.stmt('SELECT MAX(id) AS m FROM events WHERE time < ?').get(p.before) as { m: number | null }).m ?? 0;
      const through = Math.max(byCount, byTime);
      if (through <= 0) return 0;
      const gone = this.stmt('DELETE FROM events WHERE id <= ?').run(through).changes;
      this.stmt(
        'INSERT INTO event_trim (one, through) VALUES (1, ?) ON CONFLICT(one) DO UPDATE SET through = MAX(through, excluded.through)',
      ).run(through);
      return gone;
    });
  }
  subscribeEvents(listener: (events: readonly PilotEvent[]) => void): () => void {
    return this.bus.subscribe(listener);
  }

  /** Copy committed WAL pages into the database file, without waiting for anyone. */
  checkpoint(): void {
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }

  /** A consistent copy of the whole database while it is in use (SQLite's online backup API). */
  async backup(file: string): Promise<void> {
    await this.db.backup(file);
  }

  close(): void {
    this.db.close();
  }
}

/** The Store on PostgreSQL (node-postgres): versioned migrations, one writer at a time, events over LISTEN/NOTIFY. */
import type { RolloutCommand } from '../core/rollout-types.js';
import pg from 'pg';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { writeFile, readFile } from 'node:fs/promises';
import type { AppConfig } from '../core/app-config.js';

import { fail, isPilotError } from '../core/errors.js';
import type { ArtifactMeta, InstanceKind, RunRecord, StepRecord } from '../core/types.js';
import { basisOf } from '../core/plan.js';
import type { ReplicasSource } from '../core/replicas.js';
import type { EventKind, NewEvent, PilotEvent } from '../core/events.js';
import { EventBus } from './event-bus.js';
import { PG_MIGRATIONS } from './postgres-migrations.js';
import { PostgresNotify } from './postgres-notify.js';
import { PG_TYPES, pgArgs, toPg } from './postgres-sql.js';
import { LEASE_NAME, fenceContext, type Fence } from './fence.js';
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
import { maskUrl } from './pg-url.js';

const PIPELINE_STEPS = JSON.stringify(['source', 'build', 'package', 'publish', 'deploy'].map((name) => ({ name, status: 'pending' })));

/** Where a URL points, without its password (for errors and logs). */
export { maskUrl };

/** Writes pending on artifact metadata per database URL: a store opened on it waits for them (see putArtifactMeta). */
const pendingArtifactWrites = new Map<string, Promise<unknown>>();

/** Open (creating the schema if needed) and migrate the PostgreSQL database at `url`. */
export async function openPostgresStore(url: string): Promise<PostgresStore> {
  await pendingArtifactWrites.get(url);
  const client = await connect(url);
  try {
    await migratePostgres(client);
  } catch (err) {
    await client.end().catch(() => undefined);
    if (isPilotError(err)) throw err;
    throw fail.postgresUnreachable({ url: maskUrl(url), message: (err as Error).message }, { cause: err });
  }
  const store = new PostgresStore(url, client);
  try {
    await store.start();
  } catch (err) {
    store.close();
    throw err;
  }
  return store;
}

/**
 * Whether a query failed because the connection went (the server stopped, the network broke) rather
 * than for what the statement did: errors without an SQLSTATE, and classes 08 (connection) and 57P
 * (the server shutting down or terminating the session).
 */
function connectionLost(err: unknown): boolean {
  if (isPilotError(err) || !(err instanceof Error)) return false;
  // The server's own errors (DatabaseError) carry a severity and an SQLSTATE; the driver's and the socket's do not.
  if (!('severity' in err)) return true;
  const code = String((err as { code?: unknown }).code ?? '');
  return code.startsWith('08') || code.startsWith('57P');
}

/** A connected client; `postgresUnreachable` (the URL's password masked) when it cannot connect. */
export async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, types: PG_TYPES, connectionTimeoutMillis: 10_000 });
  // A connection lost later (the database restarted, the network went) must not end the process:
  // its owner hears it ('error'/'end') and the call in flight fails with it.
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (err) {
    await c.end().catch(() => undefined);
    throw fail.postgresUnreachable({ url: maskUrl(url), message: (err as Error).message }, { cause: err });
  }
  return c;
}

/** Apply the migrations a database lacks, each in its own transaction; refuse a database from a newer Pilot. */
async function migratePostgres(c: pg.Client): Promise<void> {
  await c.query('BEGIN');
  try {
    // One migrator at a time across processes: replicas started together migrate once.
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATE_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS pilot_schema (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL)');
    await c.query('INSERT INTO pilot_schema (one, version) VALUES (1, 0) ON CONFLICT DO NOTHING');
    const current = Number((await c.query<{ version: number }>('SELECT version FROM pilot_schema')).rows[0]!.version);
    if (current > PG_MIGRATIONS.length) throw fail.postgresTooNew({ current, known: PG_MIGRATIONS.length });
    for (let v = current; v < PG_MIGRATIONS.length; v++) {
      await c.query(PG_MIGRATIONS[v]!);
      await c.query('UPDATE pilot_schema SET version = $1', [v + 1]);
    }
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Advisory lock keys (arbitrary, fixed): the schema migrator, and the one writer at a time. */
const MIGRATE_LOCK = 0x70696c01;
const WRITE_LOCK = 0x70696c02;
/** The channel that carries committed event batches to every store on the database. */
const EVENTS_CHANNEL = 'pilot_events';

/** Every table of the state (not pilot_schema), in an order that satisfies the foreign keys. */
export const PG_TABLES = [
  'apps',
  'revisions',
  'rollouts',
  'nodes',
  'instances',
  'runs',
  'artifacts',
  'secrets',
  'join_tokens',
  'node_runtimes',
  'registries',
  'volume_placements',
  'events',
  'event_trim',
  'experiments',
  'certificates',
  'acme_accounts',
  'notify_endpoints',
  'notify_deliveries',
  'notify_attempts',
  'notify_cursor',
  'targets',
  'pilot_ids',
] as const;

/** Methods that do not take the store's lock: the lock itself, its helpers, the synchronous ones. */
const UNLOCKED = new Set([
  'constructor',
  'start',
  'adopt',
  'db',
  'listen',
  'load',
  'locked',
  'query',
  'enqueueWebhookRun',
  'flushPushes',
  'background',
  'lastEventId',
  'publish',
  'one',
  'many',
  'exec',
  'write',
  'checkFence',
  'event',
  'close',
  'subscribeEvents',
  'putArtifactMeta',
  'getArtifactMeta',
  'listArtifactMeta',
  'forgetBlob',
]);

/**
 * The fence a call carries: the token its caller held when it made the call (what it decided
 * under), not whatever the process holds by the time the queued call runs.
 */
function carried(f: Fence | undefined): Fence | undefined {
  if (!f) return undefined;
  const token = f.token();
  return { token: () => token, refused: (t, c) => f.refused?.(t, c) };
}

export class PostgresStore implements Store {
  private readonly bus = new EventBus();
  /** Events appended by the write in progress: published once its transaction committed, dropped if it rolled back. */
  private unpublished: PilotEvent[] = [];
  private writeDepth = 0;
  private readonly notify: PostgresNotify;
  /** Marks the calls running under this store's lock (a method calling another must not wait for itself). */
  private readonly inLock = new AsyncLocalStorage<{ fence: Fence | undefined }>();
  private queue: Promise<unknown> = Promise.resolve();
  /** This store's id in NOTIFY payloads: it publishes its own batches itself, right after commit. */
  private readonly origin = randomUUID();
  /** Batches heard from other stores are read and published in the order they were notified. */
  private heard: Promise<void> = Promise.resolve();
  /**
   * The highest event id published on this store's bus. Subscribers hear ids in increasing order,
   * each once: a batch heard late (its NOTIFY still on the way when this store committed a later
   * one) has been published already, by the gap fill of that later write, and is skipped.
   */
  private published = 0;
  /**
   * Set from the moment a write sends COMMIT until it has published its events: a batch heard
   * meanwhile may hold later ids and waits, or it would pass this store's own batch by.
   */
  private committing: Promise<void> | undefined;
  /** Artifact metadata, in memory: the Store's artifact methods are synchronous (see putArtifactMeta). */
  private artifacts = new Map<string, ArtifactMeta>();
  private closed = false;

  /** The connection calls run on; undefined once lost (the next call connects again). */
  private conn: pg.Client | undefined;
  /** The connection of the transaction in progress: its statements never move to a new connection. */
  private txConn: pg.Client | undefined;
  /** The LISTEN connection; connected again (with back-off) when lost. */
  private listening: pg.Client | undefined;
  private relisten: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    private readonly url: string,
    client: pg.Client,
  ) {
    this.adopt(client);
    this.notify = new PostgresNotify(
      { one: (s, a) => this.one(s, a), many: (s, a) => this.many(s, a), exec: (s, a) => this.exec(s, a) },
      (fn) => this.write(fn),
    );
    // Every public method runs under the store's lock, one at a time on its one connection: a
    // method's reads and its write see one state, as better-sqlite3's synchronous calls do.
    for (const name of Object.getOwnPropertyNames(PostgresStore.prototype)) {
      if (UNLOCKED.has(name)) continue;
      const self = this as unknown as Record<string, unknown>;
      const fn = self[name];
      if (typeof fn !== 'function') continue;
      // The leader's fence (fence.ts) is read at the call's entry: the queue runs the call later, elsewhere.
      self[name] = (...args: unknown[]) =>
        this.locked(() => (fn as (...a: unknown[]) => Promise<unknown>).apply(this, args), carried(fenceContext.getStore()));
    }
  }

  /** Load what the synchronous methods serve from memory, and listen for other stores' events. */
  async start(): Promise<void> {
    for (const r of await this.many('SELECT * FROM artifacts ORDER BY created_at, digest')) {
      const m = artifactFrom(r);
      this.artifacts.set(m.digest, m);
    }
    this.published = await this.lastEventId();
    await this.listen();
  }

  /** Use `c` for the calls until it is lost. */
  private adopt(c: pg.Client): void {
    this.conn = c;
    const lost = (): void => {
      if (this.conn === c) this.conn = undefined;
      c.end().catch(() => undefined);
    };
    c.on('error', lost);
    c.on('end', lost);
  }

  /** The calls' connection, connected again after a loss (`postgresUnreachable` while the database is away). */
  private async db(): Promise<pg.Client> {
    if (this.txConn) return this.txConn;
    if (this.conn) return this.conn;
    if (this.closed) throw fail.postgresUnreachable({ url: maskUrl(this.url), message: 'the store is closed' });
    const c = await connect(this.url);
    this.adopt(c);
    return c;
  }

  /**
   * LISTEN for other stores' batches on a connection of its own. When it is lost, it connects again
   * (every second until it can); batches committed meanwhile are not replayed (readers re-read the feed).
   */
  private async listen(): Promise<void> {
    const c = await connect(this.url);
    if (this.closed) {
      await c.end().catch(() => undefined);
      return;
    }
    this.listening = c;
    c.on('notification', (n) => {
      if (n.channel !== EVENTS_CHANNEL || n.payload === undefined) return;
      const p = JSON.parse(n.payload) as { origin: string; first: number; last: number };
      if (p.origin === this.origin) return;
      this.heard = this.heard.then(async () => {
        try {
          const rows = await c.query<Row>('SELECT * FROM events WHERE id BETWEEN $1 AND $2 ORDER BY id', [p.first, p.last]);
          while (this.committing) await this.committing;
          this.publish(rows.rows.map(eventFrom));
        } catch {
          // A listener that misses a batch re-reads the feed from the store (control/event-stream.ts does).
        }
      });
    });
    let lost = false;
    const again = (): void => {
      if (lost) return;
      lost = true;
      c.end().catch(() => undefined);
      if (this.listening === c) this.listening = undefined;
      if (this.closed) return;
      const retry = (): void => {
        this.relisten = undefined;
        if (this.closed) return;
        this.listen().catch(() => {
          if (!this.closed) this.relisten = setTimeout(retry, 1000).unref();
        });
      };
      this.relisten = setTimeout(retry, 200).unref();
    };
    c.on('error', again);
    c.on('end', again);
    await c.query(`LISTEN ${EVENTS_CHANNEL}`);
  }

  /** Run `fn` under the store's lock (at once when the caller already holds it). */
  private locked<T>(fn: () => Promise<T>, fence?: Fence): Promise<T> {
    if (this.inLock.getStore()) return fn();
    const run = this.queue.then(() => this.inLock.run({ fence }, fn));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Run one statement on the calls' connection; a lost connection is `postgresUnreachable`, like one that cannot be made. */
  private async query(sql: string, args: readonly unknown[]): Promise<pg.QueryResult<Row>> {
    const c = await this.db();
    try {
      return await c.query<Row>(toPg(sql), pgArgs(args));
    } catch (err) {
      if (connectionLost(err)) throw fail.postgresUnreachable({ url: maskUrl(this.url), message: (err as Error).message }, { cause: err });
      throw err;
    }
  }
  private async one(sql: string, args: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.query(sql, args)).rows[0];
  }
  private async many(sql: string, args: readonly unknown[] = []): Promise<Row[]> {
    return (await this.query(sql, args)).rows;
  }
  /** Run a statement: rows changed, and the id of the row an INSERT made (its RETURNING id). */
  private async exec(sql: string, args: readonly unknown[] = []): Promise<{ changes: number; id: number }> {
    const r = await this.query(sql, args);
    return { changes: r.rowCount ?? 0, id: Number(r.rows[0]?.id ?? 0) };
  }

  /**
   * A write and the events it appends, in one transaction that holds the database's write lock
   * (one writer at a time across every process, as SQLite has); the events are published on this
   * store's bus after the commit and, through NOTIFY (sent at commit, never for a rollback), on
   * every other store's.
   */
  private async write<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writeDepth > 0) return fn();
    this.writeDepth++;
    let out: T;
    let c: pg.Client | undefined;
    let committed = (): void => {};
    try {
      c = await this.db();
      this.txConn = c;
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK]);
      const fence = this.inLock.getStore()?.fence;
      if (fence) await this.checkFence(c, fence);
      out = await fn();
      if (this.unpublished.length > 0) {
        const first = this.unpublished[0]!.id;
        const payload = JSON.stringify({ origin: this.origin, first, last: this.unpublished.at(-1)!.id });
        await c.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, payload]);
        // Other stores' events committed before this write (ids are given under the write lock, so
        // every lower id is committed) that this store has not published yet: published first.
        if (this.published < first - 1) {
          const gap = await c.query<Row>('SELECT * FROM events WHERE id > $1 AND id < $2 ORDER BY id LIMIT 10000', [this.published, first]);
          this.unpublished = [...gap.rows.map(eventFrom), ...this.unpublished];
        }
      }
      this.committing = new Promise((r) => (committed = r));
      await c.query('COMMIT');
    } catch (err) {
      this.unpublished = [];
      // Nothing of it is published: the heard batches waiting on it go on.
      this.committing = undefined;
      committed();
      await c?.query('ROLLBACK').catch(() => undefined);
      if (connectionLost(err)) throw fail.postgresUnreachable({ url: maskUrl(this.url), message: (err as Error).message }, { cause: err });
      throw err;
    } finally {
      this.writeDepth--;
      this.txConn = undefined;
    }
    if (this.unpublished.length > 0) {
      const batch = this.unpublished;
      this.unpublished = [];
      // Outside the lock's context: a listener that calls the store queues like any caller.
      this.inLock.exit(() => this.publish(batch));
    }
    this.committing = undefined;
    committed();
    return out;
  }

  /**
   * A leader's write goes on only while the lease row holds its token. FOR SHARE: a takeover (which
   * updates that row) waits for this transaction, so the write is ordered before it, never after.
   */
  private async checkFence(c: pg.Client, fence: Fence): Promise<void> {
    const token = fence.token();
    const r = await c.query<Row>('SELECT token FROM pilot_leader WHERE name = $1 FOR SHARE', [LEASE_NAME]);
    const current = r.rows[0]?.token as number | undefined;
    if (token !== undefined && current === token) return;
    fence.refused?.(token, current);
    throw fail.leaderFenced({ token: token ?? 0, current });
  }

  /** Publish the events of `batch` this store has not published yet, in id order. */
  private publish(batch: readonly PilotEvent[]): void {
    const fresh = batch.filter((e) => e.id > this.published);
    if (fresh.length === 0) return;
    this.published = fresh.at(-1)!.id;
    this.bus.publish(fresh);
  }

  /** Append an event inside the current write (call only within `write`). */
  private async event(kind: EventKind, app: string | undefined, time: number, payload: Record<string, unknown>): Promise<void> {
    const info = await this.exec('INSERT INTO events (time, app, kind, payload) VALUES (?, ?, ?, ?)', [
      time,
      app ?? null,
      kind,
      JSON.stringify(payload),
    ]);
    this.unpublished.push({ id: info.id, time, app, kind, payload });
  }

  /** Insert a backup's rows into this (empty) database in one transaction (id counters included: `pilot_ids`). */
  async load(tables: Record<string, Row[]>): Promise<void> {
    await this.write(async () => {
      for (const t of PG_TABLES) {
        const some = await this.txConn!.query(`SELECT 1 FROM ${t} LIMIT 1`);
        if (some.rows.length > 0) throw fail.postgresTargetNotEmpty({ url: maskUrl(this.url), table: t });
      }
      for (const t of PG_TABLES) {
        for (const row of tables[t] ?? []) {
          const cols = Object.keys(row);
          await this.txConn!.query(
            `INSERT INTO ${t} (${cols.map((c) => `"${c.replaceAll('"', '""')}"`).join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`,
            pgArgs(cols.map((c) => row[c])),
          );
        }
      }
    });
    for (const r of tables.artifacts ?? []) {
      const m = artifactFrom(r);
      this.artifacts.set(m.digest, m);
    }
  }

  async schemaVersion(): Promise<number> {
    return Number((await this.one('SELECT version FROM pilot_schema'))!.version);
  }

  /** A removed app's row stays until purged: writing to it would hand its leftovers to a new app of that name. */
  private async assertNotRemoving(name: string): Promise<void> {
    if ((await this.one('SELECT 1 FROM apps WHERE name = ? AND removed_at IS NOT NULL', [name])) !== undefined) {
      throw fail.appRemoving({ name });
    }
  }

  async upsertApp(name: string, config: AppConfig, now: number): Promise<AppRecord> {
    await this.assertNotRemoving(name);
    await this.exec(
      `INSERT INTO apps (name, config, replicas, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at`,
      [name, JSON.stringify(config), config.replicas, now, now],
    );
    return (await this.getApp(name))!;
  }
  async getApp(name: string): Promise<AppRecord | undefined> {
    const r = (await this.one('SELECT * FROM apps WHERE name = ? AND removed_at IS NULL', [name])) as Row | undefined;
    return r && appFrom(r);
  }
  async listApps(): Promise<AppRecord[]> {
    return ((await this.many('SELECT * FROM apps WHERE removed_at IS NULL ORDER BY name')) as Row[]).map(appFrom);
  }
  async removingApps(): Promise<string[]> {
    return ((await this.many('SELECT name FROM apps WHERE removed_at IS NOT NULL ORDER BY name')) as { name: string }[]).map((r) => r.name);
  }
  async removeApp(name: string, now: number): Promise<boolean> {
    return this.write(async (): Promise<boolean> => {
      const done =
        (
          await this.exec(
            `UPDATE apps SET removed_at = ?, repo = NULL, branch = NULL, webhook_secret = NULL, github_token = NULL, status_api_url = NULL, updated_at = ?
                               WHERE name = ? AND removed_at IS NULL`,
            [now, now, name],
          )
        ).changes > 0;
      if (!done) return false;
      for (const i of (await this.many(`SELECT id, revision FROM instances WHERE app = ? AND desired <> 'stop'`, [name])) as Row[]) {
        await this.event('instance.desired', name, now, { instance: i.id, revision: i.revision, desired: 'stop', reason: 'app removed' });
      }
      await this.exec(`UPDATE instances SET desired = 'stop', updated_at = ? WHERE app = ?`, [now, name]);
      for (const r of (await this.many(`SELECT id, to_revision FROM rollouts WHERE app = ? AND status = 'running'`, [name])) as Row[]) {
        await this.event('rollout.finished', name, now, {
          rollout: r.id,
          toRevision: r.to_revision,
          status: 'failed',
          reason: 'app removed',
        });
      }
      await this.exec(
        `UPDATE rollouts SET status = 'failed', reason = 'app removed', finished_at = ? WHERE app = ? AND status = 'running'`,
        [now, name],
      );
      await this.endRunningExperiments(name, 'app removed', now);
      for (const r of (await this.many(`SELECT id FROM runs WHERE app = ? AND status = 'queued'`, [name])) as Row[]) {
        await this.event('run.status', name, now, { run: r.id, status: 'cancelled', error: 'the app was removed' });
      }
      await this.exec(
        `UPDATE runs SET status = 'cancelled', error = 'the app was removed', finished_at = ? WHERE app = ? AND status = 'queued'`,
        [now, name],
      );
      await this.exec('DELETE FROM secrets WHERE app = ?', [name]);
      await this.notify.deleteAppEndpoints(name, now);
      return true;
    });
  }
  async purgeRemovedApps(): Promise<string[]> {
    return this.write(async (): Promise<string[]> => {
      const gone = (
        (await this.many(
          `SELECT name FROM apps WHERE removed_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM instances WHERE instances.app = apps.name) ORDER BY name`,
        )) as { name: string }[]
      ).map((r) => r.name);
      for (const name of gone) {
        await this.exec('DELETE FROM rollouts WHERE app = ?', [name]);
        await this.exec('DELETE FROM experiments WHERE app = ?', [name]);
        await this.exec('DELETE FROM revisions WHERE app = ?', [name]);
        await this.exec('DELETE FROM secrets WHERE app = ?', [name]);
        await this.exec('DELETE FROM apps WHERE name = ?', [name]);
      }
      return gone;
    });
  }
  async setActiveRevision(app: string, revision: number | undefined, now: number): Promise<void> {
    await this.write(async () => {
      const before = (await this.one('SELECT active_revision FROM apps WHERE name = ?', [app])) as Row | undefined;
      if (!before) return;
      await this.exec('UPDATE apps SET active_revision = ?, updated_at = ? WHERE name = ?', [revision ?? null, now, app]);
      if ((before.active_revision ?? null) !== (revision ?? null)) {
        await this.event('deploy.activated', app, now, { revision: revision ?? null, previous: before.active_revision ?? null });
      }
    });
  }
  async setReplicas(app: string, replicas: number, now: number, source: ReplicasSource = 'scale'): Promise<void> {
    await this.exec('UPDATE apps SET replicas = ?, replicas_source = ?, updated_at = ? WHERE name = ?', [replicas, source, now, app]);
  }

  async setAutoscaledReplicas(app: string, change: { from: number; to: number; reason: string }, now: number): Promise<boolean> {
    return this.write(async () => {
      const r = await this.exec(
        `UPDATE apps SET replicas = ?, replicas_source = 'autoscaler', updated_at = ? WHERE name = ? AND replicas = ? AND removed_at IS NULL`,
        [change.to, now, app, change.from],
      );
      if (r.changes === 0) return false;
      await this.event('autoscale.changed', app, now, { ...change });
      return true;
    });
  }

  async setAppSource(name: string, defaults: AppConfig, src: AppSource, now: number): Promise<AppRecord> {
    await this.assertNotRemoving(name);
    await this.write(async () => {
      await this.exec('INSERT OR IGNORE INTO apps (name, config, replicas, created_at, updated_at) VALUES (?, ?, ?, ?, ?)', [
        name,
        JSON.stringify(defaults),
        defaults.replicas,
        now,
        now,
      ]);
      await this.exec(
        'UPDATE apps SET repo = ?, branch = ?, webhook_secret = ?, github_token = ?, status_api_url = ?, updated_at = ? WHERE name = ?',
        [src.repo, src.branch, src.webhookSecret, src.githubToken ?? null, src.statusApiUrl ?? null, now, name],
      );
    });
    return (await this.getApp(name))!;
  }

  async createRevision(r: Omit<RevisionRecord, 'number'>): Promise<RevisionRecord> {
    const number = await this.write(async () => {
      const max = (await this.one('SELECT MAX(number) AS n FROM revisions WHERE app = ?', [r.app])) as { n: number | null };
      const n = (max.n ?? 0) + 1;
      await this.exec(
        'INSERT INTO revisions (app, number, artifact, commit_sha, dirty, config, run_id, created_at, image, node_runtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [
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
        ],
      );
      await this.event('deploy.revision', r.app, r.createdAt, {
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
    const r = (await this.one('SELECT * FROM revisions WHERE app = ? AND number = ?', [app, number])) as Row | undefined;
    return r && revisionFrom(r);
  }
  async listRevisions(app: string): Promise<RevisionRecord[]> {
    return ((await this.many('SELECT * FROM revisions WHERE app = ? ORDER BY number DESC', [app])) as Row[]).map(revisionFrom);
  }

  async createRollout(r: Omit<RolloutRecord, 'id' | 'status' | 'reason' | 'finishedAt' | 'progress'>): Promise<RolloutRecord> {
    const id = await this.write(async () => {
      const info = await this.exec(
        `INSERT INTO rollouts (app, from_revision, to_revision, status, started_at, strategy) VALUES (?, ?, ?, 'running', ?, ?)`,
        [r.app, r.fromRevision ?? null, r.toRevision, r.startedAt, r.strategy === undefined ? null : JSON.stringify(r.strategy)],
      );
      const id = Number(info.id);
      await this.endRunningExperiments(
        r.app,
        `a rollout to revision ${r.toRevision} started (a deploy or a rollback ends an experiment)`,
        r.startedAt,
      );
      await this.event('rollout.started', r.app, r.startedAt, {
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
    return this.write(async () => {
      const r = (await this.one(`SELECT app, to_revision FROM rollouts WHERE id = ? AND status = 'running'`, [id])) as Row | undefined;
      if (!r) return false;
      await this.exec('UPDATE rollouts SET command = ? WHERE id = ?', [command, id]);
      await this.event('rollout.command', r.app as string, now, { rollout: id, toRevision: r.to_revision, command });
      return true;
    });
  }

  /** End the app's running experiment, if any, with no variant kept (inside a write). */
  private async endRunningExperiments(app: string, reason: string, now: number): Promise<void> {
    for (const e of (await this.many(`SELECT id FROM experiments WHERE app = ? AND status = 'running'`, [app])) as Row[]) {
      await this.exec(`UPDATE experiments SET status = 'ended', ended_at = ?, reason = ? WHERE id = ?`, [now, reason, e.id]);
      await this.event('experiment.ended', app, now, { experiment: e.id, kept: null, keptRevision: null, reason });
    }
  }

  async startExperiment(e: Omit<ExperimentRecord, 'id' | 'status' | 'endedAt' | 'kept' | 'reason'>): Promise<ExperimentRecord> {
    const id = await this.write(async () => {
      const running = (await this.one(`SELECT id FROM experiments WHERE app = ? AND status = 'running'`, [e.app])) as Row | undefined;
      if (running) throw fail.experimentAlreadyRunningInStore({ app: e.app, id: Number(running.id) });
      const kind = 'cookie' in e.by ? 'cookie' : 'header';
      const name = 'cookie' in e.by ? e.by.cookie : e.by.header;
      const info = await this.exec(
        `INSERT INTO experiments (app, control_revision, variant_revision, split, by_kind, by_name, status, started_at)
           VALUES (?, ?, ?, ?, ?, ?, 'running', ?)`,
        [e.app, e.control, e.variant, e.split, kind, name, e.startedAt],
      );
      const id = Number(info.id);
      await this.event('experiment.started', e.app, e.startedAt, {
        experiment: id,
        control: e.control,
        variant: e.variant,
        split: e.split,
        by: formatStickyBy(e.by),
      });
      return id;
    });
    return experimentFrom((await this.one('SELECT * FROM experiments WHERE id = ?', [id])) as Row);
  }
  async activeExperiment(app: string): Promise<ExperimentRecord | undefined> {
    const r = (await this.one(`SELECT * FROM experiments WHERE app = ? AND status = 'running' ORDER BY id DESC LIMIT 1`, [app])) as
      Row | undefined;
    return r && experimentFrom(r);
  }
  async listExperiments(app: string, limit: number): Promise<ExperimentRecord[]> {
    return ((await this.many('SELECT * FROM experiments WHERE app = ? ORDER BY id DESC LIMIT ?', [app, limit])) as Row[]).map(
      experimentFrom,
    );
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
    const rolloutId = await this.write(async (): Promise<number | undefined> => {
      const before = (await this.one('SELECT * FROM experiments WHERE id = ?', [id])) as Row | undefined;
      if (!before || before.status !== 'running') throw fail.experimentNotRunning({ id });
      await this.exec(`UPDATE experiments SET status = 'ended', ended_at = ?, kept = ?, reason = ? WHERE id = ?`, [
        e.now,
        e.kept ?? null,
        e.reason ?? null,
        id,
      ]);
      const keptRevision = e.kept === 'a' ? before.control_revision : e.kept === 'b' ? before.variant_revision : null;
      await this.event('experiment.ended', before.app as string, e.now, {
        experiment: id,
        kept: e.kept ?? null,
        keptRevision,
        reason: e.reason ?? null,
      });
      if (!e.rollout) return undefined;
      const info = await this.exec(
        `INSERT INTO rollouts (app, from_revision, to_revision, status, started_at) VALUES (?, ?, ?, 'running', ?)`,
        [before.app, e.rollout.fromRevision ?? null, e.rollout.toRevision, e.now],
      );
      const rid = Number(info.id);
      await this.event('rollout.started', before.app as string, e.now, {
        rollout: rid,
        fromRevision: e.rollout.fromRevision ?? null,
        toRevision: e.rollout.toRevision,
        strategy: 'blue-green',
      });
      return rid;
    });
    const experiment = experimentFrom((await this.one('SELECT * FROM experiments WHERE id = ?', [id])) as Row);
    return { experiment, rollout: rolloutId === undefined ? undefined : await this.getRollout(rolloutId) };
  }
  async finishRollout(id: number, status: 'succeeded' | 'failed', reason: string | undefined, now: number): Promise<void> {
    await this.write(async () => {
      const before = (await this.one('SELECT app, to_revision, status FROM rollouts WHERE id = ?', [id])) as Row | undefined;
      await this.exec('UPDATE rollouts SET status = ?, reason = ?, finished_at = ? WHERE id = ?', [status, reason ?? null, now, id]);
      if (before && before.status !== status) {
        await this.event('rollout.finished', before.app as string, now, {
          rollout: id,
          toRevision: before.to_revision,
          status,
          reason: reason ?? null,
        });
      }
    });
  }
  async getRollout(id: number): Promise<RolloutRecord | undefined> {
    const r = (await this.one('SELECT * FROM rollouts WHERE id = ?', [id])) as Row | undefined;
    return r && rolloutFrom(r);
  }
  async activeRollout(app: string): Promise<RolloutRecord | undefined> {
    const r = (await this.one(`SELECT * FROM rollouts WHERE app = ? AND status = 'running' ORDER BY id DESC LIMIT 1`, [app])) as
      Row | undefined;
    return r && rolloutFrom(r);
  }
  async listRollouts(app: string, limit: number): Promise<RolloutRecord[]> {
    return ((await this.many('SELECT * FROM rollouts WHERE app = ? ORDER BY id DESC LIMIT ?', [app, limit])) as Row[]).map(rolloutFrom);
  }

  async createInstance(
    i: Omit<
      InstanceRecord,
      'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt' | 'containerId' | 'updatedAt' | 'logTail' | 'address' | 'kind'
    > & { readonly kind?: InstanceKind },
  ): Promise<void> {
    await this.write(async () => {
      await this.exec(
        `INSERT INTO instances (id, app, revision, node_id, desired, state, kind, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)`,
        [i.id, i.app, i.revision, i.nodeId, i.desired, i.kind ?? 'web', i.createdAt, i.createdAt],
      );
      await this.event('instance.placed', i.app, i.createdAt, {
        instance: i.id,
        revision: i.revision,
        node: await this.nodeName(i.nodeId),
        kind: i.kind ?? 'web',
        desired: i.desired,
      });
    });
  }
  async setInstanceDesired(id: string, desired: InstanceDesired, now: number): Promise<void> {
    await this.write(async () => {
      const before = (await this.one('SELECT app, revision, desired FROM instances WHERE id = ?', [id])) as Row | undefined;
      await this.exec('UPDATE instances SET desired = ?, updated_at = ? WHERE id = ?', [desired, now, id]);
      if (before && before.desired !== desired)
        await this.event('instance.desired', before.app as string, now, { instance: id, revision: before.revision, desired });
    });
  }
  async updateInstanceStatus(id: string, s: InstanceStatusUpdate, now: number): Promise<void> {
    await this.write(async () => {
      const b = (await this.one(
        'SELECT app, revision, node_id, state, port, restarts, last_error, address, log_tail FROM instances WHERE id = ?',
        [id],
      )) as Row | undefined;
      await this.exec(
        'UPDATE instances SET state = ?, port = ?, pid = ?, restarts = ?, last_error = ?, started_at = ?, container_id = ?, log_tail = ?, address = ?, updated_at = ? WHERE id = ?',
        [
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
        ],
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
        await this.event('instance.state', b.app as string, now, {
          instance: id,
          revision: b.revision,
          node: await this.nodeName(b.node_id as string),
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
    await this.write(async () => {
      const b = (await this.one('SELECT app, revision FROM instances WHERE id = ?', [id])) as Row | undefined;
      if ((await this.exec('DELETE FROM instances WHERE id = ?', [id])).changes > 0 && b)
        await this.event('instance.removed', b.app as string, Date.now(), { instance: id, revision: b.revision });
    });
  }

  /** A node's name for an event (its id when unknown). */
  private async nodeName(id: string): Promise<string> {
    const r = await this.one('SELECT name FROM nodes WHERE id = ?', [id]);
    return (r?.name as string | undefined) ?? id;
  }
  async listInstances(filter: { app?: string; nodeId?: string } = {}): Promise<InstanceRecord[]> {
    const rows = (await this.many(
      'SELECT * FROM instances WHERE ($1::text IS NULL OR app = $1) AND ($2::text IS NULL OR node_id = $2) ORDER BY created_at, id',
      [filter.app ?? null, filter.nodeId ?? null],
    )) as Row[];
    return rows.map(instanceFrom);
  }

  async upsertNode(n: NodeRecord): Promise<void> {
    // On conflict the row keeps its name, registration time and scheduling state.
    await this.write(async () => {
      const known = (await this.one('SELECT 1 AS k FROM nodes WHERE id = ?', [n.id])) !== undefined;
      await this.exec(
        `INSERT INTO nodes (id, name, address, api_url, credential_hash, agent_token, registered_at, last_seen_at, scheduling, cpus, memory_mb, labels, runtimes)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET address = excluded.address, api_url = excluded.api_url, credential_hash = excluded.credential_hash,
         agent_token = excluded.agent_token, last_seen_at = excluded.last_seen_at, cpus = excluded.cpus, memory_mb = excluded.memory_mb, labels = excluded.labels, runtimes = excluded.runtimes`,
        [
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
        ],
      );
      if (!known) await this.event('node.registered', undefined, n.registeredAt, { node: n.name, address: n.address });
    });
  }
  async setNodeScheduling(id: string, scheduling: NodeRecord['scheduling']): Promise<void> {
    await this.write(async () => {
      const b = await this.one('SELECT name, scheduling FROM nodes WHERE id = ?', [id]);
      const before = b && { name: b.name as string, scheduling: b.scheduling as string };
      await this.exec('UPDATE nodes SET scheduling = ? WHERE id = ?', [scheduling, id]);
      if (before && before.scheduling !== scheduling)
        await this.event('node.scheduling', undefined, Date.now(), { node: before.name, scheduling, from: before.scheduling });
    });
  }
  async createJoinToken(id: string, hash: string, now: number): Promise<void> {
    await this.exec('INSERT INTO join_tokens (id, hash, created_at) VALUES (?, ?, ?)', [id, hash, now]);
  }
  async findJoinToken(hash: string): Promise<JoinTokenRecord | undefined> {
    const r = (await this.one('SELECT * FROM join_tokens WHERE hash = ? AND revoked_at IS NULL', [hash])) as Row | undefined;
    return r && { id: r.id as string, createdAt: r.created_at as number, revokedAt: undefined };
  }
  async revokeJoinToken(id: string, now: number): Promise<boolean> {
    return (await this.exec('UPDATE join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id])).changes > 0;
  }
  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return ((await this.many('SELECT * FROM join_tokens ORDER BY created_at')) as Row[]).map((r) => ({
      id: r.id as string,
      createdAt: r.created_at as number,
      revokedAt: opt<number>(r.revoked_at),
    }));
  }
  async getNodeByName(name: string): Promise<NodeRecord | undefined> {
    const r = await this.one('SELECT * FROM nodes WHERE name = ?', [name]);
    return r && nodeFrom(r);
  }
  async getNodeByCredentialHash(hash: string): Promise<NodeRecord | undefined> {
    const r = await this.one('SELECT * FROM nodes WHERE credential_hash = ? ORDER BY id LIMIT 1', [hash]);
    return r && nodeFrom(r);
  }
  async listNodes(): Promise<NodeRecord[]> {
    return (await this.many('SELECT * FROM nodes ORDER BY name')).map(nodeFrom);
  }
  async touchNode(id: string, now: number): Promise<void> {
    await this.exec('UPDATE nodes SET last_seen_at = ? WHERE id = ?', [now, id]);
  }

  async createRun(r: {
    app: string;
    trigger: RunRecord['trigger'];
    commit: string | undefined;
    dirty: boolean;
    steps: readonly StepRecord[];
    now: number;
  }): Promise<RunRecord> {
    const id = await this.write(async () => {
      const info = await this.exec(
        `INSERT INTO runs (app, trigger, commit_sha, dirty, status, steps, created_at, started_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)`,
        [r.app, r.trigger, r.commit ?? null, r.dirty ? 1 : 0, JSON.stringify(r.steps), r.now, r.now],
      );
      const id = Number(info.id);
      await this.event('run.created', r.app, r.now, { run: id, trigger: r.trigger, commit: r.commit ?? null, status: 'running' });
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
      await this.write(async () => {
        const b = (await this.one('SELECT app, status, steps FROM runs WHERE id = ?', [id])) as Row | undefined;
        if (b && p.ifStatus !== undefined && b.status !== p.ifStatus) throw runChanged(id, p.ifStatus, b.status as string);
        await this.exec(`UPDATE runs SET ${sets.join(', ')} WHERE id = ?`, [...args, id]);
        if (!b) return;
        const now = p.finishedAt ?? Date.now();
        if (p.steps !== undefined && JSON.stringify(p.steps) !== b.steps) {
          await this.event('run.steps', b.app as string, now, {
            run: id,
            steps: p.steps.map((st) => ({ name: st.name, status: st.status })),
          });
        }
        if (p.status !== undefined && p.status !== b.status) {
          await this.event('run.status', b.app as string, now, {
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
    const r = (await this.one('SELECT * FROM runs WHERE id = ?', [id])) as Row | undefined;
    return r && runFrom(r);
  }
  async listRuns(filter: { app?: string; limit: number }): Promise<RunRecord[]> {
    const rows = (await this.many('SELECT * FROM runs WHERE ($1::text IS NULL OR app = $1) ORDER BY id DESC LIMIT $2', [
      filter.app ?? null,
      filter.limit,
    ])) as Row[];
    return rows.map(runFrom);
  }

  /**
   * Group commit, as on SQLite: every push that arrives in one event-loop turn is written in one
   * transaction (one WAL flush for N deliveries), and each caller is answered only after that commit
   * (synchronous_commit on, PostgreSQL's default). A failed commit fails every push of the batch.
   */
  enqueueWebhookRun(p: WebhookPush): Promise<EnqueueResult> {
    return new Promise((resolve, reject) => {
      this.pendingPushes.push({ p, resolve, reject });
      if (this.pendingPushes.length === 1) setImmediate(() => void this.flushPushes());
    });
  }
  private pendingPushes: { p: WebhookPush; resolve: (r: EnqueueResult) => void; reject: (e: unknown) => void }[] = [];

  private async flushPushes(): Promise<void> {
    const batch = this.pendingPushes;
    this.pendingPushes = [];
    try {
      const results = await this.locked(() =>
        this.write(async () => {
          const out: EnqueueResult[] = [];
          for (const b of batch) out.push(await this.enqueueOne(b.p));
          return out;
        }),
      );
      batch.forEach((b, i) => b.resolve(results[i]!));
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }

  private async enqueueOne(p: WebhookPush): Promise<EnqueueResult> {
    const byDelivery = (await this.one('SELECT * FROM runs WHERE delivery_id = ?', [p.deliveryId])) as Row | undefined;
    if (byDelivery) return { outcome: 'duplicate-delivery', run: runFrom(byDelivery) };
    const same = (await this.one(
      `SELECT * FROM runs WHERE app = ? AND commit_sha = ? AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1`,
      [p.app, p.commit],
    )) as Row | undefined;
    if (same) return { outcome: 'duplicate-commit', run: runFrom(same) };
    const max = (await this.one('SELECT MAX(fence) AS f FROM runs WHERE app = ?', [p.app])) as { f: number | null };
    const info = await this.exec(
      `INSERT INTO runs (app, trigger, commit_sha, dirty, status, steps, created_at, delivery_id, branch, message, author, fence, attempt, repo_full_name)
         VALUES (?, 'webhook', ?, 0, 'queued', ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
      [p.app, p.commit, PIPELINE_STEPS, p.now, p.deliveryId, p.branch, p.message, p.author, (max.f ?? 0) + 1, p.repoFullName ?? null],
    );
    const id = Number(info.id);
    await this.event('run.created', p.app, p.now, { run: id, trigger: 'webhook', commit: p.commit, status: 'queued', branch: p.branch });
    const older = (await this.many(`SELECT id FROM runs WHERE app = ? AND branch = ? AND status = 'queued' AND id <> ?`, [
      p.app,
      p.branch,
      id,
    ])) as { id: number }[];
    for (const o of older) {
      await this.event('run.status', p.app, p.now, { run: o.id, status: 'superseded', from: 'queued', supersededBy: id });
      await this.exec(`UPDATE runs SET status = 'superseded', superseded_by = ?, finished_at = ?, error = ? WHERE id = ?`, [
        id,
        p.now,
        `superseded by run #${id} (a newer push to ${p.branch})`,
        o.id,
      ]);
    }
    return {
      outcome: 'queued',
      run: runFrom((await this.one('SELECT * FROM runs WHERE id = ?', [id])) as Row),
      superseded: older.map((o) => o.id),
    };
  }

  async claimNextRun(excludeApps: ReadonlySet<string>, now: number, queuedBefore = now): Promise<RunRecord | undefined> {
    return this.write(async (): Promise<RunRecord | undefined> => {
      const busy = new Set(
        (
          (await this.many(`SELECT DISTINCT app FROM runs WHERE status = 'running' AND trigger = 'webhook' AND rollout_id IS NULL`)) as {
            app: string;
          }[]
        ).map((r) => r.app),
      );
      const queued = (await this.many(`SELECT * FROM runs WHERE status = 'queued' AND created_at <= ? ORDER BY id FOR UPDATE SKIP LOCKED`, [
        queuedBefore,
      ])) as Row[];
      const next = queued.find((r) => !busy.has(r.app as string) && !excludeApps.has(r.app as string));
      if (!next) return undefined;
      await this.exec(
        `UPDATE runs SET status = 'running', started_at = ?, attempt = attempt + (CASE WHEN attempt = 0 THEN 1 ELSE 0 END) WHERE id = ?`,
        [now, next.id],
      );
      await this.event('run.status', next.app as string, now, { run: next.id, status: 'running', from: 'queued' });
      return runFrom((await this.one('SELECT * FROM runs WHERE id = ?', [next.id])) as Row);
    });
  }

  async recoverInterruptedRuns(now: number): Promise<RunRecord[]> {
    {
      return this.write(async (): Promise<RunRecord[]> => {
        const rows = (await this.many(`SELECT * FROM runs WHERE status = 'running' AND trigger = 'webhook'`)) as Row[];
        for (const r of rows) {
          const attempt = (r.attempt as number) || 1;
          let retryNote = 'not retried: it was already a retry';
          if (attempt < 2) {
            const info = await this.exec(
              `INSERT INTO runs (app, trigger, commit_sha, dirty, status, steps, created_at, branch, message, author, fence, attempt, retry_of, repo_full_name)
                 VALUES (?, 'webhook', ?, 0, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
              [r.app, r.commit_sha, PIPELINE_STEPS, now, r.branch, r.message, r.author, r.fence, attempt + 1, r.id, r.repo_full_name],
            );
            retryNote = `retried as run #${Number(info.id)}`;
            await this.event('run.created', r.app as string, now, {
              run: Number(info.id),
              trigger: 'webhook',
              commit: r.commit_sha,
              status: 'queued',
              retryOf: r.id,
            });
          }
          await this.exec(`UPDATE runs SET status = 'interrupted', finished_at = ?, error = ? WHERE id = ?`, [
            now,
            `interrupted: the server stopped while it ran; ${retryNote}`,
            r.id,
          ]);
          await this.event('run.status', r.app as string, now, {
            run: r.id,
            status: 'interrupted',
            from: 'running',
            error: `interrupted: the server stopped while it ran; ${retryNote}`,
          });
        }
        // A `pilot run` from a terminal reports through this server: when the server died, the CLI's
        // next report failed and it gave up, so its run would say "running" forever. Not retried:
        // the user re-runs it (a CLI somehow still going has its later reports refused by the run ledger).
        const cli = (await this.many(`SELECT * FROM runs WHERE status = 'running' AND trigger = 'cli'`)) as Row[];
        for (const r of cli) {
          await this.exec(`UPDATE runs SET status = 'interrupted', finished_at = ?, error = ? WHERE id = ?`, [
            now,
            'interrupted: the server stopped while it ran; run `pilot run` again',
            r.id,
          ]);
          await this.event('run.status', r.app as string, now, {
            run: r.id,
            status: 'interrupted',
            from: 'running',
            error: 'interrupted: the server stopped while it ran',
          });
        }
        const out: RunRecord[] = [];
        for (const r of [...rows, ...cli]) out.push(runFrom((await this.one('SELECT * FROM runs WHERE id = ?', [r.id]))!));
        return out;
      });
    }
  }

  async finishRolloutRuns(rolloutId: number, status: 'succeeded' | 'failed', error: string | undefined, now: number): Promise<void> {
    await this.write(async () => {
      const rows = (await this.many(`SELECT id, app FROM runs WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`, [
        rolloutId,
      ])) as Row[];
      await this.exec(
        `UPDATE runs SET status = ?, error = ?, finished_at = ?, steps = json_build_array(json_build_object('name', 'deploy', 'status', ?::text, 'finishedAt', ?::bigint))::text
                  WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`,
        [status, error ?? null, now, status, now, rolloutId],
      );
      for (const r of rows)
        await this.event('run.status', r.app as string, now, {
          run: r.id,
          status,
          from: 'running',
          error: error?.split('\n')[0] ?? null,
          rollout: rolloutId,
        });
    });
  }

  async revisionOfFence(app: string, fence: number, commit: string): Promise<RevisionRecord | undefined> {
    const r = (await this.one(
      `SELECT revisions.* FROM revisions JOIN runs ON runs.id = revisions.run_id
                         WHERE revisions.app = ? AND runs.app = ? AND runs.fence = ? AND revisions.commit_sha = ? ORDER BY revisions.number DESC LIMIT 1`,
      [app, app, fence, commit],
    )) as Row | undefined;
    return r && revisionFrom(r);
  }
  async interruptForegroundRuns(now: number): Promise<number> {
    return this.write(async () => {
      const rows = (await this.many(
        `SELECT id, app FROM runs WHERE status = 'running' AND trigger NOT IN ('webhook', 'rollback')`,
      )) as Row[];
      for (const r of rows)
        await this.event('run.status', r.app as string, now, {
          run: r.id,
          status: 'interrupted',
          from: 'running',
          error: 'interrupted: the server restarted while it ran',
        });
      return (
        await this.exec(
          `UPDATE runs SET status = 'interrupted', finished_at = ?, error = 'interrupted: the server restarted while it ran (its rollout goes on and ends by itself)'
                        WHERE status = 'running' AND trigger NOT IN ('webhook', 'rollback')`,
          [now],
        )
      ).changes;
    });
  }
  async latestDeployedFence(app: string): Promise<number | undefined> {
    const r = (await this.one(
      'SELECT MAX(runs.fence) AS f FROM revisions JOIN runs ON runs.id = revisions.run_id WHERE revisions.app = ?',
      [app],
    )) as { f: number | null };
    return r.f ?? undefined;
  }

  async setSecret(app: string, name: string, sealed: string, now: number, scope: SecretScope = 'run'): Promise<void> {
    await this.exec(
      'INSERT INTO secrets (app, name, value, updated_at, scope) VALUES (?, ?, ?, ?, ?) ON CONFLICT(app, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, scope = excluded.scope',
      [app, name, sealed, now, scope],
    );
  }
  async deleteSecret(app: string, name: string): Promise<boolean> {
    return (await this.exec('DELETE FROM secrets WHERE app = ? AND name = ?', [app, name])).changes > 0;
  }
  async listSecrets(app: string): Promise<SecretRecord[]> {
    return ((await this.many('SELECT name, value, updated_at, scope FROM secrets WHERE app = ? ORDER BY name', [app])) as Row[]).map(
      (r) => ({
        name: r.name as string,
        value: r.value as string,
        updatedAt: r.updated_at as number,
        scope: r.scope === 'build' ? 'build' : 'run',
      }),
    );
  }

  async putCertificate(c: CertificateRecord): Promise<void> {
    await this.exec(
      `INSERT INTO certificates (host, source, cert_sealed, key_sealed, issuer, not_after, state, last_error, attempts, next_attempt_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(host) DO UPDATE SET source = excluded.source, cert_sealed = excluded.cert_sealed, key_sealed = excluded.key_sealed,
         issuer = excluded.issuer, not_after = excluded.not_after, state = excluded.state, last_error = excluded.last_error,
         attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at`,
      [
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
      ],
    );
  }
  async getCertificate(host: string): Promise<CertificateRecord | undefined> {
    const r = (await this.one('SELECT * FROM certificates WHERE host = ?', [host])) as Row | undefined;
    return r ? certificateFrom(r) : undefined;
  }
  async listCertificates(): Promise<CertificateRecord[]> {
    return ((await this.many('SELECT * FROM certificates ORDER BY host')) as Row[]).map(certificateFrom);
  }
  async deleteCertificate(host: string): Promise<boolean> {
    return (await this.exec('DELETE FROM certificates WHERE host = ?', [host])).changes > 0;
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
    await this.notify.recordAttempt(id, a, next);
  }
  async listNotifyDeliveries(
    app: string,
    limit: number,
  ): Promise<(NotifyDeliveryRecord & { readonly log: readonly NotifyAttemptRecord[] })[]> {
    return this.notify.deliveries(app, limit);
  }
  async getAcmeAccountKey(directoryUrl: string): Promise<string | undefined> {
    const r = (await this.one('SELECT key_sealed FROM acme_accounts WHERE directory = ?', [directoryUrl])) as Row | undefined;
    return r ? (r.key_sealed as string) : undefined;
  }
  async putAcmeAccountKey(directoryUrl: string, sealedKey: string, now: number): Promise<void> {
    await this.exec(
      'INSERT INTO acme_accounts (directory, key_sealed, created_at) VALUES (?, ?, ?) ON CONFLICT(directory) DO UPDATE SET key_sealed = excluded.key_sealed',
      [directoryUrl, sealedKey, now],
    );
  }

  async putNodeRuntime(r: NodeRuntimeRecord): Promise<NodeRuntimeRecord> {
    await this.exec(
      'INSERT OR IGNORE INTO node_runtimes (version, platform, digest, integrity, size, origin, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [r.version, r.platform, r.digest, r.integrity ?? null, r.size, r.origin, r.createdAt],
    );
    return (await this.getNodeRuntime(r.version, r.platform))!;
  }
  async getNodeRuntime(version: string, platform: string): Promise<NodeRuntimeRecord | undefined> {
    const r = (await this.one('SELECT * FROM node_runtimes WHERE version = ? AND platform = ?', [version, platform])) as Row | undefined;
    return r && nodeRuntimeFrom(r);
  }
  async listNodeRuntimes(): Promise<NodeRuntimeRecord[]> {
    return ((await this.many('SELECT * FROM node_runtimes ORDER BY created_at')) as Row[]).map(nodeRuntimeFrom);
  }
  async putRegistry(r: RegistryRecord): Promise<void> {
    await this.exec(
      'INSERT INTO registries (url, username, password, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET username = excluded.username, password = excluded.password, updated_at = excluded.updated_at',
      [r.url, r.username ?? null, r.password ?? null, r.updatedAt],
    );
  }
  async deleteRegistry(url: string): Promise<boolean> {
    return (await this.exec('DELETE FROM registries WHERE url = ?', [url])).changes > 0;
  }
  async addTarget(t: TargetRecord): Promise<boolean> {
    const r = await this.exec(
      'INSERT INTO targets (name, kind, docker, ports_from, ports_to, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING',
      [t.name, t.kind, t.docker, t.ports.from, t.ports.to, t.createdAt],
    );
    return r.changes > 0;
  }
  async deleteTarget(name: string): Promise<boolean> {
    return (await this.exec('DELETE FROM targets WHERE name = ?', [name])).changes > 0;
  }
  async listTargets(): Promise<TargetRecord[]> {
    return ((await this.many('SELECT * FROM targets ORDER BY name')) as Row[]).map(targetFrom);
  }
  async listRegistries(): Promise<RegistryRecord[]> {
    return (
      (await this.many('SELECT url, username, password, updated_at FROM registries ORDER BY updated_at DESC, ord DESC')) as Row[]
    ).map((r) => ({
      url: r.url as string,
      username: opt<string>(r.username),
      password: opt<string>(r.password),
      updatedAt: r.updated_at as number,
    }));
  }

  async listVolumePlacements(app?: string): Promise<VolumePlacement[]> {
    return (
      (await this.many('SELECT * FROM volume_placements WHERE ($1::text IS NULL OR app = $1) ORDER BY app, name', [app ?? null])) as Row[]
    ).map((r) => ({ app: r.app as string, name: r.name as string, nodeId: r.node_id as string, createdAt: r.created_at as number }));
  }
  async placeVolumes(app: string, names: readonly string[], nodeId: string, now: number): Promise<void> {
    await this.write(async () => {
      for (const name of names)
        await this.exec('INSERT OR IGNORE INTO volume_placements (app, name, node_id, created_at) VALUES (?, ?, ?, ?)', [
          app,
          name,
          nodeId,
          now,
        ]);
    });
  }
  async forgetVolumes(app: string, name?: string): Promise<number> {
    return (await this.exec('DELETE FROM volume_placements WHERE app = $1 AND ($2::text IS NULL OR name = $2)', [app, name ?? null]))
      .changes;
  }

  async commitPlan(c: PlanCommit): Promise<PlanVerdict> {
    const { plan, now } = c;
    if (c.instanceIds.length !== plan.placements.length) throw new Error('commitPlan: one instance id per placement');
    // One transaction, and the same events as the single writes it stands for (instance placed and
    // desired, revision activated, rollout finished, a rollback's run ended).
    return this.write(async (): Promise<PlanVerdict> => {
      const app = (await this.one('SELECT * FROM apps WHERE name = ? AND removed_at IS NULL', [plan.app])) as Row | undefined;
      const rollout = (await this.one(
        `SELECT id, to_revision FROM rollouts WHERE app = ? AND status = 'running' ORDER BY id DESC LIMIT 1`,
        [plan.app],
      )) as { id: number; to_revision: number } | undefined;
      const instances = ((await this.many('SELECT * FROM instances WHERE app = ? ORDER BY created_at, id', [plan.app])) as Row[]).map(
        instanceFrom,
      );
      const a = app && appFrom(app);
      const basis = basisOf({ app: a && { activeRevision: a.activeRevision, replicas: a.replicas }, rolloutId: rollout?.id, instances });
      if (basis !== plan.basis) return { committed: false, reason: `the state of app "${plan.app}" changed since the plan was made` };
      for (const nodeId of new Set(plan.placements.map((p) => p.nodeId))) {
        const n = (await this.one('SELECT scheduling FROM nodes WHERE id = ?', [nodeId])) as { scheduling: string } | undefined;
        if (!n) return { committed: false, reason: `node ${nodeId} is no longer registered` };
        if (n.scheduling !== 'eligible') return { committed: false, reason: `node ${nodeId} is no longer eligible (${n.scheduling})` };
      }
      // The plan itself first, then the events of each change it makes.
      const names = new Map((await this.many('SELECT id, name FROM nodes')).map((r) => [r.id as string, r.name as string]));
      const nodeName = (id: string): string => names.get(id) ?? id;
      await this.event('deploy.plan', plan.app, now, planEventPayload(c, nodeName));
      if (plan.volumes) {
        for (const name of plan.volumes.names)
          await this.exec('INSERT OR IGNORE INTO volume_placements (app, name, node_id, created_at) VALUES (?, ?, ?, ?)', [
            plan.app,
            name,
            plan.volumes.nodeId,
            now,
          ]);
      }
      for (const [k, p] of plan.placements.entries()) {
        const id = c.instanceIds[k]!;
        await this.exec(
          `INSERT INTO instances (id, app, revision, node_id, desired, state, kind, created_at, updated_at) VALUES (?, ?, ?, ?, 'run', 'pending', ?, ?, ?)`,
          [id, plan.app, p.revision, p.nodeId, p.kind, now, now],
        );
        await this.event('instance.placed', plan.app, now, {
          instance: id,
          revision: p.revision,
          node: nodeName(p.nodeId),
          kind: p.kind,
          desired: 'run',
        });
      }
      const byId = new Map(instances.map((i) => [i.id, i]));
      for (const d of plan.desired) {
        await this.exec('UPDATE instances SET desired = ?, updated_at = ? WHERE id = ?', [d.desired, now, d.id]);
        const before = byId.get(d.id);
        if (before && before.desired !== d.desired)
          await this.event('instance.desired', plan.app, now, { instance: d.id, revision: before.revision, desired: d.desired });
      }
      if (plan.activate !== undefined) {
        await this.exec('UPDATE apps SET active_revision = ?, updated_at = ? WHERE name = ?', [plan.activate, now, plan.app]);
        if ((a?.activeRevision ?? null) !== plan.activate)
          await this.event('deploy.activated', plan.app, now, { revision: plan.activate, previous: a?.activeRevision ?? null });
      }
      if (plan.progress && plan.rolloutId !== undefined) {
        const g = plan.progress;
        const before = (await this.one('SELECT step, weight, to_revision FROM rollouts WHERE id = ?', [plan.rolloutId])) as Row | undefined;
        await this.exec(
          `UPDATE rollouts SET step = ?, weight = ?, step_since = CASE WHEN ?::int = 1 THEN ?::bigint ELSE step_since END,
                  command = CASE WHEN ?::int = 1 THEN NULL ELSE command END, verdict = COALESCE(?::text, verdict) WHERE id = ?`,
          [g.step, g.weight, g.restart ? 1 : 0, now, g.clearCommand ? 1 : 0, g.verdict ? JSON.stringify(g.verdict) : null, plan.rolloutId],
        );
        if (before && (before.step !== g.step || before.weight !== g.weight))
          await this.event('rollout.step', plan.app, now, {
            rollout: plan.rolloutId,
            toRevision: before.to_revision,
            step: g.step,
            weight: g.weight,
            previousWeight: before.weight,
          });
        if (g.verdict)
          await this.event('rollout.analysis', plan.app, now, {
            rollout: plan.rolloutId,
            toRevision: before?.to_revision ?? null,
            verdict: g.verdict.verdict,
            reason: g.verdict.reason,
          });
      }
      if (plan.finish && plan.rolloutId !== undefined) {
        const f = plan.finish;
        await this.exec('UPDATE rollouts SET status = ?, reason = ?, finished_at = ? WHERE id = ?', [
          f.status,
          f.reason ?? null,
          now,
          plan.rolloutId,
        ]);
        await this.event('rollout.finished', plan.app, now, {
          rollout: plan.rolloutId,
          toRevision: rollout?.id === plan.rolloutId ? rollout.to_revision : null,
          status: f.status,
          reason: f.reason ?? null,
        });
        const runs = (await this.many(`SELECT id FROM runs WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`, [
          plan.rolloutId,
        ])) as { id: number }[];
        await this.exec(
          `UPDATE runs SET status = ?, error = ?, finished_at = ?, steps = json_build_array(json_build_object('name', 'deploy', 'status', ?::text, 'finishedAt', ?::bigint))::text
                    WHERE rollout_id = ? AND trigger = 'rollback' AND status = 'running'`,
          [f.status, f.reason ?? null, now, f.status, now, plan.rolloutId],
        );
        for (const r of runs)
          await this.event('run.status', plan.app, now, {
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

  /**
   * Artifact metadata is synchronous in the Store interface (the artifact routes call it inline), so
   * this store serves it from memory, loaded at open, and writes it through in the background, in
   * order, under the store's lock (a later call on this store runs after it; a store opened on the
   * same database in this process waits for it). Another process's writes are not seen until it
   * reopens: fine for one control plane, to be revisited with replicas (issue #16, part 2).
   */
  putArtifactMeta(m: ArtifactMeta): void {
    if (this.artifacts.has(m.digest)) return;
    this.artifacts.set(m.digest, { ...m });
    this.background(
      'INSERT INTO artifacts (digest, size, app, commit_sha, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
      [m.digest, m.size, m.app ?? null, m.commit ?? null, m.createdAt],
    );
  }
  getArtifactMeta(digest: string): ArtifactMeta | undefined {
    const m = this.artifacts.get(digest);
    return m && { ...m };
  }
  listArtifactMeta(app?: string): ArtifactMeta[] {
    // Newest first; equal times in the order they were recorded (a stable sort over insertion order).
    return [...this.artifacts.values()]
      .filter((m) => app === undefined || m.app === app)
      .map((m) => ({ ...m }))
      .sort((a, b) => b.createdAt - a.createdAt);
  }

  forgetBlob(digest: string): void {
    this.artifacts.delete(digest);
    this.background('DELETE FROM artifacts WHERE digest = $1', [digest]);
    this.background('DELETE FROM node_runtimes WHERE digest = $1', [digest]);
  }

  /** A write of the synchronous methods, queued under the lock; a failure is kept for close() to report nowhere but here. */
  private background(sql: string, args: unknown[]): void {
    const done = this.locked(() => this.exec(sql, args)).catch((err: unknown) => {
      this.backgroundError = err;
    });
    const all = Promise.all([pendingArtifactWrites.get(this.url), done]);
    pendingArtifactWrites.set(this.url, all);
    void all.finally(() => {
      if (pendingArtifactWrites.get(this.url) === all) pendingArtifactWrites.delete(this.url);
    });
  }
  /** The last background write's failure, if any (the database was gone): `pilot doctor` material. */
  backgroundError: unknown = undefined;

  async appendEvent(e: NewEvent): Promise<PilotEvent> {
    return this.write(async () => {
      await this.event(e.kind, e.app, e.time, { ...e.payload });
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
        ? await this.many('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?', [q.after, q.limit])
        : await this.many('SELECT * FROM events WHERE app = ? AND id > ? ORDER BY id LIMIT ?', [q.app, q.after, q.limit])
    ) as Row[];
    const events = rows.map(eventFrom);
    return q.kinds === undefined ? events : events.filter((e) => q.kinds!.includes(e.kind));
  }
  async latestEvents(q: { app?: string | undefined; limit: number }): Promise<PilotEvent[]> {
    const rows = (
      q.app === undefined
        ? await this.many('SELECT * FROM events ORDER BY id DESC LIMIT ?', [q.limit])
        : await this.many('SELECT * FROM events WHERE app = ? ORDER BY id DESC LIMIT ?', [q.app, q.limit])
    ) as Row[];
    return rows.map(eventFrom).reverse();
  }
  async eventBounds(): Promise<EventBounds> {
    // The counter keeps the highest id ever given, even once its row is deleted (as sqlite_sequence does).
    const trim = (await this.one('SELECT through FROM event_trim WHERE one = 1')) as { through: number } | undefined;
    return { lastId: await this.lastEventId(), trimmedThrough: trim?.through ?? 0 };
  }
  private async lastEventId(): Promise<number> {
    const r = await this.one(`SELECT last FROM pilot_ids WHERE name = 'events'`);
    return (r?.last as number | undefined) ?? 0;
  }
  async trimEvents(p: { keep: number; before: number }): Promise<number> {
    return this.write(async () => {
      const last = await this.lastEventId();
      const byCount = last - p.keep;
      const byTime = ((await this.one('SELECT MAX(id) AS m FROM events WHERE time < ?', [p.before])) as { m: number | null }).m ?? 0;
      const through = Math.max(byCount, byTime);
      if (through <= 0) return 0;
      const gone = (await this.exec('DELETE FROM events WHERE id <= ?', [through])).changes;
      await this.exec(
        'INSERT INTO event_trim (one, through) VALUES (1, ?) ON CONFLICT(one) DO UPDATE SET through = GREATEST(event_trim.through, excluded.through)',
        [through],
      );
      return gone;
    });
  }
  subscribeEvents(listener: (events: readonly PilotEvent[]) => void): () => void {
    return this.bus.subscribe(listener);
  }

  /**
   * A consistent copy of the whole state while in use: every table read in one REPEATABLE READ
   * transaction (one snapshot), written as JSON (owner-only: it holds sealed secrets) with the
   * id counters; `restorePostgresBackup` loads it into an empty database.
   */
  async backup(file: string): Promise<void> {
    const tables: Record<string, Row[]> = {};
    const c = await this.db();
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      for (const t of PG_TABLES) tables[t] = (await c.query<Row>(`SELECT * FROM ${t}`)).rows;
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    const body = { format: BACKUP_FORMAT, schema: PG_MIGRATIONS.length, tables };
    await writeFile(file, JSON.stringify(body), { mode: 0o600 });
  }

  /** Close the connections once the calls already queued (background writes included) are done. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.queue = this.queue
      .then(() => {
        // Closed once the calls queued before it ran (background artifact writes included).
        this.closed = true;
        if (this.relisten) clearTimeout(this.relisten);
        return this.heard;
      })
      .then(() => Promise.all([this.conn?.end(), this.listening?.end()]))
      .catch(() => undefined);
  }
}

const BACKUP_FORMAT = 'pilot-postgres-backup';

/** Load what `backup` wrote into the database at `url` (which must hold no Pilot state yet); returns a store on it. */
export async function restorePostgresBackup(url: string, file: string): Promise<PostgresStore> {
  let body: { format?: string; schema?: number; tables?: Record<string, Row[]> };
  try {
    body = JSON.parse(await readFile(file, 'utf8')) as typeof body;
  } catch (err) {
    throw fail.postgresBackupInvalid({ file, message: (err as Error).message }, { cause: err });
  }
  if (body?.format !== BACKUP_FORMAT || typeof body.tables !== 'object' || typeof body.schema !== 'number') {
    throw fail.postgresBackupInvalid({ file, message: `it is not of format ${BACKUP_FORMAT}` });
  }
  if (body.schema > PG_MIGRATIONS.length) throw fail.postgresTooNew({ current: body.schema, known: PG_MIGRATIONS.length });
  const store = await openPostgresStore(url);
  await store.load(body.tables);
  return store;
}

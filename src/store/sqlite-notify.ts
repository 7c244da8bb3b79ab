/**
 * The notification tables on SQLite (migration "notifications"): the statements SqliteStore's
 * notify methods run, kept apart so sqlite-store.ts stays about the deploy state.
 */
import type Database from 'better-sqlite3';
import type { NotifyEvent, NotifyKind } from '../core/notify.js';
import type { NewNotifyDelivery, NotifyAttemptRecord, NotifyDeliveryRecord, NotifyDeliveryStatus, NotifyEndpointRecord } from './store.js';

type Row = Record<string, unknown>;
type Prepare = (sql: string) => Database.Statement;

function endpointFrom(r: Row): NotifyEndpointRecord {
  return {
    id: Number(r.id),
    app: String(r.app),
    kind: r.kind === 'slack' ? 'slack' : ('json' as NotifyKind),
    urlSealed: String(r.url_sealed),
    urlMasked: String(r.url_masked),
    secretSealed: r.secret_sealed === null ? undefined : String(r.secret_sealed),
    events: JSON.parse(String(r.events)) as NotifyEvent[],
    afterEvent: Number(r.after_event),
    createdAt: Number(r.created_at),
  };
}

function deliveryFrom(r: Row): NotifyDeliveryRecord {
  return {
    id: Number(r.id),
    endpointId: Number(r.endpoint_id),
    app: String(r.app),
    event: String(r.event),
    eventId: r.event_id === null ? undefined : Number(r.event_id),
    body: String(r.body),
    status: String(r.status) as NotifyDeliveryStatus,
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

function attemptFrom(r: Row): NotifyAttemptRecord {
  return {
    n: Number(r.n),
    at: Number(r.at),
    code: r.code === null ? undefined : Number(r.code),
    error: r.error === null ? undefined : String(r.error),
    ms: Number(r.ms),
  };
}

/** The notify methods of SqliteStore over its database and statement cache. */
export class SqliteNotify {
  constructor(
    private readonly db: Database.Database,
    private readonly stmt: Prepare,
  ) {}

  addEndpoint(e: Omit<NotifyEndpointRecord, 'id'>): NotifyEndpointRecord {
    const info = this.stmt(
      `INSERT INTO notify_endpoints (app, kind, url_sealed, url_masked, secret_sealed, events, after_event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(e.app, e.kind, e.urlSealed, e.urlMasked, e.secretSealed ?? null, JSON.stringify(e.events), e.afterEvent, e.createdAt);
    return endpointFrom(this.stmt('SELECT * FROM notify_endpoints WHERE id = ?').get(info.lastInsertRowid) as Row);
  }

  listEndpoints(app?: string): NotifyEndpointRecord[] {
    const rows =
      app === undefined
        ? this.stmt('SELECT * FROM notify_endpoints ORDER BY id').all()
        : this.stmt('SELECT * FROM notify_endpoints WHERE app = ? ORDER BY id').all(app);
    return (rows as Row[]).map(endpointFrom);
  }

  /** Inside the caller's transaction or its own. */
  deleteEndpoint(app: string, id: number, now: number): boolean {
    return this.db.transaction(() => {
      if (this.stmt('DELETE FROM notify_endpoints WHERE app = ? AND id = ?').run(app, id).changes === 0) return false;
      this.stmt(`UPDATE notify_deliveries SET status = 'failed', updated_at = ? WHERE endpoint_id = ? AND status = 'pending'`).run(now, id);
      return true;
    })();
  }

  /** An app's endpoints go with the app (removeApp): a new app of the same name starts with none. */
  deleteAppEndpoints(app: string, now: number): void {
    for (const e of this.listEndpoints(app)) this.deleteEndpoint(app, e.id, now);
  }

  cursor(): number | undefined {
    const r = this.stmt('SELECT last_event FROM notify_cursor WHERE id = 1').get() as Row | undefined;
    return r === undefined ? undefined : Number(r.last_event);
  }

  enqueue(d: readonly NewNotifyDelivery[], cursor: number | undefined, now: number): NotifyDeliveryRecord[] {
    return this.db.transaction(() => {
      const out: NotifyDeliveryRecord[] = [];
      for (const x of d) {
        const info = this.stmt(
          `INSERT OR IGNORE INTO notify_deliveries (endpoint_id, app, event, event_id, body, status, attempts, next_attempt_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`,
        ).run(x.endpointId, x.app, x.event, x.eventId ?? null, x.body, now, now, now);
        if (info.changes > 0)
          out.push(deliveryFrom(this.stmt('SELECT * FROM notify_deliveries WHERE id = ?').get(info.lastInsertRowid) as Row));
      }
      if (cursor !== undefined)
        this.stmt(
          'INSERT INTO notify_cursor (id, last_event) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET last_event = MAX(last_event, excluded.last_event)',
        ).run(cursor);
      return out;
    })();
  }

  due(now: number, limit: number): NotifyDeliveryRecord[] {
    return (
      this.stmt(
        `SELECT * FROM notify_deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
      ).all(now, limit) as Row[]
    ).map(deliveryFrom);
  }

  nextDue(): number | undefined {
    const r = this.stmt(`SELECT MIN(next_attempt_at) AS t FROM notify_deliveries WHERE status = 'pending'`).get() as Row;
    return r.t === null ? undefined : Number(r.t);
  }

  recordAttempt(id: number, a: NotifyAttemptRecord, next: { status: NotifyDeliveryStatus; nextAttemptAt: number }): void {
    this.db.transaction(() => {
      this.stmt('INSERT OR REPLACE INTO notify_attempts (delivery_id, n, at, code, error, ms) VALUES (?, ?, ?, ?, ?, ?)').run(
        id,
        a.n,
        a.at,
        a.code ?? null,
        a.error ?? null,
        a.ms,
      );
      this.stmt('UPDATE notify_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?').run(
        next.status,
        a.n,
        next.nextAttemptAt,
        a.at,
        id,
      );
    })();
  }

  deliveries(app: string, limit: number): (NotifyDeliveryRecord & { log: NotifyAttemptRecord[] })[] {
    const rows = (this.stmt('SELECT * FROM notify_deliveries WHERE app = ? ORDER BY id DESC LIMIT ?').all(app, limit) as Row[]).map(
      deliveryFrom,
    );
    return rows.map((d) => ({
      ...d,
      log: (this.stmt('SELECT * FROM notify_attempts WHERE delivery_id = ? ORDER BY n').all(d.id) as Row[]).map(attemptFrom),
    }));
  }
}

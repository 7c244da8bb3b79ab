/**
 * The notification tables on PostgreSQL: the statements PostgresStore's notify methods run (the
 * same as sqlite-notify.ts's, in PostgreSQL's dialect), kept apart so postgres-store.ts stays about
 * the deploy state.
 */
import type { NotifyEvent, NotifyKind } from '../core/notify.js';
import type { NewNotifyDelivery, NotifyAttemptRecord, NotifyDeliveryRecord, NotifyDeliveryStatus, NotifyEndpointRecord } from './store.js';

type Row = Record<string, unknown>;
/** The store's statement runners (its connection, under its lock). */
export interface PgExec {
  one(sql: string, args?: readonly unknown[]): Promise<Row | undefined>;
  many(sql: string, args?: readonly unknown[]): Promise<Row[]>;
  exec(sql: string, args?: readonly unknown[]): Promise<{ changes: number; id: number }>;
}
type Write = <T>(fn: () => Promise<T>) => Promise<T>;

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

/** The notify methods of PostgresStore over its connection and its write transaction. */
export class PostgresNotify {
  constructor(
    private readonly db: PgExec,
    private readonly write: Write,
  ) {}
  private one(sql: string, args?: readonly unknown[]): Promise<Row | undefined> {
    return this.db.one(sql, args);
  }
  private many(sql: string, args?: readonly unknown[]): Promise<Row[]> {
    return this.db.many(sql, args);
  }
  private exec(sql: string, args?: readonly unknown[]): Promise<{ changes: number; id: number }> {
    return this.db.exec(sql, args);
  }

  async addEndpoint(e: Omit<NotifyEndpointRecord, 'id'>): Promise<NotifyEndpointRecord> {
    const info = await this.exec(
      `INSERT INTO notify_endpoints (app, kind, url_sealed, url_masked, secret_sealed, events, after_event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [e.app, e.kind, e.urlSealed, e.urlMasked, e.secretSealed ?? null, JSON.stringify(e.events), e.afterEvent, e.createdAt],
    );
    return endpointFrom((await this.one('SELECT * FROM notify_endpoints WHERE id = ?', [info.id])) as Row);
  }

  async listEndpoints(app?: string): Promise<NotifyEndpointRecord[]> {
    const rows =
      app === undefined
        ? await this.many('SELECT * FROM notify_endpoints ORDER BY id')
        : await this.many('SELECT * FROM notify_endpoints WHERE app = ? ORDER BY id', [app]);
    return (rows as Row[]).map(endpointFrom);
  }

  /** Inside the caller's transaction or its own. */
  async deleteEndpoint(app: string, id: number, now: number): Promise<boolean> {
    return this.write(async () => {
      if ((await this.exec('DELETE FROM notify_endpoints WHERE app = ? AND id = ?', [app, id])).changes === 0) return false;
      await this.exec(`UPDATE notify_deliveries SET status = 'failed', updated_at = ? WHERE endpoint_id = ? AND status = 'pending'`, [
        now,
        id,
      ]);
      return true;
    });
  }

  /** An app's endpoints go with the app (removeApp): a new app of the same name starts with none. */
  async deleteAppEndpoints(app: string, now: number): Promise<void> {
    for (const e of await this.listEndpoints(app)) await this.deleteEndpoint(app, e.id, now);
  }

  async cursor(): Promise<number | undefined> {
    const r = (await this.one('SELECT last_event FROM notify_cursor WHERE id = 1')) as Row | undefined;
    return r === undefined ? undefined : Number(r.last_event);
  }

  async enqueue(d: readonly NewNotifyDelivery[], cursor: number | undefined, now: number): Promise<NotifyDeliveryRecord[]> {
    return this.write(async () => {
      const out: NotifyDeliveryRecord[] = [];
      for (const x of d) {
        // Skipped before the INSERT: ON CONFLICT DO NOTHING would still use up an id (pilot_ids), SQLite's INSERT OR IGNORE does not.
        if (
          x.eventId !== undefined &&
          (await this.one('SELECT 1 AS k FROM notify_deliveries WHERE endpoint_id = ? AND event_id = ?', [x.endpointId, x.eventId]))
        )
          continue;
        const info = await this.exec(
          `INSERT OR IGNORE INTO notify_deliveries (endpoint_id, app, event, event_id, body, status, attempts, next_attempt_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`,
          [x.endpointId, x.app, x.event, x.eventId ?? null, x.body, now, now, now],
        );
        if (info.changes > 0) out.push(deliveryFrom((await this.one('SELECT * FROM notify_deliveries WHERE id = ?', [info.id])) as Row));
      }
      if (cursor !== undefined)
        await this.exec(
          'INSERT INTO notify_cursor (id, last_event) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET last_event = GREATEST(notify_cursor.last_event, excluded.last_event)',
          [cursor],
        );
      return out;
    });
  }

  async due(now: number, limit: number): Promise<NotifyDeliveryRecord[]> {
    return (
      (await this.many(
        `SELECT * FROM notify_deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
        [now, limit],
      )) as Row[]
    ).map(deliveryFrom);
  }

  async nextDue(): Promise<number | undefined> {
    const r = (await this.one(`SELECT MIN(next_attempt_at) AS t FROM notify_deliveries WHERE status = 'pending'`)) as Row;
    return r.t === null ? undefined : Number(r.t);
  }

  async recordAttempt(id: number, a: NotifyAttemptRecord, next: { status: NotifyDeliveryStatus; nextAttemptAt: number }): Promise<void> {
    await this.write(async () => {
      await this.exec(
        'INSERT INTO notify_attempts (delivery_id, n, at, code, error, ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, n) DO UPDATE SET at = excluded.at, code = excluded.code, error = excluded.error, ms = excluded.ms',
        [id, a.n, a.at, a.code ?? null, a.error ?? null, a.ms],
      );
      await this.exec('UPDATE notify_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?', [
        next.status,
        a.n,
        next.nextAttemptAt,
        a.at,
        id,
      ]);
    });
  }

  async deliveries(app: string, limit: number): Promise<(NotifyDeliveryRecord & { log: NotifyAttemptRecord[] })[]> {
    const rows = ((await this.many('SELECT * FROM notify_deliveries WHERE app = ? ORDER BY id DESC LIMIT ?', [app, limit])) as Row[]).map(
      deliveryFrom,
    );
    const out: (NotifyDeliveryRecord & { log: NotifyAttemptRecord[] })[] = [];
    for (const d of rows)
      out.push({ ...d, log: (await this.many('SELECT * FROM notify_attempts WHERE delivery_id = ? ORDER BY n', [d.id])).map(attemptFrom) });
    return out;
  }
}

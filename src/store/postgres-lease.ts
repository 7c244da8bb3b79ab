/**
 * Leader election through PostgreSQL (issue #16 part 2): one lease row (`pilot_leader`) with a
 * fencing token that only grows, and one heartbeat row per replica (`pilot_replicas`).
 *
 *   attempt(mine) ─► INSERT … ON CONFLICT DO UPDATE … WHERE (holder = me AND token = mine) OR expired
 *                     renewal by the holder: same token, later expiry
 *                     takeover of an expired lease: token + 1 (every write of the old one is refused)
 *                     anything else: no row back (someone else leads)
 *
 * Every time is the database's (`clock_timestamp()`), so replicas never compare their own clocks.
 * The lease has a connection of its own: a renewal never queues behind the store's calls, and each
 * query is bounded (`query_timeout`) so a lost database is noticed within the lease.
 */
import pg from 'pg';
import { fail } from '../core/errors.js';
import { LEASE_NAME } from './fence.js';
import { maskUrl } from './pg-url.js';
import { PG_TYPES } from './postgres-sql.js';

/** The leader as the lease row says. */
export interface LeaderRow {
  readonly holder: string;
  readonly url: string;
  readonly token: number;
  /** Wall-clock ms (the database's) when this holder took the lease, and when it ends unless renewed. */
  readonly acquiredAt: number;
  readonly expiresAt: number;
  /** Whether it has ended (the database's clock). */
  readonly expired: boolean;
}

/** A replica as its heartbeat row says. */
export interface ReplicaRow {
  readonly id: string;
  readonly url: string;
  readonly version: string;
  readonly startedAt: number;
  readonly lastSeenAt: number;
  /** How long ago it last wrote its heartbeat (the database's clock). */
  readonly silentMs: number;
}

export interface LeaseSettings {
  /** This replica's id (random per process: a restarted replica is a new holder). */
  readonly holder: string;
  /** The API address it answers at (shown by `pilot status`). */
  readonly url: string;
  readonly version: string;
  /** How long a lease lasts unless renewed. */
  readonly leaseMs: number;
}

/**
 * The files every replica must hold alike (sealing key, tokens), by fingerprint: the first replica
 * records its own; the names whose fingerprint differs from the recorded one are returned.
 */
export async function replicaSecretsDiffer(dbUrl: string, mine: Readonly<Record<string, string>>): Promise<string[]> {
  const c = new pg.Client({ connectionString: dbUrl, types: PG_TYPES, connectionTimeoutMillis: 10_000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    const differ: string[] = [];
    for (const [name, fingerprint] of Object.entries(mine)) {
      await c.query('INSERT INTO pilot_replica_secrets (name, fingerprint) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
        name,
        fingerprint,
      ]);
      const r = await c.query<{ fingerprint: string }>('SELECT fingerprint FROM pilot_replica_secrets WHERE name = $1', [name]);
      if (r.rows[0]?.fingerprint !== fingerprint) differ.push(name);
    }
    return differ;
  } catch (err) {
    throw fail.postgresUnreachable({ url: maskUrl(dbUrl), message: (err as Error).message }, { cause: err });
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Followers' changes to the leader's work queue (`forward`, `listen`). */
const FORWARD_CHANNEL = 'pilot_reconcile';

export class PostgresLease {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private closed = false;

  constructor(
    private readonly dbUrl: string,
    private readonly settings: LeaseSettings,
  ) {}

  /** This replica's id in the lease and heartbeat rows. */
  get holder(): string {
    return this.settings.holder;
  }

  /**
   * Take or renew the lease: the token held afterwards, or undefined when another replica holds an
   * unexpired lease (or when `mine` is no longer the row's token: it was taken over meanwhile).
   */
  async attempt(mine: number | undefined): Promise<number | undefined> {
    const r = await this.q(
      `INSERT INTO pilot_leader (name, holder, url, token, acquired_at, expires_at)
       VALUES ($1, $2, $3, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => $4::float8 / 1000))
       ON CONFLICT (name) DO UPDATE SET
         token = CASE WHEN pilot_leader.holder = excluded.holder AND pilot_leader.token = $5 THEN pilot_leader.token ELSE pilot_leader.token + 1 END,
         acquired_at = CASE WHEN pilot_leader.holder = excluded.holder AND pilot_leader.token = $5 THEN pilot_leader.acquired_at ELSE excluded.acquired_at END,
         holder = excluded.holder, url = excluded.url, expires_at = excluded.expires_at
       WHERE (pilot_leader.holder = excluded.holder AND pilot_leader.token = $5) OR pilot_leader.expires_at < clock_timestamp()
       RETURNING token`,
      [LEASE_NAME, this.settings.holder, this.settings.url, this.settings.leaseMs, mine ?? -1],
    );
    return r.rows[0]?.token as number | undefined;
  }

  /** End the lease now (a clean stop): a follower takes over at its next attempt, not after the lease. */
  async release(token: number): Promise<void> {
    await this.q(
      `UPDATE pilot_leader SET expires_at = clock_timestamp() - interval '1 millisecond' WHERE name = $1 AND holder = $2 AND token = $3`,
      [LEASE_NAME, this.settings.holder, token],
    );
  }

  /** Write this replica's heartbeat row. */
  async heartbeat(): Promise<void> {
    await this.q(
      `INSERT INTO pilot_replicas (id, url, version, started_at, last_seen) VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, version = excluded.version, last_seen = excluded.last_seen`,
      [this.settings.holder, this.settings.url, this.settings.version],
    );
  }

  /** Remove this replica's heartbeat row (a clean stop), and rows silent for a day. */
  async forget(): Promise<void> {
    await this.q(`DELETE FROM pilot_replicas WHERE id = $1 OR last_seen < clock_timestamp() - interval '1 day'`, [this.settings.holder]);
  }

  async leader(): Promise<LeaderRow | undefined> {
    const r = (
      await this.q(
        `SELECT holder, url, token, (EXTRACT(EPOCH FROM acquired_at) * 1000)::float8 AS acquired,
                (EXTRACT(EPOCH FROM expires_at) * 1000)::float8 AS expires, expires_at < clock_timestamp() AS expired
         FROM pilot_leader WHERE name = $1`,
        [LEASE_NAME],
      )
    ).rows[0];
    if (!r) return undefined;
    return {
      holder: r.holder as string,
      url: r.url as string,
      token: r.token as number,
      acquiredAt: Math.round(r.acquired as number),
      expiresAt: Math.round(r.expires as number),
      expired: r.expired as boolean,
    };
  }

  /** Replicas heard from within `withinMs`, oldest first. */
  async replicas(withinMs = 10 * 60_000): Promise<ReplicaRow[]> {
    const rows = (
      await this.q(
        `SELECT id, url, version, (EXTRACT(EPOCH FROM started_at) * 1000)::float8 AS started, (EXTRACT(EPOCH FROM last_seen) * 1000)::float8 AS seen,
                (EXTRACT(EPOCH FROM clock_timestamp() - last_seen) * 1000)::float8 AS silent
         FROM pilot_replicas WHERE last_seen > clock_timestamp() - make_interval(secs => $1::float8 / 1000) ORDER BY started_at, id`,
        [withinMs],
      )
    ).rows;
    return rows.map((r) => ({
      id: r.id as string,
      url: r.url as string,
      version: r.version as string,
      startedAt: Math.round(r.started as number),
      lastSeenAt: Math.round(r.seen as number),
      silentMs: Math.max(0, Math.round(r.silent as number)),
    }));
  }

  /** Tell the leader something changed (a follower's API write): `what` reaches `listen` on the leader. */
  async forward(what: string): Promise<void> {
    await this.q('SELECT pg_notify($1, $2)', [FORWARD_CHANNEL, what]);
  }

  /**
   * Hear what followers forward, on a connection of its own, connected again (every second) when
   * lost; what is sent meanwhile is lost (the leader's periodic resync is the safety net). Returns
   * the function that stops listening.
   */
  listen(heard: (what: string) => void): () => void {
    let stopped = false;
    let c: pg.Client | undefined;
    let retry: NodeJS.Timeout | undefined;
    const open = async (): Promise<void> => {
      const client = new pg.Client({ connectionString: this.dbUrl, types: PG_TYPES, connectionTimeoutMillis: 5000 });
      const again = (): void => {
        if (c !== client) return;
        c = undefined;
        void client.end().catch(() => undefined);
        if (!stopped) retry = setTimeout(() => void open().catch(() => undefined), 1000).unref();
      };
      client.on('error', again);
      client.on('end', again);
      client.on('notification', (n) => {
        if (n.channel === FORWARD_CHANNEL && n.payload !== undefined) heard(n.payload);
      });
      c = client;
      try {
        await client.connect();
        await client.query(`LISTEN ${FORWARD_CHANNEL}`);
        if (stopped) void client.end().catch(() => undefined);
      } catch {
        again();
      }
    };
    void open();
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      const last = c;
      c = undefined;
      void last?.end().catch(() => undefined);
    };
  }

  close(): void {
    this.closed = true;
    const c = this.client;
    this.client = undefined;
    void c?.end().catch(() => undefined);
  }

  private async q(sql: string, args: unknown[]): Promise<pg.QueryResult<Record<string, unknown>>> {
    const c = await this.conn();
    try {
      return await c.query<Record<string, unknown>>(sql, args);
    } catch (err) {
      // Whatever failed, the next call starts on a new connection (a timed-out query leaves this one unusable).
      if (this.client === c) this.client = undefined;
      void c.end().catch(() => undefined);
      throw fail.postgresUnreachable({ url: maskUrl(this.dbUrl), message: (err as Error).message }, { cause: err });
    }
  }

  private conn(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(fail.postgresUnreachable({ url: maskUrl(this.dbUrl), message: 'the lease is closed' }));
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const bound = Math.max(500, this.settings.leaseMs);
      const c = new pg.Client({ connectionString: this.dbUrl, types: PG_TYPES, connectionTimeoutMillis: bound, query_timeout: bound });
      c.on('error', () => {
        if (this.client === c) this.client = undefined;
      });
      try {
        await c.connect();
      } catch (err) {
        await c.end().catch(() => undefined);
        throw fail.postgresUnreachable({ url: maskUrl(this.dbUrl), message: (err as Error).message }, { cause: err });
      }
      if (this.closed) {
        await c.end().catch(() => undefined);
        throw fail.postgresUnreachable({ url: maskUrl(this.dbUrl), message: 'the lease is closed' });
      }
      this.client = c;
      return c;
    })().finally(() => (this.connecting = undefined));
    return this.connecting;
  }
}

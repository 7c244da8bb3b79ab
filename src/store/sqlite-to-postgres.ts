/**
 * Move an installation's state from its SQLite file into an empty PostgreSQL database (issue #16,
 * part 1: what `pilot migrate --from sqlite://… --to postgres://…` will run): every table copied in
 * one PostgreSQL transaction from one SQLite read snapshot, the id counters carried over
 * (sqlite_sequence → pilot_ids, registries' rowid → ord), then verified table by table: row counts
 * and a SHA-256 over the rows (canonical JSON, sorted) must be equal on both sides. The source is
 * only read.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { fail } from '../core/errors.js';
import { maskUrl, openPostgresStore, PG_TABLES } from './postgres-store.js';
import { pgArgs, PG_TYPES } from './postgres-sql.js';
import { SqliteStore } from './sqlite-store.js';

type Row = Record<string, unknown>;

export interface CopiedTable {
  readonly table: string;
  readonly rows: number;
  /** sha256 hex over the table's rows (see `checksum`). */
  readonly sha256: string;
}

/** The rows' fingerprint: each row as JSON with its keys sorted, the lines sorted, hashed. NUL reads as U+FFFD (PostgreSQL text cannot hold it). */
export function checksum(rows: readonly Row[]): string {
  const lines = rows.map((r) => {
    const keys = Object.keys(r).sort();
    return JSON.stringify(keys.map((k) => [k, pgArgs([r[k] ?? null])[0]]));
  });
  lines.sort();
  const h = createHash('sha256');
  for (const l of lines) h.update(l).update('\n');
  return h.digest('hex');
}

/** Read every table of a SQLite state file (migrated to this Pilot's schema first), in one snapshot. */
function readSqlite(file: string): Record<string, Row[]> {
  // Opening it as a store checks it (quick_check) and brings its schema to this version's.
  new SqliteStore(file, { mustExist: true }).close();
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.transaction(() => {
      const tables: Record<string, Row[]> = {};
      for (const t of PG_TABLES) {
        if (t === 'pilot_ids') continue;
        tables[t] = db.prepare(t === 'registries' ? 'SELECT rowid AS ord, * FROM registries' : `SELECT * FROM ${t}`).all() as Row[];
      }
      const ids = db.prepare('SELECT name, seq AS last FROM sqlite_sequence').all() as Row[];
      const known = new Set<string>(PG_TABLES);
      tables.pilot_ids = ids.filter((r) => known.has(r.name as string));
      const ord = db.prepare('SELECT MAX(rowid) AS m FROM registries').get() as { m: number | null };
      if (ord.m !== null) tables.pilot_ids.push({ name: 'registries', last: ord.m });
      return tables;
    })();
  } finally {
    db.close();
  }
}

/** Copy the SQLite state at `file` into the empty PostgreSQL database at `url`, and verify it; returns each table's count and checksum. */
export async function copySqliteToPostgres(file: string, url: string): Promise<CopiedTable[]> {
  const tables = readSqlite(file);
  const store = await openPostgresStore(url);
  try {
    await store.load(tables);
  } finally {
    store.close();
  }
  // Verified on a connection of its own, from what PostgreSQL committed.
  const c = new pg.Client({ connectionString: url, types: PG_TYPES });
  await c.connect().catch((err: unknown) => {
    throw fail.postgresUnreachable({ url: maskUrl(url), message: (err as Error).message }, { cause: err });
  });
  try {
    const out: CopiedTable[] = [];
    for (const t of PG_TABLES) {
      const source = tables[t] ?? [];
      const copied = (await c.query<Row>(`SELECT * FROM ${t}`)).rows;
      if (copied.length !== source.length) {
        throw fail.postgresCopyMismatch({ table: t, detail: `${copied.length} rows, the source has ${source.length}` });
      }
      const [a, b] = [checksum(source), checksum(copied)];
      if (a !== b) throw fail.postgresCopyMismatch({ table: t, detail: `sha256 ${b.slice(0, 12)}…, the source's ${a.slice(0, 12)}…` });
      out.push({ table: t, rows: copied.length, sha256: a });
    }
    return out;
  } finally {
    await c.end();
  }
}

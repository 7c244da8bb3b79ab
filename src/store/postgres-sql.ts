/**
 * The SQL the PostgreSQL store shares with the SQLite one, turned into PostgreSQL's dialect once per
 * statement text (cached): `?` placeholders become `$1…$n` (never inside a quoted literal), SQLite's
 * `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`, and an INSERT into a table with a generated
 * id returns it (SQLite's lastInsertRowid).
 */
import pg from 'pg';

const WITH_ID = /^\s*INSERT INTO (runs|rollouts|experiments|events|notify_endpoints|notify_deliveries)\b/;
const cache = new Map<string, string>();

/** `sql` in PostgreSQL's dialect (see the file's comment). */
export function toPg(sql: string): string {
  let out = cache.get(sql);
  if (out !== undefined) return out;
  let n = 0;
  let quoted = false;
  let s = '';
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    s += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  if (/^\s*INSERT OR IGNORE INTO/.test(s)) s = s.replace(/INSERT OR IGNORE INTO/, 'INSERT INTO') + ' ON CONFLICT DO NOTHING';
  if (WITH_ID.test(s) && !/RETURNING/i.test(s)) s += ' RETURNING id';
  cache.set(sql, s);
  out = s;
  return out;
}

/**
 * Statement arguments as PostgreSQL takes them. Its text cannot hold U+0000 (SQLite's can): a NUL
 * in a value (an app's last output lines, a commit message) becomes U+FFFD, the replacement
 * character, rather than failing the write (an agent's report, a webhook) again and again.
 */
export function pgArgs(args: readonly unknown[]): unknown[] {
  return args.map((a) => (typeof a === 'string' && a.includes('\0') ? a.replaceAll('\0', '\uFFFD') : a));
}

/**
 * Result types: BIGINT (ids, wall-clock ms, counts, MAX()) read as a JavaScript number, as SQLite
 * gives them (every value the store keeps is below 2^53).
 */
export const PG_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

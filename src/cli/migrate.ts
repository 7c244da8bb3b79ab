/**
 * `pilot migrate --from sqlite://PATH --to postgres://USER@HOST[:PORT]/DB`: copy an installation's
 * state from its SQLite file into an empty PostgreSQL database, verified table by table (row counts
 * and SHA-256, store/sqlite-to-postgres.ts). The source is only read. Refused while a server runs on
 * this $PILOT_HOME (its later writes would not be in the copy). The password belongs in PGPASSWORD
 * or ~/.pgpass, not in the URL (argv is visible in ps): one in the URL works, with a warning.
 */
import { join, resolve } from 'node:path';
import { fail } from '../core/errors.js';
import { maskUrl } from '../store/pg-url.js';
import { copySqliteToPostgres } from '../store/sqlite-to-postgres.js';
import { output, pilotHome, readServerFile, type GlobalOptions } from './context.js';
import { warnSecretOnArgv } from './secret-input.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function migrate(o: { from?: string; to?: string }, opts: GlobalOptions): Promise<void> {
  const home = pilotHome();
  const from = o.from ?? `sqlite://${join(home, 'pilot.db')}`;
  if (!from.startsWith('sqlite://') || from.length === 'sqlite://'.length) throw fail.migrateBadSource({ from });
  const to = o.to ?? '';
  let target: URL;
  try {
    target = new URL(to);
  } catch {
    throw fail.migrateBadTarget({ to: to === '' ? '(none)' : maskUrl(to) });
  }
  if (target.protocol !== 'postgres:' && target.protocol !== 'postgresql:') throw fail.migrateBadTarget({ to: maskUrl(to) });
  if (target.password !== '') warnSecretOnArgv('a password in --to', 'PGPASSWORD or ~/.pgpass');
  const file = resolve(from.slice('sqlite://'.length));
  const running = readServerFile(home);
  if (file === resolve(home, 'pilot.db') && running && running.pid !== process.pid && alive(running.pid)) {
    throw fail.migrateWhileServerRuns({ pid: running.pid, home });
  }
  const tables = await copySqliteToPostgres(file, to);
  const rows = tables.reduce((n, t) => n + t.rows, 0);
  output(
    opts,
    { from: file, to: maskUrl(to), tables },
    () =>
      tables.map((t) => `${t.table.padEnd(18)} ${String(t.rows).padStart(7)} rows  sha256 ${t.sha256.slice(0, 16)}`).join('\n') +
      `\ncopied ${rows} rows of ${tables.length} tables from ${file} into ${maskUrl(to)}; counts and checksums match` +
      `\nkeep ${join(home, 'secret.key')}: app secrets are sealed with it`,
  );
}

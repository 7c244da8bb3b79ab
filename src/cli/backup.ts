/**
 * `pilot backup FILE`: a consistent copy of the state database from the running server (SQLite's
 * online backup API; `GET /api/v1/backup`). `pilot restore FILE`: put a backup in place of
 * $PILOT_HOME/pilot.db; refused while a server runs on this $PILOT_HOME (replacing the file under
 * a live server would be undone or corrupted by its next write). The database it replaces is kept
 * beside it as pilot.db.before-restore-<time>.
 */
import { copyFileSync, existsSync, fsyncSync, openSync, closeSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { fail } from '../core/errors.js';
import { MIGRATIONS } from '../store/migrations.js';
import { apiClient, output, pilotHome, readServerFile, type GlobalOptions } from './context.js';

export async function backup(file: string, opts: GlobalOptions): Promise<void> {
  const target = resolve(file);
  const res = await apiClient(opts).stream('/api/v1/backup');
  const bytes = Buffer.from(await res.arrayBuffer());
  const tmp = `${target}.partial`;
  // 0600: sealed secrets and token hashes are in there.
  writeFileSync(tmp, bytes, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  const summary = inspect(tmp);
  renameSync(tmp, target);
  output(
    opts,
    { file: target, bytes: bytes.length, ...summary },
    () =>
      `backup written to ${target} (${bytes.length} bytes; ${summary.apps} app(s), ${summary.revisions} revision(s), schema ${summary.schema})\n` +
      `keep ${join(pilotHome(), 'secret.key')} with it: app secrets in the backup are sealed with that key`,
  );
}

/** Check a backup file is a whole Pilot database this version can use; what it holds. */
function inspect(file: string): { schema: number; apps: number; revisions: number } {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const check = db.pragma('quick_check', { simple: true }) as string;
    if (check !== 'ok') throw new Error(`integrity check failed: ${check}`);
    const schema = db.pragma('user_version', { simple: true }) as number;
    if (schema < 1 || schema > MIGRATIONS.length) throw new Error(`schema version ${schema} (this Pilot knows 1 to ${MIGRATIONS.length})`);
    const count = (t: string): number => (db!.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    return { schema, apps: count('apps'), revisions: count('revisions') };
  } catch (err) {
    throw fail.unusableBackup({ file, message: (err as Error).message });
  } finally {
    db?.close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function restore(file: string, opts: GlobalOptions): Promise<void> {
  const source = resolve(file);
  if (!existsSync(source)) throw fail.backupFileMissing({ source });
  const home = pilotHome();
  const running = readServerFile(home);
  if (running && running.pid !== process.pid && alive(running.pid)) {
    throw fail.restoreWhileServerRuns({ pid: running.pid, home });
  }
  const summary = inspect(source);
  const db = join(home, 'pilot.db');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const kept: string[] = [];
  const incoming = `${db}.restoring`;
  copyFileSync(source, incoming);
  chmodSync(incoming, 0o600);
  const fd = openSync(incoming, 'r+');
  fsyncSync(fd);
  closeSync(fd);
  // The old database with its WAL, kept as they were (a WAL left beside the restored file would be replayed into it).
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(db + suffix)) {
      const to = `${db}.before-restore-${stamp}${suffix}`;
      renameSync(db + suffix, to);
      if (suffix === '') kept.push(to);
    }
  }
  renameSync(incoming, db);
  rmSync(`${db}-journal`, { force: true });
  output(
    opts,
    { restored: source, into: db, kept: kept[0] ?? null, ...summary },
    () =>
      `restored ${source} into ${db} (${summary.apps} app(s), ${summary.revisions} revision(s))` +
      (kept[0] ? `\nthe previous database is kept as ${kept[0]}` : '') +
      '\nstart Pilot (`pilot up`): instances running that the backup does not know are kept running as orphans (`pilot orphans`)',
  );
}

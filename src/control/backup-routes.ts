/**
 * `GET /api/v1/backup` (admin): a consistent copy of the whole state database, made while the
 * server runs with SQLite's online backup API, streamed to the caller. The copy holds secrets
 * sealed (useless without $PILOT_HOME/secret.key) and token hashes only.
 */
import { createReadStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { SqliteStore } from '../store/sqlite-store.js';
import { fail } from '../core/errors.js';

/** `store` undefined: the state is in PostgreSQL, backed up with pg_dump (400 `backupOnPostgres` says so). */
export function registerBackupRoutes(app: FastifyInstance, deps: { store: SqliteStore | undefined; home: string }): void {
  app.get('/api/v1/backup', async (_req, reply) => {
    if (!deps.store) throw fail.backupOnPostgres();
    const dir = join(deps.home, 'tmp');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `backup-${randomBytes(6).toString('hex')}.db`);
    try {
      await deps.store.backup(file);
    } catch (err) {
      rmSync(file, { force: true });
      throw err;
    }
    const stream = createReadStream(file);
    // Removed once sent, or once the client has gone.
    const cleanup = (): void => rmSync(file, { force: true });
    stream.once('close', cleanup);
    void reply.header('content-type', 'application/vnd.sqlite3').header('content-disposition', 'attachment; filename="pilot.db"');
    return reply.send(stream);
  });
}

// `pilot migrate`: the real CLI copies a used SQLite installation into a PostgreSQL 15 started by
// this test, prints what it verified, and refuses bad input and a non-empty target with clear errors.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig } from '../../src/core/app-config.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { postgresUnavailable, startPostgres } from '../../src/store/test-postgres.js';
import { PILOT } from './harness.js';

/** Run the CLI (async: the test's PostgreSQL lives in this process's event loop). */
function pilot(args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PILOT, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('pilot migrate', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster = await startPostgres();
  after(() => cluster.stop());

  describe('pilot migrate', () => {
    it(
      'copies $PILOT_HOME/pilot.db into an empty database, verified; a second copy and bad URLs are refused',
      { timeout: 120_000 },
      async (t) => {
        const home = mkdtempSync(join(tmpdir(), 'pilot-migrate-home-'));
        t.after(() => rmSync(home, { recursive: true, force: true }));
        const s = new SqliteStore(join(home, 'pilot.db'));
        await s.upsertApp('shop', resolveAppConfig({ replicas: 2, env: { Q: `'"; DROP TABLE apps; --` } }, 'shop'), 1);
        await s.enqueueWebhookRun({
          app: 'shop',
          deliveryId: 'd1',
          commit: 'a'.repeat(40),
          branch: 'main',
          message: 'héllo ✓',
          author: 'Zoë',
          now: 2,
        });
        await s.setSecret('shop', 'TOKEN', 'sealed:v1:abc', 3);
        s.close();
        const url = await cluster.createDatabase();
        t.after(() => cluster.dropDatabase(url));
        const env = { PILOT_HOME: home };

        const ok = await pilot(['migrate', '--to', url, '--json'], env);
        assert.equal(ok.status, 0, ok.stderr);
        const report = JSON.parse(ok.stdout) as { from: string; tables: { table: string; rows: number; sha256: string }[] };
        assert.equal(report.from, join(home, 'pilot.db'));
        assert.equal(report.tables.find((x) => x.table === 'apps')!.rows, 1);
        assert.equal(report.tables.find((x) => x.table === 'runs')!.rows, 1);
        const pgStore = await openPostgresStore(url);
        t.after(() => pgStore.close());
        assert.equal((await pgStore.getApp('shop'))!.config.env.Q, `'"; DROP TABLE apps; --`);
        assert.equal((await pgStore.listRuns({ limit: 5 }))[0]!.message, 'héllo ✓');

        const again = await pilot(['migrate', '--from', `sqlite://${join(home, 'pilot.db')}`, '--to', url], env);
        assert.equal(again.status, 1);
        assert.match(again.stderr, /error: the PostgreSQL database .* already holds Pilot state/);
        assert.match(again.stderr, /hint: .*empty database/);

        const withPassword = `postgres://pilot:hunter2@127.0.0.1:1/pilot`;
        const refused = await pilot(['migrate', '--to', withPassword], env);
        assert.equal(refused.status, 70, refused.stderr);
        assert.match(refused.stderr, /warning: a password in --to on the command line is visible/);
        assert.match(refused.stderr, /cannot use the PostgreSQL database postgres:\/\/pilot:\*\*\*@127\.0\.0\.1:1\/pilot/);
        assert.doesNotMatch(refused.stderr, /hunter2/);

        for (const [args, pattern] of [
          [['migrate', '--to', 'mysql://db/pilot'], /--to mysql:\/\/db\/pilot: give the PostgreSQL database as postgres:/],
          [['migrate'], /--to \(none\): give the PostgreSQL database/],
          [['migrate', '--from', '/var/pilot.db', '--to', url], /--from \/var\/pilot\.db: give the SQLite state file as sqlite:\/\/PATH/],
          [['migrate', '--from', `sqlite://${join(home, 'missing.db')}`, '--to', url], /cannot open the state database .*missing\.db/],
        ] as const) {
          const r = await pilot([...args], env);
          assert.notEqual(r.status, 0);
          assert.match(r.stderr, pattern);
        }
      },
    );
  });
}

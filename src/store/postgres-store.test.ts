import { after, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { resolveAppConfig } from '../core/app-config.js';
import { isPilotError } from '../core/errors.js';
import type { PilotEvent } from '../core/events.js';
import { PG_MIGRATIONS } from './postgres-migrations.js';
import { maskUrl, openPostgresStore, restorePostgresBackup, type PostgresStore } from './postgres-store.js';
import { toPg } from './postgres-sql.js';
import type { WebhookPush } from './store.js';
import { postgresUnavailable, startPostgres, type PgCluster } from './test-postgres.js';

const push = (app: string, delivery: string, commit: string, now = 10): WebhookPush => ({
  app,
  deliveryId: delivery,
  commit,
  branch: 'main',
  message: 'fix: the thing',
  author: 'Zoë <z@example.com>',
  now,
});
const sha = (c: string): string => c.repeat(40);
const until = async (what: string, ok: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('postgres sql dialect', () => {
  it('numbers placeholders outside quoted literals, turns INSERT OR IGNORE into ON CONFLICT DO NOTHING, returns generated ids', () => {
    assert.equal(
      toPg(`SELECT * FROM runs WHERE app = ? AND status = '?' AND id > ?`),
      `SELECT * FROM runs WHERE app = $1 AND status = '?' AND id > $2`,
    );
    assert.equal(
      toPg('INSERT OR IGNORE INTO artifacts (digest, size) VALUES (?, ?)'),
      'INSERT INTO artifacts (digest, size) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    );
    assert.equal(toPg('INSERT INTO runs (app) VALUES (?)'), 'INSERT INTO runs (app) VALUES ($1) RETURNING id');
    assert.equal(toPg('INSERT INTO secrets (app) VALUES (?)'), 'INSERT INTO secrets (app) VALUES ($1)');
  });
  it('masks the password of a database URL', () => {
    assert.equal(maskUrl('postgres://pilot:s3cret@db1:5432/pilot'), 'postgres://pilot:***@db1:5432/pilot');
    assert.equal(maskUrl('postgres://pilot@db1/pilot'), 'postgres://pilot@db1/pilot');
    assert.equal(maskUrl('not a url s3cret'), 'postgres://(unparsable URL)');
  });
});

const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('postgres store', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster: PgCluster = await startPostgres();
  after(() => cluster.stop());

  /** A new database and stores on it, all closed and dropped after the test. */
  const fresh = async (t: TestContext): Promise<{ url: string; open: () => Promise<PostgresStore> }> => {
    const url = await cluster.createDatabase();
    const opened: PostgresStore[] = [];
    t.after(async () => {
      for (const s of opened) s.close();
      await cluster.dropDatabase(url);
    });
    return {
      url,
      open: async () => {
        const s = await openPostgresStore(url);
        opened.push(s);
        return s;
      },
    };
  };
  const sql = async (url: string, text: string, args: unknown[] = []): Promise<pg.QueryResult> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return await c.query(text, args);
    } finally {
      await c.end();
    }
  };

  describe('postgres store', () => {
    it('migrates a new database once when several stores open it together, and reopens it', async (t) => {
      const { url, open } = await fresh(t);
      const stores = await Promise.all([open(), open(), open()]);
      for (const s of stores) assert.equal(await s.schemaVersion(), PG_MIGRATIONS.length);
      const again = await open();
      assert.equal(await again.schemaVersion(), PG_MIGRATIONS.length);
      assert.equal((await sql(url, 'SELECT version FROM pilot_schema')).rows[0].version, PG_MIGRATIONS.length);
    });

    it('refuses a database from a newer Pilot, saying which versions', async (t) => {
      const { url, open } = await fresh(t);
      (await open()).close();
      await sql(url, 'UPDATE pilot_schema SET version = $1', [PG_MIGRATIONS.length + 1]);
      await assert.rejects(openPostgresStore(url), (e: unknown) => {
        assert.ok(isPilotError(e));
        assert.match(
          e.message,
          new RegExp(`schema version ${PG_MIGRATIONS.length + 1}, newer than this Pilot \\(${PG_MIGRATIONS.length}\\)`),
        );
        assert.match(e.hint ?? '', /Upgrade Pilot/);
        return true;
      });
    });

    it('an unreachable or missing database is a clear error that never shows the password', async () => {
      const closed = `postgres://pilot:hunter2@127.0.0.1:1/pilot`;
      await assert.rejects(openPostgresStore(closed), (e: unknown) => {
        assert.ok(isPilotError(e));
        assert.match(e.message, /cannot use the PostgreSQL database postgres:\/\/pilot:\*\*\*@127\.0\.0\.1:1\/pilot: .*ECONNREFUSED/);
        assert.doesNotMatch(e.message, /hunter2/);
        assert.match(e.hint ?? '', /pg_isready/);
        return true;
      });
      const missing = `postgres://pilot@127.0.0.1:${cluster.port}/no_such_database`;
      await assert.rejects(openPostgresStore(missing), /no_such_database.*does not exist/);
    });

    it('every store on the database hears every committed batch (LISTEN/NOTIFY), in order, once; its own right after the commit', async (t) => {
      const { open } = await fresh(t);
      const a = await open();
      const b = await open();
      const c = await open();
      const heard = { a: [] as PilotEvent[][], b: [] as PilotEvent[][], c: [] as PilotEvent[][] };
      a.subscribeEvents((e) => heard.a.push([...e]));
      b.subscribeEvents((e) => heard.b.push([...e]));
      c.subscribeEvents((e) => heard.c.push([...e]));
      const r1 = await a.enqueueWebhookRun(push('shop', 'd1', sha('a')));
      assert.equal(heard.a.length, 1, 'its own batch is published before the write resolves');
      await b.enqueueWebhookRun(push('shop', 'd2', sha('b'))); // supersedes r1: one batch of two events
      await a.claimNextRun(new Set(), 20);
      await c.appendEvent({ time: 30, app: undefined, kind: 'node.status', payload: { node: 'n1', status: 'down' } });
      // Refused writes publish nothing anywhere.
      await assert.rejects(a.updateRun(r1.run.id, { status: 'running', ifStatus: 'queued' }));
      const all = (await a.readEvents({ after: 0, limit: 100 })).map((e) => e.id);
      assert.equal(all.length, 5);
      for (const [who, got] of Object.entries(heard)) {
        await until(`${who} to hear every event`, () => got.flat().length >= all.length);
        assert.deepEqual(
          got.flat().map((e) => e.id),
          all,
          `${who} heard each event once, in id order`,
        );
      }
    });

    it('stores writing at once: every subscriber of every store hears every event once, in id order', async (t) => {
      const { open } = await fresh(t);
      const [a, b, c] = [await open(), await open(), await open()];
      const heard = [[], [], []] as number[][];
      [a, b, c].forEach((s, k) => s.subscribeEvents((e) => heard[k]!.push(...e.map((x) => x.id))));
      const writer = async (s: PostgresStore, who: string): Promise<void> => {
        for (let i = 0; i < 60; i++) await s.appendEvent({ time: i, app: who, kind: 'node.status', payload: { who, i } });
      };
      await Promise.all([writer(a, 'a'), writer(b, 'b'), writer(c, 'c')]);
      const all = (await a.readEvents({ after: 0, limit: 1000 })).map((e) => e.id);
      assert.equal(all.length, 180);
      for (const [k, got] of heard.entries()) {
        await until(`store ${k} to hear all`, () => got.length >= all.length);
        assert.deepEqual(got, all, `store ${k}: each event once, in id order`);
      }
    });

    it('claims from four stores on one database win each run exactly once and never two runs of one app at a time', async (t) => {
      const { open } = await fresh(t);
      const stores = await Promise.all([open(), open(), open(), open()]);
      const apps = ['a', 'b', 'c', 'd', 'e', 'f'];
      let n = 0;
      for (const app of apps) for (let k = 0; k < 5; k++) await stores[n % 4]!.enqueueWebhookRun(push(app, `d${n++}`, sha(String(k)), k));
      const claimed: number[] = [];
      const workers = stores.map(async (s) => {
        for (;;) {
          const r = await s.claimNextRun(new Set(), 100);
          if (!r) {
            const left = (await s.listRuns({ limit: 100 })).filter((x) => x.status === 'queued' || x.status === 'running');
            if (left.length === 0) return;
            await new Promise((res) => setTimeout(res, 5));
            continue;
          }
          claimed.push(r.id);
          const running = (await s.listRuns({ app: r.app, limit: 100 })).filter((x) => x.status === 'running');
          assert.deepEqual(
            running.map((x) => x.id),
            [r.id],
            `one run of ${r.app} at a time`,
          );
          await s.updateRun(r.id, { status: 'succeeded', finishedAt: 200, ifStatus: 'running' });
        }
      });
      await Promise.all(workers);
      // Each app's pushes to one branch supersede the older queued ones; every run not superseded was claimed once.
      const runs = await stores[0]!.listRuns({ limit: 100 });
      const succeeded = runs.filter((r) => r.status === 'succeeded').map((r) => r.id);
      assert.deepEqual(
        [...claimed].sort((x, y) => x - y),
        [...succeeded].sort((x, y) => x - y),
      );
      assert.equal(new Set(claimed).size, claimed.length);
      assert.ok(claimed.length >= apps.length);
    });

    it('keeps artifact metadata (synchronous methods) across a reopen and a forget, and a second store sees it once opened', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      const digest = (c: string): string => `sha256:${c.repeat(64)}`;
      s.putArtifactMeta({ digest: digest('a'), size: 1, app: 'shop', commit: sha('a'), createdAt: 1 });
      s.putArtifactMeta({ digest: digest('b'), size: 2, app: 'blog', commit: undefined, createdAt: 2 });
      s.putArtifactMeta({ digest: digest('a'), size: 99, app: 'other', commit: undefined, createdAt: 3 }); // the first stays
      s.forgetBlob(digest('b'));
      s.putArtifactMeta({ digest: digest('c'), size: 3, app: 'shop', commit: undefined, createdAt: 3 });
      const other = await open();
      assert.deepEqual(
        other.listArtifactMeta().map((m) => [m.digest.slice(7, 8), m.size, m.app]),
        [
          ['c', 3, 'shop'],
          ['a', 1, 'shop'],
        ],
      );
      assert.equal(other.getArtifactMeta(digest('b')), undefined);
      assert.deepEqual(
        s.listArtifactMeta('shop').map((m) => m.size),
        [3, 1],
      );
    });

    it('a backup is owner-only JSON that restores into an empty database; anything else is refused with a clear error', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      await s.enqueueWebhookRun(push('shop', 'd1', sha('a')));
      await s.setSecret('shop', 'TOKEN', 'sealed:v1:xyz', 5);
      const dir = mkdtempSync(join(tmpdir(), 'pilot-pg-backup-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, 'backup.json');
      await s.backup(file);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const copyUrl = await cluster.createDatabase();
      t.after(() => cluster.dropDatabase(copyUrl));
      const copy = await restorePostgresBackup(copyUrl, file);
      t.after(() => copy.close());
      assert.deepEqual(await copy.listSecrets('shop'), await s.listSecrets('shop'));
      // The sequences moved past the restored rows: the next run gets a new id.
      const next = await copy.enqueueWebhookRun(push('shop', 'd2', sha('b')));
      assert.equal(next.run.id, 2);
      for (const [name, text] of [
        ['garbage.json', '{ not json'],
        ['other.json', JSON.stringify({ format: 'something-else', tables: {} })],
        ['null.json', 'null'],
      ] as const) {
        writeFileSync(join(dir, name), text);
        const target = await cluster.createDatabase();
        t.after(() => cluster.dropDatabase(target));
        await assert.rejects(restorePostgresBackup(target, join(dir, name)), (e: unknown) => {
          assert.ok(isPilotError(e));
          assert.equal(e.code, 'invalid_backup');
          assert.match(e.message, /is not a backup of the PostgreSQL store/);
          return true;
        });
      }
    });

    it('a database lost while in use: calls fail with a clear error, then work again when it is back, and every store hears events again', async (t) => {
      const { open } = await fresh(t);
      const a = await open();
      const b = await open();
      const heard: number[] = [];
      b.subscribeEvents((e) => heard.push(...e.map((x) => x.id)));
      const first = await a.enqueueWebhookRun(push('shop', 'd1', sha('a')));
      await until('b to hear the first push', () => heard.length === 1);
      await cluster.down();
      try {
        await assert.rejects(a.enqueueWebhookRun(push('shop', 'd2', sha('b'))), (e: unknown) => {
          assert.ok(isPilotError(e), String(e));
          assert.match(e.message, /cannot use the PostgreSQL database postgres:\/\/pilot@127\.0\.0\.1:\d+\/pilot_t\d+_\d+: /);
          return true;
        });
        await assert.rejects(b.getRun(first.run.id), (e: unknown) => isPilotError(e));
      } finally {
        await cluster.up();
      }
      // Back: the next calls connect again; nothing committed before was lost, nothing refused was written.
      assert.equal((await b.getRun(first.run.id))!.status, 'queued');
      const second = await a.enqueueWebhookRun(push('shop', 'd2', sha('b')));
      assert.equal(second.outcome, 'queued');
      assert.deepEqual(
        (await a.listRuns({ limit: 10 })).map((r) => [r.deliveryId, r.status]),
        [
          ['d2', 'queued'],
          ['d1', 'superseded'],
        ],
      );
      // b's listening connection came back by itself (within its back-off): it hears a's next writes.
      await until('b to hear pushes after the restart', async () => {
        await a.appendEvent({ time: 50, app: 'shop', kind: 'node.status', payload: { node: 'n1', status: 'up' } });
        return heard.length > 1;
      });
    });

    it('a refused or rolled-back insert uses up no id, and ids are never given twice, also after their rows are deleted (as AUTOINCREMENT)', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      // Found by the differential test: a rollout of an unknown app is refused (foreign key) and must not take id 1.
      await assert.rejects(s.createRollout({ app: 'ghost', fromRevision: undefined, toRevision: 1, startedAt: 1 }));
      await s.upsertApp('web', resolveAppConfig({}, 'web'), 1);
      assert.equal((await s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 1, startedAt: 2 })).id, 1);
      // Events: trimmed away, their ids stay given.
      for (let i = 0; i < 5; i++) await s.appendEvent({ time: i, app: 'web', kind: 'node.status', payload: { i } });
      const before = await s.eventBounds();
      assert.equal(await s.trimEvents({ keep: 0, before: 100 }), before.lastId);
      assert.deepEqual(await s.eventBounds(), { lastId: before.lastId, trimmedThrough: before.lastId });
      assert.equal((await s.appendEvent({ time: 9, app: 'web', kind: 'node.status', payload: {} })).id, before.lastId + 1);
    });

    it('keeps hostile text byte for byte (quotes, SQL, placeholders, newlines, emoji, 64 KB)', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      const texts = [`'; DROP TABLE runs; --`, 'a ? b $1 \\ "q"', 'line1\nline2\r\n\ttab', 'héllo ✓ 日本 🚀', 'x'.repeat(65_536)];
      for (const [k, text] of texts.entries()) {
        const r = await s.enqueueWebhookRun({ ...push(`app${k}`, `d${k}`, sha(String(k))), message: text, author: text });
        const back = await s.getRun(r.run.id);
        assert.equal(back!.message, text);
        assert.equal(back!.author, text);
      }
      // PostgreSQL text cannot hold NUL: it becomes U+FFFD, and the write goes through.
      const nul = await s.enqueueWebhookRun({ ...push('nul', 'dn', sha('n')), message: 'before\0after' });
      assert.equal((await s.getRun(nul.run.id))!.message, 'before\uFFFDafter');
    });
  });
}

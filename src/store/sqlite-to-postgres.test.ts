import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { DEFAULT_NOTIFY_EVENTS } from '../core/notify.js';
import { isPilotError } from '../core/errors.js';
import { openPostgresStore } from './postgres-store.js';
import { copySqliteToPostgres } from './sqlite-to-postgres.js';
import { SqliteStore } from './sqlite-store.js';
import { apply, feed, op, state } from './store-differential.fixture.js';
import type { Store } from './store.js';
import { postgresUnavailable, startPostgres } from './test-postgres.js';

/** What a user sees of the whole state, beyond the differential fixture's `state`. */
async function everything(s: Store): Promise<unknown> {
  return JSON.parse(
    JSON.stringify({
      state: await state(s),
      feed: await feed(s),
      bounds: await s.eventBounds(),
      registries: await s.listRegistries(),
      artifacts: s.listArtifactMeta(),
      runtimes: await s.listNodeRuntimes(),
      nodes: await s.listNodes(),
      tokens: await s.listJoinTokens(),
      volumes: await s.listVolumePlacements(),
      certificates: await s.listCertificates(),
      endpoints: await s.listNotifyEndpoints(),
      deliveries: await s.listNotifyDeliveries('web', 100),
      cursor: await s.notifyCursor(),
      revisions: await s.listRevisions('web'),
      experiments: await s.listExperiments('web', 10),
    }),
  ) as unknown;
}

const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('sqlite to postgres', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster = await startPostgres();
  after(() => cluster.stop());

  describe('sqlite to postgres', () => {
    it('copies every table of a used installation, verified by counts and checksums; the PostgreSQL store then answers as SQLite did and continues its ids', async (t) => {
      const sequences = fc.sample(fc.array(op, { minLength: 30, maxLength: 40 }), { numRuns: 3, seed: 16 });
      for (const ops of sequences) {
        const dir = mkdtempSync(join(tmpdir(), 'pilot-migrate-'));
        t.after(() => rmSync(dir, { recursive: true, force: true }));
        const file = join(dir, 'pilot.db');
        const sqlite = new SqliteStore(file);
        await sqlite.upsertNode({
          id: 'n1',
          name: 'node-1',
          address: '127.0.0.1',
          apiUrl: 'http://127.0.0.1:1',
          credentialHash: 'h',
          agentToken: 't',
          registeredAt: 1,
          lastSeenAt: 1,
          scheduling: 'eligible',
          cpus: 0.5,
          memoryMb: 512,
          labels: { zone: 'eu-1', quote: `'"; --` },
          runtimes: {},
        });
        for (const [i, o] of ops.entries()) await apply(sqlite, o, 100 + i);
        // What the random calls do not reach: registries (order by rowid), artifacts, runtimes,
        // tokens, certificates, notifications, a trimmed feed (its counter beyond its rows).
        await sqlite.putRegistry({ url: 'https://r1.example', username: 'u', password: 'sealed:1', updatedAt: 5 });
        await sqlite.putRegistry({ url: 'https://r2.example', username: undefined, password: undefined, updatedAt: 5 });
        await sqlite.putRegistry({ url: 'https://r1.example', username: 'u2', password: 'sealed:2', updatedAt: 5 });
        sqlite.putArtifactMeta({ digest: `sha256:${'a'.repeat(64)}`, size: 10, app: 'web', commit: 'a'.repeat(40), createdAt: 3 });
        await sqlite.putNodeRuntime({
          version: '20.18.1',
          platform: 'linux-x64',
          digest: `sha256:${'b'.repeat(64)}`,
          integrity: undefined,
          size: 5,
          origin: 'import',
          createdAt: 4,
        });
        await sqlite.createJoinToken('tok1', 'hash1', 6);
        await sqlite.putCertificate({
          host: 'shop.example.com',
          source: 'user',
          certSealed: 'sealed:c',
          keySealed: 'sealed:k',
          issuer: 'CN=Test',
          notAfter: 99,
          state: 'valid',
          lastError: undefined,
          attempts: 0,
          nextAttemptAt: undefined,
          updatedAt: 7,
        });
        const ep = await sqlite.addNotifyEndpoint({
          app: 'web',
          kind: 'json',
          urlSealed: 'sealed:u',
          urlMasked: 'https://hooks.example/…',
          secretSealed: undefined,
          events: DEFAULT_NOTIFY_EVENTS,
          afterEvent: 0,
          createdAt: 8,
        });
        const [d] = await sqlite.enqueueNotifications(
          [{ endpointId: ep.id, app: 'web', event: 'deploy.started', eventId: 1, body: '{"héllo":"✓"}' }],
          1,
          9,
        );
        await sqlite.recordNotifyAttempt(
          d!.id,
          { n: 1, at: 10, code: 500, error: 'HTTP 500', ms: 12 },
          { status: 'pending', nextAttemptAt: 20 },
        );
        for (let i = 0; i < 3; i++) await sqlite.appendEvent({ time: 1, app: 'web', kind: 'node.status', payload: { i } });
        await sqlite.trimEvents({ keep: 2, before: 0 });
        const before = await everything(sqlite);
        sqlite.close();

        const url = await cluster.createDatabase();
        t.after(() => cluster.dropDatabase(url));
        const report = await copySqliteToPostgres(file, url);
        assert.ok(report.find((r) => r.table === 'events')!.rows >= 2);
        assert.ok(report.every((r) => /^[0-9a-f]{64}$/.test(r.sha256)));
        const pgStore = await openPostgresStore(url);
        t.after(() => pgStore.close());
        assert.deepEqual(await everything(pgStore), before);
        // The ids go on where SQLite's would have.
        const again = new SqliteStore(file);
        t.after(() => again.close());
        const next = async (s: Store): Promise<unknown> => [
          (await s.appendEvent({ time: 1, app: undefined, kind: 'node.status', payload: {} })).id,
          (await s.createRun({ app: 'web', trigger: 'cli', commit: undefined, dirty: false, steps: [], now: 1 })).id,
          (
            await s
              .startExperiment({ app: 'zz', control: 1, variant: 2, split: 10, by: { cookie: 'ab' }, startedAt: 1 })
              .catch(() => ({ id: 'refused' }))
          ).id,
        ];
        assert.deepEqual(await next(pgStore), await next(again));
      }
    });

    it('refuses a database that already holds state, and a missing SQLite file, with clear errors', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'pilot-migrate-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, 'pilot.db');
      const s = new SqliteStore(file);
      await s.createJoinToken('tok', 'h', 1);
      s.close();
      const url = await cluster.createDatabase();
      t.after(() => cluster.dropDatabase(url));
      await copySqliteToPostgres(file, url);
      await assert.rejects(copySqliteToPostgres(file, url), (e: unknown) => {
        assert.ok(isPilotError(e));
        assert.equal(e.code, 'conflict');
        assert.match(e.message, /already holds Pilot state \(table join_tokens has rows\)/);
        return true;
      });
      const pgStore = await openPostgresStore(url);
      t.after(() => pgStore.close());
      assert.equal((await pgStore.listJoinTokens()).length, 1, 'the refused copy changed nothing');
      await assert.rejects(copySqliteToPostgres(join(dir, 'missing.db'), url), /cannot open the state database .*missing\.db/);
    });
  });
}

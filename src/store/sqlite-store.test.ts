import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { resolveAppConfig } from '../core/app-config.js';
import { MIGRATIONS } from './migrations.js';
import { SqliteStore } from './sqlite-store.js';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'pilot-store-'));

describe('sqlite store', () => {
  it('migrates a new database to the latest version, in WAL mode, and reopens it', () => {
    const dir = tmp();
    try {
      const file = join(dir, 'pilot.db');
      const s = new SqliteStore(file);
      assert.equal(s.schemaVersion(), MIGRATIONS.length);
      s.close();
      const db = new Database(file);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      db.close();
      const again = new SqliteStore(file);
      assert.equal(again.schemaVersion(), MIGRATIONS.length);
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("records where an app's volumes live: the first node stays, forget drops them; an old config reads as no volumes", async () => {
    const dir = tmp();
    try {
      const s = new SqliteStore(join(dir, 'pilot.db'));
      await s.placeVolumes('shop', ['data', 'cache'], 'n1', 1);
      await s.placeVolumes('shop', ['data', 'uploads'], 'n2', 2); // data stays on n1; uploads is new
      await s.placeVolumes('blog', ['data'], 'n3', 3);
      assert.deepEqual(
        (await s.listVolumePlacements('shop')).map((p) => [p.name, p.nodeId]),
        [
          ['cache', 'n1'],
          ['data', 'n1'],
          ['uploads', 'n2'],
        ],
      );
      assert.equal(await s.forgetVolumes('shop', 'data'), 1);
      assert.equal(await s.forgetVolumes('shop', 'nothing'), 0);
      assert.equal(await s.forgetVolumes('shop'), 2);
      assert.deepEqual(
        (await s.listVolumePlacements()).map((p) => [p.app, p.name, p.nodeId]),
        [['blog', 'data', 'n3']],
      );
      // A config stored before `volumes` existed.
      const { volumes: _omitted, ...old } = resolveAppConfig({ name: 'legacy' }, undefined);
      await s.upsertApp('legacy', old as never, 4);
      assert.deepEqual((await s.getApp('legacy'))!.config.volumes, []);
      s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a database from a newer Pilot', () => {
    const dir = tmp();
    try {
      const file = join(dir, 'pilot.db');
      const db = new Database(file);
      db.pragma(`user_version = ${MIGRATIONS.length + 5}`);
      db.close();
      assert.throws(() => new SqliteStore(file), /newer than this Pilot/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('numbers revisions per app and keeps runs, rollouts and instances', async () => {
    const dir = tmp();
    const s = new SqliteStore(join(dir, 'pilot.db'));
    try {
      const config = resolveAppConfig({}, 'web');
      await s.upsertApp('web', config, 1);
      const sha = 'a'.repeat(40);
      const digest = 'sha256:' + 'b'.repeat(64);
      const r1 = await s.createRevision({
        app: 'web',
        artifact: digest,
        commit: sha,
        dirty: false,
        config,
        runId: undefined,
        image: undefined,
        nodeRuntime: undefined,
        createdAt: 2,
      });
      const r2 = await s.createRevision({
        app: 'web',
        artifact: digest,
        commit: sha,
        dirty: true,
        config,
        runId: undefined,
        image: { id: digest, archive: digest },
        nodeRuntime: { version: '22.1.0', digest, source: 'pilot.yaml' },
        createdAt: 3,
      });
      assert.deepEqual((await s.getRevision('web', r2.number))?.image, { id: digest, archive: digest });
      assert.equal((await s.getRevision('web', r2.number))?.nodeRuntime?.version, '22.1.0');
      assert.equal((await s.getRevision('web', r1.number))?.image, undefined);
      assert.deepEqual([r1.number, r2.number], [1, 2]);
      assert.deepEqual(
        (await s.listRevisions('web')).map((r) => [r.number, r.dirty]),
        [
          [2, true],
          [1, false],
        ],
      );
      const ro = await s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 1, startedAt: 4 });
      assert.equal((await s.activeRollout('web'))?.id, ro.id);
      await s.finishRollout(ro.id, 'failed', 'because', 5);
      assert.equal(await s.activeRollout('web'), undefined);
      assert.equal((await s.getRollout(ro.id))?.reason, 'because');
      const run = await s.createRun({
        app: 'web',
        trigger: 'cli',
        commit: sha,
        dirty: false,
        steps: [{ name: 'source', status: 'pending' }],
        now: 6,
      });
      const updated = await s.updateRun(run.id, { status: 'failed', error: 'build: boom', finishedAt: 7 });
      assert.equal(updated.status, 'failed');
      assert.equal(updated.error, 'build: boom');
      await s.upsertNode({
        id: 'n1',
        name: 'local',
        address: '127.0.0.1',
        apiUrl: 'http://127.0.0.1:1',
        credentialHash: 'h',
        agentToken: 't',
        registeredAt: 1,
        lastSeenAt: 1,
        scheduling: 'eligible',
        cpus: 2,
        memoryMb: 1024,
        labels: { zone: 'a' },
        runtimes: { docker: { available: true, version: '20.10' } },
      });
      assert.equal((await s.listNodes())[0]?.runtimes.docker?.available, true);
      await s.createInstance({ id: 'web-1-x', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 8 });
      await s.updateInstanceStatus('web-1-x', { state: 'ready', port: 4000, pid: 42, restarts: 0, lastError: undefined, startedAt: 9 }, 9);
      const [i] = await s.listInstances({ app: 'web' });
      assert.equal(i?.state, 'ready');
      assert.equal(i?.port, 4000);
      assert.equal(i?.kind, 'web');
      await s.createInstance({
        id: 'web-1-release-y',
        app: 'web',
        revision: 1,
        nodeId: 'n1',
        desired: 'run',
        kind: 'release',
        createdAt: 8,
      });
      await s.updateInstanceStatus(
        'web-1-release-y',
        {
          state: 'failed',
          port: undefined,
          pid: undefined,
          restarts: 0,
          lastError: 'release phase exited with code 3',
          startedAt: 9,
          logTail: 'FATAL: ***',
          address: '10.213.0.2',
        },
        9,
      );
      const rel = (await s.listInstances({ app: 'web' })).find((x) => x.id === 'web-1-release-y');
      assert.deepEqual([rel?.kind, rel?.logTail, rel?.address], ['release', 'FATAL: ***', '10.213.0.2']);
      s.putArtifactMeta({ digest, size: 10, app: 'web', commit: sha, createdAt: 1 });
      s.putArtifactMeta({ digest, size: 99, app: 'other', commit: sha, createdAt: 2 }); // immutable: first write wins
      assert.equal(s.getArtifactMeta(digest)?.size, 10);
    } finally {
      s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps its in-memory nodes identical to what the database holds (property)', async () => {
    const op = fc.oneof(
      fc.record({
        t: fc.constant('upsert' as const),
        name: fc.constantFrom('a', 'b', 'c', 'd', 'zz', 'm-1'),
        cred: fc.constantFrom('h1', 'h2', 'h3'),
        sched: fc.constantFrom('eligible' as const, 'cordoned' as const),
      }),
      fc.record({ t: fc.constant('touch' as const), name: fc.constantFrom('a', 'b', 'zz'), at: fc.nat() }),
      fc.record({
        t: fc.constant('schedule' as const),
        name: fc.constantFrom('a', 'c', 'm-1'),
        sched: fc.constantFrom('eligible' as const, 'cordoned' as const, 'draining' as const),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 30 }), async (ops) => {
        const dir = mkdtempSync(join(tmpdir(), 'pilot-store-'));
        const s = new SqliteStore(join(dir, 'pilot.db'));
        try {
          await s.listNodes(); // the cache exists from here on
          for (const o of ops) {
            const id = `id-${o.name}`;
            if (o.t === 'upsert') {
              await s.upsertNode({
                id,
                name: o.name,
                address: '127.0.0.1',
                apiUrl: 'http://127.0.0.1:1',
                credentialHash: `${o.cred}-${o.name}`,
                agentToken: 't',
                registeredAt: 1,
                lastSeenAt: 1,
                scheduling: o.sched,
                cpus: undefined,
                memoryMb: undefined,
                labels: {},
                runtimes: {},
              });
            } else if (o.t === 'touch') await s.touchNode(id, o.at);
            else await s.setNodeScheduling(id, o.sched);
          }
          const fresh = new SqliteStore(join(dir, 'pilot.db'));
          try {
            const want = await fresh.listNodes();
            assert.deepEqual(await s.listNodes(), want);
            for (const n of want) {
              assert.deepEqual(await s.getNodeByCredentialHash(n.credentialHash), n);
              assert.deepEqual(await s.getNodeByName(n.name), n);
            }
            assert.equal(await s.getNodeByCredentialHash('h1-nobody'), undefined);
          } finally {
            fresh.close();
          }
        } finally {
          s.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 60 },
    );
  });
});

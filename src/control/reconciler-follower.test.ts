import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import type { Route } from '../core/routes.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { Reconciler } from './reconciler.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;

/** One node, app `web` wanting 2 replicas with 1 placed and ready. */
async function seed(store: SqliteStore): Promise<void> {
  const now = Date.now();
  await store.upsertNode({
    id: 'n0',
    name: 'n0',
    address: '127.0.0.2',
    apiUrl: 'http://127.0.0.2:1',
    credentialHash: 'h0',
    agentToken: 't',
    registeredAt: now,
    lastSeenAt: now,
    scheduling: 'eligible',
    cpus: undefined,
    memoryMb: undefined,
    labels: {},
    runtimes: {},
  });
  const config = resolveAppConfig({ replicas: 2 }, 'web');
  await store.upsertApp('web', config, now);
  await store.setReplicas('web', 2, now);
  const rev = await store.createRevision({
    app: 'web',
    artifact: DIGEST,
    commit: 'c'.repeat(40),
    dirty: false,
    config,
    runId: undefined,
    createdAt: now,
    image: undefined,
    nodeRuntime: undefined,
  });
  await store.setActiveRevision('web', rev.number, now);
  await store.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n0', desired: 'run', createdAt: now });
  await ready(store, 'web-1-a', 30_000);
}

async function ready(store: SqliteStore, id: string, port: number): Promise<void> {
  const now = Date.now();
  const s = { state: 'ready' as const, port, pid: 1, restarts: 0, lastError: undefined, startedAt: now, containerId: undefined };
  await store.updateInstanceStatus(id, { ...s, logTail: undefined, address: undefined }, now);
}

const until = async (what: string, ok: () => boolean | Promise<boolean>): Promise<void> => {
  const end = Date.now() + 10_000;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('reconciler of a replica that follows', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-follower-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('plans and writes nothing, forwards changes to the leader, and republishes its routing table from the event feed', async () => {
    const store = new SqliteStore(join(dir, 'a.db'));
    await seed(store);
    const tables: Route[][] = [];
    const forwarded: string[] = [];
    const rec = new Reconciler(store, { set: (r) => void tables.push(r), inflight: () => 0 }, pino({ level: 'silent' }), {
      intervalMs: 50,
      maxDrainMs: 30_000,
      crashLoopRestarts: 3,
      forward: (what) => forwarded.push(what),
    });
    try {
      rec.setLeading(false);
      await rec.tick();
      rec.enqueue('web');
      rec.appsChanged(['web']);
      await rec.nodeChanged('n0');
      rec.nudge();
      await rec.whenIdle();
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(forwarded, ['app:web', 'app:web', 'node:n0', 'all']);
      assert.equal((await store.listInstances({ app: 'web' })).length, 1, 'a follower places nothing');
      // Its routing table follows what other replicas write (here: an agent's report of a second instance).
      assert.equal(tables.at(-1)?.find((r) => r.app === 'web')?.backends.length, 1);
      const published = tables.length;
      await store.createInstance({ id: 'web-1-b', app: 'web', revision: 1, nodeId: 'n0', desired: 'run', createdAt: Date.now() });
      await ready(store, 'web-1-b', 30_001);
      await until('the table republished', () => tables.length > published);
      assert.match(JSON.stringify(tables.at(-1)), /30001/);
      // Elected: a forwarded change is reconciled here (the count of 2 is met: nothing to place).
      rec.setLeading(true);
      await store.setReplicas('web', 3, Date.now(), 'scale'); // a follower's scale writes no event: it is forwarded
      rec.forwarded('app:web');
      await until('a third instance placed by the leader', async () => (await store.listInstances({ app: 'web' })).length === 3);
      assert.equal(forwarded.length, 4, 'the leader forwards nothing');
    } finally {
      rec.stop();
      store.close();
    }
  });

  it('as leader, reconciles the app of an event another replica wrote (a deploy), without being told', async () => {
    const store = new SqliteStore(join(dir, 'b.db'));
    await seed(store);
    const rec = new Reconciler(store, { set: () => undefined, inflight: () => 0 }, pino({ level: 'silent' }), {
      intervalMs: 50,
      maxDrainMs: 30_000,
      crashLoopRestarts: 3,
      forward: () => undefined,
    });
    try {
      // Another replica's write, as its events reach this one: `deploy.revision` names the app.
      await store.appendEvent({ kind: 'deploy.revision', app: 'web', time: Date.now(), payload: { revision: 1 } });
      await until('the missing replica placed', async () => (await store.listInstances({ app: 'web' })).length === 2);
    } finally {
      rec.stop();
      store.close();
    }
  });
});

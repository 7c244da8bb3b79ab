/**
 * The routing table the reconciler publishes around an experiment (SQLite store, the reconciler's
 * own publishRoutes): the split and the sticky key while it runs; while the rollout that keeps b
 * runs, the same split (b's users stay on b until b is active); after a --keep a, a deploy, or once
 * b is active, an ordinary route without a sticky key.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import type { Route } from '../core/routes.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { Reconciler } from './reconciler.js';

describe('reconciler: routes around an experiment', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-exp-handover-'));
  const store = new SqliteStore(join(dir, 'pilot.db'));
  const tables: Route[][] = [];
  const rec = new Reconciler(store, { set: (r) => void tables.push(r), inflight: () => 0 }, pino({ level: 'silent' }), {
    intervalMs: 250,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
  });
  const shop = async (): Promise<Route> => {
    await rec.publishRoutes();
    return tables[tables.length - 1]!.find((r) => r.app === 'shop')!;
  };
  const weights = (r: Route): number[][] => r.backends.map((b) => [b.revision, b.weight, b.upstreams.length]);

  before(async () => {
    await store.upsertNode({
      id: 'n1',
      name: 'n1',
      address: '127.0.0.2',
      apiUrl: 'http://127.0.0.2:1',
      credentialHash: 'h',
      agentToken: 't',
      registeredAt: 1,
      lastSeenAt: 1,
      scheduling: 'eligible',
      cpus: undefined,
      memoryMb: undefined,
      labels: {},
      runtimes: {},
    });
    const config = resolveAppConfig({ replicas: 2 }, 'shop');
    await store.upsertApp('shop', config, 1);
    for (const c of ['a', 'b', 'c']) {
      await store.createRevision({
        app: 'shop',
        artifact: `sha256:${c.repeat(64)}`,
        commit: c.repeat(40),
        dirty: false,
        config,
        runId: undefined,
        createdAt: 1,
        image: undefined,
        nodeRuntime: undefined,
      });
    }
    await store.setActiveRevision('shop', 1, 1);
    let port = 4000;
    for (const [id, revision] of [
      ['shop-1-a', 1],
      ['shop-2-a', 2],
    ] as const) {
      await store.createInstance({ id, app: 'shop', revision, nodeId: 'n1', desired: 'run', createdAt: 1 });
      await store.updateInstanceStatus(id, { state: 'ready', port: port++, pid: 1, restarts: 0, lastError: undefined, startedAt: 1 }, 1);
    }
  });
  after(() => {
    rec.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes the split and the sticky key while the experiment runs', async () => {
    assert.deepEqual(weights(await shop()), [[1, 100, 1]]);
    const e = await store.startExperiment({ app: 'shop', control: 1, variant: 2, split: 40, by: { cookie: 'uid' }, startedAt: 5 });
    const r = await shop();
    assert.deepEqual(weights(r), [
      [1, 60, 1],
      [2, 40, 1],
    ]);
    assert.deepEqual(r.sticky, { by: { cookie: 'uid' }, seed: `shop/${e.id}` });
  });

  it('keeps the split while the rollout that keeps b runs, and drops it once b is active', async () => {
    const e = (await store.activeExperiment('shop'))!;
    const now = Date.now();
    const { rollout } = await store.endExperiment(e.id, { kept: 'b', reason: 'kept b', now, rollout: { fromRevision: 1, toRevision: 2 } });
    const during = await shop();
    assert.deepEqual(weights(during), [
      [1, 60, 1],
      [2, 40, 1],
    ]);
    assert.deepEqual(during.sticky, { by: { cookie: 'uid' }, seed: `shop/${e.id}` });
    await store.setActiveRevision('shop', 2, now + 1);
    await store.finishRollout(rollout!.id, 'succeeded', undefined, now + 1);
    const afterwards = await shop();
    assert.equal(afterwards.sticky, undefined);
    assert.deepEqual(weights(afterwards), [[2, 100, 1]]);
  });

  it('a deploy during an experiment: the rollout to the new revision is an ordinary one (a 100, target 0)', async () => {
    await store.startExperiment({ app: 'shop', control: 2, variant: 1, split: 50, by: { header: 'X-User' }, startedAt: 10 });
    assert.notEqual((await shop()).sticky, undefined);
    await store.createRollout({ app: 'shop', fromRevision: 2, toRevision: 3, startedAt: Date.now() });
    const r = await shop();
    assert.equal(r.sticky, undefined);
    assert.deepEqual(weights(r), [
      [2, 100, 1],
      [3, 0, 0],
    ]);
  });
});

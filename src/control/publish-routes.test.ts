import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Pool } from 'undici';
import { resolveAppConfig } from '../core/app-config.js';
import type { Route } from '../core/routes.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { startRouter, type Router } from '../router/proxy.js';
import { RoutingTable } from '../router/routing-table.js';
import { send, startUpstream, type Echo, type TestUpstream } from '../router/test-support.js';
import { Reconciler } from './reconciler.js';

/**
 * publishRoutes from a real SQLite store to a real router: the active revision at weight 100, a
 * running rollout's target at 0 (reachable only when pinned), and the switch at activation.
 */
describe('Reconciler.publishRoutes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-publish-routes-'));
  const store = new SqliteStore(join(dir, 'pilot.db'));
  const table = new RoutingTable();
  const published: Route[][] = [];
  const sink = { set: (routes: Route[]) => (published.push(routes), table.set(routes)), inflight: () => 0 };
  const reconciler = new Reconciler(store, sink, pino({ level: 'silent' }), {
    intervalMs: 60_000,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
  });
  let router: Router;
  let client: Pool;
  let v1: TestUpstream;
  let v2: TestUpstream;

  before(async () => {
    v1 = await startUpstream('v1', undefined, '127.0.0.2');
    v2 = await startUpstream('v2', undefined, '127.0.0.2');
    router = await startRouter({ host: '127.0.0.1', port: 0, table });
    client = new Pool(router.url);
  });
  after(async () => {
    await client.close();
    await router.close();
    await Promise.all([v1.close(), v2.close()]);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("routes the active revision at 100 and a rollout's target at 0, then switches at activation", async () => {
    const now = Date.now();
    await store.upsertNode({
      id: 'n1',
      name: 'n1',
      address: '127.0.0.2',
      apiUrl: 'http://127.0.0.2:1',
      credentialHash: 'x',
      agentToken: 'y',
      registeredAt: now,
      lastSeenAt: now,
      scheduling: 'eligible',
      cpus: undefined,
      memoryMb: undefined,
      labels: {},
      runtimes: {},
    });
    const config = resolveAppConfig({ hosts: ['Shop.Example.test'] }, 'shop');
    await store.upsertApp('shop', config, now);
    const rev = {
      app: 'shop',
      artifact: `sha256:${'b'.repeat(64)}`,
      commit: 'a'.repeat(40),
      dirty: false,
      config,
      runId: undefined,
      image: undefined,
      nodeRuntime: undefined,
      createdAt: now,
    };
    const r1 = await store.createRevision(rev);
    const r2 = await store.createRevision(rev);
    await store.setActiveRevision('shop', r1.number, now);
    const ready = async (id: string, revision: number, port: number | undefined, state: 'ready' | 'starting' = 'ready') => {
      await store.createInstance({ id, app: 'shop', revision, nodeId: 'n1', desired: 'run', createdAt: now });
      await store.updateInstanceStatus(id, { state, port, pid: 1, restarts: 0, lastError: undefined, startedAt: now }, now);
    };
    await ready('shop-1-a', r1.number, v1.port);
    await reconciler.publishRoutes();
    assert.deepEqual(published.at(-1), [
      {
        app: 'shop',
        hosts: ['shop.localhost', 'shop.example.test'],
        backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'shop-1-a', host: '127.0.0.2', port: v1.port }] }],
      },
    ]);

    const rollout = await store.createRollout({ app: 'shop', fromRevision: r1.number, toRevision: r2.number, startedAt: now });
    await ready('shop-2-b', r2.number, v2.port);
    await ready('shop-2-c', r2.number, undefined, 'starting');
    await reconciler.publishRoutes();
    assert.deepEqual(
      published.at(-1)![0]!.backends.map((b) => [b.revision, b.weight, b.upstreams.map((u) => u.id)]),
      [
        [1, 100, ['shop-1-a']],
        [2, 0, ['shop-2-b']],
      ],
    );
    for (let k = 0; k < 4; k++) assert.equal((JSON.parse((await send(client, 'shop.example.test')).text) as Echo).name, 'v1');
    const pinned = await send(client, 'shop.example.test', { headers: { 'x-pilot-revision': String(r2.number) } });
    assert.equal((JSON.parse(pinned.text) as Echo).name, 'v2', 'the target is reachable pinned before it is activated');

    await store.setActiveRevision('shop', r2.number, now);
    await store.finishRollout(rollout.id, 'succeeded', undefined, now);
    await store.setInstanceDesired('shop-1-a', 'drain', now);
    await reconciler.publishRoutes();
    assert.deepEqual(
      published.at(-1)![0]!.backends.map((b) => [b.revision, b.weight, b.upstreams.map((u) => u.id)]),
      [[2, 100, ['shop-2-b']]],
    );
    for (let k = 0; k < 4; k++) assert.equal((JSON.parse((await send(client, 'shop.localhost')).text) as Echo).name, 'v2');
  });
});

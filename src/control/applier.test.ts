import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import { basisOf, planAppChanges, type AppSnapshot } from '../core/plan.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { InstanceStatusUpdate, NodeRecord, Store } from '../store/store.js';
import { applyPlan, type ApplierDeps } from './applier.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const log = pino({ level: 'silent' });
const status = (state: InstanceStatusUpdate['state'], restarts = 0, lastError?: string): InstanceStatusUpdate => ({
  state,
  restarts,
  lastError,
  port: 4000,
  pid: 100,
  startedAt: 1,
});

const nodeRecord = (id: string): NodeRecord => ({
  id,
  name: id,
  address: '127.0.0.2',
  apiUrl: 'http://127.0.0.2:1',
  credentialHash: `h-${id}`,
  agentToken: 't',
  registeredAt: 1,
  lastSeenAt: 1,
  scheduling: 'eligible',
  cpus: undefined,
  memoryMb: undefined,
  labels: {},
  runtimes: {},
});

async function withStore(fn: (s: SqliteStore) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-applier-'));
  const s = new SqliteStore(join(dir, 'pilot.db'));
  try {
    const config = { ...resolveAppConfig({}, 'web'), replicas: 2 };
    await s.upsertApp('web', config, 1);
    await s.setReplicas('web', 2, 1);
    await s.createRevision({
      app: 'web',
      artifact: DIGEST,
      commit: 'a'.repeat(40),
      dirty: false,
      config,
      runId: undefined,
      createdAt: 1,
      image: undefined,
      nodeRuntime: undefined,
    });
    await s.setActiveRevision('web', 1, 1);
    await s.upsertNode(nodeRecord('n1'));
    await s.upsertNode(nodeRecord('n2'));
    await s.createInstance({ id: 'web-1-old', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 1 });
    await fn(s);
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The snapshot the reconciler would read (nodes from the store, every node live). */
async function snapshot(s: Store): Promise<AppSnapshot> {
  const app = (await s.getApp('web'))!;
  const rollout = await s.activeRollout('web');
  const instances = await s.listInstances({ app: 'web' });
  const nodes = await s.listNodes();
  return {
    app: { name: 'web', replicas: app.replicas, activeRevision: app.activeRevision },
    rollout: rollout && { id: rollout.id, toRevision: rollout.toRevision, elapsedMs: 0, readyTimeoutMs: 60_000 },
    instances: instances.map((i) => ({ ...i, drainingForMs: undefined, inflight: 0, nodeDown: false, nodeDraining: false })),
    fixedPort: undefined,
    placement: {},
    nodes: nodes.map((n) => ({
      id: n.id,
      name: n.name,
      schedulable: n.scheduling === 'eligible',
      instances: instances.filter((i) => i.nodeId === n.id).map((i) => ({ app: i.app, fixedPort: undefined })),
    })),
    drainMs: 1000,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
    basis: basisOf({ app, rolloutId: rollout?.id, instances }),
  };
}

const deps = (s: Store, live: (id: string) => boolean = () => true): ApplierDeps => {
  let k = 0;
  return { store: s, log, isNodeLive: live, newId: (app, rev) => `${app}-${rev}-n${++k}` };
};

/** Every row of the app that a plan may touch, to compare before and after. */
async function rows(s: Store): Promise<string> {
  return JSON.stringify([
    await s.getApp('web'),
    await s.listInstances({ app: 'web' }),
    await s.listRollouts('web', 100),
    await s.listVolumePlacements(),
  ]);
}

describe('plan applier', () => {
  it('commits a current plan whole: the placement it decided lands on the node it chose', () =>
    withStore(async (s) => {
      const plan = planAppChanges(await snapshot(s));
      assert.deepEqual(plan.placements, [{ revision: 1, nodeId: 'n2', kind: 'web' }]);
      const r = await applyPlan(deps(s), plan, 5);
      assert.deepEqual(r, { committed: true, instanceIds: ['web-1-n1'] });
      const placed = (await s.listInstances({ app: 'web' })).find((i) => i.id === 'web-1-n1');
      assert.equal(placed?.nodeId, 'n2');
      assert.equal(placed?.desired, 'run');
      // Planning again from the new state converges: nothing more to do.
      const again = planAppChanges(await snapshot(s));
      assert.deepEqual(again.placements, []);
      // The feed has the plan, then the change it made, in the same transaction.
      const feed = (await s.latestEvents({ app: 'web', limit: 2 })).map((e) => [e.kind, e.payload]);
      assert.deepEqual(feed, [
        [
          'deploy.plan',
          {
            rollout: null,
            placed: [{ instance: 'web-1-n1', revision: 1, node: 'n2', kind: 'web' }],
            drain: [],
            stop: [],
            activate: null,
            finish: null,
            unplaced: null,
          },
        ],
        ['instance.placed', { instance: 'web-1-n1', revision: 1, node: 'n2', kind: 'web', desired: 'run' }],
      ]);
    }));

  it('rejects a stale plan (an instance changed between planning and applying) and writes nothing', () =>
    withStore(async (s) => {
      const plan = planAppChanges(await snapshot(s));
      // An agent reports meanwhile: the state the plan was decided from is gone.
      await s.updateInstanceStatus('web-1-old', status('failed', 3, 'exited with code 1'), 4);
      const before = await rows(s);
      const r = await applyPlan(deps(s), plan, 5);
      assert.equal(r.committed, false);
      assert.match((r as { reason: string }).reason, /changed since the plan was made/);
      assert.equal(await rows(s), before);
      // Re-planned from the latest state, it commits.
      assert.equal((await applyPlan(deps(s), planAppChanges(await snapshot(s)), 6)).committed, true);
    }));

  it('rejects a plan whose rollout was superseded, and one after a scale', () =>
    withStore(async (s) => {
      await s.createRollout({ app: 'web', fromRevision: 1, toRevision: 1, startedAt: 2 });
      const plan = planAppChanges(await snapshot(s));
      const superseded = await s.activeRollout('web');
      await s.finishRollout(superseded!.id, 'failed', 'superseded', 3);
      await s.createRollout({ app: 'web', fromRevision: 1, toRevision: 1, startedAt: 3 });
      assert.equal((await applyPlan(deps(s), plan, 5)).committed, false);
      const p2 = planAppChanges(await snapshot(s));
      await s.setReplicas('web', 5, 4);
      assert.equal((await applyPlan(deps(s), p2, 5)).committed, false);
    }));

  it('rejects a plan that places on a node drained, cordoned, removed or gone silent since', () =>
    withStore(async (s) => {
      const plan = planAppChanges(await snapshot(s));
      const before = await rows(s);
      assert.equal(
        (
          await applyPlan(
            deps(s, (id) => id !== 'n2'),
            plan,
            5,
          )
        ).committed,
        false,
        'not live',
      );
      await s.setNodeScheduling('n2', 'cordoned');
      const r = await applyPlan(deps(s), plan, 5);
      assert.equal(r.committed, false);
      assert.match((r as { reason: string }).reason, /node n2 is no longer eligible \(cordoned\)/);
      assert.equal(await rows(s), before);
    }));

  it('commits activation, finish, desired changes and volumes in one go', () =>
    withStore(async (s) => {
      await s.updateInstanceStatus('web-1-old', status('ready'), 2);
      await s.createRevision({
        app: 'web',
        artifact: DIGEST,
        commit: 'b'.repeat(40),
        dirty: false,
        config: resolveAppConfig({}, 'web'),
        runId: undefined,
        createdAt: 2,
        image: undefined,
        nodeRuntime: undefined,
      });
      const ro = await s.createRollout({ app: 'web', fromRevision: 1, toRevision: 2, startedAt: 2 });
      await s.createInstance({ id: 'web-2-a', app: 'web', revision: 2, nodeId: 'n2', desired: 'run', createdAt: 2 });
      await s.createInstance({ id: 'web-2-b', app: 'web', revision: 2, nodeId: 'n1', desired: 'run', createdAt: 2 });
      await s.updateInstanceStatus('web-2-a', status('ready'), 3);
      await s.updateInstanceStatus('web-2-b', status('ready'), 3);
      const plan = { ...planAppChanges(await snapshot(s)), volumes: { names: ['data'], nodeId: 'n1' } };
      assert.equal(plan.activate, 2);
      assert.equal((await applyPlan(deps(s), plan, 9)).committed, true);
      assert.equal((await s.getApp('web'))?.activeRevision, 2);
      assert.equal((await s.getRollout(ro.id))?.status, 'succeeded');
      assert.equal((await s.listInstances({ app: 'web' })).find((i) => i.id === 'web-1-old')?.desired, 'drain');
      assert.deepEqual(
        (await s.listVolumePlacements('web')).map((v) => [v.name, v.nodeId]),
        [['data', 'n1']],
      );
    }));

  it('commits an empty plan without touching the store', () =>
    withStore(async (s) => {
      const r = await applyPlan(deps(s), {
        app: 'web',
        basis: 'whatever',
        rolloutId: undefined,
        placements: [],
        desired: [],
        activate: undefined,
        finish: undefined,
        volumes: undefined,
        unplaced: undefined,
      });
      assert.deepEqual(r, { committed: true, instanceIds: [] });
    }));
});

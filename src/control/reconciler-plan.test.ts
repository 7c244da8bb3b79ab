import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { NodeRecord, PlanCommit, PlanVerdict } from '../store/store.js';
import { Reconciler } from './reconciler.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

const nodeRecord = (id: string, scheduling: NodeRecord['scheduling'] = 'eligible'): NodeRecord => ({
  id,
  name: id,
  address: '10.0.0.1',
  apiUrl: 'http://10.0.0.1:1',
  credentialHash: `h-${id}`,
  agentToken: 't',
  registeredAt: 1,
  lastSeenAt: 1,
  scheduling,
  cpus: undefined,
  memoryMb: undefined,
  labels: {},
  runtimes: {},
});

/** A store whose plan commits can be interfered with: `before` runs just before each commit (an agent reporting meanwhile). */
class RacyStore extends SqliteStore {
  commits: PlanVerdict[] = [];
  before: ((k: number) => Promise<void>) | undefined;
  override async commitPlan(c: PlanCommit): Promise<PlanVerdict> {
    await this.before?.(this.commits.length);
    const v = await super.commitPlan(c);
    this.commits.push(v);
    return v;
  }
}

async function withReconciler(fn: (s: RacyStore, r: Reconciler) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-reconciler-plan-'));
  const s = new RacyStore(join(dir, 'pilot.db'));
  const r = new Reconciler(s, { set: () => undefined, inflight: () => 0 }, pino({ level: 'silent' }), {
    intervalMs: 60_000,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
  });
  try {
    const config = resolveAppConfig({ replicas: 2 }, 'web');
    await s.upsertApp('web', config, 1);
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
    await fn(s, r);
  } finally {
    r.stop();
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('reconciler: plans through the applier', () => {
  it('plans the app again when its plan went stale between planning and committing', () =>
    withReconciler(async (s, r) => {
      s.before = async (k) => {
        // The first commit finds the state changed: an agent reported the old instance ready meanwhile.
        if (k === 0)
          await s.updateInstanceStatus(
            'web-1-old',
            { state: 'ready', port: 4000, pid: 7, restarts: 0, lastError: undefined, startedAt: 1 },
            2,
          );
      };
      await r.tick();
      assert.deepEqual(
        s.commits.map((c) => c.committed),
        [false, true],
        'rejected once, then committed from the new state',
      );
      const instances = await s.listInstances({ app: 'web' });
      assert.equal(instances.length, 2, 'exactly one replacement: the stale plan wrote nothing');
      assert.deepEqual(instances.map((i) => i.nodeId).sort(), ['n1', 'n2']);
    }));

  it('gives up after three stale plans in a pass, writing nothing, and succeeds on the next pass', () =>
    withReconciler(async (s, r) => {
      let restarts = 0;
      s.before = async (k) => {
        if (k < 3)
          await s.updateInstanceStatus(
            'web-1-old',
            { state: 'starting', port: 4000, pid: 7, restarts: ++restarts, lastError: undefined, startedAt: 1 },
            2,
          );
      };
      await r.tick();
      assert.deepEqual(
        s.commits.map((c) => c.committed),
        [false, false, false],
      );
      assert.equal((await s.listInstances({ app: 'web' })).length, 1);
      await r.tick();
      assert.equal(s.commits.at(-1)?.committed, true);
      assert.equal((await s.listInstances({ app: 'web' })).length, 2);
    }));

  it('moves instances off a draining node: replacement first, then the drain, each a committed plan', () =>
    withReconciler(async (s, r) => {
      await s.updateInstanceStatus('web-1-old', { state: 'ready', port: 4000, pid: 7, restarts: 0, lastError: undefined, startedAt: 1 }, 2);
      await s.upsertNode(nodeRecord('n3'));
      await s.setNodeScheduling('n1', 'draining');
      await r.tick();
      let instances = await s.listInstances({ app: 'web' });
      assert.equal(instances.find((i) => i.id === 'web-1-old')?.desired, 'run', 'keeps serving until replacements are ready');
      const fresh = instances.filter((i) => i.id !== 'web-1-old');
      assert.deepEqual(fresh.map((i) => i.nodeId).sort(), ['n2', 'n3'], 'two replacements, none on the draining node');
      for (const i of fresh)
        await s.updateInstanceStatus(i.id, { state: 'ready', port: 4001, pid: 8, restarts: 0, lastError: undefined, startedAt: 1 }, 3);
      await r.tick();
      instances = await s.listInstances({ app: 'web' });
      assert.equal(instances.find((i) => i.id === 'web-1-old')?.desired, 'drain');
    }));
});

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import { PilotError } from '../core/errors.js';
import type { NodeStatus } from '../core/types.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { Store } from '../store/store.js';
import type { Route } from '../core/routes.js';
import { Reconciler } from './reconciler.js';
import type { NodeMonitor } from './node-monitor.js';
import { FakeClock, settle } from './test-clock.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;

/** How many times one reconcile of an app reads it (`getApp`): before planning, the planner's snapshot, the routing inputs after. */
const READS_PER_RECONCILE = 3;

/** A store whose per-app reads are counted, and whose reads of some apps can be made to fail. */
function instrumented(store: SqliteStore): { store: Store; reads: Map<string, number>; failApp: Map<string, Error> } {
  const reads = new Map<string, number>();
  const failApp = new Map<string, Error>();
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const first = args[0];
        const app = typeof first === 'string' ? first : (first as { app?: unknown } | undefined)?.app;
        if (prop === 'getApp' && typeof app === 'string') {
          reads.set(app, (reads.get(app) ?? 0) + 1);
          const err = failApp.get(app);
          if (err) return Promise.reject(err);
        }
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: proxy as unknown as Store, reads, failApp };
}

async function seed(store: SqliteStore, apps: number, nodes: number): Promise<void> {
  const now = Date.now();
  for (let n = 0; n < nodes; n++) {
    await store.upsertNode({
      id: `n${n}`,
      name: `n${n}`,
      address: `127.0.0.${n + 2}`,
      apiUrl: `http://127.0.0.${n + 2}:1`,
      credentialHash: `h${n}`,
      agentToken: 't',
      registeredAt: now,
      lastSeenAt: now,
      scheduling: 'eligible',
      cpus: undefined,
      memoryMb: undefined,
      labels: {},
      runtimes: {},
    });
  }
  for (let a = 0; a < apps; a++) {
    const name = `app-${a}`;
    const config = resolveAppConfig({ replicas: 1 }, name);
    await store.upsertApp(name, config, now);
    await store.setReplicas(name, 1, now);
    const rev = await store.createRevision({
      app: name,
      artifact: DIGEST,
      commit: 'c'.repeat(40),
      dirty: false,
      config,
      runId: undefined,
      createdAt: now,
      image: undefined,
      nodeRuntime: undefined,
    });
    await store.setActiveRevision(name, rev.number, now);
    const id = `${name}-1-x`;
    await store.createInstance({ id, app: name, revision: 1, nodeId: `n${a % nodes}`, desired: 'run', createdAt: now });
    await markReady(store, id);
  }
}

async function markReady(store: Store, id: string): Promise<void> {
  const now = Date.now();
  await store.updateInstanceStatus(
    id,
    {
      state: 'ready',
      port: 30_000,
      pid: 1,
      restarts: 0,
      lastError: undefined,
      startedAt: now,
      containerId: undefined,
      logTail: undefined,
      address: undefined,
    },
    now,
  );
}

describe('reconciler driven by the work queue', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-reconciler-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let seq = 0;

  async function setUp(apps = 6, nodes = 3) {
    const sqlite = new SqliteStore(join(dir, `pilot-${++seq}.db`));
    await seed(sqlite, apps, nodes);
    const { store, reads, failApp } = instrumented(sqlite);
    const clock = new FakeClock();
    const tables: Route[][] = [];
    const lines: { msg: string; app?: string; level: number }[] = [];
    const log = pino(
      { level: 'debug' },
      { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; app?: string; level: number }) },
    );
    const statuses = new Map<string, NodeStatus>();
    const rec = new Reconciler(store, { set: (r) => void tables.push(r), inflight: () => 0 }, log, {
      intervalMs: 250,
      maxDrainMs: 30_000,
      crashLoopRestarts: 3,
      resyncMs: 30_000,
      clock,
    });
    rec.attachMonitor({
      heardFrom: () => undefined,
      pollOpened: () => undefined,
      pollClosed: () => undefined,
      status: (id: string) => statuses.get(id) ?? 'ready',
    } as unknown as NodeMonitor);
    await rec.tick();
    rec.start();
    reads.clear();
    return {
      sqlite,
      store,
      reads,
      failApp,
      clock,
      tables,
      lines,
      statuses,
      rec,
      close: () => {
        rec.stop();
        sqlite.close();
      },
    };
  }

  it('reconciles only the app that changed, and nothing at all while the fleet is settled', async () => {
    const t = await setUp();
    try {
      await t.clock.advance(10_000);
      assert.equal(t.reads.size, 0, `a settled fleet is not re-read (${[...t.reads.keys()].join(', ')})`);
      await t.store.setReplicas('app-3', 2, Date.now());
      t.rec.enqueue('app-3');
      await t.rec.whenIdle();
      assert.deepEqual([...t.reads.keys()], ['app-3']);
      assert.equal((await t.store.listInstances({ app: 'app-3' })).filter((i) => i.desired === 'run').length, 2);
      assert.equal((await t.store.listInstances({ app: 'app-2' })).length, 1);
    } finally {
      t.close();
    }
  });

  it('coalesces a burst of changes to one app into few reconciles', async () => {
    const t = await setUp();
    try {
      for (let i = 0; i < 10; i++) t.rec.enqueue('app-1');
      await t.rec.whenIdle();
      // One reconcile: getApp is read READS_PER_RECONCILE times in it (before planning, by the
      // planner's snapshot, and for the routing inputs after).
      assert.equal(t.reads.get('app-1'), READS_PER_RECONCILE);
    } finally {
      t.close();
    }
  });

  it('keeps reconciling the other apps while one fails, and backs the failing one off', async () => {
    const t = await setUp();
    try {
      t.failApp.set('app-0', Object.assign(new Error('disk I/O error reading app-0'), { code: 'SQLITE_BUSY' }));
      await t.store.setReplicas('app-0', 2, Date.now());
      await t.store.setReplicas('app-5', 2, Date.now());
      t.rec.enqueue('app-0');
      t.rec.enqueue('app-5');
      await t.rec.whenIdle();
      assert.equal((await t.store.listInstances({ app: 'app-5' })).length, 2, 'app-5 placed despite app-0 failing first');
      assert.equal(t.rec.queueStats.failing, 1);
      const errors = t.lines.filter((l) => l.msg === 'reconcile failed' && l.app === 'app-0');
      assert.equal(errors.length, 1);
      await t.clock.advance(250 + 500 + 1000);
      assert.equal(t.reads.get('app-0'), 4, 'retried after 250, 500, 1000 ms');
      assert.equal(t.lines.filter((l) => l.msg === 'reconcile failed' && l.app === 'app-0').length, 1, 'the same failure is logged once');
      t.failApp.delete('app-0');
      await t.clock.advance(2000);
      assert.equal((await t.store.listInstances({ app: 'app-0' })).length, 2, 'placed once the error went away');
      assert.ok(t.lines.some((l) => l.msg === 'app reconciles again' && l.app === 'app-0'));
      assert.equal(t.rec.queueStats.failing, 0);
    } finally {
      t.close();
    }
  });

  it('does not retry an app whose error is terminal until the app changes', async () => {
    const t = await setUp();
    try {
      t.failApp.set('app-2', new PilotError('invalid_config', 'stored config of app-2 is unreadable'));
      t.rec.enqueue('app-2');
      await t.rec.whenIdle();
      await t.clock.advance(29_000);
      assert.equal(t.reads.get('app-2'), 1);
      assert.ok(t.lines.some((l) => l.msg === 'reconcile failed: not retried until the app changes' && l.app === 'app-2'));
      await t.clock.advance(2000); // the 30 s resync leaves a parked app alone
      await t.rec.whenIdle();
      assert.equal(t.reads.get('app-2'), 1);
      assert.ok((t.reads.get('app-4') ?? 0) >= 1, 'the resync reconciled the others');
      t.failApp.delete('app-2');
      t.rec.enqueue('app-2'); // a change (a deploy, a scale)
      await t.rec.whenIdle();
      assert.equal(t.reads.get('app-2'), 1 + READS_PER_RECONCILE, 'reconciled once more, in full');
    } finally {
      t.close();
    }
  });

  it('requeues an app while its rollout runs, and stops once it is settled', async () => {
    const t = await setUp();
    try {
      const now = Date.now();
      const app = await t.store.getApp('app-1');
      await t.store.createRevision({
        app: 'app-1',
        artifact: DIGEST,
        commit: 'd'.repeat(40),
        dirty: false,
        config: app!.config,
        runId: undefined,
        createdAt: now,
        image: undefined,
        nodeRuntime: undefined,
      });
      await t.store.createRollout({ app: 'app-1', fromRevision: 1, toRevision: 2, startedAt: now });
      t.rec.enqueue('app-1');
      await t.rec.whenIdle();
      const created = (await t.store.listInstances({ app: 'app-1' })).find((i) => i.revision === 2);
      assert.ok(created, 'an instance of revision 2 was placed');
      assert.equal(t.rec.queueStats.delayed, 1, 'looked at again soon: the rollout runs');
      t.reads.clear();
      await t.clock.advance(1000);
      assert.ok((t.reads.get('app-1') ?? 0) >= 3 * 2, 'every 250 ms while the rollout waits');
      // The agent reports it ready: activate, drain the old one, finish.
      await markReady(t.store, created.id);
      t.rec.appsChanged(['app-1']);
      await t.rec.whenIdle();
      assert.equal((await t.store.getApp('app-1'))?.activeRevision, 2);
      assert.equal(
        t.tables
          .at(-1)!
          .find((r) => r.app === 'app-1')!
          .backends.flatMap((b) => b.upstreams)[0]!.id,
        created.id,
        'the routing table follows',
      );
      const old = (await t.store.listInstances({ app: 'app-1' })).find((i) => i.revision === 1)!;
      await t.clock.advance(1000);
      for (let i = 0; i < 40 && (await t.store.listInstances({ app: 'app-1' })).find((x) => x.id === old.id)?.desired !== 'stop'; i++)
        await t.clock.advance(250);
      await t.store.deleteInstance(old.id); // the agent stopped it
      t.rec.appsChanged(['app-1']);
      await t.rec.whenIdle();
      assert.equal(await t.store.activeRollout('app-1'), undefined, 'the rollout finished');
      await t.clock.advance(500);
      t.reads.clear();
      await t.clock.advance(10_000);
      assert.equal(t.reads.get('app-1'), undefined, 'settled: no more requeues');
    } finally {
      t.close();
    }
  });

  it('publishes the routing table only when something routed changed', async () => {
    const t = await setUp();
    try {
      const before = t.tables.length;
      t.rec.enqueue('app-4');
      await t.rec.whenIdle();
      await settle();
      assert.equal(t.tables.length, before, 'a reconcile that changed nothing routed publishes nothing');
      await t.store.setReplicas('app-4', 2, Date.now());
      t.rec.enqueue('app-4');
      await t.rec.whenIdle();
      await settle();
      assert.equal(t.tables.length, before, 'a new instance is not routed before it is ready');
      const fresh = (await t.store.listInstances({ app: 'app-4' })).find((i) => i.state !== 'ready')!;
      await markReady(t.store, fresh.id);
      t.rec.appsChanged(['app-4']);
      await t.rec.whenIdle();
      await settle();
      assert.equal(t.tables.length, before + 1);
      assert.equal(
        t.tables
          .at(-1)!
          .find((r) => r.app === 'app-4')!
          .backends.flatMap((b) => b.upstreams).length,
        2,
      );
    } finally {
      t.close();
    }
  });

  it('a node going down enqueues the apps with instances on it, and their instances are replaced elsewhere', async () => {
    const t = await setUp(6, 3);
    try {
      t.statuses.set('n1', 'down');
      await t.rec.nodeChanged('n1');
      await t.rec.whenIdle();
      await settle();
      assert.deepEqual([...t.reads.keys()].sort(), ['app-1', 'app-4'], 'only the apps on n1');
      for (const app of ['app-1', 'app-4']) {
        const list = await t.store.listInstances({ app });
        assert.equal(list.find((i) => i.nodeId === 'n1')?.desired, 'stop');
        assert.ok(
          list.some((i) => i.nodeId !== 'n1' && i.desired === 'run'),
          `${app} replaced on a live node`,
        );
      }
      assert.equal(
        t.tables
          .at(-1)!
          .find((r) => r.app === 'app-1')!
          .backends.flatMap((b) => b.upstreams).length,
        0,
        'the lost instance left the routing table',
      );
    } finally {
      t.close();
    }
  });

  it('purges a removed app once its last instance is gone, and forgets it', async () => {
    const t = await setUp();
    try {
      await t.store.removeApp('app-2', Date.now());
      t.rec.enqueue('app-2');
      await t.rec.whenIdle();
      assert.deepEqual(await t.store.removingApps(), ['app-2']);
      for (const i of await t.store.listInstances({ app: 'app-2' })) await t.store.deleteInstance(i.id);
      t.rec.appsChanged(['app-2']);
      await t.rec.whenIdle();
      assert.deepEqual(await t.store.removingApps(), []);
      assert.ok(t.lines.some((l) => l.msg === 'app removed: its last instance stopped' && l.app === 'app-2'));
      await settle();
      assert.equal(
        t.tables.at(-1)!.some((r) => r.app === 'app-2'),
        false,
      );
    } finally {
      t.close();
    }
  });
});

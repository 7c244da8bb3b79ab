/**
 * The event feed in the SQLite store: each write method appends its event in the change's own
 * transaction (a rolled-back write leaves neither), the bus hears committed batches in id order,
 * retention trims and remembers how far.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig } from '../core/app-config.js';
import type { PilotEvent } from '../core/events.js';
import { SqliteStore } from './sqlite-store.js';

function withStore(fn: (s: SqliteStore) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilot-events-'));
    const s = new SqliteStore(join(dir, 'pilot.db'));
    try {
      await fn(s);
    } finally {
      s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const NODE = {
  id: 'n1',
  name: 'alpha',
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
} as const;
const config = resolveAppConfig({ name: 'shop' }, undefined);

describe('store: events', () => {
  it(
    "a deploy's writes leave run, deploy, rollout and instance events in order, each heard once after commit",
    withStore(async (s) => {
      const heard: PilotEvent[] = [];
      s.subscribeEvents((batch) => heard.push(...batch));
      await s.upsertApp('shop', config, 1);
      await s.upsertNode({
        id: 'n1',
        name: 'alpha',
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
      await s.upsertNode({
        id: 'n1',
        name: 'alpha',
        address: '127.0.0.2',
        apiUrl: 'http://127.0.0.2:1',
        credentialHash: 'h',
        agentToken: 't',
        registeredAt: 1,
        lastSeenAt: 2,
        scheduling: 'eligible',
        cpus: undefined,
        memoryMb: undefined,
        labels: {},
        runtimes: {},
      });
      const run = await s.createRun({
        app: 'shop',
        trigger: 'cli',
        commit: 'a'.repeat(40),
        dirty: false,
        steps: [{ name: 'build', status: 'running' }],
        now: 2,
      });
      await s.updateRun(run.id, { steps: [{ name: 'build', status: 'succeeded' }] });
      await s.updateRun(run.id, { steps: [{ name: 'build', status: 'succeeded' }] }); // same steps: no event
      const rev = await s.createRevision({
        app: 'shop',
        artifact: `sha256:${'b'.repeat(64)}`,
        commit: 'a'.repeat(40),
        dirty: false,
        config,
        runId: run.id,
        createdAt: 3,
        image: undefined,
        nodeRuntime: undefined,
      });
      const ro = await s.createRollout({ app: 'shop', fromRevision: undefined, toRevision: rev.number, startedAt: 4 });
      await s.createInstance({ id: 'shop-1-aa', app: 'shop', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 5 });
      const st = { port: 4000, pid: 10, restarts: 0, lastError: undefined, startedAt: 5 } as const;
      await s.updateInstanceStatus('shop-1-aa', { ...st, state: 'starting' }, 6);
      await s.updateInstanceStatus('shop-1-aa', { ...st, state: 'starting', pid: 11 }, 6); // a new pid alone is not news
      await s.updateInstanceStatus('shop-1-aa', { ...st, state: 'ready' }, 7);
      await s.setActiveRevision('shop', 1, 8);
      await s.finishRollout(ro.id, 'succeeded', undefined, 9);
      await s.updateRun(run.id, { status: 'succeeded', finishedAt: 10 });
      await s.setInstanceDesired('shop-1-aa', 'stop', 11);
      await s.setInstanceDesired('shop-1-aa', 'stop', 11); // unchanged: no event
      await s.deleteInstance('shop-1-aa');
      await s.setNodeScheduling('n1', 'cordoned');
      const kinds = heard.map((e) => e.kind);
      assert.deepEqual(kinds, [
        'node.registered',
        'run.created',
        'run.steps',
        'deploy.revision',
        'rollout.started',
        'instance.placed',
        'instance.state',
        'instance.state',
        'deploy.activated',
        'rollout.finished',
        'run.status',
        'instance.desired',
        'instance.removed',
        'node.scheduling',
      ]);
      const stored = await s.readEvents({ after: 0, limit: 100 });
      assert.deepEqual(stored, heard, 'what the bus said is what the store holds');
      assert.deepEqual(
        stored.map((e) => e.id),
        [...stored.keys()].map((i) => i + 1),
        'ids increase by one',
      );
      assert.deepEqual(
        (await s.readEvents({ after: 0, app: 'shop', limit: 100 })).map((e) => e.kind).filter((k) => k.startsWith('node.')),
        [],
      );
      assert.deepEqual(heard[7]!.payload, {
        instance: 'shop-1-aa',
        revision: 1,
        node: 'alpha',
        state: 'ready',
        from: 'starting',
        port: 4000,
        restarts: 0,
        lastError: null,
        address: null,
      });
      assert.deepEqual(
        (await s.latestEvents({ limit: 2 })).map((e) => e.kind),
        ['instance.removed', 'node.scheduling'],
      );
      assert.deepEqual(await s.eventBounds(), { lastId: 14, trimmedThrough: 0 });
    }),
  );

  it(
    'a write that fails appends no event and publishes none',
    withStore(async (s) => {
      const heard: PilotEvent[] = [];
      s.subscribeEvents((batch) => heard.push(...batch));
      // No such app: the instance row violates its foreign key, so the whole write rolls back.
      await assert.rejects(s.createInstance({ id: 'x-1-aa', app: 'nope', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 1 }));
      assert.deepEqual(heard, []);
      assert.deepEqual(await s.readEvents({ after: 0, limit: 10 }), []);
      assert.equal((await s.eventBounds()).lastId, 0);
    }),
  );

  it(
    'removing an app says what stopped, ended and was cancelled',
    withStore(async (s) => {
      await s.upsertApp('shop', config, 1);
      await s.upsertNode(NODE);
      await s.createInstance({ id: 'shop-1-aa', app: 'shop', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 1 });
      await s.createRollout({ app: 'shop', fromRevision: undefined, toRevision: 1, startedAt: 1 });
      await s.enqueueWebhookRun({
        app: 'shop',
        deliveryId: 'd1',
        commit: 'c'.repeat(40),
        branch: 'main',
        message: 'm',
        author: 'a',
        now: 1,
      });
      const before = (await s.eventBounds()).lastId;
      assert.equal(await s.removeApp('shop', 2), true);
      const after = await s.readEvents({ after: before, limit: 10 });
      assert.deepEqual(
        after.map((e) => [e.kind, e.payload.status ?? e.payload.desired]),
        [
          ['instance.desired', 'stop'],
          ['rollout.finished', 'failed'],
          ['run.status', 'cancelled'],
        ],
      );
    }),
  );

  it(
    'retention keeps the newest N and none older than the cut, and remembers how far it went',
    withStore(async (s) => {
      for (let i = 1; i <= 50; i++) await s.appendEvent({ kind: 'node.status', app: undefined, time: i * 1000, payload: { n: i } });
      assert.equal(await s.trimEvents({ keep: 30, before: 0 }), 20);
      assert.deepEqual(await s.eventBounds(), { lastId: 50, trimmedThrough: 20 });
      assert.equal(await s.trimEvents({ keep: 1000, before: 25_500 }), 5); // times 21..25 s are older
      assert.deepEqual(await s.eventBounds(), { lastId: 50, trimmedThrough: 25 });
      assert.equal(await s.trimEvents({ keep: 1000, before: 0 }), 0);
      assert.equal((await s.eventBounds()).trimmedThrough, 25, 'never moves back');
      assert.equal((await s.readEvents({ after: 0, limit: 100 }))[0]!.id, 26);
      // Ids are never reused after a trim of everything.
      await s.trimEvents({ keep: 0, before: 0 });
      assert.equal((await s.appendEvent({ kind: 'node.status', app: undefined, time: 1, payload: {} })).id, 51);
    }),
  );

  it(
    'a listener that throws does not stop the write or the other listeners',
    withStore(async (s) => {
      const heard: number[] = [];
      s.subscribeEvents(() => {
        throw new Error('listener bug');
      });
      const off = s.subscribeEvents((b) => heard.push(...b.map((e) => e.id)));
      await s.appendEvent({ kind: 'node.status', app: undefined, time: 1, payload: {} });
      off();
      await s.appendEvent({ kind: 'node.status', app: undefined, time: 2, payload: {} });
      assert.deepEqual(heard, [1]);
      assert.equal((await s.eventBounds()).lastId, 2);
    }),
  );
});

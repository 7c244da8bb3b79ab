/**
 * The event part of the Store contract (store-contract.ts registers it for every store): for each
 * write, the events that follow it in the feed — kinds, app, the ids in their payload (run,
 * rollout, instance, revision, node), their order — and that the bus published them as one batch
 * after the change (none for a write that changes nothing or is refused). Callers rely on this:
 * `pilot events`, `pilot run`'s progress and the agents' long polls are woken by these events.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { resolveAppConfig } from '../core/app-config.js';
import type { EventKind, PilotEvent } from '../core/events.js';
import { basisOf, type Plan } from '../core/plan.js';
import type { StepRecord } from '../core/types.js';
import type { NodeRecord, Store, WebhookPush } from './store.js';

const sha = (c: string): string => c.repeat(40);
const digest = (c: string): string => `sha256:${c.repeat(64)}`;

/** What this part of the contract needs of store-contract.ts's StoreHarness (declared here: no import cycle). */
interface StoreHarness {
  readonly store: Store;
  reopen(): Store | Promise<Store>;
  cleanup(): void | Promise<void>;
}

/** One expected event: its kind, its app (null: a node event), and the payload fields to compare. */
type Expected = readonly [kind: EventKind, app: string | null, payload?: Readonly<Record<string, unknown>>];

function node(id: string, name: string, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id,
    name,
    address: '127.0.0.2',
    apiUrl: 'http://127.0.0.2:7071',
    credentialHash: `hash-${id}`,
    agentToken: `agent-${id}`,
    registeredAt: 1,
    lastSeenAt: 1,
    scheduling: 'eligible',
    cpus: 4,
    memoryMb: 2048,
    labels: {},
    runtimes: {},
    ...over,
  };
}

const push = (app: string, delivery: string, commit: string, now: number, branch = 'main'): WebhookPush => ({
  app,
  deliveryId: delivery,
  commit,
  branch,
  message: 'm',
  author: 'a',
  now,
});

/** Watches a store's feed: `expect(write, events)` runs the write and checks what it appended. */
class FeedWatch {
  private seen = 0;
  private readonly batches: PilotEvent[][] = [];
  private off: (() => void) | undefined;

  constructor(private readonly s: Store) {}

  async start(): Promise<this> {
    this.seen = (await this.s.eventBounds()).lastId;
    this.off = this.s.subscribeEvents((b) => this.batches.push([...b]));
    return this;
  }

  stop(): void {
    this.off?.();
  }

  /** Run `write`; the events it appended must be `expected`, in order, published as one batch. */
  async expect<T>(what: string, write: () => Promise<T>, expected: readonly Expected[]): Promise<T> {
    this.seen = (await this.s.eventBounds()).lastId; // what the set-up before this write appended is not its
    this.batches.length = 0;
    const value = await write();
    const events = await this.s.readEvents({ after: this.seen, limit: 1000 });
    const brief = events.map((e) => `${e.kind} ${e.app ?? '-'}`);
    assert.deepEqual(
      brief,
      expected.map(([k, a]) => `${k} ${a ?? '-'}`),
      `${what}: the events that followed`,
    );
    for (const [i, [, , payload]] of expected.entries()) {
      for (const [k, v] of Object.entries(payload ?? {})) assert.deepEqual(events[i]!.payload[k], v, `${what}: ${events[i]!.kind} .${k}`);
    }
    events.forEach((e, i) => assert.equal(e.id, this.seen + i + 1, `${what}: ids follow one another`));
    // Published once committed, as one batch (a write that appended nothing publishes nothing).
    assert.deepEqual(
      this.batches.map((b) => b.map((e) => e.id)),
      events.length === 0 ? [] : [events.map((e) => e.id)],
      `${what}: published as one batch`,
    );
    return value;
  }
}

/** Register the event contract for one store. */
export function storeEventContract(name: string, makeStore: () => Promise<StoreHarness>): void {
  async function setup(t: TestContext): Promise<{ s: Store; w: FeedWatch; h: StoreHarness; opened: Store[] }> {
    const h = await makeStore();
    const opened: Store[] = [h.store];
    const w = await new FeedWatch(h.store).start();
    t.after(async () => {
      w.stop();
      for (const s of opened.reverse()) s.close();
      await h.cleanup();
    });
    return { s: h.store, w, h, opened };
  }

  describe(`store contract: ${name}: events of each write`, () => {
    it('apps, revisions, rollouts: recorded, activated, started, finished; no event when nothing changes', async (t) => {
      const { s, w } = await setup(t);
      await w.expect('upsertApp', () => s.upsertApp('web', resolveAppConfig({}, 'web'), 1), []);
      await w.expect('setReplicas', () => s.setReplicas('web', 3, 2), []);
      await w.expect(
        'createRevision',
        () =>
          s.createRevision({
            app: 'web',
            artifact: digest('a'),
            commit: sha('a'),
            dirty: false,
            config: resolveAppConfig({}, 'web'),
            runId: 7,
            createdAt: 3,
            image: undefined,
            nodeRuntime: undefined,
          }),
        [['deploy.revision', 'web', { revision: 1, commit: sha('a'), artifact: digest('a'), run: 7, dirty: false }]],
      );
      await w.expect('setActiveRevision', () => s.setActiveRevision('web', 1, 4), [
        ['deploy.activated', 'web', { revision: 1, previous: null }],
      ]);
      await w.expect('setActiveRevision, same', () => s.setActiveRevision('web', 1, 5), []);
      await w.expect('setActiveRevision, unknown app', () => s.setActiveRevision('nope', 1, 5), []);
      const ro = await w.expect(
        'createRollout',
        () => s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 1, startedAt: 6 }),
        [['rollout.started', 'web', { fromRevision: null, toRevision: 1 }]],
      );
      const started = (await s.readEvents({ after: 0, limit: 100, kinds: ['rollout.started'] })).at(-1)!;
      assert.equal(started.payload.rollout, ro.id);
      await w.expect('finishRollout', () => s.finishRollout(ro.id, 'failed', 'probe failed\nlast output', 7), [
        ['rollout.finished', 'web', { rollout: ro.id, toRevision: 1, status: 'failed', reason: 'probe failed\nlast output' }],
      ]);
      await w.expect('finishRollout, same status', () => s.finishRollout(ro.id, 'failed', 'again', 8), []);
      await w.expect('setActiveRevision to none', () => s.setActiveRevision('web', undefined, 9), [
        ['deploy.activated', 'web', { revision: null, previous: 1 }],
      ]);
    });

    it('nodes and instances: registered, scheduling, placed, desired, state, removed', async (t) => {
      const { s, w } = await setup(t);
      await s.upsertApp('web', resolveAppConfig({}, 'web'), 1);
      await w.expect('upsertNode', () => s.upsertNode(node('n1', 'node-1')), [
        ['node.registered', null, { node: 'node-1', address: '127.0.0.2' }],
      ]);
      await w.expect('upsertNode again', () => s.upsertNode(node('n1', 'node-1', { lastSeenAt: 5, address: '127.0.0.3' })), []);
      await w.expect('touchNode', () => s.touchNode('n1', 6), []);
      await w.expect('setNodeScheduling', () => s.setNodeScheduling('n1', 'draining'), [
        ['node.scheduling', null, { node: 'node-1', scheduling: 'draining', from: 'eligible' }],
      ]);
      await w.expect('setNodeScheduling, same', () => s.setNodeScheduling('n1', 'draining'), []);
      await w.expect(
        'createInstance',
        () => s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 7 }),
        [['instance.placed', 'web', { instance: 'web-1-a', revision: 1, node: 'node-1', kind: 'web', desired: 'run' }]],
      );
      await w.expect(
        'createInstance, release',
        () => s.createInstance({ id: 'web-1-r', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 7, kind: 'release' }),
        [['instance.placed', 'web', { instance: 'web-1-r', kind: 'release' }]],
      );
      const report = { state: 'ready' as const, port: 4000, pid: 100, restarts: 0, lastError: undefined, startedAt: 8 };
      await w.expect('updateInstanceStatus', () => s.updateInstanceStatus('web-1-a', report, 8), [
        [
          'instance.state',
          'web',
          {
            instance: 'web-1-a',
            revision: 1,
            node: 'node-1',
            state: 'ready',
            from: 'pending',
            port: 4000,
            restarts: 0,
            lastError: null,
            address: null,
          },
        ],
      ]);
      await w.expect('updateInstanceStatus, a new pid only', () => s.updateInstanceStatus('web-1-a', { ...report, pid: 101 }, 9), []);
      await w.expect(
        'updateInstanceStatus, a crash',
        () => s.updateInstanceStatus('web-1-a', { ...report, state: 'failed', restarts: 1, lastError: 'exit 1' }, 10),
        [['instance.state', 'web', { state: 'failed', from: 'ready', restarts: 1, lastError: 'exit 1' }]],
      );
      await w.expect('updateInstanceStatus, unknown', () => s.updateInstanceStatus('nope', report, 10), []);
      await w.expect('setInstanceDesired', () => s.setInstanceDesired('web-1-a', 'drain', 11), [
        ['instance.desired', 'web', { instance: 'web-1-a', revision: 1, desired: 'drain' }],
      ]);
      await w.expect('setInstanceDesired, same', () => s.setInstanceDesired('web-1-a', 'drain', 12), []);
      await w.expect('setInstanceDesired, unknown', () => s.setInstanceDesired('nope', 'stop', 12), []);
      await w.expect('deleteInstance', () => s.deleteInstance('web-1-a'), [
        ['instance.removed', 'web', { instance: 'web-1-a', revision: 1 }],
      ]);
      await w.expect('deleteInstance, gone', () => s.deleteInstance('web-1-a'), []);
      await w.expect(
        'createInstance, refused',
        () => assert.rejects(s.createInstance({ id: 'x', app: 'web', revision: 1, nodeId: 'no-node', desired: 'run', createdAt: 1 })),
        [],
      );
    });

    it('runs: created, steps, status; queue moves (supersede, claim, recovery, interrupt, a rollback ended with its rollout)', async (t) => {
      const { s, w } = await setup(t);
      const steps: StepRecord[] = [
        { name: 'source', status: 'pending' },
        { name: 'build', status: 'pending' },
      ];
      const cli = await w.expect(
        'createRun',
        () => s.createRun({ app: 'web', trigger: 'cli', commit: sha('a'), dirty: false, steps, now: 5 }),
        [['run.created', 'web', { trigger: 'cli', commit: sha('a'), status: 'running' }]],
      );
      const running: StepRecord[] = [{ name: 'source', status: 'running', startedAt: 6 }, steps[1]!];
      await w.expect('updateRun, steps', () => s.updateRun(cli.id, { steps: running }), [
        [
          'run.steps',
          'web',
          {
            run: cli.id,
            steps: [
              { name: 'source', status: 'running' },
              { name: 'build', status: 'pending' },
            ],
          },
        ],
      ]);
      await w.expect('updateRun, the same steps', () => s.updateRun(cli.id, { steps: running }), []);
      await w.expect('updateRun, fields only', () => s.updateRun(cli.id, { artifact: digest('b'), revision: 2, rolloutId: 3 }), []);
      await w.expect(
        'updateRun, steps and status',
        () =>
          s.updateRun(cli.id, {
            steps: [{ ...running[0]!, status: 'failed' }, steps[1]!],
            status: 'failed',
            error: 'build: exit 1\nmore',
            finishedAt: 9,
          }),
        [
          ['run.steps', 'web', { run: cli.id }],
          ['run.status', 'web', { run: cli.id, status: 'failed', from: 'running', error: 'build: exit 1', revision: null, rollout: null }],
        ],
      );
      const ev = (await s.readEvents({ after: 0, limit: 100, kinds: ['run.status'] })).at(-1)!;
      assert.equal(ev.time, 9, 'a run event is timed by the run’s finish');
      await w.expect(
        'updateRun, refused compare-and-set',
        () => assert.rejects(s.updateRun(cli.id, { status: 'succeeded', ifStatus: 'running' })),
        [],
      );

      const first = await w.expect('enqueueWebhookRun', () => s.enqueueWebhookRun(push('web', 'd1', sha('1'), 10)), [
        ['run.created', 'web', { trigger: 'webhook', commit: sha('1'), status: 'queued', branch: 'main' }],
      ]);
      const second = await w.expect('enqueueWebhookRun, a newer push', () => s.enqueueWebhookRun(push('web', 'd2', sha('2'), 11)), [
        ['run.created', 'web', { trigger: 'webhook', commit: sha('2'), status: 'queued' }],
        ['run.status', 'web', { run: first.run.id, status: 'superseded', from: 'queued' }],
      ]);
      assert.equal((await s.readEvents({ after: 0, limit: 100 })).at(-1)!.payload.supersededBy, second.run.id);
      await w.expect('enqueueWebhookRun, duplicate delivery', () => s.enqueueWebhookRun(push('web', 'd2', sha('2'), 12)), []);
      await w.expect('claimNextRun', () => s.claimNextRun(new Set(), 20), [
        ['run.status', 'web', { run: second.run.id, status: 'running', from: 'queued' }],
      ]);
      await w.expect('claimNextRun, nothing queued', () => s.claimNextRun(new Set(), 21), []);
      const other = await s.createRun({ app: 'api', trigger: 'cli', commit: undefined, dirty: false, steps, now: 21 });
      const retryId = Math.max(other.id, second.run.id) + 1;
      await w.expect('recoverInterruptedRuns', () => s.recoverInterruptedRuns(30), [
        ['run.created', 'web', { run: retryId, trigger: 'webhook', commit: sha('2'), status: 'queued', retryOf: second.run.id }],
        ['run.status', 'web', { run: second.run.id, status: 'interrupted', from: 'running' }],
        ['run.status', 'api', { run: other.id, status: 'interrupted', from: 'running' }],
      ]);
      const fg = await s.createRun({ app: 'api', trigger: 'cli', commit: undefined, dirty: false, steps, now: 31 });
      const rb = await s.createRun({
        app: 'web',
        trigger: 'rollback',
        commit: sha('1'),
        dirty: false,
        steps: [{ name: 'deploy', status: 'running' }],
        now: 31,
      });
      await s.updateRun(rb.id, { rolloutId: 42 });
      await w.expect('interruptForegroundRuns', () => s.interruptForegroundRuns(32), [
        ['run.status', 'api', { run: fg.id, status: 'interrupted', from: 'running' }],
      ]);
      await w.expect('finishRolloutRuns', () => s.finishRolloutRuns(42, 'succeeded', undefined, 33), [
        ['run.status', 'web', { run: rb.id, status: 'succeeded', from: 'running', error: null, rollout: 42 }],
      ]);
      await w.expect('finishRolloutRuns, again', () => s.finishRolloutRuns(42, 'succeeded', undefined, 34), []);
    });

    it('removing an app: its instances desired stop, its rollout ended, its queued runs cancelled, in that order', async (t) => {
      const { s, w } = await setup(t);
      await s.upsertApp('web', resolveAppConfig({}, 'web'), 1);
      await s.upsertNode(node('n1', 'node-1'));
      await s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 });
      await s.createInstance({ id: 'web-1-b', app: 'web', revision: 1, nodeId: 'n1', desired: 'stop', createdAt: 3 });
      await s.createInstance({ id: 'web-1-c', app: 'web', revision: 1, nodeId: 'n1', desired: 'drain', createdAt: 4 });
      const ro = await s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 1, startedAt: 5 });
      const q = await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 6));
      await w.expect('removeApp', () => s.removeApp('web', 10), [
        ['instance.desired', 'web', { instance: 'web-1-a', desired: 'stop', reason: 'app removed' }],
        ['instance.desired', 'web', { instance: 'web-1-c', desired: 'stop' }],
        ['rollout.finished', 'web', { rollout: ro.id, toRevision: 1, status: 'failed', reason: 'app removed' }],
        ['run.status', 'web', { run: q.run.id, status: 'cancelled', error: 'the app was removed' }],
      ]);
      await w.expect('removeApp, again', () => s.removeApp('web', 11), []);
      await w.expect('upsertApp while removing (refused)', () => assert.rejects(s.upsertApp('web', resolveAppConfig({}, 'web'), 12)), []);
      await w.expect('purgeRemovedApps', () => s.purgeRemovedApps(), []);
    });

    it('a committed plan: the plan, then each placement, desired change, activation, the rollout’s end and its rollback run', async (t) => {
      const { s, w } = await setup(t);
      await s.upsertApp('web', resolveAppConfig({}, 'web'), 1);
      await s.upsertNode(node('n1', 'node-1'));
      await s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 });
      await s.createInstance({ id: 'web-1-b', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 });
      const ro = await s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 2, startedAt: 3 });
      const rb = await s.createRun({
        app: 'web',
        trigger: 'rollback',
        commit: sha('1'),
        dirty: false,
        steps: [{ name: 'deploy', status: 'running' }],
        now: 3,
      });
      await s.updateRun(rb.id, { rolloutId: ro.id });
      const basis = async (): Promise<string> => {
        const a = await s.getApp('web');
        return basisOf({
          app: a && { activeRevision: a.activeRevision, replicas: a.replicas },
          rolloutId: (await s.activeRollout('web'))?.id,
          instances: await s.listInstances({ app: 'web' }),
        });
      };
      const plan = (b: string): Plan => ({
        app: 'web',
        basis: b,
        rolloutId: ro.id,
        placements: [{ revision: 2, nodeId: 'n1', kind: 'web' }],
        desired: [
          { id: 'web-1-a', desired: 'drain', why: 'planner' },
          { id: 'web-1-b', desired: 'run', why: 'planner' },
        ],
        activate: 2,
        finish: { status: 'succeeded', reason: undefined },
        volumes: undefined,
        unplaced: undefined,
      });
      await w.expect(
        'commitPlan, stale',
        async () => assert.equal((await s.commitPlan({ plan: plan('stale'), instanceIds: ['web-2-x'], now: 9 })).committed, false),
        [],
      );
      const b = await basis();
      await w.expect('commitPlan', () => s.commitPlan({ plan: plan(b), instanceIds: ['web-2-x'], now: 10 }), [
        ['deploy.plan', 'web', { rollout: ro.id, activate: 2, finish: 'succeeded', drain: ['web-1-a'], stop: [] }],
        ['instance.placed', 'web', { instance: 'web-2-x', revision: 2, node: 'node-1', kind: 'web', desired: 'run' }],
        ['instance.desired', 'web', { instance: 'web-1-a', revision: 1, desired: 'drain' }],
        ['deploy.activated', 'web', { revision: 2, previous: null }],
        ['rollout.finished', 'web', { rollout: ro.id, toRevision: 2, status: 'succeeded', reason: null }],
        ['run.status', 'web', { run: rb.id, status: 'succeeded', from: 'running', rollout: ro.id }],
      ]);
    });

    it('a second store over the same database reads the events the first wrote', async (t) => {
      const { s, h, opened } = await setup(t);
      await s.createRun({ app: 'web', trigger: 'cli', commit: undefined, dirty: false, steps: [], now: 1 });
      const other = await h.reopen();
      opened.push(other);
      const seen = await other.readEvents({ after: 0, limit: 10 });
      assert.deepEqual(
        seen.map((e) => e.kind),
        ['run.created'],
      );
      assert.deepEqual(await other.eventBounds(), await s.eventBounds());
    });
  });
}

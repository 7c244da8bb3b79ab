/**
 * The contract every Store honours, run against each implementation from its own test file
 * (sqlite-store.contract.test.ts, memory-store.contract.test.ts; a PostgreSQL store adds its own).
 * It states what the callers (control/, cd/) rely on, not how a store does it: orderings, what a
 * write keeps and what it replaces, what is refused, and which calls are atomic with respect to
 * each other (the run queue: a run is claimed exactly once).
 *
 * The contract for store-specific matters lives in the harness: how to open a second connection to
 * the same database (a restarted or second server) and how to open what `backup` wrote.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig, type AppConfig } from '../core/app-config.js';
import { isPilotError } from '../core/errors.js';
import type { RunRecord } from '../core/types.js';
import { basisOf, type Plan } from '../core/plan.js';
import type { NodeRecord, RevisionRecord, Store, WebhookPush } from './store.js';
import { storeNotifyContract } from './store-contract-notify.js';
import { storeEventContract } from './store-contract-events.js';

export interface StoreHarness {
  /** A store over a new, empty database. */
  readonly store: Store;
  /** Another store over the same database: a restarted server, or a second one beside it. */
  reopen(): Store | Promise<Store>;
  /** A store over what `store.backup(file)` wrote. */
  openBackup(file: string): Store | Promise<Store>;
  /** Remove what the harness made (files, databases); the stores are closed by the suite. */
  cleanup(): void | Promise<void>;
}

const sha = (c: string): string => c.repeat(40);
const digest = (c: string): string => `sha256:${c.repeat(64)}`;
/** What a JSON column gives back: fields set to undefined are absent. */
const json = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const isCode =
  (code: string) =>
  (e: unknown): boolean =>
    isPilotError(e) && e.code === code;

/** Configs of several shapes: defaults, everything set, hostile text in values. */
function configs(name: string): AppConfig[] {
  return [
    resolveAppConfig({}, name),
    resolveAppConfig(
      {
        replicas: 3,
        hosts: ['shop.example.com', 'www.shop.example.com'],
        env: { A: '1', QUOTE: `'"; DROP TABLE apps; --`, UNI: 'héllo ✓ 日本' },
        constraints: { zone: 'eu-1' },
        resources: { cpu: 0.5, memory: '256MB' },
        health: { path: '/healthz' },
      },
      name,
    ),
    resolveAppConfig({ runtime: 'docker', volumes: [{ name: 'data' }], run: ['node', 'server.js'], build: ['npm run build'] }, name),
  ];
}

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
    labels: { zone: 'a' },
    runtimes: { docker: { available: false, error: 'no engine' } },
    ...over,
  };
}

function revision(app: string, over: Partial<Omit<RevisionRecord, 'number'>> = {}): Omit<RevisionRecord, 'number'> {
  return {
    app,
    artifact: digest('a'),
    commit: sha('a'),
    dirty: false,
    config: resolveAppConfig({}, app),
    runId: undefined,
    createdAt: 10,
    image: undefined,
    nodeRuntime: undefined,
    ...over,
  };
}

const push = (app: string, delivery: string, commit: string, now = 10, branch = 'main'): WebhookPush => ({
  app,
  deliveryId: delivery,
  commit,
  branch,
  message: 'fix: the thing',
  author: 'Zoë <z@example.com>',
  now,
});

/** Register the Store contract tests for one implementation. */
export function storeContract(name: string, makeStore: () => Promise<StoreHarness>): void {
  // The events each write appends (store-contract-events.ts).
  storeEventContract(name, makeStore);
  storeNotifyContract(name, makeStore);
  /** A fresh harness; every store opened through it is closed and the harness cleaned after the test, even when it fails. */
  async function setup(
    t: TestContext,
  ): Promise<{ s: Store; h: StoreHarness; reopen: () => Promise<Store>; openBackup: (f: string) => Promise<Store>; tmp: () => string }> {
    const h = await makeStore();
    const opened: Store[] = [h.store];
    const dirs: string[] = [];
    t.after(async () => {
      for (const s of opened.reverse()) s.close();
      await h.cleanup();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
    const track = async (p: Store | Promise<Store>): Promise<Store> => {
      const s = await p;
      opened.push(s);
      return s;
    };
    return {
      s: h.store,
      h,
      reopen: () => track(h.reopen()),
      openBackup: (f) => track(h.openBackup(f)),
      tmp: () => {
        const d = mkdtempSync(join(tmpdir(), 'pilot-contract-'));
        dirs.push(d);
        return d;
      },
    };
  }

  describe(`store contract: ${name}: certificates`, () => {
    it('keeps certificates by host (replaced whole, listed by host, survive a reopen) and ACME account keys by directory', async (t) => {
      const { s, reopen } = await setup(t);
      assert.equal(await s.getCertificate('a.example'), undefined);
      await s.putCertificate({ host: 'b.example', source: 'acme', state: 'pending', attempts: 0, updatedAt: 1 });
      await s.putCertificate({
        host: 'a.example',
        source: 'user',
        certSealed: 'v1:c',
        keySealed: 'v1:k',
        issuer: 'Me',
        notAfter: 99,
        state: 'valid',
        attempts: 0,
        updatedAt: 2,
      });
      await s.putCertificate({
        host: 'b.example',
        source: 'acme',
        state: 'failed',
        lastError: 'challenge failed',
        attempts: 2,
        nextAttemptAt: 50,
        updatedAt: 3,
      });
      assert.deepEqual(
        (await s.listCertificates()).map((c) => [c.host, c.source, c.state, c.attempts, c.lastError, c.nextAttemptAt, c.keySealed]),
        [
          ['a.example', 'user', 'valid', 0, undefined, undefined, 'v1:k'],
          ['b.example', 'acme', 'failed', 2, 'challenge failed', 50, undefined],
        ],
      );
      await s.putAcmeAccountKey('https://acme.test/dir', 'v1:account', 4);
      const again = await reopen();
      assert.equal((await again.getCertificate('a.example'))?.notAfter, 99);
      assert.equal(await again.getAcmeAccountKey('https://acme.test/dir'), 'v1:account');
      assert.equal(await again.getAcmeAccountKey('https://other.test/dir'), undefined);
      assert.equal(await again.deleteCertificate('a.example'), true);
      assert.equal(await again.deleteCertificate('a.example'), false);
      assert.deepEqual(
        (await again.listCertificates()).map((c) => c.host),
        ['b.example'],
      );
    });
  });

  describe(`store contract: ${name}: apps`, () => {
    it("creates an app with its config's replicas, no active revision and no source, listed by name", async (t) => {
      const { s } = await setup(t);
      const [plain, full, docker] = [configs('web')[0]!, configs('api')[1]!, configs('db')[2]!];
      for (const [n, c] of [
        ['web', plain],
        ['api', full],
        ['db', docker],
      ] as const) {
        const rec = await s.upsertApp(n, c, 5);
        assert.deepEqual(rec, await s.getApp(n));
        assert.deepEqual(rec.config, json(c));
        assert.deepEqual(
          [rec.replicas, rec.activeRevision, rec.repo, rec.branch, rec.webhookSecret, rec.createdAt, rec.updatedAt],
          [c.replicas, undefined, undefined, undefined, undefined, 5, 5],
        );
      }
      assert.deepEqual(
        (await s.listApps()).map((a) => a.name),
        ['api', 'db', 'web'],
      );
      assert.equal(await s.getApp('nope'), undefined);
    });

    it('an update replaces the config and keeps replicas, creation time, active revision and source', async (t) => {
      const { s } = await setup(t);
      const [one, three] = configs('web');
      await s.setAppSource(
        'web',
        one!,
        { repo: '/srv/web.git', branch: 'main', webhookSecret: 'v1:sealed', githubToken: 'v1:tok', statusApiUrl: 'http://127.0.0.1:9/api' },
        1,
      );
      await s.createRevision(revision('web'));
      await s.setActiveRevision('web', 1, 2);
      await s.setReplicas('web', 5, 3);
      const rec = await s.upsertApp('web', three!, 4);
      assert.deepEqual(rec.config, json(three));
      assert.deepEqual(
        [
          rec.replicas,
          rec.activeRevision,
          rec.createdAt,
          rec.updatedAt,
          rec.repo,
          rec.branch,
          rec.webhookSecret,
          rec.githubToken,
          rec.statusApiUrl,
        ],
        [5, 1, 1, 4, '/srv/web.git', 'main', 'v1:sealed', 'v1:tok', 'http://127.0.0.1:9/api'],
      );
      await s.setActiveRevision('web', undefined, 6);
      assert.equal((await s.getApp('web'))?.activeRevision, undefined);
    });

    it('setAutoscaledReplicas changes the count only from the count the decision saw, with an autoscale.changed event', async (t) => {
      const { s } = await setup(t);
      const [one] = configs('web');
      await s.upsertApp('web', one!, 1);
      await s.setReplicas('web', 2, 2, 'autoscaler');
      assert.equal(await s.setAutoscaledReplicas('web', { from: 2, to: 4, reason: 'load' }, 3), true);
      const a = await s.getApp('web');
      assert.deepEqual([a?.replicas, a?.replicasSource], [4, 'autoscaler']);
      // A stale decision (the count moved since) changes nothing and writes no event.
      assert.equal(await s.setAutoscaledReplicas('web', { from: 2, to: 1, reason: 'stale' }, 4), false);
      assert.equal((await s.getApp('web'))?.replicas, 4);
      assert.equal(await s.setAutoscaledReplicas('ghost', { from: 0, to: 1, reason: 'x' }, 5), false);
      const events = await s.readEvents({ after: 0, app: 'web', limit: 100, kinds: ['autoscale.changed'] });
      assert.deepEqual(
        events.map((e) => e.payload),
        [{ from: 2, to: 4, reason: 'load' }],
      );
    });

    it('setReplicas and setActiveRevision of an unknown app change nothing and create nothing', async (t) => {
      const { s } = await setup(t);
      await s.setReplicas('ghost', 3, 1);
      await s.setActiveRevision('ghost', 2, 1);
      assert.deepEqual(await s.listApps(), []);
      assert.deepEqual(await s.removingApps(), []);
    });

    it("setAppSource creates a missing app with the defaults given, and keeps an existing app's config", async (t) => {
      const { s } = await setup(t);
      const [defaults, custom] = configs('web');
      const src = {
        repo: 'https://github.com/o/web.git',
        branch: 'release/1.x',
        webhookSecret: 'v1:' + 'A'.repeat(200),
        githubToken: undefined,
        statusApiUrl: undefined,
      };
      const created = await s.setAppSource('web', defaults!, src, 1);
      assert.deepEqual(
        [created.config, created.replicas, created.repo, created.branch, created.webhookSecret, created.githubToken],
        [json(defaults), defaults!.replicas, src.repo, src.branch, src.webhookSecret, undefined],
      );
      await s.upsertApp('web', custom!, 2);
      const again = await s.setAppSource('web', defaults!, { ...src, branch: 'main' }, 3);
      assert.deepEqual([again.config, again.branch, again.createdAt], [json(custom), 'main', 1]);
    });

    it('reads a config stored before `volumes` existed as one with no volumes', async (t) => {
      const { s } = await setup(t);
      const { volumes: _omitted, ...old } = resolveAppConfig({ name: 'legacy' }, undefined);
      await s.upsertApp('legacy', old as AppConfig, 1);
      assert.deepEqual((await s.getApp('legacy'))?.config.volumes, []);
      assert.deepEqual((await s.listApps())[0]?.config.volumes, []);
    });

    it('removes an app in two steps: hidden, stopping, source and secrets dropped at once; rows gone with its last instance', async (t) => {
      const { s } = await setup(t);
      await s.upsertNode(node('n1', 'node-1'));
      await s.setAppSource(
        'web',
        configs('web')[0]!,
        { repo: '/srv/web.git', branch: 'main', webhookSecret: 'v1:x', githubToken: 'v1:y', statusApiUrl: undefined },
        1,
      );
      await s.upsertApp('other', configs('other')[0]!, 1);
      await s.createRevision(revision('web'));
      const ro = await s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 1, startedAt: 2 });
      const otherRo = await s.createRollout({ app: 'other', fromRevision: undefined, toRevision: 1, startedAt: 2 });
      await s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 3 });
      await s.createInstance({ id: 'web-1-b', app: 'web', revision: 1, nodeId: 'n1', desired: 'drain', createdAt: 3 });
      await s.createInstance({ id: 'other-1-a', app: 'other', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 3 });
      await s.setSecret('web', 'TOKEN', 'v1:sealed', 3);
      await s.setSecret('other', 'TOKEN', 'v1:other', 3);
      await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 4));
      const running = await s.claimNextRun(new Set(), 4);
      const queued = await s.enqueueWebhookRun(push('web', 'd2', sha('2'), 5, 'other-branch'));

      assert.equal(await s.removeApp('web', 6), true);
      assert.equal(await s.removeApp('web', 7), false, 'already being removed');
      assert.equal(await s.removeApp('never', 7), false, 'no such app');
      assert.equal(await s.getApp('web'), undefined);
      assert.deepEqual(
        (await s.listApps()).map((a) => a.name),
        ['other'],
      );
      assert.deepEqual(await s.removingApps(), ['web']);
      assert.deepEqual(
        (await s.listInstances({ app: 'web' })).map((i) => [i.id, i.desired, i.updatedAt]),
        [
          ['web-1-a', 'stop', 6],
          ['web-1-b', 'stop', 6],
        ],
      );
      assert.equal((await s.listInstances({ app: 'other' }))[0]?.desired, 'run', 'another app is untouched');
      assert.deepEqual(await s.getRollout(ro.id), { ...ro, status: 'failed', reason: 'app removed', finishedAt: 6 });
      assert.equal(await s.activeRollout('web'), undefined);
      assert.equal((await s.activeRollout('other'))?.id, otherRo.id);
      const q = await s.getRun(queued.run.id);
      assert.deepEqual([q?.status, q?.finishedAt, q?.error], ['cancelled', 6, 'the app was removed']);
      assert.equal((await s.getRun(running!.id))?.status, 'running', 'a run already going ends by itself');
      assert.deepEqual(await s.listSecrets('web'), []);
      assert.equal((await s.listSecrets('other')).length, 1);
      // Nothing writes to an app being removed: it would hand its leftovers to a new app of that name.
      await assert.rejects(s.upsertApp('web', configs('web')[0]!, 8), isCode('app_removing'));
      await assert.rejects(
        s.setAppSource(
          'web',
          configs('web')[0]!,
          { repo: '/x', branch: 'main', webhookSecret: 'v1:z', githubToken: undefined, statusApiUrl: undefined },
          8,
        ),
        isCode('app_removing'),
      );

      await s.setSecret('web', 'LATE', 'v1:raced', 8); // a write that raced the removal: purged with the app
      assert.deepEqual(await s.purgeRemovedApps(), [], 'instances are still there');
      await s.deleteInstance('web-1-a');
      assert.deepEqual(await s.purgeRemovedApps(), [], 'one instance is still there');
      await s.deleteInstance('web-1-b');
      assert.deepEqual(await s.purgeRemovedApps(), ['web']);
      assert.deepEqual(await s.purgeRemovedApps(), []);
      assert.deepEqual(await s.removingApps(), []);
      assert.deepEqual(await s.listRevisions('web'), []);
      assert.deepEqual(await s.listRollouts('web', 10), []);
      assert.equal(await s.getRollout(ro.id), undefined);
      assert.equal((await s.getRun(queued.run.id))?.status, 'cancelled', 'runs stay as history');
      // The name is free again: a new app starts from nothing.
      const fresh = await s.upsertApp('web', configs('web')[1]!, 9);
      assert.deepEqual([fresh.createdAt, fresh.repo, fresh.activeRevision, fresh.replicas], [9, undefined, undefined, 3]);
      assert.equal((await s.createRevision(revision('web'))).number, 1);
      assert.deepEqual(await s.listSecrets('web'), []);
    });

    it('purges several removed apps in name order, only those without instances', async (t) => {
      const { s } = await setup(t);
      await s.upsertNode(node('n1', 'node-1'));
      for (const n of ['zeta', 'alpha', 'mid']) await s.upsertApp(n, configs(n)[0]!, 1);
      await s.createInstance({ id: 'mid-1-x', app: 'mid', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 });
      for (const n of ['zeta', 'alpha', 'mid']) assert.equal(await s.removeApp(n, 3), true);
      assert.deepEqual(await s.removingApps(), ['alpha', 'mid', 'zeta']);
      assert.deepEqual(await s.purgeRemovedApps(), ['alpha', 'zeta']);
      assert.deepEqual(await s.removingApps(), ['mid']);
    });
  });

  describe(`store contract: ${name}: revisions`, () => {
    it('numbers revisions per app from 1, lists them newest first, and keeps image and runtime', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      await s.upsertApp('api', configs('api')[0]!, 1);
      const image = { id: digest('c'), ref: '127.0.0.1:5000/web@' + digest('d'), archive: undefined };
      const nodeRuntime = {
        version: '22.11.0',
        digest: digest('e'),
        source: 'engines.node "22.x"',
        npm: { version: '10.9.0', digest: digest('f') },
      };
      const r1 = await s.createRevision(revision('web', { createdAt: 2 }));
      const a1 = await s.createRevision(revision('api', { createdAt: 2 }));
      const r2 = await s.createRevision(
        revision('web', { dirty: true, image, config: configs('web')[2]!, createdAt: 3, commit: sha('b'), runId: 77 }),
      );
      const r3 = await s.createRevision(revision('web', { nodeRuntime, createdAt: 4 }));
      assert.deepEqual([r1.number, r2.number, r3.number, a1.number], [1, 2, 3, 1]);
      assert.deepEqual(await s.getRevision('web', 2), r2);
      assert.deepEqual((await s.getRevision('web', 2))?.image, json(image));
      assert.deepEqual((await s.getRevision('web', 3))?.nodeRuntime, nodeRuntime);
      assert.deepEqual(
        [(await s.getRevision('web', 2))?.dirty, (await s.getRevision('web', 2))?.runId, (await s.getRevision('web', 1))?.runId],
        [true, 77, undefined],
      );
      assert.deepEqual(
        (await s.listRevisions('web')).map((r) => r.number),
        [3, 2, 1],
      );
      assert.deepEqual(
        (await s.listRevisions('api')).map((r) => r.number),
        [1],
      );
      assert.equal(await s.getRevision('web', 4), undefined);
      assert.equal(await s.getRevision('nope', 1), undefined);
      assert.deepEqual(await s.listRevisions('nope'), []);
    });

    it("never changes a revision: not by the caller's objects, not by a new app config", async (t) => {
      const { s } = await setup(t);
      const config = configs('web')[1]!;
      await s.upsertApp('web', config, 1);
      const input = json(revision('web', { config }));
      const made = await s.createRevision(input);
      (input.config.env as Record<string, string>).A = 'changed after';
      (made.config.env as Record<string, string>).A = 'changed the copy';
      await s.upsertApp('web', configs('web')[0]!, 2);
      const stored = await s.getRevision('web', 1);
      assert.equal(stored?.config.env.A, '1');
      assert.deepEqual(stored?.config, json(config));
    });

    it('refuses a revision or rollout of an app that does not exist', async (t) => {
      const { s } = await setup(t);
      await assert.rejects(s.createRevision(revision('ghost')));
      await assert.rejects(s.createRollout({ app: 'ghost', fromRevision: undefined, toRevision: 1, startedAt: 1 }));
      assert.deepEqual(await s.listRevisions('ghost'), []);
    });

    it('gives distinct consecutive numbers to revisions created at once', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      const made = await Promise.all(Array.from({ length: 12 }, (_, i) => s.createRevision(revision('web', { createdAt: i }))));
      assert.deepEqual(
        made.map((r) => r.number).sort((a, b) => a - b),
        Array.from({ length: 12 }, (_, i) => i + 1),
      );
    });
  });

  describe(`store contract: ${name}: rollouts`, () => {
    it('a rollout runs until finished; the active one is the newest running; listed newest first with a limit', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      await s.upsertApp('api', configs('api')[0]!, 1);
      const r1 = await s.createRollout({ app: 'web', fromRevision: undefined, toRevision: 1, startedAt: 2 });
      assert.deepEqual(r1, {
        id: r1.id,
        app: 'web',
        fromRevision: undefined,
        toRevision: 1,
        status: 'running',
        reason: undefined,
        startedAt: 2,
        finishedAt: undefined,
        strategy: undefined,
        progress: { step: 0, weight: 0, since: undefined, command: undefined, verdict: undefined },
      });
      assert.deepEqual(await s.activeRollout('web'), r1);
      assert.equal(await s.activeRollout('api'), undefined);
      // The deploy's protocol: the previous rollout ends before the next starts, so one is active.
      await s.finishRollout(r1.id, 'failed', 'superseded by revision 2', 3);
      const r2 = await s.createRollout({ app: 'web', fromRevision: 1, toRevision: 2, startedAt: 3 });
      assert.ok(r2.id > r1.id);
      assert.deepEqual(await s.activeRollout('web'), r2);
      await s.finishRollout(r2.id, 'succeeded', undefined, 4);
      assert.equal(await s.activeRollout('web'), undefined);
      assert.deepEqual(await s.getRollout(r2.id), { ...r2, status: 'succeeded', reason: undefined, finishedAt: 4 });
      assert.deepEqual(await s.getRollout(r1.id), { ...r1, status: 'failed', reason: 'superseded by revision 2', finishedAt: 3 });
      const a1 = await s.createRollout({ app: 'api', fromRevision: undefined, toRevision: 1, startedAt: 5 });
      const r3 = await s.createRollout({ app: 'web', fromRevision: 2, toRevision: 1, startedAt: 6 });
      assert.deepEqual(
        (await s.listRollouts('web', 10)).map((r) => r.id),
        [r3.id, r2.id, r1.id],
      );
      assert.deepEqual(
        (await s.listRollouts('web', 2)).map((r) => r.id),
        [r3.id, r2.id],
      );
      assert.deepEqual(
        (await s.listRollouts('api', 10)).map((r) => r.id),
        [a1.id],
      );
      assert.equal(await s.getRollout(9999), undefined);
      // Without the protocol (two running), the newest is the active one.
      const r4 = await s.createRollout({ app: 'web', fromRevision: 1, toRevision: 3, startedAt: 7 });
      assert.equal((await s.activeRollout('web'))?.id, r4.id);
    });

    it('a rollout keeps its strategy; a command is recorded only while it runs; a plan records its progress', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      const strategy = {
        type: 'canary',
        steps: [
          { weight: 10, pauseMs: 1000 },
          { weight: 100, pauseMs: 0 },
        ],
        analysis: {
          maxErrorRate: 0.01,
          maxP99Ms: undefined,
          maxErrorRateIncrease: undefined,
          minRequests: 5,
          windowMs: 30_000,
          allowIdle: false,
        },
      } as const;
      const r = await s.createRollout({ app: 'web', fromRevision: 1, toRevision: 2, startedAt: 2, strategy });
      // (as data: a field left undefined is absent once stored)
      assert.deepEqual((await s.getRollout(r.id))?.strategy, JSON.parse(JSON.stringify(strategy)));
      assert.equal(await s.setRolloutCommand(r.id, 'promote', 3), true);
      assert.equal((await s.getRollout(r.id))?.progress?.command, 'promote');
      const plan = (progress: NonNullable<Plan['progress']>): Plan => ({
        app: 'web',
        basis: basisOf({ app: { activeRevision: undefined, replicas: 1 }, rolloutId: r.id, instances: [] }),
        rolloutId: r.id,
        placements: [],
        desired: [],
        activate: undefined,
        finish: undefined,
        volumes: undefined,
        unplaced: undefined,
        progress,
      });
      const verdict = { verdict: 'wait', reason: '3 of 5 requests' } as const;
      const v1 = await s.commitPlan({
        plan: plan({ step: 1, weight: 10, restart: true, clearCommand: true, verdict }),
        instanceIds: [],
        now: 7,
      });
      assert.deepEqual(v1, { committed: true });
      assert.deepEqual((await s.getRollout(r.id))?.progress, { step: 1, weight: 10, since: 7, command: undefined, verdict });
      // No restart: the transition time stays; no verdict: the last one stays; a command waiting stays.
      await s.setRolloutCommand(r.id, 'abort', 8);
      await s.commitPlan({
        plan: plan({ step: 1, weight: 20, restart: false, clearCommand: false, verdict: undefined }),
        instanceIds: [],
        now: 9,
      });
      assert.deepEqual((await s.getRollout(r.id))?.progress, { step: 1, weight: 20, since: 7, command: 'abort', verdict });
      await s.finishRollout(r.id, 'failed', 'aborted', 10);
      assert.equal(await s.setRolloutCommand(r.id, 'promote', 11), false, 'a finished rollout takes no command');
      assert.equal(await s.setRolloutCommand(9999, 'promote', 11), false);
    });

    it("a rollback's run ends with its rollout; other runs are left alone", async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      const ro = await s.createRollout({ app: 'web', fromRevision: 2, toRevision: 1, startedAt: 2 });
      const other = await s.createRollout({ app: 'web', fromRevision: 2, toRevision: 1, startedAt: 2 });
      const mk = async (trigger: RunRecord['trigger'], rolloutId: number): Promise<RunRecord> => {
        const r = await s.createRun({
          app: 'web',
          trigger,
          commit: sha('a'),
          dirty: false,
          steps: [{ name: 'deploy', status: 'running', startedAt: 2 }],
          now: 2,
        });
        return s.updateRun(r.id, { rolloutId, revision: 1 });
      };
      const rb = await mk('rollback', ro.id);
      const cli = await mk('cli', ro.id);
      const otherRb = await mk('rollback', other.id);
      await s.finishRollout(ro.id, 'failed', 'probe failed', 9);
      await s.finishRolloutRuns(ro.id, 'failed', 'probe failed', 9);
      const done = await s.getRun(rb.id);
      assert.deepEqual([done?.status, done?.error, done?.finishedAt], ['failed', 'probe failed', 9]);
      assert.deepEqual(done?.steps, [{ name: 'deploy', status: 'failed', finishedAt: 9 }]);
      assert.equal((await s.getRun(cli.id))?.status, 'running');
      assert.equal((await s.getRun(otherRb.id))?.status, 'running');
      await s.finishRolloutRuns(other.id, 'succeeded', undefined, 10);
      const ok = await s.getRun(otherRb.id);
      assert.deepEqual(
        [ok?.status, ok?.error, ok?.steps],
        ['succeeded', undefined, [{ name: 'deploy', status: 'succeeded', finishedAt: 10 }]],
      );
      await s.finishRolloutRuns(ro.id, 'succeeded', undefined, 11);
      assert.equal((await s.getRun(rb.id))?.status, 'failed', 'a finished run stays finished');
    });
  });

  describe(`store contract: ${name}: instances`, () => {
    it('an instance starts pending; a report replaces every reported field; desired moves run → drain → stop', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      await s.upsertNode(node('n1', 'node-1'));
      await s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 5 });
      const [fresh] = await s.listInstances();
      assert.deepEqual(fresh, {
        id: 'web-1-a',
        app: 'web',
        revision: 1,
        nodeId: 'n1',
        desired: 'run',
        state: 'pending',
        port: undefined,
        pid: undefined,
        restarts: 0,
        lastError: undefined,
        startedAt: undefined,
        containerId: undefined,
        logTail: undefined,
        address: undefined,
        kind: 'web',
        createdAt: 5,
        updatedAt: 5,
      });
      await s.updateInstanceStatus(
        'web-1-a',
        {
          state: 'failed',
          port: 4100,
          pid: 321,
          restarts: 2,
          lastError: 'exit 1: "boom" \'quoted\'',
          startedAt: 6,
          containerId: 'c0ffee',
          logTail: 'line 1\nline 2 ***\n✓',
          address: '10.213.0.2',
        },
        7,
      );
      let [i] = await s.listInstances();
      assert.deepEqual(
        [i?.state, i?.port, i?.pid, i?.restarts, i?.lastError, i?.startedAt, i?.containerId, i?.logTail, i?.address, i?.updatedAt],
        ['failed', 4100, 321, 2, 'exit 1: "boom" \'quoted\'', 6, 'c0ffee', 'line 1\nline 2 ***\n✓', '10.213.0.2', 7],
      );
      // The next report says nothing of the container, tail or address: they are gone.
      await s.updateInstanceStatus('web-1-a', { state: 'ready', port: 4101, pid: 322, restarts: 2, lastError: undefined, startedAt: 8 }, 9);
      [i] = await s.listInstances();
      assert.deepEqual(
        [i?.state, i?.port, i?.lastError, i?.containerId, i?.logTail, i?.address, i?.desired, i?.createdAt],
        ['ready', 4101, undefined, undefined, undefined, undefined, 'run', 5],
      );
      for (const d of ['drain', 'stop'] as const) {
        await s.setInstanceDesired('web-1-a', d, 10);
        [i] = await s.listInstances();
        assert.deepEqual([i?.desired, i?.state, i?.updatedAt], [d, 'ready', 10]);
      }
      await s.deleteInstance('web-1-a');
      assert.deepEqual(await s.listInstances(), []);
      // An instance that is already gone: nothing happens, nothing is created.
      await s.deleteInstance('web-1-a');
      await s.setInstanceDesired('web-1-a', 'stop', 11);
      await s.updateInstanceStatus(
        'web-1-a',
        { state: 'stopped', port: undefined, pid: undefined, restarts: 0, lastError: undefined, startedAt: undefined },
        11,
      );
      assert.deepEqual(await s.listInstances(), []);
    });

    it('lists instances by app, by node or both, oldest first (then by id); release instances keep their kind', async (t) => {
      const { s } = await setup(t);
      for (const a of ['web', 'api']) await s.upsertApp(a, configs(a)[0]!, 1);
      await s.upsertNode(node('n1', 'node-1'));
      await s.upsertNode(node('n2', 'node-2', { credentialHash: 'other' }));
      const mk = (id: string, app: string, nodeId: string, createdAt: number, kind?: 'web' | 'release'): Promise<void> =>
        s.createInstance({ id, app, revision: 1, nodeId, desired: 'run', createdAt, ...(kind ? { kind } : {}) });
      await mk('web-1-c', 'web', 'n1', 3);
      await mk('web-1-b', 'web', 'n2', 2);
      await mk('web-1-a', 'web', 'n1', 3);
      await mk('api-1-release-x', 'api', 'n2', 1, 'release');
      await mk('api-1-z', 'api', 'n1', 4, 'web');
      const ids = async (f?: { app?: string; nodeId?: string }): Promise<string[]> => (await s.listInstances(f)).map((i) => i.id);
      assert.deepEqual(await ids(), ['api-1-release-x', 'web-1-b', 'web-1-a', 'web-1-c', 'api-1-z']);
      assert.deepEqual(await ids({}), await ids());
      assert.deepEqual(await ids({ app: 'web' }), ['web-1-b', 'web-1-a', 'web-1-c']);
      assert.deepEqual(await ids({ nodeId: 'n1' }), ['web-1-a', 'web-1-c', 'api-1-z']);
      assert.deepEqual(await ids({ app: 'api', nodeId: 'n2' }), ['api-1-release-x']);
      assert.deepEqual(await ids({ app: 'nope' }), []);
      assert.deepEqual(
        (await s.listInstances({ app: 'api' })).map((i) => i.kind),
        ['release', 'web'],
      );
    });

    it('refuses an instance whose id is taken, or whose app or node does not exist', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      await s.upsertNode(node('n1', 'node-1'));
      await s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 1 });
      await assert.rejects(s.createInstance({ id: 'web-1-a', app: 'web', revision: 2, nodeId: 'n1', desired: 'run', createdAt: 2 }));
      await assert.rejects(s.createInstance({ id: 'web-1-b', app: 'web', revision: 1, nodeId: 'no-node', desired: 'run', createdAt: 2 }));
      await assert.rejects(s.createInstance({ id: 'ghost-1-a', app: 'ghost', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 }));
      assert.deepEqual(
        (await s.listInstances()).map((i) => [i.id, i.revision]),
        [['web-1-a', 1]],
      );
    });
  });

  describe(`store contract: ${name}: nodes and join tokens`, () => {
    it('finds a node by name and by credential hash, lists nodes by name, and keeps what an agent reported', async (t) => {
      const { s } = await setup(t);
      const b = node('id-b', 'node-b', {
        runtimes: {
          docker: { available: true, version: '27.1' },
          netns: { available: false, error: 'no CAP_NET_ADMIN' },
          process: { isolation: { user: true, cgroup: false, reason: 'cgroup v1' } },
        },
      });
      const a = node('id-a', 'node-a', { cpus: undefined, memoryMb: undefined, labels: {}, runtimes: {} });
      await s.upsertNode(b);
      await s.upsertNode(a);
      assert.deepEqual(await s.listNodes(), [a, json(b)]);
      assert.deepEqual(await s.getNodeByName('node-b'), json(b));
      assert.deepEqual(await s.getNodeByCredentialHash('hash-id-a'), a);
      assert.equal(await s.getNodeByName('node-c'), undefined);
      assert.equal(await s.getNodeByCredentialHash('hash-nobody'), undefined);
    });

    it('a node registering again keeps its name, registration time and scheduling; the rest is what it says now', async (t) => {
      const { s, reopen } = await setup(t);
      await s.upsertNode(node('n1', 'node-1', { registeredAt: 100 }));
      assert.equal((await s.getNodeByName('node-1'))?.registeredAt, 100); // a store in use has read its nodes (a cache may exist from here)
      await s.setNodeScheduling('n1', 'cordoned');
      await s.touchNode('n1', 150);
      await s.upsertNode(
        node('n1', 'renamed', {
          registeredAt: 200,
          lastSeenAt: 200,
          scheduling: 'eligible',
          address: '127.0.0.3',
          apiUrl: 'http://127.0.0.3:7072',
          credentialHash: 'new-hash',
          agentToken: 'new-token',
          cpus: 8,
          memoryMb: 4096,
          labels: { zone: 'b', disk: 'ssd' },
          runtimes: {},
        }),
      );
      const want = node('n1', 'node-1', {
        registeredAt: 100,
        lastSeenAt: 200,
        scheduling: 'cordoned',
        address: '127.0.0.3',
        apiUrl: 'http://127.0.0.3:7072',
        credentialHash: 'new-hash',
        agentToken: 'new-token',
        cpus: 8,
        memoryMb: 4096,
        labels: { zone: 'b', disk: 'ssd' },
        runtimes: {},
      });
      assert.deepEqual(await s.getNodeByName('node-1'), want);
      assert.equal(await s.getNodeByName('renamed'), undefined);
      assert.deepEqual(await s.getNodeByCredentialHash('new-hash'), want);
      assert.equal(await s.getNodeByCredentialHash('hash-n1'), undefined, 'the old credential no longer finds it');
      assert.deepEqual(await s.listNodes(), [want]);
      await s.touchNode('n1', 300);
      await s.setNodeScheduling('n1', 'draining');
      const now = { ...want, lastSeenAt: 300, scheduling: 'draining' as const };
      assert.deepEqual(await s.listNodes(), [now]);
      // What this connection says is what the database holds.
      const other = await reopen();
      assert.deepEqual(await other.listNodes(), [now]);
      assert.deepEqual(await other.getNodeByCredentialHash('new-hash'), now);
      // Unknown nodes: nothing happens.
      await s.touchNode('ghost', 1);
      await s.setNodeScheduling('ghost', 'cordoned');
      assert.equal((await s.listNodes()).length, 1);
    });

    it('refuses a second node with a name already registered, and keeps the first', async (t) => {
      const { s } = await setup(t);
      await s.upsertNode(node('n1', 'node-1'));
      await assert.rejects(s.upsertNode(node('n2', 'node-1', { credentialHash: 'intruder' })));
      assert.deepEqual(await s.listNodes(), [json(node('n1', 'node-1'))]);
      assert.equal(await s.getNodeByCredentialHash('intruder'), undefined);
    });

    it('join tokens: found by hash while live, revoked once, all listed oldest first with their revocation', async (t) => {
      const { s } = await setup(t);
      await s.createJoinToken('aaaaaaaaaaaa', 'hash-a', 10);
      await s.createJoinToken('bbbbbbbbbbbb', 'hash-b', 20);
      assert.deepEqual(await s.findJoinToken('hash-a'), { id: 'aaaaaaaaaaaa', createdAt: 10, revokedAt: undefined });
      assert.equal(await s.findJoinToken('hash-zzz'), undefined);
      assert.equal(await s.revokeJoinToken('aaaaaaaaaaaa', 30), true);
      assert.equal(await s.revokeJoinToken('aaaaaaaaaaaa', 40), false, 'already revoked');
      assert.equal(await s.revokeJoinToken('cccccccccccc', 40), false, 'no such token');
      assert.equal(await s.findJoinToken('hash-a'), undefined, 'a revoked token lets nobody in');
      assert.equal((await s.findJoinToken('hash-b'))?.id, 'bbbbbbbbbbbb');
      assert.deepEqual(await s.listJoinTokens(), [
        { id: 'aaaaaaaaaaaa', createdAt: 10, revokedAt: 30 },
        { id: 'bbbbbbbbbbbb', createdAt: 20, revokedAt: undefined },
      ]);
      await assert.rejects(s.createJoinToken('dddddddddddd', 'hash-b', 50), Error, 'two tokens never share a hash');
      await assert.rejects(s.createJoinToken('bbbbbbbbbbbb', 'hash-e', 50), Error, 'nor an id');
      assert.equal((await s.listJoinTokens()).length, 2);
    });
  });

  registerRunContract(name, setup);
  registerKeptContract(name, setup);
}

type Setup = (
  t: TestContext,
) => Promise<{ s: Store; reopen: () => Promise<Store>; openBackup: (f: string) => Promise<Store>; tmp: () => string }>;

/** Runs and the durable run queue. */
function registerRunContract(name: string, setup: Setup): void {
  describe(`store contract: ${name}: runs`, () => {
    it('a CLI run starts running; a patch sets only what it names; error null clears the error', async (t) => {
      const { s } = await setup(t);
      const r = await s.createRun({
        app: 'web',
        trigger: 'cli',
        commit: sha('a'),
        dirty: true,
        steps: [
          { name: 'source', status: 'running', startedAt: 5 },
          { name: 'build', status: 'pending' },
        ],
        now: 5,
      });
      assert.deepEqual(
        [r.status, r.trigger, r.commit, r.dirty, r.createdAt, r.startedAt, r.finishedAt, r.attempt, r.fence, r.deliveryId, r.error],
        ['running', 'cli', sha('a'), true, 5, 5, undefined, 1, undefined, undefined, undefined],
      );
      assert.deepEqual(await s.getRun(r.id), r);
      const failed = await s.updateRun(r.id, { status: 'failed', error: 'build: exit 1 "quoted" \'x\' ✗', finishedAt: 9 });
      assert.deepEqual(
        [failed.status, failed.error, failed.finishedAt, failed.commit, failed.dirty, failed.steps],
        ['failed', 'build: exit 1 "quoted" \'x\' ✗', 9, sha('a'), true, r.steps],
      );
      const later = await s.updateRun(r.id, {
        artifact: digest('a'),
        revision: 3,
        dirty: false,
        commit: sha('b'),
        startedAt: 6,
        rolloutId: 4,
        supersededBy: 8,
        steps: [{ name: 'deploy', status: 'succeeded', finishedAt: 9 }],
      });
      assert.deepEqual(
        [
          later.status,
          later.error,
          later.artifact,
          later.revision,
          later.dirty,
          later.commit,
          later.startedAt,
          later.rolloutId,
          later.supersededBy,
          later.steps,
        ],
        [
          'failed',
          'build: exit 1 "quoted" \'x\' ✗',
          digest('a'),
          3,
          false,
          sha('b'),
          6,
          4,
          8,
          [{ name: 'deploy', status: 'succeeded', finishedAt: 9 }],
        ],
      );
      assert.equal((await s.updateRun(r.id, { error: null })).error, undefined);
      assert.deepEqual(await s.updateRun(r.id, {}), await s.getRun(r.id));
      await assert.rejects(s.updateRun(9999, { status: 'failed' }), isCode('run_not_found'));
      assert.equal(await s.getRun(9999), undefined);
    });

    it('lists runs newest first, by app, up to a limit', async (t) => {
      const { s } = await setup(t);
      const ids: number[] = [];
      for (const [i, app] of ['web', 'api', 'web', 'web', 'api'].entries())
        ids.push((await s.createRun({ app, trigger: 'cli', commit: undefined, dirty: false, steps: [], now: i })).id);
      assert.deepEqual(
        (await s.listRuns({ limit: 10 })).map((r) => r.id),
        [...ids].reverse(),
      );
      assert.deepEqual(
        (await s.listRuns({ limit: 2 })).map((r) => r.id),
        [ids[4], ids[3]],
      );
      assert.deepEqual(
        (await s.listRuns({ app: 'web', limit: 10 })).map((r) => r.id),
        [ids[3], ids[2], ids[0]],
      );
      assert.deepEqual(
        (await s.listRuns({ app: 'web', limit: 1 })).map((r) => r.id),
        [ids[3]],
      );
      assert.deepEqual(await s.listRuns({ app: 'nope', limit: 10 }), []);
    });

    it("queues a push with the five pipeline steps, the app's next fence, and everything the push said", async (t) => {
      const { s } = await setup(t);
      const q = await s.enqueueWebhookRun({
        ...push('web', 'delivery-1', sha('a'), 10),
        repoFullName: 'octo/web',
        message: 'feat: ünïcode ✓ "q" \'; DROP TABLE runs; --',
      });
      assert.equal(q.outcome, 'queued');
      assert.ok(q.outcome === 'queued' && q.superseded.length === 0);
      const r = q.run;
      assert.deepEqual(
        [
          r.status,
          r.trigger,
          r.app,
          r.commit,
          r.branch,
          r.author,
          r.deliveryId,
          r.repoFullName,
          r.fence,
          r.attempt,
          r.createdAt,
          r.startedAt,
          r.dirty,
        ],
        ['queued', 'webhook', 'web', sha('a'), 'main', 'Zoë <z@example.com>', 'delivery-1', 'octo/web', 1, 0, 10, undefined, false],
      );
      assert.equal(r.message, 'feat: ünïcode ✓ "q" \'; DROP TABLE runs; --');
      assert.deepEqual(
        r.steps,
        ['source', 'build', 'package', 'publish', 'deploy'].map((n) => ({ name: n, status: 'pending' })),
      );
      assert.deepEqual(await s.getRun(r.id), r);
      const other = await s.enqueueWebhookRun(push('api', 'delivery-2', sha('a'), 11));
      assert.equal(other.run.fence, 1, 'fences count per app');
    });

    it('dedupes a delivery (whatever it says now) and a commit queued or running, not one that finished', async (t) => {
      const { s } = await setup(t);
      const a = await s.enqueueWebhookRun(push('web', 'd1', sha('a')));
      const again = await s.enqueueWebhookRun(push('api', 'd1', sha('b')));
      assert.deepEqual([again.outcome, again.run.id], ['duplicate-delivery', a.run.id]);
      const same = await s.enqueueWebhookRun(push('web', 'd2', sha('a')));
      assert.deepEqual([same.outcome, same.run.id], ['duplicate-commit', a.run.id]);
      const claimed = (await s.claimNextRun(new Set(), 20))!;
      assert.equal((await s.enqueueWebhookRun(push('web', 'd3', sha('a'), 21))).outcome, 'duplicate-commit', 'running');
      const cli = await s.createRun({ app: 'api', trigger: 'cli', commit: sha('c'), dirty: false, steps: [], now: 22 });
      const dupCli = await s.enqueueWebhookRun(push('api', 'd4', sha('c'), 22));
      assert.deepEqual([dupCli.outcome, dupCli.run.id], ['duplicate-commit', cli.id], 'a CLI run of that commit is going');
      await s.updateRun(claimed.id, { status: 'succeeded', finishedAt: 30 });
      const redo = await s.enqueueWebhookRun(push('web', 'd5', sha('a'), 31));
      assert.deepEqual([redo.outcome, redo.run.fence], ['queued', 2], 'a finished commit can be deployed again');
      assert.equal((await s.listRuns({ limit: 10 })).length, 3);
    });

    it('a newer push supersedes older queued runs of its branch only, and fences follow push order', async (t) => {
      const { s } = await setup(t);
      const r1 = await s.enqueueWebhookRun(push('web', 'd1', sha('1')));
      const f1 = await s.enqueueWebhookRun(push('web', 'd2', sha('2'), 11, 'feature'));
      const r2 = await s.enqueueWebhookRun(push('web', 'd3', sha('3'), 12));
      const o1 = await s.enqueueWebhookRun(push('api', 'd4', sha('4'), 12));
      assert.ok(r2.outcome === 'queued');
      assert.deepEqual(r2.superseded, [r1.run.id]);
      const old = await s.getRun(r1.run.id);
      assert.deepEqual([old?.status, old?.supersededBy, old?.finishedAt], ['superseded', r2.run.id, 12]);
      assert.match(old!.error!, new RegExp(`superseded by run #${r2.run.id}`));
      assert.equal((await s.getRun(f1.run.id))?.status, 'queued', 'another branch');
      assert.equal((await s.getRun(o1.run.id))?.status, 'queued', 'another app');
      const r3 = await s.enqueueWebhookRun(push('web', 'd5', sha('5'), 13));
      assert.ok(r3.outcome === 'queued');
      assert.deepEqual(r3.superseded, [r2.run.id]);
      assert.deepEqual([r1.run.fence, f1.run.fence, r2.run.fence, r3.run.fence, o1.run.fence], [1, 2, 3, 4, 1]);
    });

    it('claims the oldest queued run of an app with none running, after its quiet period, skipping excluded apps', async (t) => {
      const { s } = await setup(t);
      const w1 = await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 100));
      const a1 = await s.enqueueWebhookRun(push('api', 'd2', sha('2'), 110));
      const w2 = await s.enqueueWebhookRun(push('web', 'd3', sha('3'), 120, 'feature'));
      assert.equal(await s.claimNextRun(new Set(), 150, 99), undefined, 'all still in their quiet period');
      await s.createRun({ app: 'web', trigger: 'cli', commit: sha('9'), dirty: false, steps: [], now: 150 });
      const c1 = await s.claimNextRun(new Set(), 200, 200);
      assert.deepEqual(
        [c1?.id, c1?.status, c1?.startedAt, c1?.attempt],
        [w1.run.id, 'running', 200, 1],
        'a CLI run does not hold the queue',
      );
      const c2 = await s.claimNextRun(new Set(), 201, 201);
      assert.equal(c2?.id, a1.run.id, 'web has a run going: the next app');
      assert.equal(await s.claimNextRun(new Set(), 202, 202), undefined, 'one webhook run at a time per app');
      // A run that made its rollout and only follows it (a canary) no longer holds its app.
      await s.updateRun(c1!.id, { revision: 1, rolloutId: 1 });
      const c3 = await s.claimNextRun(new Set(), 202, 202);
      assert.equal(c3?.id, w2.run.id, 'a run following its rollout does not hold the app');
      assert.equal(await s.claimNextRun(new Set(), 202, 202), undefined, 'but one that builds does');
      await s.updateRun(c3!.id, { status: 'succeeded', finishedAt: 203 });
      await s.updateRun(c1!.id, { status: 'succeeded', finishedAt: 203 });
      const w3 = await s.enqueueWebhookRun(push('web', 'd6', sha('6'), 120, 'feature'));
      assert.equal(await s.claimNextRun(new Set(['web']), 204, 204), undefined, 'web is excluded');
      assert.equal((await s.claimNextRun(new Set(['api']), 205, 205))?.id, w3.run.id);
      assert.equal(await s.claimNextRun(new Set(), 206, 206), undefined, 'nothing left queued');
    });

    it('two claims at once: exactly one wins each queued run (one store, and two connections)', async (t) => {
      const { s, reopen } = await setup(t);
      const only = await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 1));
      const both = await Promise.all([s.claimNextRun(new Set(), 10), s.claimNextRun(new Set(), 10)]);
      assert.deepEqual(both.map((r) => r?.id).sort(), [only.run.id, undefined]);
      // Many claimers over three apps with two runs each: one run per app, none claimed twice.
      for (const app of ['a', 'b', 'c']) {
        await s.enqueueWebhookRun(push(app, `${app}-1`, sha('1'), 2, 'one'));
        await s.enqueueWebhookRun(push(app, `${app}-2`, sha('2'), 3, 'two'));
      }
      const other = await reopen();
      const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? s : other).claimNextRun(new Set(), 20)));
      const won = claims.filter((r): r is RunRecord => r !== undefined);
      assert.deepEqual(won.map((r) => r.app).sort(), ['a', 'b', 'c']);
      assert.equal(new Set(won.map((r) => r.id)).size, 3);
      assert.ok(
        won.every((r) => r.branch === 'one'),
        'the older run of each app',
      );
      const running = (await s.listRuns({ limit: 50 })).filter((r) => r.status === 'running');
      assert.deepEqual(running.map((r) => r.id).sort(), [only.run.id, ...won.map((r) => r.id)].sort());
    });

    it('pushes at once: one delivery queues once, distinct pushes get distinct fences and the last one wins', async (t) => {
      const { s, reopen } = await setup(t);
      const other = await reopen();
      const same = await Promise.all(
        Array.from({ length: 6 }, (_, i) => (i % 2 ? s : other).enqueueWebhookRun(push('web', 'same-delivery', sha(String(i)), 10))),
      );
      assert.equal(same.filter((r) => r.outcome === 'queued').length, 1);
      assert.equal(new Set(same.map((r) => r.run.id)).size, 1);
      const many = await Promise.all(
        Array.from({ length: 8 }, (_, i) => s.enqueueWebhookRun(push('api', `d${i}`, sha(String(i)), 20 + i))),
      );
      assert.ok(many.every((r) => r.outcome === 'queued'));
      assert.deepEqual(
        many.map((r) => r.run.fence).sort((a, b) => a! - b!),
        [1, 2, 3, 4, 5, 6, 7, 8],
      );
      const queued = (await s.listRuns({ app: 'api', limit: 50 })).filter((r) => r.status === 'queued');
      assert.equal(queued.length, 1, 'each newer push superseded the queued one before it');
      assert.equal(queued[0]!.fence, 8);
    });

    it('a queued run survives a restart (another connection claims it)', async (t) => {
      const { s, reopen } = await setup(t);
      const q = await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 1));
      const after = await reopen();
      assert.deepEqual(await after.getRun(q.run.id), q.run);
      assert.equal((await after.claimNextRun(new Set(), 5))?.id, q.run.id);
      assert.equal((await s.getRun(q.run.id))?.status, 'running');
    });

    it('after a restart: a webhook run left running is retried once, a CLI run is interrupted, a rollback run is left to its rollout', async (t) => {
      const { s } = await setup(t);
      await s.enqueueWebhookRun({ ...push('web', 'd1', sha('1'), 1), repoFullName: 'octo/web' });
      const run = (await s.claimNextRun(new Set(), 2))!;
      const cli = await s.createRun({ app: 'web', trigger: 'cli', commit: sha('2'), dirty: false, steps: [], now: 3 });
      const rb = await s.createRun({ app: 'web', trigger: 'rollback', commit: sha('3'), dirty: false, steps: [], now: 3 });
      const doneCli = await s.createRun({ app: 'web', trigger: 'cli', commit: sha('4'), dirty: false, steps: [], now: 3 });
      await s.updateRun(doneCli.id, { status: 'succeeded', finishedAt: 4 });
      const back = await s.recoverInterruptedRuns(50);
      assert.deepEqual(
        back.map((r) => [r.id, r.status, r.finishedAt]),
        [
          [run.id, 'interrupted', 50],
          [cli.id, 'interrupted', 50],
        ],
      );
      const retry = (await s.listRuns({ limit: 50 })).find((r) => r.retryOf === run.id)!;
      assert.match(back[0]!.error!, new RegExp(`retried as run #${retry.id}`));
      assert.match(back[1]!.error!, /run `pilot run` again/);
      assert.deepEqual(
        [
          retry.status,
          retry.commit,
          retry.fence,
          retry.attempt,
          retry.branch,
          retry.author,
          retry.repoFullName,
          retry.createdAt,
          retry.deliveryId,
        ],
        ['queued', sha('1'), run.fence, 2, 'main', 'Zoë <z@example.com>', 'octo/web', 50, undefined],
      );
      assert.equal((await s.getRun(rb.id))?.status, 'running');
      assert.equal((await s.getRun(doneCli.id))?.status, 'succeeded');
      assert.equal((await s.claimNextRun(new Set(), 60))?.id, retry.id);
      const twice = await s.recoverInterruptedRuns(70);
      assert.deepEqual(
        twice.map((r) => r.id),
        [retry.id],
      );
      assert.match(twice[0]!.error!, /not retried/);
      assert.equal((await s.listRuns({ limit: 50 })).filter((r) => r.status === 'queued').length, 0);
      assert.deepEqual(await s.recoverInterruptedRuns(80), [], 'nothing left running but the rollback');
    });

    it('interruptForegroundRuns ends CLI runs only and says how many', async (t) => {
      const { s } = await setup(t);
      const cli = await s.createRun({ app: 'web', trigger: 'cli', commit: undefined, dirty: false, steps: [], now: 1 });
      const cli2 = await s.createRun({ app: 'api', trigger: 'cli', commit: undefined, dirty: false, steps: [], now: 1 });
      const rb = await s.createRun({ app: 'web', trigger: 'rollback', commit: undefined, dirty: false, steps: [], now: 1 });
      await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 1));
      const hook = (await s.claimNextRun(new Set(), 2))!;
      assert.equal(await s.interruptForegroundRuns(5), 2);
      for (const id of [cli.id, cli2.id])
        assert.deepEqual([(await s.getRun(id))?.status, (await s.getRun(id))?.finishedAt], ['interrupted', 5]);
      assert.equal((await s.getRun(rb.id))?.status, 'running');
      assert.equal((await s.getRun(hook.id))?.status, 'running');
      assert.equal(await s.interruptForegroundRuns(6), 0);
    });

    it('finds the revision a fence already made of a commit, and the highest fence that deployed', async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('web', configs('web')[0]!, 1);
      await s.upsertApp('api', configs('api')[0]!, 1);
      assert.equal(await s.latestDeployedFence('web'), undefined);
      await s.enqueueWebhookRun(push('web', 'd1', sha('a'), 1));
      const r1 = (await s.claimNextRun(new Set(), 2))!;
      const rev1 = await s.createRevision(revision('web', { commit: sha('a'), runId: r1.id }));
      await s.updateRun(r1.id, { status: 'succeeded', revision: rev1.number });
      await s.enqueueWebhookRun(push('web', 'd2', sha('b'), 3));
      const r2 = (await s.claimNextRun(new Set(), 4))!;
      await s.createRevision(revision('web', { commit: sha('b'), runId: undefined }));
      const cli = await s.createRun({ app: 'web', trigger: 'cli', commit: sha('c'), dirty: false, steps: [], now: 5 });
      await s.createRevision(revision('web', { commit: sha('c'), runId: cli.id }));
      assert.equal((await s.revisionOfFence('web', r1.fence!, sha('a')))?.number, rev1.number);
      assert.equal(await s.revisionOfFence('web', r1.fence!, sha('b')), undefined, 'another commit');
      assert.equal(await s.revisionOfFence('web', r2.fence!, sha('b')), undefined, 'no revision names that run');
      assert.equal(await s.revisionOfFence('api', r1.fence!, sha('a')), undefined, 'another app');
      assert.equal(await s.latestDeployedFence('web'), r1.fence, 'only runs that made a revision count; CLI runs have no fence');
      assert.equal(await s.latestDeployedFence('api'), undefined);
      const rev2 = await s.createRevision(revision('web', { commit: sha('b'), runId: r2.id }));
      assert.equal(await s.latestDeployedFence('web'), r2.fence);
      // A retried run made the same commit again: the newest revision of the fence is the one.
      const again = await s.createRevision(revision('web', { commit: sha('b'), runId: r2.id }));
      assert.equal((await s.revisionOfFence('web', r2.fence!, sha('b')))?.number, again.number);
      assert.ok(again.number > rev2.number);
    });
  });
}

/** Secrets, registries, volumes, runtimes, artifact metadata, backup. */
function registerKeptContract(name: string, setup: Setup): void {
  describe(`store contract: ${name}: secrets, registries, volumes, artifacts, backup`, () => {
    it('keeps sealed secret values exactly as given, per app, by name, with their scope', async (t) => {
      const { s } = await setup(t);
      const big = 'v1:' + Buffer.alloc(48 * 1024, 7).toString('base64');
      const odd = 'v1:line1\nline2\t"quoted" \'single\' ; DROP TABLE secrets; -- ✓ 日本 \u{1F680}';
      await s.setSecret('web', 'Z_LAST', big, 1);
      await s.setSecret('web', 'A_FIRST', odd, 2, 'build');
      await s.setSecret('api', 'A_FIRST', 'v1:api', 3, 'run');
      assert.deepEqual(await s.listSecrets('web'), [
        { name: 'A_FIRST', value: odd, updatedAt: 2, scope: 'build' },
        { name: 'Z_LAST', value: big, updatedAt: 1, scope: 'run' },
      ]);
      await s.setSecret('web', 'A_FIRST', 'v1:new', 4, 'run');
      assert.deepEqual((await s.listSecrets('web'))[0], { name: 'A_FIRST', value: 'v1:new', updatedAt: 4, scope: 'run' });
      assert.equal(await s.deleteSecret('web', 'A_FIRST'), true);
      assert.equal(await s.deleteSecret('web', 'A_FIRST'), false);
      assert.equal(await s.deleteSecret('nope', 'A_FIRST'), false);
      assert.deepEqual(
        (await s.listSecrets('web')).map((x) => x.name),
        ['Z_LAST'],
      );
      assert.deepEqual(await s.listSecrets('api'), [{ name: 'A_FIRST', value: 'v1:api', updatedAt: 3, scope: 'run' }]);
      assert.deepEqual(await s.listSecrets('nope'), []);
    });

    it('registries: the most recently set first (an update moves it up), deleted by URL', async (t) => {
      const { s } = await setup(t);
      await s.putRegistry({ url: 'http://127.0.0.1:5000', username: undefined, password: undefined, updatedAt: 1 });
      await s.putRegistry({ url: 'https://registry.example.com', username: 'bot', password: 'v1:sealed', updatedAt: 2 });
      assert.deepEqual(
        (await s.listRegistries()).map((r) => r.url),
        ['https://registry.example.com', 'http://127.0.0.1:5000'],
      );
      await s.putRegistry({ url: 'http://127.0.0.1:5000', username: 'me', password: 'v1:pw', updatedAt: 3 });
      assert.deepEqual(await s.listRegistries(), [
        { url: 'http://127.0.0.1:5000', username: 'me', password: 'v1:pw', updatedAt: 3 },
        { url: 'https://registry.example.com', username: 'bot', password: 'v1:sealed', updatedAt: 2 },
      ]);
      // Set within the same millisecond: the one added later comes first.
      await s.putRegistry({ url: 'http://127.0.0.1:5001', username: undefined, password: undefined, updatedAt: 3 });
      assert.deepEqual(
        (await s.listRegistries()).map((r) => r.url),
        ['http://127.0.0.1:5001', 'http://127.0.0.1:5000', 'https://registry.example.com'],
      );
      assert.equal(await s.deleteRegistry('http://127.0.0.1:5000'), true);
      assert.equal(await s.deleteRegistry('http://127.0.0.1:5000'), false);
      assert.equal((await s.listRegistries()).length, 2);
    });

    it('deploy targets: added once by name (a second add changes nothing), listed by name, deleted', async (t) => {
      const { s } = await setup(t);
      const blue = {
        name: 'blue',
        kind: 'swarm' as const,
        docker: 'unix:///var/run/docker.sock',
        ports: { from: 20000, to: 31900 },
        createdAt: 5,
      };
      assert.equal(await s.addTarget(blue), true);
      assert.equal(await s.addTarget({ ...blue, docker: 'tcp://127.0.0.1:2375', createdAt: 6 }), false);
      assert.equal(await s.addTarget({ ...blue, name: 'amber', docker: 'tcp://10.0.0.1:2375', ports: { from: 40000, to: 40100 } }), true);
      assert.deepEqual(await s.listTargets(), [
        { ...blue, name: 'amber', docker: 'tcp://10.0.0.1:2375', ports: { from: 40000, to: 40100 } },
        blue,
      ]);
      assert.equal(await s.deleteTarget('blue'), true);
      assert.equal(await s.deleteTarget('blue'), false);
      assert.deepEqual(
        (await s.listTargets()).map((x) => x.name),
        ['amber'],
      );
    });

    it('a volume stays on the node it was first placed on until forgotten', async (t) => {
      const { s } = await setup(t);
      await s.placeVolumes('shop', ['data', 'cache'], 'n1', 1);
      await s.placeVolumes('shop', ['data', 'uploads'], 'n2', 2);
      await s.placeVolumes('blog', ['data'], 'n3', 3);
      await s.placeVolumes('blog', [], 'n4', 4);
      assert.deepEqual(
        (await s.listVolumePlacements('shop')).map((p) => [p.name, p.nodeId, p.createdAt]),
        [
          ['cache', 'n1', 1],
          ['data', 'n1', 1],
          ['uploads', 'n2', 2],
        ],
      );
      assert.deepEqual(
        (await s.listVolumePlacements()).map((p) => `${p.app}/${p.name}`),
        ['blog/data', 'shop/cache', 'shop/data', 'shop/uploads'],
      );
      assert.equal(await s.forgetVolumes('shop', 'data'), 1);
      assert.equal(await s.forgetVolumes('shop', 'nothing'), 0);
      assert.equal(await s.forgetVolumes('shop'), 2);
      assert.equal(await s.forgetVolumes('shop'), 0);
      assert.deepEqual(await s.listVolumePlacements('shop'), []);
      assert.deepEqual(
        (await s.listVolumePlacements()).map((p) => [p.app, p.name, p.nodeId]),
        [['blog', 'data', 'n3']],
      );
    });

    it('runtimes and artifact metadata: the first record stays; forgetting a blob drops both kinds', async (t) => {
      const { s } = await setup(t);
      const rt = {
        version: '22.11.0',
        platform: 'linux-x64',
        digest: digest('1'),
        integrity: 'sha512-abc',
        size: 30_000_000,
        origin: 'https://registry.npmjs.org',
        createdAt: 5,
      };
      assert.deepEqual(await s.putNodeRuntime(rt), rt);
      assert.deepEqual(
        await s.putNodeRuntime({ ...rt, digest: digest('2'), origin: 'import', createdAt: 6 }),
        rt,
        'a version is recorded once',
      );
      const old = {
        version: '18.20.8',
        platform: 'linux-x64',
        digest: digest('3'),
        integrity: undefined,
        size: 1,
        origin: 'import',
        createdAt: 1,
      };
      await s.putNodeRuntime(old);
      assert.deepEqual(await s.listNodeRuntimes(), [old, rt]);
      assert.deepEqual(await s.getNodeRuntime('22.11.0', 'linux-x64'), rt);
      assert.equal(await s.getNodeRuntime('22.11.0', 'linux-arm64'), undefined);

      const m1 = { digest: digest('a'), size: 10, app: 'web', commit: sha('a'), createdAt: 1 };
      const m2 = { digest: digest('b'), size: 20, app: undefined, commit: undefined, createdAt: 2 };
      s.putArtifactMeta(m1);
      s.putArtifactMeta({ ...m1, size: 99, app: 'other' });
      s.putArtifactMeta(m2);
      s.putArtifactMeta({ digest: digest('1'), size: 30_000_000, app: undefined, commit: undefined, createdAt: 5 });
      assert.deepEqual(s.getArtifactMeta(digest('a')), m1);
      assert.deepEqual(
        s.listArtifactMeta().map((m) => m.digest),
        [digest('1'), digest('b'), digest('a')],
      );
      assert.deepEqual(s.listArtifactMeta('web'), [m1]);
      s.forgetBlob(digest('1'));
      assert.equal(s.getArtifactMeta(digest('1')), undefined);
      assert.deepEqual(await s.listNodeRuntimes(), [old]);
      s.forgetBlob(digest('9'));
      assert.equal(s.listArtifactMeta().length, 2);
    });

    it('a backup taken while in use opens as a store with the same state', async (t) => {
      const { s, openBackup, tmp } = await setup(t);
      await s.setAppSource(
        'web',
        configs('web')[1]!,
        { repo: '/srv/web.git', branch: 'main', webhookSecret: 'v1:x', githubToken: undefined, statusApiUrl: undefined },
        1,
      );
      await s.upsertNode(node('n1', 'node-1'));
      await s.createRevision(revision('web'));
      await s.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 });
      await s.setSecret('web', 'TOKEN', 'v1:sealed', 3);
      await s.enqueueWebhookRun(push('web', 'd1', sha('1'), 4));
      await s.createJoinToken('aaaaaaaaaaaa', 'hash-a', 5);
      const file = join(tmp(), 'backup');
      await s.backup(file);
      await s.setSecret('web', 'LATER', 'v1:later', 6);
      const copy = await openBackup(file);
      assert.deepEqual(await copy.getApp('web'), await s.getApp('web'));
      assert.deepEqual(await copy.listNodes(), await s.listNodes());
      assert.deepEqual(await copy.listRevisions('web'), await s.listRevisions('web'));
      assert.deepEqual(await copy.listInstances(), await s.listInstances());
      assert.deepEqual(await copy.listRuns({ limit: 10 }), await s.listRuns({ limit: 10 }));
      assert.deepEqual(await copy.listJoinTokens(), await s.listJoinTokens());
      assert.deepEqual(
        (await copy.listSecrets('web')).map((x) => x.name),
        ['TOKEN'],
        'what came after the backup is not in it',
      );
      // The copy is a working store: ids and fences go on from where they were.
      const last = (await copy.listRuns({ limit: 1 }))[0]!;
      const next = await copy.enqueueWebhookRun(push('web', 'd2', sha('2'), 7));
      assert.ok(next.run.id > last.id);
      assert.equal(next.run.fence, 2);
    });
  });
}

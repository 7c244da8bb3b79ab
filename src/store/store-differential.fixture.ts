/**
 * The random call sequences of the store differential tests (store-differential.test.ts: memory
 * against SQLite; postgres-differential.test.ts: PostgreSQL against SQLite): the calls, how one is
 * applied to a store (a refusal is the answer 'refused'), and what is compared after each.
 */
import fc from 'fast-check';
import { resolveAppConfig } from '../core/app-config.js';
import type { Store } from './store.js';

export const APPS = ['web', 'api', 'zz'] as const;
const app = fc.constantFrom(...APPS);
export const op = fc.oneof(
  fc.record({ t: fc.constant('upsert' as const), app, replicas: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ t: fc.constant('remove' as const), app }),
  fc.record({ t: fc.constant('purge' as const) }),
  fc.record({ t: fc.constant('instance' as const), app, n: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ t: fc.constant('delete-instance' as const), app, n: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ t: fc.constant('secret' as const), app, name: fc.constantFrom('A', 'B'), build: fc.boolean() }),
  fc.record({
    t: fc.constant('push' as const),
    app,
    delivery: fc.integer({ min: 0, max: 6 }),
    commit: fc.constantFrom('a', 'b', 'c'),
    branch: fc.constantFrom('main', 'dev'),
  }),
  fc.record({ t: fc.constant('claim' as const), exclude: fc.subarray([...APPS]), quiet: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ t: fc.constant('finish' as const), pick: fc.nat(), ok: fc.boolean() }),
  fc.record({ t: fc.constant('cli' as const), app, commit: fc.constantFrom('a', 'd') }),
  fc.record({ t: fc.constant('recover' as const) }),
  fc.record({ t: fc.constant('interrupt-cli' as const) }),
  fc.record({ t: fc.constant('revision' as const), app }),
  fc.record({ t: fc.constant('activate' as const), app, revision: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }) }),
  fc.record({ t: fc.constant('rollout' as const), app, to: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ t: fc.constant('finish-rollout' as const), id: fc.integer({ min: 1, max: 6 }), ok: fc.boolean() }),
  fc.record({
    t: fc.constant('desired' as const),
    app,
    n: fc.integer({ min: 0, max: 3 }),
    desired: fc.constantFrom('run', 'drain', 'stop'),
  }),
  fc.record({
    t: fc.constant('report' as const),
    app,
    n: fc.integer({ min: 0, max: 3 }),
    state: fc.constantFrom('starting', 'ready', 'failed'),
    restarts: fc.integer({ min: 0, max: 2 }),
  }),
  fc.record({ t: fc.constant('scheduling' as const), scheduling: fc.constantFrom('eligible', 'cordoned', 'draining') }),
  fc.record({ t: fc.constant('steps' as const), pick: fc.nat(), status: fc.constantFrom('running', 'succeeded') }),
);
export type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

export async function apply(s: Store, o: Op, now: number): Promise<unknown> {
  try {
    switch (o.t) {
      case 'upsert':
        return await s.upsertApp(o.app, resolveAppConfig({ replicas: o.replicas }, o.app), now);
      case 'remove':
        return await s.removeApp(o.app, now);
      case 'purge':
        return await s.purgeRemovedApps();
      case 'instance':
        return await s.createInstance({ id: `${o.app}-${o.n}`, app: o.app, revision: 1, nodeId: 'n1', desired: 'run', createdAt: now });
      case 'delete-instance':
        return await s.deleteInstance(`${o.app}-${o.n}`);
      case 'secret':
        return await s.setSecret(o.app, o.name, `v1:${now}`, now, o.build ? 'build' : 'run');
      case 'push':
        return await s.enqueueWebhookRun({
          app: o.app,
          deliveryId: `d${o.delivery}`,
          commit: o.commit.repeat(40),
          branch: o.branch,
          message: 'm',
          author: 'a',
          now,
        });
      case 'claim':
        return await s.claimNextRun(new Set(o.exclude), now, now - o.quiet);
      case 'finish': {
        const live = (await s.listRuns({ limit: 1000 })).filter((r) => r.status === 'running');
        const r = live[o.pick % Math.max(1, live.length)];
        return r && (await s.updateRun(r.id, { status: o.ok ? 'succeeded' : 'failed', finishedAt: now }));
      }
      case 'cli':
        return await s.createRun({ app: o.app, trigger: 'cli', commit: o.commit.repeat(40), dirty: false, steps: [], now });
      case 'recover':
        return await s.recoverInterruptedRuns(now);
      case 'interrupt-cli':
        return await s.interruptForegroundRuns(now);
      case 'revision':
        return await s.createRevision({
          app: o.app,
          artifact: `sha256:${'a'.repeat(64)}`,
          commit: 'a'.repeat(40),
          dirty: false,
          config: resolveAppConfig({}, o.app),
          runId: undefined,
          createdAt: now,
          image: undefined,
          nodeRuntime: undefined,
        });
      case 'activate':
        return await s.setActiveRevision(o.app, o.revision, now);
      case 'rollout':
        return await s.createRollout({ app: o.app, fromRevision: undefined, toRevision: o.to, startedAt: now });
      case 'finish-rollout':
        return await s.finishRollout(o.id, o.ok ? 'succeeded' : 'failed', o.ok ? undefined : 'probe failed', now);
      case 'desired':
        return await s.setInstanceDesired(`${o.app}-${o.n}`, o.desired, now);
      case 'report':
        return await s.updateInstanceStatus(
          `${o.app}-${o.n}`,
          {
            state: o.state,
            port: o.state === 'ready' ? 4000 : undefined,
            pid: 1,
            restarts: o.restarts,
            lastError: undefined,
            startedAt: now,
          },
          now,
        );
      case 'scheduling':
        return await s.setNodeScheduling('n1', o.scheduling);
      case 'steps': {
        const live = (await s.listRuns({ limit: 1000 })).filter((r) => r.status === 'running');
        const r = live[o.pick % Math.max(1, live.length)];
        return r && (await s.updateRun(r.id, { steps: [{ name: 'deploy', status: o.status }] }));
      }
    }
  } catch {
    return 'refused';
  }
}

/** The feed as both stores must write it: ids, kinds, apps, payloads (times of a few events are the clock's). */
export async function feed(s: Store): Promise<unknown> {
  return (await s.readEvents({ after: 0, limit: 10_000 })).map((e) => ({ id: e.id, kind: e.kind, app: e.app ?? null, payload: e.payload }));
}

export async function state(s: Store): Promise<unknown> {
  return {
    apps: await s.listApps(),
    removing: await s.removingApps(),
    runs: await s.listRuns({ limit: 1000 }),
    instances: await s.listInstances(),
    secrets: await Promise.all(APPS.map((a) => s.listSecrets(a))),
    rollouts: await Promise.all(APPS.map((a) => s.listRollouts(a, 100))),
  };
}

/**
 * A/B experiments in both stores (SQLite and memory): one running per app, start and end with their
 * events in the same transaction (SQLite), ending with b starts its rollout in that transaction, a
 * rollout or the app's removal ends the running experiment, and the rows survive a reopen.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig } from '../core/app-config.js';
import { PilotError } from '../core/errors.js';
import type { PilotEvent } from '../core/events.js';
import { MemoryStore } from './memory-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

const config = resolveAppConfig({ name: 'shop' }, undefined);

async function seed(s: Store): Promise<void> {
  await s.upsertApp('shop', config, 1);
  for (let i = 0; i < 2; i++) {
    await s.createRevision({
      app: 'shop',
      artifact: `sha256:${String(i).repeat(64)}`,
      commit: 'a'.repeat(40),
      dirty: false,
      config,
      runId: undefined,
      createdAt: 2,
      image: undefined,
      nodeRuntime: undefined,
    });
  }
  await s.setActiveRevision('shop', 1, 3);
}

const conflict = (err: unknown): boolean => err instanceof PilotError && err.code === 'experiment_conflict';

for (const kind of ['sqlite', 'memory'] as const) {
  describe(`store experiments (${kind})`, () => {
    const withStore = (fn: (s: Store, reopen: () => Store) => Promise<void>) => async () => {
      const dir = mkdtempSync(join(tmpdir(), 'pilot-exp-'));
      const file = join(dir, 'pilot.db');
      const open: Store[] = [];
      const make = (): Store => {
        const s = kind === 'sqlite' ? new SqliteStore(file) : new MemoryStore(open[0] ? (open[0] as MemoryStore).state : undefined);
        open.push(s);
        return s;
      };
      try {
        const s = make();
        await seed(s);
        await fn(s, make);
      } finally {
        for (const s of open.reverse()) s.close();
        rmSync(dir, { recursive: true, force: true });
      }
    };

    it(
      'starts one experiment per app, reads it back, refuses a second, ends it keeping a',
      withStore(async (s, reopen) => {
        const e = await s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 30, by: { header: 'X-User' }, startedAt: 10 });
        assert.equal(e.status, 'running');
        assert.deepEqual(await s.activeExperiment('shop'), e);
        await assert.rejects(
          s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 50, by: { cookie: 'uid' }, startedAt: 11 }),
          conflict,
        );
        const again = reopen();
        assert.deepEqual(await again.activeExperiment('shop'), e, 'survives a reopen');
        const r = await s.endExperiment(e.id, { kept: 'a', reason: 'kept a', now: 20 });
        assert.equal(r.rollout, undefined);
        assert.equal(r.experiment.status, 'ended');
        assert.equal(r.experiment.kept, 'a');
        assert.equal(r.experiment.endedAt, 20);
        assert.equal(await s.activeExperiment('shop'), undefined);
        await assert.rejects(s.endExperiment(e.id, { kept: 'b', reason: undefined, now: 21 }), conflict);
        assert.equal((await s.listExperiments('shop', 10)).length, 1);
        assert.equal(await s.activeRollout('shop'), undefined);
      }),
    );

    it(
      'ending with b starts the rollout to b with it',
      withStore(async (s) => {
        const e = await s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 50, by: { cookie: 'uid' }, startedAt: 10 });
        const r = await s.endExperiment(e.id, { kept: 'b', reason: 'kept b', now: 20, rollout: { fromRevision: 1, toRevision: 2 } });
        assert.equal(r.rollout?.toRevision, 2);
        assert.equal(r.rollout?.fromRevision, 1);
        assert.equal(r.rollout?.status, 'running');
        assert.deepEqual(await s.activeRollout('shop'), r.rollout);
        assert.equal(r.experiment.kept, 'b');
      }),
    );

    it(
      'a rollout (a deploy, a rollback) ends the running experiment, kept none, with the reason',
      withStore(async (s) => {
        const e = await s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 50, by: { cookie: 'uid' }, startedAt: 10 });
        await s.createRollout({ app: 'shop', fromRevision: 1, toRevision: 2, startedAt: 30 });
        assert.equal(await s.activeExperiment('shop'), undefined);
        const [ended] = await s.listExperiments('shop', 1);
        assert.equal(ended!.id, e.id);
        assert.equal(ended!.kept, undefined);
        assert.equal(ended!.endedAt, 30);
        assert.match(ended!.reason ?? '', /rollout to revision 2 started/);
        // A new experiment can start after it.
        await s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 10, by: { cookie: 'uid' }, startedAt: 40 });
      }),
    );

    it(
      "the app's removal ends it, and the purge deletes its rows",
      withStore(async (s) => {
        await s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 50, by: { cookie: 'uid' }, startedAt: 10 });
        await s.removeApp('shop', 50);
        assert.equal(await s.activeExperiment('shop'), undefined);
        assert.match((await s.listExperiments('shop', 1))[0]!.reason ?? '', /app removed/);
        assert.deepEqual(await s.purgeRemovedApps(), ['shop']);
        assert.deepEqual(await s.listExperiments('shop', 10), []);
      }),
    );

    if (kind === 'sqlite') {
      it(
        'appends experiment.started / experiment.ended in the same transactions, published after commit',
        withStore(async (s) => {
          const heard: PilotEvent[] = [];
          const off = s.subscribeEvents((b) => heard.push(...b));
          const e = await s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 25, by: { cookie: 'uid' }, startedAt: 10 });
          await assert.rejects(
            s.startExperiment({ app: 'shop', control: 1, variant: 2, split: 25, by: { cookie: 'uid' }, startedAt: 11 }),
            conflict,
          );
          await s.endExperiment(e.id, { kept: 'b', reason: 'kept b', now: 20, rollout: { fromRevision: 1, toRevision: 2 } });
          off();
          const kinds = heard.map((x) => x.kind);
          assert.deepEqual(kinds, ['experiment.started', 'experiment.ended', 'rollout.started']);
          assert.deepEqual(heard[0]!.payload, { experiment: e.id, control: 1, variant: 2, split: 25, by: 'cookie:uid' });
          assert.deepEqual(heard[1]!.payload, { experiment: e.id, kept: 'b', keptRevision: 2, reason: 'kept b' });
          const stored = await s.readEvents({ after: 0, app: 'shop', limit: 100, kinds: ['experiment.started', 'experiment.ended'] });
          assert.equal(stored.length, 2, 'the refused start wrote nothing');
        }),
      );
    }
  });
}

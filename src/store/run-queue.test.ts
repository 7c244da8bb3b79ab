import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig } from '../core/app-config.js';
import { SqliteStore } from './sqlite-store.js';

const sha = (c: string): string => c.repeat(40);

async function withStore(fn: (s: SqliteStore) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-queue-'));
  const s = new SqliteStore(join(dir, 'pilot.db'));
  try {
    await s.setAppSource(
      'web',
      resolveAppConfig({}, 'web'),
      { repo: '/srv/web.git', branch: 'main', webhookSecret: 'v1:x', githubToken: undefined, statusApiUrl: undefined },
      1,
    );
    await fn(s);
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const push = (delivery: string, commit: string, now = 10) => ({
  app: 'web',
  deliveryId: delivery,
  commit,
  branch: 'main',
  message: 'm',
  author: 'a',
  now,
});

describe('durable run queue', () => {
  it('dedupes by delivery id and by a commit already queued or running', () =>
    withStore(async (s) => {
      const a = await s.enqueueWebhookRun(push('d1', sha('a')));
      assert.equal(a.outcome, 'queued');
      const again = await s.enqueueWebhookRun(push('d1', sha('b')));
      assert.equal(again.outcome, 'duplicate-delivery');
      assert.equal(again.run.id, a.run.id);
      const same = await s.enqueueWebhookRun(push('d2', sha('a')));
      assert.equal(same.outcome, 'duplicate-commit');
      assert.equal((await s.listRuns({ limit: 10 })).length, 1);
    }));

  it('supersedes older queued runs of the branch and gives fences in push order', () =>
    withStore(async (s) => {
      const r1 = await s.enqueueWebhookRun(push('d1', sha('a')));
      const r2 = await s.enqueueWebhookRun(push('d2', sha('b')));
      const r3 = await s.enqueueWebhookRun(push('d3', sha('c')));
      assert.ok(r3.outcome === 'queued');
      assert.deepEqual(r3.superseded, [r2.run.id]);
      assert.equal((await s.getRun(r1.run.id))?.status, 'superseded');
      assert.equal((await s.getRun(r1.run.id))?.supersededBy, r2.run.id);
      assert.deepEqual([r1.run.fence, r2.run.fence, r3.run.fence], [1, 2, 3]);
    }));

  it('claims one run per app, honours the quiet period, and recovers interrupted runs once', () =>
    withStore(async (s) => {
      await s.enqueueWebhookRun(push('d1', sha('a'), 100));
      assert.equal(await s.claimNextRun(new Set(), 150, 50), undefined, 'still in its quiet period');
      const run = await s.claimNextRun(new Set(), 200, 200);
      assert.equal(run?.status, 'running');
      assert.equal(run?.attempt, 1);
      await s.enqueueWebhookRun(push('d2', sha('b'), 210));
      assert.equal(await s.claimNextRun(new Set(), 300, 300), undefined, 'one run at a time per app');
      const [interrupted] = await s.recoverInterruptedRuns(400);
      assert.equal(interrupted?.status, 'interrupted');
      assert.match(interrupted!.error!, /retried as run #(\d+)/);
      const retry = (await s.listRuns({ limit: 10 })).find((r) => r.retryOf === run!.id)!;
      assert.equal(retry.attempt, 2);
      assert.equal(retry.fence, run!.fence);
      const claimed = await s.claimNextRun(new Set(), 500, 500);
      assert.equal(claimed?.id, 2, 'the older queued run (d2) first');
      const again = await s.claimNextRun(new Set(['web']), 600, 600);
      assert.equal(again, undefined);
      // A retry that is interrupted again is not retried a second time.
      await s.updateRun(2, { status: 'succeeded' });
      const r = await s.claimNextRun(new Set(), 700, 700);
      assert.equal(r?.id, retry.id);
      const [twice] = await s.recoverInterruptedRuns(800);
      assert.match(twice!.error!, /not retried/);
    }));

  it('ends a CLI run the dead server left running as interrupted, without a retry; a rollback run is left to its rollout', () =>
    withStore(async (s) => {
      const cli = await s.createRun({
        app: 'web',
        trigger: 'cli',
        commit: sha('c'),
        dirty: false,
        steps: [{ name: 'build', status: 'running' }],
        now: 10,
      });
      const rollback = await s.createRun({
        app: 'web',
        trigger: 'rollback',
        commit: sha('d'),
        dirty: false,
        steps: [{ name: 'deploy', status: 'running' }],
        now: 10,
      });
      await s.updateRun(cli.id, { status: 'running' });
      await s.updateRun(rollback.id, { status: 'running' });
      const recovered = await s.recoverInterruptedRuns(20);
      assert.deepEqual(
        recovered.map((r) => [r.id, r.status]),
        [[cli.id, 'interrupted']],
      );
      assert.match(recovered[0]!.error!, /server stopped while it ran; run `pilot run` again/);
      assert.equal((await s.getRun(rollback.id))?.status, 'running');
      assert.equal((await s.listRuns({ limit: 10 })).length, 2, 'no retry queued');
    }));
});

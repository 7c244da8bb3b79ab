import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig } from '../core/app-config.js';
import { isPilotError } from '../core/errors.js';
import { SqliteStore } from './sqlite-store.js';

const sha = (c: string): string => c.repeat(40);
const DIGEST = `sha256:${'a'.repeat(64)}`;

async function withStore(fn: (s: SqliteStore, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-state-'));
  const s = new SqliteStore(join(dir, 'pilot.db'));
  try {
    await s.setAppSource(
      'web',
      resolveAppConfig({}, 'web'),
      { repo: '/srv/web.git', branch: 'main', webhookSecret: 'v1:x', githubToken: undefined, statusApiUrl: undefined },
      1,
    );
    await fn(s, dir);
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('store: state is never guessed', () => {
  it('finds the revision an interrupted run already made, for its retry (same fence, same commit)', () =>
    withStore(async (s) => {
      const q = await s.enqueueWebhookRun({
        app: 'web',
        deliveryId: 'd1',
        commit: sha('a'),
        branch: 'main',
        message: 'm',
        author: 'a',
        now: 10,
      });
      assert.equal(q.outcome, 'queued');
      const run = (await s.claimNextRun(new Set(), 20))!;
      const rev = await s.createRevision({
        app: 'web',
        artifact: DIGEST,
        commit: sha('a'),
        dirty: false,
        config: resolveAppConfig({}, 'web'),
        runId: run.id,
        createdAt: 30,
        image: undefined,
        nodeRuntime: undefined,
      });
      const [interrupted] = await s.recoverInterruptedRuns(40);
      assert.equal(interrupted?.status, 'interrupted');
      const retry = (await s.claimNextRun(new Set(), 50))!;
      assert.equal(retry.retryOf, run.id);
      assert.equal((await s.revisionOfFence('web', retry.fence!, sha('a')))?.number, rev.number);
      assert.equal(await s.revisionOfFence('web', retry.fence!, sha('b')), undefined, 'another commit is not it');
      assert.equal(await s.revisionOfFence('web', retry.fence! + 1, sha('a')), undefined, 'another fence is not it');
    }));

  it('marks CLI runs left running interrupted at start, and leaves webhook and rollback runs to their own recovery', () =>
    withStore(async (s) => {
      const cli = await s.createRun({ app: 'web', trigger: 'cli', commit: sha('c'), dirty: false, steps: [], now: 1 });
      const rb = await s.createRun({ app: 'web', trigger: 'rollback', commit: sha('c'), dirty: false, steps: [], now: 1 });
      assert.equal(await s.interruptForegroundRuns(5), 1);
      assert.equal((await s.getRun(cli.id))?.status, 'interrupted');
      assert.equal((await s.getRun(rb.id))?.status, 'running');
    }));

  it('removes an app in two steps: hidden and stopping at once, rows gone once its instances are', () =>
    withStore(async (s) => {
      await s.upsertNode({
        id: 'n1',
        name: 'n1',
        address: '127.0.0.1',
        apiUrl: 'http://127.0.0.1:1',
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
      await s.createRevision({
        app: 'web',
        artifact: DIGEST,
        commit: sha('a'),
        dirty: false,
        config: resolveAppConfig({}, 'web'),
        runId: undefined,
        createdAt: 2,
        image: undefined,
        nodeRuntime: undefined,
      });
      await s.createInstance({ id: 'web-1-x', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 3 });
      await s.setSecret('web', 'TOKEN', 'sealed', 3);
      assert.equal(await s.removeApp('web', 4), true);
      assert.equal(await s.removeApp('web', 4), false, 'already being removed');
      assert.equal(await s.getApp('web'), undefined);
      assert.deepEqual(await s.removingApps(), ['web']);
      assert.equal((await s.listInstances({ app: 'web' }))[0]?.desired, 'stop');
      assert.deepEqual(await s.listSecrets('web'), []);
      assert.deepEqual(await s.purgeRemovedApps(), [], 'an instance is still there');
      await s.deleteInstance('web-1-x');
      assert.deepEqual(await s.purgeRemovedApps(), ['web']);
      assert.deepEqual(await s.listRevisions('web'), []);
      assert.deepEqual(await s.removingApps(), []);
    }));

  it('backs up a consistent copy while open, which opens as a store with the same rows', () =>
    withStore(async (s, dir) => {
      const file = join(dir, 'copy.db');
      await s.backup(file);
      const copy = new SqliteStore(file);
      try {
        assert.equal((await copy.getApp('web'))?.repo, '/srv/web.git');
      } finally {
        copy.close();
      }
    }));

  it('refuses a damaged or foreign file with database_corrupt and a hint to restore', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilot-state-'));
    try {
      const garbage = join(dir, 'garbage.db');
      writeFileSync(garbage, 'this is not a database, but it is long enough to look like one '.repeat(100));
      assert.throws(
        () => new SqliteStore(garbage),
        (e) => isPilotError(e) && e.code === 'database_corrupt' && /pilot restore/.test(e.hint ?? ''),
      );
      const file = join(dir, 'pilot.db');
      const s = new SqliteStore(file);
      s.close();
      const bytes = readFileSync(file);
      bytes.fill(0x41, 100, 4096); // the first page after the header: sqlite_schema
      writeFileSync(file, bytes);
      assert.throws(
        () => new SqliteStore(file),
        (e) => isPilotError(e) && e.code === 'database_corrupt',
      );
      assert.throws(
        () => new SqliteStore(join(dir, 'absent.db'), { mustExist: true }),
        (e) => isPilotError(e),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

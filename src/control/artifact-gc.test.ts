import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { FsBlobStore } from '../artifacts/blob-store.js';
import { resolveAppConfig } from '../core/app-config.js';
import { isPilotError } from '../core/errors.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { assertBlobsPresent, collectArtifacts } from './artifact-gc.js';

const HOUR = 3_600_000;
const serial = { serial: <T>(fn: () => Promise<T>): Promise<T> => fn() };

describe('artifact GC applied to a store and a blob store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-gc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('deletes blobs with their metadata and runtime records, keeps the active one, and skips a blob asked for since the listing', async () => {
    const store = new SqliteStore(join(dir, 'pilot.db'));
    const blobs = new FsBlobStore(join(dir, 'artifacts'));
    try {
      const put = async (): Promise<string> => (await blobs.put(Readable.from([randomBytes(2000)]))).digest;
      const [a1, a2, rt, orphan] = [await put(), await put(), await put(), await put()];
      const old = Date.now() - 5 * HOUR;
      for (const d of [a1, a2, rt, orphan]) {
        store.putArtifactMeta({ digest: d, size: 2000, app: 'web', commit: undefined, createdAt: old });
        utimesSync(blobs.path(d), new Date(old), new Date(old));
      }
      await store.putNodeRuntime({
        version: '22.1.0',
        platform: 'linux-x64',
        digest: rt,
        integrity: undefined,
        size: 2000,
        origin: 'import',
        createdAt: old,
      });
      const config = resolveAppConfig({}, 'web');
      await store.upsertApp('web', config, old);
      const sha = 'a'.repeat(40);
      await store.createRevision({
        app: 'web',
        artifact: a1,
        commit: sha,
        dirty: false,
        config,
        runId: undefined,
        image: undefined,
        nodeRuntime: undefined,
        createdAt: old,
      });
      const r2 = await store.createRevision({
        app: 'web',
        artifact: a2,
        commit: sha,
        dirty: false,
        config,
        runId: undefined,
        image: undefined,
        nodeRuntime: undefined,
        createdAt: old,
      });
      await store.setActiveRevision('web', r2.number, old);

      const settings = { keep: 0, graceMs: HOUR };
      const dry = await collectArtifacts({ store, blobs, reconciler: serial }, { dryRun: true, settings });
      assert.deepEqual(dry.deleted.map((b) => b.digest).sort(), [a1, rt, orphan].sort());
      assert.equal(dry.kept, 4 - 3);
      assert.equal(await blobs.has(a1), true, 'dry run');

      // A leader whose lease ran out (paused past it, issue #16) deletes nothing.
      const fenced = await collectArtifacts({ store, blobs, reconciler: serial, mayDelete: () => false }, { dryRun: false, settings });
      assert.deepEqual(fenced.deleted, []);
      assert.equal((await Promise.all([a1, rt, orphan].map((d) => blobs.has(d)))).every(Boolean), true, 'every blob stays');
      // A publisher asks for `orphan` (HEAD) after the GC listed it: it is about to deploy it.
      const touching = new FsBlobStore(blobs.root);
      const realList = blobs.list.bind(blobs);
      blobs.list = async () => {
        const listed = await realList();
        await touching.touch(orphan);
        return listed;
      };
      const real = await collectArtifacts({ store, blobs, reconciler: serial }, { dryRun: false, settings });
      assert.deepEqual(real.deleted.map((b) => b.digest).sort(), [a1, rt].sort());
      assert.equal(await blobs.has(orphan), true, 'asked for since the listing: kept');
      assert.equal(await blobs.has(a2), true, 'active: kept');
      assert.equal(store.getArtifactMeta(a1), undefined, 'its metadata row is gone');
      assert.ok(store.getArtifactMeta(a2));
      assert.deepEqual(await store.listNodeRuntimes(), [], 'a collected runtime is no longer recorded');
      assert.equal((await store.listRevisions('web')).length, 2, 'revisions stay');

      await assert.rejects(
        assertBlobsPresent(blobs, [a1], 'cannot roll "web" back to revision 1', true),
        (e: unknown) =>
          isPilotError(e) &&
          e.code === 'artifact_collected' &&
          e.message === `cannot roll "web" back to revision 1: artifact ${a1} was garbage-collected`,
      );
      await assertBlobsPresent(blobs, [a2], 'x', true);
    } finally {
      store.close();
    }
  });
});

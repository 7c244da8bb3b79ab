/**
 * Artifact GC end to end: `pilot up` with the grace period at 0, three deploys of a small app,
 * `pilot gc --dry-run` deleting nothing, `pilot gc --keep 1` deleting the old tarballs and keeping
 * the active one, the app still serving, a rollback to a collected revision refused clearly, and
 * bad `keep` values refused with the limit. The local agent collects its cache every second meanwhile:
 * the old unpacked releases go, the one in use stays.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git, Harness, makeRepo, ROOT, waitFor } from './harness.js';

const h = new Harness();
let repo = '';

const blobFile = (digest: string): string => join(h.home, 'artifacts', 'sha256', digest.slice('sha256:'.length));

describe('pilot gc, end to end', { timeout: 300_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    // The local agent collects its cache every second, keeping nothing unused: deploys must still work.
    await h.startUp({
      PILOT_GC_GRACE: '0',
      PILOT_GC_INTERVAL: '0',
      PILOT_CACHE_GC_INTERVAL: '1s',
      PILOT_CACHE_GC_IDLE: '0',
      PILOT_CACHE_GC_KEEP: '0',
    });
  });
  after(() => h.cleanup());

  it('deletes the artifacts of old revisions, keeps the active one, and the app keeps serving', async () => {
    for (let i = 1; i <= 3; i++) {
      if (i > 1) {
        writeFileSync(
          join(repo, 'pilot.yaml'),
          readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace(/GREETING: .*/, `GREETING: hello ${i}`),
        );
        await git(repo, 'commit', '-qam', `greeting ${i}`);
      }
      const r = await h.cli(['run', repo]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`revision ${i} of hello is live`));
    }
    const revisions = (await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions as { number: number; artifact: string }[];
    const art = new Map(revisions.map((r) => [r.number, r.artifact]));
    assert.equal(new Set(art.values()).size, 3, 'three commits, three artifacts');
    for (const d of art.values()) assert.ok(existsSync(blobFile(d)));

    // The agent removed the unpacked releases of revisions 1 and 2 once their instances were gone; 3 serves from its own.
    const releases = join(h.home, 'agent', 'releases');
    await waitFor('old release folders to be removed', () => {
      const left = readdirSync(releases).filter((n) => /^[a-f0-9]{64}$/.test(n));
      return left.length === 1 ? left : undefined;
    });
    assert.deepEqual(
      readdirSync(releases).filter((n) => /^[a-f0-9]{64}$/.test(n)),
      [art.get(3)!.slice('sha256:'.length)],
    );

    const dry = await h.cli(['gc', '--dry-run', '--keep', '1', '--json']);
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    const planned = JSON.parse(dry.stdout) as {
      deleted: { digest: string; size: number; app?: string }[];
      freedBytes: number;
      dryRun: boolean;
    };
    assert.equal(planned.dryRun, true);
    assert.deepEqual(planned.deleted.map((b) => b.digest).sort(), [art.get(1)!, art.get(2)!].sort());
    assert.ok(planned.freedBytes > 0);
    for (const d of art.values()) assert.ok(existsSync(blobFile(d)), 'a dry run deletes nothing');

    const real = await h.cli(['gc', '--keep', '1']);
    assert.equal(real.code, 0, real.stdout + real.stderr);
    assert.match(real.stdout, /freed [\d.]+ MB: 2 artifact\(s\) deleted/);
    assert.equal(existsSync(blobFile(art.get(1)!)), false);
    assert.equal(existsSync(blobFile(art.get(2)!)), false);
    assert.ok(existsSync(blobFile(art.get(3)!)), "the active revision's artifact stays");
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${art.get(1)!}`)).status, 404);
    const listed = (await h.apiCall('GET', '/api/v1/artifacts?app=hello')).json.artifacts as { digest: string }[];
    assert.deepEqual(
      listed.map((a) => a.digest),
      [art.get(3)!],
      'the metadata rows go with the blobs',
    );

    const served = await h.viaRouter('hello.localhost');
    assert.equal(served.status, 200);
    assert.equal(JSON.parse(served.text).revision, '3');

    const rb = await h.cli(['rollback', 'hello', '--to', '1']);
    assert.notEqual(rb.code, 0);
    assert.match(rb.stderr + rb.stdout, new RegExp(`artifact ${art.get(1)!} was garbage-collected`));
    const status = (await h.apiCall('GET', '/api/v1/apps/hello')).json;
    assert.equal(status.app.activeRevision, 3, 'the refused rollback changed nothing');
    assert.equal(status.revisions.length, 3, 'revision history stays');

    const again = JSON.parse((await h.cli(['gc', '--keep', '1', '--json'])).stdout) as { deleted: unknown[] };
    assert.deepEqual(again.deleted, [], 'a second pass has nothing left to delete');
  });

  it('refuses a negative, fractional or absurd keep, naming the limit', async () => {
    for (const keep of [-1, 1.5, 5000, 'ten']) {
      const r = await h.apiCall('POST', '/api/v1/artifacts/gc', { keep });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.match(r.json.error.message, /keep must be a whole number from 0 to 1000/);
    }
    const cli = await h.cli(['gc', '--keep', '-3']);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /from 0 to 1000/);
    assert.equal((await h.apiCall('POST', '/api/v1/artifacts/gc', { dryRun: 'yes' })).status, 400);
  });
});

/**
 * Blobs heal: a stored artifact whose bytes no longer match its digest is found (by the publisher's
 * HEAD before an upload, and by the periodic scrub), quarantined, and replaced by the next publish;
 * the redeploy succeeds instead of failing on that digest forever.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Harness, makeRepo, ROOT, waitFor } from './harness.js';

const h = new Harness();
let repo = '';

function blobFile(digest: string): string {
  return join(h.home, 'artifacts', 'sha256', digest.slice('sha256:'.length));
}
function quarantined(): string[] {
  const dir = join(h.home, 'artifacts', 'quarantine');
  return existsSync(dir) ? readdirSync(dir) : [];
}
function corrupt(digest: string): void {
  const f = blobFile(digest);
  const bytes = readFileSync(f);
  bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x5a;
  chmodSync(f, 0o644);
  writeFileSync(f, bytes);
  chmodSync(f, 0o444);
}
const sha = (f: string): string => `sha256:${createHash('sha256').update(readFileSync(f)).digest('hex')}`;

async function lastRun(): Promise<{ id: number; status: string; artifact: string }> {
  return (await h.apiCall('GET', '/api/v1/runs?limit=1')).json.runs[0];
}

describe('corrupt artifacts heal', { timeout: 300_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp({ PILOT_SCRUB_INTERVAL: '1s' });
  });
  after(() => h.cleanup());

  it('a redeploy of a corrupt artifact re-uploads it (the HEAD re-hashes) and succeeds', async () => {
    const first = await h.cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const { artifact } = await lastRun();
    assert.equal(sha(blobFile(artifact)), artifact);
    corrupt(artifact);
    const second = await h.cli(['run', repo]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const run = await lastRun();
    assert.equal(run.status, 'succeeded');
    assert.equal(run.artifact, artifact, 'the same commit builds the same artifact');
    assert.equal(sha(blobFile(artifact)), artifact, 'the stored bytes are whole again');
    assert.ok(quarantined().length >= 1, 'the corrupt copy is in quarantine');
    assert.equal((await h.viaRouter('hello.localhost')).status, 200);
  });

  it('the scrub quarantines a corrupt blob by itself; the next run heals it', async () => {
    const { artifact } = await lastRun();
    const before = quarantined().length;
    corrupt(artifact);
    await waitFor('the scrub to quarantine the blob', () => (quarantined().length > before ? true : undefined), 60_000);
    assert.equal(existsSync(blobFile(artifact)), false);
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${artifact}`)).status, 404);
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    assert.match(log, /scrub: stored artifact does not hash to its digest: quarantined/);
    const third = await h.cli(['run', repo]);
    assert.equal(third.code, 0, third.stdout + third.stderr);
    assert.equal(sha(blobFile(artifact)), artifact);
  });
});

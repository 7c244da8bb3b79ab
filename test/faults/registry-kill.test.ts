/**
 * The artifact registry (`pilot up --artifacts oci+http://…`, a real docker-registry) SIGKILLed
 * while a run publishes a 48 MB artifact through the control plane, under a request loop through the
 * router to the revision already live: 0 failed requests, the control plane stays up, the run fails
 * naming the registry, nothing half-stored appears (no new tag), no revision is made; with the
 * registry back the same commit deploys once.
 *
 * Prints `FAULT registry-kill9-mid-publish: …`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { registrySkip, startRegistry, type TestRegistry } from '../../src/docker/test-registry.js';
import { git, Harness, makeRepo, ROOT, sleep } from '../integration/harness.js';

const REPO = 'pilot/blobs';
const h = new Harness();
let reg: TestRegistry;
let repo = '';

async function tags(): Promise<string[]> {
  const res = await request(`${reg.url}/v2/${REPO}/tags/list`);
  return ((await res.body.json()) as { tags: string[] | null }).tags ?? [];
}

/** Bytes the registry has received into open upload sessions of the repository. */
function uploading(): number {
  const dir = join(reg.dir, 'data', 'docker', 'registry', 'v2', 'repositories', REPO, '_uploads');
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const id of readdirSync(dir)) {
    try {
      n += statSync(join(dir, id, 'data')).size;
    } catch {
      // started or finished meanwhile
    }
  }
  return n;
}

describe('the artifact registry killed mid-publish', { skip: registrySkip, timeout: 480_000 }, () => {
  before(async () => {
    reg = await startRegistry();
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp({ PILOT_GC_INTERVAL: '0' }, 'up', { api: 0, router: 0 }, [], ['--artifacts', `oci+http://${reg.address}/${REPO}`]);
    const first = await h.cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
  });
  after(async () => {
    await h.cleanup();
    await reg?.stop();
  });

  it('keeps serving, fails the run naming the registry, stores nothing half-way, and deploys once it is back', async () => {
    // 48 MB that gzip cannot shrink: the publish takes long enough to be cut in the middle.
    writeFileSync(join(repo, 'payload.bin'), randomBytes(48 * 1024 * 1024));
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace(/GREETING: .*/, 'GREETING: big'));
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-qm', 'a big payload');
    const tagsBefore = await tags();

    let done = false;
    const tally = [0, 0];
    const errors: string[] = [];
    const loop = (async () => {
      while (!done) {
        try {
          const res = await request(`${h.router}/`, { headers: { host: 'hello.localhost' }, headersTimeout: 5000, bodyTimeout: 5000 });
          await res.body.text();
          tally[res.statusCode === 200 ? 0 : 1]!++;
          if (res.statusCode !== 200) errors.push(String(res.statusCode));
        } catch (err) {
          tally[1]!++;
          errors.push(String(err));
          await sleep(50);
        }
      }
    })();

    const run = h.cli(['run', repo]);
    let killedAt = -1;
    const t0 = performance.now();
    while (performance.now() - t0 < 120_000) {
      const n = uploading();
      if (n > 4 * 1024 * 1024) {
        killedAt = n;
        await reg.kill();
        break;
      }
      await sleep(5);
    }
    const failed = await run;
    assert.ok(killedAt > 0, `the upload was never seen in flight: ${failed.stdout}${failed.stderr}`);
    assert.notEqual(failed.code, 0, 'the run fails');
    assert.match(failed.stdout + failed.stderr, new RegExp(`artifact registry oci\\+http://${reg.address}/${REPO}`));
    const health = await request(`${h.api}/healthz`);
    await health.body.dump();
    assert.equal(health.statusCode, 200, 'the control plane is up');
    assert.equal(((await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions as unknown[]).length, 1, 'no revision made');

    await reg.restart();
    assert.deepEqual((await tags()).sort(), tagsBefore.sort(), 'no tag for a half-published artifact');
    const again = await h.cli(['run', repo]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /revision 2 of hello is live/);
    done = true;
    await loop;
    const revisions = (await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions as unknown[];
    assert.equal(revisions.length, 2, 'deployed once');
    assert.equal((await tags()).length, tagsBefore.length + 1);
    console.log(
      `FAULT registry-kill9-mid-publish: failed ${tally[1]}/${tally[0]! + tally[1]!}, registry killed at ${(killedAt / 1024 / 1024).toFixed(1)} MB of 48, control plane up, half-stored tags 0, revisions from the failed run 0, duplicates 0, retry live${errors.length ? `; errors: ${errors.slice(0, 3).join(' | ')}` : ''}`,
    );
    assert.equal(tally[1], 0, errors.join(' | '));
  });
});

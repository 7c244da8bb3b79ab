import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ArtifactClient } from '../artifacts/client.js';
import { startTestServer, type TestServer } from '../artifacts/test-server.fixture.js';
import { isPilotError } from '../core/errors.js';
import { connectEngine } from './engine.js';
import { archiveImageIds, ImageFetcher } from './images.js';
import { buildTestImage, ensureBaseImage, removeImage } from './test-images.js';
import { FetchedImages } from '../agent/image-gc.js';
import { pushImage, startRegistry, type TestRegistry } from './test-registry.js';
import { dockerSkip } from './test-support.js';

const engine = connectEngine();
const USER = { username: 'pilot', password: `pw-${process.pid}-secret` };
const tags = { a: `pilot-test/agent/images-a:${process.pid}`, b: `pilot-test/agent/images-b:${process.pid}` };
const img = { a: '', b: '', refA: '', refB: '', archiveA: '' };
let registry: TestRegistry | undefined;
let server: TestServer | undefined;
let dir = '';

/** Counts pulls (createImage calls) made through the engine connection; the calls themselves are real. */
let pulls = 0;
const counted = connectEngine();
const realCreate = counted.createImage.bind(counted) as (...args: unknown[]) => Promise<NodeJS.ReadableStream>;
(counted as { createImage: unknown }).createImage = (...args: unknown[]) => {
  pulls++;
  return realCreate(...args);
};

const codeIs =
  (code: string, re?: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(isPilotError(e), `a PilotError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };

async function present(id: string): Promise<boolean> {
  return engine
    .getImage(id)
    .inspect()
    .then(
      () => true,
      () => false,
    );
}

/** Remove every reference to an image we built, so the fetch paths have something to do. */
async function forget(id: string): Promise<void> {
  await engine
    .getImage(id)
    .remove({ force: true })
    .catch(() => undefined);
  assert.equal(await present(id), false);
}

void describe('images: the agent gets the instance image onto the engine', { skip: dockerSkip, timeout: 180_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-images-'));
    img.a = await buildTestImage(engine, tags.a, { 'a.txt': `image A ${process.pid} ${Date.now()}` }, ['node', '-e', '1']);
    img.b = await buildTestImage(engine, tags.b, { 'b.txt': `image B ${process.pid} ${Date.now()}` }, ['node', '-e', '1']);
    registry = await startRegistry({ user: USER });
    const pa = await pushImage(engine, img.a, registry.address, 'pilot-test/images-a', USER);
    const pb = await pushImage(engine, img.b, registry.address, 'pilot-test/images-b', USER);
    img.refA = pa.ref;
    img.refB = pb.ref;
    // The archive of A in the artifact repository, as `docker save` (by ID) writes it.
    server = await startTestServer({ maxBytes: 512 * 1024 * 1024 });
    const file = join(dir, 'a.tar');
    const hash = createHash('sha256');
    const saved = await engine.getImage(img.a).get();
    saved.on('data', (c: Buffer) => hash.update(c));
    await pipeline(saved, createWriteStream(file));
    img.archiveA = `sha256:${hash.digest('hex')}`;
    await new ArtifactClient(server.url, 'test-token').upload(file, img.archiveA);
    assert.deepEqual(await archiveImageIds(file), [img.a]);
    await forget(img.a);
    await forget(img.b);
  });

  after(async () => {
    await registry?.stop();
    await server?.close();
    for (const t of Object.values(tags)) await removeImage(engine, t);
    for (const id of [img.a, img.b])
      if (id)
        await engine
          .getImage(id)
          .remove({ force: true })
          .catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const fetcher = (e = engine): ImageFetcher =>
    new ImageFetcher(e, join(dir, 'downloads'), () => new ArtifactClient(server!.url, 'test-token'));
  const auth = (): { serveraddress: string; username: string; password: string } => ({ serveraddress: registry!.address, ...USER });

  it('pulls by digest with the registry credentials; concurrent starts share one pull; without them it is refused, and no password in the error', async () => {
    await assert.rejects(fetcher().ensure({ id: img.a, ref: img.refA }), (e: unknown) => {
      codeIs(
        'registry_unreachable',
        /pull of 127\.0\.0\.1:\d+\/pilot-test\/images-a@sha256:[a-f0-9]{64} failed: .*(unauthorized|no basic auth)/i,
      )(e);
      assert.doesNotMatch(JSON.stringify({ m: (e as Error).message, h: (e as { hint?: string }).hint }), new RegExp(USER.password));
      return true;
    });
    const f = fetcher(counted);
    pulls = 0;
    await Promise.all([
      f.ensure({ id: img.a, ref: img.refA }, auth()),
      f.ensure({ id: img.a, ref: img.refA }, auth()),
      f.ensure({ id: img.a, ref: img.refA }, auth()),
    ]);
    assert.equal(pulls, 1, 'one pull for three starts');
    assert.equal(await present(img.a), true);
    await f.ensure({ id: img.a, ref: img.refA }, auth());
    assert.equal(pulls, 1, 'present: no pull at all');
  });

  it('refuses a pulled image whose ID differs from the recorded one, and removes it', async () => {
    const recorded = `sha256:${'ab'.repeat(32)}`;
    await assert.rejects(
      fetcher().ensure({ id: recorded, ref: img.refB }, auth()),
      codeIs('digest_mismatch', new RegExp(`^pulled image ${img.b} differs from the recorded ${recorded}`)),
    );
    assert.equal(await present(img.b), false, 'what was pulled is gone');
    assert.equal(await present(img.refB), false);
  });

  it('downloads the archive from the artifact repository and loads it', async () => {
    await forget(img.a);
    const f = fetcher();
    await Promise.all([f.ensure({ id: img.a, archive: img.archiveA }), f.ensure({ id: img.a, archive: img.archiveA })]);
    assert.equal(await present(img.a), true);
  });

  it('refuses an archive that holds another image before loading it', async () => {
    await assert.rejects(
      fetcher().ensure({ id: img.b, archive: img.archiveA }),
      codeIs('digest_mismatch', new RegExp(`^image archive ${img.archiveA} holds ${img.a}, not the recorded ${img.b}`)),
    );
    assert.equal(await present(img.b), false);
  });

  it('refuses bad references clearly', async () => {
    const id = `sha256:${'cd'.repeat(32)}`;
    await assert.rejects(
      fetcher().ensure({ id, ref: `${registry!.address}/pilot-test/images-a:t` }),
      codeIs('deploy_failed', /not pinned by digest/),
    );
    await assert.rejects(fetcher().ensure({ id }), codeIs('deploy_failed', /neither a registry reference nor an archive/));
    await assert.rejects(fetcher().ensure({ id: 'latest' }), codeIs('deploy_failed', /is not sha256:<64 hex>/));
    await assert.rejects(
      fetcher().ensure({ id, archive: `sha256:${'ef'.repeat(32)}` }),
      (e: unknown) => isPilotError(e) && e.code === 'artifact_not_found',
    );
  });

  it("records only what it fetched; the agent's image GC removes it once unused, never while a container uses it, never the base", async () => {
    await forget(img.a);
    const fetched = new FetchedImages(join(dir, 'fetched.json'));
    const f = new ImageFetcher(
      engine,
      join(dir, 'downloads'),
      () => new ArtifactClient(server!.url, 'test-token'),
      (image) => fetched.record(image.id, 'web'),
    );
    await f.ensure({ id: img.a, archive: img.archiveA });
    assert.equal(fetched.has(img.a), true, 'loaded by this fetcher: recorded');
    await f.ensure({ id: img.a, archive: img.archiveA });
    const base = await ensureBaseImage(engine);
    assert.equal(fetched.has((await engine.getImage(base.tag).inspect()).Id), false, 'the base image is never recorded');

    const policy = { idleMs: 0, keepUnusedPerApp: 0 };
    const container = await engine.createContainer({ Image: img.a, Cmd: ['node', '-e', '1'], Labels: { 'pilot-test': 'image-gc' } });
    try {
      assert.deepEqual(await fetched.collect(engine, () => new Set([img.a]), Date.now(), policy), [], 'in use locally: not even tried');
      assert.deepEqual(
        await fetched.collect(engine, () => new Set(), Date.now(), policy),
        [],
        "a container (another agent's) uses it: the engine refuses",
      );
      assert.equal(await present(img.a), true);
      assert.equal(fetched.has(img.a), true, 'still recorded, tried again later');
    } finally {
      await container.remove({ force: true });
    }
    assert.deepEqual(await fetched.collect(engine, () => new Set(), Date.now(), policy), [img.a]);
    assert.equal(await present(img.a), false);
    assert.equal(await present(base.tag), true, 'the base image stays');
  });
});

import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { connectEngine } from './engine.js';
import { saveOciArchive } from './oci-archive.js';
import { followBuild, followProgress } from './progress.js';
import { dockerSkip } from './test-support.js';
import { archiveImageIds } from './images.js';

/** Every entry of a tarball: name → content (small test archives only). */
async function entries(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  await tar.t({
    file,
    onReadEntry: (e) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => out.set(e.path, Buffer.concat(chunks)));
    },
  });
  return out;
}

describe('image archives in the OCI image layout', { skip: dockerSkip }, () => {
  const engine = connectEngine();
  const dirs: string[] = [];
  const ids: string[] = [];
  after(async () => {
    for (const id of ids)
      await engine
        .getImage(id)
        .remove({ force: true })
        .catch(() => undefined);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('writes oci-layout, index.json and blobs by digest, loads back as the same image, and is deterministic', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pilot-oci-'));
    dirs.push(dir);
    await writeFile(join(dir, 'a.txt'), `a ${process.pid}\n`);
    await writeFile(join(dir, 'b.txt'), 'b\n');
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY a.txt /\nCOPY b.txt /\nCMD ["/a.txt"]\n');
    const stream = await engine.buildImage(
      tar.c({ cwd: dir, portable: true, noMtime: true }, ['Dockerfile', 'a.txt', 'b.txt']) as unknown as NodeJS.ReadableStream,
      { rm: true, forcerm: true, labels: { 'dev.pilot.test': 'oci-archive' } },
    );
    const id = await followBuild(engine, stream);
    ids.push(id);

    const file = join(dir, 'image.tar');
    const saved = await saveOciArchive(engine, id, file);
    assert.match(saved.digest, /^sha256:[0-9a-f]{64}$/);
    const files = await entries(file);
    assert.deepEqual(JSON.parse(files.get('oci-layout')!.toString()), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(files.get('index.json')!.toString());
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.manifests.length, 1);
    const blob = (digest: string): Buffer => files.get(`blobs/sha256/${digest.slice(7)}`)!;
    const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.config.digest, id, 'the config blob is the image ID');
    const config = JSON.parse(blob(manifest.config.digest).toString());
    assert.deepEqual(
      manifest.layers.map((l: { digest: string }) => l.digest),
      config.rootfs.diff_ids,
      'uncompressed layers: digests are the diff IDs',
    );
    for (const l of manifest.layers as { mediaType: string; size: number; digest: string }[]) {
      assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar');
      assert.equal(blob(l.digest).length, l.size);
    }
    assert.deepEqual(await archiveImageIds(file), [id], 'the agent finds the image ID to verify before loading');

    // Same image, same bytes: publishing it again uploads nothing.
    assert.equal((await saveOciArchive(engine, id, join(dir, 'again.tar'))).digest, saved.digest);

    // docker load of this engine (20.10 reads manifest.json) gives the same image back.
    await engine.getImage(id).remove({ force: true });
    await assert.rejects(engine.getImage(id).inspect());
    await followProgress(engine, await engine.loadImage(createReadStream(file)));
    assert.equal((await engine.getImage(id).inspect()).Id, id);
  });
});

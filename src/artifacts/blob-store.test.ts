import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { pino } from 'pino';
import { FsBlobStore } from './blob-store.js';
import { scrubBlobs } from './scrub.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('FsBlobStore', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-blobs-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const fresh = (name: string): FsBlobStore => new FsBlobStore(join(dir, name));

  it('stores bytes under their digest and gives them back', async () => {
    const store = fresh('round-trip');
    const data = randomBytes(300_000);
    const r = await store.put(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
    assert.deepEqual(r, { digest: sha(data), size: data.length, created: true });
    assert.equal(await store.has(r.digest), true);
    assert.deepEqual(await store.stat(r.digest), { size: data.length });
    assert.deepEqual(await readAll(await store.openRead(r.digest)), data);
    assert.equal(await store.verify(r.digest), true);
    assert.equal(store.path(r.digest), join(dir, 'round-trip', 'sha256', r.digest.slice(7)));
    assert.equal((await stat(store.path(r.digest))).mode & 0o777, 0o400, 'blobs are read-only on disk, and private');
  });

  it('answers absent digests without creating anything', async () => {
    const store = fresh('absent');
    const d = sha(Buffer.from('nothing'));
    assert.equal(await store.has(d), false);
    assert.equal(await store.stat(d), undefined);
    assert.equal(await store.verify(d), false);
    await assert.rejects(store.openRead(d), (e: unknown) => e instanceof PilotError && e.code === 'artifact_not_found');
  });

  it('refuses malformed digests before touching the disk', async () => {
    const store = fresh('malformed');
    for (const bad of ['sha256:../../etc/passwd', 'sha256:ABC', 'md5:00', '']) {
      assert.throws(
        () => store.path(bad),
        (e: unknown) => e instanceof PilotError && e.code === 'invalid_digest',
      );
      await assert.rejects(store.has(bad), (e: unknown) => e instanceof PilotError && e.code === 'invalid_digest');
    }
  });

  it('never rewrites a stored blob: a second put reports created=false', async () => {
    const store = fresh('immutable');
    const data = randomBytes(10_000);
    const first = await store.put(Readable.from([data]));
    const before = await stat(store.path(first.digest));
    const second = await store.put(Readable.from([data]), { expectedDigest: first.digest });
    assert.deepEqual(second, { ...first, created: false });
    const after = await stat(store.path(first.digest));
    assert.equal(after.ino, before.ino, 'same file, not a replacement');
    assert.ok(after.mtimeMs >= before.mtimeMs, 'only its mtime may move: published again, young again for the GC (touch)');
    assert.deepEqual(await readFile(store.path(first.digest)), data, "the bytes are the first upload's");
    assert.deepEqual(await readdir(join(dir, 'immutable', 'tmp')), []);
  });

  it('keeps nothing when the bytes do not match the expected digest', async () => {
    const store = fresh('mismatch');
    const data = randomBytes(50_000);
    const claimed = sha(Buffer.from('something else'));
    await assert.rejects(store.put(Readable.from([data]), { expectedDigest: claimed }), (e: unknown) => {
      assert.ok(e instanceof PilotError);
      assert.equal(e.code, 'digest_mismatch');
      assert.match(e.message, new RegExp(sha(data)));
      return true;
    });
    assert.equal(await store.has(claimed), false);
    assert.equal(await store.has(sha(data)), false);
    assert.deepEqual(await readdir(join(dir, 'mismatch', 'sha256')), []);
    assert.deepEqual(await readdir(join(dir, 'mismatch', 'tmp')), []);
  });

  it('stops reading as soon as maxBytes is exceeded and keeps nothing', async () => {
    const store = fresh('too-large');
    const chunk = randomBytes(64 * 1024);
    let pulled = 0;
    const src = Readable.from(
      (function* () {
        for (let i = 0; i < 1000; i++) {
          pulled += 1;
          yield chunk;
        }
      })(),
    );
    await assert.rejects(store.put(src, { maxBytes: 100_000 }), (e: unknown) => e instanceof PilotError && e.code === 'too_large');
    // Readable.from reads ahead up to 16 chunks; the point is that it did not read all 1000.
    assert.ok(pulled < 40, `pulled ${pulled} chunks of 1000`);
    src.destroy();
    assert.deepEqual(await readdir(join(dir, 'too-large', 'sha256')), []);
    assert.deepEqual(await readdir(join(dir, 'too-large', 'tmp')), []);
  });

  it('accepts concurrent puts of the same bytes: one creates, all agree, one file', async () => {
    const store = fresh('concurrent');
    const data = randomBytes(2 * 1024 * 1024);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => store.put(Readable.from([data.subarray(0, 1 << 20), data.subarray(1 << 20)]))),
    );
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.ok(results.every((r) => r.digest === sha(data) && r.size === data.length));
    assert.deepEqual(await readdir(join(dir, 'concurrent', 'sha256')), [sha(data).slice(7)]);
    assert.deepEqual(await readdir(join(dir, 'concurrent', 'tmp')), []);
    assert.equal(await store.verify(sha(data)), true);
  });

  it('never shows a blob under its digest before it is complete', async () => {
    const store = fresh('visibility');
    const data = randomBytes(8 * 64 * 1024);
    const digest = sha(data);
    const seen: string[][] = [];
    const src = Readable.from(
      (async function* () {
        for (let i = 0; i < 8; i++) {
          yield data.subarray(i * 65536, (i + 1) * 65536);
          await sleep(5);
          seen.push(await readdir(join(dir, 'visibility', 'sha256')));
        }
      })(),
    );
    const r = await store.put(src);
    assert.equal(r.digest, digest);
    assert.ok(seen.length >= 7 && seen.every((names) => names.length === 0), 'sha256/ stays empty while writing');
    assert.deepEqual(await readdir(join(dir, 'visibility', 'sha256')), [digest.slice(7)]);
  });

  it('removes stale temp files at start-up and leaves fresh ones (another writer) alone', async () => {
    const root = join(dir, 'stale');
    await mkdir(join(root, 'tmp'), { recursive: true });
    await writeFile(join(root, 'tmp', 'crashed.part'), 'half a blob');
    const anHourAgo = new Date(Date.now() - 3600_000);
    await utimes(join(root, 'tmp', 'crashed.part'), anHourAgo, anHourAgo);
    await writeFile(join(root, 'tmp', 'in-flight.part'), 'being written');
    const store = new FsBlobStore(root);
    assert.equal(await store.has(sha(Buffer.from('x'))), false);
    assert.deepEqual(await readdir(join(root, 'tmp')), ['in-flight.part']);
  });

  it('verify() notices bytes changed on disk', async () => {
    const store = fresh('verify');
    const data = randomBytes(4096);
    const { digest } = await store.put(Readable.from([data]));
    const file = store.path(digest);
    const bytes = await readFile(file);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(file, bytes);
    assert.equal(await store.verify(digest), false);
  });

  it('deletes a blob: a reader that already opened it reads to the end, a new open gets not-found', async () => {
    const store = fresh('delete');
    const data = randomBytes(2 * 1024 * 1024);
    const { digest } = await store.put(Readable.from([data]));
    const reading = await store.openRead(digest);
    assert.deepEqual(
      (await store.list()).map((b) => [b.digest, b.size]),
      [[digest, data.length]],
    );
    assert.equal(await store.delete(digest), true);
    assert.equal(await store.has(digest), false);
    assert.deepEqual(await store.list(), []);
    await assert.rejects(store.openRead(digest), (e: unknown) => e instanceof PilotError && e.code === 'artifact_not_found');
    assert.deepEqual(await readAll(reading), data, 'the open download completes');
    assert.equal(await store.delete(digest), false, 'deleting again says it was not there');
    const again = await store.put(Readable.from([data]));
    assert.equal(again.created, true, 'the same bytes can be stored again after a delete');
  });

  it('makes a blob young again when it is touched or published again (the GC grace period restarts)', async () => {
    const store = fresh('touch');
    const data = randomBytes(1000);
    const { digest } = await store.put(Readable.from([data]));
    const old = new Date(Date.now() - 5 * 3_600_000);
    await utimes(store.path(digest), old, old);
    assert.ok(Date.now() - (await store.modifiedAt(digest))! > 4 * 3_600_000);
    assert.equal((await store.put(Readable.from([data]))).created, false);
    assert.ok(Date.now() - (await store.modifiedAt(digest))! < 60_000, 'a second PUT of the same bytes refreshes it');
    await utimes(store.path(digest), old, old);
    assert.equal(await store.touch(digest), true);
    assert.ok(Date.now() - (await store.modifiedAt(digest))! < 60_000);
    assert.equal(await store.touch(sha(randomBytes(8))), false);
    assert.equal(await store.modifiedAt(sha(randomBytes(8))), undefined);
  });

  /** Corrupt a stored blob the way rot or a hand edit would: same name, other bytes. */
  async function corrupt(store: FsBlobStore, digest: string, how: 'flip' | 'truncate'): Promise<void> {
    const file = store.path(digest);
    const bytes = await readFile(file);
    await chmod(file, 0o644);
    if (how === 'flip') bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(file, how === 'flip' ? bytes : bytes.subarray(0, bytes.length - 7));
    await chmod(file, 0o444);
  }

  it('heals a corrupt blob on the next PUT of its digest: quarantined, replaced by the verified upload', async () => {
    const store = fresh('heal-put');
    for (const how of ['flip', 'truncate'] as const) {
      const data = randomBytes(200_000);
      const { digest } = await store.put(Readable.from([data]));
      await corrupt(store, digest, how);
      assert.equal(await store.verify(digest), false);
      const again = await store.put(Readable.from([data]), { expectedDigest: digest });
      assert.equal(again.created, true, `${how}: the good bytes take the name again`);
      assert.match(again.healed ?? '', new RegExp(`quarantine/${digest.slice(7)}\\.\\d+$`));
      assert.equal(await store.verify(digest), true);
      assert.deepEqual(await readAll(await store.openRead(digest)), data);
      assert.equal((await stat(store.path(digest))).mode & 0o777, 0o400, 'blobs are private to Pilot (0400)');
      // An intact blob is left alone.
      const third = await store.put(Readable.from([data]), { expectedDigest: digest });
      assert.equal(third.created, false);
      assert.equal(third.healed, undefined);
    }
    assert.equal((await readdir(join(dir, 'heal-put', 'quarantine'))).length, 2, 'both corrupt copies kept in quarantine');
    assert.deepEqual((await store.list()).length, 2, 'quarantined files are not listed as blobs');
  });

  it('verifyOrQuarantine: ok, missing, or quarantined (the name is then free)', async () => {
    const store = fresh('verify-q');
    const data = randomBytes(5000);
    const { digest } = await store.put(Readable.from([data]));
    assert.deepEqual(await store.verifyOrQuarantine(digest), { state: 'ok', size: 5000 });
    assert.deepEqual(await store.verifyOrQuarantine(sha(randomBytes(4))), { state: 'missing' });
    await corrupt(store, digest, 'flip');
    const r = await store.verifyOrQuarantine(digest);
    assert.equal(r.state, 'quarantined');
    assert.equal(await store.has(digest), false);
    // Concurrent checks of one digest never quarantine a good copy put back meanwhile.
    await store.put(Readable.from([data]));
    const all = await Promise.all([store.verifyOrQuarantine(digest), store.put(Readable.from([data])), store.verifyOrQuarantine(digest)]);
    assert.equal((all[0] as { state: string }).state, 'ok');
    assert.equal((all[2] as { state: string }).state, 'ok');
  });

  it('the scrub re-hashes every blob and quarantines only the corrupt ones', async () => {
    const store = fresh('scrub');
    const blobs = await Promise.all([1, 2, 3].map(async (n) => (await store.put(Readable.from([randomBytes(1000 * n)]))).digest));
    await corrupt(store, blobs[1]!, 'truncate');
    const logged: unknown[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void logged.push(JSON.parse(l)) });
    const r = await scrubBlobs(store, log);
    assert.deepEqual(r, { checked: 3, quarantined: [blobs[1]] });
    assert.equal(logged.length, 1);
    assert.equal(await store.has(blobs[1]!), false);
    assert.equal(await store.has(blobs[0]!), true);
    assert.deepEqual(await scrubBlobs(store, log), { checked: 2, quarantined: [] });
  });
});

/**
 * The contract every BlobStore honours, run against each adapter from its own test file
 * (blob-store.contract.test.ts: the filesystem store; the OCI store on a real docker-registry, with
 * monolithic and with chunked uploads). What only some adapters can do (a back end that dies and
 * comes back, bytes damaged behind the store's back) comes from the harness, or is skipped with why.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { PilotError } from '../core/errors.js';
import type { BlobStore } from './blob-port.js';

export interface BlobHarness {
  /** A store over a fresh, empty space (a folder, a repository). */
  makeStore(): Promise<BlobStore>;
  /** Sizes around the adapter's own edges (read buffer, upload chunk), tried besides the common ones. */
  readonly edges: readonly number[];
  /** Damage the stored bytes of a digest behind the store's back (flip one byte). */
  corrupt(store: BlobStore, digest: string): Promise<void>;
  /**
   * What an operator does after a quarantine before the bytes can be stored again, if anything
   * (a registry keeps a damaged file until its own garbage-collect removes the unreferenced blob).
   */
  heal?(): Promise<void>;
  /** The back end dies (SIGKILL) and later comes back with its storage. */
  outage?: { kill(): Promise<void>; restart(): Promise<void>; code: string };
  cleanup(): Promise<void>;
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const isCode = (code: string) => (e: unknown) => e instanceof PilotError && e.code === code;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function hashOf(r: Readable): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of r) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** `data` in pieces of `piece` bytes (streams arrive in pieces that do not line up with any edge). */
function pieces(data: Buffer, piece = 100_003): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += piece) yield data.subarray(i, i + piece);
    })(),
  );
}

/** Register the blob store contract for one adapter. */
export function blobStoreContract(
  name: string,
  makeHarness: () => Promise<BlobHarness>,
  opts: { skip?: string | false; timeout?: number; /** The harness has `outage` (a back end to kill). */ outage?: boolean } = {},
): void {
  async function setup(t: TestContext): Promise<{ hx: BlobHarness; store: BlobStore }> {
    const hx = await makeHarness();
    t.after(() => hx.cleanup());
    const store = await hx.makeStore();
    t.after(() => store.close());
    return { hx, store };
  }

  void describe(`blob store contract: ${name}`, { timeout: opts.timeout ?? 180_000, ...(opts.skip ? { skip: opts.skip } : {}) }, () => {
    void it('stores and gives back bytes of every size: 0 B, 1 B, the edges, 24 MB', async (t) => {
      const { hx, store } = await setup(t);
      const sizes = [0, 1, 2, 65_535, 65_536, 65_537, ...hx.edges, 24 * 1024 * 1024 + 7];
      for (const size of sizes) {
        const data = randomBytes(size);
        const r = await store.put(pieces(data), { expectedDigest: sha(data) });
        assert.deepEqual(r, { digest: sha(data), size, created: true }, `size ${size}`);
        assert.equal(await store.has(r.digest), true);
        assert.deepEqual(await store.stat(r.digest), { size });
        const back = await hashOf(await store.openRead(r.digest));
        assert.deepEqual(back, { digest: sha(data), size }, `size ${size} read back`);
        assert.equal(await store.verify(r.digest), true);
      }
      const listed = await store.list();
      assert.deepEqual(new Set(listed.map((b) => b.digest)).size, sizes.length);
      for (const b of listed) assert.ok(Date.now() - b.mtimeMs < 10 * 60_000, 'listed with a recent time');
    });

    void it('names the bytes itself when no digest is given', async (t) => {
      const { hx, store } = await setup(t);
      for (const size of [0, 1, ...hx.edges]) {
        const data = randomBytes(size);
        const r = await store.put(pieces(data, 65_536));
        assert.deepEqual(r, { digest: sha(data), size, created: true }, `size ${size}`);
        assert.deepEqual(await readAll(await store.openRead(r.digest)), data);
      }
    });

    void it('serves ranges of an opened blob', async (t) => {
      const { store } = await setup(t);
      const data = randomBytes(3 * 1024 * 1024 + 5);
      const { digest } = await store.put(pieces(data));
      const blob = await store.openBlob(digest);
      try {
        assert.equal(blob.size, data.length);
        for (const [a, b] of [
          [0, 0],
          [10, 19],
          [1024 * 1024 - 1, 2 * 1024 * 1024],
          [data.length - 1, data.length - 1],
          [0, data.length - 1],
        ] as const)
          assert.deepEqual(await readAll(await blob.read(a, b)), data.subarray(a, b + 1), `range ${a}-${b}`);
      } finally {
        await blob.close();
      }
    });

    void it('never stores a blob twice: a second put says created=false and refreshes its time', async (t) => {
      const { store } = await setup(t);
      const data = randomBytes(100_000);
      const first = await store.put(pieces(data), { expectedDigest: sha(data) });
      const t0 = (await store.modifiedAt(first.digest))!;
      await sleep(20);
      const second = await store.put(pieces(data), { expectedDigest: sha(data) });
      assert.deepEqual(second, { ...first, created: false });
      assert.ok((await store.modifiedAt(first.digest))! > t0, 'published again: young again for the GC');
      assert.deepEqual(
        (await store.list()).map((b) => [b.digest, b.size]),
        [[first.digest, data.length]],
      );
      assert.deepEqual(await readAll(await store.openRead(first.digest)), data);
    });

    void it('keeps nothing when the bytes do not hash to the digest given', async (t) => {
      const { store } = await setup(t);
      for (const data of [randomBytes(50_000), randomBytes(0), randomBytes(2 * 1024 * 1024 + 1)]) {
        const claimed = sha(Buffer.from(`something else ${data.length}`));
        await assert.rejects(store.put(pieces(data), { expectedDigest: claimed }), (e: unknown) => {
          assert.ok(e instanceof PilotError && e.code === 'digest_mismatch', String(e));
          assert.match(e.message, new RegExp(sha(data)));
          return true;
        });
        assert.equal(await store.has(claimed), false);
        assert.equal(await store.has(sha(data)), false);
      }
      // Already stored bytes, offered again under a wrong digest: still refused.
      const data = randomBytes(1000);
      await store.put(pieces(data));
      await assert.rejects(store.put(pieces(randomBytes(1000)), { expectedDigest: sha(data) }), isCode('digest_mismatch'));
      assert.deepEqual(await store.list().then((l) => l.map((b) => b.digest)), [sha(data)]);
    });

    void it('stops at maxBytes and keeps nothing', async (t) => {
      const { store } = await setup(t);
      const data = randomBytes(3 * 1024 * 1024);
      for (const expectedDigest of [sha(data), undefined]) {
        await assert.rejects(
          store.put(pieces(data, 65_536), { maxBytes: 1024 * 1024, ...(expectedDigest ? { expectedDigest } : {}) }),
          isCode('too_large'),
        );
        assert.equal(await store.has(sha(data)), false);
      }
      assert.deepEqual(await store.list(), []);
    });

    void it('a sender that goes away mid-upload: its own error comes back, nothing is stored', async (t) => {
      const { store } = await setup(t);
      const data = randomBytes(3 * 1024 * 1024);
      for (const expectedDigest of [sha(data), undefined]) {
        const src = Readable.from(
          (async function* () {
            yield data.subarray(0, 2 * 1024 * 1024);
            await sleep(20);
            throw Object.assign(new Error('client aborted'), { code: 'ECONNRESET' });
          })(),
        );
        await assert.rejects(store.put(src, expectedDigest ? { expectedDigest } : {}), /client aborted/);
        assert.equal(await store.has(sha(data)), false);
        assert.deepEqual(await store.list(), []);
      }
    });

    void it('accepts concurrent puts of the same bytes: one creates, all agree', async (t) => {
      const { store } = await setup(t);
      const data = randomBytes(2 * 1024 * 1024 + 3);
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) => store.put(pieces(data), i % 2 ? { expectedDigest: sha(data) } : {})),
      );
      assert.equal(results.filter((r) => r.created).length, 1, JSON.stringify(results));
      assert.ok(results.every((r) => r.digest === sha(data) && r.size === data.length));
      assert.deepEqual(
        (await store.list()).map((b) => b.digest),
        [sha(data)],
      );
      assert.equal(await store.verify(sha(data)), true);
    });

    void it('refuses hostile digests and keeps hostile names as plain data', async (t) => {
      const { store } = await setup(t);
      const hex = 'a'.repeat(64);
      for (const bad of [
        'sha256:../../etc/passwd',
        `sha256:${hex.toUpperCase()}`,
        'md5:00',
        '',
        `sha256:${hex}/../x`,
        `sha256:${hex}\n`,
        `sha256:${'g'.repeat(64)}`,
        `sha512:${hex}`,
      ]) {
        await assert.rejects(store.has(bad), isCode('invalid_digest'), JSON.stringify(bad));
        await assert.rejects(store.openRead(bad), isCode('invalid_digest'));
        await assert.rejects(store.delete(bad), isCode('invalid_digest'));
        await assert.rejects(store.put(pieces(Buffer.from('x')), { expectedDigest: bad }), isCode('invalid_digest'));
      }
      const data = Buffer.from('named');
      for (const name of ['../../etc/passwd', 'a"b\\c\n\u0000', 'é'.repeat(300), '']) {
        const r = await store.put(pieces(data), { name });
        assert.equal(r.digest, sha(data));
      }
      assert.deepEqual(await readAll(await store.openRead(sha(data))), data);
    });

    void it('deletes: gone for readers and listings, stored again by the next put', async (t) => {
      const { store } = await setup(t);
      const data = randomBytes(200_000);
      const { digest } = await store.put(pieces(data));
      const absent = sha(Buffer.from('never stored'));
      assert.equal(await store.has(absent), false);
      assert.equal(await store.stat(absent), undefined);
      assert.equal(await store.modifiedAt(absent), undefined);
      assert.equal(await store.verify(absent), false);
      assert.equal(await store.touch(absent), false);
      assert.deepEqual(await store.verifyOrQuarantine(absent), { state: 'missing' });
      await assert.rejects(store.openRead(absent), isCode('artifact_not_found'));
      assert.equal(await store.delete(digest), true);
      assert.equal(await store.has(digest), false);
      assert.deepEqual(await store.list(), []);
      await assert.rejects(store.openBlob(digest), isCode('artifact_not_found'));
      assert.equal(await store.delete(digest), false);
      assert.equal((await store.put(pieces(data), { expectedDigest: digest })).created, true);
      assert.deepEqual(await readAll(await store.openRead(digest)), data);
    });

    void it('touch makes a blob young again', async (t) => {
      const { store } = await setup(t);
      const { digest } = await store.put(pieces(randomBytes(10)));
      const before = (await store.modifiedAt(digest))!;
      await sleep(20);
      assert.equal(await store.touch(digest), true);
      const after = (await store.modifiedAt(digest))!;
      assert.ok(after > before, `${after} > ${before}`);
      assert.equal((await store.list())[0]!.mtimeMs, after);
      assert.deepEqual(await store.verifyOrQuarantine(digest), { state: 'ok', size: 10 });
    });

    void it('takes damaged bytes out of the store; the next put stores them again', async (t) => {
      const { hx, store } = await setup(t);
      const data = randomBytes(300_000);
      const { digest } = await store.put(pieces(data));
      await hx.corrupt(store, digest);
      assert.equal(await store.verify(digest), false);
      const check = await store.verifyOrQuarantine(digest);
      assert.equal(check.state, 'quarantined');
      assert.equal(await store.has(digest), false);
      await hx.heal?.();
      const again = await store.put(pieces(data), { expectedDigest: digest });
      assert.equal(again.created, true);
      assert.equal(await store.verify(digest), true);
    });

    // A filesystem has no back end that dies and comes back: only the adapters that have one run it.
    if (opts.outage === true)
      void it('a back end that dies mid-upload: a clear error, nothing half-stored, the retry works', async (t) => {
        const { hx, store } = await setup(t);
        const outage = hx.outage!;
        const data = randomBytes(8 * 1024 * 1024);
        for (const expectedDigest of [sha(data), undefined]) {
          const src = Readable.from(
            (async function* () {
              for (let i = 0; i < data.length; i += 256 * 1024) {
                if (i === 4 * 1024 * 1024) {
                  await outage.kill();
                }
                yield data.subarray(i, i + 256 * 1024);
              }
            })(),
          );
          await assert.rejects(store.put(src, expectedDigest ? { expectedDigest } : {}), (e: unknown) => {
            assert.ok(e instanceof PilotError, String(e));
            assert.equal(e.code, outage.code);
            assert.equal(e.retryable, true);
            return true;
          });
          await outage.restart();
          assert.equal(await store.has(sha(data)), false, 'nothing half-committed');
          assert.deepEqual(await store.list(), []);
          const r = await store.put(pieces(data), expectedDigest ? { expectedDigest } : {});
          assert.equal(r.created, true);
          assert.deepEqual(await hashOf(await store.openRead(sha(data))), { digest: sha(data), size: data.length });
          assert.equal(await store.delete(sha(data)), true);
        }
      });
  });
}

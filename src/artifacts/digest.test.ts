/**
 * writeHashed on its own: streams and async iterables give the same bytes and digest for chunkings
 * of every kind (chunks smaller and larger than its reused buffers), a source that runs ahead of the
 * disk is held back, and every way a source can fail leaves nothing in flight on the file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WRITE_BATCH, writeHashed, type WriteHashedOptions } from './digest.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('writeHashed', () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-digest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Write `src` to a new file; the file's bytes and what writeHashed said (or threw). */
  async function writeTo(src: Readable | AsyncIterable<unknown>, opts: WriteHashedOptions = {}, feed: () => void = () => undefined) {
    const file = join(dir, `f${n++}`);
    const fh = await open(file, 'wx');
    try {
      const writing = writeHashed(src, fh, opts);
      feed(); // once writeHashed listens
      const got = await writing.then(
        (r) => ({ ok: true as const, r }),
        (err: unknown) => ({ ok: false as const, err }),
      );
      return { got, bytes: await readFile(file) };
    } finally {
      await fh.close();
    }
  }

  /** The same bytes cut into chunks of the given sizes (cycling), as a stream. */
  function chunked(bytes: Buffer, sizes: number[]): Buffer[] {
    const out: Buffer[] = [];
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const len = Math.min(sizes[i % sizes.length]!, bytes.length - at);
      out.push(bytes.subarray(at, at + len));
      at += len;
    }
    return out;
  }

  it('stores and hashes the exact bytes, for streams and iterables, whatever the chunking', async () => {
    const cases: [number, number[]][] = [
      [0, [1]],
      [1, [1]],
      [WRITE_BATCH - 1, [65_536]],
      [WRITE_BATCH, [WRITE_BATCH]],
      [WRITE_BATCH + 1, [7, 65_536, 1]],
      [3 * WRITE_BATCH + 17, [1000, 300_000, 13]],
      [8 * WRITE_BATCH + 5, [2 * WRITE_BATCH + 3]], // single chunks larger than a batch
    ];
    for (const [size, sizes] of cases) {
      const bytes = randomBytes(size);
      for (const [kind, src] of [
        ['stream', Readable.from(chunked(bytes, sizes), { objectMode: false })],
        [
          'iterable',
          (async function* () {
            yield* chunked(bytes, sizes);
          })(),
        ],
      ] as const) {
        const { got, bytes: stored } = await writeTo(src, { syncEvery: WRITE_BATCH });
        assert.ok(got.ok, `${kind} ${size}: ${String(!got.ok && got.err)}`);
        assert.deepEqual(got.r, { digest: sha(bytes), size }, `${kind} ${size}`);
        assert.ok(stored.equals(bytes), `${kind} ${size}: stored bytes differ`);
      }
    }
  });

  it('accepts string chunks (as utf-8), like the iterable path', async () => {
    const src = new PassThrough({ encoding: 'utf8' });
    const { got, bytes } = await writeTo(src, {}, () => src.end(Buffer.from('héllo wörld')));
    assert.ok(got.ok);
    assert.equal(bytes.toString(), 'héllo wörld');
    assert.equal(got.r.digest, sha(Buffer.from('héllo wörld')));
  });

  it('holds a source that runs ahead of the disk back (backpressure), and takes all of it', async () => {
    const src = new PassThrough({ highWaterMark: 64 * 1024 });
    const chunk = randomBytes(WRITE_BATCH);
    const all: Buffer[] = [];
    let heldBack = 0;
    const { got, bytes } = await writeTo(src, {}, () => {
      void (async () => {
        for (let i = 0; i < 24; i++) {
          all.push(chunk);
          if (!src.write(chunk)) {
            heldBack++;
            await new Promise((r) => src.once('drain', r));
          }
        }
        src.end();
      })();
    });
    assert.ok(got.ok);
    assert.ok(heldBack > 0, 'the source was never held back');
    assert.ok(bytes.equals(Buffer.concat(all)));
  });

  it('stops at maxBytes with the caller’s error and does not destroy the source', async () => {
    const src = new PassThrough();
    const { got, bytes } = await writeTo(src, { maxBytes: WRITE_BATCH + 10, tooLarge: () => new Error('too big here') }, () => {
      src.write(randomBytes(WRITE_BATCH)); // a write in flight when the limit is passed
      src.write(randomBytes(11));
    });
    assert.equal(got.ok, false);
    assert.match(String(!got.ok && (got.err as Error).message), /too big here/);
    assert.equal(src.destroyed, false);
    assert.ok(bytes.length <= WRITE_BATCH, 'nothing past the limit is written');
    src.destroy();
  });

  it('a source that errors or closes before its end is the error, after the write in flight settled', async () => {
    const errs = new PassThrough();
    const r1 = await writeTo(errs, {}, () => {
      errs.write(randomBytes(WRITE_BATCH + 1));
      setImmediate(() => errs.destroy(new Error('client went away')));
    });
    assert.equal(r1.got.ok, false);
    assert.match(String(!r1.got.ok && (r1.got.err as Error).message), /client went away/);

    const closes = new PassThrough();
    const r2 = await writeTo(closes, {}, () => {
      closes.write(randomBytes(100));
      setImmediate(() => closes.destroy());
    });
    assert.equal(r2.got.ok, false);
    assert.equal((!r2.got.ok && (r2.got.err as { code?: string }).code) || '', 'ERR_STREAM_PREMATURE_CLOSE');

    const gone = new PassThrough();
    gone.destroy();
    const r3 = await writeTo(gone);
    assert.equal(r3.got.ok, false);
  });

  it('a failing write is the error, and the source is not destroyed', async () => {
    const file = join(dir, `ro${n++}`);
    await (await open(file, 'w')).close();
    const fh = await open(file, 'r'); // writes fail with EBADF
    const src = new PassThrough();
    try {
      const p = writeHashed(src, fh);
      src.write(randomBytes(WRITE_BATCH));
      src.end(randomBytes(WRITE_BATCH));
      await assert.rejects(p, (e: NodeJS.ErrnoException) => e.code === 'EBADF');
      assert.equal(src.errored, null, 'the source was destroyed with an error');
    } finally {
      src.destroy();
      await fh.close();
    }
  });

  it('an already ended stream gives the empty digest', async () => {
    const src = Readable.from([]);
    src.resume();
    await new Promise((r) => src.once('end', r));
    const { got } = await writeTo(src);
    assert.ok(got.ok);
    assert.deepEqual(got.r, { digest: sha(Buffer.alloc(0)), size: 0 });
  });
});

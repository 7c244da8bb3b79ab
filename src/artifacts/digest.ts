/** sha256 digests (`sha256:<hex>`) of bytes on their way somewhere, and of files. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';

export interface Digested {
  readonly digest: string;
  readonly size: number;
}

/** A pass-through stream that hashes and counts what flows through it; `result()` once it ended. */
export function sha256Tap(): { readonly tap: Transform; result(): Digested } {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { tap, result: () => ({ digest: `sha256:${hash.digest('hex')}`, size }) };
}

export async function sha256File(file: string): Promise<Digested> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

export interface WriteHashedOptions {
  /** Stop with this error (thrown by the callback) as soon as more bytes than this arrive. */
  readonly maxBytes?: number;
  readonly tooLarge?: () => Error;
  /**
   * Start an fdatasync of what is written so far each time this many more bytes reached the file,
   * one at a time and in the background: the disk writes back while the network still sends, so
   * the final sync has little left to do. Undefined: no early syncs (the caller may not need any).
   */
  readonly syncEvery?: number;
}

/** Bytes gathered before one write: few syscalls, and the disk gets large sequential writes. */
export const WRITE_BATCH = 1024 * 1024;

/**
 * Write every chunk of `src` to `fh` (from its current position), hashing and counting on the way,
 * in one pass: chunks are gathered into WRITE_BATCH writev(2) calls (no copy into one buffer), and
 * one write is kept in flight while the next batch arrives, so the disk and the network work at
 * the same time. Does not fsync at the end and does not close `fh`: the caller decides. `src` is
 * iterated without being destroyed when this stops early (its owner answers or cleans up).
 */
export async function writeHashed(
  src: Readable | AsyncIterable<unknown>,
  fh: FileHandle,
  opts: WriteHashedOptions = {},
): Promise<Digested> {
  const hash = createHash('sha256');
  let size = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let inflight: Promise<void> = Promise.resolve();
  let syncing: Promise<void> = Promise.resolve();
  let synced = 0;
  const flush = async (): Promise<void> => {
    const bufs = batch;
    batch = [];
    batchBytes = 0;
    await inflight;
    inflight = writevAll(fh, bufs);
    inflight.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
  };
  try {
    // A stream that already ended would never settle its iterator: it has nothing left to give.
    const chunks = !(src instanceof Readable) ? src : src.readableEnded ? [] : src.iterator({ destroyOnReturn: false });
    for await (const chunk of chunks) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      size += buf.length;
      if (opts.maxBytes !== undefined && size > opts.maxBytes) throw (opts.tooLarge ?? (() => new RangeError('too large')))();
      hash.update(buf);
      batch.push(buf);
      batchBytes += buf.length;
      if (batchBytes >= WRITE_BATCH) {
        await flush();
        if (opts.syncEvery !== undefined && size - synced >= opts.syncEvery) {
          // One early sync at a time: wait for the previous one only when the next is due.
          await syncing;
          synced = size;
          syncing = inflight.then(() => fh.datasync());
          syncing.catch(() => undefined);
        }
      }
    }
    if (batchBytes > 0) await flush();
    await inflight;
    await syncing;
    return { digest: `sha256:${hash.digest('hex')}`, size };
  } finally {
    await inflight.catch(() => undefined);
    await syncing.catch(() => undefined);
  }
}

async function writevAll(fh: FileHandle, bufs: Buffer[]): Promise<void> {
  let rest = bufs;
  while (rest.length > 0) {
    let n = (await fh.writev(rest)).bytesWritten;
    // A short write: drop what went out, keep the tail of a buffer cut in the middle.
    let i = 0;
    while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length;
    rest = rest.slice(i);
    if (n > 0) rest[0] = rest[0]!.subarray(n);
  }
}

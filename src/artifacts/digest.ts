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
 * Bytes received but not yet written that a stream source may run ahead of the disk before it is
 * paused: the socket keeps being read while a write is in flight (pausing at every write stalled
 * the sender's TCP window), and memory per transfer stays bounded.
 */
export const MAX_QUEUED = 8 * 1024 * 1024;

/**
 * Write every chunk of `src` to `fh` (from its current position), hashing and counting on the way,
 * in one pass: chunks are gathered into WRITE_BATCH writev(2) calls (no copy into one buffer), and
 * one write is kept in flight while the next batch arrives, so the disk and the network work at
 * the same time. Does not fsync at the end and does not close `fh`: the caller decides. `src` is
 * never destroyed when this stops early (its owner answers or cleans up): a stream is paused.
 *
 * A stream is read in flowing mode ('data' events, no async iterator: no promise per chunk) and is
 * paused only when MAX_QUEUED bytes wait for the disk; other async iterables are iterated.
 */
export async function writeHashed(
  src: Readable | AsyncIterable<unknown>,
  fh: FileHandle,
  opts: WriteHashedOptions = {},
): Promise<Digested> {
  return src instanceof Readable ? writeHashedStream(src, fh, opts) : writeHashedIterable(src, fh, opts);
}

function writeHashedStream(src: Readable, fh: FileHandle, opts: WriteHashedOptions): Promise<Digested> {
  return new Promise<Digested>((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let queued = 0; // received, not yet written
    let written = 0;
    let writing = false;
    let syncing: Promise<void> | undefined;
    let synced = 0;
    let ended = false;
    let failure: { err: unknown } | undefined;

    const settle = (): void => {
      // Nothing of this call may still touch `fh` once the caller gets the answer (it closes it).
      if (writing || syncing !== undefined) return;
      if (failure !== undefined) return reject(failure.err);
      if (ended && batchBytes === 0) resolve({ digest: `sha256:${hash.digest('hex')}`, size });
    };
    const stop = (err: unknown): void => {
      if (failure !== undefined) return;
      failure = { err };
      detach();
      src.pause();
      batch = [];
      batchBytes = 0;
      settle();
    };
    const write = (): void => {
      const bufs = batch;
      const n = batchBytes;
      batch = [];
      batchBytes = 0;
      writing = true;
      void writevAll(fh, bufs).then(
        () => {
          writing = false;
          written += n;
          queued -= n;
          if (failure !== undefined) return settle();
          if (opts.syncEvery !== undefined && syncing === undefined && written - synced >= opts.syncEvery) {
            // One early sync at a time, in the background; writes go on meanwhile.
            const upto = written;
            syncing = fh.datasync().then(
              () => {
                syncing = undefined;
                synced = upto;
                settle();
              },
              (err: unknown) => {
                syncing = undefined;
                stop(err);
              },
            );
          }
          if (batchBytes >= WRITE_BATCH || (ended && batchBytes > 0)) write();
          if (queued < MAX_QUEUED && src.isPaused() && !ended) src.resume();
          settle();
        },
        (err: unknown) => {
          writing = false;
          stop(err);
        },
      );
    };
    const onData = (chunk: Buffer | string): void => {
      if (failure !== undefined) return;
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (opts.maxBytes !== undefined && size > opts.maxBytes) return stop((opts.tooLarge ?? (() => new RangeError('too large')))());
      hash.update(buf);
      batch.push(buf);
      batchBytes += buf.length;
      queued += buf.length;
      if (!writing && batchBytes >= WRITE_BATCH) write();
      if (queued >= MAX_QUEUED) src.pause();
    };
    // Ends the same way as the iterator did: an error, or a close before the end (a client that
    // went away), is the error; 'end' is the only success.
    const onEnd = (): void => {
      if (failure !== undefined) return;
      ended = true;
      detach();
      if (!writing && batchBytes > 0) write();
      settle();
    };
    const onError = (err: unknown): void => stop(err);
    const onClose = (): void => stop(Object.assign(new Error('the stream closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    const detach = (): void => {
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      src.off('close', onClose);
    };
    if (src.readableEnded) return onEnd();
    if (src.destroyed) return onClose();
    src.on('end', onEnd);
    src.on('error', onError);
    src.on('close', onClose);
    src.on('data', onData);
  });
}

async function writeHashedIterable(src: AsyncIterable<unknown>, fh: FileHandle, opts: WriteHashedOptions): Promise<Digested> {
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
    for await (const chunk of src) {
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

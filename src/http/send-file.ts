/**
 * Send part of an open file as an HTTP response body, with no allocation per chunk.
 *
 * Node has no sendfile(2) for sockets, so bytes go file → buffer → socket. A read stream allocates
 * a new buffer for every chunk; those are external memory to V8, and 100 MB of them start a full
 * mark-compact of the whole heap every few tens of MB (seen with --trace-gc on `pilot server`: 17–75
 * ms pauses, about one per 200 ms of transfer, the server idle in between waiting for them). Here
 * two buffers are reused for the whole transfer: one is filled from the file while the other is
 * being written to the socket, so the disk and the socket work at the same time and V8 sees no new
 * external memory.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

/** Bytes per read and per socket write. */
export const SEND_CHUNK = 1024 * 1024;

/**
 * Write bytes start..end (inclusive) of `fh` to `res` and end it. The head must already be written
 * (or is written by Node with the first chunk). Rejects when the client goes away or the file is
 * shorter than promised; the caller destroys the response then (its length cannot be met).
 */
export async function sendFileRange(fh: FileHandle, res: ServerResponse, start: number, end: number, chunk = SEND_CHUNK): Promise<void> {
  const size = end - start + 1;
  const bufs = [Buffer.allocUnsafeSlow(Math.min(chunk, Math.max(size, 1))), Buffer.allocUnsafeSlow(Math.min(chunk, Math.max(size, 1)))];
  let writing: Promise<void> = Promise.resolve();
  let pos = start;
  let which = 0;
  try {
    while (pos <= end) {
      const buf = bufs[which]!;
      which ^= 1;
      // The other buffer may still be on its way to the socket; this one is free (its write was
      // awaited before the other's began).
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos + 1), pos);
      if (bytesRead === 0) throw new RangeError(`file ended at ${pos}, ${end + 1 - pos} bytes short of the length announced`);
      pos += bytesRead;
      await writing;
      writing = writeChunk(res, buf.subarray(0, bytesRead));
      writing.catch(() => undefined); // awaited on the next turn or below
    }
    await writing;
  } finally {
    await writing.catch(() => undefined);
  }
  await new Promise<void>((resolve, reject) => {
    res.end(() => resolve());
    res.once('close', () => (res.writableFinished ? resolve() : reject(new Error('client went away'))));
  });
}

/** Resolve once `buf` is handed to the kernel (it may be reused then); reject if the response closes first. */
function writeChunk(res: ServerResponse, buf: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (res.destroyed) {
      reject(new Error('client went away'));
      return;
    }
    const onClose = (): void => reject(new Error('client went away'));
    res.once('close', onClose);
    res.write(buf, (err) => {
      res.off('close', onClose);
      if (err) reject(err);
      else resolve();
    });
  });
}

/** sha256 digests (`sha256:<hex>`) of bytes on their way somewhere, and of files. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';

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

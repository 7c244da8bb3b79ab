/**
 * Copy-truncate log rotation for instance logs.
 *
 * Why copy-truncate and not rename: the instance holds its log open (O_APPEND) for its whole life
 * and cannot be asked to reopen it, so renaming would leave it writing into file.1 forever. Because
 * of O_APPEND, after the truncation its next write lands at the new end (offset 0): no hole of NUL
 * bytes as with a plain file offset.
 *
 * The window: bytes written between the end of the copy and the truncate are lost. The copy reads
 * until it finds no more bytes (so it catches up with lines appended while it ran) and truncates
 * through the same handle right away, so the window is one file-system call long; a line written in
 * several write() calls can also lose its tail there. Rotation is not safe to run twice at once on
 * the same file: call it from one loop per instance.
 */
import { open, rename, rm, stat, truncate } from 'node:fs/promises';

const CHUNK = 1 << 16;

/** Rotate `file` → file.1 → file.2 … keeping `keep` old copies, if it is larger than maxBytes. */
export async function rotateIfNeeded(file: string, maxBytes: number, keep: number): Promise<boolean> {
  if (!Number.isInteger(keep) || keep < 0) throw new RangeError(`keep must be an integer >= 0, got ${keep}`);
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false; // nothing written yet
    throw e;
  }
  if (size <= maxBytes) return false;
  if (keep > 0) {
    await rm(`${file}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      try {
        await rename(`${file}.${i}`, `${file}.${i + 1}`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // a gap in the series is fine
      }
    }
    await copyThenTruncate(file, `${file}.1`, size);
  } else {
    await truncate(file, 0);
  }
  return true;
}

/** Copy src to a new dest until src stops growing, then truncate src through the same handle. */
async function copyThenTruncate(src: string, dest: string, size: number): Promise<void> {
  // A writer faster than this copy would keep it going forever: stop at twice the size we saw and
  // accept losing what a writer that fast appends during the truncate.
  const limit = 2 * size + CHUNK;
  const from = await open(src, 'r+');
  try {
    const to = await open(dest, 'w');
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      let pos = 0;
      for (;;) {
        const { bytesRead } = await from.read(buf, 0, CHUNK, pos);
        if (bytesRead === 0) break;
        await to.write(buf, 0, bytesRead);
        pos += bytesRead;
        if (pos > limit) break;
      }
      await from.truncate(0);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/**
 * A log file bounded by size at every write: before each chunk is written, the file is rotated
 * (renamed to file.1, file.1 to file.2 …, the oldest dropped) if the chunk would take it past
 * `maxBytes`. Rename rotation is safe here because this object is the file's only writer (the
 * log-writer process owns the app's pipes); no byte is lost in a rotation, and disk use is at most
 * maxBytes × (keep + 1) per stream whatever the rate.
 *
 * Write errors (ENOSPC, EIO) drop the chunk and are counted; the next write tries again. A log
 * writer that died on a full disk would turn every line of the app into EPIPE.
 */
import { closeSync, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

export class BoundedLog {
  private fd: number | undefined;
  private size = 0;
  /** Chunks dropped because the file system refused them. */
  dropped = 0;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
    private readonly keep: number,
  ) {
    if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
    if (!Number.isInteger(keep) || keep < 0) throw new RangeError(`keep must be an integer >= 0, got ${keep}`);
  }

  /** Append a chunk, rotating first if it would not fit. A chunk larger than maxBytes keeps its tail. */
  write(chunk: Buffer): void {
    const buf = chunk.length > this.maxBytes ? chunk.subarray(chunk.length - this.maxBytes) : chunk;
    try {
      this.ensureOpen();
      if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd!, buf, off, buf.length - off);
      this.size += buf.length;
    } catch {
      this.dropped++;
      this.closeFd(); // reopen (and re-measure) at the next write
    }
  }

  close(): void {
    this.closeFd();
  }

  private ensureOpen(): void {
    if (this.fd !== undefined) return;
    this.fd = openSync(this.file, 'a', 0o600);
    this.size = fstatSync(this.fd).size; // a restarted writer continues the same file
  }

  private rotate(): void {
    this.closeFd();
    if (this.keep === 0) {
      rmSync(this.file, { force: true });
    } else {
      rmSync(`${this.file}.${this.keep}`, { force: true });
      for (let i = this.keep - 1; i >= 1; i--) {
        try {
          renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // a gap in the series is fine
        }
      }
      renameSync(this.file, `${this.file}.1`);
    }
    this.ensureOpen();
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = undefined;
  }
}

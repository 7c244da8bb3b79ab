/**
 * The log destination of the long-running processes: a pino destination that never blocks the
 * event loop and never throws, whatever the disk does.
 *
 * pino's own file destination retries a failed write (ENOSPC included) in a blocking sleep loop
 * when flushed synchronously, and emits an 'error' nobody handles otherwise: on a full disk the
 * API stops answering, then the process dies. Here:
 *   - writes are asynchronous (fs.write on an fd), one in flight at a time, lines queued behind it;
 *   - a failed write (ENOSPC, EDQUOT, EIO, …) drops the queued lines and counts them; while the
 *     disk stays full, new lines are counted and dropped (memory stays bounded);
 *   - every RETRY_MS the destination tries again; the first write that succeeds is a line saying
 *     how many lines were dropped, since when, and why; then logging resumes;
 *   - the queue is capped (MAX_QUEUED_BYTES): a disk slower than the log drops lines the same way.
 * Write order is kept. A line is never split (each pino write is one whole line).
 */
import { closeSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { errno } from '../core/errno.js';

const RETRY_MS = 1000;
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

export interface LogDestinationStats {
  /** Lines dropped since the destination was made. */
  readonly dropped: number;
  /** The error code of the failing writes while logging is suspended, else undefined. */
  readonly failing: string | undefined;
}

/** A pino destination appending to a file (or writing to an fd such as 1 for stdout). */
export class LogDestination {
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private queue: Buffer[] = [];
  private queued = 0;
  private writing = false;
  private failing: { code: string; since: number; dropped: number } | undefined;
  private retry: NodeJS.Timeout | undefined;
  private droppedTotal = 0;
  private closed = false;

  /** `fsWrite` is fs.write; a test double can replace it to inject failures. */
  constructor(
    target: string | number,
    private readonly now: () => number = Date.now,
    private readonly fsWrite: typeof write = write,
  ) {
    if (typeof target === 'number') {
      this.fd = target;
      this.ownsFd = false;
    } else {
      mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
      this.fd = openSync(target, 'a', 0o600);
      this.ownsFd = true;
    }
    // process.exit (a fatal error, a signal handler) must not lose the last lines: one synchronous try.
    process.once('exit', this.onExit);
  }

  private readonly onExit = (): void => this.flushSync();

  get stats(): LogDestinationStats {
    return { dropped: this.droppedTotal, failing: this.failing?.code };
  }

  /** pino calls this with one complete line. Never throws, never blocks. */
  write(line: string): boolean {
    if (this.closed) return true;
    if (this.failing) {
      this.failing.dropped++;
      this.droppedTotal++;
      return true;
    }
    const buf = Buffer.from(line);
    if (this.queued + buf.length > MAX_QUEUED_BYTES) {
      this.suspend('EBUSY', 1); // the disk cannot keep up: drop and say so later
      return true;
    }
    this.queue.push(buf);
    this.queued += buf.length;
    this.pump();
    return true;
  }

  /** Best-effort synchronous flush on exit: one attempt per queued line, errors ignored. */
  flushSync(): void {
    if (this.failing) return;
    try {
      for (const b of this.queue) writeSync(this.fd, b);
    } catch {
      // the disk is full or gone: nothing to be done at exit
    }
    this.queue = [];
    this.queued = 0;
  }

  /** pino's `logger.flush()` calls this; writes are already on their way. */
  flush(cb?: (err?: Error) => void): void {
    cb?.();
  }

  end(): void {
    this.flushSync();
    this.closed = true;
    process.off('exit', this.onExit);
    if (this.retry) clearTimeout(this.retry);
    if (this.ownsFd) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    }
  }

  private pump(): void {
    if (this.writing || this.failing || this.closed || this.queue.length === 0) return;
    const buf = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue, this.queued);
    const lines = this.queue.length;
    this.queue = [];
    this.queued = 0;
    this.writing = true;
    this.writeAll(buf, 0, (err) => {
      this.writing = false;
      if (err) {
        const code = errno(err) ?? 'EIO';
        if (code === 'EAGAIN') {
          // A non-blocking pipe (stdout) is full: put the bytes back and try a little later.
          this.queue.unshift(buf);
          this.queued += buf.length;
          setTimeout(() => this.pump(), 10).unref();
          return;
        }
        this.suspend(code, lines);
        return;
      }
      this.pump();
    });
  }

  private writeAll(buf: Buffer, off: number, done: (err: Error | null) => void): void {
    this.fsWrite(this.fd, buf, off, buf.length - off, null, (err, n) => {
      if (err) return done(err);
      if (off + n < buf.length) return this.writeAll(buf, off + n, done);
      done(null);
    });
  }

  /** Stop writing: drop what is queued, count it, try again in RETRY_MS. */
  private suspend(code: string, lostLines: number): void {
    const dropped = lostLines + this.queue.length;
    this.queue = [];
    this.queued = 0;
    this.droppedTotal += dropped;
    if (this.failing) this.failing.dropped += dropped;
    else this.failing = { code, since: this.now(), dropped };
    this.retry ??= setTimeout(() => this.probe(), RETRY_MS);
    this.retry.unref();
  }

  /** While failing: try to write the "lines were dropped" notice; success resumes logging. */
  private probe(): void {
    this.retry = undefined;
    const f = this.failing;
    if (!f || this.closed) return;
    const notice = Buffer.from(
      JSON.stringify({
        level: 40,
        time: this.now(),
        msg: `log lines dropped: ${f.dropped} between ${new Date(f.since).toISOString()} and now (${f.code}: the disk was full or failing)`,
        dropped: f.dropped,
        reason: f.code,
      }) + '\n',
    );
    this.writing = true;
    this.writeAll(notice, 0, (err) => {
      this.writing = false;
      if (err) {
        this.retry = setTimeout(() => this.probe(), RETRY_MS);
        this.retry.unref();
        return;
      }
      this.failing = undefined;
      this.pump();
    });
  }
}

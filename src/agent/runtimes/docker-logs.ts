/**
 * Copies a container's output into the instance's stdout.log / stderr.log, so the agent's logs API,
 * rotation and masking work as for processes. The Engine API's log stream (follow, timestamps,
 * multiplexed: an 8-byte header per frame, one frame per log message) is demultiplexed here; the
 * timestamp of the last message written for each stream is kept in stateDir/logs.pos.json, and a
 * follower re-attached after an agent restart asks for `since` that time and skips what it already
 * wrote, so no line appears twice. Ordering: bytes are appended first, the position is written
 * after, so a crash in between repeats at most the lines of one chunk (never loses them).
 */
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import type { Engine } from '../../docker/engine.js';
import type { LogFiles } from './runtime.js';

interface Position {
  readonly container: string;
  /** Nanoseconds since the epoch of the last message written, per stream, as decimal strings. */
  stdout: string;
  stderr: string;
}

/** RFC 3339 with up to 9 fraction digits → nanoseconds since the epoch. */
export function timestampNanos(ts: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) return undefined;
  const secs = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(secs)) return undefined;
  return BigInt(secs) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

export class ContainerLogs {
  private stream: (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
  private closed = false;
  /** The stream ended (container stopped, engine restarted, or close()). */
  ended = false;
  /** Resolves when the engine ended the stream (the container stopped) or close() was called. */
  readonly done: Promise<void>;
  private finish!: () => void;

  constructor(
    private readonly engine: Engine,
    private readonly containerId: string,
    private readonly files: LogFiles,
    private readonly posFile: string,
  ) {
    this.done = new Promise(
      (resolve) =>
        (this.finish = () => {
          this.ended = true;
          resolve();
        }),
    );
  }

  /** Attach to the stream; from the saved position when it names this container. */
  async start(): Promise<void> {
    const pos = this.readPosition();
    // Every message up to the positions was handled; a stream still at 0 had no message before them
    // (the engine sends both streams in one time-ordered sequence). The per-stream check below skips
    // what `since` (inclusive) sends again.
    const seen = [BigInt(pos.stdout), BigInt(pos.stderr)].filter((n) => n > 0n);
    const from = seen.length === 0 ? 0n : seen.reduce((a, b) => (a < b ? a : b));
    const since = from === 0n ? undefined : `${from / 1_000_000_000n}.${String(from % 1_000_000_000n).padStart(9, '0')}`;
    let stream: NodeJS.ReadableStream & { destroy?: () => void };
    try {
      stream = (await this.engine.getContainer(this.containerId).logs({
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        ...(since ? { since } : {}),
      } as { follow: true })) as NodeJS.ReadableStream & { destroy?: () => void };
    } catch {
      this.finish(); // the container is gone: nothing to copy
      return;
    }
    if (this.closed) {
      stream.destroy?.();
      this.finish();
      return;
    }
    this.stream = stream;
    const fds = { stdout: openSync(this.files.stdout, 'a'), stderr: openSync(this.files.stderr, 'a') };
    let buf: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const out: Record<'stdout' | 'stderr', Buffer[]> = { stdout: [], stderr: [] };
      let moved = false;
      while (buf.length >= 8) {
        const size = buf.readUInt32BE(4);
        if (buf.length < 8 + size) break;
        const kind = buf[0] === 2 ? 'stderr' : 'stdout';
        const frame = buf.subarray(8, 8 + size);
        buf = buf.subarray(8 + size);
        const space = frame.indexOf(0x20);
        const ns = space > 0 ? timestampNanos(frame.subarray(0, space).toString('latin1')) : undefined;
        if (ns === undefined) {
          out[kind].push(frame);
          continue;
        }
        if (ns <= BigInt(pos[kind])) continue; // written before an agent restart
        pos[kind] = String(ns);
        moved = true;
        out[kind].push(frame.subarray(space + 1));
      }
      for (const k of ['stdout', 'stderr'] as const) if (out[k].length > 0) writeSync(fds[k], Buffer.concat(out[k]));
      if (moved) this.writePosition(pos);
    });
    const end = (): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      closeSync(fds.stdout);
      closeSync(fds.stderr);
      this.finish();
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  /** Detach (the agent is closing); the container keeps logging, a later follower resumes. */
  close(): void {
    this.closed = true;
    const s = this.stream;
    if (s) {
      s.destroy?.();
      s.emit('close');
    } else {
      this.finish();
    }
  }

  private readPosition(): Position {
    try {
      const p = JSON.parse(readFileSync(this.posFile, 'utf8')) as Position;
      if (p.container === this.containerId && /^\d+$/.test(p.stdout) && /^\d+$/.test(p.stderr)) return p;
    } catch {
      // none yet, or torn: start from the container's first line
    }
    return { container: this.containerId, stdout: '0', stderr: '0' };
  }

  private writePosition(p: Position): void {
    writeFileSync(`${this.posFile}.tmp`, JSON.stringify(p));
    renameSync(`${this.posFile}.tmp`, this.posFile);
  }
}

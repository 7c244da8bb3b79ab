/**
 * Starting an instance's log writer (../log-writer.ts): a detached node process holding the read
 * ends of two socket pairs, whose write ends become the app's stdout and stderr. Started before
 * the app, so the app's first line has a reader; it outlives the agent like the app does.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { readStartTime } from '../../os/proc.js';
import type { LogFiles } from './runtime.js';

const LOG_WRITER = fileURLToPath(new URL('../log-writer.js', import.meta.url));
/** It holds a 64 KB chunk at a time: a small heap is plenty (~6 MB private; the node binary's pages are shared). */
const LOG_WRITER_FLAGS = ['--max-old-space-size=16', '--max-semi-space-size=1', '--stack-size=256'];

export interface LogPipes {
  readonly pid: number;
  readonly startTime: string;
  /** Pass as the app's stdio[1] and stdio[2]. */
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Close the agent's copies of the write ends (after the app was spawned with them). */
  release(): void;
}

/** Create the two files (0600, so readers find them at once) and start their log writer. Throws if it does not start. */
export function startLogWriter(files: LogFiles, cwd: string, maxBytes: number, keep: number): LogPipes {
  for (const f of [files.stdout, files.stderr]) closeSync(openSync(f, 'a', 0o600));
  const w = spawn(process.execPath, [...LOG_WRITER_FLAGS, LOG_WRITER, files.stdout, files.stderr, String(maxBytes), String(keep)], {
    cwd,
    env: {},
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore', 'pipe'],
  });
  w.once('error', () => undefined); // a failed spawn has no pid: thrown below
  const stdout = w.stdin!;
  const stderr = w.stdio[3] as Writable;
  const release = (): void => {
    stdout.destroy();
    stderr.destroy();
    w.unref();
  };
  const startTime = w.pid === undefined ? undefined : readStartTime(w.pid);
  if (w.pid === undefined || startTime === undefined) {
    release();
    throw Object.assign(new Error('cannot start the log writer'), { code: 'ELOGGER' });
  }
  return { pid: w.pid, startTime, stdout, stderr, release };
}

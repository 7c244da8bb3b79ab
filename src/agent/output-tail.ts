/**
 * The last lines of an instance's output, for the report that says why it failed ("crashed 3
 * times: exited with code 1" says nothing; "FATAL: DATABASE_URL is not set" says what to fix).
 * Secrets are masked by the control plane when it stores the report (it knows which values are
 * secrets; the agent only sees one env).
 */
import { open, stat } from 'node:fs/promises';
import { sanitizeLine } from '../core/mask.js';
import type { LogFiles } from './runtimes/runtime.js';

/** Lines of output a failure report carries. */
export const TAIL_LINES = 20;
/** At most this much of each file is read (the end of it). */
const READ_BYTES = 64 * 1024;
const LINE_CHARS = 300;

/** The last `n` lines of a file (at most READ_BYTES from its end); [] when missing or empty. */
export async function lastLines(file: string, n: number): Promise<string[]> {
  const size = await stat(file).then(
    (s) => s.size,
    () => 0,
  );
  if (size === 0 || n <= 0) return [];
  const fh = await open(file, 'r');
  try {
    const len = Math.min(size, READ_BYTES);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, size - len);
    const lines = buf.subarray(0, bytesRead).toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    // A cut first line (we started mid-file) is dropped unless it is all there is.
    if (len < size && lines.length > 1) lines.shift();
    return lines.slice(-n);
  } finally {
    await fh.close();
  }
}

/**
 * The last `n` lines of stdout then stderr (stderr last: that is where a failure is usually told),
 * each made showable (control characters escaped, long lines cut); undefined when there is none.
 */
export async function outputTail(files: LogFiles, n = TAIL_LINES): Promise<string | undefined> {
  const [out, err] = await Promise.all([lastLines(files.stdout, n).catch(() => []), lastLines(files.stderr, n).catch(() => [])]);
  const lines = [...out, ...err].slice(-n).map((l) => sanitizeLine(l.replace(/\r$/, ''), LINE_CHARS));
  return lines.length === 0 ? undefined : lines.join('\n');
}

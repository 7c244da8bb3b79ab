/**
 * The per-app log budget on a node: each instance's files are bounded at every write (bounded-log.ts:
 * 3 × 10 MB per stream), and an app with many instances is held to PILOT_LOG_APP_MAX_BYTES (100 MB)
 * in all by removing its oldest rotated files (never a file a log writer has open), checked every
 * 10 s. The decision is pure (`overBudget`); `enforceAppLogBudget` does the I/O.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface LogFileInfo {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** The current file a log writer appends to (stdout.log, stderr.log): never removed. */
  readonly live: boolean;
}

/** Rotated files to remove, oldest first, until the total is within `maxBytes`. */
export function overBudget(files: readonly LogFileInfo[], maxBytes: number): string[] {
  let total = files.reduce((n, f) => n + f.size, 0);
  const out: string[] = [];
  for (const f of [...files].filter((x) => !x.live).sort((a, b) => a.mtimeMs - b.mtimeMs)) {
    if (total <= maxBytes) break;
    out.push(f.path);
    total -= f.size;
  }
  return out;
}

/** The log files (stdout.log*, stderr.log*) in an instance's state folder. */
export function instanceLogFiles(stateDir: string): LogFileInfo[] {
  let names: string[] = [];
  try {
    names = readdirSync(stateDir);
  } catch {
    return [];
  }
  const out: LogFileInfo[] = [];
  for (const n of names) {
    const m = /^(stdout|stderr)\.log(\.\d+)?$/.exec(n);
    if (!m) continue;
    try {
      const st = statSync(join(stateDir, n));
      out.push({ path: join(stateDir, n), size: st.size, mtimeMs: st.mtimeMs, live: m[2] === undefined });
    } catch {
      // rotated away meanwhile
    }
  }
  return out;
}

/** Hold one app's instances (their state folders) to `maxBytes` of logs; returns the files removed. */
export function enforceAppLogBudget(stateDirs: readonly string[], maxBytes: number): string[] {
  const remove = overBudget(stateDirs.flatMap(instanceLogFiles), maxBytes);
  for (const p of remove) rmSync(p, { force: true });
  return remove;
}

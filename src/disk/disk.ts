/**
 * A full disk is an ordinary condition, not a bug: ENOSPC / EDQUOT (and SQLite's SQLITE_FULL)
 * become `disk_full` (507) saying which filesystem is full, how much is free and, when known, how
 * much the operation needed. `diskStatus` measures the free space under $PILOT_HOME for /healthz
 * and `pilot status` (low below PILOT_DISK_LOW_BYTES, 512 MiB by default).
 */
import { statfsSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type PilotError, fail } from '../core/errors.js';
import { errno } from '../core/errno.js';

const FULL = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/** True for an error that says the disk (or the quota) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = errno(err);
  return code !== undefined && FULL.has(code);
}

/** Free bytes (for an unprivileged writer) on the filesystem holding `path`, or undefined. */
export function freeBytesSync(path: string): number | undefined {
  for (let p = path; ; p = dirname(p)) {
    try {
      const s = statfsSync(p);
      return s.bavail * s.bsize;
    } catch {
      if (dirname(p) === p) return undefined; // walked up to / without an answer
    }
  }
}

function mib(n: number): string {
  return n >= 10 * 1024 * 1024 ? `${Math.round(n / 1024 / 1024)} MiB` : `${n} bytes`;
}

/**
 * The disk_full error for `err` (a failed write), naming the path (the error's own, else
 * `fallbackPath`), the free space there, and `neededBytes` when the caller knows it.
 */
export function diskFullError(err: unknown, what: string, fallbackPath: string, neededBytes?: number): PilotError {
  const code = errno(err) ?? 'ENOSPC';
  const path = (err as { path?: unknown }).path;
  const where = typeof path === 'string' ? path : fallbackPath;
  const free = freeBytesSync(where);
  const needed = neededBytes !== undefined && Number.isFinite(neededBytes) && neededBytes > 0 ? mib(neededBytes) : undefined;
  return fail.diskFull(
    { what, where, code, free: free === undefined ? undefined : mib(free), needed },
    {
      details: {
        path: where,
        code,
        ...(free === undefined ? {} : { freeBytes: free }),
        ...(neededBytes !== undefined && Number.isFinite(neededBytes) ? { neededBytes } : {}),
      },
      cause: err,
    },
  );
}

export interface DiskStatus {
  readonly path: string;
  readonly freeBytes: number;
  readonly totalBytes: number;
  readonly lowBelowBytes: number;
  readonly low: boolean;
}

/** The low-disk threshold: PILOT_DISK_LOW_BYTES (bytes), else 512 MiB. */
export function diskLowThreshold(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.PILOT_DISK_LOW_BYTES);
  return env.PILOT_DISK_LOW_BYTES !== undefined && env.PILOT_DISK_LOW_BYTES.trim() !== '' && Number.isFinite(n) && n >= 0
    ? n
    : 512 * 1024 * 1024;
}

/** Free space under `home` and whether it is below the threshold. */
export async function diskStatus(home: string, lowBelowBytes = diskLowThreshold()): Promise<DiskStatus | undefined> {
  try {
    const s = await statfs(home);
    const freeBytes = s.bavail * s.bsize;
    return { path: home, freeBytes, totalBytes: s.blocks * s.bsize, lowBelowBytes, low: freeBytes < lowBelowBytes };
  } catch {
    return undefined;
  }
}

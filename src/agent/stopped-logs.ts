/**
 * Logs of instances that are gone. When an instance stops (replaced, failed, its rollout abandoned)
 * its output files move from its state folder to `<home>/stopped/<instance id>/` with a small
 * `meta.json`, so `pilot logs APP --previous` can still show what it said. Bounded: the newest
 * KEEP_PER_APP per app are kept, and the cache GC removes them once older than its idle time.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Stopped instances whose logs are kept per app (`PILOT_KEEP_STOPPED_LOGS`). */
export const KEEP_PER_APP = 5;

export interface StoppedMeta {
  readonly id: string;
  readonly app: string;
  readonly revision: number;
  readonly kind: 'web' | 'release';
  /** Wall clock ms. */
  readonly stoppedAt: number;
  readonly lastError: string | undefined;
}

/** The folder holding the kept logs of stopped instances. */
export function stoppedRoot(home: string): string {
  return join(home, 'stopped');
}

const LOG_FILE = /^(stdout|stderr)\.log(\.\d+)?$/;

/** Move an instance's log files (rotated ones too) out of its state folder before that folder is removed. */
export function keepLogs(home: string, stateDir: string, meta: StoppedMeta): void {
  const dest = join(stoppedRoot(home), meta.id);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true, mode: 0o700 });
  for (const f of existsSync(stateDir) ? readdirSync(stateDir) : []) {
    if (LOG_FILE.test(f)) renameSync(join(stateDir, f), join(dest, f));
  }
  writeFileSync(join(dest, 'meta.json'), JSON.stringify(meta), { mode: 0o600 });
}

/** Kept instances of one app (all apps when undefined), newest first. */
export function listStopped(home: string, app?: string): (StoppedMeta & { dir: string })[] {
  const root = stoppedRoot(home);
  const out: (StoppedMeta & { dir: string })[] = [];
  for (const id of existsSync(root) ? readdirSync(root) : []) {
    const dir = join(root, id);
    let meta: StoppedMeta;
    try {
      meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as StoppedMeta;
    } catch {
      continue; // half-written (agent killed mid-move) or foreign: prune removes it by age
    }
    if (app === undefined || meta.app === app) out.push({ ...meta, dir });
  }
  return out.sort((a, b) => b.stoppedAt - a.stoppedAt);
}

/**
 * Remove kept logs beyond the newest `keep` per app, and (when `maxAgeMs` is given) those stopped
 * longer ago than that. Returns how many were removed.
 */
export function pruneStopped(home: string, keep: number, now: number, maxAgeMs?: number): number {
  const root = stoppedRoot(home);
  const seen = new Map<string, number>();
  let removed = 0;
  const known = new Set<string>();
  for (const m of listStopped(home)) {
    known.add(m.id);
    const n = (seen.get(m.app) ?? 0) + 1;
    seen.set(m.app, n);
    if (n > keep || (maxAgeMs !== undefined && now - m.stoppedAt > maxAgeMs)) {
      rmSync(m.dir, { recursive: true, force: true });
      removed++;
    }
  }
  // Folders without a readable meta.json: removed once they are an hour old.
  for (const id of existsSync(root) ? readdirSync(root) : []) {
    if (known.has(id)) continue;
    const dir = join(root, id);
    const age = now - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? now);
    if (age > 3_600_000) {
      rmSync(dir, { recursive: true, force: true });
      removed++;
    }
  }
  return removed;
}

/** How many stopped instances' logs to keep per app, from the environment. */
export function keepPerAppFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.PILOT_KEEP_STOPPED_LOGS);
  return Number.isInteger(n) && n >= 0 ? n : KEEP_PER_APP;
}

/**
 * stateDir/pid.json: how a restarted agent finds the instances that kept running. It names a process
 * by pid AND start time, so a pid reused after a crash is never taken for the instance.
 */
import { readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseInstanceCgroup, type InstanceCgroup } from '../cgroups.js';

/** Contents of stateDir/pid.json. */
export interface PidFile {
  readonly instanceId: string;
  readonly pid: number;
  readonly startTime: string;
  readonly argv: readonly string[];
  readonly startedAt: number;
  /** The instance's cgroup folders, found again by path after an agent restart. */
  readonly cgroup?: InstanceCgroup | undefined;
  /** The uid the app runs as, when not the agent's. */
  readonly uid?: number | undefined;
  /** resources.memory in MB (the polling fallback enforces it for an adopted instance too). */
  readonly memoryMb?: number | undefined;
  /** The log-writer process (log-writer.ts). */
  readonly logger?: { readonly pid: number; readonly startTime: string } | undefined;
}

/** Path of the pid file in a stateDir. */
export function pidFilePath(stateDir: string): string {
  return join(stateDir, 'pid.json');
}

/** Read stateDir/pid.json; undefined if missing or malformed. */
export function readPidFile(stateDir: string): PidFile | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(pidFilePath(stateDir), 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const p = raw as Record<string, unknown>;
  const ok =
    typeof p.instanceId === 'string' &&
    typeof p.pid === 'number' &&
    Number.isInteger(p.pid) &&
    p.pid > 0 &&
    typeof p.startTime === 'string' &&
    typeof p.startedAt === 'number' &&
    Array.isArray(p.argv) &&
    p.argv.every((a) => typeof a === 'string');
  if (!ok) return undefined;
  const cgroup = p.cgroup === undefined ? undefined : parseInstanceCgroup(p.cgroup);
  if (p.cgroup !== undefined && cgroup === undefined) return undefined; // a tampered path must never be written to
  return raw as PidFile;
}

/** Write stateDir/pid.json atomically. */
export async function writePidFile(stateDir: string, pf: PidFile): Promise<void> {
  // Temp file + rename: a reader (an adopting agent) sees the old file or the new one, never half.
  // No fsync: after a power cut the instances are gone too, so a lost pid file costs nothing.
  const tmp = `${pidFilePath(stateDir)}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(pf) + '\n', { mode: 0o600 });
    await rename(tmp, pidFilePath(stateDir));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

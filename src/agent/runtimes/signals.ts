/**
 * Signalling an instance's processes by identity (pid + start time), never a process that merely
 * reuses a pid. Used by the process runtime's start and stop.
 */
import { isSameProcess, liveGroupMembers, readProcStat } from '../../os/proc.js';
import type { InstanceHandle } from './runtime.js';

/** Whether a pid number now belongs to another process than the instance's leader. */
export function pidReused(h: InstanceHandle): boolean {
  const st = readProcStat(h.pid);
  return st !== undefined && st.startTime !== h.startTime;
}

/**
 * The instance is gone when its leader is dead and no live process is left in its group (npm start
 * → sh → node: the node grandchild holds the port). A pid is not reused while it still names a
 * process group with members, so once the leader's pid names another process the group is empty.
 */
export function isGone(h: InstanceHandle): boolean {
  if (isSameProcess(h.pid, h.startTime)) return false;
  if (pidReused(h)) return true;
  return liveGroupMembers(h.pid).length === 0;
}

/** Signal the instance's group, never a process that merely reuses its pid. */
export function signalInstance(h: InstanceHandle, sig: NodeJS.Signals): void {
  // A small race remains between this check and kill(2) (no pidfd in Node); it needs the pid to be
  // freed and handed out again within microseconds.
  if (pidReused(h)) return;
  const leaderPgrp = readProcStat(h.pid)?.pgrp;
  killGroup(h.pid, sig);
  // The leader may have moved itself to another group (setsid/setpgid); signal it directly too.
  if (leaderPgrp !== undefined && leaderPgrp !== h.pid && isSameProcess(h.pid, h.startTime)) {
    try {
      process.kill(h.pid, sig);
    } catch {
      // gone meanwhile
    }
  }
}

export function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

export function signalPids(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const p of pids) if (p !== process.pid) killPid(p, sig);
}

export function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is empty. EPERM (a setuid member): stop's wait loop reports it if it matters.
  }
}

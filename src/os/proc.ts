/**
 * Process identity from /proc (Linux). A pid alone does not name a process: pids are reused (pid_max
 * is often 32768), so the agent always pairs a pid with its start time, field 22 of /proc/PID/stat,
 * in clock ticks since boot. Two processes never share both.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  /** Field 3: R, S, D, Z (zombie), T, X (dead), ... */
  readonly state: string;
  /** Field 4: the parent's pid. */
  readonly ppid: number;
  /** Field 5: the process group id. */
  readonly pgrp: number;
  /** Field 6: the session id. */
  readonly session: number;
  /** Field 24: resident set size in pages (0 when the line is cut short). */
  readonly rssPages: number;
  /** Field 22: start time in clock ticks since boot, kept as the kernel wrote it. */
  readonly startTime: string;
}

/**
 * The fields of a /proc/PID/stat line after field 2 (comm), field 3 first. Comm is "(name)" and the
 * name may hold spaces and ')' itself, so they are counted from the LAST ')'.
 */
function statFieldsAfterComm(text: string): string[] | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  return text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
}

/** Parse the text of /proc/PID/stat; undefined if it is not in the expected shape. */
export function parseProcStat(text: string): ProcStat | undefined {
  const rest = statFieldsAfterComm(text);
  if (rest === undefined) return undefined;
  const state = rest[0];
  const ppid = Number(rest[4 - 3]);
  const pgrp = Number(rest[5 - 3]);
  const session = Number(rest[6 - 3]);
  const startTime = rest[22 - 3];
  const rss = Number(rest[24 - 3] ?? 0);
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime) || !Number.isInteger(pgrp)) {
    return undefined;
  }
  return { state, ppid, pgrp, session, startTime, rssPages: Number.isInteger(rss) ? rss : 0 };
}

/** Read and parse /proc/PID/stat; undefined if no such process (or not a valid pid). */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // ENOENT: gone; ESRCH/EACCES: gone or not ours to see, same answer
  }
  return parseProcStat(text);
}

/** Start time of a process (field 22 of /proc/PID/stat), or undefined if there is no such process. */
export function readStartTime(pid: number): string | undefined {
  return readProcStat(pid)?.startTime;
}

function isDeadState(state: string): boolean {
  // A zombie has exited and only waits for its parent to reap it; when the agent that started it has
  // died, that parent is init (or whatever runs as pid 1), which may never reap it.
  return state === 'Z' || state === 'X' || state === 'x';
}

/** True if `pid` is alive (not a zombie) and is the same process that had `startTime`. */
export function isSameProcess(pid: number, startTime: string): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.startTime === startTime && !isDeadState(st.state);
}

/** Every process's stat, by pid (one /proc scan). */
export function allProcStats(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const st = readProcStat(Number(name));
    if (st !== undefined) out.set(Number(name), st);
  }
  return out;
}

/**
 * Live processes that belong to the instance whose leader is `leader`, without cgroups: its process
 * group, its session, and every descendant by parent chain. A process that double-forked into its
 * own session and was re-parented to init escapes this (cgroups do not have the gap).
 */
export function instanceTree(leader: number, stats: Map<number, ProcStat> = allProcStats()): number[] {
  const members = new Set<number>();
  for (const [pid, st] of stats) {
    if (!isDeadState(st.state) && (st.pgrp === leader || st.session === leader || pid === leader)) members.add(pid);
  }
  // Descendants by parent chain, to a fixed point (a child listed before its parent needs a second pass).
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, st] of stats) {
      if (!members.has(pid) && !isDeadState(st.state) && members.has(st.ppid)) {
        members.add(pid);
        grew = true;
      }
    }
  }
  return [...members];
}

/** Pids of the live (non-zombie) processes in process group `pgid`; scans /proc. */
export function liveGroupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const [pid, st] of allProcStats()) if (st.pgrp === pgid && !isDeadState(st.state)) out.push(pid);
  return out;
}

/**
 * CPU time of a process from its /proc/PID/stat text, in clock ticks: fields 14-17, user + system,
 * its own and its waited-for children's. Undefined if the text is not a stat line.
 */
export function parseCpuTicks(text: string): number | undefined {
  const rest = statFieldsAfterComm(text);
  if (rest === undefined) return undefined;
  const ticks = [14, 15, 16, 17].map((f) => Number(rest[f - 3]));
  return ticks.every((t) => Number.isInteger(t) && t >= 0) ? ticks.reduce((a, b) => a + b, 0) : undefined;
}

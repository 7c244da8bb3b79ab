/**
 * How much CPU an instance has used since it started, in seconds (user + system), reported with
 * every sync (`cpuSeconds`) for the autoscaler's `targetCpu`; the control plane turns two reports
 * into a rate (control/cpu-meter.ts). A running total, not a rate: a lost sync loses nothing.
 *
 * Where it comes from, best first:
 * - the instance's own cgroup (a process instance in its pilot cgroup, a container in Docker's):
 *   cgroup v2 `cpu.stat` usage_usec, v1 `cpuacct.usage` (ns). Exact, dead children included.
 *   "Own" = not the agent's cgroup: an instance left in the agent's cgroup (no isolation) would
 *   otherwise be charged the agent's CPU too.
 * - else its process tree from /proc (group, session, descendants): utime + stime + cutime + cstime
 *   of each member, in clock ticks (100 per second on Linux). Children that exited without being
 *   waited for are lost, so it can dip: the meter treats a drop as a restart of the counter.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allProcStats, instanceTree, parseCpuTicks, type ProcStat } from '../os/proc.js';
import { keyedCount } from './cgroups.js';

/** USER_HZ: the clock ticks of /proc/PID/stat, 100 on every Linux architecture Node.js runs on. */
const TICKS_PER_SECOND = 100;

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The cgroup path of a process for cgroup v2 ("0::/x") and for the v1 cpuacct controller. */
export function cgroupPaths(procCgroup: string): { v2?: string; cpuacct?: string } {
  const out: { v2?: string; cpuacct?: string } = {};
  for (const line of procCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === '') out.v2 = m[2]!;
    else if (m[1]!.split(',').includes('cpuacct')) out.cpuacct = m[2]!;
  }
  return out;
}

/** CPU seconds of a cgroup, from its files under `root`; undefined if it has none to read. */
export function cgroupCpuSeconds(procCgroup: string, self: string, root = '/sys/fs/cgroup'): number | undefined {
  const mine = cgroupPaths(procCgroup);
  const agent = cgroupPaths(self);
  if (mine.v2 !== undefined && mine.v2 !== agent.v2 && mine.v2 !== '/') {
    const stat = read(join(root, mine.v2, 'cpu.stat'));
    if (stat !== undefined && /^usage_usec /m.test(stat)) return keyedCount(stat, 'usage_usec') / 1e6;
  }
  if (mine.cpuacct !== undefined && mine.cpuacct !== agent.cpuacct && mine.cpuacct !== '/') {
    for (const mount of ['cpuacct', 'cpu,cpuacct', 'cpuacct,cpu']) {
      const ns = Number(read(join(root, mount, mine.cpuacct, 'cpuacct.usage'))?.trim());
      if (Number.isFinite(ns) && ns >= 0) return ns / 1e9;
    }
  }
  return undefined;
}

/** Reads the CPU use of instances; one /proc scan per call at most, shared by all instances without a cgroup. */
export class CpuUsage {
  readonly #self: string;
  readonly #root: string;
  readonly #proc: string;

  constructor(opts: { self?: string; cgroupRoot?: string; proc?: string } = {}) {
    this.#proc = opts.proc ?? '/proc';
    this.#self = opts.self ?? read(join(this.#proc, 'self/cgroup')) ?? '';
    this.#root = opts.cgroupRoot ?? '/sys/fs/cgroup';
  }

  /** CPU seconds by pid (an instance's leader: a process or a container's init), for the pids given; absent when unknown. */
  measure(pids: readonly number[]): Map<number, number> {
    const out = new Map<number, number>();
    let stats: Map<number, ProcStat> | undefined;
    for (const pid of pids) {
      if (!Number.isInteger(pid) || pid <= 0) continue;
      const cg = read(join(this.#proc, String(pid), 'cgroup'));
      const fromCgroup = cg === undefined ? undefined : cgroupCpuSeconds(cg, this.#self, this.#root);
      if (fromCgroup !== undefined) {
        out.set(pid, fromCgroup);
        continue;
      }
      stats ??= allProcStats();
      if (!stats.has(pid)) continue;
      let ticks = 0;
      for (const member of instanceTree(pid, stats)) ticks += parseCpuTicks(read(join(this.#proc, String(member), 'stat')) ?? '') ?? 0;
      out.set(pid, ticks / TICKS_PER_SECOND);
    }
    return out;
  }
}

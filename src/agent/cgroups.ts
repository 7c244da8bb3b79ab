/**
 * Per-instance cgroups (Linux): memory and CPU limits, "kill every descendant", and the OOM count.
 *
 * Three layouts exist in the wild and this module speaks all of them:
 * - **v2** (unified only, /sys/fs/cgroup/cgroup.controllers exists): one folder per instance under
 *   `<mount>/pilot`, with memory.max, cpu.max, memory.events (oom_kill) and cgroup.kill.
 * - **v1** (one mount per controller): a folder per instance in the memory, cpu and freezer
 *   hierarchies, under the agent's own cgroup of each (so limits nest inside the machine's);
 *   memory.limit_in_bytes (+ memsw), cpu.cfs_quota_us, memory.oom_control (oom_kill).
 * - **hybrid** (v1 controllers + a v2 mount at /sys/fs/cgroup/unified with no controllers): v1 for
 *   the limits, plus a v2 folder for membership and `cgroup.kill`.
 *
 * Nothing here picks a process to put in the cgroup: the runtime's start wrapper writes its own pid
 * into every `procs` file before it execs the app, so the app and all it forks start inside.
 * Folders are found again by path after an agent restart (the pid file records them).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type CgroupLayout =
  | { readonly kind: 'v2'; readonly base: string }
  | {
      readonly kind: 'v1';
      readonly memory: string;
      readonly cpu?: string | undefined;
      readonly freezer?: string | undefined;
      readonly pids?: string | undefined;
      readonly unified?: string | undefined;
    }
  | { readonly kind: 'none'; readonly reason: string };

/** One instance's cgroup folders (a value: recorded in the pid file). */
export interface InstanceCgroup {
  readonly kind: 'v1' | 'v2';
  /** Every folder made for the instance; its `cgroup.procs` files get the start wrapper's pid. */
  readonly dirs: readonly string[];
  /** Folder with memory.* files. */
  readonly memory: string;
  /** v2 folder with cgroup.kill (v2, or hybrid's unified), if any. */
  readonly kill?: string | undefined;
  /** v1 freezer folder, if any. */
  readonly freezer?: string | undefined;
  readonly memoryMb?: number | undefined;
}

export interface Limits {
  readonly memoryMb?: number | undefined;
  readonly cpu?: number | undefined;
  /** Tasks (processes and threads) at most: a fork bomb stays inside its instance. */
  readonly pids?: number | undefined;
}

const CPU_PERIOD_US = 100_000;

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Parse /proc/self/cgroup: hierarchy controllers ("" for v2) → path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const c of m[1]!.split(',')) out.set(c, m[2]!);
  }
  return out;
}

/** A value of a "key N" file (memory.events, memory.oom_control), or 0. */
export function keyedCount(text: string | undefined, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text ?? '');
  return m ? Number(m[1]) : 0;
}

/**
 * What this machine offers, probed by making (and removing) a test folder. `root` is the cgroup
 * file system's mount point (tests pass a fake tree), `self` the text of /proc/self/cgroup.
 */
export function detectCgroups(root = '/sys/fs/cgroup', self = read('/proc/self/cgroup') ?? ''): CgroupLayout {
  if (process.env.PILOT_CGROUPS === 'off') return { kind: 'none', reason: 'turned off by PILOT_CGROUPS=off' };
  const own = parseProcCgroup(self);
  const probe = (dir: string): string | undefined => {
    const t = join(dir, `pilot-probe-${process.pid}`);
    try {
      mkdirSync(t, { recursive: true });
      rmdirSync(t);
      return undefined;
    } catch (e) {
      return `cannot create a cgroup in ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
    }
  };
  if (existsSync(join(root, 'cgroup.controllers'))) {
    const controllers = read(join(root, 'cgroup.controllers')) ?? '';
    if (!/\bmemory\b/.test(controllers) || !/\bcpu\b/.test(controllers)) {
      return { kind: 'none', reason: `cgroup v2 without the memory/cpu controllers (${controllers.trim() || 'none'})` };
    }
    const base = process.env.PILOT_CGROUP_ROOT ?? join(root, 'pilot');
    const err = probe(base);
    if (err) return { kind: 'none', reason: err };
    try {
      // Controllers must be enabled in each parent's subtree_control, top down.
      enableControllers(root, base);
    } catch (e) {
      return { kind: 'none', reason: `cannot enable memory/cpu controllers for ${base}: ${(e as Error).message}` };
    }
    return { kind: 'v2', base };
  }
  const memMount = join(root, 'memory');
  if (!existsSync(join(memMount, 'cgroup.procs'))) return { kind: 'none', reason: `no memory cgroup controller mounted at ${memMount}` };
  const under = (mount: string, controller: string): string => join(mount, own.get(controller) ?? '/', 'pilot');
  const memory = under(memMount, 'memory');
  const err = probe(memory);
  if (err) return { kind: 'none', reason: err };
  const optional = (controller: string, file: string): string | undefined => {
    const mount = join(root, controller);
    if (!existsSync(join(mount, file))) return undefined;
    const dir = under(mount, controller === 'unified' ? '' : controller);
    return probe(dir) === undefined ? dir : undefined;
  };
  return {
    kind: 'v1',
    memory,
    cpu: optional('cpu', 'cpu.cfs_quota_us'),
    freezer: optional('freezer', 'cgroup.procs'),
    pids: optional('pids', 'cgroup.procs'),
    unified: optional('unified', 'cgroup.kill') ?? optional('unified', 'cgroup.procs'),
  };
}

function enableControllers(root: string, base: string): void {
  // Writing "+memory" where it is already enabled is a no-op; the root may refuse nothing.
  for (const dir of [root, base]) {
    mkdirSync(dir, { recursive: true });
    const have = read(join(dir, 'cgroup.subtree_control')) ?? '';
    for (const c of ['memory', 'cpu', 'pids']) {
      if (new RegExp(`\\b${c}\\b`).test(have)) continue;
      try {
        writeFileSync(join(dir, 'cgroup.subtree_control'), `+${c}`);
      } catch (e) {
        if (c !== 'pids') throw e; // pids is a nice-to-have
      }
    }
  }
}

/** A folder name for an instance: safe characters only. */
export function cgroupName(instanceId: string, tag: string): string {
  return `${instanceId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100)}-${tag}`;
}

/** Make the instance's folders and set its limits. Throws if a limit cannot be set. */
export function createInstanceCgroup(layout: CgroupLayout, name: string, limits: Limits): InstanceCgroup | undefined {
  if (layout.kind === 'none') return undefined;
  const mem = limits.memoryMb !== undefined && limits.memoryMb > 0 ? Math.round(limits.memoryMb * 1024 * 1024) : undefined;
  const cpuQuota = limits.cpu !== undefined && limits.cpu > 0 ? Math.max(1000, Math.round(limits.cpu * CPU_PERIOD_US)) : undefined;
  if (layout.kind === 'v2') {
    const dir = join(layout.base, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'memory.max'), mem === undefined ? 'max' : String(mem));
    // No swap: a limit that swaps is no limit (docker's Memory = MemorySwap does the same).
    if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), mem === undefined ? 'max' : '0');
    writeFileSync(join(dir, 'cpu.max'), `${cpuQuota ?? 'max'} ${CPU_PERIOD_US}`);
    if (existsSync(join(dir, 'pids.max'))) writeFileSync(join(dir, 'pids.max'), limits.pids === undefined ? 'max' : String(limits.pids));
    return { kind: 'v2', dirs: [dir], memory: dir, kill: dir, memoryMb: limits.memoryMb };
  }
  const memory = join(layout.memory, name);
  mkdirSync(memory, { recursive: true });
  const dirs = [memory];
  writeFileSync(join(memory, 'memory.limit_in_bytes'), mem === undefined ? '-1' : String(mem));
  if (existsSync(join(memory, 'memory.memsw.limit_in_bytes'))) {
    try {
      writeFileSync(join(memory, 'memory.memsw.limit_in_bytes'), mem === undefined ? '-1' : String(mem));
    } catch {
      // swap accounting off: the memory limit alone applies
    }
  }
  if (layout.cpu !== undefined) {
    const cpu = join(layout.cpu, name);
    mkdirSync(cpu, { recursive: true });
    writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
    writeFileSync(join(cpu, 'cpu.cfs_quota_us'), cpuQuota === undefined ? '-1' : String(cpuQuota));
    dirs.push(cpu);
  } else if (cpuQuota !== undefined) {
    throw new Error('resources.cpu is set but this machine has no cpu cgroup controller');
  }
  if (layout.pids !== undefined) {
    const pids = join(layout.pids, name);
    mkdirSync(pids, { recursive: true });
    writeFileSync(join(pids, 'pids.max'), limits.pids === undefined ? 'max' : String(limits.pids));
    dirs.push(pids);
  }
  let freezer: string | undefined;
  if (layout.freezer !== undefined) {
    freezer = join(layout.freezer, name);
    mkdirSync(freezer, { recursive: true });
    dirs.push(freezer);
  }
  let kill: string | undefined;
  if (layout.unified !== undefined) {
    const u = join(layout.unified, name);
    mkdirSync(u, { recursive: true });
    dirs.push(u);
    if (existsSync(join(u, 'cgroup.kill'))) kill = u;
  }
  return { kind: 'v1', dirs, memory, kill, freezer, memoryMb: limits.memoryMb };
}

/** Pids in the instance's cgroup (every folder's, de-duplicated). */
export function cgroupPids(cg: InstanceCgroup): number[] {
  const out = new Set<number>();
  for (const d of cg.dirs) {
    for (const line of (read(join(d, 'cgroup.procs')) ?? '').split('\n')) {
      const n = Number(line);
      if (line !== '' && Number.isInteger(n) && n > 0) out.add(n);
    }
  }
  return [...out];
}

/** Times the kernel's OOM killer killed a process in this cgroup. */
export function oomKills(cg: InstanceCgroup): number {
  return cg.kind === 'v2'
    ? keyedCount(read(join(cg.memory, 'memory.events')), 'oom_kill')
    : keyedCount(read(join(cg.memory, 'memory.oom_control')), 'oom_kill');
}

/**
 * SIGKILL every process in the cgroup, detached or not. cgroup.kill where the kernel has it (one
 * write, race-free even against fork); else freeze, kill every pid, thaw (the freezer stops forks
 * while the list is read); else read-and-kill until a pass finds nothing.
 */
export function killCgroup(cg: InstanceCgroup): void {
  if (cg.kill !== undefined) {
    try {
      writeFileSync(join(cg.kill, 'cgroup.kill'), '1');
      return;
    } catch {
      // folder gone or kernel without cgroup.kill: fall through
    }
  }
  const killAll = (): number => {
    const pids = cgroupPids(cg);
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    return pids.length;
  };
  if (cg.freezer !== undefined) {
    try {
      writeFileSync(join(cg.freezer, 'freezer.state'), 'FROZEN');
      killAll();
    } finally {
      try {
        writeFileSync(join(cg.freezer, 'freezer.state'), 'THAWED'); // SIGKILL is delivered on thaw
      } catch {
        // folder gone
      }
    }
    return;
  }
  for (let i = 0; i < 10 && killAll() > 0; i++);
}

/** Remove the instance's folders; they must be empty of processes (else they stay, and a later call retries). */
export function removeCgroup(cg: InstanceCgroup): boolean {
  let all = true;
  for (const d of cg.dirs) {
    try {
      rmdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') all = false;
    }
  }
  return all;
}

/** Whether the recorded folders still exist (adoption after an agent restart). */
export function cgroupExists(cg: InstanceCgroup): boolean {
  return existsSync(join(cg.memory, 'cgroup.procs'));
}

/** Parse a recorded InstanceCgroup (from a pid file); undefined if malformed. */
export function parseInstanceCgroup(v: unknown): InstanceCgroup | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const c = v as Record<string, unknown>;
  const str = (x: unknown): boolean => typeof x === 'string' && x.startsWith('/');
  if ((c.kind !== 'v1' && c.kind !== 'v2') || !str(c.memory) || !Array.isArray(c.dirs) || !c.dirs.every(str)) return undefined;
  if (c.kill !== undefined && !str(c.kill)) return undefined;
  if (c.freezer !== undefined && !str(c.freezer)) return undefined;
  return v as InstanceCgroup;
}

/**
 * Remove instance folders left empty (an instance killed without a stop, e.g. by a test's SIGKILL,
 * or removed while not running) under every base of the layout. Only folders with no process that
 * are older than `minAgeMs`: a folder just made for a start that has not joined it yet is left alone.
 * Shared by every agent on the machine, so it never looks at anything but emptiness and age.
 */
export function sweepEmptyCgroups(layout: CgroupLayout, minAgeMs: number, now = Date.now()): number {
  if (layout.kind === 'none') return 0;
  const bases =
    layout.kind === 'v2'
      ? [layout.base]
      : [layout.memory, layout.cpu, layout.freezer, layout.pids, layout.unified].filter((b): b is string => b !== undefined);
  let removed = 0;
  for (const base of bases) {
    let names: string[] = [];
    try {
      names = readdirSync(base, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      continue;
    }
    for (const n of names) {
      const dir = join(base, n);
      try {
        if ((read(join(dir, 'cgroup.procs')) ?? 'x').trim() !== '' || now - statSync(dir).mtimeMs < minAgeMs) continue;
        rmdirSync(dir);
        removed++;
      } catch {
        // busy (a process joined meanwhile) or gone
      }
    }
  }
  return removed;
}

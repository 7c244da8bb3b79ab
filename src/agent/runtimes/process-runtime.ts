/**
 * The process runtime: each instance is a detached child process (its own process group, and its
 * own cgroup where the machine has them) whose stdout/stderr go through a log-writer process into
 * size-bounded files in its stateDir, identified by pid + start time in stateDir/pid.json so that a
 * restarted agent can adopt it. As root it runs as the app's own uid. See ../README.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type PilotError, fail } from '../../core/errors.js';
import {
  cgroupName,
  cgroupPids,
  createInstanceCgroup,
  killCgroup,
  oomKills,
  removeCgroup,
  type CgroupLayout,
  type InstanceCgroup,
} from '../cgroups.js';
import { isSameProcess, readProcStat, readStartTime } from '../../os/proc.js';
import { isGone, killGroup, pidReused, signalInstance, signalPids } from './signals.js';
import { checkCommand, fallbackMembers, netnsPrefix, overMemory, startArgv, WRAPPER_CGROUP_FAILED } from './containment.js';
import { startLogWriter, type LogPipes } from './log-pipes.js';
import { pidFilePath, readPidFile, writePidFile, type PidFile } from './pid-file.js';
import type { ExitInfo, InstanceHandle, LogFiles, Runtime, StartRequest } from './runtime.js';

interface Tracked {
  readonly stateDir: string;
  /** Set for processes this runtime spawned: resolves once Node has reaped the child. */
  readonly exited?: Promise<void>;
  exit?: ExitInfo;
  readonly cgroup?: InstanceCgroup | undefined;
  /** oom_kill count of the cgroup when the instance started (a reused folder keeps its count). */
  readonly oomBase: number;
  readonly uid?: number | undefined;
  readonly memoryMb?: number | undefined;
  readonly logger?: { readonly pid: number; readonly startTime: string } | undefined;
  /** Set when the RSS-polling fallback killed the instance for its memory. */
  oomByPolling?: boolean;
}

export interface ProcessRuntimeOptions {
  /** Where per-instance cgroups go (cgroups.ts detectCgroups); default none: no limits, /proc fallbacks. */
  readonly cgroups?: CgroupLayout | undefined;
  /** Per log file bound (default 10 MB) and rotated files kept per stream (default 2: 3 files, 30 MB). */
  readonly logMaxBytes?: number | undefined;
  readonly logKeep?: number | undefined;
  /** Tasks (processes + threads) an instance may have where the pids controller exists (default 4096; 0 = no limit). */
  readonly pidsMax?: number | undefined;
  /** How often the no-cgroup fallback measures the RSS of instances with a memory limit (default 500 ms). */
  readonly rssPollMs?: number | undefined;
}

/**
 * How long stop (and a failure report) waits for the log writer to drain the last lines and exit:
 * it ends as soon as the writer does. 2 s was not always enough on a loaded machine (CI), and a
 * release phase's "not found" from the shell went missing from the report.
 */
const LOGGER_WAIT_MS = 5_000;

const POLL_MS = 25;
/** After SIGKILL a process can linger only in uninterruptible sleep (D); give up after this. */
const KILL_WAIT_MS = 5_000;
/** How long stop waits for Node's 'exit' event after the process is gone, so exitInfo is set. */
const REAP_WAIT_MS = 1_000;
/** Bound on remembered handles: a crash-looping instance adds one per restart. Oldest go first. */
const MAX_TRACKED = 10_000;

const key = (h: { pid: number; startTime: string }): string => `${h.pid}:${h.startTime}`;

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function spawnError(req: StartRequest, e: unknown): PilotError {
  const argv0 = req.argv[0] ?? '';
  const code = (e as NodeJS.ErrnoException).code;
  const where = `(instance ${req.instanceId}, cwd ${req.cwd})`;
  if (code === 'ENOENT') return fail.runCommandNotFound({ argv0, where }, { cause: e });
  if (code === 'EACCES') return fail.runCommandNotExecutable({ argv0, where }, { cause: e });
  return fail.runCommandCannotStart({ argv0, message: (e as Error).message, where }, { cause: e });
}

function oomReason(memoryMb: number | undefined, how = ''): string {
  return `killed: out of memory (limit ${memoryMb ?? '?'} MB)${how}`;
}

export class ProcessRuntime implements Runtime {
  private readonly tracked = new Map<string, Tracked>();
  private readonly cgroups: CgroupLayout;
  private readonly logMaxBytes: number;
  private readonly logKeep: number;
  private readonly pidsMax: number | undefined;
  private readonly rssTimer: NodeJS.Timeout | undefined;

  constructor(opts: ProcessRuntimeOptions = {}) {
    this.cgroups = opts.cgroups ?? { kind: 'none', reason: 'not configured' };
    this.logMaxBytes = opts.logMaxBytes ?? 10 * 1024 * 1024;
    this.logKeep = opts.logKeep ?? 2;
    this.pidsMax = opts.pidsMax === 0 ? undefined : (opts.pidsMax ?? 4096);
    if (this.cgroups.kind === 'none') {
      // Without cgroups the memory limit is enforced by measuring: coarse (a fast allocator can
      // overshoot between two polls) but bounded.
      this.rssTimer = setInterval(() => this.enforceRss(), opts.rssPollMs ?? 500);
      this.rssTimer.unref();
    }
  }

  /** Start the log writer, then the instance (detached, in its cgroup, as its uid), and record it in stateDir/pid.json. */
  async start(req: StartRequest): Promise<InstanceHandle> {
    const argv0 = req.argv[0];
    if (argv0 === undefined || argv0 === '') {
      throw fail.instanceEmptyCommand({ instanceId: req.instanceId });
    }
    if (!isDirectory(req.cwd)) {
      // Checked here because spawn reports a missing cwd as ENOENT of the command, which misleads.
      throw fail.instanceCwdMissing({ cwd: req.cwd, instanceId: req.instanceId });
    }
    const previous = readPidFile(req.stateDir);
    if (previous !== undefined && isSameProcess(previous.pid, previous.startTime)) {
      // Overwriting the pid file would orphan a live process that keeps its port and its files.
      throw fail.instanceAlreadyRunning({ stateDir: req.stateDir, pid: previous.pid });
    }
    await mkdir(req.stateDir, { recursive: true, mode: 0o700 });
    const user = req.user;
    if (user !== undefined || this.cgroups.kind !== 'none') {
      // The wrapper execs the command: look it up now so a typo is a start error, not exit 127.
      try {
        checkCommand(argv0, req.env.PATH, req.cwd, user);
      } catch (e) {
        throw spawnError(req, e);
      }
    }
    const memoryMb = req.limits?.memoryMb;
    let cgroup: InstanceCgroup | undefined;
    try {
      const tag = createHash('sha256').update(req.stateDir).digest('hex').slice(0, 8);
      cgroup = createInstanceCgroup(this.cgroups, cgroupName(req.instanceId, tag), { ...req.limits, pids: this.pidsMax });
    } catch (e) {
      throw fail.cannotSetUpCgroup({ instanceId: req.instanceId, message: (e as Error).message }, { cause: e });
    }
    if (cgroup !== undefined && cgroupPids(cgroup).length > 0) {
      // Left over from a crashed start with this stateDir: nothing of it may run beside the new one.
      killCgroup(cgroup);
    }
    const oomBase = cgroup === undefined ? 0 : oomKills(cgroup);
    // The log writer first: it holds the read ends, so the app's first line has a reader.
    let pipes: LogPipes;
    try {
      pipes = startLogWriter(this.logFiles(req.stateDir), req.stateDir, this.logMaxBytes, this.logKeep);
    } catch (e) {
      if (cgroup !== undefined) removeCgroup(cgroup);
      throw spawnError(req, e);
    }
    let child: ChildProcess;
    let startTime: string | undefined;
    // With a cgroup the wrapper joins it as root, then setpriv drops to the app uid; without one,
    // Node switches user itself (setgroups(0), setgid, setuid) and no wrapper is needed.
    // A namespaced instance (nsenter first) needs the wrapper too: nsenter must run as root.
    const wrapped = cgroup !== undefined || (user !== undefined && netnsPrefix(req.argv).length > 0);
    const argv = wrapped
      ? startArgv(req.argv, cgroup === undefined ? [] : cgroup.dirs.map((d) => join(d, 'cgroup.procs')), user)
      : [...req.argv];
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: req.cwd,
        env: { ...req.env },
        detached: true, // own process group: survives the agent, and stop can signal the whole tree
        // The log writer's pipes, never the agent's: a pipe to a dead agent would mean EPIPE.
        stdio: ['ignore', pipes.stdout, pipes.stderr],
        ...(user !== undefined && !wrapped ? { uid: user.uid, gid: user.gid } : {}),
      });
      // Read now, before yielding to the event loop: a child that already exited is at worst an
      // unreaped zombie whose stat still exists; one tick later Node may have reaped it.
      startTime = child.pid === undefined ? undefined : readStartTime(child.pid);
    } catch (e) {
      if (cgroup !== undefined) removeCgroup(cgroup);
      throw spawnError(req, e); // sync throws: bad argument values (NUL bytes), EMFILE
    } finally {
      pipes.release(); // the child has its own copies; the log writer exits once it has none left
    }
    const failed = new Promise<unknown>((resolve) => child.once('error', resolve));
    const pid = child.pid;
    if (pid === undefined) {
      if (cgroup !== undefined) removeCgroup(cgroup);
      throw spawnError(req, await failed); // ENOENT/EACCES arrive as 'error'
    }
    const tracked: Tracked = {
      stateDir: req.stateDir,
      cgroup,
      oomBase,
      uid: user?.uid,
      memoryMb,
      logger: { pid: pipes.pid, startTime: pipes.startTime },
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          tracked.exit = this.describeExit(tracked, code, signal);
          resolve();
        });
      }),
    };
    child.unref(); // the agent may exit while the instance runs on
    if (startTime === undefined) {
      killGroup(pid, 'SIGKILL');
      throw fail.cannotReadProcStat({ pid });
    }
    const h: InstanceHandle = { instanceId: req.instanceId, pid, startTime, startedAt: Date.now() };
    try {
      const pf: PidFile = { ...h, argv: [...req.argv], cgroup, uid: user?.uid, memoryMb, logger: tracked.logger };
      await writePidFile(req.stateDir, pf);
    } catch (e) {
      // An instance nobody can find again would hold its port forever: take it down.
      killGroup(pid, 'SIGKILL');
      if (cgroup !== undefined) killCgroup(cgroup);
      throw fail.pidFileUnwritable({ stateDir: pidFilePath(req.stateDir), message: (e as Error).message }, { cause: e });
    }
    this.track(key(h), tracked);
    return h;
  }

  /** Find the instance recorded in stateDir/pid.json, if that same process is still alive. */
  async adopt(instanceId: string, stateDir: string): Promise<InstanceHandle | undefined> {
    await Promise.resolve();
    const pf = readPidFile(stateDir);
    if (pf === undefined || pf.instanceId !== instanceId || !isSameProcess(pf.pid, pf.startTime)) return undefined;
    const h: InstanceHandle = { instanceId, pid: pf.pid, startTime: pf.startTime, startedAt: pf.startedAt };
    // oomBase 0: a cgroup folder is made fresh (or emptied) at each start, so its count is this instance's.
    if (!this.tracked.has(key(h)))
      this.track(key(h), { stateDir, cgroup: pf.cgroup, oomBase: 0, uid: pf.uid, memoryMb: pf.memoryMb, logger: pf.logger });
    return h;
  }

  /** True while the instance's leader process is alive. */
  isRunning(h: InstanceHandle): boolean {
    const tracked = this.tracked.get(key(h));
    if (tracked?.exited !== undefined && tracked.exit === undefined) {
      // Our own child stays "running" until Node has reaped it (it is a zombie until then), so that
      // exitInfo is known the moment isRunning turns false. Node reaps it within one loop turn.
      return readProcStat(h.pid)?.startTime === h.startTime;
    }
    return isSameProcess(h.pid, h.startTime);
  }

  /**
   * Exit code/signal of an instance this object started, once Node has reaped it. For an adopted
   * one only an OOM kill is known (from its cgroup's count), with no code.
   */
  async logsFlushed(h: InstanceHandle): Promise<void> {
    const lg = this.tracked.get(key(h))?.logger;
    if (lg === undefined) return;
    const end = performance.now() + LOGGER_WAIT_MS;
    while (isSameProcess(lg.pid, lg.startTime) && performance.now() < end) await sleep(POLL_MS);
  }

  exitInfo(h: InstanceHandle): ExitInfo | undefined {
    const t = this.tracked.get(key(h));
    if (t === undefined) return undefined;
    if (t.exit !== undefined || t.exited !== undefined) return t.exit;
    if (this.isRunning(h)) return undefined;
    const oom = this.describeExit(t, null, null);
    return oom.oomKilled ? oom : undefined;
  }

  private describeExit(t: Tracked, code: number | null, signal: NodeJS.Signals | null): ExitInfo {
    if (t.oomByPolling) return { code, signal, oomKilled: true, reason: oomReason(t.memoryMb, ' (measured by RSS polling)') };
    if (t.cgroup !== undefined && oomKills(t.cgroup) > t.oomBase) return { code, signal, oomKilled: true, reason: oomReason(t.memoryMb) };
    if (code === WRAPPER_CGROUP_FAILED && t.cgroup !== undefined)
      return { code, signal, reason: 'could not join its cgroup (exit 125 of the start wrapper)' };
    return { code, signal };
  }

  /**
   * SIGTERM the group (and every process of its cgroup), SIGKILL after graceMs, then SIGKILL every
   * descendant left, detached or not (cgroup.kill; without cgroups: the /proc tree and the app
   * uid's marked processes), wait until none is left, remove the cgroup and the pid file.
   */
  async stop(h: InstanceHandle, graceMs: number): Promise<void> {
    const tracked = this.tracked.get(key(h));
    const cg = tracked?.cgroup;
    // performance.now() is monotonic: a wall-clock jump must not cut or stretch the grace period.
    const graceEnd = performance.now() + Math.max(0, graceMs);
    const allGone = (): boolean => isGone(h) && (cg === undefined || cgroupPids(cg).length === 0);
    if (!allGone()) {
      signalInstance(h, 'SIGTERM');
      if (cg !== undefined) signalPids(cgroupPids(cg), 'SIGTERM');
      while (!allGone() && performance.now() < graceEnd) await sleep(POLL_MS);
    }
    const killEnd = performance.now() + KILL_WAIT_MS;
    if (!isGone(h)) signalInstance(h, 'SIGKILL');
    for (;;) {
      // Every pass, since a dying process may still fork once (without cgroup.kill or a freezer).
      const rest = cg !== undefined ? cgroupPids(cg) : pidReused(h) ? [] : fallbackMembers(h.pid, h.instanceId, tracked?.uid);
      if (rest.length === 0 && isGone(h)) break;
      if (cg !== undefined) killCgroup(cg);
      else signalPids(rest, 'SIGKILL');
      if (performance.now() > killEnd) {
        throw fail.instanceDidNotExit({ instanceId: h.instanceId, pid: h.pid });
      }
      await sleep(POLL_MS);
    }
    if (tracked?.exited !== undefined && tracked.exit === undefined) {
      await Promise.race([tracked.exited, sleep(REAP_WAIT_MS)]);
    }
    if (cg !== undefined) removeCgroup(cg);
    if (tracked?.logger !== undefined) {
      // Its pipes are closed now: let it write the last lines and exit (so nothing of the instance is left).
      const lg = tracked.logger;
      const end = performance.now() + LOGGER_WAIT_MS;
      while (isSameProcess(lg.pid, lg.startTime) && performance.now() < end) await sleep(POLL_MS);
    }
    if (tracked !== undefined) {
      // Only if it still names this instance: a newer instance may have been started in the dir.
      const pf = readPidFile(tracked.stateDir);
      if (pf !== undefined && key(pf) === key(h)) await rm(pidFilePath(tracked.stateDir), { force: true });
    }
  }

  /** Close the RSS poller; instances keep running. */
  async close(): Promise<void> {
    await Promise.resolve();
    if (this.rssTimer !== undefined) clearInterval(this.rssTimer);
  }

  /** The no-cgroup memory limit: SIGKILL every process of an instance whose tree RSS is above it. */
  private enforceRss(): void {
    const limited = [...this.tracked.entries()].filter(
      ([, t]) => t.memoryMb !== undefined && t.memoryMb > 0 && t.cgroup === undefined && t.exit === undefined,
    );
    if (limited.length === 0) return;
    const over = overMemory(
      limited.map(([k, t]) => ({ key: k, leader: Number(k.split(':')[0]), startTime: k.split(':')[1]!, memoryMb: t.memoryMb! })),
    );
    for (const { key: k, pids } of over) {
      const t = this.tracked.get(k);
      if (t !== undefined) t.oomByPolling = true;
      signalPids(pids, 'SIGKILL');
    }
  }

  /** Paths of stdout.log and stderr.log in stateDir. */
  logFiles(stateDir: string): LogFiles {
    return { stdout: join(stateDir, 'stdout.log'), stderr: join(stateDir, 'stderr.log') };
  }

  private track(k: string, t: Tracked): void {
    this.tracked.set(k, t);
    if (this.tracked.size > MAX_TRACKED) {
      const oldest = this.tracked.keys().next().value;
      if (oldest !== undefined) this.tracked.delete(oldest);
    }
  }
}

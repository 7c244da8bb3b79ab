/**
 * The process runtime: each instance is a detached child process (its own process group) whose
 * stdout/stderr go to files in its stateDir, identified by pid + start time in stateDir/pid.json so
 * that a restarted agent can adopt it. See ../README.md for the life cycle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PilotError } from '../../core/errors.js';
import { isSameProcess, liveGroupMembers, readProcStat, readStartTime } from '../proc.js';
import { pidFilePath, readPidFile, writePidFile } from './pid-file.js';
import type { ExitInfo, InstanceHandle, LogFiles, Runtime, StartRequest } from './runtime.js';

interface Tracked {
  readonly stateDir: string;
  /** Set for processes this runtime spawned: resolves once Node has reaped the child. */
  readonly exited?: Promise<void>;
  exit?: ExitInfo;
}

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
  const hint = 'Check the run command (pilot.yaml `run`, the Procfile web: line or package.json start); it is looked up in the PATH of the app env.';
  if (code === 'ENOENT') return new PilotError('deploy_failed', `${argv0}: command not found ${where}`, { hint, cause: e });
  if (code === 'EACCES') return new PilotError('deploy_failed', `${argv0}: permission denied, not executable ${where}`, { hint, cause: e });
  return new PilotError('deploy_failed', `${argv0}: cannot start: ${(e as Error).message} ${where}`, { hint, cause: e });
}

export class ProcessRuntime implements Runtime {
  private readonly tracked = new Map<string, Tracked>();

  /** Spawn the instance detached, output to files, and record it in stateDir/pid.json. */
  async start(req: StartRequest): Promise<InstanceHandle> {
    const argv0 = req.argv[0];
    if (argv0 === undefined || argv0 === '') {
      throw new PilotError('deploy_failed', `instance ${req.instanceId}: empty command`);
    }
    if (!isDirectory(req.cwd)) {
      // Checked here because spawn reports a missing cwd as ENOENT of the command, which misleads.
      throw new PilotError('deploy_failed', `${req.cwd}: no such directory (instance ${req.instanceId})`);
    }
    const previous = readPidFile(req.stateDir);
    if (previous !== undefined && isSameProcess(previous.pid, previous.startTime)) {
      // Overwriting the pid file would orphan a live process that keeps its port and its files.
      throw new PilotError('conflict', `${req.stateDir} already has a running instance (pid ${previous.pid})`, {
        hint: 'adopt() and stop() it first.',
      });
    }
    await mkdir(req.stateDir, { recursive: true });
    const logs = this.logFiles(req.stateDir);
    const fds: number[] = [];
    let child: ChildProcess;
    let startTime: string | undefined;
    try {
      fds.push(openSync(logs.stdout, 'a'), openSync(logs.stderr, 'a'));
      child = spawn(argv0, req.argv.slice(1), {
        cwd: req.cwd,
        env: { ...req.env },
        detached: true, // own process group: survives the agent, and stop can signal the whole tree
        stdio: ['ignore', fds[0], fds[1]], // files, never pipes: a pipe to a dead agent means EPIPE
      });
      // Read now, before yielding to the event loop: a child that already exited is at worst an
      // unreaped zombie whose stat still exists; one tick later Node may have reaped it.
      startTime = child.pid === undefined ? undefined : readStartTime(child.pid);
    } catch (e) {
      throw spawnError(req, e); // sync throws: bad argument values (NUL bytes), EMFILE on open
    } finally {
      for (const fd of fds) closeSync(fd); // the child has its own copies
    }
    const failed = new Promise<unknown>((resolve) => child.once('error', resolve));
    const pid = child.pid;
    if (pid === undefined) throw spawnError(req, await failed); // ENOENT/EACCES arrive as 'error'
    const tracked: Tracked = {
      stateDir: req.stateDir,
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          tracked.exit = { code, signal };
          resolve();
        });
      }),
    };
    child.unref(); // the agent may exit while the instance runs on
    if (startTime === undefined) {
      killGroup(pid, 'SIGKILL');
      throw new PilotError('internal', `cannot read /proc/${pid}/stat: is /proc mounted?`);
    }
    const h: InstanceHandle = { instanceId: req.instanceId, pid, startTime, startedAt: Date.now() };
    try {
      await writePidFile(req.stateDir, { ...h, argv: [...req.argv] });
    } catch (e) {
      // An instance nobody can find again would hold its port forever: take it down.
      killGroup(pid, 'SIGKILL');
      throw new PilotError('deploy_failed', `cannot write ${pidFilePath(req.stateDir)}: ${(e as Error).message}`, { cause: e });
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
    if (!this.tracked.has(key(h))) this.track(key(h), { stateDir });
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

  /** Exit code/signal of an instance this object started, once Node has reaped it. */
  exitInfo(h: InstanceHandle): ExitInfo | undefined {
    return this.tracked.get(key(h))?.exit;
  }

  /** SIGTERM the group, SIGKILL after graceMs, wait until the group is empty, remove the pid file. */
  async stop(h: InstanceHandle, graceMs: number): Promise<void> {
    // performance.now() is monotonic: a wall-clock jump must not cut or stretch the grace period.
    const graceEnd = performance.now() + Math.max(0, graceMs);
    if (!isGone(h)) {
      signalInstance(h, 'SIGTERM');
      while (!isGone(h) && performance.now() < graceEnd) await sleep(POLL_MS);
    }
    if (!isGone(h)) {
      signalInstance(h, 'SIGKILL');
      const killEnd = performance.now() + KILL_WAIT_MS;
      while (!isGone(h)) {
        if (performance.now() > killEnd) {
          throw new PilotError('unavailable', `instance ${h.instanceId} (pid ${h.pid}) did not exit after SIGKILL`);
        }
        await sleep(POLL_MS);
      }
    }
    const tracked = this.tracked.get(key(h));
    if (tracked?.exited !== undefined && tracked.exit === undefined) {
      await Promise.race([tracked.exited, sleep(REAP_WAIT_MS)]);
    }
    if (tracked !== undefined) {
      // Only if it still names this instance: a newer instance may have been started in the dir.
      const pf = readPidFile(tracked.stateDir);
      if (pf !== undefined && key(pf) === key(h)) await rm(pidFilePath(tracked.stateDir), { force: true });
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

/** Whether a pid number now belongs to another process than the instance's leader. */
function pidReused(h: InstanceHandle): boolean {
  const st = readProcStat(h.pid);
  return st !== undefined && st.startTime !== h.startTime;
}

/**
 * The instance is gone when its leader is dead and no live process is left in its group (npm start
 * → sh → node: the node grandchild holds the port). A pid is not reused while it still names a
 * process group with members, so once the leader's pid names another process the group is empty.
 */
function isGone(h: InstanceHandle): boolean {
  if (isSameProcess(h.pid, h.startTime)) return false;
  if (pidReused(h)) return true;
  return liveGroupMembers(h.pid).length === 0;
}

/** Signal the instance's group, never a process that merely reuses its pid. */
function signalInstance(h: InstanceHandle, sig: NodeJS.Signals): void {
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

function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is empty. EPERM (a setuid member): stop's wait loop reports it if it matters.
  }
}

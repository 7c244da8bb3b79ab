/**
 * A runtime with no real processes, for tests and for harnesses that simulate hundreds of nodes.
 * A FakeHost is the simulated machine (process table + pid files); a FakeRuntime is one agent's view
 * of it, so "restart the agent" = a new FakeRuntime over the same FakeHost. Failures are injected
 * with `startError`, `crashAfterMs`, `markDead()` and `host.reusePid()`.
 */
import { fail } from '../../core/errors.js';
import type { ExitInfo, InstanceHandle, LogFiles, Runtime, StartRequest } from './runtime.js';

interface FakeProcess {
  readonly pid: number;
  readonly startTime: string;
  readonly req: StartRequest;
  exit: ExitInfo | undefined;
  timer: NodeJS.Timeout | undefined;
}

interface FakePidFile {
  readonly instanceId: string;
  readonly pid: number;
  readonly startTime: string;
  readonly startedAt: number;
}

/** The simulated machine: processes by pid, pid files by stateDir. */
export class FakeHost {
  private nextPid = 1000;
  private ticks = 0;
  private readonly procs = new Map<number, FakeProcess>();
  readonly pidFiles = new Map<string, FakePidFile>();

  /** Create a live process; pids count up, start times never repeat. */
  spawn(req: StartRequest, pid = this.nextPid++): FakeProcess {
    const p: FakeProcess = { pid, startTime: String(++this.ticks), req, exit: undefined, timer: undefined };
    this.procs.set(pid, p);
    return p;
  }

  /** The process now holding `pid`, alive or exited. */
  get(pid: number): FakeProcess | undefined {
    return this.procs.get(pid);
  }

  /** End a process; the first exit wins. */
  exit(pid: number, info: ExitInfo): void {
    const p = this.procs.get(pid);
    if (p === undefined || p.exit !== undefined) return;
    p.exit = info;
    if (p.timer !== undefined) clearTimeout(p.timer);
  }

  /** Simulate pid reuse: the process at `pid` dies and an unrelated one takes its number. */
  reusePid(pid: number): void {
    this.exit(pid, { code: null, signal: 'SIGKILL' });
    this.spawn({ instanceId: 'unrelated', stateDir: '', cwd: '/', argv: ['unrelated'], env: {} }, pid);
  }

  /** Live processes, for assertions ("nothing leaked"). */
  running(): number[] {
    return [...this.procs.values()].filter((p) => p.exit === undefined).map((p) => p.pid);
  }
}

export interface FakeRuntimeOptions {
  /** Shared machine; a new one by default. Pass the same host to simulate an agent restart. */
  readonly host?: FakeHost;
  /** Make start() fail with deploy_failed: always (string) or for some requests (function). */
  startError?: string | ((req: StartRequest) => string | undefined);
  /** Instances exit with code 1 this long after they start. */
  crashAfterMs?: number;
}

export class FakeRuntime implements Runtime {
  readonly host: FakeHost;
  startError: FakeRuntimeOptions['startError'];
  crashAfterMs: number | undefined;
  private readonly started = new Set<string>();

  constructor(opts: FakeRuntimeOptions = {}) {
    this.host = opts.host ?? new FakeHost();
    this.startError = opts.startError;
    this.crashAfterMs = opts.crashAfterMs;
  }

  /** Start a fake instance, or fail as injected. */
  async start(req: StartRequest): Promise<InstanceHandle> {
    await Promise.resolve(); // settle asynchronously, as a real runtime does
    const err = typeof this.startError === 'function' ? this.startError(req) : this.startError;
    if (err !== undefined) throw fail.injectedStartFailure({ message: err });
    if (req.argv.length === 0 || req.argv[0] === '') {
      throw fail.instanceEmptyCommand({ instanceId: req.instanceId });
    }
    const previous = this.host.pidFiles.get(req.stateDir);
    if (previous !== undefined && this.isRunning(previous)) {
      throw fail.instanceAlreadyRunningNoPid({ stateDir: req.stateDir });
    }
    const p = this.host.spawn(req);
    if (this.crashAfterMs !== undefined) {
      p.timer = setTimeout(() => this.host.exit(p.pid, { code: 1, signal: null }), this.crashAfterMs);
      p.timer.unref();
    }
    const h: InstanceHandle = { instanceId: req.instanceId, pid: p.pid, startTime: p.startTime, startedAt: Date.now() };
    this.host.pidFiles.set(req.stateDir, { ...h });
    this.started.add(key(h));
    return h;
  }

  /** The instance in stateDir's pid file, if that same fake process is alive. */
  async adopt(instanceId: string, stateDir: string): Promise<InstanceHandle | undefined> {
    await Promise.resolve();
    const pf = this.host.pidFiles.get(stateDir);
    if (pf === undefined || pf.instanceId !== instanceId || !this.isRunning(pf)) return undefined;
    return { instanceId, pid: pf.pid, startTime: pf.startTime, startedAt: pf.startedAt };
  }

  /** True while the same fake process is alive. */
  isRunning(h: { pid: number; startTime: string }): boolean {
    const p = this.host.get(h.pid);
    return p !== undefined && p.startTime === h.startTime && p.exit === undefined;
  }

  /** Exit info, only for instances this runtime object started. */
  exitInfo(h: InstanceHandle): ExitInfo | undefined {
    if (!this.started.has(key(h))) return undefined;
    const p = this.host.get(h.pid);
    return p !== undefined && p.startTime === h.startTime ? p.exit : undefined;
  }

  /** Stop at once (fake instances honour SIGTERM) and remove the pid file. */
  async stop(h: InstanceHandle, _graceMs: number): Promise<void> {
    await Promise.resolve();
    if (this.isRunning(h)) this.host.exit(h.pid, { code: null, signal: 'SIGTERM' });
    const p = this.host.get(h.pid);
    if (p === undefined || p.startTime !== h.startTime) return;
    const pf = this.host.pidFiles.get(p.req.stateDir);
    if (pf !== undefined && key(pf) === key(h)) this.host.pidFiles.delete(p.req.stateDir);
  }

  /** Paths as the process runtime would use; nothing is written there. */
  logFiles(stateDir: string): LogFiles {
    return { stdout: `${stateDir}/stdout.log`, stderr: `${stateDir}/stderr.log` };
  }

  /** Simulate a crash (or an OOM kill) of a running instance. */
  markDead(h: InstanceHandle, info: ExitInfo = { code: null, signal: 'SIGKILL' }): void {
    if (this.isRunning(h)) this.host.exit(h.pid, info);
  }
}

function key(h: { pid: number; startTime: string }): string {
  return `${h.pid}:${h.startTime}`;
}

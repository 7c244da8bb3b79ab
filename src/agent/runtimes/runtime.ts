/**
 * The port every runtime implements (process now, docker later, fake for tests). A runtime starts,
 * finds again, watches and stops instances on this machine; it does not restart, probe or decide:
 * the agent loop does that with what this interface reports.
 */

export interface StartRequest {
  readonly instanceId: string;
  /** Per-instance folder owned by the runtime: pid file, logs. Created if missing. */
  readonly stateDir: string;
  /** The unpacked release; the instance's working directory. */
  readonly cwd: string;
  readonly argv: readonly string[];
  /** The complete env: the runtime adds nothing from the agent's own env (no PATH, no tokens). */
  readonly env: Readonly<Record<string, string>>;
}

/** Names one running instance. A value: safe to copy, compare, persist. */
export interface InstanceHandle {
  readonly instanceId: string;
  readonly pid: number;
  /** Start time of `pid` (/proc/PID/stat field 22 for processes): pid + startTime never repeat. */
  readonly startTime: string;
  /** Wall clock ms, for display only. */
  readonly startedAt: number;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
}

export interface LogFiles {
  readonly stdout: string;
  readonly stderr: string;
}

export interface Runtime {
  /**
   * Start an instance. Rejects with PilotError `deploy_failed` when it cannot be started (command
   * not found, not executable, no such cwd), `conflict` when stateDir already has a live instance.
   */
  start(req: StartRequest): Promise<InstanceHandle>;
  /** After an agent restart: the instance from stateDir's pid file, only if that same process is alive. */
  adopt(instanceId: string, stateDir: string): InstanceHandle | undefined;
  /** True while the instance's process is alive (a reused pid or a zombie is not). */
  isRunning(h: InstanceHandle): boolean;
  /**
   * How it exited; known only for instances this runtime object started itself, and then always
   * as soon as isRunning returns false. Undefined while running and for adopted instances.
   */
  exitInfo(h: InstanceHandle): ExitInfo | undefined;
  /**
   * SIGTERM to the instance's process group, wait up to graceMs, then SIGKILL; resolves when the
   * whole group is gone and removes the pid file. Idempotent; never signals a reused pid.
   */
  stop(h: InstanceHandle, graceMs: number): Promise<void>;
  /** Where the instance's output goes; the files may not exist yet. */
  logFiles(stateDir: string): LogFiles;
}

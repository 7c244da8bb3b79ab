/**
 * The port every runtime implements (process now, docker later, fake for tests). A runtime starts,
 * finds again, watches and stops instances on this machine; it does not restart, probe or decide:
 * the agent loop does that with what this interface reports.
 */

export interface StartRequest {
  readonly instanceId: string;
  /** Per-instance folder owned by the runtime: pid file, logs. Created if missing. */
  readonly stateDir: string;
  /** The unpacked release; the instance's working directory (docker: unused, the image's WORKDIR). */
  readonly cwd: string;
  /** The command. docker: empty = the image's own CMD. */
  readonly argv: readonly string[];
  /** The complete env: the runtime adds nothing from the agent's own env (no PATH, no tokens). docker: added to the image's ENV. */
  readonly env: Readonly<Record<string, string>>;
  /** docker: the image ID (sha256:…) to run; it must already be present on the engine. */
  readonly image?: string | undefined;
  /** Limits: docker for the container; process for its cgroup (or the RSS-polling fallback). */
  readonly limits?: { readonly cpu?: number | undefined; readonly memoryMb?: number | undefined } | undefined;
  /** process: run as this unprivileged uid/gid (the app's own, isolation.ts) instead of the agent's. */
  readonly user?: { readonly uid: number; readonly gid: number } | undefined;
  /** docker: labels describing the instance (dev.pilot.app, dev.pilot.revision), besides the runtime's own. */
  readonly labels?: Readonly<Record<string, string>> | undefined;
  /** docker: named volumes to mount (created when missing, kept after the container). */
  readonly volumes?: readonly { readonly source: string; readonly target: string }[] | undefined;
}

/** Names one running instance. A value: safe to copy, compare, persist. */
export interface InstanceHandle {
  readonly instanceId: string;
  readonly pid: number;
  /** Start time of `pid` (/proc/PID/stat field 22 for processes): pid + startTime never repeat. */
  readonly startTime: string;
  /** Wall clock ms, for display only. */
  readonly startedAt: number;
  /** docker: the container (full id). `pid` is then its init process as this machine sees it. */
  readonly containerId?: string | undefined;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
  /** The kernel's OOM killer ended it (docker: State.OOMKilled). */
  readonly oomKilled?: boolean | undefined;
  /** A sentence for lastError when the code/signal alone would mislead ("killed: out of memory (limit 64 MB)"). */
  readonly reason?: string | undefined;
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
  /**
   * After an agent restart: the instance recorded for stateDir (process: its pid file; docker: the
   * container labelled with this instance and stateDir), only if it is still running.
   */
  adopt(instanceId: string, stateDir: string): Promise<InstanceHandle | undefined>;
  /**
   * True while the instance runs (a reused pid or a zombie is not). Answered from local state: for
   * processes /proc, for containers the state the engine's event stream keeps current. A change made
   * through another runtime object may take a moment (one event) to show.
   */
  isRunning(h: InstanceHandle): boolean;
  /**
   * How it exited; known for instances this runtime object started itself (docker: also for adopted
   * ones, the engine keeps it), and then always as soon as isRunning returns false. Undefined while running.
   */
  exitInfo(h: InstanceHandle): ExitInfo | undefined;
  /**
   * Resolves once the output of an instance that has exited is all in its log files (the process
   * runtime's log writer drains its pipes and exits; bounded wait). Optional: files written directly need none.
   */
  logsFlushed?(h: InstanceHandle): Promise<void>;
  /**
   * SIGTERM to the instance's process group, wait up to graceMs, then SIGKILL; resolves when the
   * whole group is gone and removes the pid file. Idempotent; never signals a reused pid.
   */
  stop(h: InstanceHandle, graceMs: number): Promise<void>;
  /** Where the instance's output goes; the files may not exist yet. */
  logFiles(stateDir: string): LogFiles;
  /** Release what the runtime object holds (event streams, log followers); instances keep running. */
  close?(): Promise<void>;
}

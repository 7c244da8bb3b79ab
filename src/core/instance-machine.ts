/**
 * The agent's per-instance state machine as a pure function: `step(machine, event, now)` returns the
 * next machine and the effects the agent must perform (start, probe, stop, capture the log tail,
 * save, report). No I/O, no clock: `now` is the agent's monotonic milliseconds. The agent observes
 * (a supervise tick, a probe answer, an exit, a start that failed) and performs; it decides nothing.
 *
 *                       tick: start            probe ok
 *   pending ──────────────► starting ──────────────────► ready ◄─────────────┐
 *     │ start failed           │   ▲                       │ refused, or      │ probe ok
 *     ▼                 exited │   │ tick: back-off        ▼ 3 failures      │
 *   failed ─ back-off ─►       ▼   │ elapsed            unhealthy ───────────┘
 *   elapsed: start           backoff ◄─────── exited ──────┴── (ready exits the same way)
 *
 *   release (one-shot): pending ─► starting ─► exited 0 ─► stopped (finished)
 *                                      └─ exited ≠ 0, timeout, start failed ─► failed (finished)
 *   a finished release never starts again, never probes.
 *
 *   any state ── removing (not desired, in `stop`) ── tick ──► stopping (if running) ──► stopped
 *
 * Back-off: 1 s, 2 s, 4 s … capped at 30 s (backoff.ts); an instance ready for STABLE_MS before it
 * crashed starts the series again. One supervise pass delivers at most one event per instance and
 * none while an effect of that instance is running (the agent's `busy`).
 */
import { restartDelayMs } from './backoff.js';
import type { InstanceKind, InstanceSpec, InstanceState } from './types.js';

/** Ready this long before a crash: the back-off series starts again. */
export const STABLE_MS = 30_000;
/** Failed probes in a row (timeouts, 5xx) that take a ready instance out of the routing table. */
export const UNHEALTHY_AFTER = 3;
/** A failing probe re-reads the instance's last lines at most this often, and not in the first TAIL_EVERY_MS of a start. */
export const TAIL_EVERY_MS = 2000;
/** The first probe after a start. */
export const FIRST_PROBE_MS = 50;
/** Until it is ready an instance is probed at least this often: readiness latency is deploy latency. */
export const STARTING_PROBE_MS = 100;
/** A release phase that outlives this (or its spec's releaseTimeoutMs) is killed and failed. */
export const RELEASE_TIMEOUT_MS = 300_000;
/** A timed-out release phase gets this long between SIGTERM and SIGKILL. */
export const RELEASE_STOP_GRACE_MS = 2000;

/** What the machine needs of the spec; never changed by a step. */
export interface MachineConfig {
  readonly kind: InstanceKind;
  /** The app has a fixed port: a restart keeps it (else a restart gets a fresh one). */
  readonly fixedPort: boolean;
  readonly healthPath: string;
  readonly probeIntervalMs: number;
  readonly stopTimeoutMs: number;
  readonly releaseTimeoutMs: number;
}

export interface InstanceMachine {
  readonly config: MachineConfig;
  readonly state: InstanceState;
  /** The agent holds a handle on a process or container of this instance. */
  readonly running: boolean;
  /** Not desired any more: being stopped, then forgotten. */
  readonly removing: boolean;
  /** Unknown to the control plane: kept running, reported, stopped only when named in `stop`. */
  readonly orphan: boolean;
  /** kind release: the phase ended (`stopped` = exit 0, `failed` otherwise); never started again. */
  readonly finished: boolean;
  readonly restarts: number;
  /** Crashes since it was last stable; drives the back-off. */
  readonly consecutiveCrashes: number;
  readonly probeFailures: number;
  readonly lastError: string | undefined;
  /** The last lines of its output when it failed (crash, start, probe); cleared once ready. */
  readonly logTail: string | undefined;
  /** Monotonic ms before which it must not be (re)started. */
  readonly nextStartAt: number;
  /** Monotonic ms of the next probe. */
  readonly nextProbeAt: number;
  readonly readySince: number | undefined;
  /** Monotonic ms of its last start (or adoption): the release timeout and the tail's quiet start. */
  readonly startedAt: number;
  /** Monotonic ms of the last tail capture. */
  readonly tailAt: number;
}

/** How a process ended, as the runtime tells it (undefined fields: not known, e.g. adopted). */
export interface ExitObservation {
  readonly code?: number | null | undefined;
  readonly signal?: string | null | undefined;
  /** The runtime's own words (e.g. "killed: out of memory (limit 64 MB)"). */
  readonly reason?: string | undefined;
}

export type InstanceEvent =
  /** A sync answer: whether the control plane wants it, and whether it named it to stop (no `stop` list = old rule: yes). */
  | { readonly type: 'desired'; readonly wanted: boolean; readonly stopListed: boolean }
  /** A supervise pass, its process (if any) still running. */
  | { readonly type: 'tick' }
  /** A supervise pass found its process gone; `exit` undefined = not known (adopted). */
  | { readonly type: 'exited'; readonly exit: ExitObservation | undefined }
  /** The artifact is ready; the process is about to be spawned. */
  | { readonly type: 'spawning' }
  /** The runtime started it (or adopted a container that survived). */
  | { readonly type: 'started' }
  | { readonly type: 'start-failed'; readonly error: string }
  /** A probe answered; `refused` = nothing listens (definite); `note` = where it listens instead. */
  | {
      readonly type: 'probed';
      readonly ok: boolean;
      readonly refused?: boolean;
      readonly error?: string;
      readonly note?: string | undefined;
    }
  /** kind release: how the one-shot ended (`exit` undefined = the agent restarted meanwhile and nothing was recorded). */
  | { readonly type: 'release-ended'; readonly exit: ExitObservation | undefined; readonly timedOut: boolean }
  /** The last lines of its output, read by a capture-tail effect. */
  | { readonly type: 'tail'; readonly text: string | undefined }
  /** After an agent restart: its process still runs (`running`), or (release) its end was recorded. */
  | { readonly type: 'adopted'; readonly running: boolean; readonly releaseEnded?: boolean }
  /** After an agent restart: a release phase that had ended, as saved. */
  | {
      readonly type: 'restored';
      readonly state: 'stopped' | 'failed';
      readonly lastError: string | undefined;
      readonly logTail: string | undefined;
    }
  /** The remove effect stopped it (or it had no process). */
  | { readonly type: 'stopped' };

export type InstanceEffect =
  /** Fetch, unpack and start it (the agent then sends spawning, started or start-failed). */
  | { readonly type: 'start' }
  /** Probe it (then `probed`). */
  | { readonly type: 'probe' }
  /** Stop it with this grace period, keep its logs, forget it (then `stopped`). */
  | { readonly type: 'remove'; readonly graceMs: number }
  /** The leader died: kill what it left in its group and network namespace (no grace). */
  | { readonly type: 'kill-leftovers' }
  /** A restart gets a fresh port: the old one may be taken by now (EADDRINUSE). */
  | { readonly type: 'fresh-port' }
  /** kind release: stop it first if `timedOut` (graceMs), read how it ended (then `release-ended`). */
  | { readonly type: 'end-release'; readonly timedOut: boolean; readonly graceMs: number }
  /** Read its last lines of output (then `tail`); `flush`: wait for an exited process's last lines first. */
  | { readonly type: 'capture-tail'; readonly flush: boolean }
  /** Persist it (instance.json). */
  | { readonly type: 'save' }
  /** Report to the control plane soon. */
  | { readonly type: 'report' }
  | { readonly type: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly message: string };

export interface StepResult {
  readonly machine: InstanceMachine;
  readonly effects: readonly InstanceEffect[];
}

/** The machine's view of a spec. */
export function machineConfig(spec: Pick<InstanceSpec, 'kind' | 'port' | 'health' | 'stopTimeoutMs' | 'releaseTimeoutMs'>): MachineConfig {
  return {
    kind: spec.kind ?? 'web',
    fixedPort: spec.port !== undefined,
    healthPath: spec.health.path,
    probeIntervalMs: spec.health.intervalMs,
    stopTimeoutMs: spec.stopTimeoutMs,
    releaseTimeoutMs: spec.releaseTimeoutMs ?? RELEASE_TIMEOUT_MS,
  };
}

/** A new instance (or one being re-adopted, with the restarts it had). */
export function initialMachine(config: MachineConfig, restarts = 0): InstanceMachine {
  return {
    config,
    state: 'pending',
    running: false,
    removing: false,
    orphan: false,
    finished: false,
    restarts,
    consecutiveCrashes: 0,
    probeFailures: 0,
    lastError: undefined,
    logTail: undefined,
    nextStartAt: 0,
    nextProbeAt: 0,
    readySince: undefined,
    startedAt: 0,
    tailAt: 0,
  };
}

/** "exited with code 3", "exited with signal SIGKILL", the runtime's reason, or "process exited" when unknown. */
export function exitWords(exit: ExitObservation | undefined): string {
  if (!exit) return 'process exited';
  return exit.reason ?? `exited with ${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`}`;
}

const same = (m: InstanceMachine): StepResult => ({ machine: m, effects: [] });
const RESTARTABLE: ReadonlySet<InstanceState> = new Set(['pending', 'backoff', 'failed']);

/** One transition: the next machine and what the agent must do, in order. */
export function step(m: InstanceMachine, ev: InstanceEvent, now: number): StepResult {
  // A release phase that ended is kept as it is until it is removed: no start, probe or adoption revives it.
  if (m.finished && ev.type !== 'desired' && ev.type !== 'tick' && ev.type !== 'tail' && ev.type !== 'stopped') return same(m);
  switch (ev.type) {
    case 'desired':
      return desired(m, ev.wanted, ev.stopListed);
    case 'tick':
      return tick(m, now);
    case 'exited':
      return exited(m, ev.exit, now);
    case 'spawning':
      return { machine: { ...m, state: 'starting', startedAt: now }, effects: [] };
    case 'started':
      return {
        machine: { ...m, running: true, state: 'starting', nextProbeAt: now + FIRST_PROBE_MS, probeFailures: 0 },
        effects: [{ type: 'save' }, { type: 'report' }],
      };
    case 'start-failed':
      return startFailed(m, ev.error, now);
    case 'probed':
      return probed(m, ev, now);
    case 'release-ended':
      return releaseEnded(m, ev.exit, ev.timedOut, now);
    case 'tail':
      return { machine: { ...m, logTail: ev.text }, effects: [{ type: 'report' }] };
    case 'adopted':
      return adopted(m, ev.running, ev.releaseEnded === true, now);
    case 'restored':
      return same({ ...m, state: ev.state, lastError: ev.lastError, logTail: ev.logTail, finished: true, running: false });
    case 'stopped':
      return same({ ...m, state: 'stopped', running: false, readySince: undefined });
  }
}

/** Unknown is not unwanted: only an instance named in `stop` (or with no `stop` list at all) is removed. */
function desired(m: InstanceMachine, wanted: boolean, stopListed: boolean): StepResult {
  if (wanted) return same(m.orphan ? { ...m, orphan: false } : m);
  if (m.removing) return same(m);
  if (stopListed) return same({ ...m, removing: true });
  if (m.orphan) return same(m);
  return {
    machine: { ...m, orphan: true },
    effects: [
      { type: 'log', level: 'warn', message: 'the control plane does not know this instance: kept running as an orphan (`pilot orphans`)' },
    ],
  };
}

function tick(m: InstanceMachine, now: number): StepResult {
  if (m.removing) return remove(m);
  if (m.finished || m.state === 'stopped') return same(m);
  if (m.config.kind === 'release') {
    if (m.running && now - m.startedAt > m.config.releaseTimeoutMs)
      return { machine: m, effects: [{ type: 'end-release', timedOut: true, graceMs: RELEASE_STOP_GRACE_MS }] };
    if (!m.running && m.state === 'pending') return { machine: m, effects: [{ type: 'start' }] };
    return same(m);
  }
  if (!m.running && RESTARTABLE.has(m.state) && now >= m.nextStartAt) return { machine: m, effects: [{ type: 'start' }] };
  if (m.running && now >= m.nextProbeAt) return { machine: m, effects: [{ type: 'probe' }] };
  return same(m);
}

function remove(m: InstanceMachine): StepResult {
  const remove: InstanceEffect = { type: 'remove', graceMs: m.config.stopTimeoutMs };
  if (!m.running) return { machine: m, effects: [remove] };
  return { machine: { ...m, state: 'stopping', readySince: undefined }, effects: [{ type: 'report' }, remove] };
}

function exited(m: InstanceMachine, exit: ExitObservation | undefined, now: number): StepResult {
  if (m.removing) return remove(m);
  if (!m.running || m.finished) return same(m);
  if (m.config.kind === 'release') return { machine: m, effects: [{ type: 'end-release', timedOut: false, graceMs: 0 }] };
  const stable = m.readySince !== undefined && now - m.readySince > STABLE_MS;
  const consecutiveCrashes = (stable ? 0 : m.consecutiveCrashes) + 1;
  const machine: InstanceMachine = {
    ...m,
    running: false,
    state: 'backoff',
    readySince: undefined,
    lastError: exitWords(exit),
    consecutiveCrashes,
    restarts: m.restarts + 1,
    nextStartAt: now + restartDelayMs(consecutiveCrashes),
    tailAt: now,
  };
  return {
    machine,
    effects: [
      ...(m.config.fixedPort ? [] : [{ type: 'fresh-port' } as const]),
      { type: 'kill-leftovers' },
      { type: 'save' },
      { type: 'log', level: 'warn', message: 'instance crashed; restarting after back-off' },
      { type: 'capture-tail', flush: true },
    ],
  };
}

function startFailed(m: InstanceMachine, error: string, now: number): StepResult {
  const release = m.config.kind === 'release';
  const consecutiveCrashes = m.consecutiveCrashes + 1;
  const machine: InstanceMachine = {
    ...m,
    running: false,
    state: 'failed',
    consecutiveCrashes,
    nextStartAt: now + restartDelayMs(consecutiveCrashes),
    lastError: release ? `release phase could not start: ${error}` : error,
    finished: m.finished || release,
  };
  return {
    machine,
    effects: [
      ...(release ? [{ type: 'save' } as const] : []),
      { type: 'log', level: 'error', message: 'instance could not start' },
      { type: 'report' },
    ],
  };
}

function probed(m: InstanceMachine, ev: Extract<InstanceEvent, { type: 'probed' }>, now: number): StepResult {
  // An answer for a process that is gone or going tells nothing.
  if (!m.running || m.removing || m.finished) return same(m);
  const wasReady = m.state === 'ready';
  const effects: InstanceEffect[] = [];
  let next: InstanceMachine;
  if (ev.ok) {
    next = wasReady
      ? { ...m, probeFailures: 0 }
      : { ...m, probeFailures: 0, state: 'ready', readySince: now, lastError: undefined, logTail: undefined };
    if (!wasReady) effects.push({ type: 'report' });
  } else {
    const probeFailures = m.probeFailures + 1;
    const lastError = `health check GET ${m.config.healthPath} failed: ${ev.error ?? 'no answer'}${ev.note ? ` (${ev.note})` : ''}`;
    next = { ...m, probeFailures, lastError };
    // A refused connection is definite (nothing listens): out of the routing table at once. Timeouts
    // and 5xx may be a slow moment: they need UNHEALTHY_AFTER in a row.
    if (wasReady && (ev.refused === true || probeFailures >= UNHEALTHY_AFTER)) {
      next = { ...next, state: 'unhealthy', readySince: undefined };
      effects.push({ type: 'report' });
    }
    // What the app says while it fails its probe goes with the report, at most every TAIL_EVERY_MS,
    // and not in the first TAIL_EVERY_MS of a start: a booting app failing its first probes is normal.
    if (next.state !== 'ready' && now - m.startedAt > TAIL_EVERY_MS && now - m.tailAt > TAIL_EVERY_MS) {
      next = { ...next, tailAt: now };
      effects.push({ type: 'capture-tail', flush: false });
    }
  }
  next = {
    ...next,
    nextProbeAt: now + (next.state === 'ready' ? m.config.probeIntervalMs : Math.min(STARTING_PROBE_MS, m.config.probeIntervalMs)),
  };
  return { machine: next, effects };
}

function releaseEnded(m: InstanceMachine, exit: ExitObservation | undefined, timedOut: boolean, now: number): StepResult {
  if (m.config.kind !== 'release') return same(m);
  const secs = Math.round((now - m.startedAt) / 1000);
  const ok = !timedOut && exit?.code === 0;
  const how = exit
    ? exit.signal
      ? `killed by signal ${exit.signal}`
      : `exited with code ${exit.code}`
    : 'exited (status unknown: the agent restarted meanwhile)';
  const lastError = ok
    ? undefined
    : timedOut
      ? `release phase timed out after ${Math.round(m.config.releaseTimeoutMs / 1000)}s (deploy.release_timeout)`
      : `release phase ${how} after ${secs}s`;
  return {
    machine: { ...m, running: false, finished: true, state: ok ? 'stopped' : 'failed', lastError, tailAt: now },
    effects: [
      { type: 'capture-tail', flush: true },
      { type: 'save' },
      { type: 'log', level: 'info', message: 'release phase ended' },
      { type: 'report' },
    ],
  };
}

function adopted(m: InstanceMachine, running: boolean, ended: boolean, now: number): StepResult {
  if (m.config.kind === 'release') {
    // Running: watched to its end. Ended while the agent was away: its recorded exit says how.
    // Never started: started by the next tick. Never probed either way.
    const machine = { ...m, startedAt: now, running, state: running ? ('starting' as const) : m.state };
    return { machine, effects: !running && ended ? [{ type: 'end-release', timedOut: false, graceMs: 0 }] : [] };
  }
  // Running: probe now, so that the first report already says "ready" (the router keeps routing to it).
  if (running) return { machine: { ...m, running: true, state: 'starting', startedAt: now }, effects: [{ type: 'probe' }] };
  return same({ ...m, running: false, state: 'backoff' });
}

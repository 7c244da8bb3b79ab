/**
 * One instance as the agent sees it: the spec from the control plane plus local facts (handle,
 * port, restarts, probe results). Persisted as instance.json in its state folder so that an agent
 * restart can re-adopt it (the runtime's pid file says whether the process is still the same).
 */
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceSpec, InstanceState, InstanceStatus } from '../core/types.js';
import type { InstanceHandle } from './runtimes/runtime.js';

export interface LocalInstance {
  spec: InstanceSpec;
  stateDir: string;
  state: InstanceState;
  port: number | undefined;
  handle: InstanceHandle | undefined;
  restarts: number;
  /** Crashes since it was last stable; drives the back-off. */
  consecutiveCrashes: number;
  lastError: string | undefined;
  /** Monotonic ms before which it must not be (re)started. */
  nextStartAt: number;
  /** Monotonic ms of the next probe. */
  nextProbeAt: number;
  probeFailures: number;
  readySince: number | undefined;
  /** An async step (fetch, start, stop, probe) is running: the loop leaves it alone meanwhile. */
  busy: boolean;
  /** Not desired any more: being stopped, then forgotten. */
  removing: boolean;
  /** The last lines of its output, captured when it failed (crash, start, probe); cleared once ready. */
  logTail: string | undefined;
  /** Monotonic ms of the last capture (a failing probe captures at most every TAIL_EVERY_MS). */
  tailAt: number;
  /** Fixed port with its own network namespace: where it listens (netns.ts). */
  address: string | undefined;
  /** kind release: the phase ended (state `stopped` = exit 0, `failed` otherwise); never started again. */
  finished: boolean;
  /** kind release: monotonic ms it was started, for its timeout. */
  startedMono: number;
  /** Unknown to the control plane (its state was lost?): kept running, reported, stopped only when told by id. */
  orphan?: boolean;
}

export function newLocalInstance(spec: InstanceSpec, stateDir: string): LocalInstance {
  return {
    spec, stateDir, state: 'pending', port: spec.port, handle: undefined, restarts: 0, consecutiveCrashes: 0,
    lastError: undefined, nextStartAt: 0, nextProbeAt: 0, probeFailures: 0, readySince: undefined, busy: false, removing: false,
    logTail: undefined, tailAt: 0, address: undefined, finished: false, startedMono: 0,
  };
}

export function statusOf(i: LocalInstance): InstanceStatus {
  return {
    id: i.spec.id,
    app: i.spec.app,
    revision: i.spec.revision,
    state: i.state,
    port: i.port,
    pid: i.handle?.pid || undefined, // a container that already exited has pid 0
    restarts: i.restarts,
    lastError: i.lastError?.slice(0, 4000),
    startedAt: i.handle?.startedAt,
    containerId: i.handle?.containerId,
    logTail: i.logTail?.slice(-8000), // the protocol's bound; the end is what matters
    address: i.address,
  };
}

interface Persisted {
  spec: InstanceSpec;
  port: number | undefined;
  restarts: number;
  /** kind release, once it ended: so an agent restart never runs the phase again. */
  finished?: { state: 'stopped' | 'failed'; lastError: string | undefined; logTail: string | undefined } | undefined;
}

export function saveInstance(i: LocalInstance): void {
  mkdirSync(i.stateDir, { recursive: true, mode: 0o700 });
  const file = join(i.stateDir, 'instance.json');
  const body: Persisted = {
    spec: i.spec, port: i.port, restarts: i.restarts,
    ...(i.finished ? { finished: { state: i.state === 'stopped' ? 'stopped' : 'failed', lastError: i.lastError, logTail: i.logTail } } : {}),
  };
  // 0600: the spec holds the app's env (secrets) and registry credentials.
  writeFileSync(file + '.tmp', JSON.stringify(body), { mode: 0o600 });
  renameSync(file + '.tmp', file);
}

export function loadInstance(stateDir: string): Persisted | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, 'instance.json'), 'utf8')) as Persisted;
  } catch {
    return undefined;
  }
}

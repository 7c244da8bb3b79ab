/**
 * One instance as the agent sees it: the spec from the control plane plus local facts (handle,
 * port, restarts, probe results). Persisted as instance.json in its state folder so that an agent
 * restart can re-adopt it (the runtime's pid file says whether the process is still the same).
 */
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { initialMachine, machineConfig, type InstanceMachine } from '../core/instance-machine.js';
import type { InstanceSpec, InstanceStatus } from '../core/types.js';
import type { InstanceHandle } from './runtimes/runtime.js';

export interface LocalInstance {
  spec: InstanceSpec;
  stateDir: string;
  /** Its life cycle (state, restarts, back-off, probes, lastError, logTail): core/instance-machine.ts decides, the agent performs. */
  machine: InstanceMachine;
  port: number | undefined;
  /** The process or container; set while `machine.running`. */
  handle: InstanceHandle | undefined;
  /** An async step (fetch, start, stop, probe) is running: the loop leaves it alone meanwhile. */
  busy: boolean;
  /** Fixed port with its own network namespace: where it listens (netns.ts). */
  address: string | undefined;
}

export function newLocalInstance(spec: InstanceSpec, stateDir: string, restarts = 0): LocalInstance {
  return {
    spec,
    stateDir,
    machine: initialMachine(machineConfig(spec), restarts),
    port: spec.port,
    handle: undefined,
    busy: false,
    address: undefined,
  };
}

export function statusOf(i: LocalInstance): InstanceStatus {
  const m = i.machine;
  return {
    id: i.spec.id,
    app: i.spec.app,
    revision: i.spec.revision,
    state: m.state,
    port: i.port,
    pid: i.handle?.pid || undefined, // a container that already exited has pid 0
    restarts: m.restarts,
    lastError: m.lastError?.slice(0, 4000),
    startedAt: i.handle?.startedAt,
    containerId: i.handle?.containerId,
    logTail: m.logTail?.slice(-8000), // the protocol's bound; the end is what matters
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
    spec: i.spec,
    port: i.port,
    restarts: i.machine.restarts,
    ...(i.machine.finished
      ? {
          finished: {
            state: i.machine.state === 'stopped' ? 'stopped' : 'failed',
            lastError: i.machine.lastError,
            logTail: i.machine.logTail,
          },
        }
      : {}),
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

/**
 * Swarm tasks → Pilot instance statuses. Pure. A slot of a service is one Pilot instance; the
 * slot's tasks are its history: Swarm replaces a task whose container died (or whose node was
 * lost) with a new task in the same slot, which listens on the same port (the block's prefix and
 * the slot), on its node's address. The instance is ready while the slot's newest task runs
 * (running = healthy: Swarm holds a task in `starting` until its health check passes).
 */
import type { InstanceState, InstanceStatus } from '../core/types.js';
import { slotPort } from '../core/target.js';

/** The part of a Swarm task (GET /tasks) read here. */
export interface TaskFacts {
  readonly id: string;
  readonly serviceId: string;
  readonly slot: number;
  readonly nodeId: string;
  readonly state: string;
  readonly desiredState: string;
  readonly error: string | undefined;
  readonly exitCode: number | undefined;
  readonly containerId: string | undefined;
  /** Version index of the task (newer tasks of a slot have higher ones). */
  readonly version: number;
  readonly updatedAt: number;
  readonly createdAt: number;
}

const PENDING = new Set(['new', 'allocated', 'pending', 'assigned', 'accepted', 'preparing', 'ready']);
const ENDED = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned', 'remove']);

/** The state of an instance from its slot's newest task. */
export function instanceState(task: TaskFacts | undefined): InstanceState {
  if (!task) return 'pending';
  if (task.state === 'running') return 'ready';
  if (task.state === 'starting') return 'starting';
  if (PENDING.has(task.state)) return 'pending';
  // Ended while still desired to run: Swarm is about to start its replacement.
  return 'backoff';
}

/** The slot's tasks, newest first. */
export function slotHistory(tasks: readonly TaskFacts[], serviceId: string, slot: number): TaskFacts[] {
  return tasks
    .filter((t) => t.serviceId === serviceId && t.slot === slot)
    .sort((a, b) => b.createdAt - a.createdAt || b.version - a.version);
}

function describe(t: TaskFacts): string {
  const why = [t.error, t.exitCode !== undefined && t.exitCode !== 0 ? `exit ${t.exitCode}` : undefined].filter(Boolean).join(', ');
  return `task ${t.id.slice(0, 12)} ${t.state}${why ? ` (${why})` : ''}`;
}

/**
 * One instance's status: its slot's newest task, the tasks Swarm replaced (restarts), and, when a
 * task was replaced, what became of the old one and of its replacement (`lastError`).
 */
export function instanceStatus(input: {
  readonly instanceId: string;
  readonly app: string;
  readonly revision: number;
  readonly serviceId: string;
  readonly slot: number;
  readonly block: number;
  readonly tasks: readonly TaskFacts[];
  /** Swarm node id → its address (the router reaches a task there). */
  readonly nodeAddress: ReadonlyMap<string, string>;
}): InstanceStatus {
  const history = slotHistory(input.tasks, input.serviceId, input.slot);
  const current = history[0];
  const replaced = history.slice(1).filter((t) => ENDED.has(t.state) || t.desiredState === 'shutdown');
  const previous = replaced[0];
  const address = current ? input.nodeAddress.get(current.nodeId) : undefined;
  return {
    id: input.instanceId,
    app: input.app,
    revision: input.revision,
    state: instanceState(current),
    port: slotPort(input.block, input.slot),
    pid: undefined,
    restarts: replaced.length,
    lastError:
      previous && current
        ? `${describe(previous)}; Swarm replaced it with ${describe(current)}`
        : current && ENDED.has(current.state)
          ? describe(current)
          : undefined,
    startedAt: current?.state === 'running' ? current.updatedAt : undefined,
    ...(current?.containerId && /^[a-f0-9]{12,64}$/.test(current.containerId) ? { containerId: current.containerId } : {}),
    ...(address !== undefined && /^[0-9.]+$/.test(address) ? { address } : {}),
  };
}

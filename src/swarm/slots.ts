/**
 * Which slot of its revision's service each instance uses. Pure.
 *
 * Swarm decides which task a scale-down removes, not Pilot: lowering `Replicas` could stop a task
 * the router still sends traffic to. So a service never shrinks while it runs: an instance the
 * control plane stops frees its slot (its task keeps running, out of the routing table), a new
 * instance of the same revision takes the lowest free slot (its task is already up), and the whole
 * service is removed once none of its slots serves an instance. Replicas = the highest slot used.
 */
import { MAX_SLOT } from '../core/target.js';

export interface SlotPlan {
  /** slot → instance id, after the change. */
  readonly slots: ReadonlyMap<number, string>;
  readonly replicas: number;
}

/**
 * Keep the slots of instances still wanted, free those of `stopped`, give each new instance the
 * lowest free slot. `replicas` never goes below what runs (`current`).
 */
export function assignSlots(
  current: ReadonlyMap<number, string>,
  currentReplicas: number,
  wanted: readonly string[],
  stopped: ReadonlySet<string>,
): SlotPlan {
  const slots = new Map<number, string>();
  for (const [slot, id] of current) if (!stopped.has(id)) slots.set(slot, id);
  const placed = new Set(slots.values());
  for (const id of wanted) {
    if (placed.has(id)) continue;
    let slot = 1;
    while (slots.has(slot)) slot++;
    if (slot > MAX_SLOT) break;
    slots.set(slot, id);
    placed.add(id);
  }
  const highest = Math.max(0, ...slots.keys());
  return { slots, replicas: Math.max(currentReplicas, highest) };
}

/**
 * Instances agents run that the store has no record of (a lost or restored database, another
 * control plane's): kept running, listed by `pilot orphans`, stopped only when asked. Memory only:
 * every agent reports them again with its next sync after a restart of the control plane.
 */

/** An instance an agent runs that the control plane has no record of (kept running; see agent.converge). */
export interface OrphanInstance {
  readonly id: string;
  readonly nodeId: string;
  readonly node: string;
  readonly app: string | undefined;
  readonly revision: number | undefined;
  readonly state: string;
  readonly port: number | undefined;
  readonly pid: number | undefined;
  /** Wall clock ms when this control plane first heard of it. */
  readonly since: number;
  /** `pilot orphans stop ID` was asked: the node is told to stop it. */
  readonly stopping: boolean;
}

export type ReportedOrphan = Omit<OrphanInstance, 'nodeId' | 'node' | 'since' | 'stopping'>;

export class OrphanRegistry {
  /** Orphans by node, as last reported. */
  private readonly byNode = new Map<string, Map<string, OrphanInstance>>();

  /** `onStop`: an orphan is to be stopped (wake its agent). */
  constructor(private readonly onStop: () => void) {}

  /** Record what a node reported about instances the store does not know; returns the ids that are new. */
  report(nodeId: string, node: string, reported: readonly ReportedOrphan[]): string[] {
    const before = this.byNode.get(nodeId) ?? new Map<string, OrphanInstance>();
    const next = new Map<string, OrphanInstance>();
    const fresh: string[] = [];
    for (const r of reported) {
      const old = before.get(r.id);
      if (!old) fresh.push(r.id);
      next.set(r.id, { ...r, nodeId, node, since: old?.since ?? Date.now(), stopping: old?.stopping ?? false });
    }
    if (next.size > 0) this.byNode.set(nodeId, next);
    else this.byNode.delete(nodeId);
    return fresh;
  }

  all(): OrphanInstance[] {
    return [...this.byNode.values()].flatMap((m) => [...m.values()]);
  }

  has(nodeId: string, id: string): boolean {
    return this.byNode.get(nodeId)?.has(id) ?? false;
  }

  /** Tell the orphan's node to stop it (with its next sync); undefined if no node reports it. */
  stop(id: string): OrphanInstance | undefined {
    for (const m of this.byNode.values()) {
      const o = m.get(id);
      if (o) {
        const s = { ...o, stopping: true };
        m.set(id, s);
        this.onStop();
        return s;
      }
    }
    return undefined;
  }

  /** Orphans of this node that it must stop. */
  toStop(nodeId: string): string[] {
    return [...(this.byNode.get(nodeId)?.values() ?? [])].filter((o) => o.stopping).map((o) => o.id);
  }
}

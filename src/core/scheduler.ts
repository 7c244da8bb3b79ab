/**
 * Placement of new instances on nodes. Pure: a snapshot in, node ids out. Spreads an app's
 * replicas across ready nodes (fewest instances of this app first, then fewest overall, then by
 * name for a stable answer) and never puts two instances with the same fixed port on one node.
 */
export interface SchedulerNode {
  readonly id: string;
  readonly name: string;
  readonly schedulable: boolean;
  /** Instances currently assigned to the node (any app), with their fixed port if any. */
  readonly instances: readonly { readonly app: string; readonly fixedPort: number | undefined }[];
}

export interface PlacementRequest {
  readonly app: string;
  readonly count: number;
  readonly fixedPort: number | undefined;
}

export type Placement = { readonly nodeIds: readonly string[]; readonly unplaced: number; readonly reason: string | undefined };

/** Choose a node for each of `count` new instances. */
export function schedule(nodes: readonly SchedulerNode[], req: PlacementRequest): Placement {
  const load = new Map(nodes.map((n) => [n.id, {
    app: n.instances.filter((i) => i.app === req.app).length,
    total: n.instances.length,
    ports: new Set(n.instances.map((i) => i.fixedPort).filter((p): p is number => p !== undefined)),
  }]));
  const candidates = nodes.filter((n) => n.schedulable);
  const nodeIds: string[] = [];
  for (let k = 0; k < req.count; k++) {
    const fit = candidates.filter((n) => req.fixedPort === undefined || !load.get(n.id)!.ports.has(req.fixedPort));
    if (fit.length === 0) break;
    fit.sort((a, b) => {
      const la = load.get(a.id)!;
      const lb = load.get(b.id)!;
      return la.app - lb.app || la.total - lb.total || a.name.localeCompare(b.name);
    });
    const chosen = fit[0]!;
    const l = load.get(chosen.id)!;
    l.app++;
    l.total++;
    if (req.fixedPort !== undefined) l.ports.add(req.fixedPort);
    nodeIds.push(chosen.id);
  }
  const unplaced = req.count - nodeIds.length;
  let reason: string | undefined;
  if (unplaced > 0) {
    reason = candidates.length === 0
      ? 'no ready node to place instances on'
      : `every ready node already runs an instance on fixed port ${req.fixedPort}`;
  }
  return { nodeIds, unplaced, reason };
}

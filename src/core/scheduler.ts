/**
 * Placement of new instances on nodes. Pure: a snapshot in, node ids out. Spreads an app's
 * replicas across ready nodes (fewest instances of this app first, then fewest overall, then by
 * name for a stable answer), never puts two instances with the same fixed port on one node, and
 * never exceeds a node's CPU or memory (when the node reported them and the app requested them).
 */
export interface SchedulerInstance {
  readonly app: string;
  readonly fixedPort: number | undefined;
  readonly cpu?: number | undefined;
  readonly memoryMb?: number | undefined;
  readonly artifact?: string | undefined;
}

/** What a node already carries, summed; a snapshot may give it instead of the instance list (large fleets). */
export interface NodeUsage {
  readonly cpu: number;
  readonly memoryMb: number;
  readonly count: number;
  readonly perApp: ReadonlyMap<string, number>;
  readonly fixedPorts: ReadonlySet<number>;
}

export interface SchedulerNode {
  readonly id: string;
  readonly name: string;
  readonly schedulable: boolean;
  /** Precomputed usage; when given, `instances` is not read. */
  readonly usage?: NodeUsage;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  /** Artifacts already unpacked there: placing there skips a download. */
  readonly artifacts?: ReadonlySet<string> | undefined;
  /** Optional runtimes that answer there (`docker`); `process` is always available. */
  readonly runtimes?: ReadonlySet<string> | undefined;
  /** Capacity; undefined = unknown, not limited. */
  readonly cpus?: number | undefined;
  readonly memoryMb?: number | undefined;
  /** Instances currently assigned to the node (any app). */
  readonly instances: readonly SchedulerInstance[];
}

export interface PlacementRequest {
  readonly app: string;
  readonly count: number;
  readonly fixedPort: number | undefined;
  readonly cpu?: number | undefined;
  readonly memoryMb?: number | undefined;
  /** Labels a node must have. */
  readonly constraints?: Readonly<Record<string, string>> | undefined;
  /** Prefer nodes that already have it (after spread, before load). */
  readonly artifact?: string | undefined;
  /** A runtime other than `process` the node must offer. */
  readonly runtime?: 'process' | 'docker' | undefined;
}

export type Placement = { readonly nodeIds: readonly string[]; readonly unplaced: number; readonly reason: string | undefined };

/** Choose a node for each of `count` new instances. */
export function schedule(nodes: readonly SchedulerNode[], req: PlacementRequest): Placement {
  const load = new Map(nodes.map((n) => {
    if (n.usage) {
      const u = n.usage;
      // The ports set is copied only if this request adds to it (copy-on-write keeps big snapshots cheap).
      return [n.id, { app: u.perApp.get(req.app) ?? 0, total: u.count, ports: u.fixedPorts as Set<number>, cpu: u.cpu, mem: u.memoryMb, shared: true }];
    }
    let cpu = 0;
    let mem = 0;
    let app = 0;
    const ports = new Set<number>();
    for (const i of n.instances) {
      cpu += i.cpu ?? 0;
      mem += i.memoryMb ?? 0;
      if (i.app === req.app) app++;
      if (i.fixedPort !== undefined) ports.add(i.fixedPort);
    }
    return [n.id, { app, total: n.instances.length, ports, cpu, mem, shared: false }];
  }));
  const constraints = Object.entries(req.constraints ?? {});
  const needs = req.runtime !== undefined && req.runtime !== 'process' ? req.runtime : undefined;
  const candidates = nodes.filter((n) => n.schedulable && constraints.every(([k, v]) => n.labels?.[k] === v) && (needs === undefined || (n.runtimes?.has(needs) ?? false)));
  const cached = (n: SchedulerNode): number => (req.artifact !== undefined && (n.artifacts?.has(req.artifact) ?? false) ? 0 : 1);
  const roomFor = (n: SchedulerNode): boolean => {
    const l = load.get(n.id)!;
    if (req.fixedPort !== undefined && l.ports.has(req.fixedPort)) return false;
    if (req.cpu !== undefined && n.cpus !== undefined && l.cpu + req.cpu > n.cpus + 1e-9) return false;
    if (req.memoryMb !== undefined && n.memoryMb !== undefined && l.mem + req.memoryMb > n.memoryMb) return false;
    return true;
  };
  // A binary heap ordered by (instances of this app, instances overall, name): each placement is
  // O(log nodes). A node that cannot take one more now never can within this request (its load
  // only grows), so it is dropped rather than pushed back.
  const less = (a: SchedulerNode, b: SchedulerNode): boolean => {
    const la = load.get(a.id)!;
    const lb = load.get(b.id)!;
    if (la.app !== lb.app) return la.app < lb.app;
    const ca = cached(a);
    const cb = cached(b);
    return ca !== cb ? ca < cb : la.total !== lb.total ? la.total < lb.total : a.name < b.name;
  };
  const heap = new MinHeap<SchedulerNode>(less, candidates);
  const nodeIds: string[] = [];
  while (nodeIds.length < req.count && heap.size > 0) {
    const chosen = heap.pop()!;
    if (!roomFor(chosen)) continue;
    const l = load.get(chosen.id)!;
    l.app++;
    l.total++;
    l.cpu += req.cpu ?? 0;
    l.mem += req.memoryMb ?? 0;
    if (req.fixedPort !== undefined) {
      if (l.shared) {
        l.ports = new Set(l.ports);
        l.shared = false;
      }
      l.ports.add(req.fixedPort);
    }
    nodeIds.push(chosen.id);
    heap.push(chosen);
  }
  const unplaced = req.count - nodeIds.length;
  let reason: string | undefined;
  if (unplaced > 0) reason = whyNot(candidates, load, req, nodeIds.length);
  return { nodeIds, unplaced, reason };
}

function whyNot(candidates: readonly SchedulerNode[], load: Map<string, { cpu: number; mem: number; ports: Set<number> }>, req: PlacementRequest, placed: number): string {
  const wanted = Object.entries(req.constraints ?? {});
  if (candidates.length === 0 && req.runtime === 'docker') {
    return `no ready node${wanted.length > 0 ? ` with the labels ${wanted.map(([k, v]) => `${k}=${v}`).join(', ')}` : ''} has a running Docker engine (start dockerd on a node, or check \`pilot nodes\` for the engine's error)`;
  }
  if (candidates.length === 0 && wanted.length > 0) return `no ready node has the labels ${wanted.map(([k, v]) => `${k}=${v}`).join(', ')}`;
  if (candidates.length === 0) return 'no ready node to place instances on';
  const prefix = `${placed} of ${req.count} instances placed: `;
  const need = [req.cpu !== undefined ? `${req.cpu} CPU` : '', req.memoryMb !== undefined ? `${req.memoryMb} MB` : ''].filter(Boolean).join(' and ');
  if (need) {
    const biggest = [...candidates].sort((a, b) => (b.cpus ?? Infinity) - (a.cpus ?? Infinity) || (b.memoryMb ?? Infinity) - (a.memoryMb ?? Infinity))[0]!;
    const l = load.get(biggest.id)!;
    const free = `${biggest.cpus === undefined ? 'any' : Math.max(0, biggest.cpus - l.cpu).toFixed(2)} CPU, ${biggest.memoryMb === undefined ? 'any' : Math.max(0, biggest.memoryMb - l.mem)} MB`;
    const tooBig = candidates.every((n) => (req.cpu !== undefined && n.cpus !== undefined && req.cpu > n.cpus) || (req.memoryMb !== undefined && n.memoryMb !== undefined && req.memoryMb > n.memoryMb));
    if (tooBig) return `${prefix}each instance needs ${need}, more than any node has (largest: ${biggest.name} with ${biggest.cpus ?? '?'} CPU, ${biggest.memoryMb ?? '?'} MB)`;
    if (req.fixedPort === undefined) return `${prefix}no node has ${need} free (most free: ${biggest.name} with ${free})`;
  }
  return `${prefix}every ready node already runs an instance on fixed port ${req.fixedPort}`;
}

/** A plain binary min-heap. */
class MinHeap<T> {
  private readonly items: T[];

  constructor(private readonly less: (a: T, b: T) => boolean, initial: readonly T[]) {
    this.items = [...initial];
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i); // heapify: O(n)
  }

  get size(): number {
    return this.items.length;
  }

  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      this.down(0);
    }
    return top;
  }

  private down(start: number): void {
    const a = this.items;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
      if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
      if (m === i) return;
      [a[i], a[m]] = [a[m]!, a[i]!];
      i = m;
    }
  }
}

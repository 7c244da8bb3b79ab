/**
 * Placement of new instances on nodes. Pure: a snapshot in, node ids out. Spreads an app's
 * replicas across ready nodes (fewest instances of this app first, then fewest overall, then by
 * name for a stable answer), never puts two instances with the same fixed port on one node, and
 * never exceeds a node's CPU or memory (when the node reported them and the app requested them).
 * An app with volumes has all its instances on one node: the one that holds its volumes, or, at
 * the first placement, the node chosen for its first instance.
 */
/**
 * The label of a deploy target's node (a Swarm bridge registers one node per target): only apps
 * whose pilot.yaml names the target (`target: NAME`, resolved as this constraint) are placed there.
 */
export const TARGET_LABEL = 'pilot.target';

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
  /**
   * The app has volumes (pilot.yaml `volumes`): every instance goes on one node. `node` set = the node
   * that holds them (only that node is eligible); unset = first placement, the first node chosen
   * takes all the instances.
   */
  readonly volumes?:
    { readonly names: readonly string[]; readonly node?: { readonly id: string; readonly name: string } | undefined } | undefined;
}

export type Placement = { readonly nodeIds: readonly string[]; readonly unplaced: number; readonly reason: string | undefined };

interface Load {
  app: number;
  total: number;
  ports: Set<number>;
  cpu: number;
  mem: number;
  shared: boolean;
}

function loadOf(n: SchedulerNode, app: string): Load {
  if (n.usage) {
    const u = n.usage;
    // The ports set is copied only if this request adds to it (copy-on-write keeps big snapshots cheap).
    return { app: u.perApp.get(app) ?? 0, total: u.count, ports: u.fixedPorts as Set<number>, cpu: u.cpu, mem: u.memoryMb, shared: true };
  }
  let cpu = 0;
  let mem = 0;
  let mine = 0;
  const ports = new Set<number>();
  for (const i of n.instances) {
    cpu += i.cpu ?? 0;
    mem += i.memoryMb ?? 0;
    if (i.app === app) mine++;
    if (i.fixedPort !== undefined) ports.add(i.fixedPort);
  }
  return { app: mine, total: n.instances.length, ports, cpu, mem, shared: false };
}

/**
 * Choose a node for each of `count` new instances.
 *
 * The placement is a heap of candidate nodes ordered by (instances of this app, artifact not
 * cached, instances overall, name), popping the best node for each instance. For a large fleet
 * and a small request, only the best few nodes can ever be popped: a node of initial rank r cannot
 * be popped before pop r, because every better node not yet popped still has its initial key. So
 * the heap is first run over the `k` best nodes only (one pass to select them, no per-node
 * allocation), and the answer is exactly the full one whenever it took at most `k` pops. Otherwise,
 * or when something could not be placed (the reason needs every node), the full pass runs.
 * `exhaustive` skips the shortcut (tests compare the two).
 */
export function schedule(nodes: readonly SchedulerNode[], req: PlacementRequest, opts: { readonly exhaustive?: boolean } = {}): Placement {
  const vol = req.volumes;
  if (vol !== undefined && vol.node === undefined && req.count > 0) {
    // First placement of an app with volumes: choose one node as for a single instance, then put the rest there too.
    const first = schedule(nodes, { ...req, count: 1, volumes: undefined }, opts);
    const nodeId = first.nodeIds[0];
    const chosen = nodes.find((n) => n.id === nodeId);
    if (!chosen) return { nodeIds: [], unplaced: req.count, reason: first.reason };
    return schedule(nodes, { ...req, volumes: { names: vol.names, node: { id: chosen.id, name: chosen.name } } }, opts);
  }
  const pin = vol?.node;
  const constraints = Object.entries(req.constraints ?? {});
  const needs = req.runtime !== undefined && req.runtime !== 'process' ? req.runtime : undefined;
  const eligible = (n: SchedulerNode): boolean =>
    (pin === undefined || n.id === pin.id) &&
    n.schedulable &&
    constraints.every(([k, v]) => n.labels?.[k] === v) &&
    // A deploy target's node (Swarm) takes only the apps that name it (pilot.yaml `target`).
    (n.labels?.[TARGET_LABEL] === undefined || req.constraints?.[TARGET_LABEL] === n.labels[TARGET_LABEL]) &&
    (needs === undefined || (n.runtimes?.has(needs) ?? false));
  const k = req.count * 2 + 8;
  if (nodes.length > 4 * k && opts.exhaustive !== true && pin === undefined) {
    const fast = place(bestNodes(nodes, req, eligible, k), req, k);
    if (fast && fast.unplaced === 0) return fast;
  }
  const candidates = nodes.filter(eligible);
  const load = new Map(candidates.map((n) => [n.id, loadOf(n, req.app)]));
  const full = place(
    candidates.map((n) => ({ node: n, load: load.get(n.id)! })),
    req,
    Infinity,
  )!;
  if (full.unplaced === 0) return full;
  const why = whyNot(candidates, load, req, full.nodeIds.length);
  return {
    ...full,
    reason:
      pin === undefined
        ? why
        : whyNotOnVolumeNode(
            nodes.find((n) => n.id === pin.id),
            pin.name,
            vol!.names,
            req,
            candidates.length > 0 ? why : undefined,
          ),
  };
}

/** Why the instances of an app with volumes cannot go on the node that holds them. */
function whyNotOnVolumeNode(
  node: SchedulerNode | undefined,
  name: string,
  volumes: readonly string[],
  req: PlacementRequest,
  room: string | undefined,
): string {
  const held = `volume${volumes.length === 1 ? '' : 's'} ${volumes.join(', ')} of ${req.app} ${volumes.length === 1 ? 'is' : 'are'} on node ${name}`;
  const wait = `the instances wait for it (\`pilot volumes forget ${req.app}\` lets them start with empty volumes elsewhere)`;
  if (node === undefined) return `${held}, which is no longer registered: ${wait}`;
  if (!node.schedulable) return `${held}, which is not ready (down, draining or cordoned): ${wait}`;
  if (room !== undefined) return `${held}: ${room}`;
  const missing = Object.entries(req.constraints ?? {}).filter(([k, v]) => node.labels?.[k] !== v);
  if (missing.length > 0) return `${held}, which lacks the labels ${missing.map(([k, v]) => `${k}=${v}`).join(', ')}: ${wait}`;
  return `${held}, which has no running Docker engine: ${wait}`;
}

interface Entry {
  readonly node: SchedulerNode;
  readonly load: Load;
}

const cachedRank = (n: SchedulerNode, req: PlacementRequest): number =>
  req.artifact !== undefined && (n.artifacts?.has(req.artifact) ?? false) ? 0 : 1;

/** The k best eligible nodes by the placement order, each with its load; one pass, a bounded heap. */
function bestNodes(nodes: readonly SchedulerNode[], req: PlacementRequest, eligible: (n: SchedulerNode) => boolean, k: number): Entry[] {
  interface Key {
    node: SchedulerNode;
    app: number;
    cached: number;
    total: number;
  }
  // A max-heap of the best k so far: its top is the worst of them, replaced by anything better.
  const worse = (a: Key, b: Key): boolean =>
    a.app !== b.app
      ? a.app > b.app
      : a.cached !== b.cached
        ? a.cached > b.cached
        : a.total !== b.total
          ? a.total > b.total
          : a.node.name > b.node.name;
  const heap = new MinHeap<Key>(worse, []);
  for (const n of nodes) {
    if (!eligible(n)) continue;
    let app: number;
    let total: number;
    if (n.usage) {
      app = n.usage.perApp.get(req.app) ?? 0;
      total = n.usage.count;
    } else {
      app = 0;
      for (const i of n.instances) if (i.app === req.app) app++;
      total = n.instances.length;
    }
    const key = { node: n, app, cached: cachedRank(n, req), total };
    if (heap.size < k) heap.push(key);
    else if (worse(heap.peek()!, key)) heap.replaceTop(key);
  }
  const out: Entry[] = [];
  for (let e = heap.pop(); e; e = heap.pop()) out.push({ node: e.node, load: loadOf(e.node, req.app) });
  return out;
}

/** Run the placement heap over `entries`; undefined when it needed more than maxPops pops. */
function place(entries: readonly Entry[], req: PlacementRequest, maxPops: number): Placement | undefined {
  const roomFor = (e: Entry): boolean => {
    const n = e.node;
    const l = e.load;
    if (req.fixedPort !== undefined && l.ports.has(req.fixedPort)) return false;
    if (req.cpu !== undefined && n.cpus !== undefined && l.cpu + req.cpu > n.cpus + 1e-9) return false;
    if (req.memoryMb !== undefined && n.memoryMb !== undefined && l.mem + req.memoryMb > n.memoryMb) return false;
    return true;
  };
  // Each placement is O(log nodes). A node that cannot take one more now never can within this
  // request (its load only grows), so it is dropped rather than pushed back.
  const less = (a: Entry, b: Entry): boolean => {
    const la = a.load;
    const lb = b.load;
    if (la.app !== lb.app) return la.app < lb.app;
    const ca = cachedRank(a.node, req);
    const cb = cachedRank(b.node, req);
    return ca !== cb ? ca < cb : la.total !== lb.total ? la.total < lb.total : a.node.name < b.node.name;
  };
  const heap = new MinHeap<Entry>(less, entries);
  const nodeIds: string[] = [];
  let pops = 0;
  while (nodeIds.length < req.count && heap.size > 0) {
    if (++pops > maxPops) return undefined;
    const chosen = heap.pop()!;
    if (!roomFor(chosen)) continue;
    const l = chosen.load;
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
    nodeIds.push(chosen.node.id);
    heap.push(chosen);
  }
  // The subset ran dry: a node outside it might still have had room.
  if (nodeIds.length < req.count && maxPops !== Infinity) return undefined;
  return { nodeIds, unplaced: req.count - nodeIds.length, reason: undefined };
}

function whyNot(candidates: readonly SchedulerNode[], load: Map<string, Load>, req: PlacementRequest, placed: number): string {
  const wanted = Object.entries(req.constraints ?? {});
  if (candidates.length === 0 && req.runtime === 'docker') {
    return `no ready node${wanted.length > 0 ? ` with the labels ${wanted.map(([k, v]) => `${k}=${v}`).join(', ')}` : ''} has a running Docker engine (start dockerd on a node, or check \`pilot nodes\` for the engine's error)`;
  }
  if (candidates.length === 0 && wanted.length > 0) return `no ready node has the labels ${wanted.map(([k, v]) => `${k}=${v}`).join(', ')}`;
  if (candidates.length === 0) return 'no ready node to place instances on';
  const prefix = `${placed} of ${req.count} instances placed: `;
  const need = [req.cpu !== undefined ? `${req.cpu} CPU` : '', req.memoryMb !== undefined ? `${req.memoryMb} MB` : '']
    .filter(Boolean)
    .join(' and ');
  if (need) {
    const biggest = [...candidates].sort(
      (a, b) => (b.cpus ?? Infinity) - (a.cpus ?? Infinity) || (b.memoryMb ?? Infinity) - (a.memoryMb ?? Infinity),
    )[0]!;
    const l = load.get(biggest.id)!;
    const free = `${biggest.cpus === undefined ? 'any' : Math.max(0, biggest.cpus - l.cpu).toFixed(2)} CPU, ${biggest.memoryMb === undefined ? 'any' : Math.max(0, biggest.memoryMb - l.mem)} MB`;
    const tooBig = candidates.every(
      (n) =>
        (req.cpu !== undefined && n.cpus !== undefined && req.cpu > n.cpus) ||
        (req.memoryMb !== undefined && n.memoryMb !== undefined && req.memoryMb > n.memoryMb),
    );
    if (tooBig)
      return `${prefix}each instance needs ${need}, more than any node has (largest: ${biggest.name} with ${biggest.cpus ?? '?'} CPU, ${biggest.memoryMb ?? '?'} MB)`;
    if (req.fixedPort === undefined) return `${prefix}no node has ${need} free (most free: ${biggest.name} with ${free})`;
  }
  return `${prefix}every ready node already runs an instance on fixed port ${req.fixedPort}`;
}

/** A plain binary min-heap. */
class MinHeap<T> {
  private readonly items: T[];

  constructor(
    private readonly less: (a: T, b: T) => boolean,
    initial: readonly T[],
  ) {
    this.items = [...initial];
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i); // heapify: O(n)
  }

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  /** Replace the top with x and restore the order: one pop and one push in O(log n). */
  replaceTop(x: T): void {
    this.items[0] = x;
    this.down(0);
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

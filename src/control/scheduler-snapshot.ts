/**
 * The pure scheduler's input, read from the store: nodes with what runs on them, and whether
 * fixed-port instances get network namespaces of their own.
 */
import { networkInterfaces } from 'node:os';
import type { SchedulerInstance, SchedulerNode } from '../core/scheduler.js';
import type { NodeStatus } from '../core/types.js';
import type { NodeRecord, RevisionRecord, Store } from '../store/store.js';

export interface SnapshotDeps {
  readonly store: Pick<Store, 'listNodes' | 'listInstances'>;
  readonly revision: (app: string, n: number) => Promise<RevisionRecord | undefined>;
  readonly nodeStatus: (nodeId: string) => NodeStatus;
}

let local: { at: number; addresses: Set<string> } | undefined;
/** This machine's own addresses (the router runs here, in the control plane's process); re-read every 10 s. */
function localAddresses(): Set<string> {
  const now = performance.now();
  if (!local || now - local.at > 10_000)
    local = { at: now, addresses: new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address))) };
  return local.addresses;
}

/**
 * Whether a node's fixed-port instances get their own network namespace: its agent can (root on
 * Linux, reported as runtimes.netns), and the router can reach a namespace's address, which exists
 * only on that machine: the node is on the router's machine (a loopback or a local address).
 */
export function nodeIsolates(node: Pick<NodeRecord, 'address' | 'runtimes'>): boolean {
  if (node.runtimes.netns?.available !== true) return false;
  const a = node.address;
  return a.startsWith('127.') || a === '::1' || a === 'localhost' || localAddresses().has(a);
}

/**
 * Whether every ready node gives fixed-port instances their own network namespace (agents that
 * run as root on Linux report `runtimes.netns`). One node without it means recreate for all.
 */
export async function everyNodeIsolates(deps: Pick<SnapshotDeps, 'store' | 'nodeStatus'>): Promise<boolean> {
  const live = (await deps.store.listNodes()).filter((n) => deps.nodeStatus(n.id) === 'ready');
  return live.length > 0 && live.every(nodeIsolates);
}

const DOCKER: ReadonlySet<string> = new Set(['docker']);

/** Nodes and what runs on them, as the pure scheduler sees them. Down or stopped instances use nothing. */
export async function schedulerSnapshot(deps: SnapshotDeps): Promise<SchedulerNode[]> {
  const nodes = await deps.store.listNodes();
  const nodeById = new Map(nodes.map((n) => [n.id, n]));
  const all = await deps.store.listInstances();
  const byNode = new Map<string, SchedulerInstance[]>();
  // A node that runs (or ran, while its record lasts) an instance of an artifact has it unpacked.
  const artifacts = new Map<string, Set<string>>();
  for (const i of all) {
    const r = await deps.revision(i.app, i.revision);
    if (r) artifacts.set(i.nodeId, (artifacts.get(i.nodeId) ?? new Set()).add(r.artifact));
    if (i.state === 'stopped' || deps.nodeStatus(i.nodeId) === 'down') continue;
    const list = byNode.get(i.nodeId) ?? [];
    // In its own network namespace a fixed port takes nothing of the node's ports.
    const node = nodeById.get(i.nodeId);
    const ownNetns = r?.config.runtime === 'process' && node !== undefined && nodeIsolates(node);
    list.push({
      app: i.app,
      fixedPort: i.kind === 'release' || ownNetns ? undefined : r?.config.port,
      cpu: r?.config.resources?.cpu,
      memoryMb: r?.config.resources?.memoryMb,
    });
    byNode.set(i.nodeId, list);
  }
  return nodes.map((n) => ({
    id: n.id,
    name: n.name,
    schedulable: deps.nodeStatus(n.id) === 'ready' && n.scheduling === 'eligible',
    cpus: n.cpus,
    memoryMb: n.memoryMb,
    labels: n.labels,
    runtimes: n.runtimes.docker?.available ? DOCKER : undefined,
    artifacts: artifacts.get(n.id),
    instances: byNode.get(n.id) ?? [],
  }));
}

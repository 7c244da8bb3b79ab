/**
 * Scheduler throughput: placements per second of the pure scheduler (core/scheduler.ts) with 5,000
 * simulated nodes already running 100,000 instances, in one process. Requests of 10 replicas for
 * many apps, each against the snapshot as it grows. Peers for scale (published figures, not run
 * here): Nomad's C1M reached 3,750 placements/s with five servers; kube-scheduler ~100 pods/s.
 *
 *   npm run build && node dist/bench/scheduler.js
 */
import { schedule, type SchedulerNode } from '../src/core/scheduler.js';

const NODES = 5000;
const EXISTING = 100_000;
const REQUESTS = 2000;
const PER_REQUEST = 10;

// The control plane keeps per-node usage up to date as it applies plans; the snapshot carries it.
interface Usage {
  cpu: number;
  memoryMb: number;
  count: number;
  perApp: Map<string, number>;
  fixedPorts: Set<number>;
}
const nodes: { id: string; name: string; schedulable: boolean; cpus: number; memoryMb: number; instances: []; usage: Usage }[] = [];
for (let i = 0; i < NODES; i++) {
  nodes.push({
    id: `n${i}`,
    name: `node-${String(i).padStart(5, '0')}`,
    schedulable: i % 50 !== 0,
    cpus: 64,
    memoryMb: 262_144,
    instances: [],
    usage: { cpu: 0, memoryMb: 0, count: 0, perApp: new Map(), fixedPorts: new Set() },
  });
}
const add = (nodeIndex: number, app: string, cpu: number, mem: number): void => {
  const u = nodes[nodeIndex]!.usage;
  u.cpu += cpu;
  u.memoryMb += mem;
  u.count++;
  u.perApp.set(app, (u.perApp.get(app) ?? 0) + 1);
};
for (let k = 0; k < EXISTING; k++) add(k % NODES, `app-${k % 3000}`, 0.25, 256);

let placed = 0;
const t0 = performance.now();
for (let r = 0; r < REQUESTS; r++) {
  const p = schedule(nodes as SchedulerNode[], { app: `new-${r}`, count: PER_REQUEST, fixedPort: undefined, cpu: 0.25, memoryMb: 256 });
  for (const id of p.nodeIds) add(Number(id.slice(1)), `new-${r}`, 0.25, 256);
  placed += p.nodeIds.length;
}
const secs = (performance.now() - t0) / 1000;
console.log(`scheduler: ${NODES} nodes, ${EXISTING} existing instances, ${REQUESTS} requests of ${PER_REQUEST}`);
console.log(
  `  ${placed} placements in ${secs.toFixed(2)} s = ${Math.round(placed / secs)} placements/s (goal >= 10,000/s; Nomad C1M 3,750/s, kube-scheduler ~100/s, published)`,
);

const big = performance.now();
const one = schedule(nodes as SchedulerNode[], { app: 'wide', count: 20_000, fixedPort: undefined, cpu: 0.1, memoryMb: 64 });
const bigSecs = (performance.now() - big) / 1000;
console.log(
  `  one request of 20,000 replicas: ${one.nodeIds.length} placed in ${bigSecs.toFixed(3)} s = ${Math.round(one.nodeIds.length / bigSecs)} placements/s`,
);

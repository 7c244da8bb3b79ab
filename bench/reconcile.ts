/**
 * Reconcile cost with a big fleet: a real SqliteStore holding N apps (2 ready instances each) and
 * N nodes (records only: no processes, no agents), and a real Reconciler with a routing sink that
 * keeps nothing. Prints:
 *   - the time and CPU of one full pass (every app, then the routing table): what every change cost
 *     before the work queue (the loop re-read every app every 250 ms);
 *   - the time and CPU to react to one change (one app's replicas up, then down) through the work
 *     queue: only that app is reconciled;
 *   - the CPU of the running reconciler while nothing changes (idle; a resync of every app every 30 s).
 *
 * Figures on the branch's start state (full pass every 250 ms, 2 shared cores, loaded machine):
 * one change = one full pass, 136 ms wall / 129 ms CPU; idle 23.4 % of a core.
 * Through the work queue (same machine, busier): one change 9 ms CPU (replicas up: the placement
 * reads the fleet's snapshot) / 13.5 ms CPU (down: the whole routing table is built); idle 0.87 %
 * of a core over 40 s (one 30 s resync of every app), 0 % between resyncs. Wall times are ~5× CPU
 * on 2 cores shared by 7 builds: compare CPU.
 *
 *   npm run build && node dist/bench/reconcile.js [apps=1000] [nodes=1000] [idleSeconds=20]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig } from '../src/core/app-config.js';
import { Reconciler } from '../src/control/reconciler.js';
import { SqliteStore } from '../src/store/sqlite-store.js';

const APPS = Number(process.argv[2] ?? 1000);
const NODES = Number(process.argv[3] ?? 1000);
const IDLE_S = Number(process.argv[4] ?? 20);
const DIGEST = `sha256:${'a'.repeat(64)}`;
const COMMIT = 'c'.repeat(40);

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * `n` rounds of one change to `app` (replicas 2 → 3, then 3 → 2, alternately), each reacted to by
 * `react`; the agent's answer (new instances ready, drained ones gone) is written between rounds,
 * untimed. Medians of wall and CPU ms, for scaling up and for scaling down.
 */
async function rounds(
  n: number,
  store: SqliteStore,
  app: string,
  react: () => Promise<void>,
  settled: () => Promise<void>,
): Promise<Record<'up' | 'down', { wallMs: number; cpuMs: number }>> {
  const out = { up: { wall: [] as number[], cpu: [] as number[] }, down: { wall: [] as number[], cpu: [] as number[] } };
  for (let i = 0; i < n; i++) {
    const dir = i % 2 === 0 ? 'up' : 'down';
    await store.setReplicas(app, dir === 'up' ? 3 : 2, Date.now());
    const w = performance.now();
    const c = cpuMs();
    await react();
    out[dir].wall.push(performance.now() - w);
    out[dir].cpu.push(cpuMs() - c);
    await agentCatchesUp(store, app);
    await settled();
  }
  return {
    up: { wallMs: median(out.up.wall), cpuMs: median(out.up.cpu) },
    down: { wallMs: median(out.down.wall), cpuMs: median(out.down.cpu) },
  };
}

const fmt = (r: { wallMs: number; cpuMs: number }): string => `${r.wallMs.toFixed(1)} ms wall, ${r.cpuMs.toFixed(1)} ms CPU`;

async function seed(store: SqliteStore): Promise<string[]> {
  const now = Date.now();
  const nodeIds: string[] = [];
  for (let n = 0; n < NODES; n++) {
    const id = `node-${n}`;
    nodeIds.push(id);
    await store.upsertNode({
      id,
      name: id,
      address: `127.0.${Math.floor(n / 250) + 1}.${(n % 250) + 1}`,
      apiUrl: `http://127.0.0.1:${10_000 + n}`,
      credentialHash: `h${n}`,
      agentToken: 't',
      registeredAt: now,
      lastSeenAt: now,
      scheduling: 'eligible',
      cpus: 4,
      memoryMb: 8192,
      labels: {},
      runtimes: {},
    });
  }
  const names: string[] = [];
  for (let a = 0; a < APPS; a++) {
    const name = `app-${a}`;
    names.push(name);
    const config = resolveAppConfig({ replicas: 2 }, name);
    await store.upsertApp(name, config, now);
    await store.setReplicas(name, 2, now);
    const rev = await store.createRevision({
      app: name,
      artifact: DIGEST,
      commit: COMMIT,
      dirty: false,
      config,
      runId: undefined,
      createdAt: now,
      image: undefined,
      nodeRuntime: undefined,
    });
    await store.setActiveRevision(name, rev.number, now);
    for (let k = 0; k < 2; k++) {
      const id = `${name}-1-${k}`;
      await store.createInstance({
        id,
        app: name,
        revision: rev.number,
        nodeId: nodeIds[(a * 2 + k) % NODES]!,
        desired: 'run',
        createdAt: now,
      });
      await store.updateInstanceStatus(
        id,
        {
          state: 'ready',
          port: 20_000 + k,
          pid: 1000 + a,
          restarts: 0,
          lastError: undefined,
          startedAt: now,
          containerId: undefined,
          logTail: undefined,
          address: undefined,
        },
        now,
      );
    }
  }
  return names;
}

/** Marks every instance of the app ready (what its agent would report) and deletes stopped ones. */
async function agentCatchesUp(store: SqliteStore, app: string): Promise<void> {
  const now = Date.now();
  for (const i of await store.listInstances({ app })) {
    if (i.desired === 'run' && i.state !== 'ready') {
      await store.updateInstanceStatus(
        i.id,
        {
          state: 'ready',
          port: 20_100,
          pid: 1,
          restarts: 0,
          lastError: undefined,
          startedAt: now,
          containerId: undefined,
          logTail: undefined,
          address: undefined,
        },
        now,
      );
    } else if (i.desired !== 'run') {
      await store.deleteInstance(i.id);
    }
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-reconcile-'));
  const store = new SqliteStore(join(dir, 'pilot.db'));
  try {
    let t = performance.now();
    const apps = await seed(store);
    console.log(`seeded ${APPS} apps (2 ready instances each) on ${NODES} nodes in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    let published = 0;
    const sink = { set: () => void published++, inflight: () => 0 };
    const rec = new Reconciler(store, sink, pino({ level: 'silent' }), { intervalMs: 250, maxDrainMs: 30_000, crashLoopRestarts: 3 });
    t = performance.now();
    await rec.tick();
    console.log(`first full pass (cold revision cache): ${(performance.now() - t).toFixed(0)} ms`);

    const target = apps[Math.floor(APPS / 2)]!;
    const ROUNDS = 8;
    // One change, reacted to by a full pass: how every change was handled before the work queue
    // (the loop re-read every app every 250 ms and after every change).
    const full = await rounds(
      ROUNDS,
      store,
      target,
      () => rec.tick(),
      () => rec.tick(),
    );
    console.log(`react to one change with a full pass:    up ${fmt(full.up)}; down ${fmt(full.down)} (medians of ${ROUNDS / 2})`);
    // The same change through the work queue: only that app, then the routing table if a route changed.
    const one = await rounds(
      ROUNDS,
      store,
      target,
      async () => {
        rec.enqueue(target);
        await rec.whenIdle();
        await rec.serial(async () => undefined); // the routing table, when it was queued
      },
      async () => {
        rec.appsChanged([target]);
        await rec.whenIdle();
        await rec.serial(async () => undefined);
      },
    );
    console.log(
      `react to one change through the queue:   up ${fmt(one.up)}; down ${fmt(one.down)} (medians of ${ROUNDS / 2}; down publishes the whole routing table)`,
    );

    // Idle: the reconciler running, nothing changing (the target may still be draining: give it time).
    rec.start();
    await new Promise((r) => setTimeout(r, 1500));
    const c0 = cpuMs();
    const w0 = performance.now();
    const p0 = published;
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const idleCpu = cpuMs() - c0;
    const idleWall = performance.now() - w0;
    rec.stop();
    console.log(
      `idle for ${IDLE_S} s: ${idleCpu.toFixed(0)} ms CPU = ${((idleCpu / idleWall) * 100).toFixed(2)} % of a core; routing table published ${published - p0} times; queue ${JSON.stringify(rec.queueStats)}`,
    );
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

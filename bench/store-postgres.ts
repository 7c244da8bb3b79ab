/**
 * The PostgreSQL store against the SQLite store on this machine, through the Store interface: the
 * webhook intake (enqueueWebhookRun: one durable commit per push, sequential latency and 16 at
 * once), the run queue (claimNextRun then updateRun to the end, one worker), and how long an event
 * written by one store takes to reach another store's subscriber (SQLite: the same process's bus;
 * PostgreSQL: LISTEN/NOTIFY to a second store). PostgreSQL 15 runs with fsync on (as SQLite's
 * synchronous=FULL on the intake), on loopback, started and stopped by this script.
 *
 *   npm run build && node dist/bench/store-postgres.js [pushes=400]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPostgresStore } from '../src/store/postgres-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { Store } from '../src/store/store.js';
import { startPostgres } from '../src/store/test-postgres.js';

const N = Number(process.argv[2] ?? 400);
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const ms = (x: number): string => x.toFixed(2);
const push = (i: number, app = `app${i % 8}`) => ({
  app,
  deliveryId: `d-${i}`,
  commit: i.toString(16).padStart(40, '0'),
  branch: `b${i}`, // a branch per push: nothing supersedes, every run stays queued
  message: 'm',
  author: 'a',
  now: 1,
});

async function measure(name: string, s: Store, other: Store): Promise<void> {
  const lat: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    await s.enqueueWebhookRun(push(i));
    lat.push(performance.now() - t);
  }
  let t = performance.now();
  await Promise.all(Array.from({ length: N }, (_, i) => s.enqueueWebhookRun(push(N + i))));
  const burst = (N / (performance.now() - t)) * 1000;
  t = performance.now();
  let claimed = 0;
  for (;;) {
    const r = await s.claimNextRun(new Set(), 10);
    if (!r) break;
    await s.updateRun(r.id, { status: 'succeeded', finishedAt: 11, ifStatus: 'running' });
    claimed++;
  }
  const cycle = (claimed / (performance.now() - t)) * 1000;
  // Event delivery: a write on `s`, heard by `other`'s subscriber.
  const seen: number[] = [];
  let sentAt = 0;
  let resolve: () => void = () => {};
  const off = other.subscribeEvents(() => {
    seen.push(performance.now() - sentAt);
    resolve();
  });
  for (let i = 0; i < 200; i++) {
    const heard = new Promise<void>((r) => (resolve = r));
    sentAt = performance.now();
    await s.appendEvent({ time: 1, app: 'app0', kind: 'node.status', payload: { node: 'n', status: 'up' } });
    await heard;
  }
  off();
  console.log(
    `${name.padEnd(10)} intake p50 ${ms(pct(lat, 50))} ms, p99 ${ms(pct(lat, 99))} ms; ${N} at once: ${burst.toFixed(0)} pushes/s; ` +
      `claim+finish ${cycle.toFixed(0)} runs/s (${claimed}); event to another store's subscriber p50 ${ms(pct(seen, 50))} ms, p99 ${ms(pct(seen, 99))} ms`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-store-'));
const cluster = await startPostgres({ fsync: true });
try {
  const sqlite = new SqliteStore(join(dir, 'pilot.db'));
  await measure('sqlite', sqlite, sqlite);
  sqlite.close();
  const url = await cluster.createDatabase();
  const a = await openPostgresStore(url);
  const b = await openPostgresStore(url);
  await measure('postgres', a, b);
  a.close();
  b.close();
} finally {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}

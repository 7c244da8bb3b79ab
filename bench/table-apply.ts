/**
 * Time to apply a new routing table of N apps (default 1,000) on each data plane:
 *
 *   embedded: RoutingTable.set of the whole table + the first request routed to the last app;
 *             then a weight change of every app (90/10 → 50/50) the same way.
 *   haproxy:  generate the configuration, `haproxy -c`, hitless reload, first request routed to the
 *             last app (N new apps: their per-app error files written too); one app added to the
 *             N (a reload) until it answers; then the same weight change of every app, which goes
 *             through the Runtime API alone (no reload): 2 servers × N apps `set server … weight`.
 *
 *   npm run build && node dist/bench/table-apply.js [apps=1000] [rounds=3]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { request } from 'undici';
import type { Route } from '../src/core/routes.js';
import { HaproxyRouter } from '../src/haproxy/haproxy-router.js';
import { RouterMetrics } from '../src/router/metrics.js';
import { startRouter } from '../src/router/proxy.js';
import { RoutingTable } from '../src/router/routing-table.js';

const apps = Number(process.argv[2] ?? 1000);
const rounds = Number(process.argv[3] ?? 3);

/** N apps, each with revisions 1 and 2 on two upstreams of the same server, weighted w/(100-w). */
function table(port: number, port2: number, w: number, salt = ''): Route[] {
  return Array.from({ length: apps }, (_, i) => ({
    app: `app${i}${salt}`,
    hosts: [`app${i}${salt}.localhost`],
    backends: [
      { revision: 1, weight: w, upstreams: [{ id: `app${i}${salt}-1`, host: '127.0.0.1', port }] },
      { revision: 2, weight: 100 - w, upstreams: [{ id: `app${i}${salt}-2`, host: '127.0.0.1', port: port2 }] },
    ],
  }));
}

/** Request the last app until it answers 200; ms from `t0`. */
async function firstRouted(url: string, host: string, t0: number): Promise<number> {
  for (;;) {
    try {
      const res = await request(url, { headers: { host } });
      await res.body.text();
      if (res.statusCode === 200) return performance.now() - t0;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const body = Buffer.from('ok\n');
  const servers = await Promise.all(
    [0, 1].map(async () => {
      const s = http.createServer((_q, r) => r.writeHead(200, { 'content-length': body.length }).end(body));
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      return s;
    }),
  );
  const [p1, p2] = servers.map((s) => (s.address() as AddressInfo).port) as [number, number];
  const last = `app${apps - 1}`;
  const out: Record<string, number[]> = {};
  const add = (k: string, v: number): void => void (out[k] ??= []).push(v);

  // Embedded.
  const t = new RoutingTable();
  const router = await startRouter({ host: '127.0.0.1', port: 0, table: t, metrics: new RouterMetrics(new Registry()) });
  for (let r = 0; r < rounds; r++) {
    const salt = `r${r}`; // a new set of apps each round: a full table change
    let t0 = performance.now();
    t.set(table(p1, p2, 90, salt));
    add('embedded: set (new table)', performance.now() - t0);
    add('embedded: set + first request routed', await firstRouted(router.url, `${last}${salt}.localhost`, t0));
    t0 = performance.now();
    t.set(table(p1, p2, 50, salt));
    add('embedded: weight change, set', performance.now() - t0);
    add('embedded: weight change + first request routed', await firstRouted(router.url, `${last}${salt}.localhost`, t0));
  }
  await router.close();

  // HAProxy.
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-table-'));
  const hap = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
  try {
    for (let r = 0; r < rounds; r++) {
      const salt = `r${r}`;
      let t0 = performance.now();
      await hap.apply(table(p1, p2, 90, salt));
      add('haproxy: config + check + reload (new table)', performance.now() - t0);
      add('haproxy: reload + first request routed', await firstRouted(hap.url, `${last}${salt}.localhost`, t0));
      // One app more on top of the N: the common reload (a new app), with the others' files written.
      const plusOne = [...table(p1, p2, 90, salt), ...table(p1, p2, 90, `${salt}x`).slice(0, 1)];
      t0 = performance.now();
      await hap.apply(plusOne);
      add(`haproxy: one app added to ${apps} (reload) + first request`, await firstRouted(hap.url, `app0${salt}x.localhost`, t0));
      await hap.apply(table(p1, p2, 90, salt));
      const before = hap.health;
      t0 = performance.now();
      await hap.apply(table(p1, p2, 50, salt));
      add(`haproxy: weight change of ${apps} apps via Runtime API`, performance.now() - t0);
      const after = hap.health;
      if (after.reloads !== before.reloads) throw new Error('a weight change reloaded HAProxy');
      if (after.lastError !== undefined) throw new Error(`haproxy: ${after.lastError}`);
    }
  } finally {
    await hap.close();
    rmSync(dir, { recursive: true, force: true });
    for (const s of servers) s.close();
  }
  console.log(`routing table of ${apps} apps (2 revisions each), ${rounds} rounds: median (min–max)`);
  for (const [k, v] of Object.entries(out))
    console.log(`  ${k.padEnd(52)} ${fmt(median(v))} (${fmt(Math.min(...v))}–${fmt(Math.max(...v))})`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

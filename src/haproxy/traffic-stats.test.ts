import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { pino } from 'pino';
import type { Route } from '../core/routes.js';
import { figures } from '../core/traffic-window.js';
import { RouterMetrics } from '../router/metrics.js';
import { send, startUpstream, type TestUpstream } from '../router/test-support.js';
import { HaproxyRouter, tracedApps, trafficModeOf } from './haproxy-router.js';
import { TrafficStats, appOfBackend } from './traffic-stats.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A `show stat` row with these counters (the rest of HAProxy's columns are not read). */
const row = (pxname: string, svname: string, c: Partial<Record<string, number>> = {}): Record<string, string> => ({
  pxname,
  svname,
  ...Object.fromEntries(Object.entries(c).map(([k, v]) => [k, String(v)])),
});

/** A sink that keeps what it was told. */
function recorder(): { calls: string[]; sink: { request(app: string, revision: number | undefined, code: number, s: number): void } } {
  const calls: string[] = [];
  return { calls, sink: { request: (app, revision, code, s) => calls.push(`${app}/${revision ?? '-'} ${code} ${s * 1000}`) } };
}

const count = (calls: string[], what: string): number => calls.filter((c) => c === what).length;

describe('haproxy traffic stats: counters (pure)', () => {
  it('counts what each server row grew by, for the revision its slot serves, with its average time', () => {
    const { calls, sink } = recorder();
    const s = new TrafficStats(sink);
    const resolve = (b: string, sv: string): { app: string; revision: number } | undefined =>
      b === 'app_shop' && sv === 's1'
        ? { app: 'shop', revision: 3 }
        : b === 'pin0_shop' && sv === 's1'
          ? { app: 'shop', revision: 3 }
          : undefined;
    assert.equal(
      s.count(
        [row('app_shop', 's1', { hrsp_2xx: 5, hrsp_5xx: 1, ttime: 12 }), row('app_shop', 'BACKEND', { hrsp_2xx: 5, hrsp_5xx: 1 })],
        resolve,
      ),
      6,
    );
    assert.equal(count(calls, 'shop/3 200 12'), 5);
    assert.equal(count(calls, 'shop/3 500 12'), 1);
    calls.length = 0;
    // Only the growth counts; a client abort is a 499 (as in the log and the embedded router).
    s.count(
      [
        row('app_shop', 's1', { hrsp_2xx: 7, hrsp_5xx: 1, cli_abrt: 1, ttime: 4 }),
        row('app_shop', 'BACKEND', { hrsp_2xx: 7, hrsp_5xx: 1 }),
      ],
      resolve,
    );
    assert.deepEqual(calls.sort(), ['shop/3 200 4', 'shop/3 200 4', 'shop/3 499 4']);
    calls.length = 0;
    // Nothing grew: nothing counted.
    assert.equal(
      s.count(
        [row('app_shop', 's1', { hrsp_2xx: 7, hrsp_5xx: 1, cli_abrt: 1 }), row('app_shop', 'BACKEND', { hrsp_2xx: 7, hrsp_5xx: 1 })],
        resolve,
      ),
      0,
    );
    assert.deepEqual(calls, []);
  });

  it("counts a backend's and the frontend's own answers without a revision, and a new worker from 0", () => {
    const { calls, sink } = recorder();
    const s = new TrafficStats(sink);
    const none = (): undefined => undefined;
    s.count(
      [
        row('app_shop', 's1', { hrsp_2xx: 10 }),
        // Two 502s answered by the backend itself (no ready instance).
        row('app_shop', 'BACKEND', { hrsp_2xx: 10, hrsp_5xx: 2 }),
        // Three 404s answered by the frontend (an unknown host), besides what the backends answered.
        row('pilot', 'FRONTEND', { hrsp_2xx: 10, hrsp_4xx: 3, hrsp_5xx: 2 }),
        row('stats', 'FRONTEND', { hrsp_2xx: 99 }), // not ours
      ],
      none,
    );
    assert.equal(count(calls, 'shop/- 200 0'), 10, 'a server row whose slot is empty: the app, no revision');
    assert.equal(count(calls, 'shop/- 500 0'), 2);
    assert.equal(count(calls, '/- 400 0'), 3);
    assert.equal(calls.length, 15);
    calls.length = 0;
    // A reload: the new worker's counters are lower than the last read; they count from 0.
    s.count(
      [row('app_shop', 's1', { hrsp_2xx: 4 }), row('app_shop', 'BACKEND', { hrsp_2xx: 4 }), row('pilot', 'FRONTEND', { hrsp_2xx: 4 })],
      none,
    );
    assert.equal(count(calls, 'shop/- 200 0'), 4);
    assert.equal(calls.length, 4);
    calls.length = 0;
    s.reset();
    s.count([row('app_shop', 's1', { hrsp_2xx: 1 })], none);
    assert.equal(calls.length, 1);
  });

  it('names the app of the backends Pilot generates only', () => {
    assert.equal(appOfBackend('app_my_shop'), 'my_shop');
    assert.equal(appOfBackend('pin1_shop'), 'shop');
    assert.equal(appOfBackend('pilot'), undefined);
    assert.equal(appOfBackend('pinx_shop'), undefined);
  });

  it('takes the mode from PILOT_HAPROXY_TRAFFIC, and refuses another with the choices', () => {
    assert.equal(trafficModeOf(undefined), 'log');
    assert.equal(trafficModeOf(''), 'log');
    assert.equal(trafficModeOf(' Stats '), 'stats');
    assert.equal(trafficModeOf('off'), 'off');
    assert.equal(trafficModeOf('auto'), 'auto');
    assert.throws(
      () => trafficModeOf('counters'),
      (e: Error & { code?: string; hint?: string }) =>
        e.code === 'invalid_argument' &&
        /PILOT_HAPROXY_TRAFFIC="counters"/.test(e.message) &&
        /log .*stats .*auto .*off/.test(e.hint ?? ''),
    );
  });
});

describe('haproxy traffic stats: the figures of real requests', () => {
  let dir: string;
  let r: HaproxyRouter;
  let client: Pool;
  let ok: TestUpstream;
  let failing: TestUpstream;
  let other: TestUpstream;
  const metrics = new RouterMetrics();

  before(async () => {
    ok = await startUpstream('ok');
    other = await startUpstream('other');
    failing = await startUpstream('failing', (req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.writeHead(500).end('no'), 30));
    });
    dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-stats-'));
    r = await HaproxyRouter.start({
      dir,
      host: '127.0.0.1',
      port: 0,
      log: pino({ level: 'silent' }),
      traffic: metrics,
      trafficMode: 'stats',
      statsIntervalMs: 300,
    });
    client = new Pool(r.url, { connections: 4 });
  });
  after(async () => {
    await client.close();
    await r.close();
    await Promise.all([ok.close(), failing.close(), other.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const by = async (): Promise<Map<string, ReturnType<typeof figures>>> => {
    await sleep(400); // one read of the counters
    return new Map(metrics.traffic(60_000).map((t) => [`${t.app}/${t.revision}`, figures(t.summary)]));
  };

  it('counts requests and status classes per app and revision exactly, with no log line per request', async () => {
    assert.doesNotMatch(readFileSync(join(dir, 'haproxy.cfg'), 'utf8'), /^\s*log /m, 'no per-request log in stats mode');
    const shop: Route = {
      app: 'shop',
      hosts: ['shop.localhost'],
      backends: [
        { revision: 1, weight: 50, upstreams: [{ id: 'ok', host: ok.host, port: ok.port }] },
        { revision: 2, weight: 50, upstreams: [{ id: 'failing', host: failing.host, port: failing.port }] },
      ],
    };
    const empty: Route = { app: 'empty', hosts: ['empty.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [] }] };
    await r.apply([shop, empty]);
    const codes: number[] = [];
    for (let i = 0; i < 40; i++) codes.push((await send(client, 'shop.localhost')).status);
    // Pinned to revision 1: counted for revision 1 through its pin backend.
    for (let i = 0; i < 5; i++) codes.push((await send(client, 'shop.localhost', { headers: { 'x-pilot-revision': '1' } })).status);
    for (let i = 0; i < 3; i++) codes.push((await send(client, 'nosuch.localhost')).status);
    for (let i = 0; i < 2; i++) codes.push((await send(client, 'empty.localhost')).status);
    assert.equal(codes.filter((c) => c === 200).length, 25);
    assert.equal(codes.filter((c) => c === 500).length, 20);
    let t = await by();
    for (let i = 0; i < 20 && (t.get('shop/2')?.requests ?? 0) < 20; i++) t = await by();
    assert.equal(t.get('shop/1')?.requests, 25);
    assert.equal(t.get('shop/1')?.status['2xx'], 25);
    assert.equal(t.get('shop/2')?.requests, 20);
    assert.equal(t.get('shop/2')?.errorRate, 1);
    // Latency: the server's average over its last requests (the failing instance waits 30 ms).
    assert.ok((t.get('shop/2')?.latencyMs.mean ?? 0) >= 25, JSON.stringify(t.get('shop/2')?.latencyMs));
    assert.equal(t.get('/null')?.status['4xx'], 3, "the frontend's own 404s (unknown host)");
    assert.equal(t.get('empty/null')?.status['5xx'], 2, "the backend's own 502s (no ready instance)");
    assert.equal(t.get('shop/null'), undefined, 'every shop request had its revision');
  });

  it('counts each instance for its own revision across a rollout (a read before the table changes)', async () => {
    const one = (u: TestUpstream, rev: number): Route => ({
      app: 'move',
      hosts: ['move.localhost'],
      backends: [{ revision: rev, weight: 100, upstreams: [{ id: u.name, host: u.host, port: u.port }] }],
    });
    const base = (): Route[] => [];
    await r.apply([...base(), one(ok, 7)]);
    for (let i = 0; i < 6; i++) assert.equal((await send(client, 'move.localhost')).status, 200);
    // Straight away (no timed read in between): revision 8's instance takes over.
    await r.apply([...base(), one(other, 8)]);
    for (let i = 0; i < 4; i++) assert.equal((await send(client, 'move.localhost')).status, 200);
    let t = await by();
    for (let i = 0; i < 20 && (t.get('move/8')?.requests ?? 0) < 4; i++) t = await by();
    assert.equal(t.get('move/7')?.requests, 6);
    assert.equal(t.get('move/8')?.requests, 4);
    assert.equal(t.get('move/null'), undefined);
  });

  it('counts from 0 again after HAProxy was killed and started again (nothing counted twice)', async () => {
    const restarts = r.health.restarts;
    const before = (await by()).get('move/8')?.requests ?? 0;
    process.kill(r.health.pid!, 'SIGKILL');
    const end = performance.now() + 30_000;
    while ((r.health.restarts === restarts || !r.health.up) && performance.now() < end) await sleep(100);
    assert.ok(r.health.up && r.health.restarts > restarts, 'HAProxy was started again');
    for (let i = 0; i < 3; i++) assert.equal((await send(client, 'move.localhost')).status, 200);
    let t = await by();
    for (let i = 0; i < 20 && (t.get('move/8')?.requests ?? 0) < before + 3; i++) t = await by();
    await sleep(700);
    t = await by();
    assert.equal(t.get('move/8')?.requests, before + 3);
  });
});

describe('haproxy traffic auto: the log while two revisions share the traffic, the counters otherwise', () => {
  let dir: string;
  let r: HaproxyRouter;
  let client: Pool;
  let one: TestUpstream;
  let two: TestUpstream;
  /** What reached the sink, with the exact code: the log gives 201/202, the counters their class (200). */
  const calls: string[] = [];
  const metrics = new RouterMetrics();
  const sink = {
    request(app: string, revision: number | undefined, code: number, seconds: number): void {
      calls.push(`${app}/${revision ?? '-'} ${code}`);
      metrics.request(app, revision, code, seconds);
    },
  };

  before(async () => {
    one = await startUpstream('one', (req, res) => {
      req.resume();
      res.writeHead(201).end('one');
    });
    two = await startUpstream('two', (req, res) => {
      req.resume();
      res.writeHead(202).end('two');
    });
    dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-auto-'));
    r = await HaproxyRouter.start({
      dir,
      host: '127.0.0.1',
      port: 0,
      log: pino({ level: 'silent' }),
      traffic: sink,
      trafficMode: 'auto',
      statsIntervalMs: 300,
    });
    client = new Pool(r.url, { connections: 2 });
  });
  after(async () => {
    await client.close();
    await r.close();
    await Promise.all([one.close(), two.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('picks the apps with two revisions taking traffic', () => {
    const up = { id: 'x', host: '127.0.0.1', port: 1 };
    assert.deepEqual(
      [
        ...tracedApps([
          { app: 'a', hosts: [], backends: [{ revision: 1, weight: 100, upstreams: [up] }] },
          {
            app: 'b',
            hosts: [],
            backends: [
              { revision: 1, weight: 90, upstreams: [up] },
              { revision: 2, weight: 10, upstreams: [up] },
            ],
          },
          {
            app: 'c',
            hosts: [],
            backends: [
              { revision: 1, weight: 100, upstreams: [up] },
              { revision: 2, weight: 0, upstreams: [up] },
            ],
          },
          {
            app: 'd',
            hosts: [],
            backends: [
              { revision: 1, weight: 50, upstreams: [up] },
              { revision: 2, weight: 50, upstreams: [] },
            ],
          },
        ]),
      ],
      ['b'],
    );
  });

  it('switches without a reload, and counts every request once', async () => {
    const route = (w1: number, w2: number): Route => ({
      app: 'shop',
      hosts: ['shop.localhost'],
      backends: [
        { revision: 1, weight: w1, upstreams: w1 > 0 ? [{ id: 'one', host: one.host, port: one.port }] : [] },
        { revision: 2, weight: w2, upstreams: w2 > 0 ? [{ id: 'two', host: two.host, port: two.port }] : [] },
      ],
    });
    const settle = async (n: number): Promise<void> => {
      for (let i = 0; i < 40 && calls.length < n; i++) await sleep(100);
      await sleep(700); // two more reads: nothing more may come
    };
    await r.apply([route(100, 0)]);
    const reloads = r.health.reloads;
    for (let i = 0; i < 10; i++) assert.equal((await send(client, 'shop.localhost')).status, 201);
    await settle(10);
    assert.deepEqual(calls.splice(0).sort(), Array(10).fill('shop/1 200'), 'one revision: the counters (status classes)');
    // A canary: both revisions take traffic, each request is a line with its exact code.
    await r.apply([route(50, 50)]);
    for (let i = 0; i < 20; i++) await send(client, 'shop.localhost');
    await settle(20);
    assert.deepEqual(calls.splice(0).sort(), [...Array(10).fill('shop/1 201'), ...Array(10).fill('shop/2 202')]);
    // Promoted: the counters again.
    await r.apply([route(0, 100)]);
    for (let i = 0; i < 6; i++) assert.equal((await send(client, 'shop.localhost')).status, 202);
    await settle(6);
    assert.deepEqual(calls.splice(0).sort(), Array(6).fill('shop/2 200'));
    assert.equal(r.health.reloads, reloads, 'no reload for the switches');
    const t = new Map(metrics.traffic(60_000).map((x) => [`${x.app}/${x.revision}`, figures(x.summary).requests]));
    assert.equal(t.get('shop/1'), 20);
    assert.equal(t.get('shop/2'), 16);
  });
});

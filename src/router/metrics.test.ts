import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { figures } from '../core/traffic-window.js';
import { RouterMetrics } from './metrics.js';
import type { Upstream } from './routing-table.js';
import { serveTraffic } from './traffic-endpoint.js';

const up = (app: string, revision: number, id = `${app}-${revision}`): Upstream => ({ id, app, revision, host: '127.0.0.1', port: 1 });

function clock(start = 1_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('router metrics: traffic windows per app and revision', () => {
  it('keeps one recorder per revision, shared by its upstreams, and reads the figures back', () => {
    const c = clock();
    const m = new RouterMetrics(new Registry(), { now: c.now });
    const a = up('shop', 3, 'i-1');
    const b = up('shop', 3, 'i-2');
    assert.equal(m.revision(a), m.revision(a), 'the same object: nothing allocated per request');
    for (let i = 0; i < 90; i++) m.revision(i % 2 ? a : b).record(200, 2, c.now());
    for (let i = 0; i < 10; i++) m.revision(up('shop', 4)).record(500, 40, c.now());
    m.request('shop', undefined, 502, 0.001);
    m.request('other', 1, 200, 0.01);
    c.advance(5_000);
    const rows = m.traffic(60_000, 'shop');
    assert.deepEqual(rows.map((r) => r.revision).sort(), [3, 4, null].sort());
    const r3 = figures(rows.find((r) => r.revision === 3)!.summary);
    assert.equal(r3.requests, 90);
    assert.equal(r3.rps, 18, '90 requests over the 5 s the key has existed');
    assert.ok(Math.abs(r3.latencyMs.p50! - 2) <= 2 / 32);
    const r4 = figures(rows.find((r) => r.revision === 4)!.summary);
    assert.equal(r4.errorRate, 1);
    const none = figures(rows.find((r) => r.revision === null)!.summary);
    assert.equal(none.status['5xx'], 1);
    assert.equal(none.latencyMs.p50, null, 'no instance, no latency');
    assert.equal(m.traffic(60_000).length, 4, 'every app without a filter');
  });

  it('slides: a minute later the last 10 s are empty while the last 5 min still count', () => {
    const c = clock();
    const m = new RouterMetrics(new Registry(), { now: c.now });
    m.revision(up('shop', 1)).record(200, 1, c.now());
    c.advance(60_000);
    assert.equal(m.traffic(10_000, 'shop')[0]!.summary.requests, 0);
    assert.equal(m.traffic(300_000, 'shop')[0]!.summary.requests, 1);
  });

  it('forgets keys idle for an hour, and an upstream that comes back records into a fresh one', () => {
    const c = clock();
    const m = new RouterMetrics(new Registry(), { now: c.now });
    const u = up('shop', 1);
    m.revision(u).record(200, 1, c.now());
    m.upstreamError('shop');
    c.advance(3_600_001);
    assert.deepEqual(m.traffic(60_000), []);
    m.revision(u).record(200, 1, c.now());
    assert.equal(m.traffic(60_000, 'shop')[0]?.summary.requests, 1, 'recorded into a listed key, not the dropped one');
  });

  it('exports the old Prometheus names and labels from running totals, summing routers that share a registry', async () => {
    const registry = new Registry();
    const one = new RouterMetrics(registry);
    const two = new RouterMetrics(registry);
    for (const m of [one, two]) {
      const rec = m.revision(up('shop', 2));
      rec.record(200, 0.5, 1);
      rec.record(200, 3, 2);
      rec.record(499, 70_000, 3);
      m.request('', undefined, 404, 0);
      m.upstreamError('shop');
    }
    const text = await registry.metrics();
    assert.match(text, /# TYPE pilot_router_requests_total counter/);
    assert.match(text, /pilot_router_requests_total\{app="shop",revision="2",code="200"\} 4\n/);
    assert.match(text, /pilot_router_requests_total\{app="shop",revision="2",code="499"\} 2\n/);
    assert.match(text, /pilot_router_requests_total\{app="",revision="",code="404"\} 2\n/);
    assert.match(text, /# TYPE pilot_router_request_duration_seconds histogram/);
    assert.match(text, /pilot_router_request_duration_seconds_bucket\{app="shop",revision="2",le="0.001"\} 2\n/);
    assert.match(text, /pilot_router_request_duration_seconds_bucket\{app="shop",revision="2",le="0.005"\} 4\n/);
    assert.match(
      text,
      /pilot_router_request_duration_seconds_bucket\{app="shop",revision="2",le="60"\} 4\n/,
      'le is inclusive; 70 s is beyond the last bound',
    );
    assert.match(text, /pilot_router_request_duration_seconds_bucket\{app="shop",revision="2",le="\+Inf"\} 6\n/);
    assert.match(text, /pilot_router_request_duration_seconds_count\{app="shop",revision="2"\} 6\n/);
    assert.equal(text.match(/pilot_router_request_duration_seconds_count\{/g)?.length, 1, 'one series, not one per router');
    assert.match(text, /pilot_router_upstream_errors_total\{app="shop"\} 2\n/);
    const sum = Number(/pilot_router_request_duration_seconds_sum\{app="shop",revision="2"\} ([\d.]+)/.exec(text)?.[1]);
    assert.ok(Math.abs(sum - 2 * 70.0035) < 1e-9, String(sum));
  });
});

describe('router metrics: the figures endpoint', () => {
  it('answers summaries for a window and refuses a bad one', async () => {
    const m = new RouterMetrics(new Registry());
    m.revision(up('shop', 1)).record(200, 1, performance.now());
    m.revision(up('cart', 1)).record(200, 1, performance.now());
    const server = http.createServer((req, res) => serveTraffic(m, new URL(req.url ?? '/', 'http://x'), res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const ok = await fetch(`${base}/traffic?window=30s&app=shop`);
      assert.equal(ok.status, 200);
      const body = (await ok.json()) as { windowMs: number; revisions: { app: string; summary: { requests: number } }[] };
      assert.equal(body.windowMs, 30_000);
      assert.deepEqual(
        body.revisions.map((r) => [r.app, r.summary.requests]),
        [['shop', 1]],
      );
      for (const w of ['x', '10m', '0.5s', '']) {
        const res = await fetch(`${base}/traffic?window=${w}`);
        assert.equal(res.status, w === '' ? 200 : 400, `window=${w}`);
        await res.arrayBuffer();
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

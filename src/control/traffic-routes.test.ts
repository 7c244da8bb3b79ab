import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { RouterMetrics } from '../router/metrics.js';
import type { AppRecord, Store } from '../store/store.js';
import { installErrorHandling } from './http-errors.js';
import { appTraffic, registerTrafficRoutes, type TrafficSource } from './traffic-routes.js';

const app = (name: string, activeRevision: number | undefined): AppRecord => ({
  name,
  activeRevision,
  config: {} as AppRecord['config'],
  replicas: 1,
  replicasSource: 'config',
  createdAt: 0,
  updatedAt: 0,
  repo: undefined,
  branch: undefined,
  webhookSecret: undefined,
  githubToken: undefined,
  statusApiUrl: undefined,
});

const upstream = (name: string, revision: number) => ({ id: `${name}-${revision}`, app: name, revision, host: '127.0.0.1', port: 1 });

describe('traffic routes', () => {
  it("merge two routers' rows by revision: newest first, the no-instance row last, the active one marked", () => {
    const a = new RouterMetrics(new Registry(), { now: () => 5_000 });
    const b = new RouterMetrics(new Registry(), { now: () => 5_000 });
    for (let i = 0; i < 30; i++) a.revision(upstream('shop', 1)).record(200, 1, 5_000);
    for (let i = 0; i < 10; i++) b.revision(upstream('shop', 1)).record(500, 100, 5_000);
    b.revision(upstream('shop', 2)).record(200, 1, 5_000);
    b.request('shop', undefined, 502, 0);
    a.revision(upstream('cart', 9)).record(200, 1, 5_000);
    const t = appTraffic(app('shop', 1), [...a.traffic(60_000), ...b.traffic(60_000)], 60_000);
    assert.deepEqual(
      t.revisions.map((r) => [r.revision, r.active]),
      [
        [2, false],
        [1, true],
        [null, false],
      ],
    );
    const r1 = t.revisions[1]!;
    assert.equal(r1.requests, 40);
    assert.equal(r1.status['5xx'], 10);
    assert.equal(r1.errorRate, 0.25);
    assert.ok(r1.latencyMs.p99! > 90, "the slow router's requests are in the merged p99");
    assert.ok(r1.latencyMs.p50! < 2);
  });

  it('show the active revision before its first request', () => {
    const t = appTraffic(app('shop', 3), [], 60_000);
    assert.deepEqual(
      t.revisions.map((r) => [r.revision, r.requests, r.rps]),
      [[3, 0, 0]],
    );
    assert.deepEqual(appTraffic(app('fresh', undefined), [], 60_000).revisions, []);
  });

  describe('over HTTP', () => {
    let api: FastifyInstance;
    let fail: Error | undefined;
    const metrics = new RouterMetrics(new Registry());
    const source: TrafficSource = async (ms, name) => {
      if (fail) throw fail;
      return metrics.traffic(ms, name);
    };
    const store = {
      getApp: async (name: string) => (name === 'shop' ? app('shop', 1) : undefined),
      listApps: async () => [app('shop', 1)],
    } as unknown as Store;

    before(async () => {
      api = Fastify() as unknown as FastifyInstance;
      installErrorHandling(api);
      registerTrafficRoutes(api, { store, source });
      await api.ready();
      for (let i = 0; i < 4; i++) metrics.revision(upstream('shop', 1)).record(i === 0 ? 503 : 200, 1, performance.now());
    });
    after(() => api.close());

    it('answer the figures, 404 app_not_found, 400 for a bad window or name, 503 when the router cannot be read', async () => {
      const ok = await api.inject({ method: 'GET', url: '/api/v1/apps/shop/traffic?window=30s' });
      assert.equal(ok.statusCode, 200);
      const body = ok.json<{ windowSeconds: number; revisions: { revision: number; requests: number; errorRate: number }[] }>();
      assert.equal(body.windowSeconds, 30);
      assert.deepEqual(
        body.revisions.map((r) => [r.revision, r.requests, r.errorRate]),
        [[1, 4, 0.25]],
      );
      const all = await api.inject({ method: 'GET', url: '/api/v1/traffic' });
      assert.equal(all.json<{ windowSeconds: number }>().windowSeconds, 60, 'the default window');

      const missing = await api.inject({ method: 'GET', url: '/api/v1/apps/nope/traffic' });
      assert.equal(missing.statusCode, 404);
      assert.equal(missing.json<{ error: { code: string } }>().error.code, 'app_not_found');
      const name = await api.inject({ method: 'GET', url: '/api/v1/apps/%00evil/traffic' });
      assert.equal(name.json<{ error: { code: string } }>().error.code, 'invalid_name');
      const long = await api.inject({ method: 'GET', url: `/api/v1/apps/shop/traffic?window=${'1'.repeat(100)}` });
      assert.equal(long.statusCode, 400);
      const twice = await api.inject({ method: 'GET', url: '/api/v1/apps/shop/traffic?window=1s&window=2s' });
      assert.equal(twice.statusCode, 400, 'a repeated parameter is refused, not half-read');

      fail = new (await import('../core/errors.js')).PilotError('unavailable', 'the router process gave no traffic figures');
      const down = await api.inject({ method: 'GET', url: '/api/v1/apps/shop/traffic' });
      fail = undefined;
      assert.equal(down.statusCode, 503);
      assert.equal(down.json<{ error: { code: string; retryable: boolean } }>().error.retryable, true);
    });

    it('stream the figures with Accept: text/event-stream: a frame every `every`, a problem frame when the router fails, then on', async () => {
      const { request } = await import('undici');
      const address = await api.listen({ port: 0, host: '127.0.0.1' });
      const open = (path: string) => request(`${address}${path}`, { headers: { accept: 'text/event-stream' } });
      // Bad periods are refused before the stream starts, as a normal JSON error.
      for (const every of ['0s', '500ms', '2m', 'soon']) {
        const bad = await open(`/api/v1/apps/shop/traffic?every=${every}`);
        assert.equal(bad.statusCode, 400, every);
        assert.match(((await bad.body.json()) as { error: { message: string } }).error.message, /period of 1s to 60s/);
      }
      const missing = await open('/api/v1/apps/nope/traffic');
      assert.equal(missing.statusCode, 404);
      await missing.body.dump();

      const res = await open('/api/v1/apps/shop/traffic?window=30s&every=1s');
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- frames are checked field by field below
      const frames: { event: string; data: any }[] = [];
      let text = '';
      const t0 = performance.now();
      for await (const chunk of res.body) {
        text += chunk.toString();
        let cut: number;
        while ((cut = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, cut);
          text = text.slice(cut + 2);
          const event = /^event: (.+)$/m.exec(block)?.[1];
          const data = /^data: (.+)$/m.exec(block)?.[1];
          if (event && data) frames.push({ event, data: JSON.parse(data) });
          if (frames.length === 1)
            fail = new (await import('../core/errors.js')).PilotError('unavailable', 'the router process gave no traffic figures');
          if (frames.length === 2) fail = undefined;
        }
        if (frames.length >= 3) break;
      }
      res.body.destroy();
      assert.deepEqual(
        frames.map((f) => f.event),
        ['traffic', 'problem', 'traffic'],
      );
      assert.equal(frames[0]!.data.windowSeconds, 30);
      assert.deepEqual(
        frames[0]!.data.revisions.map((r: { revision: number; requests: number }) => [r.revision, r.requests]),
        [[1, 4]],
      );
      assert.equal(frames[1]!.data.error.code, 'unavailable');
      assert.ok(performance.now() - t0 >= 1500, 'frames are a period apart, not a busy loop');
      // Every app's figures stream the same way.
      const all = await open('/api/v1/traffic?every=1s');
      for await (const chunk of all.body) {
        if (chunk.toString().includes('event: traffic')) break;
      }
      all.body.destroy();
    });
  });
});

describe("a node router's figures", () => {
  it('are read at the URL with the token it sent, and a router that does not answer is `unavailable` naming its node', async () => {
    const http = await import('node:http');
    const { LATENCY_LAYOUT, emptySummary } = await import('../core/traffic-window.js');
    const { nodeRouterTraffic } = await import('./traffic-routes.js');
    const server = http.createServer((req, res) => {
      if (req.headers.authorization !== 'Bearer the-token-of-this-router') return void res.writeHead(401).end();
      const rows = [
        { app: 'shop', revision: 2, summary: emptySummary(60_000) },
        { app: 'shop', revision: 'two', summary: {} }, // a malformed row is not believed
      ];
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ layout: LATENCY_LAYOUT, windowMs: 60_000, revisions: rows }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.2', r));
    const url = `http://127.0.0.2:${(server.address() as { port: number }).port}`;
    try {
      const rows = await nodeRouterTraffic('node:n1', { url, token: 'the-token-of-this-router' }, 60_000, 'shop');
      assert.deepEqual(
        rows.map((r) => [r.app, r.revision]),
        [['shop', 2]],
      );
      await assert.rejects(
        nodeRouterTraffic('node:n1', { url, token: 'another-token-entirely' }, 60_000),
        (err: { code?: string; message: string }) => {
          assert.equal(err.code, 'unavailable');
          assert.match(err.message, /router of node n1 .* answered 401/);
          return true;
        },
      );
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    await assert.rejects(
      nodeRouterTraffic('node:n2', { url, token: 'the-token-of-this-router' }, 60_000),
      (err: { code?: string; message: string }) => {
        assert.equal(err.code, 'unavailable');
        assert.match(err.message, /router of node n2 \(http:\/\/127\.0\.0\.2:\d+\) gave no traffic figures/);
        return true;
      },
    );
  });
});

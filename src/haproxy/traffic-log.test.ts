import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { pino } from 'pino';
import type { Route } from '../core/routes.js';
import { figures } from '../core/traffic-window.js';
import { RouterMetrics } from '../router/metrics.js';
import { send, startUpstream, type TestUpstream } from '../router/test-support.js';
import { HaproxyRouter, haproxyMetricsText } from './haproxy-router.js';
import { InstanceRevisions, parseTrafficLine } from './traffic-log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('haproxy traffic log: lines (pure)', () => {
  it('parses what the log format writes, and nothing else', () => {
    assert.deepEqual(parseTrafficLine('k1 app_shop 127.0.0.2:4100 200 7 --\n', 'k1'), {
      app: 'shop',
      server: '127.0.0.2:4100',
      code: 200,
      ms: 7,
    });
    assert.deepEqual(parseTrafficLine('k1 pilot -:- 404 0 LR', 'k1'), { app: '', server: undefined, code: 404, ms: 0 });
    assert.deepEqual(parseTrafficLine('k1 pin1_my_app -:- 502 1 PR', 'k1'), { app: 'my_app', server: undefined, code: 502, ms: 1 });
    // The client left first (termination state C…): nginx's 499, as the embedded router records it.
    assert.equal(parseTrafficLine('k1 app_shop 127.0.0.1:9 -1 3012 CD', 'k1')?.code, 499);
    assert.equal(parseTrafficLine('k1 app_shop 127.0.0.1:9 200 -1 CD', 'k1')?.ms, 0);
    for (const bad of [
      'k2 shop 127.0.0.1:9 200 7 --',
      'k1 shop 127.0.0.1:9 200 7',
      'k1 shop 127.0.0.1:9 abc 7 --',
      'k1 a b c d e f',
      '',
      'k1',
    ])
      assert.equal(parseTrafficLine(bad, 'k1'), undefined, bad);
  });

  it('maps an instance address to its revision, for its app only, and forgets it after a while', () => {
    const m = new InstanceRevisions(1000);
    m.update([{ app: 'shop', revision: 3, host: '127.0.0.2', port: 4100 }], 0);
    assert.equal(m.revisionOf('shop', '127.0.0.2:4100'), 3);
    assert.equal(m.revisionOf('blog', '127.0.0.2:4100'), undefined);
    m.update([], 500); // gone from the table: still known for lines in flight
    assert.equal(m.revisionOf('shop', '127.0.0.2:4100'), 3);
    m.update([], 1501);
    assert.equal(m.revisionOf('shop', '127.0.0.2:4100'), undefined);
    m.update([{ app: 'shop', revision: 1, host: '[::1]', port: 80 }], 0);
    assert.equal(m.revisionOf('shop', '::1:80'), 1);
  });
});

describe('haproxy traffic log: the figures of real requests', () => {
  let dir: string;
  let r: HaproxyRouter;
  let client: Pool;
  let ok: TestUpstream;
  let failing: TestUpstream;
  const metrics = new RouterMetrics();

  before(async () => {
    ok = await startUpstream('ok');
    failing = await startUpstream('failing', (req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.writeHead(500).end('no'), 30));
    });
    dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-traffic-'));
    r = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }), traffic: metrics });
    client = new Pool(r.url, { connections: 4 });
  });
  after(async () => {
    await client.close();
    await r.close();
    await Promise.all([ok.close(), failing.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts requests, status classes and latency per app and revision, as the embedded router does', async () => {
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
    for (let i = 0; i < 3; i++) codes.push((await send(client, 'nosuch.localhost')).status);
    for (let i = 0; i < 2; i++) codes.push((await send(client, 'empty.localhost')).status);
    assert.equal(codes.filter((c) => c === 200).length, 20);
    assert.equal(codes.filter((c) => c === 500).length, 20);
    // A line from another local process (it does not know the key) changes nothing.
    const port = Number(/log 127\.0\.0\.1:(\d+)/.exec(readFileSync(join(dir, 'haproxy.cfg'), 'utf8'))![1]);
    const spoof = createSocket('udp4');
    await new Promise<void>((res) => spoof.send('guess app_shop 127.0.0.1:1 200 1 --', port, '127.0.0.1', () => res()));
    spoof.close();
    const by = async (): Promise<Map<string, ReturnType<typeof figures>>> => {
      await sleep(300); // the lines are datagrams: give the last ones a moment
      return new Map(metrics.traffic(60_000).map((t) => [`${t.app}/${t.revision}`, figures(t.summary)]));
    };
    let t = await by();
    for (let i = 0; i < 20 && (t.get('shop/2')?.requests ?? 0) < 20; i++) t = await by();
    assert.equal(t.get('shop/1')?.requests, 20);
    assert.equal(t.get('shop/1')?.status['2xx'], 20);
    assert.equal(t.get('shop/2')?.requests, 20);
    assert.equal(t.get('shop/2')?.status['5xx'], 20);
    assert.equal(t.get('shop/2')?.errorRate, 1);
    // Latency: the failing instance waits 30 ms before it answers.
    assert.ok((t.get('shop/2')?.latencyMs.p50 ?? 0) >= 25, JSON.stringify(t.get('shop/2')?.latencyMs));
    assert.ok((t.get('shop/1')?.latencyMs.p50 ?? -1) >= 0, 'the fast instance has latencies too');
    // The router's own answers: 404 for an unknown host (no app), 502 for an app with no instance.
    assert.equal(t.get('/null')?.status['4xx'], 3);
    assert.equal(t.get('empty/null')?.status['5xx'], 2);
    assert.equal(t.get('shop/null'), undefined, 'every shop request had its revision');
    assert.equal(r.health.trafficLines?.lost, 0);
    assert.match(haproxyMetricsText(r.health), /^pilot_haproxy_traffic_lines_lost_total 0$/m);
  });
});

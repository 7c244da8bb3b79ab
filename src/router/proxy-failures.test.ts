import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Registry } from 'prom-client';
import { Pool } from 'undici';
import { startRouter, type Router } from './proxy.js';
import { RoutingTable, type Upstream } from './routing-table.js';
import { closedPort, echo, send, startUpstream, until, type Echo, type TestUpstream, routeOf } from './test-support.js';

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return match?.value ?? 0;
}

describe('router: upstream failures, retries, timeouts, clients that leave', () => {
  const table = new RoutingTable();
  const registry = new Registry();
  let router: Router;
  let client: Pool;
  let good: TestUpstream;
  let refused: Upstream;

  before(async () => {
    good = await startUpstream('good');
    refused = { id: 'refused', app: 'hello', revision: 1, host: '127.0.0.1', port: await closedPort() };
    router = await startRouter({ host: '127.0.0.1', port: 0, table, registry, headersTimeoutMs: 300 });
    client = new Pool(router.url);
  });
  after(async () => {
    await client.close();
    await router.close();
    await good.close();
  });

  it('retries a GET once on another upstream when the first refuses the connection', async () => {
    const errorsBefore = await counter(registry, 'pilot_router_upstream_errors_total', { app: 'hello' });
    for (const method of ['GET', 'HEAD', 'DELETE', 'PUT']) {
      // A fresh table per request: the rotation starts at the refused upstream every time.
      table.set([routeOf('hello', ['hello.localhost'], [refused, good.upstream('hello')])]);
      const r = await send(client, 'hello.localhost', { method });
      assert.equal(r.status, 200, method);
      if (method !== 'HEAD') assert.equal((JSON.parse(r.text) as Echo).method, method);
    }
    assert.equal(await counter(registry, 'pilot_router_upstream_errors_total', { app: 'hello' }), errorsBefore + 4);
  });

  it('never retries a POST, and answers 502 naming the app without internals', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [refused, good.upstream('hello')])]);
    const before = good.requests;
    // Without a body, so that only the method stands between this request and a retry.
    const r = await send(client, 'hello.localhost', { method: 'POST' });
    assert.equal(r.status, 502);
    assert.match(r.text, /^pilot: an instance of app "hello" failed \(ECONNREFUSED\)\n/);
    assert.doesNotMatch(r.text, /\bat .*\.js:\d+/, 'no stack trace');
    assert.equal(good.requests, before, 'the POST went nowhere else');
  });

  it('does not retry a PUT that carries a body', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [refused, good.upstream('hello')])]);
    const r = await send(client, 'hello.localhost', { method: 'PUT', body: 'x' });
    assert.equal(r.status, 502);
  });

  it('answers 502 when the only upstream refuses, without retrying it', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [refused])]);
    const errorsBefore = await counter(registry, 'pilot_router_upstream_errors_total', { app: 'hello' });
    const r = await send(client, 'hello.localhost', { headers: { accept: 'application/json' } });
    assert.equal(await counter(registry, 'pilot_router_upstream_errors_total', { app: 'hello' }), errorsBefore + 1, 'one attempt only');
    assert.equal(r.status, 502);
    const body = JSON.parse(r.text) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'bad_gateway');
    assert.match(body.error.message, /app "hello"/);
  });

  it('retries a GET on the same upstream when it dropped the connection, but not a POST', async () => {
    let drops = 0;
    const flaky = await startUpstream('flaky', (req, res, self) => {
      if (req.headers['x-drop'] === 'always') return req.socket.destroy();
      if (req.headers['x-drop'] === 'yes' && drops++ % 2 === 0) return req.socket.destroy();
      echo(req, res, self);
    });
    try {
      table.set([routeOf('hello', ['hello.localhost'], [flaky.upstream('hello')])]);
      const get = await send(client, 'hello.localhost', { headers: { 'x-drop': 'yes' } });
      assert.equal(get.status, 200);
      assert.equal(flaky.requests, 2);
      const post = await send(client, 'hello.localhost', { method: 'POST', headers: { 'x-drop': 'yes' } });
      assert.equal(post.status, 502);
      assert.equal(flaky.requests, 3);
      const hopeless = await send(client, 'hello.localhost', { headers: { 'x-drop': 'always' } });
      assert.equal(hopeless.status, 502);
      assert.equal(flaky.requests, 5, 'one retry, not more');
    } finally {
      await flaky.close();
    }
  });

  it('answers 504 when the upstream sends no headers within the timeout', async () => {
    const mute = await startUpstream('mute', (req) => req.resume());
    try {
      table.set([routeOf('hello', ['hello.localhost'], [mute.upstream('hello')])]);
      const r = await send(client, 'hello.localhost', { method: 'POST', body: 'x' });
      assert.equal(r.status, 504);
      assert.match(r.text, /did not answer in time/);
      assert.equal(router.inflight('hello-mute'), 0);
    } finally {
      await mute.close();
    }
  });

  it('cuts the response short when the upstream dies mid-body, and keeps serving', async () => {
    const dying = await startUpstream('dying', (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '1000' });
      res.write('x'.repeat(100), () => setTimeout(() => res.destroy(), 20));
    });
    try {
      table.set([routeOf('hello', ['hello.localhost'], [dying.upstream('hello')])]);
      await assert.rejects(send(client, 'hello.localhost'));
      table.set([routeOf('hello', ['hello.localhost'], [good.upstream('hello')])]);
      assert.equal((await send(client, 'hello.localhost')).status, 200);
    } finally {
      await dying.close();
    }
  });

  it('aborts the upstream request when the client leaves mid-download or mid-upload', async () => {
    let upstreamSawClose = 0;
    const streamer = await startUpstream('streamer', (req, res) => {
      req.on('close', () => upstreamSawClose++);
      if (req.method === 'GET') {
        res.writeHead(200);
        res.write('first chunk');
        return; // never ends: only an abort releases it
      }
      req.resume(); // an upload that never completes
    });
    try {
      table.set([routeOf('hello', ['hello.localhost'], [streamer.upstream('hello', 7)])]);
      const leftBefore = await counter(registry, 'pilot_router_requests_total', { app: 'hello', revision: '7', code: '499' });

      await new Promise<void>((resolve, reject) => {
        const req = http.get({ port: router.port, host: '127.0.0.1', headers: { host: 'hello.localhost' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      });
      await until(() => upstreamSawClose === 1, 5_000, 'the upstream to see the download aborted');

      const upload = http.request({
        port: router.port,
        host: '127.0.0.1',
        method: 'POST',
        headers: { host: 'hello.localhost', 'content-length': '1000000' },
      });
      upload.on('error', () => {});
      upload.write(Buffer.alloc(64 * 1024));
      await until(() => streamer.requests === 2, 5_000, 'the upload to reach the upstream');
      upload.destroy();
      await until(() => upstreamSawClose === 2, 5_000, 'the upstream to see the upload aborted');

      await until(() => router.inflight('hello-streamer') === 0, 5_000, 'in-flight count to drop to 0');
      const left = await counter(registry, 'pilot_router_requests_total', { app: 'hello', revision: '7', code: '499' });
      assert.equal(left - leftBefore, 2);
      table.set([routeOf('hello', ['hello.localhost'], [good.upstream('hello')])]);
      assert.equal((await send(client, 'hello.localhost')).status, 200, 'the router is still serving');
    } finally {
      await streamer.close();
    }
  });
});

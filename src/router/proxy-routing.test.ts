import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Pool } from 'undici';
import { startRouter, type Router } from './proxy.js';
import { RoutingTable } from './routing-table.js';
import { TrustedProxies } from './headers.js';
import { send, startUpstream, until, type Echo, type TestUpstream, routeOf } from './test-support.js';

/** Send raw bytes to the router and read everything until it closes the connection. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(request));
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString('latin1')));
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
}

describe('router: routing, answers of its own, balancing, headers', () => {
  const table = new RoutingTable();
  let router: Router;
  let client: Pool;
  let a: TestUpstream;
  let b: TestUpstream;

  before(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b', undefined, '127.0.0.2');
    router = await startRouter({ host: '127.0.0.1', port: 0, table });
    client = new Pool(router.url);
  });
  after(async () => {
    await client.close();
    await router.close();
    await Promise.all([a.close(), b.close()]);
  });

  it('routes by Host, ignoring case and port', async () => {
    table.set([
      routeOf('hello', ['hello.localhost'], [a.upstream('hello')]),
      routeOf('world', ['world.localhost', 'www.example.test'], [b.upstream('world')]),
    ]);
    for (const [host, name] of [
      ['hello.localhost', 'a'],
      ['HeLLo.LocalHost:8080', 'a'],
      ['world.localhost', 'b'],
      ['WWW.example.test:80', 'b'],
    ]) {
      const r = await send(client, host!, { path: '/x?y=1' });
      assert.equal(r.status, 200, host);
      const e = JSON.parse(r.text) as Echo;
      assert.equal(e.name, name, host);
      assert.equal(e.url, '/x?y=1');
      assert.equal(e.headers.host, host, 'the original Host header reaches the app');
    }
  });

  it('answers 404 naming the host when no app serves it, as text or as JSON', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [a.upstream('hello')])]);
    const text = await send(client, 'nope.localhost:8080');
    assert.equal(text.status, 404);
    assert.match(String(text.headers['content-type']), /^text\/plain/);
    assert.match(text.text, /^pilot: no app serves host "nope\.localhost:8080"\n/);
    const json = await send(client, 'nope.localhost', { headers: { accept: 'application/json' } });
    assert.equal(json.status, 404);
    const body = JSON.parse(json.text) as { error: { code: string; message: string; retryable: boolean } };
    assert.equal(body.error.code, 'not_found');
    assert.match(body.error.message, /no app serves host "nope\.localhost"/);
    assert.equal(body.error.retryable, false);
  });

  it('answers 502 naming the app when it has no ready instance', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [])]);
    const text = await send(client, 'hello.localhost');
    assert.equal(text.status, 502);
    assert.match(text.text, /^pilot: no ready instance of app "hello"\n/);
    const json = await send(client, 'hello.localhost', { headers: { accept: 'application/problem+json' } });
    assert.equal(json.status, 502);
    assert.equal((JSON.parse(json.text) as { error: { code: string } }).error.code, 'bad_gateway');
  });

  it('answers 400 to an absolute-form request target', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [a.upstream('hello')])]);
    const before = a.requests;
    const reply = await rawExchange(
      router.port,
      'GET http://hello.localhost/ HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n',
    );
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.equal(a.requests, before, 'the app never saw it');
    assert.match(reply, /is not a path/);
  });

  it('spreads requests evenly across two idle upstreams', async () => {
    table.set([routeOf('hello', ['hello.localhost'], [a.upstream('hello'), b.upstream('hello')])]);
    const seen = { a: 0, b: 0 };
    for (let i = 0; i < 20; i++) {
      const e = JSON.parse((await send(client, 'hello.localhost')).text) as Echo;
      seen[e.name as 'a' | 'b']++;
    }
    assert.deepEqual(seen, { a: 10, b: 10 });
  });

  it('sends new requests to the upstream with fewer in flight', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const slow = await startUpstream('slow', (req, res) => {
      req.resume();
      void held.then(() => res.end('slow done'));
    });
    try {
      table.set([routeOf('hello', ['hello.localhost'], [slow.upstream('hello'), a.upstream('hello')])]);
      const pending = send(client, 'hello.localhost');
      await until(() => slow.requests === 1, 5_000, 'the first request to reach `slow`');
      assert.equal(router.inflight('hello-slow'), 1);
      // Rotation would now favour `a` then `slow`; least-in-flight must keep every request off `slow`.
      for (let i = 0; i < 6; i++) {
        const e = JSON.parse((await send(client, 'hello.localhost')).text) as Echo;
        assert.equal(e.name, 'a');
      }
      release();
      assert.equal((await pending).text, 'slow done');
      assert.equal(router.inflight('hello-slow'), 0);
    } finally {
      release();
      await slow.close();
    }
  });

  it('reuses keep-alive connections to the upstream', async () => {
    const c = await startUpstream('c');
    try {
      table.set([routeOf('hello', ['hello.localhost'], [c.upstream('hello')])]);
      for (let i = 0; i < 50; i++) assert.equal((await send(client, 'hello.localhost')).status, 200);
      assert.equal(c.requests, 50);
      assert.ok(c.connections <= 2, `50 sequential requests opened ${c.connections} upstream connections`);
    } finally {
      await c.close();
    }
  });

  it('strips hop-by-hop headers both ways and sets X-Forwarded-*', async () => {
    const h = await startUpstream('h', (req, res) => {
      req.resume();
      res.setHeader('Connection', 'keep-alive, X-Upstream-Hop');
      res.setHeader('X-Upstream-Hop', 'internal');
      res.setHeader('Keep-Alive', 'timeout=5');
      res.setHeader('Proxy-Authenticate', 'Basic');
      res.setHeader('X-App', 'kept');
      res.end(JSON.stringify({ headers: req.headers }));
    });
    try {
      table.set([routeOf('hello', ['hello.localhost'], [h.upstream('hello')])]);
      // Raw, because HTTP clients manage Connection themselves and would not send these as written.
      const reply = await rawExchange(
        router.port,
        'GET / HTTP/1.1\r\nHost: Hello.localhost:8080\r\nConnection: close, X-Client-Hop\r\nX-Client-Hop: 1\r\n' +
          'TE: trailers\r\nProxy-Authorization: Basic abc\r\nX-Forwarded-For: 203.0.113.7\r\nX-Keep: yes\r\n' +
          'X-Forwarded-Proto: https\r\nForwarded: for=203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\nX-Forwarded-Port: 443\r\n\r\n',
      );
      const [head, body] = reply.split('\r\n\r\n') as [string, string];
      const got = (JSON.parse(body) as { headers: Record<string, string> }).headers;
      for (const name of ['x-client-hop', 'te', 'proxy-authorization']) assert.equal(got[name], undefined, name);
      assert.equal(got['x-keep'], 'yes');
      assert.equal(got['host'], 'Hello.localhost:8080');
      // No --trusted-proxy: the client's own forwarding claims are dropped, the router's set.
      assert.equal(got['x-forwarded-for'], '127.0.0.1');
      assert.equal(got['x-forwarded-proto'], 'http');
      assert.equal(got['x-forwarded-host'], 'Hello.localhost:8080');
      for (const name of ['forwarded', 'x-real-ip', 'x-forwarded-port']) assert.equal(got[name], undefined, name);
      assert.match(head, /^x-app: kept$/im);
      assert.doesNotMatch(head, /x-upstream-hop|proxy-authenticate|keep-alive: timeout/i);
      assert.match(head, /^connection: close$/im, "the router's own connection handling answers the client");
    } finally {
      await h.close();
    }
  });

  it('believes forwarding headers only from a --trusted-proxy address, appending to X-Forwarded-For', async () => {
    const h = await startUpstream('h', (req, res) => {
      req.resume();
      res.end(JSON.stringify({ headers: req.headers }));
    });
    const trusting = await startRouter({ host: '127.0.0.1', port: 0, table, trusted: new TrustedProxies(['10.0.0.0/8', '127.0.0.1/32']) });
    const elsewhere = await startRouter({ host: '127.0.0.1', port: 0, table, trusted: new TrustedProxies('10.0.0.0/8, ::1') });
    try {
      table.set([routeOf('hello', ['hello.localhost'], [h.upstream('hello')])]);
      const spoof =
        'GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\nX-Forwarded-For: 203.0.113.7\r\n' +
        'X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\nForwarded: for=203.0.113.7;proto=https\r\nX-Real-IP: 203.0.113.7\r\n\r\n';
      const headersOf = async (port: number): Promise<Record<string, string>> =>
        (JSON.parse((await rawExchange(port, spoof)).split('\r\n\r\n')[1]!) as { headers: Record<string, string> }).headers;
      const t = await headersOf(trusting.port);
      assert.equal(t['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
      assert.equal(t['x-forwarded-proto'], 'https');
      assert.equal(t['x-forwarded-host'], 'shop.example');
      assert.equal(t['forwarded'], 'for=203.0.113.7;proto=https');
      assert.equal(t['x-real-ip'], '203.0.113.7');
      const u = await headersOf(elsewhere.port);
      assert.equal(u['x-forwarded-for'], '127.0.0.1');
      assert.equal(u['x-forwarded-proto'], 'http');
      assert.equal(u['x-forwarded-host'], 'hello.localhost');
      assert.equal(u['forwarded'], undefined);
      assert.equal(u['x-real-ip'], undefined);
    } finally {
      await trusting.close();
      await elsewhere.close();
      await h.close();
    }
  });
});

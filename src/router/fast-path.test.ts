import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Registry } from 'prom-client';
import { engineFromEnv, startRouter, type Router } from './proxy.js';
import { RouterMetrics } from './metrics.js';
import { RoutingTable, type TableRoute } from './routing-table.js';
import { routeOf, startUpstream, until, type TestUpstream } from './test-support.js';

/** Send raw bytes on one connection; collect everything until the router closes it or `quietMs` of silence. */
function raw(port: number, bytes: string | Buffer | (string | Buffer)[], quietMs = 400): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const parts = Array.isArray(bytes) ? bytes : [bytes];
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    };
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    };
    s.on('connect', () => {
      let i = 0;
      const next = () => {
        if (i >= parts.length) return quiet();
        s.write(parts[i++]!);
        setTimeout(next, 20);
      };
      next();
    });
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      quiet();
    });
    s.on('close', done);
    s.on('error', reject);
  });
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

describe('router: the fast engine', () => {
  const table = new RoutingTable();
  const routes: TableRoute[] = [];
  let fast: Router;
  let node: Router;
  let app: TestUpstream;
  let closer: TestUpstream;

  before(async () => {
    app = await startUpstream('app', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (req.url === '/chunked') {
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
          res.write('one,');
          setTimeout(() => {
            res.write('two');
            res.addTrailers({ 'x-sum': '42' });
            res.end();
          }, 20);
          return;
        }
        if (req.url === '/big') {
          const big = Buffer.alloc(3 * 1024 * 1024, 'b');
          res.writeHead(200, { 'content-length': big.length });
          res.end(big);
          return;
        }
        if (req.url === '/eof') {
          // No length, no chunking: the body ends with the connection (HTTP/1.0 style).
          res.socket?.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end');
          res.socket?.end();
          return;
        }
        res.writeHead(200, {
          'content-type': 'application/json',
          'set-cookie': ['a=1', 'b=2'],
          connection: 'keep-alive, x-hop',
          'x-hop': 'h',
        });
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            headers: req.headers,
            bytes: body.length,
            sha: createHash('sha256').update(body).digest('hex'),
          }),
        );
      });
    });
    // An app that closes every idle keep-alive connection at once: the router's pooled socket is stale at the next request.
    closer = await startUpstream('closer');
    closer.server.keepAliveTimeout = 1;
    routes.push(
      routeOf('web', ['web.localhost'], [app.upstream('web')]),
      routeOf('stale', ['stale.localhost'], [closer.upstream('stale')]),
    );
    table.set(routes);
    fast = await startRouter({ host: '127.0.0.1', port: 0, table, metrics: new RouterMetrics(new Registry()), engine: 'fast' });
    node = await startRouter({ host: '127.0.0.1', port: 0, table, metrics: new RouterMetrics(new Registry()), engine: 'node' });
  });

  after(async () => {
    await fast.close();
    await node.close();
    await app.close();
    await closer.close();
  });

  it("serves a plain GET itself, with the node engine's header rules both ways", async () => {
    const before = fast.fastStats()!;
    const text = await raw(
      fast.port,
      'GET /x?y=1 HTTP/1.1\r\nHost: web.localhost\r\nX-Forwarded-For: 6.6.6.6\r\nX-Pilot-Revision: 1\r\nX-Keep: k\r\nConnection: keep-alive\r\n\r\n',
    );
    const after = fast.fastStats()!;
    assert.equal(after.served - before.served, 1);
    assert.equal(after.handedOff - before.handedOff, 0);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n/);
    assert.match(text, /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n/);
    assert.doesNotMatch(text, /x-hop/i, 'a header the app listed in Connection is hop-by-hop');
    const echo = JSON.parse(text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1)) as { url: string; headers: Record<string, string> };
    assert.equal(echo.url, '/x?y=1');
    assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1', "a client's own X-Forwarded-For is dropped");
    assert.equal(echo.headers['x-forwarded-host'], 'web.localhost');
    assert.equal(echo.headers['x-forwarded-proto'], 'http');
    assert.equal(echo.headers['x-pilot-revision'], undefined);
    assert.equal(echo.headers['x-keep'], 'k');
  });

  it('answers hostile and unusual requests exactly as the node engine does (it hands them to node:http)', async () => {
    const cases = [
      'POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      'GET http://web.localhost/ HTTP/1.1\r\nHost: web.localhost\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web.localhost\r\nX: a\x01b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web.localhost\r\nX: a\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web.localhost\r\nBad Name: 1\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: web.localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      'GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: nobody.localhost\r\nAccept: application/json\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.0\r\nHost: web.localhost\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: web.localhost\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n',
      'DELETE /d HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 0\r\n\r\n',
      'BREW /pot HTTP/1.1\r\nHost: web.localhost\r\n\r\n',
      'GARBAGE\r\n\r\n',
    ];
    for (const c of cases) {
      const [a, b] = await Promise.all([raw(fast.port, c), raw(node.port, c)]);
      const label = JSON.stringify(c.slice(0, 70));
      assert.deepEqual(statuses(a), statuses(b), label);
      assert.ok(statuses(a).length > 0 || /^$/.test(b), label);
      // The router's own error bodies are the same too.
      const body = (t: string) => (/x-pilot-error/i.test(t) ? t.slice(t.indexOf('\r\n\r\n')) : '');
      assert.equal(body(a), body(b), label);
    }
  });

  it('serves pipelined requests in order, and hands the connection over mid-way for one it does not serve', async () => {
    const before = fast.fastStats()!;
    const get = (p: string) => `GET ${p} HTTP/1.1\r\nHost: web.localhost\r\n\r\n`;
    const text = await raw(fast.port, [
      get('/1') + get('/2') + `POST /3 HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n\r\nhel`,
      'lo' + get('/4'),
      // chunked request body: node:http's from here on, on the same connection
      'POST /5 HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' + get('/6'),
    ]);
    assert.deepEqual(statuses(text), [200, 200, 200, 200, 200, 200]);
    assert.deepEqual(
      [...text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]),
      ['/1', '/2', '/3', '/4', '/5', '/6'],
    );
    assert.match(text, /"url":"\/3".*"bytes":5/);
    assert.match(text, /"url":"\/5".*"bytes":3/);
    const after = fast.fastStats()!;
    assert.equal(after.served - before.served, 4);
    assert.equal(after.handedOff - before.handedOff, 1);
  });

  it('passes a chunked response through with its trailers, a 3 MB one, and one that ends with the connection', async () => {
    const chunked = await raw(fast.port, 'GET /chunked HTTP/1.1\r\nHost: web.localhost\r\nTE: trailers\r\n\r\n');
    assert.match(chunked, /\r\nTransfer-Encoding: chunked\r\n/);
    assert.match(chunked, /\r\n0\r\nx-sum: 42\r\n\r\n$/i);
    assert.match(chunked, /one,/);
    const big = Buffer.from(await raw(fast.port, 'GET /big HTTP/1.1\r\nHost: web.localhost\r\n\r\n'), 'latin1');
    const head = big.indexOf('\r\n\r\n');
    assert.equal(big.length - head - 4, 3 * 1024 * 1024);
    const eof = await raw(fast.port, 'GET /eof HTTP/1.1\r\nHost: web.localhost\r\n\r\n');
    assert.match(eof, /\r\nConnection: close\r\n\r\nuntil the end$/);
  });

  it('streams a 4 MB request body with Content-Length, bytes intact', async () => {
    const body = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const text = await raw(fast.port, [`PUT /up HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: ${body.length}\r\n\r\n`, body], 800);
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, new RegExp(`"bytes":${body.length},"sha":"${createHash('sha256').update(body).digest('hex')}"`));
  });

  it('retries a GET whose pooled connection the app dropped, once; never a POST', async () => {
    // A raw app: answers the first request of each connection, drops the connection at the second
    // (as an app closing an idle keep-alive connection just as a request arrives).
    const dropper = net.createServer((sock) => {
      let n = 0;
      let buf = '';
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n')) {
          buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
          if (++n === 1) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          else sock.destroy();
        }
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => dropper.listen(0, '127.0.0.1', () => r()));
    const port = (dropper.address() as net.AddressInfo).port;
    try {
      table.set([...routes, routeOf('drop', ['drop.localhost'], [{ id: 'drop-1', app: 'drop', revision: 1, host: '127.0.0.1', port }])]);
      const get = 'GET / HTTP/1.1\r\nHost: drop.localhost\r\n\r\n';
      // The same client connection: the router reuses its pooled socket for the second GET.
      const gets = await raw(fast.port, [get, get, get]);
      assert.deepEqual(statuses(gets), [200, 200, 200]);
      const post = 'POST / HTTP/1.1\r\nHost: drop.localhost\r\nContent-Length: 1\r\n\r\nx';
      // The first POST goes on the pooled connection the last GET's retry opened, which drops it: 502, not retried.
      const posts = await raw(fast.port, [post, post]);
      assert.deepEqual(statuses(posts), [502, 200]);
      assert.match(posts, /x-pilot-error: bad_gateway/i);
    } finally {
      table.set(routes);
      await new Promise<void>((r) => dropper.close(() => r()));
    }
  });

  it('counts a request in flight until its response ends, and a client that leaves as gone', async () => {
    const slow = await startUpstream('slow', (req, res) => {
      req.resume();
      setTimeout(() => res.end('late'), 400);
    });
    try {
      table.set([...routes, routeOf('slow', ['slow.localhost'], [slow.upstream('slow')])]);
      const s = net.connect(fast.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('GET / HTTP/1.1\r\nHost: slow.localhost\r\n\r\n');
      await until(() => fast.inflight('slow-slow') === 1, 5_000, 'in flight');
      s.destroy();
      await until(() => fast.inflight('slow-slow') === 0, 5_000, 'released');
    } finally {
      await slow.close();
    }
  });
});

describe('router: PILOT_ROUTER_ENGINE', () => {
  it('is node by default, fast when asked, and refused with the allowed values otherwise', async () => {
    assert.equal(engineFromEnv({}), 'node');
    assert.equal(engineFromEnv({ PILOT_ROUTER_ENGINE: '' }), 'node');
    assert.equal(engineFromEnv({ PILOT_ROUTER_ENGINE: 'node' }), 'node');
    assert.equal(engineFromEnv({ PILOT_ROUTER_ENGINE: 'fast' }), 'fast');
    for (const bad of ['FAST', 'turbo', 'fast ', 'x'.repeat(500)]) {
      assert.throws(
        () => engineFromEnv({ PILOT_ROUTER_ENGINE: bad }),
        (e: Error & { code?: string; hint?: string }) =>
          e.code === 'bad_request' && /PILOT_ROUTER_ENGINE/.test(e.message) && e.message.length < 200 && /"fast"/.test(e.hint ?? ''),
      );
    }
    const r = await startRouter({ host: '127.0.0.1', port: 0, table: new RoutingTable(), engine: 'node' });
    assert.equal(r.fastStats(), undefined);
    await r.close();
  });
});

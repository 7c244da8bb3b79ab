import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { Pool } from 'undici';
import { startRouter, type Router } from './proxy.js';
import { RoutingTable } from './routing-table.js';
import { closedPort, send, startUpstream, until, type TestUpstream, routeOf } from './test-support.js';

const MB = 1024 * 1024;
const SIZE = 20 * MB;
const CHUNK = Buffer.alloc(64 * 1024, 'pilot-');

describe('router: streaming bodies, metrics, upgrades', () => {
  const table = new RoutingTable();
  const registry = new Registry();
  let router: Router;
  let client: Pool;
  let app: TestUpstream;
  // Hand-offs that prove streaming: each side waits for the other to see the first bytes.
  let uploadSeen: () => void = () => {};
  let downloadSeen: Promise<void> = Promise.resolve();

  before(async () => {
    app = await startUpstream('app', (req, res) => {
      if (req.url === '/upload') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          if (bytes === 0) uploadSeen();
          bytes += c.length;
          hash.update(c);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
      } else if (req.url === '/download') {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no length: chunked
        res.write(CHUNK);
        void downloadSeen.then(() => Readable.from(chunks(SIZE - CHUNK.length)).pipe(res));
      } else {
        req.resume();
        res.end('ok');
      }
    });
    app.server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
      if (req.url === '/reject') {
        // Refuses the handshake, then answers whatever else arrives on the connection by echoing it.
        const answer = (c: Buffer) => socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${c.length}\r\n\r\n${c.toString('latin1')}`);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno');
        if (head.length > 0) answer(head);
        socket.on('data', answer);
        return;
      }
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `X-Seen-Forwarded-For: ${String(req.headers['x-forwarded-for'])}\r\n\r\n`,
      );
      socket.pipe(socket); // echo
    });
    router = await startRouter({ host: '127.0.0.1', port: 0, table, registry });
    client = new Pool(router.url);
    table.set([routeOf('hello', ['hello.localhost'], [app.upstream('hello', 3)])]);
  });
  after(async () => {
    await client.close();
    await router.close();
    await app.close();
  });

  /** Open a WebSocket-style upgrade through the router; resolves with the piped socket. */
  function upgrade(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const req = http.request({
        port: router.port,
        host: '127.0.0.1',
        headers: { host: 'hello.localhost', connection: 'Upgrade', upgrade: 'websocket' },
      });
      req.on('upgrade', (res: http.IncomingMessage, s: Socket) => {
        assert.equal(res.statusCode, 101);
        assert.equal(res.headers['x-seen-forwarded-for'], '127.0.0.1');
        resolve(s);
      });
      req.on('response', (res) => reject(new Error(`expected an upgrade, got ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Raw upgrade request (plus optional trailing bytes); returns all the router sent back within 300 ms. */
  function rawUpgrade(host: string, protocol: string, path = '/', extra = ''): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      // `extra` goes twice: in the same packet as the request (the router gets it as `head`) and
      // a moment later (it arrives on the socket).
      const s = net.connect(router.port, '127.0.0.1', () => {
        s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n\r\n${extra}`);
        if (extra !== '') setTimeout(() => s.write(extra), 100);
      });
      let data = '';
      s.on('data', (c: Buffer) => (data += c.toString('latin1')));
      s.on('error', reject);
      setTimeout(() => {
        s.destroy();
        resolve(data);
      }, 300);
    });
  }

  function* chunks(total: number): Generator<Buffer> {
    for (let sent = 0; sent < total; sent += CHUNK.length) yield CHUNK.subarray(0, Math.min(CHUNK.length, total - sent));
  }

  it('streams a 20 MB upload to the app before the client has finished sending it', async () => {
    const seen = new Promise<void>((r) => (uploadSeen = r));
    const expected = createHash('sha256');
    async function* body(): AsyncGenerator<Buffer> {
      yield CHUNK;
      expected.update(CHUNK);
      await seen; // a buffering proxy would never pass the first chunk on, and this would hang
      for (const c of chunks(SIZE - CHUNK.length)) {
        expected.update(c);
        yield c;
      }
    }
    const res = await client.request({
      path: '/upload',
      method: 'POST',
      headers: { host: 'hello.localhost' },
      body: Readable.from(body()),
    });
    const got = (await res.body.json()) as { bytes: number; sha256: string };
    assert.equal(res.statusCode, 200);
    assert.equal(got.bytes, SIZE);
    assert.equal(got.sha256, expected.digest('hex'));
  });

  it('streams a 20 MB download to the client before the app has finished writing it', async () => {
    let sawFirst: () => void = () => {};
    downloadSeen = new Promise<void>((r) => (sawFirst = r));
    const res = await client.request({ path: '/download', method: 'GET', headers: { host: 'hello.localhost' } });
    assert.equal(res.statusCode, 200);
    let bytes = 0;
    for await (const c of res.body as AsyncIterable<Buffer>) {
      if (bytes === 0) sawFirst();
      bytes += c.length;
    }
    assert.equal(bytes, SIZE);
  });

  it('counts requests and latency per app, revision and status code', async () => {
    const v4 = await startUpstream('v4');
    try {
      table.set([routeOf('hello', ['hello.localhost'], [app.upstream('hello', 3), v4.upstream('hello', 4)])]);
      for (let i = 0; i < 10; i++) assert.equal((await send(client, 'hello.localhost', { path: '/x' })).status, 200);
      await send(client, 'unknown.localhost');
      const requests = (await registry.getSingleMetric('pilot_router_requests_total')!.get()).values;
      const count = (labels: Record<string, string>) =>
        requests.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
      assert.equal(count({ app: 'hello', revision: '4', code: '200' }), 5);
      assert.ok((count({ app: 'hello', revision: '3', code: '200' }) ?? 0) >= 5 + 2, 'revision 3 also served the streaming tests');
      assert.equal(count({ app: '', revision: '', code: '404' }), 1);
      const text = await registry.metrics();
      assert.match(text, /pilot_router_request_duration_seconds_count\{app="hello",revision="4"\} 5/);
    } finally {
      table.set([routeOf('hello', ['hello.localhost'], [app.upstream('hello', 3)])]);
      await v4.close();
    }
  });

  it('passes a WebSocket upgrade through and pipes bytes both ways', async () => {
    const socket = await upgrade();
    assert.equal(router.inflight('hello-app'), 1, 'an open upgraded connection is in flight');
    socket.write('ping');
    const echoed = await new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString())));
    assert.equal(echoed, 'ping');
    socket.destroy();
    await until(() => router.inflight('hello-app') === 0, 5_000, 'the upgraded connection to be released');
  });

  it('retries an upgrade on another upstream when the first refuses the connection', async () => {
    const refused = { id: 'refused', app: 'hello', revision: 3, host: '127.0.0.1', port: await closedPort() };
    table.set([routeOf('hello', ['hello.localhost'], [refused, app.upstream('hello', 3)])]);
    try {
      const socket = await upgrade();
      socket.write('pong');
      assert.equal(await new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString()))), 'pong');
      socket.destroy();
    } finally {
      table.set([routeOf('hello', ['hello.localhost'], [app.upstream('hello', 3)])]);
    }
  });

  it('answers 501 to an upgrade that is not WebSocket, and keeps rejected handshakes out of the app', async () => {
    const h2c = await rawUpgrade('hello.localhost', 'h2c');
    assert.match(h2c, /^HTTP\/1\.1 501 /);
    assert.match(h2c, /only WebSocket upgrades are passed through, not "h2c"/);
    // The app refuses this handshake (no 101); a second request smuggled on the same connection
    // must not reach it.
    const before = app.requests;
    const refused = await rawUpgrade('hello.localhost', 'websocket', '/reject', 'GET /smuggled HTTP/1.1\r\nHost: other.localhost\r\n\r\n');
    assert.match(refused, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(refused, /smuggled/);
    assert.equal(app.requests, before, 'a rejected handshake is no request, and nothing else went through');
  });

  it('answers an upgrade for an unknown host with a clear 404', async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({
        port: router.port,
        host: '127.0.0.1',
        headers: { host: 'nope.localhost', connection: 'Upgrade', upgrade: 'websocket' },
      });
      req.on('response', resolve);
      req.on('upgrade', () => reject(new Error('unexpected upgrade')));
      req.on('error', reject);
      req.end();
    });
    let text = '';
    for await (const c of res) text += String(c);
    assert.equal(res.statusCode, 404);
    assert.match(text, /no app serves host "nope\.localhost"/);
  });
});

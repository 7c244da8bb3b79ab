import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type Server } from 'node:net';
import { allocatePort } from '../os/ports.js';
import { httpProbe, tcpProbe } from './probes.js';
import { waitFor } from './runtimes/test-support.js';

const HOST = '127.0.0.1';

async function listen(t: TestContext, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  t.after(() => {
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const addr = server.address();
  assert.ok(typeof addr === 'object' && addr !== null);
  return addr.port;
}

/** An app: /ok 200, /missing 404, /boom 500, /stream sends headers then an endless body. */
async function app(t: TestContext): Promise<{ port: number; server: Server }> {
  const server = createHttpServer((req, res) => {
    if (req.url === '/ok') return void res.end('fine');
    if (req.url === '/boom') return void res.writeHead(500).end('oops');
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('more\n'), 10);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(404).end('no');
  });
  return { port: await listen(t, server), server };
}

const connections = (server: Server): Promise<number> =>
  new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));

void describe('httpProbe', () => {
  void it('is ok for 200 and for 404 (the app answers), with the status', async (t) => {
    const { port } = await app(t);
    const ok = await httpProbe({ host: HOST, port, path: '/ok', timeoutMs: 2_000 });
    assert.deepEqual({ ok: ok.ok, status: ok.status, error: ok.error }, { ok: true, status: 200, error: undefined });
    assert.ok(ok.durationMs >= 0 && ok.durationMs < 2_000);
    const missing = await httpProbe({ host: HOST, port, path: '/missing', timeoutMs: 2_000 });
    assert.equal(missing.ok, true);
    assert.equal(missing.status, 404);
  });

  void it('is not ok for a 5xx', async (t) => {
    const { port } = await app(t);
    const r = await httpProbe({ host: HOST, port, path: '/boom', timeoutMs: 2_000 });
    assert.deepEqual({ ok: r.ok, status: r.status, error: r.error }, { ok: false, status: 500, error: 'HTTP 500' });
  });

  void it('does not wait for the body and leaves no socket open', async (t) => {
    const { port, server } = await app(t);
    const r = await httpProbe({ host: HOST, port, path: '/stream', timeoutMs: 2_000 });
    assert.equal(r.ok, true);
    await waitFor(async () => (await connections(server)) === 0, 'the probe connection to close');
  });

  void it('reports a refused connection', async () => {
    const port = await allocatePort(HOST); // bound and released: nothing listens there
    const r = await httpProbe({ host: HOST, port, path: '/', timeoutMs: 2_000 });
    assert.deepEqual({ ok: r.ok, error: r.error, code: r.code }, { ok: false, error: 'connection refused', code: 'ECONNREFUSED' });
  });

  void it('times out on a server that accepts but never answers, and closes the connection', async (t) => {
    const server = createTcpServer((s) => s.resume()); // swallows the request, never answers
    const port = await listen(t, server);
    const r = await httpProbe({ host: HOST, port, path: '/', timeoutMs: 200 });
    assert.deepEqual({ ok: r.ok, error: r.error }, { ok: false, error: 'timeout after 200 ms' });
    assert.ok(r.durationMs >= 190, `gave up after ${r.durationMs} ms`);
    await waitFor(async () => (await connections(server)) === 0, 'the probe connection to close');
  });

  void it('reports a connection reset', async (t) => {
    const server = createTcpServer((s) => s.resetAndDestroy());
    const port = await listen(t, server);
    const r = await httpProbe({ host: HOST, port, path: '/', timeoutMs: 2_000 });
    assert.equal(r.ok, false);
    assert.equal(r.error, 'connection reset');
  });

  void it('turns a bad spec into a failed result, not a throw', async () => {
    const r = await httpProbe({ host: HOST, port: 1, path: '/with space', timeoutMs: 200 });
    assert.equal(r.ok, false);
    assert.match(r.error ?? '', /path|character/i);
  });
});

void describe('tcpProbe', () => {
  void it('is ok when the port accepts connections', async (t) => {
    const server = createTcpServer((s) => s.destroy());
    const port = await listen(t, server);
    const r = await tcpProbe({ host: HOST, port, timeoutMs: 2_000 });
    assert.equal(r.ok, true);
    assert.equal(r.error, undefined);
  });

  void it('reports a refused connection', async () => {
    const port = await allocatePort(HOST);
    const r = await tcpProbe({ host: HOST, port, timeoutMs: 2_000 });
    assert.deepEqual({ ok: r.ok, error: r.error }, { ok: false, error: 'connection refused' });
  });
});

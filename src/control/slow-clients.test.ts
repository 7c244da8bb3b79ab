import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { installBodyDeadline, slowClientServerOptions } from './slow-clients.js';

/** Send `head`, then `body` a byte every 100 ms; resolves with ms until the server closed and what it said. */
function trickle(port: number, head: string, body: string): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let answer = '';
    let i = 0;
    const s = connect(port, '127.0.0.1', () => s.write(head));
    const timer = setInterval(() => {
      if (i < body.length && !s.destroyed) s.write(body[i++]!);
    }, 100);
    s.on('data', (d: Buffer) => (answer += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(timer);
      resolve({ ms: performance.now() - t0, answer });
    });
  });
}

describe('slow clients', () => {
  let api: FastifyInstance;
  let port = 0;
  before(async () => {
    api = Fastify({ http: slowClientServerOptions }) as unknown as FastifyInstance;
    installBodyDeadline(api, 500);
    api.post('/json', async (req) => ({ got: req.body }));
    api.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    api.post('/stream', async (req) => {
      let n = 0;
      for await (const c of req.body as AsyncIterable<Buffer>) n += c.length;
      return { n };
    });
    await api.listen({ host: '127.0.0.1', port: 0 });
    const a = api.server.address();
    port = typeof a === 'object' && a ? a.port : 0;
  });
  after(() => api.close());

  it('cuts a JSON body that trickles past the deadline', async () => {
    const body = JSON.stringify({ x: 'y'.repeat(40) });
    const r = await trickle(
      port,
      `POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
      body,
    );
    assert.ok(r.ms < 3000, `cut after ${r.ms} ms`);
    assert.doesNotMatch(r.answer, /^HTTP\/1\.1 200/);
  });

  it('lets a quick JSON body and a slow streamed upload through', async () => {
    const quick = await fetch(`http://127.0.0.1:${port}/json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    assert.deepEqual(await quick.json(), { got: { a: 1 } });
    const body = 'z'.repeat(12);
    const r = await trickle(
      port,
      `POST /stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
      body,
    );
    assert.match(r.answer, /^HTTP\/1\.1 200/, 'a streamed body is not cut by the JSON deadline');
    assert.match(r.answer, /"n":12/);
  });
});

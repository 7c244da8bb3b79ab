import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from './client.js';

let server: Server;
let base: string;

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (req.url === '/slow') return; // never answers: the timeout's case
      if (req.url === '/denied') {
        res.statusCode = 401;
        res.setHeader('content-type', 'application/json');
        return res.end(JSON.stringify({ error: { code: 'unauthorized', message: 'no such token', hint: 'log in', retryable: false } }));
      }
      if (req.url === '/text') return res.end('plain ünïcode '.repeat(5000));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, auth: req.headers.authorization, type: req.headers['content-type'] ?? null, body }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** The answer or the PilotError (code, message): what both transports must agree on. */
async function outcome(c: ApiClient, ...args: Parameters<ApiClient['call']>): Promise<unknown> {
  try {
    return { ok: await c.call(...args) };
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
}

describe("ApiClient over node:http (the agent's transport)", () => {
  it('answers as the fetch transport does: JSON, text, bodies, errors from the server', async () => {
    const cases: Parameters<ApiClient['call']>[] = [
      ['GET', '/a'],
      ['POST', '/b', { x: 1, s: 'ü' }],
      ['POST', '/c', 'raw text', { contentType: 'text/plain; charset=utf-8' }],
      ['PATCH', '/d', { big: 'y'.repeat(200_000) }],
      ['GET', '/text'],
      ['POST', '/denied', {}],
    ];
    for (const args of cases) {
      const viaFetch = await outcome(new ApiClient(base, 'tok-1'), ...args);
      const viaHttp = await outcome(new ApiClient(base, 'tok-1', 'node-http'), ...args);
      assert.deepEqual(viaHttp, viaFetch, `${args[0]} ${args[1]}`);
    }
  });

  it('says the server cannot be reached, with the same cause, when nothing listens', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((r) => closed.close(r));
    const viaFetch = (await outcome(new ApiClient(url, 't'), 'GET', '/x')) as { code: string; message: string };
    const viaHttp = (await outcome(new ApiClient(url, 't', 'node-http'), 'GET', '/x')) as { code: string; message: string };
    assert.equal(viaHttp.code, 'server_unreachable');
    assert.deepEqual(viaHttp, viaFetch);
  });

  it('gives up after its timeout with server_unreachable', async () => {
    const r = (await outcome(new ApiClient(base, 't', 'node-http'), 'POST', '/slow', {}, { timeoutMs: 300 })) as { code: string };
    assert.equal(r.code, 'server_unreachable');
  });
});

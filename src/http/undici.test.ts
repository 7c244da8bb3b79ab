import { execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import * as full from 'undici';
import * as slim from './undici.js';

let server: Server;
let base: string;
const seen: { method: string; url: string; body: string }[] = [];

before(async () => {
  server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body });
      res.setHeader('x-echo', `${req.method} ${req.url}`);
      res.end(JSON.stringify({ method: req.method, url: req.url, body, host: req.headers.host }));
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

/** Status, the echo header and the parsed body: what both implementations must agree on. */
async function answer(p: Promise<full.Dispatcher.ResponseData>) {
  const res = await p;
  return { status: res.statusCode, echo: res.headers['x-echo'], body: (await res.body.json()) as Record<string, unknown> };
}

/** The answer, or the error thrown (synchronously or not): name, code and message. */
async function outcome(f: () => Promise<full.Dispatcher.ResponseData>) {
  try {
    return await answer(f());
  } catch (err) {
    return { name: (err as Error).name, code: (err as { code?: string }).code, message: (err as Error).message };
  }
}

describe('http/undici (undici without its index)', () => {
  it('answers like undici.request for url forms, path, query, method defaults and bodies', async () => {
    const cases: [unknown, Record<string, unknown> | undefined][] = [
      [`${base}/a?x=1`, undefined],
      [new URL(`${base}/b/c?y=%20z`), undefined],
      [base, { path: 'no-slash?q=1' }],
      [`${base}/ignored`, { path: '/with-slash' }], // undici refuses a path in both (invalid url)
      [`${base}/`, { path: '/with-slash' }],
      [`${base}/put`, { body: 'payload' }], // a body without a method defaults to PUT
      [`${base}/post`, { method: 'POST', body: 'x'.repeat(70_000) }],
      [`${base}/del`, { method: 'DELETE' }],
      [`${base}/héllo/%2F..`, { headers: { 'x-a': 'b' } }],
    ];
    for (const [url, opts] of cases) {
      const a = await outcome(() => full.request(url as string, opts as never));
      const b = await outcome(() => slim.request(url as string, opts as never));
      assert.deepEqual(b, a, `${String(url)} ${JSON.stringify(opts)}`);
    }
    assert.deepEqual(
      seen.filter((s) => s.url === '/put').map((s) => s.method),
      ['PUT', 'PUT'],
    );
  });

  it('refuses the same bad input with the same undici errors', async () => {
    const bad: [unknown, unknown][] = [
      [undefined, undefined],
      [42, undefined],
      [base, 'opts'],
      [base, { path: 7 }],
      [base, { agent: {} }],
      ['not a url', undefined],
      ['ftp://127.0.0.1/x', undefined],
    ];
    for (const [url, opts] of bad) {
      const a = await outcome(() => full.request(url as string, opts as never));
      const b = await outcome(() => slim.request(url as string, opts as never));
      assert.ok('name' in a, `undici accepted ${String(url)}`);
      assert.deepEqual(b, a);
    }
  });

  it('gives Pool and Agent their request methods, and the same classes and errors as the index', async () => {
    assert.equal(slim.Pool, full.Pool);
    assert.equal(slim.Agent, full.Agent);
    const pool = new slim.Pool(base, { connections: 2 });
    const agent = new slim.Agent({ keepAliveTimeout: 1000 });
    try {
      const viaPool = await answer(pool.request({ path: '/pool?n=1', method: 'GET' }));
      assert.equal(viaPool.status, 200);
      assert.equal(viaPool.echo, 'GET /pool?n=1');
      const viaAgent = await answer(slim.request(`${base}/agent`, { dispatcher: agent, method: 'PATCH', body: 'p' }));
      assert.equal(viaAgent.echo, 'PATCH /agent');
      assert.equal(viaAgent.body.body, 'p');
      // A refused connection is undici's own error class, whichever entry loaded it.
      const closed = new slim.Pool('http://127.0.0.1:1');
      const err = await closed.request({ path: '/', method: 'GET' }).catch((e: unknown) => e);
      await closed.close();
      assert.equal((err as { code?: string }).code, 'ECONNREFUSED');
      const aborted = await outcome(() => slim.request(`${base}/x`, { dispatcher: agent, signal: AbortSignal.abort() }));
      assert.deepEqual(aborted, await outcome(() => full.request(`${base}/x`, { dispatcher: agent, signal: AbortSignal.abort() })));
      assert.equal((aborted as { name?: string }).name, 'AbortError');
    } finally {
      await pool.close();
      await agent.close();
    }
  });

  it('sends through the global dispatcher that undici.setGlobalDispatcher sets', async () => {
    const before = full.getGlobalDispatcher();
    let dispatched = 0;
    const counting = new full.Agent().compose((dispatch) => (opts, handler) => {
      dispatched++;
      return dispatch(opts, handler);
    });
    full.setGlobalDispatcher(counting);
    try {
      const res = await answer(slim.request(`${base}/global`));
      assert.equal(res.status, 200);
      assert.equal(dispatched, 1);
    } finally {
      full.setGlobalDispatcher(before);
      await counting.close();
    }
  });

  it('loads neither undici/index.js nor fetch on its own, and its Pool still has request', () => {
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(new URL('./undici.js', import.meta.url).href)});
         const { createRequire } = await import('node:module');
         const cache = Object.keys(createRequire(import.meta.url).cache);
         console.log(JSON.stringify({
           index: cache.some((f) => f.endsWith('/undici/index.js')),
           fetch: cache.some((f) => f.includes('/undici/lib/web/')),
           request: typeof new m.Pool('http://127.0.0.1:1').request,
         }));`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.deepEqual(JSON.parse(out), { index: false, fetch: false, request: 'function' });
  });
});

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Pool, request } from 'undici';
import { startNodeRouter, type NodeRouter } from './node-router.js';
import { closedPort, routeOf, send, startUpstream, until, type TestUpstream } from './test-support.js';

const log = pino({ level: 'silent' });

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Sync {
  auth: string | undefined;
  body: { version: string; inflight: Record<string, number>; traffic?: { url: string; token: string } };
}

/** A stand-in control plane: answers each sync with `answer()` and records what it was sent. */
async function fakeControlPlane(
  answer: (s: Sync) => { status: number; body: unknown },
): Promise<{ url: string; syncs: Sync[]; close: () => Promise<void> }> {
  const syncs: Sync[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      const s: Sync = { auth: req.headers.authorization, body: JSON.parse(text) as Sync['body'] };
      syncs.push(s);
      const a = answer(s);
      // Hold an up-to-date poll a little, as the real feed does (without it the loop would spin).
      setTimeout(() => res.writeHead(a.status, { 'content-type': 'application/json' }).end(JSON.stringify(a.body)), 50);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    syncs,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe('node router', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });
  const home = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'pilot-node-router-'));
    cleanup.push(() => rmSync(d, { recursive: true, force: true }));
    return d;
  };
  const upstream = async (name: string, host: string): Promise<TestUpstream> => {
    const u = await startUpstream(name, undefined, host);
    cleanup.push(() => u.close());
    return u;
  };
  const started = async (o: Parameters<typeof startNodeRouter>[0]): Promise<{ r: NodeRouter; pool: Pool }> => {
    const r = await startNodeRouter(o);
    const pool = new Pool(r.url);
    cleanup.push(async () => {
      await pool.close();
      await r.close();
    });
    return { r, pool };
  };

  it('serves its saved table before it has a credential, syncs with the credential once there is one, and saves the new table privately', async () => {
    const a = await upstream('a', '127.0.0.2');
    const b = await upstream('b', '127.0.0.3');
    const agentHome = home();
    mkdirSync(join(agentHome, 'router'), { recursive: true });
    writeFileSync(
      join(agentHome, 'router', 'table.json'),
      JSON.stringify({ version: 'old.1', routes: [routeOf('shop', ['shop.localhost'], [a.upstream('shop')])] }),
    );
    const cp = await fakeControlPlane((s) =>
      s.body.version === 'e.1'
        ? { status: 200, body: { version: 'e.1' } }
        : { status: 200, body: { version: 'e.1', routes: [routeOf('shop', ['shop.localhost'], [b.upstream('shop')])] } },
    );
    cleanup.push(() => cp.close());
    const node: { credential?: string } = {}; // the agent registers later
    const { r, pool } = await started({ agentHome, host: '127.0.0.1', port: 0, servers: [cp.url], credential: () => node.credential, log });
    assert.equal(JSON.parse((await send(pool, 'shop.localhost')).text).name, 'a', 'the saved table, at once');
    await new Promise((res) => setTimeout(res, 700));
    assert.equal(cp.syncs.length, 0, 'no credential: nothing is sent');
    node.credential = 'pilot_node_credential_1';
    await until(() => cp.syncs.length > 0, 10_000, 'a sync');
    assert.equal(cp.syncs[0]!.auth, 'Bearer pilot_node_credential_1');
    assert.equal(cp.syncs[0]!.body.version, 'old.1');
    assert.equal(cp.syncs[0]!.body.traffic?.url, r.trafficUrl);
    await eventually(
      async () => (JSON.parse((await send(pool, 'shop.localhost')).text) as { name: string }).name === 'b',
      'the new table in force',
    );
    const file = join(agentHome, 'router', 'table.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version, 'e.1');
    assert.equal(statSync(join(agentHome, 'router')).mode & 0o777, 0o700);
  });

  it('answers its traffic figures only with the token it sent in its sync', async () => {
    const a = await upstream('a', '127.0.0.2');
    const table = [routeOf('shop', ['shop.localhost'], [a.upstream('shop')])];
    const cp = await fakeControlPlane(() => ({ status: 200, body: { version: 'e.1', routes: table } }));
    cleanup.push(() => cp.close());
    const { r, pool } = await started({ agentHome: home(), host: '127.0.0.1', port: 0, servers: [cp.url], credential: () => 'c', log });
    await until(() => cp.syncs.length > 0, 10_000, 'a sync');
    const token = cp.syncs[0]!.body.traffic!.token;
    await until(() => cp.syncs.length > 1, 10_000, 'the table applied');
    for (let i = 0; i < 3; i++) assert.equal((await send(pool, 'shop.localhost')).status, 200);
    const ask = async (auth: string | undefined, path = '/traffic?window=60s&app=shop'): Promise<{ status: number; text: string }> => {
      const res = await request(r.trafficUrl + path, { headers: auth === undefined ? {} : { authorization: auth } });
      return { status: res.statusCode, text: await res.body.text() };
    };
    assert.equal((await ask(undefined)).status, 401);
    assert.equal((await ask('Bearer wrong-token-of-some-length')).status, 401);
    // Its pilot_router_* metrics, with the same token (issue #14: node routers' /metrics, relayed by the control plane).
    const metrics = await ask(`Bearer ${token}`, '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /pilot_router_requests_total\{app="shop",revision="1",code="200"\} 3/);
    assert.equal((await ask(undefined, '/metrics')).status, 401);
    assert.equal((await ask(`Bearer ${token}`, '/nothing')).status, 404);
    assert.equal((await ask(`Bearer ${token}`, '/traffic?window=forever')).status, 400);
    const ok = await ask(`Bearer ${token}`);
    assert.equal(ok.status, 200);
    const rows = (JSON.parse(ok.text) as { revisions: { app: string; revision: number; summary: { requests: number } }[] }).revisions;
    assert.deepEqual(
      rows.map((x) => [x.app, x.revision, x.summary.requests]),
      [['shop', 1, 3]],
    );
  });

  it('keeps serving through refusals and errors of the control plane, tries the next URL, and starts empty on an unreadable saved table', async () => {
    const a = await upstream('a', '127.0.0.2');
    const agentHome = home();
    mkdirSync(join(agentHome, 'router'), { recursive: true });
    writeFileSync(join(agentHome, 'router', 'table.json'), '{"version": "x.1", "routes": [trunc');
    let refuse = true;
    const cp = await fakeControlPlane(() =>
      refuse
        ? { status: 401, body: { error: { message: 'missing or invalid router token' } } }
        : { status: 200, body: { version: 'e.1', routes: [routeOf('shop', ['shop.localhost'], [a.upstream('shop')])] } },
    );
    cleanup.push(() => cp.close());
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const { pool } = await started({ agentHome, host: '127.0.0.1', port: 0, servers: [dead, cp.url], credential: () => 'revoked', log });
    assert.equal((await send(pool, 'shop.localhost')).status, 404, 'nothing known yet');
    await until(() => cp.syncs.length >= 2, 15_000, 'syncs refused');
    assert.equal((await send(pool, 'shop.localhost')).status, 404);
    refuse = false;
    await eventually(async () => (await send(pool, 'shop.localhost')).status === 200, 'the table once the control plane accepts');
  });

  it('two node routers fed the same table put every sticky key on the same variant, and split by the same weights', async () => {
    const a = await upstream('a', '127.0.0.2');
    const b = await upstream('b', '127.0.0.3');
    const split = {
      ...routeOf('shop', ['shop.localhost'], [a.upstream('shop', 1), b.upstream('shop', 2)], { 1: 70, 2: 30 }),
      sticky: { by: { cookie: 'pilot_ab' }, seed: 'shop/exp-1' },
    };
    const plain = routeOf('plain', ['plain.localhost'], [a.upstream('plain', 1), b.upstream('plain', 2)], { 1: 90, 2: 10 });
    const cp = await fakeControlPlane((s) =>
      s.body.version === 'e.1'
        ? { status: 200, body: { version: 'e.1' } }
        : { status: 200, body: { version: 'e.1', routes: [split, plain] } },
    );
    cleanup.push(() => cp.close());
    const one = await started({ agentHome: home(), host: '127.0.0.2', port: 0, servers: [cp.url], credential: () => 'n1', log });
    const two = await started({ agentHome: home(), host: '127.0.0.3', port: 0, servers: [cp.url], credential: () => 'n2', log });
    for (const r of [one, two]) await eventually(async () => (await send(r.pool, 'plain.localhost')).status === 200, 'the table');
    const name = (x: { text: string }): string => (JSON.parse(x.text) as { name: string }).name;
    let onB = 0;
    for (let i = 0; i < 200; i++) {
      const cookie = `pilot_ab=user-${i}-${'x'.repeat(i % 7)}`;
      const [x, y] = await Promise.all([one, two].map((r) => send(r.pool, 'shop.localhost', { headers: { cookie } })));
      assert.equal(name(x!), name(y!), `key ${i} goes to one variant on both routers`);
      if (name(x!) === 'b') onB++;
    }
    assert.ok(onB > 30 && onB < 90, `about 30 % of 200 keys on b: ${onB}`);
    for (const r of [one, two]) {
      const names: string[] = [];
      for (let i = 0; i < 100; i++) names.push(name(await send(r.pool, 'plain.localhost')));
      assert.equal(names.filter((n) => n === 'b').length, 10, 'exactly 10 of 100 by smooth weighted round-robin');
    }
  });
});

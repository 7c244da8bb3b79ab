import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Pool } from 'undici';
import { Registry } from 'prom-client';
import { startRouter, type Router } from './proxy.js';
import { RoutingTable, type Route } from './routing-table.js';
import { RouterMetrics } from './metrics.js';
import { readCookie, withSetCookie } from './sticky.js';
import { send, startUpstream, type Echo, type TestUpstream, routeOf } from './test-support.js';
import type { Sticky } from '../core/experiment.js';

const COOKIE: Sticky = { by: { cookie: 'uid' }, seed: 'shop/1' };
const HEADER: Sticky = { by: { header: 'X-User' }, seed: 'shop/2' };

/** The cookie pair (name=value) of a Set-Cookie list, for the one named `name`. */
function cookieOf(setCookie: string | string[] | undefined, name: string): string | undefined {
  const list = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie];
  return list.map((c) => c.split(';')[0]!).find((pair) => pair.startsWith(`${name}=`));
}

describe('router: sticky splits (A/B experiments)', () => {
  const table = new RoutingTable();
  const registry = new Registry();
  const metrics = new RouterMetrics(registry);
  let router: Router;
  let client: Pool;
  let a: TestUpstream; // revision 1
  let b: TestUpstream; // revision 2
  let b2: TestUpstream; // revision 2, second instance
  let c: TestUpstream; // another app

  before(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b', undefined, '127.0.0.2');
    // The app sets cookies of its own: ours must be added beside them, never replace them.
    b2 = await startUpstream(
      'b2',
      (req, res, self) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': ['session=s1; Path=/', 'theme=dark'] });
          res.end(JSON.stringify({ name: self.name, method: req.method, url: req.url, headers: req.headers }));
        });
      },
      '127.0.0.3',
    );
    c = await startUpstream('c');
    router = await startRouter({ host: '127.0.0.1', port: 0, table, metrics });
    client = new Pool(router.url, { connections: 16 });
  });
  after(async () => {
    await client.close();
    await router.close();
    await Promise.all([a.close(), b.close(), b2.close(), c.close()]);
  });

  const shop = (sticky: Sticky | undefined, weights: Record<number, number> = { 1: 50, 2: 50 }, ups = [a, b]): Route => ({
    ...routeOf(
      'shop',
      ['shop.localhost'],
      ups.map((u) => u.upstream('shop', u === a ? 1 : 2)),
      weights,
    ),
    ...(sticky ? { sticky } : {}),
  });
  const other = (weights: Record<number, number>): Route => routeOf('other', ['other.localhost'], [c.upstream('other', 1)], weights);
  const variant = (r: { text: string }): 'a' | 'b' => ((JSON.parse(r.text) as Echo).name === 'a' ? 'a' : 'b');

  it('a cookie user stays on one variant across 1,000 requests; Set-Cookie only on the first', async () => {
    table.set([shop(COOKIE)]);
    const first = await send(client, 'shop.localhost');
    assert.equal(first.status, 200);
    const pair = cookieOf(first.headers['set-cookie'], 'uid');
    assert.ok(pair, 'a first visit gets the cookie');
    const attrs = String(first.headers['set-cookie']);
    assert.match(attrs, /; Path=\/; Max-Age=31536000; HttpOnly; SameSite=Lax/);
    const mine = variant(first);
    let moved = 0;
    let setAgain = 0;
    let left = 1000;
    const loop = async (): Promise<void> => {
      while (left-- > 0) {
        const r = await send(client, 'shop.localhost', { headers: { cookie: `other=1; ${pair!}; more=2` } });
        assert.equal(r.status, 200);
        if (variant(r) !== mine) moved++;
        if (r.headers['set-cookie'] !== undefined) setAgain++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, loop));
    assert.equal(moved, 0, 'the user never changed variant');
    assert.equal(setAgain, 0, 'Set-Cookie only when the router assigned an id');
  });

  it('distinct users split by the weights, each on their own variant (500 users, 50/50 and 10/90)', async () => {
    for (const [wa, wb] of [
      [50, 50],
      [90, 10],
    ] as const) {
      table.set([shop(COOKIE, { 1: wa, 2: wb })]);
      const users: { cookie: string; variant: 'a' | 'b' }[] = [];
      for (let i = 0; i < 500; i++) {
        const r = await send(client, 'shop.localhost');
        users.push({ cookie: cookieOf(r.headers['set-cookie'], 'uid')!, variant: variant(r) });
      }
      const bShare = users.filter((u) => u.variant === 'b').length / users.length;
      // 500 random ids: the standard deviation is at most 2.2 %; 9 % is 4 sigma.
      assert.ok(Math.abs(bShare - wb / 100) < 0.09, `b got ${(bShare * 100).toFixed(1)} % at ${wb} %`);
      for (const u of users.slice(0, 50)) {
        const r = await send(client, 'shop.localhost', { headers: { cookie: u.cookie } });
        assert.equal(variant(r), u.variant);
      }
    }
  });

  it("keeps the app's own Set-Cookie headers and adds ours", async () => {
    table.set([shop(COOKIE, { 1: 0, 2: 100 }, [a, b2])]);
    const r = await send(client, 'shop.localhost');
    const list = r.headers['set-cookie'] as string[];
    assert.ok(Array.isArray(list), String(list));
    assert.deepEqual(list.slice(0, 2), ['session=s1; Path=/', 'theme=dark']);
    assert.ok(cookieOf(list, 'uid'));
    const again = await send(client, 'shop.localhost', { headers: { cookie: cookieOf(list, 'uid')! } });
    assert.deepEqual(again.headers['set-cookie'], ['session=s1; Path=/', 'theme=dark']);
  });

  it('the pin wins over the assignment, and a pinned request gets no cookie', async () => {
    table.set([shop(COOKIE)]);
    const first = await send(client, 'shop.localhost');
    const pair = cookieOf(first.headers['set-cookie'], 'uid')!;
    const mine = variant(first);
    const otherRev = mine === 'a' ? '2' : '1';
    for (let i = 0; i < 20; i++) {
      const r = await send(client, 'shop.localhost', { headers: { cookie: pair, 'x-pilot-revision': otherRev } });
      assert.notEqual(variant(r), mine);
    }
    const pinned = await send(client, 'shop.localhost', { headers: { 'x-pilot-revision': '2' } });
    assert.equal(variant(pinned), 'b');
    assert.equal(pinned.headers['set-cookie'], undefined);
  });

  it('by header: the same header value stays on one variant; without it the weighted split applies and nothing is set', async () => {
    table.set([shop(HEADER)]);
    const seen = new Map<string, Set<string>>();
    for (let round = 0; round < 5; round++) {
      for (let u = 0; u < 40; u++) {
        const r = await send(client, 'shop.localhost', { headers: { 'x-user': `user-${u}` } });
        assert.equal(r.headers['set-cookie'], undefined);
        const s = seen.get(`user-${u}`) ?? new Set();
        s.add(variant(r));
        seen.set(`user-${u}`, s);
      }
    }
    for (const [u, s] of seen) assert.equal(s.size, 1, `${u} saw ${[...s].join(',')}`);
    const variants = new Set([...seen.values()].flatMap((s) => [...s]));
    assert.deepEqual([...variants].sort(), ['a', 'b'], '40 users land on both variants');
    // No header: smooth weighted round-robin, exactly alternating at 50/50.
    const counts = { a: 0, b: 0 };
    for (let i = 0; i < 100; i++) counts[variant(await send(client, 'shop.localhost'))]++;
    assert.deepEqual(counts, { a: 50, b: 50 });
  });

  it('assignments survive a weight change of another app and a new table of the same split', async () => {
    table.set([shop(COOKIE), other({ 1: 100 })]);
    const users: { cookie: string; variant: 'a' | 'b' }[] = [];
    for (let i = 0; i < 100; i++) {
      const r = await send(client, 'shop.localhost');
      users.push({ cookie: cookieOf(r.headers['set-cookie'], 'uid')!, variant: variant(r) });
    }
    table.set([shop(COOKIE), { ...other({ 1: 100 }), hosts: ['other.localhost', 'other2.localhost'] }]);
    for (const u of users) assert.equal(variant(await send(client, 'shop.localhost', { headers: { cookie: u.cookie } })), u.variant);
  });

  it("falls back to the other variant when the user's has no ready instance, and counts it", async () => {
    table.set([shop(COOKIE)]);
    // Find a user of b.
    let pair = '';
    for (let i = 0; i < 100 && pair === ''; i++) {
      const r = await send(client, 'shop.localhost');
      if (variant(r) === 'b') pair = cookieOf(r.headers['set-cookie'], 'uid')!;
    }
    assert.ok(pair);
    table.set([
      {
        app: 'shop',
        hosts: ['shop.localhost'],
        sticky: COOKIE,
        backends: [
          { revision: 1, weight: 50, upstreams: [a.upstream('shop', 1)] },
          { revision: 2, weight: 50, upstreams: [] },
        ],
      },
    ]);
    for (let i = 0; i < 5; i++) assert.equal(variant(await send(client, 'shop.localhost', { headers: { cookie: pair } })), 'a');
    const text = await registry.metrics();
    assert.match(text, /pilot_router_sticky_fallbacks_total\{app="shop"\} 5/);
    table.set([shop(COOKIE)]);
    assert.equal(variant(await send(client, 'shop.localhost', { headers: { cookie: pair } })), 'b', 'back on b once it is ready');
  });

  it('hostile keys: huge, odd, empty and repeated cookie or header values never crash the router', async () => {
    table.set([shop(COOKIE)]);
    const odd = [
      `uid=${'x'.repeat(12_000)}`,
      'uid=',
      'uid',
      '=; ;;; =uid',
      'uid="quoted value"',
      'uid=\u00e9\u00e8',
      `uid=${'%00'.repeat(100)}`,
      'uid=a; uid=b',
    ];
    for (const cookie of odd) {
      const r = await send(client, 'shop.localhost', { headers: { cookie } });
      assert.equal(r.status, 200, cookie.slice(0, 40));
    }
    // A head over Node's limit is refused by Node itself (431), and the router keeps serving.
    const huge = await send(client, 'shop.localhost', { headers: { cookie: `uid=${'y'.repeat(20_000)}` } }).catch((e: Error) => e);
    if (!(huge instanceof Error)) assert.equal(huge.status, 431);
    table.set([shop(HEADER)]);
    for (const v of ['x'.repeat(12_000), ' ', '\t', 'ü', '"']) {
      const r = await send(client, 'shop.localhost', { headers: { 'x-user': v } });
      assert.equal(r.status, 200);
    }
    // A raw request with the header repeated, and bytes Node accepts in values.
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(router.port, '127.0.0.1', () => {
        s.write('GET / HTTP/1.1\r\nHost: shop.localhost\r\nX-User: one\r\nX-User: two\r\nConnection: close\r\n\r\n');
      });
      let buf = '';
      s.on('data', (d: Buffer) => (buf += d.toString('latin1')));
      s.on('end', () => resolve(buf));
      s.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 200/);
    assert.equal((await send(client, 'shop.localhost', { headers: { 'x-user': 'still-up' } })).status, 200);
  });
});

describe('router/sticky helpers', () => {
  it('readCookie finds the named cookie among others, unquotes, ignores empty values and look-alikes', () => {
    assert.equal(readCookie('a=1; uid=abc; b=2', 'uid'), 'abc');
    assert.equal(readCookie('xuid=1; uid=2', 'uid'), '2');
    assert.equal(readCookie('uid="q"', 'uid'), 'q');
    assert.equal(readCookie('uid=; other=1', 'uid'), undefined);
    assert.equal(readCookie('uid', 'uid'), undefined);
    assert.equal(readCookie(undefined, 'uid'), undefined);
    assert.equal(readCookie(['a=1', 'uid=z'], 'uid'), 'z');
    assert.equal(readCookie('uid=a=b', 'uid'), 'a=b');
  });

  it('withSetCookie appends after a single or a list of the app’s own', () => {
    assert.deepEqual(withSetCookie({}, 'u=1'), { 'set-cookie': ['u=1'] });
    assert.deepEqual(withSetCookie({ 'set-cookie': 's=1' }, 'u=1'), { 'set-cookie': ['s=1', 'u=1'] });
    assert.deepEqual(withSetCookie({ 'set-cookie': ['s=1', 't=2'] }, 'u=1'), { 'set-cookie': ['s=1', 't=2', 'u=1'] });
    const h = { a: '1' };
    assert.equal(withSetCookie(h, undefined), h);
  });
});

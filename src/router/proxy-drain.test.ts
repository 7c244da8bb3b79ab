import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from 'undici';
import { startRouter, type Router } from './proxy.js';
import { RoutingTable } from './routing-table.js';
import { echo, send, startUpstream, until, type Echo, type TestUpstream, routeOf } from './test-support.js';

describe('router: draining upstreams that leave the table', () => {
  const table = new RoutingTable();
  let router: Router;
  let client: Pool;
  const started: TestUpstream[] = [];
  const upstream = async (...args: Parameters<typeof startUpstream>) => {
    const u = await startUpstream(...args);
    started.push(u);
    return u;
  };

  before(async () => {
    router = await startRouter({ host: '127.0.0.1', port: 0, table });
    client = new Pool(router.url);
  });
  after(async () => {
    await client.close();
    await router.close();
    await Promise.all(started.map((u) => u.close()));
  });

  it('lets a slow in-flight request finish after its upstream is removed, and sends new ones elsewhere', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const slow = await upstream('slow', (req, res) => {
      req.resume();
      if (req.url === '/slow') void held.then(() => res.end('slow done'));
      else echo(req, res, slow);
    });
    const other = await upstream('other', undefined, '127.0.0.2');
    table.set([routeOf('hello', ['hello.localhost'], [slow.upstream('hello'), other.upstream('hello')])]);

    const pending = send(client, 'hello.localhost', { path: '/slow' });
    await until(() => router.inflight('hello-slow') === 1, 5_000, 'the slow request to be in flight');
    const change = table.set([routeOf('hello', ['hello.localhost'], [other.upstream('hello')])]);
    assert.deepEqual(
      change.removed.map((u) => u.id),
      ['hello-slow'],
    );

    for (let i = 0; i < 5; i++) {
      assert.equal((JSON.parse((await send(client, 'hello.localhost')).text) as Echo).name, 'other');
    }
    assert.equal(slow.requests, 1, 'the removed upstream got nothing new');
    assert.equal(router.inflight('hello-slow'), 1, 'still draining');

    release();
    const done = await pending;
    assert.equal(done.status, 200);
    assert.equal(done.text, 'slow done');
    assert.equal(router.inflight('hello-slow'), 0);
    // Its pool closed once drained: the upstream sees its keep-alive connection go away now, not
    // after the idle keep-alive timeout (3-4 s) that would close it anyway.
    await until(() => slow.open.size === 0, 1_500, "the drained pool's connections to close");
  });

  it('closes by letting the requests in flight finish, then refusing connections', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const slow = await upstream('closing', (req, res) => {
      req.resume();
      void held.then(() => res.end('finished'));
    });
    const own = new RoutingTable();
    own.set([routeOf('hello', ['hello.localhost'], [slow.upstream('hello')])]);
    const r2 = await startRouter({ host: '127.0.0.1', port: 0, table: own });
    const c2 = new Pool(r2.url);
    try {
      const pending = send(c2, 'hello.localhost');
      await until(() => r2.inflight('hello-closing') === 1, 5_000, 'the request to be in flight');
      let closed = false;
      const closing = r2.close().then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(closed, false, 'close waits for the request in flight');
      release();
      assert.equal((await pending).text, 'finished');
      await closing;
      await assert.rejects(send(c2, 'hello.localhost'), /ECONNREFUSED/);
    } finally {
      release();
      await c2.destroy();
      await r2.close();
    }
  });

  it('serves a steady stream of requests without a failure while the table moves from A to B to C', async () => {
    const a = await upstream('a');
    const b = await upstream('b', undefined, '127.0.0.2');
    const c = await upstream('c', undefined, '127.0.0.3');
    const route = (u: TestUpstream, revision: number) => [routeOf('hello', ['hello.localhost'], [u.upstream('hello', revision)])];
    table.set(route(a, 1));

    let stop = false;
    const failures: string[] = [];
    const served: string[] = [];
    const loop = async () => {
      while (!stop) {
        try {
          const r = await send(client, 'hello.localhost', {
            method: served.length % 2 === 0 ? 'GET' : 'POST',
            body: served.length % 2 === 0 ? '' : 'x',
          });
          if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
          else served.push((JSON.parse(r.text) as Echo).name);
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const loops = Array.from({ length: 8 }, loop);

    // The control plane's drain: switch the table, wait for in-flight to reach 0, then stop the old.
    for (const [from, to, revision] of [
      [a, b, 2],
      [b, c, 3],
    ] as const) {
      await until(() => served.filter((n) => n === from.name).length >= 50, 10_000, `traffic on ${from.name}`);
      table.set(route(to, revision));
      await until(() => router.inflight(`hello-${from.name}`) === 0, 5_000, `${from.name} to drain`);
      const countAtStop = from.requests;
      await from.close();
      await until(() => served.filter((n) => n === to.name).length >= 50, 10_000, `traffic on ${to.name}`);
      assert.equal(from.requests, countAtStop);
    }
    stop = true;
    await Promise.all(loops);

    assert.deepEqual(failures, []);
    const last = served.lastIndexOf('a');
    assert.ok(served.indexOf('c') > last, 'no request reached A after C started serving');
    assert.ok(served.length >= 150);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TableFeed } from './table-feed.js';
import type { Route } from './routing-table.js';

const route = (ids: string[]): Route[] => [
  {
    app: 'a',
    hosts: ['a.localhost'],
    backends: [{ revision: 1, weight: 100, upstreams: ids.map((id, i) => ({ id, host: '127.0.0.1', port: 4000 + i })) }],
  },
];

describe('TableFeed', () => {
  it('gives a router the table when its version is not the current one, and holds the poll otherwise', async () => {
    const feed = new TableFeed();
    feed.set(route(['x']));
    const first = await feed.poll(undefined, 0);
    assert.deepEqual(first.routes, route(['x']));
    const held = feed.poll(first.version, 5000);
    feed.set(route(['x', 'y']));
    const next = await held;
    assert.notEqual(next.version, first.version);
    assert.deepEqual(next.routes, route(['x', 'y']));
    const idle = await feed.poll(next.version, 10);
    assert.equal(idle.routes, undefined);
  });

  it('does not bump the version for the same table', async () => {
    const feed = new TableFeed();
    feed.set(route(['x']));
    const v = feed.version;
    feed.set(route(['x']));
    assert.equal(feed.version, v);
  });

  it('gives nothing before the first table (a router keeps the one it has)', async () => {
    const feed = new TableFeed();
    const a = await feed.poll(undefined, 10);
    assert.equal(a.routes, undefined);
  });

  it('counts a removed upstream busy until the router reports at the version that removed it', () => {
    const feed = new TableFeed();
    feed.set(route(['x', 'y']));
    const before = feed.version;
    feed.report(before, {});
    feed.set(route(['y']));
    assert.equal(feed.inflight('x'), 1, 'the router may still send to x');
    feed.report(before, {});
    assert.equal(feed.inflight('x'), 1);
    feed.report(feed.version, { x: 2 });
    assert.equal(feed.inflight('x'), 2);
    feed.report(feed.version, {});
    assert.equal(feed.inflight('x'), 0);
  });

  it('ignores reports of a previous control plane (another epoch)', () => {
    const feed = new TableFeed();
    feed.set(route(['x']));
    feed.set(route([]));
    feed.report('deadbeef.99', {});
    assert.equal(feed.inflight('x'), 1);
  });

  it('sums the in-flight counts of every router, each confirmed at the removing version', () => {
    const feed = new TableFeed();
    feed.set(route(['x', 'y']));
    feed.report(feed.version, { x: 1 });
    feed.report(feed.version, { x: 2 }, 'node:a');
    feed.report(feed.version, {}, 'node:b');
    assert.equal(feed.inflight('x'), 3);
    feed.set(route(['y']));
    // local and node:a answered at the new version, node:b has not: it may still send to x.
    feed.report(feed.version, {});
    feed.report(feed.version, {}, 'node:a');
    assert.equal(feed.inflight('x'), 1, 'node:b has not applied the table without x yet');
    feed.report(feed.version, { x: 4 }, 'node:b');
    assert.equal(feed.inflight('x'), 4);
    feed.report(feed.version, {}, 'node:b');
    assert.equal(feed.inflight('x'), 0);
    assert.deepEqual(
      feed
        .routers()
        .map((r) => r.id)
        .sort(),
      ['local', 'node:a', 'node:b'],
    );
  });

  it('without an expected router (embedded), counts only routers that reported', () => {
    const feed = new TableFeed({ expected: [] });
    feed.set(route(['x']));
    feed.set(route([]));
    assert.equal(feed.inflight('x'), 0, 'no router process: the embedded router counts for itself');
    feed.report('', {}, 'node:a'); // a node router without any table yet
    assert.equal(feed.inflight('x'), 1);
  });

  it('forgets a node router silent for longer than staleMs, never the expected one', async () => {
    const feed = new TableFeed({ staleMs: 50 });
    feed.set(route(['x']));
    feed.set(route([]));
    feed.report('deadbeef.1', { x: 3 }, 'node:gone', { traffic: { url: 'http://127.0.0.2:1', token: 't' } });
    assert.equal(feed.inflight('x'), 1 + 3);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(feed.inflight('x'), 1, 'the local router process still counts (it has not reported)');
    assert.deepEqual(feed.routers(), []);
  });

  describe('certificates (TLS bundle)', () => {
    const bundle = (host: string) => ({ certs: [{ host, cert: 'C', key: 'K' }], policies: {}, challenges: {} });

    it('gives the bundle only to a router that sends a TLS version other than the current one, and never before the first', async () => {
      const feed = new TableFeed();
      feed.set(route(['x']));
      const v = feed.version;
      assert.equal((await feed.poll(v, 0, '')).tls, undefined, 'nothing set yet');
      feed.setTls(bundle('a.test'));
      assert.equal((await feed.poll(v, 0)).tls, undefined, 'a router that takes no certificates gets none');
      const got = await feed.poll(v, 0, '');
      assert.equal(got.routes, undefined, 'the table did not change for it');
      assert.deepEqual(got.tls, { version: feed.tlsVersion, bundle: bundle('a.test') });
      assert.equal((await feed.poll(v, 10, feed.tlsVersion)).tls, undefined);
      const t = feed.tlsVersion;
      feed.setTls(bundle('a.test'));
      assert.equal(feed.tlsVersion, t, 'the same bundle: same version');
    });

    it('wakes a held poll when the certificates change', async () => {
      const feed = new TableFeed();
      feed.set(route(['x']));
      feed.setTls(bundle('a.test'));
      const held = feed.poll(feed.version, 10_000, feed.tlsVersion);
      feed.setTls(bundle('b.test'));
      const got = await held;
      assert.equal(got.tls?.bundle.certs[0]?.host, 'b.test');
      assert.equal(got.routes, undefined);
    });

    it('says when every router that takes certificates has the current bundle, or gives up after the timeout', async () => {
      const feed = new TableFeed();
      feed.set(route(['x']));
      feed.setTls(bundle('a.test'));
      const old = feed.tlsVersion;
      feed.report(feed.version, {}, 'local', { tlsVersion: old });
      feed.report(feed.version, {}, 'node:haproxy-like'); // takes no certificates: not waited for
      feed.setTls(bundle('b.test'));
      assert.equal(await feed.tlsDelivered(100), false, 'the local router still has the old one');
      const waiting = feed.tlsDelivered(10_000);
      feed.report(feed.version, {}, 'local', { tlsVersion: feed.tlsVersion });
      assert.equal(await waiting, true);
      feed.report(feed.version, {}, 'node:a', { tlsVersion: '' });
      assert.equal(await feed.tlsDelivered(50), false, 'a node router without it yet');
    });

    it('keeps what each router said about itself for `pilot nodes`', () => {
      const feed = new TableFeed({ expected: [] });
      feed.set(route(['x']));
      feed.report(feed.version, {}, 'node:a', { self: { port: 80, httpsPort: 443 }, tlsVersion: '' });
      feed.report('old.3', {}, 'node:b', { self: { port: 8080 } });
      const views = feed.routers();
      assert.deepEqual(
        views.map((r) => [r.id, r.self, r.current, r.version]),
        [
          ['node:a', { port: 80, httpsPort: 443 }, true, feed.version],
          ['node:b', { port: 8080 }, false, 'old.3'],
        ],
      );
      assert.ok(views.every((r) => Math.abs(r.lastSyncAt - Date.now()) < 60_000));
    });
  });
});

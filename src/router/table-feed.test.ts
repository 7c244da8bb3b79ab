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
});

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
});

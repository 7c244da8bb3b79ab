import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isPilotError } from '../core/errors.js';
import { admitRoutes, normalizeHost, RoutingTable, type Route, type Upstream } from './routing-table.js';
import { routeOf } from './test-support.js';

const up = (id: string, app = 'hello', port = 3000, host = '127.0.0.1'): Upstream => ({ id, app, revision: 1, host, port });
const route = (app: string, hosts: string[], upstreams: Upstream[]): Route => routeOf(app, hosts, upstreams);

describe('normalizeHost', () => {
  it('lowercases and strips the port', () => {
    assert.equal(normalizeHost('Hello.LOCALHOST:8080'), 'hello.localhost');
    assert.equal(normalizeHost('hello.localhost'), 'hello.localhost');
  });
  it('keeps IPv6 literals whole and strips their port', () => {
    assert.equal(normalizeHost('[::1]:8080'), '[::1]');
    assert.equal(normalizeHost('[::1]'), '[::1]');
    assert.equal(normalizeHost('::1'), '[::1]');
  });
  it('treats a trailing dot as the same host', () => {
    assert.equal(normalizeHost('example.com.:80'), 'example.com');
  });
});

describe('RoutingTable', () => {
  it('looks routes up by host in any case, with or without a port', () => {
    const t = new RoutingTable();
    t.set([route('hello', ['hello.localhost', 'Hello.Example.com'], [up('a')])]);
    assert.equal(t.lookup('HELLO.localhost:8080')?.app, 'hello');
    assert.equal(t.lookup('hello.example.com')?.app, 'hello');
    assert.equal(t.lookup('other.localhost'), undefined);
    assert.equal(t.lookup(''), undefined);
  });

  it('replaces the whole table and reports added and removed upstreams', () => {
    const t = new RoutingTable();
    const first = t.set([route('hello', ['hello.localhost'], [up('a'), up('b', 'hello', 3001)])]);
    assert.deepEqual(
      first.added.map((u) => u.id),
      ['a', 'b'],
    );
    assert.deepEqual(first.removed, []);
    const second = t.set([route('world', ['world.localhost'], [up('b', 'world', 3001), up('c', 'world', 3002)])]);
    assert.equal(t.lookup('hello.localhost'), undefined, 'the old route is gone, not merged');
    assert.deepEqual(
      second.removed.map((u) => u.id),
      ['a'],
    );
    assert.deepEqual(
      second.added.map((u) => u.id),
      ['c'],
    );
  });

  it('counts an upstream whose address changed as removed and added', () => {
    const t = new RoutingTable();
    t.set([route('hello', ['h'], [up('a', 'hello', 3000)])]);
    const change = t.set([route('hello', ['h'], [up('a', 'hello', 4000)])]);
    assert.deepEqual(
      change.removed.map((u) => u.port),
      [3000],
    );
    assert.deepEqual(
      change.added.map((u) => u.port),
      [4000],
    );
  });

  it('tells subscribers synchronously, and only when upstreams change', () => {
    const t = new RoutingTable();
    const seen: string[] = [];
    const stop = t.subscribe((c) => seen.push(`+${c.added.length} -${c.removed.length}`));
    t.set([route('hello', ['h'], [up('a')])]);
    assert.deepEqual(seen, ['+1 -0']);
    t.set([route('hello', ['h', 'h2'], [up('a')])]);
    assert.deepEqual(seen, ['+1 -0'], 'a host change alone moves no upstream');
    t.set([]);
    assert.deepEqual(seen, ['+1 -0', '+0 -1']);
    stop();
    t.set([route('hello', ['h'], [up('a')])]);
    assert.equal(seen.length, 2);
  });

  it('is not affected by later changes to the arrays it was given', () => {
    const t = new RoutingTable();
    const ups = [up('a')];
    const hosts = ['h'];
    const backends = [{ revision: 1, weight: 100, upstreams: ups }];
    t.set([{ app: 'hello', hosts, backends }]);
    ups.push(up('b', 'hello', 3001));
    hosts.push('h2');
    backends.push({ revision: 2, weight: 0, upstreams: [] });
    assert.equal(t.lookup('h')?.backends[0]?.upstreams.length, 1);
    assert.equal(t.lookup('h')?.backends.length, 1);
    assert.equal(t.lookup('h2'), undefined);
  });

  it('rejects an inconsistent table and keeps the previous one', () => {
    const t = new RoutingTable();
    t.set([route('hello', ['hello.localhost'], [up('a')])]);
    const bad: Route[][] = [
      [route('one', ['x.localhost'], []), route('two', ['X.localhost:80'], [])],
      [route('one', ['one.localhost'], [up('a', 'one'), up('a', 'one', 3001)])],
      [route('one', ['one.localhost'], [up('a', 'two')])],
      [
        routeOf(
          'one',
          ['one.localhost'],
          [up('a', 'one'), up('b', 'one', 3001, '127.0.0.2')].map((u, i) => ({ ...u, revision: i + 1 })),
          { 1: 90, 2: 20 },
        ),
      ],
      [
        {
          app: 'one',
          hosts: ['one.localhost'],
          backends: [
            { revision: 1, weight: 100, upstreams: [] },
            { revision: 1, weight: 0, upstreams: [] },
          ],
        },
      ],
      [{ app: 'one', hosts: ['one.localhost'], backends: [{ revision: 1, weight: 101, upstreams: [] }] }],
      [route('one', ['one.localhost'], [up('a', 'one', 0)])],
      [route('one', [''], [])],
    ];
    for (const routes of bad) {
      assert.throws(
        () => t.set(routes),
        (e) => isPilotError(e) && e.code === 'bad_request',
      );
    }
    assert.equal(t.lookup('hello.localhost')?.app, 'hello');
    assert.equal(t.upstream('a')?.port, 3000);
  });

  it('admits routes per app: a host claimed twice stays with the first app, the others keep routing', () => {
    const { routes, problems } = admitRoutes([
      route('hello', ['hello.localhost'], [up('a')]),
      route('thief', ['thief.localhost', 'HELLO.localhost:8080'], [up('t', 'thief', 3100)]),
      route('other', ['other.localhost', ''], [up('o', 'other', 0), up('p', 'other', 3200), up('a', 'other', 3300)]),
    ]);
    const t = new RoutingTable();
    t.set(routes); // always consistent
    assert.equal(t.lookup('hello.localhost')?.app, 'hello');
    assert.equal(t.lookup('thief.localhost')?.app, 'thief');
    assert.equal(t.lookup('other.localhost')?.backends[0]?.upstreams.length, 1);
    assert.equal(t.upstream('p')?.port, 3200);
    assert.deepEqual(
      problems.map((p) => p.app),
      ['thief', 'other', 'other', 'other'],
    );
    assert.match(problems[0]!.message, /"hello\.localhost" belongs to app "hello"/);
  });

  it('admits hostile input without throwing (missing fields, duplicate apps)', () => {
    const junk = [
      { app: 'x', hosts: 'nope', upstreams: null },
      route('x', ['x2.localhost'], []),
      { app: '', hosts: [], upstreams: [] },
    ] as unknown as Route[];
    const { routes, problems } = admitRoutes(junk);
    assert.deepEqual(
      routes.map((r) => r.app),
      ['x'],
    );
    assert.equal(problems.length, 2);
    new RoutingTable().set(routes);
  });
});

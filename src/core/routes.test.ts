import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { admitRoutes, desiredRoutes, normalizeHost, normalizeWeights, type Route, type RouteState } from './routes.js';
import { RoutingTable } from '../router/routing-table.js';

type App = RouteState['apps'][number];
type Inst = RouteState['instances'][number];
const app = (name: string, p: Partial<App> = {}): App => ({
  name,
  createdAt: 1,
  activeRevision: 1,
  hosts: [],
  targetRevision: undefined,
  ...p,
});
const inst = (id: string, p: Partial<Inst> = {}): Inst => ({
  id,
  app: 'hello',
  revision: 1,
  desired: 'run',
  state: 'ready',
  port: 4000,
  address: undefined,
  nodeId: 'n1',
  ...p,
});
const nodes = [
  { id: 'n1', address: '127.0.0.2', down: false },
  { id: 'n2', address: '127.0.0.3', down: false },
  { id: 'n3', address: '127.0.0.4', down: true },
];
const routesOf = (apps: App[], instances: Inst[]): Route[] => desiredRoutes({ apps, instances, nodes }).routes;

describe('desiredRoutes', () => {
  it('routes the ready instances of the active revision at weight 100', () => {
    const routes = routesOf(
      [app('hello', { hosts: ['Hello.Example.com'] })],
      [inst('a'), inst('b', { nodeId: 'n2', port: 4001 }), inst('c', { address: '10.200.0.5' })],
    );
    assert.deepEqual(routes, [
      {
        app: 'hello',
        hosts: ['hello.localhost', 'hello.example.com'],
        backends: [
          {
            revision: 1,
            weight: 100,
            upstreams: [
              { id: 'a', host: '127.0.0.2', port: 4000 },
              { id: 'b', host: '127.0.0.3', port: 4001 },
              { id: 'c', host: '10.200.0.5', port: 4000 },
            ],
          },
        ],
      },
    ]);
  });

  it('leaves out instances that are not ready, not meant to run, without a port, release instances, or on a down or unknown node', () => {
    const routes = routesOf(
      [app('hello')],
      [
        inst('starting', { state: 'starting' }),
        inst('draining', { desired: 'drain' }),
        inst('stopping', { desired: 'stop' }),
        inst('portless', { port: undefined }),
        inst('lost', { nodeId: 'n3' }),
        inst('unknown', { nodeId: 'gone' }),
        inst('old', { revision: 3 }), // a revision neither active nor a rollout's target
        inst('release', { kind: 'release' }),
        inst('ok'),
      ],
    );
    assert.deepEqual(
      routes[0]!.backends.map((b) => b.upstreams.map((u) => u.id)),
      [['ok']],
    );
  });

  it("adds a rollout's target at weight 0, with its ready instances", () => {
    const routes = routesOf(
      [app('hello', { activeRevision: 1, targetRevision: 2 })],
      [inst('a'), inst('b', { revision: 2, port: 4001 }), inst('c', { revision: 2, state: 'starting' })],
    );
    assert.deepEqual(
      routes[0]!.backends.map((b) => [b.revision, b.weight, b.upstreams.map((u) => u.id)]),
      [
        [1, 100, ['a']],
        [2, 0, ['b']],
      ],
    );
  });

  it('gives every backend weight 0 while the first rollout runs (nothing promoted yet), and the hosts of no revision', () => {
    const routes = routesOf([app('hello', { activeRevision: undefined, targetRevision: 1 })], [inst('a')]);
    assert.deepEqual(routes, [
      {
        app: 'hello',
        hosts: ['hello.localhost'],
        backends: [{ revision: 1, weight: 0, upstreams: [{ id: 'a', host: '127.0.0.2', port: 4000 }] }],
      },
    ]);
  });

  it('keeps an app without any revision in the table with no backends (its host answers 502, not 404)', () => {
    assert.deepEqual(routesOf([app('empty', { activeRevision: undefined })], []), [
      { app: 'empty', hosts: ['empty.localhost'], backends: [] },
    ]);
  });

  it('gives a host claimed twice to the older app and says so for the younger one', () => {
    const { routes, problems } = desiredRoutes({
      apps: [
        app('young', { createdAt: 5, hosts: ['shop.example.com', 'young.example.com'] }),
        app('old', { createdAt: 2, hosts: ['SHOP.example.com:443'] }),
      ],
      instances: [inst('o', { app: 'old' }), inst('y', { app: 'young', port: 4001 })],
      nodes,
    });
    assert.deepEqual(
      routes.map((r) => [r.app, r.hosts]),
      [
        ['old', ['old.localhost', 'shop.example.com']],
        ['young', ['young.localhost', 'young.example.com']],
      ],
    );
    assert.deepEqual(problems, [{ app: 'young', message: 'host "shop.example.com" belongs to app "old"; left out of "young"' }]);
  });

  it('breaks a tie in age by name, so the table does not depend on the order apps were listed in', () => {
    const a = [app('bbb', { hosts: ['x.test'] }), app('aaa', { hosts: ['x.test'] })];
    assert.deepEqual(routesOf(a, []), routesOf([...a].reverse(), []));
    assert.deepEqual(routesOf(a, []).find((r) => r.app === 'aaa')!.hosts, ['aaa.localhost', 'x.test']);
  });
});

describe('admitRoutes', () => {
  it('leaves out a bad backend or upstream of one app, rescales weights that do not sum to 100, and says why', () => {
    const { routes, problems } = admitRoutes([
      {
        app: 'a',
        hosts: ['a.localhost'],
        backends: [
          { revision: 1, weight: 60, upstreams: [{ id: 'x', host: 'h', port: 1 }] },
          { revision: 2, weight: 60, upstreams: [] },
        ],
      },
      {
        app: 'b',
        hosts: ['b.localhost'],
        backends: [
          {
            revision: 1,
            weight: 100,
            upstreams: [
              { id: 'x', host: 'h', port: 2 },
              { id: 'y', host: 'h', port: 70000 },
            ],
          },
          { revision: 1, weight: 0, upstreams: [] },
          { revision: 3, weight: 1.5, upstreams: [] },
        ],
      },
    ]);
    assert.deepEqual(
      routes[0]!.backends.map((b) => b.weight),
      [50, 50],
    );
    assert.deepEqual(routes[1]!.backends, [{ revision: 1, weight: 100, upstreams: [] }]);
    assert.deepEqual(
      problems.map((p) => p.app),
      ['a', 'b', 'b', 'b', 'b'],
    );
    assert.match(problems[0]!.message, /sum to 120, not 100/);
    assert.match(
      problems.map((p) => p.message).join('\n'),
      /upstream "x" appears twice[\s\S]*port 70000[\s\S]*revision 1 appears twice[\s\S]*weight 1\.5/,
    );
  });

  it('takes anything without throwing, and what it returns is a table the router accepts', () => {
    fc.assert(
      fc.property(fc.array(fc.anything({ withNullPrototype: false })), (junk) => {
        const { routes } = admitRoutes(junk as unknown as Route[]);
        new RoutingTable().set(routes);
      }),
    );
  });
});

describe('normalizeWeights', () => {
  it('sums to 100 unless all are 0, and keeps the order of the weights', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 6 }), (ws) => {
        const out = normalizeWeights(ws);
        const sum = out.reduce((s, w) => s + w, 0);
        assert.equal(sum, ws.every((w) => w === 0) ? 0 : 100);
        for (let i = 0; i < ws.length; i++) for (let j = 0; j < ws.length; j++) if (ws[i]! > ws[j]!) assert.ok(out[i]! >= out[j]!);
      }),
    );
  });
});

// Random states: a few apps, hosts drawn from a small pool (so that claims collide, in varied
// spellings), instances in every state on live, down and unknown nodes, ids that sometimes repeat.
const HOSTS = ['shop.test', 'SHOP.test:443', 'api.test', 'api.test.', '', 'x.localhost'];
const appArb = fc.record({
  name: fc.constantFrom('alpha', 'beta', 'gamma', 'delta'),
  createdAt: fc.integer({ min: 0, max: 5 }),
  activeRevision: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  hosts: fc.array(fc.constantFrom(...HOSTS), { maxLength: 3 }),
  targetRevision: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
});
const instArb = fc.record({
  id: fc.constantFrom('i1', 'i2', 'i3', 'i4', 'i5', 'i6', 'i7', 'i8'),
  app: fc.constantFrom('alpha', 'beta', 'gamma', 'delta'),
  revision: fc.integer({ min: 1, max: 3 }),
  desired: fc.constantFrom('run', 'drain', 'stop'),
  state: fc.constantFrom('ready', 'starting', 'stopped'),
  port: fc.option(fc.constantFrom(4000, 4001, 0, 70000), { nil: undefined }),
  address: fc.option(fc.constantFrom('10.0.0.1', ''), { nil: undefined }),
  nodeId: fc.constantFrom('n1', 'n2', 'n3', 'gone'),
  kind: fc.constantFrom(undefined, 'web', 'release'),
});
const stateArb = fc.record({
  apps: fc.uniqueArray(appArb, { selector: (a) => a.name, maxLength: 4 }),
  instances: fc.array(instArb, { maxLength: 12 }),
});

describe('desiredRoutes (properties)', () => {
  it('gives every route weights that sum to 100 when the app has an active revision, else 0; only an active revision carries weight', () => {
    fc.assert(
      fc.property(stateArb, (s) => {
        for (const r of desiredRoutes({ ...s, nodes }).routes) {
          const a = s.apps.find((x) => x.name === r.app)!;
          const sum = r.backends.reduce((t, b) => t + b.weight, 0);
          assert.equal(sum, a.activeRevision === undefined ? 0 : 100);
          for (const b of r.backends) assert.ok(Number.isInteger(b.weight) && b.weight >= 0 && b.weight <= 100);
          for (const b of r.backends) if (b.weight > 0) assert.equal(b.revision, a.activeRevision);
        }
      }),
    );
  });

  it('never puts a host in two routes, nor an upstream id twice, and the router accepts the table', () => {
    fc.assert(
      fc.property(stateArb, (s) => {
        const { routes } = desiredRoutes({ ...s, nodes });
        const hosts = routes.flatMap((r) => r.hosts.map(normalizeHost));
        assert.equal(new Set(hosts).size, hosts.length);
        const ids = routes.flatMap((r) => r.backends.flatMap((b) => b.upstreams.map((u) => u.id)));
        assert.equal(new Set(ids).size, ids.length);
        for (const r of routes)
          for (const b of r.backends) for (const u of b.upstreams) assert.ok(u.port >= 1 && u.port <= 65535 && u.host !== '');
        const release = new Set<string>(s.instances.filter((i) => i.kind === 'release').map((i) => i.id));
        const web = new Set<string>(s.instances.filter((i) => i.kind !== 'release').map((i) => i.id));
        for (const id of ids) assert.ok(web.has(id) || !release.has(id), `release instance ${id} routed`);
        new RoutingTable().set(routes);
      }),
    );
  });

  it('never lets a newer app whose route is wrong change the route of another app', () => {
    const rogueArb = fc.record({
      hosts: fc.array(fc.constantFrom(...HOSTS, 'alpha.localhost', 'BETA.localhost:80'), { maxLength: 4 }),
      instances: fc.array(
        fc.record({
          id: fc.constantFrom('i1', 'i2', 'i3', 'r1'),
          port: fc.constantFrom(4000, 0, -1, 70000, Number.NaN),
          address: fc.option(fc.constantFrom('', '10.9.9.9'), { nil: undefined }),
        }),
        { maxLength: 5 },
      ),
    });
    fc.assert(
      fc.property(stateArb, rogueArb, (s, rogue) => {
        const { routes: before, problems } = desiredRoutes({ ...s, nodes });
        const withRogue = desiredRoutes({
          apps: [...s.apps, app('rogue', { createdAt: 10, hosts: rogue.hosts })],
          instances: [...s.instances, ...rogue.instances.map((i) => inst(i.id, { ...i, app: 'rogue' }))],
          nodes,
        });
        assert.deepEqual(
          withRogue.routes.filter((r) => r.app !== 'rogue'),
          before,
        );
        assert.deepEqual(
          withRogue.problems.filter((p) => p.app !== 'rogue'),
          problems,
        );
      }),
    );
  });
});

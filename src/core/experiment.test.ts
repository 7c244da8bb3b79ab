import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  bucketBackend,
  experimentSeed,
  formatStickyBy,
  isSticky,
  parseStickyBy,
  stickyBucket,
  stickyHash,
  variantReplicas,
} from './experiment.js';
import { PilotError } from './errors.js';
import { desiredRoutes, admitRoutes, type RouteState } from './routes.js';
import { planApp, type PlannerInstance } from './rollout.js';

describe('sticky hash and buckets', () => {
  it('is a pure function of (seed, key): the same answer every time, in [0, 100)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string({ maxLength: 300 }), (seed, key) => {
        const b = stickyBucket(seed, key);
        assert.ok(Number.isInteger(b) && b >= 0 && b < 100);
        assert.equal(stickyBucket(seed, key), b);
        assert.equal(stickyHash(seed, key), stickyHash(`${seed}`, `${key}`));
      }),
    );
  });

  it('known values do not move (a change would reassign every running experiment)', () => {
    // Pinned figures: a router of another version must assign users as this one does.
    assert.equal(stickyHash('shop/1', 'alice'), 2041056544);
    assert.equal(stickyHash('', ''), 91794203);
    assert.deepEqual([stickyBucket('shop/1', 'alice'), stickyBucket('shop/1', 'bob'), stickyBucket('shop/2', 'alice')], [44, 74, 41]);
  });

  it('keeps seed and key apart: ("ab", "c") and ("a", "bc") are different inputs', () => {
    let same = 0;
    for (let i = 0; i < 200; i++) if (stickyHash(`s${i}a`, 'b') === stickyHash(`s${i}`, 'ab')) same++;
    assert.ok(same <= 1, `${same} collisions`);
  });

  it('spreads distinct keys evenly: every bucket within ±30 % of its expected 1 % over 100,000 keys', () => {
    const counts = new Array<number>(100).fill(0);
    for (let i = 0; i < 100_000; i++) counts[stickyBucket('shop/7', `user-${i}`)]!++;
    for (const [b, n] of counts.entries()) assert.ok(n > 700 && n < 1300, `bucket ${b} got ${n} of 100000`);
  });

  it('shares converge to the split for any split and any seed (property, 4,000 distinct users each)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.string({ minLength: 1, maxLength: 20 }), (split, seed) => {
        const backends = [
          { revision: 3, weight: 100 - split },
          { revision: 5, weight: split },
        ];
        let b = 0;
        const n = 4000;
        for (let i = 0; i < n; i++) if (bucketBackend(backends, stickyBucket(seed, `u${i}:${seed}`)) === 1) b++;
        // 4,000 draws: the binomial's standard deviation is at most 0.8 %; 4 % is 5 sigma.
        assert.ok(Math.abs(b / n - split / 100) < 0.04, `split ${split}: b got ${((b / n) * 100).toFixed(1)} %`);
        if (split === 0) assert.equal(b, 0);
        if (split === 100) assert.equal(b, n);
      }),
      { numRuns: 40 },
    );
  });

  it('two experiments assign a user independently (different seeds do not correlate)', () => {
    let both = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const k = `visitor-${i}`;
      if (stickyBucket(experimentSeed('shop', 1), k) < 50 && stickyBucket(experimentSeed('shop', 2), k) < 50) both++;
    }
    // Independent 50/50 splits: a quarter of the users are in both b's.
    assert.ok(Math.abs(both / n - 0.25) < 0.02, `${both} of ${n}`);
  });
});

describe('bucketBackend', () => {
  it('maps buckets to backends of weight > 0 by cumulative weight in revision order, whatever the list order', () => {
    const backends = [
      { revision: 9, weight: 60 },
      { revision: 4, weight: 40 },
    ];
    assert.equal(bucketBackend(backends, 0), 1);
    assert.equal(bucketBackend(backends, 39), 1);
    assert.equal(bucketBackend(backends, 40), 0);
    assert.equal(bucketBackend(backends, 99), 0);
    assert.equal(
      bucketBackend(
        [
          { revision: 1, weight: 0 },
          { revision: 2, weight: 100 },
        ],
        0,
      ),
      1,
    );
    assert.equal(bucketBackend([{ revision: 1, weight: 0 }], 5), -1);
    assert.equal(bucketBackend([], 5), -1);
  });

  it('a user keeps their backend when only other apps change: the answer reads nothing but its own route', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99 }), fc.integer({ min: 1, max: 99 }), (bucket, split) => {
        const route = [
          { revision: 1, weight: 100 - split },
          { revision: 2, weight: split },
        ];
        assert.equal(bucketBackend(route, bucket), bucketBackend([...route], bucket));
        assert.equal(bucketBackend(route, bucket), bucket < 100 - split ? 0 : 1);
      }),
    );
  });
});

describe('--by', () => {
  it('parses cookie:NAME and header:NAME', () => {
    assert.deepEqual(parseStickyBy('cookie:uid'), { cookie: 'uid' });
    assert.deepEqual(parseStickyBy('header:X-User'), { header: 'X-User' });
    assert.equal(formatStickyBy(parseStickyBy('header:X-User')), 'header:X-User');
  });

  it('refuses malformed keys with a bad_request naming the field', () => {
    for (const bad of [
      '',
      'uid',
      'cookie:',
      'cookie:a b',
      'cookie:a;b',
      'header:X\r\nEvil: 1',
      'header:Host',
      'header:x-pilot-revision',
      'header:Cookie',
      'query:uid',
      `cookie:${'x'.repeat(65)}`,
      'cookie:é',
    ]) {
      assert.throws(
        () => parseStickyBy(bad),
        (err: unknown) => err instanceof PilotError && err.code === 'bad_request' && /^by: /.test(err.message) && !!err.hint,
        bad,
      );
    }
  });

  it('isSticky accepts what the control plane writes and refuses the rest', () => {
    assert.ok(isSticky({ by: { cookie: 'uid' }, seed: 'shop/1' }));
    assert.ok(isSticky({ by: { header: 'X-User' }, seed: 'shop/1' }));
    for (const bad of [
      null,
      {},
      { by: { cookie: 'uid' } },
      { by: { cookie: 'uid' }, seed: '' },
      { by: { cookie: 'a b' }, seed: 's' },
      { by: { header: 'host' }, seed: 's' },
      { by: { cookie: 'a', header: 'b' }, seed: 's' },
      { by: { query: 'a' }, seed: 's' },
      { by: 'cookie:uid', seed: 's' },
    ])
      assert.equal(isSticky(bad), false, JSON.stringify(bad));
  });
});

describe('variantReplicas', () => {
  it('shares the replicas by the split, at least 1 each, none when scaled to zero', () => {
    assert.deepEqual(variantReplicas(4, 50), { a: 2, b: 2 });
    assert.deepEqual(variantReplicas(10, 10), { a: 9, b: 1 });
    assert.deepEqual(variantReplicas(1, 50), { a: 1, b: 1 });
    assert.deepEqual(variantReplicas(3, 0), { a: 2, b: 1 });
    assert.deepEqual(variantReplicas(3, 100), { a: 1, b: 3 });
    assert.deepEqual(variantReplicas(0, 50), { a: 0, b: 0 });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 0, max: 100 }), (n, split) => {
        const { a, b } = variantReplicas(n, split);
        assert.ok(a >= 1 && b >= 1);
        assert.ok(a + b <= Math.max(n, 2) + 1, `${n} @ ${split}: ${a}+${b}`);
      }),
    );
  });
});

describe('desiredRoutes with an experiment', () => {
  const state = (experiment: RouteState['apps'][number]['experiment'], targetRevision?: number): RouteState => ({
    apps: [{ name: 'shop', createdAt: 1, activeRevision: 3, hosts: [], targetRevision, experiment }],
    instances: [
      { id: 'i3', app: 'shop', revision: 3, desired: 'run', state: 'ready', port: 4001, address: undefined, nodeId: 'n1' },
      { id: 'i5', app: 'shop', revision: 5, desired: 'run', state: 'ready', port: 4002, address: undefined, nodeId: 'n1' },
    ],
    nodes: [{ id: 'n1', address: '127.0.0.1', down: false }],
  });
  const sticky = { by: { cookie: 'uid' }, seed: 'shop/1' };

  it('gives a 100 − split and b split, and the sticky key', () => {
    const { routes, problems } = desiredRoutes(state({ revision: 5, split: 30, sticky }));
    assert.deepEqual(problems, []);
    assert.deepEqual(
      routes[0]!.backends.map((b) => [b.revision, b.weight, b.upstreams.map((u) => u.id)]),
      [
        [3, 70, ['i3']],
        [5, 30, ['i5']],
      ],
    );
    assert.deepEqual(routes[0]!.sticky, sticky);
  });

  it('without an experiment the route is as before (no sticky field at all)', () => {
    const { routes } = desiredRoutes(state(undefined));
    assert.equal('sticky' in routes[0]!, false);
    assert.deepEqual(
      routes[0]!.backends.map((b) => [b.revision, b.weight]),
      [[3, 100]],
    );
  });

  it('the rollout that keeps b carries the split on until it activates b', () => {
    const { routes } = desiredRoutes(state({ revision: 5, split: 30, sticky }, 5));
    assert.deepEqual(routes[0]!.sticky, sticky);
    assert.deepEqual(
      routes[0]!.backends.map((b) => [b.revision, b.weight]),
      [
        [3, 70],
        [5, 30],
      ],
    );
  });

  it('a rollout in progress to another revision wins over an experiment left in the state', () => {
    const { routes } = desiredRoutes(state({ revision: 5, split: 30, sticky }, 4));
    assert.equal(routes[0]!.sticky, undefined);
    assert.deepEqual(
      routes[0]!.backends.map((b) => [b.revision, b.weight]),
      [
        [3, 100],
        [4, 0],
      ],
    );
  });

  it('admitRoutes keeps a good sticky split and drops a malformed one with its reason', () => {
    const good = admitRoutes([{ app: 'a', hosts: ['a.localhost'], backends: [], sticky }]);
    assert.deepEqual(good.routes[0]!.sticky, sticky);
    const bad = admitRoutes([{ app: 'a', hosts: ['a.localhost'], backends: [], sticky: { by: { header: 'Host' }, seed: 'x' } }]);
    assert.equal(bad.routes[0]!.sticky, undefined);
    assert.match(bad.problems[0]!.message, /sticky split is malformed/);
  });
});

describe('steady-state planner with an experiment', () => {
  const inst = (id: string, revision: number, state: PlannerInstance['state'] = 'ready'): PlannerInstance => ({
    id,
    revision,
    desired: 'run',
    state,
    restarts: 0,
    lastError: undefined,
    drainingForMs: undefined,
    inflight: 0,
  });
  const input = (instances: PlannerInstance[], experiment?: { revision: number; split: number }, replicas = 4) => ({
    replicas,
    activeRevision: 3,
    fixedPort: false,
    rollout: undefined,
    instances,
    drainMs: 1000,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
    experiment,
  });

  it("keeps the variant's instances instead of draining them, and shares the replicas", () => {
    const actions = planApp(input([inst('a1', 3), inst('a2', 3), inst('a3', 3), inst('a4', 3), inst('b1', 5)], { revision: 5, split: 50 }));
    assert.deepEqual(
      actions.filter((a) => a.type === 'desire' && a.id === 'b1'),
      [],
    );
    assert.deepEqual(
      actions.filter((a) => a.type === 'create'),
      [{ type: 'create', revision: 5, count: 1 }],
    );
    assert.equal(actions.filter((a) => a.type === 'desire' && a.desired === 'drain').length, 2);
  });

  it('drains any third revision, and the variant once the experiment is gone', () => {
    const withExp = planApp(input([inst('a1', 3), inst('b1', 5), inst('c1', 4)], { revision: 5, split: 10 }, 2));
    assert.deepEqual(
      withExp.filter((a) => a.type === 'desire').map((a) => (a.type === 'desire' ? a.id : '')),
      ['c1'],
    );
    const after = planApp(input([inst('a1', 3), inst('a2', 3), inst('b1', 5)], undefined, 2));
    assert.deepEqual(
      after.filter((a) => a.type === 'desire').map((a) => (a.type === 'desire' ? a.id : '')),
      ['b1'],
    );
  });

  it('converges: applying its actions and planning again gives nothing to do (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 6 }),
        (replicas, split, na, nb) => {
          let instances = [
            ...Array.from({ length: na }, (_, k) => inst(`a${k}`, 3)),
            ...Array.from({ length: nb }, (_, k) => inst(`b${k}`, 5)),
          ];
          const exp = { revision: 5, split };
          let n = 0;
          for (const a of planApp(input(instances, exp, replicas))) {
            if (a.type === 'create') for (let k = 0; k < a.count; k++) instances.push(inst(`new${n++}`, a.revision));
            if (a.type === 'desire') instances = instances.filter((i) => i.id !== a.id);
          }
          assert.deepEqual(planApp(input(instances, exp, replicas)), []);
          const share = variantReplicas(replicas, split);
          assert.equal(instances.filter((i) => i.revision === 3).length, share.a);
          assert.equal(instances.filter((i) => i.revision === 5).length, share.b);
        },
      ),
    );
  });
});

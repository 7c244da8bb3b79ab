import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Balancer, pickLeastInflight, pickSmoothWeighted } from './balancer.js';
import type { TableRoute } from './routing-table.js';
import { routeOf as route } from './test-support.js';

const routeOf = (n: number): TableRoute =>
  route(
    'hello',
    ['hello.localhost'],
    Array.from({ length: n }, (_, i) => ({ id: `u${i}`, app: 'hello', revision: 1, host: '127.0.0.1', port: 3000 + i })),
  );

describe('pickLeastInflight', () => {
  it('picks an upstream with the fewest in-flight requests, the first one from start on a tie', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(5), { minLength: 1, maxLength: 8 }), fc.nat(20), (loads, s) => {
        const start = s % loads.length;
        const i = pickLeastInflight(loads.length, (j) => loads[j]!, start);
        const min = Math.min(...loads);
        assert.equal(loads[i], min);
        for (let k = 0; k < loads.length; k++) {
          const j = (start + k) % loads.length;
          if (j === i) break;
          assert.ok(loads[j]! > min, 'an earlier upstream in rotation order had the same load');
        }
      }),
    );
  });

  it('never picks a skipped index, and returns -1 when all are skipped', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(5), fc.boolean()), { minLength: 1, maxLength: 8 }), (entries) => {
        const i = pickLeastInflight(
          entries.length,
          (j) => entries[j]![0],
          0,
          (j) => entries[j]![1],
        );
        if (entries.every(([, skip]) => skip)) assert.equal(i, -1);
        else assert.equal(entries[i]![1], false);
      }),
    );
  });
});

describe('Balancer', () => {
  it('takes turns among equally idle upstreams', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 5 }), (n, rounds) => {
        const b = new Balancer();
        const route = routeOf(n);
        const counts = new Map<string, number>();
        for (let k = 0; k < n * rounds; k++) {
          const u = b.pick(route, () => 0)!;
          counts.set(u.id, (counts.get(u.id) ?? 0) + 1);
        }
        assert.equal(counts.size, n);
        for (const c of counts.values()) assert.equal(c, rounds);
      }),
    );
  });

  it('sends new requests to the less busy upstream', () => {
    const b = new Balancer();
    const route = routeOf(3);
    const load = new Map([
      ['u0', 4],
      ['u1', 1],
      ['u2', 3],
    ]);
    assert.equal(b.pick(route, (id) => load.get(id)!)?.id, 'u1');
  });

  it('leaves excluded upstreams out and gives up when none remain', () => {
    const b = new Balancer();
    const route = routeOf(2);
    assert.equal(b.pick(route, () => 0, new Set(['u0']))?.id, 'u1');
    assert.equal(
      b.pick(route, () => 0, new Set(['u0', 'u1'])),
      undefined,
    );
    assert.equal(
      b.pick(routeOf(0), () => 0),
      undefined,
    );
  });
});

describe('pickSmoothWeighted', () => {
  it('chooses each candidate exactly `weight` times in any run of sum(weights) picks, and never a weight-0 one', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(100), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 3 }), (weights, rounds) => {
        const total = weights.reduce((s, w) => s + w, 0);
        const scores: number[] = [];
        const counts = weights.map(() => 0);
        const candidates = weights.map((weight, index) => ({ index, weight }));
        for (let k = 0; k < total * rounds; k++) counts[pickSmoothWeighted(candidates, scores)]!++;
        assert.deepEqual(
          counts,
          weights.map((w) => w * rounds),
        );
        if (total === 0) assert.equal(pickSmoothWeighted(candidates, scores), -1);
      }),
    );
  });

  it('spreads a small share out instead of sending it in a burst', () => {
    const scores: number[] = [];
    const picks = Array.from({ length: 20 }, () =>
      pickSmoothWeighted(
        [
          { index: 0, weight: 90 },
          { index: 1, weight: 10 },
        ],
        scores,
      ),
    );
    assert.deepEqual(picks.flatMap((p, i) => (p === 1 ? [i] : [])).length, 2);
    assert.notEqual(picks.indexOf(1), picks.lastIndexOf(1) - 1, 'the two picks of the 10% backend are not adjacent');
  });
});

describe('Balancer with weighted backends', () => {
  const up = (id: string, revision: number) => ({ id, app: 'hello', revision, host: '127.0.0.1', port: 3000 });
  const split = (w1: number, w2: number, ups2 = [up('b1', 2)]) =>
    route('hello', ['hello.localhost'], [up('a1', 1), up('a2', 1), ...ups2], { 1: w1, 2: w2 });

  it('splits requests between revisions by weight (90/10 exactly over 100 idle picks)', () => {
    const b = new Balancer();
    const r = split(90, 10);
    const byRevision = new Map<number, number>();
    for (let k = 0; k < 100; k++) {
      const u = b.pick(r, () => 0)!;
      byRevision.set(u.revision, (byRevision.get(u.revision) ?? 0) + 1);
    }
    assert.deepEqual([...byRevision].sort(), [
      [1, 90],
      [2, 10],
    ]);
  });

  it('sends nothing to a weight-0 revision, even when it is the only one with upstreams', () => {
    const b = new Balancer();
    for (let k = 0; k < 50; k++) assert.equal(b.pick(split(100, 0), () => 0)?.revision, 1);
    const onlyTarget = route('hello', ['hello.localhost'], [up('b1', 2)], { 2: 0 });
    assert.equal(
      b.pick(onlyTarget, () => 0),
      undefined,
    );
    const activeEmpty: TableRoute = {
      app: 'hello',
      hosts: [],
      backends: [{ revision: 1, weight: 100, upstreams: [] }, onlyTarget.backends[0]!],
    };
    assert.equal(
      b.pick(activeEmpty, () => 0),
      undefined,
    );
  });

  it('sends all traffic to the weighted revisions that have upstreams when another has none', () => {
    const b = new Balancer();
    for (let k = 0; k < 20; k++) assert.equal(b.pick(split(90, 10, []), () => 0)?.revision, 1);
  });

  it('honours a pin to any revision with an upstream left, weight 0 included, else picks as usual', () => {
    const b = new Balancer();
    const r = split(100, 0);
    for (let k = 0; k < 5; k++) assert.equal(b.pick(r, () => 0, undefined, 2)?.id, 'b1');
    assert.equal(b.pick(r, () => 0, undefined, 7)?.revision, 1, 'an unknown revision: the usual pick');
    assert.equal(b.pick(r, () => 0, new Set(['b1']), 2)?.revision, 1, 'the pinned revision has nothing left to try');
    assert.equal(b.pick(split(100, 0, []), () => 0, undefined, 2)?.revision, 1, 'the pinned revision has no upstream');
  });

  it('retries within the weighted revisions only, and gives up when they are exhausted', () => {
    const b = new Balancer();
    const r = split(50, 50);
    assert.equal(b.pick(r, () => 0, new Set(['a1', 'a2']))?.id, 'b1');
    assert.equal(
      b.pick(split(100, 0), () => 0, new Set(['a1', 'a2'])),
      undefined,
    );
  });
});

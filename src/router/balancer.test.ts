import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Balancer, pickLeastInflight } from './balancer.js';
import type { TableRoute } from './routing-table.js';
import { routeOf as route } from './test-support.js';

const routeOf = (n: number): TableRoute => route(
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
        const i = pickLeastInflight(entries.length, (j) => entries[j]![0], 0, (j) => entries[j]![1]);
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
    const load = new Map([['u0', 4], ['u1', 1], ['u2', 3]]);
    assert.equal(b.pick(route, (id) => load.get(id)!)?.id, 'u1');
  });

  it('leaves excluded upstreams out and gives up when none remain', () => {
    const b = new Balancer();
    const route = routeOf(2);
    assert.equal(b.pick(route, () => 0, new Set(['u0']))?.id, 'u1');
    assert.equal(b.pick(route, () => 0, new Set(['u0', 'u1'])), undefined);
    assert.equal(b.pick(routeOf(0), () => 0), undefined);
  });
});

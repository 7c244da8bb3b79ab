import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { schedule, type SchedulerNode } from './scheduler.js';

describe('scheduler', () => {
  it('spreads replicas across nodes', () => {
    const nodes: SchedulerNode[] = ['a', 'b', 'c'].map((id) => ({ id, name: id, schedulable: true, instances: [] }));
    const p = schedule(nodes, { app: 'web', count: 6, fixedPort: undefined });
    assert.deepEqual([...p.nodeIds].sort(), ['a', 'a', 'b', 'b', 'c', 'c']);
  });

  it('never puts two instances with the same fixed port on one node', () => {
    const nodes: SchedulerNode[] = [
      { id: 'a', name: 'a', schedulable: true, instances: [{ app: 'other', fixedPort: 3000 }] },
      { id: 'b', name: 'b', schedulable: true, instances: [] },
    ];
    const p = schedule(nodes, { app: 'web', count: 2, fixedPort: 3000 });
    assert.deepEqual(p.nodeIds, ['b']);
    assert.equal(p.unplaced, 1);
    assert.match(p.reason!, /fixed port 3000/);
  });

  it('says why when there is no node at all', () => {
    const p = schedule([{ id: 'a', name: 'a', schedulable: false, instances: [] }], { app: 'web', count: 1, fixedPort: undefined });
    assert.equal(p.unplaced, 1);
    assert.match(p.reason!, /no ready node/);
  });

  it('keeps the spread within one of ideal (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 40 }), (n, count) => {
      const nodes: SchedulerNode[] = Array.from({ length: n }, (_, i) => ({ id: `n${i}`, name: `n${i}`, schedulable: true, instances: [] }));
      const p = schedule(nodes, { app: 'x', count, fixedPort: undefined });
      assert.equal(p.nodeIds.length, count);
      const per = nodes.map((nd) => p.nodeIds.filter((id) => id === nd.id).length);
      assert.ok(Math.max(...per) - Math.min(...per) <= 1);
    }));
  });
});

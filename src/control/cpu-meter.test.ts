import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CpuMeter, cpuFigures, cpuRate } from './cpu-meter.js';
import type { AppRecord, InstanceRecord, NodeRecord } from '../store/store.js';

describe('cpu meter', () => {
  it('turns running totals into cores used over the window', () => {
    assert.equal(
      cpuRate(
        [
          { at: 0, total: 10 },
          { at: 5000, total: 12.5 },
          { at: 10_000, total: 15 },
        ],
        10_000,
        15_000,
      ),
      0.5,
    );
    // The newest sample before the window anchors it: 2 s of CPU over the last 5 s.
    assert.equal(
      cpuRate(
        [
          { at: 0, total: 10 },
          { at: 6000, total: 11 },
          { at: 11_000, total: 13 },
        ],
        11_000,
        4000,
      ),
      0.4,
    );
    assert.equal(cpuRate([{ at: 0, total: 1 }], 0, 15_000), undefined, 'one sample is no rate');
    assert.equal(
      cpuRate(
        [
          { at: 0, total: 1 },
          { at: 500, total: 2 },
        ],
        500,
        15_000,
      ),
      undefined,
      'under 1 s apart is noise',
    );
  });

  it('starts again when a total drops (a restart), never a negative rate', () => {
    let t = 0;
    const m = new CpuMeter(() => t);
    m.record('n1', [{ id: 'a', cpuSeconds: 100 }]);
    t = 5000;
    m.record('n1', [{ id: 'a', cpuSeconds: 2 }]); // restarted
    assert.equal(m.cores('n1', 'a', 15_000), undefined);
    t = 10_000;
    m.record('n1', [{ id: 'a', cpuSeconds: 7 }]);
    assert.equal(m.cores('n1', 'a', 15_000), 1);
  });

  it('keeps nodes apart and ignores what is not a total', () => {
    let t = 0;
    const m = new CpuMeter(() => t);
    m.record('n1', [{ id: 'a', cpuSeconds: 1 }, { id: 'b' }, { id: 'c', cpuSeconds: Number.NaN }, { id: 'd', cpuSeconds: -1 }]);
    t = 4000;
    m.record('n1', [{ id: 'a', cpuSeconds: 3 }]);
    m.record('n2', [{ id: 'a', cpuSeconds: 1000 }]); // another node cannot speak for n1's instance
    assert.equal(m.cores('n1', 'a', 15_000), 0.5);
    for (const id of ['b', 'c', 'd']) assert.equal(m.cores('n1', id, 15_000), undefined);
  });

  it('bounds what it keeps per instance', () => {
    let t = 0;
    const m = new CpuMeter(() => t);
    for (let k = 0; k < 10_000; k++) {
      t = k * 10;
      m.record('n1', [{ id: 'a', cpuSeconds: k / 100 }]);
    }
    // 64 samples 10 ms apart: 0.63 s, too short for a rate; the memory stayed bounded.
    assert.equal(m.cores('n1', 'a', 15_000), undefined);
  });

  it("gives the autoscaler each instance's CPU as a share of its allowance, bounded by its node's CPUs", async () => {
    let t = 0;
    const m = new CpuMeter(() => t);
    m.record('n1', [
      { id: 'a', cpuSeconds: 0 },
      { id: 'b', cpuSeconds: 0 },
    ]);
    m.record('n2', [{ id: 'c', cpuSeconds: 0 }]);
    t = 10_000;
    m.record('n1', [
      { id: 'a', cpuSeconds: 5 },
      { id: 'b', cpuSeconds: 1000 },
    ]); // b claims 100 cores
    m.record('n2', [{ id: 'c', cpuSeconds: 2 }]);
    const store = { listNodes: async () => [{ id: 'n1', cpus: 4 }, { id: 'n2' }] as unknown as NodeRecord[] };
    const inst = (id: string, nodeId: string) => ({ id, nodeId }) as unknown as InstanceRecord;
    const app = (cpu: number | undefined) => ({ config: { resources: { cpu, memoryMb: undefined } } }) as unknown as AppRecord;
    const one = await cpuFigures(m, store)(app(undefined), [inst('a', 'n1'), inst('b', 'n1'), inst('c', 'n2'), inst('d', 'n2')]);
    assert.deepEqual(
      [...one],
      [
        ['a', 50],
        ['b', 400],
        ['c', 20],
      ],
    );
    const half = await cpuFigures(m, store)(app(0.5), [inst('a', 'n1')]);
    assert.equal(half.get('a'), 100);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { replicasOnDeploy, type ReplicasSource } from './replicas.js';

describe('replica count owner', () => {
  it('is seeded by pilot.yaml when the app is created', () => {
    assert.deepEqual({ ...replicasOnDeploy(undefined, 3), why: '' }, { replicas: 3, source: 'config', changed: true, why: '' });
  });

  it('keeps a `pilot scale` across deploys whose pilot.yaml value did not change', () => {
    const d = replicasOnDeploy({ replicas: 5, source: 'scale', configReplicas: 2 }, 2);
    assert.deepEqual([d.replicas, d.source, d.changed], [5, 'scale', false]);
    assert.match(d.why, /unchanged \(2\); the count stays 5 \(set by scale\)/);
  });

  it('applies a changed pilot.yaml value over a scale, and says so', () => {
    const d = replicasOnDeploy({ replicas: 5, source: 'scale', configReplicas: 2 }, 4);
    assert.deepEqual([d.replicas, d.source, d.changed], [4, 'config', true]);
    assert.match(d.why, /changed from 2 to 4: applied \(the count was 5, set by scale\)/);
    // Changed back to what the scale set: the owner becomes config, the number stays.
    const same = replicasOnDeploy({ replicas: 5, source: 'scale', configReplicas: 2 }, 5);
    assert.deepEqual([same.replicas, same.source, same.changed], [5, 'config', false]);
  });

  it('leaves the count to an autoscaler that owns it', () => {
    const d = replicasOnDeploy({ replicas: 7, source: 'autoscaler', configReplicas: 2 }, 3);
    assert.deepEqual([d.replicas, d.source, d.changed], [7, 'autoscaler', false]);
  });

  it("never changes the count unless pilot.yaml's value changed (property)", () => {
    const source = fc.constantFrom<ReplicasSource>('config', 'scale', 'autoscaler');
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        source,
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 100 }),
        (replicas, src, before, now) => {
          const d = replicasOnDeploy({ replicas, source: src, configReplicas: before }, now);
          if (before === now || src === 'autoscaler') assert.equal(d.replicas, replicas);
          else assert.equal(d.replicas, now);
          assert.equal(d.changed, d.replicas !== replicas);
        },
      ),
    );
  });
});

describe('replica count owner with autoscale', () => {
  const b = { min: 2, max: 6 };
  it('starts a new autoscaled app at pilot.yaml replicas (or min) and gives the count to the autoscaler', () => {
    const d = replicasOnDeploy(undefined, 3, b);
    assert.deepEqual([d.replicas, d.source, d.changed], [3, 'autoscaler', true]);
    assert.match(d.why, /autoscale 2-6 starts at 3/);
  });

  it('keeps the autoscaled count across deploys, brought within new bounds', () => {
    const kept = replicasOnDeploy({ replicas: 5, source: 'autoscaler', configReplicas: 2 }, 2, b);
    assert.deepEqual([kept.replicas, kept.source, kept.changed], [5, 'autoscaler', false]);
    const lowered = replicasOnDeploy({ replicas: 9, source: 'autoscaler', configReplicas: 2 }, 2, b);
    assert.deepEqual([lowered.replicas, lowered.changed], [6, true]);
    assert.match(lowered.why, /brought within min 2 to max 6/);
  });

  it('takes over a count set by `pilot scale` or pilot.yaml when autoscale appears', () => {
    const d = replicasOnDeploy({ replicas: 4, source: 'scale', configReplicas: 1 }, 2, b);
    assert.deepEqual([d.replicas, d.source, d.changed], [4, 'autoscaler', false]);
    assert.match(d.why, /the autoscaler owns the count from now on, starting from 4 \(was 4, set by scale\)/);
  });

  it('hands the count back to pilot.yaml where the autoscaler left it when autoscale goes', () => {
    const d = replicasOnDeploy({ replicas: 5, source: 'autoscaler', configReplicas: 2 }, 2, null);
    assert.deepEqual([d.replicas, d.source, d.changed], [5, 'config', false]);
    // … and the next changed `replicas` applies as for any app.
    const next = replicasOnDeploy({ replicas: 5, source: 'config', configReplicas: 2 }, 3, null);
    assert.deepEqual([next.replicas, next.changed], [3, true]);
  });

  it('never leaves [min, max] with autoscale (property)', () => {
    const source = fc.constantFrom<ReplicasSource>('config', 'scale', 'autoscaler');
    fc.assert(
      fc.property(
        fc.option(fc.record({ replicas: fc.integer({ min: 0, max: 100 }), source, configReplicas: fc.integer({ min: 1, max: 100 }) }), {
          nil: undefined,
        }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 0, max: 50 }),
        (existing, replicas, min, span) => {
          const d = replicasOnDeploy(existing, replicas, { min, max: min + span });
          assert.ok(d.replicas >= min && d.replicas <= min + span);
          assert.equal(d.source, 'autoscaler');
          if (existing) assert.equal(d.changed, d.replicas !== existing.replicas);
        },
      ),
    );
  });
});

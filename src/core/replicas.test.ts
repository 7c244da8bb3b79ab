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

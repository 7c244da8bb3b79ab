import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { basisOf, isEmptyPlan, planAppChanges, previewDeploy, type AppSnapshot, type SnapshotInstance } from './plan.js';
import type { SchedulerNode } from './scheduler.js';

const inst = (p: Partial<SnapshotInstance> & { id: string; revision: number; nodeId: string }): SnapshotInstance => ({
  desired: 'run',
  state: 'ready',
  restarts: 0,
  lastError: undefined,
  drainingForMs: undefined,
  inflight: 0,
  kind: 'web',
  nodeDown: false,
  nodeDraining: false,
  ...p,
});
const node = (id: string, p: Partial<SchedulerNode> = {}): SchedulerNode => ({ id, name: id, schedulable: true, instances: [], ...p });
const web = { app: 'web', fixedPort: undefined };
const other = { app: 'other', fixedPort: undefined };
const snap = (p: Partial<AppSnapshot>): AppSnapshot => ({
  app: { name: 'web', replicas: 2, activeRevision: 1 },
  rollout: undefined,
  instances: [],
  fixedPort: undefined,
  placement: {},
  nodes: [node('a'), node('b'), node('c')],
  drainMs: 1000,
  maxDrainMs: 30_000,
  crashLoopRestarts: 3,
  basis: 'v1',
  ...p,
});

describe('plan', () => {
  it('places the missing replicas on nodes through the scheduler, spread, and carries the basis', () => {
    const plan = planAppChanges(
      snap({
        instances: [inst({ id: 'x', revision: 1, nodeId: 'a' })],
        basis: 'b7',
        nodes: [node('a', { instances: [web] }), node('b'), node('c', { instances: [other] })],
      }),
    );
    assert.equal(plan.basis, 'b7');
    assert.deepEqual(plan.placements, [{ revision: 1, nodeId: 'b', kind: 'web' }]);
    assert.deepEqual(plan.desired, []);
  });

  it('says why nothing could be placed', () => {
    const plan = planAppChanges(snap({ nodes: [node('a', { schedulable: false })] }));
    assert.deepEqual(plan.placements, []);
    assert.equal(plan.unplaced?.count, 2);
    assert.match(plan.unplaced?.reason ?? '', /no ready node/);
  });

  it('counts its own placements: two replicas on a fixed port never share a node', () => {
    const plan = planAppChanges(snap({ fixedPort: 3000, nodes: [node('a')] }));
    assert.deepEqual(
      plan.placements.map((p) => p.nodeId),
      ['a'],
    );
    assert.equal(plan.unplaced?.count, 1);
  });

  it('stops instances lost with their node (not a release phase) and replaces them elsewhere', () => {
    const plan = planAppChanges(
      snap({
        instances: [
          inst({ id: 'x', revision: 1, nodeId: 'a', nodeDown: true }),
          inst({ id: 'y', revision: 1, nodeId: 'b' }),
          inst({ id: 'r', revision: 1, nodeId: 'a', nodeDown: true, kind: 'release', state: 'stopped' }),
        ],
        nodes: [node('a', { schedulable: false }), node('b', { instances: [web] }), node('c')],
      }),
    );
    assert.deepEqual(plan.desired, [
      { id: 'x', desired: 'stop', why: 'lost' },
      { id: 'r', desired: 'stop', why: 'planner' },
    ]);
    assert.deepEqual(plan.placements, [{ revision: 1, nodeId: 'c', kind: 'web' }]);
  });

  describe('draining nodes', () => {
    const onDraining = inst({ id: 'm', revision: 1, nodeId: 'a', nodeDraining: true });
    it('places a replacement first and keeps the mover running while it is not ready', () => {
      const plan = planAppChanges(
        snap({
          instances: [onDraining, inst({ id: 'y', revision: 1, nodeId: 'b' })],
          nodes: [node('a', { schedulable: false }), node('b', { instances: [web] }), node('c')],
        }),
      );
      assert.deepEqual(plan.placements, [{ revision: 1, nodeId: 'c', kind: 'web' }]);
      assert.deepEqual(plan.desired, []);
      const waiting = planAppChanges(
        snap({
          instances: [
            onDraining,
            inst({ id: 'y', revision: 1, nodeId: 'b' }),
            inst({ id: 'z', revision: 1, nodeId: 'c', state: 'starting' }),
          ],
        }),
      );
      assert.deepEqual(waiting.desired, []);
      assert.deepEqual(waiting.placements, []);
    });
    it('drains the mover once enough of the active revision are ready elsewhere', () => {
      const plan = planAppChanges(
        snap({ instances: [onDraining, inst({ id: 'y', revision: 1, nodeId: 'b' }), inst({ id: 'z', revision: 1, nodeId: 'c' })] }),
      );
      assert.deepEqual(plan.desired, [{ id: 'm', desired: 'drain', why: 'moved' }]);
    });
    it('counts the revision this very plan activates', () => {
      const plan = planAppChanges(
        snap({
          app: { name: 'web', replicas: 1, activeRevision: 1 },
          rollout: { id: 4, toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
          instances: [inst({ id: 'm', revision: 1, nodeId: 'a', nodeDraining: true }), inst({ id: 'n', revision: 2, nodeId: 'b' })],
        }),
      );
      assert.equal(plan.activate, 2);
      assert.deepEqual(plan.finish, { status: 'succeeded', reason: undefined });
      assert.equal(plan.rolloutId, 4);
      assert.ok(plan.desired.some((d) => d.id === 'm' && d.desired === 'drain'));
    });
  });

  it('decides where volumes live at their first placement, and pins later ones there', () => {
    const first = planAppChanges(snap({ placement: { volumes: { names: ['data'] } } }));
    assert.deepEqual(
      first.placements.map((p) => p.nodeId),
      ['a', 'a'],
    );
    assert.deepEqual(first.volumes, { names: ['data'], nodeId: 'a' });
    const later = planAppChanges(
      snap({
        app: { name: 'web', replicas: 1, activeRevision: 1 },
        placement: { volumes: { names: ['data'], node: { id: 'c', name: 'c' } } },
      }),
    );
    assert.deepEqual(
      later.placements.map((p) => p.nodeId),
      ['c'],
    );
    assert.equal(later.volumes, undefined);
  });

  it('explains a ready timeout by the instances the last pass could not place', () => {
    const plan = planAppChanges(
      snap({
        rollout: { id: 1, toRevision: 2, elapsedMs: 61_000, readyTimeoutMs: 60_000 },
        nodes: [],
        unplacedBefore: { count: 2, reason: 'volume data of web is on node a, which is not ready' },
      }),
    );
    assert.match(plan.finish?.reason ?? '', /not ready within 60s: 2 instance\(s\) could not be placed: volume data of web is on node a/);
  });

  it('explains a rolling update that made no progress by the surge instance it could not place', () => {
    const plan = planAppChanges(
      snap({
        rollout: {
          id: 1,
          toRevision: 2,
          elapsedMs: 21_000,
          readyTimeoutMs: 20_000,
          strategy: { type: 'rolling', maxSurge: { count: 1 }, maxUnavailable: { count: 0 }, minReadyMs: 0 },
        },
        instances: [inst({ id: 'o1', revision: 1, nodeId: 'a' }), inst({ id: 'o2', revision: 1, nodeId: 'a' })],
        nodes: [],
        unplacedBefore: { count: 1, reason: 'no node has 0.2 CPU free' },
      }),
    );
    assert.equal(plan.finish?.status, 'failed');
    assert.match(
      plan.finish?.reason ?? '',
      /made no progress for 20s \(0 of 2 new instances available\): 1 instance\(s\) could not be placed: no node has 0\.2 CPU free/,
    );
  });

  it('is empty in a steady state', () => {
    assert.ok(
      isEmptyPlan(
        planAppChanges(snap({ instances: [inst({ id: 'x', revision: 1, nodeId: 'a' }), inst({ id: 'y', revision: 1, nodeId: 'b' })] })),
      ),
    );
  });

  it('never places on a node the scheduler may not use, never more than asked, and never moves without cover (property)', () => {
    const arbNode = fc.record({
      id: fc.constantFrom('a', 'b', 'c', 'd'),
      schedulable: fc.boolean(),
      draining: fc.boolean(),
      down: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(arbNode, { selector: (n) => n.id, minLength: 1 }),
        fc.array(
          fc.record({
            node: fc.constantFrom('a', 'b', 'c', 'd'),
            revision: fc.constantFrom(1, 2),
            state: fc.constantFrom('ready', 'starting', 'pending', 'failed', 'stopped') as fc.Arbitrary<SnapshotInstance['state']>,
            desired: fc.constantFrom('run', 'drain', 'stop') as fc.Arbitrary<SnapshotInstance['desired']>,
          }),
          { maxLength: 8 },
        ),
        fc.integer({ min: 0, max: 4 }),
        fc.boolean(),
        (nodes, insts, replicas, rolling) => {
          const byId = new Map(nodes.map((n) => [n.id, n]));
          const instances = insts.map((i, k) =>
            inst({
              id: `i${k}`,
              revision: i.revision,
              nodeId: i.node,
              state: i.state,
              desired: i.desired,
              nodeDown: byId.get(i.node)?.down ?? true,
              nodeDraining: byId.get(i.node)?.draining ?? false,
            }),
          );
          const schedNodes = nodes.map((n) => node(n.id, { schedulable: n.schedulable && !n.draining && !n.down }));
          const plan = planAppChanges(
            snap({
              app: { name: 'web', replicas, activeRevision: 1 },
              instances,
              nodes: schedNodes,
              rollout: rolling ? { id: 9, toRevision: 2, elapsedMs: 5, readyTimeoutMs: 60_000 } : undefined,
            }),
          );
          for (const p of plan.placements) assert.ok(schedNodes.find((n) => n.id === p.nodeId)?.schedulable);
          assert.ok(plan.placements.length <= replicas);
          // A desired change only names instances of the snapshot.
          for (const d of plan.desired) assert.ok(instances.some((i) => i.id === d.id));
          // Moves happen only when the active revision has enough ready instances off draining nodes.
          if (plan.desired.some((d) => d.why === 'moved')) {
            const active = plan.activate ?? 1;
            const last = new Map(plan.desired.map((d) => [d.id, d.desired]));
            const cover = instances.filter(
              (i) => !i.nodeDraining && (last.get(i.id) ?? i.desired) === 'run' && i.state === 'ready' && i.revision === active,
            );
            assert.ok(cover.length >= replicas);
          }
          // A lost instance is always stopped.
          for (const i of instances)
            if (i.nodeDown && i.desired !== 'stop') assert.ok(plan.desired.some((d) => d.id === i.id && d.desired === 'stop'));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('basis: changes with any row the planner read, not with the order rows come in', () => {
    const rows = [
      { id: 'a', revision: 1, nodeId: 'n', desired: 'run', state: 'ready', restarts: 0 },
      { id: 'b', revision: 2, nodeId: 'n', desired: 'run', state: 'starting', restarts: 0 },
    ];
    const base = basisOf({ app: { activeRevision: 1, replicas: 2 }, rolloutId: 3, instances: rows });
    assert.equal(basisOf({ app: { activeRevision: 1, replicas: 2 }, rolloutId: 3, instances: [...rows].reverse() }), base);
    assert.notEqual(basisOf({ app: { activeRevision: 1, replicas: 3 }, rolloutId: 3, instances: rows }), base);
    assert.notEqual(basisOf({ app: { activeRevision: 2, replicas: 2 }, rolloutId: 3, instances: rows }), base);
    assert.notEqual(basisOf({ app: { activeRevision: 1, replicas: 2 }, rolloutId: undefined, instances: rows }), base);
    assert.notEqual(basisOf({ app: undefined, rolloutId: 3, instances: rows }), base);
    for (const field of ['desired', 'state', 'nodeId'] as const) {
      assert.notEqual(
        basisOf({ app: { activeRevision: 1, replicas: 2 }, rolloutId: 3, instances: [{ ...rows[0]!, [field]: 'x' }, rows[1]!] }),
        base,
      );
    }
    assert.notEqual(
      basisOf({ app: { activeRevision: 1, replicas: 2 }, rolloutId: 3, instances: [{ ...rows[0]!, restarts: 1 }, rows[1]!] }),
      base,
    );
    assert.notEqual(basisOf({ app: { activeRevision: 1, replicas: 2 }, rolloutId: 3, instances: rows.slice(1) }), base);
  });

  describe('deploy preview', () => {
    const nodes = [
      node('a', { instances: [{ app: 'web', fixedPort: 3000, cpu: 1 }] }),
      node('b', { cpus: 2, instances: [{ app: 'other', fixedPort: undefined, cpu: 1.5 }] }),
    ];
    it("counts the app's own room as free (the rollout retires them) and lists what stops", () => {
      const p = previewDeploy({
        ...snap({}),
        nodes,
        fixedPort: 3000,
        placement: { cpu: 1 },
        toRevision: 5,
        instances: [inst({ id: 'old', revision: 4, nodeId: 'a' })],
      });
      assert.deepEqual(p.placements, [{ nodeId: 'a', node: 'a' }]);
      assert.equal(p.unplaced?.count, 1); // b has 0.5 CPU free
      assert.deepEqual(p.stops, [{ id: 'old', revision: 4, nodeId: 'a' }]);
      assert.equal(p.recreate, true);
    });
    it('places everything on a roomy cluster; nothing stops on a first deploy', () => {
      const p = previewDeploy({ ...snap({ app: { name: 'fresh', replicas: 3, activeRevision: undefined } }), toRevision: 1 });
      assert.deepEqual(p.placements.map((x) => x.nodeId).sort(), ['a', 'b', 'c']);
      assert.equal(p.unplaced, undefined);
      assert.deepEqual(p.stops, []);
      assert.equal(p.recreate, false);
    });
  });
});

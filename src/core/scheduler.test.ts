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
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 40 }), (n, count) => {
        const nodes: SchedulerNode[] = Array.from({ length: n }, (_, i) => ({
          id: `n${i}`,
          name: `n${i}`,
          schedulable: true,
          instances: [],
        }));
        const p = schedule(nodes, { app: 'x', count, fixedPort: undefined });
        assert.equal(p.nodeIds.length, count);
        const per = nodes.map((nd) => p.nodeIds.filter((id) => id === nd.id).length);
        assert.ok(Math.max(...per) - Math.min(...per) <= 1);
      }),
    );
  });

  it('respects CPU and memory, and says why when an instance fits nowhere', () => {
    const nodes: SchedulerNode[] = [
      {
        id: 'a',
        name: 'a',
        schedulable: true,
        cpus: 2,
        memoryMb: 1024,
        instances: [{ app: 'x', fixedPort: undefined, cpu: 1.5, memoryMb: 100 }],
      },
      { id: 'b', name: 'b', schedulable: true, cpus: 2, memoryMb: 1024, instances: [] },
    ];
    assert.deepEqual(schedule(nodes, { app: 'web', count: 3, fixedPort: undefined, cpu: 1 }).nodeIds, ['b', 'b']);
    const huge = schedule(nodes, { app: 'web', count: 1, fixedPort: undefined, cpu: 8 });
    assert.equal(huge.unplaced, 1);
    assert.match(huge.reason!, /needs 8 CPU, more than any node has/);
    const full = schedule(nodes, { app: 'web', count: 5, fixedPort: undefined, memoryMb: 600 });
    assert.equal(full.nodeIds.length, 2);
    assert.match(full.reason!, /2 of 5 instances placed: no node has 600 MB free/);
  });

  it("never goes over a node's capacity nor puts a fixed port twice on a node (property)", () => {
    const node = fc.record({ cpus: fc.integer({ min: 1, max: 8 }), memoryMb: fc.integer({ min: 256, max: 4096 }) });
    fc.assert(
      fc.property(
        fc.array(node, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 30 }),
        fc.option(fc.constant(8080), { nil: undefined }),
        fc.option(fc.double({ min: 0.1, max: 4, noNaN: true }), { nil: undefined }),
        fc.option(fc.integer({ min: 64, max: 2048 }), { nil: undefined }),
        (caps, count, fixedPort, cpu, memoryMb) => {
          const nodes: SchedulerNode[] = caps.map((c, i) => ({ id: `n${i}`, name: `n${i}`, schedulable: true, ...c, instances: [] }));
          const p = schedule(nodes, { app: 'x', count, fixedPort, cpu, memoryMb });
          assert.equal(p.nodeIds.length + p.unplaced, count);
          for (const n of nodes) {
            const k = p.nodeIds.filter((id) => id === n.id).length;
            assert.ok(k * (cpu ?? 0) <= n.cpus! + 1e-9);
            assert.ok(k * (memoryMb ?? 0) <= n.memoryMb!);
            if (fixedPort !== undefined) assert.ok(k <= 1);
          }
        },
      ),
    );
  });

  it('places docker instances only where the Docker engine answers, and says what to start', () => {
    const nodes: SchedulerNode[] = [
      { id: 'a', name: 'a', schedulable: true, instances: [] },
      { id: 'b', name: 'b', schedulable: true, runtimes: new Set(['docker']), instances: [] },
    ];
    assert.deepEqual(schedule(nodes, { app: 'x', count: 2, fixedPort: undefined, runtime: 'docker' }).nodeIds, ['b', 'b']);
    assert.deepEqual([...schedule(nodes, { app: 'x', count: 2, fixedPort: undefined, runtime: 'process' }).nodeIds].sort(), ['a', 'b']);
    const none = schedule(nodes.slice(0, 1), { app: 'x', count: 1, fixedPort: undefined, runtime: 'docker' });
    assert.equal(none.unplaced, 1);
    assert.match(none.reason ?? '', /no ready node has a running Docker engine \(start dockerd/);
  });

  it('honours label constraints and prefers nodes that have the artifact', () => {
    const nodes: SchedulerNode[] = [
      { id: 'a', name: 'a', schedulable: true, labels: { zone: 'eu' }, instances: [] },
      { id: 'b', name: 'b', schedulable: true, labels: { zone: 'us' }, instances: [], artifacts: new Set(['sha256:x']) },
      { id: 'c', name: 'c', schedulable: true, labels: { zone: 'us' }, instances: [] },
    ];
    assert.deepEqual(schedule(nodes, { app: 'w', count: 2, fixedPort: undefined, constraints: { zone: 'eu' } }).nodeIds, ['a', 'a']);
    assert.match(
      schedule(nodes, { app: 'w', count: 1, fixedPort: undefined, constraints: { zone: 'mars' } }).reason!,
      /no ready node has the labels zone=mars/,
    );
    assert.deepEqual(schedule(nodes, { app: 'w', count: 1, fixedPort: undefined, artifact: 'sha256:x' }).nodeIds, ['b']);
    assert.deepEqual(schedule(nodes, { app: 'w', count: 1, fixedPort: undefined }).nodeIds, ['a']);
  });

  it('answers exactly as the exhaustive pass when it looks only at the best nodes (property)', () => {
    const inst = fc.record({
      app: fc.constantFrom('a', 'b', 'c'),
      fixedPort: fc.option(fc.constantFrom(80, 81), { nil: undefined }),
      cpu: fc.constantFrom(0.5, 1),
      memoryMb: fc.constantFrom(128, 512),
    });
    const node = fc.record({
      schedulable: fc.constantFrom(true, true, true, false),
      cpus: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
      memoryMb: fc.option(fc.integer({ min: 256, max: 4096 }), { nil: undefined }),
      zone: fc.constantFrom('x', 'y'),
      cached: fc.boolean(),
      instances: fc.array(inst, { maxLength: 6 }),
    });
    const request = fc.record({
      app: fc.constantFrom('a', 'b', 'new'),
      count: fc.integer({ min: 1, max: 12 }),
      fixedPort: fc.option(fc.constantFrom(80, 81), { nil: undefined }),
      cpu: fc.option(fc.constantFrom(0.5, 1, 2), { nil: undefined }),
      memoryMb: fc.option(fc.constantFrom(128, 1024), { nil: undefined }),
      zone: fc.option(fc.constantFrom('x', 'y'), { nil: undefined }),
      artifact: fc.option(fc.constant('sha256:a'), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(node, { minLength: 40, maxLength: 160 }), request, (specs, r) => {
        const nodes: SchedulerNode[] = specs.map((s, i) => ({
          id: `n${i}`,
          name: `node-${(i * 7919) % 1000}-${i}`,
          schedulable: s.schedulable,
          cpus: s.cpus,
          memoryMb: s.memoryMb,
          labels: { zone: s.zone },
          artifacts: s.cached ? new Set(['sha256:a']) : undefined,
          instances: s.instances,
        }));
        const req = {
          app: r.app,
          count: r.count,
          fixedPort: r.fixedPort,
          cpu: r.cpu,
          memoryMb: r.memoryMb,
          artifact: r.artifact,
          constraints: r.zone ? { zone: r.zone } : undefined,
        };
        assert.deepEqual(schedule(nodes, req), schedule(nodes, req, { exhaustive: true }));
      }),
      { numRuns: 300 },
    );
  });

  describe('volumes', () => {
    const three = (): SchedulerNode[] => ['a', 'b', 'c'].map((id) => ({ id, name: `node-${id}`, schedulable: true, instances: [] }));

    it('puts every replica of a first placement on one node, the one the first instance would get', () => {
      const nodes = three();
      nodes[0] = { ...nodes[0]!, instances: [{ app: 'other', fixedPort: undefined }] };
      const p = schedule(nodes, { app: 'db', count: 3, fixedPort: undefined, volumes: { names: ['data'] } });
      assert.deepEqual(p.nodeIds, ['b', 'b', 'b']);
    });

    it('places only on the node that holds the volume, even when others are emptier', () => {
      const nodes = three();
      nodes[2] = {
        ...nodes[2]!,
        instances: [
          { app: 'x', fixedPort: undefined },
          { app: 'y', fixedPort: undefined },
        ],
      };
      assert.deepEqual(
        schedule(nodes, { app: 'db', count: 2, fixedPort: undefined, volumes: { names: ['data'], node: { id: 'c', name: 'node-c' } } })
          .nodeIds,
        ['c', 'c'],
      );
    });

    it("waits, saying why, when the volume's node is down, gone, lacks a label or the engine, or is full", () => {
      const nodes = three();
      const req = (node = { id: 'a', name: 'node-a' }, extra = {}) => ({
        app: 'db',
        count: 1,
        fixedPort: undefined,
        volumes: { names: ['data'], node },
        ...extra,
      });
      const down = schedule([{ ...nodes[0]!, schedulable: false }, nodes[1]!], req());
      assert.deepEqual(down.nodeIds, []);
      assert.equal(down.unplaced, 1);
      assert.match(
        down.reason!,
        /^volume data of db is on node node-a, which is not ready \(down, draining or cordoned\): the instances wait for it \(`pilot volumes forget db`/,
      );
      assert.match(schedule(nodes, req({ id: 'zz', name: 'zz' })).reason!, /node zz, which is no longer registered/);
      assert.match(schedule(nodes, req(undefined, { constraints: { zone: 'eu' } })).reason!, /node node-a, which lacks the labels zone=eu/);
      assert.match(schedule(nodes, req(undefined, { runtime: 'docker' })).reason!, /node node-a, which has no running Docker engine/);
      const full = schedule([{ ...nodes[0]!, cpus: 1 }], req(undefined, { cpu: 2 }));
      assert.match(full.reason!, /^volume data of db is on node node-a: 0 of 1 instances placed: each instance needs 2 CPU/);
    });

    it("never places an app with volumes on two nodes, nor off its volume's node (property)", () => {
      fc.assert(
        fc.property(
          fc.array(fc.record({ up: fc.boolean(), load: fc.nat(4), cpus: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }) }), {
            minLength: 1,
            maxLength: 8,
          }),
          fc.integer({ min: 1, max: 6 }),
          fc.option(fc.nat(7), { nil: undefined }),
          fc.option(fc.constant(0.5), { nil: undefined }),
          (spec, count, pinAt, cpu) => {
            const nodes: SchedulerNode[] = spec.map((s, i) => ({
              id: `n${i}`,
              name: `n${i}`,
              schedulable: s.up,
              cpus: s.cpus,
              instances: Array.from({ length: s.load }, () => ({ app: 'other', fixedPort: undefined })),
            }));
            const pin = pinAt === undefined ? undefined : nodes[pinAt % nodes.length]!;
            const p = schedule(nodes, {
              app: 'db',
              count,
              fixedPort: undefined,
              cpu,
              volumes: { names: ['data'], node: pin && { id: pin.id, name: pin.name } },
            });
            assert.equal(p.nodeIds.length + p.unplaced, count);
            assert.ok(new Set(p.nodeIds).size <= 1, `on one node: ${p.nodeIds.join(',')}`);
            if (pin) assert.ok(p.nodeIds.every((id) => id === pin.id));
            if (pin && !pin.schedulable) assert.match(p.reason!, /wait for it/);
            if (p.nodeIds.length > 0) assert.ok(nodes.find((n) => n.id === p.nodeIds[0])!.schedulable);
          },
        ),
      );
    });
  });
});

describe('scheduler capacity boundaries', () => {
  it('places an instance that exactly fills a node, and refuses one more', () => {
    const node = (instances: SchedulerNode['instances']): SchedulerNode[] => [
      { id: 'a', name: 'a', schedulable: true, cpus: 2, memoryMb: 1024, instances },
    ];
    const exact = schedule(node([{ app: 'o', fixedPort: undefined, cpu: 1.5, memoryMb: 768 }]), {
      app: 'w',
      count: 1,
      fixedPort: undefined,
      cpu: 0.5,
      memoryMb: 256,
    });
    assert.deepEqual([exact.nodeIds, exact.unplaced], [['a'], 0]);
    const over = schedule(node([{ app: 'o', fixedPort: undefined, cpu: 1.5, memoryMb: 768 }]), {
      app: 'w',
      count: 1,
      fixedPort: undefined,
      cpu: 0.5,
      memoryMb: 257,
    });
    assert.equal(over.unplaced, 1);
    const overCpu = schedule(node([{ app: 'o', fixedPort: undefined, cpu: 1.5, memoryMb: 768 }]), {
      app: 'w',
      count: 1,
      fixedPort: undefined,
      cpu: 0.51,
      memoryMb: 256,
    });
    assert.equal(overCpu.unplaced, 1);
  });
});

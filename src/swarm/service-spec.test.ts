import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { InstanceSpec } from '../core/types.js';
import { buildServiceSpec, healthTest, LOADER_PATH, secretName, serviceName, type ServiceInput } from './service-spec.js';
import { assignSlots } from './slots.js';
import { LogFrames } from './log-frames.js';
import { instanceState, instanceStatus, type TaskFacts } from './task-status.js';

const spec = (over: Partial<InstanceSpec> = {}): InstanceSpec => ({
  id: 'shop-2-aaaaaa',
  app: 'shop',
  revision: 2,
  artifact: 'sha256:' + 'a'.repeat(64),
  runtime: 'docker',
  image: { id: 'sha256:' + 'b'.repeat(64), archive: 'sha256:' + 'a'.repeat(64) },
  commit: 'c'.repeat(40),
  run: undefined,
  port: undefined,
  env: { NODE_ENV: 'production', API_KEY: 'hunter2-very-secret', DB_URL: 'postgres://u:pw@db/x' },
  secretNames: ['API_KEY', 'DB_URL'],
  health: { path: '/ready', intervalMs: 1000, timeoutMs: 2000 },
  stopTimeoutMs: 10_000,
  ...over,
});

/** The fields of a ServiceSpec these tests read. */
interface SpecView {
  Name: string;
  Labels: Record<string, string>;
  Mode: unknown;
  EndpointSpec: { Mode: string };
  TaskTemplate: {
    Networks: unknown;
    RestartPolicy: { Condition: string };
    Resources: { Limits: unknown };
    ContainerSpec: {
      Image: string;
      Args?: string[];
      Env: string[];
      Secrets: { SecretID: string; File: { Name: string } }[];
      Configs?: { File: { Name: string } }[];
      StopGracePeriod: number;
      Healthcheck: { Test: string[]; Interval: number };
    };
  };
}
const build = (i: ServiceInput): SpecView => buildServiceSpec(i) as unknown as SpecView;

const secrets = new Map([
  ['API_KEY', { id: 'sec1', name: 'blue-shop-r2-api-key-1234' }],
  ['DB_URL', { id: 'sec2', name: 'blue-shop-r2-db-url-1234' }],
]);
const loader = { id: 'cfg1', name: 'blue-pilot-env-loader' };

describe('swarm service spec', () => {
  it('names the service by target, app and revision, and labels it with its slots', () => {
    const s = build({
      target: 'blue',
      spec: spec(),
      block: 21300,
      replicas: 3,
      slots: new Map([
        [1, 'i-1'],
        [3, 'i-3'],
      ]),
      secrets,
      loader,
    });
    assert.equal(s.Name, 'blue-shop-r2');
    assert.deepEqual(s.Labels, {
      'dev.pilot.target': 'blue',
      'dev.pilot.app': 'shop',
      'dev.pilot.revision': '2',
      'dev.pilot.block': '21300',
      'dev.pilot.slot.1': 'i-1',
      'dev.pilot.slot.3': 'i-3',
    });
    assert.deepEqual(s.Mode, { Replicated: { Replicas: 3 } });
    assert.deepEqual(s.TaskTemplate.Networks, [{ Target: 'host' }]);
    assert.equal(s.EndpointSpec.Mode, 'dnsrr');
    assert.equal(s.TaskTemplate.RestartPolicy.Condition, 'any');
  });

  it('keeps secrets out of Env: only references, mounted as env.NAME files, and the loader required', () => {
    const s = build({ target: 'blue', spec: spec(), block: 21300, replicas: 1, slots: new Map(), secrets, loader });
    const text = JSON.stringify(s);
    assert.ok(!text.includes('hunter2-very-secret') && !text.includes('u:pw@db'), 'a secret value is in the spec');
    const env: string[] = s.TaskTemplate.ContainerSpec.Env;
    assert.ok(env.includes('NODE_ENV=production'));
    assert.ok(!env.some((e) => e.startsWith('API_KEY=') || e.startsWith('DB_URL=')));
    assert.ok(env.includes(`NODE_OPTIONS=--require=${LOADER_PATH}`));
    assert.deepEqual(
      s.TaskTemplate.ContainerSpec.Secrets.map((x) => [x.SecretID, x.File.Name]),
      [
        ['sec1', 'env.API_KEY'],
        ['sec2', 'env.DB_URL'],
      ],
    );
    assert.equal(s.TaskTemplate.ContainerSpec.Configs?.[0]?.File.Name, LOADER_PATH);
  });

  it("keeps the app's own NODE_OPTIONS after the loader, and adds no loader without secrets", () => {
    const own = build({
      target: 'blue',
      spec: spec({ env: { NODE_OPTIONS: '--max-old-space-size=256', K: 'v' }, secretNames: ['K'] }),
      block: 20000,
      replicas: 1,
      slots: new Map(),
      secrets: new Map([['K', { id: 's', name: 'n' }]]),
      loader,
    });
    assert.ok(own.TaskTemplate.ContainerSpec.Env.includes(`NODE_OPTIONS=--require=${LOADER_PATH} --max-old-space-size=256`));
    const none = build({
      target: 'blue',
      spec: spec({ env: { A: '1' }, secretNames: [] }),
      block: 20000,
      replicas: 1,
      slots: new Map(),
      secrets: new Map(),
      loader: undefined,
    });
    assert.deepEqual(none.TaskTemplate.ContainerSpec.Env, ['A=1', 'PORT=200{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}']);
    assert.equal(none.TaskTemplate.ContainerSpec.Configs, undefined);
  });

  it('gives PORT as a template of the block and the slot; a PORT in env is replaced', () => {
    const s = build({
      target: 't',
      spec: spec({ env: { PORT: '80' }, secretNames: [] }),
      block: 31900,
      replicas: 1,
      slots: new Map(),
      secrets: new Map(),
      loader: undefined,
    });
    assert.deepEqual(s.TaskTemplate.ContainerSpec.Env, ['PORT=319{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}']);
  });

  it('prefers the registry reference over the image ID, and maps resources, run and the health check', () => {
    const s = build({
      target: 't',
      spec: spec({
        image: { id: 'sha256:' + 'b'.repeat(64), ref: '127.0.0.1:5000/shop@sha256:' + 'd'.repeat(64) },
        resources: { cpu: 0.5, memoryMb: 256 },
        run: ['node', 'dist/server.js', '--flag'],
      }),
      block: 20000,
      replicas: 1,
      slots: new Map(),
      secrets: new Map(),
      loader: undefined,
    });
    const c = s.TaskTemplate.ContainerSpec;
    assert.equal(c.Image, '127.0.0.1:5000/shop@sha256:' + 'd'.repeat(64));
    assert.deepEqual(c.Args, ['node', 'dist/server.js', '--flag']);
    assert.deepEqual(s.TaskTemplate.Resources.Limits, { NanoCPUs: 500_000_000, MemoryBytes: 256 * 1024 * 1024 });
    assert.equal(c.StopGracePeriod, 10_000_000_000);
    assert.deepEqual(c.Healthcheck.Test.slice(0, 3), ['CMD', 'node', '-e']);
    assert.equal(c.Healthcheck.Interval, 1_000_000_000);
  });

  it('quotes a hostile health path as a JS string (no code injection into the probe)', () => {
    const evil = "/x');process.exit(0);('";
    const t = healthTest(evil)[3]!;
    assert.ok(t.includes(JSON.stringify(evil)));
    // The script parses, and the path is one string literal in it.
    assert.doesNotThrow(() => new Function(t.replace(/process\.exit/g, 'void')));
  });

  it('keeps names within 63 characters and distinct per revision', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z][a-z0-9-]{0,55}$/),
        fc.stringMatching(/^[a-z][a-z0-9-]{0,62}$/),
        fc.integer({ min: 1, max: 1e6 }),
        (t, a, r) => {
          const n = serviceName(t, a, r);
          assert.ok(n.length <= 63);
          assert.ok(n.endsWith(`-r${r}`));
          assert.notEqual(n, serviceName(t, a, r + 1));
          assert.ok(secretName(n, 'SOME_VERY_LONG_SECRET_NAME_'.repeat(4), 'abcd1234').length <= 64);
        },
      ),
    );
  });
});

describe('swarm slots', () => {
  it('gives new instances the lowest free slots and grows replicas', () => {
    const p = assignSlots(new Map(), 0, ['a', 'b'], new Set());
    assert.deepEqual(
      [...p.slots],
      [
        [1, 'a'],
        [2, 'b'],
      ],
    );
    assert.equal(p.replicas, 2);
  });

  it('never shrinks a running service: a stopped instance frees its slot, its task keeps running for the next one', () => {
    const cur = new Map([
      [1, 'a'],
      [2, 'b'],
      [3, 'c'],
    ]);
    const freed = assignSlots(cur, 3, ['a', 'c'], new Set(['b']));
    assert.deepEqual(
      [...freed.slots],
      [
        [1, 'a'],
        [3, 'c'],
      ],
    );
    assert.equal(freed.replicas, 3);
    const reused = assignSlots(freed.slots, 3, ['a', 'c', 'd'], new Set());
    assert.equal(reused.slots.get(2), 'd');
    assert.equal(reused.replicas, 3);
  });

  it('keeps slots of instances it was not told to stop (orphans are never stopped on a guess)', () => {
    const p = assignSlots(new Map([[1, 'x']]), 1, [], new Set());
    assert.deepEqual([...p.slots], [[1, 'x']]);
  });

  it('property: slots are unique, within 1..99, every wanted instance has one (up to 99), stopped ones none', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z]{1,4}$/), { maxLength: 120 }), fc.integer({ min: 0, max: 120 }), (ids, cut) => {
        const first = assignSlots(new Map(), 0, ids, new Set());
        const stop = new Set(ids.slice(0, cut));
        const next = assignSlots(first.slots, first.replicas, ids.slice(cut), stop);
        const used = [...next.slots.keys()];
        assert.equal(new Set(used).size, used.length);
        assert.ok(used.every((s) => s >= 1 && s <= 99));
        assert.ok(next.replicas >= first.replicas);
        for (const id of stop) assert.ok(![...next.slots.values()].includes(id));
        const wanted = ids.slice(cut).filter((id) => [...first.slots.values()].includes(id));
        for (const id of wanted) assert.ok([...next.slots.values()].includes(id));
      }),
    );
  });
});

const task = (over: Partial<TaskFacts>): TaskFacts => ({
  id: 'task000000001xyz',
  serviceId: 'svc',
  slot: 1,
  nodeId: 'n1',
  state: 'running',
  desiredState: 'running',
  error: undefined,
  exitCode: undefined,
  containerId: 'f'.repeat(64),
  version: 10,
  updatedAt: 2000,
  createdAt: 1000,
  ...over,
});

describe('swarm task → instance status', () => {
  it('maps task states: running is ready (the health check gates it), starting, pending, ended', () => {
    assert.equal(instanceState(undefined), 'pending');
    assert.equal(instanceState(task({ state: 'running' })), 'ready');
    assert.equal(instanceState(task({ state: 'starting' })), 'starting');
    assert.equal(instanceState(task({ state: 'preparing' })), 'pending');
    assert.equal(instanceState(task({ state: 'failed' })), 'backoff');
  });

  it('a task Swarm replaced: counted as a restart, the old task and the new one named, port and address kept', () => {
    const s = instanceStatus({
      instanceId: 'shop-2-aaa',
      app: 'shop',
      revision: 2,
      serviceId: 'svc',
      slot: 4,
      block: 21300,
      tasks: [
        task({
          id: 'oldtask0000001',
          slot: 4,
          state: 'failed',
          desiredState: 'shutdown',
          exitCode: 137,
          error: 'task: non-zero exit (137)',
          createdAt: 1000,
        }),
        task({ id: 'newtask0000002', slot: 4, state: 'running', createdAt: 5000, nodeId: 'n2' }),
        task({ id: 'othertask00003', slot: 1, createdAt: 9000 }),
      ],
      nodeAddress: new Map([
        ['n1', '127.0.0.1'],
        ['n2', '10.0.0.7'],
      ]),
    });
    assert.equal(s.state, 'ready');
    assert.equal(s.port, 21304);
    assert.equal(s.restarts, 1);
    assert.equal(s.address, '10.0.0.7');
    assert.match(
      s.lastError!,
      /task oldtask00000 failed \(task: non-zero exit \(137\), exit 137\); Swarm replaced it with task newtask00000 running/,
    );
  });
});

describe('swarm task logs', () => {
  const frame = (stream: number, text: string): Buffer => {
    const payload = Buffer.from(text);
    const head = Buffer.alloc(8);
    head[0] = stream;
    head.writeUInt32BE(payload.length, 4);
    return Buffer.concat([head, payload]);
  };

  it('decodes stdout and stderr frames, split anywhere across chunks, multi-byte characters whole', () => {
    const all = Buffer.concat([frame(1, 'listening on 23001\n'), frame(2, 'warn: ✓ 日本\n'), frame(1, 'bye\n')]);
    for (let cut = 0; cut <= all.length; cut++) {
      const f = new LogFrames();
      const text = f.push(all.subarray(0, cut)) + f.push(all.subarray(cut));
      assert.equal(text, 'listening on 23001\nwarn: ✓ 日本\nbye\n', `cut at ${cut}`);
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPilotError } from './errors.js';
import { resolveAppConfig, validateAppConfig } from './app-config.js';
import { schedule, type SchedulerNode } from './scheduler.js';
import { freeBlock, parseDockerUrl, parsePortRange, portTemplate, slotPort } from './target.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    assert.ok(isPilotError(e), String(e));
    return e.code;
  }
  assert.fail('no error');
};

describe('deploy targets: docker addresses and ports', () => {
  it('reads unix sockets and tcp addresses', () => {
    assert.deepEqual(parseDockerUrl('unix:///var/run/docker.sock'), { socketPath: '/var/run/docker.sock' });
    assert.deepEqual(parseDockerUrl('tcp://127.0.0.1:2375'), { host: '127.0.0.1', port: 2375 });
    assert.deepEqual(parseDockerUrl('tcp://[::1]:2375'), { host: '::1', port: 2375 });
  });

  it('refuses what is not an engine address, with invalid_target', () => {
    for (const bad of [
      '',
      'http://x',
      'unix://relative.sock',
      'tcp://host',
      'tcp://h:99999',
      'tcp://h:1; rm -rf /',
      'ssh://u@h',
      'unix:///a\0b',
    ])
      assert.equal(
        code(() => parseDockerUrl(bad)),
        'invalid_target',
        bad,
      );
  });

  it('port ranges are blocks of 100; a free block is the lowest untaken', () => {
    assert.deepEqual(parsePortRange('20000-20200'), { from: 20000, to: 20200 });
    for (const bad of ['20000', '20050-20200', '20000-20000', '500-900', '20000-65500', 'a-b'])
      assert.equal(
        code(() => parsePortRange(bad)),
        'invalid_target',
        bad,
      );
    const r = { from: 20000, to: 20200 };
    assert.equal(freeBlock(r, new Set()), 20000);
    assert.equal(freeBlock(r, new Set([20000, 20100])), 20200);
    assert.equal(freeBlock(r, new Set([20000, 20100, 20200])), undefined);
    // Round: after 20000 comes 20100 even when 20000 is free again (its tasks may still be stopping); then it wraps.
    assert.equal(freeBlock(r, new Set(), 20000), 20100);
    assert.equal(freeBlock(r, new Set([20000]), 20200), 20100);
    assert.equal(freeBlock(r, new Set(), 20200), 20000);
    assert.equal(slotPort(21300, 7), 21307);
    assert.equal(portTemplate(21300), 'PORT=213{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}');
  });
});

describe('deploy targets: pilot.yaml and the scheduler', () => {
  const node = (id: string, labels: Record<string, string> = {}): SchedulerNode => ({
    id,
    name: id,
    schedulable: true,
    labels,
    runtimes: new Set(['docker']),
    instances: [],
  });

  it('`target` becomes the pilot.target constraint', () => {
    const c = resolveAppConfig(validateAppConfig({ runtime: 'docker', target: 'blue', constraints: { zone: 'a' } }, 'pilot.yaml'), 'shop');
    assert.equal(c.target, 'blue');
    assert.deepEqual(c.constraints, { zone: 'a', 'pilot.target': 'blue' });
    assert.equal(
      code(() => validateAppConfig({ target: 'Bad Name' }, 'pilot.yaml')),
      'invalid_config',
    );
  });

  it("places a target's apps only on its node, and other apps never there", () => {
    const nodes = [node('agent'), node('swarm-blue', { 'pilot.target': 'blue' }), node('swarm-green', { 'pilot.target': 'green' })];
    const onBlue = schedule(nodes, {
      app: 'a',
      count: 3,
      fixedPort: undefined,
      runtime: 'docker',
      constraints: { 'pilot.target': 'blue' },
    });
    assert.deepEqual(onBlue.nodeIds, ['swarm-blue', 'swarm-blue', 'swarm-blue']);
    const plain = schedule(nodes, { app: 'b', count: 3, fixedPort: undefined, runtime: 'docker' });
    assert.deepEqual(plain.nodeIds, ['agent', 'agent', 'agent']);
    const nowhere = schedule([node('agent')], { app: 'c', count: 1, fixedPort: undefined, constraints: { 'pilot.target': 'blue' } });
    assert.equal(nowhere.unplaced, 1);
    assert.match(nowhere.reason!, /pilot\.target=blue/);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactClient } from '../artifacts/client.js';
import { isPilotError } from '../core/errors.js';
import type { InstanceSpec } from '../core/types.js';
import { connectEngine } from '../docker/engine.js';
import { ensureBaseImage, removeNodeContainers } from '../docker/test-images.js';
import { engineProxy } from '../docker/test-proxy.js';
import { dockerSkip } from '../docker/test-support.js';
import { containerEnv, DockerNode } from './docker-node.js';
import { newLocalInstance } from './instance.js';

const spec: InstanceSpec = {
  id: 'boat-1-abc',
  app: 'boat',
  revision: 4,
  artifact: `sha256:${'a'.repeat(64)}`,
  runtime: 'docker',
  image: { id: `sha256:${'b'.repeat(64)}`, archive: `sha256:${'a'.repeat(64)}` },
  commit: 'c'.repeat(40),
  run: undefined,
  port: undefined,
  env: { GREETING: 'ahoy', PORT: '1' },
  health: { path: '/', intervalMs: 1000, timeoutMs: 1000 },
  stopTimeoutMs: 1000,
};

void describe('docker node', () => {
  void it("gives a container the app's env over the image's, with PORT and the instance facts, and nothing of the agent's", () => {
    process.env.PILOT_SECRET_X = 'agent-secret';
    try {
      assert.deepEqual(containerEnv(spec, 4100), {
        NODE_ENV: 'production',
        GREETING: 'ahoy',
        PORT: '4100',
        PILOT_APP: 'boat',
        PILOT_REVISION: '4',
        PILOT_COMMIT: 'c'.repeat(40),
        PILOT_INSTANCE: 'boat-1-abc',
      });
    } finally {
      delete process.env.PILOT_SECRET_X;
    }
  });

  void it(
    'fails a docker instance on a node whose engine does not answer, naming what to start; reports the engine once it answers',
    { skip: dockerSkip },
    async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'pilot-dnode-'));
      const proxy = engineProxy(join(dir, 'docker.sock'));
      t.after(async () => {
        await proxy.stop();
        await rm(dir, { recursive: true, force: true });
      });
      const dn = new DockerNode({
        engine: connectEngine({ DOCKER_HOST: `unix://${proxy.socketPath}` }),
        node: 'dn-test',
        home: dir,
        artifacts: () => new ArtifactClient('http://127.0.0.1:9', 'x'),
      });
      t.after(() => dn.runtime.close());
      assert.equal(await dn.check(), true, 'changed from "not checked yet"');
      assert.equal(dn.report.available, false);
      assert.match(dn.report.error ?? '', /is not answering .*start it with `dockerd`/);
      await assert.rejects(dn.request(newLocalInstance(spec, join(dir, 'i')), 4100), (e: unknown) => {
        assert.ok(isPilotError(e));
        assert.equal(e.code, 'runtime_unavailable');
        assert.match(e.message, new RegExp(`Docker engine at unix://${proxy.socketPath} is not answering.*dockerd`));
        return true;
      });
      assert.equal(await dn.check(), false, 'still down: nothing new to report');
      await proxy.start();
      assert.equal(await dn.check(), true);
      assert.equal(dn.report.available, true);
      assert.match(dn.report.version ?? '', /^\d+\./);
    },
  );

  void it('sweeps away containers of instances the agent no longer has, and only those of this agent', { skip: dockerSkip }, async (t) => {
    const engine = connectEngine();
    const dir = await mkdtemp(join(tmpdir(), 'pilot-dnode-'));
    const node = `sw-${process.pid}`;
    const dn = new DockerNode({ engine, node, home: dir, artifacts: () => new ArtifactClient('http://127.0.0.1:9', 'x') });
    t.after(async () => {
      await dn.runtime.close();
      await removeNodeContainers(engine, node);
      await rm(dir, { recursive: true, force: true });
    });
    await dn.check();
    const image = (await engine.getImage((await ensureBaseImage(engine)).tag).inspect()).Id;
    const start = (id: string, stateDir: string): Promise<unknown> =>
      dn.runtime.start({ instanceId: id, stateDir, cwd: '/', argv: ['node', '-e', 'setInterval(() => {}, 1e9)'], env: {}, image });
    await start('kept-1', join(dir, 'instances', 'kept-1'));
    await start('gone-1', join(dir, 'instances', 'gone-1'));
    await start('other-1', join(dir, 'elsewhere', 'other-1')); // another agent's home on the same node name
    assert.equal(await dn.sweep(join(dir, 'instances'), new Set(['kept-1'])), 1);
    const left = (await engine.listContainers({ all: true, filters: { label: [`dev.pilot.node=${node}`] } }))
      .map((c) => c.Labels['dev.pilot.instance'])
      .sort();
    assert.deepEqual(left, ['kept-1', 'other-1']);
  });
});

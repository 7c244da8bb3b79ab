import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isPilotError } from '../../core/errors.js';
import { connectEngine } from '../../docker/engine.js';
import { dockerSkip } from '../../docker/test-support.js';
import { buildTestImage, removeImage, removeNodeContainers } from '../../docker/test-images.js';
import { engineProxy } from '../../docker/test-proxy.js';
import { containerName, DockerRuntime, LABELS } from './docker-runtime.js';
import type { InstanceHandle, StartRequest } from './runtime.js';
import { runtimeContract } from './runtime.contract.js';
import { APP_SOURCE, waitFor } from './test-support.js';

const engine = connectEngine();
const TAG = `pilot-test/agent/runtime:${process.pid}`;
/** The runtime test app, plus `oom` (allocates until the memory limit kills it) and `exit` (code 3 at once). */
const SOURCE = `${APP_SOURCE}
if (mode === 'oom') { const keep = []; setInterval(() => { for (let i = 0; i < 4; i++) keep.push(Buffer.alloc(4 << 20, i + 1)); }, 10); }
if (mode === 'exit') process.exit(3);
`;
let image: Promise<string> | undefined;
const testImage = (): Promise<string> => (image ??= buildTestImage(engine, TAG, { 'app.mjs': SOURCE }, ['node', '/app/app.mjs']));
const nodes = new Set<string>();
const dirs: string[] = [];

async function harnessParts(): Promise<{ node: string; root: string; req: (id: string, mode?: string) => Promise<StartRequest> }> {
  const node = `rt-${randomBytes(4).toString('hex')}`;
  nodes.add(node);
  const root = await mkdtemp(join(tmpdir(), 'pilot-drt-'));
  dirs.push(root);
  const id = await testImage();
  return {
    node,
    root,
    req: async (instanceId, mode = 'serve') => ({
      instanceId,
      stateDir: join(root, 'state', instanceId),
      cwd: '/',
      argv: ['node', '/app/app.mjs', mode],
      env: { PORT: '4100', APP_MODE: 'test' },
      image: id,
      labels: { [LABELS.app]: 'web', [LABELS.revision]: '1' },
    }),
  };
}

after(async () => {
  if (dockerSkip) return;
  for (const n of nodes) await removeNodeContainers(engine, n);
  await removeImage(engine, TAG);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

let imageId = '';
before(async () => {
  if (!dockerSkip) imageId = await testImage();
});

runtimeContract(
  'docker',
  async () => {
    const parts = await harnessParts();
    const requests = new Map<string, StartRequest>();
    const request = (id: string): StartRequest => {
      const r = {
        instanceId: id,
        stateDir: join(parts.root, 'state', id),
        cwd: '/',
        argv: ['node', '/app/app.mjs'],
        env: { PORT: '4100' },
        image: imageId,
      };
      requests.set(r.stateDir, r);
      return r;
    };
    return {
      makeRuntime: () => new DockerRuntime({ engine, node: parts.node }),
      request,
      missingCommand: (id) => ({ ...request(id), argv: ['pilot-no-such-command', '--flag'] }),
      crash: async (h: InstanceHandle) => {
        await engine
          .getContainer(h.containerId!)
          .kill()
          .catch(() => undefined);
      },
      hasRecord: async (stateDir) =>
        (await engine.listContainers({ all: true, filters: { label: [`${LABELS.stateDir}=${stateDir}`] } })).length > 0,
      cleanup: async () => {
        await removeNodeContainers(engine, parts.node);
      },
    };
  },
  { skip: dockerSkip, timeout: 120_000 },
);

/** A runtime and request maker; every container of the test's node is removed after it. */
async function setup(
  t: TestContext,
): Promise<{ rt: DockerRuntime; node: string; req: (id: string, mode?: string) => Promise<StartRequest> }> {
  const parts = await harnessParts();
  const rt = new DockerRuntime({ engine, node: parts.node });
  t.after(async () => {
    await rt.close();
    await removeNodeContainers(engine, parts.node);
  });
  return { rt, node: parts.node, req: parts.req };
}

const text = (f: string): Promise<string> => readFile(f, 'utf8').catch(() => '');

void describe('docker runtime', { skip: dockerSkip, timeout: 120_000 }, () => {
  void it('runs the container with host networking, init, limits, labels, a fixed name and only the app env over the image PATH', async (t) => {
    process.env.PILOT_SECRET_X = 'agent-secret';
    t.after(() => delete process.env.PILOT_SECRET_X);
    const { rt, node, req } = await setup(t);
    const r = { ...(await req('env-1')), limits: { memoryMb: 128, cpu: 0.5 } };
    const h = await rt.start(r);
    const info = await engine.getContainer(h.containerId!).inspect();
    assert.equal(info.Name, `/${containerName(node, 'env-1')}`);
    assert.equal(info.HostConfig.NetworkMode, 'host');
    assert.equal(info.HostConfig.Init, true);
    assert.equal(info.HostConfig.Memory, 128 * 1024 * 1024);
    assert.equal(info.HostConfig.NanoCpus, 500_000_000);
    assert.equal(info.HostConfig.RestartPolicy?.Name, 'no');
    assert.deepEqual(
      [
        info.Config.Labels[LABELS.app],
        info.Config.Labels[LABELS.revision],
        info.Config.Labels[LABELS.instance],
        info.Config.Labels[LABELS.node],
        info.Config.Labels[LABELS.stateDir],
      ],
      ['web', '1', 'env-1', node, r.stateDir],
    );
    assert.equal(h.pid, info.State.Pid);
    const files = rt.logFiles(r.stateDir);
    await waitFor(async () => (await text(files.stdout)).includes('ready'), 'the app to print its env');
    const line = (await text(files.stdout)).split('\n').find((l) => l.startsWith('env '));
    const seen = JSON.parse(line!.slice(4)) as Record<string, string>;
    assert.equal(seen.PORT, '4100');
    assert.equal(seen.APP_MODE, 'test');
    assert.equal(seen.PATH, '/usr/local/bin:/usr/bin:/bin', "the image's PATH");
    assert.equal(seen.PILOT_SECRET_X, undefined);
    // Only what was passed, the image's ENV, and what the engine itself sets (HOME from /etc/passwd, HOSTNAME).
    assert.deepEqual(Object.keys(seen).sort(), ['APP_MODE', 'HOME', 'HOSTNAME', 'NODE_VERSION', 'NPM_CLI', 'PATH', 'PORT']);
    assert.match(await text(files.stderr), /^hello on stderr\n$/, 'stderr demultiplexed into its own file');
    await rt.stop(h, 2_000);
  });

  void it('creates a missing named volume (labelled with its node and app), mounts it, and keeps it after the container', async (t) => {
    const { rt, node, req } = await setup(t);
    const name = `pilot.${node}.web.data`;
    t.after(async () => {
      await engine
        .getVolume(name)
        .remove({ force: true })
        .catch(() => undefined);
    });
    const r = { ...(await req('vol-1')), volumes: [{ source: name, target: '/data' }] };
    const h = await rt.start(r);
    const info = await engine.getContainer(h.containerId!).inspect();
    assert.deepEqual(
      info.Mounts.map((m) => [m.Type, m.Name, m.Destination, m.RW]),
      [['volume', name, '/data', true]],
    );
    const vol = await engine.getVolume(name).inspect();
    assert.deepEqual([vol.Labels?.[LABELS.node], vol.Labels?.[LABELS.app]], [node, 'web']);
    await rt.stop(h, 2_000);
    await assert.doesNotReject(engine.getVolume(name).inspect(), 'the volume outlives its container');
    // The next instance mounts the same volume (its create is idempotent).
    const h2 = await rt.start({ ...(await req('vol-2')), volumes: [{ source: name, target: '/data' }] });
    assert.equal((await engine.getContainer(h2.containerId!).inspect()).Mounts[0]?.Name, name);
    await rt.stop(h2, 2_000);
  });

  void it('re-attaches to the log stream after adoption without repeating or losing lines', async (t) => {
    const { rt, node, req } = await setup(t);
    const r = await req('tick-1', 'tick');
    const h = await rt.start(r);
    const files = rt.logFiles(r.stateDir);
    await waitFor(async () => (await text(files.stdout)).includes('tick 5'), 'some ticks');
    await rt.close(); // the agent goes away; the container keeps ticking
    await new Promise((res) => setTimeout(res, 400));
    const again = new DockerRuntime({ engine, node });
    t.after(() => again.close());
    assert.deepEqual(await again.adopt('tick-1', r.stateDir), h);
    await waitFor(async () => /tick 30\n/.test(await text(files.stdout)), 'ticks after re-adoption');
    await again.stop(h, 2_000);
    const ticks = [...(await text(files.stdout)).matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(
      ticks,
      ticks.map((_, i) => i),
      'every tick once, in order',
    );
    assert.equal((await text(files.stdout)).match(/^ready$/gm)?.length, 1);
  });

  void it('reports an OOM kill with the limit, as the reason for lastError', async (t) => {
    const { rt, req } = await setup(t);
    const h = await rt.start({ ...(await req('oom-1', 'oom')), limits: { memoryMb: 64 } });
    await waitFor(() => !rt.isRunning(h), 'the OOM kill', 20_000);
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGKILL', oomKilled: true, reason: 'killed: out of memory (limit 64 MB)' });
  });

  void it('reports the exit code of a container that exits at once', async (t) => {
    const { rt, req } = await setup(t);
    const h = await rt.start(await req('exit-1', 'exit'));
    await waitFor(() => !rt.isRunning(h), 'the exit');
    assert.deepEqual(rt.exitInfo(h), { code: 3, signal: null });
  });

  void it('SIGKILLs a SIGTERM-ignoring app after the grace period, then removes the container', async (t) => {
    const { rt, req } = await setup(t);
    const r = await req('stubborn-1', 'ignore-term');
    const h = await rt.start(r);
    await waitFor(async () => (await text(rt.logFiles(r.stateDir).stdout)).includes('ready'), 'the SIGTERM handler');
    const t0 = performance.now();
    await rt.stop(h, 500);
    assert.ok(performance.now() - t0 >= 490, 'waited for the grace period');
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGKILL' });
    assert.match(
      await text(rt.logFiles(r.stateDir).stdout),
      /ignored SIGTERM/,
      'SIGTERM came first, and the last lines were copied before removal',
    );
    await assert.rejects(engine.getContainer(h.containerId!).inspect(), (e: unknown) => (e as { statusCode?: number }).statusCode === 404);
  });

  void it('refuses an image that is not on the engine, and a start without an image', async (t) => {
    const { rt, req } = await setup(t);
    const base = await req('noimg-1');
    await assert.rejects(
      rt.start({ ...base, image: `sha256:${'0'.repeat(64)}` }),
      (e: unknown) => isPilotError(e) && e.code === 'deploy_failed' && /is not on the Docker engine/.test(e.message),
    );
    await assert.rejects(
      rt.start({ ...base, image: undefined }),
      (e: unknown) => isPilotError(e) && e.code === 'deploy_failed' && /no image/.test(e.message),
    );
  });

  void it('after its connections to the engine were cut: logs resume without repeats, and a death meanwhile is seen', async (t) => {
    const parts = await harnessParts();
    const proxy = engineProxy(join(parts.root, 'docker.sock'));
    await proxy.start();
    const rt = new DockerRuntime({ engine: connectEngine({ DOCKER_HOST: `unix://${proxy.socketPath}` }), node: parts.node });
    t.after(async () => {
      await rt.close();
      await proxy.stop();
      await removeNodeContainers(engine, parts.node);
    });
    const r = await parts.req('cut-1', 'tick');
    const h = await rt.start(r);
    const out = rt.logFiles(r.stateDir).stdout;
    await waitFor(async () => (await text(out)).includes('tick 3'), 'some ticks');
    await proxy.stop(); // as if the engine restarted: every connection of the runtime drops
    await new Promise((res) => setTimeout(res, 300));
    await proxy.start();
    await waitFor(async () => /tick 25\n/.test(await text(out)), 'ticks after the reconnect', 10_000);
    const ticks = [...(await text(out)).matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(
      ticks,
      ticks.map((_, i) => i),
      'every tick once, in order',
    );
    await proxy.stop();
    await engine.getContainer(h.containerId!).kill();
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(rt.isRunning(h), true, 'nothing seen while cut off');
    await proxy.start();
    await waitFor(() => !rt.isRunning(h), 'the replayed die event', 5_000);
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGKILL' });
  });
});

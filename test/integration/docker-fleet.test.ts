/**
 * Containers across a fleet on one machine: `pilot server` and two `pilot agent` processes bound to
 * 127.0.0.2 and 127.0.0.3, one real Docker engine. A docker app is deployed through the API with
 * its image as a `docker save` tarball in the artifact repository (removed from the engine first,
 * so the agents really load it). Checked: containers on both nodes served by the router, a second
 * revision with zero failed requests, an agent restart re-adopting its containers, a crash loop
 * rolled back with the reason, a process app beside the docker app, an OOM kill reported and
 * restarted with back-off, and a node whose engine comes up late reporting it with its next check.
 * Every container and image the test makes is removed at the end.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { ArtifactClient } from '../../src/artifacts/client.js';
import { connectEngine } from '../../src/docker/engine.js';
import { buildTestImage, removeImage, removeNodeContainers } from '../../src/docker/test-images.js';
import { engineProxy } from '../../src/docker/test-proxy.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from './harness.js';

const engine = connectEngine();
const h = new Harness();
const tag = (v: string): string => `pilot-test/agent/fleet-app:${process.pid}-${v}`;
// Unique node names: the engine is shared with other test runs, and container names contain them.
const nodes = [
  { name: `dk${process.pid}a`, address: '127.0.0.2', home: '', proc: undefined as ChildProcess | undefined },
  { name: `dk${process.pid}b`, address: '127.0.0.3', home: '', proc: undefined as ChildProcess | undefined },
];
const COMMIT = 'c'.repeat(40);
const images: Record<string, { id: string; archive: string }> = {};

const SERVER = (version: string): string => `
const http = require('node:http');
const mode = process.env.MODE || 'serve';
if (mode === 'crash') { console.error('crashing on purpose'); process.exit(2); }
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ version: '${version}', revision: process.env.PILOT_REVISION, instance: process.env.PILOT_INSTANCE }));
});
server.listen(Number(process.env.PORT), () => console.log('listening on ' + process.env.PORT + ' version ${version}'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
if (mode === 'oom') setTimeout(() => { const keep = []; setInterval(() => { for (let i = 0; i < 4; i++) keep.push(Buffer.alloc(4 << 20, 1)); }, 10); }, 300);
`;

/** Build, `docker save` by ID, upload to the artifact repository, then remove it from the engine. */
async function publish(version: string): Promise<{ id: string; archive: string }> {
  const id = await buildTestImage(engine, tag(version), { 'server.js': SERVER(version) }, ['node', '/app/server.js']);
  const file = join(h.track(tempDir('image')), 'image.tar');
  const hash = createHash('sha256');
  const saved = await engine.getImage(id).get();
  saved.on('data', (c: Buffer) => hash.update(c));
  await pipeline(saved, createWriteStream(file));
  const archive = `sha256:${hash.digest('hex')}`;
  await new ArtifactClient(h.api, h.token).upload(file, archive, { app: 'boat' });
  await engine.getImage(id).remove({ force: true });
  return { id, archive };
}

async function deploy(app: string, image: { id: string; archive: string }, config: Record<string, unknown>): Promise<number> {
  const r = await h.apiCall('POST', `/api/v1/apps/${app}/revisions`, {
    artifact: image.archive,
    commit: COMMIT,
    image,
    config: {
      runtime: 'docker',
      health: { interval: '200ms', timeout: '1s' },
      deploy: { drain: '300ms', stop_timeout: '3s', ready_timeout: '30s' },
      ...config,
    },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json.rollout.id as number;
}

async function rolloutEnd(app: string, id: number, timeoutMs = 60_000): Promise<{ status: string; reason?: string }> {
  return waitFor(
    `rollout ${id} of ${app} to end`,
    async () => {
      const r = (await h.apiCall('GET', `/api/v1/apps/${app}/rollouts/${id}`)).json;
      return r.rollout.status === 'running' ? undefined : r.rollout;
    },
    timeoutMs,
  );
}

async function instances(app: string): Promise<any[]> {
  return (await h.apiCall('GET', `/api/v1/apps/${app}`)).json.instances;
}

async function nodeContainers(name: string): Promise<{ Id: string; State: string; Labels: Record<string, string> }[]> {
  return engine.listContainers({ all: true, filters: { label: [`dev.pilot.node=${name}`] } });
}

async function kill(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

describe('docker runtime across a fleet: two agents, one engine', { skip: dockerSkip, timeout: 400_000 }, () => {
  before(async () => {
    const ports = { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') };
    await h.startUp({}, 'server', ports);
    for (const n of nodes) {
      n.home = h.track(tempDir(n.name));
      n.proc = await h.startAgent(n.name, n.address, n.home);
    }
    images.v1 = await publish('1');
    images.v2 = await publish('2');
  });

  after(async () => {
    await h.cleanup(); // agents and server first, so nothing restarts a container we remove
    for (const n of nodes) await removeNodeContainers(engine, n.name);
    for (const v of ['1', '2']) await removeImage(engine, tag(v));
    for (const i of Object.values(images))
      await engine
        .getImage(i.id)
        .remove({ force: true })
        .catch(() => undefined);
  });

  it('reports the Docker engine of each node', async () => {
    const list = (await h.apiCall('GET', '/api/v1/nodes')).json.nodes;
    for (const n of nodes) {
      const node = list.find((x: any) => x.name === n.name);
      assert.equal(node.runtimes.docker.available, true, JSON.stringify(node.runtimes));
      assert.match(node.runtimes.docker.version, /^\d+\./);
    }
    const table = await h.cli(['nodes']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /DOCKER/);
    for (const n of nodes) assert.match(table.stdout, new RegExp(`${n.name} .* \\d+\\.\\d+[^ ]* +\\S+ +\\S+ ago`)); // DOCKER, ISOLATION, LAST SEEN
  });

  it('runs a docker app as containers on both nodes (image loaded from the archive), served by the router', async () => {
    const id = await deploy('boat', images.v1!, { replicas: 2, resources: { memory: '128MB', cpu: 0.5 }, env: { GREETING: 'ahoy' } });
    const done = await rolloutEnd('boat', id);
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    const list = await instances('boat');
    assert.deepEqual(list.map((i) => i.node).sort(), nodes.map((n) => n.name).sort());
    for (const i of list) {
      assert.equal(i.state, 'ready');
      assert.match(i.containerId, /^[a-f0-9]{64}$/);
      const info = await engine.getContainer(i.containerId).inspect();
      assert.equal(info.State.Running, true);
      assert.equal(info.Image, images.v1!.id);
      assert.equal(info.Config.Labels['dev.pilot.app'], 'boat');
      assert.equal(info.Config.Labels['dev.pilot.instance'], i.id);
      assert.equal(info.Config.Labels['dev.pilot.node'], i.node);
      assert.equal(info.HostConfig.Memory, 128 * 1024 * 1024);
      assert.ok(info.Config.Env.includes('GREETING=ahoy'));
      assert.ok(info.Config.Env.includes(`PORT=${i.port}`));
      assert.ok(!info.Config.Env.some((e: string) => e.startsWith('PILOT_HOME=') || e.includes(h.token)), 'nothing of the agent leaks in');
    }
    const res = await h.viaRouter('boat.localhost');
    assert.equal(res.status, 200);
    assert.deepEqual({ ...JSON.parse(res.text), instance: undefined }, { version: '1', revision: '1', instance: undefined });
    const logs = await h.cli(['logs', 'boat']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /listening on \d+ version 1/, 'the container output reaches pilot logs');
  });

  it('rolls out a second revision (a new image) with zero failed requests', async () => {
    const before = await instances('boat');
    let stop = false;
    let ok = 0;
    const versions = new Set<string>();
    const failures: string[] = [];
    const loop = async (): Promise<void> => {
      while (!stop) {
        try {
          const res = await request(h.router + '/', { headers: { host: 'boat.localhost' } });
          const text = await res.body.text();
          if (res.statusCode === 200) {
            ok++;
            versions.add((JSON.parse(text) as { version: string }).version);
          } else failures.push(`${res.statusCode} ${text.slice(0, 100)}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const loops = [loop(), loop()];
    await sleep(200);
    const id = await deploy('boat', images.v2!, { replicas: 2, resources: { memory: '128MB', cpu: 0.5 }, env: { GREETING: 'ahoy' } });
    const done = await rolloutEnd('boat', id);
    await sleep(500);
    stop = true;
    await Promise.all(loops);
    console.log(`# docker rollout: ${ok} requests, ${failures.length} failed, versions seen ${[...versions].join(',')}`);
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    assert.deepEqual(failures, []);
    assert.ok(ok > 20);
    assert.deepEqual([...versions].sort(), ['1', '2']);
    await waitFor(
      'the old containers to be removed',
      async () => {
        for (const i of before) {
          const gone = await engine
            .getContainer(i.containerId)
            .inspect()
            .then(
              () => false,
              () => true,
            );
          if (!gone) return undefined;
        }
        return true;
      },
      20_000,
    );
    assert.equal(JSON.parse((await h.viaRouter('boat.localhost')).text).version, '2');
  });

  it('re-adopts the containers after an agent restart: same containers, restarts unchanged, none doubled', async () => {
    const n = nodes[0]!;
    // Its container running and reported (a loaded machine may still be settling the rollout before).
    const before = await waitFor(
      `boat's instance on ${n.name} ready in its container`,
      async () => {
        const mine = (await instances('boat')).filter((i) => i.node === n.name && i.desired === 'run');
        return mine.length === 1 && mine[0].state === 'ready' && mine[0].containerId ? mine : undefined;
      },
      30_000,
    );
    await kill(n.proc);
    await sleep(1000);
    assert.equal((await engine.getContainer(before[0].containerId).inspect()).State.Running, true, 'the container outlives its agent');
    assert.equal((await h.viaRouter('boat.localhost')).status, 200);
    n.proc = await h.startAgent(n.name, n.address, n.home);
    await sleep(1500);
    const after = (await instances('boat')).filter((i) => i.node === n.name && i.desired === 'run');
    assert.deepEqual(
      after.map((i) => [i.id, i.containerId, i.restarts, i.state]),
      before.map((i) => [i.id, i.containerId, i.restarts, 'ready']),
    );
    const running = (await nodeContainers(n.name)).filter((c) => c.State === 'running' && c.Labels['dev.pilot.app'] === 'boat');
    assert.deepEqual(
      running.map((c) => c.Id),
      [before[0].containerId],
    );
  });

  it('backs off a container that exits at once, and rolls the revision back with the reason', async () => {
    const id = await deploy('boat', images.v2!, { replicas: 2, env: { MODE: 'crash' } });
    const done = await rolloutEnd('boat', id, 90_000);
    assert.equal(done.status, 'failed');
    assert.match(done.reason ?? '', /crashed \d+ times: exited with code 2/);
    const app = (await h.apiCall('GET', '/api/v1/apps/boat')).json;
    assert.equal(app.app.activeRevision, 2, 'the previous revision stays active');
    assert.equal(JSON.parse((await h.viaRouter('boat.localhost')).text).revision, '2');
    await waitFor(
      'the crashing containers to be removed',
      async () => {
        const all = await Promise.all(nodes.map((n) => nodeContainers(n.name)));
        const crashing = all.flat().filter((c) => c.Labels['dev.pilot.revision'] === '3');
        return crashing.length === 0 || undefined;
      },
      20_000,
    );
  });

  it('runs a process app beside the docker app on the same nodes', async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace('replicas: 1', 'replicas: 2'));
    await git(repo, 'commit', '-qam', 'two replicas');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const hello = await instances('hello');
    assert.deepEqual(hello.map((i) => i.node).sort(), nodes.map((n) => n.name).sort());
    assert.ok(hello.every((i) => i.state === 'ready' && i.containerId == null && i.pid > 0));
    assert.equal((await h.viaRouter('hello.localhost')).status, 200);
    assert.equal((await h.viaRouter('boat.localhost')).status, 200);
    assert.equal((await instances('boat')).filter((i) => i.desired === 'run' && i.state === 'ready').length, 2);
  });

  it('reports a container killed for exceeding its memory limit as OOM, and restarts it with back-off', async () => {
    await deploy('hog', images.v2!, { replicas: 1, env: { MODE: 'oom' }, resources: { memory: '64MB' } });
    const seen = await waitFor(
      'an OOM kill to be reported',
      async () => {
        const [i] = await instances('hog');
        return i?.restarts >= 2 && /^killed: out of memory \(limit 64 MB\)$/.test(i.lastError ?? '') ? i : undefined;
      },
      60_000,
    );
    assert.notEqual(seen.state, 'failed', 'an OOM-killed instance is restarted, not given up');
    assert.equal(seen.desired, 'run');
    // Back-off: 1 s after the first kill, 2 s after the second: two restarts take over 2 s.
    const t0 = performance.now();
    await waitFor('one more restart', async () => (await instances('hog'))[0]?.restarts > seen.restarts || undefined, 30_000);
    assert.ok(performance.now() - t0 > 1500, 'the restart waited for its back-off');
    assert.equal((await h.viaRouter('boat.localhost')).status, 200, 'the other app is untouched');
  });

  it('reports a node whose engine does not answer, and the engine once it does (next check, ~10 s)', async () => {
    const name = `dk${process.pid}c`;
    const proxy = engineProxy(join(h.track(tempDir('proxy')), 'docker.sock'));
    const home = h.track(tempDir(name));
    const p = await h.startAgent(name, '127.0.0.4', home, { DOCKER_HOST: `unix://${proxy.socketPath}` });
    const docker = async (): Promise<any> =>
      (await h.apiCall('GET', '/api/v1/nodes')).json.nodes.find((n: any) => n.name === name).runtimes.docker;
    try {
      const down = await docker();
      assert.equal(down.available, false);
      assert.match(down.error, /is not answering .*start it with `dockerd`/);
      await proxy.start();
      const t0 = performance.now();
      const up = await waitFor('the engine to be reported', async () => ((await docker()).available ? docker() : undefined), 15_000);
      console.log(`# engine up reported after ${(performance.now() - t0).toFixed(0)} ms`);
      assert.match(up.version, /^\d+\./);
    } finally {
      await kill(p);
      await proxy.stop();
    }
  });
});

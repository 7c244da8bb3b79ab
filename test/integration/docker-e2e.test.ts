/**
 * Containers end to end, the way a user deploys them: `pilot server` and two `pilot agent`
 * processes on 127.0.0.2 and 127.0.0.3 with the real Docker engine, `pilot run` in real git
 * repositories. A Node app without a Dockerfile goes through the archive path (no registry yet);
 * an app with its own Dockerfile goes through a real `docker-registry` with credentials, which the
 * agents get from the control plane. A new version rolls out with zero failed requests, and
 * `pilot status` names each instance's image by digest, its container and its node.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { baseImageTag } from '../../src/docker/base-image.js';
import { connectEngine } from '../../src/docker/engine.js';
import { ensureBaseImage, removeNodeContainers } from '../../src/docker/test-images.js';
import { registrySkip, startRegistry, type TestRegistry } from '../../src/docker/test-registry.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { git, Harness, makeRepo, PILOT, ROOT, tempDir, waitFor, type CliResult } from './harness.js';

const engine = connectEngine();
const ENV = { PILOT_IMAGE_PREFIX: 'pilot-test/build-e2e' }; // its own prefix: clean-up never touches another test's images
const USER = 'deployer';
const PASSWORD = 'e2e-registry-pw-91c4';
const nodes = [
  { name: `db${process.pid}a`, address: '127.0.0.2', proc: undefined as ChildProcess | undefined },
  { name: `db${process.pid}b`, address: '127.0.0.3', proc: undefined as ChildProcess | undefined },
];

const server = (version: string): string => `const http = require('node:http');
const s = http.createServer((req, res) => res.end(JSON.stringify({ version: '${version}', revision: process.env.PILOT_REVISION, instance: process.env.PILOT_INSTANCE })));
s.listen(Number(process.env.PORT));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

describe('containers end to end (pilot server, two agents, pilot run)', { skip: dockerSkip || registrySkip, timeout: 240_000 }, () => {
  const h = new Harness();
  let registry: TestRegistry;
  const images = new Set<string>();

  const run = async (dir: string): Promise<CliResult & { log: string; record: any }> => {
    const r = await h.cli(['run', dir], { env: ENV });
    const record = (await h.apiCall('GET', '/api/v1/runs?limit=1')).json.runs[0];
    const log = String((await h.apiCall('GET', `/api/v1/runs/${record.id}/log`)).json);
    for (const m of log.matchAll(/image (sha256:[0-9a-f]{64})/g)) images.add(m[1]!);
    return { ...r, log, record };
  };

  /** Requests through the router until stopped; counts answers that are not 200. */
  const load = (host: string): { stop: () => Promise<{ ok: number; failed: number; versions: Set<string> }> } => {
    let on = true;
    const stats = { ok: 0, failed: 0, versions: new Set<string>() };
    const loop = (async () => {
      while (on) {
        const r = await h.viaRouter(host).catch(() => ({ status: 0, text: '' }));
        if (r.status === 200) {
          stats.ok++;
          stats.versions.add(JSON.parse(r.text).version);
        } else stats.failed++;
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    return { stop: async () => ((on = false), await loop, stats) };
  };

  before(async () => {
    await ensureBaseImage(engine);
    registry = await startRegistry({ user: { username: USER, password: PASSWORD } });
    await h.startUp(ENV, 'server');
    for (const n of nodes) n.proc = await h.startAgent(n.name, n.address, h.track(tempDir(`agent-${n.name}`)));
    await waitFor('both nodes with a Docker engine', async () => {
      const r = await h.apiCall('GET', '/api/v1/nodes');
      return r.json.nodes.filter((n: any) => n.status === 'ready').length === 2 || undefined;
    });
  });

  after(async () => {
    await h.cleanup(); // agents first: nothing restarts the containers removed below
    for (const n of nodes) await removeNodeContainers(engine, n.name).catch(() => undefined);
    const tagged = await engine
      .listImages({ filters: JSON.stringify({ reference: ['pilot-test/build-e2e/*', `${registry?.address}/*`] }) })
      .catch(() => []);
    for (const id of [...images, ...tagged.map((i) => i.Id)])
      await engine
        .getImage(id)
        .remove({ force: true })
        .catch(() => undefined);
    // The generated Dockerfile's build stage is kept by the engine as an untagged, labelled image.
    const stages = await engine
      .listImages({ filters: JSON.stringify({ label: ['dev.pilot.stage=build', 'dev.pilot.app=genapp'] }) })
      .catch(() => []);
    for (const i of stages)
      await engine
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await registry?.stop();
  });

  const repos: { gen?: string; own?: string } = {};

  it('no registry: a Node app without a Dockerfile and an app with one, as archives, on both nodes', async () => {
    const gen = h.track(tempDir('e2e-gen'));
    writeFileSync(join(gen, 'package.json'), JSON.stringify({ name: 'genapp', scripts: { start: 'node server.js' } }));
    writeFileSync(join(gen, 'server.js'), server('gen-1'));
    writeFileSync(join(gen, 'pilot.yaml'), 'runtime: docker\nreplicas: 2\nhealth: { path: / }\n');
    repos.gen = h.track(await makeRepo(gen));
    const own = h.track(tempDir('e2e-own'));
    mkdirSync(join(own, 'srv'));
    writeFileSync(join(own, 'srv/server.js'), server('own-1'));
    writeFileSync(
      join(own, 'Dockerfile'),
      [
        `FROM ${baseImageTag(process.versions.node)}`,
        'COPY srv/server.js /srv/server.js',
        'USER node',
        'CMD ["node", "/srv/server.js"]',
        '',
      ].join('\n'),
    );
    writeFileSync(join(own, 'pilot.yaml'), 'name: ownapp\nruntime: docker\nreplicas: 2\n');
    repos.own = h.track(await makeRepo(own));

    for (const [app, repo, version] of [
      ['genapp', repos.gen, 'gen-1'],
      ['ownapp', repos.own, 'own-1'],
    ] as const) {
      const r = await run(repo);
      assert.equal(r.code, 0, r.log + r.stderr);
      assert.match(r.log, /uploaded image archive sha256:[0-9a-f]{64}/);
      if (app === 'ownapp') assert.match(r.log, /nothing to build on this machine: Dockerfile builds the app/);
      else assert.match(r.log, /\| FROM pilot\/node:/);
      const res = await h.viaRouter(`${app}.localhost`);
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.text).version, version);
      const status = await h.apiCall('GET', `/api/v1/apps/${app}`);
      const ready = status.json.instances.filter((i: any) => i.state === 'ready');
      assert.equal(ready.length, 2);
      assert.deepEqual(new Set(ready.map((i: any) => i.node)), new Set(nodes.map((n) => n.name)), 'one instance per node');
      const rev = status.json.revisions.find((x: any) => x.active);
      assert.equal(rev.runtime, 'docker');
      assert.equal(rev.image.archive, r.record.artifact);
    }
  });

  it('a registry with credentials: v2 of both apps rolls out from it with zero failed requests; pilot status names the image by digest', async () => {
    const set = await new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, [PILOT, 'registry', 'set', registry.url, '--username', USER, '--password-stdin'], {
        cwd: ROOT,
        env: h.env(),
        stdio: ['pipe', 'ignore', 'inherit'],
      });
      p.on('close', resolve);
      p.stdin.end(PASSWORD);
    });
    assert.equal(set, 0);
    writeFileSync(join(repos.gen!, 'server.js'), server('gen-2'));
    writeFileSync(join(repos.own!, 'srv/server.js'), server('own-2'));
    for (const [app, repo, version] of [
      ['genapp', repos.gen!, 'gen-2'],
      ['ownapp', repos.own!, 'own-2'],
    ] as const) {
      await git(repo, 'commit', '-qam', 'v2');
      const traffic = load(`${app}.localhost`);
      const r = await run(repo);
      const stats = await traffic.stop();
      assert.equal(r.code, 0, r.log + r.stderr);
      assert.equal(stats.failed, 0, `${app}: failed requests during the rollout (${stats.ok} ok)`);
      assert.ok(stats.ok > 10 && stats.versions.has(version), `${app}: the new version served (${[...stats.versions].join(', ')})`);
      assert.equal(JSON.parse((await h.viaRouter(`${app}.localhost`)).text).version, version);
      assert.ok(!r.log.includes(PASSWORD) && !r.stdout.includes(PASSWORD), 'the registry password is in the run output');
      const ref = new RegExp(`image (${registry.address.replace(/\./g, '\\.')}/${app}@sha256:[0-9a-f]{64})`).exec(r.log)?.[1];
      assert.ok(ref, r.log);
      const api = await h.apiCall('GET', `/api/v1/apps/${app}`);
      assert.equal(api.json.revisions.find((x: any) => x.active).image.ref, ref);

      // pilot status: image by digest, container id and node for each instance.
      const st = await h.cli(['status', app]);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /IMAGE\s+CONTAINER/);
      const short = /@sha256:([0-9a-f]{12})/.exec(ref)![1]!;
      const live = api.json.instances.filter((x: any) => x.state === 'ready' && x.revision === 2);
      assert.equal(live.length, 2);
      for (const i of live) {
        assert.ok(/^[0-9a-f]{64}$/.test(i.containerId), JSON.stringify(i));
        assert.match(st.stdout, new RegExp(`${i.id}.*${i.node}.*${app}@sha256:${short}.*${String(i.containerId).slice(0, 12)}`));
      }
    }
  });
});

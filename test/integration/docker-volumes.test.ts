/**
 * Containers that behave, with the real Docker engine: `pilot server`, one `pilot agent`
 * (127.0.0.2), `pilot run` of a git repository holding an express app with no Dockerfile, a
 * `.dockerignore` that excludes node_modules, and a poisoned node_modules committed beside it. The
 * image installs express itself (npm ci in its build stage, through the registry this machine
 * uses), runs the app's build script, and the app answers; it can write /tmp and $HOME; what
 * revision 1 writes to its volume, revision 2 reads, and a killed container finds it again.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dockerVolumeName } from '../../src/agent/volumes.js';
import { connectEngine } from '../../src/docker/engine.js';
import { ensureBaseImage, removeNodeContainers } from '../../src/docker/test-images.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { git, Harness, makeRepo, ROOT, tempDir, waitFor } from './harness.js';

const engine = connectEngine();
const ENV = { PILOT_IMAGE_PREFIX: 'pilot-test/containers-vol' }; // its own prefix: clean-up never touches another test's images
const APP = `cvol${process.pid}`;
const node = { name: `dv${process.pid}`, address: '127.0.0.2', proc: undefined as ChildProcess | undefined };
const config = (version: string): string =>
  `name: ${APP}\nruntime: docker\nvolumes:\n  - name: data\n    path: /data\nenv:\n  APP_VERSION: ${version}\n`;

describe(
  'containers that behave: dependencies installed in the image, /tmp and $HOME writable, a volume kept across deploys',
  { skip: dockerSkip, timeout: 420_000 },
  () => {
    const h = new Harness();
    const images = new Set<string>();
    let repo = '';

    const run = async (): Promise<{ code: number | null; log: string; out: string }> => {
      const r = await h.cli(['run', repo], { env: ENV });
      const record = (await h.apiCall('GET', '/api/v1/runs?limit=1')).json.runs[0];
      const log = String((await h.apiCall('GET', `/api/v1/runs/${record.id}/log`)).json);
      for (const m of log.matchAll(/image (sha256:[0-9a-f]{64})/g)) images.add(m[1]!);
      return { code: r.code, log, out: r.stdout + r.stderr };
    };
    const get = async (path: string): Promise<any> => {
      const r = await h.viaRouter(`${APP}.localhost`, path);
      assert.equal(r.status, 200, r.text);
      return JSON.parse(r.text);
    };
    const instances = async (): Promise<any[]> => (await h.apiCall('GET', `/api/v1/apps/${APP}`)).json.instances;

    before(async () => {
      await ensureBaseImage(engine);
      await h.startUp(ENV, 'server');
      node.proc = await h.startAgent(node.name, node.address, h.track(tempDir(`agent-${node.name}`)));
      await waitFor('the node with a Docker engine', async () => {
        const r = await h.apiCall('GET', '/api/v1/nodes');
        return r.json.nodes.some((n: any) => n.status === 'ready' && n.runtimes?.docker?.available) || undefined;
      });
      const dir = h.track(tempDir('docker-express'));
      cpSync(join(ROOT, 'test/fixtures/docker-express'), dir, { recursive: true });
      // What the author has locally: a node_modules that must never reach the image (.dockerignore says so).
      mkdirSync(join(dir, 'node_modules/express'), { recursive: true });
      writeFileSync(join(dir, 'node_modules/express/index.js'), 'throw new Error("the build machine\'s node_modules is in the image");\n');
      writeFileSync(join(dir, 'node_modules/express/package.json'), '{"name":"express","version":"0.0.0-poison","main":"index.js"}\n');
      writeFileSync(join(dir, 'pilot.yaml'), config('v1'));
      repo = h.track(await makeRepo(dir));
    });

    after(async () => {
      await h.cleanup(); // the agent first: nothing restarts the containers removed below
      await removeNodeContainers(engine, node.name).catch(() => undefined);
      await engine
        .getVolume(dockerVolumeName(node.name, APP, 'data'))
        .remove({ force: true })
        .catch(() => undefined);
      const tagged = await engine.listImages({ filters: JSON.stringify({ reference: ['pilot-test/containers-vol/*'] }) }).catch(() => []);
      for (const id of [...images, ...tagged.map((i) => i.Id)])
        await engine
          .getImage(id)
          .remove({ force: true })
          .catch(() => undefined);
      // The build stages of this test's app (untagged, labelled by the generated Dockerfile).
      const stages = await engine
        .listImages({ filters: JSON.stringify({ label: [`dev.pilot.stage=build`, `dev.pilot.app=${APP}`] }) })
        .catch(() => []);
      for (const i of stages)
        await engine
          .getImage(i.Id)
          .remove()
          .catch(() => undefined);
    });

    it('an express app without a Dockerfile: npm ci and the build script run in the image; it answers and writes /tmp and $HOME', async () => {
      const r = await run();
      assert.equal(r.code, 0, r.log + r.out);
      assert.match(r.log, /nothing to build on this machine: the generated Dockerfile installs the dependencies/);
      assert.match(r.log, /\| FROM pilot\/node:[\d.]+ AS build/);
      assert.match(r.log, /Step \d+\/\d+ : RUN \["npm","ci","--no-audit","--no-fund"\]/);
      assert.match(r.log, /Step \d+\/\d+ : RUN \["npm","run","build"\]/);
      const home = await get('/');
      assert.equal(home.version, 'v1');
      assert.equal(home.built.builtBy, `v${process.versions.node}`, 'the build script ran in the image');
      assert.equal(home.built.appVersion, 'v1', 'pilot.yaml env reaches the build script');
      const wrote = await get('/write');
      assert.equal(wrote.uid, 1000, "the app runs as the image's unprivileged user");
      assert.match(wrote.tmp, /^\/tmp\/probe-/);
      assert.equal(wrote.home, '/home/node/.probe');
    });

    it('revision 2 reads what revision 1 wrote to the volume; a killed container finds it after its restart', async () => {
      assert.deepEqual((await get('/note/one')).notes, ['v1:one']);
      writeFileSync(join(repo, 'pilot.yaml'), config('v2'));
      await git(repo, 'commit', '-qam', 'v2');
      const r = await run();
      assert.equal(r.code, 0, r.log + r.out);
      const two = await get('/note/two');
      assert.equal(two.volume, '/data');
      assert.deepEqual(two.notes, ['v1:one', 'v2:two']);
      const live = (await instances()).filter((i) => i.desired === 'run' && i.revision === 2);
      assert.equal(live.length, 1);
      const info = await engine.getContainer(live[0].containerId).inspect();
      assert.deepEqual(
        info.Mounts.map((m) => [m.Type, m.Name, m.Destination]),
        [['volume', dockerVolumeName(node.name, APP, 'data'), '/data']],
      );

      await engine.getContainer(live[0].containerId).kill();
      await waitFor(
        'the killed container replaced and ready',
        async () => {
          const i = (await instances()).find((x) => x.id === live[0].id);
          return i && i.restarts >= 1 && i.state === 'ready' ? true : undefined;
        },
        90_000,
      );
      assert.deepEqual((await get('/notes')).notes, ['v1:one', 'v2:two']);
      const st = await h.cli(['status', APP]);
      assert.match(st.stdout, new RegExp(`volume data on node ${node.name}\\n`));
    });
  },
);

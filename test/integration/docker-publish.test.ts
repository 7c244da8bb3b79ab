/**
 * The build/publish side of runtime docker, against the real Docker engine and a real
 * `docker-registry`: `pilot run` in a git repository builds the image through the Engine API and
 * publishes it to the registry (push, then pull by digest gives the same image) or, with no registry,
 * as a tarball in the artifact repository (load it: same image). A failing Dockerfile fails the run
 * with the build log and the live revision keeps serving; a registry that is down fails the publish
 * naming the registry, and the retry is idempotent.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createReadStream, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { baseImageTag } from '../../src/docker/base-image.js';
import { ensureBaseImage } from '../../src/docker/test-images.js';
import { connectEngine } from '../../src/docker/engine.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { registrySkip, startRegistry, type TestRegistry } from '../../src/docker/test-registry.js';
import { followProgress } from '../../src/docker/progress.js';
import { git, Harness, makeRepo, PILOT, ROOT, tempDir, type CliResult } from './harness.js';

const engine = connectEngine();
const BASE = baseImageTag(process.versions.node);
const ENV = { PILOT_IMAGE_PREFIX: 'pilot-test/build-publish' }; // its own prefix: clean-up never touches another test's images
const TEST_REGISTRY_USER = 'pilot';
const TEST_REGISTRY_PASSWORD = 'pilot-registry-pw-7f3a';

const SERVER_JS = `const http = require('node:http');
http.createServer((req, res) => res.end(JSON.stringify({ v: process.env.V || 'process', revision: process.env.PILOT_REVISION }))).listen(process.env.PORT);
`;

/** A Node app: package.json with a plain node start script; no dependencies. */
function nodeApp(dir: string, name: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', scripts: { start: 'node server.js' } }, null, 2));
  writeFileSync(join(dir, 'server.js'), SERVER_JS);
}

async function removeImage(id: string | undefined): Promise<void> {
  if (!id) return;
  await engine
    .getImage(id)
    .remove({ force: true })
    .catch(() => undefined);
}

describe('docker build and publish (pilot run, real engine, real registry)', { skip: dockerSkip || registrySkip, timeout: 480_000 }, () => {
  const h = new Harness();
  let registry: TestRegistry;
  const images = new Set<string>();
  const layers = new Set<string>();
  let repo: string;

  const run = async (dir: string): Promise<CliResult & { runId: number; log: string; record: any }> => {
    const r = await h.cli(['run', dir], { env: ENV });
    const runs = await h.apiCall('GET', '/api/v1/runs?limit=1');
    const record = runs.json.runs[0];
    const log = await h.apiCall('GET', `/api/v1/runs/${record.id}/log`);
    for (const m of String(log.json).matchAll(/image (sha256:[0-9a-f]{64})/g)) images.add(m[1]!);
    // Intermediate images of the build's steps (a failed build leaves them behind for its cache).
    // Only those these builds made: a cache hit may be another test's layer.
    const lines = String(log.json).split('\n');
    lines.forEach((l, i) => {
      const m = / ---> ([0-9a-f]{12})$/.exec(l);
      if (m && !lines[i - 1]?.endsWith(' ---> Using cache')) layers.add(m[1]!);
    });
    return { ...r, runId: record.id, log: String(log.json), record };
  };

  before(async () => {
    await ensureBaseImage(engine); // the base of generated Dockerfiles: built once if missing, never deleted
    registry = await startRegistry({ user: { username: TEST_REGISTRY_USER, password: TEST_REGISTRY_PASSWORD } });
    // The local agent runs process instances only (its engine address leads nowhere): docker deploys
    // are refused, saying why, so these tests stop at publish. test/integration/docker-e2e deploys.
    await h.startUp({ ...ENV, DOCKER_HOST: `unix://${join(h.home, 'no-engine.sock')}` }, 'up');
    const src = tempDir('docker-app');
    h.track(src);
    nodeApp(src, 'dockapp');
    repo = h.track(await makeRepo(src));
  });

  after(async () => {
    // Should a container have started anyway (a failing assertion above), it goes too: by this home's state-dir label.
    for (const c of await engine.listContainers({ all: true, filters: JSON.stringify({ label: ['dev.pilot.app'] }) }).catch(() => [])) {
      if (c.Labels['dev.pilot.state-dir']?.startsWith(h.home))
        await engine
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined);
    }
    for (const id of images) await removeImage(id);
    const left = await engine
      .listImages({ filters: JSON.stringify({ reference: ['pilot-test/build-publish/*', `${registry?.address}/*`] }) })
      .catch(() => []);
    for (const i of left) await removeImage(i.Id);
    const base = (await engine.getImage(BASE).inspect()).Id;
    for (const short of layers) {
      const info = await engine
        .getImage(short)
        .inspect()
        .catch(() => undefined);
      // Only untagged leftovers of these builds: never the base, never anything someone tagged.
      if (info && info.Id !== base && (info.RepoTags ?? []).length === 0) await removeImage(info.Id);
    }
    await registry?.stop();
    await h.cleanup();
  });

  it('a failing Dockerfile fails the run with the build log; the live revision keeps serving', async () => {
    const first = await run(repo);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const serving = await h.viaRouter('dockapp.localhost');
    assert.equal(serving.status, 200);
    assert.equal(JSON.parse(serving.text).v, 'process');

    writeFileSync(join(repo, 'pilot.yaml'), 'runtime: docker\n');
    writeFileSync(
      join(repo, 'Dockerfile'),
      [
        `FROM ${BASE}`,
        'COPY server.js /app/server.js',
        `RUN ["node", "-e", "console.log('checking the build'); console.error('the build broke on purpose'); process.exit(3)"]`,
        'CMD ["node", "/app/server.js"]',
        '',
      ].join('\n'),
    );
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-qm', 'broken Dockerfile');
    let failures = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const r = await h.viaRouter('dockapp.localhost').catch(() => ({ status: 0, text: '' }));
        if (r.status !== 200) failures++;
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    const broken = await run(repo);
    polling = false;
    await poll;
    assert.notEqual(broken.code, 0);
    assert.equal(broken.record.status, 'failed');
    assert.match(broken.record.error, /^package: docker build failed: .*returned a non-zero code: 3/);
    assert.match(broken.record.error, /the build broke on purpose/, 'the error carries the build log tail');
    assert.match(broken.log, /checking the build/, 'the build log is streamed into the run log');
    assert.match(broken.stdout + broken.stderr, /the build broke on purpose/);
    assert.equal(failures, 0, 'requests failed while the broken build ran');
    const after_ = await h.viaRouter('dockapp.localhost');
    assert.equal(JSON.parse(after_.text).v, 'process');
    const app = await h.apiCall('GET', '/api/v1/apps/dockapp');
    assert.equal(app.json.app.activeRevision, 1);
  });

  it('no registry: the image goes to the artifact repository as a tarball that loads as the same image', async () => {
    // A generated Dockerfile this time (no Dockerfile in the app).
    await git(repo, 'rm', '-q', 'Dockerfile');
    await git(repo, 'commit', '-qm', 'generated Dockerfile');
    const r = await run(repo);
    const steps = Object.fromEntries(r.record.steps.map((s: { name: string; status: string }) => [s.name, s.status]));
    assert.equal(steps.package, 'succeeded', r.log);
    assert.equal(steps.publish, 'succeeded', r.log);
    assert.match(r.log, /FROM pilot\/node:/, 'the generated Dockerfile is shown');
    const id = /image (sha256:[0-9a-f]{64})/.exec(r.log)?.[1];
    const archive = r.record.artifact as string;
    assert.ok(id && /^sha256:[0-9a-f]{64}$/.test(archive) && archive !== id, r.log);
    assert.match(r.log, new RegExp(`uploaded image archive ${archive}`));
    // The same commit again: the build cache gives the same image, the same archive: nothing uploaded.
    const again = await run(repo);
    assert.equal(again.record.artifact, archive);
    assert.match(again.log, /already in the artifact repository: nothing to upload/);
    // The archive is the image: remove the image, load the archive, get the same image ID back.
    const tarFile = join(h.track(tempDir('img')), 'image.tar');
    const dl = await fetch(`${h.api}/api/v1/artifacts/${archive}`, { headers: { authorization: `Bearer ${h.token}` } });
    assert.equal(dl.status, 200);
    writeFileSync(tarFile, Buffer.from(await dl.arrayBuffer()));
    await removeImage(id);
    await assert.rejects(engine.getImage(id).inspect());
    await followProgress(engine, await engine.loadImage(createReadStream(tarFile)));
    assert.equal((await engine.getImage(id).inspect()).Id, id);
    // No docker node yet in this set-up: the deploy is refused, saying why.
    assert.equal(steps.deploy, 'failed');
    assert.match(r.record.error, /no ready node has a running Docker engine \(start dockerd/);
    assert.match(r.log, /hint: Start the Docker engine on a node/, 'the hint says what to start, not to lower resources');
  });

  it('refuses what a generated Dockerfile cannot do, and a missing base image, saying what to do', async () => {
    const src = h.track(tempDir('docker-bad'));
    nodeApp(src, 'dockbad');
    writeFileSync(join(src, 'package.json'), JSON.stringify({ name: 'dockbad', scripts: { start: 'node server.js && echo done' } }));
    writeFileSync(join(src, 'pilot.yaml'), 'runtime: docker\n');
    const bad = h.track(await makeRepo(src));
    const shell = await run(bad);
    assert.notEqual(shell.code, 0);
    // Checked before anything is installed (the build step), not after (package).
    assert.match(shell.record.error, /^build: runtime docker without a Dockerfile: the start command is `npm start`, which needs a shell/);
    assert.match(shell.stderr, /hint: Add a Dockerfile .*run: node server\.js/);

    writeFileSync(join(bad, 'package.json'), JSON.stringify({ name: 'dockbad', scripts: { start: 'node server.js' } }));
    await git(bad, 'commit', '-qam', 'plain start');
    const r = await h.cli(['run', bad], { env: { ...ENV, PILOT_NODE_BASE_IMAGE: 'pilot-test/no-such-base:1' } });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /error: the base image pilot-test\/no-such-base:1 for a generated Dockerfile is not on this machine's Docker engine/,
    );
    assert.match(r.stderr, /hint: Run `pilot images bootstrap-node`/);

    // No engine on the build machine: the package step says where it looked and how to start one.
    const noEngine = await h.cli(['run', bad], { env: { ...ENV, DOCKER_HOST: `unix://${join(h.home, 'nothing.sock')}` } });
    assert.notEqual(noEngine.code, 0);
    assert.match(noEngine.stderr, /error: Docker engine at unix:\/\/.*nothing\.sock is not answering/);
    assert.match(noEngine.stderr, /hint: Start the Docker engine/);
  });

  it('pilot images bootstrap-node makes a working base without a shell', async () => {
    const tag = `pilot-test/node:bootstrap-${process.pid}`;
    const r = await h.cli(['images', 'bootstrap-node', '--tag', tag, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.image.tag, tag);
    assert.equal(out.image.nodeVersion, process.versions.node);
    assert.equal(out.image.built, true);
    // Again: the base is there already, kept as it is (a rebuild would orphan every app layer on it).
    const again = await h.cli(['images', 'bootstrap-node', '--tag', tag]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stdout,
      new RegExp(
        `${tag} ${out.image.id} \\(Node\\.js ${process.versions.node.replace(/\./g, '\\.')}\\) is already there; --force rebuilds it`,
      ),
    );
    const runIn = async (cmd: string[]): Promise<{ code: number; out: string }> => {
      const c = await engine.createContainer({ Image: tag, Cmd: cmd, HostConfig: { NetworkMode: 'none' } });
      try {
        await c.start().catch(() => undefined);
        const w = await c.wait();
        const logs = (await c.logs({ stdout: true, stderr: true })).toString();
        return { code: w.StatusCode, out: logs };
      } finally {
        await c.remove({ force: true });
      }
    };
    try {
      const v = await runIn([
        'node',
        '-e',
        'console.log(process.version, require("node:fs").existsSync("/usr/local/lib/node_modules/npm/bin/npm-cli.js"))',
      ]);
      assert.equal(v.code, 0, v.out);
      assert.match(v.out, new RegExp(`v${process.versions.node.replace(/\./g, '\\.')} true`));
      assert.notEqual((await runIn(['/bin/sh', '-c', 'true'])).code, 0, 'the base image has a shell');
    } finally {
      // By tag: only untags when it is pilot/node's image too; otherwise deletes it and its untagged parents.
      await engine
        .getImage(tag)
        .remove()
        .catch(() => undefined);
    }
  });

  it('a registry: push with credentials (never logged), then pull by digest gives the same image', async () => {
    const set = await new Promise<CliResult>((resolve) => {
      const p = spawn(process.execPath, [PILOT, 'registry', 'set', registry.url, '--username', TEST_REGISTRY_USER, '--password-stdin'], {
        cwd: ROOT,
        env: h.env(),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
      p.stdin.end(TEST_REGISTRY_PASSWORD + '\n');
    });
    assert.equal(set.code, 0, set.stderr);
    const show = await h.cli(['registry', 'show', '--json']);
    assert.equal(JSON.parse(show.stdout).registries[0].hasPassword, true);
    assert.ok(!show.stdout.includes(TEST_REGISTRY_PASSWORD));

    writeFileSync(join(repo, 'server.js'), SERVER_JS + '// v2\n');
    await git(repo, 'commit', '-qam', 'v2');
    const commit = await git(repo, 'rev-parse', 'HEAD');
    const r = await run(repo);
    assert.equal(r.record.steps.find((s: { name: string }) => s.name === 'publish').status, 'succeeded', r.log);
    const ref = new RegExp(`image (${registry.address.replace(/\./g, '\\.')}/dockapp@sha256:[0-9a-f]{64})`).exec(r.log)?.[1];
    const id = /image (sha256:[0-9a-f]{64})/.exec(r.log)?.[1];
    assert.ok(ref && id, r.log);
    assert.equal(r.record.artifact, id, 'pushed to a registry, the run records the image ID');
    assert.ok(!r.log.includes(TEST_REGISTRY_PASSWORD) && !r.stdout.includes(TEST_REGISTRY_PASSWORD), 'the password is in the run log');
    assert.match(r.log, new RegExp(`as ${registry.address.replace(/\./g, '\\.')}/dockapp:${commit.slice(0, 12)}`));

    // Pull by digest on an engine that no longer has it: the same image ID.
    await removeImage(id);
    const auth = { username: TEST_REGISTRY_USER, password: TEST_REGISTRY_PASSWORD, serveraddress: registry.address };
    await followProgress(engine, await engine.pull(ref, { authconfig: auth }));
    assert.equal((await engine.getImage(ref).inspect()).Id, id);
    // Without credentials the registry refuses: the push above really used them.
    assert.equal((await fetch(`${registry.url}/v2/`)).status, 401);
  });

  it('the registry down: the run fails before building, naming the registry; the retry is idempotent', async () => {
    writeFileSync(join(repo, 'server.js'), SERVER_JS + '// v3\n');
    await git(repo, 'commit', '-qam', 'v3');
    await registry.kill();
    const down = await run(repo);
    assert.notEqual(down.code, 0);
    assert.equal(down.record.status, 'failed');
    // Checked before anything is installed or built (pipeline preflight), not after the docker build.
    assert.ok(down.record.error.startsWith(`build: the registry ${registry.url} does not answer`), down.record.error);
    assert.doesNotMatch(down.stdout + down.stderr, /--> install|docker build/);
    assert.match(down.stderr + down.stdout, /hint: Start the registry/);

    await registry.restart();
    const before_ = registry.storageBytes();
    const retry = await run(repo);
    assert.equal(retry.record.steps.find((s: { name: string }) => s.name === 'publish').status, 'succeeded', retry.log);
    const again = await run(repo);
    const d1 = /@(sha256:[0-9a-f]{64})/.exec(retry.log)?.[1];
    const d2 = /@(sha256:[0-9a-f]{64})/.exec(again.log)?.[1];
    assert.ok(d1 && d1 === d2, 'the same commit pushed twice has one manifest digest');
    assert.match(again.log, /pushed 0 layer\(s\)/);
    // Only the app's own layer(s) and the manifest were new: far less than the base image.
    const grown = registry.storageBytes() - before_;
    assert.ok(grown < 5 * 1024 * 1024, `registry grew by ${grown} bytes for a one-line change`);
  });
});

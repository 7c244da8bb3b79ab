/**
 * Issue 10 part 4 end to end: real `pilot up`, real `pilot run` of a git repository holding an app
 * with a native module compiled by node-gyp and a devDependency. The first deploy installs and
 * saves the cache; a one-line change restores node_modules (no install, the native module is not
 * compiled again: its build stamp is the same); devDependencies never ship; a damaged cache entry
 * is detected and rebuilt; `--no-cache` and pilot.yaml switches work; a silent build step says
 * `still building… Ns`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { connectEngine } from '../../src/docker/engine.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { ensureBaseImage } from '../../src/docker/test-images.js';
import { writeNativeApp, SERVER_JS } from '../../src/pipeline/build-cache-app.fixture.js';
import { git, Harness, makeRepo, tempDir } from './harness.js';

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const h = new Harness();

interface Answer {
  version: string;
  hello: string;
  stamp: { builtAt: number; id: string };
  devShipped: boolean;
  builtWith: string;
}

async function answer(name: string): Promise<Answer> {
  const r = await h.viaRouter(`${name}.localhost`);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as Answer;
}

async function pilotRun(repo: string, args: string[] = [], env: Record<string, string> = {}): Promise<string> {
  const r = await h.cli(['run', repo, ...args], { env: { PILOT_SILENCE_NOTICE: '1s', ...env } });
  const out = r.stdout + r.stderr;
  assert.equal(r.code, 0, out);
  return out;
}

/** A one-line change, committed. */
async function change(repo: string, version: string): Promise<void> {
  writeFileSync(join(repo, 'server.js'), SERVER_JS(version));
  await git(repo, 'commit', '-qam', `version ${version}`);
}

const entries = (app: string): string[] => readdirSync(join(h.home, 'build-cache', app, 'entries'));

describe('build cache, pruning and progress, end to end', { timeout: 900_000 }, () => {
  let repo = '';
  before(async () => {
    await h.startUp();
    const dir = h.track(tempDir('app-cached'));
    await writeNativeApp(dir, 'cached');
    repo = h.track(await makeRepo(dir));
  });
  after(() => h.cleanup());

  let first: Answer;
  it('first deploy: cache miss, install (node-gyp), entry saved, devDependencies pruned, artifact size, silence notices', async () => {
    const out = await pilotRun(repo);
    assert.match(out, /build cache: miss [0-9a-f]{12} \(no entry for this app yet\): installing with the download cache/);
    assert.match(out, /--> install: npm ci/);
    assert.match(out, /build cache: saved [0-9a-f]{12} \(\d+ files, [\d.]+ MB\)/);
    assert.match(out, /--> prune: npm prune --omit=dev/);
    assert.match(out, /devDependencies pruned: node_modules \d+ → \d+ files/);
    assert.match(out, /artifact: [\d.]+ [KM]B, \d+ files \(sha256:[0-9a-f]{64}\)/);
    first = await answer('cached');
    assert.equal(first.hello, 'hello from C');
    assert.equal(first.builtWith, 'pilot-fixture-devtool', 'the build had its devDependency');
    assert.equal(first.devShipped, false, 'the devDependency is not in the artifact');
    assert.equal(entries('cached').length, 1);
    // The run log on the server has the same lines (pilot logs --run).
    const id = /run #(\d+): app cached/.exec(out)?.[1];
    assert.ok(id, out);
    const log = await h.cli(['logs', '--run', id]);
    assert.match(log.stdout, /build cache: miss/);
    assert.match(log.stdout, /artifact: [\d.]+ [KM]B, \d+ files/);
  });

  it('a silent build step prints `still building… Ns` in the output and the run log', async () => {
    // The build script stays silent for 3.5 s; notices come every second (PILOT_SILENCE_NOTICE=1s).
    writeFileSync(join(repo, 'silent-ms'), '3500\n');
    await git(repo, 'add', 'silent-ms');
    await change(repo, 'v1-silent');
    const out = await pilotRun(repo);
    assert.match(out, /still building… \d+s/);
    const id = /run #(\d+): app cached/.exec(out)?.[1];
    assert.match((await h.cli(['logs', '--run', id!])).stdout, /still building… \d+s/);
    assert.equal((await answer('cached')).version, 'v1-silent');
    await git(repo, 'rm', '-q', 'silent-ms');
  });

  it('a one-line change restores node_modules: cache hit, no install, the native module is not compiled again', async () => {
    await change(repo, 'v2');
    const entryBefore = statSync(join(h.home, 'build-cache', 'cached', 'entries', entries('cached')[0]!, 'manifest.json')).mtimeMs;
    const out = await pilotRun(repo);
    assert.match(out, /build cache: hit [0-9a-f]{12}: node_modules of .* restored \(\d+ files, [\d.]+ MB\) in [\d.]+m?s; install skipped/);
    assert.doesNotMatch(out, /--> install/);
    assert.doesNotMatch(out, /gyp info/);
    // The entry's first prune was recorded; on this same tree it is replayed, not run.
    assert.match(out, /--> prune: replayed from the build cache \(npm prune --omit=dev .* removed \d+ paths? from this same tree before\)/);
    assert.doesNotMatch(out, /--> prune: npm prune/);
    assert.match(out, /devDependencies pruned: node_modules \d+ → \d+ files/);
    const second = await answer('cached');
    assert.equal(second.version, 'v2');
    assert.equal(second.hello, 'hello from C');
    assert.deepEqual(second.stamp, first.stamp, 'the same native build output (not recompiled)');
    assert.equal(second.devShipped, false);
    assert.equal(
      statSync(join(h.home, 'build-cache', 'cached', 'entries', entries('cached')[0]!, 'manifest.json')).mtimeMs,
      entryBefore,
      'the entry was not rewritten',
    );
  });

  it('a damaged cache entry is detected, discarded and rebuilt', async () => {
    const [key] = entries('cached');
    appendFileSync(
      join(h.home, 'build-cache', 'cached', 'entries', key!, 'node_modules', 'pilot-fixture-addon', 'index.js'),
      '\n// tampered\n',
    );
    await change(repo, 'v3');
    const out = await pilotRun(repo);
    assert.match(out, new RegExp(`build cache: entry ${key!.slice(0, 12)} is damaged \\(node_modules does not match its manifest`));
    assert.match(out, /--> install: npm ci/);
    assert.match(out, /build cache: saved/);
    const third = await answer('cached');
    assert.equal(third.version, 'v3');
    assert.notEqual(third.stamp.id, first.stamp.id, 'compiled again');
    const again = await pilotRun(repo);
    assert.match(again, /build cache: hit/);
    assert.deepEqual((await answer('cached')).stamp, third.stamp);
  });

  it('a changed lockfile installs again and keeps the old entry too (LRU, 3 per app)', async () => {
    const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as unknown;
    writeFileSync(join(repo, 'package-lock.json'), JSON.stringify(lock, null, 4) + '\n');
    await git(repo, 'commit', '-qam', 'lockfile reformatted');
    const out = await pilotRun(repo);
    assert.match(out, /build cache: miss [0-9a-f]{12} \(package-lock\.json changed\): installing with the download cache/);
    assert.equal(entries('cached').length, 2);
  });

  it('--no-cache installs from scratch; prune_dev_dependencies: false ships devDependencies; build_cache: false uses no cache', async () => {
    const out = await pilotRun(repo, ['--no-cache']);
    assert.doesNotMatch(out, /build cache: hit/);
    assert.match(out, /build cache: bypassed \(--no-cache\)/);
    assert.match(out, /--> install: npm ci/);
    writeFileSync(join(repo, 'pilot.yaml'), 'prune_dev_dependencies: false\nbuild_cache: false\n');
    await git(repo, 'add', 'pilot.yaml');
    await git(repo, 'commit', '-qm', 'no prune, no cache');
    const plain = await pilotRun(repo);
    assert.doesNotMatch(plain, /build cache:/);
    assert.doesNotMatch(plain, /--> prune/);
    assert.match(plain, /--> install: npm ci/);
    assert.equal((await answer('cached')).devShipped, true);
  });
});

describe('runtime docker: what can fail early fails before the install', { skip: dockerSkip, timeout: 300_000 }, () => {
  const d = new Harness();
  let repo = '';
  before(async () => {
    await d.startUp();
    const dir = d.track(tempDir('app-docker-early'));
    await writeNativeApp(dir, 'early', { pilotYaml: 'runtime: docker\nrun: node server.js\n' });
    repo = d.track(await makeRepo(dir));
  });
  after(() => d.cleanup());

  it('a missing base image fails the build step at once, with the bootstrap-node hint, nothing installed', async () => {
    const t0 = performance.now();
    const r = await d.cli(['run', repo], { env: { PILOT_NODE_BASE_IMAGE: `pilot-test/no-such-base-${process.pid}:1` } });
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 1, out);
    assert.match(out, /base image pilot-test\/no-such-base-\d+:1 for a generated Dockerfile is not on this machine's Docker engine/);
    assert.match(out, /pilot images bootstrap-node/);
    assert.doesNotMatch(out, /--> install/);
    assert.doesNotMatch(out, /build cache:/);
    // Generous: the point is "before the install", which the lines above prove; this only catches a minutes-long wait.
    assert.ok(performance.now() - t0 < 120_000);
  });

  it('a start command the generated image cannot run (it has no shell) fails before the install', async () => {
    const dir = d.track(tempDir('app-docker-shell'));
    await writeNativeApp(dir, 'shellstart', { pilotYaml: 'runtime: docker\n' });
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    pkg.scripts['start'] = 'node server.js && echo done';
    writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
    const r = await d.cli(['run', d.track(await makeRepo(dir))]);
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 1, out);
    assert.match(out, /!!! build failed: runtime docker without a Dockerfile: the start command is `npm start`, which needs a shell/);
    assert.doesNotMatch(out, /--> install/);
  });

  it('a configured registry that does not answer fails before the install, naming it', async () => {
    await ensureBaseImage(connectEngine());
    const url = `http://127.0.0.1:${await closedPort()}`;
    const set = await d.cli(['registry', 'set', url]);
    assert.equal(set.code, 0, set.stderr);
    try {
      const r = await d.cli(['run', repo]);
      const out = r.stdout + r.stderr;
      assert.equal(r.code, 1, out);
      assert.match(out, new RegExp(`the registry ${url.replaceAll('.', '\\.')} does not answer \\(ECONNREFUSED\\); nothing was built`));
      assert.match(out, /pilot registry remove/);
      assert.doesNotMatch(out, /--> install/);
    } finally {
      await d.cli(['registry', 'remove', url]);
    }
  });
});

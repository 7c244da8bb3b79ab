/**
 * Issue 10.3 end to end: apps deploy unmodified whatever their package manager. One real `pilot up`,
 * real `pilot run`s of the fixture apps in test/fixtures/apps (lockfiles written by the real npm,
 * yarn 1, yarn 4 and pnpm 9), the package managers fetched by Pilot itself (corepack, or the npm
 * registry through the user's npm) into a fresh cache, each app answering through the router with
 * what it saw: its dependency, whether it runs under Plug'n'Play, which manager ran its scripts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, makeRepo, ROOT, tempDir } from './harness.js';

const h = new Harness();
const FIXTURES = join(ROOT, 'test/fixtures/apps');
let pmCache = '';

interface Answer {
  app: string;
  twoHours: number;
  ms: string;
  pnp: boolean;
  nodeModules: boolean;
  prebuild: string | null;
  build: string | null;
  postbuild: string | null;
}

async function answer(name: string): Promise<Answer> {
  const r = await h.viaRouter(`${name}.localhost`);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as Answer;
}

async function deploy(fixture: string, edit?: (pkg: Record<string, unknown>) => void): Promise<{ code: number | null; out: string }> {
  const dir = h.track(tempDir(fixture));
  cpSync(join(FIXTURES, fixture), dir, { recursive: true });
  if (edit) {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
    edit(pkg);
    writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  }
  const repo = h.track(await makeRepo(dir));
  // `pilot run` builds in the CLI process: the cache is set there.
  const r = await h.cli(['run', repo], { env: { PILOT_PACKAGE_MANAGER_CACHE: pmCache } });
  return { code: r.code, out: r.stdout + r.stderr };
}

describe('package managers, end to end', { timeout: 900_000 }, () => {
  before(async () => {
    pmCache = h.track(tempDir('pm-cache'));
    await h.startUp();
  });
  after(() => h.cleanup());

  it('npm: npm ci, then the build script', async () => {
    const r = await deploy('pm-npm');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /--> install: npm ci --no-audit --no-fund/);
    assert.match(r.out, /npm set-up passed to the build: /);
    const a = await answer('pm-npm');
    assert.equal(a.ms, '2.1.3');
    assert.equal(a.twoHours, 7_200_000);
    assert.match(a.build ?? '', /^build by npm\/[\d.]+, installed=true$/);
  });

  it('yarn 1 (packageManager yarn@1.22.22): fetched by Pilot, frozen install, heroku-prebuild before it and heroku-postbuild instead of build', async () => {
    const r = await deploy('pm-yarn1');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /yarn 1\.22\.22 \(from packageManager "yarn@1\.22\.22"\) installs the app \(fetched through (corepack|registry)\)/);
    assert.match(
      r.out,
      /--> heroku-prebuild: yarn run heroku-prebuild[\s\S]*--> install: yarn install --frozen-lockfile --non-interactive[\s\S]*--> heroku-postbuild: yarn run heroku-postbuild/,
    );
    assert.doesNotMatch(r.out, /--> build:/);
    const a = await answer('pm-yarn1');
    assert.equal(a.ms, '2.1.3');
    assert.equal(a.prebuild, 'prebuild by yarn/1.22.22, installed=false');
    assert.equal(a.postbuild, 'postbuild by yarn/1.22.22, installed=true');
    assert.equal(a.build, null);
  });

  it("yarn 4 with Plug'n'Play: yarn install --immutable, no node_modules, and `npm start` runs under .pnp.cjs on the agent", async () => {
    const r = await deploy('pm-berry-pnp');
    assert.equal(r.code, 0, r.out);
    // The fixture's packageManager carries the hash `corepack use` writes (of yarn.js): checked.
    assert.match(r.out, /yarn 4\.5\.0 \(from packageManager "yarn@4\.5\.0\+sha512\.837566d2…"\) installs the app/);
    assert.match(r.out, /--> install: yarn install --immutable/);
    const a = await answer('pm-berry-pnp');
    assert.equal(a.pnp, true);
    assert.equal(a.nodeModules, false);
    assert.equal(a.ms, '2.1.3');
    assert.equal(a.build, 'build by yarn/4.5.0, installed=true');
  });

  it('yarn 4 with the node-modules linker (engines.yarn "~4.5.0", resolved against the registry)', async () => {
    const r = await deploy('pm-berry-nm');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /yarn 4\.5\.\d+ \(from engines\.yarn "~4\.5\.0"\) installs the app/);
    const a = await answer('pm-berry-nm');
    assert.equal(a.pnp, false);
    assert.equal(a.nodeModules, true);
    assert.equal(a.ms, '2.1.3');
    assert.match(a.prebuild ?? '', /^prebuild by npm\/[\d.]+, installed=false$/);
  });

  it('pnpm 9 (packageManager pnpm@9.12.0): pnpm install --frozen-lockfile, build through pnpm', async () => {
    const r = await deploy('pm-pnpm');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /pnpm 9\.12\.0 \(from packageManager "pnpm@9\.12\.0"\) installs the app/);
    assert.match(r.out, /--> install: pnpm install --frozen-lockfile/);
    const a = await answer('pm-pnpm');
    assert.equal(a.ms, '2.1.3');
    assert.equal(a.nodeModules, true);
    assert.equal(a.build, 'build by pnpm/9.12.0, installed=true');
  });

  it("a second deploy takes the package manager from this machine's cache", async () => {
    const r = await deploy('pm-pnpm', (pkg) => ((pkg['scripts'] as Record<string, string>)['start'] = 'node server.js # v2'));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /pnpm 9\.12\.0 \(from packageManager "pnpm@9\.12\.0"\) installs the app \(cached on this machine\)/);
  });

  it('a version that does not exist fails before the install, saying so; a wrong hash is refused', async () => {
    const r = await deploy('pm-berry-pnp', (pkg) => (pkg['packageManager'] = 'yarn@4.99.99'));
    assert.notEqual(r.code, 0, r.out);
    assert.match(
      r.out,
      /packageManager "yarn@4\.99\.99": the npm registry \S+ has no yarn 4\.99\.99 \(package @yarnpkg\/cli-dist@4\.99\.99\); nearest: 4\./,
    );
    assert.doesNotMatch(r.out, /--> install/);

    const bad = await deploy('pm-yarn1', (pkg) => (pkg['packageManager'] = `yarn@1.22.21+sha512.${'0'.repeat(128)}`));
    assert.notEqual(bad.code, 0, bad.out);
    assert.match(bad.out, /hash|signature|mismatch/i);
    assert.doesNotMatch(bad.out, /--> install/);

    const hostile = await deploy('pm-npm', (pkg) => (pkg['packageManager'] = 'yarn@4.5.0; curl evil'));
    assert.notEqual(hostile.code, 0, hostile.out);
    assert.match(hostile.out, /packageManager "yarn@4\.5\.0; curl evil" is not name@version/);
  });
});

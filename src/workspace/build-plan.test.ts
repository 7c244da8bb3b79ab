import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPilotError } from '../core/errors.js';
import { buildSteps, composeBuildEnv, detectLockfile, type WorkspaceFacts } from './build-plan.js';
import { mustSucceed, runCommand } from '../os/exec.js';
import { buildEnv, readWorkspaceFacts } from './facts.js';

const facts = (over: Partial<WorkspaceFacts> = {}): WorkspaceFacts => ({ hasPackageJson: true, lockfile: null, scripts: {}, ...over });
const argvs = (c: readonly (readonly string[])[] | undefined, f: WorkspaceFacts) => buildSteps(c, f).map((s) => [s.name, s.argv.join(' ')]);

async function withDir<T>(files: Record<string, string>, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pilot-facts-'));
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('buildSteps', () => {
  it('installs by lockfile with a frozen install, then runs the build script if present', () => {
    assert.deepEqual(argvs(undefined, facts({ lockfile: 'npm' })), [['install', 'npm ci --no-audit --no-fund']]);
    assert.deepEqual(argvs(undefined, facts({ lockfile: 'npm', scripts: { build: 'tsc' } })), [
      ['install', 'npm ci --no-audit --no-fund'],
      ['build', 'npm run build'],
    ]);
    assert.deepEqual(argvs(undefined, facts({ lockfile: 'yarn' }))[0], ['install', 'yarn install --frozen-lockfile --non-interactive']);
    assert.deepEqual(argvs(undefined, facts({ lockfile: 'yarn', yarnLock: 'berry' }))[0], ['install', 'yarn install --immutable']);
    assert.deepEqual(argvs(undefined, facts({ lockfile: 'pnpm' }))[0], ['install', 'pnpm install --frozen-lockfile']);
    assert.deepEqual(argvs(undefined, facts({ lockfile: null }))[0], ['install', 'npm install --no-audit --no-fund']);
  });

  it('runs the build commands of pilot.yaml instead of the build script, after the install', () => {
    assert.deepEqual(argvs([['make', 'assets']], facts({ lockfile: 'npm' })), [
      ['install', 'npm ci --no-audit --no-fund'],
      ['build', 'make assets'],
    ]);
    assert.deepEqual(
      argvs(
        [
          ['tsc', '-p', '.'],
          ['node', 'scripts/bundle.js'],
        ],
        facts(),
      ),
      [
        ['install', 'npm install --no-audit --no-fund'],
        ['build 1', 'tsc -p .'],
        ['build 2', 'node scripts/bundle.js'],
      ],
    );
    assert.deepEqual(argvs([], facts({ lockfile: 'npm' })), [['install', 'npm ci --no-audit --no-fund']]);
  });

  it('installs nothing without a package.json, whatever lockfile lies around', () => {
    assert.deepEqual(argvs(undefined, facts({ hasPackageJson: false })), []);
    assert.deepEqual(argvs(undefined, facts({ hasPackageJson: false, lockfile: 'yarn' })), []);
    assert.deepEqual(argvs([['./build.sh']], facts({ hasPackageJson: false })), [['build', './build.sh']]);
  });

  it('prefers npm, then yarn, then pnpm lockfiles when there are several', () => {
    const has =
      (...names: string[]) =>
      (f: string) =>
        names.includes(f);
    assert.equal(detectLockfile(has()), null);
    assert.equal(detectLockfile(has('npm-shrinkwrap.json')), 'npm');
    assert.equal(detectLockfile(has('pnpm-lock.yaml', 'yarn.lock')), 'yarn');
    assert.equal(detectLockfile(has('pnpm-lock.yaml', 'package-lock.json')), 'npm');
  });
});

describe('build environment', () => {
  it('holds PATH (Node first), HOME, CI and the app variables, and nothing else of the caller', () => {
    const caller = { PATH: '/usr/bin:/opt/node/bin:/bin', HOME: '/home/pilot', PILOT_TOKEN: 'secret', GITHUB_TOKEN: 'secret' };
    assert.deepEqual(composeBuildEnv(caller, { NODE_ENV: 'production' }, '/opt/node/bin'), {
      HOME: '/home/pilot',
      CI: 'true',
      npm_config_update_notifier: 'false',
      NODE_ENV: 'production',
      PATH: '/opt/node/bin:/usr/bin:/bin',
    });
    assert.deepEqual(composeBuildEnv({}, { CI: 'false' }, '/n'), {
      CI: 'false',
      npm_config_update_notifier: 'false',
      PATH: '/n:/usr/local/bin:/usr/bin:/bin',
    });
    assert.equal(composeBuildEnv(caller, { PATH: '/app/bin' }, '/n').PATH, '/n:/app/bin');
  });

  it('runs the same node as Pilot', async () => {
    const lines: string[] = [];
    const env = buildEnv({ ...process.env, PATH: '/usr/bin:/bin' });
    assert.equal(env['PILOT_TOKEN'], undefined);
    const r = await runCommand(['node', '-p', 'process.execPath'], {
      cwd: tmpdir(),
      env,
      timeoutMs: 10_000,
      onLine: (_s, l) => lines.push(l),
    });
    mustSucceed(r, ['node']);
    assert.deepEqual(lines, [process.execPath]);
  });
});

describe('readWorkspaceFacts', () => {
  it('reads scripts and the lockfile', async () => {
    const pkg = JSON.stringify({ name: 'web', scripts: { build: 'tsc', start: 'node .', weird: 42 } });
    const f = await withDir({ 'package.json': `\uFEFF${pkg}`, 'yarn.lock': '' }, readWorkspaceFacts);
    assert.deepEqual(f, { hasPackageJson: true, lockfile: 'yarn', scripts: { build: 'tsc', start: 'node .' }, yarnLock: 'v1' });
  });

  it('sees no package.json and no lockfile in a non-Node app', async () => {
    assert.deepEqual(await withDir({ 'yarn.lock': '', 'main.go': '' }, readWorkspaceFacts), {
      hasPackageJson: false,
      lockfile: null,
      scripts: {},
    });
  });

  it('rejects a malformed package.json as invalid_config naming the file and the JSON error', async () => {
    await withDir({ 'package.json': '{ "name": "web", }' }, async (dir) => {
      await assert.rejects(readWorkspaceFacts(dir), (e: unknown) => {
        assert.ok(isPilotError(e) && e.code === 'invalid_config');
        assert.ok(e.message.startsWith(`${path.join(dir, 'package.json')} is not valid JSON: `), e.message);
        assert.match(e.message, /JSON/);
        return true;
      });
    });
    await withDir({ 'package.json': '[1]' }, async (dir) => {
      await assert.rejects(readWorkspaceFacts(dir), /must hold a JSON object/);
    });
  });
});

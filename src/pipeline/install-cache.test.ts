/**
 * installWithCache and pruneDevDependencies with the real package managers, offline (local `file:`
 * tarballs): npm always; yarn 1 and pnpm when they are on PATH (PILOT_TEST_PM_BIN adds a folder,
 * e.g. `npm install --prefix /tmp/pm yarn@1 pnpm@9` then PILOT_TEST_PM_BIN=/tmp/pm/node_modules/.bin).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import type { Manager } from './build-cache-key.js';
import { installArgv } from '../workspace/build-plan.js';
import { mustSucceed, runCommand } from '../os/exec.js';
import { installWithCache, pruneDevDependencies, type RunStep } from './install-cache.js';

const PATH = [process.env['PILOT_TEST_PM_BIN'], path.dirname(process.execPath), process.env['PATH']].filter(Boolean).join(':');
const ENV = { PATH, HOME: process.env['HOME'] ?? '/root', CI: 'true', npm_config_update_notifier: 'false' };
const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { env: ENV }).status === 0;

async function tgz(root: string, name: string, files: Record<string, string>): Promise<void> {
  const dir = await mkdtemp(path.join(root, 'pkg-'));
  await mkdir(path.join(dir, 'package'));
  for (const [f, body] of Object.entries(files)) await writeFile(path.join(dir, 'package', f), body);
  await tar.c(
    { gzip: true, cwd: dir, file: path.join(root, 'vendor', `${name}-1.0.0.tgz`), portable: true, mtime: new Date('2020-01-01T00:00:00Z') },
    ['package'],
  );
  await rm(dir, { recursive: true });
}

/** The lockfile step each manager offers without touching the network. */
const LOCK: Record<Manager, readonly string[]> = {
  npm: ['npm', 'install', '--package-lock-only', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'],
  yarn: ['yarn', 'install', '--ignore-scripts', '--offline', '--non-interactive'],
  pnpm: ['pnpm', 'install', '--lockfile-only', '--offline', '--ignore-scripts'],
};

for (const manager of ['npm', 'yarn', 'pnpm'] as const) {
  describe(
    `installWithCache with ${manager}`,
    { skip: !has(manager) && `${manager} is not on PATH (set PILOT_TEST_PM_BIN)`, timeout: 180_000 },
    () => {
      let root: string;
      let app: string;
      const cache = (): { root: string; app: string } => ({ root: path.join(root, 'cache'), app: 'shop' });
      before(async () => {
        root = await mkdtemp(path.join(tmpdir(), `pilot-ic-${manager}-`));
        app = path.join(root, 'src');
        await mkdir(path.join(app, 'vendor'), { recursive: true });
        await tgz(app, 'dep', { 'package.json': JSON.stringify({ name: 'dep', version: '1.0.0' }), 'index.js': 'module.exports = 1;\n' });
        await tgz(app, 'devdep', {
          'package.json': JSON.stringify({ name: 'devdep', version: '1.0.0' }),
          'index.js': 'module.exports = 2;\n',
        });
        await writeFile(
          path.join(app, 'package.json'),
          JSON.stringify({
            name: 'shop',
            version: '1.0.0',
            private: true,
            dependencies: { dep: 'file:vendor/dep-1.0.0.tgz' },
            devDependencies: { devdep: 'file:vendor/devdep-1.0.0.tgz' },
            // The root's own install scripts leave a trace outside node_modules: a hit must run each once again.
            scripts: Object.fromEntries(
              ['preinstall', 'install', 'postinstall'].map((s) => [s, `node -e "require('fs').appendFileSync('ran.txt', '${s}\\n')"`]),
            ),
          }),
        );
        const r = await runCommand(LOCK[manager], { cwd: app, env: ENV, timeoutMs: 120_000 });
        mustSucceed(r, LOCK[manager]);
        await rm(path.join(app, 'node_modules'), { recursive: true, force: true });
      });
      after(async () => {
        await rm(root, { recursive: true, force: true });
      });

      /** A fresh workspace holding the app, and a runStep that records what it ran. */
      async function workspace(name: string): Promise<{ dir: string; lines: string[]; ran: string[]; runStep: RunStep }> {
        const dir = path.join(root, name, 'app');
        await cp(app, dir, { recursive: true });
        const lines: string[] = [];
        const ran: string[] = [];
        const runStep: RunStep = async (step, argv, env) => {
          ran.push(step);
          mustSucceed(await runCommand(argv, { cwd: dir, env, timeoutMs: 120_000, onLine: (_s, l) => lines.push(l) }), argv);
        };
        return { dir, lines, ran, runStep };
      }
      const argv = (): readonly string[] => installArgv({ hasPackageJson: true, lockfile: manager, scripts: {} })!;

      it('misses, installs with the download cache and saves; a second workspace hits and skips the install; prune drops the devDependency', async () => {
        const one = await workspace('one');
        const r1 = await installWithCache({
          cache: cache(),
          appDir: one.dir,
          workspace: path.dirname(one.dir),
          manager,
          installArgv: argv(),
          env: ENV,
          bypass: false,
          keep: 3,
          line: (l) => one.lines.push(l),
          runStep: one.runStep,
        });
        assert.equal(r1.hit, false);
        assert.deepEqual(one.ran, ['install']);
        assert.ok(
          one.lines.some((l) => /build cache: miss [0-9a-f]{12} \(no entry for this app yet\)/.test(l)),
          one.lines.join('\n'),
        );
        assert.ok(
          one.lines.some((l) => /build cache: saved/.test(l)),
          one.lines.join('\n'),
        );
        assert.ok(
          (await readdir(path.join(root, 'cache/shop/downloads', manager))).length > 0,
          'the manager wrote its download cache where Pilot pointed it',
        );

        const trace = (dir: string): Promise<string> => readFile(path.join(dir, 'ran.txt'), 'utf8');
        assert.equal(await trace(one.dir), 'preinstall\ninstall\npostinstall\n', `${manager} install ran the root scripts`);

        const two = await workspace('two');
        const r2 = await installWithCache({
          cache: cache(),
          appDir: two.dir,
          workspace: path.dirname(two.dir),
          manager,
          installArgv: argv(),
          env: ENV,
          bypass: false,
          keep: 3,
          line: (l) => two.lines.push(l),
          runStep: two.runStep,
        });
        assert.equal(r2.hit, true, two.lines.join('\n'));
        assert.ok(
          two.ran.length > 0 && two.ran.every((x) => x.endsWith(' script')),
          `no install, only the root's scripts: ${two.ran.join(', ')}`,
        );
        assert.equal(await trace(two.dir), 'preinstall\ninstall\npostinstall\n', 'the root scripts ran once each, in order');
        two.ran.length = 0;
        await stat(path.join(two.dir, 'node_modules/devdep/index.js'));

        await pruneDevDependencies({
          appDir: two.dir,
          manager,
          managerVersion: r2.inputs?.managerVersion,
          env: r2.env,
          line: (l) => two.lines.push(l),
          runStep: two.runStep,
        });
        assert.deepEqual(two.ran, ['prune'], two.lines.join('\n'));
        await stat(path.join(two.dir, 'node_modules/dep/index.js'));
        await assert.rejects(stat(path.join(two.dir, 'node_modules/devdep')), 'the devDependency is gone');
        assert.ok(
          two.lines.some((l) => /devDependencies pruned: node_modules \d+ → \d+ files/.test(l)),
          two.lines.join('\n'),
        );

        // Pruning worked on the workspace's copy: the entry still has the devDependency for the next build.
        const three = await workspace('three');
        const r3 = await installWithCache({
          cache: cache(),
          appDir: three.dir,
          workspace: path.dirname(three.dir),
          manager,
          installArgv: argv(),
          env: ENV,
          bypass: false,
          keep: 3,
          line: (l) => three.lines.push(l),
          runStep: three.runStep,
        });
        assert.equal(r3.hit, true, three.lines.join('\n'));
        await stat(path.join(three.dir, 'node_modules/devdep/index.js'));
      });
    },
  );
}

describe('installWithCache when the manager cannot be asked its version', () => {
  it('installs without the cache and says why (the install then fails or not on its own)', async () => {
    const lines: string[] = [];
    const ran: string[] = [];
    const dir = await mkdtemp(path.join(tmpdir(), 'pilot-ic-none-'));
    try {
      await writeFile(path.join(dir, 'package.json'), '{"name":"x"}');
      const r = await installWithCache({
        cache: { root: path.join(dir, 'cache'), app: 'x' },
        appDir: dir,
        workspace: dir,
        manager: 'pnpm',
        installArgv: ['pnpm', 'install'],
        env: { PATH: path.dirname(process.execPath) },
        bypass: false,
        keep: 3,
        line: (l) => lines.push(l),
        runStep: async (s) => void ran.push(s),
      });
      assert.equal(r.hit, false);
      assert.deepEqual(ran, ['install']);
      assert.match(lines.join('\n'), /build cache: not used \(.*pnpm/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

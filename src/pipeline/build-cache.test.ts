import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  cacheEnv,
  cacheKey,
  describeMiss,
  installEnvEntries,
  installRelevantJson,
  pruneArgv,
  rootScriptArgvs,
  stepVerb,
  type CacheInputs,
} from './build-cache-key.js';
import { gatherInputs, gcBuildCache, keyOf, restoreCache, saveCache, treeDigest, type AppCache } from './build-cache.js';

const hash = (t: string): string => createHash('sha256').update(t).digest('hex');
const INPUTS: CacheInputs = {
  manager: 'npm',
  managerVersion: '10.8.2',
  lockfile: { name: 'package-lock.json', sha256: 'a'.repeat(64) },
  packageJson: 'b'.repeat(64),
  localInputs: 'c'.repeat(64),
  runtime: { node: 'v20.20.2', abi: '115', platform: 'linux-x64', libc: '2.36' },
  env: 'd'.repeat(64),
};

describe('build cache key', () => {
  it('is stable for the same inputs, whatever the order of their fields', () => {
    const k = cacheKey(INPUTS, hash);
    assert.match(k, /^[0-9a-f]{32}$/);
    const reordered = Object.fromEntries(Object.entries(INPUTS).reverse()) as unknown as CacheInputs;
    assert.equal(cacheKey(reordered, hash), k);
  });

  it('changes with the lockfile, the node version or ABI, the platform, libc, the manager version and the env', () => {
    const k = cacheKey(INPUTS, hash);
    const variants: CacheInputs[] = [
      { ...INPUTS, lockfile: { name: 'package-lock.json', sha256: 'e'.repeat(64) } },
      { ...INPUTS, lockfile: null },
      { ...INPUTS, packageJson: 'f'.repeat(64) },
      { ...INPUTS, localInputs: '0'.repeat(64) },
      { ...INPUTS, runtime: { ...INPUTS.runtime, node: 'v22.23.3' } },
      { ...INPUTS, runtime: { ...INPUTS.runtime, abi: '127' } },
      { ...INPUTS, runtime: { ...INPUTS.runtime, platform: 'linux-arm64' } },
      { ...INPUTS, runtime: { ...INPUTS.runtime, libc: 'no-glibc' } },
      { ...INPUTS, managerVersion: '11.0.0' },
      { ...INPUTS, manager: 'pnpm' },
      { ...INPUTS, env: '1'.repeat(64) },
    ];
    const keys = new Set(variants.map((v) => cacheKey(v, hash)));
    assert.equal(keys.size, variants.length);
    assert.ok(!keys.has(k));
  });

  it('says why a key missed', () => {
    assert.equal(describeMiss(INPUTS, undefined), 'no entry for this app yet');
    assert.equal(
      describeMiss({ ...INPUTS, lockfile: { name: 'package-lock.json', sha256: '9'.repeat(64) } }, INPUTS),
      'package-lock.json changed',
    );
    assert.equal(
      describeMiss({ ...INPUTS, runtime: { ...INPUTS.runtime, node: 'v22.1.0', abi: '127' } }, INPUTS),
      'node v20.20.2 → v22.1.0',
    );
    assert.equal(describeMiss({ ...INPUTS, managerVersion: '11.0.0' }, INPUTS), 'npm 10.8.2 → npm 11.0.0');
  });

  it('hashes only the install-relevant part of package.json', () => {
    const a = installRelevantJson({
      name: 'shop',
      version: '1.0.0',
      dependencies: { express: '^4' },
      scripts: { start: 'node a.js', postinstall: 'node p.js' },
    });
    assert.equal(
      installRelevantJson({
        version: '1.0.1',
        name: 'shop',
        scripts: { postinstall: 'node p.js', start: 'node b.js', build: 'tsc' },
        dependencies: { express: '^4' },
      }),
      a,
    );
    assert.notEqual(installRelevantJson({ dependencies: { express: '^5' }, scripts: { postinstall: 'node p.js' } }), a);
    assert.notEqual(installRelevantJson({ dependencies: { express: '^4' }, scripts: {} }), a, 'the root postinstall is part of it');
    assert.notEqual(
      installRelevantJson({ dependencies: { express: '^4' }, scripts: { postinstall: 'node p.js' }, overrides: { qs: '6.0.0' } }),
      a,
    );
  });

  it("runs the root's own install scripts once each after a hit, in npm ci's order, whatever the manager chains", () => {
    const scripts = { postinstall: 'a', install: 'b', preinstall: 'c', prepare: 'd', start: 'e', build: 'f', test: 1 };
    assert.deepEqual(
      rootScriptArgvs('npm', '10.8.2', scripts).map((s) => s.argv.join(' ')),
      [
        'npm run --ignore-scripts preinstall',
        'npm run --ignore-scripts install',
        'npm run --ignore-scripts postinstall',
        'npm run --ignore-scripts prepare',
      ],
    );
    // yarn 1 and pnpm 8+ run preinstall/postinstall as part of `run install`.
    assert.deepEqual(
      rootScriptArgvs('yarn', '1.22.22', scripts).map((s) => s.argv.join(' ')),
      ['yarn run install', 'yarn run prepare'],
    );
    assert.deepEqual(
      rootScriptArgvs('pnpm', '9.15.9', scripts).map((s) => s.name),
      ['install script', 'prepare script'],
    );
    assert.deepEqual(
      rootScriptArgvs('pnpm', '7.33.0', scripts).map((s) => s.name),
      ['preinstall script', 'install script', 'postinstall script', 'prepare script'],
    );
    // A hook without its main script is run by name.
    assert.deepEqual(
      rootScriptArgvs('yarn', '1.22.22', { postinstall: 'x' }).map((s) => s.name),
      ['postinstall script'],
    );
    assert.equal(stepVerb('postinstall script'), 'running the postinstall script');
    assert.deepEqual(rootScriptArgvs('npm', '10.8.2', { start: 'node s.js' }), []);
  });

  it("keeps install-relevant env, without the run's temp path or Pilot's own cache folders", () => {
    const got = installEnvEntries(
      {
        PATH: '/x',
        HOME: '/root',
        NODE_ENV: 'production',
        npm_config_userconfig: '/tmp/pilot-build-abc/npmrc',
        npm_config_cache: '/cache',
        YARN_CACHE_FOLDER: '/y',
        npm_config_store_dir: '/s',
        NPM_CONFIG_REGISTRY: 'https://r.example/',
        LOG_LEVEL: 'x',
      },
      '/tmp/pilot-build-abc',
    );
    assert.deepEqual(got, [
      ['NODE_ENV', 'production'],
      ['NPM_CONFIG_REGISTRY', 'https://r.example/'],
      ['npm_config_userconfig', '<workspace>/npmrc'],
    ]);
  });

  it('points each manager at its download cache and prunes the way each manager can', () => {
    assert.deepEqual(cacheEnv('npm', '/c'), { npm_config_cache: '/c' });
    assert.deepEqual(cacheEnv('yarn', '/c'), { YARN_CACHE_FOLDER: '/c' });
    assert.deepEqual(cacheEnv('pnpm', '/c'), { npm_config_store_dir: '/c' });
    assert.deepEqual(pruneArgv('npm', '10.8.2'), ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund']);
    assert.deepEqual(pruneArgv('pnpm', '9.1.0'), ['pnpm', 'prune', '--prod']);
    assert.equal(pruneArgv('yarn', '1.22.22')?.includes('--production'), true);
    assert.equal(pruneArgv('yarn', '4.5.0'), undefined);
    assert.equal(stepVerb('install'), 'installing');
    assert.equal(stepVerb('build 2'), 'building');
    assert.equal(stepVerb('prune'), 'pruning');
  });
});

describe('build cache entries', () => {
  let dir: string;
  let cache: AppCache;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pilot-bc-test-'));
    cache = { root: path.join(dir, 'cache'), app: 'shop' };
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A workspace with a small node_modules: files, an executable, a nested package, a .bin link. */
  async function workspace(name: string, content = 'module.exports = 1;\n'): Promise<string> {
    const ws = path.join(dir, name);
    await mkdir(path.join(ws, 'node_modules/dep/build/Release'), { recursive: true });
    await mkdir(path.join(ws, 'node_modules/.bin'), { recursive: true });
    await writeFile(path.join(ws, 'node_modules/dep/index.js'), content);
    await writeFile(path.join(ws, 'node_modules/dep/build/Release/dep.node'), Buffer.alloc(4096, 7));
    await writeFile(path.join(ws, 'node_modules/dep/cli.js'), '#!/usr/bin/env node\n');
    await chmod(path.join(ws, 'node_modules/dep/cli.js'), 0o755);
    await symlink('../dep/cli.js', path.join(ws, 'node_modules/.bin/dep'));
    if (name.startsWith('ws-dmg-')) await writeFile(path.join(ws, 'node_modules/dep/big.bin'), Buffer.alloc(9 * 1024 * 1024));
    return ws;
  }
  const key = (n: number): string => n.toString(16).padStart(32, '0');

  it('saves atomically and restores an identical tree (modes, links, mtimes) on a hit', async () => {
    const ws = await workspace('ws1');
    const old = new Date('2026-01-02T03:04:05Z');
    await utimes(path.join(ws, 'node_modules/dep/build/Release/dep.node'), old, old);
    const s = await saveCache(cache, key(1), INPUTS, ws, { keep: 3 });
    assert.equal(s.saved, true);
    assert.deepEqual(await readdir(path.join(cache.root, 'shop/tmp')), [], 'nothing left in tmp');
    const target = path.join(dir, 'target1');
    await mkdir(path.join(target, 'node_modules/stale'), { recursive: true }); // a committed node_modules is replaced
    const r = await restoreCache(cache, key(1), target);
    assert.equal(r.kind, 'hit');
    assert.equal((await treeDigest(path.join(target, 'node_modules'))).digest, (await treeDigest(path.join(ws, 'node_modules'))).digest);
    assert.equal((await stat(path.join(target, 'node_modules/dep/cli.js'))).mode & 0o777, 0o755);
    assert.equal(
      (await stat(path.join(target, 'node_modules/dep/build/Release/dep.node'))).mtime.getTime(),
      old.getTime(),
      'the native build output keeps its mtime',
    );
    assert.equal(await readFile(path.join(target, 'node_modules/.bin/dep'), 'utf8'), '#!/usr/bin/env node\n');
    await assert.rejects(stat(path.join(target, 'node_modules/stale')));
  });

  it('misses on an unknown key and says what the latest entry was built from', async () => {
    const r = await restoreCache(cache, key(99), path.join(dir, 'target-miss'));
    assert.equal(r.kind, 'miss');
    assert.deepEqual(r.kind === 'miss' && r.previous?.inputs, INPUTS);
  });

  let damaged = 0;
  for (const [what, damage] of [
    [
      'a file changed in place (same size)',
      async (e: string) => writeFile(path.join(e, 'node_modules/dep/index.js'), 'module.exports = 2;\n'),
    ],
    ['a file missing (a half-deleted entry)', async (e: string) => rm(path.join(e, 'node_modules/dep/build/Release/dep.node'))],
    ['a file truncated', async (e: string) => writeFile(path.join(e, 'node_modules/dep/build/Release/dep.node'), Buffer.alloc(100))],
    [
      'a large file (hashed as a stream) changed in its middle',
      async (e: string) => {
        const f = path.join(e, 'node_modules/dep/big.bin');
        const buf = await readFile(f);
        buf[5 * 1024 * 1024] = 1;
        await writeFile(f, buf);
      },
    ],
    ['an extra file', async (e: string) => writeFile(path.join(e, 'node_modules/dep/evil.js'), 'x')],
    ['a mode changed', async (e: string) => chmod(path.join(e, 'node_modules/dep/cli.js'), 0o644)],
    ['its node_modules folder gone', async (e: string) => rm(path.join(e, 'node_modules'), { recursive: true })],
    ['no manifest (a write cut short)', async (e: string) => rm(path.join(e, 'manifest.json'))],
    ['a manifest that is not JSON', async (e: string) => writeFile(path.join(e, 'manifest.json'), '{"format":1,')],
  ] as const) {
    it(`detects a damaged entry, discards it and leaves no node_modules behind: ${what}`, async () => {
      const n = ++damaged;
      const ws = await workspace(`ws-dmg-${n}`);
      await saveCache(cache, key(2), INPUTS, ws, { keep: 10 });
      const entry = path.join(cache.root, 'shop/entries', key(2));
      await damage(entry);
      const target = path.join(dir, `target-dmg-${n}`);
      await mkdir(target, { recursive: true });
      const r = await restoreCache(cache, key(2), target);
      assert.equal(r.kind, 'damaged', JSON.stringify(r));
      await assert.rejects(stat(entry), 'the entry is gone');
      await assert.rejects(stat(path.join(target, 'node_modules')), 'no half-restored node_modules');
      assert.equal((await restoreCache(cache, key(2), target)).kind, 'miss');
    });
  }

  it('refuses to save a node_modules with a link out of it (a file: folder dependency)', async () => {
    const ws = await workspace('ws-link');
    await mkdir(path.join(ws, 'addon'));
    await symlink('../addon', path.join(ws, 'node_modules/addon'));
    const s = await saveCache(cache, key(3), INPUTS, ws, { keep: 3 });
    assert.equal(s.saved, false);
    assert.match(!s.saved ? s.reason : '', /node_modules\/addon|addon links outside node_modules/);
    await assert.rejects(stat(path.join(cache.root, 'shop/entries', key(3))));
  });

  it('refuses an absolute link, and anything that is not a file, folder or link (a FIFO an install script left)', async () => {
    const ws = await workspace('ws-hostile');
    await symlink('/etc', path.join(ws, 'node_modules/dep/etc'));
    const fifo = spawnSync('mkfifo', [path.join(ws, 'node_modules/dep/pipe')]);
    const d = await treeDigest(path.join(ws, 'node_modules'));
    assert.ok(
      d.problems.some((p) => p.startsWith('dep/etc links outside node_modules')),
      d.problems.join('; '),
    );
    if (fifo.status === 0)
      assert.ok(
        d.problems.some((p) => p === 'dep/pipe is not a file, folder or link'),
        d.problems.join('; '),
      );
    const s = await saveCache(cache, key(4), INPUTS, ws, { keep: 3 });
    assert.equal(s.saved, false);
  });

  it('says so when the install made no node_modules (an app without dependencies)', async () => {
    const ws = path.join(dir, 'ws-empty');
    await mkdir(ws, { recursive: true });
    assert.deepEqual(await saveCache(cache, key(5), INPUTS, ws, { keep: 3 }), {
      saved: false,
      reason: 'the install made no node_modules folder',
    });
  });

  it('keeps the most recently used entries: a restore counts as a use', async () => {
    const c = { root: path.join(dir, 'lru'), app: 'a' };
    const ws = await workspace('ws-lru');
    await saveCache(c, key(10), INPUTS, ws, { keep: 2 });
    await new Promise((r) => setTimeout(r, 20));
    await saveCache(c, key(11), INPUTS, ws, { keep: 2 });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal((await restoreCache(c, key(10), path.join(dir, 'lru-t'))).kind, 'hit'); // 10 used after 11
    await new Promise((r) => setTimeout(r, 20));
    const s = await saveCache(c, key(12), INPUTS, ws, { keep: 2 });
    assert.equal(s.saved && s.evicted, 1);
    assert.deepEqual((await readdir(path.join(c.root, 'a/entries'))).sort(), [key(10), key(12)]);
  });

  it('sweeps what a crashed save left in tmp, and never takes it for an entry', async () => {
    const c = { root: path.join(dir, 'crash'), app: 'a' };
    const leftover = path.join(c.root, 'a/tmp/save-dead');
    await mkdir(path.join(leftover, 'node_modules'), { recursive: true });
    const t = new Date(Date.now() - 2 * 3_600_000);
    await utimes(leftover, t, t);
    assert.equal((await restoreCache(c, key(20), path.join(dir, 'crash-t'))).kind, 'miss');
    await saveCache(c, key(20), INPUTS, await workspace('ws-crash'), { keep: 2 });
    assert.deepEqual(await readdir(path.join(c.root, 'a/tmp')), []);
  });

  it('--no-cache replaces an existing entry; without it a second save of the same key is dropped', async () => {
    const c = { root: path.join(dir, 'replace'), app: 'a' };
    await saveCache(c, key(30), INPUTS, await workspace('ws-r1', 'one\n'), { keep: 2 });
    const again = await saveCache(c, key(30), INPUTS, await workspace('ws-r2', 'two\n'), { keep: 2 });
    assert.equal(again.saved, false);
    const replaced = await saveCache(c, key(30), INPUTS, await workspace('ws-r3', 'three\n'), { keep: 2, replace: true });
    assert.equal(replaced.saved, true);
    const t = path.join(dir, 'replace-t');
    assert.equal((await restoreCache(c, key(30), t)).kind, 'hit');
    assert.equal(await readFile(path.join(t, 'node_modules/dep/index.js'), 'utf8'), 'three\n');
  });

  it('the GC pass removes entries unused for the idle time, and idle apps entirely', async () => {
    const c = { root: path.join(dir, 'gc'), app: 'old' };
    await saveCache(c, key(40), INPUTS, await workspace('ws-gc'), { keep: 2 });
    await saveCache({ root: c.root, app: 'fresh' }, key(41), INPUTS, await workspace('ws-gc2'), { keep: 2 });
    const t = new Date(Date.now() - 30 * 86_400_000);
    await utimes(path.join(c.root, 'old/entries', key(40)), t, t);
    await utimes(path.join(c.root, 'old'), t, t);
    const gone = await gcBuildCache(c.root, 14 * 86_400_000, Date.now());
    assert.deepEqual(gone, { entries: 1, apps: ['old'] });
    assert.deepEqual(await readdir(c.root), ['fresh']);
  });
});

describe('build cache inputs (real node and npm)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pilot-bc-inputs-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const env = { PATH: `${path.dirname(process.execPath)}:${process.env['PATH'] ?? ''}`, HOME: process.env['HOME'] ?? '/root' };

  async function app(files: Record<string, string | Buffer>): Promise<string> {
    const d = await mkdtemp(path.join(dir, 'app-'));
    for (const [f, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(d, f)), { recursive: true });
      await writeFile(path.join(d, f), text);
    }
    return d;
  }
  const pkg = (extra: object = {}): string =>
    JSON.stringify({ name: 'x', version: '1.0.0', dependencies: { dep: 'file:vendor/dep-1.0.0.tgz' }, ...extra });
  const inputs = async (files: Record<string, string | Buffer>): Promise<CacheInputs> =>
    gatherInputs({ appDir: await app(files), workspace: dir, manager: 'npm', env });

  it(
    'reads the node that runs the install, the npm version and the lockfile; a code change keeps the key',
    { timeout: 60_000 },
    async () => {
      const base = {
        'package.json': pkg(),
        'package-lock.json': '{"lockfileVersion":3}',
        'vendor/dep-1.0.0.tgz': Buffer.alloc(64, 1),
        'server.js': 'one',
      };
      const a = await inputs(base);
      assert.equal(a.runtime.node, process.version);
      assert.equal(a.runtime.abi, process.versions.modules);
      assert.equal(a.runtime.platform, `${process.platform}-${process.arch}`);
      assert.match(a.managerVersion, /^\d+\.\d+\.\d+/);
      assert.equal(a.lockfile?.name, 'package-lock.json');
      const same = await inputs({
        ...base,
        'server.js': 'two',
        'package.json': pkg({ version: '1.0.1', scripts: { start: 'node server.js' } }),
      });
      assert.equal(keyOf(same), keyOf(a));
      const lock = await inputs({ ...base, 'package-lock.json': '{"lockfileVersion":3,"x":1}' });
      assert.notEqual(keyOf(lock), keyOf(a));
      assert.equal(describeMiss(lock, a), 'package-lock.json changed');
      const tarball = await inputs({ ...base, 'vendor/dep-1.0.0.tgz': Buffer.alloc(64, 2) });
      assert.notEqual(keyOf(tarball), keyOf(a), 'a re-packed file: tarball is a new key');
      const npmrc = await inputs({ ...base, '.npmrc': 'omit=optional\n' });
      assert.notEqual(keyOf(npmrc), keyOf(a));
      // A file: dependency pointing out of the app is hashed as that, never read.
      const outside = await inputs({ ...base, 'package.json': pkg({ dependencies: { evil: 'file:../../../../etc/passwd' } }) });
      assert.notEqual(keyOf(outside), keyOf(a));
      const bom = await inputs({ ...base, 'package.json': `\uFEFF${pkg()}` });
      assert.equal(keyOf(bom), keyOf(a), 'a byte-order mark changes nothing (npm accepts it)');
    },
  );

  it('a manager that is not installed is a clear error (the runner then installs without the cache)', { timeout: 60_000 }, async () => {
    await assert.rejects(
      gatherInputs({
        appDir: await app({ 'package.json': pkg() }),
        workspace: dir,
        manager: 'pnpm',
        env: { PATH: path.dirname(process.execPath) },
      }),
      /pnpm.*not found|pnpm --version/,
    );
  });
});

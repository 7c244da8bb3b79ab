import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, link, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { list, type ReadEntry } from 'tar';
import { packDir } from './pack.js';

interface Listed {
  path: string;
  type: string;
  mode: number | undefined;
  uid: number | undefined;
  uname: string | undefined;
  body: string;
}

async function listTgz(file: string): Promise<Listed[]> {
  const out: Listed[] = [];
  await list({
    file,
    onReadEntry: (e: ReadEntry) => {
      const item: Listed = { path: e.path, type: e.type, mode: e.mode, uid: e.uid, uname: e.uname, body: '' };
      e.on('data', (c: Buffer) => (item.body += c.toString()));
      out.push(item);
    },
  });
  return out;
}

/** A small app tree the way npm leaves it: a .bin symlink, a .git folder, an executable. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'node_modules', '.bin'), { recursive: true });
  await mkdir(join(root, 'node_modules', 'typescript', 'bin'), { recursive: true });
  await mkdir(join(root, '.git', 'objects'), { recursive: true });
  await mkdir(join(root, 'empty'));
  await writeFile(join(root, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  await writeFile(join(root, 'package.json'), '{"name":"app"}\n');
  await writeFile(join(root, 'server.js'), 'console.log("hi")\n');
  await writeFile(join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '#!/usr/bin/env node\n');
  await chmod(join(root, 'node_modules', 'typescript', 'bin', 'tsc'), 0o755);
  await symlink('../typescript/bin/tsc', join(root, 'node_modules', '.bin', 'tsc'));
}

describe('packDir', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-pack-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the same digest for the same tree, whatever its times and location', async () => {
    const a = join(dir, 'a');
    await makeTree(a);
    const first = await packDir(a, join(dir, 'a1.tgz'));
    const again = await packDir(a, join(dir, 'a2.tgz'));
    assert.equal(again.digest, first.digest);
    const b = join(dir, 'b');
    await cp(a, b, { recursive: true, verbatimSymlinks: true });
    const later = new Date(Date.now() + 86_400_000);
    await utimes(join(b, 'server.js'), later, later);
    assert.equal((await packDir(b, join(dir, 'b.tgz'))).digest, first.digest);
    await writeFile(join(b, 'server.js'), 'console.log("changed")\n');
    assert.notEqual((await packDir(b, join(dir, 'b2.tgz'))).digest, first.digest);
  });

  it('does not pack its own output when it is written inside the tree', async () => {
    const t = join(dir, 'self');
    await makeTree(t);
    const outside = await packDir(t, join(dir, 'self-outside.tgz'));
    const inside = await packDir(t, join(t, 'artifact.tgz'));
    assert.equal(inside.digest, outside.digest);
  });

  it('reports the digest and size of the file it wrote', async () => {
    const t = join(dir, 'size');
    await makeTree(t);
    const out = join(dir, 'size.tgz');
    const r = await packDir(t, out);
    const bytes = await readFile(out);
    assert.equal(r.size, bytes.length);
    assert.equal(r.digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
    assert.equal(r.files, 3);
    assert.equal(r.links, 1);
    assert.deepEqual(r.warnings, []);
  });

  it('stores sorted relative paths without .git, owners or ./ prefixes', async () => {
    const t = join(dir, 'layout');
    await makeTree(t);
    const out = join(dir, 'layout.tgz');
    await packDir(t, out);
    const entries = await listTgz(out);
    const paths = entries.map((e) => e.path);
    assert.deepEqual(paths, [
      'empty/',
      'node_modules/',
      'node_modules/.bin/',
      'node_modules/typescript/',
      'node_modules/typescript/bin/',
      'node_modules/typescript/bin/tsc',
      'package.json',
      'server.js',
      '.pilot-links.json',
    ]);
    assert.ok(
      entries.every((e) => !e.uname && !e.uid),
      'no owner recorded',
    );
    assert.ok(!entries.some((e) => e.type === 'SymbolicLink' || e.type === 'Link'));
    assert.equal(entries.find((e) => e.path.endsWith('bin/tsc'))?.mode, 0o755);
    const tarV = execFileSync('tar', ['-tvzf', out], { encoding: 'utf8' });
    assert.doesNotMatch(tarV, /\.git/);
  });

  it('records in-tree symlinks in .pilot-links.json and skips the others with a warning', async () => {
    const t = join(dir, 'links');
    await makeTree(t);
    await symlink('/etc/passwd', join(t, 'abs-link'));
    await symlink('../../outside', join(t, 'node_modules', 'escape'));
    await symlink('../server.js', join(t, 'empty', 'to-server'));
    await link(join(t, 'server.js'), join(t, 'hard-server.js'));
    await writeFile(join(t, '.pilot-links.json'), '[{"path":"x","target":"/etc"}]');
    execFileSync('mkfifo', [join(t, 'pipe')]);
    const out = join(dir, 'links.tgz');
    const r = await packDir(t, out);
    assert.equal(r.links, 2);
    assert.equal(r.warnings.length, 4);
    assert.match(r.warnings.join('\n'), /abs-link.*absolute/);
    assert.match(r.warnings.join('\n'), /node_modules\/escape.*outside/);
    assert.match(r.warnings.join('\n'), /pipe: left out/);
    assert.match(r.warnings.join('\n'), /\.pilot-links\.json: left out/);
    const entries = await listTgz(out);
    const manifest = entries.filter((e) => e.path === '.pilot-links.json');
    assert.equal(manifest.length, 1, 'only the generated manifest');
    assert.deepEqual(JSON.parse(manifest[0]!.body), [
      { path: 'empty/to-server', target: '../server.js' },
      { path: 'node_modules/.bin/tsc', target: '../typescript/bin/tsc' },
    ]);
    const hard = entries.find((e) => e.path === 'hard-server.js');
    assert.equal(hard?.type, 'File', 'a hard link is stored as a second regular file');
    assert.equal(hard?.body, 'console.log("hi")\n');
  });
});

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  realpath,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPilotError, type ErrorCode } from '../core/errors.js';
import { checkoutWorkspace, resolveSource } from './source.js';

let scratch = '';
let n = 0;
before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'pilot-source-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** git as a test user, without reading or writing anyone's global identity or signing setup. */
function git(cwd: string, ...args: string[]): string {
  const id = [
    '-c',
    'user.name=Pilot Test',
    '-c',
    'user.email=test@pilot.invalid',
    '-c',
    'commit.gpgsign=false',
    '-c',
    'init.defaultBranch=main',
  ];
  return execFileSync('git', [...id, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A new repository holding `files` in one commit (none when `files` is undefined). */
async function repo(files?: Record<string, string>, name = `repo-${++n}`): Promise<string> {
  const dir = path.join(scratch, name);
  await mkdir(dir, { recursive: true });
  git(dir, 'init', '-q');
  if (files !== undefined) {
    await write(dir, files);
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', 'first');
  }
  return dir;
}

async function write(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), text);
  }
}

async function workspace(): Promise<string> {
  return path.join(scratch, `ws-${++n}`);
}

/** Every non-folder entry of a tree with its content (or `-> target` for a symlink). */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const rel of (await readdir(dir, { recursive: true })).sort()) {
    const p = path.join(dir, rel);
    const st = await lstat(p);
    if (st.isSymbolicLink()) out[rel] = `-> ${await readlink(p)}`;
    else if (st.isFile()) out[rel] = await readFile(p, 'utf8');
  }
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isPilotError(e), String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe('resolveSource', () => {
  it('resolves a clean work tree to its full commit, branch, message and author', async () => {
    const dir = await repo({ 'package.json': '{}', 'src/index.js': 'x' });
    const src = await resolveSource(dir, { allowDirty: false });
    assert.equal(src.commit, git(dir, 'rev-parse', 'HEAD').trim());
    assert.match(src.commit, /^[0-9a-f]{40}$/);
    assert.deepEqual(src, {
      root: await realpath(dir),
      subdir: '',
      commit: src.commit,
      dirty: false,
      branch: 'main',
      message: 'first',
      author: 'Pilot Test <test@pilot.invalid>',
    });
  });

  it('refuses a folder that does not exist, a file, and a folder outside any git work tree', async () => {
    const missing = path.join(scratch, 'no-such-folder');
    await rejectsWith(resolveSource(missing, { allowDirty: false }), 'not_a_git_repo', /folder .*no-such-folder does not exist/);
    const plain = path.join(scratch, `plain-${++n}`);
    await mkdir(plain);
    await writeFile(path.join(plain, 'file'), 'x');
    await rejectsWith(resolveSource(path.join(plain, 'file'), { allowDirty: false }), 'not_a_git_repo', /file is not a folder/);
    await rejectsWith(resolveSource(plain, { allowDirty: false }), 'not_a_git_repo', new RegExp(`${plain} is not inside a git work tree`));
  });

  it('refuses a repository without commits', async () => {
    const dir = await repo();
    await rejectsWith(resolveSource(dir, { allowDirty: false }), 'no_commits', /has no commits yet/);
  });

  it('refuses modified, staged and untracked files, naming them, and ignores ignored files', async () => {
    const dir = await repo({ 'a.txt': 'a', '.gitignore': 'node_modules/\n*.log\n' });
    await write(dir, { 'node_modules/x/index.js': 'x', 'debug.log': 'x' });
    assert.equal((await resolveSource(dir, { allowDirty: false })).dirty, false);

    await writeFile(path.join(dir, 'a.txt'), 'changed');
    await rejectsWith(resolveSource(dir, { allowDirty: false }), 'dirty_tree', /uncommitted changes in .*: a\.txt$/);
    git(dir, 'checkout', '--', 'a.txt');

    await writeFile(path.join(dir, 'staged.txt'), 's');
    git(dir, 'add', 'staged.txt');
    await rejectsWith(resolveSource(dir, { allowDirty: false }), 'dirty_tree', /: staged\.txt$/);
    git(dir, 'rm', '-q', '--cached', 'staged.txt');

    await rejectsWith(resolveSource(dir, { allowDirty: false }), 'dirty_tree', /: staged\.txt$/); // now untracked
    await unlink(path.join(dir, 'staged.txt'));
    git(dir, 'mv', 'a.txt', 'b.txt');
    await rejectsWith(resolveSource(dir, { allowDirty: false }), 'dirty_tree', /: b\.txt, a\.txt$/);
  });

  it('lists at most ten paths and says how many more there are', async () => {
    const dir = await repo({ 'a.txt': 'a' });
    await write(dir, Object.fromEntries(Array.from({ length: 13 }, (_, i) => [`new-${String(i).padStart(2, '0')}.txt`, 'x'])));
    await assert.rejects(resolveSource(dir, { allowDirty: false }), (e: unknown) => {
      assert.ok(isPilotError(e));
      assert.match(e.message, /new-00\.txt, .*new-09\.txt and 3 more$/);
      assert.doesNotMatch(e.message, /new-10/);
      return true;
    });
  });

  it('with allowDirty deploys the working tree: changes and untracked files, not ignored or deleted ones', async () => {
    const dir = await repo({ 'a.txt': 'a', 'gone.txt': 'g', '.gitignore': '*.log\n' });
    await write(dir, { 'a.txt': 'edited', 'new/b.txt': 'b', 'debug.log': 'secret' });
    await unlink(path.join(dir, 'gone.txt'));
    const src = await resolveSource(dir, { allowDirty: true });
    assert.equal(src.dirty, true);
    assert.equal(src.commit, git(dir, 'rev-parse', 'HEAD').trim());
    const ws = await workspace();
    assert.deepEqual(await checkoutWorkspace(src, ws), { files: 3 });
    assert.deepEqual(await tree(ws), { '.gitignore': '*.log\n', 'a.txt': 'edited', 'new/b.txt': 'b' });
  });

  it('handles an app in a subfolder: only its changes count, only its files are checked out', async () => {
    const dir = await repo({ 'apps/web/package.json': '{}', 'apps/web/lib/x.js': 'x', 'apps/api/index.js': 'api', 'README.md': 'r' });
    await write(dir, { 'apps/api/index.js': 'dirty elsewhere', 'other.txt': 'untracked elsewhere' });
    const src = await resolveSource(path.join(dir, 'apps', 'web'), { allowDirty: false });
    assert.equal(src.subdir, 'apps/web');
    assert.equal(src.root, await realpath(dir));
    assert.equal(src.dirty, false);
    const ws = await workspace();
    assert.deepEqual(await checkoutWorkspace(src, ws), { files: 2 });
    assert.deepEqual(await tree(ws), { 'lib/x.js': 'x', 'package.json': '{}' });

    await write(dir, { 'apps/web/lib/x.js': 'y', 'apps/web/new.js': 'n' });
    await rejectsWith(
      resolveSource(path.join(dir, 'apps/web'), { allowDirty: false }),
      'dirty_tree',
      /apps\/web\/lib\/x\.js, apps\/web\/new\.js$/,
    );
    const dirty = await resolveSource(path.join(dir, 'apps/web'), { allowDirty: true });
    const ws2 = await workspace();
    await checkoutWorkspace(dirty, ws2);
    assert.deepEqual(await tree(ws2), { 'lib/x.js': 'y', 'new.js': 'n', 'package.json': '{}' });
  });

  it('refuses a clean subfolder that holds nothing committed', async () => {
    const dir = await repo({ 'a.txt': 'a', '.gitignore': 'build/\n' });
    await write(dir, { 'build/out.js': 'x' });
    await rejectsWith(resolveSource(path.join(dir, 'build'), { allowDirty: false }), 'no_commits', /build has no committed files/);
  });

  it('reports no branch on a detached HEAD', async () => {
    const dir = await repo({ 'a.txt': 'a' });
    git(dir, 'checkout', '-q', '--detach');
    assert.equal((await resolveSource(dir, { allowDirty: false })).branch, undefined);
  });

  it('treats shell characters in folder, branch, message, author and file names as data', async () => {
    const marker = path.join(scratch, `marker-${++n}`);
    const evil = `$(touch ${marker}); \`touch ${marker}\` '"`;
    const dir = await repo(undefined, `repo ${evil.replaceAll('/', '_')}`);
    const files = {
      [`$(touch ${marker.replaceAll('/', '_')}).txt`]: 'a',
      'semi;colon & `tick`.txt': 'b',
      'quote\'"\nnewline.txt': 'c',
      'é ü.txt': 'd',
    };
    await write(dir, files);
    git(dir, 'add', '-A');
    const message = `deploy ${evil}\n\nbody line; rm -rf "$HOME"\n`;
    // git trims quotes and punctuation at the ends of a name, so the name ends with a plain word
    git(dir, '-c', `user.name=${evil} end`, 'commit', '-q', '-m', message);
    const branch = `feat/$(touch\${IFS}${marker});\`touch\${IFS}${marker}\`'"x`;
    git(dir, 'checkout', '-q', '-b', branch);

    const src = await resolveSource(dir, { allowDirty: false });
    assert.equal(src.branch, branch);
    assert.equal(src.message, message.trimEnd());
    assert.equal(src.author, `${evil} end <test@pilot.invalid>`);
    const ws = await workspace();
    await checkoutWorkspace(src, ws);
    assert.deepEqual(await tree(ws), files);

    await writeFile(path.join(dir, 'semi;colon & `tick`.txt'), 'changed');
    await write(dir, { 'new\nline $(x).txt': 'n' });
    await rejectsWith(
      resolveSource(dir, { allowDirty: false }),
      'dirty_tree',
      /: (semi;colon & `tick`\.txt, new\nline \$\(x\)\.txt|new\nline \$\(x\)\.txt, semi;colon & `tick`\.txt)$/,
    );
    const ws2 = await workspace();
    await checkoutWorkspace(await resolveSource(dir, { allowDirty: true }), ws2);
    assert.deepEqual(await tree(ws2), { ...files, 'semi;colon & `tick`.txt': 'changed', 'new\nline $(x).txt': 'n' });
    assert.equal(existsSync(marker), false, 'nothing was executed');
  });
});

describe('checkoutWorkspace', () => {
  it('gives exactly the files of an older commit', async () => {
    const dir = await repo({ 'a.txt': 'old a', 'b.txt': 'b' });
    const first = git(dir, 'rev-parse', 'HEAD').trim();
    await write(dir, { 'a.txt': 'new a', 'c.txt': 'c' });
    await unlink(path.join(dir, 'b.txt'));
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', 'second');
    const src = await resolveSource(dir, { allowDirty: false });
    assert.notEqual(src.commit, first);
    const ws = await workspace();
    assert.deepEqual(await checkoutWorkspace({ ...src, commit: first }, ws), { files: 2 });
    assert.deepEqual(await tree(ws), { 'a.txt': 'old a', 'b.txt': 'b' });
    assert.equal(existsSync(path.join(ws, '.git')), false);
  });

  it('keeps executable bits and symlinks, clean or dirty', async () => {
    const dir = await repo({ 'bin/start': '#!/bin/sh\n', 'target.txt': 't' });
    await chmod(path.join(dir, 'bin/start'), 0o755);
    await symlink('target.txt', path.join(dir, 'link'));
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', 'modes');
    for (const dirty of [false, true]) {
      if (dirty) await write(dir, { 'untracked.txt': 'u' });
      const ws = await workspace();
      await checkoutWorkspace(await resolveSource(dir, { allowDirty: dirty }), ws);
      assert.equal((await stat(path.join(ws, 'bin/start'))).mode & 0o111, 0o111, `executable (dirty=${dirty})`);
      assert.equal(await readlink(path.join(ws, 'link')), 'target.txt');
    }
  });

  it('refuses a workspace that is not empty', async () => {
    const dir = await repo({ 'a.txt': 'a' });
    const ws = await workspace();
    await write(ws, { 'left-over': 'x' });
    await rejectsWith(checkoutWorkspace(await resolveSource(dir, { allowDirty: false }), ws), 'internal', /is not empty/);
  });
});

import { describe, it, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isPilotError, type ErrorCode } from '../core/errors.js';
import { sanitizeLine } from '../core/mask.js';
import { cacheDirFor, checkoutCommit, fetchCommit } from './git-cache.js';

let scratch = '';
let marker = ''; // a hostile input that ran would create this file
let n = 0;
before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'pilot-git-cache-'));
  marker = path.join(scratch, 'pwned');
});
after(() => rm(scratch, { recursive: true, force: true }));

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
  return execFileSync('git', [...id, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

/** A bare "server" repository and a work clone that commits and pushes to it. */
interface Upstream {
  readonly bare: string;
  /** Commit `files` (null deletes) on `branch` and push it; returns the full SHA. */
  commit(files: Record<string, string | Buffer | null>, message?: string, branch?: string): Promise<string>;
}

async function upstream(): Promise<Upstream> {
  const dir = path.join(scratch, `up-${++n}`);
  const bare = path.join(dir, 'src.git');
  const work = path.join(dir, 'work');
  await mkdir(work, { recursive: true });
  git(dir, 'init', '-q', '--bare', bare);
  git(work, 'init', '-q');
  git(work, 'remote', 'add', 'origin', bare);
  const branches = new Set<string>(); // the first commit is on main; new branches start from main
  return {
    bare,
    async commit(files, message = 'change', branch = 'main') {
      // Plumbing rather than `git checkout`, which would read a branch named "--upload-pack=…" as an option.
      if (branches.size > 0 && !branches.has(branch)) git(work, 'update-ref', `refs/heads/${branch}`, 'refs/heads/main');
      git(work, 'symbolic-ref', 'HEAD', `refs/heads/${branch}`);
      if (branches.size > 0) git(work, 'reset', '-q', '--hard');
      branches.add(branch);
      for (const [rel, content] of Object.entries(files)) {
        if (content === null) await rm(path.join(work, rel));
        else await mkdir(path.dirname(path.join(work, rel)), { recursive: true }).then(() => writeFile(path.join(work, rel), content));
      }
      const msgFile = path.join(dir, 'msg'); // -F: a 1 MB message does not fit in one argument
      await writeFile(msgFile, message);
      git(work, 'add', '-A');
      git(work, 'commit', '-q', '--allow-empty', '--cleanup=verbatim', '-F', msgFile);
      git(work, 'push', '-q', '-f', 'origin', `HEAD:refs/heads/${branch}`);
      return git(work, 'rev-parse', 'HEAD').trim();
    },
  };
}

const cacheRoot = (): string => path.join(scratch, `cache-${++n}`);
const workspace = (): string => path.join(scratch, `ws-${++n}`);

/** Every file of a tree with its content. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const rel of (await readdir(dir, { recursive: true })).sort()) {
    if ((await lstat(path.join(dir, rel))).isFile()) out[rel] = await readFile(path.join(dir, rel), 'utf8');
  }
  return out;
}

/** Objects in a repository, loose and packed (a pack fetched twice would count its objects twice). */
function objectCount(gitDir: string): number {
  const out = git(gitDir, 'count-objects', '-v');
  return ['count', 'in-pack'].reduce((sum, k) => sum + Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(out)?.[1]), 0);
}

/** Make git speak protocol v0 (through the user's git config) for the rest of test `t`: upload-pack then serves only advertised tips. */
async function useProtocolV0(t: TestContext): Promise<void> {
  const home = path.join(scratch, `home-${++n}`);
  await mkdir(home).then(() => writeFile(path.join(home, '.gitconfig'), '[protocol]\n\tversion = 0\n'));
  const saved = { HOME: process.env['HOME'], XDG_CONFIG_HOME: process.env['XDG_CONFIG_HOME'] };
  process.env['HOME'] = home;
  delete process.env['XDG_CONFIG_HOME'];
  t.after(() => {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  });
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<Error> {
  const e = await p.then(
    () => 'resolved',
    (err: unknown) => err,
  );
  assert.ok(isPilotError(e), `expected a PilotError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  assert.match(e.message, message);
  return e;
}

describe('fetchCommit', () => {
  it('fetches one commit into a new cache, then only the objects a later commit adds, then nothing', async () => {
    const up = await upstream();
    const c1 = await up.commit({ 'big.bin': randomBytes(1 << 20), 'a.txt': 'one' });
    const c2 = await up.commit({ 'a.txt': 'two' });
    const root = cacheRoot();

    const first = await fetchCommit({ repo: up.bare, commit: c1, cacheRoot: root });
    assert.equal(first.gitDir, cacheDirFor(root, up.bare));
    assert.ok((first.fetchedBytes ?? 0) >= 1 << 20, `first fetch stored ${first.fetchedBytes} bytes`);
    const afterFirst = objectCount(first.gitDir);
    assert.equal(afterFirst, 4); // commit, tree, two blobs: shallow, no history

    const second = await fetchCommit({ repo: up.bare, commit: c2, cacheRoot: root });
    assert.equal(second.gitDir, first.gitDir);
    assert.ok((second.fetchedBytes ?? Infinity) < 64 * 1024, `second fetch stored ${second.fetchedBytes} bytes`);
    assert.equal(objectCount(second.gitDir), afterFirst + 3); // new commit, tree and a.txt; big.bin not again

    await rm(up.bare, { recursive: true }); // a retried run needs no server: the cache has the commit
    const again = await fetchCommit({ repo: up.bare, commit: c2, cacheRoot: root });
    assert.equal(again.fetchedBytes, 0);
    const ws = workspace();
    await checkoutCommit(again.gitDir, c2, ws);
    assert.equal((await tree(ws))['a.txt'], 'two');
  });

  it('accepts file:// URLs and absolute paths, and both spellings share one cache', async () => {
    const up = await upstream();
    const c1 = await up.commit({ 'a.txt': 'one' });
    const root = cacheRoot();
    const viaUrl = await fetchCommit({ repo: pathToFileURL(up.bare).href, commit: c1, cacheRoot: root });
    const viaPath = await fetchCommit({ repo: up.bare, commit: c1.toUpperCase(), cacheRoot: root });
    assert.equal(viaPath.gitDir, viaUrl.gitDir);
    assert.equal(viaPath.fetchedBytes, 0);
    assert.deepEqual(await readdir(root), [path.basename(viaUrl.gitDir)]);
  });

  it('fails clearly for a commit the repository does not have, when cancelled and on timeout', async () => {
    const up = await upstream();
    const c1 = await up.commit({ 'a.txt': 'one' });
    const missing = 'ab'.repeat(20);
    const empty = path.join(scratch, `empty-${++n}.git`);
    git(scratch, 'init', '-q', '--bare', empty);
    await rejectsWith(
      fetchCommit({ repo: empty, commit: missing, cacheRoot: cacheRoot() }),
      'not_found',
      new RegExp(`commit ${missing} was not found in ${empty}`),
    );
    await rejectsWith(
      fetchCommit({ repo: up.bare, commit: missing, cacheRoot: cacheRoot() }),
      'not_found',
      new RegExp(`commit ${missing} was not found in ${up.bare}`),
    );
    await rejectsWith(
      fetchCommit({ repo: up.bare, commit: c1, cacheRoot: cacheRoot(), signal: AbortSignal.abort() }),
      'cancelled',
      /cancelled/,
    );
    await rejectsWith(
      fetchCommit({ repo: up.bare, commit: c1, cacheRoot: cacheRoot(), timeoutMs: 1 }),
      'step_timeout',
      new RegExp(`fetching ${c1.slice(0, 12)} from ${up.bare} timed out`),
    );
  });

  it('reports an unreachable server without the credentials in its URL', async () => {
    const repo = 'https://sekret-token-1234@127.0.0.1:1/acme/shop.git';
    const lines: string[] = [];
    const fetching = fetchCommit({ repo, commit: 'cd'.repeat(20), cacheRoot: cacheRoot(), onLine: (l) => lines.push(l) });
    const e = await rejectsWith(fetching, 'unavailable', /cannot fetch from https:\/\/127\.0\.0\.1:1\/acme\/shop\.git/);
    assert.doesNotMatch(`${e.message} ${lines.join('\n')}`, /sekret-token-1234/);
  });

  it('falls back to the branch heads when the server refuses commits it did not advertise', async (t) => {
    const up = await upstream();
    const c1 = await up.commit({ 'a.txt': 'one' });
    const c2 = await up.commit({ 'a.txt': 'two' });
    await up.commit({ 'a.txt': 'three' });
    await useProtocolV0(t);

    const root = cacheRoot();
    const lines: string[] = [];
    const { gitDir } = await fetchCommit({ repo: up.bare, commit: c2, cacheRoot: root, onLine: (l) => lines.push(l) });
    assert.ok(
      lines.some((l) => /not served directly.*fetching the branch heads/.test(l)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /not a branch tip; fetching the branches' history/.test(l)),
      lines.join('\n'),
    );
    const ws = workspace();
    await checkoutCommit(gitDir, c2, ws);
    assert.deepEqual(await tree(ws), { 'a.txt': 'two' });
    await checkoutCommit(gitDir, c1, workspace()); // the history came with it
    await rejectsWith(fetchCommit({ repo: up.bare, commit: 'ef'.repeat(20), cacheRoot: root }), 'not_found', /efefefef/);
  });

  it('serialises concurrent fetches into one cache', async () => {
    const up = await upstream();
    const shas = [await up.commit({ 'a.txt': '1' }), await up.commit({ 'a.txt': '2' }), await up.commit({ 'a.txt': '3' })];
    const root = cacheRoot();
    const results = await Promise.all([...shas, ...shas].map((commit) => fetchCommit({ repo: up.bare, commit, cacheRoot: root })));
    assert.equal(new Set(results.map((r) => r.gitDir)).size, 1);
    // One at a time: whichever of two fetches of the same commit came second found it cached.
    for (let i = 0; i < shas.length; i++) {
      const pair = [results[i]!.fetchedBytes, results[i + shas.length]!.fetchedBytes];
      assert.equal(pair.filter((b) => b === 0).length, 1, `fetched bytes of one commit twice: ${pair.join(', ')}`);
    }
    const trees = await Promise.all(
      shas.map(async (sha) => {
        const ws = workspace();
        return checkoutCommit(results[0]!.gitDir, sha, ws).then(() => tree(ws));
      }),
    );
    assert.deepEqual(trees, [{ 'a.txt': '1' }, { 'a.txt': '2' }, { 'a.txt': '3' }]);
  });
});

describe('checkoutCommit', () => {
  it('lays out exactly the tree of the commit asked for, an older one too, with its message and author', async () => {
    const up = await upstream();
    const c1 = await up.commit({ 'a.txt': 'one', 'gone.txt': 'bye', 'app/index.js': 'v1' }, 'first\n\nbody text');
    const c2 = await up.commit({ 'a.txt': 'two', 'gone.txt': null, 'app/new.js': 'n' }, 'second');
    const root = cacheRoot();
    const { gitDir } = await fetchCommit({ repo: up.bare, commit: c2, cacheRoot: root });
    await fetchCommit({ repo: up.bare, commit: c1, cacheRoot: root });

    const ws2 = workspace();
    assert.deepEqual(await checkoutCommit(gitDir, c2, ws2), { files: 3, message: 'second', author: 'Pilot Test <test@pilot.invalid>' });
    assert.deepEqual(await tree(ws2), { 'a.txt': 'two', 'app/index.js': 'v1', 'app/new.js': 'n' });
    const ws1 = workspace();
    assert.deepEqual(await checkoutCommit(gitDir, c1, ws1), { files: 3, message: 'first', author: 'Pilot Test <test@pilot.invalid>' });
    assert.deepEqual(await tree(ws1), { 'a.txt': 'one', 'app/index.js': 'v1', 'gone.txt': 'bye' });
    assert.ok(!existsSync(path.join(ws1, '.git')));

    const sub = workspace(); // an app in a subfolder: its files land at the workspace root
    assert.equal((await checkoutCommit(gitDir, c2, sub, { subdir: 'app' })).files, 2);
    assert.deepEqual(await tree(sub), { 'index.js': 'v1', 'new.js': 'n' });
  });

  it('refuses a commit not in the cache, a missing or unsafe subdir, and a workspace that is not empty', async () => {
    const up = await upstream();
    const c1 = await up.commit({ 'a.txt': 'one' });
    const { gitDir } = await fetchCommit({ repo: up.bare, commit: c1, cacheRoot: cacheRoot() });
    await rejectsWith(checkoutCommit(gitDir, '12'.repeat(20), workspace()), 'not_found', /1212121212.* is not in the cache/);
    await rejectsWith(checkoutCommit(gitDir, c1, workspace(), { subdir: 'nope' }), 'not_found', /"nope" is not a folder/);
    await rejectsWith(checkoutCommit(gitDir, c1, workspace(), { subdir: 'a.txt' }), 'not_found', /"a.txt" is not a folder/);
    for (const subdir of ['../x', '/etc', 'a/../b', 'a\nb'])
      await rejectsWith(checkoutCommit(gitDir, c1, workspace(), { subdir }), 'bad_request', /subdir/);
    await rejectsWith(checkoutCommit(gitDir, '--output=/tmp/x', workspace()), 'bad_request', /full 40-character/);
    const full = workspace();
    await mkdir(full).then(() => writeFile(path.join(full, 'x'), ''));
    await rejectsWith(checkoutCommit(gitDir, c1, full), 'internal', /not empty/);
  });

  it('returns a 1 MB commit message with terminal escapes as data', async () => {
    const up = await upstream();
    const line = `\x1b[31mred\x1b[0m \x1b]0;title\x07${'A'.repeat(1 << 20)}`;
    const c1 = await up.commit({ 'a.txt': 'one' }, `${line}\n\nmore`);
    const { gitDir } = await fetchCommit({ repo: up.bare, commit: c1, cacheRoot: cacheRoot() });
    const r = await checkoutCommit(gitDir, c1, workspace());
    assert.equal(r.message, line);
    assert.doesNotMatch(sanitizeLine(r.message, 200), /\x1b|\x07/); // what the caller shows
  });
});

describe('hostile input', () => {
  it('refuses repository URLs that git could run or read as an option, before any git call', async () => {
    const root = cacheRoot();
    const up = await upstream();
    const sha = await up.commit({ 'a.txt': 'one' });
    const ifs = '${IFS}';
    const repos = [
      `ext::sh -c touch% ${marker}`,
      `ext::sh${ifs}-c${ifs}touch${ifs}${marker}`,
      `-oProxyCommand=touch ${marker}`,
      `--upload-pack=touch ${marker}`,
      `ssh://-oProxyCommand=touch${ifs}${marker}/x`,
      'http://127.0.0.1:1/plain-http.git',
      `${scratch}/../etc`,
      'relative/path',
      'https://user:hunter22@127.0.0.1:1/x.git',
    ];
    for (const repo of repos) {
      const e = await rejectsWith(fetchCommit({ repo, commit: sha, cacheRoot: root }), 'bad_request', /refused/);
      assert.doesNotMatch(e.message, /hunter22/);
    }
    for (const commit of [
      `--upload-pack=touch ${marker}`,
      `-${'a'.repeat(39)}`,
      'main',
      'HEAD',
      'a'.repeat(39),
      'a'.repeat(41),
      `${sha}\n`,
    ]) {
      await rejectsWith(fetchCommit({ repo: up.bare, commit, cacheRoot: root }), 'bad_request', /full 40-character/);
    }
    assert.ok(!existsSync(root), 'no cache repository was even created');
    assert.ok(!existsSync(marker));
  });

  it('treats branch names as data, on the direct path and through the branch-heads fallback', async (t) => {
    const up = await upstream();
    await up.commit({ 'a.txt': 'main' });
    const branches = [`$(touch${'${IFS}'}${marker})`, 'zzz";echo${IFS}hi;#', `--upload-pack=touch${'${IFS}'}${marker}`];
    const shas: string[] = [];
    for (const b of branches) {
      shas.push(await up.commit({ 'a.txt': b }, `on ${b}`, b));
      await up.commit({ 'b.txt': 'tip' }, 'tip', b); // the first commit is no longer a tip
    }
    const root = cacheRoot();
    for (const [i, commit] of shas.entries()) {
      const { gitDir } = await fetchCommit({ repo: up.bare, commit, cacheRoot: root });
      const ws = workspace();
      assert.equal((await checkoutCommit(gitDir, commit, ws)).message, `on ${branches[i]}`);
      assert.deepEqual(await tree(ws), { 'a.txt': branches[i] });
    }
    // Protocol v0 makes the fetch go through the branch heads, where these names become ref names.
    await useProtocolV0(t);
    const root0 = cacheRoot();
    for (const commit of shas) {
      const lines: string[] = [];
      const { gitDir } = await fetchCommit({ repo: up.bare, commit, cacheRoot: root0, onLine: (l) => lines.push(l) });
      assert.ok(
        lines.some((l) => /fetching the branch heads/.test(l)),
        lines.join('\n'),
      );
      await checkoutCommit(gitDir, commit, workspace());
    }
    assert.ok(
      git(cacheDirFor(root0, up.bare), 'for-each-ref', '--format=%(refname)', 'refs/pilot/heads/').includes(
        'refs/pilot/heads/zzz";echo${IFS}hi;#',
      ),
    );
    assert.ok(!existsSync(marker));
  });
});

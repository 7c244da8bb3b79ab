/**
 * Source checkout for the CD server: the app's configured repository at a pushed commit. One bare
 * cache repository per repository URL keeps what earlier runs fetched, so a run downloads only the
 * objects the cache lacks. Every git call is argv through the executor; URLs and SHAs are checked
 * before git sees them, and they come after `--`.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatDuration } from '../core/duration.js';
import { isPilotError, fail, restate } from '../core/errors.js';
import { secretMasker } from '../core/mask.js';
import { normalizeRepo, repoUrlProblem } from '../core/repo-url.js';
import { runCommand, type RunResult } from '../os/exec.js';
import { git, gitArgv, ok, remoteGitEnv } from './git.js';
import { checkoutWorkspace } from './source.js';

export interface FetchCommitOptions {
  readonly repo: string;
  /** Full 40-hex SHA: the only form accepted, so nothing that looks like an option reaches git. */
  readonly commit: string;
  readonly cacheRoot: string;
  readonly signal?: AbortSignal;
  /** git's own progress lines, credentials removed (still untrusted text: sanitise before showing). */
  readonly onLine?: (line: string) => void;
  /** For the whole fetch, every attempt included (default 10 minutes). */
  readonly timeoutMs?: number;
}

export interface FetchCommitResult {
  readonly gitDir: string;
  /** How much the cache's object store grew (0 when the commit was already cached). */
  readonly fetchedBytes?: number;
}

export interface CheckedOutCommit {
  readonly files: number;
  /** First line of the commit message, as committed: untrusted data, sanitise before showing. */
  readonly message: string;
  /** `Name <email>` of the commit's author, as committed. */
  readonly author: string;
}

const FETCH_TIMEOUT_MS = 10 * 60_000;
const FULL_SHA = /^[0-9a-fA-F]{40}$/;
const HEADS = '+refs/heads/*:refs/pilot/heads/*';
/**
 * Settings that would change what Pilot does are pinned here. The rest of the user's and the
 * system's git config still applies on purpose: credential helpers, proxies, core.sshCommand and
 * url.*.insteadOf are how an operator gives the server access to private repositories.
 * No hooks (a global core.hooksPath would run on our ref updates); gc inline, not detached, so every
 * git process stays in the executor's process group and a timeout or cancel really stops it.
 */
const PINNED: readonly string[] = [
  '-c',
  'protocol.ext.allow=never',
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'gc.autoDetach=false',
  '-c',
  'maintenance.autoDetach=false',
  '-c',
  'fetch.recurseSubmodules=false',
];
/** One fetch at a time per cache repository in this process (git's own locks cover other processes). */
const locks = new Map<string, Promise<void>>();

/** The cache repository of `repo` under cacheRoot, named by the sha256 of its normalised URL so spellings of one repository share it. */
export function cacheDirFor(cacheRoot: string, repo: string): string {
  return path.join(path.resolve(cacheRoot), `${createHash('sha256').update(normalizeRepo(repo)).digest('hex')}.git`);
}

/** `repo` for messages and logs: the user name and password of a URL removed. */
export function displayRepo(repo: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(repo)) return repo;
  try {
    const u = new URL(repo);
    if (u.username === '' && u.password === '') return repo;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return repo;
  }
}

/** Make `commit` of `repo` complete in the repository's cache, fetching only what the cache lacks; refuses unsafe URLs and anything but a full SHA. */
export async function fetchCommit(opts: FetchCommitOptions): Promise<FetchCommitResult> {
  const problem = repoUrlProblem(opts.repo);
  if (problem !== undefined) {
    throw fail.repositoryUrlRefused({ repo: displayRepo(opts.repo).slice(0, 200), problem });
  }
  const sha = fullSha(opts.commit);
  const gitDir = cacheDirFor(opts.cacheRoot, opts.repo);
  const shown = displayRepo(opts.repo);
  const redact = credentialRedactor(opts.repo);
  const timeoutMs = opts.timeoutMs ?? FETCH_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  const say = (line: string): void => opts.onLine?.(line);
  const sig = opts.signal === undefined ? {} : { signal: opts.signal };

  const fetch = async (options: readonly string[], refspec: string): Promise<RunResult> => {
    const argv = gitArgv(gitDir, [...PINNED, 'fetch', '--no-tags', '--no-write-fetch-head', ...options, '--', opts.repo, refspec]);
    try {
      return await runCommand(argv, {
        cwd: gitDir,
        env: remoteGitEnv(process.env),
        timeoutMs: Math.max(1, deadline - performance.now()),
        maxOutputTail: 10,
        onLine: (_stream, line) => say(redact(line)),
        ...sig,
      });
    } catch (e) {
      // The executor's messages quote the argv, URL and all: say it again without credentials.
      if (!isPilotError(e)) throw e;
      const what = `fetching ${sha.slice(0, 12)} from ${shown}`;
      if (e.code === 'step_timeout') throw fail.timedOutAfter({ what, timeoutMs: formatDuration(timeoutMs) });
      if (e.code === 'cancelled') throw fail.cancelled({ what });
      throw restate(e, { message: redact(e.message), hint: undefined });
    }
  };
  const mustFetch = async (options: readonly string[], refspec: string): Promise<void> => {
    const r = await fetch(options, refspec);
    if (r.code !== 0) {
      throw fail.cannotFetch({ shown, tail: redact(r.tail.join(' ').trim()) || `git exited with code ${String(r.code)}` });
    }
  };

  return withLock(gitDir, opts.signal, async () => {
    await ensureCacheRepo(opts.cacheRoot, gitDir, shown);
    // The pin ref is written only after git has checked the commit's objects are all there.
    if (await isCommit(gitDir, pinRef(sha))) return { gitDir, fetchedBytes: 0 };
    const before = await storeBytes(gitDir);
    const direct = await fetch(['--depth=1'], `${sha}:${pinRef(sha)}`);
    if (direct.code === 0 && !(await isCommit(gitDir, sha))) {
      await git(gitDir, [...PINNED, 'update-ref', '-d', pinRef(sha)]);
      throw fail.notCommit({ sha, shown });
    }
    if (direct.code !== 0) {
      // Servers speaking protocol v0 refuse a SHA that is not a branch tip; a v2 server answers
      // "not our ref" for a SHA it does not have. Either way the branches tell.
      say(`${sha.slice(0, 12)} was not served directly (${redact(direct.tail.join(' ').trim())}); fetching the branch heads`);
      // A shallow fetch of the heads fails (silently) when there are none: the full fetch then says which.
      const heads = await fetch(['--depth=1'], HEADS);
      if (heads.code !== 0 || !(await isComplete(gitDir, sha))) {
        say(
          heads.code === 0
            ? `${sha.slice(0, 12)} is not a branch tip; fetching the branches' history`
            : "fetching the branches' full history",
        );
        await mustFetch((await isShallow(gitDir)) ? ['--unshallow'] : [], HEADS);
      }
      if (!(await isComplete(gitDir, sha))) {
        throw fail.commitNotFound({ sha, shown });
      }
      ok(await git(gitDir, [...PINNED, 'update-ref', pinRef(sha), sha]), 'update-ref');
    }
    return { gitDir, fetchedBytes: Math.max(0, (await storeBytes(gitDir)) - before) };
  });
}

/** Fill an empty workspace with exactly the committed tree of `commit` (or its `subdir`) from a cache repository; returns the commit's first message line and author as data. */
export async function checkoutCommit(
  gitDir: string,
  commit: string,
  workspaceDir: string,
  opts: { subdir?: string; signal?: AbortSignal } = {},
): Promise<CheckedOutCommit> {
  const sha = fullSha(commit);
  const subdir = cleanSubdir(opts.subdir ?? '');
  const sig = opts.signal === undefined ? {} : { signal: opts.signal };
  // No lock: objects in the cache never change, and a fetch running meanwhile only adds to it.
  if (!(await isCommit(gitDir, sha))) {
    throw fail.commitNotCache({ sha, gitDir });
  }
  if (subdir !== '') {
    const kind = await git(gitDir, ['cat-file', '-t', `${sha}:${subdir}`], sig);
    if (kind.code !== 0 || kind.stdout.toString('utf8').trim() !== 'tree') {
      throw fail.notFolderCommit({ subdir, sha: sha.slice(0, 12) });
    }
  }
  const meta = ok(await git(gitDir, ['show', '-s', '--no-color', '--format=%an%x00%ae%x00%B', sha, '--'], sig), 'show').stdout.toString(
    'utf8',
  );
  const [name = '', email = '', ...rest] = meta.split('\0');
  const message = rest.join('\0').split('\n')[0] ?? '';
  const author = `${name} <${email}>`;
  const { files } = await checkoutWorkspace(
    { root: gitDir, subdir, commit: sha, dirty: false, branch: undefined, message, author },
    workspaceDir,
    sig,
  );
  return { files, message, author };
}

function fullSha(commit: string): string {
  if (typeof commit !== 'string' || !FULL_SHA.test(commit)) {
    throw fail.commitRefused({ commit: String(commit).slice(0, 80) });
  }
  return commit.toLowerCase();
}

function cleanSubdir(subdir: string): string {
  const s = subdir.replace(/\/+$/, '');
  if (s !== '' && (s.startsWith('/') || /[\u0000-\u001f\u007f]/.test(s) || s.split('/').some((p) => p === '' || p === '.' || p === '..'))) {
    throw fail.subdirRefused({ subdir: subdir.slice(0, 200) });
  }
  return s;
}

const pinRef = (sha: string): string => `refs/pilot/commits/${sha}`;

/** Replaces the URL by its shown form, and the user name / password of an https URL by `***`. */
function credentialRedactor(repo: string): (text: string) => string {
  const shown = displayRepo(repo);
  const secrets: string[] = [];
  if (/^https:\/\//i.test(repo)) {
    try {
      const u = new URL(repo);
      for (const v of [u.username, u.password]) if (v !== '') secrets.push(v, decodeURIComponent(v));
    } catch {
      // not a URL: nothing to hide
    }
  }
  const mask = secretMasker(secrets);
  return (text) => mask(shown === repo ? text : text.split(repo).join(shown));
}

async function withLock<T>(key: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  let release = (): void => undefined;
  const mine = new Promise<void>((r) => (release = r));
  const tail = prev.then(() => mine);
  locks.set(key, tail);
  try {
    await prev;
    if (signal?.aborted) throw fail.fetchCancelled();
    return await fn();
  } finally {
    release();
    if (locks.get(key) === tail) locks.delete(key);
  }
}

/** `git init --bare` once, in a temporary folder renamed into place, so a crash never leaves half a repository. */
async function ensureCacheRepo(cacheRoot: string, gitDir: string, shown: string): Promise<void> {
  if (
    await stat(path.join(gitDir, 'HEAD')).then(
      () => true,
      () => false,
    )
  )
    return;
  await mkdir(path.resolve(cacheRoot), { recursive: true });
  const tmp = await mkdtemp(`${gitDir}.init-`);
  try {
    // --template= : no hooks or other files from the user's init.templateDir.
    ok(await git(tmp, ['-c', 'init.defaultBranch=main', 'init', '--bare', '--quiet', '--template=', '.']), 'init');
    await writeFile(path.join(tmp, 'description'), `Pilot's cache of ${shown}\n`);
    await rename(tmp, gitDir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e; // another process made it first
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function isCommit(gitDir: string, rev: string): Promise<boolean> {
  return (await git(gitDir, ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`])).code === 0;
}

/** The commit and every object of its tree are present (a half-finished fetch can leave a commit without its tree). */
async function isComplete(gitDir: string, sha: string): Promise<boolean> {
  return (await git(gitDir, ['rev-list', '--objects', '--no-walk', '--quiet', `${sha}^{commit}`])).code === 0;
}

async function isShallow(gitDir: string): Promise<boolean> {
  return (
    ok(await git(gitDir, ['rev-parse', '--is-shallow-repository']), 'rev-parse')
      .stdout.toString('utf8')
      .trim() === 'true'
  );
}

/** Bytes in the object store, loose and packed, from `git count-objects -v` (KiB figures). */
async function storeBytes(gitDir: string): Promise<number> {
  const out = ok(await git(gitDir, ['count-objects', '-v']), 'count-objects').stdout.toString('utf8');
  const kib = (key: string): number => Number(new RegExp(`^${key}: (\\d+)$`, 'm').exec(out)?.[1] ?? 0);
  return (kib('size') + kib('size-pack')) * 1024;
}

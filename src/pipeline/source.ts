/**
 * The source step: find the commit to deploy (always a full SHA) and lay its files out in a clean
 * workspace. All git access is argv through the executor; git's output is parsed from `-z` form.
 */
import { copyFile, lstat, mkdir, readdir, readlink, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { isPilotError, fail } from '../core/errors.js';
import { mustSucceed, runCommand } from '../os/exec.js';
import { git, gitArgv, gitEnv, ok, splitNul } from './git.js';

export interface Source {
  /** The work tree's top level, as git reports it (symlinks resolved). */
  readonly root: string;
  /** The app's folder relative to `root`, posix separators; '' at the root. */
  readonly subdir: string;
  readonly commit: string;
  /** The working tree, not the commit, is deployed (only with allowDirty). */
  readonly dirty: boolean;
  /** undefined on a detached HEAD. */
  readonly branch: string | undefined;
  readonly message: string;
  /** `Name <email>` of the commit's author. */
  readonly author: string;
}

const MAX_LISTED = 10;
const ARCHIVE_TIMEOUT_MS = 15 * 60_000;
const COPY_CONCURRENCY = 16;

/** Resolve a folder in a git work tree to the commit to deploy; refuses uncommitted changes under it unless allowDirty. */
export async function resolveSource(dir: string, opts: { allowDirty: boolean; signal?: AbortSignal }): Promise<Source> {
  const abs = path.resolve(dir);
  const kind = await stat(abs).then(
    (s) => (s.isDirectory() ? 'dir' : 'other'),
    () => 'missing',
  );
  if (kind === 'missing') throw fail.folderMissing({ abs });
  if (kind === 'other') throw fail.notFolder({ abs });
  const sig = opts.signal === undefined ? {} : { signal: opts.signal };

  const top = await git(abs, ['rev-parse', '--show-toplevel', '--show-prefix'], sig);
  if (top.code !== 0) {
    // Usually "not a git repository"; git's own words also cover "dubious ownership" and the like.
    throw fail.notAGitWorkTree({ abs, tail: top.tail.join(' ').trim() });
  }
  const [root = '', prefix = ''] = top.stdout.toString('utf8').split('\n');
  const subdir = prefix.replace(/\/$/, '');

  const head = await git(abs, ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], sig);
  if (head.code !== 0) throw fail.noCommits({ root });
  const commit = head.stdout.toString('utf8').trim();

  const [meta, branch, status] = await Promise.all([
    git(abs, ['show', '-s', '--no-color', '--format=%an%x00%ae%x00%B', commit, '--'], sig),
    git(abs, ['symbolic-ref', '--quiet', '--short', 'HEAD'], sig),
    git(abs, ['status', '--porcelain=v1', '-z', '--untracked-files=normal', '--', '.'], sig),
  ]);
  const [name = '', email = '', body = ''] = splitNul(ok(meta, 'show').stdout.toString('utf8'));
  const changed = statusPaths(ok(status, 'status').stdout.toString('utf8'));

  if (changed.length > 0 && !opts.allowDirty) {
    const listed = changed.slice(0, MAX_LISTED).join(', ');
    const more = changed.length > MAX_LISTED ? ` and ${changed.length - MAX_LISTED} more` : '';
    throw fail.uncommittedChanges({ abs, listed, more }, { details: { paths: changed.slice(0, 100) } });
  }
  if (changed.length === 0 && subdir !== '') {
    // A clean folder git does not track (empty, or only ignored files) has no tree to deploy.
    const kindOf = await git(abs, ['cat-file', '-t', `${commit}:${subdir}`], sig);
    if (kindOf.code !== 0 || kindOf.stdout.toString('utf8').trim() !== 'tree') {
      throw fail.subdirEmpty({ subdir, commit: commit.slice(0, 12) });
    }
  }
  return {
    root,
    subdir,
    commit,
    dirty: changed.length > 0,
    branch: branch.code === 0 ? branch.stdout.toString('utf8').trim() : undefined,
    message: body.replace(/\n+$/, ''),
    author: `${name} <${email}>`,
  };
}

/** Fill an empty workspace with the app's files: the committed tree, or (dirty) the working tree's tracked and unignored files. */
export async function checkoutWorkspace(
  src: Source,
  workspaceDir: string,
  opts: { signal?: AbortSignal } = {},
): Promise<{ files: number }> {
  await mkdir(workspaceDir, { recursive: true });
  if ((await readdir(workspaceDir)).length > 0) throw fail.workspaceNotEmpty({ workspaceDir });
  return src.dirty ? copyWorkingTree(src, workspaceDir, opts) : extractCommit(src, workspaceDir, opts);
}

async function extractCommit(src: Source, ws: string, opts: { signal?: AbortSignal }): Promise<{ files: number }> {
  let files = 0;
  const extractor = tar.x({
    cwd: ws,
    strict: true, // any entry node-tar would skip is an error: the workspace must be the whole tree
    preserveOwner: false, // when Pilot runs as root, files belong to root rather than to git's uid 0 header by accident
    onReadEntry: (entry) => {
      if (entry.type !== 'Directory') files++;
    },
  });
  const extracted = new Promise<void>((resolve, reject) => {
    extractor.on('finish', () => resolve());
    extractor.on('error', reject);
  });
  extracted.catch(() => undefined); // awaited below, after git's own exit status
  // `<commit>:<subdir>` is the subfolder's tree, so its files land at the workspace root.
  const argv = gitArgv(src.root, ['archive', '--format=tar', src.subdir === '' ? src.commit : `${src.commit}:${src.subdir}`]);
  try {
    const result = await runCommand(argv, {
      cwd: src.root,
      env: gitEnv(process.env),
      timeoutMs: ARCHIVE_TIMEOUT_MS,
      stdout: extractor,
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
    mustSucceed(result, argv);
    await extracted;
  } catch (e) {
    if (isPilotError(e)) throw e;
    throw fail.extractFailed({ commit: src.commit.slice(0, 12), ws, message: (e as Error).message }, { cause: e });
  }
  return { files };
}

async function copyWorkingTree(src: Source, ws: string, opts: { signal?: AbortSignal }): Promise<{ files: number }> {
  const base = path.join(src.root, src.subdir);
  const listing = ok(await git(base, ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', '.'], opts), 'ls-files');
  // An unmerged path is listed once per stage.
  const paths = [...new Set(splitNul(listing.stdout.toString('utf8')))];
  let files = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      if (opts.signal?.aborted) throw fail.copyCancelled();
      const rel = paths[next++]!;
      if (path.isAbsolute(rel) || rel.split('/').includes('..')) throw fail.gitUnexpectedPath({ rel });
      if (await copyEntry(path.join(base, rel), path.join(ws, rel))) files++;
    }
  };
  await Promise.all(Array.from({ length: COPY_CONCURRENCY }, worker));
  return { files };
}

/** Copy one listed path; false when there is nothing to copy (deleted in the work tree, or a submodule folder). */
async function copyEntry(from: string, to: string): Promise<boolean> {
  const st = await lstat(from).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
    throw e;
  });
  if (st === undefined || !(st.isFile() || st.isSymbolicLink())) return false;
  await mkdir(path.dirname(to), { recursive: true });
  if (st.isSymbolicLink()) await symlink(await readlink(from), to);
  else await copyFile(from, to); // keeps the mode, so executables stay executable
  return true;
}

/** Paths named by `git status --porcelain=v1 -z`; a rename or copy is followed by its old path, listed too. */
function statusPaths(out: string): string[] {
  const fields = splitNul(out);
  const paths: string[] = [];
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    const xy = f.slice(0, 2);
    paths.push(f.slice(3));
    if (xy.includes('R') || xy.includes('C')) {
      const old = fields[++i];
      if (old !== undefined) paths.push(old);
    }
  }
  return paths;
}

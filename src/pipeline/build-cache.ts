/**
 * The per-app build cache on the build machine: the package manager's download cache and the
 * installed node_modules, keyed by build-cache-key.ts. An unchanged key restores node_modules and
 * skips the install (native modules are not compiled again); any other key installs with the
 * download cache and saves a new entry.
 *
 *   <root>/<app>/downloads/<manager>     npm --cache, YARN_CACHE_FOLDER, pnpm store-dir
 *   <root>/<app>/entries/<key>/          manifest.json + node_modules/ (mtime of the folder = last use)
 *   <root>/<app>/tmp/save-*              an entry being written; renamed into entries/ when complete
 *
 * Writes are atomic: an entry is written in tmp/ and renamed into place, so a crash leaves only a
 * tmp folder (swept after an hour). Reads are verified: the restored copy is hashed and compared
 * with the manifest's tree digest; a mismatch (disk damage, a hand edit, a half-deleted entry)
 * discards the entry and the run installs as on a miss. Concurrency: two runs of one app may race;
 * the first rename wins, the other's copy is dropped; a restore racing an eviction fails its
 * verification and installs.
 */
import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../core/errors.js';
import {
  CACHE_FORMAT,
  MANAGER_CONFIG_FILES,
  cacheKey,
  canonicalJson,
  installEnvEntries,
  installRelevantJson,
  type CacheInputs,
  type Manager,
} from './build-cache-key.js';
import { LOCKFILES } from '../workspace/build-plan.js';
import { runCommand } from '../os/exec.js';
import { sha256, treeDigest } from './tree-digest.js';

export { treeDigest, type TreeDigest } from './tree-digest.js';

/** Where the build cache lives: $PILOT_BUILD_CACHE, else $PILOT_HOME/build-cache. */
export function defaultBuildCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env['PILOT_BUILD_CACHE'] ?? path.resolve(env['PILOT_HOME'] ?? '.pilot', 'build-cache'));
}

/** Entries kept per app (least recently used go first): PILOT_BUILD_CACHE_KEEP, default 3. */
export function cacheKeep(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env['PILOT_BUILD_CACHE_KEEP']);
  return Number.isInteger(n) && n >= 1 ? n : 3;
}

export interface AppCache {
  readonly root: string;
  readonly app: string;
}

const appRoot = (c: AppCache): string => path.join(c.root, c.app);
const entriesDir = (c: AppCache): string => path.join(appRoot(c), 'entries');
/** The folder of one entry: manifest.json, node_modules, and prune.json once a prune was recorded. */
export const entryDir = (c: AppCache, key: string): string => path.join(entriesDir(c), key);
/** The folder a package manager keeps its downloads in for this app. */
export const downloadsDir = (c: AppCache, manager: Manager): string => path.join(appRoot(c), 'downloads', manager);

export interface Manifest {
  readonly format: number;
  readonly key: string;
  readonly inputs: CacheInputs;
  readonly createdAt: string;
  readonly files: number;
  readonly bytes: number;
  /** sha256 over every path, type, mode, size and content (or link target) of node_modules. */
  readonly tree: string;
}

/** Copy a folder with modes, times and links (a reflink where the file system can): coreutils cp, argv only. */
async function copyTree(from: string, to: string, signal?: AbortSignal): Promise<void> {
  const argv = ['cp', '-a', '--reflink=auto', '--', from, to];
  const r = await runCommand(argv, {
    cwd: '/',
    env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
    timeoutMs: 10 * 60_000,
    ...(signal ? { signal } : {}),
  });
  if (r.code !== 0) {
    // cp names both long paths in every line; the reason (ENOSPC, EACCES …) is what matters.
    const why = r.tail
      .slice(-2)
      .map((l) => l.split(to).join('…').split(from).join('…'))
      .join('; ');
    throw fail.nodeModulesCopyFailed({ why });
  }
}

/** Read what decides the install's output: lockfile, package.json fields, manager config, node, manager version, env. */
export async function gatherInputs(req: {
  readonly appDir: string;
  /** The run's temp folder: its path is replaced by a placeholder in env values before hashing. */
  readonly workspace: string;
  readonly manager: Manager;
  readonly env: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal | undefined;
}): Promise<CacheInputs> {
  const { appDir: dir, manager, env } = req;
  const opts = { cwd: dir, env, timeoutMs: 60_000, maxOutputTail: 5, ...(req.signal ? { signal: req.signal } : {}) };
  const probe =
    'JSON.stringify([process.version,process.versions.modules,process.platform+"-"+process.arch,(process.report&&process.report.getReport().header.glibcVersionRuntime)||"no-glibc"])';
  const [nodeOut, mgrOut] = await Promise.all([runCommand(['node', '-p', probe], opts), runCommand([manager, '--version'], opts)]);
  if (nodeOut.code !== 0) throw fail.installNodeUnknown({ tail: nodeOut.tail.join(' ') });
  if (mgrOut.code !== 0) throw fail.managerVersionFailed({ manager, tail: mgrOut.tail.join(' ') });
  const [node, abi, platform, libc] = JSON.parse(nodeOut.tail.at(-1) ?? '[]') as string[];
  const managerVersion = (mgrOut.tail.at(-1) ?? '').trim();

  const pkg = JSON.parse((await readFile(path.join(dir, 'package.json'), 'utf8')).replace(/^\uFEFF/, '')) as Record<string, unknown>;
  let lockfile: CacheInputs['lockfile'] = null;
  for (const [name, m] of LOCKFILES) {
    if (m !== manager) continue;
    const bytes = await readFile(path.join(dir, name)).catch(() => undefined);
    if (bytes) {
      lockfile = { name, sha256: sha256(bytes) };
      break;
    }
  }
  const local: string[] = [];
  for (const f of MANAGER_CONFIG_FILES) {
    const bytes = await readFile(path.join(dir, f)).catch(() => undefined);
    if (bytes) local.push(`${f}:${sha256(bytes)}`);
  }
  // `file:` dependencies can change without the lockfile changing (a folder's contents, a re-packed tarball).
  for (const field of ['dependencies', 'devDependencies', 'optionalDependencies'] as const) {
    const deps = pkg[field];
    if (typeof deps !== 'object' || deps === null) continue;
    for (const [name, spec] of Object.entries(deps as Record<string, unknown>)) {
      if (typeof spec !== 'string' || !/^(file|link):/.test(spec)) continue;
      const target = path.resolve(dir, spec.replace(/^(file|link):/, ''));
      local.push(`${name}:${spec}:${await localDependencyHash(dir, target)}`);
    }
  }
  return {
    manager,
    managerVersion,
    lockfile,
    packageJson: sha256(installRelevantJson(pkg)),
    localInputs: sha256(local.sort().join('\n')),
    runtime: { node: node ?? '?', abi: abi ?? '?', platform: platform ?? '?', libc: libc ?? '?' },
    env: sha256(canonicalJson(installEnvEntries(env, req.workspace))),
  };
}

async function localDependencyHash(root: string, target: string): Promise<string> {
  if (target !== root && !target.startsWith(root + path.sep)) return 'outside-the-app';
  const s = await stat(target).catch(() => undefined);
  if (!s) return 'missing';
  if (s.isFile()) return sha256(await readFile(target));
  return (await treeDigest(target, { maxFiles: 20_000 })).digest || 'too-large';
}

/** The cache key of these inputs. */
export const keyOf = (inputs: CacheInputs): string => cacheKey(inputs, sha256);

export type RestoreResult =
  | { readonly kind: 'hit'; readonly manifest: Manifest }
  | { readonly kind: 'miss'; readonly previous: Manifest | undefined }
  | { readonly kind: 'damaged'; readonly reason: string; readonly previous: Manifest | undefined };

async function readManifest(entry: string): Promise<Manifest> {
  const m = JSON.parse(await readFile(path.join(entry, 'manifest.json'), 'utf8')) as Manifest;
  if (m.format !== CACHE_FORMAT || typeof m.tree !== 'string' || typeof m.key !== 'string')
    throw new Error('manifest.json has an unknown format');
  return m;
}

/** The entries of an app, most recently used first. */
async function listEntries(c: AppCache): Promise<{ key: string; dir: string; usedMs: number }[]> {
  const names = await readdir(entriesDir(c)).catch(() => [] as string[]);
  const out: { key: string; dir: string; usedMs: number }[] = [];
  for (const key of names) {
    const dir = path.join(entriesDir(c), key);
    const s = await stat(dir).catch(() => undefined);
    if (s?.isDirectory()) out.push({ key, dir, usedMs: s.mtimeMs });
  }
  return out.sort((a, b) => b.usedMs - a.usedMs);
}

/** The manifest of the app's most recently used entry (to say why a key missed). */
async function latestManifest(c: AppCache): Promise<Manifest | undefined> {
  for (const e of await listEntries(c)) {
    const m = await readManifest(e.dir).catch(() => undefined);
    if (m) return m;
  }
  return undefined;
}

/** Restore `key`'s node_modules into the app folder and verify the copy; a damaged entry is deleted. */
export async function restoreCache(c: AppCache, key: string, target: string, signal?: AbortSignal): Promise<RestoreResult> {
  const entry = path.join(entriesDir(c), key);
  const nm = path.join(target, 'node_modules');
  await mkdir(appRoot(c), { recursive: true, mode: 0o700 }); // private: apps run as other uids
  const now = new Date();
  await utimes(appRoot(c), now, now); // the app's last build, for the GC pass
  if (!(await stat(entry).catch(() => undefined))) return { kind: 'miss', previous: await latestManifest(c) };
  const discard = async (reason: string): Promise<RestoreResult> => {
    await rm(nm, { recursive: true, force: true });
    await rm(entry, { recursive: true, force: true });
    return { kind: 'damaged', reason, previous: await latestManifest(c) };
  };
  let manifest: Manifest;
  try {
    manifest = await readManifest(entry);
  } catch (e) {
    return discard(`manifest.json unreadable (${(e as Error).message})`);
  }
  if (manifest.key !== key) return discard(`manifest.json names another key (${manifest.key})`);
  // An install replaces whatever node_modules the repository holds; so does a restore.
  await rm(nm, { recursive: true, force: true });
  if (!(await stat(path.join(entry, 'node_modules')).catch(() => undefined))?.isDirectory())
    return discard('its node_modules folder is missing');
  // A copy that fails (disk full, cancelled) says nothing about the entry: keep it, and let the caller install.
  await mkdir(target, { recursive: true });
  try {
    await copyTree(path.join(entry, 'node_modules'), nm, signal);
  } catch (e) {
    await rm(nm, { recursive: true, force: true });
    throw e;
  }
  const got = await treeDigest(nm);
  if (got.digest !== manifest.tree) {
    return discard(
      `node_modules does not match its manifest (${manifest.files} files, ${manifest.bytes} bytes saved; ${got.files} files, ${got.bytes} bytes found)`,
    );
  }
  await utimes(entry, now, now).catch(() => undefined); // last use, for the LRU
  return { kind: 'hit', manifest };
}

export type SaveResult =
  { readonly saved: true; readonly manifest: Manifest; readonly evicted: number } | { readonly saved: false; readonly reason: string };

/** Save the app folder's node_modules as `key` (atomically), then keep only the `keep` most recently used entries. */
export async function saveCache(
  c: AppCache,
  key: string,
  inputs: CacheInputs,
  source: string,
  opts: { keep: number; replace?: boolean; signal?: AbortSignal | undefined; now?: Date },
): Promise<SaveResult> {
  const nm = path.join(source, 'node_modules');
  if (!(await stat(nm).catch(() => undefined))?.isDirectory()) return { saved: false, reason: 'the install made no node_modules folder' };
  const tmpRoot = path.join(appRoot(c), 'tmp');
  await mkdir(tmpRoot, { recursive: true, mode: 0o700 });
  await mkdir(entriesDir(c), { recursive: true, mode: 0o700 });
  await sweepTmp(tmpRoot, Date.now());
  const tmp = await mkdtemp(path.join(tmpRoot, 'save-'));
  try {
    await copyTree(nm, path.join(tmp, 'node_modules'), opts.signal);
    const d = await treeDigest(path.join(tmp, 'node_modules'));
    if (d.problems.length > 0) return { saved: false, reason: d.problems.slice(0, 3).join('; ') };
    const manifest: Manifest = {
      format: CACHE_FORMAT,
      key,
      inputs,
      createdAt: (opts.now ?? new Date()).toISOString(),
      files: d.files,
      bytes: d.bytes,
      tree: d.digest,
    };
    const fh = await open(path.join(tmp, 'manifest.json'), 'wx');
    try {
      await fh.writeFile(JSON.stringify(manifest, null, 1));
      await fh.sync();
    } finally {
      await fh.close();
    }
    const entry = path.join(entriesDir(c), key);
    try {
      await rename(tmp, entry);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw e;
      if (!opts.replace) return { saved: false, reason: 'another run saved this entry first' };
      const old = `${tmp}.old`;
      await rename(entry, old);
      await rename(tmp, entry);
      await rm(old, { recursive: true, force: true });
    }
    const now = new Date();
    await utimes(entry, now, now);
    return { saved: true, manifest, evicted: await evict(c, opts.keep) };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Delete all but the `keep` most recently used entries of an app; returns how many went. */
export async function evict(c: AppCache, keep: number): Promise<number> {
  const old = (await listEntries(c)).slice(keep);
  for (const e of old) await rm(e.dir, { recursive: true, force: true });
  return old.length;
}

/** Leftovers of a save that crashed (older than an hour: a save in progress is younger). */
async function sweepTmp(tmpRoot: string, nowMs: number): Promise<void> {
  for (const name of await readdir(tmpRoot).catch(() => [] as string[])) {
    const p = path.join(tmpRoot, name);
    const s = await stat(p).catch(() => undefined);
    if (s && nowMs - s.mtimeMs > 3_600_000) await rm(p, { recursive: true, force: true });
  }
}

/**
 * The GC pass over the whole cache: entries unused for `idleMs` go; an app not built for `idleMs`
 * and left with no entry loses its download cache too. Returns what was removed.
 */
export async function gcBuildCache(root: string, idleMs: number, nowMs: number): Promise<{ entries: number; apps: string[] }> {
  let entries = 0;
  const apps: string[] = [];
  for (const app of await readdir(root).catch(() => [] as string[])) {
    const c = { root, app };
    const list = await listEntries(c);
    const stale = list.filter((e) => nowMs - e.usedMs > idleMs);
    for (const e of stale) await rm(e.dir, { recursive: true, force: true });
    entries += stale.length;
    const built = await stat(path.join(root, app)).catch(() => undefined);
    if (stale.length === list.length && built?.isDirectory() && nowMs - built.mtimeMs > idleMs) {
      await rm(path.join(root, app), { recursive: true, force: true });
      apps.push(app);
    }
  }
  return { entries, apps };
}

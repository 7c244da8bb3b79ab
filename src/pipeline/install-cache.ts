/**
 * The install and prune parts of the build step, as the runner calls them: `installWithCache`
 * (restore node_modules on a hit, else install with the download cache and save an entry) and
 * `pruneDevDependencies` (after the build commands). The cache itself is build-cache.ts; this
 * file decides what to say in the run log and never fails a build because of the cache: a cache
 * that cannot be read or written is reported and the build goes on as without one.
 */
import { chmod, lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { formatDuration, parseEnvDuration } from '../core/duration.js';
import { isPilotError } from '../core/errors.js';
import { cacheEnv, describeMiss, pruneArgv, rootScriptArgvs, type CacheInputs, type Manager } from './build-cache-key.js';
import { downloadsDir, entryDir, gatherInputs, gcBuildCache, keyOf, restoreCache, saveCache, type AppCache } from './build-cache.js';
import { formatArgv, runCommand } from '../os/exec.js';
import { listTree, readRecord, recordPrune, replayPrune, saveRecord } from './prune-replay.js';
import { readPackageJson } from '../workspace/facts.js';

/** Runs one command of the build (logged, with silence notices, failing the build on a non-zero exit). */
export type RunStep = (name: string, argv: readonly string[], env: Readonly<Record<string, string>>) => Promise<void>;

export interface InstallRequest {
  readonly cache: AppCache;
  readonly appDir: string;
  readonly workspace: string;
  readonly manager: Manager;
  readonly installArgv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** `pilot run --no-cache`: do not restore; install and save a fresh entry. */
  readonly bypass: boolean;
  readonly keep: number;
  readonly line: (text: string) => void;
  readonly runStep: RunStep;
  readonly signal?: AbortSignal | undefined;
}

export interface InstallOutcome {
  /** The env later steps (build, prune) use: the build env plus the download cache. */
  readonly env: Readonly<Record<string, string>>;
  readonly hit: boolean;
  readonly inputs: CacheInputs | undefined;
  /** The cache entry this node_modules came from or was saved as (its prune is recorded there). */
  readonly entry?: string | undefined;
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
const mono = (): number => performance.now();
const cacheProblem = (e: unknown): string =>
  (isPilotError(e) ? e.message : `${(e as Error).message ?? String(e)}`).split('\n')[0]!.slice(0, 300);

/** Unused entries of any app go after this long (PILOT_BUILD_CACHE_IDLE, default 14 days). */
export function cacheIdleMs(env: NodeJS.ProcessEnv = process.env): number {
  return parseEnvDuration(env['PILOT_BUILD_CACHE_IDLE']) ?? 14 * 24 * 3_600_000;
}

/** The install step through the build cache. */
export async function installWithCache(req: InstallRequest): Promise<InstallOutcome> {
  const { cache, line, signal } = req;
  const env = { ...req.env, ...cacheEnv(req.manager, downloadsDir(cache, req.manager)) };
  // The app's cache folder is Pilot's alone (0700) before any package manager creates folders in it.
  await mkdir(downloadsDir(cache, req.manager), { recursive: true, mode: 0o700 }).catch(() => undefined);
  for (const dir of [cache.root, path.join(cache.root, cache.app)]) await chmod(dir, 0o700).catch(() => undefined);
  let inputs: CacheInputs;
  try {
    inputs = await gatherInputs({ appDir: req.appDir, workspace: req.workspace, manager: req.manager, env, signal });
  } catch (e) {
    if (signal?.aborted) throw e;
    line(`    build cache: not used (${cacheProblem(e)})`);
    await req.runStep('install', req.installArgv, env);
    return { env, hit: false, inputs: undefined };
  }
  const key = keyOf(inputs);
  const short = key.slice(0, 12);
  let replace = req.bypass; // an entry that could not be restored is replaced by this install's
  if (req.bypass) {
    line(`    build cache: bypassed (--no-cache): installing, then saving a fresh entry ${short}`);
  } else {
    const t0 = mono();
    const r = await restoreCache(cache, key, req.appDir, signal).catch((e: unknown) => {
      if (signal?.aborted) throw e;
      line(`    build cache: cannot restore ${short} (${cacheProblem(e)}): installing`);
      replace = true;
      return undefined;
    });
    if (r?.kind === 'hit') {
      line(
        `    build cache: hit ${short}: node_modules of ${r.manifest.createdAt.slice(0, 19).replace('T', ' ')} UTC restored (${r.manifest.files} files, ${mb(r.manifest.bytes)}) in ${formatDuration(mono() - t0)}; install skipped`,
      );
      // npm ci would have run the app's own install scripts; they may write outside node_modules.
      const pkg = (await readPackageJson(req.appDir)) ?? {};
      const scripts = (pkg['scripts'] ?? {}) as Record<string, unknown>;
      for (const s of rootScriptArgvs(req.manager, inputs.managerVersion, scripts)) await req.runStep(s.name, s.argv, env);
      return { env, hit: true, inputs, entry: entryDir(cache, key) };
    }
    if (r?.kind === 'damaged') line(`    build cache: entry ${short} is damaged (${r.reason}): discarded, installing again`);
    else if (r?.kind === 'miss')
      line(`    build cache: miss ${short} (${describeMiss(inputs, r.previous?.inputs)}): installing with the download cache`);
  }
  await req.runStep('install', req.installArgv, env);
  const t0 = mono();
  let entry: string | undefined;
  try {
    const s = await saveCache(cache, key, inputs, req.appDir, { keep: req.keep, replace, signal });
    if (s.saved) {
      entry = entryDir(cache, key);
      const evicted = s.evicted > 0 ? `; ${s.evicted} least recently used entr${s.evicted === 1 ? 'y' : 'ies'} removed` : '';
      line(
        `    build cache: saved ${short} (${s.manifest.files} files, ${mb(s.manifest.bytes)}) in ${formatDuration(mono() - t0)}${evicted}`,
      );
    } else {
      line(`    build cache: not saved (${s.reason})`);
    }
    const gone = await gcBuildCache(cache.root, cacheIdleMs(), Date.now());
    if (gone.entries > 0)
      line(`    build cache: ${gone.entries} entr${gone.entries === 1 ? 'y' : 'ies'} unused for ${formatDuration(cacheIdleMs())} removed`);
  } catch (e) {
    if (signal?.aborted) throw e;
    line(`    build cache: not saved (${cacheProblem(e)})`);
  }
  return { env, hit: false, inputs, entry };
}

/**
 * Remove devDependencies from the app's node_modules (after the build commands, before packaging).
 * With a build cache entry: the first prune is recorded in it, and replayed on later hits
 * (prune-replay.ts) instead of running the package manager again.
 */
export async function pruneDevDependencies(req: {
  readonly appDir: string;
  readonly manager: Manager;
  /** The manager's version when known (yarn 1 and yarn 2+ prune differently). */
  readonly managerVersion: string | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly line: (text: string) => void;
  readonly runStep: RunStep;
  /** The build cache entry node_modules came from (or was saved as). */
  readonly entry?: string | undefined;
}): Promise<void> {
  const pkg = await readPackageJson(req.appDir);
  const dev = pkg?.['devDependencies'];
  if (typeof dev !== 'object' || dev === null || Object.keys(dev).length === 0) return;
  const nm = path.join(req.appDir, 'node_modules');
  if (!(await lstat(nm).catch(() => undefined))?.isDirectory()) return;
  let version = req.managerVersion;
  if (version === undefined && req.manager === 'yarn') {
    const r = await runCommand(['yarn', '--version'], { cwd: req.appDir, env: req.env, timeoutMs: 60_000, maxOutputTail: 3 });
    version = r.code === 0 ? (r.tail.at(-1) ?? '').trim() : undefined;
  }
  const argv = pruneArgv(req.manager, version ?? '');
  if (argv === undefined) {
    req.line(
      `    devDependencies not pruned: ${req.manager} ${version ?? '(version unknown)'} has no prune Pilot can run (set prune_dev_dependencies: false to silence this)`,
    );
    return;
  }
  const before = await listTree(nm);
  const said = (after: { files: number; bytes: number }): void =>
    req.line(`    devDependencies pruned: node_modules ${before.files} → ${after.files} files, ${mb(before.bytes)} → ${mb(after.bytes)}`);
  const record = req.entry === undefined ? undefined : await readRecord(req.entry);
  if (record && record.argv.join('\0') === argv.join('\0')) {
    const t0 = mono();
    const replayed = await replayPrune(nm, record, before).catch(() => undefined);
    if (replayed) {
      req.line(
        `--> prune: replayed from the build cache (${formatArgv(argv)} removed ${record.removed.length} path${record.removed.length === 1 ? '' : 's'} from this same tree before) in ${formatDuration(mono() - t0)}`,
      );
      said(replayed);
      return;
    }
    req.line('    build cache: the recorded prune does not fit this node_modules (the build changed it): pruning');
  }
  await req.runStep('prune', argv, req.env);
  const after = await listTree(nm);
  said(after);
  if (req.entry !== undefined && record === undefined) {
    const r = await recordPrune(nm, argv, before, after).catch(() => undefined);
    if (r) await saveRecord(req.entry, r).catch(() => undefined);
  }
}

/**
 * The build cache as data: what an entry is keyed by, the environment that points a package
 * manager at its download cache, and the argv that prunes devDependencies. Pure (hashing is given
 * in by the caller), so the decisions are tested without a file system.
 */
import type { Lockfile } from '../workspace/build-plan.js';

/** The package manager an install runs (the lockfile's, npm without one). */
export type Manager = Lockfile;

/** Everything that decides what `npm ci` (or yarn, pnpm) puts in node_modules, each as a hash or a version. */
export interface CacheInputs {
  readonly manager: Manager;
  /** `npm --version` (yarn, pnpm) as the build runs it. */
  readonly managerVersion: string;
  /** Lockfile name and sha256 of its bytes; null without one. */
  readonly lockfile: { readonly name: string; readonly sha256: string } | null;
  /** sha256 of the install-relevant fields of package.json (dependencies, overrides, install scripts …). */
  readonly packageJson: string;
  /** sha256 of the package manager's config files in the app (.npmrc, .yarnrc …) and of `file:` dependencies. */
  readonly localInputs: string;
  /** From the node that runs the install: version, module ABI, platform-arch, libc. */
  readonly runtime: { readonly node: string; readonly abi: string; readonly platform: string; readonly libc: string };
  /** sha256 of the build environment that can change an install (npm_config_*, NODE_ENV …). */
  readonly env: string;
}

/** Bump when the layout of an entry or the meaning of the key changes: old entries are then never hit. */
export const CACHE_FORMAT = 1;

/** package.json fields that change what an install produces (name, version, scripts for the app do not). */
export const INSTALL_FIELDS = [
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'peerDependencies',
  'peerDependenciesMeta',
  'bundleDependencies',
  'bundledDependencies',
  'overrides',
  'resolutions',
  'pnpm',
  'workspaces',
  'packageManager',
] as const;

/**
 * The root package's own install lifecycle scripts, in the order npm ci runs them; a cache hit runs
 * them again (they may write outside node_modules).
 */
export const ROOT_INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'preprepare', 'prepare', 'postprepare'] as const;

/** Config files of the package managers that change an install, read from the app's folder when present. */
export const MANAGER_CONFIG_FILES = ['.npmrc', '.yarnrc', '.yarnrc.yml', 'pnpm-workspace.yaml', '.pnpmfile.cjs'] as const;

/** Environment variables of the build that change an install; PATH, HOME and the cache folders do not. */
export function installEnvEntries(env: Readonly<Record<string, string>>, workspace: string): [string, string][] {
  const relevant = /^(npm_config_|yarn_|pnpm_|corepack_|node_env$|node_options$)/i;
  const ours = new Set(Object.keys(cacheEnv('npm', '')).concat(Object.keys(cacheEnv('yarn', '')), Object.keys(cacheEnv('pnpm', ''))));
  return (
    Object.entries(env)
      .filter(([k]) => relevant.test(k) && !ours.has(k))
      // A temp path of this run (a generated npmrc, say) must not make every run a miss.
      .map(([k, v]): [string, string] => [k, workspace ? v.split(workspace).join('<workspace>') : v])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  );
}

/** The part of package.json an install depends on, as canonical JSON (keys sorted), for hashing. */
export function installRelevantJson(pkg: Readonly<Record<string, unknown>>): string {
  const scripts = (typeof pkg['scripts'] === 'object' && pkg['scripts'] !== null ? pkg['scripts'] : {}) as Record<string, unknown>;
  const picked: Record<string, unknown> = {};
  for (const f of INSTALL_FIELDS) if (pkg[f] !== undefined) picked[f] = pkg[f];
  const lifecycle: Record<string, unknown> = {};
  for (const s of ROOT_INSTALL_SCRIPTS) if (scripts[s] !== undefined) lifecycle[s] = scripts[s];
  picked['scripts'] = lifecycle;
  return canonicalJson(picked);
}

/** JSON with object keys sorted at every level: the same data always gives the same text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The entry name for these inputs: 32 hex digits of sha256 over their canonical form (`hash` is sha256 hex). */
export function cacheKey(inputs: CacheInputs, hash: (text: string) => string): string {
  return hash(canonicalJson({ format: CACHE_FORMAT, ...inputs })).slice(0, 32);
}

/** What differs between two sets of inputs, for the log line of a miss ("lockfile changed"). */
export function describeMiss(now: CacheInputs, previous: CacheInputs | undefined): string {
  if (previous === undefined) return 'no entry for this app yet';
  const why: string[] = [];
  if (canonicalJson(now.lockfile) !== canonicalJson(previous.lockfile))
    why.push(now.lockfile ? `${now.lockfile.name} changed` : 'lockfile removed');
  if (now.packageJson !== previous.packageJson) why.push('package.json dependencies changed');
  if (now.localInputs !== previous.localInputs) why.push('package manager config or file: dependencies changed');
  if (now.runtime.node !== previous.runtime.node || now.runtime.abi !== previous.runtime.abi)
    why.push(`node ${previous.runtime.node} → ${now.runtime.node}`);
  if (now.runtime.platform !== previous.runtime.platform || now.runtime.libc !== previous.runtime.libc) why.push('platform changed');
  if (now.manager !== previous.manager || now.managerVersion !== previous.managerVersion)
    why.push(`${previous.manager} ${previous.managerVersion} → ${now.manager} ${now.managerVersion}`);
  if (now.env !== previous.env) why.push('install environment changed');
  return why.length > 0 ? why.join(', ') : 'inputs changed';
}

/**
 * Environment that points a package manager at the app's download cache: npm's cache (tarballs and
 * metadata, content-addressed and integrity-checked by npm itself), yarn 1's cache folder, pnpm's store.
 */
export function cacheEnv(manager: Manager, dir: string): Record<string, string> {
  switch (manager) {
    case 'npm':
      return { npm_config_cache: dir };
    case 'yarn':
      return { YARN_CACHE_FOLDER: dir };
    case 'pnpm':
      return { npm_config_store_dir: dir };
  }
}

/**
 * The command that removes devDependencies from node_modules after the build, or undefined when
 * this manager has none Pilot can run (yarn 2+ needs the workspace-tools plugin).
 */
export function pruneArgv(manager: Manager, managerVersion: string): readonly string[] | undefined {
  switch (manager) {
    case 'npm':
      return ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund'];
    case 'pnpm':
      return ['pnpm', 'prune', '--prod'];
    case 'yarn':
      // yarn 1 has no prune: a production install over the existing node_modules removes the rest;
      // --ignore-scripts so native modules already built are not built again.
      return /^1\./.test(managerVersion)
        ? ['yarn', 'install', '--production', '--frozen-lockfile', '--ignore-scripts', '--prefer-offline', '--non-interactive']
        : undefined;
  }
}

/**
 * The commands that run the root package's own install scripts after a cache hit skipped the
 * install, each exactly once, in npm ci's order. npm: `npm run --ignore-scripts X` runs X without
 * its pre/post hooks, so each present script is named. yarn 1 and pnpm 8+ run `preX`/`postX` with
 * `run X`, so a hook whose main script is present is left to that chain (pnpm 7 runs no hooks).
 */
export function rootScriptArgvs(
  manager: Manager,
  managerVersion: string,
  scripts: Readonly<Record<string, unknown>>,
): { name: string; argv: readonly string[] }[] {
  const present = ROOT_INSTALL_SCRIPTS.filter((s) => typeof scripts[s] === 'string');
  if (manager === 'npm') return present.map((s) => ({ name: `${s} script`, argv: ['npm', 'run', '--ignore-scripts', s] }));
  const chains = manager === 'yarn' || Number(managerVersion.split('.')[0]) >= 8;
  const covered = (s: string): boolean =>
    chains && /^(pre|post)/.test(s) && present.includes(s.replace(/^(pre|post)/, '') as (typeof present)[number]);
  return present.filter((s) => !covered(s)).map((s) => ({ name: `${s} script`, argv: [manager, 'run', s] }));
}

/** The verb of a step's silence notice: `still installing… 2m10s`. */
export function stepVerb(stepName: string): string {
  if (stepName === 'install') return 'installing';
  if (stepName === 'prune') return 'pruning';
  if (stepName.startsWith('build')) return 'building';
  return `running the ${stepName}`;
}

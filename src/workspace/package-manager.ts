/**
 * Which package manager builds the app, in which version, and with which commands (issue 10.3).
 * Pure: the facts come from workspace-facts.ts, the fetching from provide-package-manager.ts.
 *
 *   package.json packageManager ("yarn@4.5.0", "pnpm@9.12.0+sha512.…")   exact version, hash checked
 *     └─ else the lockfile's manager: yarn.lock (v1 or berry), pnpm-lock.yaml
 *          version: engines.yarn / engines.pnpm, else the major the lockfile format implies
 *     └─ else (package-lock.json, npm-shrinkwrap.json, no lockfile): the npm paired with the node
 */
import { fail } from '../core/errors.js';
import semver from 'semver';

/** Which package manager's lockfile a repository holds. */
export type Lockfile = 'npm' | 'yarn' | 'pnpm';

export type PackageManagerName = 'npm' | 'yarn' | 'pnpm';

/** What a workspace says about its package manager (read by workspace-facts.ts). */
export interface PackageManagerFacts {
  /** package.json `packageManager`, as written (a non-string is reported, not ignored). */
  readonly packageManager?: unknown;
  /** package.json `engines.yarn` / `engines.pnpm` when strings. */
  readonly engines?: { readonly yarn?: string | undefined; readonly pnpm?: string | undefined };
  readonly lockfile: Lockfile | null;
  /** yarn.lock's format: `v1` (`# yarn lockfile v1`) or `berry` (`__metadata:`), when there is one. */
  readonly yarnLock?: 'v1' | 'berry' | undefined;
  /** `__metadata.version` of a berry yarn.lock (8: yarn 4, 6: yarn 3, 4: yarn 2). */
  readonly yarnLockVersion?: number | undefined;
  /** `lockfileVersion` of pnpm-lock.yaml ('9.0', '6.0', '5.4', ...). */
  readonly pnpmLockVersion?: string | undefined;
}

export interface WantedPackageManager {
  readonly name: PackageManagerName;
  /** An exact version or a semver range (resolved against the registry). */
  readonly spec: string;
  /** corepack's hash from packageManager: `sha512.<hex>` / `sha224.<hex>` etc., checked after download. */
  readonly hash?: string | undefined;
  /** For messages: `packageManager "yarn@4.5.0"`, `engines.pnpm "^9"`, `yarn.lock (berry, format 8)`. */
  readonly source: string;
}

/** A package manager ready to run: name, exact version, and whether it is yarn 2+ ("berry"). */
export interface PackageManager {
  readonly name: PackageManagerName;
  readonly version: string;
}

const MANAGER = /^(npm|yarn|pnpm)@([^+\s]+)(?:\+([a-z0-9]+)\.([0-9a-f]+))?$/;

/** The package manager the app asks for, or undefined for the npm that comes with the node. */
export function wantedPackageManager(f: PackageManagerFacts): WantedPackageManager | undefined {
  if (f.packageManager !== undefined) return parsePackageManagerField(f.packageManager);
  switch (f.lockfile) {
    case 'yarn': {
      const lock =
        f.yarnLock === 'berry'
          ? `yarn.lock (berry${f.yarnLockVersion === undefined ? '' : `, format ${f.yarnLockVersion}`})`
          : 'yarn.lock (v1)';
      if (f.engines?.yarn !== undefined)
        return {
          name: 'yarn',
          spec: checkedRange('engines.yarn', f.engines.yarn),
          source: `engines.yarn ${JSON.stringify(f.engines.yarn)}`,
        };
      return { name: 'yarn', spec: f.yarnLock === 'berry' ? berryMajor(f.yarnLockVersion) : '1.x', source: lock };
    }
    case 'pnpm':
      if (f.engines?.pnpm !== undefined)
        return {
          name: 'pnpm',
          spec: checkedRange('engines.pnpm', f.engines.pnpm),
          source: `engines.pnpm ${JSON.stringify(f.engines.pnpm)}`,
        };
      return {
        name: 'pnpm',
        spec: pnpmMajor(f.pnpmLockVersion),
        source: `pnpm-lock.yaml (lockfileVersion ${f.pnpmLockVersion ?? 'unknown'})`,
      };
    case 'npm':
    case null:
      return undefined;
  }
}

/** Parse corepack's `packageManager` field: `name@exact-version[+algo.hex]`. Anything else is invalid_config. */
export function parsePackageManagerField(raw: unknown): WantedPackageManager {
  const shown = JSON.stringify(raw)?.slice(0, 120) ?? String(raw);
  if (typeof raw !== 'string') throw fail.packageManagerNotString({ shown });
  const m = MANAGER.exec(raw.trim());
  if (!m) {
    const name = raw.split('@')[0];
    if (name !== undefined && name !== '' && !['npm', 'yarn', 'pnpm'].includes(name)) {
      throw fail.packageManagerUnknown({ shown, name: name.slice(0, 40) });
    }
    throw fail.packageManagerNotNameAtVersion({ shown });
  }
  const [, name, version, algo, hex] = m;
  if (algo !== undefined && !['sha1', 'sha224', 'sha256', 'sha384', 'sha512'].includes(algo)) {
    throw fail.packageManagerUnknownHash({ shown, algo });
  }
  if (semver.valid(version!) === null || !/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version!)) {
    throw fail.packageManagerNotExact({ shown, version: version! });
  }
  // Messages show the hash's first characters only: the whole of it is 128 hex digits of noise.
  const source = `packageManager "${name}@${version}${algo ? `+${algo}.${hex!.slice(0, 8)}…` : ''}"`;
  return { name: name as PackageManagerName, spec: version!, ...(algo ? { hash: `${algo}.${hex}` } : {}), source };
}

function checkedRange(where: string, spec: string): string {
  if (semver.validRange(spec) === null) {
    throw fail.invalidEnginesSpec({ where, spec: spec.slice(0, 80) });
  }
  return spec;
}

/** The yarn major a berry lockfile's format belongs to (format 8: yarn 4; 6 or 7: yarn 3; older: yarn 2). */
function berryMajor(format: number | undefined): string {
  if (format === undefined || format >= 8) return '4.x';
  if (format >= 6) return '3.x';
  return '2.x';
}

/** The pnpm major a lockfile version belongs to ('9.0': pnpm 9 and 10; '6.x': pnpm 8; '5.x': pnpm 7). */
function pnpmMajor(lockfileVersion: string | undefined): string {
  const major = Number.parseInt(lockfileVersion ?? '', 10);
  if (major === 6) return '8.x';
  if (major === 5) return '7.x';
  return '9.x';
}

/** Whether a yarn version is yarn 2 or later (berry): a different package, CLI and lockfile. */
export function isBerry(pm: PackageManager): boolean {
  return pm.name === 'yarn' && (semver.parse(pm.version)?.major ?? 1) >= 2;
}

/**
 * The npm package a manager's version is published as, and the file to run inside it (relative to
 * the unpacked `package/` folder). yarn 2+ is published as @yarnpkg/cli-dist.
 */
export function distPackage(pm: PackageManager): { readonly pkg: string; readonly entry: string } {
  switch (pm.name) {
    case 'npm':
      return { pkg: 'npm', entry: 'bin/npm-cli.js' };
    case 'pnpm':
      return { pkg: 'pnpm', entry: 'bin/pnpm.cjs' };
    case 'yarn':
      return isBerry(pm) ? { pkg: '@yarnpkg/cli-dist', entry: 'bin/yarn.js' } : { pkg: 'yarn', entry: 'bin/yarn.js' };
  }
}

/**
 * The frozen install: the lockfile is the truth, a build never resolves versions anew. Without a
 * lockfile the manager may write one (yarn berry and pnpm turn frozen on by themselves under CI=true,
 * so it is turned off explicitly).
 */
export function installArgvFor(pm: PackageManager, hasLockfile: boolean): readonly string[] {
  switch (pm.name) {
    case 'npm':
      return hasLockfile ? ['npm', 'ci', '--no-audit', '--no-fund'] : ['npm', 'install', '--no-audit', '--no-fund'];
    case 'pnpm':
      return ['pnpm', 'install', hasLockfile ? '--frozen-lockfile' : '--no-frozen-lockfile'];
    case 'yarn':
      if (isBerry(pm)) return ['yarn', 'install', hasLockfile ? '--immutable' : '--no-immutable'];
      return hasLockfile ? ['yarn', 'install', '--frozen-lockfile', '--non-interactive'] : ['yarn', 'install', '--non-interactive'];
  }
}

/**
 * Run a package.json script with the app's manager. Before the install yarn berry refuses to run
 * scripts (no install state yet), so a pre-install script of a berry app runs through npm.
 */
export function runScriptArgv(pm: PackageManager, script: string, beforeInstall = false): readonly string[] {
  if (pm.name === 'npm' || (beforeInstall && isBerry(pm))) return ['npm', 'run', script];
  return [pm.name, 'run', script];
}

/**
 * Build variables a manager needs from Pilot. yarn berry with Plug'n'Play keeps its packages as zip
 * files in a cache the running app reads through .pnp.cjs: the cache must be inside the app
 * (`.yarn/cache`, packed into the artifact), not yarn 4's global cache in the build's HOME.
 */
export function packageManagerEnv(pm: PackageManager, linker: string | undefined): Record<string, string> {
  if (!isBerry(pm)) return {};
  // No telemetry from a build machine (it would be the only request not to the npm registry).
  const env: Record<string, string> = { YARN_ENABLE_TELEMETRY: '0' };
  if (linker === undefined || linker === 'pnp') env['YARN_ENABLE_GLOBAL_CACHE'] = 'false';
  return env;
}

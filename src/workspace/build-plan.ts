/** The build step as data: which commands to run in the workspace, and with which environment. Pure. */
import { installArgvFor, runScriptArgv, type Lockfile, type PackageManager, type PackageManagerFacts } from './package-manager.js';

export type { Lockfile } from './package-manager.js';

/** What the build plan needs to know about the checked-out app (read by workspace-facts.ts). */
export interface WorkspaceFacts extends PackageManagerFacts {
  readonly hasPackageJson: boolean;
  /** The package manager whose lockfile is present; null when none is. */
  readonly lockfile: Lockfile | null;
  readonly scripts: Readonly<Record<string, string>>;
  /** yarn berry's `nodeLinker` from .yarnrc.yml (`pnp` when unset, `node-modules`, `pnpm`). */
  readonly yarnLinker?: string | undefined;
}

export interface BuildStep {
  /** Short label for logs and step records: `install`, `build`, `build 2`. */
  readonly name: string;
  readonly argv: readonly string[];
}

/**
 * Lockfile names by package manager, in order of precedence when a repository holds several
 * (npm's first: it is the default of `npm ci` in the docs and of Node itself).
 */
export const LOCKFILES: readonly (readonly [string, Lockfile])[] = [
  ['package-lock.json', 'npm'],
  ['npm-shrinkwrap.json', 'npm'],
  ['yarn.lock', 'yarn'],
  ['pnpm-lock.yaml', 'pnpm'],
];

/** The package manager of the first lockfile present, by LOCKFILES precedence. */
export function detectLockfile(present: (fileName: string) => boolean): Lockfile | null {
  for (const [file, manager] of LOCKFILES) if (present(file)) return manager;
  return null;
}

/**
 * The package manager implied by the lockfile alone (its version unknown: `0.0.0` for yarn 1 style
 * commands), for callers that have not provided one (provide-package-manager.ts does).
 */
export function lockfileManager(facts: WorkspaceFacts): PackageManager {
  if (facts.lockfile === 'yarn') return { name: 'yarn', version: facts.yarnLock === 'berry' ? '4.0.0' : '1.0.0' };
  if (facts.lockfile === 'pnpm') return { name: 'pnpm', version: '9.0.0' };
  return { name: 'npm', version: '0.0.0' };
}

/** The install command for the app: frozen-lockfile installs, so a build never resolves versions anew. */
export function installArgv(facts: WorkspaceFacts, pm: PackageManager = lockfileManager(facts)): readonly string[] | undefined {
  if (!facts.hasPackageJson) return undefined;
  const own = pm.name === 'npm' ? facts.lockfile === 'npm' : facts.lockfile === pm.name;
  return installArgvFor(pm, own);
}

/**
 * The build's commands in order, following the Heroku Node.js buildpack's conventions:
 * `heroku-prebuild` (before the install), the install by lockfile, then pilot.yaml `build`
 * commands, else `heroku-postbuild` when package.json has one (instead of `build`), else `build`.
 * Scripts run through the app's package manager (`yarn run build`: a Plug'n'Play app has no
 * node_modules/.bin for npm to find its tools in).
 */
export function buildSteps(
  configBuild: readonly (readonly string[])[] | undefined,
  facts: WorkspaceFacts,
  pm: PackageManager = lockfileManager(facts),
): BuildStep[] {
  const steps: BuildStep[] = [];
  const scripts = facts.hasPackageJson ? facts.scripts : {};
  if (scripts['heroku-prebuild'] !== undefined) steps.push({ name: 'heroku-prebuild', argv: runScriptArgv(pm, 'heroku-prebuild', true) });
  const install = installArgv(facts, pm);
  if (install !== undefined) steps.push({ name: 'install', argv: install });
  if (configBuild !== undefined) {
    configBuild.forEach((argv, i) => steps.push({ name: configBuild.length === 1 ? 'build' : `build ${i + 1}`, argv: [...argv] }));
  } else if (scripts['heroku-postbuild'] !== undefined) {
    steps.push({ name: 'heroku-postbuild', argv: runScriptArgv(pm, 'heroku-postbuild') });
  } else if (scripts['build'] !== undefined) {
    // Same as `npm run build --if-present`, without paying npm's start-up when there is no script.
    steps.push({ name: 'build', argv: runScriptArgv(pm, 'build') });
  }
  return steps;
}

/** Where PATH falls back to when the caller has none. */
export const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * The whole environment of a build step. Only PATH and HOME come from the caller: builds run the
 * app's code (npm scripts), which must not see Pilot's tokens or secrets. The running Node's bin
 * folder goes first on PATH so `npm` and `node` are the ones Pilot runs on. `extra` (the app's own
 * variables) wins over the defaults, but PATH keeps Node's folder in front.
 */
export function composeBuildEnv(
  base: { readonly PATH?: string | undefined; readonly HOME?: string | undefined },
  extra: Readonly<Record<string, string>>,
  nodeBinDir: string,
): Record<string, string> {
  const searchPath = extra['PATH'] ?? base.PATH ?? DEFAULT_PATH;
  const dirs = [nodeBinDir, ...searchPath.split(':').filter((d) => d !== '' && d !== nodeBinDir)];
  return {
    ...(base.HOME === undefined ? {} : { HOME: base.HOME }),
    CI: 'true',
    npm_config_update_notifier: 'false',
    ...extra,
    PATH: dirs.join(':'),
  };
}

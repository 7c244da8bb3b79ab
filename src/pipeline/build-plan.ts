/** The build step as data: which commands to run in the workspace, and with which environment. Pure. */

export type Lockfile = 'npm' | 'yarn' | 'pnpm';

/** What the build plan needs to know about the checked-out app (read by workspace-facts.ts). */
export interface WorkspaceFacts {
  readonly hasPackageJson: boolean;
  /** The package manager whose lockfile is present; null when none is. */
  readonly lockfile: Lockfile | null;
  readonly scripts: Readonly<Record<string, string>>;
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

/** The install command for the app: frozen-lockfile installs, so a build never resolves versions anew. */
export function installArgv(facts: WorkspaceFacts): readonly string[] | undefined {
  if (!facts.hasPackageJson) return undefined;
  switch (facts.lockfile) {
    case 'npm':
      return ['npm', 'ci', '--no-audit', '--no-fund'];
    case 'yarn':
      return ['yarn', 'install', '--frozen-lockfile'];
    case 'pnpm':
      return ['pnpm', 'install', '--frozen-lockfile'];
    case null:
      return ['npm', 'install', '--no-audit', '--no-fund'];
  }
}

/** The build's commands in order: install by lockfile, then pilot.yaml `build` or `npm run build` when package.json has a build script. */
export function buildSteps(configBuild: readonly (readonly string[])[] | undefined, facts: WorkspaceFacts): BuildStep[] {
  const steps: BuildStep[] = [];
  const install = installArgv(facts);
  if (install !== undefined) steps.push({ name: 'install', argv: install });
  if (configBuild !== undefined) {
    configBuild.forEach((argv, i) => steps.push({ name: configBuild.length === 1 ? 'build' : `build ${i + 1}`, argv: [...argv] }));
  } else if (facts.hasPackageJson && facts.scripts['build'] !== undefined) {
    // Same as `npm run build --if-present`, without paying npm's start-up when there is no script.
    steps.push({ name: 'build', argv: ['npm', 'run', 'build'] });
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

/**
 * The user's npm set-up, read once per build from the host's own npm (issue 10.2): where its
 * global and user npmrc are, its `cafile` and registry; then the variables that carry them to the
 * build (build-env.ts `userSetupEnv`) and the secret values among them, to mask in the run log.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  passesToBuild,
  setupSecretValues,
  unresolvedNpmrcVars,
  userSetupEnv,
  yarnrcSecretValues,
  type HostNpmConfig,
} from '../node-runtime/build-env.js';
import { npmEnv } from '../node-runtime/npm-registry.js';
import { runCommand } from '../os/exec.js';

export interface UserSetup {
  /** Variables the build receives (npm_config_globalconfig, proxies, CA, npm_config_*, ...). */
  readonly env: Record<string, string>;
  /** The host npm's environment (for npm view / pack / corepack): the caller's, minus PILOT_*. */
  readonly npmEnv: Record<string, string>;
  readonly npm: HostNpmConfig & { readonly registry: string };
  /** Credentials among the set-up (npmrc tokens, proxy passwords): masked in every log line. */
  readonly secretValues: readonly string[];
  /** What passes, for the run log: file paths and variable names, never values. */
  readonly summary: string;
  /** `${VAR}`s the app's .npmrc names that the build will not have (a build secret not set yet). */
  readonly missingVars: readonly string[];
}

/**
 * Where the host's npm finds its configuration: `npm config get globalconfig userconfig cafile
 * registry`, asked in `neutralDir` (a folder without an app .npmrc). No npm on this machine (an app
 * built by pilot.yaml commands alone): nothing, not an error. Rejects only when `signal` aborts.
 */
export async function locateNpmConfig(opts: {
  readonly hostEnv?: NodeJS.ProcessEnv;
  readonly neutralDir: string;
  readonly signal?: AbortSignal | undefined;
}): Promise<Record<string, string>> {
  const lines: string[] = [];
  const r = await runCommand(['npm', 'config', 'get', 'globalconfig', 'userconfig', 'cafile', 'registry'], {
    cwd: opts.neutralDir,
    env: npmEnv(opts.hostEnv ?? process.env),
    timeoutMs: 60_000,
    maxOutputTail: 20,
    onLine: (stream, l) => {
      if (stream === 'stdout') lines.push(l);
    },
    ...(opts.signal ? { signal: opts.signal } : {}),
  }).catch((e: unknown) => {
    if (opts.signal?.aborted) throw e;
    return { code: null };
  });
  const got: Record<string, string> = {};
  if (r.code === 0) {
    for (const l of lines) {
      const eq = l.indexOf('=');
      const v = eq < 0 ? '' : l.slice(eq + 1).trim();
      if (eq > 0 && v !== '' && v !== 'null' && v !== 'undefined') got[l.slice(0, eq)] = v;
    }
  }
  return got;
}

/**
 * Ask the host's npm (in `neutralDir`, a folder without an app .npmrc) where its configuration
 * is, then read the npmrc files (and the app's own .npmrc in `appDir`) for the values to mask.
 * `extraEnv` (the app's build secrets and env) resolves `${VAR}` references in npmrc lines.
 */
export async function readUserSetup(opts: {
  readonly hostEnv?: NodeJS.ProcessEnv;
  readonly neutralDir: string;
  readonly appDir: string;
  readonly extraEnv: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal | undefined;
  /** `locateNpmConfig`, started earlier (it takes a few hundred ms; the runner starts it beside the runtime's provisioning). */
  readonly located?: Promise<Record<string, string>> | undefined;
}): Promise<UserSetup> {
  const hostEnv = opts.hostEnv ?? process.env;
  const env0 = npmEnv(hostEnv);
  const got = await (opts.located ?? locateNpmConfig({ hostEnv, neutralDir: opts.neutralDir, signal: opts.signal }));
  const file = (p: string | undefined): string | undefined => (p !== undefined && existsSync(p) ? p : undefined);
  const npm = {
    globalconfig: file(got['globalconfig']),
    userconfig: file(got['userconfig']),
    cafile: file(got['cafile']),
    registry: got['registry'] ?? 'https://registry.npmjs.org/',
  };
  const env = userSetupEnv(hostEnv, npm);
  const texts = await Promise.all(
    [npm.globalconfig, npm.userconfig, join(opts.appDir, '.npmrc')].map((f) =>
      f === undefined ? '' : readFile(f, 'utf8').catch(() => ''),
    ),
  );
  const yarnrcs = await Promise.all(
    [join(opts.appDir, '.yarnrc.yml'), hostEnv['HOME'] === undefined ? undefined : join(hostEnv['HOME'], '.yarnrc.yml')].map((f) =>
      f === undefined ? '' : readFile(f, 'utf8').catch(() => ''),
    ),
  );
  const secretValues = [
    ...setupSecretValues(texts, { ...hostEnv, ...opts.extraEnv }),
    ...yarnrcSecretValues(yarnrcs, { ...hostEnv, ...opts.extraEnv }),
  ];
  const vars = Object.keys(hostEnv)
    .filter((k) => passesToBuild(k) && hostEnv[k] !== undefined)
    .sort();
  const parts = [
    npm.globalconfig && `global npmrc ${npm.globalconfig}`,
    npm.userconfig && `user npmrc ${npm.userconfig}`,
    texts[2] !== '' && "the app's .npmrc",
    npm.cafile && `cafile ${npm.cafile}`,
    vars.length > 0 && `variables ${vars.join(', ')}`,
  ].filter((p): p is string => typeof p === 'string' && p !== '');
  const missingVars = unresolvedNpmrcVars(texts[2] ?? '', { HOME: hostEnv['HOME'], PATH: hostEnv['PATH'], ...env, ...opts.extraEnv });
  return { env, npmEnv: env0, npm, secretValues, summary: parts.length ? parts.join('; ') : 'none (npm defaults)', missingVars };
}

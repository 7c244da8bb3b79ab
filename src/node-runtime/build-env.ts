/** The build environment with a pinned runtime. Pure. */
import { resolve } from 'node:path';

/**
 * `env` with the runtime's bin first on PATH (so `node`, and npm through its `#!/usr/bin/env node`,
 * run on it), then the bin of the npm paired with it (provide-npm.ts `npmFor`; without one, the
 * machine's npm further down PATH), and npm_config_nodedir at its headers (so node-gyp compiles
 * native modules for its ABI without downloading headers).
 */
export function withNodeRuntime(
  env: Readonly<Record<string, string>>,
  runtime: { readonly binDir: string; readonly root: string },
  npmBinDir?: string,
): Record<string, string> {
  const first = npmBinDir === undefined ? [runtime.binDir] : [runtime.binDir, npmBinDir];
  const rest = (env['PATH'] ?? '').split(':').filter((d) => d !== '' && !first.includes(d));
  return { ...env, PATH: [...first, ...rest].join(':'), npm_config_nodedir: runtime.root };
}

/** Where a build machine keeps runtimes: $PILOT_RUNTIME_CACHE, else $PILOT_HOME/runtimes. */
export function defaultRuntimeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env['PILOT_RUNTIME_CACHE'] ?? resolve(env['PILOT_HOME'] ?? '.pilot', 'runtimes'));
}

/**
 * Variables of the user's own set-up that a build receives (issue 10): npm's configuration
 * (`npm_config_*`, any case), proxies (both cases), CA bundles, and the package managers' own
 * variables (`COREPACK_*`, `YARN_*`). Nothing else of the caller's environment: never `PILOT_*`.
 */
const USER_SETUP = /^(npm_config_.+|(https?|no|all)_proxy|NODE_EXTRA_CA_CERTS|SSL_CERT_(FILE|DIR)|COREPACK_.+|YARN_.+)$/i;

/** Whether the build receives the caller's variable `name` (see USER_SETUP). */
export function passesToBuild(name: string): boolean {
  return USER_SETUP.test(name) && !name.startsWith('PILOT_') && !SET_BY_NPM.test(name);
}

/** Set by npm for the scripts it runs (Pilot started by `npm start`), not the user's configuration. */
const SET_BY_NPM = /^npm_config_(local_prefix|user_agent|npm_version|node_gyp|argv)$/i;

/** Where the host's npm finds its configuration (`npm config get globalconfig userconfig cafile registry`). */
export interface HostNpmConfig {
  /** The host npm's global npmrc (`<prefix>/etc/npmrc`), when the file exists. */
  readonly globalconfig?: string | undefined;
  /** The user npmrc (`~/.npmrc` or npm_config_userconfig), when the file exists. */
  readonly userconfig?: string | undefined;
  /** The `cafile` npm is configured with, if any. */
  readonly cafile?: string | undefined;
}

/**
 * The user's set-up as build variables. The npmrc files are named explicitly so a pinned runtime,
 * whose npm would read `<runtime>/etc/npmrc`, still reads the host's global npmrc; a configured
 * `cafile` also becomes NODE_EXTRA_CA_CERTS (unless set) so tools that do not read npmrc (yarn
 * berry, corepack, the app's own scripts) trust the same CA. Pure.
 */
export function userSetupEnv(hostEnv: Readonly<Record<string, string | undefined>>, npm: HostNpmConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(hostEnv)) if (v !== undefined && passesToBuild(k)) out[k] = v;
  const has = (key: string): boolean => Object.keys(out).some((k) => k.toLowerCase() === key.toLowerCase());
  if (npm.globalconfig !== undefined && !has('npm_config_globalconfig')) out['npm_config_globalconfig'] = npm.globalconfig;
  if (npm.userconfig !== undefined && !has('npm_config_userconfig')) out['npm_config_userconfig'] = npm.userconfig;
  if (npm.cafile !== undefined && !has('NODE_EXTRA_CA_CERTS')) out['NODE_EXTRA_CA_CERTS'] = npm.cafile;
  return out;
}

/** npmrc keys whose values are credentials: `_authToken`, `_auth`, `_password`, `password`, `token`, client keys. */
const SECRET_KEY = /(^|[:_.-])(_?authtoken|_auth|_password|password|token|key|secret)$/i;
/** Variable names whose values are credentials. */
const SECRET_VAR = /(token|_auth|password|passwd|secret|credential)/i;

/**
 * The secret values among the user's set-up, for masking in run logs: credential values of npmrc
 * lines (`//host/:_authToken=...`, `_auth`, `_password`: its base64 form is masked too by the
 * masker), credential variables, and the user:password part of proxy URLs. `${VAR}` references
 * are resolved from `env` (the value of the variable is the secret). Pure.
 */
export function setupSecretValues(npmrcTexts: readonly string[], env: Readonly<Record<string, string | undefined>>): string[] {
  const out = new Set<string>();
  const add = (v: string | undefined): void => {
    if (v === undefined) return;
    const expanded = v.replace(/\$\{([^}]+)\}/g, (_m, name: string) => env[name] ?? '');
    if (expanded.trim() !== '') out.add(expanded.trim());
  };
  for (const text of npmrcTexts) {
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq).trim();
      const value = line
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
      if (SECRET_KEY.test(key) && !/(file)$/i.test(key)) add(value);
      if (/proxy$/i.test(key)) proxyCredentials(value).forEach(add);
    }
  }
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || !passesToBuild(k)) continue;
    if (/proxy$/i.test(k) || /proxy$/i.test(k.replace(/^npm_config_/i, ''))) proxyCredentials(v).forEach(add);
    else if (SECRET_VAR.test(k.replace(/^npm_config_/i, '')) && !/file$/i.test(k)) add(v);
  }
  return [...out];
}

/**
 * Credential values of yarn berry's .yarnrc.yml files (`npmAuthToken`, `npmAuthIdent`, at any
 * depth: `npmScopes`/`npmRegistries` entries too), `${VAR}` references resolved. Pure.
 */
export function yarnrcSecretValues(texts: readonly string[], env: Readonly<Record<string, string | undefined>>): string[] {
  const out = new Set<string>();
  for (const text of texts) {
    for (const m of text.matchAll(/^\s*(?:npmAuthToken|npmAuthIdent):\s*(.+?)\s*$/gm)) {
      const value = m[1]!.replace(/^(["'])(.*)\1$/, '$2').replace(/\$\{([^}:]+)(?::-[^}]*)?\}/g, (_x, name: string) => env[name] ?? '');
      if (value.trim() !== '') out.add(value.trim());
    }
  }
  return [...out];
}

/** `${VAR}` references of npmrc text (comments skipped) that `env` does not define: npm would send them literally. Pure. */
export function unresolvedNpmrcVars(text: string, env: Readonly<Record<string, string | undefined>>): string[] {
  const out = new Set<string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('#') || line.startsWith(';')) continue;
    for (const m of line.matchAll(/\$\{([^}?]+)\??\}/g)) if (env[m[1]!] === undefined) out.add(m[1]!);
  }
  return [...out];
}

/** The password (and user:password) of a proxy URL with credentials; none without. */
function proxyCredentials(url: string): string[] {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^@/]*)@/i.exec(url.trim());
  if (!m) return [];
  const userinfo = m[1]!;
  const colon = userinfo.indexOf(':');
  if (colon < 0) return [userinfo];
  const password = userinfo.slice(colon + 1);
  const out = [userinfo];
  if (password !== '') {
    out.push(password);
    try {
      out.push(decodeURIComponent(password));
    } catch {
      // a malformed %-escape: the raw form is masked already
    }
  }
  return out;
}

/** The build environment with a pinned runtime. Pure. */
import { resolve } from 'node:path';

/**
 * `env` with the runtime's bin first on PATH (so `node`, and npm through its `#!/usr/bin/env node`,
 * run on it), then the bin of the npm paired with it (provide-npm.ts `npmFor`; without one, the
 * machine's npm further down PATH), and npm_config_nodedir at its headers (so node-gyp compiles
 * native modules for its ABI without downloading headers).
 */
export function withNodeRuntime(env: Readonly<Record<string, string>>, runtime: { readonly binDir: string; readonly root: string }, npmBinDir?: string): Record<string, string> {
  const first = npmBinDir === undefined ? [runtime.binDir] : [runtime.binDir, npmBinDir];
  const rest = (env['PATH'] ?? '').split(':').filter((d) => d !== '' && !first.includes(d));
  return { ...env, PATH: [...first, ...rest].join(':'), npm_config_nodedir: runtime.root };
}

/** Where a build machine keeps runtimes: $PILOT_RUNTIME_CACHE, else $PILOT_HOME/runtimes. */
export function defaultRuntimeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env['PILOT_RUNTIME_CACHE'] ?? resolve(env['PILOT_HOME'] ?? '.pilot', 'runtimes'));
}

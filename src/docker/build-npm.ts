/**
 * What the build stage of a generated Dockerfile needs of this machine's npm set-up to reach the
 * registry: the registry URL and the CA bundle (a proxy or a private registry with its own CA).
 * Never credentials: `_authToken` and friends stay on this machine (a build that needs a private
 * package brings its own Dockerfile with a build secret). Read from the environment first
 * (npm_config_registry, NODE_EXTRA_CA_CERTS, npm_config_cafile), else from `npm config get`,
 * which also sees the global npmrc of the node that runs Pilot.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runCommand } from '../os/exec.js';

export interface BuildNpmSettings {
  /** e.g. https://registry.npmjs.org/ */
  readonly registry: string | undefined;
  /** The CA bundle's text (public certificates), to trust in the build stage. */
  readonly ca: Buffer | undefined;
}

const set = (v: string | undefined): string | undefined =>
  v === undefined || v === '' || v === 'null' || v === 'undefined' ? undefined : v;

/** npm's own view of a few settings; empty when npm cannot be run. */
async function npmConfig(keys: readonly string[], env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  const npm = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const r = await runCommand([process.execPath, npm, 'config', 'get', ...keys], {
    cwd: '/',
    env: { PATH: env.PATH ?? '/usr/bin:/bin', ...(env.HOME ? { HOME: env.HOME } : {}) },
    timeoutMs: 20_000,
    maxOutputTail: 50,
  }).catch(() => undefined);
  const out: Record<string, string> = {};
  if (!r || r.code !== 0) return out;
  // One key prints its value; several print key=value lines.
  if (keys.length === 1) out[keys[0]!] = (r.tail[0] ?? '').trim();
  else
    for (const line of r.tail) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
  return out;
}

/** The registry and CA this machine's npm uses. */
export async function buildNpmSettings(env: NodeJS.ProcessEnv = process.env): Promise<BuildNpmSettings> {
  let registry = set(env.npm_config_registry);
  let cafile = set(env.NODE_EXTRA_CA_CERTS) ?? set(env.npm_config_cafile);
  if (registry === undefined || cafile === undefined) {
    const c = await npmConfig(['registry', 'cafile'], env);
    registry ??= set(c['registry']);
    cafile ??= set(c['cafile']);
  }
  const ca = cafile === undefined ? undefined : await readFile(cafile).catch(() => undefined);
  return { registry: withoutCredentials(registry), ca };
}

/** The registry URL as the build stage may see it: http(s) only, no user:password@ (it would stay in the image history). */
export function withoutCredentials(registry: string | undefined): string | undefined {
  if (registry === undefined || !/^https?:\/\/[^\s"\\]+$/.test(registry)) return undefined;
  try {
    const u = new URL(registry);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return undefined;
  }
}

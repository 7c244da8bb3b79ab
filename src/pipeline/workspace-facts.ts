/** The I/O half of the build plan: reads what build-plan.ts decides from. */
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PilotError } from '../core/errors.js';
import { composeBuildEnv, LOCKFILES, detectLockfile, type WorkspaceFacts } from './build-plan.js';

/** The parsed package.json of `dir` (an object), or undefined without one. Malformed → invalid_config. */
export async function readPackageJson(dir: string): Promise<Record<string, unknown> | undefined> {
  const file = path.join(dir, 'package.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let pkg: unknown;
  try {
    pkg = JSON.parse(text.replace(/^\uFEFF/, '')); // npm accepts a byte-order mark, so do we
  } catch (e) {
    throw new PilotError('invalid_config', `${file} is not valid JSON: ${(e as Error).message}`, { hint: 'Fix package.json (`npm pkg get` shows whether npm can read it).' });
  }
  if (typeof pkg !== 'object' || pkg === null || Array.isArray(pkg)) {
    throw new PilotError('invalid_config', `${file} must hold a JSON object`);
  }
  return pkg as Record<string, unknown>;
}

/** Read package.json and look for lockfiles in a checked-out workspace. A malformed package.json is invalid_config. */
export async function readWorkspaceFacts(dir: string): Promise<WorkspaceFacts> {
  const pkg = await readPackageJson(dir);
  if (pkg === undefined) return { hasPackageJson: false, lockfile: null, scripts: {} };
  const present = new Set<string>();
  await Promise.all(
    LOCKFILES.map(([name]) =>
      access(path.join(dir, name)).then(
        () => present.add(name),
        () => undefined,
      ),
    ),
  );
  return { hasPackageJson: true, lockfile: detectLockfile((name) => present.has(name)), scripts: stringScripts(pkg) };
}

/** The build's environment for this Node: see composeBuildEnv. */
export function buildEnv(
  base: { readonly PATH?: string | undefined; readonly HOME?: string | undefined },
  extra: Readonly<Record<string, string>> = {},
): Record<string, string> {
  return composeBuildEnv(base, extra, path.dirname(process.execPath));
}

/** The string-valued scripts of a parsed package.json. */
export function stringScripts(pkg: object): Record<string, string> {
  const scripts = (pkg as { scripts?: unknown }).scripts;
  if (typeof scripts !== 'object' || scripts === null || Array.isArray(scripts)) return {};
  // npm ignores scripts that are not strings; so does the plan.
  return Object.fromEntries(Object.entries(scripts).filter((kv): kv is [string, string] => typeof kv[1] === 'string'));
}

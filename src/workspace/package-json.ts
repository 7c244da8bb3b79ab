/** An app's package.json as read by the build and by the agent (its own file: no semver, no build plan). */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../core/errors.js';

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
    throw fail.invalidJson({ file, message: (e as Error).message });
  }
  if (typeof pkg !== 'object' || pkg === null || Array.isArray(pkg)) {
    throw fail.jsonNotObject({ file });
  }
  return pkg as Record<string, unknown>;
}

/** The string-valued scripts of a parsed package.json. */
export function stringScripts(pkg: object): Record<string, string> {
  const scripts = (pkg as { scripts?: unknown }).scripts;
  if (typeof scripts !== 'object' || scripts === null || Array.isArray(scripts)) return {};
  // npm ignores scripts that are not strings; so does the plan.
  return Object.fromEntries(Object.entries(scripts).filter((kv): kv is [string, string] => typeof kv[1] === 'string'));
}

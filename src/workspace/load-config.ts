/** Read an app's pilot.yaml (optional) and derive its name: pilot.yaml, else package.json, else the folder. */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parse, YAMLParseError } from 'yaml';
import { resolveAppConfig, validateAppConfig, type AppConfig, type AppConfigInput } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import { isValidName, nameFrom } from '../core/names.js';
import { readPackageJson } from './facts.js';

export interface LoadedConfig {
  /** What the file says, validated: sent to the server, which validates it again. */
  readonly input: AppConfigInput;
  readonly config: AppConfig;
}

/** Load and validate the app config of the folder `dir`. */
export async function loadAppConfig(dir: string, forcedName?: string): Promise<LoadedConfig> {
  let input: AppConfigInput = {};
  const file = join(dir, 'pilot.yaml');
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw fail.configUnreadable({ file, message: err.message });
  });
  if (text !== undefined) {
    let raw: unknown;
    try {
      raw = parse(text, { maxAliasCount: 100 });
    } catch (err) {
      const msg = err instanceof YAMLParseError ? err.message : String(err);
      throw fail.invalidYaml({ msg });
    }
    input = validateAppConfig(raw, 'pilot.yaml');
  }
  if (forcedName !== undefined) return { input, config: resolveAppConfig({ ...input, name: forcedName }, forcedName) };
  if (input.name !== undefined) return { input, config: resolveAppConfig(input, undefined) };
  // The package.json name, else the folder's; names that are not valid ("01-up-and-running",
  // "My_App") are made valid only when neither is valid as it is.
  const name = (await readPackageJson(dir))?.['name'];
  const bare = typeof name === 'string' ? name.replace(/^@[^/]+\//, '').toLowerCase() : undefined;
  const folder = basename(dir).toLowerCase();
  const fallback = [bare, folder].find(isValidName) ?? (bare === undefined ? undefined : nameFrom(bare)) ?? nameFrom(folder);
  if (fallback === undefined) {
    throw fail.noAppName({ packageName: bare?.slice(0, 80), folder: folder.slice(0, 80) });
  }
  return { input, config: resolveAppConfig(input, fallback) };
}

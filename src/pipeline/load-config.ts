/** Read an app's pilot.yaml (optional) and derive its name: pilot.yaml, else package.json, else the folder. */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parse, YAMLParseError } from 'yaml';
import { resolveAppConfig, validateAppConfig, type AppConfig, type AppConfigInput } from '../core/app-config.js';
import { PilotError } from '../core/errors.js';
import { isValidName } from '../core/names.js';
import { readPackageJson } from './workspace-facts.js';

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
    throw new PilotError('invalid_config', `cannot read ${file}: ${err.message}`);
  });
  if (text !== undefined) {
    let raw: unknown;
    try {
      raw = parse(text, { maxAliasCount: 100 });
    } catch (err) {
      const msg = err instanceof YAMLParseError ? err.message : String(err);
      throw new PilotError('invalid_config', `pilot.yaml is not valid YAML: ${msg}`);
    }
    input = validateAppConfig(raw, 'pilot.yaml');
  }
  let fallback: string | undefined;
  const name = (await readPackageJson(dir))?.['name'];
  if (typeof name === 'string') {
    const bare = name.replace(/^@[^/]+\//, '').toLowerCase();
    if (isValidName(bare)) fallback = bare;
  }
  if (!fallback) {
    const folder = basename(dir).toLowerCase();
    if (isValidName(folder)) fallback = folder;
  }
  if (forcedName !== undefined) return { input, config: resolveAppConfig({ ...input, name: forcedName }, forcedName) };
  return { input, config: resolveAppConfig(input, fallback) };
}

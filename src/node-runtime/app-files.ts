/** The I/O half of resolve.ts: read what an app says about its Node.js version. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readPackageJson } from '../workspace/facts.js';
import type { AppNodeFiles } from './resolve.js';

const MAX = 4096;

async function small(file: string): Promise<string | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  return text?.slice(0, MAX);
}

/** pilot.yaml `node` (already parsed), .node-version, .nvmrc and package.json engines.node (and engines.npm) of an app folder. */
export async function readAppNodeFiles(appDir: string, configNode: string | undefined): Promise<AppNodeFiles> {
  const [nodeVersion, nvmrc, pkg] = await Promise.all([
    small(join(appDir, '.node-version')),
    small(join(appDir, '.nvmrc')),
    readPackageJson(appDir),
  ]);
  const engines = pkg?.['engines'];
  const field = (name: string): string | undefined => {
    const v = typeof engines === 'object' && engines !== null ? (engines as Record<string, unknown>)[name] : undefined;
    return typeof v === 'string' ? v.slice(0, 200) : undefined;
  };
  return { pilotYaml: configNode, nodeVersion, nvmrc, enginesNode: field('node'), enginesNpm: field('npm') };
}

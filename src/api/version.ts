/** Pilot's version, from package.json (read once at load; the package ships with it). */
import { readFileSync } from 'node:fs';

export const PILOT_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/**
 * `pilot --help` without loading commander: the text commander printed last time for this build of
 * the CLI and this terminal width, kept in $XDG_CACHE_HOME/pilot (~/.cache/pilot). bin/pilot.js
 * prints it when the arguments are exactly `--help` or `-h`; main.ts writes it whenever commander
 * prints that help. The key is main.js's path, size and mtime (the command tree lives there) and
 * the width commander wraps to, so a rebuilt or upgraded CLI, or another terminal width, misses
 * and commander answers (and refreshes the cache). PILOT_HELP_CACHE=off turns it off. Best
 * effort: a cache that cannot be read or written is no cache.
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

interface Entry {
  readonly key: string;
  readonly text: string;
}

function cacheFile(mainFile: string): string {
  // A short, stable name per installation (FNV-1a of the path): two checkouts do not evict each other.
  let h = 0x811c9dc5;
  for (let i = 0; i < mainFile.length; i++) h = Math.imul(h ^ mainFile.charCodeAt(i), 0x01000193) >>> 0;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'pilot', `help-${h.toString(16)}.json`);
}

/** The width commander wraps help to on stdout (its own rule: the terminal's columns, else 80). */
export function helpWidth(): number {
  return process.stdout.isTTY ? (process.stdout.columns ?? 80) : 80;
}

function key(mainFile: string, width: number): string {
  const st = statSync(mainFile);
  return `${st.size}:${st.mtimeMs}:${width}`;
}

const enabled = (): boolean => process.env.PILOT_HELP_CACHE !== 'off';

/** The cached help for this build and width, or undefined. */
export function readHelpCache(mainFile: string, width = helpWidth()): string | undefined {
  if (!enabled()) return undefined;
  try {
    const e = JSON.parse(readFileSync(cacheFile(mainFile), 'utf8')) as Entry;
    return e.key === key(mainFile, width) && typeof e.text === 'string' ? e.text : undefined;
  } catch {
    return undefined;
  }
}

/** Keep `text` as the help of this build and width (written whole, then renamed: never half a file). */
export function writeHelpCache(mainFile: string, text: string, width = helpWidth()): void {
  if (!enabled()) return;
  try {
    const file = cacheFile(mainFile);
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ key: key(mainFile, width), text } satisfies Entry), { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    // no cache: the next --help asks commander again
  }
}

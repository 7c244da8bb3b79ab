/** How an app is started: pilot.yaml `run`, else the Procfile `web:` line, else `npm start`. Pure. */
import { type PilotError, fail } from './errors.js';
import { splitCommand } from './split-command.js';

const PROCFILE_LINE = /^([A-Za-z0-9_-]+)\s*:\s*(.*)$/;
/**
 * A Procfile command made only of these characters means the same to splitCommand as to sh, so it
 * runs without a shell. Anything else ($, globs, redirections, `;`, `&`, backslashes, `~`, `#`,
 * non-ASCII...) goes to /bin/sh, as Procfiles are shell lines by convention (Heroku, foreman).
 */
const PLAIN = /^[A-Za-z0-9_@%+=:,./'" \t-]*$/;
/** `NAME=value cmd` sets a variable for the command in sh; splitCommand would run a program called `NAME=value`. */
const LEADING_ASSIGNMENT = /^\s*[A-Za-z_][A-Za-z0-9_]*=/;

/** The command of the first `web:` process type in a Procfile, or undefined. Comments, blank lines and other types are ignored. */
export function procfileWeb(procfile: string): string | undefined {
  return procfileProcess(procfile, 'web');
}

/** The command of the first process type `type` (`web`, `release`) in a Procfile, or undefined. */
export function procfileProcess(procfile: string, type: string): string | undefined {
  for (const raw of procfile.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = PROCFILE_LINE.exec(line);
    if (m?.[1] === type && m[2] !== undefined && m[2].trim() !== '') return m[2].trim();
  }
  return undefined;
}

/** A Procfile line as argv: split when it is plain, else under /bin/sh -c (the app's own code: sh adds no authority). */
export function procfileArgv(line: string, type: string): readonly string[] {
  if (needsShell(line)) return ['/bin/sh', '-c', line];
  try {
    return splitCommand(line);
  } catch (e) {
    throw fail.procfileInvalid({ type, message: (e as Error).message }, { cause: e });
  }
}

/** The release phase's argv: pilot.yaml `release` (false = none), else the Procfile `release:` line, else none. */
export function resolveReleaseCommand(
  configRelease: readonly string[] | false | undefined,
  procfile: string | undefined,
): readonly string[] | undefined {
  if (configRelease === false) return undefined;
  if (configRelease !== undefined) {
    if (configRelease.length === 0 || configRelease[0] === '') throw fail.releaseCommandEmpty();
    return [...configRelease];
  }
  const line = procfile === undefined ? undefined : procfileProcess(procfile, 'release');
  return line === undefined ? undefined : procfileArgv(line, 'release');
}

/** True when a command line uses shell syntax and so must run under /bin/sh -c. */
export function needsShell(line: string): boolean {
  return !PLAIN.test(line) || LEADING_ASSIGNMENT.test(line);
}

/**
 * The app's package.json scripts, as far as starting it is concerned: a `start` that is a plain
 * `node …` command with no pre/post hooks is run directly. npm in between costs ~0.4 s of start-up
 * and ~40 MB per instance, and adds nothing such a script needs (node is already on PATH).
 */
export function directStart(scripts: Readonly<Record<string, string>> | undefined): readonly string[] | undefined {
  const start = scripts?.['start'];
  if (start === undefined || scripts?.['prestart'] !== undefined || scripts?.['poststart'] !== undefined) return undefined;
  if (!/^node\s/.test(start.trim()) || needsShell(start)) return undefined;
  try {
    return splitCommand(start);
  } catch {
    return undefined;
  }
}

/** The argv that starts the app: the configured run command, the Procfile web line, or `npm start` (run directly when it is plain `node …`). */
export function resolveRunCommand(
  configRun: readonly string[] | undefined,
  procfile: string | undefined,
  scripts?: Readonly<Record<string, string>>,
): readonly string[] {
  if (configRun !== undefined) {
    if (configRun.length === 0 || configRun[0] === '') throw fail.runCommandEmpty();
    return [...configRun];
  }
  const web = procfile === undefined ? undefined : procfileWeb(procfile);
  if (web === undefined) return directStart(scripts) ?? ['npm', 'start'];
  // The line is the app's own code, shipped in its artifact and run as the app: sh adds no authority.
  return procfileArgv(web, 'web');
}

/**
 * Why the app has nothing to start, or undefined when it has: no pilot.yaml `run`, no Procfile
 * `web:` line, no `start` script, and no `server.js` (npm's own default for `npm start`). Checked
 * after the build (a build may write server.js), so the run fails there instead of the instances
 * crashing with npm's "Missing script: start" at deploy.
 */
export function missingStartCommand(
  configRun: readonly string[] | undefined,
  procfile: string | undefined,
  scripts: Readonly<Record<string, string>> | undefined,
  hasServerJs: boolean,
): PilotError | undefined {
  if (configRun !== undefined || hasServerJs) return undefined;
  if (procfile !== undefined && procfileWeb(procfile) !== undefined) return undefined;
  if (scripts?.['start'] !== undefined) return undefined;
  const others = Object.keys(scripts ?? {}).filter((s) => /^(serve|server|prod|production|start:prod|preview|dev)$/.test(s));
  return fail.nothingToStart({ otherScripts: others });
}

/**
 * NODE_OPTIONS for a yarn Plug'n'Play app (a release holding `.pnp.cjs`): every node the app starts
 * (`npm start`, a Procfile line, `node server.js`) loads the PnP runtime first, as `yarn node`
 * does, with absolute paths so a child process in another folder still finds it; `.pnp.loader.mjs`
 * too when present (ES modules). The app's own NODE_OPTIONS are kept after. Undefined: not PnP.
 */
export function pnpNodeOptions(
  releaseDir: string,
  files: { readonly pnp: boolean; readonly loader: boolean },
  own: string | undefined,
): string | undefined {
  if (!files.pnp) return undefined;
  const quote = (p: string): string => (/[\s"\\]/.test(p) ? JSON.stringify(p) : p);
  const parts = [`--require ${quote(`${releaseDir}/.pnp.cjs`)}`];
  if (files.loader) parts.push(`--experimental-loader ${quote(`file://${releaseDir}/.pnp.loader.mjs`)}`);
  if (own !== undefined && own.trim() !== '') parts.push(own.trim());
  return parts.join(' ');
}

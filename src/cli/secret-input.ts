/**
 * Where the CLI takes secrets from. A value on the command line is visible to every user of the
 * machine (`ps`, /proc/PID/cmdline) and lands in shell history: it still works, with a warning;
 * a file (`--…-file FILE`, `-` for stdin) or an environment variable is the way to pass one.
 */
import { readFileSync } from 'node:fs';
import { isPilotError, fail } from '../core/errors.js';

const warned = new Set<string>();

/** Say once per flag that a secret given on argv is visible to other users. */
export function warnSecretOnArgv(flag: string, instead: string): void {
  if (warned.has(flag)) return;
  warned.add(flag);
  process.stderr.write(
    `warning: ${flag} on the command line is visible to every user of this machine (ps) and in shell history; use ${instead} instead\n`,
  );
}

/** A secret read from FILE (or stdin for "-"), without its trailing line break. */
export function readSecretFile(file: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw fail.flagFileUnreadable({ flag, file, code: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
  }
  return text.replace(/\r?\n$/, '');
}

/**
 * The secret from, in order: the argv flag (with a warning), the file flag, the environment
 * variable. Undefined when none is given.
 */
export function secretFrom(src: { value?: string; flag: string; file?: string; fileFlag: string; env?: string }): string | undefined {
  if (src.value !== undefined) {
    warnSecretOnArgv(src.flag, `${src.fileFlag} FILE${src.env ? ` or $${src.env}` : ''}`);
    return src.value;
  }
  if (src.file !== undefined) return readSecretFile(src.file, src.fileFlag);
  const v = src.env === undefined ? undefined : process.env[src.env];
  return v === undefined || v === '' ? undefined : v;
}

/**
 * An API validation error, with the API's field names (`body/secret`) replaced by the CLI's flags
 * the user typed. Other errors pass through unchanged.
 */
export function withFlagNames(err: unknown, flags: Record<string, { flag: string; hint?: string }>): unknown {
  if (!isPilotError(err) || err.code !== 'bad_request') return err;
  const fields = (err.details as { validation?: { fields?: { field: string; message?: string }[] } } | undefined)?.validation?.fields;
  const f = fields?.find((x) => flags[x.field] !== undefined);
  if (!f) return err;
  const m = flags[f.field]!;
  return fail.flagInvalid({ flag: m.flag, problem: f.message ?? 'is not valid', hint: m.hint || undefined }, { details: err.details });
}

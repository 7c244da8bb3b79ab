/**
 * What a secret value may hold. Secrets reach apps through their environment, and an env value
 * cannot hold NUL (exec fails, and the error would quote the value); other control bytes are
 * terminal escapes or binary that has no business in an env value. Tab, LF and CR stay allowed:
 * PEM keys and certificates are multi-line. The error names the character, never the value.
 */
import { fail } from './errors.js';

const FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** The name of the first forbidden character in `value` and where it is, or undefined. */
export function secretValueProblem(value: string): string | undefined {
  const m = FORBIDDEN.exec(value);
  if (!m) return undefined;
  const code = m[0].charCodeAt(0);
  const name =
    code === 0
      ? 'a NUL byte'
      : code === 0x7f
        ? 'a DEL character'
        : `the control character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return `${name} at position ${m.index + 1}`;
}

/** Throw bad_request (naming `what`, never showing the value) unless `value` is a valid secret value. */
export function assertSecretValue(value: string, what: string): string {
  const problem = secretValueProblem(value);
  if (problem !== undefined) {
    throw fail.secretValueRefused({ what, problem });
  }
  return value;
}

import { fail } from '../core/errors.js';

/** A port given on the command line (0: any free one). */
export function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw fail.invalidPortFlag({ flag, value });
  }
  return n;
}

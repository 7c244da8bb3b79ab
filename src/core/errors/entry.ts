import type { ErrorCode } from './codes.js';

/**
 * One error a user can see (the shape of Astro's `errors-data.ts`): its wire code, its message and
 * optionally its hint, each a string or a function of the entry's parameters. The parameters a call
 * site must pass are inferred from these functions (see `fail` in ../errors.ts).
 */
export interface ErrorEntry {
  readonly code: ErrorCode;
  readonly message: string | ((p: never) => string);
  /** A hint function may return undefined: the code's default hint is used then. */
  readonly hint?: string | ((p: never) => string | undefined);
}

/** One area's entries, keyed by their name (camelCase, unique across the whole catalogue). */
export type ErrorEntries = Record<string, ErrorEntry>;

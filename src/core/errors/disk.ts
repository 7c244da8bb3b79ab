import type { ErrorEntries } from './entry.js';

/** Errors raised in src/disk/. */
export const diskErrors = {
  diskFull: {
    code: 'disk_full',
    message: (p: { what: string; quota: string; where: string; code: string; value: string; needed: string }) =>
      `${p.what}: ${p.quota} holding ${p.where} is full (${p.code}${p.value})${p.needed}`,
  },
} as const satisfies ErrorEntries;

import type { ErrorEntries } from './entry.js';

/** Errors raised in src/disk/. */
export const diskErrors = {
  diskFull: {
    code: 'disk_full',
    message: (p: { what: string; where: string; code: string; free: string | undefined; needed: string | undefined }) =>
      `${p.what}: ${p.code === 'EDQUOT' ? 'the disk quota' : 'the filesystem'} holding ${p.where} is full (${p.code}${
        p.free === undefined ? '' : `, ${p.free} free`
      })${p.needed === undefined ? '' : `; it needs ${p.needed}`}`,
  },
} as const satisfies ErrorEntries;

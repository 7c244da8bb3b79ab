import type { ErrorEntries } from './entry.js';

/** Errors raised in src/api/. */
export const apiErrors = {
  cannotReachServer: {
    code: 'server_unreachable',
    message: (p: { baseUrl: string; cause: string }) => `cannot reach the Pilot server at ${p.baseUrl}: ${p.cause}`,
  },
} as const satisfies ErrorEntries;

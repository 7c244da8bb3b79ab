import type { ErrorEntries } from './entry.js';

const LIST_HINT = 'Give the control plane addresses as http(s) URLs separated by commas: --server http://cp1:7070,http://cp2:7070';

/** Errors raised in src/api/. */
export const apiErrors = {
  cannotReachServer: {
    code: 'server_unreachable',
    message: (p: { baseUrl: string; cause: string }) => `cannot reach the Pilot server at ${p.baseUrl}: ${p.cause}`,
  },
  everyServerFailed: {
    code: 'server_unreachable',
    message: (p: { attempts: string }) => `no Pilot server answered: ${p.attempts}`,
    hint: 'Check that at least one of these control-plane replicas runs and is reachable from here (`curl URL/healthz`); the list comes from --server or PILOT_SERVER.',
  },
  mayHaveArrived: {
    code: 'server_unreachable',
    message: (p: { baseUrl: string; cause: string }) =>
      `cannot reach the Pilot server at ${p.baseUrl}: ${p.cause}; not retried on another address, as it may have received the request`,
    hint: 'Check whether it took effect (`pilot status APP`, `pilot runs`) before running it again.',
  },
  serverListEmptyEntry: {
    code: 'invalid_argument',
    message: (p: { source: string; position: number; count: number }) =>
      `${p.source}: entry ${p.position} of ${p.count} is empty (two commas in a row, or one at an end)`,
    hint: LIST_HINT,
  },
  serverListBadEntry: {
    code: 'invalid_argument',
    message: (p: { source: string; entry: string; why: string }) =>
      `${p.source}: ${JSON.stringify(p.entry)} is not a server address: ${p.why}`,
    hint: LIST_HINT,
  },
  serverListDuplicate: {
    code: 'invalid_argument',
    message: (p: { source: string; entry: string; first: number; position: number }) =>
      `${p.source}: ${p.entry} is given twice (entries ${p.first} and ${p.position})`,
    hint: 'Name each control-plane replica once.',
  },
} as const satisfies ErrorEntries;

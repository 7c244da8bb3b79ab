import type { ErrorEntries } from './entry.js';

/** Errors raised in src/os/. */
export const osErrors = {
  emptyCommand: {
    code: 'invalid_config',
    message: "empty command",
  },
  cannotRun: {
    code: 'build_failed',
    message: (p: { shown: string; message: string }) => `cannot run ${p.shown}: ${p.message}`,
  },
  stepTimedOutAfter: {
    code: 'step_timeout',
    message: (p: { shown: string; timeoutMs: string }) => `step \`${p.shown}\` timed out after ${p.timeoutMs}`,
  },
  step: {
    code: 'build_failed',
    message: (p: { argv: string; how: string; lines: string }) => `step \`${p.argv}\` ${p.how}${p.lines}`,
  },
  stepCancelled: {
    code: 'cancelled',
    message: (p: { shown: string }) => `step \`${p.shown}\` was cancelled`,
  },
  cannotRunWorkingFolder: {
    code: 'build_failed',
    message: (p: { shown: string; cwd: string }) => `cannot run \`${p.shown}\`: working folder ${p.cwd} does not exist`,
  },
  notExecutablePermissionDenied: {
    code: 'build_failed',
    message: (p: { file: string }) => `\`${p.file}\` is not executable (permission denied)`,
  },
  cannotRun2: {
    code: 'build_failed',
    message: (p: { shown: string; message: string }) => `cannot run \`${p.shown}\`: ${p.message}`,
  },
  noFreePortAfter: {
    code: 'unavailable',
    message: (p: { host: string; maxTries: number }) => `no free port on ${p.host} after ${p.maxTries} tries`,
  },
} as const satisfies ErrorEntries;

import type { ErrorEntries } from './entry.js';

/** Errors raised in src/os/. */
export const osErrors = {
  emptyCommand: {
    code: 'invalid_config',
    message: 'empty command',
  },
  spawnFailed: {
    code: 'build_failed',
    message: (p: { shown: string; message: string }) => `cannot run ${p.shown}: ${p.message}`,
  },
  stepTimeout: {
    code: 'step_timeout',
    message: (p: { shown: string; timeoutMs: string }) => `step \`${p.shown}\` timed out after ${p.timeoutMs}`,
  },
  stepFailed: {
    code: 'build_failed',
    message: (p: { argv: string; how: string; lines: string }) => `step \`${p.argv}\` ${p.how}${p.lines}`,
  },
  stepCancelled: {
    code: 'cancelled',
    message: (p: { shown: string }) => `step \`${p.shown}\` was cancelled`,
  },
  cwdMissing: {
    code: 'build_failed',
    message: (p: { shown: string; cwd: string }) => `cannot run \`${p.shown}\`: working folder ${p.cwd} does not exist`,
  },
  notExecutable: {
    code: 'build_failed',
    message: (p: { file: string }) => `\`${p.file}\` is not executable (permission denied)`,
  },
  commandCannotRun: {
    code: 'build_failed',
    message: (p: { shown: string; message: string }) => `cannot run \`${p.shown}\`: ${p.message}`,
  },
  noFreePort: {
    code: 'unavailable',
    message: (p: { host: string; maxTries: number }) => `no free port on ${p.host} after ${p.maxTries} tries`,
  },
  commandNotFound: {
    code: 'build_failed',
    message: (p: { file: string; where: string }) => `\`${p.file}\` not found${p.where}`,
    // yarn and pnpm are provided by Pilot for the app's lockfile or packageManager; a script that
    // calls another manager than the app's own needs it named.
    hint: (p: { file: string; where: string }) =>
      p.file === 'yarn' || p.file === 'pnpm'
        ? `Pilot provides ${p.file} when the app uses it: add a ${p.file === 'yarn' ? 'yarn.lock' : 'pnpm-lock.yaml'}, or name it in package.json ("packageManager": "${p.file}@<version>").`
        : 'Install it on the build machine, or change the build commands in pilot.yaml.',
  },
} as const satisfies ErrorEntries;

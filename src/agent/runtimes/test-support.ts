/**
 * Test helpers for runtimes: a tiny app written to a temp dir, polling, and killing by pid.
 * Used by the *.test.ts files only; nothing here is part of the agent.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readProcStat } from '../../os/proc.js';

/**
 * The test app. Modes: serve (default), tick (a line every 50 ms), ignore-term (traps SIGTERM),
 * parent (spawns an ignore-term child in the same process group, like npm start → node). Prints its pid,
 * its env and "ready" once its signal handlers are in place.
 */
export const APP_SOURCE = `
import { spawn } from 'node:child_process';
const mode = process.argv[2] ?? 'serve';
console.log('pid ' + process.pid);
console.log('env ' + JSON.stringify(process.env));
console.error('hello on stderr');
if (mode === 'ignore-term') process.on('SIGTERM', () => console.log('ignored SIGTERM'));
if (mode === 'tick') { let n = 0; setInterval(() => console.log('tick ' + n++), 50); }
if (mode === 'parent') spawn(process.execPath, [process.argv[1], 'ignore-term'], { stdio: 'inherit' });
if (mode !== 'parent') console.log('ready');
setInterval(() => {}, 1 << 30);
`;

export interface AppDir {
  readonly root: string;
  readonly app: string;
  remove(): Promise<void>;
}

/** A temp dir holding app.mjs; remove() deletes it. */
export async function makeAppDir(): Promise<AppDir> {
  const root = await mkdtemp(join(tmpdir(), 'pilot-rt-'));
  const app = join(root, 'app.mjs');
  await writeFile(app, APP_SOURCE);
  return { root, app, remove: () => rm(root, { recursive: true, force: true }) };
}

/** Poll `cond` every 20 ms until true; throws after timeoutMs with `what` in the message. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * SIGKILL a process and its group, for test cleanup and simulated crashes; a pid that now names
 * another process (startTime differs) is left alone. Safe to call twice.
 */
export function killByPid(pid: number, startTime?: string): void {
  const st = readProcStat(pid);
  if (st !== undefined && startTime !== undefined && st.startTime !== startTime) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // already gone, or not a group leader
    }
  }
}

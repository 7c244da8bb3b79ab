/**
 * `pilot up` / `pilot server` keep the router in a process of its own (router/router-process.ts)
 * so that traffic outlives the control plane. This file finds, starts and watches that process:
 *
 * - A router recorded in $PILOT_HOME/router/router.json that is still the same process (pid and
 *   start time) is adopted, as long as it listens where asked (port 0 = anywhere): a control plane
 *   that was killed and restarted finds its router serving and leaves it alone.
 * - Otherwise one is started detached (its own session: a kill of `pilot up`, even of its process
 *   group from a terminal, does not take it down), logging to $PILOT_HOME/logs/router.log.
 * - Every 500 ms the supervisor checks it is alive and starts a new one on the same port if not
 *   (the new one serves the table saved on disk at once).
 * - Neither a stop of `pilot up` (SIGINT/SIGTERM: a restart) nor a crash stops the router: traffic
 *   goes on with the last table. `pilot down` stops `pilot up` and then the router.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isSameProcess } from '../os/proc.js';
import { fail } from '../core/errors.js';
import { readRouterFile, type RouterProcessFile } from '../router/router-process.js';

const PILOT_BIN = new URL('../../../bin/pilot.js', import.meta.url).pathname;

export interface SupervisedRouter {
  readonly url: string;
  /** Its HTTPS port, when it serves HTTPS. */
  readonly httpsPort?: number;
  readonly adopted: boolean;
  /** Stop watching (the router keeps running). */
  detach(): void;
  /** Stop watching and stop the router. */
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const live = (f: RouterProcessFile): boolean => f.startTime !== '' && isSameProcess(f.pid, f.startTime);

async function terminate(f: RouterProcessFile, graceMs = 12_000): Promise<void> {
  try {
    process.kill(f.pid, 'SIGTERM');
  } catch {
    return;
  }
  const end = performance.now() + graceMs;
  while (performance.now() < end && isSameProcess(f.pid, f.startTime)) await sleep(50);
  if (isSameProcess(f.pid, f.startTime)) process.kill(f.pid, 'SIGKILL');
}

async function spawnRouter(home: string, host: string, port: number, extraArgs: readonly string[] = []): Promise<RouterProcessFile> {
  mkdirSync(join(home, 'logs'), { recursive: true, mode: 0o700 });
  const logFile = join(home, 'logs', 'router.log');
  const out = openSync(logFile, 'a', 0o600);
  const child = spawn(
    process.execPath,
    ['--max-semi-space-size=2', PILOT_BIN, 'router', '--host', host, '--port', String(port), ...extraArgs],
    {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, PILOT_HOME: home },
    },
  );
  closeSync(out);
  child.unref();
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  const end = performance.now() + 30_000;
  while (performance.now() < end) {
    const f = readRouterFile(home);
    if (f && f.pid === child.pid) return f;
    if (exited !== undefined) {
      const tail = readFileSync(logFile, 'utf8').split('\n').filter(Boolean).slice(-3).join(' | ');
      // The HTTP port, or the HTTPS one (--https-port): the one the error names.
      // HAProxy (--haproxy) says "cannot bind socket (Address already in use) for [host:port]".
      const inUse =
        /Address already in use\) for \[[^\]|]*:(\d+)\]/.exec(tail) ?? /(?:EADDRINUSE|cannot listen on)[^|]*?:(\d+)(?:\D|$)/.exec(tail);
      if (inUse) throw fail.routerPortInUse({ host, port: Number(inUse[1]) });
      throw fail.routerExitedEarly({ exited, tail });
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw fail.routerStartTimeout({ logFile });
}

/** `pilot down`: stop the `pilot up` / `pilot server` of this home (if any), then its router process. Apps keep running. */
export async function stopAll(home: string): Promise<{ server: number | undefined; router: number | undefined }> {
  let server: number | undefined;
  try {
    const s = JSON.parse(readFileSync(join(home, 'server.json'), 'utf8')) as { pid: number };
    process.kill(s.pid, 'SIGTERM');
    server = s.pid;
    const end = performance.now() + 15_000;
    while (performance.now() < end) {
      try {
        process.kill(s.pid, 0);
      } catch {
        break;
      }
      await sleep(50);
    }
  } catch {
    // no server recorded, or it is gone already
  }
  const r = readRouterFile(home);
  if (r && live(r)) {
    await terminate(r);
    return { server, router: r.pid };
  }
  return { server, router: undefined };
}

/** Adopt the router of a previous `pilot up`, or start one; then keep it alive. */
export async function superviseRouter(
  home: string,
  host: string,
  port: number,
  log: Logger,
  extraArgs: readonly string[] = [],
  /** HTTPS wanted on this port (0: any); undefined: no HTTPS. A router that differs is replaced. */
  httpsPort?: number,
): Promise<SupervisedRouter> {
  const found = readRouterFile(home);
  let current: RouterProcessFile;
  let adopted = false;
  const httpsAsWanted = (f: RouterProcessFile): boolean =>
    httpsPort === undefined ? f.httpsPort === undefined : f.httpsPort !== undefined && (httpsPort === 0 || f.httpsPort === httpsPort);
  if (found && live(found) && found.host === host && (port === 0 || found.port === port) && httpsAsWanted(found)) {
    adopted = true;
    current = found;
    log.info({ pid: current.pid, url: current.url }, 'router process adopted');
  } else {
    if (found && live(found)) await terminate(found); // listening elsewhere than asked
    current = await spawnRouter(home, host, port, extraArgs);
    log.info({ pid: current.pid, url: current.url }, 'router process started');
  }
  let watching = true;
  let respawning = false;
  const timer = setInterval(() => {
    if (!watching || respawning || live(current)) return;
    respawning = true;
    log.error({ pid: current.pid }, 'router process died; starting a new one');
    spawnRouter(home, host, current.port, extraArgs)
      .then((f) => {
        current = f;
        log.info({ pid: f.pid, url: f.url }, 'router process started');
      })
      .catch((err: unknown) => log.error({ err }, 'router process could not be restarted; trying again'))
      .finally(() => (respawning = false));
  }, 500);
  timer.unref();
  return {
    url: current.url,
    ...(current.httpsPort !== undefined ? { httpsPort: current.httpsPort } : {}),
    adopted,
    detach: () => {
      watching = false;
      clearInterval(timer);
    },
    stop: async () => {
      watching = false;
      clearInterval(timer);
      if (live(current)) await terminate(current);
    },
  };
}

/** `pilot up`: everything on this machine: control plane, router, one local agent. */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.js';
import { LogDestination } from '../control/log-destination.js';
import { installProcessGuards } from '../control/process-guard.js';
import { startControlPlane } from '../control/server.js';
import { PilotError } from '../core/errors.js';
import { pilotHome } from './context.js';
import { defaultRuntimeCacheDir } from '../node-runtime/build-env.js';

export interface UpOptions {
  host: string;
  apiPort: string;
  routerPort: string;
  routerHost: string;
  agent: boolean;
  verbose?: boolean;
  /** CIDRs of proxies in front of the router whose X-Forwarded-* are believed (repeatable). */
  trustedProxy?: string[];
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new PilotError('bad_request', `${flag} must be a port number from 0 to 65535 (got ${JSON.stringify(value)})`);
  }
  return n;
}

export async function up(opts: UpOptions): Promise<void> {
  const home = pilotHome();
  mkdirSync(join(home, 'logs'), { recursive: true, mode: 0o700 });
  const logFile = join(home, 'logs', 'pilot.log');
  // Never pino's own file destination: it blocks or dies on a full disk (control/log-destination.ts).
  const dest = new LogDestination(opts.verbose ? 1 : logFile);
  const log = pino({ level: process.env.PILOT_LOG_LEVEL ?? 'info' }, dest);
  installProcessGuards(log);
  const cp = await startControlPlane({
    home,
    host: opts.host,
    port: port(opts.apiPort, '--api-port'),
    routerHost: opts.routerHost,
    routerPort: port(opts.routerPort, '--router-port'),
    logger: log,
    logStats: () => dest.stats,
    ...(opts.trustedProxy ? { trustedProxies: opts.trustedProxy } : {}),
  });
  writeFileSync(join(home, 'server.json'), JSON.stringify({ api: cp.apiUrl, router: cp.routerUrl, pid: process.pid }), { mode: 0o600 });
  let agent: Agent | undefined;
  if (opts.agent) {
    agent = new Agent({ server: cp.apiUrl, joinToken: cp.joinToken, home: join(home, 'agent'), runtimesDir: defaultRuntimeCacheDir(), name: 'local', address: '127.0.0.1', log: log.child({ part: 'agent' }) });
    await agent.start();
  }
  const lines = [
    `pilot is up (state in ${home})`,
    `  control plane  ${cp.apiUrl}`,
    `  router         ${cp.routerUrl}   (apps answer at http://<app>.localhost:${new URL(cp.routerUrl).port})`,
    opts.agent ? `  agent          local (127.0.0.1)` : '  agent          none (start one with `pilot agent`)',
    `  log            ${opts.verbose ? 'stdout' : logFile}`,
  ];
  if (cp.adminTokenCreated) {
    lines.push('', `admin token (shown once; also in ${join(home, 'admin-token')}, mode 0600):`, `  ${cp.adminToken}`);
  }
  const iso = agent?.isolationReport;
  if (iso) lines.push(`  isolation      ${iso.user ? 'each app runs as its own uid' : 'apps run as this user'}; ${iso.cgroup ? `cgroup ${iso.cgroupVersion ?? ''} limits` : 'no cgroups'}`);
  if (iso?.reason) lines.push(`warning: app isolation incomplete: ${iso.reason}`);
  lines.push('', 'deploy the example:  npx pilot run examples/hello');
  process.stdout.write(lines.join('\n') + '\n');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: stopping (apps keep running and are re-adopted by the next \`pilot up\`)\n`);
    void (async () => {
      await agent?.close();
      await cp.close();
      rmSync(join(home, 'server.json'), { force: true });
      dest.end();
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/**
 * `pilot up`: everything on this machine: control plane, router (a process of its own, so that
 * traffic outlives the control plane: cli/router-supervisor.ts), one local agent.
 */
import { checkArtifactsSpec } from '../artifacts/open-blob-store.js';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.js';
import { LogDestination } from '../control/log-destination.js';
import { installProcessGuards } from '../control/process-guard.js';
import { startControlPlane } from '../control/server.js';
import { storeChoice } from '../control/control-store.js';
import { maskUrl } from '../store/pg-url.js';
import { fail } from '../core/errors.js';
import { port } from './port-flag.js';
import { pilotHome, type ServerFile } from './context.js';
import { defaultRuntimeCacheDir } from '../node-runtime/build-env.js';
import { superviseRouter } from './router-supervisor.js';
import { TargetSupervisor } from '../swarm/targets.js';
import { DEFAULT_HAPROXY_BIN, trafficModeOf } from '../haproxy/haproxy-router.js';

/** PILOT_HTTPS_PORT, checked as the control plane checks it. */
function httpsPortOf(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw fail.invalidHttpsPort({ value: raw });
  return n;
}

export interface UpOptions {
  host: string;
  apiPort: string;
  routerPort: string;
  routerHost: string;
  agent: boolean;
  verbose?: boolean;
  /** CIDRs of proxies in front of the router whose X-Forwarded-* are believed (repeatable). */
  trustedProxy?: string[];
  freshDatabase?: boolean;
  /** What serves app traffic in the router process: pilot (embedded router) or haproxy. */
  router?: string;
  /** `pilot server --store URL` / `--store-file FILE` (control/control-store.ts). */
  store?: string;
  storeFile?: string;
  /** Where blobs are kept (--artifacts): oci://… or oci+http://… (a registry), or an absolute folder replicas share; default PILOT_ARTIFACTS, else $PILOT_HOME/artifacts. */
  artifacts?: string;
}

export async function up(opts: UpOptions): Promise<void> {
  const home = pilotHome();
  mkdirSync(join(home, 'logs'), { recursive: true, mode: 0o700 });
  const logFile = join(home, 'logs', 'pilot.log');
  // Never pino's own file destination: it blocks or dies on a full disk (control/log-destination.ts).
  const dest = new LogDestination(opts.verbose ? 1 : logFile);
  const log = pino({ level: process.env.PILOT_LOG_LEVEL ?? 'info' }, dest);
  installProcessGuards(log);
  const apiPort = port(opts.apiPort, '--api-port');
  // Checked before anything starts: a bad URL is a plain error.
  const store = storeChoice({ flag: opts.store, file: opts.storeFile, env: process.env.PILOT_STORE });
  const artifacts = opts.artifacts ?? (process.env.PILOT_ARTIFACTS || undefined);
  if (artifacts !== undefined) checkArtifactsSpec(artifacts); // a bad one is said before any file is made
  const routerPort = port(opts.routerPort, '--router-port');
  const routerKind = opts.router ?? 'pilot';
  if (routerKind !== 'pilot' && routerKind !== 'haproxy') throw fail.invalidRouterKind({ value: routerKind });
  if (routerKind === 'haproxy') {
    const bin = process.env.PILOT_HAPROXY_BIN ?? DEFAULT_HAPROXY_BIN;
    if (!existsSync(bin)) throw fail.haproxyMissing({ bin });
    trafficModeOf(process.env.PILOT_HAPROXY_TRAFFIC); // a bad one is said before anything starts
  }
  // A damaged database, discovered after the start, ends the process: a supervisor sees it, and the
  // router process keeps serving the last table meanwhile.
  const fatal = (err: unknown): void => {
    log.fatal({ err }, 'state database unusable; stopping');
    process.stderr.write(
      `error: the state database is unusable: ${(err as Error).message}\nhint: stop Pilot and \`pilot restore BACKUP-FILE\`\n`,
    );
    dest.end();
    process.exit(70);
  };
  // HTTPS (PILOT_HTTPS_PORT) is served by the router process with the certificates the control
  // plane sends it (router/table-sync.ts), so HTTPS outlives the control plane as HTTP does.
  const httpsRaw = process.env.PILOT_HTTPS_PORT ?? '';
  const httpsPort = httpsRaw === '' ? undefined : httpsPortOf(httpsRaw);
  const cp = await startControlPlane({
    home,
    host: opts.host,
    port: apiPort,
    routerHost: opts.routerHost,
    routerPort,
    logger: log,
    logStats: () => dest.stats,
    ...(opts.trustedProxy ? { trustedProxies: opts.trustedProxy } : {}),
    router: 'process',
    freshDatabase: opts.freshDatabase ?? false,
    onFatal: fatal,
    store,
    ...(artifacts !== undefined ? { artifacts } : {}),
  });
  let router: Awaited<ReturnType<typeof superviseRouter>>;
  try {
    // The router process believes the same proxies (it sets X-Forwarded-* itself otherwise).
    const routerArgs = [
      ...(opts.trustedProxy ?? []).flatMap((c) => ['--trusted-proxy', c]),
      ...(routerKind === 'haproxy' ? ['--haproxy'] : []),
      ...(httpsPort !== undefined ? ['--https-port', String(httpsPort)] : []),
    ];
    router = await superviseRouter(home, opts.routerHost, routerPort, log.child({ part: 'router' }), routerArgs, httpsPort);
  } catch (err) {
    await cp.close();
    throw err;
  }
  const acmeDirectory = httpsPort !== undefined ? process.env.PILOT_ACME_DIRECTORY || undefined : undefined;
  // routerKind and acmeDirectory tell `pilot doctor` what to check on this machine.
  const serverFile: ServerFile = {
    api: cp.apiUrl,
    router: router.url,
    pid: process.pid,
    routerKind,
    ...(acmeDirectory ? { acmeDirectory } : {}),
  };
  writeFileSync(join(home, 'server.json'), JSON.stringify(serverFile), { mode: 0o600 });
  let agent: Agent | undefined;
  if (opts.agent) {
    agent = new Agent({
      server: cp.apiUrl,
      joinToken: cp.joinToken,
      home: join(home, 'agent'),
      runtimesDir: defaultRuntimeCacheDir(),
      name: 'local',
      address: '127.0.0.1',
      log: log.child({ part: 'agent' }),
    });
    await agent.start();
  }
  // Deploy targets (`pilot targets add`): one Swarm bridge each, in this process (the leader's, with replicas).
  const targets = new TargetSupervisor({
    server: cp.apiUrl,
    adminToken: cp.adminToken,
    home,
    log: log.child({ part: 'targets' }),
    active: () => cp.leadership().leading(),
  });
  targets.start();
  const lines = [
    `pilot is up (state in ${home})`,
    `  control plane  ${cp.apiUrl}`,
    ...(store.kind === 'postgres'
      ? [
          `  store          ${maskUrl(store.url)} (this replica ${cp.leadership().leading() ? 'leads' : 'follows'}; \`pilot status\` shows the replicas)`,
        ]
      : []),
    `  dashboard      ${cp.apiUrl}/   (sign in with the admin token)`,
    `  router         ${router.url}   (apps answer at http://<app>.localhost:${new URL(router.url).port}; ${router.adopted ? 'already running, kept' : 'its own process'})`,
    ...(router.httpsPort !== undefined ? [`  https          port ${router.httpsPort}   (certificates: \`pilot certs\`)`] : []),
    opts.agent ? `  agent          local (127.0.0.1)` : '  agent          none (start one with `pilot agent`)',
    `  artifacts      ${cp.artifacts}`,
    `  log            ${opts.verbose ? 'stdout' : logFile}`,
  ];
  if (cp.adminTokenCreated) {
    lines.push('', `admin token (shown once; also in ${join(home, 'admin-token')}, mode 0600):`, `  ${cp.adminToken}`);
  }
  const iso = agent?.isolationReport;
  if (iso)
    lines.push(
      `  isolation      ${iso.user ? 'each app runs as its own uid' : 'apps run as this user'}; ${iso.cgroup ? `cgroup ${iso.cgroupVersion ?? ''} limits` : 'no cgroups'}`,
    );
  if (iso?.reason) lines.push(`warning: app isolation incomplete: ${iso.reason}`);
  lines.push('', 'deploy the example:  npx pilot run examples/hello');
  process.stdout.write(lines.join('\n') + '\n');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(
      `\n${signal}: stopping (apps and the router keep running and are adopted by the next \`pilot up\`; \`pilot down\` stops the router)\n`,
    );
    void (async () => {
      try {
        router.detach();
        await targets.stop();
        await agent?.close();
        await cp.close();
      } finally {
        rmSync(join(home, 'server.json'), { force: true });
        dest.end();
        process.exit(0);
      }
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** `pilot agent --server URL[,URL…] --token JOIN`: run this machine as a node of a Pilot fleet. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { fail } from '../core/errors.js';
import { isValidName } from '../core/names.js';
import { LABEL_KEY } from '../api/protocol-constants.js';
import { LogDestination } from '../control/log-destination.js';
import type { Log as Logger } from '../core/log.js';
import { jsonLog } from '../os/json-log.js';
import { installProcessGuards } from '../control/process-guard.js';
import { pilotHome } from './context.js';
import { secretFrom } from './secret-input.js';
import { port } from './port-flag.js';
import { listenError } from '../core/listen-error.js';
import { parseServerList } from '../api/server-list.js';

// key=value, the key as the agent protocol allows it (LABEL_KEY without its anchors).
const LABEL_ARG = new RegExp(`^(${LABEL_KEY.slice(1, -1)})=(\\S{0,63})$`);

/** The node's credential from node.json, once the agent has registered. */
function nodeCredential(file: string): string | undefined {
  try {
    const c = (JSON.parse(readFileSync(file, 'utf8')) as { credential?: unknown }).credential;
    return typeof c === 'string' && c !== '' ? c : undefined;
  } catch {
    return undefined;
  }
}

/** The node router, loaded only when asked for: an agent without one stays small. */
async function startRouterOnNode(
  agentHome: string,
  host: string,
  routerPort: number,
  httpsPort: number | undefined,
  servers: readonly string[],
  log: Logger,
) {
  const { startNodeRouter } = await import('../router/node-router.js');
  return startNodeRouter({
    agentHome,
    host,
    port: routerPort,
    ...(httpsPort !== undefined ? { httpsPort } : {}),
    servers,
    credential: () => nodeCredential(join(agentHome, 'node.json')),
    log: log.child({ part: 'router' }),
  }).catch((err: unknown) => {
    const https = httpsPort !== undefined && (err as { port?: unknown }).port === httpsPort && httpsPort !== routerPort;
    throw listenError(err, https ? 'router (HTTPS)' : 'router', host, https ? httpsPort : routerPort);
  });
}

export async function agent(opts: {
  server?: string;
  token?: string;
  tokenFile?: string;
  name?: string;
  address: string;
  label?: string[];
  routerPort?: string;
  routerHost?: string;
  httpsPort?: string;
}): Promise<void> {
  const server = opts.server ?? process.env.PILOT_SERVER;
  const token = secretFrom({ value: opts.token, flag: '--token', file: opts.tokenFile, fileFlag: '--token-file', env: 'PILOT_JOIN_TOKEN' });
  if (!server) throw fail.agentNeedsServer();
  // One address or several replicas' (`--server http://cp1:7070,http://cp2:7070`): each entry checked here.
  const servers = parseServerList(server, opts.server !== undefined ? '--server' : 'PILOT_SERVER');
  if (!token) throw fail.agentNeedsJoinToken();
  const name =
    opts.name ??
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .replace(/^[^a-z]+/, '');
  if (!isValidName(name)) throw fail.invalidNode({ name });
  const labels: Record<string, string> = {};
  for (const l of opts.label ?? []) {
    const m = LABEL_ARG.exec(l);
    if (!m) throw fail.invalidLabel({ l });
    labels[m[1]!] = m[2]!;
  }
  const routerPort = opts.routerPort === undefined ? undefined : port(opts.routerPort, '--router-port');
  if (opts.routerHost !== undefined && routerPort === undefined) throw fail.routerHostWithoutPort();
  const httpsPort = opts.httpsPort === undefined ? undefined : port(opts.httpsPort, '--https-port');
  if (httpsPort !== undefined && routerPort === undefined) throw fail.httpsPortWithoutRouterPort();
  const log = jsonLog({ level: process.env.PILOT_LOG_LEVEL ?? 'info', sink: new LogDestination(1) });
  installProcessGuards(log);
  const agentHome = join(pilotHome(), 'agent');
  // The node router starts first, from its saved table: it serves even when the control plane is
  // down and the agent cannot register yet (router/node-router.ts).
  const routerHost = opts.routerHost ?? opts.address;
  const router = routerPort === undefined ? undefined : await startRouterOnNode(agentHome, routerHost, routerPort, httpsPort, servers, log);
  if (router)
    process.stdout.write(
      `router listening on ${router.url}${router.httpsPort !== undefined ? ` and https port ${router.httpsPort}` : ''}\n`,
    );
  const a = new Agent({
    server: servers.join(','),
    joinToken: token,
    home: agentHome,
    name,
    address: opts.address,
    log,
    labels,
  });
  await a.start();
  process.stdout.write(`agent ${name} joined ${servers.join(',')} (instances reachable at ${opts.address})\n`);
  if (a.isolationReport.reason) process.stdout.write(`warning: app isolation incomplete: ${a.isolationReport.reason}\n`);
  const stop = (): void =>
    void Promise.all([a.close(), router?.close()])
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'stopping'))
      .then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

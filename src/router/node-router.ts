/**
 * A router on a node (`pilot agent --router-port N`): the same router as everywhere, run inside the
 * agent's process, fed by the control plane and able to serve without it.
 *
 *   control plane ──POST /api/v1/router/sync (the node's credential, long poll)──► { version, routes? }
 *        ▲            reports { version applied, in flight per upstream, traffic: { url, token } }
 *        ├── GET <traffic url>/traffic (that token) ── /api/v1/apps/:app/traffic, canary analysis
 *        └──────────────────────────── node router ── $PILOT_HOME/agent/router/table.json
 *
 * - It starts before the agent registers, serving the saved table at once: a node restarted while
 *   the control plane is down answers for every app it knew.
 * - It authenticates with the node's credential (node.json, written at registration); until there
 *   is one it retries. Never the admin token.
 * - Every node's router holds the whole table: any node answers for any app, instances on other
 *   nodes are reached at their address. No preference for this node's instances (README, "A router
 *   on every node").
 * - Its traffic figures (GET /traffic) and its pilot_router_* metrics (GET /metrics) are served on
 *   a second port on the same address, with a token made at each start and sent only in the sync
 *   body (TLS between nodes is the operator's, as for the agent API); the control plane relays
 *   both (GET /api/v1/nodes/:name/router/metrics).
 * - HTTPS (`--https-port`): the certificates of the hosts it routes come in the sync answer,
 *   are applied live (the next handshake gets them) and saved 0600 in router/tls.json, served
 *   from there after a restart without the control plane. ACME HTTP-01 answers come the same way
 *   (not saved), so whichever node the CA reaches answers the challenge.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Log as Logger } from '../core/log.js';
import { Registry } from 'prom-client';
import { bearer, tokensEqual } from '../api/auth.js';
import { ServerChooser } from '../api/failover.js';
import { TrustedProxies } from './headers.js';
import { RouterMetrics } from './metrics.js';
import { startRouter } from './proxy.js';
import { admitRoutes, RoutingTable } from './routing-table.js';
import { followControlPlane, loadTable, loadTls } from './table-sync.js';
import { AcmeChallenges, CertificateStore } from './tls.js';
import { serveTraffic, TRAFFIC_PATH } from './traffic-endpoint.js';

export interface NodeRouter {
  readonly url: string;
  readonly port: number;
  /** The HTTPS port, with `httpsPort`. */
  readonly httpsPort?: number;
  /** Where the control plane reads the figures (GET /traffic with the token sent in the sync). */
  readonly trafficUrl: string;
  inflightAll(): Record<string, number>;
  close(): Promise<void>;
}

export const nodeRouterDir = (agentHome: string): string => join(agentHome, 'router');

export async function startNodeRouter(o: {
  /** The agent's home ($PILOT_HOME/agent): the table is saved in its router/ folder. */
  agentHome: string;
  host: string;
  port: number;
  /** Serve HTTPS too, on this port (0: any), with the certificates the control plane sends. */
  httpsPort?: number;
  /** Control-plane base URLs, tried in turn after a failure. */
  servers: readonly string[];
  /** The node's credential, once the agent has registered (undefined before). */
  credential: () => string | undefined;
  log: Logger;
  trustedProxies?: string | undefined;
}): Promise<NodeRouter> {
  const { log } = o;
  const dir = nodeRouterDir(o.agentHome);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700); // made earlier with another mode (by hand, an older version): private all the same
  const table = new RoutingTable();
  const saved = loadTable(dir, log);
  const admitted = admitRoutes(saved.routes);
  if (admitted.problems.length > 0) log.warn({ problems: admitted.problems }, 'parts of the saved routing table left out');
  table.set(admitted.routes);
  const registry = new Registry();
  const metrics = new RouterMetrics(registry);
  const trusted = new TrustedProxies(o.trustedProxies ?? process.env.PILOT_TRUSTED_PROXIES, 'PILOT_TRUSTED_PROXIES');
  // Certificates: the saved ones at once (the control plane may be down), then the control plane's.
  // Every node router answers the ACME HTTP-01 challenges, HTTPS port or not: the CA may reach any node.
  const tls = { certs: new CertificateStore(), challenges: new AcmeChallenges() };
  const tlsVersion = loadTls(dir, tls, log);
  const router = await startRouter({
    host: o.host,
    port: o.port,
    table,
    metrics,
    trusted,
    challenges: tls.challenges,
    ...(o.httpsPort !== undefined ? { https: { port: o.httpsPort, certs: tls.certs } } : {}),
  });

  const trafficToken = randomBytes(24).toString('base64url');
  const admin = http.createServer((req, res) => {
    const t = bearer(req.headers.authorization);
    let url: URL | undefined;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      url = undefined; // an unparsable target is a 404 below, never a crash
    }
    if (t === undefined || !tokensEqual(t, trafficToken)) res.writeHead(401).end();
    else if (req.method === 'GET' && url?.pathname === TRAFFIC_PATH) serveTraffic(metrics, url, res);
    else if (req.method === 'GET' && url?.pathname === '/metrics')
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    else res.writeHead(404).end();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      admin.once('error', reject);
      admin.listen(0, o.host, resolve);
    });
  } catch (err) {
    await router.close();
    throw err;
  }
  const hostInUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  const trafficUrl = `http://${hostInUrl}:${(admin.address() as AddressInfo).port}`;
  log.info(
    {
      url: router.url,
      httpsPort: router.httpsPort,
      routes: saved.routes.length,
      certificates: tls.certs.hosts().length,
      engine: router.fastStats() === undefined ? 'node' : 'fast',
    },
    'node router started',
  );

  let closed = false;
  const servers = new ServerChooser(o.servers);
  const abort = new AbortController();
  const loop = followControlPlane({
    dir,
    table,
    version: saved.version,
    target: () => {
      const credential = o.credential();
      if (credential === undefined) throw new Error('this node has no credential yet (the agent has not registered)');
      return { api: servers.current, token: credential };
    },
    inflight: () => router.inflightAll(),
    log,
    signal: abort.signal,
    isClosed: () => closed,
    extra: { traffic: { url: trafficUrl, token: trafficToken } },
    onFailure: () => servers.failed(),
    tls: { ...tls, version: tlsVersion },
    self: { port: router.port, ...(router.httpsPort !== undefined ? { httpsPort: router.httpsPort } : {}) },
  });
  return {
    url: router.url,
    port: router.port,
    ...(router.httpsPort !== undefined ? { httpsPort: router.httpsPort } : {}),
    trafficUrl,
    inflightAll: () => router.inflightAll(),
    close: async () => {
      closed = true;
      abort.abort();
      admin.close();
      await router.close();
      await loop;
    },
  };
}

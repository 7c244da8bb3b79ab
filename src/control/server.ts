/**
 * The control plane process: REST API + artifact repository + reconcile loop + router, wired
 * together over one store. `startControlPlane` is what `pilot server` and `pilot up` run.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics, Gauge } from 'prom-client';
import { FsBlobStore } from '../artifacts/blob-store.js';
import { registerArtifactRoutes } from '../artifacts/routes.js';
import { scrubIntervalFromEnv, startBlobScrub } from '../artifacts/scrub.js';
import { PilotError } from '../core/errors.js';
import { RoutingTable } from '../router/routing-table.js';
import { TrustedProxies } from '../router/headers.js';
import type { LogDestinationStats } from './log-destination.js';
import { startRouter } from '../router/proxy.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { authenticateNode, registerAgentRoutes } from './agent-routes.js';
import { registerAppRoutes } from './app-routes.js';
import { gcIntervalFromEnv, gcSettingsFromEnv, registerArtifactGcRoutes, startArtifactGcTimer } from './artifact-gc.js';
import { bearer, loadOrCreateToken, tokensEqual } from './auth.js';
import { installErrorHandling } from './http-errors.js';
import { diskStatus } from '../disk/disk.js';
import { NodeMonitor } from './node-monitor.js';
import { DEFAULT_NODE_HEALTH } from '../core/node-health.js';
import { registerNodeRoutes } from './node-routes.js';
import { installBodyDeadline, slowClientServerOptions } from './slow-clients.js';
import { registerOpenApi } from './openapi.js';
import { PILOT_VERSION } from '../core/version.js';
import { Reconciler } from './reconciler.js';
import { registerRunRoutes } from './run-routes.js';
import { registerRuntimeRoutes } from './runtime-routes.js';
import { registerRegistryRoutes } from './registry-routes.js';
import { SecretBox } from './secrets.js';
import { registerSourceRoutes } from './source-routes.js';
import { RunWorker } from '../cd/worker.js';
import { registerWebhookRoutes } from '../cd/webhook-routes.js';

export interface ControlPlaneOptions {
  home: string;
  host: string;
  port: number;
  routerHost: string;
  routerPort: number;
  logger?: Logger;
  reconcileIntervalMs?: number;
  maxArtifactBytes?: number;
  /** How people and GitHub reach the API (links in commit statuses, webhook URLs). Default: the listen address. */
  publicUrl?: string;
  /** CD runs at once, across apps (one at a time per app). */
  workers?: number;
  /** Quiet period before a queued CD run starts (bursts of pushes coalesce). Default 2 s. */
  quietMs?: number;
  /** Artifact GC every this many ms (0 = off). Default: PILOT_GC_INTERVAL ("1h", "0"), else 1 h. */
  gcIntervalMs?: number;
  /** Re-hash every stored blob this often, quarantining corrupt ones (0 = off). Default: PILOT_SCRUB_INTERVAL, else 24 h. */
  scrubIntervalMs?: number;
  /** Proxies whose forwarding headers the router believes: CIDRs (--trusted-proxy, PILOT_TRUSTED_PROXIES). */
  trustedProxies?: readonly string[];
  /** The log destination's state (dropped lines while the disk was full), for /healthz. */
  logStats?: () => LogDestinationStats;
}

export interface ControlPlane {
  readonly apiUrl: string;
  readonly routerUrl: string;
  readonly adminToken: string;
  readonly adminTokenCreated: boolean;
  readonly joinToken: string;
  readonly api: FastifyInstance;
  /** Every route the API serves (method and URL pattern), as registered: the auth-walk test reads it. */
  readonly routes: readonly { method: string; url: string }[];
  close(): Promise<void>;
}

/** Routes that do not take the admin token: they authenticate their own way, or not at all. */
function authMode(method: string, url: string): 'none' | 'admin' | 'admin-or-node' | 'self' {
  const path = url.split('?')[0]!;
  if (path === '/healthz') return 'none';
  if (path.startsWith('/api/v1/agent/')) return 'self';
  if (path.startsWith('/hooks/')) return 'self'; // signed by the app's webhook secret
  if (path.startsWith('/api/v1/artifacts/') && (method === 'GET' || method === 'HEAD')) return 'admin-or-node';
  // An agent reports a download that did not hash to its digest (artifacts/routes.ts).
  if (method === 'POST' && /^\/api\/v1\/artifacts\/[^/]+\/verify$/.test(path)) return 'admin-or-node';
  return 'admin';
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.logger ?? pino({ level: process.env.PILOT_LOG_LEVEL ?? 'info' });
  // Checked before anything is opened: a bad --trusted-proxy is a plain error, nothing to clean up.
  const trusted = new TrustedProxies(opts.trustedProxies ?? process.env.PILOT_TRUSTED_PROXIES, opts.trustedProxies ? '--trusted-proxy' : 'PILOT_TRUSTED_PROXIES');
  mkdirSync(opts.home, { recursive: true, mode: 0o700 });
  const admin = loadOrCreateToken(join(opts.home, 'admin-token'), 'pilot_admin');
  const join_ = loadOrCreateToken(join(opts.home, 'join-token'), 'pilot_join');
  const store = new SqliteStore(join(opts.home, 'pilot.db'));
  const box = new SecretBox(join(opts.home, 'secret.key'));
  let publicUrl = opts.publicUrl ?? '';
  const cd: { worker?: RunWorker } = {}; // started once the API listens (it calls the API)
  const blobs = new FsBlobStore(join(opts.home, 'artifacts'));

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const table = new RoutingTable();
  const router = await startRouter({ host: opts.routerHost, port: opts.routerPort, table, registry, trusted }).catch((err: unknown) => {
    store.close();
    throw listenError(err, 'router', opts.routerHost, opts.routerPort);
  });
  const reconciler = new Reconciler(store, { set: (routes) => table.set(routes), inflight: (id) => router.inflight(id) }, log.child({ part: 'reconciler' }), {
    intervalMs: opts.reconcileIntervalMs ?? 250,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
  });
  const monitor = new NodeMonitor(store, log.child({ part: 'nodes' }), () => reconciler.nudge(), {
    suspectAfterMs: envMs('PILOT_NODE_SUSPECT_MS', DEFAULT_NODE_HEALTH.suspectAfterMs),
    downAfterMs: envMs('PILOT_NODE_DOWN_MS', DEFAULT_NODE_HEALTH.downAfterMs),
    intervalMs: envMs('PILOT_NODE_CHECK_MS', 250),
    probeTimeoutMs: 250,
  });
  reconciler.attachMonitor(monitor);
  new Gauge({
    name: 'pilot_instances',
    help: 'Instances known to the control plane, by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const i of await store.listInstances()) this.inc({ state: i.state });
    },
  });

  const api = Fastify({ loggerInstance: log.child({ part: 'api' }), bodyLimit: 1024 * 1024, http: slowClientServerOptions, logController: new LogController({ disableRequestLogging: true }) }) as unknown as FastifyInstance;
  installErrorHandling(api, opts.home);
  installBodyDeadline(api);
  const routes: { method: string; url: string }[] = [];
  api.addHook('onRoute', (r) => {
    for (const method of typeof r.method === 'string' ? [r.method] : r.method) routes.push({ method, url: r.url });
  });
  await registerOpenApi(api, PILOT_VERSION);
  api.addHook('onRequest', async (req) => {
    // A '..' segment (plain or percent-encoded) never names anything here: refuse it before routing.
    if (/(^|\/)(\.|%2e){2}(\/|\?|$)/i.test(req.url)) {
      throw new PilotError('bad_request', 'a ".." path segment is not allowed', { hint: 'Names are 1-63 characters: lowercase letters, digits and "-".' });
    }
    const mode = authMode(req.method, req.url);
    if (mode === 'none' || mode === 'self') return;
    const token = bearer(req.headers.authorization);
    if (token && tokensEqual(token, admin.token)) return;
    if (mode === 'admin-or-node' && token) {
      await authenticateNode(store, req);
      return;
    }
    throw new PilotError('unauthorized', token ? 'invalid token' : 'missing token: send "Authorization: Bearer <token>"');
  });
  // Liveness stays 200 while the process serves; a low disk or dropped log lines are reported,
  // for `pilot status` and for monitoring, not turned into a failed probe.
  // Anonymous callers (load balancers) learn only whether the disk is low; the admin token also
  // gets the path and figures.
  api.get('/healthz', async (req) => {
    const disk = await diskStatus(opts.home);
    const logStats = opts.logStats?.();
    const token = bearer(req.headers.authorization);
    const detailed = token !== undefined && tokensEqual(token, admin.token);
    return {
      ok: true,
      ...(disk ? { disk: detailed ? disk : { low: disk.low } } : {}),
      ...(logStats ? { log: detailed ? { droppedLines: logStats.dropped, failing: logStats.failing ?? null } : { failing: logStats.failing !== undefined } } : {}),
    };
  });
  api.get('/metrics', async (_req, reply) => {
    void reply.type(registry.contentType);
    return registry.metrics();
  });
  registerArtifactRoutes(api, { blobs, meta: { putMeta: (m) => store.putArtifactMeta(m), getMeta: (d) => store.getArtifactMeta(d), listMeta: (a) => store.listArtifactMeta(a) }, maxBytes: opts.maxArtifactBytes ?? 4 * 1024 ** 3 });
  registerAgentRoutes(api, { store, box, reconciler, joinToken: () => join_.token });
  registerAppRoutes(api, { store, box, blobs, reconciler });
  registerRunRoutes(api, { store, box, runsDir: join(opts.home, 'runs') });
  registerSourceRoutes(api, { store, box, publicUrl: () => publicUrl, home: opts.home });
  registerWebhookRoutes(api, { store, box, onQueued: () => cd.worker?.queued() });
  registerNodeRoutes(api, { store, reconciler });
  registerRuntimeRoutes(api, { store, blobs });
  registerRegistryRoutes(api, { store, box });
  registerArtifactGcRoutes(api, { store, blobs, reconciler, settings: () => gcSettingsFromEnv() });

  try {
    // A fleet's agents all reconnect at once after a restart: a deep accept queue rather than refused connections.
    await api.listen({ host: opts.host, port: opts.port, backlog: 4096 });
  } catch (err) {
    await router.close();
    store.close();
    throw listenError(err, 'control plane', opts.host, opts.port);
  }
  const addr = api.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  publicUrl ||= `http://${opts.host}:${port}`;
  const loopback = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  await reconciler.tick();
  reconciler.start();
  monitor.start();
  const worker = new RunWorker({ store, box, log: log.child({ part: 'cd' }), home: opts.home, apiUrl: `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${port}`, adminToken: admin.token, publicUrl, concurrency: opts.workers ?? 2, quietMs: opts.quietMs ?? envMs('PILOT_CD_QUIET_MS', 2000) });
  cd.worker = worker;
  await worker.start();
  const stopGc = startArtifactGcTimer({ store, blobs, reconciler }, log.child({ part: 'gc' }), opts.gcIntervalMs ?? gcIntervalFromEnv(), () => gcSettingsFromEnv());
  const stopScrub = startBlobScrub(blobs, log.child({ part: 'scrub' }), opts.scrubIntervalMs ?? scrubIntervalFromEnv());
  log.info({ api: `http://${opts.host}:${port}`, router: router.url }, 'control plane started');

  return {
    apiUrl: `http://${opts.host}:${port}`,
    routerUrl: router.url,
    adminToken: admin.token,
    adminTokenCreated: admin.created,
    joinToken: join_.token,
    api,
    routes,
    async close() {
      stopGc();
      stopScrub();
      await worker.stop();
      reconciler.stop();
      monitor.stop();
      // Long polls in flight end now (agents retry elsewhere or later); a keep-alive connection
      // that becomes idle after close() began is closed too, else it would hold the close for
      // the keep-alive timeout. Whatever is still open after 3 s is cut.
      const closed = api.close();
      reconciler.releasePolls();
      const sweep = setInterval(() => api.server.closeIdleConnections(), 50);
      const cut = setTimeout(() => api.server.closeAllConnections(), 3000);
      try {
        await closed;
      } finally {
        clearInterval(sweep);
        clearTimeout(cut);
      }
      await router.close();
      store.close();
    },
  };
}

/** A failed listen, said plainly: which part, which address, and what to do. */
function listenError(err: unknown, what: string, host: string, port: number): PilotError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new PilotError('port_in_use', `the ${what} cannot listen on ${host}:${port}: the port is in use`);
  if (code === 'EACCES') return new PilotError('port_in_use', `the ${what} may not listen on ${host}:${port} (permission denied)`, { hint: 'Ports below 1024 need privileges; pick another port.' });
  if (code === 'EADDRNOTAVAIL') return new PilotError('bad_request', `the ${what} cannot listen on ${host}: no such address on this machine`);
  return new PilotError('internal', `the ${what} cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
}

/** A non-negative number of milliseconds from the environment, or the default. */
function envMs(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : dflt;
}

/**
 * The control plane process: REST API + artifact repository + reconcile loop + router, wired
 * together over one store. `startControlPlane` is what `pilot server` and `pilot up` run.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { guardEntries, makePrivate } from '../files/private-tree.js';
import { join } from 'node:path';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { registerControlMetrics } from './metrics.js';
import { openBlobStore } from '../artifacts/open-blob-store.js';
import { registerArtifactRoutes } from '../artifacts/routes.js';
import { scrubIntervalFromEnv, startBlobScrub } from '../artifacts/scrub.js';
import { fail } from '../core/errors.js';
import { RoutingTable } from '../router/routing-table.js';
import { TrustedProxies } from '../router/headers.js';
import type { LogDestinationStats } from './log-destination.js';
import { startRouter } from '../router/proxy.js';
import { assertReplicaSecrets, openControlStore, timedStore, type StoreChoice } from './control-store.js';
import { fencedStore } from '../store/fence.js';
import { LeaseLeadership, SoleLeadership, type Leadership } from './leadership.js';
import { registerClusterRoutes } from './cluster-routes.js';
import { installLeaderViews } from './leader-views.js';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { listenError } from '../core/listen-error.js';
import { LOCAL_ROUTER, TableFeed } from '../router/table-feed.js';
import type { RevisionTraffic } from '../router/metrics.js';
import { readRouterFile } from '../router/router-process.js';
import { registerRouterRoutes } from './router-routes.js';
import {
  nodeRouterTraffic,
  registerReplicaTrafficRoute,
  registerTrafficRoutes,
  replicaTraffic,
  routerProcessTraffic,
} from './traffic-routes.js';
import { RouterMetrics } from '../router/metrics.js';
import { registerBackupRoutes } from './backup-routes.js';
import { request } from '../http/undici.js';
import { authenticateNode, registerAgentRoutes } from './agent-routes.js';
import { registerAppRoutes } from './app-routes.js';
import { registerExperimentRoutes } from './experiment-routes.js';
import { gcIntervalFromEnv, gcSettingsFromEnv, registerArtifactGcRoutes, startArtifactGcTimer } from './artifact-gc.js';
import { bearer, hashToken, loadOrCreateToken, tokensEqual } from '../api/auth.js';
import { installErrorHandling } from './http-errors.js';
import { diskStatus } from '../disk/disk.js';
import { NodeMonitor } from './node-monitor.js';
import { DEFAULT_NODE_HEALTH } from '../core/node-health.js';
import { registerNodeRoutes } from './node-routes.js';
import { installBodyDeadline, slowClientServerOptions } from './slow-clients.js';
import { installLingeringClose } from '../http/early-answer.js';
import { registerOpenApi } from './openapi.js';
import { PILOT_VERSION } from '../api/version.js';
import { Reconciler } from './reconciler.js';
import { Autoscaler, type AutoscalerSettings } from './autoscaler.js';
import { CpuMeter, cpuFigures } from './cpu-meter.js';
import { registerRunRoutes } from './run-routes.js';
import { registerEventRoutes, retentionFromEnv, startEventRetention, type RetentionSettings } from './event-routes.js';
import type { EventStreamSettings } from './event-stream.js';
import { registerRuntimeRoutes } from './runtime-routes.js';
import { registerRegistryRoutes } from './registry-routes.js';
import { registerTargetRoutes, TargetBoard } from './target-routes.js';
import { registerVolumeRoutes } from './volume-routes.js';
import { SecretBox } from '../store/secret-box.js';
import { AcmeChallenges, CertificateStore, type HttpsPolicy } from '../router/tls.js';
import { CertificateManager, type AcmeSettings } from './certificates.js';
import { FollowerNodeView } from './follower-nodes.js';
import { registerCertRoutes } from './cert-routes.js';
import { Notifier, notifierFromEnv, type NotifierSettings } from './notifications.js';
import { registerNotifyRoutes } from './notify-routes.js';
import { readFileSync } from 'node:fs';
import { registerSourceRoutes } from './source-routes.js';
import { RunWorker } from '../cd/worker.js';
import { RunLedger } from '../cd/run-ledger.js';
import { registerWebhookRoutes } from '../cd/webhook-routes.js';
import { isDashboardPath, registerWebRoutes } from './web-routes.js';
import { DEFAULT_SESSIONS, WebSessions, type SessionSettings } from './web-session.js';

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
  /**
   * Where blobs are kept: undefined for $PILOT_HOME/artifacts, an absolute folder replicas share,
   * or oci://HOST[:PORT]/REPO (oci+http:// for a plain-HTTP registry on loopback). Default: PILOT_ARTIFACTS.
   */
  artifacts?: string;
  /** Re-hash every stored blob this often, quarantining corrupt ones (0 = off). Default: PILOT_SCRUB_INTERVAL, else 24 h. */
  scrubIntervalMs?: number;
  /** Proxies whose forwarding headers the router believes: CIDRs (--trusted-proxy, PILOT_TRUSTED_PROXIES). */
  trustedProxies?: readonly string[];
  /** The log destination's state (dropped lines while the disk was full), for /healthz. */
  logStats?: () => LogDestinationStats;
  /**
   * embedded (default): the router runs in this process. process: no router here; a router
   * process (`pilot router`, started by `pilot up`) follows the table through /api/v1/router/sync.
   */
  router?: 'embedded' | 'process';
  /**
   * HTTPS: the embedded router's port (PILOT_HTTPS_PORT; a router process gets its own with
   * `pilot router --https-port`) and automatic certificates through ACME (PILOT_ACME_DIRECTORY,
   * PILOT_ACME_EMAIL, PILOT_ACME_CA_FILE). Absent: HTTP only (user certificates still reach the
   * routers in their own processes, which may serve HTTPS on their own port).
   */
  https?: { port: number; acme?: AcmeSettings };
  /** Start with an empty database although state exists beside it (see assertStateConsistent). */
  freshDatabase?: boolean;
  /** The database cannot be used any more (damaged under us): the process must end, loudly. */
  onFatal?: (err: unknown) => void;
  /** The autoscaler's pace (default: every 3 s over 10 s of figures; PILOT_AUTOSCALE_INTERVAL_MS). */
  autoscale?: Partial<AutoscalerSettings>;
  /** Notification delivery: timeout, attempts, back-off (default: PILOT_NOTIFY_* or control/notifications.ts). */
  notify?: Partial<NotifierSettings>;
  /** The event feed's SSE settings (heartbeat, slow-client bound) and retention; defaults otherwise (tests shorten them). */
  events?: { stream?: Partial<EventStreamSettings>; retention?: Partial<RetentionSettings> };
  /** The dashboard's built files (default: dist/web beside the compiled server) and its session limits. */
  web?: { root?: string; sessions?: Partial<SessionSettings> };
  /** Where the state lives (`--store`): SQLite in `home` (default) or PostgreSQL, where several replicas elect a leader. */
  store?: StoreChoice;
  /** How long a start waits for PostgreSQL to answer (PILOT_STORE_WAIT_MS, default 60 s). */
  storeWaitMs?: number;
  /** The leader lease on PostgreSQL (PILOT_LEASE_MS, default 3 s; tried every third of it). */
  lease?: { leaseMs?: number; renewMs?: number };
}

export interface ControlPlane {
  readonly apiUrl: string;
  /** The embedded router's URL; empty in router mode `process`. */
  readonly routerUrl: string;
  /** The embedded router's HTTPS port, when HTTPS is on. */
  readonly routerHttpsPort?: number;
  readonly adminToken: string;
  readonly adminTokenCreated: boolean;
  readonly joinToken: string;
  /** Where blobs are kept: a folder, or oci://host/repo. */
  readonly artifacts: string;
  readonly api: FastifyInstance;
  /** Every route the API serves (method and URL pattern), as registered: the auth-walk test reads it. */
  readonly routes: readonly { method: string; url: string }[];
  /** Whether this replica leads, its token (control/leadership.ts). */
  leadership(): Leadership;
  close(): Promise<void>;
}

/** Routes that do not take the admin token: they authenticate their own way, or not at all. */
function authMode(method: string, url: string): 'none' | 'admin' | 'admin-or-node' | 'self' {
  const path = url.split('?')[0]!;
  if (path === '/healthz') return 'none';
  if (path.startsWith('/api/v1/agent/')) return 'self';
  if (path.startsWith('/hooks/')) return 'self'; // signed by the app's webhook secret
  if (path === '/api/v1/session') return 'self'; // the dashboard's sign-in and sign-out (web-routes.ts)
  if (isDashboardPath(method, path)) return 'none'; // the dashboard's files; its data needs the session
  if (path.startsWith('/api/v1/router/')) return 'self'; // the router token (router-routes.ts)
  if (path.startsWith('/api/v1/artifacts/') && (method === 'GET' || method === 'HEAD')) return 'admin-or-node';
  // An agent reports a download that did not hash to its digest (artifacts/routes.ts).
  if (method === 'POST' && /^\/api\/v1\/artifacts\/[^/]+\/verify$/.test(path)) return 'admin-or-node';
  return 'admin';
}

/** What in `home` shows that Pilot ran here before (so a missing database is lost, not new). */
export function stateEvidence(home: string): string[] {
  const nonEmpty = (dir: string): boolean => {
    try {
      return readdirSync(join(home, dir)).length > 0;
    } catch {
      return false;
    }
  };
  const found: string[] = [];
  for (const f of ['secret.key', 'admin-token', 'join-token', 'agent/node.json']) if (existsSync(join(home, f))) found.push(f);
  for (const d of ['artifacts', 'agent/instances', 'runs']) if (nonEmpty(d)) found.push(`${d}/`);
  return found;
}

/**
 * A missing database next to existing state is lost, not new: starting empty would make every
 * running instance unknown and every host 404. Refuse, unless told to start fresh.
 */
function assertStateConsistent(home: string, fresh: boolean): void {
  const db = join(home, 'pilot.db');
  if (existsSync(db) || fresh) return;
  const evidence = stateEvidence(home);
  if (evidence.length === 0) return;
  throw fail.databaseMissing({ db, home, evidence: evidence.join(', ') });
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.logger ?? pino({ level: process.env.PILOT_LOG_LEVEL ?? 'info' });
  // Checked before anything is opened: a bad --trusted-proxy is a plain error, nothing to clean up.
  const trusted = new TrustedProxies(
    opts.trustedProxies ?? process.env.PILOT_TRUSTED_PROXIES,
    opts.trustedProxies ? '--trusted-proxy' : 'PILOT_TRUSTED_PROXIES',
  );
  mkdirSync(opts.home, { recursive: true, mode: 0o700 });
  const choice = opts.store ?? { kind: 'sqlite' };
  if (choice.kind === 'sqlite') assertStateConsistent(opts.home, opts.freshDatabase ?? false);
  const opened = await openControlStore(opts.home, choice, log, opts.storeWaitMs ?? envMs('PILOT_STORE_WAIT_MS', 60_000));
  const ha = opened.kind === 'postgres';
  // The one place the blob store is chosen: $PILOT_HOME/artifacts, a shared folder, or an OCI registry (--artifacts / PILOT_ARTIFACTS).
  const blobs = openBlobStore(opts.artifacts ?? process.env.PILOT_ARTIFACTS, opts.home);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const store = timedStore(opened.store, registry);
  // Several replicas: the leader's work writes through `leaderStore`, whose writes carry its fencing
  // token (store/fence.ts); made once the API listens (the lease names this replica by its address).
  const lease: { leadership: Leadership } = { leadership: new SoleLeadership() };
  let replicaUrl = ''; // set once the API listens
  const leaderStore = ha
    ? fencedStore(store, { token: () => lease.leadership.token(), refused: (t, c) => lease.leadership.fence.refused?.(t, c) })
    : store;
  const ledger = new RunLedger(store); // the only writer of runs (cd/run-ledger.ts)
  if (opts.freshDatabase)
    log.warn({ home: opts.home }, 'started with a fresh database (--fresh-database): instances agents still run are kept as orphans');
  const admin = loadOrCreateToken(join(opts.home, 'admin-token'), 'pilot_admin');
  const join_ = loadOrCreateToken(join(opts.home, 'join-token'), 'pilot_join');
  const routerToken = loadOrCreateToken(join(opts.home, 'router-token'), 'pilot_router');
  const box = new SecretBox(join(opts.home, 'secret.key'));
  if (opened.postgresUrl !== undefined) {
    await assertReplicaSecrets(opts.home, opened.postgresUrl, { admin: admin.token, join: join_.token, router: routerToken.token }).catch(
      (err: unknown) => {
        opened.store.close();
        throw err;
      },
    );
  }
  // PILOT_PUBLIC_URL: the address people and GitHub reach this server at (links in webhook answers, commit statuses, notifications).
  let publicUrl = (opts.publicUrl ?? process.env.PILOT_PUBLIC_URL ?? '').replace(/\/+$/, '');
  const cd: { worker?: RunWorker } = {}; // started once the API listens (it calls the API)
  // After the store opened pilot.db (its WAL and SHM take the database file's mode from now on).
  // The agent folder is the agent's own to secure (its apps pass through it to their releases).
  makePrivate(opts.home, new Set([join(opts.home, 'agent')]));
  const homeGuard = guardEntries(opts.home, new Set([join(opts.home, 'agent')]));

  const table = new RoutingTable();
  const embedded = (opts.router ?? 'embedded') === 'embedded';
  // The router process on this machine always counts for drains; node routers once they sync.
  const feed = new TableFeed({ expected: embedded ? [] : [LOCAL_ROUTER] });
  // The embedded router's traffic figures, read by /api/v1/apps/:app/traffic (a router process serves its own).
  const traffic = embedded ? new RouterMetrics(registry) : undefined;
  const httpsOpts = opts.https ?? httpsFromEnv();
  const served = new CertificateStore();
  const challenges = new AcmeChallenges();
  const certManager = new CertificateManager({
    store,
    leaderStore,
    box,
    certs: served,
    challenges,
    ...(httpsOpts?.acme ? { acme: httpsOpts.acme } : {}),
    log: (line) => log.info(line),
    // The CA is asked to validate once every router that takes certificates has the answer (or after 10 s).
    challengesDelivered: () => feed.tlsDelivered(10_000),
  });
  await certManager.load();
  // Routers in their own processes (router process, node routers) get the certificates, policies
  // and ACME answers in their sync answer (router-routes.ts) from the first certificate pass on
  // (policies set: a router never gets a bundle without them).
  let tlsFed = false;
  const feedTls = (): void => {
    if (tlsFed) feed.setTls({ ...served.export(), challenges: challenges.export() });
  };
  served.onChange(feedTls);
  challenges.onChange(feedTls);
  const router = embedded
    ? await startRouter({
        host: opts.routerHost,
        port: opts.routerPort,
        table,
        metrics: traffic,
        trusted,
        challenges,
        ...(httpsOpts ? { https: { port: httpsOpts.port, certs: served } } : {}),
      }).catch((err: unknown) => {
        opened.store.close();
        throw listenError(err, 'router', opts.routerHost, opts.routerPort);
      })
    : undefined;
  // The feed always follows the table (routers in their own process, here or elsewhere, read it);
  // in-flight counts are the embedded router's plus what the routers in their own processes report
  // (the router process, node routers: a drain waits for all of them).
  const sink = {
    set: (routes: Parameters<RoutingTable['set']>[0]) => {
      if (router) table.set(routes);
      feed.set(routes);
    },
    inflight: (id: string) => (router ? router.inflight(id) : 0) + feed.inflight(id),
  };
  // Traffic figures: the embedded router's or the router process's, plus every node router's.
  const localTraffic = async (ms: number, app?: string): Promise<RevisionTraffic[]> => {
    const own = traffic ? traffic.traffic(ms, app) : await routerProcessTraffic(opts.home, routerToken.token, ms, app);
    const theirs = await Promise.all(
      feed.routers().flatMap((r) => (r.traffic === undefined ? [] : [nodeRouterTraffic(r.id, r.traffic, ms, app)])),
    );
    return [...own, ...theirs.flat()];
  };
  // Several replicas: a router syncs with one of them; the figures of the others' routers are asked
  // of them (a replica that does not answer is left out: its routers sync elsewhere by now).
  const trafficSource = !ha
    ? localTraffic
    : async (ms: number, app?: string): Promise<RevisionTraffic[]> => {
        const others = ((await lease.leadership.cluster())?.replicas ?? []).filter(
          (r) => r.id !== lease.leadership.id && r.silentMs < 10_000,
        );
        const [own, ...theirs] = await Promise.all([
          localTraffic(ms, app),
          ...others.map((r) =>
            replicaTraffic(r.url, admin.token, ms, app).catch((err: unknown) => {
              log.debug({ replica: r.url, err: (err as Error).message }, 'replica gave no traffic figures');
              return [];
            }),
          ),
        ]);
        return [...own!, ...theirs.flat()];
      };
  const reconciler = new Reconciler(leaderStore, sink, log.child({ part: 'reconciler' }), {
    intervalMs: opts.reconcileIntervalMs ?? 250,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
    onFatal: opts.onFatal,
    // Canary analysis reads the same figures as /api/v1/apps/:app/traffic.
    traffic: (ms, app) => trafficSource(ms, app),
    ...(ha ? { forward: (what: string) => lease.leadership.forward(what) } : {}),
  });
  // A leader's term has a monitor of its own (a stopped one cannot start again); a follower keeps
  // an unstarted one, which only hears the agents that sync with it and never calls a node down.
  const newMonitor = (): NodeMonitor =>
    new NodeMonitor(
      leaderStore,
      log.child({ part: 'nodes' }),
      (nodeId) => {
        reconciler.nodeChanged(nodeId).catch((err: unknown) => log.error({ err, node: nodeId }, 'node status change not reconciled'));
      },
      {
        suspectAfterMs: envMs('PILOT_NODE_SUSPECT_MS', DEFAULT_NODE_HEALTH.suspectAfterMs),
        downAfterMs: envMs('PILOT_NODE_DOWN_MS', DEFAULT_NODE_HEALTH.downAfterMs),
        startupGraceMs: envMs('PILOT_NODE_GRACE_MS', DEFAULT_NODE_HEALTH.startupGraceMs ?? 10_000),
        intervalMs: envMs('PILOT_NODE_CHECK_MS', 250),
        probeTimeoutMs: 250,
      },
    );
  let monitor = newMonitor();
  reconciler.attachMonitor(monitor);
  // Several replicas: a follower reads node health as the leader recorded it (follower-nodes.ts).
  const followerNodes = ha
    ? new FollowerNodeView(store, (nodeId) => {
        reconciler.nodeChanged(nodeId).catch((err: unknown) => log.error({ err, node: nodeId }, 'node status change not reconciled'));
      })
    : undefined;
  const api = Fastify({
    loggerInstance: log.child({ part: 'api' }),
    bodyLimit: 1024 * 1024,
    http: slowClientServerOptions,
    logController: new LogController({ disableRequestLogging: true }),
  }) as unknown as FastifyInstance;
  installErrorHandling(api, opts.home);
  installBodyDeadline(api);
  installLingeringClose(api);
  const routes: { method: string; url: string }[] = [];
  api.addHook('onRoute', (r) => {
    for (const method of typeof r.method === 'string' ? [r.method] : r.method) routes.push({ method, url: r.url });
  });
  await registerOpenApi(api, PILOT_VERSION);
  const web = registerWebRoutes(api, {
    sessions: new WebSessions((t) => tokensEqual(t, admin.token), { ...DEFAULT_SESSIONS, ...opts.web?.sessions }),
    root: opts.web?.root ?? new URL('../../web/', import.meta.url).pathname,
    publicUrl: () => publicUrl,
  });
  api.addHook('onRequest', async (req) => {
    // A '..' segment (plain or percent-encoded) never names anything here: refuse it before routing.
    if (/(^|\/)(\.|%2e){2}(\/|\?|$)/i.test(req.url)) {
      throw fail.pathSegmentNotAllowed();
    }
    const mode = authMode(req.method, req.url);
    if (mode === 'none' || mode === 'self') return;
    const token = bearer(req.headers.authorization);
    if (token && tokensEqual(token, admin.token)) return;
    if (mode === 'admin-or-node' && token) {
      await authenticateNode(store, req);
      return;
    }
    // The dashboard: its session cookie, with CSRF proof for a state change (web-session.ts).
    if (!token && web.authenticate(req)) return;
    throw token ? fail.invalidToken() : fail.missingToken();
  });
  // Node health, orphans, an app's autoscaler and unplaced reason: the leader's memory (leader-views.ts).
  if (ha)
    installLeaderViews(api, {
      leadership: () => lease.leadership,
      adminToken: admin.token,
      selfUrl: () => replicaUrl,
      log: log.child({ part: 'api' }),
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
      ...(logStats
        ? {
            log: detailed
              ? { droppedLines: logStats.dropped, failing: logStats.failing ?? null }
              : { failing: logStats.failing !== undefined },
          }
        : {}),
    };
  });
  api.get('/metrics', async (_req, reply) => {
    void reply.type(registry.contentType);
    return (await registry.metrics()) + (router ? '' : await routerProcessMetrics(opts.home, routerToken.token));
  });
  registerRouterRoutes(api, {
    feed,
    tokens: () => [routerToken.token, admin.token],
    nodeByCredential: (token) => store.getNodeByCredentialHash(hashToken(token)),
  });
  const trafficRoutes = registerTrafficRoutes(api, { store, source: trafficSource });
  registerReplicaTrafficRoute(api, localTraffic);
  const cpu = new CpuMeter();
  const autoscaler = new Autoscaler({
    store: leaderStore,
    reconciler,
    traffic: trafficSource,
    cpu: cpuFigures(cpu, store),
    log: log.child({ part: 'autoscaler' }),
    settings: { intervalMs: envMs('PILOT_AUTOSCALE_INTERVAL_MS', 3000), ...opts.autoscale },
  });
  registerControlMetrics(registry, {
    instanceStates: async () => (await store.listInstances()).map((i) => i.state),
    autoscaled: async () =>
      (await store.listApps()).flatMap((a) => {
        const status = autoscaler.status(a);
        return status ? [{ app: a.name, status }] : [];
      }),
    notifyAttempts: () => notifier.attemptCounts(),
    leadership: () => {
      const l = lease.leadership;
      return { leading: l.leading(), changes: l.changes, refusedWrites: l.refusedWrites };
    },
  });
  registerBackupRoutes(api, { store: opened.sqlite, home: opts.home });
  registerArtifactRoutes(api, {
    blobs,
    meta: {
      putMeta: (m) => store.putArtifactMeta(m),
      getMeta: (d) => store.getArtifactMeta(d),
      listMeta: (a) => store.listArtifactMeta(a),
    },
    maxBytes: opts.maxArtifactBytes ?? 4 * 1024 ** 3,
  });
  registerAgentRoutes(api, { store, box, reconciler, joinToken: () => join_.token, adminToken: () => admin.token, cpu });
  const targets = new TargetBoard();
  registerAppRoutes(api, { store, ledger, box, blobs, reconciler, autoscaler, targets });
  registerTargetRoutes(api, { store, reconciler, board: targets });
  registerExperimentRoutes(api, { store, blobs, reconciler });
  registerRunRoutes(api, { store, ledger, box, runsDir: join(opts.home, 'runs') });
  const events = registerEventRoutes(api, { store, log: log.child({ part: 'events' }), settings: opts.events?.stream });
  registerSourceRoutes(api, { store, box, publicUrl: () => publicUrl, home: opts.home });
  registerWebhookRoutes(api, { store, ledger, box, onQueued: () => cd.worker?.queued() });
  registerNodeRoutes(api, { store, reconciler, routers: () => feed.routers() });
  registerRuntimeRoutes(api, { store, blobs });
  registerRegistryRoutes(api, { store, box });
  registerVolumeRoutes(api, { store, reconciler });
  registerCertRoutes(api, { certs: certManager });
  registerClusterRoutes(api, {
    leadership: () => lease.leadership,
    store,
    storeInfo: { kind: opened.kind, location: opened.location },
    blobs,
    selfUrl: () => replicaUrl,
    version: PILOT_VERSION,
  });
  const notifySettings = { ...notifierFromEnv(), ...opts.notify };
  const newNotifier = (): Notifier =>
    new Notifier({ store: leaderStore, box, baseUrl: () => publicUrl, log: log.child({ part: 'notify' }), settings: notifySettings });
  // The routes' notifier (`pilot notify test`); the first term delivers with it, later terms with a new one.
  let notifier = newNotifier();
  const routesNotifier = notifier;
  registerNotifyRoutes(api, { store, box, notifier: routesNotifier, testWaitMs: notifySettings.timeoutMs + 2000 });
  registerArtifactGcRoutes(api, { store, blobs, reconciler, settings: () => gcSettingsFromEnv() });

  try {
    // A fleet's agents all reconnect at once after a restart: a deep accept queue rather than refused connections.
    await api.listen({ host: opts.host, port: opts.port, backlog: 4096 });
  } catch (err) {
    await router?.close();
    opened.store.close();
    throw listenError(err, 'control plane', opts.host, opts.port);
  }
  const addr = api.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  publicUrl ||= `http://${opts.host}:${port}`;
  const loopback = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  if (!ha) {
    const interrupted = await ledger.interruptForegroundRuns(Date.now());
    if (interrupted > 0) log.warn({ runs: interrupted }, 'runs left running by the previous control plane marked interrupted');
  }
  // Bound what a lost WAL file could take with it: copy committed pages into the database file
  // every few seconds (PASSIVE: never waits for readers, costs nothing when there is nothing new).
  const sqlite = opened.sqlite;
  const checkpoint = sqlite
    ? setInterval(() => {
        try {
          sqlite.checkpoint();
        } catch (err) {
          log.warn({ err }, 'WAL checkpoint failed');
        }
      }, 5000)
    : undefined;
  checkpoint?.unref();
  // Certificates: every app host wants one when ACME is configured; each app's HTTPS options are the
  // router's policy. One pass at a time; a failure is the host's (kept in `pilot certs`), never fatal.
  let certPass: Promise<void> | undefined;
  const certsOnce = (): void => {
    certPass ??= (async () => {
      const apps = await store.listApps();
      const policies = new Map<string, HttpsPolicy>();
      for (const a of apps) for (const h of a.config.hosts) if (a.config.https) policies.set(h, a.config.https);
      served.setPolicies(policies);
      if (!tlsFed) {
        tlsFed = true;
        feedTls();
      }
      // Every replica serves (and feeds its routers) exactly the certificates stored, by whichever
      // replica stored or removed them (the leader's pass, or the API on any replica).
      if (ha) await certManager.load();
      if (httpsOpts?.acme && lease.leadership.leading()) {
        await certManager.want(apps.flatMap((a) => a.config.hosts));
        await certManager.tick();
      }
    })()
      .catch((err: unknown) => log.warn({ err }, 'certificate pass failed'))
      .finally(() => (certPass = undefined));
  };
  const apiUrl = `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${port}`;
  // Where the other replicas reach this one (the lease row, the replica list, leader views):
  // PILOT_REPLICA_URL, else this listen address (the host name when it listens on every interface).
  replicaUrl =
    process.env.PILOT_REPLICA_URL?.replace(/\/+$/, '') ||
    `http://${opts.host === '0.0.0.0' || opts.host === '::' ? hostname() : opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  /**
   * The leader's work (control/leadership.ts): started when this replica is elected (at once with
   * SQLite, in the order one process always had), stopped when it is deposed or closes.
   */
  let term: { stop: () => Promise<void> } | undefined;
  let terms = 0;
  const elected = async (): Promise<void> => {
    const first = terms++ === 0;
    reconciler.setLeading(true);
    if (!first) {
      monitor = newMonitor();
      notifier = newNotifier();
    }
    reconciler.attachMonitor(monitor);
    await reconciler.tick();
    if (first && !ha) reconciler.start(); // replicas start it before the first attempt, leading or not
    monitor.start();
    autoscaler.start();
    certsOnce();
    const certTimer = setInterval(certsOnce, envMs('PILOT_CERT_CHECK_MS', 60_000));
    certTimer.unref();
    const worker = new RunWorker({
      store: leaderStore,
      ledger: ha ? new RunLedger(leaderStore) : ledger,
      box,
      log: log.child({ part: 'cd' }),
      home: opts.home,
      apiUrl,
      adminToken: admin.token,
      publicUrl,
      concurrency: opts.workers ?? 2,
      quietMs: opts.quietMs ?? envMs('PILOT_CD_QUIET_MS', 2000),
    });
    cd.worker = worker;
    await worker.start();
    const termNotifier = notifier;
    await termNotifier.start();
    const stopGc = startArtifactGcTimer(
      { store: leaderStore, blobs, reconciler, mayDelete: () => lease.leadership.leaseHeld() },
      log.child({ part: 'gc' }),
      opts.gcIntervalMs ?? gcIntervalFromEnv(),
      () => gcSettingsFromEnv(),
    );
    const stopRetention = startEventRetention(leaderStore, log.child({ part: 'events' }), {
      ...retentionFromEnv(),
      ...opts.events?.retention,
    });
    // In a registry the scrub is a full download of every blob: off unless PILOT_SCRUB_INTERVAL asks for it.
    const scrubMs = opts.scrubIntervalMs ?? (blobs.kind === 'fs' || process.env.PILOT_SCRUB_INTERVAL ? scrubIntervalFromEnv() : 0);
    const stopScrub = startBlobScrub(blobs, log.child({ part: 'scrub' }), scrubMs);
    const termMonitor = monitor;
    term = {
      stop: async () => {
        stopGc();
        stopScrub();
        stopRetention();
        clearInterval(certTimer);
        await certPass;
        if (cd.worker === worker) cd.worker = undefined;
        await worker.stop();
        await termNotifier.stop();
        await autoscaler.stop();
        termMonitor.stop();
      },
    };
  };
  const deposed = async (): Promise<void> => {
    const t = term;
    term = undefined;
    await t?.stop();
    if (!ha) return;
    reconciler.setLeading(false);
    monitor = newMonitor(); // for the next term (a stopped one cannot start again)
    reconciler.attachMonitor(followerNodes!); // a follower never calls a node down
  };
  if (ha) {
    reconciler.setLeading(false);
    await followerNodes!.start();
    reconciler.attachMonitor(followerNodes!);
    const leaseMs = opts.lease?.leaseMs ?? envMs('PILOT_LEASE_MS', 3000);
    const { PostgresLease } = await import('../store/postgres-lease.js');
    lease.leadership = new LeaseLeadership(
      new PostgresLease(opened.postgresUrl!, { holder: randomUUID(), url: replicaUrl, version: PILOT_VERSION, leaseMs }),
      log.child({ part: 'leader' }),
      { leaseMs, renewMs: opts.lease?.renewMs ?? Math.max(100, Math.floor(leaseMs / 3)) },
      (what) => reconciler.forwarded(what),
    );
    // A follower publishes the routing table its routers and agents' routers read from here.
    await reconciler.tick();
    reconciler.start();
  }
  await lease.leadership.start({ elected, deposed });
  // The routers' policies and certificates, on a follower too (its routers sync here).
  const followerCerts = ha ? setInterval(certsOnce, envMs('PILOT_CERT_CHECK_MS', 60_000)) : undefined;
  followerCerts?.unref();
  // A certificate stored or removed through another replica is served or dropped here at once.
  const unfollowCerts = ha
    ? store.subscribeEvents((batch) => {
        if (!batch.some((e) => e.kind === 'certificate.changed')) return;
        certManager.load().catch((err: unknown) => log.warn({ err }, 'certificates not reloaded'));
      })
    : undefined;
  if (ha && !lease.leadership.leading()) certsOnce();
  log.info(
    {
      api: `http://${opts.host}:${port}`,
      router: router?.url ?? 'process',
      store: opened.location,
      artifacts: blobs.location,
      leading: lease.leadership.leading(),
    },
    'control plane started',
  );
  // A registry that is down at start is said at once; publishes and downloads fail clearly until it is back.
  void blobs.ping().catch((err: unknown) => log.warn({ err }, 'the artifact store does not answer yet'));

  return {
    apiUrl: `http://${opts.host}:${port}`,
    routerUrl: router?.url ?? '',
    ...(router?.httpsPort !== undefined ? { routerHttpsPort: router.httpsPort } : {}),
    adminToken: admin.token,
    adminTokenCreated: admin.created,
    joinToken: join_.token,
    artifacts: blobs.location,
    api,
    routes,
    leadership: () => lease.leadership,
    async close() {
      homeGuard?.close();
      if (checkpoint) clearInterval(checkpoint);
      if (followerCerts) clearInterval(followerCerts);
      followerNodes?.stop();
      unfollowCerts?.();
      feed.release();
      await lease.leadership.stop();
      reconciler.stop();
      // Long polls in flight end now (agents retry elsewhere or later); a keep-alive connection
      // that becomes idle after close() began is closed too, else it would hold the close for
      // the keep-alive timeout. Whatever is still open after 3 s is cut.
      const closed = api.close();
      reconciler.releasePolls();
      events.close();
      trafficRoutes.close();
      const sweep = setInterval(() => api.server.closeIdleConnections(), 50);
      const cut = setTimeout(() => api.server.closeAllConnections(), 3000);
      try {
        await closed;
      } finally {
        clearInterval(sweep);
        clearTimeout(cut);
      }
      await router?.close();
      opened.store.close();
      await blobs.close();
    },
  };
}

/** The router process's pilot_router_* metrics, appended to /metrics (nothing if it does not answer). */
async function routerProcessMetrics(home: string, token: string): Promise<string> {
  const info = readRouterFile(home);
  if (!info) return '';
  try {
    const res = await request(`${info.admin}/metrics`, {
      headers: { authorization: `Bearer ${token}` },
      headersTimeout: 1000,
      bodyTimeout: 1000,
    });
    const text = await res.body.text();
    return res.statusCode === 200 ? text : '';
  } catch {
    return '';
  }
}

/** A non-negative number of milliseconds from the environment, or the default. */
function envMs(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : dflt;
}

/** HTTPS settings from the environment: PILOT_HTTPS_PORT turns it on; PILOT_ACME_DIRECTORY adds ACME. */
function httpsFromEnv(): { port: number; acme?: AcmeSettings } | undefined {
  const raw = process.env.PILOT_HTTPS_PORT;
  if (raw === undefined || raw === '') return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw fail.invalidHttpsPort({ value: raw });
  const directoryUrl = process.env.PILOT_ACME_DIRECTORY;
  if (!directoryUrl) return { port };
  const caFile = process.env.PILOT_ACME_CA_FILE;
  const email = process.env.PILOT_ACME_EMAIL;
  return {
    port,
    acme: { directoryUrl, ...(email ? { email } : {}), ...(caFile ? { caPem: readFileSync(caFile, 'utf8') } : {}) },
  };
}

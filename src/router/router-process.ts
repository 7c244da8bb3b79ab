/**
 * The router as a process of its own (`pilot router`, started and supervised by `pilot up` and
 * `pilot server`), so that traffic outlives the control plane: a crash, a kill -9 or a restart of
 * the control plane leaves the router serving the last table it had.
 *
 *   control plane ──POST /api/v1/router/sync (router token, long poll)──► { version, routes? }
 *        ▲                    reports { version applied, in flight per upstream }
 *        └─────────────────────────────────── router process ── table.json (last table, on disk)
 *
 * - At start it serves the table saved in $PILOT_HOME/router/table.json at once, before it has
 *   heard from any control plane; each new table is applied, then saved (write + rename).
 * - It finds the control plane through $PILOT_HOME/server.json (re-read after every failure, so a
 *   control plane restarted on another port is found), or, given `--server a,b,c` (replicas of a
 *   highly available control plane), at those addresses, moving to the next after a failure
 *   (api/failover.ts); it authenticates with
 *   $PILOT_HOME/router-token. While the control plane is away it retries every 500 ms and keeps
 *   serving; a bad table from the wire is admitted per app (admitRoutes), never all-or-nothing.
 * - It writes $PILOT_HOME/router/router.json (pid, start time, URL) once it listens; that is how
 *   the next `pilot up` finds and adopts it instead of starting a second one.
 * - Metrics (pilot_router_*) are served on a second, loopback-only port with the router token, and
 *   the control plane's /metrics includes them; so are the live traffic figures (GET /traffic,
 *   traffic-endpoint.ts), which the control plane's /api/v1/apps/:app/traffic reads.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { bearer, tokensEqual } from '../api/auth.js';
import { ServerChooser } from '../api/failover.js';
import { readStartTime } from '../os/proc.js';
import { RouterMetrics, type TrafficSink } from './metrics.js';
import { engineFromEnv, startRouter } from './proxy.js';
import { serveTraffic, TRAFFIC_PATH } from './traffic-endpoint.js';
import { TrustedProxies } from './headers.js';
import { admitRoutes, RoutingTable, type Route } from './routing-table.js';
import { followControlPlane, loadTable, loadTls, writeAtomic } from './table-sync.js';
import { AcmeChallenges, CertificateStore, type TlsBundle } from './tls.js';
import { listenError } from '../core/listen-error.js';

/** The embedded router as a DataPlane; it follows `table` itself. */
async function embedded(
  table: RoutingTable,
  p: Parameters<typeof startRouter>[0] extends infer O ? Omit<O & object, 'table'> : never,
): Promise<DataPlane> {
  const r = await startRouter({ ...p, table });
  return {
    url: r.url,
    port: r.port,
    ...(r.httpsPort !== undefined ? { httpsPort: r.httpsPort } : {}),
    apply: async () => undefined,
    inflightAll: async () => r.inflightAll(),
    close: () => r.close(),
  };
}

export interface RouterProcessFile {
  readonly pid: number;
  readonly startTime: string;
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** http://127.0.0.1:PORT: GET /metrics and GET /traffic with the router token. */
  readonly admin: string;
  /** The HTTPS port, when it serves HTTPS (--https-port). */
  readonly httpsPort?: number;
}

export const routerDir = (home: string): string => join(home, 'router');
export const routerFile = (home: string): string => join(routerDir(home), 'router.json');

export function readRouterFile(home: string): RouterProcessFile | undefined {
  try {
    return JSON.parse(readFileSync(routerFile(home), 'utf8')) as RouterProcessFile;
  } catch {
    return undefined;
  }
}

/**
 * What serves the traffic in the router process: the embedded router (default), or another data
 * plane (HAProxy, src/haproxy/, `pilot router --haproxy`) fed the same admitted table.
 */
export interface DataPlane {
  readonly url: string;
  readonly port: number;
  readonly httpsPort?: number;
  apply(routes: readonly Route[]): Promise<void>;
  /** Serve these certificates, HTTPS policies and ACME answers (resolves once they are served). */
  setTls?(bundle: TlsBundle): Promise<void>;
  inflightAll(): Promise<Record<string, number>>;
  /** Prometheus text about the data plane itself (its health), appended to /metrics. */
  metricsText?(): string;
  close(): Promise<void>;
}

/** Run the router process until SIGTERM/SIGINT (or until $PILOT_HOME is gone). */
export async function runRouterProcess(o: {
  home: string;
  host: string;
  port: number;
  log: Logger;
  trustedProxies?: readonly string[];
  /** HTTPS on this port (0: any) with the certificates the control plane sends. */
  httpsPort?: number;
  /**
   * The control plane's replicas (`pilot router --server a,b`), failed over between
   * (api/failover.ts); default: the one $PILOT_HOME/server.json names.
   */
  servers?: readonly string[];
  /** The router token; default $PILOT_HOME/router-token (re-read at each sync). */
  token?: () => string;
  /**
   * Another data plane than the embedded router (started on host:port, and on httpsPort for
   * HTTPS), fed the same table, and the certificates and ACME answers through `setTls`.
   */
  dataPlane?: (p: {
    host: string;
    port: number;
    trusted: readonly string[];
    httpsPort?: number;
    /** The certificates saved by the last run, to serve at once. */
    tls: TlsBundle;
    /** Where per-request figures go (the traffic windows of this process). */
    traffic: TrafficSink;
  }) => Promise<DataPlane>;
}): Promise<void> {
  const { home, log } = o;
  mkdirSync(routerDir(home), { recursive: true, mode: 0o700 });
  chmodSync(routerDir(home), 0o700); // it holds certificate keys: private whatever made it
  const table = new RoutingTable();
  const saved = loadTable(routerDir(home), log);
  const admitted = admitRoutes(saved.routes);
  if (admitted.problems.length > 0) log.warn({ problems: admitted.problems }, 'parts of the saved routing table left out');
  table.set(admitted.routes);
  const registry = new Registry();
  // Forwarding headers: the same rule as the embedded router (--trusted-proxy, else PILOT_TRUSTED_PROXIES).
  const trusted = new TrustedProxies(
    o.trustedProxies ?? process.env.PILOT_TRUSTED_PROXIES,
    o.trustedProxies ? '--trusted-proxy' : 'PILOT_TRUSTED_PROXIES',
  );
  const metrics = new RouterMetrics(registry);
  // Certificates and ACME answers: the saved ones at once, then the control plane's (table-sync.ts).
  const tls = { certs: new CertificateStore(), challenges: new AcmeChallenges() };
  const tlsVersion = o.httpsPort !== undefined ? loadTls(routerDir(home), tls, log) : undefined;
  const bundle = (): TlsBundle => ({ ...tls.certs.export(), challenges: tls.challenges.export() });
  const router: DataPlane = o.dataPlane
    ? await o.dataPlane({
        host: o.host,
        port: o.port,
        traffic: metrics,
        ...(o.httpsPort !== undefined ? { httpsPort: o.httpsPort } : {}),
        tls: bundle(),
        trusted:
          o.trustedProxies ??
          (process.env.PILOT_TRUSTED_PROXIES ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
      })
    : await embedded(table, {
        host: o.host,
        port: o.port,
        metrics,
        trusted,
        challenges: tls.challenges,
        ...(o.httpsPort !== undefined ? { https: { port: o.httpsPort, certs: tls.certs } } : {}),
      }).catch((err: unknown) => {
        // The HTTP or the HTTPS port: the one the error names.
        const port = (err as { port?: unknown }).port;
        throw listenError(err, 'router', o.host, typeof port === 'number' ? port : o.port);
      });
  if (o.dataPlane) await router.apply(admitted.routes);
  const token = o.token ?? ((): string => readFileSync(join(home, 'router-token'), 'utf8').trim());
  const servers = o.servers && o.servers.length > 0 ? new ServerChooser(o.servers) : undefined;

  const admin = http.createServer((req, res) => {
    const t = bearer(req.headers.authorization);
    let ok = false;
    try {
      ok = t !== undefined && tokensEqual(t, token());
    } catch {
      ok = false;
    }
    let url: URL | undefined;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      url = undefined; // an unparsable target ("http://[") is a 404 below, never a crash
    }
    if (ok && req.method === 'GET' && url?.pathname === TRAFFIC_PATH) {
      serveTraffic(metrics, url, res);
      return;
    }
    if (!ok || req.url !== '/metrics') {
      res.writeHead(ok ? 404 : 401).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text + (router.metricsText?.() ?? '')),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  const info: RouterProcessFile = {
    pid: process.pid,
    startTime: readStartTime(process.pid) ?? '',
    url: router.url,
    host: o.host,
    port: router.port,
    admin: `http://127.0.0.1:${(admin.address() as AddressInfo).port}`,
    ...(router.httpsPort !== undefined ? { httpsPort: router.httpsPort } : {}),
  };
  writeAtomic(routerFile(home), JSON.stringify(info));
  log.info(
    {
      url: router.url,
      httpsPort: router.httpsPort,
      routes: saved.routes.length,
      certificates: tls.certs.hosts().length,
      ...(o.dataPlane ? {} : { engine: engineFromEnv() }),
    },
    'router started',
  );
  process.stdout.write(`router listening on ${router.url}${router.httpsPort !== undefined ? ` and https port ${router.httpsPort}` : ''}\n`);

  let closed = false;
  const abort = new AbortController();
  const stop = (): void => {
    if (closed) return;
    closed = true;
    abort.abort();
    admin.close();
    void router.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  await followControlPlane({
    dir: routerDir(home),
    table,
    version: saved.version,
    target: () => ({
      api: servers ? servers.current : (JSON.parse(readFileSync(join(home, 'server.json'), 'utf8')) as { api: string }).api,
      token: token(),
    }),
    // Several replicas: the next one after a failure (server.json is re-read anyway).
    ...(servers ? { onFailure: () => servers.failed() } : {}),
    inflight: () => router.inflightAll(),
    ...(o.dataPlane ? { onTable: (routes: readonly Route[]) => router.apply(routes) } : {}),
    log,
    signal: abort.signal,
    isClosed: () => closed,
    // Every data plane answers ACME challenges (HTTP-01) and, with --https-port, serves HTTPS. The
    // embedded router reads `tls` itself; another one (HAProxy) is handed each new bundle, and has
    // it in force before this router reports the bundle's version (the CA validates after that).
    tls: {
      ...tls,
      version: tlsVersion,
      ...(router.setTls ? { onApplied: () => router.setTls!(bundle()) } : {}),
    },
    self: { port: router.port, ...(router.httpsPort !== undefined ? { httpsPort: router.httpsPort } : {}) },
    keepGoing: () => {
      if (existsSync(routerDir(home))) return true;
      log.warn('$PILOT_HOME/router is gone: stopping');
      stop();
      return false;
    },
  });
}

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
 *   control plane restarted on another port is found) and authenticates with
 *   $PILOT_HOME/router-token. While the control plane is away it retries every 500 ms and keeps
 *   serving; a bad table from the wire is admitted per app (admitRoutes), never all-or-nothing.
 * - It writes $PILOT_HOME/router/router.json (pid, start time, URL) once it listens; that is how
 *   the next `pilot up` finds and adopts it instead of starting a second one.
 * - Metrics (pilot_router_*) are served on a second, loopback-only port with the router token, and
 *   the control plane's /metrics includes them; so are the live traffic figures (GET /traffic,
 *   traffic-endpoint.ts), which the control plane's /api/v1/apps/:app/traffic reads.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { bearer, tokensEqual } from '../api/auth.js';
import { readStartTime } from '../os/proc.js';
import { RouterMetrics } from './metrics.js';
import { startRouter } from './proxy.js';
import { serveTraffic, TRAFFIC_PATH } from './traffic-endpoint.js';
import { TrustedProxies } from './headers.js';
import { admitRoutes, RoutingTable, type Route } from './routing-table.js';
import { fromLegacyRoutes, ROUTES_FORMAT, ROUTES_FORMAT_HEADER } from './legacy-table.js';

/** The embedded router as a DataPlane; it follows `table` itself. */
async function embedded(
  table: RoutingTable,
  p: Parameters<typeof startRouter>[0] extends infer O ? Omit<O & object, 'table'> : never,
): Promise<DataPlane> {
  const r = await startRouter({ ...p, table });
  return {
    url: r.url,
    port: r.port,
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
}

export const routerDir = (home: string): string => join(home, 'router');
export const routerFile = (home: string): string => join(routerDir(home), 'router.json');
const tableFile = (home: string): string => join(routerDir(home), 'table.json');

export function readRouterFile(home: string): RouterProcessFile | undefined {
  try {
    return JSON.parse(readFileSync(routerFile(home), 'utf8')) as RouterProcessFile;
  } catch {
    return undefined;
  }
}

function writeAtomic(file: string, text: string): void {
  writeFileSync(file + '.tmp', text, { mode: 0o600 });
  renameSync(file + '.tmp', file);
}

/**
 * The table saved by the last run. One saved by a router before weighted backends is converted
 * (legacy-table.ts) with a log line; an unreadable one is ignored with a log line: start empty, the
 * control plane sends a table at the first poll.
 */
function loadTable(home: string, log: Logger): { version: string | undefined; routes: Route[] } {
  try {
    const saved = JSON.parse(readFileSync(tableFile(home), 'utf8')) as { version?: unknown; routes?: unknown };
    if (!Array.isArray(saved.routes)) {
      log.warn('saved routing table has no list of routes; starting empty');
      return { version: undefined, routes: [] };
    }
    const { routes, converted } = fromLegacyRoutes(saved.routes as unknown[]);
    if (converted > 0) log.info({ routes: converted }, 'saved routing table is in the shape before weighted backends; converted');
    return { version: typeof saved.version === 'string' ? saved.version : undefined, routes };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      log.warn({ err: (err as Error).message }, 'saved routing table unreadable; starting empty');
    return { version: undefined, routes: [] };
  }
}

/**
 * What serves the traffic in the router process: the embedded router (default), or another data
 * plane (HAProxy, src/haproxy/, `pilot router --haproxy`) fed the same admitted table.
 */
export interface DataPlane {
  readonly url: string;
  readonly port: number;
  apply(routes: readonly Route[]): Promise<void>;
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
  /** Another data plane than the embedded router (started on host:port, fed the table). */
  dataPlane?: (p: { host: string; port: number; trusted: readonly string[] }) => Promise<DataPlane>;
}): Promise<void> {
  const { home, log } = o;
  mkdirSync(routerDir(home), { recursive: true, mode: 0o700 });
  const table = new RoutingTable();
  const saved = loadTable(home, log);
  let version = saved.version;
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
  const router: DataPlane = o.dataPlane
    ? await o.dataPlane({
        host: o.host,
        port: o.port,
        trusted:
          o.trustedProxies ??
          (process.env.PILOT_TRUSTED_PROXIES ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
      })
    : await embedded(table, { host: o.host, port: o.port, metrics, trusted });
  if (o.dataPlane) await router.apply(admitted.routes);
  const token = (): string => readFileSync(join(home, 'router-token'), 'utf8').trim();

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
  };
  writeAtomic(routerFile(home), JSON.stringify(info));
  log.info({ url: router.url, routes: saved.routes.length }, 'router started');
  process.stdout.write(`router listening on ${router.url}\n`);

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

  let lastError: string | undefined;
  while (!closed) {
    if (!existsSync(routerDir(home))) {
      log.warn('$PILOT_HOME/router is gone: stopping');
      stop();
      break;
    }
    try {
      const server = JSON.parse(readFileSync(join(home, 'server.json'), 'utf8')) as { api: string };
      const inflight = await router.inflightAll();
      // Draining upstreams need fresh counts: poll briefly while anything is in flight.
      const waitMs = Object.keys(inflight).length > 0 ? 200 : 20_000;
      const res = await request(`${server.api}/api/v1/router/sync`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json', [ROUTES_FORMAT_HEADER]: ROUTES_FORMAT },
        body: JSON.stringify({ version: version ?? '', waitMs, inflight }),
        headersTimeout: waitMs + 10_000,
        bodyTimeout: 10_000,
        signal: abort.signal,
      });
      const body = (await res.body.json()) as { version?: string; routes?: unknown; error?: { message?: string } };
      if (res.statusCode !== 200) throw new Error(`control plane answered ${res.statusCode}: ${body.error?.message ?? ''}`);
      if (Array.isArray(body.routes) && body.version) {
        // An older control plane answers in the shape before weighted backends.
        const { routes, problems } = admitRoutes(fromLegacyRoutes(body.routes as unknown[]).routes);
        if (problems.length > 0) log.warn({ problems }, 'parts of the routing table left out');
        table.set(routes);
        if (o.dataPlane) await router.apply(routes);
        version = body.version;
        writeAtomic(tableFile(home), JSON.stringify({ version, routes }));
      }
      if (lastError !== undefined) log.info('control plane reachable again');
      lastError = undefined;
    } catch (err) {
      if (closed) break;
      const msg = (err as Error).message;
      if (msg !== lastError) log.warn({ err: msg }, 'cannot reach the control plane; serving the last routing table');
      lastError = msg;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

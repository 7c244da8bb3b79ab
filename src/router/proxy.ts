/**
 * The router's HTTP server: routes each request by Host through the routing table, balances it over
 * the route's upstreams, forwards it (forward.ts) or pipes its upgrade (upgrade.ts), and retires the
 * pool of every upstream that leaves the table so that the control plane can drain it.
 */
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { fail } from '../core/errors.js';
import { assignedRevision, Balancer } from './balancer.js';
import { noReadyInstance, sendError, sendTooLarge, unknownHost } from './error-responses.js';
import { forward, type ForwardDeps } from './forward.js';
import { RouterMetrics, type TrafficSink } from './metrics.js';
import type { RoutingTable } from './routing-table.js';
import { UpstreamPools } from './upstream-pools.js';
import { FastPath } from './fast-path.js';
import { proxyUpgrade, type UpgradeDeps } from './upgrade.js';
import { pinnedRevision, type TrustedProxies } from './headers.js';
import { affinityOf } from './sticky.js';
import { ACME_CHALLENGE_PREFIX, hostOnly, TLS_CIPHERS, TLS_MIN_VERSION, type AcmeChallenges, type CertificateStore } from './tls.js';

export interface RouterOptions {
  readonly host: string;
  /** 0 picks a free port; the actual one is in `Router.port`. */
  readonly port: number;
  readonly table: RoutingTable;
  /** Where the pilot_router_* metrics go; a private registry when absent (ignored with `metrics`). */
  readonly registry?: Registry;
  /** Where traffic is recorded: the caller keeps it to read the figures. Default: a RouterMetrics on `registry`. */
  readonly metrics?: TrafficSink;
  /** How long an upstream may take to send its response headers. Default 60 s. */
  readonly headersTimeoutMs?: number;
  /** Longest silence between two chunks of an upstream's response body. Default 5 min. */
  readonly bodyTimeoutMs?: number;
  /** How long a TCP connection to an upstream may take. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** How long `close()` lets requests in flight finish before cutting them. Default 10 s. */
  readonly closeGraceMs?: number;
  /** Proxies whose X-Forwarded-* / Forwarded / X-Real-IP are believed (headers.ts); none by default. */
  readonly trusted?: TrustedProxies;
  /** An HTTPS listener beside HTTP, serving each host the certificate of `certs` its SNI names. */
  readonly https?: {
    readonly port: number;
    readonly certs: CertificateStore;
  };
  /** The ACME HTTP-01 answers to give at /.well-known/acme-challenge/TOKEN (the control plane's). */
  readonly challenges?: AcmeChallenges;
  /**
   * The HTTP listener's engine: 'node' (node:http for every request, the default) or 'fast'
   * (experimental: fast-path.ts serves the common exchange below node:http and hands the rest to
   * it). Default: PILOT_ROUTER_ENGINE, else 'node'. The HTTPS listener is node:https either way.
   */
  readonly engine?: RouterEngine;
}

export type RouterEngine = 'node' | 'fast';

/** The engine named by PILOT_ROUTER_ENGINE ('node' when unset); anything else is refused. */
export function engineFromEnv(env: NodeJS.ProcessEnv = process.env): RouterEngine {
  const value = env.PILOT_ROUTER_ENGINE;
  if (value === undefined || value === '' || value === 'node') return 'node';
  if (value === 'fast') return 'fast';
  throw fail.invalidRouterEngine({ value: value.slice(0, 40) });
}

export interface Router {
  /** http://host:port of the listening router. */
  readonly url: string;
  readonly port: number;
  /** The HTTPS listener's port, when `https` was given. */
  readonly httpsPort?: number;
  /** Stop accepting, let requests in flight finish (up to the grace period), close every pool. */
  close(): Promise<void>;
  /** Requests (and open upgraded connections) in flight to this upstream; 0 once it is drained. */
  inflight(upstreamId: string): number;
  /** Every upstream id with requests in flight, and how many (reported to the control plane by a router process). */
  inflightAll(): Record<string, number>;
  /** The fast engine's counts (requests it served, connections it handed to node:http); undefined on the node engine. */
  fastStats(): { readonly served: number; readonly handedOff: number } | undefined;
}

/** Start the router on host:port; it follows every later `table.set` until closed. */
export async function startRouter(opts: RouterOptions): Promise<Router> {
  const metrics = opts.metrics ?? new RouterMetrics(opts.registry);
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
  const pools = new UpstreamPools({
    headersMs: opts.headersTimeoutMs ?? 60_000,
    bodyMs: opts.bodyTimeoutMs ?? 300_000,
    connectMs: connectTimeoutMs,
  });
  const balancer = new Balancer();
  const engine = opts.engine ?? engineFromEnv();
  let fast: FastPath | undefined;
  const lookup = (host: string) => opts.table.lookup(host);
  const trusted = opts.trusted;
  const forwardDeps: ForwardDeps = { pools, balancer, metrics, lookup, ...(trusted ? { trusted } : {}) };
  const upgradeDeps: UpgradeDeps = {
    pools,
    balancer,
    metrics,
    lookup,
    ...(trusted ? { trusted } : {}),
    connectTimeoutMs,
    sockets: new Set<Duplex>(),
  };

  // Synchronous with table.set: by the time set() returns, removed upstreams get nothing new.
  const unsubscribe = opts.table.subscribe((change) => {
    for (const u of change.removed) {
      pools.retire(u);
      fast?.upstreams.retire(u);
    }
  });

  let active = 0;
  let onIdle: (() => void) | undefined;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    active++;
    res.once('close', () => {
      if (--active === 0) onIdle?.();
    });
    handle(req, res);
  };
  const server = http.createServer(onRequest);
  // "Expect: 100-continue" comes here instead of Node answering 100 itself: the router answers
  // 100 only once the request is routed and its Content-Length fits the app (else 413, no body sent).
  server.on('checkContinue', onRequest);
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => proxyUpgrade(upgradeDeps, req, socket, head));
  const certs = opts.https?.certs;
  if (engine === 'fast') {
    fast = new FastPath({
      pools,
      balancer,
      metrics,
      lookup,
      ...(trusted ? { trusted } : {}),
      headersMs: opts.headersTimeoutMs ?? 60_000,
      bodyMs: opts.bodyTimeoutMs ?? 300_000,
      connectMs: connectTimeoutMs,
      ...(certs ? { certs } : {}),
      ...(opts.challenges ? { challenges: opts.challenges } : {}),
      handOff: (socket) => server.emit('connection', socket),
    });
  }
  // The socket that listens: node:http's own, or the fast engine's (which hands sockets to node:http).
  const listener: net.Server = fast ? net.createServer({ noDelay: true }, fast.accept) : server;
  const secure = certs
    ? https.createServer(
        {
          minVersion: TLS_MIN_VERSION,
          ciphers: TLS_CIPHERS,
          // The certificate of the host the client names; none: the handshake fails (no default
          // certificate is handed to a host it does not cover).
          SNICallback: (servername, cb) => {
            const ctx = certs.context(servername);
            if (ctx) cb(null, ctx);
            else cb(new Error(`no certificate for "${servername}"`));
          },
        },
        onRequest,
      )
    : undefined;
  secure?.on('checkContinue', onRequest);
  secure?.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => proxyUpgrade(upgradeDeps, req, socket, head));
  // A failed handshake (no SNI, unknown host, old protocol) is the client's problem: just drop it.
  secure?.on('tlsClientError', (_err, socket) => socket.destroy());

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const startedAt = performance.now();
    const host = req.headers.host;
    if (req.url === undefined || !req.url.startsWith('/')) {
      // Absolute-form and asterisk-form targets are for forward proxies, not for apps.
      sendError(req.headers, res, {
        status: 400,
        error: fail.requestTargetNotPath({ url: req.url ?? '' }),
      });
      metrics.request('', undefined, 400, 0);
      return;
    }
    if (opts.challenges && req.url.startsWith(ACME_CHALLENGE_PREFIX)) {
      const answer = opts.challenges.get(req.url.slice(ACME_CHALLENGE_PREFIX.length));
      if (answer !== undefined) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(answer) });
        res.end(answer);
        return;
      }
    }
    const encrypted = 'encrypted' in req.socket && req.socket.encrypted === true;
    if (certs && host !== undefined) {
      const name = hostOnly(host);
      const policy = certs.policy(name);
      if (policy !== undefined) {
        if (!encrypted && policy.redirect === true && certs.has(name) && !req.url.startsWith(ACME_CHALLENGE_PREFIX)) {
          const port = httpsPort === 443 ? '' : `:${httpsPort}`;
          res.writeHead(308, { location: `https://${name}${port}${req.url}`, 'content-length': 0 });
          res.end();
          metrics.request(opts.table.lookup(host)?.app ?? '', undefined, 308, (performance.now() - startedAt) / 1000);
          return;
        }
        if (encrypted && policy.hstsMaxAge) res.setHeader('strict-transport-security', `max-age=${policy.hstsMaxAge}`);
      }
    }
    const route = opts.table.lookup(host ?? '');
    if (route === undefined) {
      sendError(req.headers, res, unknownHost(host));
      metrics.request('', undefined, 404, (performance.now() - startedAt) / 1000);
      return;
    }
    const maxBody = route.http?.maxBodyBytes;
    if (maxBody !== undefined) {
      const cl = req.headers['content-length'];
      if (cl !== undefined && Number(cl) > maxBody) {
        sendTooLarge(req.headers, res, route.app, maxBody);
        metrics.request(route.app, undefined, 413, (performance.now() - startedAt) / 1000);
        return;
      }
    }
    const pin = pinnedRevision(req.headers);
    const affinity = affinityOf(route.sticky, req.headers, pin !== undefined, encrypted);
    const upstream = balancer.pick(route, pools.inflight, undefined, pin, affinity.bucket);
    if (upstream === undefined) {
      sendError(req.headers, res, noReadyInstance(route.app));
      metrics.request(route.app, undefined, 502, (performance.now() - startedAt) / 1000);
      return;
    }
    const assigned = assignedRevision(route, affinity.bucket);
    if (assigned !== undefined && assigned !== upstream.revision) metrics.stickyFallback?.(route.app);
    // Routed, and the body fits: now the client may send it (checkContinue above).
    if (req.headers.expect !== undefined && /^\s*100-continue\s*$/i.test(req.headers.expect)) res.writeContinue();
    forward(forwardDeps, req, res, route, upstream, startedAt, affinity);
  }

  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(opts.port, opts.host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const port = (listener.address() as AddressInfo).port;
  let httpsPort = 0;
  if (secure && opts.https) {
    const wanted = opts.https.port;
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error) => {
        listener.close();
        reject(err);
      };
      secure.once('error', failed);
      secure.listen(wanted, opts.host, () => {
        secure.off('error', failed);
        resolve();
      });
    });
    httpsPort = (secure.address() as AddressInfo).port;
  }
  const urlHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  let closing: Promise<void> | undefined;

  async function close(): Promise<void> {
    unsubscribe();
    const grace = opts.closeGraceMs ?? 10_000;
    const stopped = Promise.all([
      new Promise<void>((resolve) => listener.close(() => resolve())),
      fast ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined,
      secure ? new Promise<void>((resolve) => secure.close(() => resolve())) : undefined,
    ]);
    server.closeIdleConnections();
    secure?.closeIdleConnections();
    fast?.stop();
    // Requests in flight finish, up to the grace period; then every connection is cut.
    await new Promise<void>((resolve) => {
      const idle = () => active === 0 && (fast?.busy ?? 0) === 0;
      if (idle()) return resolve();
      const timer = setTimeout(resolve, grace);
      onIdle = () => {
        if (!idle()) return;
        clearTimeout(timer);
        resolve();
      };
      if (fast) fast.onIdle = onIdle;
    });
    server.closeAllConnections();
    secure?.closeAllConnections();
    fast?.destroyAll();
    for (const s of upgradeDeps.sockets) s.destroy();
    await Promise.all([stopped, pools.closeAll(grace)]);
  }

  return {
    url: `http://${urlHost}:${port}`,
    port,
    ...(secure ? { httpsPort } : {}),
    close: () => (closing ??= close()),
    inflight: (id) => pools.inflight(id),
    inflightAll: () => pools.inflightAll(),
    fastStats: () => (fast ? { ...fast.stats } : undefined),
  };
}

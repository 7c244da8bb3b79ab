/**
 * WebSocket pass-through: after routing and balancing like any request, the
 * router opens a plain TCP connection to the chosen instance, replays the request head there, and
 * from then on copies bytes both ways without looking at them. The instance answers the handshake.
 * Other upgrades (h2c, ...) get a 501: a raw tunnel for them would carry later requests on that
 * connection past routing.
 *
 * An open upgraded connection counts as in flight for its upstream for its whole life, so a drain
 * waits for it (up to the control plane's timeout, after which stopping the instance ends it).
 */
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Balancer } from './balancer.js';
import { noReadyInstance, rawErrorResponse, unknownHost, unsupportedUpgrade, upstreamFailed } from './error-responses.js';
import { clientAddress, pinnedRevision, type TrustedProxies, upstreamRequestHeaders } from './headers.js';
import type { TrafficSink } from './metrics.js';
import type { TableRoute, Upstream } from './routing-table.js';
import type { UpstreamPools } from './upstream-pools.js';
import { affinityOf } from './sticky.js';

/** What an upgrade needs from the router. */
export interface UpgradeDeps {
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  readonly metrics: TrafficSink;
  readonly lookup: (host: string) => TableRoute | undefined;
  /** Clients whose forwarding headers are believed (--trusted-proxy). */
  readonly trusted?: TrustedProxies;
  readonly connectTimeoutMs: number;
  /** Open upgraded client sockets, so that closing the router can end them. */
  readonly sockets: Set<Duplex>;
}

const RETRY_ON = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT']);
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;

/** Route an Upgrade request and pipe its connection to an upstream (retried once on refusal). */
export function proxyUpgrade(deps: UpgradeDeps, req: IncomingMessage, client: Duplex, head: Buffer): void {
  const startedAt = performance.now();
  const seconds = () => (performance.now() - startedAt) / 1000;
  // Failures end in 'close', where the other side is torn down; the error itself has no reader.
  client.on('error', () => {});
  deps.sockets.add(client);
  client.once('close', () => deps.sockets.delete(client));

  const protocol = req.headers.upgrade ?? '';
  if (!/^websocket$/i.test(protocol.trim())) {
    deps.metrics.request('', undefined, 501, seconds());
    client.end(rawErrorResponse(req.headers, unsupportedUpgrade(protocol), 'Not Implemented'));
    return;
  }
  const host = req.headers.host;
  const route = deps.lookup(host ?? '');
  if (route === undefined) {
    deps.metrics.request('', undefined, 404, seconds());
    client.end(rawErrorResponse(req.headers, unknownHost(host), 'Not Found'));
    return;
  }
  const pin = pinnedRevision(req.headers);
  // A sticky route: a user with their key goes to their variant; a first visit goes by a fresh key
  // (the 101 is the app's raw bytes, so no cookie is set here: the page's own requests set it).
  const bucket = affinityOf(route.sticky, req.headers, pin !== undefined).bucket;
  const first = deps.balancer.pick(route, deps.pools.inflight, undefined, pin, bucket);
  if (first === undefined) {
    deps.metrics.request(route.app, undefined, 502, seconds());
    client.end(rawErrorResponse(req.headers, noReadyInstance(route.app), 'Bad Gateway'));
    return;
  }

  const from = clientAddress(req.socket.remoteAddress);
  // An upgrade on the HTTPS listener is a wss:// connection: the app is told https, as for a request.
  const encrypted = 'encrypted' in req.socket && req.socket.encrypted === true;
  const headers = upstreamRequestHeaders(
    req.rawHeaders,
    { for: from, proto: encrypted ? 'https' : 'http', trusted: deps.trusted?.has(from) ?? false },
    true,
  );
  let requestHead = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) requestHead += `${headers[i]}: ${headers[i + 1]}\r\n`;
  requestHead += '\r\n';
  const tried = new Set<string>();

  const connect = (upstream: Upstream): void => {
    tried.add(upstream.id);
    deps.pools.acquire(upstream.id);
    let released = false;
    let connected = false;
    let recorded = false;
    const record = (code: number) => {
      if (recorded) return;
      recorded = true;
      deps.metrics.request(route.app, upstream.revision, code, seconds());
    };
    const up = net.connect({ host: upstream.host, port: upstream.port });
    up.setTimeout(deps.connectTimeoutMs, () => up.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));
    const endClient = () => up.destroy();
    client.once('close', endClient);

    up.once('connect', () => {
      connected = true;
      up.setTimeout(0); // an idle WebSocket is normal
      up.setNoDelay(true);
      up.write(requestHead);
      up.once('data', (chunk: Buffer) => {
        const m = STATUS_LINE.exec(chunk.toString('latin1', 0, 16));
        const code = m === null ? 502 : Number(m[1]);
        record(code);
        // Only an accepted handshake opens the tunnel. Otherwise the client gets the app's answer
        // and nothing more of it reaches this instance: further requests on that connection must
        // not bypass routing. (A WebSocket client waits for the 101 before sending frames.)
        if (code !== 101) return;
        if (head.length > 0) up.write(head);
        client.pipe(up);
      });
      up.pipe(client);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (connected || client.destroyed) return; // 'close' tears the pair down
      deps.metrics.upstreamError(route.app);
      client.off('close', endClient);
      // Retry by the table as it is now: the upstream may have left it while we were connecting.
      const now = deps.lookup(host ?? '');
      const next =
        tried.size === 1 && RETRY_ON.has(err.code ?? '') && now?.app === route.app
          ? deps.balancer.pick(now, deps.pools.inflight, tried, pin, bucket)
          : undefined;
      if (next !== undefined) {
        connect(next);
        return;
      }
      record(502);
      client.end(rawErrorResponse(req.headers, upstreamFailed(route.app, err), 'Bad Gateway'));
    });
    up.once('close', () => {
      if (!released) {
        released = true;
        deps.pools.release(upstream.id);
      }
      if (connected) {
        record(502); // closed without a status line
        client.destroy();
      }
    });
  };
  connect(first);
}

/**
 * Test helpers for the router: real upstream HTTP servers on loopback that count their TCP
 * connections and report what they received, and a closed port for "connection refused".
 * Used by the *.test.ts files only.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Pool } from 'undici';
import { normalizeWeights } from '../core/routes.js';
import type { TableRoute, Upstream } from './routing-table.js';

export interface Echo {
  readonly name: string;
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

export interface TestUpstream {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly server: http.Server;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests received so far. */
  requests: number;
  /** Sockets currently open. */
  readonly open: Set<Socket>;
  /** An Upstream entry for the routing table. */
  upstream(app: string, revision?: number, id?: string): Upstream;
  close(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, self: TestUpstream) => void;

/** Answers with a JSON echo of the request (after reading its body). */
export const echo: Handler = (req, res, self) => {
  req.resume();
  req.on('end', () => {
    const body: Echo = { name: self.name, method: req.method ?? '', url: req.url ?? '', headers: req.headers };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
};

/** Start an upstream app server on host:0 (127.0.0.1 unless told; 127.0.0.2 etc. act as other nodes). */
export async function startUpstream(name: string, handler: Handler = echo, host = '127.0.0.1'): Promise<TestUpstream> {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const self: TestUpstream = {
    name,
    host,
    port: (server.address() as AddressInfo).port,
    server,
    connections: 0,
    requests: 0,
    open: new Set<Socket>(),
    upstream: (app, revision = 1, id = `${app}-${name}`) => ({ id, app, revision, host, port: self.port }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of self.open) socket.destroy(); // upgraded ones are not the server's any more
      }),
  };
  server.on('connection', (socket: Socket) => {
    self.connections++;
    self.open.add(socket);
    socket.once('close', () => self.open.delete(socket));
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    self.requests++;
    handler(req, res, self);
  });
  return self;
}

/**
 * A route of `app` serving these upstreams: one backend per revision, in order of appearance,
 * the weights split evenly (100, or 50/50 …). `weights` sets them instead, by revision.
 */
export function routeOf(
  app: string,
  hosts: readonly string[],
  upstreams: readonly Upstream[],
  weights?: Readonly<Record<number, number>>,
): TableRoute {
  const revisions = [...new Set(upstreams.map((u) => u.revision))];
  const even = normalizeWeights(revisions.map(() => 1));
  return {
    app,
    hosts,
    backends: revisions.map((revision, k) => ({
      revision,
      weight: weights?.[revision] ?? even[k]!,
      upstreams: upstreams.filter((u) => u.revision === revision),
    })),
  };
}

/** A loopback port with nothing listening on it: connecting is refused. */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** Send one request through `pool` (a client of the router) and read the whole reply. */
export async function send(
  pool: Pool,
  host: string,
  opts: { path?: string; method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const res = await pool.request({
    path: opts.path ?? '/',
    method: (opts.method ?? 'GET') as 'GET',
    headers: { host, ...opts.headers },
    body: opts.body ?? null,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** Wait until `check` is true, polling; fail after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

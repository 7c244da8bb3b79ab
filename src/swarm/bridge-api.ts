/**
 * A Swarm bridge's agent API: the part of an agent's API the control plane uses.
 *
 *   GET /v1/healthz                  200 while the Swarm manager answered within 5 s, else 503: the
 *                                    node monitor's check between syncs (the node then goes down)
 *   GET /v1/apps/<app>/stopped       [] (a stopped task's output goes with its service)
 *   GET /v1/instances/<id>/logs      the slot's current task's output (GET /tasks/<id>/logs through
 *       ?tail=N&follow=1             the manager, frames decoded by log-frames.ts), for `pilot logs`
 *
 * Everything but /v1/healthz needs the agent token the bridge registered with.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { bearer, tokensEqual } from '../api/auth.js';
import { fail } from '../core/errors.js';
import { LogFrames } from './log-frames.js';
import type { SwarmApi } from './swarm-api.js';
import type { TaskFacts } from './task-status.js';

export interface BridgeApiDeps {
  readonly target: string;
  readonly agentToken: string;
  /** The manager answered lately. */
  readonly fresh: () => boolean;
  /** The current task of the slot an instance uses. */
  readonly currentTask: (instanceId: string) => TaskFacts | undefined;
  readonly swarm: Pick<SwarmApi, 'taskLogs'>;
}

/** Listen on a free loopback port. */
export async function startBridgeApi(deps: BridgeApiDeps): Promise<Server> {
  const server = createServer((req, res) => {
    serve(deps, req, res).catch(() => {
      // The manager gone mid-stream, a client gone: this request ends, the bridge goes on.
      if (res.destroyed) return;
      if (!res.headersSent) res.writeHead(502).end();
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return server;
}

async function serve(deps: BridgeApiDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://bridge');
  if (url.pathname === '/v1/healthz') {
    const fresh = deps.fresh();
    res.writeHead(fresh ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: fresh, swarm: deps.target }));
    return;
  }
  const token = bearer(req.headers.authorization);
  if (!token || !tokensEqual(token, deps.agentToken)) {
    res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: fail.invalidAgentToken().toJSON() }));
    return;
  }
  if (/^\/v1\/apps\/[a-z][a-z0-9-]{0,62}\/stopped$/.test(url.pathname)) {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"stopped":[]}');
    return;
  }
  const m = /^\/v1\/instances\/([^/]+)\/logs$/.exec(url.pathname);
  const task = m ? deps.currentTask(decodeURIComponent(m[1]!)) : undefined;
  if (!task) {
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: fail.noSuchInstanceNode().toJSON() }));
    return;
  }
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  req.on('error', () => undefined); // a client that aborts: 'close' ends the stream
  const tail = Math.min(Math.max(Number(url.searchParams.get('tail') ?? 100) || 0, 0), 10_000);
  const body = await deps.swarm.taskLogs(task.id, { tail, follow: url.searchParams.get('follow') === '1', signal: abort.signal });
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  const frames = new LogFrames();
  if (Buffer.isBuffer(body)) {
    res.end(frames.push(body));
    return;
  }
  try {
    for await (const chunk of body) {
      const text = frames.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
      if (text && !res.write(text)) await new Promise((r) => res.once('drain', r));
      if (abort.signal.aborted) break;
    }
  } catch {
    // aborted by the client, or the manager went away: end what was sent
  }
  res.end();
}

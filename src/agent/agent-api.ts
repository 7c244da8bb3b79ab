/**
 * The agent's own small HTTP API, for the control plane only (authenticated with the token the
 * agent handed over at registration): instance logs, tailed or followed.
 *   GET /v1/healthz
 *   GET /v1/instances/:id/logs?tail=N&follow=1
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { open, stat } from 'node:fs/promises';
import { bearer, tokensEqual } from '../control/auth.js';
import type { LocalInstance } from './instance.js';
import type { Runtime } from './runtimes/runtime.js';

export interface AgentApi { url: string; close(): Promise<void> }

async function tailLines(file: string, n: number): Promise<{ text: string; size: number }> {
  const size = await stat(file).then((s) => s.size, () => 0);
  if (size === 0 || n === 0) return { text: '', size };
  const fh = await open(file, 'r');
  try {
    const len = Math.min(size, 1024 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    return { text: lines.slice(-n).join('\n') + '\n', size };
  } finally {
    await fh.close();
  }
}

async function readFrom(file: string, from: number): Promise<{ text: string; size: number }> {
  const size = await stat(file).then((s) => s.size, () => 0);
  if (size < from) return { text: '', size }; // rotated (truncated): continue from the start
  if (size === from) return { text: '', size };
  const fh = await open(file, 'r');
  try {
    const len = Math.min(size - from, 1024 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, from);
    return { text: buf.toString('utf8'), size: from + len };
  } finally {
    await fh.close();
  }
}

export async function startAgentApi(opts: { host: string; port: number; token: string; instances: Map<string, LocalInstance>; runtime: Runtime }): Promise<AgentApi> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://agent');
    if (url.pathname === '/v1/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    const token = bearer(req.headers.authorization);
    if (!token || !tokensEqual(token, opts.token)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unauthorized', message: 'invalid agent token', retryable: false } }));
      return;
    }
    const m = /^\/v1\/instances\/([^/]+)\/logs$/.exec(url.pathname);
    const inst = m ? opts.instances.get(decodeURIComponent(m[1]!)) : undefined;
    if (!inst) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'not_found', message: 'no such instance on this node', retryable: false } }));
      return;
    }
    const files = opts.runtime.logFiles(inst.stateDir);
    const n = Math.min(Math.max(Number(url.searchParams.get('tail') ?? 100) || 0, 0), 10_000);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const out = await tailLines(files.stdout, n);
    const err = await tailLines(files.stderr, n);
    res.write(out.text + err.text);
    if (url.searchParams.get('follow') !== '1') {
      res.end();
      return;
    }
    const pos = { stdout: out.size, stderr: err.size };
    const timer = setInterval(() => {
      void (async () => {
        for (const k of ['stdout', 'stderr'] as const) {
          const r = await readFrom(files[k], pos[k]);
          pos[k] = r.size;
          if (r.text) res.write(r.text);
        }
      })();
    }, 250);
    req.on('close', () => clearInterval(timer));
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port, opts.host, resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  return {
    url: `http://${opts.host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

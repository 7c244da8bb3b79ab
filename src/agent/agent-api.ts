/**
 * The agent's own small HTTP API, for the control plane only (authenticated with the token the
 * agent handed over at registration): instance logs, tailed or followed.
 *   GET /v1/healthz
 *   GET /v1/instances/:id/logs?tail=N&follow=1   (a stopped instance whose logs are kept: no follow)
 *   GET /v1/apps/:app/stopped                     kept logs of stopped instances, newest first
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { bearer, tokensEqual } from '../api/auth.js';
import { fail } from '../core/errors.js';
import type { LocalInstance } from './instance.js';
import type { LogFiles, Runtime } from './runtimes/runtime.js';
import { listStopped, stoppedRoot } from './stopped-logs.js';
import { join } from 'node:path';
import { existsSync } from 'node:fs';

export interface AgentApi {
  url: string;
  close(): Promise<void>;
}

async function tailLines(file: string, n: number): Promise<{ text: string; size: number }> {
  const size = await stat(file).then(
    (s) => s.size,
    () => 0,
  );
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

/** Bytes appended to `file` since `from` (1 MiB at most), and where to read next. */
async function readFrom(file: string, from: number): Promise<{ bytes: Buffer; size: number }> {
  const size = await stat(file).then(
    (s) => s.size,
    () => 0,
  );
  if (size <= from) return { bytes: Buffer.alloc(0), size }; // nothing new, or rotated (truncated): go on from the start
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size - from, 1024 * 1024));
    const { bytesRead } = await fh.read(buf, 0, buf.length, from);
    return { bytes: buf.subarray(0, bytesRead), size: from + bytesRead };
  } finally {
    await fh.close();
  }
}

export async function startAgentApi(opts: {
  host: string;
  port: number;
  token: string;
  instances: Map<string, LocalInstance>;
  runtime: Runtime;
  home: string;
}): Promise<AgentApi> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://agent');
    if (url.pathname === '/v1/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    const token = bearer(req.headers.authorization);
    if (!token || !tokensEqual(token, opts.token)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: fail.invalidAgentToken().toJSON() }));
      return;
    }
    const stopped = /^\/v1\/apps\/([a-z][a-z0-9-]{0,62})\/stopped$/.exec(url.pathname);
    if (stopped) {
      const list = listStopped(opts.home, stopped[1]).map(({ dir: _dir, ...meta }) => meta);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ stopped: list }));
      return;
    }
    const m = /^\/v1\/instances\/([^/]+)\/logs$/.exec(url.pathname);
    const id = m ? decodeURIComponent(m[1]!) : undefined;
    const inst = id === undefined ? undefined : opts.instances.get(id);
    // A stopped instance: its kept log files (an id is a plain name, never a path).
    const keptDir = id !== undefined && !inst && /^[a-z0-9-]{1,200}$/.test(id) ? join(stoppedRoot(opts.home), id) : undefined;
    const kept = keptDir !== undefined && existsSync(keptDir);
    if (!inst && !kept) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: fail.noSuchInstanceNode().toJSON() }));
      return;
    }
    const files: LogFiles = inst
      ? opts.runtime.logFiles(inst.stateDir)
      : { stdout: join(keptDir!, 'stdout.log'), stderr: join(keptDir!, 'stderr.log') };
    const n = Math.min(Math.max(Number(url.searchParams.get('tail') ?? 100) || 0, 0), 10_000);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const out = await tailLines(files.stdout, n);
    const err = await tailLines(files.stderr, n);
    res.write(out.text + err.text);
    if (url.searchParams.get('follow') !== '1' || !inst) {
      res.end();
      return;
    }
    // One read at a time (the next starts when this one is done, so nothing is sent twice), none
    // while a slow client is behind, and a decoder per stream so a character split across reads
    // stays whole.
    const pos = { stdout: out.size, stderr: err.size };
    const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    // A client that aborts makes Node destroy `req` with "aborted" (ECONNRESET): once(req, 'close')
    // would reject and, left floating, end the process. Watch the response's close, which never
    // rejects here: the promise is settled by a listener, not by once().
    let open_ = !res.destroyed;
    const closed = new Promise<void>((resolve) =>
      res.once('close', () => {
        open_ = false;
        resolve();
      }),
    );
    req.on('error', () => undefined); // the abort is expected; 'close' ends the loop
    while (open_) {
      for (const k of ['stdout', 'stderr'] as const) {
        const r = await readFrom(files[k], pos[k]);
        pos[k] = r.size;
        const text = decoders[k].write(r.bytes);
        if (text && !res.write(text)) await Promise.race([new Promise((r) => res.once('drain', r)), closed]);
      }
      await Promise.race([new Promise((r) => setTimeout(r, 250)), closed]);
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      // A log file unreadable, a client gone: this request ends, the agent goes on.
      if (res.destroyed) return;
      if (!res.headersSent) res.writeHead(500).end();
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port, opts.host, resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  return {
    url: `http://${opts.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

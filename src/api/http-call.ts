/**
 * One API call over node:http, the whole answer read as text. The agent's control link uses it
 * instead of the global fetch: fetch loads Node's bundled undici and compiles its llhttp parser
 * from WebAssembly (~10 MB of RSS in an idle agent), while node:http parses with the llhttp built
 * into Node. Keep-alive as fetch (Node's global agent keeps connections alive).
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';

/** Errors of requests that certainly did not reach the server: reset before a byte of them was written. */
const notSent = new WeakSet<object>();

/** Whether `err` is a request's failure before any byte of it was written (safe to send elsewhere, whatever the method). */
export function wasNotSent(err: unknown): boolean {
  return typeof err === 'object' && err !== null && notSent.has(err);
}

export interface TextResponse {
  readonly status: number;
  readonly text: string;
}

/** Send `method url` with these headers and body; resolves with the status and the body as text. Rejects as the socket fails or `signal` aborts. */
export function httpCall(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string | undefined; signal: AbortSignal },
): Promise<TextResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const send = u.protocol === 'https:' ? httpsRequest : u.protocol === 'http:' ? httpRequest : undefined;
    if (!send) return reject(new TypeError(`unsupported protocol ${u.protocol} in ${url}`));
    const req = send(u, { method: init.method, headers: init.headers, signal: init.signal }, (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
      // A connection cut mid-answer: the request arrived (code as node:http's own resets).
      res.on('aborted', () =>
        reject(Object.assign(new Error('the server closed the connection before the whole answer'), { code: 'ECONNRESET' })),
      );
    });
    // Bytes of this request that left for the server: written minus still buffered (a socket
    // still connecting holds the whole request in its buffer), less what a kept-alive socket
    // carried before it.
    const sent = (s: Socket): number => s.bytesWritten - s.writableLength;
    let socketBase: { socket: Socket; sent: number } | undefined;
    req.on('socket', (socket: Socket) => (socketBase = { socket, sent: sent(socket) }));
    req.on('error', (err) => {
      const written = socketBase ? sent(socketBase.socket) - socketBase.sent : 0;
      // A connection refused never carried anything; a reset counts as "not sent" only when none of it went out.
      if (written === 0 && (err as NodeJS.ErrnoException).code === 'ECONNRESET' && !init.signal.aborted) notSent.add(err);
      reject(err);
    });
    req.end(init.body);
  });
}

/**
 * One API call over node:http, the whole answer read as text. The agent's control link uses it
 * instead of the global fetch: fetch loads Node's bundled undici and compiles its llhttp parser
 * from WebAssembly (~10 MB of RSS in an idle agent), while node:http parses with the llhttp built
 * into Node. Keep-alive as fetch (Node's global agent keeps connections alive).
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

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
      res.on('aborted', () => reject(new Error('the server closed the connection before the whole answer')));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/**
 * The protocol part of the router contract (router-contract.ts calls it inside its suite): HTTP/1.1
 * keep-alive on both sides, Connection: close, the per-app request and idle timeouts, the per-app
 * largest body (413), trailers, Expect: 100-continue, Server-Sent Events without buffering, and
 * gzip left to the app. Raw sockets where an HTTP client would hide what the router did.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Pool } from 'undici';
import type { Route, RouteHttp } from '../core/routes.js';
import { startUpstream, type TestUpstream } from './test-support.js';

/** One parsed HTTP/1.1 response read off a raw socket. */
interface RawResponse {
  readonly status: number;
  readonly head: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  readonly trailers: Record<string, string>;
}

/** A raw client connection: write bytes, read whole responses one at a time, see whether the router closed it. */
class RawConn {
  readonly socket: net.Socket;
  #buf = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  ended = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.#wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.#wake?.();
    });
    socket.on('error', () => undefined);
  }

  static open(url: string): Promise<RawConn> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const s = net.connect(Number(port), hostname, () => resolve(new RawConn(s)));
      s.once('error', reject);
    });
  }

  write(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Wait until `ready(buffer)` holds or the connection ends (false), at most `ms`. */
  async waitFor(ready: (b: Buffer) => boolean, ms = 15_000): Promise<boolean> {
    const end = performance.now() + ms;
    while (!ready(this.#buf)) {
      if (this.ended || performance.now() > end) return ready(this.#buf);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50).unref();
      });
    }
    return true;
  }

  /** The next whole response (a 100 Continue counts as one), or undefined when none came in `ms`. */
  async response(ms = 15_000): Promise<RawResponse | undefined> {
    let parsed: { res: RawResponse; used: number } | undefined;
    await this.waitFor((b) => (parsed = parseResponse(b)) !== undefined, ms);
    if (parsed === undefined) return undefined;
    this.#buf = this.#buf.subarray(parsed.used);
    return parsed.res;
  }

  /** True when the router closed the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    await this.waitFor(() => this.ended, ms);
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
  }
}

function headerMap(lines: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) out[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return out;
}

/** A complete response at the start of `b` (Content-Length, chunked with trailers, or no body), or undefined. */
function parseResponse(b: Buffer): { res: RawResponse; used: number } | undefined {
  const headEnd = b.indexOf('\r\n\r\n');
  if (headEnd === -1) return undefined;
  const head = b.subarray(0, headEnd).toString('latin1');
  const lines = head.split('\r\n');
  const status = Number(lines[0]!.split(' ')[1]);
  const headers = headerMap(lines.slice(1));
  let at = headEnd + 4;
  const done = (body: Buffer, used: number, trailers: Record<string, string> = {}) => ({
    res: { status, head, headers, body, trailers },
    used,
  });
  if (status < 200 || status === 204 || status === 304) return done(Buffer.alloc(0), at);
  if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = b.indexOf('\r\n', at);
      if (lineEnd === -1) return undefined;
      const size = parseInt(b.subarray(at, lineEnd).toString('latin1'), 16);
      at = lineEnd + 2;
      if (size === 0) {
        const end = b.indexOf('\r\n\r\n', at - 2);
        if (end === -1) return undefined;
        const trailerText = b.subarray(at, end).toString('latin1');
        return done(Buffer.concat(parts), end + 4, headerMap(trailerText.split('\r\n')));
      }
      if (b.length < at + size + 2) return undefined;
      parts.push(b.subarray(at, at + size));
      at += size + 2;
    }
  }
  const cl = Number(headers['content-length'] ?? 0);
  if (b.length < at + cl) return undefined;
  return done(b.subarray(at, at + cl), at + cl);
}

/** What these cases need of the router under test (a part of router-contract.ts's RouterUnderTest). */
interface ProtocolRouter {
  readonly url: string;
  apply(routes: readonly Route[]): Promise<void>;
}

/** The capabilities these cases read (documented in router-contract.ts's RouterCapabilities). */
interface ProtocolCapabilities {
  readonly separateIdleTimeout: boolean;
  readonly cutsChunkedOverMaxBody: boolean;
  readonly chunkedMaxBodyUpTo?: number;
}

const get = (host: string, path = '/', extra = ''): string => `GET ${path} HTTP/1.1\r\nhost: ${host}\r\n${extra}\r\n`;

/** Register the protocol cases inside the router contract's suite. */
export function protocolContract(router: () => ProtocolRouter, caps: ProtocolCapabilities): void {
  describe('protocol details', () => {
    let info: TestUpstream;
    let counter: TestUpstream;
    let stalled: TestUpstream;
    let sse: TestUpstream;
    let client: Pool;
    /** SSE: the client tells the app it got event n; the app writes n+1 only then. */
    const seen: (() => void)[] = [];
    const waitSeen = (n: number): Promise<void> => new Promise((resolve) => (seen[n] = resolve));
    const route = (app: string, u: TestUpstream, http?: RouteHttp): Route => ({
      app,
      hosts: [`${app}.localhost`],
      backends: [{ revision: 1, weight: 100, upstreams: [{ id: `${app}-${u.name}`, host: u.host, port: u.port }] }],
      ...(http ? { http } : {}),
    });

    before(async () => {
      // Answers with what it saw: the router's upstream connection (port), headers, and by path a
      // gzip body, a plain one, or a chunked one with a trailer.
      info = await startUpstream('info', (req, res) => {
        req.resume();
        req.on('end', () => {
          const seenBy = { port: req.socket.remotePort, headers: req.headers };
          if (req.url === '/gzip') {
            res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', vary: 'accept-encoding' });
            res.end(gzipSync('hello gzip '.repeat(200)));
          } else if (req.url === '/plain') {
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.end('plain '.repeat(200));
          } else if (req.url === '/trailers') {
            res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
            res.write('part one;');
            res.write('part two');
            res.addTrailers({ 'x-checksum': 'sha256-abc' });
            res.end();
          } else {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(seenBy));
          }
        });
      });
      counter = await startUpstream('counter', (req, res) => {
        let n = 0;
        req.on('data', (d: Buffer) => (n += d.length));
        req.on('end', () => res.end(String(n)));
      });
      // /headers-late: answers after 5 s; /body-gap?ms=N: first chunk at once, the rest after N ms.
      stalled = await startUpstream('stalled', (req, res) => {
        req.resume();
        const url = new URL(req.url ?? '/', 'http://x');
        if (url.pathname === '/headers-late') {
          const t = setTimeout(() => res.end('late'), 5_000);
          res.once('close', () => clearTimeout(t));
          return;
        }
        const gap = Number(url.searchParams.get('ms') ?? 0);
        res.writeHead(200, { 'content-type': url.searchParams.has('sse') ? 'text/event-stream' : 'text/plain' });
        res.write('first\n');
        const t = setTimeout(() => res.end('second\n'), gap);
        res.once('close', () => clearTimeout(t));
      });
      sse = await startUpstream('sse', (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        void (async () => {
          for (let n = 1; n <= 3; n++) {
            const told = waitSeen(n);
            res.write(`id: ${n}\ndata: event ${n}\n\n`);
            // Nothing more until the client has event n: a buffering router never gets there.
            await told;
          }
          res.end();
        })();
      });
      client = new Pool(router().url, { connections: 4 });
    });
    after(async () => {
      await client.close();
      await Promise.all([info, counter, stalled, sse].map((u) => u.close()));
    });

    const apply = (routes: Route[]): Promise<void> => router().apply(routes);

    it('keeps connections alive on both sides (two requests, one client and one upstream connection)', async () => {
      await apply([route('ka', info)]);
      const c = await RawConn.open(router().url);
      try {
        c.write(get('ka.localhost'));
        const one = await c.response();
        assert.equal(one?.status, 200);
        assert.doesNotMatch(one.head, /^connection: close/im);
        c.write(get('ka.localhost'));
        const two = await c.response();
        assert.equal(two?.status, 200, 'the second request went on the same client connection');
        const p1 = (JSON.parse(one.body.toString()) as { port: number }).port;
        const p2 = (JSON.parse(two.body.toString()) as { port: number }).port;
        assert.equal(p2, p1, 'the router reused its upstream connection');
        assert.equal(c.ended, false);
      } finally {
        c.close();
      }
    });

    it('honours Connection: close (answers, then closes the connection)', async () => {
      await apply([route('ka', info)]);
      const c = await RawConn.open(router().url);
      try {
        c.write(get('ka.localhost', '/', 'connection: close\r\n'));
        const res = await c.response();
        assert.equal(res?.status, 200);
        assert.match(res.head, /^connection: close$/im);
        assert.ok(await c.closedWithin(10_000), 'the router closed the connection after the response');
      } finally {
        c.close();
      }
    });

    it("answers 504 with the router's body when the app exceeds its requestTimeout", async () => {
      await apply([route('late', stalled, { requestTimeoutMs: 1_000 })]);
      const res = await client.request({ path: '/headers-late', method: 'GET', headers: { host: 'late.localhost' } });
      const text = await res.body.text();
      assert.equal(res.statusCode, 504);
      assert.equal(res.headers['x-pilot-error'], 'upstream_timeout');
      assert.match(text.split('\n')[0]!, /^pilot: an instance of app "late" did not answer in time/);
      assert.match(text, /^hint: /m);
      // Without the limit the same request waits for the app (default 60 s).
      await apply([route('late', stalled)]);
      const ok = await client.request({ path: '/headers-late', method: 'GET', headers: { host: 'late.localhost' } });
      assert.equal(ok.statusCode, 200);
      assert.equal(await ok.body.text(), 'late');
    });

    it('cuts a response body silent for longer than the idleTimeout, keeps one that is not', async () => {
      const read = async (path: string, headers: Record<string, string> = {}): Promise<string> => {
        const res = await client.request({ path, method: 'GET', headers: { host: 'idle.localhost', ...headers } });
        assert.equal(res.statusCode, 200);
        try {
          return await res.body.text();
        } catch {
          return 'cut';
        }
      };
      await apply([route('idle', stalled, { requestTimeoutMs: 1_000, idleTimeoutMs: 1_000 })]);
      assert.equal(await read('/body-gap?ms=6000'), 'cut', 'a 6 s silence is over a 1 s idleTimeout');
      await apply([route('idle', stalled, { requestTimeoutMs: 1_000, idleTimeoutMs: 8_000 })]);
      // A stream (Accept: text/event-stream) may stay silent for the idleTimeout on every router.
      assert.equal(await read('/body-gap?ms=2500&sse', { accept: 'text/event-stream' }), 'first\nsecond\n');
      // Any other response: a separate idle timeout where the router has one.
      const plain = await read('/body-gap?ms=2500');
      if (caps.separateIdleTimeout) assert.equal(plain, 'first\nsecond\n');
      else assert.equal(plain, 'cut', 'one server timeout (the requestTimeout) bounds every silence');
    });

    it('refuses a body over maxBody with 413: by Content-Length before reading, chunked as it passes', async () => {
      await apply([route('lim', counter, { maxBodyBytes: 1024 })]);
      const ok = await client.request({ path: '/', method: 'POST', headers: { host: 'lim.localhost' }, body: 'x'.repeat(1024) });
      assert.equal(await ok.body.text(), '1024');
      const before = counter.requests;
      const big = await client.request({
        path: '/',
        method: 'POST',
        headers: { host: 'lim.localhost', accept: 'application/json' },
        body: 'x'.repeat(4096),
      });
      assert.equal(big.statusCode, 413);
      const err = (await big.body.json()) as { error: { code: string; message: string } };
      assert.equal(err.error.code, 'too_large');
      assert.equal(err.error.message, 'pilot: the request body is larger than app "lim" accepts (1024 bytes)');
      assert.equal(counter.requests, before, 'the app never saw it');
      // A Content-Length far beyond any buffer (a client announcing a petabyte): 413 at once.
      const huge = await RawConn.open(router().url);
      try {
        huge.write('PUT /x HTTP/1.1\r\nhost: LIM.localhost:80\r\ncontent-length: 999999999999999\r\n\r\nabc');
        const res = await huge.response(10_000);
        assert.equal(res?.status, 413);
        assert.equal(res.headers['x-pilot-error'], 'too_large');
        assert.equal(counter.requests, before);
      } finally {
        huge.close();
      }
      // Chunked: 64 chunks of 1 KiB, written one by one until the router answers.
      const c = await RawConn.open(router().url);
      try {
        c.write('POST / HTTP/1.1\r\nhost: lim.localhost\r\ntransfer-encoding: chunked\r\n\r\n');
        let answered = false;
        for (let i = 0; i < 64 && !answered; i++) {
          c.write(`400\r\n${'y'.repeat(1024)}\r\n`);
          answered = await c.waitFor((b) => b.length > 0, 50);
        }
        if (!answered) c.write('0\r\n\r\n');
        const res = await c.response();
        if (caps.cutsChunkedOverMaxBody) {
          assert.equal(res?.status, 413);
          assert.match(res.body.toString(), /^pilot: the request body is larger than app "lim" accepts \(1024 bytes\)/);
          assert.match(res.head, /^connection: close$/im, 'the rest of the body is not read');
        } else {
          assert.equal(res?.status, 200, 'a chunked body is streamed whole');
          assert.equal(res.body.toString(), String(64 * 1024));
        }
      } finally {
        c.close();
      }
      // A chunked body within maxBody reaches the app whole.
      const small = await RawConn.open(router().url);
      try {
        small.write('POST / HTTP/1.1\r\nhost: lim.localhost\r\ntransfer-encoding: chunked\r\n\r\n');
        small.write(`200\r\n${'z'.repeat(512)}\r\n`);
        small.write(`200\r\n${'z'.repeat(512)}\r\n0\r\n\r\n`);
        const res = await small.response(10_000);
        assert.equal(res?.status, 200);
        assert.equal(res.body.toString(), '1024');
      } finally {
        small.close();
      }
    });

    it('streams a chunked body to an app with a large maxBody without holding it; over the size a router can count (where it has one), whole and unchecked', async () => {
      // A router that counts chunked bodies of any size: a body within a 64 KiB maxBody. One that
      // counts only up to a size (HAProxy): a maxBody over it, and a body over that maxBody too.
      const upTo = caps.chunkedMaxBodyUpTo;
      const maxBody = upTo === undefined ? 64 * 1024 : upTo * 4;
      const total = upTo === undefined ? 40 * 1024 : upTo * 5;
      await apply([route('biglim', counter, { maxBodyBytes: maxBody })]);
      const before = counter.requests;
      const c = await RawConn.open(router().url);
      try {
        c.write('POST / HTTP/1.1\r\nhost: biglim.localhost\r\ntransfer-encoding: chunked\r\n\r\n');
        for (let i = 0; i < 8; i++) c.write(`400\r\n${'y'.repeat(1024)}\r\n`);
        // The first bytes reach the app before the body ends: nothing is held for counting.
        const end = performance.now() + 10_000;
        while (counter.requests === before && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
        assert.ok(counter.requests > before, 'the app saw the request before its body ended');
        c.write(`${(total - 8 * 1024).toString(16)}\r\n${'y'.repeat(total - 8 * 1024)}\r\n0\r\n\r\n`);
        const res = await c.response(10_000);
        assert.equal(
          res?.status,
          200,
          upTo === undefined ? 'within maxBody' : `over ${upTo} bytes, maxBody is not counted on a chunked body`,
        );
        assert.equal(res.body.toString(), String(total));
      } finally {
        c.close();
      }
    });

    it('answers Expect: 100-continue with 100, then the app; over maxBody with 413 and no 100', async () => {
      await apply([route('cont', counter, { maxBodyBytes: 1024 })]);
      const c = await RawConn.open(router().url);
      try {
        c.write('POST / HTTP/1.1\r\nhost: cont.localhost\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n');
        const interim = await c.response(10_000);
        assert.equal(interim?.status, 100, 'the client is told to send its body');
        c.write('hello');
        const res = await c.response();
        assert.equal(res?.status, 200);
        assert.equal(res.body.toString(), '5');
      } finally {
        c.close();
      }
      const before = counter.requests;
      const d = await RawConn.open(router().url);
      try {
        d.write('POST / HTTP/1.1\r\nhost: cont.localhost\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n');
        const res = await d.response(10_000);
        assert.equal(res?.status, 413, 'refused before the body is sent');
        assert.equal(counter.requests, before);
      } finally {
        d.close();
      }
    });

    it("passes the app's response trailers through", async () => {
      await apply([route('tr', info)]);
      const c = await RawConn.open(router().url);
      try {
        c.write(get('tr.localhost', '/trailers', 'te: trailers\r\n'));
        const res = await c.response();
        assert.equal(res?.status, 200);
        assert.equal(res.body.toString(), 'part one;part two');
        assert.match(res.headers['transfer-encoding'] ?? '', /chunked/);
        assert.equal(res.trailers['x-checksum'], 'sha256-abc');
      } finally {
        c.close();
      }
    });

    it('streams Server-Sent Events: each event reaches the client before the app writes the next', async () => {
      await apply([route('events', sse)]);
      const res = await client.request({
        path: '/stream',
        method: 'GET',
        headers: { host: 'events.localhost', accept: 'text/event-stream' },
      });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'text/event-stream');
      let text = '';
      const deadline = setTimeout(() => res.body.destroy(new Error(`buffered: only ${JSON.stringify(text)} after 15 s`)), 15_000);
      try {
        for await (const chunk of res.body) {
          text += (chunk as Buffer).toString();
          for (let n = 1; n <= 3; n++) if (text.includes(`data: event ${n}\n\n`)) seen[n]?.();
        }
      } finally {
        clearTimeout(deadline);
      }
      assert.equal(text, 'id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n');
    });

    it('leaves compression to the app: gzip bytes and Content-Encoding untouched, nothing compressed', async () => {
      await apply([route('gz', info)]);
      const gz = await client.request({ path: '/gzip', method: 'GET', headers: { host: 'gz.localhost', 'accept-encoding': 'gzip, br' } });
      const bytes = Buffer.from(await gz.body.arrayBuffer());
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.equal(gunzipSync(bytes).toString(), 'hello gzip '.repeat(200));
      const plain = await client.request({ path: '/plain', method: 'GET', headers: { host: 'gz.localhost', 'accept-encoding': 'gzip' } });
      assert.equal(plain.headers['content-encoding'], undefined, 'the router compresses nothing');
      assert.equal(await plain.body.text(), 'plain '.repeat(200));
      const echo = await client.request({ path: '/', method: 'GET', headers: { host: 'gz.localhost', 'accept-encoding': 'gzip, br' } });
      const seenBy = (await echo.body.json()) as { headers: Record<string, string> };
      assert.equal(seenBy.headers['accept-encoding'], 'gzip, br', 'the app sees what the client accepts');
    });
  });
}

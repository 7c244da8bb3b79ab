/**
 * One contract for every router adapter (the embedded router, HAProxy driven by Pilot): the same
 * requests, the same expectations. Where an adapter behaves otherwise by design, its capability
 * list says so by name and the test asserts the adapter's documented behaviour instead (never a
 * skipped file). Run by router-contract-embedded.test.ts and src/haproxy/router-contract-haproxy.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Pool } from 'undici';
import type { Route } from '../core/routes.js';
import { closedPort, send, startUpstream, type Echo, type TestUpstream } from './test-support.js';
import { protocolContract } from './router-contract-protocol.js';

/** A router under test: a URL, a way to give it a table, its in-flight count, and a stop. */
export interface RouterUnderTest {
  readonly url: string;
  apply(routes: readonly Route[]): Promise<void>;
  inflight(id: string): Promise<number>;
  close(): Promise<void>;
}

/** What an adapter does differently, by name. */
export interface RouterCapabilities {
  /** Content-Length with Transfer-Encoding → 400. Otherwise: CL is dropped, the chunked body is read (RFC 9112 §6.3). */
  readonly refusesClWithTe: boolean;
  /** "GET http://host/ HTTP/1.1" → 400. Otherwise: served by the Host of the request. */
  readonly refusesAbsoluteForm: boolean;
  /** 90/10 over 100 requests is exactly 90/10 (smooth WRR over revisions). Otherwise within ±8. */
  readonly exactWeights: boolean;
  /**
   * The idleTimeout bounds silences inside any response body, apart from the requestTimeout.
   * Otherwise: one server timeout (the requestTimeout) bounds every silence, and only a request
   * with Accept: text/event-stream gets the idleTimeout.
   */
  readonly separateIdleTimeout: boolean;
  /** A chunked body is cut with 413 once it passes maxBody. Otherwise: only Content-Length is checked; chunked passes whole. */
  readonly cutsChunkedOverMaxBody: boolean;
  /**
   * Set: chunked bodies are cut only for a maxBody up to this many bytes (HAProxy holds them in its
   * buffer to count them); over it, a chunked body is streamed whole.
   */
  readonly chunkedMaxBodyUpTo?: number;
}

const up = (u: TestUpstream, rev = 1): { id: string; host: string; port: number } => ({
  id: `${u.name}-${rev}`,
  host: u.host,
  port: u.port,
});

async function raw(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () => s.write(text));
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('end', () => resolve(out));
    s.on('error', reject);
    setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 3_000).unref();
  });
}

export function routerContract(name: string, start: () => Promise<RouterUnderTest>, caps: RouterCapabilities): void {
  describe(`router contract: ${name}`, () => {
    let r: RouterUnderTest;
    let client: Pool;
    let a: TestUpstream;
    let b: TestUpstream;
    let other: TestUpstream;
    let slow: TestUpstream;
    /**
     * The slow app writes its first chunk, then the others only once the client says it has read
     * it (`slowSeen`), or after 10 s without that word (a router that holds the first chunk back
     * until the body ends): `slowAcked` says which happened.
     */
    let slowSeen: (() => void) | undefined;
    let slowAcked: boolean | undefined;
    let ws: TestUpstream;
    let dead: number;
    const base = (): Route[] => [
      { app: 'shop', hosts: ['shop.localhost', 'shop.example.com'], backends: [{ revision: 1, weight: 100, upstreams: [up(a)] }] },
      { app: 'blog', hosts: ['blog.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [up(other)] }] },
      { app: 'down', hosts: ['down.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [] }] },
      {
        app: 'gone',
        hosts: ['gone.localhost'],
        backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'gone-1', host: '127.0.0.1', port: dead }] }],
      },
    ];

    before(async () => {
      a = await startUpstream('a');
      b = await startUpstream('b', undefined, '127.0.0.2');
      other = await startUpstream('other');
      slow = await startUpstream('slow', (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('chunk 0\n');
        slowAcked = undefined;
        const rest = (acked: boolean): void => {
          clearTimeout(timer);
          slowSeen = undefined;
          slowAcked ??= acked;
          for (let n = 1; n < 5; n++) res.write(`chunk ${n}\n`);
          res.end();
        };
        const timer = setTimeout(() => rest(false), 10_000);
        slowSeen = () => rest(true);
      });
      ws = await startUpstream('ws');
      ws.server.on('upgrade', (req, socket) => {
        const accept = createHash('sha1')
          .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
          .digest('base64');
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
        );
        socket.on('data', (d: Buffer) => socket.write(d)); // echo the raw bytes
      });
      dead = await closedPort();
      r = await start();
      client = new Pool(r.url, { connections: 8 });
      await r.apply(base());
    });
    after(async () => {
      await client.close();
      await r.close();
      await Promise.all([a, b, other, slow, ws].map((u) => u.close()));
    });

    it('routes by Host (case and port ignored), each app to its own upstream', async () => {
      const x = JSON.parse((await send(client, 'SHOP.localhost:8080')).text) as Echo;
      assert.equal(x.name, 'a');
      assert.equal((JSON.parse((await send(client, 'shop.example.com')).text) as Echo).name, 'a');
      assert.equal((JSON.parse((await send(client, 'blog.localhost')).text) as Echo).name, 'other');
    });

    it("answers an unknown host with the router's 404, text or JSON", async () => {
      const t = await send(client, 'nope.localhost');
      assert.equal(t.status, 404);
      assert.equal(t.headers['x-pilot-error'], 'not_found');
      assert.equal(t.text.split('\n')[0], 'pilot: no app serves host "nope.localhost"');
      assert.match(t.text, /^hint: /m);
      const j = await send(client, 'nope.localhost', { headers: { accept: 'application/json' } });
      assert.equal(j.status, 404);
      const body = JSON.parse(j.text) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'not_found');
      assert.equal(body.error.message, 'pilot: no app serves host "nope.localhost"');
    });

    it("answers an app without a ready instance with the router's 502", async () => {
      const t = await send(client, 'down.localhost');
      assert.equal(t.status, 502);
      assert.equal(t.text.split('\n')[0], 'pilot: no ready instance of app "down"');
      const j = await send(client, 'down.localhost', { headers: { accept: 'application/json' } });
      assert.equal((JSON.parse(j.text) as { error: { code: string } }).error.code, 'bad_gateway');
      const g = await send(client, 'gone.localhost');
      assert.equal(g.status, 502, 'an instance that refuses connections is a 502');
      assert.match(g.text, /^pilot: /);
    });

    it('splits by weight (90/10) and serves weight 0 nothing', async () => {
      await r.apply([
        ...base().filter((x) => x.app !== 'shop'),
        {
          app: 'shop',
          hosts: ['shop.localhost'],
          backends: [
            { revision: 1, weight: 90, upstreams: [up(a)] },
            { revision: 2, weight: 10, upstreams: [up(b, 2)] },
          ],
        },
      ]);
      const seen = { a: 0, b: 0 };
      for (let i = 0; i < 100; i++) seen[(JSON.parse((await send(client, 'shop.localhost')).text) as Echo).name as 'a' | 'b']++;
      if (caps.exactWeights) assert.deepEqual(seen, { a: 90, b: 10 });
      else assert.ok(Math.abs(seen.b - 10) <= 8, `b got ${seen.b} of 100`);
      await r.apply([
        ...base().filter((x) => x.app !== 'shop'),
        {
          app: 'shop',
          hosts: ['shop.localhost'],
          backends: [
            { revision: 1, weight: 100, upstreams: [up(a)] },
            { revision: 2, weight: 0, upstreams: [up(b, 2)] },
          ],
        },
      ]);
      for (let i = 0; i < 20; i++) assert.equal((JSON.parse((await send(client, 'shop.localhost')).text) as Echo).name, 'a');
      // The pin: X-Pilot-Revision reaches revision 2 whatever its weight, and is not forwarded.
      const pinned = JSON.parse((await send(client, 'shop.localhost', { headers: { 'x-pilot-revision': ' 2 ' } })).text) as Echo;
      assert.equal(pinned.name, 'b');
      assert.equal(pinned.headers['x-pilot-revision'], undefined);
      const unknown = JSON.parse((await send(client, 'shop.localhost', { headers: { 'x-pilot-revision': '7' } })).text) as Echo;
      assert.equal(unknown.name, 'a', 'a revision without upstreams: the usual pick');
      await r.apply(base());
    });

    it('keeps a user on one variant with a sticky cookie, and by header', async () => {
      const split = (by: { cookie: string } | { header: string }): Route => ({
        app: 'shop',
        hosts: ['shop.localhost'],
        backends: [
          { revision: 1, weight: 50, upstreams: [up(a)] },
          { revision: 2, weight: 50, upstreams: [up(b, 2)] },
        ],
        sticky: { by, seed: 'shop/1' },
      });
      await r.apply([...base().filter((x) => x.app !== 'shop'), split({ cookie: 'uid' })]);
      const first = await send(client, 'shop.localhost');
      const set = [first.headers['set-cookie']].flat().find((c) => c?.startsWith('uid='));
      assert.ok(set, 'a first visit gets the cookie');
      assert.match(set, /; Path=\/; Max-Age=31536000; HttpOnly; SameSite=Lax/);
      const cookie = set.split(';')[0]!;
      const names = new Set<string>();
      for (let i = 0; i < 10; i++) {
        const x = await send(client, 'shop.localhost', { headers: { cookie } });
        assert.equal(x.headers['set-cookie'], undefined, 'no new cookie for a known user');
        names.add((JSON.parse(x.text) as Echo).name);
      }
      assert.equal(names.size, 1);
      const users = new Set<string>();
      for (let i = 0; i < 40; i++)
        users.add((JSON.parse((await send(client, 'shop.localhost', { headers: { cookie: `uid=user${i}` } })).text) as Echo).name);
      assert.deepEqual([...users].sort(), ['a', 'b'], 'users are spread over both variants');
      await r.apply([...base().filter((x) => x.app !== 'shop'), split({ header: 'x-user' })]);
      const byHeader = new Set<string>();
      for (let i = 0; i < 10; i++)
        byHeader.add((JSON.parse((await send(client, 'shop.localhost', { headers: { 'x-user': 'u42' } })).text) as Echo).name);
      assert.equal(byHeader.size, 1);
      await r.apply(base());
    });

    it('drains an instance with zero failed requests', async () => {
      const two = (ups: ReturnType<typeof up>[]): Route[] => [
        ...base().filter((x) => x.app !== 'shop'),
        { app: 'shop', hosts: ['shop.localhost'], backends: [{ revision: 1, weight: 100, upstreams: ups }] },
      ];
      await r.apply(two([up(a), up(b)]));
      let failed = 0;
      let done = 0;
      let stop = false;
      const loop = async (): Promise<void> => {
        while (!stop) {
          const x = await send(client, 'shop.localhost').catch(() => ({ status: 0 }));
          if (x.status !== 200) failed++;
          done++;
        }
      };
      const loops = [loop(), loop(), loop(), loop()];
      await new Promise((res) => setTimeout(res, 300));
      await r.apply(two([up(a)])); // b leaves the table
      const end = performance.now() + 20_000;
      while ((await r.inflight(up(b).id)) > 0 && performance.now() < end) await new Promise((res) => setTimeout(res, 20));
      const served = b.requests;
      await new Promise((res) => setTimeout(res, 300));
      stop = true;
      await Promise.all(loops);
      assert.equal(failed, 0, `${failed} of ${done} requests failed`);
      assert.equal(b.requests, served, 'a drained instance gets nothing new');
      await r.apply(base());
    });

    it('passes a WebSocket upgrade through, both ways', async () => {
      await r.apply([...base(), { app: 'chat', hosts: ['chat.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [up(ws)] }] }]);
      const { hostname, port } = new URL(r.url);
      const answer = await new Promise<string>((resolve, reject) => {
        const s = net.connect(Number(port), hostname, () =>
          s.write(
            'GET /ws HTTP/1.1\r\nhost: chat.localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
          ),
        );
        let out = '';
        let pinged = false;
        s.on('data', (d: Buffer) => {
          out += d.toString('latin1');
          if (out.includes('\r\n\r\n') && !pinged) {
            pinged = true;
            s.write('ping!');
          }
          if (out.includes('ping!')) {
            s.destroy();
            resolve(out);
          }
        });
        s.on('error', reject);
        setTimeout(() => {
          s.destroy();
          reject(new Error(`no echo through the upgraded connection within 10 s; got ${JSON.stringify(out)}`));
        }, 10_000).unref();
      });
      assert.match(answer, /^HTTP\/1\.1 101/);
      assert.ok(answer.endsWith('ping!'));
      await r.apply(base());
    });

    it('streams a response as it is written, and a large upload whole', async () => {
      await r.apply([
        ...base(),
        { app: 'slow', hosts: ['slow.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [up(slow)] }] },
      ]);
      const res = await client.request({ path: '/', method: 'GET', headers: { host: 'slow.localhost' } });
      let text = '';
      for await (const chunk of res.body) {
        text += (chunk as Buffer).toString();
        // The first chunk is here: the app may write the rest (it waits for this, not for a time).
        if (text.includes('chunk 0\n')) slowSeen?.();
      }
      assert.equal(text.split('\n').filter(Boolean).length, 5);
      assert.equal(slowAcked, true, 'the first chunk came before the last was written');
      const big = 'x'.repeat(20 * 1024 * 1024);
      const counter = await startUpstream('count', (req, resp) => {
        let n = 0;
        req.on('data', (d: Buffer) => (n += d.length));
        req.on('end', () => resp.end(String(n)));
      });
      await r.apply([
        ...base(),
        { app: 'up', hosts: ['up.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [up(counter)] }] },
      ]);
      const u = await send(client, 'up.localhost', { method: 'POST', body: big });
      assert.equal(u.text, String(big.length));
      await counter.close();
      await r.apply(base());
    });

    it("sets forwarded headers and drops a client's own", async () => {
      const x = JSON.parse(
        (
          await send(client, 'shop.localhost', {
            headers: { 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6', 'x-forwarded-host': 'evil' },
          })
        ).text,
      ) as Echo;
      assert.equal(x.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(x.headers['x-forwarded-proto'], 'http');
      assert.equal(x.headers['x-forwarded-host'], 'shop.localhost');
      assert.equal(x.headers.forwarded, undefined);
      assert.equal(x.headers['x-real-ip'], undefined);
      assert.equal(x.headers.host, 'shop.localhost');
    });

    it('refuses bad requests: smuggling, duplicate Content-Length, oversized headers, absolute form', async () => {
      const before = a.requests;
      const clte = await raw(
        r.url,
        'POST / HTTP/1.1\r\nhost: shop.localhost\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: shop.localhost\r\n\r\n',
      );
      if (caps.refusesClWithTe) assert.match(clte, /^HTTP\/1\.1 400/);
      else assert.doesNotMatch(clte, /smuggled/, 'the body is read as chunked: nothing smuggled');
      const dup = await raw(r.url, 'POST / HTTP/1.1\r\nhost: shop.localhost\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde');
      assert.match(dup, /^HTTP\/1\.1 400/);
      const huge = await raw(r.url, `GET / HTTP/1.1\r\nhost: shop.localhost\r\nx-big: ${'y'.repeat(20_000)}\r\n\r\n`);
      assert.match(huge, /^HTTP\/1\.1 4(00|31)/);
      const abs = await raw(r.url, 'GET http://shop.localhost/ HTTP/1.1\r\nhost: shop.localhost\r\nconnection: close\r\n\r\n');
      if (caps.refusesAbsoluteForm) assert.match(abs, /^HTTP\/1\.1 400/);
      else assert.match(abs, /^HTTP\/1\.1 200/);
      if (caps.refusesClWithTe) assert.equal(a.requests, before + (caps.refusesAbsoluteForm ? 0 : 1));
    });

    protocolContract(() => r, caps);
  });
}

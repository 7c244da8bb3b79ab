/**
 * The HTTPS part of the router contract, for every router that terminates TLS (the embedded router,
 * HAProxy driven by Pilot): certificates chosen by SNI, TLS 1.2+ only, the per-host policy
 * (redirect, HSTS), the ACME HTTP-01 answers, and certificates added, renewed and removed while
 * requests keep coming. Run by router-contract-embedded.test.ts and
 * src/haproxy/router-contract-haproxy.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { Route } from '../core/routes.js';
import { selfSigned, type SelfSigned } from '../os/test-certs.js';
import { startUpstream, type Echo, type TestUpstream } from './test-support.js';
import type { TlsBundle } from './tls.js';

/** A router under test with an HTTPS port. */
export interface HttpsRouterUnderTest {
  /** http://host:port */
  readonly url: string;
  readonly httpsPort: number;
  apply(routes: readonly Route[]): Promise<void>;
  /** Serve exactly these certificates, policies and ACME answers; resolves once they are served. */
  setTls(bundle: TlsBundle): Promise<void>;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  serial: string;
  protocol: string | null;
}

/** GET over HTTPS on a new connection, SNI = host, the chain checked against `ca`. */
function httpsGet(
  port: number,
  host: string,
  ca: string | string[],
  o: { path?: string; headers?: Record<string, string>; tls?: tls.ConnectionOptions } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        port,
        servername: host,
        path: o.path ?? '/',
        headers: { host, ...o.headers },
        ca,
        agent: false,
        timeout: 15_000,
        ...o.tls,
      },
      (res) => {
        const socket = res.socket as tls.TLSSocket;
        const serial = new X509Certificate(socket.getPeerCertificate(false).raw).serialNumber;
        const protocol = socket.getProtocol();
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, serial, protocol }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** A TLS handshake alone: the negotiated protocol, or the error's code. */
function handshake(
  port: number,
  o: tls.ConnectionOptions,
): Promise<{ ok: true; protocol: string | null; alpn: string | false | null } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...o }, () => {
      resolve({ ok: true, protocol: s.getProtocol(), alpn: s.alpnProtocol });
      s.destroy();
    });
    s.setTimeout(15_000, () => s.destroy(Object.assign(new Error('timed out'), { code: 'TIMEOUT' })));
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, code: err.code ?? err.message }));
  });
}

/** A plain-HTTP GET on a new connection. */
function httpGet(url: string, host: string, path = '/'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: hostname, port, path, headers: { host }, agent: false, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

const serialOf = (c: SelfSigned): string => new X509Certificate(c.cert).serialNumber;

export function routerHttpsContract(name: string, start: () => Promise<HttpsRouterUnderTest>): void {
  describe(`router contract, HTTPS: ${name}`, { timeout: 180_000 }, () => {
    let r: HttpsRouterUnderTest;
    let a: TestUpstream;
    let b: TestUpstream;
    const dir = mkdtempSync(join(tmpdir(), 'pilot-https-contract-'));
    let shop: SelfSigned;
    let shop2: SelfSigned;
    let blog: SelfSigned;
    const routes = (): Route[] => [
      {
        app: 'shop',
        hosts: ['shop.test', 'www.shop.test'],
        backends: [
          { revision: 1, weight: 100, upstreams: [{ id: 'a-1', host: a.host, port: a.port }] },
          { revision: 2, weight: 0, upstreams: [{ id: 'b-2', host: b.host, port: b.port }] },
        ],
      },
      {
        app: 'blog',
        hosts: ['blog.test'],
        backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'b-1', host: b.host, port: b.port }] }],
      },
    ];
    const bundle = (over: Partial<TlsBundle> = {}): TlsBundle => ({
      certs: [
        { host: 'shop.test', cert: shop.cert, key: shop.key },
        { host: 'blog.test', cert: blog.cert, key: blog.key },
      ],
      policies: {},
      challenges: {},
      ...over,
    });

    before(async () => {
      shop = selfSigned(dir, 'shop', ['shop.test']);
      shop2 = selfSigned(dir, 'shop2', ['shop.test']);
      blog = selfSigned(dir, 'blog', ['blog.test']);
      a = await startUpstream('a');
      b = await startUpstream('b');
      r = await start();
      await r.apply(routes());
      await r.setTls(bundle());
    });
    after(async () => {
      await r?.close();
      await a?.close();
      await b?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('serves each host its own certificate by SNI, routed like HTTP, with X-Forwarded-Proto: https', async () => {
      const s = await httpsGet(r.httpsPort, 'shop.test', shop.cert);
      assert.equal(s.status, 200, s.body);
      assert.equal(s.serial, serialOf(shop));
      const echo = JSON.parse(s.body) as Echo;
      assert.equal(echo.name, 'a');
      assert.equal(echo.headers['x-forwarded-proto'], 'https');
      assert.equal(echo.headers['x-forwarded-host'], 'shop.test');
      assert.equal(s.headers['strict-transport-security'], undefined, 'no HSTS without the policy');
      const bl = await httpsGet(r.httpsPort, 'blog.test', blog.cert);
      assert.equal(bl.serial, serialOf(blog));
      assert.equal((JSON.parse(bl.body) as Echo).name, 'b');
      // The pin reaches revision 2 (weight 0) over HTTPS as over HTTP.
      const pinned = await httpsGet(r.httpsPort, 'shop.test', shop.cert, { headers: { 'x-pilot-revision': '2' } });
      assert.equal((JSON.parse(pinned.body) as Echo).name, 'b');
      // Plain HTTP says http.
      const plain = await httpGet(r.url, 'shop.test');
      assert.equal((JSON.parse(plain.body) as Echo).headers['x-forwarded-proto'], 'http');
    });

    it('refuses the handshake for a host without a certificate and without SNI; ALPN http/1.1', async () => {
      // www.shop.test is an app host, but no certificate was given for it: none is handed out.
      const wrong = await handshake(r.httpsPort, { servername: 'www.shop.test' });
      assert.equal(wrong.ok, false, 'no certificate for www.shop.test');
      const none = await handshake(r.httpsPort, {});
      assert.equal(none.ok, false, 'no SNI');
      const other = await handshake(r.httpsPort, { servername: 'nope.test' });
      assert.equal(other.ok, false, 'an unknown host');
      const h1 = await handshake(r.httpsPort, { servername: 'shop.test', ALPNProtocols: ['h2', 'http/1.1'] });
      assert.ok(h1.ok);
      assert.equal(h1.alpn, 'http/1.1');
    });

    it('speaks TLS 1.2 and 1.3 only, with forward-secret AEAD suites', async () => {
      const t13 = await handshake(r.httpsPort, { servername: 'shop.test' });
      assert.deepEqual(t13.ok && t13.protocol, 'TLSv1.3');
      const t12 = await handshake(r.httpsPort, { servername: 'shop.test', maxVersion: 'TLSv1.2' });
      assert.deepEqual(t12.ok && t12.protocol, 'TLSv1.2');
      // TLS 1.1 offered alone (the client allows it at security level 0): the router says no.
      const t11 = await handshake(r.httpsPort, {
        servername: 'shop.test',
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      assert.equal(t11.ok, false);
      if (!t11.ok) assert.match(t11.code, /ALERT_PROTOCOL_VERSION|ECONNRESET/, t11.code);
      // A TLS 1.2 suite without forward secrecy (RSA key exchange, CBC) is refused.
      const weak = await handshake(r.httpsPort, { servername: 'shop.test', maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' });
      assert.equal(weak.ok, false);
    });

    it('redirects plain HTTP to HTTPS (308) and sends HSTS, per host, never on the ACME path', async () => {
      await r.setTls(bundle({ policies: { 'shop.test': { redirect: true, hstsMaxAge: 31536000 }, 'www.shop.test': { redirect: true } } }));
      const red = await httpGet(r.url, 'shop.test', '/cart?id=7');
      assert.equal(red.status, 308);
      assert.equal(red.headers.location, `https://shop.test:${r.httpsPort}/cart?id=7`);
      // A host with the policy but no certificate is not redirected (there is nothing to serve it).
      assert.equal((await httpGet(r.url, 'www.shop.test')).status, 200);
      // Another host without the policy: served over HTTP.
      assert.equal((await httpGet(r.url, 'blog.test')).status, 200);
      // The ACME path is never redirected (an unknown token goes on to the app).
      const acme = await httpGet(r.url, 'shop.test', '/.well-known/acme-challenge/unknown-token');
      assert.equal(acme.status, 200);
      assert.equal((JSON.parse(acme.body) as Echo).url, '/.well-known/acme-challenge/unknown-token');
      const s = await httpsGet(r.httpsPort, 'shop.test', shop.cert);
      assert.equal(s.status, 200);
      assert.equal(s.headers['strict-transport-security'], 'max-age=31536000');
      const bl = await httpsGet(r.httpsPort, 'blog.test', blog.cert);
      assert.equal(bl.headers['strict-transport-security'], undefined);
      // An app that sends its own Strict-Transport-Security keeps it.
      const own = await startUpstream('own', (req, res) => {
        req.resume();
        res.writeHead(200, { 'strict-transport-security': 'max-age=5', 'content-type': 'text/plain' }).end('own');
      });
      try {
        await r.apply([
          routes()[0]!,
          {
            app: 'blog',
            hosts: ['blog.test'],
            backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'own-1', host: own.host, port: own.port }] }],
          },
        ]);
        await r.setTls(bundle({ policies: { 'blog.test': { hstsMaxAge: 100 } } }));
        const o = await httpsGet(r.httpsPort, 'blog.test', blog.cert);
        assert.equal(o.body, 'own');
        assert.equal(o.headers['strict-transport-security'], 'max-age=5');
      } finally {
        await r.apply(routes());
        await own.close();
      }
      await r.setTls(bundle());
      assert.equal((await httpGet(r.url, 'shop.test')).status, 200, 'policy removed: no redirect');
    });

    it('answers ACME HTTP-01 challenges on HTTP for any host, and nothing once they are gone', async () => {
      const token = 'tok_EN-123abcXYZ';
      const keyAuth = `${token}.thumb-print_0123456789abcdefABCDEF`;
      await r.setTls(bundle({ challenges: { [token]: keyAuth } }));
      for (const host of ['shop.test', 'unknown.test']) {
        const c = await httpGet(r.url, host, `/.well-known/acme-challenge/${token}`);
        assert.equal(c.status, 200, host);
        assert.equal(c.body, keyAuth);
        assert.match(String(c.headers['content-type']), /^text\/plain/);
      }
      await r.setTls(bundle());
      const gone = await httpGet(r.url, 'shop.test', `/.well-known/acme-challenge/${token}`);
      assert.equal((JSON.parse(gone.body) as Echo).name, 'a', 'an answer no longer given: the app answers');
      assert.equal((await httpGet(r.url, 'unknown.test', `/.well-known/acme-challenge/${token}`)).status, 404);
    });

    it('sets the sticky cookie Secure over HTTPS', async () => {
      await r.apply([
        {
          app: 'shop',
          hosts: ['shop.test'],
          backends: [
            { revision: 1, weight: 50, upstreams: [{ id: 'a-1', host: a.host, port: a.port }] },
            { revision: 2, weight: 50, upstreams: [{ id: 'b-2', host: b.host, port: b.port }] },
          ],
          sticky: { by: { cookie: 'uid' }, seed: 'shop/1' },
        },
        routes()[1]!,
      ]);
      const s = await httpsGet(r.httpsPort, 'shop.test', shop.cert);
      const set = [s.headers['set-cookie']].flat().find((c) => c?.startsWith('uid='));
      assert.match(String(set), /; HttpOnly; SameSite=Lax; Secure$/);
      const p = await httpGet(r.url, 'shop.test');
      const plainSet = [p.headers['set-cookie']].flat().find((c) => c?.startsWith('uid='));
      assert.doesNotMatch(String(plainSet), /Secure/);
      await r.apply(routes());
    });

    it('passes a WebSocket upgrade over TLS through, both ways, with X-Forwarded-Proto: https', async () => {
      let proto: string | undefined;
      const ws = await startUpstream('ws');
      ws.server.on('upgrade', (req, socket) => {
        proto = String(req.headers['x-forwarded-proto']);
        const accept = createHash('sha1')
          .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
          .digest('base64');
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
        );
        socket.on('data', (d: Buffer) => socket.write(d));
      });
      try {
        await r.apply([
          routes()[0]!,
          {
            app: 'blog',
            hosts: ['blog.test'],
            backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'ws-1', host: ws.host, port: ws.port }] }],
          },
        ]);
        const answer = await new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: r.httpsPort, servername: 'blog.test', ca: blog.cert }, () =>
            s.write(
              'GET /ws HTTP/1.1\r\nhost: blog.test\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
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
        assert.equal(proto, 'https');
      } finally {
        await r.apply(routes());
        await ws.close();
      }
    });

    it('serves a renewed, a new and a removed certificate at the next handshake, with no failed request of a loop', async () => {
      let stop = false;
      let ok = 0;
      const failures: string[] = [];
      const seen = new Set<string>();
      const loop = (async () => {
        while (!stop) {
          try {
            const x = await httpsGet(r.httpsPort, 'shop.test', [shop.cert, shop2.cert]);
            if (x.status === 200) ok++;
            else failures.push(`status ${x.status}`);
            seen.add(x.serial);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      })();
      const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
        const end = Date.now() + 30_000;
        while (!(await check())) {
          if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
          await new Promise((res) => setTimeout(res, 50));
        }
      };
      try {
        const renewed = (c: SelfSigned): TlsBundle =>
          bundle({ certs: [{ host: 'shop.test', cert: c.cert, key: c.key }, bundle().certs[1]!] });
        for (const c of [shop2, shop, shop2]) {
          await new Promise((res) => setTimeout(res, 300));
          await r.setTls(renewed(c));
          // Served at once: the next handshake has it.
          assert.equal((await httpsGet(r.httpsPort, 'shop.test', c.cert)).serial, serialOf(c));
        }
        // A new host, then the removal of one: the others go on.
        const www = selfSigned(dir, 'www', ['www.shop.test']);
        await r.setTls(bundle({ certs: [...renewed(shop2).certs, { host: 'www.shop.test', cert: www.cert, key: www.key }] }));
        assert.equal((await httpsGet(r.httpsPort, 'www.shop.test', www.cert)).serial, serialOf(www));
        await r.setTls(bundle({ certs: [renewed(shop2).certs[0]!] }));
        await until('blog.test to be gone', async () => !(await handshake(r.httpsPort, { servername: 'blog.test' })).ok);
        assert.equal((await handshake(r.httpsPort, { servername: 'www.shop.test' })).ok, false);
        await new Promise((res) => setTimeout(res, 300));
      } finally {
        stop = true;
        await loop;
      }
      assert.deepEqual(failures, []);
      assert.ok(ok > 5, `requests served during the changes: ${ok}`);
      assert.deepEqual([...seen].sort(), [serialOf(shop), serialOf(shop2)].sort());
      await r.setTls(bundle());
      assert.equal((await httpsGet(r.httpsPort, 'blog.test', blog.cert)).status, 200, 'a certificate given again is served again');
    });
  });
}

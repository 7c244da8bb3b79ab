/**
 * Certificates to a node router (`pilot agent --https-port`): from the sync answer, applied live,
 * saved privately, served again after a restart without the control plane; ACME answers given on
 * HTTP; bad entries left out without harming the others; keys never in the log.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type tls from 'node:tls';
import { pino } from 'pino';
import { request } from 'undici';
import { startNodeRouter, type NodeRouter } from './node-router.js';
import { routeOf, startUpstream, until, type TestUpstream } from './test-support.js';
import type { TlsBundle } from './tls.js';
import { selfSigned } from '../os/test-certs.js';

/** GET https://servername/ on 127.0.0.1:port, trusting `ca`: the status, body and the certificate served. */
function httpsGet(port: number, servername: string, ca: string): Promise<{ status: number; body: string; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername, path: '/', headers: { host: servername }, ca, agent: false }, (res) => {
      const serial = new X509Certificate((res.socket as tls.TLSSocket).getPeerCertificate(false).raw).serialNumber;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serial }));
    });
    req.on('error', reject);
  });
}

interface Sync {
  body: { version: string; tlsVersion?: string; self?: { port: number; httpsPort?: number } };
}

/** A stand-in control plane answering each sync with `answer()`. */
async function fakeControlPlane(answer: (s: Sync) => unknown): Promise<{ url: string; syncs: Sync[]; close: () => Promise<void> }> {
  const syncs: Sync[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      const s: Sync = { body: JSON.parse(text) as Sync['body'] };
      syncs.push(s);
      const a = answer(s);
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(a)), 50);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    syncs,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe('node router: HTTPS with the control plane’s certificates', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });
  const dir = mkdtempSync(join(tmpdir(), 'pilot-node-router-tls-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  let logged = '';
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logged += chunk.toString();
        cb();
      },
    }),
  );
  const shop1 = selfSigned(dir, 'shop1', ['shop.test']);
  const shop2 = selfSigned(dir, 'shop2', ['shop.test']);
  const blog = selfSigned(dir, 'blog', ['blog.test']);
  let up: TestUpstream;
  const start = async (agentHome: string, servers: string[]): Promise<NodeRouter> => {
    const r = await startNodeRouter({ agentHome, host: '127.0.0.1', port: 0, httpsPort: 0, servers, credential: () => 'cred', log });
    cleanup.push(() => r.close());
    return r;
  };

  it('applies the certificates of the sync answer live, saves them 0600, and serves them after a restart without the control plane', async () => {
    up = await startUpstream('a', undefined, '127.0.0.2');
    cleanup.push(() => up.close());
    const routes = [routeOf('shop', ['shop.test'], [up.upstream('shop')]), routeOf('blog', ['blog.test'], [up.upstream('blog')])];
    let bundle: TlsBundle = {
      // A garbage certificate and a key of another certificate: left out, the others served.
      certs: [
        { host: 'shop.test', ...shop1 },
        { host: 'bad.test', cert: 'not a certificate', key: blog.key },
        { host: 'blog.test', cert: blog.cert, key: shop1.key },
      ],
      policies: { 'shop.test': { hstsMaxAge: 600 } },
      challenges: { 'tok-1': 'tok-1.thumb' },
    };
    let tlsVersion = 'e.t1';
    const cp = await fakeControlPlane((s) => ({
      version: 'e.1',
      ...(s.body.version !== 'e.1' ? { routes } : {}),
      ...(s.body.tlsVersion !== tlsVersion ? { tls: { version: tlsVersion, bundle } } : {}),
    }));
    cleanup.push(() => cp.close());
    const agentHome = mkdtempSync(join(dir, 'home-'));
    const r = await start(agentHome, [cp.url]);
    assert.ok(r.httpsPort !== undefined && r.httpsPort > 0);
    await until(() => cp.syncs.some((s) => s.body.tlsVersion === 'e.t1'), 15_000, 'the certificates applied');
    assert.deepEqual(cp.syncs.at(-1)!.body.self, { port: r.port, httpsPort: r.httpsPort }, 'it says where it listens');
    const first = await httpsGet(r.httpsPort!, 'shop.test', shop1.cert);
    assert.equal(first.status, 200);
    assert.equal(first.serial, new X509Certificate(shop1.cert).serialNumber);
    // blog.test's pair does not match, bad.test is garbage: no certificate, the handshake fails.
    await assert.rejects(httpsGet(r.httpsPort!, 'blog.test', blog.cert));
    await assert.rejects(httpsGet(r.httpsPort!, 'bad.test', blog.cert));
    // The ACME answer is given on HTTP, before routing; an unknown token is routed as usual (404 host).
    const challenge = await request(`${r.url}/.well-known/acme-challenge/tok-1`, { headers: { host: 'shop.test' } });
    assert.equal(challenge.statusCode, 200);
    assert.equal(await challenge.body.text(), 'tok-1.thumb');
    const file = join(agentHome, 'router', 'tls.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(agentHome, 'router')).mode & 0o777, 0o700);
    assert.doesNotMatch(readFileSync(file, 'utf8'), /tok-1\.thumb/, 'ACME answers are not saved');

    // A renewed certificate: the next handshake gets it, no restart; a host dropped is served no more.
    bundle = { certs: [{ host: 'shop.test', ...shop2 }], policies: {}, challenges: {} };
    tlsVersion = 'e.t2';
    await until(() => cp.syncs.some((s) => s.body.tlsVersion === 'e.t2'), 15_000, 'the renewal applied');
    const second = await httpsGet(r.httpsPort!, 'shop.test', shop2.cert);
    assert.equal(second.serial, new X509Certificate(shop2.cert).serialNumber);
    const gone = await request(`${r.url}/.well-known/acme-challenge/tok-1`, { headers: { host: 'nobody.test' } });
    assert.equal(gone.statusCode, 404);
    await gone.body.text();

    // Restart with the control plane down: the saved certificate is served at once.
    await r.close();
    await cp.close();
    const again = await start(agentHome, [cp.url]);
    const third = await httpsGet(again.httpsPort!, 'shop.test', shop2.cert);
    assert.equal(third.status, 200);
    assert.equal(third.serial, new X509Certificate(shop2.cert).serialNumber);
    // Never a key or an ACME answer in the log.
    for (const secret of [shop1.key, shop2.key, blog.key]) assert.ok(!logged.includes(secret.split('\n')[1]!), 'a key was logged');
    assert.doesNotMatch(logged, /tok-1\.thumb/);
    assert.match(logged, /certificates left out/);
  });

  it('starts without certificates from a damaged tls.json, and without HTTPS when not asked', async () => {
    const agentHome = mkdtempSync(join(dir, 'home-'));
    const routerDir = join(agentHome, 'router');
    execFileSync('mkdir', ['-p', routerDir]);
    writeFileSync(join(routerDir, 'tls.json'), '{"version": "x", "certs": "nope"');
    const r = await start(agentHome, ['http://127.0.0.1:9']);
    assert.ok(r.httpsPort !== undefined);
    await assert.rejects(httpsGet(r.httpsPort, 'shop.test', shop1.cert));
    writeFileSync(
      join(routerDir, 'tls.json'),
      JSON.stringify({ version: 'x', certs: [{ host: 'shop.test', cert: 5, key: null }], policies: {} }),
    );
    const r2 = await startNodeRouter({
      agentHome,
      host: '127.0.0.1',
      port: 0,
      servers: ['http://127.0.0.1:9'],
      credential: () => undefined,
      log,
    });
    cleanup.push(() => r2.close());
    assert.equal(r2.httpsPort, undefined);
    assert.match(logged, /saved certificates unreadable/);
  });
});

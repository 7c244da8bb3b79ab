import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRouter, type Router } from '../router/proxy.js';
import { RoutingTable } from '../router/routing-table.js';
import { AcmeChallenges, CertificateStore } from '../router/tls.js';
import { routeOf, startUpstream, until, type TestUpstream } from '../router/test-support.js';
import { MemoryStore } from '../store/memory-store.js';
import { SecretBox } from '../store/secret-box.js';
import { fail, PilotError } from '../core/errors.js';
import { CertificateManager } from './certificates.js';
import { pebbleInstalled, startPebble, type Pebble } from './test-pebble.js';
import { selfSigned } from '../os/test-certs.js';

const DAY = 86_400_000;

function httpsGet(
  port: number,
  servername: string,
  ca: string | undefined,
  path = '/',
): Promise<{ status: number; body: string; peer: X509Certificate; protocol: string | null; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        port,
        servername,
        path,
        headers: { host: servername },
        ...(ca ? { ca } : { rejectUnauthorized: false }),
        agent: false,
      },
      (res) => {
        const socket = res.socket as tls.TLSSocket;
        const peer = new X509Certificate(socket.getPeerCertificate(false).raw);
        const protocol = socket.getProtocol();
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peer, protocol, headers: res.headers }));
      },
    );
    req.on('error', reject);
  });
}

function httpGet(port: number, host: string, path = '/'): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

const code = (c: string) => (err: unknown) => err instanceof PilotError && err.code === c;
const MESSAGES: Record<string, RegExp> = {
  certificateUnreadable: /is not a readable PEM/,
  certificateKeyMismatch: /does not belong to its certificate/,
  certificateWrongHost: /does not cover it/,
  certificateExpired: /expired at/,
  certificateNotYetValid: /is not valid before/,
};
const named = (name: string) => (err: unknown) =>
  err instanceof PilotError && err.code === 'bad_request' && MESSAGES[name]!.test(err.message);

interface Rig {
  dir: string;
  table: RoutingTable;
  certs: CertificateStore;
  challenges: AcmeChallenges;
  router: Router;
  upstream: TestUpstream;
  store: MemoryStore;
  box: SecretBox;
}

async function rig(hosts: string[]): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-certs-'));
  const table = new RoutingTable();
  const certs = new CertificateStore();
  const challenges = new AcmeChallenges();
  const upstream = await startUpstream('web');
  table.set([routeOf('web', hosts, [upstream.upstream('web')])]);
  const router = await startRouter({ host: '127.0.0.1', port: 0, table, https: { port: 0, certs }, challenges, closeGraceMs: 500 });
  return { dir, table, certs, challenges, router, upstream, store: new MemoryStore(), box: new SecretBox(join(dir, 'secret.key')) };
}

async function teardown(r: Rig | undefined): Promise<void> {
  if (!r) return;
  await r.router.close();
  await r.upstream.close();
  rmSync(r.dir, { recursive: true, force: true });
}

describe('certificates: user-provided, checked at upload', () => {
  let r: Rig;
  before(async () => (r = await rig(['shop.example', 'other.example'])));
  after(() => teardown(r));

  it('refuses garbage, a key of another certificate, another host, an expired or not yet valid certificate (400 naming which)', async () => {
    const m = new CertificateManager({ store: r.store, box: r.box, certs: r.certs, challenges: r.challenges });
    const good = selfSigned(r.dir, 'good', ['shop.example', '*.shop.example']);
    const other = selfSigned(r.dir, 'other', ['other.example']);
    await assert.rejects(m.setUserCertificate('shop.example', 'not a pem', good.key), named('certificateUnreadable'));
    await assert.rejects(
      m.setUserCertificate('shop.example', good.cert, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
      named('certificateUnreadable'),
    );
    await assert.rejects(
      m.setUserCertificate('shop.example', good.cert, other.key),
      (e: unknown) => named('certificateKeyMismatch')(e) && code('bad_request')(e),
    );
    await assert.rejects(
      m.setUserCertificate('shop.example', other.cert, other.key),
      (e: unknown) => named('certificateWrongHost')(e) && /other\.example/.test((e as Error).message),
    );
    await assert.rejects(
      m.setUserCertificate('deep.sub.shop.example', good.cert, good.key),
      named('certificateWrongHost'),
      'a wildcard covers one label only',
    );
    const later = new CertificateManager({
      store: r.store,
      box: r.box,
      certs: r.certs,
      challenges: r.challenges,
      now: () => Date.now() + 11 * DAY,
    });
    await assert.rejects(
      later.setUserCertificate('shop.example', good.cert, good.key),
      (e: unknown) => named('certificateExpired')(e) && /expired at 20/.test((e as Error).message),
    );
    const earlier = new CertificateManager({
      store: r.store,
      box: r.box,
      certs: r.certs,
      challenges: r.challenges,
      now: () => Date.now() - DAY,
    });
    await assert.rejects(earlier.setUserCertificate('shop.example', good.cert, good.key), named('certificateNotYetValid'));
    assert.deepEqual(await r.store.listCertificates(), [], 'nothing refused was stored');
    assert.equal(r.certs.has('shop.example'), false);
  });

  it('serves an accepted one by SNI, TLS 1.2+ only, stored sealed; a host without a certificate fails the handshake; HTTP keeps working', async () => {
    const m = new CertificateManager({ store: r.store, box: r.box, certs: r.certs, challenges: r.challenges });
    const good = selfSigned(r.dir, 'good2', ['Shop.Example']);
    const view = await m.setUserCertificate('SHOP.example', good.cert, good.key);
    assert.equal(view.host, 'shop.example');
    assert.equal(view.source, 'user');
    assert.equal(view.state, 'valid');
    const rec = (await r.store.getCertificate('shop.example'))!;
    assert.match(rec.certSealed!, /^v1:/);
    assert.ok(!rec.keySealed!.includes('PRIVATE KEY') && r.box.open(rec.keySealed!) === good.key);

    const res = await httpsGet(r.router.httpsPort!, 'shop.example', good.cert);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).headers['x-forwarded-proto'], 'https');
    assert.ok(res.protocol === 'TLSv1.3' || res.protocol === 'TLSv1.2');
    await assert.rejects(httpsGet(r.router.httpsPort!, 'other.example', undefined), 'no certificate for that host: no handshake');
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port: r.router.httpsPort!,
          servername: 'shop.example',
          maxVersion: 'TLSv1.1',
          minVersion: 'TLSv1',
          rejectUnauthorized: false,
        });
        s.once('secureConnect', () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      }),
      'TLS 1.1 is refused',
    );
    assert.equal((await httpGet(r.router.port, 'shop.example')).status, 200);

    // A restarted control plane serves what the store holds.
    const fresh = new CertificateStore();
    await new CertificateManager({ store: r.store, box: r.box, certs: fresh, challenges: r.challenges }).load();
    assert.deepEqual(fresh.hosts(), ['shop.example']);
  });

  it('redirects HTTP to HTTPS (308, not the ACME path) and adds HSTS only where the app asks', async () => {
    r.certs.setPolicies(new Map([['shop.example', { redirect: true, hstsMaxAge: 31536000 }]]));
    const red = await httpGet(r.router.port, 'shop.example:8080', '/a?b=1');
    assert.equal(red.status, 308);
    assert.equal(red.headers.location, `https://shop.example:${r.router.httpsPort}/a?b=1`);
    r.challenges.set('tok', 'tok.key');
    const ch = await httpGet(r.router.port, 'shop.example', '/.well-known/acme-challenge/tok');
    assert.deepEqual([ch.status, ch.body], [200, 'tok.key']);
    const sec = await httpsGet(r.router.httpsPort!, 'shop.example', undefined);
    assert.equal(sec.headers['strict-transport-security'], 'max-age=31536000');
    // other.example has no certificate: never redirected to an HTTPS that cannot answer.
    r.certs.setPolicies(new Map([['other.example', { redirect: true, hstsMaxAge: 60 }]]));
    assert.equal((await httpGet(r.router.port, 'other.example')).status, 200);
    const plain = await httpsGet(r.router.httpsPort!, 'shop.example', undefined);
    assert.equal(plain.headers['strict-transport-security'], undefined);
    r.certs.setPolicies(new Map());
  });
});

describe(
  "certificates: ACME against pebble (Let's Encrypt's test CA) on loopback",
  { skip: pebbleInstalled() ? false : 'pebble is not installed (apt-get install pebble)' },
  () => {
    let r: Rig | undefined;
    let pebble: Pebble | undefined;
    let skew = 0;
    let m: CertificateManager;
    const logs: string[] = [];

    before(async () => {
      r = await rig(['app.test', 'broken.test']);
      pebble = await startPebble(r.router.port, r.router.httpsPort!);
      m = new CertificateManager({
        store: r.store,
        box: r.box,
        certs: r.certs,
        challenges: r.challenges,
        acme: { directoryUrl: pebble.directoryUrl, caPem: pebble.apiCaPem, pollMs: 200 },
        retryBaseMs: 1_500,
        now: () => Date.now() + skew,
        log: (l) => logs.push(l),
      });
    });
    after(async () => {
      await pebble?.stop();
      await teardown(r);
    });

    it("issues a certificate through HTTP-01 and serves it; a TLS client checks the chain against pebble's root", async () => {
      await m.want(['app.test']);
      assert.equal((await m.view('app.test')).state, 'pending');
      await m.tick();
      const v = await m.view('app.test');
      assert.equal(v.state, 'valid', JSON.stringify(v) + logs.join('\n'));
      assert.match(v.issuer ?? '', /Pebble/i);
      assert.ok(Date.parse(v.notAfter!) > Date.now() + DAY);
      const root = await pebble!.rootPem();
      const res = await httpsGet(r!.router.httpsPort!, 'app.test', root);
      assert.equal(res.status, 200);
      assert.ok(res.peer.checkHost('app.test'));
      assert.ok(await r!.store.getAcmeAccountKey(pebble!.directoryUrl), 'account key stored (sealed)');
      assert.match((await r!.store.getAcmeAccountKey(pebble!.directoryUrl))!, /^v1:/);
    });

    it('renews 30 days before expiry (a third of the lifetime for short ones), not earlier', async () => {
      const first = await httpsGet(r!.router.httpsPort!, 'app.test', await pebble!.rootPem());
      const notAfter = Date.parse(first.peer.validTo);
      skew = notAfter - 31 * DAY - Date.now(); // 31 days left: not due
      try {
        await m.tick();
      } finally {
        skew = 0;
      }
      const same = await httpsGet(r!.router.httpsPort!, 'app.test', await pebble!.rootPem());
      assert.equal(same.peer.serialNumber, first.peer.serialNumber, 'not due yet: no renewal');
      skew = notAfter - 29 * DAY - Date.now(); // 29 days left
      try {
        await m.tick();
      } finally {
        skew = 0;
      }
      const renewed = await httpsGet(r!.router.httpsPort!, 'app.test', await pebble!.rootPem());
      assert.notEqual(renewed.peer.serialNumber, first.peer.serialNumber, 'a new certificate is served\n' + logs.join('\n'));
      assert.equal((await m.view('app.test')).state, 'valid');
    });

    it('a failed challenge: the host stays on HTTP, the reason is kept, retried with back-off, then issued', async () => {
      await pebble!.resolve('broken.test', '127.0.0.9'); // nothing listens there: the CA cannot reach the challenge
      await m.want(['broken.test']);
      await m.tick();
      const failed = await m.view('broken.test');
      assert.equal(failed.state, 'failed', JSON.stringify(failed));
      assert.equal(failed.attempts, 1);
      assert.match(failed.lastError ?? '', /127\.0\.0\.9|connection|refused|invalid/i);
      assert.ok(Date.parse(failed.nextAttemptAt!) > Date.now());
      assert.equal((await httpGet(r!.router.port, 'broken.test')).status, 200, 'HTTP keeps working');
      await assert.rejects(httpsGet(r!.router.httpsPort!, 'broken.test', undefined));
      await m.tick();
      assert.equal((await m.view('broken.test')).attempts, 1, 'no new attempt inside the back-off');

      await pebble!.resolve('broken.test', '127.0.0.1');
      await until(() => Date.now() > Date.parse(failed.nextAttemptAt!), 10_000, 'back-off over');
      await m.tick();
      const ok = await m.view('broken.test');
      assert.equal(ok.state, 'valid', JSON.stringify(ok));
      assert.equal(ok.lastError, undefined);
      assert.equal((await httpsGet(r!.router.httpsPort!, 'broken.test', await pebble!.rootPem())).status, 200);
    });
  },
);

describe('certificates: back-off after failures, longer after a rate limit (a stand-in ACME server)', () => {
  let dir: string;
  let server: http.Server;
  let base: string;
  let accountPosts = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pilot-certs-rl-'));
    // Just enough of RFC 8555 to reach newAccount, which answers as Let's Encrypt does when rate limited.
    server = http.createServer((req, res) => {
      req.resume();
      const nonce = { 'replay-nonce': `n${Math.random().toString(36).slice(2)}` };
      if (req.url === '/dir') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ newNonce: `${base}/nonce`, newAccount: `${base}/acct`, newOrder: `${base}/order` }));
      } else if (req.url === '/missing') {
        res.writeHead(404, { 'content-type': 'application/problem+json' });
        res.end(JSON.stringify({ type: 'about:blank', detail: 'no such directory' }));
      } else if (req.url === '/nonce') {
        res.writeHead(200, nonce);
        res.end();
      } else {
        accountPosts++;
        res.writeHead(403, { 'content-type': 'application/problem+json', ...nonce });
        res.end(
          JSON.stringify({
            type: 'urn:ietf:params:acme:error:rateLimited',
            detail: 'too many new registrations (10) from this IP address in the last 3h0m0s',
          }),
        );
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a rate limit waits at least rateLimitedMs, with the reason in lastError; no new attempt before', async () => {
    const store = new MemoryStore();
    let now = Date.now();
    const m = new CertificateManager({
      store,
      box: new SecretBox(join(dir, 'k1')),
      certs: new CertificateStore(),
      challenges: new AcmeChallenges(),
      acme: { directoryUrl: `${base}/dir`, pollMs: 100 },
      retryBaseMs: 1_000,
      rateLimitedMs: 3_600_000,
      now: () => now,
    });
    await m.want(['x.test']);
    await m.tick();
    const v = await m.view('x.test');
    assert.equal(v.state, 'failed');
    assert.match(v.lastError ?? '', /^rate limited by the CA: .*too many new registrations/);
    assert.equal(Date.parse(v.nextAttemptAt!), now + 3_600_000);
    const posts = accountPosts;
    now += 30 * 60_000;
    await m.tick();
    assert.equal(accountPosts, posts, 'inside the wait: nothing sent to the CA');
    now += 31 * 60_000;
    await m.tick();
    assert.ok(accountPosts > posts, 'after it: tried again');
    assert.equal((await m.view('x.test')).attempts, 2);
  });

  it("the automatic pass writes through the leader's fenced store: a stale leader records and serves nothing", async () => {
    const store = new MemoryStore();
    let fenced = true;
    // A stand-in for store/fence.ts on PostgreSQL: every write refused while the token is stale.
    const leaderStore = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (fenced && String(prop).startsWith('put')) throw fail.leaderFenced({ token: 2, current: 3 });
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const certs = new CertificateStore();
    const m = new CertificateManager({
      store,
      leaderStore,
      box: new SecretBox(join(dir, 'k3')),
      certs,
      challenges: new AcmeChallenges(),
      acme: { directoryUrl: `${base}/missing`, pollMs: 100 },
      retryBaseMs: 1_000,
    });
    await assert.rejects(m.want(['z.test']), (e: unknown) => e instanceof PilotError && e.code === 'not_leader');
    assert.deepEqual(await store.listCertificates(), [], 'nothing recorded by the stale leader');
    // A record made while it led; the attempt's outcome (a failure here) is refused the same way.
    fenced = false;
    await m.want(['z.test']);
    fenced = true;
    await assert.rejects(m.tick(), (e: unknown) => e instanceof PilotError && e.code === 'not_leader');
    assert.deepEqual([(await m.view('z.test')).state, (await m.view('z.test')).attempts], ['pending', 0]);
    assert.deepEqual(certs.hosts(), []);
    // What the API asks goes through the plain store, on any replica.
    const user = selfSigned(dir, 'user-z', ['z.test']);
    await m.setUserCertificate('z.test', user.cert, user.key);
    assert.deepEqual([(await m.view('z.test')).source, certs.hosts()], ['user', ['z.test']]);
  });

  it('a CA that refuses the directory: 1x, 2x, 4x the base, capped', async () => {
    const store = new MemoryStore();
    let now = Date.now();
    const m = new CertificateManager({
      store,
      box: new SecretBox(join(dir, 'k2')),
      certs: new CertificateStore(),
      challenges: new AcmeChallenges(),
      acme: { directoryUrl: `${base}/missing`, pollMs: 100 },
      retryBaseMs: 1_000,
      retryCapMs: 3_000,
      now: () => now,
    });
    await m.want(['y.test']);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      await m.tick();
      const v = await m.view('y.test');
      waits.push(Date.parse(v.nextAttemptAt!) - now);
      now = Date.parse(v.nextAttemptAt!);
    }
    assert.deepEqual(waits, [1_000, 2_000, 3_000, 3_000]);
    assert.match((await m.view('y.test')).lastError ?? '', /no such directory|404/);
  });
});

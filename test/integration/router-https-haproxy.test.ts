/**
 * HTTPS through HAProxy: `pilot up --router haproxy` with PILOT_HTTPS_PORT and ACME (Debian's
 * pebble on loopback). An app with a host and `https: { redirect: true, hsts: 600 }`:
 *   - pebble validates HTTP-01 through HAProxy's HTTP port (acme.map, answered by HAProxy itself)
 *     and the certificate is served by HAProxy on the HTTPS port, the chain checked against
 *     pebble's root; its files are private (0600 in a 0700 folder);
 *   - plain HTTP is redirected (308), HTTPS answers carry HSTS and X-Forwarded-Proto: https;
 *   - a renewal reaches HAProxy without a reload and without a failed request of a loop;
 *   - the control plane killed (kill -9): HAProxy keeps serving HTTPS.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import type tls from 'node:tls';
import { allocatePort } from '../../src/os/ports.js';
import { pebbleInstalled, startPebble, type Pebble } from '../../src/control/test-pebble.js';
import { git, Harness, makeRepo, ROOT, tempDir, waitFor } from './harness.js';

const h = new Harness();
const HOST = 'secure.pilot.test';
const HAPROXY = process.env.PILOT_HAPROXY_BIN ?? '/usr/sbin/haproxy';

interface Answer {
  status: number;
  body: string;
  serial: string;
  headers: http.IncomingHttpHeaders;
}

function httpsGet(port: number, ca: string, path = '/'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port, servername: HOST, path, headers: { host: HOST }, ca, agent: false, timeout: 15_000 },
      (res) => {
        const serial = new X509Certificate((res.socket as tls.TLSSocket).getPeerCertificate(false).raw).serialNumber;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serial, headers: res.headers }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host: HOST }, agent: false, timeout: 15_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

const metric = (text: string, name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);

describe(
  'HTTPS through HAProxy (`pilot up --router haproxy`, pebble)',
  {
    timeout: 420_000,
    skip: !pebbleInstalled() ? 'pebble is not installed' : !existsSync(HAPROXY) ? `${HAPROXY} is missing: apt-get install haproxy` : false,
  },
  () => {
    let pebble: Pebble;
    let routerPort = 0;
    let httpsPort = 0;
    let root = '';
    const dir = h.track(tempDir('https-haproxy'));
    const haproxyDir = (): string => join(h.home, 'router', 'haproxy');
    const acmeView = async (): Promise<any> =>
      ((await h.apiCall('GET', '/api/v1/certs')).json.certificates as any[]).find((c) => c.host === HOST);
    const routerMetrics = async (): Promise<string> => String((await h.apiCall('GET', '/metrics')).json);

    before(async () => {
      routerPort = await allocatePort('127.0.0.1');
      httpsPort = await allocatePort('127.0.0.1');
      pebble = await startPebble(routerPort, await allocatePort('127.0.0.1'));
      root = await pebble.rootPem();
      writeFileSync(join(dir, 'pebble-api.pem'), pebble.apiCaPem);
      await h.startUp(
        {
          PILOT_HTTPS_PORT: String(httpsPort),
          PILOT_ACME_DIRECTORY: pebble.directoryUrl,
          PILOT_ACME_CA_FILE: join(dir, 'pebble-api.pem'),
          PILOT_CERT_CHECK_MS: '1000',
        },
        'up',
        { api: 0, router: routerPort },
        [],
        ['--router', 'haproxy'],
      );
    });
    after(async () => {
      await h.cleanup();
      await pebble?.stop();
    });

    it('issues a certificate through HAProxy (HTTP-01) and serves it over HTTPS with redirect and HSTS', async () => {
      const info = JSON.parse(readFileSync(join(h.home, 'router', 'router.json'), 'utf8')) as { httpsPort?: number };
      assert.equal(info.httpsPort, httpsPort);
      assert.match(readFileSync(join(haproxyDir(), 'haproxy.cfg'), 'utf8'), new RegExp(`:${httpsPort} ssl crt-list `));
      const app = h.track(await makeRepo(join(ROOT, 'examples/hello')));
      writeFileSync(
        join(app, 'pilot.yaml'),
        readFileSync(join(app, 'pilot.yaml'), 'utf8') + `hosts:\n  - ${HOST}\nhttps:\n  redirect: true\n  hsts: 600\n`,
      );
      await git(app, 'commit', '-qam', 'a host over HTTPS');
      const run = await h.cli(['run', app]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const issued = await waitFor(
        'pebble to issue the certificate (its HTTP-01 challenge answered by HAProxy)',
        async () => {
          const c = await acmeView();
          return c?.state === 'valid' ? c : undefined;
        },
        120_000,
      );
      assert.match(issued.issuer, /Pebble/i);
      // The certificate may be issued before the app's first instance is ready (and its hosts routed).
      const a = await waitFor(
        'HAProxy to serve the app over HTTPS',
        () =>
          httpsGet(httpsPort, root).then(
            (x) => (x.status === 200 ? x : undefined),
            () => undefined,
          ),
        60_000,
      );
      assert.match(a.body, /hello/);
      assert.equal(a.headers['strict-transport-security'], 'max-age=600');
      const redirect = await httpGet(routerPort, '/some/page?x=1');
      assert.equal(redirect.status, 308);
      assert.equal(redirect.headers.location, `https://${HOST}:${httpsPort}/some/page?x=1`);
      // Its files: the chain and key private, in a private folder; no key in any log.
      const pem = join(haproxyDir(), `cert-${HOST}.pem`);
      assert.equal(statSync(pem).mode & 0o777, 0o600);
      assert.equal(statSync(haproxyDir()).mode & 0o777, 0o700);
      assert.match(
        readFileSync(join(haproxyDir(), 'crt-list.txt'), 'utf8'),
        new RegExp(`cert-${HOST}\\.pem ${HOST.replace(/\./g, '\\.')}`),
      );
      const keyLine = readFileSync(pem, 'utf8')
        .split('\n')
        .find((l, i, all) => i > 0 && all[i - 1]!.includes('PRIVATE KEY-----'))!;
      for (const f of readdirSync(join(h.home, 'logs')))
        assert.ok(!readFileSync(join(h.home, 'logs', f), 'utf8').includes(keyLine), `${f} holds the key`);
    });

    it('serves a renewal without a reload and without a failed request of a loop', async () => {
      const before = (await httpsGet(httpsPort, root)).serial;
      const reloads = metric(await routerMetrics(), 'pilot_haproxy_reloads_total');
      assert.ok(Number.isFinite(reloads), 'the router metrics name HAProxy reloads');
      let stop = false;
      let ok = 0;
      const failures: string[] = [];
      const loop = (async () => {
        while (!stop) {
          try {
            const x = await httpsGet(httpsPort, root);
            if (x.status === 200) ok++;
            else failures.push(`status ${x.status}`);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      })();
      let after = before;
      try {
        const renew = await h.cli(['certs', 'renew', HOST]);
        assert.equal(renew.code, 0, renew.stdout + renew.stderr);
        after = await waitFor('the renewed certificate on HAProxy', async () => {
          const s = (await httpsGet(httpsPort, root)).serial;
          return s !== before ? s : undefined;
        });
      } finally {
        stop = true;
        await loop;
      }
      assert.notEqual(after, before);
      assert.deepEqual(failures, []);
      assert.ok(ok > 3, `requests served during the renewal: ${ok}`);
      assert.equal(metric(await routerMetrics(), 'pilot_haproxy_reloads_total'), reloads, 'no reload for a renewal');
    });

    it('a router process killed and started again by the supervisor serves HTTPS from its saved certificates', async () => {
      const serial = (await httpsGet(httpsPort, root)).serial;
      const routerFile = join(h.home, 'router', 'router.json');
      const before = (JSON.parse(readFileSync(routerFile, 'utf8')) as { pid: number }).pid;
      process.kill(before, 'SIGKILL');
      await waitFor('a new router process', () => {
        const f = JSON.parse(readFileSync(routerFile, 'utf8')) as { pid: number; httpsPort?: number };
        return f.pid !== before && f.httpsPort === httpsPort ? f : undefined;
      });
      const a = await waitFor('HTTPS from the new router process', () =>
        httpsGet(httpsPort, root).then(
          (x) => (x.status === 200 ? x : undefined),
          () => undefined,
        ),
      );
      assert.equal(a.serial, serial);
      assert.equal(a.headers['strict-transport-security'], 'max-age=600');
    });

    it('keeps serving HTTPS with the control plane killed', async () => {
      const serial = (await httpsGet(httpsPort, root)).serial;
      await h.killUp('SIGKILL');
      for (let i = 0; i < 5; i++) {
        const a = await httpsGet(httpsPort, root);
        assert.equal(a.status, 200);
        assert.equal(a.serial, serial);
      }
    });
  },
);

describe(
  'HTTPS port in use with --router haproxy',
  { timeout: 120_000, skip: existsSync(HAPROXY) ? false : `${HAPROXY} is missing` },
  () => {
    after(() => h.cleanup());
    it('`pilot server --router haproxy` stops with the port named, not a crash report', async () => {
      const busy = net.createServer();
      const port = await allocatePort('127.0.0.1');
      await new Promise<void>((r) => busy.listen(port, '127.0.0.1', r));
      const home = h.track(tempDir('https-haproxy-busy'));
      try {
        const r = await h.cli(['server', '--router', 'haproxy', '--api-port', '0', '--router-port', '0'], {
          env: { PILOT_HOME: home, PILOT_HTTPS_PORT: String(port) },
        });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, new RegExp(`the router cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
        assert.doesNotMatch(r.stderr, /bug in Pilot/);
      } finally {
        busy.close();
      }
    });
  },
);

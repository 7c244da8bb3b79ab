/**
 * HAProxy's HTTPS files and Runtime API steps (tls-files.ts) beyond the router contract: no reload
 * for any certificate change, hostile entries left out without harming the others, the files
 * private, certificates served at once after a start from saved ones and after HAProxy is killed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tls from 'node:tls';
import { pino } from 'pino';
import { selfSigned, type SelfSigned } from '../os/test-certs.js';
import { startUpstream, type TestUpstream } from '../router/test-support.js';
import type { TlsBundle } from '../router/tls.js';
import { renderConfig, tlsCipherWords } from './config.js';
import { HaproxyRouter } from './haproxy-router.js';
import { runtimeCommand } from './runtime.js';
import { tidyPem } from './tls-files.js';

function serialAt(port: number, host: string, ca: string): Promise<{ status: number; serial: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername: host, headers: { host }, ca, agent: false, timeout: 15_000 }, (res) => {
      const serial = new X509Certificate((res.socket as tls.TLSSocket).getPeerCertificate(false).raw).serialNumber;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, serial, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

const serialOf = (c: SelfSigned): string => new X509Certificate(c.cert).serialNumber;

describe('HAProxy: certificates, policies and ACME answers', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-tls-'));
  const certsDir = join(dir, 'certs');
  const hdir = join(dir, 'haproxy');
  let up: TestUpstream;
  let r: HaproxyRouter;
  let one: SelfSigned;
  let two: SelfSigned;
  const route = () => ({
    app: 'shop',
    hosts: ['one.test', 'two.test'],
    backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'u-1', host: up.host, port: up.port }] }],
  });

  before(async () => {
    mkdirSync(certsDir);
    one = selfSigned(certsDir, 'one', ['one.test']);
    two = selfSigned(certsDir, 'two', ['two.test']);
    up = await startUpstream('u');
  });
  after(async () => {
    await r?.close();
    await up?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the PEM blocks alone for the Runtime API payload (CRLF, blank lines, spaces, text between blocks)', () => {
    assert.equal(
      tidyPem(
        'Bag Attributes\n-----BEGIN X-----\r\nAAA  \r\n\r\nBBB\n\n-----END X-----\r\n\nset server a/b state maint\n -----BEGIN Y-----\nCC\n-----END Y-----',
      ),
      '-----BEGIN X-----\nAAA\nBBB\n-----END X-----\n-----BEGIN Y-----\nCC\n-----END Y-----',
    );
  });

  it('renders the HTTPS bind and rules that haproxy -c accepts, the port left out of the redirect at 443', () => {
    const cdir = join(dir, 'render');
    mkdirSync(cdir);
    for (const f of ['crt-list.txt', 'hosts.map', 'pins.map', 'acme.map', 'redirect.map', 'hsts.map']) writeFileSync(join(cdir, f), '');
    const input = { bind: { host: '127.0.0.1', port: 8080 }, dir: cdir, apps: [], trusted: [] };
    const plain = renderConfig(input);
    assert.doesNotMatch(plain, / ssl /);
    assert.doesNotMatch(plain, /redirect location|strict-transport-security/);
    assert.match(plain, /acme\.map/, 'ACME answers without HTTPS too');
    const at443 = renderConfig({ ...input, https: { port: 443 } });
    assert.match(at443, /bind 127\.0\.0\.1:443 ssl crt-list \S+crt-list\.txt strict-sni alpn http\/1\.1 ssl-min-ver TLSv1\.2 /);
    const { ciphers, ciphersuites } = tlsCipherWords();
    assert.ok(at443.includes(`ciphers ${ciphers} ciphersuites ${ciphersuites}`));
    assert.doesNotMatch(ciphers, /TLS_/);
    assert.match(ciphersuites, /^TLS_AES_128_GCM_SHA256:/);
    assert.match(at443, /redirect location https:\/\/%\[var\(txn\.host\)\]%\[pathq\] code 308/);
    const at8443 = renderConfig({ ...input, https: { port: 8443 } });
    assert.match(at8443, /redirect location https:\/\/%\[var\(txn\.host\)\]:8443%\[pathq\] code 308/);
    writeFileSync(join(cdir, 'haproxy.cfg'), at8443);
    const check = spawnSync('/usr/sbin/haproxy', ['-c', '-q', '-f', join(cdir, 'haproxy.cfg')], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
  });

  it('serves the saved certificates from the first handshake after a start', async () => {
    r = await HaproxyRouter.start({
      dir: hdir,
      host: '127.0.0.1',
      port: 0,
      https: { port: 0 },
      log: pino({ level: 'silent' }),
      tls: { certs: [{ host: 'one.test', cert: one.cert, key: one.key }], policies: {}, challenges: {} },
    });
    await r.apply([route()]);
    const a = await serialAt(r.httpsPort!, 'one.test', one.cert);
    assert.equal(a.status, 200);
    assert.equal(a.serial, serialOf(one));
    assert.equal(statSync(hdir).mode & 0o777, 0o700);
    for (const f of readdirSync(hdir).filter((n) => !n.endsWith('.sock') && n !== 'haproxy.pid'))
      assert.equal(statSync(join(hdir, f)).mode & 0o777, 0o600, `${f} is private`);
  });

  it('leaves hostile entries out, serves the others, and never reloads for certificates', async () => {
    const reloads = r.health.reloads;
    const updates = r.health.runtimeUpdates;
    // CRLF line ends and blank lines (the Runtime API payload ends at a blank line).
    const crlf = two.cert.replace(/\n/g, '\r\n\r\n');
    const bundle: TlsBundle = {
      certs: [
        { host: 'one.test', cert: one.cert, key: one.key },
        { host: 'Two.TEST', cert: crlf, key: two.key },
        { host: '../../etc/evil', cert: one.cert, key: one.key },
        { host: 'a/b.test', cert: one.cert, key: one.key },
        { host: '[::1]', cert: one.cert, key: one.key },
        { host: 'bad.test', cert: 'not a certificate', key: 'nor a key' },
        // A readable certificate with another's key: HAProxy would refuse it, and a reload from its file.
        { host: 'mismatch.test', cert: one.cert, key: two.key },
      ],
      policies: { 'one.test': { redirect: true, hstsMaxAge: 60 }, 'x y': { redirect: true }, 'two.test': { hstsMaxAge: -5 } },
      challenges: {
        good_token: 'good_token.thumb',
        'bad token': 'x',
        'bad\nset server': 'x',
        semi: 'a; del map',
      },
    };
    await r.setTls(bundle);
    assert.equal((await serialAt(r.httpsPort!, 'two.test', two.cert)).serial, serialOf(two));
    assert.equal((await serialAt(r.httpsPort!, 'one.test', one.cert)).serial, serialOf(one));
    assert.equal(readFileSync(join(hdir, 'acme.map'), 'utf8'), 'good_token good_token.thumb\n');
    const answer = await fetch(`${r.url}/.well-known/acme-challenge/good_token`, { headers: { host: 'any.test' } });
    assert.equal(await answer.text(), 'good_token.thumb');
    assert.ok(!existsSync(join(dir, 'etc')) && !existsSync(join(hdir, 'cert-a')), 'no file outside its folder');
    assert.deepEqual(
      readdirSync(hdir)
        .filter((n) => n.startsWith('cert-'))
        .sort(),
      ['cert-one.test.pem', 'cert-two.test.pem'],
    );
    assert.equal(readFileSync(join(hdir, 'hsts.map'), 'utf8'), 'one.test 60\n');
    assert.equal(r.health.reloads, reloads, 'no reload');
    assert.ok(r.health.runtimeUpdates > updates);
    // Removal: the file goes too.
    await r.setTls({ certs: [{ host: 'one.test', cert: one.cert, key: one.key }], policies: {}, challenges: {} });
    assert.ok(!existsSync(join(hdir, 'cert-two.test.pem')));
    assert.equal(r.health.reloads, reloads, 'no reload');
  });

  it('reloads from its files when HAProxy refuses a certificate command', async () => {
    await r.setTls({
      certs: [
        { host: 'one.test', cert: one.cert, key: one.key },
        { host: 'two.test', cert: two.cert, key: two.key },
      ],
      policies: {},
      challenges: {},
    });
    // Someone took two.test out of HAProxy's list behind Pilot's back: removing it is refused.
    const list = join(hdir, 'crt-list.txt');
    assert.match(
      await runtimeCommand(join(hdir, 'admin.sock'), [`del ssl crt-list ${list} ${join(hdir, 'cert-two.test.pem')}`]),
      /deleted/,
    );
    const reloads = r.health.reloads;
    await r.setTls({ certs: [{ host: 'one.test', cert: one.cert, key: one.key }], policies: {}, challenges: {} });
    assert.equal(r.health.reloads, reloads + 1, 'a reload from the files');
    assert.match(r.health.lastError ?? '', /del ssl crt-list/);
    assert.equal((await serialAt(r.httpsPort!, 'one.test', one.cert)).serial, serialOf(one));
    await assert.rejects(serialAt(r.httpsPort!, 'two.test', two.cert));
  });

  it('serves the certificates again after HAProxy is killed and started again', async () => {
    await r.setTls({
      certs: [
        { host: 'one.test', cert: one.cert, key: one.key },
        { host: 'two.test', cert: two.cert, key: two.key },
      ],
      policies: {},
      challenges: {},
    });
    const pid = r.health.pid!;
    process.kill(pid, 'SIGKILL');
    const end = performance.now() + 60_000;
    while ((r.health.pid === pid || !r.health.up) && performance.now() < end) await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.health.up, true);
    assert.equal((await serialAt(r.httpsPort!, 'two.test', two.cert)).serial, serialOf(two));
    assert.equal((await serialAt(r.httpsPort!, 'one.test', one.cert)).serial, serialOf(one));
  });
});

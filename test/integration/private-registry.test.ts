/**
 * Issue 10.2 end to end: the user's npm set-up and a build secret reach the build. A loopback HTTPS
 * npm registry with its own CA (made here with openssl) requires a bearer token and serves one
 * package; the app's own .npmrc points at it (`registry=` + `_authToken=${NPM_TOKEN}`), the CA is
 * in the host's *global* npmrc (`cafile`, found through the host npm's prefix, which the build
 * does not inherit) and the token is a build secret (`pilot secrets set APP NPM_TOKEN --build`).
 * The build runs on a pinned runtime, whose npm would otherwise read `<runtime>/etc/npmrc`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar';
import { signGithubPayload } from '../../src/cd/github-signature.js';
import { runCommand } from '../../src/os/exec.js';
import { git, Harness, makeRepo, PILOT, ROOT, tempDir, waitFor } from './harness.js';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as { name: string; examples: Record<string, unknown>[] }[];
const pushExample = examples.find((e) => e.name === 'push')!.examples[0]!;
const HOOK_SECRET = 'private-registry-hook-secret-0123';

const h = new Harness();
const TOKEN = `npm_pilotTest_${createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 24)}`;
const PKG = 'pilot-private-dep';
const SERVER = `const http = require('node:http');
const dep = require('${PKG}');
http.createServer((req, res) => res.end(JSON.stringify({ dep, token: process.env.NPM_TOKEN ?? null }))).listen(process.env.PORT);
`;

function openssl(cwd: string, ...args: string[]): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA and a certificate for 127.0.0.1 signed by it; the server sends leaf + CA, as a TLS-intercepting proxy does. */
function makeCerts(dir: string): { ca: string; key: string; chain: string } {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=Pilot Test Registry CA',
  );
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(
    join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    'leaf.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'leaf.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  );
  const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
  return { ca, key: readFileSync(join(dir, 'leaf.key'), 'utf8'), chain: readFileSync(join(dir, 'leaf.pem'), 'utf8') + ca };
}

/** The package tarball (npm's layout: package/...), with its integrity and shasum. */
async function makeTarball(dir: string): Promise<{ tgz: Buffer; integrity: string; shasum: string }> {
  const src = join(dir, 'pkg');
  mkdirSync(join(src, 'package'), { recursive: true });
  writeFileSync(join(src, 'package', 'package.json'), JSON.stringify({ name: PKG, version: '1.0.0', main: 'index.js' }));
  writeFileSync(join(src, 'package', 'index.js'), `module.exports = '${PKG} 1.0.0 from the private registry';\n`);
  await tar.c({ gzip: true, cwd: src, portable: true, file: join(dir, 'pkg.tgz') }, ['package']);
  const tgz = readFileSync(join(dir, 'pkg.tgz'));
  return {
    tgz,
    integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
    shasum: createHash('sha1').update(tgz).digest('hex'),
  };
}

describe('a private HTTPS registry with its own CA and a token (build secret)', { timeout: 900_000 }, () => {
  let registry: Server;
  let url = '';
  let authorized = 0;
  let refused = 0;
  let repo = '';
  let prefix = ''; // the host npm's prefix: <prefix>/etc/npmrc is its global npmrc
  const work = h.track(tempDir('registry'));

  before(async () => {
    // A user's terminal, not `npm test`'s script environment: npm exports its own config
    // (npm_config_globalconfig, npm_config_cafile, ...) to scripts, which would hide the host's npmrc.
    for (const k of Object.keys(process.env)) if (/^npm_config_/i.test(k)) delete process.env[k];
    const certs = makeCerts(work);
    const pkg = await makeTarball(work);
    registry = createServer({ key: certs.key, cert: certs.chain }, (req, res) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        refused++;
        res
          .writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' })
          .end(JSON.stringify({ error: 'authentication required' }));
        return;
      }
      authorized++;
      if (req.url === `/${PKG}`) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            name: PKG,
            'dist-tags': { latest: '1.0.0' },
            versions: {
              '1.0.0': {
                name: PKG,
                version: '1.0.0',
                main: 'index.js',
                dist: { tarball: `${url}${PKG}/-/${PKG}-1.0.0.tgz`, integrity: pkg.integrity, shasum: pkg.shasum },
              },
            },
          }),
        );
      } else if (req.url === `/${PKG}/-/${PKG}-1.0.0.tgz`) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(pkg.tgz);
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
      }
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(registry.address() as { port: number }).port}/`;

    // The host's global npmrc trusts the system CAs and this one (a corporate bundle).
    prefix = join(work, 'prefix');
    mkdirSync(join(prefix, 'etc'), { recursive: true });
    const bundle = join(work, 'bundle.pem');
    writeFileSync(bundle, readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8') + certs.ca);
    writeFileSync(join(prefix, 'etc', 'npmrc'), `cafile=${bundle}\n`);

    // The app, its lockfile written by the real npm against this registry, committed.
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify(
        {
          name: 'private-dep-app',
          version: '1.0.0',
          private: true,
          scripts: {
            start: 'node server.js',
            build:
              "node -e \"console.log('build sees token ' + process.env.NPM_TOKEN + ' via ' + (process.env.HTTPS_PROXY || 'no proxy'))\"",
          },
          dependencies: { [PKG]: '1.0.0' },
        },
        null,
        2,
      ),
    );
    writeFileSync(join(app, 'server.js'), SERVER);
    const host = url.replace(/^https:/, '');
    writeFileSync(join(app, '.npmrc'), `registry=${url}\n${host}:_authToken=\${NPM_TOKEN}\n`);
    const lines: string[] = [];
    const r = await runCommand(['npm', 'install', '--no-audit', '--no-fund'], {
      cwd: app,
      timeoutMs: 120_000,
      onLine: (_s, l) => lines.push(l),
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        NPM_TOKEN: TOKEN,
        npm_config_cafile: bundle,
        npm_config_cache: join(work, 'npm-cache-0'),
      },
    });
    assert.equal(r.code, 0, lines.join('\n'));
    spawnSync('rm', ['-rf', join(app, 'node_modules')]);
    repo = h.track(await makeRepo(app));
    // The server's environment is the host's for CD builds: its npm finds the CA through the prefix too.
    await h.startUp({ PREFIX: prefix });
  });
  after(async () => {
    await h.cleanup();
    await new Promise((resolve) => registry.close(resolve));
  });

  /** `pilot run` (the build runs in this process) with the host npm's prefix, a fresh npm cache each time. */
  let runs = 0;
  async function pilotRun(opts: {
    globalNpmrc: boolean;
    env?: Record<string, string>;
  }): Promise<{ code: number | null; out: string; ms: number }> {
    const env: Record<string, string> = { npm_config_cache: join(work, `npm-cache-${++runs}`), ...opts.env };
    if (opts.globalNpmrc) env['PREFIX'] = prefix;
    const t0 = performance.now();
    const r = await h.cli(['run', repo], { env });
    return { code: r.code, out: r.stdout + r.stderr, ms: performance.now() - t0 };
  }

  async function setBuildSecret(value: string): Promise<void> {
    const p = spawn(process.execPath, [PILOT, 'secrets', 'set', 'private-dep-app', 'NPM_TOKEN', '--build'], {
      cwd: ROOT,
      env: h.env(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.stdin.end(`${value}\n`);
    const code = await new Promise((resolve) => p.on('close', resolve));
    assert.equal(code, 0, out);
    assert.match(out, /build secret NPM_TOKEN of private-dep-app stored \(encrypted\); given to the build steps/);
    assert.ok(!out.includes(value));
  }

  it("before its build secret is set: a warning before the install, npm's E401, and a hint naming the command", async () => {
    const r = await pilotRun({ globalNpmrc: true });
    assert.notEqual(r.code, 0, r.out);
    assert.match(
      r.out,
      /warning: the app's \.npmrc uses \$\{NPM_TOKEN\}, which the build does not have \(set it: pilot secrets set private-dep-app NPM_TOKEN --build\)[\s\S]*--> install/,
    );
    assert.match(r.out, /E401/);
    assert.match(
      r.out,
      /hint: The app's \.npmrc uses \$\{NPM_TOKEN\}, which the build does not have: `pilot secrets set private-dep-app NPM_TOKEN --build`/,
    );
  });

  it("without the CA, the install fails with npm's own SELF_SIGNED_CERT_IN_CHAIN in the run log", async () => {
    // Before the app's first deploy: a build secret records the app.
    await setBuildSecret(TOKEN);
    // npm retries a failed TLS handshake for ~70 s by default: the user's own npm_config_* (here,
    // no retries) reaches the build from the terminal, as any npm setting does.
    const r = await pilotRun({ globalNpmrc: false, env: { npm_config_fetch_retries: '0' } });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /variables [^\n]*npm_config_fetch_retries/);
    assert.match(r.out, /SELF_SIGNED_CERT_IN_CHAIN|self[- ]signed certificate in certificate chain/i);
    assert.match(r.out, /build failed: step `npm ci --no-audit --no-fund` exited with code 1/);
    assert.ok(!r.out.includes(TOKEN), 'token masked');
  });

  it("with a wrong token, the install fails quickly with npm's E401 in the run log", async () => {
    await setBuildSecret('npm_wrong_token_0000');
    const before = refused;
    const r = await pilotRun({ globalNpmrc: true });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /E401|401 Unauthorized/);
    assert.ok(refused > before, 'the registry was asked (and refused)');
    console.log(`# wrong token: run failed after ${(r.ms / 1000).toFixed(1)} s`);
  });

  it("with the CA in the host's global npmrc and the token as a build secret, the app deploys; the token stays out of logs, artifact and app", async () => {
    await setBuildSecret(TOKEN);
    const before = authorized;
    const r = await pilotRun({ globalNpmrc: true });
    assert.equal(r.code, 0, r.out);
    assert.ok(authorized > before, 'the registry served the package');
    assert.match(r.out, /node \d+\.\d+\.\d+ \(from [^)]+\) builds the app/, 'built on a pinned runtime');
    assert.match(r.out, new RegExp(`global npmrc ${join(prefix, 'etc', 'npmrc').replaceAll('/', '\\/')}`));
    assert.match(r.out, /build secrets: NPM_TOKEN \(build steps only, not the running app\)/);
    assert.match(r.out, /build sees token \*\*\*/);
    assert.ok(!r.out.includes(TOKEN), 'token masked in the terminal');

    const answer = await h.viaRouter('private-dep-app.localhost');
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(JSON.parse(answer.text), { dep: `${PKG} 1.0.0 from the private registry`, token: null });

    const runId = /run #(\d+)/.exec(r.out)?.[1];
    const log = await h.apiCall('GET', `/api/v1/runs/${runId}/log`);
    assert.equal(log.status, 200);
    assert.match(String(log.json), /build sees token \*\*\*/);
    assert.ok(!String(log.json).includes(TOKEN), 'token masked in the run log');

    const digest = (await h.apiCall('GET', `/api/v1/runs/${runId}`)).json.run.artifact as string;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    const blob = await fetch(`${h.api}/api/v1/artifacts/${digest}`, { headers: { authorization: `Bearer ${h.token}` } });
    assert.equal(blob.status, 200);
    const tarBytes = gunzipSync(Buffer.from(await blob.arrayBuffer()));
    assert.ok(tarBytes.includes(Buffer.from(`${PKG} 1.0.0 from the private registry`)), 'the dependency is in the artifact');
    assert.ok(!tarBytes.includes(Buffer.from(TOKEN)), 'the token is not in the artifact');
    assert.ok(!tarBytes.includes(Buffer.from(Buffer.from(TOKEN).toString('base64'))));

    // The secrets list says what each is for; the build-secrets route refuses a finished run.
    const list = await h.cli(['secrets', 'list', 'private-dep-app']);
    assert.match(list.stdout, /NPM_TOKEN\s+build/);
    const late = await h.apiCall('GET', `/api/v1/runs/${runId}/build-secrets`);
    assert.equal(late.status, 400);
    assert.ok(!JSON.stringify(late.json).includes(TOKEN));
  });

  it('through an authenticating HTTPS proxy (HTTPS_PROXY with user:password): the install tunnels through it, the password is masked', async () => {
    const PROXY_PASSWORD = 'proxy-pass-123';
    const registryPort = (registry.address() as { port: number }).port;
    const sockets = new Set<Socket>();
    let tunnels = 0;
    let refusedTunnels = 0;
    const proxy = createHttpServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req, client: Socket, head: Buffer) => {
      sockets.add(client);
      const auth = req.headers['proxy-authorization'];
      if (auth !== `Basic ${Buffer.from(`pilot:${PROXY_PASSWORD}`).toString('base64')}` || req.url !== `127.0.0.1:${registryPort}`) {
        refusedTunnels++;
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="pilot"\r\n\r\n');
        return;
      }
      tunnels++;
      const upstream = connect(registryPort, '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const proxyUrl = `http://pilot:${PROXY_PASSWORD}@127.0.0.1:${(proxy.address() as { port: number }).port}/`;
      // (DNS:localhost in the certificate: npm's proxy agent sends SNI "localhost" for an IP host.)
      const r = await pilotRun({ globalNpmrc: true, env: { HTTPS_PROXY: proxyUrl, npm_config_fetch_retries: '0' } });
      assert.equal(r.code, 0, r.out);
      assert.ok(tunnels > 0, `the install went through the proxy (${tunnels} tunnels, ${refusedTunnels} refused)`);
      assert.match(r.out, /variables [^\n]*HTTPS_PROXY/);
      assert.match(r.out, /build sees token \*\*\* via http:\/\/\*\*\*@127\.0\.0\.1:\d+\//);
      assert.ok(!r.out.includes(PROXY_PASSWORD), 'proxy password masked');
      assert.ok(!r.out.includes(TOKEN));
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('a failing build that prints the secret: masked in the error, the run record and the terminal', async () => {
    const dir = h.track(tempDir('leaky'));
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'private-dep-app',
        version: '1.0.1',
        private: true,
        scripts: { build: 'node -e "console.log(\'leaking \' + process.env.NPM_TOKEN); process.exit(3)"' },
      }),
    );
    const leaky = h.track(await makeRepo(dir));
    const r = await h.cli(['run', leaky], { env: { npm_config_cache: join(work, 'npm-cache-leaky') } });
    assert.notEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /leaking \*\*\*/);
    assert.ok(!(r.stdout + r.stderr).includes(TOKEN), r.stdout + r.stderr);
    const runs = await h.apiCall('GET', '/api/v1/runs?app=private-dep-app&limit=1');
    const last = runs.json.runs[0];
    assert.equal(last.status, 'failed');
    assert.match(last.error, /leaking \*\*\*/);
    assert.ok(!JSON.stringify(runs.json).includes(TOKEN));
  });

  it('the CD server path gets the build secret and the host npm set-up too (a signed push deploys)', async () => {
    const created = await h.cli(['apps', 'create', 'private-dep-app', '--repo', repo, '--branch', 'main', '--secret', HOOK_SECRET]);
    assert.equal(created.code, 0, created.stderr);
    const sha = await git(repo, 'rev-parse', 'HEAD');
    const p = structuredClone(pushExample) as Record<string, any>;
    p.ref = 'refs/heads/main';
    p.after = sha;
    p.deleted = false;
    p.repository = { ...p.repository, clone_url: repo, full_name: 'acme/private-dep-app' };
    p.head_commit = { ...(p.head_commit ?? {}), id: sha, message: 'first', author: { name: 'Dev Eloper', email: 'dev@example.com' } };
    const body = JSON.stringify(p);
    const res = await fetch(`${h.api}/hooks/github/private-dep-app`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': signGithubPayload(HOOK_SECRET, body),
      },
    });
    const text = await res.text();
    assert.equal(res.status, 202, text);
    const { run: id } = JSON.parse(text) as { run: number };
    const run = await waitFor(
      `run #${id}`,
      async () => {
        const r = (await h.apiCall('GET', `/api/v1/runs/${id}`)).json.run;
        return ['queued', 'running'].includes(r.status) ? undefined : r;
      },
      300_000,
    );
    const log = String((await h.apiCall('GET', `/api/v1/runs/${id}/log`)).json);
    assert.equal(run.status, 'succeeded', `${run.error}\n${log}`);
    assert.match(log, /global npmrc [^;]*prefix\/etc\/npmrc/);
    assert.match(log, /build sees token \*\*\*/);
    assert.ok(!log.includes(TOKEN));
    const answer = await h.viaRouter('private-dep-app.localhost');
    assert.deepEqual(JSON.parse(answer.text), { dep: `${PKG} 1.0.0 from the private registry`, token: null });
  });
});

/**
 * The router, as `pilot up` runs it, sets X-Forwarded-* itself: an app sees the client's real
 * address whatever the client claims, and a proxy listed in PILOT_TRUSTED_PROXIES (here the
 * loopback address 127.0.0.2) has its forwarding headers kept and appended to.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git, Harness, makeRepo, ROOT } from './harness.js';

const h = new Harness();

/** GET / for `host` through the router from `localAddress`, with `headers`; the app's echo of its request headers. */
function viaRouterFrom(localAddress: string, headers: Record<string, string>): Promise<Record<string, string>> {
  const url = new URL(h.router);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: '/', localAddress, headers: { host: 'echo.localhost', ...headers } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(JSON.parse(body) as Record<string, string>) : reject(new Error(`${res.statusCode}: ${body}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const SPOOF = {
  'x-forwarded-for': '203.0.113.7',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'bank.example',
  forwarded: 'for=203.0.113.7',
  'x-real-ip': '203.0.113.7',
};

describe("forwarded headers through pilot up's router", { timeout: 300_000 }, () => {
  before(async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(repo, 'pilot.yaml'), 'name: echo\nhealth:\n  path: /healthz\n  interval: 1s\n');
    writeFileSync(
      join(repo, 'server.js'),
      `import { createServer } from 'node:http';
createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(req.url === '/healthz' ? { ok: true } : req.headers));
}).listen(Number(process.env.PORT));
`,
    );
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'echo headers');
    await h.startUp({ PILOT_TRUSTED_PROXIES: '127.0.0.2/32' });
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(() => h.cleanup());

  it("drops a client's own claims and sets the real ones", async () => {
    const got = await viaRouterFrom('127.0.0.1', SPOOF);
    assert.equal(got['x-forwarded-for'], '127.0.0.1');
    assert.equal(got['x-forwarded-proto'], 'http');
    assert.equal(got['x-forwarded-host'], 'echo.localhost');
    assert.equal(got['forwarded'], undefined);
    assert.equal(got['x-real-ip'], undefined);
  });

  it('keeps and appends to them from a trusted proxy', async () => {
    const got = await viaRouterFrom('127.0.0.2', SPOOF);
    assert.equal(got['x-forwarded-for'], '203.0.113.7, 127.0.0.2');
    assert.equal(got['x-forwarded-proto'], 'https');
    assert.equal(got['x-forwarded-host'], 'bank.example');
    assert.equal(got['forwarded'], 'for=203.0.113.7');
    assert.equal(got['x-real-ip'], '203.0.113.7');
  });
});

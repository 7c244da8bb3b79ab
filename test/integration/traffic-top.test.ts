/**
 * Live traffic figures end to end: real requests through the router process of `pilot up` to a
 * deployed app, some of them 5xx and 4xx on purpose, some slow; then the traffic API, `pilot top
 * APP --once` (not a terminal: plain lines) and /metrics show exactly those requests.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, ROOT } from './harness.js';

const h = new Harness();

interface Row {
  revision: number | null;
  active: boolean;
  requests: number;
  rps: number;
  status: Record<'1xx' | '2xx' | '3xx' | '4xx' | '5xx', number>;
  errorRate: number;
  latencyMs: { mean: number | null; p50: number | null; p90: number | null; p99: number | null };
}

async function hit(path: string, host = 'shop.localhost'): Promise<number> {
  return (await h.viaRouter(host, path)).status;
}

describe("traffic figures and pilot top through pilot up's router", { timeout: 300_000 }, () => {
  const counts = { ok: 40, fail: 7, missing: 3, slow: 5 };
  let before2xx = 0;

  before(async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(repo, 'pilot.yaml'), 'name: shop\nhealth:\n  path: /healthz\n  interval: 1s\n');
    writeFileSync(
      join(repo, 'server.js'),
      `import { createServer } from 'node:http';
createServer((req, res) => {
  const answer = (code) => { res.writeHead(code, { 'content-type': 'text/plain' }); res.end(String(code)); };
  if (req.url === '/fail') return answer(500);
  if (req.url === '/missing') return answer(404);
  if (req.url === '/slow') return void setTimeout(() => answer(200), 60);
  answer(200);
}).listen(Number(process.env.PORT));
`,
    );
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'shop');
    await h.startUp();
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Whatever reached the app before the test's own requests (nothing, today) is not the test's.
    const start = await h.apiCall('GET', '/api/v1/apps/shop/traffic?window=5m');
    assert.equal(start.status, 200, JSON.stringify(start.json));
    before2xx = (start.json.revisions as Row[]).find((x) => x.active)?.status['2xx'] ?? 0;

    for (let i = 0; i < counts.ok; i++) assert.equal(await hit('/'), 200);
    for (let i = 0; i < counts.fail; i++) assert.equal(await hit('/fail'), 500);
    for (let i = 0; i < counts.missing; i++) assert.equal(await hit('/missing'), 404);
    await Promise.all(Array.from({ length: counts.slow }, async () => assert.equal(await hit('/slow'), 200)));
    assert.equal(await hit('/', 'nobody.localhost'), 404, "an unknown host is not the app's traffic");
  });
  after(() => h.cleanup());

  it('answers per revision: requests, status counts, error rate, percentiles', async () => {
    const res = await h.apiCall('GET', '/api/v1/apps/shop/traffic?window=60s');
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.app, 'shop');
    assert.equal(res.json.windowSeconds, 60);
    assert.equal(res.json.activeRevision, 1);
    const rows = res.json.revisions as Row[];
    const r = rows.find((x) => x.revision === 1)!;
    assert.ok(r.active, JSON.stringify(rows));
    const total = counts.ok + counts.fail + counts.missing + counts.slow;
    assert.equal(r.status['5xx'], counts.fail);
    assert.equal(r.status['4xx'], counts.missing);
    assert.equal(r.status['2xx'] - before2xx, counts.ok + counts.slow);
    assert.equal(r.requests - before2xx, total);
    assert.equal(r.errorRate, Number((counts.fail / r.requests).toFixed(4)));
    assert.ok(r.rps > 0, JSON.stringify(r));
    assert.ok(r.latencyMs.p50! > 0 && r.latencyMs.p50! < 60, JSON.stringify(r.latencyMs));
    // 5 slow requests of 55 are more than 1 %: the p99 is one of them (60 ms, within the histogram's 1/32).
    assert.ok(r.latencyMs.p99! >= 60 * (1 - 1 / 32), JSON.stringify(r.latencyMs));
    assert.equal(rows.filter((x) => x.revision === null).length, 0, 'no request lacked an instance');
  });

  it("answers every app at once, and the app-level errors with the catalogue's codes", async () => {
    const all = await h.apiCall('GET', '/api/v1/traffic?window=1m');
    assert.equal(all.status, 200);
    const shop = (all.json.apps as { app: string; revisions: Row[] }[]).find((a) => a.app === 'shop');
    assert.equal(shop?.revisions.find((x) => x.revision === 1)?.status['5xx'], counts.fail);

    const unknown = await h.apiCall('GET', '/api/v1/apps/nope/traffic');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'app_not_found');
    assert.ok(unknown.json.error.hint);
    for (const w of ['10h', 'abc', '0s', '-5s', '1e3', '500ms', `${'9'.repeat(30)}s`]) {
      const bad = await h.apiCall('GET', `/api/v1/apps/shop/traffic?window=${encodeURIComponent(w)}`);
      assert.equal(bad.status, 400, `window=${w}: ${JSON.stringify(bad.json)}`);
      assert.equal(bad.json.error.code, 'bad_request');
      assert.match(bad.json.error.hint, /1s to 5m/);
    }
    const badName = await h.apiCall('GET', '/api/v1/apps/Not..An%20App/traffic');
    assert.equal(badName.status, 400);
    assert.equal((await h.apiCall('GET', '/api/v1/apps/shop/traffic', undefined, null)).status, 401, 'the admin token is required');
  });

  it("pilot top APP --once prints the revision's figures as plain lines", async () => {
    const r = await h.cli(['top', 'shop', '--once', '--window', '60s']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /APP\s+REV\s+REQ\/S\s+REQUESTS\s+2XX\+3XX\s+4XX\s+5XX\s+ERRORS\s+P50\s+P99/);
    const line = r.stdout.split('\n').find((l) => /^shop\s+1\*/.test(l));
    assert.ok(line, r.stdout);
    const cells = line.trim().split(/\s+/);
    assert.equal(cells[5], String(counts.missing), line);
    assert.equal(cells[6], String(counts.fail), line);
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no terminal control codes when stdout is not a terminal');

    const json = await h.cli(['top', '--once', '--json', '--window', '60s']);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as { apps: { app: string; revisions: Row[] }[] };
    assert.equal(doc.apps.find((a) => a.app === 'shop')?.revisions[0]?.status['5xx'], counts.fail);

    const missing = await h.cli(['top', 'nope', '--once']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /app "nope" not found/);
    const badInterval = await h.cli(['top', 'shop', '--interval', '1ms']);
    assert.equal(badInterval.code, 1);
    assert.match(badInterval.stderr, /--interval/);
  });

  it('exports the same requests to Prometheus under the old names', async () => {
    const text = (await h.apiCall('GET', '/metrics')).json as string;
    assert.match(text, new RegExp(`pilot_router_requests_total\\{app="shop",revision="1",code="500"\\} ${counts.fail}\\b`));
    assert.match(text, new RegExp(`pilot_router_requests_total\\{app="shop",revision="1",code="404"\\} ${counts.missing}\\b`));
    assert.match(text, /pilot_router_request_duration_seconds_bucket\{app="shop",revision="1",le="\+Inf"\} \d+/);
    assert.match(text, /pilot_router_requests_total\{app="",revision="",code="404"\} 1\b/);
  });

  it("the router's figures endpoint takes only the router token and survives hostile requests", async () => {
    const info = JSON.parse(readFileSync(join(h.home, 'router', 'router.json'), 'utf8')) as { admin: string };
    const token = readFileSync(join(h.home, 'router-token'), 'utf8').trim();
    const get = async (path: string, auth?: string) => {
      const res = await request(info.admin + path, { headers: auth === undefined ? {} : { authorization: `Bearer ${auth}` } });
      return { status: res.statusCode, text: await res.body.text() };
    };
    assert.equal((await get('/traffic')).status, 401);
    assert.equal((await get('/traffic', h.token)).status, 401, 'the admin token is not the router token');
    assert.equal((await get('/traffic?window=forever', token)).status, 400);
    const ok = await get('/traffic?window=60s&app=shop', token);
    assert.equal(ok.status, 200);
    assert.ok((JSON.parse(ok.text) as { revisions: { app: string }[] }).revisions.every((r) => r.app === 'shop'));
    // An absolute-form target the URL parser refuses: a 404, and the router keeps serving.
    const raw = await new Promise<string>((resolve, reject) => {
      const url = new URL(info.admin);
      import('node:net').then(({ connect }) => {
        const s = connect(Number(url.port), url.hostname, () =>
          s.end(`GET http://[ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`),
        );
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString()));
        s.on('close', () => resolve(got));
        s.on('error', reject);
      }, reject);
    });
    assert.match(raw, /^HTTP\/1\.1 (400|404)/);
    assert.equal(await hit('/'), 200);
  });
});

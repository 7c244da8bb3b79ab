/**
 * The dashboard's edge on a real control plane: its files with a strict CSP, sign-in for a
 * session cookie, and CSRF protection of every state change made with that cookie, while bearer
 * tokens (the CLI) keep working exactly as before.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { request } from 'undici';
import { startControlPlane, type ControlPlane } from './server.js';

/** The parts of the answers this test reads. */
interface Answer {
  error: { code: string; message: string; hint: string };
  csrf: string;
  tokens: unknown[];
}

describe('dashboard: files, session cookie, CSP and CSRF', { timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let home: string;
  let root: string;

  const call = async (
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: unknown,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string; json: Answer }> => {
    const res = await request(cp.apiUrl + path, {
      method: method as 'GET',
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    let json = {} as Answer;
    try {
      json = JSON.parse(text) as Answer;
    } catch {
      // not JSON: the page or an asset
    }
    return { status: res.statusCode, headers: res.headers, text, json };
  };
  const signIn = async (token = cp.adminToken, headers: Record<string, string> = {}) => {
    const r = await call('POST', '/api/v1/session', headers, { token });
    const set = String(r.headers['set-cookie'] ?? '');
    return { ...r, set, cookie: set.split(';')[0]! };
  };

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'pilot-web-'));
    root = mkdtempSync(join(tmpdir(), 'pilot-web-root-'));
    mkdirSync(join(root, 'assets'));
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>Pilot</title><script type="module" src="/assets/app-1.js"></script>');
    writeFileSync(join(root, 'assets', 'app-1.js'), 'console.log(1)');
    writeFileSync(join(root, 'assets', 'secret.txt'), 'not served: no known type');
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      gcIntervalMs: 0,
      web: { root },
    });
  });
  after(async () => {
    await cp.close();
    rmSync(home, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  });

  it('serves the page at / and at its own routes with a strict CSP, no credential needed', async () => {
    for (const path of ['/', '/apps/shop', '/runs/12?x=1', '/nodes']) {
      const r = await call('GET', path);
      assert.equal(r.status, 200, path);
      assert.match(String(r.headers['content-type']), /^text\/html/);
      assert.ok(r.text.includes('<title>Pilot</title>'));
      const csp = String(r.headers['content-security-policy']);
      for (const part of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"])
        assert.ok(csp.split('; ').includes(part), `${part} in ${csp}`);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.equal(r.headers['x-frame-options'], 'DENY');
    }
    const js = await call('GET', '/assets/app-1.js');
    assert.equal(js.status, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.match(String(js.headers['cache-control']), /immutable/);
  });

  it('serves nothing else: unknown or untyped assets, traversal, API paths stay JSON 404/401', async () => {
    assert.equal((await call('GET', '/assets/missing.js')).status, 404);
    assert.equal((await call('GET', '/assets/secret.txt')).status, 404);
    assert.equal((await call('GET', '/assets/.hidden.js')).status, 404);
    for (const sneaky of ['/assets/%2e%2e/%2e%2e/admin-token', '/assets/..%2f..%2fadmin-token', '/assets/%2e%2e%2fpilot.db']) {
      const r = await call('GET', sneaky);
      assert.ok(r.status === 400 || r.status === 404 || r.text.includes('<title>Pilot</title>'), `${sneaky}: ${r.status}`);
      assert.ok(!r.text.includes(cp.adminToken), sneaky);
    }
    assert.equal((await call('GET', '/assets/sub/app-1.js')).status, 200, 'a deeper path is a page route, not a file');
    assert.ok(!(await call('GET', '/assets/sub/app-1.js')).text.includes('console.log'));
    const api = await call('GET', '/api/v1/nothing-here');
    assert.equal(api.status, 401, 'an API path without a token is refused, not answered with the page');
    const apiAdmin = await call('GET', '/api/v1/nothing-here', { authorization: `Bearer ${cp.adminToken}` });
    assert.equal(apiAdmin.status, 404);
    assert.equal(apiAdmin.json.error.code, 'not_found');
    const data = await call('GET', '/api/v1/apps', { authorization: `Bearer ${cp.adminToken}` });
    assert.equal(data.headers['x-content-type-options'], 'nosniff');
    assert.equal(data.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'");
  });

  it('says how to build the dashboard when its files are missing', async () => {
    renameSync(join(root, 'index.html'), join(root, 'index.off'));
    try {
      const r = await call('GET', '/apps');
      assert.equal(r.status, 404);
      assert.match(r.json.error.message, /dashboard is not built/);
      assert.match(r.json.error.hint, /npm run build/);
    } finally {
      renameSync(join(root, 'index.off'), join(root, 'index.html'));
    }
  });

  it('exchanges a token for an HttpOnly SameSite=Strict cookie; a wrong token gets none', async () => {
    const bad = await signIn('pilot_admin_not-the-token');
    assert.equal(bad.status, 401);
    assert.equal(bad.headers['set-cookie'], undefined);
    assert.equal((await call('POST', '/api/v1/session', {}, { token: cp.joinToken })).status, 401, 'a join token opens no session');
    assert.equal((await call('POST', '/api/v1/session', {}, {})).status, 400);
    const ok = await signIn();
    assert.equal(ok.status, 201, ok.text);
    assert.match(ok.set, /^pilot_session=[A-Za-z0-9_-]{40,};/);
    assert.match(ok.set, /; HttpOnly/);
    assert.match(ok.set, /; SameSite=Strict/);
    assert.match(ok.set, /; Path=\//);
    assert.doesNotMatch(ok.set, /Secure/, 'plain HTTP: a Secure cookie would never come back');
    const proxied = await signIn(cp.adminToken, { 'x-forwarded-proto': 'https' });
    assert.match(proxied.set, /; Secure/, 'behind a TLS proxy the cookie is Secure');
    assert.ok(!ok.text.includes(cp.adminToken), 'the token is not echoed');
    assert.ok(typeof ok.json.csrf === 'string' && ok.json.csrf.length >= 40);
    const me = await call('GET', '/api/v1/session', { cookie: ok.cookie });
    assert.equal(me.status, 200);
    assert.equal(me.json.csrf, ok.json.csrf);
    assert.equal((await call('GET', '/api/v1/apps', { cookie: ok.cookie })).status, 200, 'reads with the cookie');
    assert.equal((await call('GET', '/api/v1/apps', { cookie: 'pilot_session=forged' })).status, 401);
  });

  it('refuses a state change with the cookie but without CSRF proof, or from another origin', async () => {
    const s = await signIn();
    const csrf = s.json.csrf as string;
    const own = cp.apiUrl;
    const cases: [string, Record<string, string>, RegExp][] = [
      ['no csrf header', { cookie: s.cookie }, /no x-pilot-csrf header/],
      ['wrong csrf header', { cookie: s.cookie, 'x-pilot-csrf': 'x'.repeat(43) }, /wrong x-pilot-csrf/],
      ['cross-site origin', { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: 'https://evil.example' }, /Origin "https:\/\/evil.example"/],
      ['null origin', { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: 'null' }, /Origin "null"/],
      ['sibling port', { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: 'http://127.0.0.1:1' }, /is not this server's/],
      ['Sec-Fetch-Site cross-site', { cookie: s.cookie, 'x-pilot-csrf': csrf, 'sec-fetch-site': 'cross-site' }, /cross-site/],
      ['Sec-Fetch-Site same-site', { cookie: s.cookie, 'x-pilot-csrf': csrf, 'sec-fetch-site': 'same-site' }, /same-site/],
    ];
    for (const [what, headers, why] of cases) {
      const r = await call('POST', '/api/v1/tokens/join', headers, {});
      assert.equal(r.status, 403, `${what}: ${r.text}`);
      assert.equal(r.json.error.code, 'forbidden', what);
      assert.match(r.json.error.message, why, what);
      assert.match(r.json.error.hint, /Bearer/, what);
    }
    const listed = await call('GET', '/api/v1/tokens/join', { authorization: `Bearer ${cp.adminToken}` });
    assert.equal(listed.json.tokens.length, 0, 'no refused call created a token');
    // A cross-site read with the cookie is refused too (the browser would not send it: SameSite=Strict).
    assert.equal((await call('GET', '/api/v1/apps', { cookie: s.cookie, 'sec-fetch-site': 'cross-site' })).status, 403);
    const good = await call(
      'POST',
      '/api/v1/tokens/join',
      { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: own, 'sec-fetch-site': 'same-origin' },
      {},
    );
    assert.equal(good.status, 201, good.text);
    const host = new URL(own).host;
    const viaTls = await call('POST', '/api/v1/tokens/join', { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: `https://${host}` }, {});
    assert.equal(viaTls.status, 201, 'behind a TLS proxy the page is https://<the same host>');
    const otherHost = await call(
      'POST',
      '/api/v1/tokens/join',
      { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: `https://a.${host}` },
      {},
    );
    assert.equal(otherHost.status, 403);
    const ftp = await call('POST', '/api/v1/tokens/join', { cookie: s.cookie, 'x-pilot-csrf': csrf, origin: `ftp://${host}` }, {});
    assert.equal(ftp.status, 403);
    const noOrigin = await call('POST', '/api/v1/tokens/join', { cookie: s.cookie, 'x-pilot-csrf': csrf }, {});
    assert.equal(noOrigin.status, 201, 'the CSRF header alone is proof enough when the browser sends no Origin');
  });

  it('answers hostile sign-in bodies with a 4xx and a code, never a session', async () => {
    const bodies = [
      '{"token": ',
      'null',
      '[1,2]',
      JSON.stringify({ token: 42 }),
      JSON.stringify({ token: 'x'.repeat(600) }),
      '['.repeat(50_000) + ']'.repeat(50_000),
      '{"__proto__": {"token": "x"}}',
    ];
    for (const body of bodies) {
      const res = await request(cp.apiUrl + '/api/v1/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const text = await res.body.text();
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${body.slice(0, 40)}: ${res.statusCode} ${text.slice(0, 200)}`);
      assert.equal(typeof (JSON.parse(text) as Answer).error.code, 'string');
      assert.equal(res.headers['set-cookie'], undefined);
    }
  });

  it('refuses a sign-in from another origin (no login CSRF)', async () => {
    const r = await signIn(cp.adminToken, { origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.equal(r.headers['set-cookie'], undefined);
  });

  it('keeps bearer tokens working unchanged, with or without a cookie or an Origin', async () => {
    const auth = { authorization: `Bearer ${cp.adminToken}` };
    assert.equal((await call('POST', '/api/v1/tokens/join', auth, {})).status, 201);
    assert.equal((await call('POST', '/api/v1/tokens/join', { ...auth, origin: 'https://elsewhere.example' }, {})).status, 201);
    assert.equal((await call('POST', '/api/v1/tokens/join', { ...auth, cookie: 'pilot_session=stale' }, {})).status, 201);
    const wrong = await call('POST', '/api/v1/tokens/join', { authorization: 'Bearer nope-nope-nope-nope', cookie: 'pilot_session=x' }, {});
    assert.equal(wrong.status, 401, 'a wrong bearer token is not rescued by a cookie');
  });

  it('signs out: the session ends (with CSRF proof) and the cookie is cleared', async () => {
    const s = await signIn();
    const refused = await call('DELETE', '/api/v1/session', { cookie: s.cookie });
    assert.equal(refused.status, 403, 'a foreign page cannot sign you out');
    assert.equal((await call('GET', '/api/v1/session', { cookie: s.cookie })).status, 200);
    const out = await call('DELETE', '/api/v1/session', { cookie: s.cookie, 'x-pilot-csrf': s.json.csrf });
    assert.equal(out.status, 204);
    assert.match(String(out.headers['set-cookie']), /^pilot_session=; .*Max-Age=0/);
    const after = await call('GET', '/api/v1/apps', { cookie: s.cookie });
    assert.equal(after.status, 401);
    assert.match(after.json.error.message, /session has ended/);
    assert.match(after.json.error.hint, /Sign in again/);
    assert.equal((await call('DELETE', '/api/v1/session', {})).status, 204, 'signing out twice is fine');
  });
});

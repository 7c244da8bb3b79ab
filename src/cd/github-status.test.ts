import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { postCommitStatus, type CommitStatusOptions } from './github-status.js';

interface Call {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

const TOKEN = 'ghp_s3cretTokenValue1234567890';
const SHA = 'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0';
let server: Server;
let base = '';
let calls: Call[] = [];
/** What the fake GitHub answers next. */
let answer: { status: number; body: string; headers?: Record<string, string>; hang?: boolean } = { status: 201, body: '{}' };

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      calls.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (answer.hang) return; // never answers: the client's timeout must end the call
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
beforeEach(() => {
  calls = [];
  answer = { status: 201, body: '{"id":1}' };
});

function post(over: Partial<CommitStatusOptions> = {}): ReturnType<typeof postCommitStatus> {
  return postCommitStatus({ apiBaseUrl: base, token: TOKEN, fullName: 'acme/shop', commit: SHA, state: 'pending', ...over });
}

function assertNoToken(value: unknown): void {
  assert.doesNotMatch(JSON.stringify(value), /s3cretTokenValue/);
}

describe('postCommitStatus', () => {
  it('posts the state, link, description and context to the commit with the token in the authorization header only', async () => {
    const r = await post({ state: 'success', targetUrl: 'https://pilot.example/api/v1/runs/42', description: 'revision 7 is live' });
    assert.deepEqual(r, { ok: true, status: 201 });
    assert.equal(calls.length, 1);
    const call = calls[0]!;
    assert.equal(call.method, 'POST');
    assert.equal(call.url, `/repos/acme/shop/statuses/${SHA}`);
    assert.equal(call.headers['authorization'], `Bearer ${TOKEN}`);
    assert.equal(call.headers['accept'], 'application/vnd.github+json');
    assert.equal(call.headers['x-github-api-version'], '2022-11-28');
    assert.equal(call.headers['user-agent'], 'pilot');
    assert.equal(call.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(call.body), {
      state: 'success',
      target_url: 'https://pilot.example/api/v1/runs/42',
      description: 'revision 7 is live',
      context: 'pilot',
    });
    assertNoToken(call.body);
  });

  it('keeps the path of a GitHub Enterprise API base and a custom context', async () => {
    const r = await post({ apiBaseUrl: `${base}/api/v3/`, context: 'pilot/staging', commit: SHA.toUpperCase() });
    assert.equal(r.ok, true);
    assert.equal(calls[0]!.url, `/api/v3/repos/acme/shop/statuses/${SHA}`);
    assert.equal(JSON.parse(calls[0]!.body).context, 'pilot/staging');
  });

  it('cuts a long, multi-line description with terminal escapes to 140 characters of one line', async () => {
    const description = `build failed: step \`npm ci\` exited with code 1:\n  \x1b[31mnpm ERR!\x1b[0m ${'x'.repeat(300)} 😀😀`;
    await post({ state: 'failure', description, targetUrl: 'javascript:alert(1)' });
    const sent = JSON.parse(calls[0]!.body) as Record<string, string>;
    assert.ok(sent['description']!.length <= 140, `${sent['description']!.length} characters`);
    assert.match(sent['description']!, /^build failed: step `npm ci` exited with code 1: npm ERR! x+…$/);
    assert.equal(sent['target_url'], undefined); // not an http(s) link: left out, the status still goes
  });

  for (const status of [500, 422]) {
    it(`answers ok:false with the status and GitHub's message on a ${status}, without the token`, async () => {
      answer = {
        status,
        body: JSON.stringify({ message: `Validation Failed for ${TOKEN}`, documentation_url: 'https://docs.github.com' }),
      };
      const r = await post();
      assert.equal(r.ok, false);
      assert.equal(r.status, status);
      assert.match(r.error ?? '', new RegExp(`^GitHub answered ${status} .*: Validation Failed for \\*\\*\\*$`));
      assertNoToken(r);
    });
  }

  it('reports a redirect without following it, so the token goes nowhere else', async () => {
    answer = { status: 307, body: '', headers: { location: `${base}/elsewhere` } };
    const r = await post();
    assert.equal(r.ok, false);
    assert.equal(r.status, 307);
    assert.match(r.error ?? '', /redirected to .*\/elsewhere, not followed/);
    assert.equal(calls.length, 1);
  });

  it('answers ok:false at once when nothing listens, and after the timeout when nothing answers', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const started = performance.now();
    const down = await post({ apiBaseUrl: `http://127.0.0.1:${port}`, timeoutMs: 30_000 });
    assert.equal(down.ok, false);
    assert.equal(down.status, undefined);
    assert.match(down.error ?? '', /cannot reach 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    assert.ok(performance.now() - started < 15_000, 'did not wait for the timeout'); // lenient: proves no 30 s wait

    answer = { status: 201, body: '', hang: true };
    const slow = await post({ timeoutMs: 200 });
    assert.deepEqual(slow, { ok: false, error: `no answer from 127.0.0.1:${new URL(base).port} within 200 ms` });
  });

  it('refuses an invalid repository name, commit, state, API base URL or token without calling anyone', async () => {
    const bad: Partial<CommitStatusOptions>[] = [
      ...['acme', 'acme/shop/x', 'ac me/shop', '../x', 'acme/..', 'acme/.', 'acme/shop?x=1', 'acme/sh%6Fp', '/shop', ''].map(
        (fullName) => ({ fullName }),
      ),
      ...['main', SHA.slice(1), `${SHA}0`, `--${SHA.slice(2)}`, `${SHA.slice(1)}\n`].map((commit) => ({ commit })),
      { state: 'done' as CommitStatusOptions['state'] },
      ...[
        'http://example.com',
        'ftp://127.0.0.1/',
        `http://user:pw@127.0.0.1:1`,
        'not a url',
        `${base}/?q=1`,
        'http://127.0.0.1.evil.example/',
      ].map((apiBaseUrl) => ({ apiBaseUrl })),
      { token: `${TOKEN}\r\nx-injected: 1` },
      { token: '' },
    ];
    for (const over of bad) {
      const r = await post(over);
      assert.equal(r.ok, false, JSON.stringify(over));
      assert.match(r.error ?? '', /refused/, JSON.stringify(over));
      assertNoToken(r);
    }
    assert.equal(calls.length, 0);
  });
});

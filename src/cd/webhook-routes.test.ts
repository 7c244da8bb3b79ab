import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { examplePing, examplePush, githubHeaders, nextSha } from './github-examples.fixture.js';
import { signGithubPayload } from './github-signature.js';
import { deliver, errorOf, startWebhookServer, type WebhookServer } from './webhook-server.fixture.js';

const SECRET = 'webhook-secret-for-tests';

describe('webhook routes: authentication, content and limits', () => {
  let srv: WebhookServer;
  let small: WebhookServer; // lowered body cap and body timeout
  const runCount = async (s: WebhookServer): Promise<number> => (await s.store.listRuns({ limit: 1000 })).length;

  /** After every refusal the server must still answer, and still take a good delivery. */
  async function stillServing(s: WebhookServer = srv): Promise<void> {
    const health = await request(`${s.url}/healthz`);
    assert.equal(health.statusCode, 200);
    await health.body.dump();
    const body = JSON.stringify(examplePing());
    const ping = await deliver(s.url, 'shop', body, githubHeaders(SECRET, body, 'ping'));
    assert.equal(ping.status, 200);
  }

  before(async () => {
    srv = await startWebhookServer();
    small = await startWebhookServer({ maxBodyBytes: 64 * 1024, bodyTimeoutMs: 300 });
    for (const s of [srv, small]) await s.createApp('shop', SECRET);
  });
  after(async () => {
    await srv.close();
    await small.close();
  });

  it("answers GitHub's example ping with 200 and its zen", async () => {
    const body = JSON.stringify(examplePing());
    const a = await deliver(srv.url, 'shop', body, githubHeaders(SECRET, body, 'ping'));
    assert.equal(a.status, 200);
    assert.deepEqual(a.json, { ok: true, zen: 'Anything added dilutes everything else.' });
  });

  it('refuses a missing, wrong, re-serialised or other-algorithm signature with 401 and no hint of the MAC', async () => {
    const payload = examplePush({ after: nextSha(), ref: 'refs/heads/main' });
    const pretty = JSON.stringify(payload, null, 2);
    const good = githubHeaders(SECRET, pretty, 'push');
    const { 'x-hub-signature-256': expected, ...unsigned } = good;
    const cases: Record<string, Record<string, string>> = {
      missing: unsigned,
      wrong: { ...good, 'x-hub-signature-256': signGithubPayload('not-the-secret', pretty) },
      reserialised: { ...good, 'x-hub-signature-256': signGithubPayload(SECRET, JSON.stringify(JSON.parse(pretty))) },
      sha1: { ...good, 'x-hub-signature-256': `sha1=${expected!.slice(7, 47)}` },
      sha1Header: { ...unsigned, 'x-hub-signature': `sha1=${expected!.slice(7, 47)}` },
      uppercase: { ...good, 'x-hub-signature-256': expected!.toUpperCase() },
    };
    for (const [name, headers] of Object.entries(cases)) {
      const a = await deliver(srv.url, 'shop', pretty, headers);
      assert.equal(a.status, 401, name);
      assert.equal(errorOf(a).code, 'unauthorized', name);
      assert.doesNotMatch(JSON.stringify(a.json), new RegExp(expected!.slice(7, 23)), name);
      assert.match(errorOf(a).hint ?? '', /secret/);
    }
    assert.equal(await runCount(srv), 0);
    // The same bytes with the right signature are accepted: the refusals above were the signature's.
    assert.equal((await deliver(srv.url, 'shop', pretty, good)).status, 202);
    await stillServing();
  });

  it('checks the signature before parsing: invalid JSON badly signed is 401, well signed is 400', async () => {
    const junk = '{"ref": "refs/heads/main", oops';
    const bad = await deliver(srv.url, 'shop', junk, {
      ...githubHeaders(SECRET, junk, 'push'),
      'x-hub-signature-256': signGithubPayload('x', junk),
    });
    assert.equal(bad.status, 401);
    const signed = await deliver(srv.url, 'shop', junk, githubHeaders(SECRET, junk, 'push'));
    assert.equal(signed.status, 400);
    assert.equal(errorOf(signed).code, 'bad_request');
    assert.match(errorOf(signed).message ?? '', /not valid JSON/);
    await stillServing();
  });

  it('answers 404 for an unknown app or one without a webhook, and 400 for an invalid name', async () => {
    const body = JSON.stringify(examplePing());
    const unknown = await deliver(srv.url, 'nope', body, githubHeaders(SECRET, body, 'ping'));
    assert.equal(unknown.status, 404);
    assert.equal(errorOf(unknown).code, 'app_not_found');
    assert.match(errorOf(unknown).hint ?? '', /pilot apps create nope --repo URL/);
    const { resolveAppConfig } = await import('../core/app-config.js');
    await srv.store.upsertApp('cli-only', resolveAppConfig({}, 'cli-only'), Date.now());
    assert.equal((await deliver(srv.url, 'cli-only', body, githubHeaders(SECRET, body, 'ping'))).status, 404);
    const invalid = await deliver(srv.url, 'Bad_Name', body, githubHeaders(SECRET, body, 'ping'));
    assert.equal(invalid.status, 400);
    assert.equal(errorOf(invalid).code, 'invalid_name');
    await stillServing();
  });

  it('answers 415 with a hint for a form-encoded delivery, and 202 for events it does not handle', async () => {
    const form = `payload=${encodeURIComponent(JSON.stringify(examplePing()))}`;
    const a = await deliver(srv.url, 'shop', form, {
      ...githubHeaders(SECRET, form, 'ping'),
      'content-type': 'application/x-www-form-urlencoded',
    });
    assert.equal(a.status, 415);
    assert.equal(errorOf(a).code, 'unsupported_media_type');
    assert.match(errorOf(a).hint ?? '', /set the webhook's content type to application\/json/i);
    const issue = JSON.stringify({ action: 'opened', issue: { number: 1 } });
    const b = await deliver(srv.url, 'shop', issue, githubHeaders(SECRET, issue, 'issues'));
    assert.equal(b.status, 202);
    assert.deepEqual(b.json, { ignored: 'event "issues"' });
    const { 'x-github-event': _e, ...noEvent } = githubHeaders(SECRET, issue, 'issues');
    assert.equal((await deliver(srv.url, 'shop', issue, noEvent)).status, 400);
    await stillServing();
  });

  it('accepts a signed push larger than the 1 MiB API limit (up to 25 MB)', async () => {
    const body = JSON.stringify(examplePush({ after: nextSha(), ref: 'refs/heads/main', padding: 'x'.repeat(3 * 1024 * 1024) }));
    const a = await deliver(srv.url, 'shop', body, githubHeaders(SECRET, body, 'push'));
    assert.equal(a.status, 202);
  });

  it('answers 413 to a body declared over 25 MB at once, without waiting for it', { timeout: 15_000 }, async () => {
    const declared = 26 * 1024 * 1024;
    const started = Date.now();
    const { status, sent } = await postStream(srv.url, declared, 64 * 1024, { 'content-length': String(declared) });
    assert.equal(status, 413);
    assert.ok(sent < declared, `sent ${sent} bytes`);
    assert.ok(Date.now() - started < 5_000);
    await stillServing();
  });

  it('stops reading a chunked body at the cap: 413 and the connection closed', { timeout: 15_000 }, async () => {
    const { status, sent, closed } = await postStream(small.url, 100 * 1024 * 1024, 16 * 1024, { 'transfer-encoding': 'chunked' });
    assert.equal(status, 413);
    assert.ok(closed, 'connection closed');
    assert.ok(sent < 50 * 1024 * 1024, `sent ${sent} bytes before the answer`);
    assert.equal(await runCount(small), 0);
    await stillServing(small);
  });

  it('refuses an unknown app or a wrong content type before reading the body, and closes the connection', { timeout: 15_000 }, async () => {
    const chunked = { 'transfer-encoding': 'chunked' };
    const cases: [string, Record<string, string>, number][] = [
      ['nope', chunked, 404],
      ['shop', { ...chunked, 'content-type': 'text/plain' }, 415],
    ];
    for (const [app, headers, want] of cases) {
      const { status, sent, closed } = await postStream(srv.url, 100 * 1024 * 1024, 16 * 1024, headers, app);
      assert.equal(status, want);
      assert.ok(closed, 'connection closed');
      assert.ok(sent < 50 * 1024 * 1024, `sent ${sent} bytes before the answer`);
    }
    await stillServing();
  });

  it('cuts off clients trickling their body after the body timeout', { timeout: 15_000 }, async () => {
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 20 }, () => trickle(small.url, 'shop')));
    const elapsed = Date.now() - started;
    for (const r of results) {
      assert.equal(r.answer, '', 'no answer, just a closed connection');
      assert.ok(r.closedAfterMs >= 250 && r.closedAfterMs < 3_000, `closed after ${r.closedAfterMs} ms`);
    }
    assert.ok(elapsed < 5_000);
    await stillServing(small);
  });
});

/** POST up to `total` bytes of "x" in `chunk`-sized writes; stop at the first answer or close. */
function postStream(
  url: string,
  total: number,
  chunk: number,
  headers: Record<string, string>,
  app = 'shop',
): Promise<{ status: number; sent: number; closed: boolean }> {
  const body = JSON.stringify(examplePing());
  const sig = githubHeaders(SECRET, body, 'push');
  return new Promise((resolve, reject) => {
    let sent = 0;
    let status = 0;
    let closed = false;
    // A keep-alive client: the server, not the client, must decide to close.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const req = http.request(`${url}/hooks/github/${app}`, { method: 'POST', headers: { ...sig, ...headers }, agent });
    const piece = Buffer.alloc(chunk, 'x');
    const pump = (): void => {
      while (status === 0 && !req.destroyed && sent < total) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      if (sent >= total) req.end();
    };
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      res.resume();
      res.on('close', () => {
        closed = res.headers.connection === 'close';
        req.destroy();
        agent.destroy();
        resolve({ status, sent, closed });
      });
    });
    req.on('error', (err) => (status === 0 ? reject(err) : undefined));
    pump();
  });
}

/** Send a request head and then one body byte every 50 ms; report when the server closed the socket. */
function trickle(url: string, app: string): Promise<{ answer: string; closedAfterMs: number }> {
  const { port } = new URL(url);
  const started = Date.now();
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      const headers = githubHeaders(SECRET, 'x', 'push');
      const head = Object.entries({ ...headers, host: `127.0.0.1:${port}`, 'content-length': '10000' })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(`POST /hooks/github/${app} HTTP/1.1\r\n${head}\r\n`);
    });
    const timer = setInterval(() => socket.writable && socket.write('{'), 50);
    socket.on('data', (d) => (answer += d.toString()));
    socket.on('error', () => undefined); // the reset is the expected outcome
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ answer, closedAfterMs: Date.now() - started });
    });
  });
}

/**
 * Notifications end to end: a real `pilot up`, endpoints added with `pilot notify add`, real HTTP
 * receivers on loopback (a signed JSON webhook, a Slack-shaped one, one that answers 500 then 200,
 * one that never answers), deploys through `pilot run`: started and live arrive, a failed deploy
 * sends its reason, retries are recorded (`pilot notify log`), a receiver that hangs never slows a
 * deploy, and a control plane killed with a delivery pending sends it after its restart.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, git, makeRepo, ROOT, waitFor } from './harness.js';

interface Got {
  /** What the receiver answered (undefined: nothing). */
  readonly status: number | undefined;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly json: { event: string; app: string; commit?: string | null; reason?: string | null; text?: string; blocks?: unknown[] };
}

const h = new Harness();
const servers: Server[] = [];
let repo = '';

/** A receiver on loopback; `status(i)` is the answer to request i (undefined: never answer). */
async function receiver(status: (i: number) => number | undefined = () => 200) {
  const got: Got[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const s = status(got.length);
      got.push({ status: s, headers: req.headers, body, json: JSON.parse(body) as Got['json'] });
      if (s !== undefined) res.writeHead(s).end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  // The path holds the secret, as a Slack webhook's does: it must never be shown or stored in clear.
  return { got, url: `http://127.0.0.1:${port}/services/T0/B0/SECRETPATH${port}`, port };
}

const events = (g: readonly Got[]): string[] => g.map((x) => x.json.event);
const file = (name: string, text: string): string => {
  const f = join(h.home, '..', `${name}-${process.pid}`);
  writeFileSync(f, text, { mode: 0o600 });
  return h.track(f);
};

describe('notifications during deploys', { timeout: 600_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp({ PILOT_NOTIFY_TIMEOUT_MS: '1500', PILOT_NOTIFY_ATTEMPTS: '3', PILOT_NOTIFY_BACKOFF_MS: '300' });
  });
  after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    await h.cleanup();
  });

  it('refuses non-http(s) schemes and unknown events with a clear error', async () => {
    for (const bad of ['file:///etc/passwd', 'gopher://127.0.0.1:70/x', 'javascript:alert(1)']) {
      const r = await h.cli(['notify', 'add', 'hello', '--url-file', file('bad', bad)]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /error: notification endpoint URL refused: the scheme "\w+" is refused: only http and https/);
      assert.match(r.stderr, /hint: /);
    }
    const r = await h.cli(['notify', 'add', 'hello', '--url-file', file('ok', 'http://127.0.0.1:9/x'), '--events', 'live,exploded']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown notification event "exploded"/);
    const none = await h.cli(['notify', 'add', 'hello']);
    assert.match(none.stderr, /needs the endpoint URL/);
    assert.equal((await h.apiCall('GET', '/api/v1/apps/hello/notify')).json.endpoints.length, 0, 'nothing was added');
  });

  it('a deploy through pilot run sends started and live to JSON (signed) and Slack receivers; retries a 500; a hanging receiver never slows it', async () => {
    const json = await receiver();
    const slack = await receiver();
    const flaky = await receiver((i) => (i === 0 ? 500 : 200));
    const hanging = await receiver(() => undefined);
    const added = await h.cli(['notify', 'add', 'hello', '--url-file', file('json', json.url + '\n'), '--kind', 'json']);
    assert.equal(added.code, 0, added.stderr);
    const key = /signing key[^\n]*\n\s+([0-9a-f]{64})/.exec(added.stdout)?.[1];
    assert.ok(key, added.stdout);
    assert.doesNotMatch(added.stdout, /SECRETPATH/);
    const s = await h.cli(['notify', 'add', 'hello', '--kind', 'slack'], { env: { PILOT_NOTIFY_URL: slack.url } });
    assert.equal(s.code, 0, s.stderr);
    const f = await h.cli(['notify', 'add', 'hello', '--url', flaky.url, '--events', 'started']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stderr, /warning: --url on the command line is visible/);
    const hang = await h.cli(['notify', 'add', 'hello', '--url-file', file('hang', hanging.url), '--events', 'all', '--json']);
    assert.equal(JSON.parse(hang.stdout).endpoint.events.length, 7);

    const ls = await h.cli(['notify', 'ls', 'hello', '--json']);
    const endpoints = JSON.parse(ls.stdout).endpoints as { id: number; kind: string; url: string; signed: boolean }[];
    assert.deepEqual(
      endpoints.map((e) => [e.kind, e.url, e.signed]),
      [
        ['json', `http://127.0.0.1:${json.port}/…`, true],
        ['slack', `http://127.0.0.1:${slack.port}/…`, false],
        ['json', `http://127.0.0.1:${flaky.port}/…`, true],
        ['json', `http://127.0.0.1:${hanging.port}/…`, true],
      ],
    );
    assert.doesNotMatch((await h.cli(['notify', 'ls', 'hello'])).stdout, /SECRETPATH/);

    const started = Date.now();
    const run = await h.cli(['run', repo]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const deployMs = Date.now() - started;
    const commit = await git(repo, 'rev-parse', 'HEAD');

    await waitFor('started and live at the JSON receiver', () => json.got.length >= 2 || undefined, 60_000);
    assert.deepEqual(events(json.got), ['deploy.started', 'deploy.live']);
    assert.equal(json.got[1]!.json.commit, commit);
    for (const g of json.got) {
      assert.equal(g.headers['x-pilot-signature-256'], `sha256=${createHmac('sha256', key).update(g.body).digest('hex')}`);
    }
    await waitFor('started and live at the Slack receiver', () => slack.got.length >= 2 || undefined, 60_000);
    for (const g of slack.got) {
      assert.equal(typeof g.json.text, 'string');
      assert.ok(Array.isArray(g.json.blocks) && g.json.blocks.length > 0);
    }
    assert.match(slack.got[1]!.json.text!, /hello: revision 1 is live/);
    await waitFor('the 500 retried', () => flaky.got.length >= 2 || undefined, 60_000);
    assert.deepEqual(events(flaky.got), ['deploy.started', 'deploy.started']);

    const log = await waitFor(
      'the hanging endpoint recorded failed',
      async () => {
        const l = JSON.parse((await h.cli(['notify', 'log', 'hello', '--json'])).stdout).deliveries as {
          endpoint: number;
          event: string;
          status: string;
          log: { code: number | null; error: string | null }[];
        }[];
        const hung = l.filter((d) => d.endpoint === endpoints[3]!.id);
        return hung.length >= 2 && hung.every((d) => d.status === 'failed') ? l : undefined;
      },
      90_000,
    );
    const flakyLog = log.find((d) => d.endpoint === endpoints[2]!.id)!;
    assert.equal(flakyLog.status, 'delivered');
    assert.deepEqual(
      flakyLog.log.map((a) => a.code),
      [500, 200],
    );
    for (const d of log.filter((x) => x.endpoint === endpoints[3]!.id)) {
      assert.deepEqual(
        d.log.map((a) => a.error),
        ['timed out after 1500 ms', 'timed out after 1500 ms', 'timed out after 1500 ms'],
      );
    }
    assert.equal(hanging.got.length >= 6, true, 'each attempt reached the receiver');
    // The deploy took no longer for a receiver that hangs: it never waited for one.
    assert.ok(deployMs < 120_000, `deploy took ${deployMs} ms`);
    const metrics = await fetch(`${h.api}/metrics`, { headers: { authorization: `Bearer ${h.token}` } }).then((res) => res.text());
    assert.match(metrics, /pilot_notify_attempts_total\{result="delivered"\} [1-9]/);
    assert.match(metrics, /pilot_notify_attempts_total\{result="failed"\} [1-9]/);
    assert.match(metrics, /pilot_notify_attempts_total\{result="retry"\} [1-9]/);
    const human = (await h.cli(['notify', 'log', 'hello'])).stdout;
    assert.match(human, /failed\s+3\s/);
    assert.match(human, /timed out after 1500 ms/);

    // Sealed at rest: the URL's secret path appears in no file under $PILOT_HOME (database, WAL, logs).
    const stack = [h.home];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) stack.push(p);
        else if (e.isFile() && !e.name.endsWith('.sock'))
          assert.ok(!readFileSync(p).includes(`SECRETPATH${json.port}`), `${p} holds the URL in clear`);
      }
    }
    // Only the failed-deploy endpoint stays for the next cases.
    for (const e of endpoints.slice(1)) assert.equal((await h.cli(['notify', 'rm', 'hello', String(e.id)])).code, 0);
    const gone = await h.cli(['notify', 'rm', 'hello', String(endpoints[1]!.id)]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /has no notification endpoint #/);
    json.got.length = 0;
  });

  it('a failed deploy sends deploy.failed with the reason; pilot notify test answers with the attempt', async () => {
    const json = await receiver();
    const added = JSON.parse((await h.cli(['notify', 'add', 'hello', '--url-file', file('json2', json.url), '--json'])).stdout);
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8') + 'deploy:\n  ready_timeout: 4s\n');
    writeFileSync(join(repo, 'server.js'), 'console.error("boot failure: missing DATABASE_URL"); process.exit(1);\n');
    await git(repo, 'commit', '-qam', 'crashing app');
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    const failed = await waitFor('deploy.failed', () => json.got.find((g) => g.json.event === 'deploy.failed'), 60_000);
    assert.match(failed.json.reason ?? '', /boot failure: missing DATABASE_URL/);
    assert.match(JSON.stringify(failed.json), /keeps serving/);
    assert.deepEqual(events(json.got), ['deploy.started', 'deploy.failed']);
    await git(repo, 'revert', '--no-edit', 'HEAD');
    const t = await h.cli(['notify', 'test', 'hello', String(added.endpoint.id)]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /test notification delivered to endpoint #\d+: #1 \S+ 200 ok/);
    assert.equal(json.got[json.got.length - 1]!.json.event, 'test');
  });

  it('a delivery pending when the control plane is killed is sent after its restart, and accepted once', async () => {
    // A long back-off, so the kill below surely finds the delivery pending.
    const env = { PILOT_NOTIFY_TIMEOUT_MS: '1500', PILOT_NOTIFY_ATTEMPTS: '5', PILOT_NOTIFY_BACKOFF_MS: '4000' };
    await h.killUp('SIGTERM');
    await h.startUp(env);
    const again = await h.cli(['run', repo]); // revision 3 (the revert), so there is an earlier one to roll back to
    assert.equal(again.code, 0, again.stdout + again.stderr);
    let up = false;
    const r = await receiver(() => (up ? 200 : 503));
    await h.cli(['notify', 'add', 'hello', '--url-file', file('restart', r.url), '--events', 'started,rolled_back']);
    const rb = await h.cli(['rollback', 'hello', '--to', '1']);
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    await waitFor('a first refused attempt', () => r.got.length >= 1 || undefined, 60_000);
    await h.killUp('SIGKILL');
    up = true;
    await h.startUp(env);
    const accepted = (event: string) => r.got.filter((g) => g.status === 200 && g.json.event === event).length;
    await waitFor(
      'started and rolled back accepted',
      () => (accepted('deploy.started') >= 1 && accepted('deploy.rolled_back') >= 1) || undefined,
      90_000,
    );
    await new Promise((res) => setTimeout(res, 2000));
    assert.equal(accepted('deploy.started'), 1, 'accepted once');
    assert.equal(accepted('deploy.rolled_back'), 1, 'accepted once');
    assert.equal(r.got[0]!.status, 503);
    const log = JSON.parse((await h.cli(['notify', 'log', 'hello', '--json'])).stdout).deliveries as {
      endpoint: number;
      event: string;
      status: string;
      log: { code: number | null }[];
    }[];
    const started = log.find((d) => d.event === 'deploy.started' && d.log[0]?.code === 503)!;
    assert.equal(started.status, 'delivered');
    assert.equal(started.log[started.log.length - 1]!.code, 200);
  });
});

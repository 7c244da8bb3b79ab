/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core) against a real
 * `pilot up`: sign in (a wrong token first), watch a canary deploy of examples/hello happen live
 * (rollout steps and weights, the traffic chart moving), roll back through the confirmation
 * dialog and check the result through the API; the event stream cut and resumed without a lost or
 * repeated event; CSP and CSRF seen from the browser; sign-out and a lost session back to sign-in.
 * Screenshots of every page go to test-artifacts/dashboard/ (git-ignored).
 *
 * The browser reaches the API through a TCP relay the test owns, so it can cut every connection
 * (and refuse new ones for a while) without touching the server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { git, Harness, makeRepo, ROOT, sleep, waitFor, type CliResult } from '../integration/harness.js';

const CHROMIUM = process.env.PILOT_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-artifacts', 'dashboard');
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)`;

/** A TCP relay to the API: `cut()` drops every connection; `refuse` drops new ones as they come. */
class Relay {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  refuse = false;
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => {
      if (this.refuse) return client.destroy();
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }
  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return `http://127.0.0.1:${this.port}`;
  }
  cut(): number {
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    return n;
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

const h = new Harness();
const CANARY_YAML = `name: hello
replicas: 1
health:
  path: /healthz
  interval: 200ms
deploy:
  drain: 300ms
strategy:
  type: canary
  steps: [{weight: 50, pause: 20s}, {weight: 100}]
env:
  GREETING: hello from Pilot
`;

describe('dashboard in Chromium', { skip, timeout: 180_000 }, () => {
  let relay: Relay;
  let url = '';
  let browser: Browser;
  let page: Page;
  let repo = '';
  let evil: HttpServer | undefined;
  let trafficOn = true;
  let traffic: Promise<void> = Promise.resolve();
  const consoleErrors: string[] = [];

  const shot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const api = (method: string, path: string, body?: unknown) => h.apiCall(method, path, body);

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    await h.startUp();
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(repo, 'pilot.yaml'), CANARY_YAML);
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'canary <b>strategy</b> & "quotes"');
    const first = await h.cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const api_ = new URL(h.api);
    relay = new Relay({ host: api_.hostname, port: Number(api_.port) });
    url = await relay.listen();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
    });
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    // Requests through the router all along: the traffic chart has something to show.
    traffic = (async () => {
      while (trafficOn) {
        await h.viaRouter('hello.localhost').catch(() => undefined);
        await sleep(40);
      }
    })();
  });
  after(async () => {
    trafficOn = false;
    await traffic;
    await browser?.close().catch(() => undefined);
    await relay?.close();
    await new Promise((r) => (evil ? evil.close(r) : r(undefined)));
    await h.cleanup();
  });

  it('serves the page with a strict CSP and refuses a wrong token with its message and hint', async () => {
    const res = await page.goto(url + '/');
    assert.ok(res);
    const csp = (await res.allHeaders())['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe/);
    await page.getByLabel('Admin token').fill('pilot_admin_this-is-not-it');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.innerText(), /invalid token/);
    assert.match(await alert.innerText(), /admin-token/, 'the hint says where the token is');
    await shot('01-sign-in-refused');
    await page.getByLabel('Admin token').fill(h.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('[data-app="hello"]').waitFor();
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'pilot_session');
    assert.ok(session, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.ok(!cookies.some((c) => c.value.includes(h.token)), 'the token itself is not a cookie');
    assert.ok(!page.url().includes(h.token), 'nor in the URL');
    const stored = await page.evaluate(() => {
      const g = globalThis as unknown as { localStorage: object; sessionStorage: object };
      return JSON.stringify({ ...g.localStorage }) + JSON.stringify({ ...g.sessionStorage });
    });
    assert.ok(!stored.includes(h.token), 'nor in web storage');
    await page.locator('[data-testid="feed"][data-status="live"]').waitFor();
    await waitFor('req/s on the apps page', async () =>
      (await page.locator('[data-app="hello"] td.num').first().innerText()) !== '—' ? true : undefined,
    );
    await shot('02-apps');
  });

  it('shows a canary deploy live: rollout steps and weights, the traffic chart moving, the new revision active', async () => {
    await page.getByRole('link', { name: 'hello', exact: true }).first().click();
    await page.locator('[data-testid="revisions"] [data-revision="1"]').waitFor();
    const chart = page.locator('[data-testid="traffic-chart"]');
    await chart.waitFor();
    const pointsBefore = Number(await chart.getAttribute('data-points'));

    writeFileSync(join(repo, 'server.js'), (await import('node:fs')).readFileSync(join(repo, 'server.js'), 'utf8') + '\n// revision 2\n');
    await git(repo, 'commit', '-qam', 'second revision');
    const run: Promise<CliResult> = h.cli(['run', repo]);
    // A second tab follows the run as it happens: it appears in the list, its log grows while it runs.
    const runTab = await page.context().newPage();
    await runTab.goto(url + '/runs');
    await runTab.locator('[data-run="2"]').waitFor({ timeout: 60_000 });
    await runTab.getByRole('link', { name: '#2', exact: true }).click();
    const runLog = runTab.locator('[data-testid="run-log"]');
    await waitFor('run 2 log, live', async () => ((await runLog.innerText()).includes('==> build') ? true : undefined), 60_000);

    // The rollout appears on its own (the event stream), at its first step: 50 %.
    const rollout = page.locator('[data-testid="rollout"] .rollout[data-status="running"]');
    await rollout.waitFor({ timeout: 90_000 });
    await page.locator('[data-testid="rollout"] .rollout[data-weight="50"]').waitFor({ timeout: 60_000 });
    assert.match(await rollout.innerText(), /Rollout #2 to revision 2/);
    assert.match(await rollout.innerText(), /step 1\/2/);
    assert.match(await rollout.innerText(), /stable 50%/);
    await page.locator('[data-testid="rollout-chart"]').waitFor();
    // The canary analysis' verdict, as text and as a point on the rollout's chart.
    await page.locator('[data-testid="rollout"] .verdict').waitFor({ timeout: 15_000 });
    assert.match(await page.locator('[data-testid="rollout"] .verdict').innerText(), /Analysis: (wait|pass)/);
    await page.locator('[data-testid="traffic"] [data-revision="2"]').waitFor({ timeout: 30_000 });
    await shot('03-app-rollout-running');
    const promote = page.getByRole('button', { name: 'Promote' });
    assert.equal(await promote.isDisabled(), false, 'a canary can be promoted while it runs');
    // Promote (confirmed): the canary skips the rest of its pause.
    await promote.click();
    await page.getByRole('dialog', { name: 'Promote' }).getByRole('button', { name: 'Yes, promote' }).click();
    await page.getByText(/promote recorded/).waitFor();

    const r = await run;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await runTab.locator('[data-testid="run-status"]', { hasText: 'succeeded' }).waitFor({ timeout: 30_000 });
    await waitFor('the end of run 2 in its followed log', async () =>
      (await runLog.innerText()).includes('of hello is live') ? true : undefined,
    );
    assert.match(await runTab.locator('[data-testid="steps"] [data-step="deploy"]').innerText(), /succeeded/);
    await runTab.screenshot({ path: join(SHOTS, '03b-run-followed.png'), fullPage: true });
    await runTab.close();
    await page.locator('[data-testid="revisions"] [data-revision="2"].active').waitFor({ timeout: 30_000 });
    await page.locator('[data-testid="rollout"] [data-status="succeeded"]').waitFor();
    await waitFor('the traffic chart to move', async () =>
      Number(await chart.getAttribute('data-points')) > pointsBefore + 3 ? true : undefined,
    );
    assert.equal(await promote.isDisabled(), true);
    assert.match(await page.locator('.action', { has: promote }).innerText(), /no rollout in progress/);
    await waitFor('logs of revision 2', async () =>
      (await page.locator('[data-testid="logs"]').innerText()).includes('revision 2') ? true : undefined,
    );
    await shot('04-app-revision-2-live');
  });

  it('rolls back through the confirmation dialog; the API shows revision 1 serving again', async () => {
    const rollback = page.getByRole('button', { name: 'Rollback' });
    await waitFor('rollback enabled', async () => ((await rollback.isDisabled()) ? undefined : true));
    // By keyboard: Enter opens the confirmation, Escape cancels it (nothing happens), Enter again confirms.
    await rollback.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Rollback' });
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /Roll hello back from revision 2 to revision 1\?/);
    await shot('05-rollback-confirm');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    await sleep(300);
    assert.equal((await api('GET', '/api/v1/apps/hello')).json.rollouts[0].toRevision, 2, 'cancelled: no rollback');
    await rollback.focus();
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    await page.keyboard.press('Enter'); // the confirm button has the focus
    await page.getByText(/rollout #3 to revision 1 started/).waitFor();
    const done = await waitFor(
      'rollback to revision 1 through the API',
      async () => {
        const a = (await api('GET', '/api/v1/apps/hello')).json;
        return a.app.activeRevision === 1 && a.rollouts[0].status === 'succeeded' ? a : undefined;
      },
      90_000,
    );
    assert.equal(done.rollouts[0].toRevision, 1);
    await page.locator('[data-testid="revisions"] [data-revision="1"].active').waitFor({ timeout: 30_000 });
    await shot('06-app-rolled-back');
  });

  it('shows runs with their steps and durations, and the nodes', async () => {
    await page.getByRole('link', { name: 'Runs' }).click();
    await page.locator('[data-run="2"]').waitFor();
    await shot('07-runs');
    await page.getByRole('link', { name: '#2', exact: true }).click();
    const steps = page.locator('[data-testid="steps"] li');
    await steps.first().waitFor();
    assert.deepEqual(await steps.evaluateAll((els) => els.map((e) => e.getAttribute('data-step'))), [
      'source',
      'build',
      'package',
      'publish',
      'deploy',
    ]);
    assert.match(await page.locator('[data-testid="steps"]').innerText(), /\d+(\.\d)?(ms|s)/);
    await waitFor('the run log', async () =>
      (await page.locator('[data-testid="run-log"]').innerText()).includes('==> deploy') ? true : undefined,
    );
    assert.match(await page.locator('[data-testid="run-log"]').innerText(), /second revision/);
    // Run 1's commit message (quoted in its log) stays text: no element is made of it.
    await page.goto(url + '/runs/1');
    const log1 = page.locator('[data-testid="run-log"]');
    await waitFor('run 1 log', async () => ((await log1.innerText()).includes('canary <b>strategy</b> &') ? true : undefined));
    assert.equal(await log1.locator('b').count(), 0);
    await shot('08-run');
    await page.getByRole('link', { name: 'Nodes' }).click();
    await page.locator('[data-node="local"]').waitFor();
    const node = page.locator('[data-node="local"]');
    assert.match(await node.innerText(), /ready/);
    // Drain without force on the only node: the API refuses, the page shows its message and hint.
    await node.getByRole('button', { name: 'Drain' }).click();
    await page.getByRole('dialog', { name: 'Drain' }).getByRole('button', { name: 'Yes, drain' }).click();
    const refused = node.getByRole('alert');
    await refused.waitFor();
    assert.match(await refused.innerText(), /Drain refused/);
    assert.match(await refused.innerText(), /force/i, 'the hint says how');
    await shot('09-nodes-drain-refused');
    await node.getByRole('button', { name: 'Cordon', exact: true }).click();
    await page.getByRole('dialog', { name: 'Cordon' }).getByRole('button', { name: 'Yes, cordon' }).click();
    await waitFor('cordoned through the API', async () =>
      (await api('GET', '/api/v1/nodes')).json.nodes[0].scheduling === 'cordoned' ? true : undefined,
    );
    const uncordon = node.getByRole('button', { name: 'Uncordon', exact: true });
    await waitFor('uncordon enabled (live)', async () => ((await uncordon.isDisabled()) ? undefined : true));
    await shot('09-nodes');
    await uncordon.click();
    await page.getByRole('dialog', { name: 'Uncordon' }).getByRole('button', { name: 'Yes, uncordon' }).click();
    await waitFor('eligible again', async () =>
      (await api('GET', '/api/v1/nodes')).json.nodes[0].scheduling === 'eligible' ? true : undefined,
    );
    // Dark mode: the same page with the system's dark preference.
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.getByRole('link', { name: 'Apps' }).click();
    await page.getByRole('link', { name: 'hello', exact: true }).first().click();
    await page.locator('[data-testid="traffic-chart"]').waitFor();
    const bg = await page.evaluate(() => {
      const g = globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string }; document: { body: unknown } };
      return g.getComputedStyle(g.document.body).backgroundColor;
    });
    assert.equal(bg, 'rgb(18, 21, 27)', 'the dark palette applies');
    await shot('09b-app-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('resumes the event stream after a cut without losing or repeating an event', async () => {
    await page.getByRole('link', { name: 'Events' }).click();
    await page.locator('[data-testid="timeline"] li').first().waitFor();
    const feedState = page.locator('[data-testid="feed"]');
    await page.locator('[data-testid="feed"][data-status="live"]').waitFor();
    const reconnectsBefore = Number(await feedState.getAttribute('data-reconnects'));
    const lastBeforeCut = (await api('GET', '/api/v1/events?limit=1')).json.lastId as number;
    // Cut the stream and keep the way closed while events happen; then let it reconnect.
    relay.refuse = true;
    assert.ok(relay.cut() > 0, 'the page had connections open');
    await page.locator('[data-testid="feed"][data-status="reconnecting"]').waitFor();
    const scaled = await api('POST', '/api/v1/apps/hello/scale', { replicas: 2 });
    assert.equal(scaled.status, 200, JSON.stringify(scaled.json));
    await waitFor('the second instance ready', async () => {
      const a = (await api('GET', '/api/v1/apps/hello')).json;
      return a.instances.filter((i: { state: string }) => i.state === 'ready').length === 2 ? true : undefined;
    });
    relay.refuse = false;
    await page.locator('[data-testid="feed"][data-status="live"]').waitFor({ timeout: 30_000 });
    assert.ok(Number(await feedState.getAttribute('data-reconnects')) > reconnectsBefore);
    const shownIds = async (): Promise<number[]> =>
      (
        await page.locator('[data-testid="timeline"] li').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-event-id'))))
      ).reverse();
    const first = (await shownIds())[0]!;
    assert.ok(first <= lastBeforeCut, 'the page held events from before the cut');
    const all = (await api('GET', `/api/v1/events?after=${first - 1}&limit=1000`)).json.events as { id: number }[];
    const expected = all.map((e) => e.id);
    const during = expected.filter((id) => id > lastBeforeCut);
    assert.ok(during.length >= 3, `events happened while the stream was down: ${during.length}`);
    await waitFor('every event shown', async () => ((await shownIds()).length >= expected.length ? true : undefined));
    const shown = await shownIds();
    assert.equal(new Set(shown).size, shown.length, 'no event twice');
    assert.deepEqual(shown.slice(0, expected.length), expected, 'every event, in order, none lost');
    console.log(`event stream cut: ${during.length} events while down, ${shown.length} shown, each once`);
    await shot('10-events-after-cut');
  });

  it('refuses state changes without CSRF proof, and from another site', async () => {
    const before = (await api('GET', '/api/v1/apps/hello')).json.app.replicas;
    // Same page, the cookie goes along, but no x-pilot-csrf header.
    const status = await page.evaluate(async () => {
      const r = await fetch('/api/v1/apps/hello/scale', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ replicas: 5 }),
      });
      return { status: r.status, body: await r.text() };
    });
    assert.equal(status.status, 403, status.body);
    assert.match(status.body, /x-pilot-csrf/);
    // Another site posting a form to the API: no cookie comes along (SameSite=Strict), and its Origin is refused anyway.
    evil = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        `<form id="f" method="POST" action="${url}/api/v1/apps/hello/scale" enctype="text/plain"><input name='{"replicas":7,"x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`,
      );
    });
    await new Promise<void>((r) => evil!.listen(0, '127.0.0.2', r));
    const evilPage = await page.context().newPage();
    await evilPage.goto(`http://127.0.0.2:${(evil.address() as { port: number }).port}/`);
    await evilPage.waitForURL(/\/api\/v1\/apps\/hello\/scale/);
    const answer = await evilPage.locator('body').innerText();
    assert.match(answer, /"code":"(unauthorized|forbidden)"/, answer);
    await evilPage.close();
    assert.equal((await api('GET', '/api/v1/apps/hello')).json.app.replicas, before, 'no refused request changed anything');
    assert.deepEqual(
      consoleErrors.filter((e) => /Content Security Policy|pageerror/i.test(e)),
      [],
      'no CSP violation, no uncaught error',
    );
  });

  it('returns to sign-in when the session is gone, and signs out', async () => {
    await page.getByRole('link', { name: 'Apps' }).click();
    await page.locator('[data-app="hello"]').waitFor();
    // The session ends behind the page's back (as after a server restart): the next call returns to sign-in.
    await page.context().clearCookies();
    await page.reload();
    await page.getByLabel('Admin token').waitFor();
    await page.getByLabel('Admin token').fill(h.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('[data-app="hello"]').waitFor();
    await page.locator('[data-testid="feed"][data-status="live"]').waitFor();
    await page.context().clearCookies();
    // The next API call the page makes (this click, or the apps page's traffic sample, whichever
    // comes first) is refused and brings back the sign-in form.
    await page
      .getByRole('link', { name: 'hello', exact: true })
      .first()
      .click({ timeout: 5000 })
      .catch(() => undefined);
    await page.getByText(/session has ended/).waitFor();
    await shot('11-session-ended');
    await page.getByLabel('Admin token').fill(h.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token').waitFor();
    const gone = await page.evaluate(async () => (await fetch('/api/v1/apps')).status);
    assert.equal(gone, 401, 'signed out: the cookie opens nothing');
  });
});

/**
 * A rollout under load on each data plane (issue #14): `pilot up` (the embedded router in its router
 * process) and `pilot up --router haproxy` (Pilot-driven HAProxy), each deploying a second and a
 * third revision of an app (blue-green, the default; then a canary with a 30 % step) while a steady
 * request loop runs through the router. Every request must succeed, on both routers. Then
 * revisions with `http:` limits in their pilot.yaml: the limits reach the router (413 beyond
 * maxBody) and a later revision's replace them (with HAProxy: a reload).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request } from 'undici';
import { Harness, waitFor } from './harness.js';
import { appYaml, commitRevision, makeStrategyRepo, RequestLoop, type LoopSummary } from './strategy-app.js';

const HAPROXY = process.env.PILOT_HAPROXY_BIN ?? '/usr/sbin/haproxy';
const CANARY = `
type: canary
steps: [{weight: 30, pause: 3s}, {weight: 100}]
analysis: {minRequests: 0, allowIdle: true}
`;

const report = (what: string, s: LoopSummary): void =>
  console.log(
    `# ${what}: ${s.total} requests, ${s.failed} failed, by status ${JSON.stringify(s.byStatus)}, 2xx by revision ${JSON.stringify(s.okByRevision)}`,
  );

// HAProxy twice: with its default traffic figures (a log line per request) and with
// PILOT_HAPROXY_TRAFFIC=auto (its counters, and the log only while two revisions share the traffic).
for (const [router, traffic] of [
  ['pilot', undefined],
  ['haproxy', undefined],
  ['haproxy', 'auto'],
] as const) {
  const label = traffic === undefined ? router : `${router} (traffic: ${traffic})`;
  describe(`a rollout under load through the ${label} router`, { timeout: 600_000 }, () => {
    const h = new Harness();
    let repo = '';
    const app = traffic === undefined ? `load-${router}` : `load-${router}-${traffic}`;

    before(async () => {
      if (router === 'haproxy' && !existsSync(HAPROXY)) throw new Error(`${HAPROXY} is missing: apt-get install haproxy (.ci/run does)`);
      await h.startUp(
        traffic === undefined ? {} : { PILOT_HAPROXY_TRAFFIC: traffic },
        'up',
        { api: 0, router: 0 },
        [],
        ['--router', router],
      );
      repo = await makeStrategyRepo(h, app, 2, undefined);
      const first = await h.cli(['run', repo]);
      assert.equal(first.code, 0, first.stdout + first.stderr);
    });
    after(() => h.cleanup());

    const active = async (): Promise<number> => (await h.apiCall('GET', `/api/v1/apps/${app}`)).json.app.activeRevision as number;

    it('blue-green (the default strategy): 0 failed requests, then only the new revision', async () => {
      const from = await active();
      await commitRevision(repo, 'good');
      const loop = new RequestLoop(h.router, `${app}.localhost`);
      await new Promise((r) => setTimeout(r, 500));
      const r = await h.cli(['run', repo]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const to = await active();
      assert.ok(to > from);
      await new Promise((r) => setTimeout(r, 1_000));
      const s = await loop.stop();
      report(`${label} blue-green`, s);
      assert.equal(s.failed, 0, s.failures.join('\n'));
      assert.ok((s.okByRevision[String(from)] ?? 0) > 0 && (s.okByRevision[String(to)] ?? 0) > 0, JSON.stringify(s.okByRevision));
      const last = s.seen.filter((x) => x.start > s.seen[s.seen.length - 1]!.start - 500);
      assert.ok(
        last.every((x) => x.revision === to),
        'after the switch, every answer is the new revision',
      );
    });

    it('a canary (30 %, then 100 %): 0 failed requests, both revisions served during the step', async () => {
      const from = await active();
      await commitRevision(repo, 'good', appYaml(app, 2, CANARY));
      const loop = new RequestLoop(h.router, `${app}.localhost`);
      await new Promise((r) => setTimeout(r, 500));
      const r = await h.cli(['run', repo]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const to = await active();
      assert.ok(to > from);
      await new Promise((r) => setTimeout(r, 1_000));
      const s = await loop.stop();
      report(`${label} canary`, s);
      assert.equal(s.failed, 0, s.failures.join('\n'));
      // During the 30 % step both answered (interleaved, not one after the other).
      const firstNew = s.seen.find((x) => x.revision === to)!.start;
      const oldAfter = s.seen.filter((x) => x.revision === from && x.start > firstNew).length;
      assert.ok(oldAfter > 0, 'the previous revision kept a share during the canary step');
    });

    it("a revision's http limits reach the router it serves through (413 over maxBody; a 300 ms app within a 1 s requestTimeout)", async () => {
      await commitRevision(repo, 'slow', appYaml(app, 2, undefined, 'http: { maxBody: 2kb, requestTimeout: 1s }'));
      const r = await h.cli(['run', repo]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const post = async (bytes: number): Promise<number> => {
        const res = await request(h.router + '/', { method: 'POST', headers: { host: `${app}.localhost` }, body: 'x'.repeat(bytes) });
        await res.body.text();
        return res.statusCode;
      };
      // The router process applies the table after its next sync (HAProxy: with a reload), so
      // the new limit arrives shortly after `pilot run` returns.
      await waitFor('the 2kb limit at the router', async () => (await post(4096)) === 413 || undefined, 20_000);
      assert.equal(await post(1000), 200, 'the slow app answers within 1 s (300 ms)');
      await commitRevision(repo, 'good', appYaml(app, 2, undefined, 'http: { maxBody: 8kb, requestTimeout: 1s }'));
      const again = await h.cli(['run', repo]);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      await waitFor('the 8kb limit replacing the 2kb one', async () => (await post(4096)) === 200 || undefined, 20_000);
      assert.equal(await post(9000), 413);
    });

    it('counts every request in the traffic figures, by revision (pilot top, canary analysis, the autoscaler read them)', async () => {
      const rev = await active();
      const requests = async (): Promise<number> => {
        const t = (await h.apiCall('GET', `/api/v1/apps/${app}/traffic?window=5m`)).json as {
          revisions: { revision: number | null; requests: number }[];
        };
        return t.revisions.find((x) => x.revision === rev)?.requests ?? 0;
      };
      // HAProxy's counters (traffic: auto, one revision) are read every 2 s: the previous test's
      // last requests are counted before this one starts from its `before`.
      if (traffic !== undefined) await new Promise((r) => setTimeout(r, 3_000));
      const before = await requests();
      const codes: number[] = [];
      for (let i = 0; i < 50; i++) {
        const res = await request(h.router + '/', { headers: { host: `${app}.localhost` } });
        await res.body.text();
        codes.push(res.statusCode);
      }
      assert.ok(
        codes.every((c) => c === 200),
        JSON.stringify(codes),
      );
      await waitFor('the 50 requests in the figures', async () => ((await requests()) - before >= 50 ? true : undefined), 20_000);
      assert.equal((await requests()) - before, 50, 'exactly the requests sent');
    });

    it('rolls back a canary that answers 500s, on the figures of this router', async () => {
      const from = await active();
      const analysed = `
type: canary
steps: [{weight: 30, pause: 20s}, {weight: 100}]
analysis: {maxErrorRate: 1%, minRequests: 20, window: 30s}
`;
      await commitRevision(repo, 'fail500', appYaml(app, 2, analysed));
      const loop = new RequestLoop(h.router, `${app}.localhost`);
      const r = await h.cli(['run', repo]);
      const s = await loop.stop();
      report(`${label} canary answering 500s`, s);
      assert.notEqual(r.code, 0, r.stdout);
      assert.match(r.stdout + r.stderr, /canary analysis failed at step 1\/2 \(30% of the traffic\)/);
      assert.equal(await active(), from, 'the stable revision stays active');
      // The canary's 500s are the failures expected here. A request cut when its connection closed
      // (status 0) was seen once in CI on HAProxy while the canary's instances stopped: at most one.
      const other = s.seen.filter((x) => x.status !== 200 && x.status !== 500);
      assert.ok(other.length <= 1, JSON.stringify(other));
      assert.ok(
        s.seen.some((x) => x.status === 500),
        'the canary answered 500s before it was rolled back',
      );
    });
  });
}

/**
 * A/B experiments end to end through `pilot up` (its real agent and its router process): two
 * revisions deployed, a 50/50 cookie experiment started with the CLI, 1,000 requests from 50
 * cookie jars each staying on their variant and 200 first visits splitting within tolerance, the
 * status with per-variant figures, then `end --keep b`: b active through a rollout, a's instances
 * stopped, every user on b. Bad input through the CLI gets the catalogue's errors.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, ROOT, waitFor } from './harness.js';

const h = new Harness();
let repo = '';

/** One request through the router with an optional cookie: the revision that answered and the cookie set. */
async function visit(cookie?: string): Promise<{ status: number; revision: string; setCookie: string | undefined }> {
  const res = await request(h.router + '/', { headers: { host: 'shop.localhost', ...(cookie ? { cookie } : {}) } });
  const text = await res.body.text();
  const raw = res.headers['set-cookie'];
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  const uid = list.map((c) => c.split(';')[0]!).find((c) => c.startsWith('uid='));
  return { status: res.statusCode, revision: res.statusCode === 200 ? String(JSON.parse(text).revision) : text, setCookie: uid };
}

describe('A/B experiments through pilot up', { timeout: 600_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(repo, 'pilot.yaml'), 'name: shop\nreplicas: 2\nhealth:\n  path: /healthz\n  interval: 1s\n');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'shop v1');
    await h.startUp();
    const one = await h.cli(['run', repo]);
    assert.equal(one.code, 0, one.stdout + one.stderr);
    writeFileSync(join(repo, 'CHANGES'), 'v2\n');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'shop v2');
    const two = await h.cli(['run', repo]);
    assert.equal(two.code, 0, two.stdout + two.stderr);
    assert.equal((await h.apiCall('GET', '/api/v1/apps/shop')).json.app.activeRevision, 2);
  });
  after(() => h.cleanup());

  it('refuses bad input with clear errors, and ending none', async () => {
    const cases: [string[], RegExp][] = [
      [['--variant', 'b=1', '--split', '150'], /--split "150" is not a whole number from 0 to 100/],
      [['--variant', 'b=1', '--split', '5.5'], /--split/],
      [['--variant', '1', '--split', '50'], /--variant "1" is not b=REV/],
      [['--variant', 'b=99', '--split', '50'], /app "shop" has no revision 99/],
      [['--variant', 'b=2', '--split', '50'], /revision 2 is already the active revision/],
      [['--variant', 'b=1', '--split', '50', '--by', 'cookie'], /by: "cookie" is not "cookie:NAME" or "header:NAME"/],
      [['--variant', 'b=1', '--split', '50', '--by', 'header:Host'], /cannot identify a user/],
    ];
    for (const [args, message] of cases) {
      const r = await h.cli(['experiment', 'start', 'shop', ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, message, args.join(' '));
    }
    const none = await h.cli(['experiment', 'end', 'shop', '--keep', 'a']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /app "shop" runs no experiment/);
    const status = await h.cli(['experiment', 'status', 'shop']);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /never run an experiment/);
  });

  it('keeps each cookie on its variant across 1,000 requests, splits users 50/50, then end --keep b makes b active', async () => {
    const start = await h.cli(['experiment', 'start', 'shop', '--variant', 'b=1', '--split', '50', '--by', 'cookie:uid']);
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, /a = revision 2 \(50%\), b = revision 1 \(50%\), sticky by cookie:uid/);
    const again = await h.cli(['experiment', 'start', 'shop', '--variant', 'b=1', '--split', '10']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already runs experiment/);

    // Revision 1 gets instances again (1 of the 2 replicas each), and the router follows the table.
    await waitFor(
      'a ready instance of both variants and the sticky route in the router',
      async () => {
        const app = (await h.apiCall('GET', '/api/v1/apps/shop')).json;
        const ready = (rev: number) =>
          app.instances.some((i: { revision: number; state: string }) => i.revision === rev && i.state === 'ready');
        if (!ready(1) || !ready(2)) return undefined;
        const v = await visit();
        return v.setCookie !== undefined ? true : undefined;
      },
      120_000,
    );

    // 200 first visits: each gets a cookie; the split of users is within tolerance of 50 %.
    const firsts = [];
    for (let i = 0; i < 200; i++) firsts.push(await visit());
    assert.ok(firsts.every((f) => f.status === 200 && f.setCookie !== undefined));
    const onB = firsts.filter((f) => f.revision === '1').length;
    // 200 random ids: sd 3.5 %; 15 % is over 4 sd.
    assert.ok(Math.abs(onB / 200 - 0.5) < 0.15, `b got ${onB} of 200 users`);

    // 50 jars, 20 requests each, interleaved: nobody moves, no cookie set again.
    const jars = firsts.slice(0, 50).map((f) => ({ cookie: f.setCookie!, revision: f.revision }));
    let moved = 0;
    let setAgain = 0;
    let served = 0;
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        jars.map(async (j) => {
          const v = await visit(`theme=dark; ${j.cookie}`);
          assert.equal(v.status, 200);
          served++;
          if (v.revision !== j.revision) moved++;
          if (v.setCookie !== undefined) setAgain++;
        }),
      );
    }
    assert.equal(served, 1000);
    assert.equal(moved, 0, 'no user changed variant');
    assert.equal(setAgain, 0, 'a returning user gets no new cookie');
    const jarsOnB = jars.filter((j) => j.revision === '1').length;
    assert.ok(jarsOnB > 5 && jarsOnB < 45, `${jarsOnB} of 50 jars on b`);

    // kill -9 of the router process (pilot up starts a new one from the saved table), then of
    // pilot up itself (restarted): every returning user is still on their variant.
    const stillOnTheirVariant = async (what: string): Promise<void> => {
      for (const j of jars) assert.equal((await visit(j.cookie)).revision, j.revision, what);
    };
    const routerPid = h.routerPid();
    assert.ok(routerPid);
    process.kill(routerPid, 'SIGKILL');
    await waitFor('a new router process serving', async () => {
      const p = h.routerPid();
      if (p === undefined || p === routerPid) return undefined;
      return (await visit().catch(() => undefined))?.status === 200 ? true : undefined;
    });
    await stillOnTheirVariant('after a router restart');
    await h.killUp('SIGKILL');
    await h.startUp();
    await waitFor('the control plane to answer', async () =>
      (await h.apiCall('GET', '/api/v1/apps/shop')).status === 200 ? true : undefined,
    );
    await stillOnTheirVariant('after a control plane restart');

    // The status: variants, split, per-variant figures from the router.
    const status = await waitFor('per-variant figures', async () => {
      const r = await h.cli(['experiment', 'status', 'shop', '--json']);
      const doc = JSON.parse(r.stdout);
      return doc.experiment.variants.every((v: { traffic: { requests: number } | null }) => (v.traffic?.requests ?? 0) > 0)
        ? doc
        : undefined;
    });
    assert.equal(status.experiment.status, 'running');
    assert.deepEqual(
      status.experiment.variants.map((v: { name: string; revision: number; weight: number }) => [v.name, v.revision, v.weight]),
      [
        ['a', 2, 50],
        ['b', 1, 50],
      ],
    );
    const human = await h.cli(['experiment', 'status', 'shop']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /VARIANT\s+REVISION\s+SPLIT\s+REQ\/S\s+REQUESTS\s+5XX\s+P50\s+P99/);
    assert.match(human.stdout, /^b\s+1\s+50%\s+\d/m);
    assert.match(human.stdout, /sticky by cookie:uid, split a 50% \/ b 50%/);
    const appStatus = await h.cli(['status', 'shop']);
    assert.match(appStatus.stdout, /experiment #\d+: a = revision 2 \(50%\), b = revision 1 \(50%\), sticky by cookie:uid/);

    // End, keeping b (revision 1): it becomes active through a rollout; revision 2 stops.
    const end = await h.cli(['experiment', 'end', 'shop', '--keep', 'b']);
    assert.equal(end.code, 0, end.stderr);
    assert.match(end.stdout, /keeping b \(revision 1\)/);
    // While b's instances come up, b's users stay on b (the split carries on until b is activated).
    const bUsers = jars.filter((j) => j.revision === '1');
    for (let round = 0; round < 3; round++) {
      for (const j of bUsers) assert.equal((await visit(j.cookie)).revision, '1', 'a user of b during the handover');
    }
    await waitFor(
      "b active and a's instances stopped",
      async () => {
        const app = (await h.apiCall('GET', '/api/v1/apps/shop')).json;
        const live2 = app.instances.filter((i: { revision: number; desired: string }) => i.revision === 2 && i.desired !== 'stop');
        const ready1 = app.instances.filter((i: { revision: number; state: string }) => i.revision === 1 && i.state === 'ready');
        return app.app.activeRevision === 1 && live2.length === 0 && ready1.length === 2 ? true : undefined;
      },
      120_000,
    );
    for (const j of jars.slice(0, 20)) assert.equal((await visit(j.cookie)).revision, '1', 'every user on b');
    assert.equal((await visit()).setCookie, undefined, 'no experiment: no cookie');
    const ended = JSON.parse((await h.cli(['experiment', 'status', 'shop', '--json'])).stdout);
    assert.equal(ended.experiment.status, 'ended');
    assert.equal(ended.experiment.kept, 'b');
    const events = await h.cli(['events', 'shop', '--limit', '500']);
    assert.match(events.stdout, /experiment\.started .*a = revision 2, b = revision 1 at 50% by cookie:uid/);
    assert.match(events.stdout, /experiment\.ended .*kept b \(revision 1\)/);
  });

  it('a deploy during an experiment ends it and replaces both variants with the new revision', async () => {
    const start = await h.cli(['experiment', 'start', 'shop', '--variant', 'b=2', '--split', '30', '--by', 'header:X-User']);
    assert.equal(start.code, 0, start.stderr);
    await waitFor(
      "variant b's instance ready",
      async () => {
        const app = (await h.apiCall('GET', '/api/v1/apps/shop')).json;
        return app.instances.some(
          (i: { revision: number; state: string; desired: string }) => i.revision === 2 && i.state === 'ready' && i.desired === 'run',
        )
          ? true
          : undefined;
      },
      120_000,
    );
    writeFileSync(join(repo, 'CHANGES'), 'v3\n');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'shop v3');
    const three = await h.cli(['run', repo]);
    assert.equal(three.code, 0, three.stdout + three.stderr);
    const ended = JSON.parse((await h.cli(['experiment', 'status', 'shop', '--json'])).stdout);
    assert.equal(ended.experiment.status, 'ended');
    assert.equal(ended.experiment.kept, null);
    assert.match(ended.experiment.reason, /a rollout to revision 3 started/);
    await waitFor(
      'only revision 3 left running',
      async () => {
        const app = (await h.apiCall('GET', '/api/v1/apps/shop')).json;
        const live = app.instances.filter((i: { desired: string }) => i.desired !== 'stop');
        return app.app.activeRevision === 3 && live.every((i: { revision: number }) => i.revision === 3) ? true : undefined;
      },
      120_000,
    );
    for (let i = 0; i < 10; i++) {
      const res = await request(h.router + '/', { headers: { host: 'shop.localhost', 'x-user': `user-${i}` } });
      assert.equal(String(JSON.parse(await res.body.text()).revision), '3');
    }
  });
});

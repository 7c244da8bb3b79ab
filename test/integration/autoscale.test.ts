/**
 * The autoscaler end to end: `pilot server` (its router in process) and two `pilot agent` processes
 * on 127.0.0.2-3. An app with `autoscale: { min: 1, max: 4, targetRps: 5, scaleDownWindow: 10s }`
 * under a request loop through the router scales up to max, every new replica serving, with no
 * failed request; `pilot scale` is refused while it is autoscaled; `pilot status` (and --json) and
 * `pilot events` say what the autoscaler did and why; once the load stops the count comes back to
 * min after the window, in one direction only (no flapping). A canary of the autoscaled app under
 * that load runs its weight's share of the count beside a whole stable set, ends with the count,
 * and the autoscaler does not move meanwhile.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from './harness.js';

const h = new Harness();

interface Change {
  from: number;
  to: number;
  reason: string;
}

async function app(): Promise<any> {
  return (await h.apiCall('GET', '/api/v1/apps/shop')).json;
}

async function changes(): Promise<Change[]> {
  const res = await h.apiCall('GET', '/api/v1/events?app=shop&limit=500');
  return (res.json.events as { kind: string; payload: Change }[]).filter((e) => e.kind === 'autoscale.changed').map((e) => e.payload);
}

/** The counts of the changes, in order, must only go one way between `first` and `last`. */
function oneWay(list: Change[]): 'up' | 'down' | 'none' | 'both' {
  const ups = list.some((c) => c.to > c.from);
  const downs = list.some((c) => c.to < c.from);
  return ups && downs ? 'both' : ups ? 'up' : downs ? 'down' : 'none';
}

describe('autoscaler: load raises the count, its end lowers it after the window', { timeout: 420_000 }, () => {
  let stopLoad = false;
  let loops: Promise<void>[] = [];
  const served = new Map<string, number>();
  const failures: string[] = [];
  let ok = 0;

  /** `n` request loops through the router, each pausing `pauseMs` between requests. */
  function startLoad(n: number, pauseMs: number): void {
    stopLoad = false;
    loops = Array.from({ length: n }, async () => {
      while (!stopLoad) {
        try {
          const res = await request(h.router + '/', { headers: { host: 'shop.localhost' }, headersTimeout: 30_000 });
          const text = await res.body.text();
          if (res.statusCode === 200) {
            ok++;
            const who = text.trim();
            served.set(who, (served.get(who) ?? 0) + 1);
          } else failures.push(`${res.statusCode} ${text.slice(0, 100)}`);
        } catch (err) {
          failures.push(String(err));
        }
        await sleep(pauseMs);
      }
    });
  }
  async function endLoad(): Promise<void> {
    stopLoad = true;
    await Promise.all(loops);
  }

  before(async () => {
    const ports = { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') };
    await h.startUp({}, 'server', ports);
    for (const [name, address] of [
      ['n1', '127.0.0.2'],
      ['n2', '127.0.0.3'],
    ] as const)
      await h.startAgent(name, address, h.track(tempDir(name)));
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      'name: shop\nhealth:\n  path: /healthz\n  interval: 1s\nautoscale: { min: 1, max: 4, targetRps: 5, scaleDownWindow: 10s }\n',
    );
    // Each instance answers with its own id, so the test sees which replicas serve.
    writeFileSync(
      join(repo, 'server.js'),
      `import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
const me = randomUUID();
createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(me + '\\n'); }).listen(Number(process.env.PORT));
`,
    );
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'shop');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(async () => {
    stopLoad = true;
    await Promise.all(loops);
    await h.cleanup();
  });

  it('starts at min, owned by the autoscaler, and shows its bounds', async () => {
    const a = await app();
    assert.equal(a.app.replicas, 1);
    assert.equal(a.app.replicasSetBy, 'autoscaler');
    assert.deepEqual([a.app.autoscale.min, a.app.autoscale.max, a.app.autoscale.target], [1, 4, { metric: 'rps', value: 5 }]);
    assert.equal(a.app.autoscale.scaleDownWindowSeconds, 10);
  });

  it('refuses `pilot scale` on an autoscaled app, with a hint', async () => {
    const r = await h.cli(['scale', 'shop', '3']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /app "shop" is autoscaled \(min 1, max 4, 5 req\/s per instance\)/);
    assert.match(r.stderr, /autoscale min\/max in pilot.yaml/);
    const api = await h.apiCall('POST', '/api/v1/apps/shop/scale', { replicas: 3 });
    assert.equal(api.status, 409);
    assert.equal(api.json.error.code, 'autoscaled');
    assert.equal((await app()).app.replicas, 1);
  });

  it('refuses a bad autoscale in a deploy with the field and what is allowed; the server keeps serving', async () => {
    const artifact = `sha256:${'0'.repeat(64)}`;
    const cases: [unknown, RegExp][] = [
      [{ min: 5, max: 2, targetRps: 5 }, /min \(5\) is greater than max \(2\)/],
      [{ min: 1, max: 2 }, /no target/],
      [{ min: 1, max: 2, targetRps: 5, targetCpu: 50 }, /both set/],
      [{ min: 1, max: 2, targetCpu: '250%' }, /targetCpu "250%" must be from 1 to 100 %/],
      [{ min: 1, max: 1000, targetRps: 5 }, /autoscale\.max: must be integer >= 1 <= 100/],
      [{ min: 1, max: 2, targetRps: 5, __proto__: { x: 1 }, extra: true }, /autoscale\.extra: unknown field/],
      ['lots', /autoscale: must be object/],
    ];
    for (const [autoscale, re] of cases) {
      const res = await h.apiCall('POST', '/api/v1/apps/shop/revisions', {
        artifact,
        commit: 'a'.repeat(40),
        config: { name: 'shop', autoscale },
      });
      assert.equal(res.status, 400, JSON.stringify(res.json));
      assert.equal(res.json.error.code, 'invalid_config');
      assert.match(res.json.error.message, re);
      assert.ok(res.json.error.hint);
    }
    const a = await app();
    assert.deepEqual([a.app.replicas, a.app.activeRevision, a.app.autoscale.max], [1, 1, 4], 'nothing changed');
  });

  it('scales up to max under load, every new replica serving, no request failed', async () => {
    const t0 = Date.now();
    startLoad(6, 100); // about 40-60 req/s on this machine: more than 4 × 5 req/s
    const a = await waitFor(
      'the count to reach max 4 with 4 ready instances',
      async () => {
        const x = await app();
        const ready = (x.instances as { state: string; desired: string }[]).filter((i) => i.state === 'ready' && i.desired === 'run');
        return x.app.replicas === 4 && ready.length === 4 ? x : undefined;
      },
      180_000,
    );
    const tookS = (Date.now() - t0) / 1000;
    // Spread over both nodes (the scheduler places them).
    assert.deepEqual([...new Set((a.instances as { node: string }[]).map((i) => i.node))].sort(), ['n1', 'n2']);
    // The new replicas serve: 4 instances answered within a few more seconds of load.
    await waitFor('4 distinct instances to answer', () => (served.size >= 4 ? true : undefined), 60_000);
    const ups = await changes();
    assert.ok(ups.length >= 1, 'at least one autoscale.changed event');
    assert.equal(oneWay(ups), 'up', JSON.stringify(ups));
    assert.equal(ups.at(-1)!.to, 4);
    assert.match(ups[0]!.reason, /req\/s over 1 instance .*target 5 req\/s per instance\): wants \d+ instances?; up from 1 to (max )?\d/);
    assert.deepEqual(failures, [], `failed requests while scaling up (${ok} ok)`);
    process.stdout.write(`# scaled 1 → 4 in ${tookS.toFixed(1)} s under load (${ok} requests ok, ${ups.length} change(s))\n`);
  });

  it('shows the autoscaler in pilot status, --json and pilot events', async () => {
    const s = await h.cli(['status', 'shop']);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /autoscale: 1-4 replicas at 5 req\/s per instance \(scale down after 10s\); now [\d.]+ req\/s/);
    assert.match(s.stdout, /last decision \d+s ago: .*(at max 4|holding 4|up from)/);
    assert.match(s.stdout, /last change \d+s ago: \d → 4/);
    const j = await h.cli(['status', 'shop', '--json']);
    assert.equal(j.code, 0, j.stderr);
    const doc = JSON.parse(j.stdout);
    assert.equal(doc.app.autoscale.lastChange.to, 4);
    assert.ok(doc.app.autoscale.current.load > 0, j.stdout);
    const metrics = (await h.apiCall('GET', '/metrics')).json as string;
    assert.match(metrics, /pilot_autoscale_replicas\{app="shop",bound="current"\} 4/);
    assert.match(metrics, /pilot_autoscale_replicas\{app="shop",bound="max"\} 4/);
    assert.match(metrics, /pilot_autoscale_load\{app="shop",metric="rps"\} [\d.]+/);
    const list = await h.cli(['apps']);
    assert.match(list.stdout, /shop\s+1\s+\d\/4 \(auto 1-4\)/);
    const ev = await h.cli(['events', 'shop']);
    assert.match(ev.stdout, /autoscale\.changed\s+shop\s+replicas 1 → \d+: .*req\/s/);
  });

  it('keeps the count through a rollout under the same load: the rollout splits it, never sets it', async () => {
    const before = (await changes()).length;
    const failedBefore = failures.length;
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      'name: shop\nhealth:\n  path: /healthz\n  interval: 1s\nautoscale: { min: 1, max: 4, targetRps: 5, scaleDownWindow: 10s }\n',
    );
    await git(repo, 'commit', '-qam', 'revision 2');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const a = await app();
    assert.equal(a.app.activeRevision, 2);
    assert.equal(a.app.replicas, 4);
    const ready = (a.instances as { state: string; desired: string; revision: number }[]).filter(
      (i) => i.desired === 'run' && i.state === 'ready' && i.revision === 2,
    );
    assert.equal(ready.length, 4, JSON.stringify(a.instances));
    assert.deepEqual(await changes().then((c) => c.slice(before)), [], 'no autoscale change during the rollout');
    assert.deepEqual(failures.slice(failedBefore), [], 'no failed request during the rollout');
  });

  it('goes through a canary under the same load: the canary runs its weight of the count, stable keeps it, no flapping', async () => {
    const before = (await changes()).length;
    const failedBefore = failures.length;
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      [
        'name: shop',
        'health:',
        '  path: /healthz',
        '  interval: 1s',
        'autoscale: { min: 1, max: 4, targetRps: 5, scaleDownWindow: 10s }',
        'strategy:',
        '  type: canary',
        '  steps: [{ weight: 25, pause: 3s }, { weight: 50, pause: 3s }, { weight: 100, pause: 1s }]',
        '  analysis: { maxErrorRate: 5%, minRequests: 5, window: 5s }',
        '',
      ].join('\n'),
    );
    await git(repo, 'commit', '-qam', 'revision 3: a canary');
    // While it runs: per canary weight, the most instances of the new revision and of stable seen.
    const seen = new Map<number, { canary: number; stable: number }>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const x = await app();
        if (x.rollout) {
          const live = (x.instances as { desired: string; revision: number }[]).filter((i) => i.desired === 'run');
          const w = x.rollout.weights.canary as number;
          const had = seen.get(w) ?? { canary: 0, stable: 0 };
          seen.set(w, {
            canary: Math.max(had.canary, live.filter((i) => i.revision === x.rollout.toRevision).length),
            stable: Math.max(had.stable, live.filter((i) => i.revision !== x.rollout.toRevision).length),
          });
        }
        await sleep(200);
      }
    })();
    const r = await h.cli(['run', repo]);
    watching = false;
    await watcher;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /canary step 1\/3: 25% of the traffic on revision 3/);
    const a = await app();
    assert.equal(a.app.activeRevision, 3);
    assert.equal(a.app.replicas, 4, 'the autoscaled count is kept');
    const ready = (a.instances as { state: string; desired: string; revision: number }[]).filter(
      (i) => i.desired === 'run' && i.state === 'ready' && i.revision === 3,
    );
    assert.equal(ready.length, 4, JSON.stringify(a.instances));
    // At 25 % the canary ran ceil(4 × 25 %) = 1 instance (2 once step 2's were starting), stable all 4.
    const at25 = seen.get(25);
    assert.ok(at25 !== undefined, `weights seen: ${JSON.stringify([...seen])}`);
    assert.ok(at25.canary >= 1 && at25.canary <= 2, JSON.stringify([...seen]));
    assert.equal(at25.stable, 4, JSON.stringify([...seen]));
    assert.deepEqual(await changes().then((c) => c.slice(before)), [], 'the autoscaler did not move during the canary');
    assert.deepEqual(failures.slice(failedBefore), [], 'no failed request during the canary');
    process.stdout.write(`# canary of an autoscaled app: ${JSON.stringify([...seen])}\n`);
  });

  it('comes back to min once the load drops, after the window, draining without a failed request, without flapping', async () => {
    const before = (await changes()).length;
    const failedBefore = failures.length;
    await endLoad();
    // A trickle (about 3 req/s, under one instance's 5) keeps going while replicas drain.
    startLoad(1, 300);
    const t0 = Date.now();
    await waitFor(
      'the count to come back to 1',
      async () => {
        const x = await app();
        const running = (x.instances as { desired: string }[]).filter((i) => i.desired === 'run');
        return x.app.replicas === 1 && running.length === 1 ? x : undefined;
      },
      180_000,
    );
    const tookS = (Date.now() - t0) / 1000;
    await endLoad();
    assert.deepEqual(failures.slice(failedBefore), [], 'no failed request while replicas drained');
    // The figures take 10-20 s to forget the load, then the 10 s window: never before 10 s.
    assert.ok(tookS >= 10, `scaled down after only ${tookS} s`);
    const downs = (await changes()).slice(before);
    assert.equal(oneWay(downs), 'down', JSON.stringify(downs));
    assert.match(downs.at(-1)!.reason, /to min 1|down from \d to 1/);
    // Quiet: nothing more happens for a while (no flapping at rest).
    await sleep(8000);
    assert.equal((await changes()).length, before + downs.length);
    assert.equal((await app()).app.replicas, 1);
    // The router still serves the app.
    assert.equal((await h.viaRouter('shop.localhost')).status, 200);
    process.stdout.write(`# scaled 4 → 1 ${tookS.toFixed(1)} s after the load dropped (${downs.length} change(s))\n`);
  });

  it('keeps the autoscaled count on a deploy, and hands it back when autoscale is removed', async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      'name: shop\nhealth:\n  path: /healthz\n  interval: 1s\nautoscale: { min: 2, max: 4, targetRps: 5, scaleDownWindow: 10m }\n',
    );
    await git(repo, 'commit', '-qam', 'min 2');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The count 1 is brought within the new bounds, still owned by the autoscaler.
    let a = await app();
    assert.deepEqual([a.app.replicas, a.app.replicasSetBy], [2, 'autoscaler']);
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace(/autoscale:.*\n/, ''));
    await git(repo, 'commit', '-qam', 'no autoscale');
    const r2 = await h.cli(['run', repo]);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    a = await app();
    assert.deepEqual([a.app.replicas, a.app.replicasSetBy, a.app.autoscale], [2, 'config', null]);
    const scaled = await h.cli(['scale', 'shop', '1']);
    assert.equal(scaled.code, 0, scaled.stderr);
  });

  it('is capped by what the fleet can place, and says so (2 nodes × 2 CPUs, 1 CPU per instance)', async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      'name: big\nhealth:\n  path: /healthz\n  interval: 1s\nresources: { cpu: 1 }\nautoscale: { min: 1, max: 6, targetRps: 2, scaleDownWindow: 10m }\n',
    );
    await git(repo, 'commit', '-qam', 'big');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    let stopBig = false;
    const bigFailures: string[] = [];
    const bigLoops = Array.from({ length: 3 }, async () => {
      while (!stopBig) {
        try {
          const res = await request(h.router + '/', { headers: { host: 'big.localhost' }, headersTimeout: 30_000 });
          await res.body.text();
          if (res.statusCode !== 200) bigFailures.push(String(res.statusCode));
        } catch (err) {
          bigFailures.push(String(err));
        }
        await sleep(100);
      }
    });
    try {
      const big = await waitFor(
        'big to be capped at 4',
        async () => {
          const x = (await h.apiCall('GET', '/api/v1/apps/big')).json;
          return x.app.replicas === 4 && x.app.autoscale?.lastDecision?.limitedBy === 'capacity' ? x : undefined;
        },
        180_000,
      );
      assert.match(big.app.autoscale.lastDecision.reason, /capped at 4: the fleet can place no more \(.*CPU/);
      const s = await h.cli(['status', 'big']);
      assert.match(s.stdout, /capped at 4: the fleet can place no more/);
      // It stays there: no count the scheduler would leave pending.
      await sleep(6000);
      const again = (await h.apiCall('GET', '/api/v1/apps/big')).json;
      assert.equal(again.app.replicas, 4);
      assert.equal(again.pending, null, JSON.stringify(again.pending));
    } finally {
      stopBig = true;
      await Promise.all(bigLoops);
    }
    assert.deepEqual(bigFailures, []);
  });
});

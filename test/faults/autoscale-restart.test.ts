/**
 * kill -9 of `pilot up` while an autoscaled app is scaled up under load (its router a process of
 * its own, read for the figures over its admin port): no request fails, the restarted control plane
 * keeps the count it had committed (the instances are re-adopted, none replaced), and once the load
 * stops it does not scale down before a full scale-down window has passed since the restart (its
 * recommendations were in memory: it starts from the count it finds, never from nothing).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { git, Harness, makeRepo, ROOT, sleep, waitFor } from '../integration/harness.js';

const h = new Harness();
const WINDOW_S = 20;
/** When the restarted control plane answered (Date.now()). */
let restartedAt = 0;

async function app(): Promise<any> {
  return (await h.apiCall('GET', '/api/v1/apps/shop')).json;
}

function ids(a: any): string[] {
  return (a.instances as { id: string; desired: string }[])
    .filter((i) => i.desired === 'run')
    .map((i) => i.id)
    .sort();
}

describe('autoscaler across a kill -9 of the control plane', { timeout: 420_000 }, () => {
  let running = true;
  let ok = 0;
  const failed: string[] = [];
  let loops: Promise<void>[] = [];
  const dispatcher = new Agent({ keepAliveTimeout: 200, connections: 8 });

  before(async () => {
    await h.startUp();
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      `name: shop\nhealth:\n  path: /healthz\n  interval: 1s\nautoscale: { min: 1, max: 3, targetRps: 5, scaleDownWindow: ${WINDOW_S}s }\n`,
    );
    await git(repo, 'commit', '-qam', 'autoscaled');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(async () => {
    running = false;
    await Promise.all(loops);
    await dispatcher.close();
    await h.cleanup();
  });

  it('keeps the scaled-up count and its instances across the kill, with no failed request', async () => {
    loops = Array.from({ length: 4 }, async () => {
      while (running) {
        try {
          const res = await request(h.router + '/', {
            headers: { host: 'shop.localhost' },
            dispatcher,
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          });
          const text = await res.body.text();
          if (res.statusCode === 200) ok++;
          else failed.push(`${res.statusCode} ${text.slice(0, 120)}`);
        } catch (err) {
          failed.push((err as Error).message);
        }
        await sleep(40);
      }
    });
    const up = await waitFor(
      'the count to reach 3 ready instances',
      async () => {
        const a = await app();
        const ready = (a.instances as { state: string; desired: string }[]).filter((i) => i.desired === 'run' && i.state === 'ready');
        return a.app.replicas === 3 && ready.length === 3 ? a : undefined;
      },
      180_000,
    );
    const before = ids(up);
    const t0 = Date.now();
    await h.killUp('SIGKILL');
    await h.startUp();
    restartedAt = Date.now();
    const recovery = (Date.now() - t0) / 1000;
    // Still under load: the same three instances (re-adopted, none replaced), the same count.
    await sleep(8000);
    const after = await app();
    assert.equal(after.app.replicas, 3);
    assert.equal(after.app.replicasSetBy, 'autoscaler');
    assert.deepEqual(ids(after), before);
    assert.ok(after.app.autoscale.lastDecision, 'the restarted autoscaler decides again');
    assert.ok(after.app.autoscale.current.load > 0, `figures read from the router process: ${JSON.stringify(after.app.autoscale)}`);
    assert.deepEqual(failed, []);
    process.stdout.write(
      `FAULT autoscale-kill9: failed ${failed.length}/${ok + failed.length}, instances lost 0, count kept 3, recovery ${recovery.toFixed(1)}s\n`,
    );
  });

  it('does not scale down before a full window after the restart', async () => {
    running = false;
    await Promise.all(loops);
    await waitFor('the count to come back to 1', async () => ((await app()).app.replicas === 1 ? true : undefined), 180_000);
    const sinceRestart = (Date.now() - restartedAt) / 1000;
    assert.ok(sinceRestart >= WINDOW_S, `scaled down ${sinceRestart.toFixed(1)} s after the restart, before the ${WINDOW_S} s window`);
    const events = (await h.apiCall('GET', '/api/v1/events?app=shop&limit=500')).json.events as {
      kind: string;
      payload: { from: number; to: number };
    }[];
    const changes = events.filter((e) => e.kind === 'autoscale.changed').map((e) => [e.payload.from, e.payload.to]);
    // Up (one or more steps), then down: never back and forth.
    const firstDown = changes.findIndex(([from, to]) => to! < from!);
    assert.ok(firstDown > 0, JSON.stringify(changes));
    assert.ok(
      changes.slice(firstDown).every(([from, to]) => to! < from!),
      `flapped: ${JSON.stringify(changes)}`,
    );
  });
});
